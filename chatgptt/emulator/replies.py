"""How the emulated site writes its answers: the bytes (JSON, SSE frames) and their delivery.

A :class:`Reply` is the whole answer as data: status, headers in the site's spelling and
order, and the body as :class:`Frame` pieces (one per streamed write). :func:`send_reply`
plays it on the wire, applying a :class:`Delivery` — the pacing between content pieces and
the scripted stalls and drops — so faults can reshape any reply the same way.
"""

from __future__ import annotations

import json
import random
import string
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import ClassVar

import attrs
from aiohttp import web

from chatgptt.emulator.config import FrameStyleName, Framing
from chatgptt.emulator.wordpress import php_json_encode

__all__ = [
    "COMPLETION_CREATED",
    "COMPLETION_ID",
    "DONE_FRAME",
    "ERROR_FINISH_FRAME",
    "HTML_CONTENT_TYPE",
    "JSON_CONTENT_TYPE",
    "LIMITED_FRAME",
    "SSE_CONTENT_TYPE",
    "Delivery",
    "Frame",
    "FrameStyle",
    "Pause",
    "Reply",
    "ajax_html",
    "ajax_json",
    "answer_frames",
    "chunk_frame",
    "control_frame",
    "error_object_frame",
    "error_word_frames",
    "frame_style",
    "html_page",
    "send_reply",
    "split_answer",
    "sse_reply",
]

HTML_CONTENT_TYPE = "text/html; charset=UTF-8"
JSON_CONTENT_TYPE = "application/json; charset=UTF-8"
#: The plugin's spelling; it goes out under the header name ``Content-type``.
SSE_CONTENT_TYPE = "text/event-stream;charset=UTF-8"
#: The ``id`` and ``created`` of every streamed chunk, as the capture rig's upstream sent.
COMPLETION_ID = "chatcmpl-fake0001"
COMPLETION_CREATED = 1700000000

DONE_FRAME = b"data: [DONE]\n\n"
LIMITED_FRAME = b"data: [LIMITED]\n\n"
#: Ends the plugin's error-word stream (PROTOCOL.md §5): no ``id``, no ``[DONE]`` after it.
ERROR_FINISH_FRAME = b'data: {"choices":[{"finish_reason":"stop"}]}\n\n'

# What WordPress sends with admin-ajax answers, in the captures' order for each kind.
_ROBOTS = ("X-Robots-Tag", "noindex")
_NOSNIFF = ("X-Content-Type-Options", "nosniff")
_REFERRER = ("Referrer-Policy", "strict-origin-when-cross-origin")
_FRAMES = ("X-Frame-Options", "SAMEORIGIN")
_EXPIRES = ("Expires", "Wed, 11 Jan 1984 05:00:00 GMT")
_NO_CACHE = ("Cache-Control", "no-cache, must-revalidate, max-age=0")

#: Waits ``seconds``; ``False`` when the server began stopping meanwhile (stop sending).
Pause = Callable[[float], Awaitable[bool]]


@attrs.frozen
class Frame:
    """One write of a reply body. ``token`` marks a content piece (paced, counted by faults)."""

    data: bytes
    token: bool = False


@attrs.frozen(kw_only=True)
class Reply:
    """A complete answer: sent chunked when ``streamed``, else with a ``Content-Length``."""

    status: int
    headers: tuple[tuple[str, str], ...]
    frames: tuple[Frame, ...]
    streamed: bool = False
    reason: str | None = None

    @property
    def body(self) -> bytes:
        """All the body bytes, as a client that reads to the end gets them."""
        return b"".join(frame.data for frame in self.frames)

    @property
    def token_count(self) -> int:
        """How many content pieces the body holds."""
        return sum(frame.token for frame in self.frames)


@attrs.frozen(kw_only=True)
class Delivery:
    """How a reply goes out: pacing, and where it stalls or breaks off.

    Token positions count content pieces; a reply with fewer pieces than asked stalls or
    breaks after its last piece (right after the headers when it has none).
    """

    token_delay: float = 0.0
    stall_seconds: float | None = None
    stall_after_tokens: int = 0
    cut_after_bytes: int | None = None
    cut_after_tokens: int | None = None
    #: ``close``: no length, no chunks, the body ends at connection close (PHP's server).
    framing: Framing = "length"
    #: After the last frame, in place of ``[DONE]``, a keep-alive comment this often until
    #: the client leaves (a site that never says the stream is over).
    linger_seconds: float | None = None


def html_page(
    status: int, text: str, headers: Iterable[tuple[str, str]] = (), reason: str | None = None
) -> Reply:
    """An HTML page (landing, 404, error pages)."""
    return Reply(
        status=status,
        headers=(("Content-Type", HTML_CONTENT_TYPE), *headers),
        frames=(Frame(text.encode()),),
        reason=reason,
    )


