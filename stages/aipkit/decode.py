"""AIPKit stream decode: the step-2 event stream into answer text, or the typed error it
carries (PROTOCOL-AIPKIT.md §3–§4, and what the real 2.4.71 sent).

- The body opens with a padding comment (``:`` and 4096 spaces), which SSE skips.
- ``message_start`` opens the answer; the text is the ``{"delta":…}`` data of the
  unnamed events after it (the plugin's own script ignores deltas before it).
- ``done`` ends the answer — the only way it ends: a stream that closes without
  ``done`` and without ``error`` was cut off (:class:`IncompleteReplyError`).
- ``error`` is the site's refusal or the model's failure, mapped to the same typed
  errors as the classic dialect; whether ``done`` follows it or not, it is that error.
- ``warning`` is logged, never text; ``status``, ``openai_response_id``, ``citations``,
  ``grounding_metadata`` and unknown events are traced and never break the text.

:class:`AipkitInterpreter` is pure (events in, text out); :class:`DecodeAipkitStream`
wires it to the reply body, primes the stream, and — once ``done`` arrived — tells the
conversation store that the server now holds this conversation one turn longer.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any, ClassVar

import attrs
import structlog

from stages.aipkit.payload import conversation_site, give_back
from stages.aipkit.tokens import AipkitTokens
from stages.conversations import AnswerDigest, held_key
from stages.core import Body, Exchange, TextStream, require, require_tokens
from stages.errors import (
    BotProtectionError,
    ChatGpttError,
    EmptyMessageError,
    IncompleteReplyError,
    IPBannedError,
    MalformedResponseError,
    MessageFlaggedError,
    NonceRejectedError,
    ResponseTooLargeError,
    SiteError,
    StaleRequestError,
    TokenLimitError,
    UpstreamError,
    excerpt,
)
from stages.http import read_prefix, readable_excerpt
from stages.protection import detect_protection
from stages.replies import TextFirst, eventless
from stages.sse import ServerSentEvent, SSEDecoder, SSELineTooLongError

__all__ = ["AipkitInterpreter", "DecodeAipkitStream", "event_error"]

_log = structlog.get_logger("chatgptt")

#: Events that carry no text and change nothing: traced only.
_INFORMATIONAL = frozenset(
    {
        "status",
        "openai_response_id",
        "google_interaction_id",
        "citations",
        "grounding_metadata",
        "display_form_event",
    }
)
#: A text event whose JSON needs no unescaping (no backslash, quote or control character
#: in its text): most deltas. Anything else goes through the JSON decoder.
_SIMPLE_DELTA = re.compile(r'\{"delta":"([^"\\\x00-\x1f]*)"\}')
#: How much of a body that is not an event stream is kept to quote it.
_PREVIEW_BYTES = 1024
_SSE_START = (b":", b"data:", b"event:", b"id:", b"retry:")

_STALE_REQUEST = (
    "Message cache key is missing.",
    "Message not found in cache.",
    "Cached message has expired.",
)
_INVALID_REQUEST = (
    "Invalid chatbot specified.",
    "Conversation ID is missing.",
    "Session ID is missing for guest.",
)
_QUOTA = (
    "You have reached your quota",
    "You have reached your token limit",
    "Access disabled for guests.",
)
_BANNED_IP = "Access from your IP address has been blocked."
_BANNED_WORDS = "contains prohibited words"
_MODERATION = "flagged by the moderation system"


def event_error(
    message: str,
    url: str,
    *,
    nonce: str | None = None,
    quota: bool = False,
    answering: bool = False,
) -> ChatGpttError:
    """The typed error an ``error`` event's message means (the site's own strings).

    ``answering``: the event came after ``message_start``, while the model was called. The
    plugin refuses before it starts an answer; what fails during the call is the model
    behind it (PROTOCOL-AIPKIT.md §3: a cURL error, an HTTP error, no data, or the model's
    own error chunk, whose message comes bare), so a message not known as the site's own is
    an :class:`UpstreamError` there.
    """
    if message.startswith("Security check failed"):
        return NonceRejectedError(url, message, nonce=nonce)
    if quota or message.startswith(_QUOTA):
        return TokenLimitError(
            "the site's guest quota is reached: " + message, site_message=message
        )
    if message.startswith(_BANNED_IP):
        return IPBannedError("the site bans this IP address: " + message, site_message=message)
    if _BANNED_WORDS in message or _MODERATION in message:
        return MessageFlaggedError("the site refused the message: " + message, site_message=message)
    if message in _STALE_REQUEST:
        return StaleRequestError(
            "the site no longer held the message to answer (its one-use cache key): " + message,
            site_message=message,
        )
    if message == "Message or image cannot be empty.":
        return EmptyMessageError(
            "the site found the message empty: " + message, site_message=message
        )
    if message in _INVALID_REQUEST:
        return SiteError("the site refused the request: " + message, site_message=message)
    if answering or message.startswith(("API Error:", "Connection error:", "cURL error")):
        return UpstreamError("the model behind the site failed: " + message, site_message=message)
    return SiteError("the site reported an error: " + message, site_message=message)


class AipkitInterpreter(TextFirst):
    """Turns AIPKit events into answer text, or raises what they mean (pure).

    ``notices`` collects the events that carry no text (``warning``, ``status``…) as
    ``(event, data)`` pairs for the caller to trace; it never grows past a few.
    """

    __slots__ = ("done", "events", "nonce", "notices", "started", "url")

    def __init__(self, url: str, *, nonce: str | None = None) -> None:
        super().__init__()
        self.url = url
        self.nonce = nonce
        self.started = False
        self.done = False
        self.events = 0
        self.notices: list[tuple[str, str]] = []

    def feed(self, events: Iterable[ServerSentEvent]) -> str:
        """The answer text these events carry, joined.

        An ``error`` event raises — after the text that preceded it: when text came
        first in the same batch, that text is returned and the error is kept for
        :meth:`check`.
        """
        self.check()
        parts: list[str] = []
        simple_delta = _SIMPLE_DELTA.fullmatch
        count = 0
        try:
            for event in events:
                count += 1
                if self.done:
                    break
                kind = event.event
                if not kind or kind == "message":
                    # Most events: a delta whose text needs no unescaping, once started.
                    simple = simple_delta(event.data) if self.started else None
                    if simple is not None:
                        if simple[1]:
                            parts.append(simple[1])
                    else:
                        text = self._delta(event.data)
                        if text:
                            parts.append(text)
                elif kind == "message_start":
                    self.started = True
                elif kind == "done":
                    self.done = True
                elif kind == "error":
                    raise self._error(event.data)
                else:
                    if len(self.notices) < 64:
                        self.notices.append((kind, event.data))
        except ChatGpttError as exc:
            return self._hold(exc, parts)
        finally:
            self.events += count
        return "".join(parts)

    def flush(self, decoder: SSEDecoder) -> str:
        """The stream closed: the text of an event it ended inside, if that event is whole.

        The spec drops an event whose blank line never came; one whose lines all came
        whole is kept instead (its text, or its ``done``), and one cut inside a line says
        the reply was cut (:class:`IncompleteReplyError`). Then call :meth:`end`.
        """
        if not decoder.pending:
            return ""
        if decoder.inside_line:
            raise IncompleteReplyError("the stream closed inside a line", url=self.url)
        try:
            return self.feed(decoder.feed(b"\n\n"))
        except MalformedResponseError:
            raise IncompleteReplyError("the stream closed inside an event", url=self.url) from None

    def end(self) -> None:
        """The stream closed; raises unless ``done`` ended the answer."""
        self.check()
        if not self.done:
            what = "the stream closed without its 'done' event"
            if not self.started:
                what += " (and before 'message_start')"
            raise IncompleteReplyError(what, url=self.url)

    def _object(self, data: str, what: str) -> dict[str, Any]:
        try:
            value = json.loads(data)
        except ValueError:
            raise MalformedResponseError(
                f"{what} is not valid JSON", url=self.url, preview=excerpt(data)
            ) from None
        if not isinstance(value, dict):
            raise MalformedResponseError(
                f"{what} is not a JSON object", url=self.url, preview=excerpt(data)
            )
        return value

    def _delta(self, data: str) -> str:
        value = self._object(data, "a text event")
        delta = value.get("delta")
        if not isinstance(delta, str):
            raise MalformedResponseError(
                "a text event without a string 'delta'", url=self.url, preview=excerpt(data)
            )
        if not self.started:
            if len(self.notices) < 64:
                self.notices.append(("delta_before_message_start", data))
            return ""
        return delta

    def _error(self, data: str) -> ChatGpttError:
        value = self._object(data, "an error event")
        message = value.get("error")
        if not isinstance(message, str) or not message:
            message = json.dumps(value, ensure_ascii=False)
        quota = isinstance(value.get("quota_notice"), dict)
        return event_error(message, self.url, nonce=self.nonce, quota=quota, answering=self.started)


#: Refusals the plugin sends before it logs the user message (validation, quota,
#: moderation run first): the server's conversation did not move.
_REFUSED_BEFORE_LOGGING = (
    NonceRejectedError,
    StaleRequestError,
    TokenLimitError,
    IPBannedError,
    MessageFlaggedError,
    EmptyMessageError,
)


def _before_the_model(exc: ChatGpttError) -> bool:
    if isinstance(exc, _REFUSED_BEFORE_LOGGING):
        return True
    return type(exc) is SiteError and exc.site_message in _INVALID_REQUEST


def _trace(notices: list[tuple[str, str]]) -> None:
    if not notices:
        return
    if structlog.is_configured():
        for kind, data in notices:
            if kind == "warning":
                _log.warning("aipkit.warning", data=excerpt(data))
            else:
                _log.debug("aipkit.event", event=kind, data=excerpt(data))
    notices.clear()


def _not_a_stream(prefix: bytes, url: str, media: str, headers: Mapping[str, str]) -> ChatGpttError:
    """The error for a step-2 reply that is not an event stream at all (wrong type)."""
    protection = detect_protection(prefix, headers)
    if protection is not None:
        return BotProtectionError(url, 200, protection.marker, firewall=protection.firewall)
    if not prefix.strip():
        return MalformedResponseError(f"an empty reply ({media})", url=url)
    return MalformedResponseError(
        f"expected an event stream, got {media}", url=url, preview=readable_excerpt(prefix)
    )


async def _event_texts(
    body: Body,
    url: str,
    headers: Mapping[str, str],
    max_event_bytes: int,
    interpreter: AipkitInterpreter,
    digest: AnswerDigest,
    on_done: Callable[[], None],
) -> AsyncIterator[str]:
    """The answer's text as the body's chunks arrive, each chunk added to ``digest``
    before it is yielded; ``on_done`` once ``done`` came."""
    decoder = SSEDecoder(max_line_bytes=max_event_bytes)
    prefix = b""
    try:
        async for chunk in body:
            if len(prefix) < _PREVIEW_BYTES:
                prefix += chunk[: _PREVIEW_BYTES - len(prefix)]
            try:
                events = decoder.feed(chunk)
            except SSELineTooLongError as exc:
                raise ResponseTooLargeError("a stream line", max_event_bytes, url=url) from exc
            if decoder.buffered_bytes > max_event_bytes:
                raise ResponseTooLargeError("a stream event", max_event_bytes, url=url)
            if events:
                text = interpreter.feed(events)
                if interpreter.notices:
                    _trace(interpreter.notices)
                if text:
                    digest.update(text)
                    yield text
                    interpreter.check()
                if interpreter.done:
                    on_done()
                    return
        if interpreter.events == 0:
            start = prefix.lstrip().removeprefix(b"\xef\xbb\xbf")
            if not start.startswith(_SSE_START):
                raise eventless(prefix, url, cut=decoder.inside_line, headers=headers)
        text = interpreter.flush(decoder)
        _trace(interpreter.notices)
        if text:
            digest.update(text)
            yield text
        if interpreter.done:
            on_done()
            return
        decoder.close()
        interpreter.end()
    finally:
        await body.aclose()


@attrs.frozen
class DecodeAipkitStream:
    """Decode step 2's event stream into a primed :class:`TextStream`.

    When ``done`` arrives, the conversation (the caller's messages and this answer)
    is put in the call's conversation store with the ids it continues with, unless
    the call folds every conversation (``history="flatten"``).
    """

    name: str = "decode"
    #: Every wait of this stage is bounded by the call's deadline (or it has none).
    honours_deadline: ClassVar[bool] = True

    async def __call__(self, exchange: Exchange, /) -> Exchange:
        reply = require(exchange.reply, self.name, "reply")
        tokens = require_tokens(exchange, AipkitTokens, self.name)
        call = exchange.call
        body = reply.body
        media = reply.media_type
        if media != "text/event-stream":
            try:
                prefix = await read_prefix(body)
            finally:
                await body.aclose()
            raise _not_a_stream(prefix, reply.url, media or "no Content-Type", reply.headers)
        interpreter = AipkitInterpreter(reply.url, nonce=tokens.nonce)
        digest = AnswerDigest()
        on_done = _remember(exchange, tokens, digest)
        texts = _event_texts(
            body,
            reply.url,
            reply.headers,
            call.settings.limits.max_event_bytes,
            interpreter,
            digest,
            on_done,
        )
        stream = TextStream(texts, on_close=body.aclose)
        try:
            await stream.prime()
        except ChatGpttError as exc:
            await stream.aclose()
            if _before_the_model(exc):
                give_back(exchange)
            raise
        except BaseException:
            await stream.aclose()
            raise
        return attrs.evolve(exchange, text=stream)


def _remember(exchange: Exchange, tokens: AipkitTokens, digest: AnswerDigest) -> Callable[[], None]:
    call = exchange.call
    store = call.conversations
    query = dict(exchange.query or ())
    ids: dict[str, str] = {
        key: query[key] for key in ("session_id", "conversation_uuid") if key in query
    }

    def on_done() -> None:
        if store is None or call.settings.history != "messages" or len(ids) != 2:
            return
        store.put(held_key(conversation_site(tokens), call.messages, digest), ids)

    return on_done
