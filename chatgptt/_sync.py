"""The synchronous entry points' event loop: a private loop in a daemon thread.

Running async code from synchronous code with ``asyncio.run`` fails inside an
already running loop (a notebook) and throws away the connection pool after each
call. One long-lived background loop avoids both: sync calls from any thread
submit their work to it, and connections are reused across calls. At interpreter
exit the loop's sessions are closed and the thread stopped.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, TypeVar

__all__ = ["BackgroundLoop", "background_loop", "iterate_in_background"]

_T = TypeVar("_T")

#: How long interpreter exit waits for sessions to close.
_SHUTDOWN_SECONDS = 5.0


class BackgroundLoop:
    """An event loop running forever in a daemon thread, started on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        # Clean-ups scheduled from the loop's own thread, held until done (a task that
        # nothing references may be collected before it runs).
        self._cleanups: set[asyncio.Task[None]] = set()

    def loop(self) -> asyncio.AbstractEventLoop:
        """The running background loop (started if needed)."""
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def serve() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                self._thread = threading.Thread(
                    target=serve, name="chatgptt-sync-loop", daemon=True
                )
                self._thread.start()
                ready.wait()
                self._loop = loop
                atexit.register(self.shutdown)
            return self._loop

    def in_loop_thread(self) -> bool:
        """Whether the caller runs on the background loop's own thread."""
        return self._thread is not None and threading.current_thread() is self._thread

    def run(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        """Run ``coroutine`` on the background loop and wait for its result.

        If the waiting thread is interrupted (``KeyboardInterrupt``), the coroutine
        is cancelled and waited for before the interruption propagates.
        """
        if self.in_loop_thread():
            coroutine.close()
            raise RuntimeError(
                "a synchronous chatgptt call cannot run on its own event loop thread"
            )
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop())
        try:
            return future.result()
        except BaseException:
            if not future.done():
                future.cancel()
                concurrent.futures.wait([future], timeout=_SHUTDOWN_SECONDS)
            raise

    def clean_up(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run the clean-up ``coroutine`` on the background loop, from whatever thread.

        From another thread it is waited for, like :meth:`run`. On the loop's own thread
        — where a sync iterator abandoned in a reference cycle is finalised when the
        garbage collector happens to run there — waiting would deadlock, so it is
        scheduled as a task instead; its failure, if any, is dropped (there is no caller
        left to tell). With no loop running any more there is nothing left to clean.
        """
        loop = self._loop
        if loop is None or loop.is_closed():
            coroutine.close()
            return
        if self.in_loop_thread():
            task = loop.create_task(coroutine)
            self._cleanups.add(task)
            task.add_done_callback(self._cleaned_up)
            return
        self.run(coroutine)

    def _cleaned_up(self, task: asyncio.Task[None]) -> None:
        self._cleanups.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: no "exception was never retrieved" report

    def shutdown(self) -> None:
        """Close what runs on the loop (its async generators: the session guards), then stop it."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
            asyncio.run_coroutine_threadsafe(loop.shutdown_asyncgens(), loop).result(
                _SHUTDOWN_SECONDS
            )
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(_SHUTDOWN_SECONDS)
        if not loop.is_running():
            loop.close()


background_loop = BackgroundLoop()


def iterate_in_background(make: Callable[[], AsyncIterator[_T]]) -> Iterator[_T]:
    """Drive the async iterator ``make()`` on the background loop, item by item.

    Returns a generator; closing it early (``break``) closes the async iterator
    on its loop, which releases its connection. So does the garbage collector when it
    finalises an abandoned generator, on any thread (the loop's own included).
    """

    def items() -> Iterator[_T]:
        source = make()

        async def step() -> tuple[bool, _T | None]:
            try:
                return True, await source.__anext__()
            except StopAsyncIteration:
                return False, None

        async def close() -> None:
            aclose = getattr(source, "aclose", None)
            if aclose is not None:
                await aclose()

        try:
            while True:
                more, item = background_loop.run(step())
                if not more:
                    return
                yield item  # type: ignore[misc]  # item is a _T whenever more is true
        finally:
            background_loop.clean_up(close())

    return items()
