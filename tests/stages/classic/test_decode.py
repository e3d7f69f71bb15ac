"""Stream decode: captures replayed at every cut, JSON replies, control frames, faults."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from stages.classic.decode import DecodeReply, StreamInterpreter, decode_json_reply
from stages.core import Exchange, Reply
from stages.errors import (
    BotProtectionError,
    ChatGpttError,
    EmptyMessageError,
    IPBannedError,
    MalformedResponseError,
    MessageFlaggedError,
    NonceRejectedError,
    ProviderConnectionError,
    ResponseTooLargeError,
    SiteError,
    TokenLimitError,
    UpstreamError,
)
from stages.sse import SSEDecoder
from tests.conftest import VECTORS

CLASSIC = VECTORS / "classic"
URL = "http://127.0.0.1:8080/wp-admin/admin-ajax.php"
UPSTREAM_ERROR = (
    "Incorrect API key provided: sk-fake. You can find your API key at "
    "https://platform.openai.com/account/api-keys."
)


def body_of(name: str) -> bytes:
    return (CLASSIC / f"{name}.body").read_bytes()


def json_data(name: str) -> str:
    return str(json.loads(body_of(name))["data"])


def interpret(chunks: Iterable[bytes]) -> tuple[str, ChatGpttError | None]:
    """Decode a stream the way the decode stage does: the text, and the error if any."""
    decoder = SSEDecoder()
    interpreter = StreamInterpreter(URL)
    parts: list[str] = []
    try:
        for chunk in chunks:
            parts.append(interpreter.feed(decoder.feed(chunk)))
            interpreter.check()
            if interpreter.done:
                return "".join(parts), None
        parts.append(interpreter.feed(decoder.close()))
        interpreter.end()
    except ChatGpttError as exc:
        return "".join(parts), exc
    return "".join(parts), None


STREAMS = {
    "stream_ok_urlencoded": "Hello from upstream: Hello",
    "stream_ok_multipart": "Hello from upstream: Hello",
    "azure_stream_ok": "Hello from upstream: Hello",
    "json_widget_action": "Hello from upstream: Hello",
    "stream_history_list": "Hello from upstream: And now?",
    "stream_special_chars": json_data("json_special_chars"),
}


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_capture_streams_decode_to_the_answer(name: str) -> None:
    assert interpret([body_of(name)]) == (STREAMS[name], None)


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_capture_streams_cut_at_every_byte_give_the_same_text(name: str) -> None:
    body = body_of(name)
    for cut in range(len(body) + 1):
        assert interpret([body[:cut], body[cut:]]) == (STREAMS[name], None), cut


@settings(deadline=None, max_examples=200)
@given(st.sampled_from(sorted(STREAMS)), st.lists(st.integers(min_value=0), max_size=30))
def test_any_chunking_of_a_capture_gives_the_same_text(name: str, cuts: list[int]) -> None:
    body = body_of(name)
    points = sorted({cut % (len(body) + 1) for cut in cuts})
    chunks = [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]
    assert interpret(chunks) == (STREAMS[name], None)


def test_upstream_error_words_are_raised_not_yielded() -> None:
    body = body_of("stream_upstream_error")
    for cut in range(0, len(body) + 1, 7):
        text, error = interpret([body[:cut], body[cut:]])
        assert text == ""
        assert isinstance(error, UpstreamError)
        assert error.site_message == UPSTREAM_ERROR


def test_error_words_with_an_unescaped_quote_still_become_the_error() -> None:
    words = ['Model "gpt', '-9"', " not", " found"]
    body = "".join(
        f'event: message\ndata: {{"choices":[{{"delta":{{"content":"{w}"}}}}]}}\n\n' for w in words
    )
    body += 'data: {"choices":[{"finish_reason":"stop"}]}\n\n'
    text, error = interpret([body.encode()])
    assert text == ""
    assert isinstance(error, UpstreamError)
    assert error.site_message == 'Model "gpt-9" not found'


def test_error_words_ending_in_limited_or_eof_raise_the_message() -> None:
    block = "".join(
        f'event: message\ndata: {{"choices":[{{"delta":{{"content":"{w}"}}}}]}}\n\n'
        for w in ["Over", " quota"]
    )
    for tail in ("data: [LIMITED]\n\n", ""):
        text, error = interpret([(block + tail).encode()])
        assert text == ""
        assert isinstance(error, UpstreamError)
        assert error.site_message == "Over quota"


def frame(content: str | None = None, finish: str | None = None, **extra: Any) -> str:
    delta = {} if content is None else {"content": content}
    payload = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **extra,
    }
    return f"data: {json.dumps(payload)}\n\n"


@pytest.mark.parametrize(
    ("flag", "error_type"),
    [
        ("tokenLimitReached", TokenLimitError),
        ("messageFlagged", MessageFlaggedError),
        ("modflag", MessageFlaggedError),
        ("ipBanned", IPBannedError),
        ("pineconeError", UpstreamError),
    ],
)
def test_control_frames_raise_their_error_even_when_an_answer_follows(
    flag: str, error_type: type
) -> None:
    body = (
        f'data: {{"msg":"Stop right there","{flag}":true}}\n\n'
        + frame("Hello")
        + frame(finish="stop")
        + "data: [DONE]\n\n"
    )
    text, error = interpret([body.encode()])
    assert text == ""
    assert isinstance(error, error_type)
    assert error.site_message == "Stop right there"


def test_error_object_frame_is_an_upstream_error() -> None:
    body = frame("Hi") + 'data: {"error":{"message":"overloaded","type":"server_error"}}\n\n'
    text, error = interpret([body.encode()])
    assert text == "Hi"
    assert isinstance(error, UpstreamError)
    assert error.site_message == "overloaded"


def test_limited_terminator_after_text_is_an_error_keeping_the_text() -> None:
    text, error = interpret([(frame("Partial") + "data: [LIMITED]\n\n").encode()])
    assert text == "Partial"
    assert isinstance(error, UpstreamError)


def test_invalid_json_frame_is_malformed_and_named() -> None:
    text, error = interpret(
        [(frame("ok") + 'data: {"choices":[{"delta":{"content":"br\n\n').encode()]
    )
    assert text == "ok"
    assert isinstance(error, MalformedResponseError)
    assert "not valid JSON" in str(error)


def test_end_without_done_keeps_the_text() -> None:
    assert interpret([(frame("Hel") + frame("lo", finish="stop")).encode()]) == ("Hello", None)
    assert interpret([(frame("Hel") + frame("lo")).encode()]) == ("Hello", None)


def test_frames_after_finish_are_not_answer_text() -> None:
    body = frame("Hi", finish="stop") + frame(" again") + "data: [DONE]\n\n" + frame("ignored")
    assert interpret([body.encode()]) == ("Hi", None)


def test_legacy_completion_text_and_empty_choices() -> None:
    body = (
        'data: {"id":"x","choices":[]}\n\n'
        + 'data: {"id":"x","choices":[{"text":"old","finish_reason":null}]}\n\n'
    )
    assert interpret([body.encode()]) == ("old", None)


def test_invalid_utf8_is_recovered_with_replacement_characters() -> None:
    body = b'data: {"id":"x","choices":[{"delta":{"content":"caf\xff\xfe"}}]}\n\ndata: [DONE]\n\n'
    assert interpret([body]) == ("caf\ufffd\ufffd", None)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("json_ok_urlencoded", "Hello from upstream: Hello"),
        (
            "json_special_chars",
            "Hello from upstream: "
            "Quote \" apos ' back\\slash <b>tag</b> & amp; café 日本 😀 %41 +plus",
        ),
    ],
)
def test_json_replies_decode_to_their_data(name: str, expected: str) -> None:
    assert decode_json_reply(body_of(name), URL) == expected


@pytest.mark.parametrize(
    ("body", "error_type", "text"),
    [
        (body_of("json_upstream_error"), UpstreamError, UPSTREAM_ERROR),
        (body_of("json_empty_message"), EmptyMessageError, "nothing was inputted"),
        (
            b'{"status":"error","msg":"Nonce verification failed"}',
            NonceRejectedError,
            "Nonce verification failed",
        ),
        (
            b'{"msg":"You have reached your token limit.","tokenLimitReached":true}',
            TokenLimitError,
            "token limit",
        ),
        (
            b'{"status":"error","msg":"You are not allowed to access this feature."}',
            IPBannedError,
            "not allowed",
        ),
        (
            b'{"status":"error","msg":"Your message contains prohibited words. '
            b'Please modify your message and try again."}',
            MessageFlaggedError,
            "prohibited",
        ),
        (
            b'{"status":"error","msg":"Unable to initialize the AI instance. '
            b'Please make sure the API key is valid."}',
            SiteError,
            "initialize",
        ),
        (b"not json", MalformedResponseError, "does not parse"),
        (b"[1, 2]", MalformedResponseError, "not an object"),
        (b'{"status":"success","data":null}', MalformedResponseError, "without text"),
        (b'{"hello":"world"}', MalformedResponseError, "status"),
    ],
)
def test_json_errors_are_typed(body: bytes, error_type: type, text: str) -> None:
    with pytest.raises(error_type, match=text):
        decode_json_reply(body, URL)


def test_json_with_invalid_utf8_is_recovered() -> None:
    assert decode_json_reply(b'{"status":"success","data":"ok \xff"}', URL) == "ok \ufffd"


class FakeBody:
    """A reply body made of given chunks, optionally failing after them."""

    def __init__(self, chunks: Iterable[bytes], error: BaseException | None = None) -> None:
        self.chunks = list(chunks)
        self.error = error
        self.closed = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[bytes]:
        while self.chunks:
            yield self.chunks.pop(0)
        if self.error is not None:
            raise self.error

    async def read(self, limit: int) -> bytes:
        data = b"".join([chunk async for chunk in self])
        if len(data) > limit:
            raise ResponseTooLargeError("the reply", limit)
        return data

    async def aclose(self) -> None:
        self.closed = True


def with_reply(exchange: Exchange, body: FakeBody, content_type: str | None) -> Exchange:
    headers = CIMultiDict({"Content-Type": content_type} if content_type else {})
    reply = Reply(url=URL, status=200, headers=CIMultiDictProxy(headers), body=body)
    return attrs.evolve(exchange, reply=reply)


async def collect(exchange: Exchange) -> str:
    assert exchange.text is not None
    return "".join([chunk async for chunk in exchange.text])


@pytest.mark.parametrize(
    "content_type", ["text/event-stream;charset=UTF-8", "TEXT/EVENT-STREAM", None, "text/html"]
)
async def test_stage_streams_sse_by_content_type_or_sniffing(exchange_for, content_type) -> None:
    body = FakeBody([body_of("stream_ok_urlencoded")])
    result = await DecodeReply()(with_reply(exchange_for(), body, content_type))
    assert await collect(result) == "Hello from upstream: Hello"
    assert body.closed


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=UTF-8", "text/html; charset=UTF-8", None]
)
async def test_stage_reads_json_by_content_type_or_sniffing(exchange_for, content_type) -> None:
    body = FakeBody([b'{"status":"success",', b'"data":"Hi"}'])
    result = await DecodeReply()(with_reply(exchange_for(), body, content_type))
    assert await collect(result) == "Hi"
    assert body.closed


async def test_stage_reports_challenge_pages_served_with_200(exchange_for) -> None:
    body = FakeBody([b"<html><head><title>Just a moment...</title></head></html>"])
    with pytest.raises(BotProtectionError, match="bot protection"):
        await DecodeReply()(with_reply(exchange_for(), body, "text/html"))
    assert body.closed


async def test_stage_reports_other_html_with_an_excerpt(exchange_for) -> None:
    body = FakeBody([b"<html><body>Maintenance until noon</body></html>"])
    with pytest.raises(
        MalformedResponseError, match="expected JSON or an event stream, got text/html"
    ):
        await DecodeReply()(with_reply(exchange_for(), body, "text/html"))


async def test_a_drop_before_any_text_fails_inside_the_stage(exchange_for) -> None:
    """So that the retry layer around the stage can send the request again."""
    first = frame("")  # role frame, no text yet
    body = FakeBody([first.encode()], error=ProviderConnectionError("reset"))
    with pytest.raises(ProviderConnectionError):
        await DecodeReply()(with_reply(exchange_for(), body, "text/event-stream"))
    assert body.closed


async def test_a_drop_after_text_surfaces_while_iterating(exchange_for) -> None:
    body = FakeBody(
        [frame("Hel").encode(), frame("lo").encode()], error=ProviderConnectionError("reset")
    )
    result = await DecodeReply()(with_reply(exchange_for(), body, "text/event-stream"))
    assert result.text is not None
    received = [await result.text.__anext__(), await result.text.__anext__()]
    assert received == ["Hel", "lo"]
    with pytest.raises(ProviderConnectionError):
        await result.text.__anext__()
    await result.text.aclose()
    assert body.closed


async def test_over_long_stream_line_is_a_size_error(exchange_for) -> None:
    from stages.config import Limits

    exchange = exchange_for(limits=Limits(max_event_bytes=64))
    body = FakeBody([b"data: " + b"x" * 200 + b"\n\n"])
    with pytest.raises(ResponseTooLargeError, match="64 bytes"):
        await DecodeReply()(with_reply(exchange, body, "text/event-stream"))


async def test_oversized_json_is_a_size_error(exchange_for) -> None:
    from stages.config import Limits

    exchange = exchange_for(limits=Limits(max_body_bytes=10))
    with pytest.raises(ResponseTooLargeError):
        await DecodeReply()(
            with_reply(
                exchange, FakeBody([b'{"status":"success","data":"long"}']), "application/json"
            )
        )


async def test_an_endless_event_of_short_lines_is_a_size_error(exchange_for) -> None:
    from stages.config import Limits

    exchange = exchange_for(limits=Limits(max_event_bytes=64))
    body = FakeBody([b"data: x\n" * 5, b"data: y\n" * 20])
    with pytest.raises(ResponseTooLargeError, match="a stream event exceeds the limit of 64 bytes"):
        await DecodeReply()(with_reply(exchange, body, "text/event-stream"))


class StallingBody(FakeBody):
    """A body that sends its chunks, then never sends anything again."""

    async def _iterate(self) -> AsyncIterator[bytes]:
        while self.chunks:
            yield self.chunks.pop(0)
        await asyncio.Event().wait()
        yield b""  # pragma: no cover - never reached


async def test_an_answer_ends_soon_after_its_finish_frame_even_without_done(
    exchange_for, monkeypatch
) -> None:
    import stages.classic.decode

    monkeypatch.setattr(stages.classic.decode, "DRAIN_SECONDS", 0.01)
    body = StallingBody([(frame("Hi") + frame(" there", finish="stop")).encode()])
    result = await DecodeReply()(with_reply(exchange_for(), body, "text/event-stream"))
    text = await asyncio.wait_for(collect(result), timeout=10)
    assert text == "Hi there"
    assert body.closed


async def test_capture_streams_through_the_stage_cut_at_every_byte(exchange_for) -> None:
    body = body_of("stream_ok_urlencoded")
    for cut in range(0, len(body) + 1, 3):
        chunks = FakeBody([body[:cut], body[cut:]])
        result = await DecodeReply()(with_reply(exchange_for(), chunks, "text/event-stream"))
        assert await collect(result) == "Hello from upstream: Hello", cut
