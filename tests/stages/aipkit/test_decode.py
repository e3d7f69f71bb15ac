"""AIPKit stream decode: the real plugin's streams replayed whole, cut at every byte and
re-chunked at random; every event kind; the stage's completeness rule and its store."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterable

import attrs
import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy
from structlog.testing import capture_logs

from stages.aipkit.decode import AipkitInterpreter, DecodeAipkitStream, event_error
from stages.aipkit.payload import conversation_site
from stages.aipkit.tokens import AipkitTokens
from stages.conversations import ConversationStore, conversation_key, extend_key
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
    SiteError,
    StaleRequestError,
    TokenLimitError,
    UpstreamError,
)
from stages.sse import ServerSentEvent, SSEDecoder
from tests.conftest import VECTORS, MemoryBody

AIPKIT = VECTORS / "aipkit"
URL = "http://127.0.0.1:8080/wp-admin/admin-ajax.php"
NONCE = "ef9a0a6714"
TOKENS = AipkitTokens(
    nonce=NONCE,
    post_id="6",
    bot_id="5",
    ajax_url=URL,
    page_url="http://127.0.0.1:8080/?page_id=6",
    site_url="http://127.0.0.1:8080",
)
API_ERROR = (
    "API Error: Incorrect API key provided: sk-fake. You can find your API key at "
    "https://platform.openai.com/account/api-keys. (Code: invalid_api_key)"
)

#: Each captured stream and how it ends: its whole text, or the error it carries.
ANSWERS = {
    "stream_ok": "Hello from upstream: Hello",
    "responses_api_stream_ok": "Hello from upstream: Hello",
    "stream_continue_same_conversation": "Hello from upstream: And now?",
    "stream_special_chars": (
        "Hello from upstream: Quote \" apos ' back\\slash <b>tag</b> & amp; café 日本 😀 %41 +plus"
    ),
}
ERRORS: dict[str, tuple[type[ChatGpttError], str]] = {
    "stream_upstream_error": (UpstreamError, API_ERROR),
    "responses_api_stream_upstream_error": (UpstreamError, API_ERROR),
    "stream_bad_nonce": (
        NonceRejectedError,
        "Security check failed. Please refresh the page and try again.",
    ),
    "stream_bad_bot": (SiteError, "Invalid chatbot specified."),
    "stream_missing_conversation": (SiteError, "Conversation ID is missing."),
    "stream_missing_session": (SiteError, "Session ID is missing for guest."),
    "stream_reused_key": (StaleRequestError, "Message not found in cache."),
    "stream_unknown_key": (StaleRequestError, "Message not found in cache."),
}


def body_of(name: str) -> bytes:
    return (AIPKIT / f"{name}.body").read_bytes()


def interpret(chunks: Iterable[bytes]) -> tuple[str, ChatGpttError | None, bool]:
    """Decode like the stage (without I/O): the text, the error if any, whether done came."""
    decoder = SSEDecoder()
    interpreter = AipkitInterpreter(URL, nonce=NONCE)
    parts: list[str] = []
    try:
        for chunk in chunks:
            parts.append(interpreter.feed(decoder.feed(chunk)))
            interpreter.check()
            if interpreter.done:
                return "".join(parts), None, True
        parts.append(interpreter.flush(decoder))
        interpreter.end()
    except ChatGpttError as exc:
        return "".join(parts), exc, interpreter.done
    return "".join(parts), None, interpreter.done


def frames(*events: str) -> bytes:
    return "".join(event + "\n\n" for event in events).encode()


START = 'event: message_start\ndata: {"message_id":"aipkit-msg-1.2"}'
DONE = 'event: done\ndata: {"finished":true}'


def delta(text: str) -> str:
    """A text event as the plugin writes it (compact, JSON_UNESCAPED_UNICODE)."""
    return "data: " + json.dumps({"delta": text}, separators=(",", ":"), ensure_ascii=False)


# --- the captures ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ANSWERS))
def test_captured_answers_decode_to_their_text(name: str) -> None:
    assert interpret([body_of(name)]) == (ANSWERS[name], None, True)


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_captured_errors_are_typed_and_quote_the_site(name: str) -> None:
    error_type, message = ERRORS[name]
    text, error, _done = interpret([body_of(name)])
    assert text == ""
    assert type(error) is error_type
    assert error.site_message == message if isinstance(error, SiteError) else True
    assert message in str(error)


def test_a_nonce_rejection_carries_the_nonce_that_was_rejected() -> None:
    _text, error, _done = interpret([body_of("stream_bad_nonce")])
    assert isinstance(error, NonceRejectedError)
    assert error.nonce == NONCE


@pytest.mark.parametrize("name", sorted(ANSWERS))
def test_captured_answers_cut_at_every_byte(name: str) -> None:
    """A stream cut anywhere (the connection closed) is complete only once ``done`` is in;
    before that it is an incomplete reply, carrying exactly the text that came before."""
    body = body_of(name)
    done_at = body.index(b"event: done")
    for cut in range(len(body) + 1):
        text, error, done = interpret([body[:cut]])
        assert ANSWERS[name].startswith(text), cut
        if done:
            assert (text, error) == (ANSWERS[name], None), cut
            assert cut > done_at
        else:
            assert isinstance(error, IncompleteReplyError), (cut, error)


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_captured_errors_cut_at_every_byte_are_that_error_or_incomplete(name: str) -> None:
    body = body_of(name)
    error_type, _message = ERRORS[name]
    for cut in range(len(body) + 1):
        text, error, _done = interpret([body[:cut]])
        assert text == ""
        assert isinstance(error, error_type | IncompleteReplyError), (cut, error)
    assert isinstance(interpret([body])[1], error_type)


@settings(deadline=None, max_examples=150)
@given(
    name=st.sampled_from(sorted(ANSWERS) + sorted(ERRORS)),
    cuts=st.lists(st.integers(min_value=0, max_value=5000), max_size=30),
)
def test_any_chunking_gives_the_same_text_and_outcome(name: str, cuts: list[int]) -> None:
    body = body_of(name)
    points = sorted({min(cut, len(body)) for cut in cuts})
    chunks = [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]
    whole = interpret([body])
    text, error, done = interpret(chunks)
    assert (text, type(error), done) == (whole[0], type(whole[1]), whole[2])
    assert str(error) == str(whole[1])


# --- every kind of event ---------------------------------------------------------------------


def test_deltas_before_message_start_are_not_text() -> None:
    """As in the plugin's own script: text begins with ``message_start``."""
    body = frames(delta("early"), START, delta("Hi"), DONE)
    assert interpret([body]) == ("Hi", None, True)


