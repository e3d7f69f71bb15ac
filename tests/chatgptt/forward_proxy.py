"""A small HTTP forward proxy on loopback, for tests that check a client's proxy use.

It serves absolute-form requests (``GET http://host:port/path HTTP/1.1``), records each
one with its ``Proxy-Authorization`` header, optionally demands Basic credentials (407
otherwise), and relays the request to the origin with ``Connection: close`` (one request
per connection keeps the relaying trivial: the reply is piped until the origin hangs up).
``CONNECT`` (HTTPS tunnels) is refused. It runs in a thread with its own event loop, so
sync and async tests alike can use it, as with the site emulator.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import threading
from types import TracebackType
from urllib.parse import urlsplit

import attrs

__all__ = ["ForwardProxy", "ProxiedRequest", "basic_credentials"]

_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authorization", "proxy-connection", "te", "upgrade"}
)


def basic_credentials(user: str, password: str) -> str:
    """The ``Proxy-Authorization`` value a client sends for ``user:password``."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


@attrs.frozen
class ProxiedRequest:
    """One request as the proxy received it."""

    method: str
    target: str
    proxy_authorization: str | None


class ForwardProxy:
    """A forward proxy on ``127.0.0.1`` (a free port); a sync context manager.

    Args:
        credentials: ``(user, password)`` the proxy demands, or ``None`` for an open proxy.
    """

    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        self._expected = None if credentials is None else basic_credentials(*credentials)
        self._lock = threading.Lock()
        self._requests: list[ProxiedRequest] = []
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def requests(self) -> list[ProxiedRequest]:
        """The requests received so far, in order."""
        with self._lock:
            return list(self._requests)

    def url(self, user: str | None = None, password: str | None = None) -> str:
        """The proxy's URL, with ``user:password@`` when given."""
        auth = f"{user}:{password}@" if user is not None else ""
        return f"http://{auth}127.0.0.1:{self.port}"

    def start(self) -> ForwardProxy:
        """Start listening; returns ``self``."""
        self._thread = threading.Thread(target=self._run, name="forward-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the forward proxy did not start in time")
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        """Stop listening, end the relays in flight and join the thread."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        thread.join()

    def __enter__(self) -> ForwardProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:
            self._error = exc
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            server.close()
            for task in list(self._handlers):
                task.cancel()
            if self._handlers:
                await asyncio.gather(*self._handlers, return_exceptions=True)
            await server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._relay(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, target, _version = request_line.split(" ", 2)
        headers = [line.split(":", 1) for line in header_lines if line]
        fields = [(name.strip(), value.strip()) for name, value in headers]
        authorization = next(
            (value for name, value in fields if name.lower() == "proxy-authorization"), None
        )
        with self._lock:
            self._requests.append(ProxiedRequest(method, target, authorization))
        if method == "CONNECT":
            writer.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            return
        if self._expected is not None and authorization != self._expected:
            writer.write(
                b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                b'Proxy-Authenticate: Basic realm="test"\r\nContent-Length: 0\r\n'
                b"Connection: close\r\n\r\n"
            )
            return
        length = next((int(value) for name, value in fields if name.lower() == "content-length"), 0)
        body = await reader.readexactly(length) if length else b""
        parts = urlsplit(target)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        forwarded = [f"{method} {path} HTTP/1.1"]
        forwarded += [
            f"{name}: {value}" for name, value in fields if name.lower() not in _HOP_BY_HOP
        ]
        forwarded.append("Connection: close")
        upstream_reader, upstream_writer = await asyncio.open_connection(
            parts.hostname, parts.port or 80
        )
        try:
            upstream_writer.write(("\r\n".join(forwarded) + "\r\n\r\n").encode("latin-1") + body)
            await upstream_writer.drain()
            while data := await upstream_reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            upstream_writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await upstream_writer.wait_closed()
