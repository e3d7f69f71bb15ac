"""Every failure as OpenAI's error object: ``{"error": {"message", "type", "param", "code"}}``.

Clients of the OpenAI API (its SDKs, agent frameworks) read that shape and pick their typed
exception from the status (400 ``BadRequestError``, 401 ``AuthenticationError``, 404
``NotFoundError``, 429 ``RateLimitError``, 5xx ``InternalServerError``…), so the server
answers every failure that way: its own checks (:class:`OpenAIError`), the provider's errors
(:func:`from_provider`), the HTTP errors aiohttp raises for a route, a method or a body
(:func:`from_http_exception`), and requests aiohttp cannot even parse (:func:`for_status`).
"""

from __future__ import annotations

import json
import math
from http import HTTPStatus
from typing import Any

from aiohttp import web

from stages.errors import (
    BotProtectionError,
    ChatGpttError,
    ConfigurationError,
    EmptyMessageError,
    InvalidMessagesError,
    MessageFlaggedError,
    ProviderConnectionError,
    ProviderTimeoutError,
    RateLimitError,
    TokenLimitError,
    UnknownModelError,
)

__all__ = [
    "OpenAIError",
    "error_body",
    "for_status",
    "from_http_exception",
    "from_provider",
]

INVALID_REQUEST = "invalid_request_error"
SERVER_ERROR = "server_error"


def error_body(
    message: str, kind: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """The JSON object of an error, as OpenAI sends it."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


class OpenAIError(Exception):
    """A failure to answer with ``status`` and OpenAI's error object.

    Attributes:
        status: the HTTP status.
        message, kind, param, code: the error object's fields (``kind`` is its ``type``).
        headers: extra response headers (``Retry-After``).
    """

    def __init__(
        self,
        status: int,
        message: str,
        kind: str = INVALID_REQUEST,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.param = param
        self.code = code
        self.headers = dict(headers) if headers else {}

    def body(self) -> dict[str, Any]:
        """The error object."""
        return error_body(self.message, self.kind, self.param, self.code)

    def event(self) -> bytes:
        """The error as a server-sent event, for a stream whose status line is sent."""
        return b"data: " + json.dumps(self.body()).encode() + b"\n\n"

    def response(self) -> web.Response:
        """The error as an HTTP response."""
        return web.Response(
            status=self.status,
            body=json.dumps(self.body()).encode(),
            content_type="application/json",
            headers=self.headers,
        )


def _retry_after(seconds: float | None) -> dict[str, str]:
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return {}
    return {"Retry-After": str(math.ceil(seconds))}


#: Tells OpenAI's SDKs not to retry (they retry every 429 and 5xx by default): the site's
#: guest token limit and its bot protection do not go away in the seconds a retry waits.
_FINAL = {"x-should-retry": "false"}


def from_provider(exc: ChatGpttError) -> OpenAIError:
    """The provider's error as the status that says who failed and what the client can do.

    A bad request is 400 (404 for an unknown model); the site refusing the message is 400;
    its rate limit is 429 with its ``Retry-After``, its guest token limit 429
    ``insufficient_quota``; a timeout is 504; anything else the site or the network did is
    502. The message is the provider's own, which carries no secret. The failures a retry
    cannot mend (the token limit, bot protection) carry ``x-should-retry: false``.
    """
    message = str(exc)
    if isinstance(exc, UnknownModelError):
        return OpenAIError(404, message, param="model", code="model_not_found")
    if isinstance(exc, InvalidMessagesError):
        return OpenAIError(400, message, param="messages")
    if isinstance(exc, ConfigurationError):
        return OpenAIError(400, message)
    if isinstance(exc, MessageFlaggedError):
        return OpenAIError(400, message, param="messages", code="content_policy_violation")
    if isinstance(exc, EmptyMessageError):
        return OpenAIError(400, message, param="messages")
    if isinstance(exc, RateLimitError):
        return OpenAIError(
            429,
            message,
            "requests",
            code="rate_limit_exceeded",
            headers=_retry_after(exc.retry_after),
        )
    if isinstance(exc, TokenLimitError):
        return OpenAIError(
            429, message, "insufficient_quota", code="insufficient_quota", headers=_FINAL
        )
    if isinstance(exc, ProviderTimeoutError):
        return OpenAIError(504, message, SERVER_ERROR, code="upstream_timeout")
    if isinstance(exc, ProviderConnectionError):
        return OpenAIError(502, message, SERVER_ERROR, code="upstream_unreachable")
    if isinstance(exc, BotProtectionError):
        return OpenAIError(502, message, SERVER_ERROR, code="bot_protection", headers=_FINAL)
    return OpenAIError(502, message, SERVER_ERROR, code="upstream_error")


def for_status(status: int, detail: str | None = None) -> OpenAIError:
    """An error for a bare HTTP status (``detail``, if any, says more)."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    message = f"{phrase}: {detail}" if detail else phrase
    kind = INVALID_REQUEST if status < 500 else SERVER_ERROR
    return OpenAIError(status, message, kind)


def from_http_exception(exc: web.HTTPException, method: str, path: str) -> OpenAIError:
    """One of aiohttp's HTTP errors (no route, wrong method, body too large…)."""
    status = exc.status
    if status == 404:
        return OpenAIError(404, f"Invalid URL ({method} {path})", code="unknown_url")
    if status == 405:
        allowed = exc.headers.get("Allow", "")
        return OpenAIError(
            405,
            f"Invalid method for URL ({method} {path})"
            + (f": allowed {allowed}" if allowed else ""),
            code="method_not_allowed",
            headers={"Allow": allowed} if allowed else None,
        )
    if status == 413:
        return OpenAIError(413, exc.text or "Request body too large", code="request_too_large")
    error = for_status(status, exc.text if exc.text and exc.text != exc.reason else None)
    if status == 401:
        error.code = "invalid_api_key"
    return error
