"""The one seam for the network: every request of every stage goes through here.

:func:`send` applies the call's session, proxy and time limits and maps aiohttp's
failures to typed errors; :class:`ResponseBody` reads a body as it arrives within
the idle and total limits and the size limits; :func:`classify_failure` turns a
non-200 reply into the error that says what happened.
"""

from __future__ import annotations

import asyncio
import email.utils
import html
import re
import time
from collections.abc import AsyncIterable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from functools import lru_cache
from typing import TYPE_CHECKING
from urllib.parse import quote_plus, urlsplit

import aiohttp
import yarl
from aiohttp.http_exceptions import ContentEncodingError

from .errors import (
    BotProtectionError,
    ChatGpttError,
    CloudflareOriginError,
    ConfigurationError,
    HTTPStatusError,
    MalformedResponseError,
    ProviderConnectionError,
    ProviderTimeoutError,
    RateLimitError,
    RedirectError,
    ResponseTooLargeError,
    ServerError,
    UnknownActionError,
    excerpt,
    redact_url,
)
from .protection import detect_protection
from .watch import WaitExpiredError, Watch

if TYPE_CHECKING:
    from .core import Call

__all__ = [
    "ERROR_PREVIEW_BYTES",
    "RETRY_AFTER_CEILING",
    "ResponseBody",
    "classify_failure",
    "encode_form",
    "length_declared",
    "map_client_error",
    "parse_retry_after",
    "read_prefix",
    "readable_excerpt",
    "send",
    "shareable_cause",
    "shown_proxy",
]

#: How much of an error reply is read to classify it and quote it.
ERROR_PREVIEW_BYTES = 64 * 1024
#: The longest ``Retry-After`` taken at its word, in seconds (a day): a longer, infinite or
#: absurd value (``1e400``, 400 digits) reads as this. Any wait beyond
#: ``RetryPolicy.max_retry_after`` fails the call at once anyway; this keeps the number
#: reported in ``RateLimitError`` finite and meaningful.
RETRY_AFTER_CEILING = 86_400.0

_TAG = re.compile(r"<[^>]*>")
# Inline tags go without a trace ("<b>Fatal error</b>:" reads "Fatal error:"), others as a space.
_INLINE_TAG = re.compile(r"</?(?:a|b|code|em|i|span|strong)(?:\s[^>]*)?>", re.IGNORECASE)


@lru_cache(maxsize=32)
def _client_timeout(connect: float | None) -> aiohttp.ClientTimeout:
    # Only the socket connect is aiohttp's job: waiting for a pooled connection is
    # bounded by first_byte, body reads by ResponseBody (idle and total).
    return aiohttp.ClientTimeout(total=None, connect=None, sock_connect=connect, sock_read=None)


@lru_cache(maxsize=1024)
def _quoted(text: str) -> str:
    return quote_plus(text)


#: What ``quote_plus`` leaves as it is: the ids, keys and times a form changes per call.
_UNQUOTED = re.compile(r"[A-Za-z0-9_.~-]*")


def _quoted_once(text: str) -> str:
    return text if _UNQUOTED.fullmatch(text) else quote_plus(text)


def encode_form(
    pairs: Iterable[tuple[str, str]], *, changing: AbstractSet[str] = frozenset()
) -> bytes:
    """``application/x-www-form-urlencoded`` bytes (a body or a query), as
    ``urllib.parse.urlencode`` writes them.

    Field names and the values that repeat across calls (nonce, post id, bot id…) are
    quoted once and remembered; the values of the ``changing`` fields (the message, its
    history, one-use keys and ids) are quoted each time and never kept.
    """
    return "&".join(
        [
            f"{_quoted(key)}={_quoted_once(value) if key in changing else _quoted(value)}"
            for key, value in pairs
        ]
    ).encode("ascii")


