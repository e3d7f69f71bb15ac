"""The sync bridge: an abandoned ``create_completion`` iterator is cleaned up silently and
releases its connection, whichever thread the garbage collector finalises it on.

Each iterator is abandoned in a reference cycle while the emulator stalls inside the answer
for 30 s, so only the collector can end it, and only its clean-up can release the connection.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from chatgptt import RetryPolicy
from chatgptt._sync import background_loop
from chatgptt.emulator import Fault
from chatgptt.testing import provider_for
from tests.chatgptt.test_cleanup import connections_to, needs_proc

HELLO = [{"role": "user", "content": "Hello"}]
ANSWER = "Hello from upstream: Hello"
STALL = Fault(kind="stall", where="inside", after_tokens=1, seconds=30.0)


@pytest.fixture
def unraisable() -> Iterator[list[Any]]:
    """What Python reports as "Exception ignored in …" meanwhile (and no automatic
    collection: the test decides on which thread the collector runs)."""
    reported: list[Any] = []
    previous = sys.unraisablehook
    sys.unraisablehook = reported.append
    gc.disable()
    try:
        yield reported
    finally:
        gc.enable()
        sys.unraisablehook = previous


def abandon_in_a_cycle(provider: Any) -> str:
    """Start a sync stream, take its first chunk, and drop it inside a reference cycle."""
    completion = provider.create_completion("gpt-4o", HELLO)
    first: str = next(completion)
    cycle: dict[str, Any] = {"completion": completion}
    cycle["itself"] = cycle
    return first


def wait_until(done: Any, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


@needs_proc
@pytest.mark.parametrize("dialect", ["classic", "aipkit"])
def test_collected_on_the_loop_thread_it_is_silent_and_released(
    emulator_factory, unraisable, dialect: str
) -> None:
    emulator = emulator_factory(faults=[STALL], dialect=dialect)
    provider = provider_for(emulator, retry_policy=RetryPolicy(attempts=1))
    first = abandon_in_a_cycle(provider)
    assert ANSWER.startswith(first)
    assert connections_to(emulator.port) == 1

    async def collect() -> int:
        return gc.collect()

    loop = background_loop.loop()
    asyncio.run_coroutine_threadsafe(collect(), loop).result(timeout=30)

    assert unraisable == [], [str(report.exc_value) for report in unraisable]
    assert wait_until(lambda: connections_to(emulator.port) == 0), "the connection was kept"
    assert "".join(provider.create_completion("gpt-4o", HELLO)) == ANSWER


@needs_proc
@pytest.mark.parametrize("dialect", ["classic", "aipkit"])
def test_collected_on_another_thread_it_is_silent_and_released(
    emulator_factory, unraisable, dialect: str
) -> None:
    emulator = emulator_factory(faults=[STALL], dialect=dialect)
    provider = provider_for(emulator, retry_policy=RetryPolicy(attempts=1))
    abandon_in_a_cycle(provider)
    assert connections_to(emulator.port) == 1

    collector = threading.Thread(target=gc.collect)
    collector.start()
    collector.join(timeout=30)

    assert not collector.is_alive()
    assert unraisable == [], [str(report.exc_value) for report in unraisable]
    assert wait_until(lambda: connections_to(emulator.port) == 0), "the connection was kept"


def test_a_clean_up_after_the_loop_stopped_does_nothing() -> None:
    """At interpreter exit the loop is gone: a late finaliser must not start a new one."""
    from chatgptt._sync import BackgroundLoop

    stopped = BackgroundLoop()
    ran: list[str] = []

    async def clean() -> None:
        ran.append("cleaned")

    stopped.clean_up(clean())  # never started
    stopped.loop()
    stopped.shutdown()
    stopped.clean_up(clean())  # shut down
    assert ran == []
    assert stopped._loop is None