def test_informational_events_never_break_the_text() -> None:
    body = frames(
        START,
        'event: status\ndata: {"type":"response.created","status":"in_progress"}',
        delta("Hel"),
        'event: citations\ndata: [{"url":"https://x.test"}]',
        'event: grounding_metadata\ndata: {"x":1}',
        "event: some_future_event\ndata: not even json",
        "event: warning\nid: w-1\n" + 'data: {"error":"Vector store slow"}',
        delta("lo"),
        'event: openai_response_id\ndata: {"id":"resp_1"}',
        'event: done\ndata: {"finished":true,"citations":[]}',
    )
    assert interpret([body]) == ("Hello", None, True)


def test_warnings_are_logged_and_other_events_traced() -> None:
    interpreter = AipkitInterpreter(URL)
    decoder = SSEDecoder()
    interpreter.feed(
        decoder.feed(
            frames(START, 'event: warning\ndata: {"error":"slow"}', "event: status\ndata: {}")
        )
    )
    assert interpreter.notices == [("warning", '{"error":"slow"}'), ("status", "{}")]


def test_an_error_after_an_empty_delta_is_raised_at_once() -> None:
    """An empty delta is no text: the error in the same batch is not held back for
    text that never came (it would wait for the next read, which may never come)."""
    interpreter = AipkitInterpreter(URL)
    events = SSEDecoder().feed(
        frames(START, 'data: {"delta":""}', 'event: error\ndata: {"error":"API Error: boom"}')
    )
    with pytest.raises(UpstreamError):
        interpreter.feed(events)


def test_an_error_after_text_is_raised_after_that_text() -> None:
    body = frames(START, delta("Hel"), 'event: error\ndata: {"error":"API Error: boom"}')
    text, error, done = interpret([body])
    assert text == "Hel"
    assert isinstance(error, UpstreamError)
    assert not done


def test_an_error_then_done_is_that_error() -> None:
    body = frames('event: error\nid: err-1\ndata: {"error":"Invalid chatbot specified."}', DONE)
    _text, error, _done = interpret([body])
    assert isinstance(error, SiteError)
    assert error.site_message == "Invalid chatbot specified."


