"""The bytes of an AIPKit event stream, as the plugin's SSE formatter writes them.

``[event: NAME\\n][id: ID\\n]data: JSON\\n\\n`` frames, JSON in PHP's
``JSON_UNESCAPED_UNICODE`` style, the 4 KiB padding comment first, and the random ids in the
plugin's formats (``uniqid`` message ids, ``err-<unix time>`` error ids, 32-character cache keys).
"""

from __future__ import annotations

import random
import secrets
import string
from collections.abc import Mapping

from chatgptt.emulator.aipkit.wordpress import json_unescaped_unicode
from chatgptt.emulator.replies import Frame

__all__ = [
    "CACHE_KEY_PREFIX",
    "MESSAGE_ID_PREFIX",
    "PADDING",
    "RESPONSE_ID",
    "data_frame",
    "delta_frame",
    "done_frame",
    "error_frame",
    "error_id",
    "event_frame",
    "message_id",
    "message_start_frame",
    "new_cache_key",
    "response_id_frame",
    "status_frames",
]

#: The comment that opens every stream (2.3.93+): it pushes proxies to flush at once.
PADDING = b":" + b" " * 4096 + b"\n\n"
CACHE_KEY_PREFIX = "aipkit_sse_"
MESSAGE_ID_PREFIX = "aipkit-msg-"
#: The Responses API id the capture rig's upstream gave every response.
RESPONSE_ID = "resp_fake0001"
_KEY_ALPHABET = string.ascii_letters + string.digits
_RANDOM = random.Random()


def event_frame(name: str | None, data: object, event_id: str | None = None) -> bytes:
    """One frame; ``data`` is encoded unless it is already a string (as the plugin does)."""
    payload = data if isinstance(data, str) else json_unescaped_unicode(data)
    head = "" if name is None else f"event: {name}\n"
    if event_id is not None:
        head += f"id: {event_id}\n"
    return f"{head}data: {payload}\n\n".encode(errors="surrogatepass")


def data_frame(data: object) -> bytes:
    """An unnamed (``message``) frame."""
    return event_frame(None, data)


def delta_frame(text: str) -> Frame:
    """One piece of the answer, ``data: {"delta":…}``; a content piece for faults and pacing."""
    return Frame(data_frame({"delta": text}), token=True)


def message_start_frame(bot_message_id: str) -> Frame:
    """``event: message_start``, sent once the request passed every check."""
    return Frame(event_frame("message_start", {"message_id": bot_message_id}))


def error_frame(
    message: str,
    now: float,
    *,
    warning: bool = False,
    extra: Mapping[str, object] | None = None,
) -> Frame:
    """``event: error`` (or ``warning``) with ``id: err-<unix>`` and ``{"error":…, **extra}``."""
    data: dict[str, object] = {"error": message, **(extra or {})}
    return Frame(event_frame("warning" if warning else "error", data, error_id(now)))


def done_frame(extra: Mapping[str, object] | None = None) -> Frame:
    """``event: done`` with ``{"finished":true}`` (and ``grounding_metadata``/``citations``)."""
    return Frame(event_frame("done", {"finished": True, **(extra or {})}))


def status_frames(response_id: str = RESPONSE_ID) -> list[Frame]:
    """The Responses API's progress frames between ``message_start`` and the first delta."""
    return [
        Frame(
            event_frame(
                "status",
                {"type": kind, "status": "in_progress", "response_id": response_id},
            )
        )
        for kind in ("response.created", "response.in_progress")
    ]


def response_id_frame(response_id: str = RESPONSE_ID) -> Frame:
    """``event: openai_response_id``, sent just before ``done`` in Responses API mode."""
    return Frame(event_frame("openai_response_id", {"id": response_id}))


def error_id(now: float) -> str:
    """The ``id`` of an error frame: ``err-`` and the Unix time in seconds."""
    return f"err-{int(now)}"


def message_id(now: float, rng: random.Random = _RANDOM) -> str:
    """A bot message id, ``aipkit-msg-`` + PHP's ``uniqid('', true)``.

    That is 8 hex digits of seconds, 5 of microseconds, then a random ``D.DDDDDDDD``.
    """
    seconds = int(now)
    micros = round((now - seconds) * 1_000_000) % 1_000_000
    return f"{MESSAGE_ID_PREFIX}{seconds:08x}{micros:05x}{rng.random() * 10:.8f}"


def new_cache_key() -> str:
    """A step-1 cache key: ``aipkit_sse_`` and 32 letters and digits."""
    return CACHE_KEY_PREFIX + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(32))