def ajax_html(status: int, text: str, *, before_admin_init: bool = False) -> Reply:
    """An admin-ajax answer in HTML (``400 0``, the nonce page, the critical error).

    ``before_admin_init``: admin-ajax gave up before WordPress's admin set its security
    headers (no ``action`` at all), so only the no-cache headers go out.
    """
    security = () if before_admin_init else (_NOSNIFF, _REFERRER, _FRAMES)
    return Reply(
        status=status,
        headers=(
            ("Content-Type", HTML_CONTENT_TYPE),
            _ROBOTS,
            *security,
            _EXPIRES,
            _NO_CACHE,
        ),
        frames=(Frame(text.encode()),),
    )


def ajax_json(payload: Mapping[str, object], *, body: bytes | None = None) -> Reply:
    """An admin-ajax JSON answer, encoded as PHP's ``json_encode`` does (or ``body`` as is)."""
    data = php_json_encode(payload).encode() if body is None else body
    return Reply(
        status=200,
        headers=(
            _ROBOTS,
            _NOSNIFF,
            _REFERRER,
            _FRAMES,
            ("Content-Type", JSON_CONTENT_TYPE),
            _EXPIRES,
            _NO_CACHE,
        ),
        frames=(Frame(data),),
    )


def sse_reply(frames: Iterable[Frame]) -> Reply:
    """A streamed admin-ajax answer with the plugin's event-stream headers."""
    return Reply(
        status=200,
        headers=(
            _ROBOTS,
            _NOSNIFF,
            _EXPIRES,
            _REFERRER,
            _FRAMES,
            # The plugin's own spelling of the header name, kept on the wire.
            ("Content-type", SSE_CONTENT_TYPE),
            ("Cache-Control", "no-cache"),
            ("X-Accel-Buffering", "no"),
        ),
        frames=tuple(frames),
        streamed=True,
    )


def split_answer(answer: str, size: int) -> list[str]:
    """``answer`` in pieces of ``size`` characters (the last may be shorter)."""
    return [answer[start : start + size] for start in range(0, len(answer), size)]


_ID_ALPHABET = string.ascii_letters + string.digits


@attrs.frozen(kw_only=True)
class FrameStyle:
    """What varies from one relayed upstream stream to another: the completion's ``id``
    and ``created``, the JSON spacing, a ``system_fingerprint`` or none.

    The plugin relays the upstream's frames as they come, so a client must not depend on
    any of these; :meth:`varied` draws them per reply, :data:`CAPTURE` is the capture
    rig's (the bytes of ``tests/vectors/classic``).
    """

    id: str = COMPLETION_ID
    created: int = COMPLETION_CREATED
    separators: tuple[str, str] = (", ", ": ")
    ensure_ascii: bool = True
    fingerprint: str | None = None

    CAPTURE: ClassVar[FrameStyle]

    @classmethod
    def varied(cls, rng: random.Random | None = None) -> FrameStyle:
        """A style as a real upstream might write it (OpenAI's ``chatcmpl-`` + 29 characters)."""
        pick = rng or random.Random()
        return cls(
            id="chatcmpl-" + "".join(pick.choices(_ID_ALPHABET, k=29)),
            created=int(time.time()) - pick.randrange(0, 5),
            separators=pick.choice([(", ", ": "), (",", ":")]),
            ensure_ascii=pick.random() < 0.5,
            fingerprint=pick.choice(
                [None, "fp_" + "".join(pick.choices("0123456789abcdef", k=10))]
            ),
        )


FrameStyle.CAPTURE = FrameStyle()


def frame_style(name: FrameStyleName) -> FrameStyle:
    """The style of one reply's frames: the capture's, or a fresh varied one."""
    return FrameStyle.CAPTURE if name == "capture" else FrameStyle.varied()


def chunk_frame(
    delta: Mapping[str, str],
    finish_reason: str | None,
    model_name: str,
    style: FrameStyle = FrameStyle.CAPTURE,
) -> bytes:
    """One OpenAI ``chat.completion.chunk`` frame; by default in the rig's JSON style
    (``", "``, ``\\u`` escapes)."""
    chunk: dict[str, object] = {
        "id": style.id,
        "object": "chat.completion.chunk",
        "created": style.created,
        "model": model_name,
    }
    if style.fingerprint is not None:
        chunk["system_fingerprint"] = style.fingerprint
    chunk["choices"] = [{"index": 0, "delta": dict(delta), "finish_reason": finish_reason}]
    data = json.dumps(chunk, separators=style.separators, ensure_ascii=style.ensure_ascii)
    return b"data: " + data.encode() + b"\n\n"


def answer_frames(
    answer: str, *, token_chars: int, model_name: str, style: FrameStyle = FrameStyle.CAPTURE
) -> list[Frame]:
    """The relayed upstream stream: a role frame, the pieces, a finish frame, ``[DONE]``."""
    frames = [Frame(chunk_frame({"role": "assistant", "content": ""}, None, model_name, style))]
    frames += [
        Frame(chunk_frame({"content": piece}, None, model_name, style), token=True)
        for piece in split_answer(answer, token_chars)
    ]
    frames.append(Frame(chunk_frame({}, "stop", model_name, style)))
    frames.append(Frame(DONE_FRAME))
    return frames