def test_an_error_without_a_string_message_is_still_an_error() -> None:
    _text, error, _done = interpret([frames('event: error\ndata: {"code": 7}')])
    assert isinstance(error, SiteError)
    assert '"code": 7' in str(error)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("Security check failed. Please refresh the page and try again.", NonceRejectedError),
        ("Security check failed (nonce).", NonceRejectedError),
        ("You have reached your quota for this period.", TokenLimitError),
        ("You have reached your token limit for this period.", TokenLimitError),
        ("Access disabled for guests.", TokenLimitError),
        ("Access from your IP address has been blocked.", IPBannedError),
        (
            "Sorry, your message could not be sent as it contains prohibited words.",
            MessageFlaggedError,
        ),
        (
            "Your message was flagged by the moderation system and could not be sent.",
            MessageFlaggedError,
        ),
        ("Message cache key is missing.", StaleRequestError),
        ("Cached message has expired.", StaleRequestError),
        ("Message or image cannot be empty.", EmptyMessageError),
        ("Conversation ID is missing.", SiteError),
        ("API Error: Rate limit reached (Code: rate_limit_exceeded)", UpstreamError),
        ("Connection error: no data received from AI.", UpstreamError),
        ("cURL error 28: Operation timed out", UpstreamError),
        ("Something the plugin says one day", SiteError),
    ],
)
def test_error_messages_map_to_the_classic_dialects_types(
    message: str, expected: type[ChatGpttError]
) -> None:
    error = event_error(message, URL, nonce=NONCE)
    assert type(error) is expected
    assert message in str(error)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("The server had an error while processing your request.", UpstreamError),
        ("Something the plugin says one day", UpstreamError),
        ("You have reached your quota for this period.", TokenLimitError),
        ("Security check failed (nonce).", NonceRejectedError),
    ],
)
def test_an_unknown_error_during_the_answer_is_the_models(
    message: str, expected: type[ChatGpttError]
) -> None:
    """After ``message_start`` the model is being called: the plugin's own refusals keep
    their types, and anything else (the model's bare error chunk) is an UpstreamError —
    before it, the same unknown message is the site's."""
    error_frame = "event: error\ndata: " + json.dumps({"error": message})
    _text, during, _done = interpret([frames(START, error_frame)])
    assert type(during) is expected
    _text, before, _done = interpret([frames(error_frame, DONE)])
    assert type(before) is (SiteError if expected is UpstreamError else expected)


def test_a_quota_notice_is_a_token_limit_whatever_its_message() -> None:
    notice = {"type": "quota_notice", "message": "Upgrade!", "actions": []}
    body = frames(
        "event: error\ndata: " + json.dumps({"error": "Custom words", "quota_notice": notice})
    )
    _text, error, _done = interpret([body])
    assert isinstance(error, TokenLimitError)
    assert error.site_message == "Custom words"


@pytest.mark.parametrize(
    "event",
    [
        "data: not json",
        'data: ["delta"]',
        'data: {"delta": 5}',
        'data: {"text": "hi"}',
        "event: error\ndata: not json",
    ],
)
def test_malformed_frames_are_named(event: str) -> None:
    _text, error, _done = interpret([frames(START, event)])
    assert isinstance(error, MalformedResponseError)


def test_a_stream_that_closes_without_done_is_incomplete_and_keeps_its_text() -> None:
    text, error, _done = interpret([frames(START, delta("part"))])
    assert text == "part"
    assert isinstance(error, IncompleteReplyError)
    assert isinstance(error, ProviderConnectionError), "so that it is retried before text"


def test_done_without_a_final_blank_line_still_ends_the_answer() -> None:
    body = frames(START, delta("Hi")) + b'event: done\ndata: {"finished":true}\n'
    assert interpret([body]) == ("Hi", None, True)


# --- the stage -------------------------------------------------------------------------------


def with_reply(exchange: Exchange, body: MemoryBody, content_type: str | None) -> Exchange:
    headers = CIMultiDict({"Content-Type": content_type} if content_type else {})
    reply = Reply(url=URL, status=200, headers=CIMultiDictProxy(headers), body=body)
    query = (("bot_id", "5"), ("session_id", "s-1"), ("conversation_uuid", "c-1"))
    return attrs.evolve(exchange, tokens=TOKENS, reply=reply, query=query)


async def collect(exchange: Exchange) -> str:
    assert exchange.text is not None
    return "".join([chunk async for chunk in exchange.text])


def conversation_exchange(exchange_for, store: ConversationStore, body: MemoryBody) -> Exchange:
    exchange = with_reply(exchange_for(), body, "text/event-stream; charset=utf-8")
    call = attrs.evolve(exchange.call, conversations=store)
    return attrs.evolve(exchange, call=call)


async def test_the_stage_streams_the_answer_and_remembers_the_conversation(exchange_for) -> None:
    store = ConversationStore()
    body = MemoryBody([body_of("stream_ok")])
    exchange = conversation_exchange(exchange_for, store, body)
    result = await DecodeAipkitStream()(exchange)
    assert await collect(result) == ANSWERS["stream_ok"]
    assert body.closed
    held = extend_key(
        conversation_key(conversation_site(TOKENS), exchange.call.messages),
        "assistant",
        hashlib.sha256(ANSWERS["stream_ok"].encode()).digest(),
    )
    assert store.take(held) == {"session_id": "s-1", "conversation_uuid": "c-1"}


