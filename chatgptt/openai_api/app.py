"""The OpenAI-compatible application: routes, admission, authentication, streaming, shutdown.

``POST /v1/chat/completions`` (whole as a ``chat.completion``, or streamed as
``chat.completion.chunk`` events ending in ``data: [DONE]``), ``GET /v1/models`` and
``GET /v1/models/{model}``, and ``GET /health`` for load balancers. Every failure is OpenAI's
error object (:mod:`.errors`).

Scale: at most ``max_concurrency`` chat requests are admitted at once (past that, 429 with
``Retry-After``), and the upstream connection pool holds as many connections, so every
admitted stream flows. A client that hangs up cancels its handler (aiohttp's handler
cancellation), which closes the upstream request. On shutdown the server stops accepting,
lets the answers in flight finish for ``grace`` seconds, then ends the rest: a stream with an
error event and ``[DONE]``, a whole answer with a 503.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import attrs
from aiohttp import web

from chatgptt.chatgptt import ChatGptt
from chatgptt.openai_api.chat_request import ChatRequest, parse_chat_request
from chatgptt.openai_api.errors import (
    OpenAIError,
    for_status,
    from_http_exception,
    from_provider,
)
from chatgptt.openai_api.usage import ESTIMATE, UsageCounter
from chatgptt.session import SessionOptions, make_session
from stages.errors import ChatGpttError, RateLimitError, redact_url
from stages.watch import WaitExpiredError, Watch

__all__ = [
    "STATE_KEY",
    "ChunkFrames",
    "ServeOptions",
    "ServerState",
    "completion_body",
    "make_app",
    "make_runner",
]

_log = logging.getLogger("chatgptt.openai_api")

#: Seconds the ended answers get to write their last event once the grace period is over.
END_TIMEOUT = 5.0
_SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # a reverse proxy must not buffer the stream
}
_JSON_TYPES = frozenset({"application/json", "text/plain", "application/x-www-form-urlencoded"})


def _positive(_instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if isinstance(value, bool) or not value > 0:
        raise ValueError(f"{attribute.name} must be positive, got {value!r}")


def _not_negative(_instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if isinstance(value, bool) or not value >= 0:
        raise ValueError(f"{attribute.name} must be 0 or more, got {value!r}")


@attrs.frozen(kw_only=True)
class ServeOptions:
    """How the server runs.

    Attributes:
        api_key: when set, every ``/v1`` request needs ``Authorization: Bearer <api_key>``.
            Kept out of ``repr`` (and so out of logs).
        max_concurrency: chat requests admitted at once (per process); the upstream pool
            holds as many connections.
        grace: seconds the answers in flight get to finish when the server stops.
        max_body_bytes: the largest request body (413 past it).
        body_timeout: seconds a client has to send its body (408 past it).
        idle_timeout: seconds a connection may sit idle, or in the middle of its request
            headers, before it is closed; and how long a client may leave the answer
            unread (a stream's next event, a large answer) before it is cut off.
        retry_after: the ``Retry-After`` seconds of a 429 for a full server.
    """

    api_key: str | None = attrs.field(default=None, repr=False)
    max_concurrency: int = attrs.field(default=1024, validator=_positive)
    grace: float = attrs.field(default=30.0, validator=_not_negative)
    max_body_bytes: int = attrs.field(default=4 << 20, validator=_positive)
    body_timeout: float = attrs.field(default=30.0, validator=_positive)
    idle_timeout: float = attrs.field(default=30.0, validator=_positive)
    retry_after: int = attrs.field(default=1, validator=_positive)

    @api_key.validator
    def _check_key(self, _attribute: attrs.Attribute[Any], value: str | None) -> None:
        if value is not None and (not value or any(c.isspace() for c in value)):
            raise ValueError("the API key must be a non-empty string without spaces")


class _Inflight:
    """One admitted chat request: its handler task, and whether the shutdown may end it."""

    __slots__ = ("ending", "task", "waiting")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        #: Waiting on the site (the only place a shutdown cuts in).
        self.waiting = False
        #: The shutdown cancelled the task: answer with an error instead of dying.
        self.ending = False


class ServerState:
    """What the handlers share: the provider, the options, the pool, the requests in flight."""

    def __init__(
        self, provider: type[ChatGptt], options: ServeOptions, counter: UsageCounter
    ) -> None:
        self.provider = provider
        self.options = options
        self.counter = counter
        self.session: aiohttp.ClientSession | None = None
        self.in_flight: set[_Inflight] = set()
        self.closing = False
        self._key = None if options.api_key is None else options.api_key.encode()
        self._idle = asyncio.Event()
        self._hurry = asyncio.Event()

    @property
    def dialect(self) -> str:
        """The dialect the provider is set to speak: ``auto`` (the page decides) or a name
        (``classic`` for a provider without the choice)."""
        return str(getattr(self.provider, "dialect", "classic"))

    @property
    def detected_dialect(self) -> str | None:
        """The dialect the site was last found to speak (from the token cache), if known."""
        cache = getattr(self.provider, "token_cache", None)
        settings = getattr(self.provider, "settings", None)
        dialects = getattr(self.provider, "dialects", None)
        if cache is None or settings is None or dialects is None:
            return None
        choice = settings()
        entry = cache.peek(dialects.cache_key(choice.site.page_url, choice.dialect, {}))
        return None if entry is None else str(entry[1].dialect)

    @property
    def needs_key(self) -> bool:
        """Whether ``/v1`` requests must carry the API key."""
        return self._key is not None

    def authorized(self, header: str | None) -> bool:
        """Whether ``Authorization: header`` carries the key: the ``Bearer`` scheme (in any
        case, as HTTP's schemes are), then the key (constant-time comparison)."""
        if self._key is None:
            return True
        if header is None:
            return False
        scheme, _, token = header.strip().partition(" ")
        # aiohttp decodes header bytes it cannot read as UTF-8 to surrogates: keep them
        # as the bytes they were (they then simply do not match).
        given = token.strip().encode("utf-8", "surrogateescape")
        return hmac.compare_digest(given, self._key) and scheme.lower() == "bearer"

    def hurry(self) -> None:
        """End the grace period now (a second Ctrl-C)."""
        self._hurry.set()

    def _done(self, entry: _Inflight) -> None:
        self.in_flight.discard(entry)
        if self.closing and not self.in_flight:
            self._idle.set()

    async def drain(self) -> None:
        """Stop admitting; wait up to ``grace`` for the requests in flight, then end them."""
        self.closing = True
        if self.in_flight and self.options.grace > 0:
            self._idle.clear()
            waits = [asyncio.ensure_future(e.wait()) for e in (self._idle, self._hurry)]
            try:
                await asyncio.wait(
                    waits, timeout=self.options.grace, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                for wait in waits:
                    wait.cancel()
        ending = list(self.in_flight)
        for entry in ending:
            if entry.waiting:
                entry.ending = True
                entry.task.cancel("the server is stopping")
        if ending:
            await asyncio.wait([entry.task for entry in ending], timeout=END_TIMEOUT)


#: Where the app keeps its :class:`ServerState`.
STATE_KEY: web.AppKey[ServerState] = web.AppKey("chatgptt_openai_api", ServerState)


# --- the guard around every request ------------------------------------------------------------

Endpoint = Callable[[web.Request, ServerState], Awaitable[web.StreamResponse]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _guarded(endpoint: Endpoint, *, v1: bool | None = True) -> Handler:
    """``endpoint`` behind the guard: for ``/v1`` (``v1=None``: when the path says so) the API
    key and the shutdown; every error as OpenAI's error object.

    A wrapper per route rather than an aiohttp middleware: aiohttp runs its middleware chain
    as two more coroutine layers on every request, and this server's requests are small.
    """

    async def guarded(request: web.Request) -> web.StreamResponse:
        state = request.app[STATE_KEY]
        try:
            if v1 or (v1 is None and request.path.startswith("/v1")):
                _check_gate(request, state)
            return await endpoint(request, state)
        except OpenAIError as exc:
            return exc.response()
        except web.HTTPException as exc:  # aiohttp's own, e.g. a body over client_max_size
            if exc.status < 400:
                raise
            return from_http_exception(exc, request.method, request.path).response()

    return guarded


def _check_gate(request: web.Request, state: ServerState) -> None:
    """What every ``/v1`` request passes: the API key, and a server that is not stopping."""
    if state.needs_key and not state.authorized(request.headers.get("Authorization")):
        raise _unauthorized(request.headers.get("Authorization"))
    if state.closing:
        raise OpenAIError(
            503,
            "the server is shutting down; retry on another instance",
            "server_error",
            code="server_shutting_down",
            headers={"Connection": "close"},
        )


def _check_room(state: ServerState) -> None:
    """A chat request is admitted while fewer than ``max_concurrency`` are answered."""
    if len(state.in_flight) >= state.options.max_concurrency:
        raise OpenAIError(
            429,
            f"the server is answering its limit of {state.options.max_concurrency} requests "
            "at once; retry shortly",
            "requests",
            code="rate_limit_exceeded",
            headers={"Retry-After": str(state.options.retry_after)},
        )


def _check_length(request: web.Request, options: ServeOptions) -> None:
    """A body declared longer than ``max_body_bytes`` is refused before it is read."""
    length = request.content_length
    if length is not None and length > options.max_body_bytes:
        raise OpenAIError(
            413,
            f"the request body is {length} bytes; the limit is {options.max_body_bytes}",
            code="request_too_large",
        )


def _unauthorized(header: str | None) -> OpenAIError:
    # The message never repeats what was sent: it may be a real key, for another service.
    if header is None:
        message = (
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
        )
    else:
        message = "Incorrect API key provided."
    return OpenAIError(401, message, code="invalid_api_key")


# --- routes -----------------------------------------------------------------------------------


async def _health(request: web.Request, state: ServerState) -> web.Response:
    body = {
        "status": "stopping" if state.closing else "ok",
        "site": redact_url(state.provider.url),  # open to all: never a URL's credentials
        "dialect": state.dialect,
        "detected_dialect": state.detected_dialect,
        "models": state.provider.get_models(),
        "usage": state.counter.method,
        "in_flight": len(state.in_flight),
        "max_concurrency": state.options.max_concurrency,
        "pid": os.getpid(),
    }
    return web.json_response(body, status=503 if state.closing else 200)


def _model_object(model: str) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": 0, "owned_by": "chatgptt"}


async def _models(request: web.Request, state: ServerState) -> web.Response:
    models = state.provider.get_models()
    return web.json_response({"object": "list", "data": [_model_object(m) for m in models]})


async def _model(request: web.Request, state: ServerState) -> web.Response:
    name = request.match_info["model"]
    if name not in state.provider.get_models():
        raise OpenAIError(
            404, f"The model '{name}' does not exist", param="model", code="model_not_found"
        )
    return web.json_response(_model_object(name))


async def _expect(request: web.Request) -> web.StreamResponse | None:
    """An ``Expect`` header: anything but ``100-continue`` is a 417 in OpenAI's shape
    (aiohttp's own would be plain text). ``100-continue`` asks whether to send the body:
    a request the server would refuse anyway (no key, stopping, body too large, no room)
    gets that answer now, and the connection closes, so the body is never sent."""
    expect = request.headers.get("Expect", "")
    if expect.lower() != "100-continue":
        return OpenAIError(417, f"Unknown Expect: {expect}", code="expectation_failed").response()
    state = request.app[STATE_KEY]
    try:
        if request.path.startswith("/v1"):
            _check_gate(request, state)
        if request.method == "POST" and request.path == "/v1/chat/completions":
            _check_length(request, state.options)
            _check_room(state)
    except OpenAIError as exc:
        refusal = exc.response()
        refusal.force_close()
        return refusal
    if request.version == aiohttp.HttpVersion11:
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the response proper has not begun
    return None


#: The routes, and the methods each takes (for a 405's ``Allow``).
_ALLOWED = {"/health": "GET,HEAD", "/v1/models": "GET,HEAD", "/v1/chat/completions": "POST"}


async def _unrouted(request: web.Request, state: ServerState) -> web.Response:
    """Any other path or method: 404, or 405 for a known path (as OpenAI's error object)."""
    path = request.path
    allowed = _ALLOWED.get(path)
    if allowed is None and path.startswith("/v1/models/") and path.count("/") == 3:
        allowed = "GET,HEAD"
    # The method a path of that shape takes, yet no route took it (``/v1/models/``): no such URL.
    if allowed is None or request.method in allowed.split(","):
        raise OpenAIError(404, f"Invalid URL ({request.method} {path})", code="unknown_url")
    raise OpenAIError(
        405,
        f"Invalid method for URL ({request.method} {path}): allowed {allowed}",
        code="method_not_allowed",
        headers={"Allow": allowed},
    )


async def _read_body(request: web.Request, options: ServeOptions) -> Any:
    """The JSON body: a JSON media type (or none, or curl's default form type, which is
    read as JSON all the same), within the size and time limits."""
    declared = request.headers.get("Content-Type")
    if declared is not None and not declared.startswith("application/json"):
        media = request.content_type
        if media not in _JSON_TYPES and not media.endswith("+json"):
            raise OpenAIError(
                415,
                f"the request body must be JSON (Content-Type: application/json), got {media}",
                code="unsupported_media_type",
            )
    _check_length(request, options)
    if request.content.is_eof():  # the whole body is here: no timer needed
        raw = await request.read()
    else:
        try:
            async with asyncio.timeout(options.body_timeout):
                raw = await request.read()
        except TimeoutError:
            raise OpenAIError(
                408,
                f"the request body did not arrive within {options.body_timeout:g} s",
                code="request_timeout",
                headers={"Connection": "close"},
            ) from None
    try:
        return json.loads(raw)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise OpenAIError(
            400,
            f"We could not parse the JSON body of your request: {exc}",
            code="invalid_json",
        ) from None
    except RecursionError:
        raise OpenAIError(
            400, "the JSON body is nested too deeply to parse", code="invalid_json"
        ) from None


def _shutdown_error() -> OpenAIError:
    return OpenAIError(
        503,
        "the server stopped before the answer was complete; ask again",
        "server_error",
        code="server_shutting_down",
    )


async def _chat_completions(request: web.Request, state: ServerState) -> web.StreamResponse:
    _check_room(state)
    task = asyncio.current_task()
    assert task is not None  # aiohttp runs each handler in a task
    entry = _Inflight(task)
    state.in_flight.add(entry)
    try:
        body = await _read_body(request, state.options)
        provider = state.provider
        try:
            chat = parse_chat_request(body, provider.get_model)
        except ChatGpttError as exc:  # the unknown model
            raise from_provider(exc) from None
        stream = provider.create_async_generator(chat.model, chat.messages, session=state.session)
        if chat.stream:
            return await _relay(request, state, entry, chat, stream)
        return await _complete(request, state, entry, chat, stream)
    finally:
        state._done(entry)


def _completion_id() -> str:
    return "chatcmpl-" + os.urandom(12).hex()


async def _complete(
    request: web.Request, state: ServerState, entry: _Inflight, chat: ChatRequest, stream: Any
) -> web.StreamResponse:
    """The whole answer as one ``chat.completion``."""
    entry.waiting = True
    try:
        async with stream:
            parts = [chunk async for chunk in stream]
    except ChatGpttError as exc:
        raise from_provider(exc) from None
    except asyncio.CancelledError:
        if not entry.ending:
            raise
        entry.task.uncancel()
        raise _shutdown_error() from None
    entry.waiting = False
    text = "".join(parts)
    counter = state.counter
    prompt = counter.prompt(chat.model, chat.messages)
    body = completion_body(
        _completion_id(), int(time.time()), chat.model, text, prompt, counter.text(chat.model, text)
    )
    if len(body) <= _BUFFERED:  # the socket's buffer takes it whole: aiohttp writes it
        return web.Response(body=body, content_type="application/json")
    return await _send_large(request, body, state.options.idle_timeout)


#: What a connection's write buffer takes without waiting for the client (asyncio's
#: high-water mark): a larger answer is written with a bound on the client's reading.
_BUFFERED = 64 * 1024


class _ClientStalledError(Exception):
    """The client left what was written unread for longer than ``idle_timeout``."""


class _BoundedWriter:
    """Writes a response whose client must take it within ``idle`` seconds a write.

    aiohttp's writes wait for a client that does not read without a limit of their own,
    holding the request's slot and its upstream stream. A write the connection's buffer
    takes at once cannot wait, so only the others are timed (one timer for the response).
    """

    __slots__ = ("_high", "_idle", "_protocol", "_response", "_transport", "_watch")

    def __init__(self, request: web.Request, response: web.StreamResponse, idle: float) -> None:
        transport = request.transport
        self._transport = transport
        self._protocol = request.protocol
        self._high = 0 if transport is None else transport.get_write_buffer_limits()[1]
        self._response = response
        self._idle = idle
        self._watch = Watch()

    async def write(self, data: bytes | memoryview) -> None:
        """Write ``data``; :class:`_ClientStalledError` when the client leaves it unread."""
        transport = self._transport
        # Cannot wait: writing is not paused (aiohttp's drain waits only while it is, until
        # the buffer is down to its low mark) and this write keeps the buffer under its high
        # mark, so it does not pause it either.
        if (
            transport is not None
            and not self._protocol.writing_paused
            and transport.get_write_buffer_size() + len(data) <= self._high
        ):
            await self._response.write(data)
            return
        await self._timed(self._response.write(data))

    async def write_eof(self) -> None:
        """End the response (its last bytes are timed as any write)."""
        await self._timed(self._response.write_eof())

    async def _timed(self, write: Awaitable[None]) -> None:
        try:
            await self._watch.wait(write, asyncio.get_running_loop().time() + self._idle)
        except WaitExpiredError:
            raise _ClientStalledError() from None

    def close(self) -> None:
        """Drop the timer (the response is done)."""
        self._watch.close()


def _cut_off(request: web.Request, idle: float) -> None:
    """Close the connection of a client that stopped reading: its handler, slot and
    upstream connection go with it."""
    transport = request.transport
    if transport is not None:
        transport.abort()
    _log.warning("a client left its answer unread for %g s: its connection was closed", idle)


async def _send_large(request: web.Request, body: bytes, idle: float) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.content_length = len(body)
    await response.prepare(request)
    writer = _BoundedWriter(request, response, idle)
    view = memoryview(body)
    try:
        # In slices, each with its own limit: a client that reads steadily, however slowly,
        # is never cut off; one that stops for ``idle`` seconds is.
        for start in range(0, len(view), _BUFFERED):
            await writer.write(view[start : start + _BUFFERED])
        await writer.write_eof()
    except _ClientStalledError:
        _cut_off(request, idle)
    finally:
        writer.close()
    return response


_COMPLETION = (
    '{{"id":"{id}","object":"chat.completion","created":{created},"model":{model},'
    '"choices":[{{"index":0,"message":{{"role":"assistant","content":{content},'
    '"refusal":null,"annotations":[]}},"logprobs":null,"finish_reason":"stop"}}],'
    '"usage":{{"prompt_tokens":{prompt},"completion_tokens":{completion},'
    '"total_tokens":{total},"prompt_tokens_details":{{"cached_tokens":0,"audio_tokens":0}},'
    '"completion_tokens_details":{{"reasoning_tokens":0,"audio_tokens":0,'
    '"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}},'
    '"system_fingerprint":null}}'
)


def completion_body(
    completion_id: str, created: int, model: str, text: str, prompt: int, completion: int
) -> bytes:
    """A ``chat.completion`` as JSON bytes: a fixed layout around the parts that vary (the
    same JSON as ``json.dumps`` of the object, without building the object per request)."""
    return _COMPLETION.format(
        id=completion_id,
        created=created,
        model=json.dumps(model),
        content=json.dumps(text),
        prompt=prompt,
        completion=completion,
        total=prompt + completion,
    ).encode()


class ChunkFrames:
    """The ``chat.completion.chunk`` events of one answer, built from fixed byte strings
    around each chunk's text (the same bytes ``json.dumps`` would give, without a dict per
    chunk)."""

    __slots__ = ("_head", "_tail", "chat", "completion_id", "created")

    def __init__(self, chat: ChatRequest) -> None:
        self.chat = chat
        self.completion_id = _completion_id()
        self.created = int(time.time())
        head = (
            f'data: {{"id":"{self.completion_id}","object":"chat.completion.chunk",'
            f'"created":{self.created},"model":{json.dumps(chat.model)},'
            '"system_fingerprint":null,"choices":[{"index":0,"delta":'
        )
        self._head = head.encode()
        usage = ',"usage":null' if chat.include_usage else ""
        self._tail = f',"logprobs":null,"finish_reason":null}}]{usage}}}\n\n'.encode()

    def content(self, text: str) -> bytes:
        """A chunk of the answer's text."""
        return self._head + b'{"content":' + json.dumps(text).encode() + b"}" + self._tail

    def role(self) -> bytes:
        """The first event: the assistant's turn begins."""
        return self._head + b'{"role":"assistant","content":"","refusal":null}' + self._tail

    def finish(self) -> bytes:
        """The event that ends the answer normally."""
        usage = ',"usage":null' if self.chat.include_usage else ""
        return self._head + f'{{}},"logprobs":null,"finish_reason":"stop"}}]{usage}}}\n\n'.encode()

    def usage(self, usage: dict[str, Any]) -> bytes:
        """The last event when ``stream_options.include_usage``: no choices, the usage."""
        frame = {
            "id": self.completion_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.chat.model,
            "system_fingerprint": None,
            "choices": [],
            "usage": usage,
        }
        return b"data: " + json.dumps(frame).encode() + b"\n\n"


_DONE = b"data: [DONE]\n\n"


async def _relay(
    request: web.Request, state: ServerState, entry: _Inflight, chat: ChatRequest, stream: Any
) -> web.StreamResponse:
    """The answer as events. A failure before the first chunk is an HTTP error; after it
    (the status line is sent) an ``error`` event, then ``[DONE]``."""
    task = entry.task
    idle = state.options.idle_timeout
    writer: _BoundedWriter | None = None
    try:
        async with stream:
            entry.waiting = True
            try:
                first = await anext(stream, None)
            except ChatGpttError as exc:
                raise from_provider(exc) from None
            except asyncio.CancelledError:
                if not entry.ending:
                    raise
                task.uncancel()
                raise _shutdown_error() from None
            entry.waiting = False
            response = web.StreamResponse(headers=_SSE_HEADERS)
            await response.prepare(request)
            writer = _BoundedWriter(request, response, idle)
            frames = ChunkFrames(chat)
            kept: list[str] | None = [] if chat.include_usage else None
            opening = frames.role()
            if first:
                opening += frames.content(first)
                if kept is not None:
                    kept.append(first)
            try:
                await writer.write(opening)
                finished = True
                if first is not None:
                    entry.waiting = True
                    try:
                        async for chunk in stream:
                            if chunk:
                                if kept is not None:
                                    kept.append(chunk)
                                await writer.write(frames.content(chunk))
                    except (_ClientStalledError, ConnectionError):
                        raise  # the client stalled, or is gone (aiohttp ends the request)
                    except ChatGpttError as exc:
                        finished = False
                        ending = from_provider(exc).event()
                    except asyncio.CancelledError:
                        if not entry.ending:
                            raise
                        task.uncancel()
                        finished = False
                        ending = _shutdown_error().event()
                    except Exception:  # a bug: the client still gets an ending it can read
                        _log.exception("the answer failed after its first chunk")
                        finished = False
                        ending = for_status(500, "the answer failed; see the server's log").event()
                    entry.waiting = False
            except _ClientStalledError:
                _cut_off(request, idle)
                return response
        if finished:
            ending = frames.finish()
            if kept is not None:
                counter = state.counter
                prompt = counter.prompt(chat.model, chat.messages)
                ending += frames.usage(counter.usage(chat.model, prompt, "".join(kept)))
        try:
            await writer.write(ending + _DONE)
            await writer.write_eof()
        except _ClientStalledError:
            _cut_off(request, idle)
        return response
    finally:
        if writer is not None:
            writer.close()


# --- the application and its runner -------------------------------------------------------------


async def _open_pool(app: web.Application) -> None:
    state = app[STATE_KEY]
    state.session = make_session(SessionOptions(max_connections=state.options.max_concurrency))


async def _drain(app: web.Application) -> None:
    await app[STATE_KEY].drain()


async def _close_pool(app: web.Application) -> None:
    session, app[STATE_KEY].session = app[STATE_KEY].session, None
    if session is not None:
        await session.close()


def make_app(
    provider: type[ChatGptt] = ChatGptt,
    options: ServeOptions | None = None,
    *,
    counter: UsageCounter = ESTIMATE,
) -> web.Application:
    """The OpenAI-compatible application serving ``provider`` (see the module's doc).

    ``counter`` counts the tokens of ``usage``
    (:func:`~chatgptt.openai_api.usage.load_counter`). Run it with :func:`make_runner`,
    which answers even unreadable requests in OpenAI's shape.
    """
    options = options or ServeOptions()
    app = web.Application(client_max_size=options.max_body_bytes)
    app[STATE_KEY] = ServerState(passing_rate_limits(provider), options, counter)
    routes = app.router
    routes.add_get("/health", _guarded(_health, v1=False), expect_handler=_expect)
    routes.add_get("/v1/models", _guarded(_models), expect_handler=_expect)
    routes.add_get("/v1/models/{model}", _guarded(_model), expect_handler=_expect)
    routes.add_post("/v1/chat/completions", _guarded(_chat_completions), expect_handler=_expect)
    # Last: what no route above takes (another path, or another method on one of them).
    routes.add_route("*", "/{path:.*}", _guarded(_unrouted, v1=None), expect_handler=_expect)
    app.on_startup.append(_open_pool)
    app.on_shutdown.append(_drain)
    app.on_cleanup.append(_close_pool)
    return app


class _PassingRateLimits:
    """A ``retry_on`` that declines the site's 429s asking for a wait, else asks ``inner``."""

    __slots__ = ("inner",)

    def __init__(self, inner: Callable[[BaseException], bool]) -> None:
        self.inner = inner

    def __call__(self, exc: BaseException) -> bool:
        if isinstance(exc, RateLimitError) and exc.status == 429 and (exc.retry_after or 0) > 0:
            return False
        return self.inner(exc)


def passing_rate_limits(provider: type[ChatGptt]) -> type[ChatGptt]:
    """A subclass of ``provider`` that passes the site's rate limit (a 429 with a
    ``Retry-After``) on at once.

    The library waits out a ``Retry-After`` before it retries; behind the server that wait
    would come on top of the client's own, since OpenAI's clients wait ``Retry-After`` and
    retry a 429 themselves. Every other retry is kept, a 5xx with a ``Retry-After`` included.
    """
    policy = provider.retry_policy
    if isinstance(policy.retry_on, _PassingRateLimits):
        return provider
    passing = attrs.evolve(policy, retry_on=_PassingRateLimits(policy.retry_on))
    return provider.derive(None, retry_policy=passing)


class _Connection(web.RequestHandler):
    """aiohttp's connection handler, answering a request it cannot parse (a header line or
    a request line too long, too many headers, not HTTP) in OpenAI's error shape."""

    __slots__ = ()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:  # as aiohttp: too late for another response
            raise ConnectionError("the response is already under way")
        if status >= 500:
            self.log_exception("Error handling request", exc_info=exc)
            error = for_status(status, "the server failed to answer; see its log")
        else:
            error = for_status(status, message)
        response = error.response()
        response.force_close()
        return response


class _Server(web.Server):
    """aiohttp's low-level server with :class:`_Connection` as each connection's handler."""

    def __call__(self) -> web.RequestHandler:
        connection = super().__call__()
        connection.__class__ = _Connection  # same slots: only handle_error differs
        return connection


class _Runner(web.AppRunner):
    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _Server  # adds a method only
        return server


def make_runner(app: web.Application) -> web.AppRunner:
    """The runner of an app from :func:`make_app`: handlers cancelled when their client hangs
    up, idle (or half-sent) connections closed after ``idle_timeout``, no access log."""
    options = app[STATE_KEY].options
    return _Runner(
        app,
        handler_cancellation=True,
        keepalive_timeout=options.idle_timeout,
        shutdown_timeout=END_TIMEOUT,
        access_log=None,
    )
