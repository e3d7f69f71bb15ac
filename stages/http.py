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
from collections.abc import AsyncIterable, Mapping, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

import aiohttp

from .errors import (
    BotProtectionError,
    ChatGpttError,
    CloudflareOriginError,
    ConfigurationError,
    HTTPStatusError,
    MalformedResponseError,
    NonceRejectedError,
    ProviderConnectionError,
    ProviderTimeoutError,
    RateLimitError,
    ResponseTooLargeError,
    ServerError,
    UnknownActionError,
    excerpt,
    redact_url,
)
from .protection import challenge_marker

if TYPE_CHECKING:
    from .core import Call

__all__ = [
    "ERROR_PREVIEW_BYTES",
    "ResponseBody",
    "classify_failure",
    "map_client_error",
    "parse_retry_after",
    "read_prefix",
    "send",
]

#: How much of an error reply is read to classify it and quote it.
ERROR_PREVIEW_BYTES = 64 * 1024

_NONCE_EXPIRED = b"The link you followed has expired."
_TAG = re.compile(r"<[^>]*>")


@lru_cache(maxsize=32)
def _client_timeout(connect: float | None) -> aiohttp.ClientTimeout:
    # Only the socket connect is aiohttp's job: waiting for a pooled connection is
    # bounded by first_byte, body reads by ResponseBody (idle and total).
    return aiohttp.ClientTimeout(total=None, connect=None, sock_connect=connect, sock_read=None)


async def send(
    call: Call,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    params: Sequence[tuple[str, str]] | None = None,
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
    scope = asyncio.timeout_at(when)
    try:
        async with scope:
            return await call.session.request(
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
    except (aiohttp.ClientError, OSError, ValueError) as exc:  # TimeoutError is an OSError
        if scope.expired():
            raise ProviderTimeoutError(limit, seconds or 0.0, url=url) from None
        raise map_client_error(exc, url, connect_timeout=timeouts.connect) from exc


def map_client_error(
    exc: BaseException, url: str, *, connect_timeout: float | None = None
) -> ChatGpttError:
    """The typed error for an aiohttp (or socket) failure while talking to ``url``.

    Messages name hosts and ports, never a proxy's credentials.
    """
    shown = redact_url(url)
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return ProviderTimeoutError("connect", connect_timeout or 0.0, url=url)
    if isinstance(exc, aiohttp.ClientProxyConnectionError):
        return ProviderConnectionError(
            f"cannot connect to the proxy {exc.host}:{exc.port}: {_reason(exc)}", url=url
        )
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        return ProviderConnectionError(
            f"the proxy refused to open a tunnel to {shown} (HTTP {exc.status})", url=url
        )
    if isinstance(exc, aiohttp.ClientConnectorError):
        return ProviderConnectionError(
            f"cannot connect to {exc.host}:{exc.port}: {_reason(exc)}", url=url
        )
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return ProviderConnectionError(f"{shown} closed the connection without answering", url=url)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return ProviderConnectionError(f"the connection to {shown} broke mid-reply", url=url)
    if isinstance(exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        return ConfigurationError(f"cannot request {shown}: not a valid http(s) URL")
    if isinstance(exc, aiohttp.ClientResponseError):
        return MalformedResponseError(f"invalid HTTP response ({exc.message})", url=url)
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return ProviderTimeoutError("idle", 0.0, url=url)
    if isinstance(exc, aiohttp.ClientError | OSError):
        return ProviderConnectionError(f"connection to {shown} failed: {_reason(exc)}", url=url)
    if isinstance(exc, ValueError):
        return ConfigurationError(f"cannot request {shown}: {exc}")
    return ProviderConnectionError(f"request to {shown} failed: {type(exc).__name__}", url=url)


def _reason(exc: BaseException) -> str:
    os_error = getattr(exc, "os_error", None)
    if isinstance(os_error, OSError) and os_error.strerror:
        return os_error.strerror
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__


class ResponseBody:
    """A response body read chunk by chunk as it arrives.

    Each wait for data is bounded by the idle limit and the call's deadline, and
    the bytes received by ``max_bytes``. Data already buffered is taken without
    arming a timer, so a fast stream costs no timer per chunk. Closing releases
    the connection at once (it is reused only if the body was read to the end).
    """

    __slots__ = (
        "_closed",
        "_content",
        "_deadline",
        "_idle",
        "_max_bytes",
        "_response",
        "_total",
        "_url",
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
    ) -> None:
        self._response = response
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
        scope = asyncio.timeout_at(when)
        try:
            async with scope:
                return await self._content.readany()
        except TimeoutError:
            if scope.expired():
                raise ProviderTimeoutError(limit, seconds or 0.0, url=self._url) from None
            raise

    def _broken(self, exc: BaseException) -> ChatGpttError:
        return ProviderConnectionError(
            f"the connection to {redact_url(self._url)} broke after {self.received} bytes "
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
    """Seconds to wait from ``Retry-After`` (seconds or an HTTP date) or ``retry-after-ms``."""
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            value = float(millis) / 1000.0
        except ValueError:
            value = -1.0
        if value >= 0:
            return value
    raw = headers.get("Retry-After")
    if raw is None:
        return None
    raw = raw.strip()
    if raw.isdigit():
        return float(raw)
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _readable(body: bytes, content_type: str) -> str:
    text = body.decode("utf-8", "replace")
    if "html" in content_type.lower() or text.lstrip().startswith("<"):
        text = html.unescape(_TAG.sub(" ", text))
    return excerpt(text)


def classify_failure(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    url: str,
    *,
    action: str | None = None,
    nonce: str | None = None,
) -> ChatGpttError:
    """The error a non-200 reply means, from its status, headers and first bytes.

    Checked in order: Cloudflare's 520–527 origin errors (their pages carry Cloudflare
    markers too); a bot-protection page (any other status); the plugin's 403 nonce
    page; WordPress's ``400 0`` for an unknown action; 429; 5xx; the rest.
    """
    content_type = headers.get("Content-Type", "")
    retry_after = parse_retry_after(headers)
    if 520 <= status <= 527:
        return CloudflareOriginError(
            status, url, _readable(body, content_type), retry_after=retry_after
        )
    marker = challenge_marker(body)
    if marker is not None:
        return BotProtectionError(url, status, marker)
    if status == 403 and body.lstrip().startswith(_NONCE_EXPIRED):
        return NonceRejectedError(url, "the link you followed has expired (HTTP 403)", nonce=nonce)
    if status == 400 and body.strip() == b"0":
        return UnknownActionError(url, action or "?")
    preview = _readable(body, content_type)
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
        location = headers.get("Location", "")
        return HTTPStatusError(
            status,
            url,
            preview,
            message=f"HTTP {status} from {redact_url(url)}: redirected to {redact_url(location)}",
        )
    return HTTPStatusError(status, url, preview, retry_after=retry_after)
