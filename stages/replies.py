"""What the decoders of every dialect say about a reply that is not what it should be.

A 200 ``text/event-stream`` reply with no event at all is an error, never an empty
answer: a firewall's page, PHP's fatal-error page, nothing (the plugin on a PHP without
its curl extension), or a stream cut inside its first frame (retried). A JSON reply that
stops inside its document, with no declared length, was cut where the connection closed
(retried).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from stages.errors import (
    BotProtectionError,
    ChatGpttError,
    IncompleteReplyError,
    MalformedResponseError,
    excerpt,
)
from stages.http import length_declared, readable_excerpt
from stages.protection import detect_protection

__all__ = ["TextFirst", "cut_json", "eventless", "json_unfinished"]

_FIELDS = (b"data:", b"event:", b"id:", b"retry:")


class TextFirst:
    """What every dialect's event interpreter shares: an error that follows text.

    When an error event comes after text in the same batch, the text is returned first
    and the error held for :meth:`check`, so the caller gets everything the site sent, in
    order. A subclass calls :meth:`_hold` from its ``feed``.
    """

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending: ChatGpttError | None = None

    def _hold(self, error: ChatGpttError, parts: list[str]) -> str:
        """The text that came before ``error``, holding it; raises it when none came."""
        if not parts:
            raise error
        self._pending = error
        return "".join(parts)

    def check(self) -> None:
        """Raise the error that followed the text last returned, if any."""
        pending, self._pending = self._pending, None
        if pending is not None:
            raise pending


def eventless(
    head: bytes, url: str, *, cut: bool, headers: Mapping[str, str] | None = None
) -> ChatGpttError:
    """The error for a 200 event stream that ended without a single event.

    ``head`` is what came (its first bytes), ``headers`` the reply's. ``cut``: the body
    ended inside a line or event. When what came is the start of a frame (``data: {…``,
    or even ``da``), the stream was cut in its first frame; a firewall's page is bot
    protection; nothing at all is the plugin's stream on a PHP without curl; anything
    else is quoted as it reads.
    """
    protection = detect_protection(head, headers or {})
    if protection is not None:
        return BotProtectionError(url, 200, protection.marker, firewall=protection.firewall)
    start = head.removeprefix(b"\xef\xbb\xbf").lstrip()
    if cut and start and any(start.startswith(f) or f.startswith(start) for f in _FIELDS):
        return IncompleteReplyError(
            f"the stream ended inside its first frame: {excerpt(start)}", url=url
        )
    if not head.strip():
        return MalformedResponseError(
            "the event stream was empty: the site sent no event at all (the plugin does so "
            "when its PHP lacks the curl extension)",
            url=url,
        )
    return MalformedResponseError(
        "an event stream without a single event", url=url, preview=readable_excerpt(head)
    )


# A JSON string (its closing quote captured, empty when the text ends inside it) or a bracket.
_JSON_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*("?)|[{}\[\]]', re.DOTALL)


def json_unfinished(text: str) -> bool:
    """Whether ``text`` stops inside a JSON document: a string, object or array still open.

    Every proper prefix of a JSON object is unfinished; a whole document, or text whose
    brackets all close (a PHP warning before valid JSON, a syntax error), is not.
    """
    depth = 0
    for token in _JSON_TOKENS.finditer(text):
        if token.group()[0] == '"':
            if not token.group(1):
                return True
        elif token.group() in "{[":
            depth += 1
        else:
            depth -= 1
    return depth > 0


def cut_json(raw: bytes, headers: Mapping[str, str], url: str) -> IncompleteReplyError | None:
    """The error for a JSON reply that ``raw`` shows was cut, or ``None``.

    With no declared length (``Content-Length`` or chunks: the real PHP server's replies)
    the body ends where the connection closed, so a document that stops before its end was
    most likely cut off: an :class:`IncompleteReplyError`, retried. With a declared length
    the site sent it so.
    """
    if (
        raw.strip()
        and not length_declared(headers)
        and json_unfinished(raw.decode("utf-8", "replace"))
    ):
        return IncompleteReplyError(
            f"the JSON reply stopped after {len(raw)} bytes, before its end (no declared "
            "length: the connection closed there)",
            url=url,
        )
    return None
