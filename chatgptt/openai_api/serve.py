"""Running the API: one process (aiohttp), or several worker processes on one port (gunicorn).

One process handles SIGINT and SIGTERM itself: it stops accepting, gives the answers in flight
``grace`` seconds (a second signal cuts that short), ends the rest and exits 0. With
``workers > 1``, gunicorn's arbiter binds the port and runs that many processes, each one
aiohttp's ``GunicornWebWorker`` serving the same application; gunicorn relays the signals,
and each worker drains the same way. A worker often gets one stop request twice (a Ctrl-C
reaches every process of the terminal's group and the arbiter relays it; so does a service
manager's SIGTERM to the whole group): signals within :data:`ECHO` seconds of the previous
one are that same request, a later one cuts the grace short.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import math
import os
import signal
import sys
import time
from types import FrameType
from typing import Any, TextIO

from aiohttp import web

from chatgptt.chatgptt import ChatGptt
from chatgptt.openai_api.app import END_TIMEOUT, STATE_KEY, ServeOptions, make_app, make_runner
from chatgptt.openai_api.usage import ESTIMATE, UsageCounter, describe
from stages.errors import ChatGpttError, redact_url

__all__ = ["BACKLOG", "api_url", "is_loopback", "serve"]

#: The listen queue: a burst of a thousand clients connecting at once waits there.
BACKLOG = 2048
#: Seconds within which a worker takes another stop signal for an echo of the last one.
ECHO = 0.5


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def api_url(host: str, port: int) -> str:
    """The API's base URL, e.g. ``http://127.0.0.1:8000/v1``."""
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/v1"


def _announce(
    out: TextIO,
    provider: type[ChatGptt],
    options: ServeOptions,
    counter: UsageCounter,
    host: str,
    port: int,
    workers: int,
) -> None:
    site = redact_url(provider.url)  # logs are read by others: no credentials of the site
    print(f"serving {site} as an OpenAI API on {api_url(host, port)}", file=out)
    each = " per worker" if workers > 1 else ""
    details = [
        f"{workers} worker processes" if workers > 1 else "one process",
        f"up to {options.max_concurrency} requests at once{each}",
        "API key required" if options.api_key else "no API key",
        describe(counter),
    ]
    print("  " + "; ".join(details), file=out)
    if options.api_key is None and not is_loopback(host):
        print(
            f"warning: listening on {host} without an API key: anyone who can reach this port "
            f"can use {site} through it (an open relay); set --api-key or "
            "CHATGPTT_API_KEY",
            file=out,
        )
    out.flush()


def _raise_file_limit(wanted: int) -> None:
    """Raise the soft limit of open files toward ``wanted`` (each stream holds two sockets)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Windows
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


async def _run(
    provider: type[ChatGptt],
    options: ServeOptions,
    counter: UsageCounter,
    host: str,
    port: int,
    out: TextIO,
) -> None:
    app = make_app(provider, options, counter=counter)
    runner = make_runner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, backlog=BACKLOG).start()
    except (OSError, OverflowError) as exc:  # OverflowError: a port past 65535
        await runner.cleanup()
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ChatGpttError(f"cannot listen on {host}:{port}: {reason}") from None
    bound = int(runner.addresses[0][1]) if runner.addresses else port
    _announce(out, provider, options, counter, host, bound, workers=1)

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_signal() -> None:
        if stop.is_set():
            app[STATE_KEY].hurry()  # a second signal: no more grace
        else:
            stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal)
    try:
        await stop.wait()
        busy = len(app[STATE_KEY].in_flight)
        if busy:
            print(
                f"stopping: {busy} answers in flight get {options.grace:g} s to finish "
                "(signal again to end them now)",
                file=out,
                flush=True,
            )
        await runner.cleanup()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def _run_workers(
    provider: type[ChatGptt],
    options: ServeOptions,
    counter: UsageCounter,
    host: str,
    port: int,
    workers: int,
    out: TextIO,
) -> int:
    try:
        from gunicorn.app.base import BaseApplication
    except ImportError:
        raise ChatGpttError("--workers needs gunicorn: pip install 'chatgptt[serve]'") from None

    served: list[web.Application] = []  # in each worker (a fork): the app it serves

    async def factory() -> web.AppRunner:
        # Called in each worker: its own application, pool and loop.
        app = make_app(provider, options, counter=counter)
        served.append(app)
        return make_runner(app)

    def when_ready(arbiter: Any) -> None:
        bound = int(arbiter.LISTENERS[0].sock.getsockname()[1])
        _announce(out, provider, options, counter, host, bound, workers)

    settings: dict[str, Any] = {
        "bind": [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"],
        "workers": workers,
        "worker_class": _worker_class(served, options.grace, out),
        # Past this gunicorn kills the workers: after the grace, the ending of the answers
        # (END_TIMEOUT), aiohttp's shutdown of the connections (END_TIMEOUT again), and up to
        # a second for the worker to notice the signal.
        "graceful_timeout": math.ceil(options.grace + 2 * END_TIMEOUT) + 5,
        "backlog": BACKLOG,
        "loglevel": "warning",
        "errorlog": "-",
        "accesslog": None,
        "when_ready": when_ready,
        "proc_name": "chatgptt-serve",
    }

    class Arbiter(BaseApplication):  # type: ignore[misc]
        """gunicorn's application protocol: its settings and the worker's app factory."""

        def load_config(self) -> None:
            for key, value in settings.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return factory

    try:
        Arbiter().run()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


def _worker_class(served: list[web.Application], grace: float, out: TextIO) -> type[Any]:
    """aiohttp's gunicorn worker, stopping as the single process does: it says how many
    answers the grace is for, and a second stop request (not an echo of the first, see
    :data:`ECHO`) ends the grace at once."""
    from aiohttp.worker import GunicornWebWorker

    class Worker(GunicornWebWorker):
        last_signal: float | None = None

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:  # SIGTERM
            self._stop_requested()
            super().handle_exit(sig, frame)

        def handle_quit(self, sig: int, frame: FrameType | None) -> None:  # SIGINT, SIGQUIT
            self._stop_requested()
            super().handle_quit(sig, frame)

        def _stop_requested(self) -> None:
            now = time.monotonic()
            last, self.last_signal = self.last_signal, now
            if not served:  # stopped before it served
                return
            state = served[-1][STATE_KEY]
            if last is None:
                busy = len(state.in_flight)
                if busy:
                    print(
                        f"worker {os.getpid()} stopping: {busy} answers in flight get "
                        f"{grace:g} s to finish (signal again to end them now)",
                        file=out,
                        flush=True,
                    )
            elif now - last >= ECHO:
                state.hurry()

    return Worker


def serve(
    provider: type[ChatGptt],
    options: ServeOptions | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    counter: UsageCounter = ESTIMATE,
    out: TextIO | None = None,
) -> int:
    """Serve ``provider`` as an OpenAI API until SIGINT or SIGTERM; the exit status.

    Prints where it listens on ``out`` (stderr): first ``serving <site> as an OpenAI API on
    <url>``, then how it runs. ``workers > 1`` needs gunicorn (the ``serve`` extra).
    """
    options = options or ServeOptions()
    out = out or sys.stderr
    if workers < 1:
        raise ChatGpttError(f"--workers must be 1 or more, got {workers}")
    _raise_file_limit(2 * options.max_concurrency + 256)
    try:
        if workers > 1:
            return _run_workers(provider, options, counter, host, port, workers, out)
        asyncio.run(_run(provider, options, counter, host, port, out))
    except ChatGpttError as exc:
        print(f"chatgptt: error: {exc}", file=out)
        return 1
    return 0