async def test_an_answer_not_read_to_done_is_not_remembered(exchange_for) -> None:
    store = ConversationStore()
    body = MemoryBody([frames(START, delta("Hel")), frames(delta("lo"), DONE)])
    result = await DecodeAipkitStream()(conversation_exchange(exchange_for, store, body))
    assert result.text is not None
    assert await anext(result.text) == "Hel"
    await result.text.aclose()
    assert len(store) == 0
    assert body.closed


async def test_a_failed_answer_is_not_remembered(exchange_for) -> None:
    store = ConversationStore()
    body = MemoryBody([frames(START, delta("Hel"))])
    result = await DecodeAipkitStream()(conversation_exchange(exchange_for, store, body))
    with pytest.raises(IncompleteReplyError):
        await collect(result)
    assert len(store) == 0


async def test_with_history_flatten_nothing_is_remembered(exchange_for) -> None:
    store = ConversationStore()
    exchange = conversation_exchange(exchange_for, store, MemoryBody([body_of("stream_ok")]))
    exchange = attrs.evolve(
        exchange,
        call=attrs.evolve(
            exchange.call, settings=attrs.evolve(exchange.call.settings, history="flatten")
        ),
    )
    assert await collect(await DecodeAipkitStream()(exchange)) == ANSWERS["stream_ok"]
    assert len(store) == 0


async def test_an_error_before_text_fails_inside_the_stage(exchange_for) -> None:
    """Primed: the failure happens in the pipeline, where it is retried or renewed."""
    body = MemoryBody([body_of("stream_bad_nonce")])
    with pytest.raises(NonceRejectedError):
        await DecodeAipkitStream()(with_reply(exchange_for(), body, "text/event-stream"))
    assert body.closed


async def test_a_cut_before_text_is_a_retryable_incomplete_reply(exchange_for) -> None:
    body = MemoryBody([frames(START)])
    with pytest.raises(IncompleteReplyError, match="without its 'done' event"):
        await DecodeAipkitStream()(with_reply(exchange_for(), body, "text/event-stream"))


@pytest.mark.parametrize(
    ("content", "content_type", "error", "quoted"),
    [
        (b"<title>Just a moment...</title>", "text/html", BotProtectionError, None),
        (
            b"<b>Fatal error</b>: Uncaught Error in x.php",
            "text/html",
            MalformedResponseError,
            "Fatal error",
        ),
        (b'{"success":false}', "application/json", MalformedResponseError, "success"),
        (b"", "text/event-stream", MalformedResponseError, None),
        (
            b"<b>Fatal error</b>: in x.php",
            "text/event-stream",
            MalformedResponseError,
            "Fatal error",
        ),
        (b"<title>Just a moment...</title>", "text/event-stream", BotProtectionError, None),
    ],
)
async def test_a_reply_that_is_no_event_stream_says_what_came(
    exchange_for, content: bytes, content_type: str, error: type, quoted: str | None
) -> None:
    body = MemoryBody([content])
    with pytest.raises(error) as info:
        await DecodeAipkitStream()(with_reply(exchange_for(), body, content_type))
    if quoted is not None:
        assert quoted in str(info.value)
    assert body.closed


async def test_the_captured_stream_through_the_stage_cut_in_two_anywhere(exchange_for) -> None:
    body = body_of("responses_api_stream_ok")
    for cut in range(0, len(body) + 1, 7):
        chunks = MemoryBody([body[:cut], body[cut:]])
        result = await DecodeAipkitStream()(with_reply(exchange_for(), chunks, "text/event-stream"))
        assert await collect(result) == ANSWERS["responses_api_stream_ok"], cut


async def test_warnings_reach_the_log_when_someone_listens(exchange_for) -> None:
    body = MemoryBody([frames(START, 'event: warning\ndata: {"error":"slow"}', delta("Hi"), DONE)])
    structlog.configure(processors=[])
    try:
        with capture_logs() as logs:
            result = await DecodeAipkitStream()(
                with_reply(exchange_for(), body, "text/event-stream")
            )
            assert await asyncio.wait_for(collect(result), 5) == "Hi"
    finally:
        structlog.reset_defaults()
    assert {"event": "aipkit.warning", "data": '{"error":"slow"}', "log_level": "warning"} in logs


@settings(deadline=None, max_examples=300)
@given(text=st.text(), ascii_only=st.booleans(), php_slashes=st.booleans())
def test_any_delta_text_comes_back_exactly(text: str, ascii_only: bool, php_slashes: bool) -> None:
    """Whether the fast path or the JSON decoder reads it, a delta's text is its text."""
    encoded = json.dumps({"delta": text}, ensure_ascii=ascii_only, separators=(",", ":"))
    if php_slashes:
        encoded = encoded.replace("/", "\\/")
    interpreter = AipkitInterpreter(URL)
    interpreter.started = True
    assert interpreter.feed([ServerSentEvent(encoded)]) == text
