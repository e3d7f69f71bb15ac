"""``chatgptt serve``: the provider behind an OpenAI-compatible HTTP API.

``POST /v1/chat/completions`` (streamed as ``chat.completion.chunk`` events ending in
``[DONE]``, or whole as a ``chat.completion``) and ``GET /v1/models``, so that any
OpenAI client can talk to chatgptt.me through it. Failures come back as OpenAI-style
error objects with a status that says who failed: 400 for a bad request, 429 for a
rate limit, 502 for the site, 504 for a timeout.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from typing import Any

from aiohttp import web

from stages.errors import (
    BotProtectionError,
    ChatGpttError,
    ConfigurationError,
    ProviderTimeoutError,
    RateLimitError,
    SiteError,
)

from .chatgptt import ChatGptt

__all__ = ["PROVIDER_KEY", "make_app", "serve"]

#: Where the app keeps the provider class it serves.
PROVIDER_KEY: web.AppKey[type[ChatGptt]] = web.AppKey("provider")

_MAX_REQUEST_BYTES = 4 << 20


def make_app(provider: type[ChatGptt] = ChatGptt) -> web.Application:
    """The OpenAI-compatible application serving ``provider``."""
    app = web.Application(client_max_size=_MAX_REQUEST_BYTES)
    app[PROVIDER_KEY] = provider
    app.router.add_get("/v1/models", _models)
    app.router.add_post("/v1/chat/completions", _chat_completions)
    return app


def _error(status: int, message: str, kind: str, code: str | None = None) -> web.Response:
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return web.json_response(body, status=status)


def _status_of(exc: ChatGpttError) -> tuple[int, str]:
    if isinstance(exc, ConfigurationError):
        return 400, "invalid_request_error"
    if isinstance(exc, RateLimitError):
        return 429, "rate_limit_error"
    if isinstance(exc, ProviderTimeoutError):
        return 504, "timeout"
    if isinstance(exc, SiteError | BotProtectionError):
        return 502, "upstream_error"
    return 502, "api_error"


async def _models(request: web.Request) -> web.Response:
    provider = request.app[PROVIDER_KEY]
    data: list[dict[str, Any]] = [
        {"id": model, "object": "model", "created": 0, "owned_by": "chatgptt"}
        for model in provider.get_models()
    ]
    return web.json_response({"object": "list", "data": data})


async def _chat_completions(request: web.Request) -> web.StreamResponse:
    provider: type[ChatGptt] = request.app[PROVIDER_KEY]
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        return _error(400, "the request body is not valid JSON", "invalid_request_error")
    if not isinstance(body, dict):
        return _error(400, "the request body must be a JSON object", "invalid_request_error")
    try:
        model = provider.get_model(body.get("model") or "")
    except ConfigurationError as exc:
        return _error(404, str(exc), "invalid_request_error", "model_not_found")
    messages: Any = body.get("messages")  # validated by the provider: a bad list is a 400
    stream = provider.create_async_generator(model, messages)
    completion_id = "chatcmpl-" + uuid.uuid4().hex[:24]
    created = int(time.time())
    if body.get("stream"):
        return await _stream(request, stream, completion_id, created, model)
    try:
        async with stream:
            text = "".join([chunk async for chunk in stream])
    except ChatGpttError as exc:
        status, kind = _status_of(exc)
        return _error(status, str(exc), kind)
    return web.json_response(
        {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
        }
    )


def _chunk(
    completion_id: str, created: int, model: str, delta: dict[str, Any], finish: str | None
) -> bytes:
    frame = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(frame, ensure_ascii=False).encode() + b"\n\n"


async def _stream(
    request: web.Request, stream: Any, completion_id: str, created: int, model: str
) -> web.StreamResponse:
    """Relay the answer as OpenAI chunks; a failure before the first chunk is an HTTP error,
    one after it an ``error`` event (the status line is sent by then)."""
    async with stream:
        try:
            first = await anext(stream, None)
        except ChatGpttError as exc:
            status, kind = _status_of(exc)
            return _error(status, str(exc), kind)
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        await response.write(
            _chunk(completion_id, created, model, {"role": "assistant", "content": ""}, None)
        )
        try:
            if first is not None:
                await response.write(
                    _chunk(completion_id, created, model, {"content": first}, None)
                )
                async for chunk in stream:
                    await response.write(
                        _chunk(completion_id, created, model, {"content": chunk}, None)
                    )
        except ChatGpttError as exc:
            _status, kind = _status_of(exc)
            error = {"error": {"message": str(exc), "type": kind, "param": None, "code": None}}
            await response.write(b"data: " + json.dumps(error).encode() + b"\n\n")
        else:
            await response.write(_chunk(completion_id, created, model, {}, "stop"))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


def serve(provider: type[ChatGptt], host: str, port: int) -> int:
    """Run the API until Ctrl-C; the exit status."""

    async def run() -> None:
        runner = web.AppRunner(make_app(provider), handler_cancellation=True)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise ChatGpttError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        bound = runner.addresses[0][1] if runner.addresses else port
        print(
            f"serving {provider.url} as an OpenAI API on http://{host}:{bound}/v1",
            file=sys.stderr,
            flush=True,
        )
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        return 0
    except ChatGpttError as exc:
        print(f"chatgptt: error: {exc}", file=sys.stderr)
        return 1
    return 0
