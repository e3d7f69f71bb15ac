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

from stages.classic.decode import (
    DecodeReply,
    StreamInterpreter,
    decode_json_reply,
)
from stages.core import Exchange, Reply
from stages.errors import (
    BotProtectionError,
    ChatGpttError,
    EmptyMessageError,
    IncompleteReplyError,
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
from tests.conftest import VECTORS, MemoryBody

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


def test_a_finish_frame_without_done_ends_a_complete_answer() -> None:
    assert interpret([(frame("Hel") + frame("lo", finish="stop")).encode()]) == ("Hello", None)


def test_an_end_without_a_finish_frame_or_done_is_incomplete() -> None:
    """The site never said the answer was complete: its text is kept, the error says so."""
    text, error = interpret([(frame("Hel") + frame("lo")).encode()])
    assert text == "Hello"
    assert isinstance(error, IncompleteReplyError)
    assert isinstance(error, ProviderConnectionError)  # retried when it comes before text
    assert "without a finish frame or [DONE]" in str(error)


def test_an_end_before_any_event_is_malformed_not_an_empty_answer() -> None:
    text, error = interpret([b": just a comment\n\n"])
    assert text == ""
    assert isinstance(error, MalformedResponseError)
    assert "without a single event" in str(error)


def test_frames_after_finish_are_not_answer_text() -> None:
    body = frame("Hi", finish="stop") + frame(" again") + "data: [DONE]\n\n" + frame("ignored")
    assert interpret([body.encode()]) == ("Hi", None)


def test_legacy_completion_text_and_empty_choices() -> None:
    body = (
        'data: {"id":"x","choices":[]}\n\n'
        + 'data: {"id":"x","choices":[{"text":"old","finish_reason":null}]}\n\n'
        + "data: [DONE]\n\n"
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


def with_reply(
    exchange: Exchange,
    body: MemoryBody,
    content_type: str | None,
    *,
    length: bool = False,
    chunked: bool = False,
) -> Exchange:
    """``exchange`` with a 200 reply of ``body``; without ``length`` or ``chunked`` its end
    is not declared (it ends at connection close, as the real PHP server sends replies)."""
    headers = CIMultiDict({"Content-Type": content_type} if content_type else {})
    if length:
        headers["Content-Length"] = str(sum(map(len, body.chunks)))
    if chunked:
        headers["Transfer-Encoding"] = "chunked"
    reply = Reply(url=URL, status=200, headers=CIMultiDictProxy(headers), body=body)
    return attrs.evolve(exchange, reply=reply)


async def collect(exchange: Exchange) -> str:
    assert exchange.text is not None
    return "".join([chunk async for chunk in exchange.text])


@pytest.mark.parametrize(
    "content_type", ["text/event-stream;charset=UTF-8", "TEXT/EVENT-STREAM", None, "text/html"]
)
async def test_stage_streams_sse_by_content_type_or_sniffing(exchange_for, content_type) -> None:
    body = MemoryBody([body_of("stream_ok_urlencoded")])
    result = await DecodeReply()(with_reply(exchange_for(), body, content_type))
    assert await collect(result) == "Hello from upstream: Hello"
    assert body.closed


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=UTF-8", "text/html; charset=UTF-8", None]
)
async def test_stage_reads_json_by_content_type_or_sniffing(exchange_for, content_type) -> None:
    body = MemoryBody([b'{"status":"success",', b'"data":"Hi"}'])
    result = await DecodeReply()(with_reply(exchange_for(), body, content_type))
    assert await collect(result) == "Hi"
    assert body.closed


async def test_stage_reports_challenge_pages_served_with_200(exchange_for) -> None:
    body = MemoryBody([b"<html><head><title>Just a moment...</title></head></html>"])
    with pytest.raises(BotProtectionError, match="bot protection"):
        await DecodeReply()(with_reply(exchange_for(), body, "text/html"))
    assert body.closed


async def test_stage_reports_other_html_with_an_excerpt(exchange_for) -> None:
    body = MemoryBody([b"<html><body>Maintenance until noon</body></html>"])
    with pytest.raises(
        MalformedResponseError, match="expected JSON or an event stream, got text/html"
    ):
        await DecodeReply()(with_reply(exchange_for(), body, "text/html"))


async def test_a_drop_before_any_text_fails_inside_the_stage(exchange_for) -> None:
    """So that the retry layer around the stage can send the request again."""
    first = frame("")  # role frame, no text yet
    body = MemoryBody([first.encode()], error=ProviderConnectionError("reset"))
    with pytest.raises(ProviderConnectionError):
        await DecodeReply()(with_reply(exchange_for(), body, "text/event-stream"))
    assert body.closed


async def test_a_drop_after_text_surfaces_while_iterating(exchange_for) -> None:
    body = MemoryBody(
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
    body = MemoryBody([b"data: " + b"x" * 200 + b"\n\n"])
    with pytest.raises(ResponseTooLargeError, match="64 bytes"):
        await DecodeReply()(with_reply(exchange, body, "text/event-stream"))


async def test_oversized_json_is_a_size_error(exchange_for) -> None:
    from stages.config import Limits

    exchange = exchange_for(limits=Limits(max_body_bytes=10))
    with pytest.raises(ResponseTooLargeError):
        await DecodeReply()(
            with_reply(
                exchange, MemoryBody([b'{"status":"success","data":"long"}']), "application/json"
            )
        )


async def test_an_endless_event_of_short_lines_is_a_size_error(exchange_for) -> None:
    from stages.config import Limits

    exchange = exchange_for(limits=Limits(max_event_bytes=64))
    body = MemoryBody([b"data: x\n" * 5, b"data: y\n" * 20])
    with pytest.raises(ResponseTooLargeError, match="a stream event exceeds the limit of 64 bytes"):
        await DecodeReply()(with_reply(exchange, body, "text/event-stream"))


class StallingBody(MemoryBody):
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
        chunks = MemoryBody([body[:cut], body[cut:]])
        result = await DecodeReply()(with_reply(exchange_for(), chunks, "text/event-stream"))
        assert await collect(result) == "Hello from upstream: Hello", cut


# --- an answer is complete only when the site says so ------------------------------------------


class LingeringBody(MemoryBody):
    """A body that sends its chunks, then a keep-alive comment at every tick, forever."""

    async def _iterate(self) -> AsyncIterator[bytes]:
        while self.chunks:
            yield self.chunks.pop(0)
        while True:
            await asyncio.sleep(0.002)
            yield b":\n"


async def test_the_wait_for_done_is_bounded_in_total_not_per_chunk(
    exchange_for, monkeypatch
) -> None:
    """Comments arriving faster than the drain limit must not hold a finished answer."""
    import stages.classic.decode

    monkeypatch.setattr(stages.classic.decode, "DRAIN_SECONDS", 0.05)
    body = LingeringBody([(frame("Hi") + frame(" there", finish="stop")).encode()])
    result = await DecodeReply()(with_reply(exchange_for(), body, "text/event-stream"))
    text = await asyncio.wait_for(collect(result), timeout=10)
    assert text == "Hi there"
    assert body.closed


PHP_FATAL = (
    b"<br />\n<b>Fatal error</b>:  Uncaught Error: Call to undefined function curl_init() in "
    b"/var/www/html/wp-content/plugins/gpt3-ai-content-generator/classes/wpaicg_chat.php:812\n"
    b"Stack trace:\n#0 {main}\n  thrown in <b>/var/www/html/wp-content/plugins/"
    b"gpt3-ai-content-generator/classes/wpaicg_chat.php</b> on line <b>812</b><br />\n"
)


@pytest.mark.parametrize(
    ("body", "error_type", "says"),
    [
        pytest.param(b"", MalformedResponseError, "event stream was empty", id="nothing"),
        pytest.param(b"\r\n  \n", MalformedResponseError, "event stream was empty", id="blank"),
        pytest.param(
            PHP_FATAL, MalformedResponseError, "undefined function curl_init()", id="php-fatal"
        ),
        pytest.param(b": ping\n\n: ping\n\n", MalformedResponseError, ": ping", id="comments"),
        pytest.param(
            b"<!DOCTYPE html><html><head><title>Just a moment...</title></head></html>",
            BotProtectionError,
            "Cloudflare",
            id="cloudflare",
        ),
    ],
)
async def test_an_event_stream_without_events_is_an_error_quoting_it(
    exchange_for, body: bytes, error_type: type, says: str
) -> None:
    """A 200 text/event-stream reply that never was a stream: never an empty answer."""
    fake = MemoryBody([body[:40], body[40:]] if body else [])
    with pytest.raises(error_type) as caught:
        await DecodeReply()(with_reply(exchange_for(), fake, "text/event-stream;charset=UTF-8"))
    assert says in str(caught.value)
    assert fake.closed


@pytest.mark.parametrize("declared", [False, True], ids=["close-delimited", "chunked"])
async def test_a_stream_that_ends_before_text_without_finishing_is_retryable(
    exchange_for, declared: bool
) -> None:
    """Only the role frame came, then a clean end: a cut, which the retry layer resends."""
    body = MemoryBody([frame("").encode()])
    exchange = with_reply(exchange_for(), body, "text/event-stream", chunked=declared)
    with pytest.raises(IncompleteReplyError, match="without a finish frame or \\[DONE\\]"):
        await DecodeReply()(exchange)
    assert body.closed


async def test_a_stream_that_ends_after_text_without_finishing_raises_after_the_text(
    exchange_for,
) -> None:
    body = MemoryBody([frame("Hel").encode()])
    result = await DecodeReply()(with_reply(exchange_for(), body, "text/event-stream"))
    assert result.text is not None
    assert await result.text.__anext__() == "Hel"
    with pytest.raises(IncompleteReplyError):
        await result.text.__anext__()
    await result.text.aclose()
    assert body.closed


async def test_a_frame_cut_by_the_end_of_the_body_is_incomplete_not_malformed(
    exchange_for,
) -> None:
    cut = frame("lo")[:30]
    body = MemoryBody([frame("Hel").encode(), cut.encode()])
    result = await DecodeReply()(with_reply(exchange_for(), body, "text/event-stream"))
    assert result.text is not None
    assert await result.text.__anext__() == "Hel"
    with pytest.raises(IncompleteReplyError, match="ended inside a frame"):
        await result.text.__anext__()


async def test_a_garbled_frame_inside_the_stream_stays_malformed(exchange_for) -> None:
    """Only a frame cut by the end of the body is blamed on the connection."""
    body = MemoryBody([(frame("Hel") + "data: {garbled\n\n" + frame("lo", finish="stop")).encode()])
    result = await DecodeReply()(with_reply(exchange_for(), body, "text/event-stream"))
    assert result.text is not None
    assert await result.text.__anext__() == "Hel"
    with pytest.raises(MalformedResponseError, match="not valid JSON"):
        await result.text.__anext__()


@pytest.mark.parametrize("chunked", [False, True], ids=["close-delimited", "chunked"])
@pytest.mark.parametrize("name", ["stream_ok_urlencoded", "stream_special_chars"])
async def test_a_capture_ending_early_at_any_byte_is_whole_or_an_error(
    exchange_for, name: str, chunked: bool
) -> None:
    """The captured stream, its body ending cleanly after every byte: the answer is whole
    exactly when the finish frame arrived; otherwise a typed error, never a short answer,
    and the text delivered is a prefix of the answer."""
    whole = body_of(name)
    answer = STREAMS[name]
    finish_end = whole.index(b'"finish_reason": "stop"}]}') + len(b'"finish_reason": "stop"}]}')
    for cut in range(len(whole) + 1):
        body = MemoryBody([whole[:cut]] if cut else [])
        chunks: list[str] = []
        error: ChatGpttError | None = None
        try:
            exchange = with_reply(exchange_for(), body, "text/event-stream", chunked=chunked)
            result = await DecodeReply()(exchange)
            assert result.text is not None
            async for chunk in result.text:
                chunks.append(chunk)
        except ChatGpttError as exc:
            error = exc
        text = "".join(chunks)
        assert answer.startswith(text), cut
        if cut >= finish_end:
            assert (text, error) == (answer, None), cut
        elif cut == 0:
            assert isinstance(error, MalformedResponseError), cut
        else:
            assert isinstance(error, IncompleteReplyError), (cut, error)
        assert body.closed


@pytest.mark.parametrize(
    ("declared", "error_type"),
    [(False, IncompleteReplyError), (True, MalformedResponseError)],
    ids=["close-delimited", "content-length"],
)
async def test_a_json_reply_cut_mid_document(exchange_for, declared: bool, error_type) -> None:
    """Without a declared length the body ends where the connection closed: a document that
    stops early was cut, and is retried. With a declared length the site sent it so."""
    whole = body_of("json_ok_urlencoded")
    body = MemoryBody([whole[: len(whole) // 2]])
    exchange = with_reply(exchange_for(), body, "application/json", length=declared)
    with pytest.raises(error_type) as caught:
        await DecodeReply()(exchange)
    assert type(caught.value) is error_type


async def test_an_empty_json_reply_says_it_was_empty(exchange_for) -> None:
    body = MemoryBody([])
    with pytest.raises(MalformedResponseError, match="an empty reply"):
        await DecodeReply()(with_reply(exchange_for(), body, "application/json"))


async def test_a_json_reply_with_text_before_it_is_malformed_whatever_the_framing(
    exchange_for,
) -> None:
    body = MemoryBody([b"<br />\n<b>Warning</b>: x<br />\n" + body_of("json_ok_urlencoded")])
    with pytest.raises(MalformedResponseError, match="does not parse") as caught:
        await DecodeReply()(with_reply(exchange_for(), body, "application/json"))
    assert not isinstance(caught.value, IncompleteReplyError)