async def send(
    call: Call,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    params: Sequence[tuple[str, str]] | str | None = None,
    data: bytes | None = None,
    allow_redirects: bool = True,
) -> aiohttp.ClientResponse:
    """Send one request with the call's session, proxy and limits; return once headers arrive.

    The call's own ``headers`` win over ``headers``; its ``cookies`` go with this
    request only (never into the shared jar).

    Raises:
        ProviderTimeoutError: ``connect``, ``first_byte`` (headers not in time,
            waiting for a free pooled connection included) or ``total``.
        ProviderConnectionError: the connection failed or broke.
        ConfigurationError: the URL cannot be requested.
    """
    timeouts = call.settings.timeouts
    loop = asyncio.get_running_loop()
    limit, seconds, when = "first_byte", timeouts.first_byte, None
    if seconds is not None:
        when = loop.time() + seconds
    if call.deadline is not None and (when is None or call.deadline <= when):
        limit, when = "total", call.deadline
        seconds = timeouts.total if timeouts.total is not None else 0.0
    if call.headers:
        headers = {**headers, **call.headers}
    try:
        request = call.session.request(
            method,
            url,
            params=params,
            headers=headers,
            data=data,
            cookies=call.cookies or None,
            proxy=call.proxy,
            allow_redirects=allow_redirects,
            timeout=_client_timeout(timeouts.connect),
        )
        return await call.watch.wait(request, when)
    except WaitExpiredError:
        raise ProviderTimeoutError(limit, seconds or 0.0, url=url) from None
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        failure = map_client_error(exc, url, connect_timeout=timeouts.connect, proxy=call.proxy)
        cause = shareable_cause(exc)
    except RuntimeError as exc:  # aiohttp refusing the session itself, not the site failing
        failure, cause = _unusable_session(call.session, url, exc), None
    # Raised here, after the except clauses, so that an unshareable cause is not kept as the
    # context either.
    raise failure from cause


def _unusable_session(
    session: aiohttp.ClientSession, url: str, exc: RuntimeError
) -> ConfigurationError:
    """What aiohttp's ``RuntimeError`` means for a call: its session cannot send."""
    shown = redact_url(url)
    if session.closed:
        return ConfigurationError(
            f"cannot request {shown}: the call's aiohttp session was closed (by "
            "ChatGptt.aclose(), or by other code closing the session= it was given)"
        )
    if "different loop" in str(exc):
        return ConfigurationError(
            f"cannot request {shown}: the call's aiohttp session belongs to another event "
            "loop; a session= must be made on the loop that runs the call"
        )
    return ConfigurationError(f"aiohttp cannot request {shown}: {excerpt(str(exc), 160)}")


def shareable_cause(exc: BaseException) -> BaseException | None:
    """``exc`` as the cause of the typed error that replaces it — unless its ``repr`` holds
    the request's secrets: aiohttp's response errors carry the request's headers (its
    ``Cookie``, ``Proxy-Authorization`` and the call's own headers) and its connection
    errors the proxy's credentials, so they are left out of the chain, as cause and as
    context (the typed error's message already says what they said)."""
    if isinstance(exc, aiohttp.ClientResponseError | aiohttp.ClientConnectorError):
        return None
    return exc


def _is_proxy(proxy: str, host: str, port: int | None) -> bool:
    try:
        parts = urlsplit(proxy)
        return parts.hostname == host and parts.port in (None, port)
    except ValueError:
        return False


def _host_port(host: str, port: int | None) -> str:
    shown_host = f"[{host}]" if ":" in host else host
    return shown_host if port is None else f"{shown_host}:{port}"


def shown_proxy(proxy: str) -> str:
    """``host:port`` of a proxy URL, for messages: never its credentials."""
    try:
        parts = urlsplit(proxy)
        host, port = parts.hostname, parts.port
    except ValueError:
        return "<unparsable proxy URL>"
    if not host:
        return "<proxy without a host>"
    return _host_port(host, port)


