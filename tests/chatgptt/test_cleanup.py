"""Cancellation and cleanup: a caller that stops early releases its connection at once and
leaves no task, socket or session behind.

Each stream is stopped while the emulator stalls inside the answer for 30 s (a stall it
ends as soon as the client hangs up), so a test that passes quickly shows the client did
not wait for the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import selectors
import signal
import subprocess
import sys
import textwrap
import time
import warnings
import weakref
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from chatgptt import ChatGptt, RetryPolicy, SessionOptions, Timeouts
from chatgptt.emulator import Fault
from chatgptt.session import make_session
from chatgptt.testing import provider_for
from stages.errors import ChatGpttError
from stages.watch import Watch

HELLO = [{"role": "user", "content": "Hello"}]
ANSWER = "Hello from upstream: Hello"
STALL = Fault(kind="stall", where="inside", after_tokens=1, seconds=30.0)
STALL_BEFORE = Fault(kind="stall", seconds=30.0)
PROC_TCP = Path("/proc/net/tcp")


def connections_to(port: int) -> int:
    """How many TCP sockets this process holds open to ``127.0.0.1:port`` (Linux /proc).

    The emulator's own (server-side) sockets have ``port`` as their local port, so they
    are not counted.
    """
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    count = 0
    for line in PROC_TCP.read_text().splitlines()[1:]:
        fields = line.split()
        remote_port = int(fields[2].rsplit(":", 1)[1], 16)
        if remote_port == port and fields[9] in inodes:
            count += 1
    return count


needs_proc = pytest.mark.skipif(not PROC_TCP.exists(), reason="needs Linux /proc/net/tcp")


async def settle(done: Callable[[], bool], rounds: int = 100) -> bool:
    """Let the loop run callbacks already scheduled (no timers) until ``done()``."""
    for _ in range(rounds):
        if done():
            return True
        await asyncio.sleep(0)
    return done()


async def wait_for(done: Callable[[], bool], seconds: float = 10.0) -> None:
    """Poll a condition the emulator's thread makes true (a request arrived)."""
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, "the condition never came true"
        await asyncio.sleep(0.005)


@pytest.fixture
async def leak_check() -> AsyncIterator[None]:
    """No task outlives the test, and no unclosed resource is found by the collector
    (the loop runs in debug mode so aiohttp reports unclosed responses)."""
    loop = asyncio.get_running_loop()
    debug = loop.get_debug()
    loop.set_debug(True)
    baseline = set(asyncio.all_tasks())

    def leaked() -> set[asyncio.Task[Any]]:
        return asyncio.all_tasks() - baseline - {asyncio.current_task()}  # type: ignore[operator]

    try:
        yield
        if leaked():  # tasks still finishing (an abandoned generator's aclose) may end
            await asyncio.wait(leaked(), timeout=2.0)
        assert not leaked(), leaked()
        gc.collect()  # an unclosed response or transport warns now: an error (pyproject)
    finally:
        loop.set_debug(debug)
        # A leak was reported above; end it here so that it cannot disturb later tests.
        stray = leaked()
        for task in stray:
            task.cancel()
        await asyncio.gather(*stray, return_exceptions=True)


@pytest.fixture
async def one_connection() -> AsyncIterator[aiohttp.ClientSession]:
    """A session whose pool holds a single connection: a second call can only proceed
    once the first one's connection is released."""
    session = make_session(SessionOptions(max_connections=1))
    try:
        yield session
    finally:
        await session.close()


async def second_call_is_prompt(provider: type[ChatGptt], session: aiohttp.ClientSession) -> None:
    """A call through the one-connection pool succeeds at once (no waiting for a
    connection still held by the stopped stream)."""
    started = time.monotonic()
    chunks = [
        chunk
        async for chunk in provider.create_async_generator(
            "gpt-4o",
            HELLO,
            session=session,
            timeouts=Timeouts(first_byte=3.0),
            retry=RetryPolicy(attempts=1),
        )
    ]
    assert "".join(chunks) == ANSWER
    assert time.monotonic() - started < 2.0


def stalled_provider(emulator: Any) -> type[ChatGptt]:
    return provider_for(emulator, retry_policy=RetryPolicy(attempts=1))


# --- the three ways to stop a stream ------------------------------------------------------------
# In both dialects: the AIPKit call's two connections (step 1 and step 2) go through a pool
# of one, so step 1's must be released before step 2 can start, and step 2's when stopped.


