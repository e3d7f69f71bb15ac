"""The nonce cache: time-to-live, conditional invalidation, single flight."""

from __future__ import annotations

import asyncio

import pytest

from stages.cache import TokenCache
from stages.classic.tokens import ClassicTokens
from stages.core import Tokens
from stages.errors import ProviderConnectionError

TOKENS = ClassicTokens(
    nonce="5e2498d71a",
    post_id="22",
    ajax_url="https://x.org/a",
    page_url="https://x.org/",
    site_url="https://x.org",
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_entries_expire_after_ttl() -> None:
    clock = Clock()
    cache = TokenCache(clock=clock)
    cache.put("k", (None, TOKENS))
    assert cache.get("k", ttl=60) == (None, TOKENS)
    clock.now += 59.9
    assert cache.get("k", ttl=60) is not None
    clock.now += 0.1
    assert cache.get("k", ttl=60) is None


def test_invalidate_spares_an_entry_that_no_longer_holds_the_rejected_nonce() -> None:
    cache = TokenCache()
    cache.put("k", (None, TOKENS))  # another call refreshed meanwhile
    cache.invalidate("k", nonce="0000000000")
    assert cache.get("k", ttl=60) is not None
    cache.invalidate("k", nonce=TOKENS.nonce)
    assert cache.get("k", ttl=60) is None
    cache.put("k", (None, TOKENS))
    cache.invalidate("k")
    assert cache.get("k", ttl=60) is None
    cache.invalidate("missing")  # no error


async def test_concurrent_misses_fetch_once() -> None:
    cache = TokenCache()
    fetches = 0
    gate, started = asyncio.Event(), asyncio.Event()

    async def fetch() -> tuple[None, Tokens]:
        nonlocal fetches
        fetches += 1
        started.set()
        await gate.wait()
        return None, TOKENS

    waiters = [asyncio.create_task(cache.get_or_fetch("k", 60, fetch)) for _ in range(200)]
    await started.wait()
    gate.set()
    results = await asyncio.gather(*waiters)
    assert fetches == 1
    assert all(result == (None, TOKENS) for result in results)
    assert await cache.get_or_fetch("k", 60, fetch) == (None, TOKENS)
    assert fetches == 1


async def test_a_failed_fetch_reaches_every_waiter_and_is_not_cached() -> None:
    cache = TokenCache()
    gate, started = asyncio.Event(), asyncio.Event()

    async def failing() -> tuple[None, Tokens]:
        started.set()
        await gate.wait()
        raise ProviderConnectionError("page unreachable")

    waiters = [asyncio.create_task(cache.get_or_fetch("k", 60, failing)) for _ in range(5)]
    await started.wait()
    gate.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(result, ProviderConnectionError) for result in results)

    async def working() -> tuple[None, Tokens]:
        return None, TOKENS

    assert await cache.get_or_fetch("k", 60, working) == (None, TOKENS)


async def test_cancelling_one_waiter_does_not_cancel_the_fetch_for_others() -> None:
    cache = TokenCache()
    gate, started = asyncio.Event(), asyncio.Event()

    async def fetch() -> tuple[None, Tokens]:
        started.set()
        await gate.wait()
        return None, TOKENS

    first = asyncio.create_task(cache.get_or_fetch("k", 60, fetch))
    second = asyncio.create_task(cache.get_or_fetch("k", 60, fetch))
    await started.wait()
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    gate.set()
    assert await second == (None, TOKENS)
