"""One loop timer per call for all of its network waits.

Every wait of a call — a request's headers, a body's next bytes — has a limit of its
own (``first_byte``, ``idle``, the call's deadline), seconds long and almost never hit.
``asyncio.timeout_at`` per wait arms and cancels a loop timer each time (~4 µs, several
times a call). A :class:`Watch` keeps one timer for the whole call and, per wait, only
notes when that wait expires: the timer moves only when a wait must end before it, and
when it fires for a wait already over it re-arms for the one now running. Cancellation
follows ``asyncio.timeout``: the waiting task is cancelled and the cancellation turned
into :class:`WaitExpiredError` unless someone else cancelled the task too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

__all__ = ["WaitExpiredError", "Watch"]

_T = TypeVar("_T")


class WaitExpiredError(Exception):
    """A wait outlasted the time it was given (the caller names which limit that was)."""


class Watch:
    """The timer of one call's waits; waits run one at a time (a concurrent one falls
    back to a timer of its own). :meth:`close` when the call ends frees the timer
    early; a watch never closed lets its timer fire once, harmlessly."""

    __slots__ = ("_cancelling", "_closed", "_expired", "_handle", "_task", "_when")

    def __init__(self) -> None:
        self._handle: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[Any] | None = None
        self._when = 0.0
        self._expired = False
        self._cancelling = 0
        self._closed = False

    async def wait(self, awaitable: Awaitable[_T], when: float | None) -> _T:
        """``await awaitable``, or raise :class:`WaitExpiredError` once the loop's clock
        reaches ``when`` (``None``: no limit)."""
        if when is None:
            return await awaitable
        task = asyncio.current_task()
        if self._task is not None or task is None:
            return await _alone(awaitable, when)
        handle = self._handle
        if handle is None or handle.when() > when:
            if handle is not None:
                handle.cancel()
            self._handle = asyncio.get_running_loop().call_at(when, self._fire)
        self._task, self._when, self._expired = task, when, False
        self._cancelling = task.cancelling()
        try:
            result = await awaitable
        except BaseException as exc:
            # As asyncio.timeout: the cancellation this watch asked for is taken back, and
            # the wait ends as expired unless someone else cancelled the task as well. A
            # wait that turned the cancellation into an error of its own (a connection
            # aborted) expired all the same.
            if self._expired and task.uncancel() <= self._cancelling:
                if isinstance(exc, asyncio.CancelledError):
                    raise WaitExpiredError() from None
                if isinstance(exc, Exception):
                    raise WaitExpiredError() from exc
            raise
        finally:
            self._task = None
            if self._closed:  # the call ended while this wait ran (in another task)
                self._drop()
        if self._expired:  # fired as the wait ended: the cancellation is not ours to keep
            task.uncancel()
        return result

    def close(self) -> None:
        """The call is over: drop the timer now rather than when it fires. A wait still
        running (a fetch the call started and shares with others) keeps its limit; the
        timer goes when it ends. The watch stays usable: a later wait arms a timer again
        and drops it when done."""
        self._closed = True
        if self._task is None:
            self._drop()

    def _drop(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            handle.cancel()

    def _fire(self) -> None:
        fired, self._handle = self._handle, None
        task = self._task
        if task is None or fired is None:
            return  # no wait running: the next one arms a timer again
        if self._when > fired.when():  # set for an earlier wait; this one has longer
            self._handle = asyncio.get_running_loop().call_at(self._when, self._fire)
            return
        self._expired = True
        task.cancel()


async def _alone(awaitable: Awaitable[_T], when: float) -> _T:
    """A wait with its own timer, for when the watch is busy with another."""
    scope = asyncio.timeout_at(when)
    try:
        async with scope:
            return await awaitable
    except TimeoutError:
        if scope.expired():
            raise WaitExpiredError() from None
        raise