@needs_proc
@pytest.mark.parametrize("dialect", ["classic", "aipkit"])
async def test_break_releases_the_connection_at_once(
    emulator_factory, one_connection, leak_check, dialect: str
) -> None:
    emulator = emulator_factory(faults=[STALL], dialect=dialect)
    provider = stalled_provider(emulator)
    received = []
    async for chunk in provider.create_async_generator("gpt-4o", HELLO, session=one_connection):
        received.append(chunk)
        assert connections_to(emulator.port) == 1
        break
    assert ANSWER.startswith(received[0])
    # The abandoned generator is closed by the loop's finaliser hook, a task away.
    assert await settle(lambda: connections_to(emulator.port) == 0)
    await second_call_is_prompt(provider, one_connection)


@needs_proc
@pytest.mark.parametrize("dialect", ["classic", "aipkit"])
async def test_aclose_releases_the_connection_at_once(
    emulator_factory, one_connection, leak_check, dialect: str
) -> None:
    emulator = emulator_factory(faults=[STALL], dialect=dialect)
    provider = stalled_provider(emulator)
    stream = provider.create_async_generator("gpt-4o", HELLO, session=one_connection)
    first = await anext(stream)
    assert ANSWER.startswith(first)
    assert connections_to(emulator.port) == 1
    await stream.aclose()
    assert await settle(lambda: connections_to(emulator.port) == 0)
    await second_call_is_prompt(provider, one_connection)


@needs_proc
@pytest.mark.parametrize("dialect", ["classic", "aipkit"])
async def test_cancelling_the_task_releases_the_connection_at_once(
    emulator_factory, one_connection, leak_check, dialect: str
) -> None:
    emulator = emulator_factory(faults=[STALL], dialect=dialect)
    provider = stalled_provider(emulator)
    first_chunk = asyncio.Event()

    async def consume() -> None:
        async for _chunk in provider.create_async_generator(
            "gpt-4o", HELLO, session=one_connection
        ):
            first_chunk.set()

    task = asyncio.create_task(consume())
    await first_chunk.wait()
    assert connections_to(emulator.port) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await settle(lambda: connections_to(emulator.port) == 0)
    await second_call_is_prompt(provider, one_connection)


@needs_proc
@pytest.mark.parametrize("target", ["page", "ajax"])
async def test_cancelling_before_the_reply_starts_releases_the_connection(
    emulator_factory, one_connection, leak_check, target: str
) -> None:
    emulator = emulator_factory(faults=[Fault(kind="stall", seconds=30.0, target=target)])
    provider = stalled_provider(emulator)

    async def consume() -> None:
        async for _chunk in provider.create_async_generator(
            "gpt-4o", HELLO, session=one_connection
        ):
            pass

    task = asyncio.create_task(consume())
    if target == "page":
        await wait_for(lambda: emulator.stats.page_fetches == 1)
    else:
        await wait_for(lambda: emulator.stats.ajax_requests == 1)
    assert connections_to(emulator.port) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await settle(lambda: connections_to(emulator.port) == 0)
    await second_call_is_prompt(provider, one_connection)


class BlockingSleep:
    """An injected backoff that waits until cancelled; ``entered`` is set once it waits."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()

    async def __call__(self, seconds: float) -> None:
        self.entered.set()
        await asyncio.Event().wait()


async def test_cancelling_during_a_backoff_ends_the_call_at_once(
    emulator_factory, one_connection, leak_check
) -> None:
    emulator = emulator_factory(faults=[Fault(kind="status", status=503)])
    sleep = BlockingSleep()
    provider = provider_for(emulator, retry_policy=RetryPolicy(sleep=sleep))

    async def consume() -> None:
        async for _chunk in provider.create_async_generator(
            "gpt-4o", HELLO, session=one_connection
        ):
            pass

    task = asyncio.create_task(consume())
    await sleep.entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert emulator.stats.ajax_requests == 1  # cancellation is not retried
    await second_call_is_prompt(provider, one_connection)


@needs_proc
async def test_cancelling_a_retried_attempt_releases_its_connection(
    emulator_factory, one_connection, fake_sleep, leak_check
) -> None:
    emulator = emulator_factory(faults=[Fault(kind="status", status=503), STALL_BEFORE])
    provider = provider_for(emulator, retry_policy=RetryPolicy(sleep=fake_sleep))

    async def consume() -> None:
        async for _chunk in provider.create_async_generator(
            "gpt-4o", HELLO, session=one_connection
        ):
            pass

    task = asyncio.create_task(consume())
    await wait_for(lambda: emulator.stats.ajax_requests == 2)
    assert connections_to(emulator.port) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert emulator.stats.ajax_requests == 2
    assert await settle(lambda: connections_to(emulator.port) == 0)
    await second_call_is_prompt(provider, one_connection)


async def test_a_cancelled_caller_does_not_cancel_the_shared_page_fetch(
    emulator_factory, leak_check
) -> None:
    """Two calls share one page fetch; cancelling one leaves the other's answer intact."""
    emulator = emulator_factory(faults=[Fault(kind="stall", seconds=0.3, target="page")])
    provider = provider_for(emulator)

    async def ask() -> str:
        return "".join([c async for c in provider.create_async_generator("gpt-4o", HELLO)])

    leaving = asyncio.create_task(ask())
    staying = asyncio.create_task(ask())
    await wait_for(lambda: emulator.stats.page_fetches == 1)
    leaving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaving
    assert await staying == ANSWER
    assert emulator.stats.page_fetches == 1


