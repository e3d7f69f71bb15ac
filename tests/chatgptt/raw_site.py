"""A chat site on a raw asyncio socket server, for hostile and broken behaviour that an
``aiohttp.web`` server will not produce: bodies ended by closing the connection, keep-alive
comments forever, redirects to other schemes, garbage instead of HTTP.

The landing page is the emulator's (so the client finds its tokens); every other request
goes to a scripted ``answer`` that writes whatever bytes it likes and returns when done (the
connection is then closed). It runs in the test's own event loop: start it with ``async with``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Sequence

import attrs

from chatgptt.emulator.pages import PageContext, render_landing

__all__ = [
    "ANSWER_TEXT",
    "Answer",
    "RawRequest",
    "RawSite",
    "event_stream_head",
    "frame",
    "http_head",
    "serve_bytes",
]

NONCE = "5e2498d71a"
POST_ID = "4"
ANSWER_TEXT = "Hello from upstream: Hello"


@attrs.frozen
class RawRequest:
    """One request as the server read it."""

    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        return next((value for key, value in self.headers if key.lower() == lowered), None)


#: Writes the reply to one request; the connection is closed when it returns.
Answer = Callable[[RawRequest, asyncio.StreamWriter], Awaitable[None]]


def http_head(status: str, headers: list[tuple[str, str]]) -> bytes:
    """A status line and headers, ready to be followed by a body."""
    lines = [f"HTTP/1.1 {status}", *(f"{name}: {value}" for name, value in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def event_stream_head() -> bytes:
    """The plugin's event-stream headers as PHP's built-in server sends them: no length,
    no chunking, ``Connection: close`` (the body ends where the connection closes)."""
    return http_head(
        "200 OK",
        [
            ("Connection", "close"),
            ("X-Powered-By", "PHP/8.2.36"),
            ("Content-type", "text/event-stream;charset=UTF-8"),
            ("Cache-Control", "no-cache"),
        ],
    )


def frame(content: str | None = None, finish: str | None = None) -> bytes:
    """One relayed OpenAI chunk frame."""
    delta = {} if content is None else {"content": content}
    chunk = {
        "id": "chatcmpl-raw",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


def serve_bytes(data: bytes) -> Answer:
    """An answer that writes ``data`` and closes the connection."""

    async def answer(_request: RawRequest, writer: asyncio.StreamWriter) -> None:
        writer.write(data)
        await writer.drain()

    return answer


class RawSite:
    """The site; ``answer`` serves every request but the landing page's GET."""

    def __init__(
        self,
        answer: Answer,
        *,
        page_headers: Sequence[tuple[str, str]] = (),
        landing: bool = True,
    ) -> None:
        """``landing=False`` sends the landing page's GET to ``answer`` too."""
        self.answer = answer
        self.page_headers = list(page_headers)
        self.landing = landing
        self.requests: list[RawRequest] = []
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def count(self, method: str) -> int:
        return sum(request.method == method for request in self.requests)

    async def __aenter__(self) -> RawSite:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            request = await _read_request(reader)
            if request is None:
                return
            self.requests.append(request)
            if (
                self.landing
                and request.method == "GET"
                and request.target in ("/", f"/?page_id={POST_ID}")
            ):
                await self._landing(writer)
            else:
                await self.answer(request, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _landing(self, writer: asyncio.StreamWriter) -> None:
        base = self.url
        page = render_landing(
            "capture",
            PageContext(
                base_url=base,
                ajax_url=base + "/wp-admin/admin-ajax.php",
                nonce=NONCE,
                image_nonce="c68796052f",
                post_id=POST_ID,
                bot_id="0",
                front_page=True,
            ),
        ).encode()
        headers = [
            ("Content-Type", "text/html; charset=UTF-8"),
            ("Content-Length", str(len(page))),
            ("Connection", "close"),
            *self.page_headers,
        ]
        writer.write(http_head("200 OK", headers) + page)
        await writer.drain()


async def _read_request(reader: asyncio.StreamReader) -> RawRequest | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return None
    request_line, *lines = head.decode("latin-1").split("\r\n")
    method, target, _ = request_line.split(" ", 2)
    headers = tuple(
        (name.strip(), value.strip())
        for name, _, value in (line.partition(":") for line in lines if line)
    )
    length = next((int(v) for k, v in headers if k.lower() == "content-length"), 0)
    body = await reader.readexactly(length) if length else b""
    return RawRequest(method, target, headers, body)