def map_client_error(
    exc: BaseException,
    url: str,
    *,
    connect_timeout: float | None = None,
    proxy: str | None = None,
) -> ChatGpttError:
    """The typed error for an aiohttp (or socket) failure while talking to ``url``.

    With a ``proxy``, a failure that the proxy may have caused (it closed the
    connection, answered with something that is not HTTP, dropped the tunnel) names
    the proxy. Messages name hosts and ports, never a proxy's credentials.
    """
    shown = redact_url(url)
    via = "" if proxy is None else f" through the proxy {shown_proxy(proxy)}"
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return ProviderTimeoutError("connect", connect_timeout or 0.0, url=url)
    if isinstance(exc, aiohttp.ClientProxyConnectionError):
        return ProviderConnectionError(
            f"cannot connect to the proxy {exc.host}:{exc.port}: {_reason(exc)}", url=url
        )
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        named = "the proxy" if proxy is None else f"the proxy {shown_proxy(proxy)}"
        return ProviderConnectionError(
            f"{named} refused to open a tunnel to {shown} (HTTP {exc.status})", url=url
        )
    if isinstance(exc, aiohttp.TooManyRedirects):
        return _redirect_error(exc, url)
    if isinstance(exc, aiohttp.NonHttpUrlRedirectClientError):
        return RedirectError(url, "scheme", location=str(exc.args[0]) if exc.args else None)
    if isinstance(exc, aiohttp.InvalidUrlRedirectClientError):
        return RedirectError(url, "invalid", location=str(exc.url))
    if isinstance(exc, aiohttp.ClientConnectorError):
        if proxy is not None and _is_proxy(proxy, exc.host, exc.port):
            target = "the proxy " + shown_proxy(proxy)  # the proxy itself, e.g. not resolved
        else:
            target = f"{_host_port(exc.host, exc.port)}{via}"
        return ProviderConnectionError(f"cannot connect to {target}: {_reason(exc)}", url=url)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        if proxy is not None:
            return ProviderConnectionError(
                f"the proxy {shown_proxy(proxy)} (or {shown} behind it) closed the connection "
                "without answering",
                url=url,
            )
        return ProviderConnectionError(f"{shown} closed the connection without answering", url=url)
    if isinstance(exc, aiohttp.ClientPayloadError):
        if _bad_encoding(exc):
            return _encoding_error(url)
        return ProviderConnectionError(f"the connection to {shown}{via} broke mid-reply", url=url)
    if isinstance(exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        return ConfigurationError(f"cannot request {shown}: not a valid http(s) URL")
    if isinstance(exc, aiohttp.ClientResponseError):
        return MalformedResponseError(
            f"invalid HTTP response{via} ({excerpt(exc.message, 120)})", url=url
        )
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return ProviderTimeoutError("idle", 0.0, url=url)
    if isinstance(exc, aiohttp.ClientError | OSError):
        return ProviderConnectionError(
            f"connection to {shown}{via} failed: {_reason(exc)}", url=url
        )
    if isinstance(exc, ValueError):
        return ConfigurationError(f"cannot request {shown}: {exc}")
    return ProviderConnectionError(f"request to {shown} failed: {type(exc).__name__}", url=url)


def _redirect_error(exc: aiohttp.TooManyRedirects, url: str) -> RedirectError:
    """A loop when a URL of the chain comes back (shown from its first visit), else too many."""
    chain = [str(response.url) for response in exc.history]
    last = exc.history[-1] if exc.history else None
    location = last.headers.get("Location") if last is not None else None
    if location is not None and last is not None:
        try:
            chain.append(str(last.url.join(yarl.URL(location))))
        except ValueError:
            chain.append(location)
    seen: dict[str, int] = {}
    for index, step in enumerate(chain):
        if step in seen:
            return RedirectError(
                url, "loop", location=step, chain=tuple(chain[seen[step] : index + 1])
            )
        seen[step] = index
    return RedirectError(url, "too_many", location=chain[-1] if chain else None, chain=tuple(chain))


def _bad_encoding(exc: BaseException) -> bool:
    """Whether a payload error is a body that does not decode (corrupt gzip, deflate…)."""
    return isinstance(exc.__cause__, ContentEncodingError) or "content-encoding" in str(exc)


def _encoding_error(url: str) -> MalformedResponseError:
    return MalformedResponseError(
        "the reply's Content-Encoding does not decode (a corrupt gzip or deflate body)", url=url
    )


def _reason(exc: BaseException) -> str:
    os_error = getattr(exc, "os_error", None)
    if isinstance(os_error, OSError) and os_error.strerror:
        return os_error.strerror
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__


#: aiohttp's ``RuntimeError`` for a body read whose connection its session closed.
_CLOSED_UNDER_US = "Connection closed."


class ResponseBody:
    """A response body read chunk by chunk as it arrives.

    Each wait for data is bounded by the idle limit and the call's deadline (on the
    call's :class:`~stages.watch.Watch`, or one of its own), and the bytes received
    by ``max_bytes``. Data already buffered is taken without
    arming a timer, so a fast stream costs no timer per chunk. Closing releases
    the connection at once (it is reused only if the body was read to the end).
    """

    __slots__ = (
        "_closed",
        "_content",
        "_deadline",
        "_idle",
        "_max_bytes",
        "_own_watch",
        "_proxy",
        "_response",
        "_total",
        "_url",
        "_watch",
        "received",
    )

    def __init__(
        self,
        response: aiohttp.ClientResponse,
        *,
        url: str,
        idle: float | None,
        deadline: float | None,
        total: float | None,
        max_bytes: int | None,
        proxy: str | None = None,
        watch: Watch | None = None,
    ) -> None:
        self._response = response
        self._own_watch = watch is None
        self._watch = watch if watch is not None else Watch()
        self._proxy = proxy
        self._content = response.content
        self._url = url
        self._idle = idle
        self._deadline = deadline
        self._total = total
        self._max_bytes = max_bytes
        self._closed = False
        self.received = 0

    @classmethod
    def of_call(
        cls, response: aiohttp.ClientResponse, call: Call, url: str, *, max_bytes: int | None
    ) -> ResponseBody:
        """The body of ``response``, read within the call's idle limit and deadline."""
        timeouts = call.settings.timeouts
        return cls(
            response,
            url=url,
            idle=timeouts.idle,
            deadline=call.deadline,
            total=timeouts.total,
            max_bytes=max_bytes,
            proxy=call.proxy,
            watch=call.watch,
        )

    def __aiter__(self) -> ResponseBody:
        return self

    async def __anext__(self) -> bytes:
        content = self._content
        try:
            data = content.read_nowait()
            if not data:
                if content.at_eof():
                    raise StopAsyncIteration
                data = await self._wait()
                if not data:
                    raise StopAsyncIteration
        except ChatGpttError:
            raise
        except (aiohttp.ClientError, OSError) as exc:
            raise self._broken(exc) from exc
        except RuntimeError as exc:
            if str(exc) != _CLOSED_UNDER_US:
                raise
            raise ProviderConnectionError(
                f"the connection to {redact_url(self._url)} was closed from this side after "
                f"{self.received} bytes of the reply: its aiohttp session was closed (by "
                "ChatGptt.aclose(), or by other code closing the session= the call was given)",
                url=self._url,
            ) from None
        self.received += len(data)
        if self._max_bytes is not None and self.received > self._max_bytes:
            raise ResponseTooLargeError("the reply", self._max_bytes, url=self._url)
        return data

    async def _wait(self) -> bytes:
        idle, deadline = self._idle, self._deadline
        if idle is None and deadline is None:
            return await self._content.readany()
        loop = asyncio.get_running_loop()
        limit, seconds, when = "idle", idle, None
        if idle is not None:
            when = loop.time() + idle
        if deadline is not None and (when is None or deadline <= when):
            limit, seconds, when = "total", self._total, deadline
        try:
            return await self._watch.wait(self._content.readany(), when)
        except WaitExpiredError:
            raise ProviderTimeoutError(limit, seconds or 0.0, url=self._url) from None

    def _broken(self, exc: BaseException) -> ChatGpttError:
        if _bad_encoding(exc):
            return _encoding_error(self._url)
        via = "" if self._proxy is None else f" through the proxy {shown_proxy(self._proxy)}"
        return ProviderConnectionError(
            f"the connection to {redact_url(self._url)}{via} broke after {self.received} bytes "
            f"of the reply ({type(exc).__name__})",
            url=self._url,
        )

    async def read(self, limit: int) -> bytes:
        """The rest of the body; ``ResponseTooLargeError`` beyond ``limit`` bytes."""
        parts: list[bytes] = []
        size = 0
        async for chunk in self:
            size += len(chunk)
            if size > limit:
                raise ResponseTooLargeError("the reply", limit, url=self._url)
            parts.append(chunk)
        return b"".join(parts)

    async def aclose(self) -> None:
        """Release the connection; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._own_watch:
            self._watch.close()
        if self._content.at_eof():
            self._response.release()
        else:
            self._response.close()


async def read_prefix(body: AsyncIterable[bytes], limit: int = ERROR_PREVIEW_BYTES) -> bytes:
    """Up to ``limit`` bytes of a body, to classify and quote an unexpected reply.

    Never fails on a broken or slow body: what arrived is what there is.
    """
    parts: list[bytes] = []
    size = 0
    try:
        async for chunk in body:
            parts.append(chunk)
            size += len(chunk)
            if size >= limit:
                break
    except ChatGpttError:
        pass
    return b"".join(parts)[:limit]


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait from ``Retry-After`` (seconds or an HTTP date) or ``retry-after-ms``.

    At most :data:`RETRY_AFTER_CEILING`; ``None`` when absent or unreadable.
    """
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            value = float(millis) / 1000.0
        except ValueError:
            value = -1.0
        if value >= 0:  # NaN fails this too
            return min(value, RETRY_AFTER_CEILING)
    raw = headers.get("Retry-After")
    if raw is None:
        return None
    raw = raw.strip()
    if raw.isascii() and raw.isdigit():
        # 400 digits are a float('inf'); a day is the most ever reported.
        return RETRY_AFTER_CEILING if len(raw) > 12 else min(float(raw), RETRY_AFTER_CEILING)
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    try:
        wait = when.timestamp() - (time.time() if now is None else now)
    except (OverflowError, OSError, ValueError):
        return None
    return min(max(0.0, wait), RETRY_AFTER_CEILING)


def readable_excerpt(body: bytes, content_type: str = "") -> str:
    """A short quote of an unexpected body: HTML tags out and entities decoded, one line."""
    text = body.decode("utf-8", "replace")
    if "html" in content_type.lower() or text.lstrip().startswith("<"):
        text = html.unescape(_TAG.sub(" ", _INLINE_TAG.sub("", text)))
    return excerpt(text)


def length_declared(headers: Mapping[str, str]) -> bool:
    """Whether a reply's body has a declared end (``Content-Length`` or chunked).

    Without one, as PHP's built-in server sends every reply, the body ends where the
    connection closes: a cut connection looks exactly like the end of the body.
    """
    if "Content-Length" in headers:
        return True
    return "chunked" in headers.get("Transfer-Encoding", "").lower()


def classify_failure(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    url: str,
    *,
    action: str | None = None,
) -> ChatGpttError:
    """The error a non-200 reply means, from its status, headers and first bytes.

    Checked in order: Cloudflare's 520–527 origin errors (their pages carry Cloudflare
    markers too); a firewall's block or challenge page (any other status: Wordfence
    blocks with 503, and such a page is never retried); WordPress's ``400 0`` for an
    unknown action; 429; 5xx; the rest. How a dialect's site rejects a nonce is the
    dialect's to recognise, before it calls this.
    """
    content_type = headers.get("Content-Type", "")
    retry_after = parse_retry_after(headers)
    if 520 <= status <= 527:
        return CloudflareOriginError(
            status, url, readable_excerpt(body, content_type), retry_after=retry_after
        )
    protection = detect_protection(body, headers)
    if protection is not None:
        return BotProtectionError(url, status, protection.marker, firewall=protection.firewall)
    if status == 400 and body.strip() == b"0":
        return UnknownActionError(url, action or "?")
    preview = readable_excerpt(body, content_type)
    if status == 429:
        return RateLimitError(url, preview, retry_after=retry_after)
    if status == 407:
        return HTTPStatusError(
            407,
            url,
            preview,
            message="the proxy refused the request: it wants (other) credentials (HTTP 407)",
        )
    if 500 <= status <= 599:
        return ServerError(status, url, preview, retry_after=retry_after)
    if 300 <= status <= 399:
        location = headers.get("Location", "").strip()
        where = (
            f"redirected to {redact_url(location)}" if location else "a redirect without a Location"
        )
        return HTTPStatusError(
            status, url, preview, message=f"HTTP {status} from {redact_url(url)}: {where}"
        )
    return HTTPStatusError(status, url, preview, retry_after=retry_after)
