"""Frozen settings records: the site, time limits, size limits and the retry policy.

Every record validates at construction, so a bad setting fails early with a
message that names it; per-call changes are ``attrs.evolve`` copies.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

import attrs

from .errors import (
    ConfigurationError,
    HTTPStatusError,
    ProviderConnectionError,
    ProviderTimeoutError,
    redact_url,
)

__all__ = [
    "DEFAULT_HEADERS",
    "Limits",
    "RetryPolicy",
    "Settings",
    "Site",
    "Timeouts",
    "is_retryable",
]

#: Headers a desktop browser sends; the site sits behind a CDN that dislikes bare clients.
DEFAULT_HEADERS: Mapping[str, str] = {
    "User-Agent": (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36"
    ),
    "Accept-Language": "en-US,en;q=0.9",
}

_Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]

_RETRYABLE_STATUSES = frozenset({408, 409, 429}) | frozenset(range(500, 600))


def _optional_positive(name: str) -> _Validator:
    def check(_inst: Any, _attr: attrs.Attribute[Any], value: Any) -> None:
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise ConfigurationError(
                f"{name} must be a positive number of seconds or None, got {value!r}"
            )

    return check


def _positive_int(name: str) -> _Validator:
    def check(_inst: Any, _attr: attrs.Attribute[Any], value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigurationError(f"{name} must be a positive integer, got {value!r}")

    return check


def _non_negative(name: str) -> _Validator:
    def check(_inst: Any, _attr: attrs.Attribute[Any], value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ConfigurationError(f"{name} must be a non-negative number, got {value!r}")

    return check


def _one_of(name: str, choices: tuple[str, ...]) -> _Validator:
    def check(_inst: Any, _attr: attrs.Attribute[Any], value: Any) -> None:
        if value not in choices:
            raise ConfigurationError(f"{name} must be one of {', '.join(choices)}; got {value!r}")

    return check


def _non_empty_text(name: str) -> _Validator:
    def check(_inst: Any, _attr: attrs.Attribute[Any], value: Any) -> None:
        if not isinstance(value, str) or not value:
            raise ConfigurationError(f"{name} must be a non-empty string, got {value!r}")

    return check


def _http_url(name: str) -> _Validator:
    def check(_inst: Any, _attr: attrs.Attribute[Any], value: Any) -> None:
        if not isinstance(value, str):
            raise ConfigurationError(f"{name} must be a URL string, got {type(value).__name__}")
        try:
            parts = urlsplit(value)
        except ValueError as exc:
            raise ConfigurationError(f"{name} is not a valid URL: {redact_url(value)}") from exc
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError(
                f"{name} must be an http(s) URL with a host, got {redact_url(value)!r}"
            )

    return check


@attrs.frozen(kw_only=True)
class Timeouts:
    """Time limits in seconds; ``None`` switches one off.

    Attributes:
        connect: opening the TCP (and TLS, and proxy) connection.
        first_byte: from sending a request until its response headers arrive.
        idle: the longest gap between two parts of a reply body.
        total: the whole call, retries and streaming included.
    """

    connect: float | None = attrs.field(default=10.0, validator=_optional_positive("connect"))
    first_byte: float | None = attrs.field(default=60.0, validator=_optional_positive("first_byte"))
    idle: float | None = attrs.field(default=60.0, validator=_optional_positive("idle"))
    total: float | None = attrs.field(default=300.0, validator=_optional_positive("total"))


@attrs.frozen(kw_only=True)
class Limits:
    """Size limits in bytes, so a hostile or broken server cannot exhaust memory.

    Attributes:
        max_page_bytes: the landing page.
        max_body_bytes: a reply read whole (JSON answers, error pages).
        max_event_bytes: one line or one event of a stream.
        max_stream_bytes: a whole streamed answer (``None``: unbounded); 1 GiB by
            default, far beyond any chat answer, so a reply that never ends cannot
            keep a consumer like ``create_async`` growing until the total timeout.
        max_partial_text: how many characters of an interrupted answer its
            ``StreamInterruptedError`` keeps (the caller has seen them all; keeping
            every one would make streaming a huge answer cost its size in memory).
    """

    max_page_bytes: int = attrs.field(default=8 << 20, validator=_positive_int("max_page_bytes"))
    max_body_bytes: int = attrs.field(default=32 << 20, validator=_positive_int("max_body_bytes"))
    max_event_bytes: int = attrs.field(default=4 << 20, validator=_positive_int("max_event_bytes"))
    max_stream_bytes: int | None = attrs.field(default=1 << 30)
    max_partial_text: int = attrs.field(
        default=4 << 20, validator=_positive_int("max_partial_text")
    )

    @max_stream_bytes.validator
    def _check_stream(self, _attr: attrs.Attribute[int | None], value: int | None) -> None:
        if value is not None:
            _positive_int("max_stream_bytes")(self, _attr, value)


def is_retryable(exc: BaseException) -> bool:
    """Whether a failure may succeed when the request is sent again.

    Connection failures, timeouts before the answer started (not the call's own
    ``total`` limit), an error that says it may succeed when sent again
    (``retryable``: e.g. an expired one-use key), and HTTP 408, 409, 429 and 5xx
    (Cloudflare's 520–527 included). Everything the site said on purpose — a
    refusal, a rejected nonce, a bot-protection page — is not.
    """
    if isinstance(exc, ProviderTimeoutError):
        return exc.limit != "total"
    if isinstance(exc, ProviderConnectionError):
        return True
    if getattr(exc, "retryable", False) is True:
        return True
    if isinstance(exc, HTTPStatusError):
        return exc.status in _RETRYABLE_STATUSES
    return False


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """When and how often a failed request is sent again.

    Attributes:
        attempts: how many times a request is sent at most (1 = no retry).
        initial_delay: backoff before the first retry, doubled each time ...
        max_delay: ... up to this cap.
        jitter: up to this many random seconds added to each backoff.
        max_retry_after: a server's ``Retry-After`` is honoured up to this many
            seconds; a longer one fails the call at once with ``RateLimitError``.
        deadline: no retry starts later than this many seconds after the first
            attempt began, its backoff included (``None``: only ``attempts`` bounds it).
        retry_on: decides which failures are retryable.
        sleep: the coroutine that waits between attempts (inject one in tests).
        clock: the monotonic clock ``deadline`` is measured on (inject one with the sleep).
    """

    attempts: int = attrs.field(default=3, validator=_positive_int("attempts"))
    initial_delay: float = attrs.field(default=0.5, validator=_non_negative("initial_delay"))
    max_delay: float = attrs.field(default=8.0, validator=_non_negative("max_delay"))
    jitter: float = attrs.field(default=0.5, validator=_non_negative("jitter"))
    max_retry_after: float = attrs.field(default=30.0, validator=_non_negative("max_retry_after"))
    deadline: float | None = attrs.field(default=60.0, validator=_optional_positive("deadline"))
    retry_on: Callable[[BaseException], bool] = attrs.field(default=is_retryable, eq=False)
    sleep: Callable[[float], Awaitable[None]] = attrs.field(
        default=asyncio.sleep, eq=False, repr=False
    )
    clock: Callable[[], float] = attrs.field(default=time.monotonic, eq=False, repr=False)

    def should_retry(self, exc: BaseException) -> bool:
        """``retry_on(exc)``, except that a ``Retry-After`` beyond the cap is final."""
        retry_after = exc.retry_after if isinstance(exc, HTTPStatusError) else None
        if retry_after is not None and retry_after > self.max_retry_after:
            return False
        return self.retry_on(exc)


@attrs.frozen(kw_only=True)
class Site:
    """Where the chat lives.

    Attributes:
        url: the site's base URL (``https://chatgptt.me``).
        page_url: the landing page that carries the tokens.
        api_endpoint: where to POST when the page names no ``ajax_url``.
        headers: sent with every request (a browser's, by default).
    """

    url: str = attrs.field(validator=_http_url("url"))
    page_url: str = attrs.field(validator=_http_url("page_url"))
    api_endpoint: str = attrs.field(validator=_http_url("api_endpoint"))
    headers: Mapping[str, str] = attrs.field(default=DEFAULT_HEADERS, eq=False)

    @classmethod
    def at(cls, url: str, *, api_endpoint: str | None = None, page_url: str | None = None) -> Site:
        """The site at ``url`` with WordPress's default AJAX endpoint and page."""
        base = url.rstrip("/")
        return cls(
            url=base,
            page_url=page_url or base + "/",
            api_endpoint=api_endpoint or base + "/wp-admin/admin-ajax.php",
        )


HistoryMode = Literal["messages", "flatten"]


@attrs.frozen(kw_only=True)
class Settings:
    """Everything a call needs to know besides the messages.

    Attributes:
        site: where to talk to.
        timeouts, limits, retry: see their records.
        history: ``messages`` sends the conversation as each dialect carries it (the
            classic history field; the AIPKit server's own conversation); ``flatten``
            folds the whole conversation into the message, as the original provider did.
        token_ttl: seconds a fetched nonce is reused before the page is fetched again
            (WordPress nonces live 12 to 24 hours; a rejection refetches sooner).
        dialect: ``auto`` (the landing page decides) or the name of the dialect to
            speak (``classic``, ``aipkit``); the provider checks the name.
    """

    site: Site
    timeouts: Timeouts = Timeouts()
    limits: Limits = Limits()
    retry: RetryPolicy = RetryPolicy()
    history: HistoryMode = attrs.field(
        default="messages", validator=_one_of("history", ("messages", "flatten"))
    )
    token_ttl: float = attrs.field(default=10 * 3600.0, validator=_non_negative("token_ttl"))
    dialect: str = attrs.field(default="auto", validator=_non_empty_text("dialect"))
