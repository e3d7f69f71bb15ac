"""Stream decode: the reply's bytes, by ``Content-Type``, into answer text or typed errors.

The pure parts — :class:`StreamInterpreter` (SSE events to text) and
:func:`decode_json_reply` — do no I/O and are what the property tests exercise;
:class:`DecodeReply` wires them to the reply body and primes the stream (reads up to its
first text) so that a failure before any text stays retryable.

An answer is complete only when the site says so: a stream ends with ``[DONE]`` or a
frame with a ``finish_reason``. A stream that stops without either was cut off — by a
dropped connection, a proxy, a PHP worker that died — even when the connection closed
cleanly (the real site's PHP server marks the end of a body only by closing it). That is an
:class:`IncompleteReplyError`: retried before any text, the ``cause`` of a
``StreamInterruptedError`` after. A 200 event stream with no event at all (an empty body, a
PHP error page, a firewall's page) is no answer either: a ``MalformedResponseError`` that
quotes it, or a ``BotProtectionError``.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Iterable
from typing import Any, ClassVar

import attrs

from stages.core import Body, Exchange, Reply, TextStream, require
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
    TokenLimitError,
    UpstreamError,
    excerpt,
)
from stages.http import ERROR_PREVIEW_BYTES, read_prefix
from stages.protection import detect_protection
from stages.replies import TextFirst, cut_json, eventless
from stages.sse import ServerSentEvent, SSEDecoder, SSELineTooLongError

__all__ = [
    "CONTROL_FLAGS",
    "DecodeReply",
    "StreamInterpreter",
    "decode_json_reply",
    "site_error",
]

#: After the answer's finish frame, at most this much more is read looking for
#: ``[DONE]`` (so the connection can be reused) before the connection is dropped ...
DRAIN_LIMIT = 64 * 1024
#: ... and for at most this long in total, counted from the finish frame: the answer is
#: complete, the caller must not wait on a server that is slow to say so (or that keeps
#: sending comments and never does).
DRAIN_SECONDS = 0.25

_ERROR_WORD = re.compile(r'\{"choices":\[\{"delta":\{"content":"(.*)"\}\}\]\}', re.DOTALL)


def _control_error(flag: str) -> type[SiteError]:
    return {
        "tokenLimitReached": TokenLimitError,
        "messageFlagged": MessageFlaggedError,
        "modflag": MessageFlaggedError,
        "ipBanned": IPBannedError,
        "pineconeError": UpstreamError,
    }[flag]


#: The control frames' flags (PROTOCOL.md §5), each raised as its own error type.
CONTROL_FLAGS: tuple[str, ...] = (
    "tokenLimitReached",
    "messageFlagged",
    "modflag",
    "ipBanned",
    "pineconeError",
)


def site_error(message: str, url: str, *, nonce: str | None = None) -> ChatGpttError:
    """The typed error for the ``msg`` of a ``{"status":"error"}`` reply (PROTOCOL.md §4)."""
    if message.startswith(("Nonce verification failed", "Invalid nonce")):
        return NonceRejectedError(url, message, nonce=nonce)
    if message == "It appears that nothing was inputted.":
        return EmptyMessageError(
            "the site found the message empty (it rejects '' and '0'): " + message,
            site_message=message,
        )
    if message == "You are not allowed to access this feature.":
        return IPBannedError("the site bans this IP address: " + message, site_message=message)
    if "prohibited words" in message:
        return MessageFlaggedError("the site refused the message: " + message, site_message=message)
    if message.startswith("Unable to initialize the AI instance"):
        return SiteError("the site's AI is not set up: " + message, site_message=message)
    return UpstreamError("the model behind the site failed: " + message, site_message=message)


def _flag_error(obj: dict[str, Any]) -> ChatGpttError | None:
    for flag in CONTROL_FLAGS:
        if obj.get(flag):
            message = obj.get("msg")
            text = message if isinstance(message, str) and message else flag
            return _control_error(flag)(
                f"the site stopped the answer ({flag}): {text}", site_message=text
            )
    return None


def decode_json_reply(body: bytes, url: str, *, nonce: str | None = None) -> str:
    """The answer text of a JSON reply (PROTOCOL.md §4), or the typed error it carries."""
    obj = _loads_or_fail(body.decode("utf-8", "replace"), body, url)
    if not isinstance(obj, dict):
        raise MalformedResponseError(
            "the JSON reply is not an object", url=url, preview=excerpt(body)
        )
    data = obj.get("data")
    if isinstance(data, str) and obj.get("status") == "success":
        return data  # the common case: no control flag comes with a success
    flagged = _flag_error(obj)
    if flagged is not None:
        raise flagged
    status = obj.get("status")
    if status == "success":
        data = obj.get("data")
        if isinstance(data, str):
            return data
        raise MalformedResponseError(
            "a success reply without text in 'data'", url=url, preview=excerpt(body)
        )
    if status == "error":
        message = obj.get("msg")
        raise site_error(message if isinstance(message, str) else repr(message), url, nonce=nonce)
    raise MalformedResponseError(
        "a JSON reply without a known 'status'", url=url, preview=excerpt(body)
    )


def _loads_or_fail(text: str, body: bytes, url: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise MalformedResponseError(
            "the JSON reply does not parse", url=url, preview=excerpt(body)
        ) from None


class StreamInterpreter(TextFirst):
    """Turns the plugin's SSE events into answer text, or raises what they mean.

    - OpenAI chunks: the text of ``choices[0].delta.content`` or ``choices[0].text``.
      The answer ends at ``[DONE]`` or at a ``finish_reason`` (later frames are not
      answer text); a stream that ends before either is incomplete (:meth:`end`).
    - The plugin's upstream-error form (PROTOCOL.md §5, §7): the first frame has no
      ``id``/``object``, comes as ``event: message``, and carries a word of the error
      message (not JSON-escaped, so it may not parse). Its words are collected, never
      yielded, and raised as :class:`UpstreamError` at its finish frame, ``[LIMITED]``
      or the end of the stream.
    - Control frames (``{"msg":…,"ipBanned":true}`` …) and ``{"error":{…}}`` raise
      their typed errors; ``[LIMITED]`` is the site giving up mid-answer.
    - A frame that is not JSON, or JSON of an unknown shape, is a
      :class:`MalformedResponseError` naming the frame: text is never dropped silently.
    """

    __slots__ = ("_error_words", "_mode", "done", "finished", "seen", "url")

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        #: ``[DONE]`` came: the site said the answer is complete.
        self.done = False
        #: A ``finish_reason`` came: the answer's text is complete.
        self.finished = False
        #: At least one event came.
        self.seen = False
        self._mode: str | None = None
        self._error_words: list[str] = []

    def feed(self, events: Iterable[ServerSentEvent]) -> str:
        """The answer text these events carry, joined.

        An error frame raises — after the text that preceded it: when text came
        first in the same batch, that text is returned and the error is kept for
        :meth:`check` (so the caller gets everything the site sent, in order).
        """
        self.check()
        parts: list[str] = []
        try:
            for event in events:
                self.seen = True
                if self.done:
                    break
                data = event.data
                if data == "[DONE]":
                    self.done = True
                    break
                if data == "[LIMITED]":
                    raise self._limited()
                if self.finished:
                    continue
                text = self._text_of(event, data)
                if text:
                    parts.append(text)
        except ChatGpttError as exc:
            return self._hold(exc, parts)
        return "".join(parts)

    def end(self) -> None:
        """The stream ended; raises if what came so far was an error, or not a whole answer.

        Raises:
            UpstreamError: the stream was the plugin's upstream-error form.
            IncompleteReplyError: neither ``[DONE]`` nor a ``finish_reason`` came.
            MalformedResponseError: no event came at all.
        """
        self.check()
        if self._mode == "error":
            raise self._upstream()
        if self.done or self.finished:
            return
        if not self.seen:
            raise MalformedResponseError("an event stream without a single event", url=self.url)
        raise IncompleteReplyError(
            "the stream ended without a finish frame or [DONE]", url=self.url
        )

    def _text_of(self, event: ServerSentEvent, data: str) -> str:
        try:
            obj = json.loads(data)
        except ValueError:
            match = _ERROR_WORD.fullmatch(data)
            if match is not None and self._mode in (None, "error") and event.event == "message":
                self._mode = "error"
                self._error_words.append(match.group(1))
                return ""
            raise MalformedResponseError(
                "a stream frame is not valid JSON", url=self.url, preview=excerpt(data)
            ) from None
        if not isinstance(obj, dict):
            raise MalformedResponseError(
                "a stream frame is not a JSON object", url=self.url, preview=excerpt(data)
            )
        if self._mode is None:
            is_error_form = event.event == "message" and "id" not in obj and "object" not in obj
            self._mode = "error" if is_error_form and "choices" in obj else "answer"
        choices = obj.get("choices")
        if not isinstance(choices, list):  # not an answer chunk: say what it is instead
            raise self._not_a_chunk(obj, data)
        if not choices:
            return ""  # e.g. Azure's prompt-filter frame
        choice = choices[0]
        if not isinstance(choice, dict):
            raise MalformedResponseError(
                "a choice is not an object", url=self.url, preview=excerpt(data)
            )
        delta = choice.get("delta")
        text: Any = delta.get("content") if isinstance(delta, dict) else None
        if text is None:
            text = choice.get("text")
        if text is not None and not isinstance(text, str):
            raise MalformedResponseError(
                "the text of a frame is not a string", url=self.url, preview=excerpt(data)
            )
        if self._mode == "error":
            if text:
                self._error_words.append(text)
            if choice.get("finish_reason"):
                raise self._upstream()
            return ""
        if choice.get("finish_reason"):
            self.finished = True
        return text or ""

    def _not_a_chunk(self, obj: dict[str, Any], data: str) -> ChatGpttError:
        flagged = _flag_error(obj)
        if flagged is not None:
            return flagged
        error = obj.get("error")
        if error:
            message = error.get("message") if isinstance(error, dict) else error
            reason = message if isinstance(message, str) else json.dumps(error)
            return UpstreamError("the model behind the site failed: " + reason, site_message=reason)
        what = (
            "a stream frame without 'choices'"
            if "choices" not in obj
            else "'choices' is not a list"
        )
        return MalformedResponseError(what, url=self.url, preview=excerpt(data))

    def _upstream(self) -> UpstreamError:
        message = "".join(self._error_words).strip() or "(no message)"
        return UpstreamError("the model behind the site failed: " + message, site_message=message)

    def _limited(self) -> UpstreamError:
        if self._mode == "error":
            return self._upstream()
        return UpstreamError(
            "the site broke off the answer ([LIMITED]): it hit an error while relaying it",
            site_message="[LIMITED]",
        )


class _Head:
    """The first bytes of a stream, kept until its first event to quote a stream that had none."""

    __slots__ = ("parts", "size")

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0

    def add(self, chunk: bytes) -> None:
        if self.size < ERROR_PREVIEW_BYTES:
            self.parts.append(chunk[: ERROR_PREVIEW_BYTES - self.size])
            self.size += len(self.parts[-1])

    def bytes(self) -> bytes:
        return b"".join(self.parts)


def _cut_frame(exc: MalformedResponseError, url: str) -> ChatGpttError:
    """A frame that does not parse where the body ends without its blank line was cut off."""
    if exc.what == "a stream frame is not valid JSON":
        return IncompleteReplyError(f"the stream ended inside a frame: {exc.preview}", url=url)
    return exc


async def _sse_texts(body: Body, url: str, max_event_bytes: int) -> AsyncIterator[str]:
    """The answer's text as the body's chunks arrive (one string per chunk that carried any)."""
    decoder = SSEDecoder(max_line_bytes=max_event_bytes)
    interpreter = StreamInterpreter(url)
    head: _Head | None = _Head()  # dropped at the first event
    drain_until: float | None = None  # set once, at the finish frame
    drained = 0
    chunks = aiter(body)
    try:
        try:
            while True:
                if drain_until is not None:
                    try:
                        async with asyncio.timeout_at(drain_until):
                            chunk = await anext(chunks)
                    except (TimeoutError, StopAsyncIteration):
                        return
                else:
                    try:
                        chunk = await anext(chunks)
                    except StopAsyncIteration:
                        break
                if head is not None:
                    head.add(chunk)
                try:
                    events = decoder.feed(chunk)
                except SSELineTooLongError as exc:
                    raise ResponseTooLargeError("a stream line", max_event_bytes, url=url) from exc
                if decoder.buffered_bytes > max_event_bytes:  # many short lines, no blank line
                    raise ResponseTooLargeError("a stream event", max_event_bytes, url=url)
                if drain_until is not None:
                    drained += len(chunk)
                if events:
                    head = None
                    text = interpreter.feed(events)
                    if interpreter.finished and drain_until is None:
                        drain_until = asyncio.get_running_loop().time() + DRAIN_SECONDS
                    if text:
                        yield text
                        interpreter.check()
                    if interpreter.done:
                        return
                if drain_until is not None and drained > DRAIN_LIMIT:
                    return
        except ChatGpttError:
            if interpreter.finished:
                return  # the answer was complete; only the wait for [DONE] failed
            raise
        cut = decoder.pending
        if cut:
            # The stream ended inside an event (no blank line after it). The spec drops
            # such an event; its text is kept instead when its frame is whole — a frame
            # cut short is what a cut connection leaves.
            last = decoder.feed(b"\n\n")
            if last:
                head = None
            try:
                text = interpreter.feed(last)
            except MalformedResponseError as exc:
                raise _cut_frame(exc, url) from exc
            if text:
                yield text
            try:
                interpreter.check()
            except MalformedResponseError as exc:
                raise _cut_frame(exc, url) from exc
        interpreter.feed(decoder.close())
        if head is not None and not interpreter.seen:
            raise eventless(head.bytes(), url, cut=cut)
        interpreter.end()
    finally:
        await body.aclose()


class _Prefixed:
    """A body with its first, already-read chunk put back in front."""

    __slots__ = ("_body", "_first")

    def __init__(self, first: bytes, body: Body) -> None:
        self._first: bytes | None = first
        self._body = body

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        if self._first is not None:
            first, self._first = self._first, None
            yield first
        async for chunk in self._body:
            yield chunk

    async def read(self, limit: int) -> bytes:
        first, self._first = self._first or b"", None
        if len(first) > limit:
            raise ResponseTooLargeError("the reply", limit)
        return first + await self._body.read(limit - len(first))

    async def aclose(self) -> None:
        await self._body.aclose()


def _json_failure(exc: MalformedResponseError, raw: bytes, reply: Reply) -> ChatGpttError:
    """What a JSON reply that does not parse means.

    With no declared length (``Content-Length`` or chunks: the real PHP server's replies)
    the body ends where the connection closed, so a document that stops before its end was
    most likely cut off: an :class:`IncompleteReplyError`, retried. With a declared length
    the site sent it so: ``exc`` stands. An empty body is never a cut answer: it says so.
    """
    if not raw.strip():
        return MalformedResponseError("an empty reply (declared as JSON)", url=reply.url)
    return cut_json(raw, reply.headers, reply.url) or exc


_SSE_START = (b"data:", b"event:", b"id:", b"retry:", b":")


async def _sniff(body: Body) -> tuple[str, Body]:
    """Guess ``json`` or ``sse`` from the first bytes when the Content-Type does not say."""
    async for chunk in body:
        if chunk.strip():
            start = chunk.lstrip().removeprefix(b"\xef\xbb\xbf")
            kind = (
                "json"
                if start.startswith((b"{", b"["))
                else ("sse" if start.startswith(_SSE_START) else "other")
            )
            return kind, _Prefixed(chunk, body)
    return "empty", body


@attrs.frozen
class DecodeReply:
    """Decode the reply by its ``Content-Type`` into a primed :class:`TextStream`.

    ``text/event-stream`` is streamed through the SSE decoder; JSON is read whole
    (up to ``Limits.max_body_bytes``). Anything else is sniffed: hosts mislabel
    replies, and a challenge page can arrive with status 200.
    """

    name: str = "decode"
    #: Every wait of this stage is bounded by the call's deadline (or it has none).
    honours_deadline: ClassVar[bool] = True

    async def __call__(self, exchange: Exchange, /) -> Exchange:
        reply = require(exchange.reply, self.name, "reply")
        limits = exchange.call.settings.limits
        body: Body = reply.body
        media = reply.media_type
        try:
            if media == "text/event-stream":
                kind = "sse"
            elif media == "application/json" or media.endswith("+json"):
                kind = "json"
            else:
                kind, body = await _sniff(body)
            if kind == "json":
                raw = await body.read(limits.max_body_bytes)
                await body.aclose()
                nonce = exchange.tokens.nonce if exchange.tokens is not None else None
                try:
                    text = decode_json_reply(raw, reply.url, nonce=nonce)
                except MalformedResponseError as exc:
                    raise _json_failure(exc, raw, reply) from exc
                stream = TextStream.of(text)
            elif kind == "sse":
                stream = TextStream(
                    _sse_texts(body, reply.url, limits.max_event_bytes), on_close=body.aclose
                )
            else:
                raise await self._unexpected(body, media or "no Content-Type", reply)
        except BaseException:
            await body.aclose()
            raise
        try:
            await stream.prime()
        except BaseException:
            await stream.aclose()
            raise
        return attrs.evolve(exchange, text=stream)

    @staticmethod
    async def _unexpected(body: Body, media: str, reply: Reply) -> ChatGpttError:
        url = reply.url
        preview = await read_prefix(body)
        protection = detect_protection(preview, reply.headers)
        if protection is not None:
            return BotProtectionError(
                url, reply.status, protection.marker, firewall=protection.firewall
            )
        if not preview.strip():
            return MalformedResponseError("an empty reply", url=url)
        return MalformedResponseError(
            f"expected JSON or an event stream, got {media}", url=url, preview=excerpt(preview)
        )
