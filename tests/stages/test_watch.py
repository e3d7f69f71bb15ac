"""stages.watch: one loop timer for a call's waits, each wait held to its own limit.

The limits here are real loop times; every expected outcome has a margin of over a
second against the one it must not be confused with, so a loaded machine cannot flip it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from stages.watch import WaitExpiredError, Watch


def live_timers(loop: asyncio.AbstractEventLoop) -> list[asyncio.TimerHandle]:
    """The loop's scheduled timers not cancelled (CPython's ``BaseEventLoop._scheduled``)."""
    scheduled: list[asyncio.TimerHandle] = loop._scheduled  # type: ignore[attr-defined]
    return [handle for handle in scheduled if not handle.cancelled()]


def later(loop: asyncio.AbstractEventLoop, seconds: float, value: Any) -> asyncio.Future[Any]:
    """A future the loop completes with ``value`` after ``seconds``."""
    future = loop.create_future()
    loop.call_later(seconds, future.set_result, value)
    return future


async def test_a_wait_in_time_returns_its_result() -> None:
    loop = asyncio.get_running_loop()
    watch = Watch()
    assert await watch.wait(later(loop, 0.01, "a"), loop.time() + 5.0) == "a"
    watch.close()
    assert live_timers(loop) == []


async def test_a_wait_past_its_limit_raises_and_leaves_the_task_uncancelled() -> None:
    loop = asyncio.get_running_loop()
    watch = Watch()
    started = loop.time()
    with pytest.raises(WaitExpiredError):
        await watch.wait(loop.create_future(), started + 0.05)
    assert loop.time() - started >= 0.04
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0
    await asyncio.sleep(0)  # no cancellation left pending on the task


async def test_no_limit_means_no_timer() -> None:
    loop = asyncio.get_running_loop()
    watch = Watch()
    assert await watch.wait(later(loop, 0.01, "b"), None) == "b"
    assert [h for h in live_timers(loop) if h._callback == watch._fire] == []  # type: ignore[attr-defined]


async def test_waits_in_turn_share_one_timer() -> None:
    loop = asyncio.get_running_loop()
    watch = Watch()
    now = loop.time()
    for index in range(5):
        await watch.wait(later(loop, 0, index), now + 30.0 + index)
    assert len(live_timers(loop)) == 1  # armed by the first wait, kept for the others
    watch.close()
    assert live_timers(loop) == []


async def test_a_wait_with_a_shorter_limit_than_the_timer_expires_on_time() -> None:
    loop = asyncio.get_running_loop()
    watch = Watch()
    await watch.wait(later(loop, 0, None), loop.time() + 30.0)  # the timer: 30 s away
    started = loop.time()
    with pytest.raises(WaitExpiredError):
        await watch.wait(loop.create_future(), started + 0.05)
    assert loop.time() - started < 20.0
    watch.close()


async def test_the_timer_of_a_finished_wait_does_not_end_a_later_one() -> None:
    """The first wait's limit passes while the second (with a longer one) still runs:
    the timer moves on to the second's limit instead of ending it."""
    loop = asyncio.get_running_loop()
    watch = Watch()
    now = loop.time()
    await watch.wait(later(loop, 0, None), now + 0.05)
    assert await watch.wait(later(loop, 0.3, "second"), now + 3.0) == "second"
    watch.close()
    assert live_timers(loop) == []


async def test_a_timer_moved_on_still_ends_the_later_wait_at_its_limit() -> None:
    loop = asyncio.get_running_loop()
    watch = Watch()
    now = loop.time()
    await watch.wait(later(loop, 0, None), now + 0.05)
    with pytest.raises(WaitExpiredError):
        await watch.wait(loop.create_future(), now + 0.2)
    assert loop.time() >= now + 0.19


async def test_a_cancellation_from_outside_is_not_taken_for_an_expiry() -> None:
    loop = asyncio.get_running_loop()
    watch = Watch()
    task = asyncio.create_task(watch.wait(loop.create_future(), loop.time() + 30.0))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    watch.close()


async def test_an_owner_cancelling_a_wait_past_its_limit_cancels_it() -> None:
    """The limit has passed and the owner cancels in the same loop turn: the owner's
    cancellation wins, as with ``asyncio.timeout``."""
    loop = asyncio.get_running_loop()
    watch = Watch()
    task = asyncio.create_task(watch.wait(loop.create_future(), loop.time()))
    await asyncio.sleep(0)  # the wait started; its timer is due at once
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()
    watch.close()


async def test_concurrent_waits_on_one_watch_each_keep_their_limit() -> None:
    loop = asyncio.get_running_loop()
    watch = Watch()
    now = loop.time()
    short = asyncio.create_task(watch.wait(loop.create_future(), now + 0.05))
    await asyncio.sleep(0)  # the first wait holds the watch; the next gets its own timer
    long = asyncio.create_task(watch.wait(later(loop, 0.2, "long"), now + 5.0))
    with pytest.raises(WaitExpiredError):
        await short
    assert await long == "long"
    watch.close()
    assert live_timers(loop) == []


async def test_an_awaitable_that_fails_raises_its_own_error() -> None:
    async def broken() -> None:
        raise ConnectionResetError("reset")

    loop = asyncio.get_running_loop()
    watch = Watch()
    with pytest.raises(ConnectionResetError):
        await watch.wait(broken(), loop.time() + 30.0)
    assert watch._task is None  # type: ignore[attr-defined]  # free for the next wait
    watch.close()


async def test_close_is_idempotent_and_a_closed_watch_still_works() -> None:
    loop = asyncio.get_running_loop()
    watch = Watch()
    watch.close()
    watch.close()
    assert await watch.wait(later(loop, 0, "again"), loop.time() + 30.0) == "again"
    watch.close()
    assert live_timers(loop) == []


async def test_closing_the_watch_from_another_task_keeps_the_running_wait_s_limit() -> None:
    """A call that ends (is cancelled) while a fetch it started and shares with other
    calls still waits on its watch: that wait keeps its limit, and the timer goes after."""
    loop = asyncio.get_running_loop()
    watch = Watch()
    waiting = asyncio.create_task(watch.wait(loop.create_future(), loop.time() + 0.1))
    await asyncio.sleep(0)
    watch.close()
    with pytest.raises(WaitExpiredError):
        await asyncio.wait_for(waiting, 5.0)
    assert live_timers(loop) == []


async def test_a_closed_watch_drops_the_timer_of_each_later_wait() -> None:
    loop = asyncio.get_running_loop()
    watch = Watch()
    watch.close()
    assert await watch.wait(later(loop, 0, "late"), loop.time() + 30.0) == "late"
    assert live_timers(loop) == []


class _Converts:
    """An awaitable that turns the cancellation it receives into an error of its own, as a
    connection aborted by the cancel might."""

    def __await__(self) -> Any:
        try:
            yield from asyncio.sleep(30).__await__()
        except asyncio.CancelledError:
            raise ConnectionAbortedError("aborted") from None


async def test_a_wait_that_fails_because_its_limit_passed_is_an_expiry() -> None:
    loop = asyncio.get_running_loop()
    watch = Watch()
    with pytest.raises(WaitExpiredError) as expired:
        await watch.wait(_Converts(), loop.time() + 0.02)
    assert isinstance(expired.value.__cause__, ConnectionAbortedError)
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0  # the watch's cancellation taken back, as asyncio.timeout does
    watch.close()
