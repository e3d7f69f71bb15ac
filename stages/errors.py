"""The one error hierarchy of the library.

Errors are mapped once, where they happen, into these types; each message says
what went wrong and where, so a person can act on it. No message carries a
secret: URLs pass through :func:`redact_url` before they are written into one.
"""

from __future__ import annotations

import math
import re
from urllib.parse import urlsplit, urlunsplit

from .protection import firewall_of

__all__ = [
    "BotProtectionError",
    "ChatGpttError",
    "ChatNotFoundError",
    "CloudflareOriginError",
    "ConfigurationError",
    "EmptyMessageError",
    "HTTPStatusError",
    "IPBannedError",
    "IncompleteReplyError",
    "InvalidMessagesError",
    "MalformedResponseError",
    "MessageFlaggedError",
    "NonceRejectedError",
    "ProviderConnectionError",
    "ProviderTimeoutError",
    "RateLimitError",
    "RedirectError",
    "ResponseTooLargeError",
    "ServerError",
    "SiteError",
    "StageNotFoundError",
    "StaleRequestError",
    "StreamInterruptedError",
    "TokenLimitError",
    "TokensNotFoundError",
    "UnknownActionError",
    "UnknownModelError",
    "UpstreamError",
    "excerpt",
    "redact_url",
]


#: What a mistyped scheme looks like before the userinfo: ``http//``, ``http:/``, ``http:///``.
_MISTYPED_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:?/+")


def redact_url(url: object) -> str:
    """Return ``url`` as text with any ``user:password@`` part replaced by ``***@``."""
    text = str(url)
    try:
        parts = urlsplit(text)
    except ValueError:
        return "<unparsable URL>"
    if parts.username is None and parts.password is None:
        if parts.netloc or "@" not in text:
            return text
        # No authority urlsplit can read — no scheme ("user:pw@host:port") or a mistyped one
        # ("http//token@host", "http:/user:pw@host") — yet an "@": everything between the
        # would-be scheme and the last "@" may be userinfo (a password may hold "@", "/" or
        # spaces), so it all goes. Such text is no usable URL: hiding too much costs nothing.
        scheme = _MISTYPED_SCHEME.match(text)
        start = scheme.end() if scheme is not None else 0
        return text[:start] + "***" + text[text.rindex("@") :]
    # Keep what follows the userinfo exactly as written (even an invalid port).
    netloc = "***@" + parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def describe_wait(seconds: float) -> str:
    """A wait for a person to read: ``12 s``, ``5 min``, ``3 h``, ``2 days``."""
    if not math.isfinite(seconds):
        return "an unbounded time"
    if seconds < 120:
        return f"{seconds:g} s"
    minutes = seconds / 60
    if minutes < 120:
        return f"{round(minutes)} min"
    hours = minutes / 60
    if hours < 48:
        return f"{round(hours)} h"
    return f"{round(hours / 24)} days"