async def test_a_shared_page_fetch_keeps_its_time_limit_when_its_caller_leaves(
    emulator_factory, leak_check
) -> None:
    """The call that started the shared page fetch is cancelled while the page stalls: the
    fetch (its time limits on that call's timer) still ends at ``first_byte``, and the other
    call fetches again at once rather than waiting out the stall."""
    emulator = emulator_factory(faults=[Fault(kind="stall", seconds=30.0, target="page")])
    provider = provider_for(emulator)
    limits = Timeouts(first_byte=0.5, total=None)

    async def ask() -> str:
        chunks = provider.create_async_generator("gpt-4o", HELLO, timeouts=limits)
        return "".join([c async for c in chunks])

    started = time.monotonic()
    leaving = asyncio.create_task(ask())
    await wait_for(lambda: emulator.stats.page_fetches == 1)
    staying = asyncio.create_task(ask())
    await asyncio.sleep(0)
    leaving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaving
    assert await staying == ANSWER
    assert time.monotonic() - started < 15.0  # not the 30 s stall
    assert emulator.stats.page_fetches == 2


async def test_the_shared_session_releases_a_broken_off_stream(
    emulator_factory, leak_check
) -> None:
    """With the provider's own (shared) session: stop mid-stream, then ask again."""
    emulator = emulator_factory(faults=[STALL])
    provider = stalled_provider(emulator)
    stream = provider.create_async_generator("gpt-4o", HELLO)
    await anext(stream)
    await stream.aclose()
    started = time.monotonic()
    assert "".join([c async for c in provider.create_async_generator("gpt-4o", HELLO)]) == ANSWER
    assert time.monotonic() - started < 2.0


def watch_timers() -> list[asyncio.TimerHandle]:
    """The loop's live timers that belong to a call's ``Watch`` (CPython's
    ``BaseEventLoop._scheduled``; the pool's own keep-alive timers are not counted)."""
    scheduled: list[asyncio.TimerHandle] = asyncio.get_running_loop()._scheduled  # type: ignore[attr-defined]
    return [
        handle
        for handle in scheduled
        if not handle.cancelled() and isinstance(getattr(handle._callback, "__self__", None), Watch)  # type: ignore[attr-defined]
    ]


@pytest.mark.parametrize("dialect", ["classic", "aipkit"])
async def test_a_call_leaves_no_timer_behind(emulator_factory, leak_check, dialect: str) -> None:
    """Answered, refused, or broken off: the call's one timer goes with it (a timer left
    per call would pile up in the loop for the length of the longest limit)."""
    emulator = emulator_factory(
        faults=[Fault(kind="status", status=403, times=1), STALL], dialect=dialect
    )
    provider = stalled_provider(emulator)
    with pytest.raises(ChatGpttError):  # the 403
        async for _chunk in provider.create_async_generator("gpt-4o", HELLO):
            pass
    assert watch_timers() == []
    stream = provider.create_async_generator("gpt-4o", HELLO)
    await anext(stream)  # the stall: the rest never comes
    assert len(watch_timers()) == 1  # the idle limit of the wait for it
    await stream.aclose()
    assert watch_timers() == []
    assert "".join([c async for c in provider.create_async_generator("gpt-4o", HELLO)]) == ANSWER
    assert watch_timers() == []


# --- a whole program: the loop ends, the session closes, nothing is reported --------------------