def error_word_frames(message: str) -> list[Frame]:
    """The plugin's error-word frames: one per word, later words led by a space.

    The words go in unescaped, as the plugin writes them, so a quote breaks the JSON.
    """
    first, *others = message.split(" ")
    frame = 'event: message\ndata: {{"choices":[{{"delta":{{"content":"{}"}}}}]}}\n\n'
    return [
        Frame(frame.format(word).encode(errors="replace"), token=True)
        for word in (first, *(" " + other for other in others))
    ]


def control_frame(flag: str, message: str) -> Frame:
    """A plugin control frame, e.g. ``data: {"msg":"…","tokenLimitReached":true}``."""
    return Frame(b"data: " + php_json_encode({"msg": message, flag: True}).encode() + b"\n\n")


def error_object_frame(message: str) -> Frame:
    """An upstream error relayed as a frame with an ``error`` object."""
    payload = json.dumps({"error": {"message": message}}, separators=(",", ":"))
    return Frame(b"data: " + payload.encode() + b"\n\n")


async def send_reply(
    request: web.BaseRequest, reply: Reply, delivery: Delivery, pause: Pause
) -> web.StreamResponse:
    """Play ``reply`` on the wire as ``delivery`` says; the response for aiohttp to finish.

    A break closes the connection after the bytes already written. With ``length``
    framing the client sees a body that stops short (a chunked stream without its last
    chunk, or fewer bytes than the ``Content-Length``); with ``close`` framing — as the
    real site's PHP server sends every reply — it sees a clean end: only the body itself
    can tell that it was cut.
    """
    close = delivery.framing == "close"
    response: web.StreamResponse
    if close:
        response = _CloseDelimitedResponse(status=reply.status, reason=reply.reason)
        response.force_close()
    else:
        response = web.StreamResponse(status=reply.status, reason=reply.reason)
    for name, value in reply.headers:
        response.headers.add(name, value)
    frames = reply.frames if request.method != "HEAD" else ()
    if delivery.linger_seconds is not None and frames and frames[-1].data == DONE_FRAME:
        frames = frames[:-1]
    if not close:
        if reply.streamed:
            response.enable_chunked_encoding()
        else:
            response.content_length = len(reply.body)
    await response.prepare(request)

    tokens_total = sum(frame.token for frame in frames)
    stall_at = (
        None if delivery.stall_seconds is None else min(delivery.stall_after_tokens, tokens_total)
    )
    cut_at = (
        None if delivery.cut_after_tokens is None else min(delivery.cut_after_tokens, tokens_total)
    )
    sent_bytes = tokens_sent = 0

    async def reached(tokens: int) -> bool:
        """Stall and/or break here if the delivery says so; ``True`` to stop sending."""
        if stall_at == tokens and not await pause(delivery.stall_seconds or 0.0):
            return True
        return cut_at == tokens

    if await reached(0):
        return _hang_up(request, response)
    try:
        for frame in frames:
            if frame.token and delivery.token_delay > 0 and not await pause(delivery.token_delay):
                return _hang_up(request, response)
            data = frame.data
            if (
                delivery.cut_after_bytes is not None
                and sent_bytes + len(data) >= delivery.cut_after_bytes
            ):
                if delivery.cut_after_bytes > sent_bytes:
                    await response.write(data[: delivery.cut_after_bytes - sent_bytes])
                return _hang_up(request, response)
            await response.write(data)
            sent_bytes += len(data)
            if frame.token:
                tokens_sent += 1
                if await reached(tokens_sent):
                    return _hang_up(request, response)
    except ConnectionError:  # the client left mid-answer, as clients do: not a server error
        return _hang_up(request, response)
    if delivery.cut_after_bytes is not None:
        return _hang_up(request, response)
    if delivery.linger_seconds is not None:
        # Until the client hangs up (the handler is cancelled, or the write fails) or
        # the server stops (the pause says so).
        try:
            while await pause(delivery.linger_seconds):
                await response.write(b":\n")
        except ConnectionError:
            pass
        return _hang_up(request, response)
    await response.write_eof()
    return response


class _CloseDelimitedResponse(web.StreamResponse):
    """A response with neither ``Content-Length`` nor chunking: its body ends where the
    connection closes. aiohttp chunks any HTTP/1.1 body of unknown length; its length
    check (off for WebSockets) is what decides that, so it is switched off here."""

    _length_check = False


def _hang_up(request: web.BaseRequest, response: web.StreamResponse) -> web.StreamResponse:
    """Close the connection once what was written has gone out; no end-of-body marker."""
    response.force_close()
    if request.transport is not None:
        request.transport.close()
    return response