def excerpt(body: bytes | str, limit: int = 160) -> str:
    """A short single-line preview of a response body for error messages."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ChatGpttError(Exception):
    """Base of every error raised by chatgptt.

    ``partial_text`` is the answer text already handed to the caller when the
    error was raised (empty unless the failure came after the first chunk).
    """

    partial_text: str = ""
    #: Whether sending the same request again may succeed, whatever the error's family
    #: (the retry policy's default asks; see ``stages.config.is_retryable``).
    retryable: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


# --- bad input and settings ------------------------------------------------------------


class ConfigurationError(ChatGpttError, ValueError):
    """A setting, argument or option is invalid; nothing was sent."""


class UnknownModelError(ConfigurationError):
    """The requested model is not one the provider offers."""

    def __init__(self, model: str, valid: tuple[str, ...] | list[str]) -> None:
        self.model = model
        self.valid = tuple(valid)
        super().__init__(f"unknown model {model!r}; valid models: {', '.join(self.valid)}")


class InvalidMessagesError(ConfigurationError):
    """The ``messages`` argument is malformed; ``index`` points at the culprit."""

    def __init__(self, reason: str, index: int | None = None) -> None:
        self.reason = reason
        self.index = index
        where = f"messages[{index}]: " if index is not None else "messages: "
        super().__init__(where + reason)


class StageNotFoundError(ConfigurationError, KeyError):
    """A pipeline has no stage of that name."""

    def __init__(self, name: str, available: tuple[str, ...]) -> None:
        self.name = name
        self.available = available
        super().__init__(f"no stage named {name!r}; stages: {', '.join(available) or '(none)'}")

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message


# --- the network -----------------------------------------------------------------------


class ProviderConnectionError(ChatGpttError, ConnectionError):
    """The connection could not be made, or broke before the reply was complete."""

    def __init__(self, message: str, *, url: str | None = None) -> None:
        self.url = redact_url(url) if url is not None else None
        super().__init__(message)


class IncompleteReplyError(ProviderConnectionError):
    """The reply ended before the site said the answer was complete.

    Both dialects mark the end of an answer (``[DONE]`` or a finish frame, the
    ``done`` event); a reply that stops without it was cut off — by a dropped
    connection, a proxy, a PHP worker that died — even when the connection closed
    cleanly. Before any text reached the caller it is retried like any broken
    connection; after, it is the ``cause`` of a :class:`StreamInterruptedError`.
    """

    def __init__(self, what: str, *, url: str | None = None) -> None:
        self.what = what
        shown = redact_url(url) if url is not None else None
        where = f" from {shown}" if shown else ""
        super().__init__(f"the reply{where} ended before the answer was complete: {what}", url=url)


class ProviderTimeoutError(ChatGpttError, TimeoutError):
    """A time limit was hit; ``limit`` names which one and ``seconds`` its value.

    ``limit`` is one of ``connect``, ``first_byte``, ``idle`` or ``total``.
    """

    def __init__(self, limit: str, seconds: float, *, url: str | None = None) -> None:
        self.limit = limit
        self.seconds = seconds
        self.url = redact_url(url) if url is not None else None
        what = {
            "connect": "connecting",
            "first_byte": "waiting for the reply to start",
            "idle": "waiting for the next part of the reply",
            "total": "running the whole call",
        }.get(limit, limit)
        where = f" ({self.url})" if self.url else ""
        super().__init__(f"{limit} timeout: {seconds:g} s passed while {what}{where}")


class RedirectError(ChatGpttError):
    """The site's redirects cannot be followed; never retried (the site redirects the
    same way next time).

    ``reason`` is ``loop`` (a URL came back), ``too_many`` (more redirects than a client
    follows), ``scheme`` (to a URL that is not http or https, e.g. ``file://``) or
    ``invalid`` (to something that is not a URL). ``url`` is where the request began,
    ``location`` where the redirects led and ``chain`` the URLs visited (all redacted).
    """

    def __init__(
        self,
        url: str,
        reason: str,
        *,
        location: str | None = None,
        chain: tuple[str, ...] = (),
    ) -> None:
        self.url = redact_url(url)
        self.reason = reason
        self.location = None if location is None else excerpt(redact_url(location), 200)
        self.chain = tuple(excerpt(redact_url(step), 200) for step in chain)
        where = self.location if self.location is not None else "?"
        if reason == "loop":
            what = "redirected in a loop: " + " -> ".join(self.chain or (self.url, where))
        elif reason == "too_many":
            what = f"redirected {max(len(self.chain) - 1, 1)} times without end, last to {where}"
        elif reason == "scheme":
            what = (
                f"redirected to {where}, a scheme this client does not follow (only http and https)"
            )
        else:
            what = f"redirected to {where!r}, which is not a valid URL"
        super().__init__(f"the site at {self.url} {what}")


class HTTPStatusError(ChatGpttError):
    """The server answered with an HTTP status that is not a chat reply."""

    def __init__(
        self,
        status: int,
        url: str,
        body_excerpt: str = "",
        *,
        retry_after: float | None = None,
        message: str | None = None,
    ) -> None:
        self.status = status
        self.url = redact_url(url)
        self.excerpt = body_excerpt
        self.retry_after = retry_after
        if message is None:
            message = f"HTTP {status} from {self.url}"
            if body_excerpt:
                message += f": {body_excerpt}"
        super().__init__(message)


class RateLimitError(HTTPStatusError):
    """HTTP 429 — or any status whose ``Retry-After`` asks for a longer wait than the
    retry policy allows. ``retry_after`` holds that wait in seconds, if any."""

    def __init__(
        self,
        url: str,
        body_excerpt: str = "",
        *,
        retry_after: float | None = None,
        status: int = 429,
    ) -> None:
        wait = f"; retry after {describe_wait(retry_after)}" if retry_after is not None else ""
        super().__init__(
            status,
            url,
            body_excerpt,
            retry_after=retry_after,
            message=f"rate limited by {redact_url(url)} (HTTP {status}){wait}",
        )


class ServerError(HTTPStatusError):
    """HTTP 5xx: the site or its host failed."""


class CloudflareOriginError(ServerError):
    """HTTP 520–527: Cloudflare could not get a good answer from the site's origin."""


class UnknownActionError(HTTPStatusError):
    """HTTP 400 with body ``0``: WordPress knows no handler for the AJAX action sent.

    On a site running plugin 2.3+ (the AIPKit dialect) the classic action is gone.
    """

    def __init__(self, url: str, action: str) -> None:
        self.action = action
        super().__init__(
            400,
            url,
            "0",
            message=(
                f"{redact_url(url)} does not know the AJAX action {action!r} (HTTP 400, body '0'); "
                "the site may run a newer plugin release (the AIPKit dialect) or no chat plugin"
            ),
        )


class BotProtectionError(ChatGpttError):
    """A firewall's block or challenge page came back instead of the site.

    ``firewall`` names it (``Cloudflare``, ``Sucuri``, ``Wordfence``…; see
    :data:`stages.protection.FIREWALLS`), ``marker`` is what gave it away. Never retried:
    the firewall answers the same way until it lets this client through.
    """

    def __init__(self, url: str, status: int, marker: str, *, firewall: str | None = None) -> None:
        self.url = redact_url(url)
        self.status = status
        self.marker = marker
        self.firewall = firewall if firewall is not None else firewall_of(marker)
        super().__init__(
            f"bot protection page from {self.url} (HTTP {status}, {self.firewall}: {marker!r}); "
            "the site's firewall is blocking or challenging automated clients. The way through "
            "is a browser that passed the challenge: pass its cookies (cf_clearance) with "
            "cookies= and its User-Agent with headers= (on the command line: --cookie and "
            "--header); else try later, from another network or through a proxy"
        )


# --- the site's own answers ----------------------------------------------------------------


class TokensNotFoundError(ChatGpttError, RuntimeError):
    """The landing page does not carry the chat tokens (nonce, post id).

    It is a ``RuntimeError`` too: the original provider's documented contract.
    """

    def __init__(self, url: str, missing: tuple[str, ...] | list[str], hint: str = "") -> None:
        self.url = redact_url(url)
        self.missing = tuple(missing)
        self.hint = hint
        why = hint or "it is not a chat page of the AI Power plugin"
        super().__init__(
            f"no {' and no '.join(self.missing)} found in the page at {self.url}: {why}"
        )


class ChatNotFoundError(TokensNotFoundError):
    """The page carries no chat this client knows: neither dialect's container."""

    def __init__(self, url: str, dialects: tuple[str, ...] | list[str]) -> None:
        self.dialects = tuple(dialects)
        super().__init__(
            url,
            ["chat"],
            hint=(
                f"it carries no chat of the AI Power plugin in a dialect this client speaks "
                f"({', '.join(self.dialects)}); point the provider at the page that shows the chat"
            ),
        )


class NonceRejectedError(ChatGpttError):
    """The site rejected the nonce (expired or rotated)."""

    def __init__(
        self, url: str, detail: str, *, attempts: int = 1, nonce: str | None = None
    ) -> None:
        self.url = redact_url(url)
        self.detail = detail
        self.attempts = attempts
        #: The rejected nonce (public: every visitor gets it), so that only a cache
        #: entry still holding it is dropped.
        self.nonce = nonce
        times = "twice" if attempts == 2 else ("once" if attempts == 1 else f"{attempts} times")
        super().__init__(f"nonce rejected {times} by {self.url}: {detail}")


class SiteError(ChatGpttError):
    """The site answered with an error message of its own (``msg``)."""

    def __init__(self, message: str, *, site_message: str | None = None) -> None:
        self.site_message = site_message if site_message is not None else message
        super().__init__(message)


class EmptyMessageError(SiteError):
    """The site found the message empty (PHP ``empty()``: ``""`` and ``"0"``)."""


class TokenLimitError(SiteError):
    """The site's guest token limit is reached (``tokenLimitReached``)."""


class MessageFlaggedError(SiteError):
    """The message was refused by moderation or a banned-word list."""


class IPBannedError(SiteError):
    """The site bans the client's IP address."""


class StaleRequestError(SiteError):
    """The site no longer held what the request referred to (an AIPKit one-use cache key
    expired or already spent): sending the request again makes a new one, so it is
    retried."""

    retryable = True


class UpstreamError(SiteError):
    """The model API behind the site failed; ``site_message`` is its message."""


# --- replies that do not parse ---------------------------------------------------------------


class MalformedResponseError(ChatGpttError):
    """The reply does not follow the protocol; ``what`` says which part."""

    def __init__(self, what: str, *, url: str | None = None, preview: str = "") -> None:
        self.what = what
        self.url = redact_url(url) if url is not None else None
        self.preview = preview
        where = f" from {self.url}" if self.url else ""
        tail = f": {preview}" if preview else ""
        super().__init__(f"malformed reply{where}: {what}{tail}")


class ResponseTooLargeError(MalformedResponseError):
    """A reply, page or stream event exceeded its configured size limit."""

    def __init__(self, what: str, limit: int, *, url: str | None = None) -> None:
        self.limit = limit
        super().__init__(f"{what} exceeds the limit of {limit} bytes", url=url)


# --- after text reached the caller ---------------------------------------------------------


class StreamInterruptedError(ChatGpttError):
    """The answer broke off after text had reached the caller.

    Nothing is retried at that point (the caller has seen the text); ``partial_text``
    holds exactly what was delivered and ``cause`` the failure that ended it.
    """

    def __init__(
        self, partial_text: str, cause: BaseException, *, delivered_chars: int | None = None
    ) -> None:
        self.partial_text = partial_text
        self.cause = cause
        #: How much text the caller received; more than ``len(partial_text)`` only when
        #: the answer outgrew ``Limits.max_partial_text`` (the error keeps its beginning).
        self.delivered_chars = len(partial_text) if delivered_chars is None else delivered_chars
        super().__init__(
            f"answer interrupted after {self.delivered_chars} characters were delivered: {cause}"
        )