def test_a_program_that_stops_streams_early_exits_cleanly(emulator_factory) -> None:
    """Under ``-X dev -W error``: break, aclose() and task cancellation mid-stream, then
    ``asyncio.run`` returns; the shared session is closed and nothing is reported."""
    emulator = emulator_factory(
        faults=[Fault(kind="stall", where="inside", after_tokens=1, seconds=30.0, times=3)]
    )
    script = textwrap.dedent(
        f"""
        import asyncio
        from chatgptt import ChatGptt

        class Mirror(ChatGptt):
            url = {emulator.url!r}

        HELLO = [{{"role": "user", "content": "Hello"}}]

        async def main():
            async for chunk in Mirror.create_async_generator("gpt-4o", HELLO):
                break
            stream = Mirror.create_async_generator("gpt-4o", HELLO)
            await anext(stream)
            await stream.aclose()
            started = asyncio.Event()
            async def consume():
                async for chunk in Mirror.create_async_generator("gpt-4o", HELLO):
                    started.set()
            task = asyncio.create_task(consume())
            await started.wait()
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            return await ChatGptt.sessions.get()

        session = asyncio.run(main())
        assert session.closed, "the shared session outlived its loop"
        """
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert done.stderr == ""
    assert time.monotonic() - started < 20.0  # far less than the three 30 s stalls
    assert emulator.stats.ajax_requests == 3


# --- Ctrl-C in the command line -------------------------------------------------------------------


def _read_first_byte(process: subprocess.Popen[bytes], seconds: float) -> bytes:
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(seconds):
            return b""
    return os.read(process.stdout.fileno(), 1)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("when", ["mid-answer", "before-the-answer"])
def test_ctrl_c_in_the_cli_exits_130_promptly_without_a_traceback(
    emulator_factory, when: str
) -> None:
    emulator = emulator_factory(faults=[STALL if when == "mid-answer" else STALL_BEFORE])
    command = [sys.executable, "-X", "dev", "-m", "chatgptt.cli", "chat", "--url", emulator.url]
    process = subprocess.Popen([*command, "Hello"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        if when == "mid-answer":
            first = _read_first_byte(process, 30.0)
            assert first, "the CLI printed nothing"
        else:
            first = b""
            deadline = time.monotonic() + 30.0
            while emulator.stats.ajax_requests == 0:  # the CLI now waits for the reply
                assert process.poll() is None
                assert time.monotonic() < deadline
                time.sleep(0.005)
        interrupted = time.monotonic()
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert time.monotonic() - interrupted < 5.0
    assert process.returncode == 130, err.decode()
    printed = (first + out).decode()
    assert printed.endswith("\n")
    assert ANSWER.startswith(printed.rstrip("\n"))
    assert b"Traceback" not in err
    assert b"Unclosed" not in err
    assert b"Warning" not in err


# --- event loops ------------------------------------------------------------------------------


def test_a_loop_the_library_served_is_freed_when_asyncio_run_returns(emulator) -> None:
    """A program running each request in its own ``asyncio.run`` (a sync handler) keeps no
    loop alive: the shared session's slot goes with its loop's shutdown."""
    provider = provider_for(emulator)
    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def ask() -> str:
        loops.append(weakref.ref(asyncio.get_running_loop()))
        return "".join([chunk async for chunk in provider.create_async_generator("gpt-4o", HELLO)])

    for _ in range(3):
        assert asyncio.run(ask()) == ANSWER
    gc.collect()
    assert [loop() for loop in loops] == [None, None, None]


def test_a_loop_closed_by_hand_is_freed_by_the_next_loops_first_call(emulator) -> None:
    """A loop closed without ``shutdown_asyncgens`` never closes its session (it cannot
    run the close); the next loop that asks for a session lets it go all the same."""
    provider = provider_for(emulator)
    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def ask() -> str:
        loops.append(weakref.ref(asyncio.get_running_loop()))
        return "".join([chunk async for chunk in provider.create_async_generator("gpt-4o", HELLO)])

    with warnings.catch_warnings():  # the abandoned session's sockets: the program's doing
        warnings.simplefilter("ignore", ResourceWarning)
        loop = asyncio.new_event_loop()
        assert loop.run_until_complete(ask()) == ANSWER
        loop.close()
        del loop
        assert asyncio.run(ask()) == ANSWER
        gc.collect()
    assert [loop() for loop in loops] == [None, None]
