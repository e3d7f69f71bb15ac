"""Running the emulated site: in the current event loop, in a background thread, or blocking.

All three listen on loopback (port 0 by default for the in-process ones, so tests never
collide), stop promptly even with stalled or streaming requests in flight, and expose the
same handles: ``url``, ``port``, ``state``, ``faults``, ``nonce``, ``rotate_nonce()`` and a
settable ``config``.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import threading
from collections.abc import Iterable
from types import TracebackType

from aiohttp import web

from chatgptt.emulator.app import make_app
from chatgptt.emulator.config import EmulatorConfig
from chatgptt.emulator.faults import Fault, FaultPlan
from chatgptt.emulator.state import EmulatorState

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "EmulatorServer",
    "ThreadedEmulator",
    "run",
    "start_in_thread",
]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
# Handlers still running this long after the stop begins are cancelled. Stalls and pacing
# end at once on stop, so this only bounds a misbehaving custom model.
_SHUTDOWN_TIMEOUT = 1.0
#: The queue of connections not yet accepted (web.TCPSite's default, which it listened with).
_BACKLOG = 128
_THREAD_START_TIMEOUT = 30.0


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class _Handles:
    """What every emulator exposes about its site, given its ``state``."""

    state: EmulatorState

    @property
    def stats(self) -> EmulatorState:
        """Same as ``state`` (its counters and logs)."""
        return self.state

    @property
    def faults(self) -> FaultPlan:
        """The pending faults; ``faults.add(Fault(...))`` scripts the next requests."""
        return self.state.faults

    @property
    def config(self) -> EmulatorConfig:
        """The configuration in force; assign a new one to change the next requests."""
        return self.state.config

    @config.setter
    def config(self, value: EmulatorConfig) -> None:
        self.state.config = value

    @property
    def nonce(self) -> str:
        """The chat nonce the landing page shows now."""
        return self.state.nonce

    def rotate_nonce(self, keep_previous: bool = False) -> str:
        """Make a new nonce (the old one stays valid only with ``keep_previous``); return it."""
        return self.state.rotate_nonce(keep_previous=keep_previous)


class EmulatorServer(_Handles):
    """The site on ``host`` (loopback) in the running event loop; an async context manager.

    >>> async with EmulatorServer(EmulatorConfig(mode="json")) as site:  # doctest: +SKIP
    ...     print(site.url)
    """

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        faults: Iterable[Fault] = (),
        *,
        host: str = DEFAULT_HOST,
        port: int = 0,
    ) -> None:
        self.state = EmulatorState(config, faults)
        self.host = host
        self._requested_port = port
        self._runner: web.AppRunner | None = None
        self._listening: asyncio.Server | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The port it listens on (known once started)."""
        if self._port is None:
            raise RuntimeError("the emulator is not started")
        return self._port

    @property
    def url(self) -> str:
        """The site's base URL, e.g. ``http://127.0.0.1:40123``."""
        return _url(self.host, self.port)

    async def start(self) -> None:
        """Start listening."""
        if self._runner is not None:
            raise RuntimeError("the emulator is already started")
        runner = web.AppRunner(
            make_app(self.state),
            handler_cancellation=True,  # a client that hangs up ends its handler
            shutdown_timeout=_SHUTDOWN_TIMEOUT,
        )
        await runner.setup()
        assert runner.server is not None  # made by setup()
        try:
            # Listening as web.TCPSite would, but with a server of our own: stop() stops it
            # accepting before it closes.
            listening = await asyncio.get_running_loop().create_server(
                runner.server, self.host, self._requested_port, backlog=_BACKLOG
            )
        except BaseException:
            await runner.cleanup()
            raise
        self._runner, self._listening = runner, listening
        self._port = int(listening.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop listening and end the requests in flight (stalls end at once)."""
        runner, self._runner = self._runner, None
        listening, self._listening = self._listening, None
        if listening is not None:
            # Accept nothing more, and let the connections already accepted reach aiohttp,
            # which ends them below: asyncio hands one over two loop turns after accepting
            # it. Closing the listening server first would drop one still on its way (on
            # Python 3.11 its transport fails to attach to the closed server) without
            # closing it: its socket would stay open until the garbage collector reports it
            # unclosed, in whatever code it then runs in (another test, a session's end).
            loop = asyncio.get_running_loop()
            for sock in listening.sockets:
                loop.remove_reader(sock)
            for _ in range(2):
                await asyncio.sleep(0)
            listening.close()
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> EmulatorServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()


class ThreadedEmulator(_Handles):
    """The same site served from a background thread with its own event loop.

    A sync context manager, usable from plain tests and from any async framework (its loop
    is its own). The handles (``state``, ``faults``, ``config``…) may be used from any thread.
    """

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        faults: Iterable[Fault] = (),
        *,
        host: str = DEFAULT_HOST,
        port: int = 0,
    ) -> None:
        self._server = EmulatorServer(config, faults, host=host, port=port)
        self.state = self._server.state
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def host(self) -> str:
        """The address it listens on."""
        return self._server.host

    @property
    def port(self) -> int:
        """The port it listens on (known once started)."""
        return self._server.port

    @property
    def url(self) -> str:
        """The site's base URL, e.g. ``http://127.0.0.1:40123``."""
        return self._server.url

    def start(self) -> ThreadedEmulator:
        """Start the thread and wait until the site listens; returns ``self``."""
        if self._thread is not None:
            raise RuntimeError("the emulator is already started")
        self._thread = threading.Thread(target=self._run, name="chatgptt-emulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(_THREAD_START_TIMEOUT):
            raise RuntimeError("the emulator thread did not start in time")
        if self._error is not None:
            self._thread.join()
            self._thread = None
            raise self._error
        return self

    def stop(self) -> None:
        """Stop the site and join its thread. Safe to call twice."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        loop, stop_requested = self._loop, self._stop_requested
        if loop is not None and stop_requested is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(stop_requested.set)
        thread.join()

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to start() if it happens before ready
            self._error = exc
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_requested = asyncio.Event()
        await self._server.start()
        self._ready.set()
        try:
            await self._stop_requested.wait()
        finally:
            await self._server.stop()

    def __enter__(self) -> ThreadedEmulator:
        # start_in_thread() hands out started emulators; entering one keeps it running.
        return self if self._thread is not None else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def start_in_thread(
    config: EmulatorConfig | None = None,
    faults: Iterable[Fault] = (),
    *,
    host: str = DEFAULT_HOST,
    port: int = 0,
) -> ThreadedEmulator:
    """A :class:`ThreadedEmulator`, started; stop it with ``stop()`` or a ``with`` block."""
    return ThreadedEmulator(config, faults, host=host, port=port).start()


def _describe(config: EmulatorConfig) -> str:
    if config.dialect == "aipkit":
        return f"dialect aipkit, {config.aipkit_page} page"
    return f"mode {config.mode}"


def run(
    config: EmulatorConfig | None = None,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    faults: Iterable[Fault] = (),
) -> None:
    """Serve until Ctrl-C or SIGTERM, announcing the address on stderr; returns cleanly."""
    with contextlib.suppress(KeyboardInterrupt):  # a Ctrl-C before the handlers are in place
        asyncio.run(_serve_until_signalled(config, host, port, faults))


async def _serve_until_signalled(
    config: EmulatorConfig | None, host: str, port: int, faults: Iterable[Fault]
) -> None:
    server = EmulatorServer(config, faults, host=host, port=port)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    handled: list[signal.Signals] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
            handled.append(signum)
    try:
        print(
            f"emulator listening on {_url(host, server.port)} ({_describe(server.config)})",
            file=sys.stderr,
            flush=True,
        )
        await stop.wait()
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)
        await server.stop()
