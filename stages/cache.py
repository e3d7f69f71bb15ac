"""The token cache: one landing-page fetch serves every call to a site for hours.

All anonymous visitors share one nonce (PROTOCOL.md §3), so the page is fetched
again only when the entry is older than its time-to-live or the server rejected
it. The entry's tokens also say which dialect the site speaks. Concurrent calls
that find no entry wait for one fetch between them; concurrent calls that saw the
same nonce rejected wait for one refresh between them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable

from .core import Page, Tokens

__all__ = ["CachedTokens", "TokenCache"]

CachedTokens = tuple[Page | None, Tokens]


class TokenCache:
    """Tokens per site key, with single-flight filling.

    Safe to share between event loops (each loop gets its own in-flight fetch);
    the stored values are immutable records.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entries: dict[str, tuple[CachedTokens, float]] = {}
        self._inflight: dict[tuple[Hashable, ...], asyncio.Task[CachedTokens]] = {}
        self._waiters: dict[asyncio.Task[CachedTokens], int] = {}

    def peek(self, key: str) -> CachedTokens | None:
        """The entry for ``key`` whatever its age (to see which dialect and nonce it holds)."""
        entry = self._entries.get(key)
        return None if entry is None else entry[0]

    def get(self, key: str, ttl: float) -> CachedTokens | None:
        """The entry for ``key`` if it is younger than ``ttl`` seconds."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        value, stored_at = entry
        if self._clock() - stored_at >= ttl:
            return None
        return value

    def put(self, key: str, value: CachedTokens) -> None:
        """Store ``value`` for ``key`` as fetched now."""
        self._entries[key] = (value, self._clock())

    def invalidate(self, key: str, *, nonce: str | None = None) -> None:
        """Forget ``key``'s entry — if ``nonce`` is given, only while the entry still
        holds that nonce, so that a fresh entry another call fetched meanwhile survives
        the rejection of the old one."""
        entry = self._entries.get(key)
        if entry is None:
            return
        # Another thread (the sync entry points' loop) may have dropped or replaced it
        # meanwhile: only this very entry goes, and a missing one is no error.
        if (nonce is None or entry[0][1].nonce == nonce) and self._entries.get(key) is entry:
            self._entries.pop(key, None)

    def clear(self) -> None:
        """Forget every entry."""
        self._entries.clear()

    async def get_or_fetch(
        self,
        key: str,
        ttl: float,
        fetch: Callable[[], Awaitable[CachedTokens]],
        *,
        route: Hashable = None,
    ) -> CachedTokens:
        """The cached entry, or the result of ``fetch()`` run once for all concurrent callers.

        Only callers on the same ``route`` (the proxy, session and per-call headers a
        fetch goes through) share a fetch: a page is never fetched through another
        call's proxy. The fetch runs as its own task: a caller that is cancelled does
        not cancel it for the others — but when the last one waiting is cancelled, so
        is the fetch (no orphan holding a connection). When a fetch someone else
        started fails (their deadline, their connection), each waiter tries its own
        instead of taking on a failure that was not its own; the starter's failure is
        raised.
        """
        loop = asyncio.get_running_loop()
        slot = ("fetch", key, loop, route)
        while True:
            value = self.get(key, ttl)
            if value is not None:
                return value
            outcome = await self._shared(slot, lambda: self._fill(key, fetch))
            if outcome is not None:
                return outcome
            # Another caller's fetch failed: go round and fetch (or join a newer fetch).

    async def refresh(
        self,
        key: str,
        rejected: str,
        fetch: Callable[[Tokens], Awaitable[Tokens]],
        *,
        route: Hashable = None,
    ) -> Tokens | None:
        """Replace the nonce ``rejected`` of ``key``'s entry with fresh tokens from
        ``fetch(old_tokens)``, once for all concurrent callers that saw it rejected.

        Returns the tokens now cached — ``None`` when the entry no longer holds
        ``rejected`` (gone, or refreshed already by someone else: take what is cached).
        A failed refresh is raised to the caller who started it; the others get
        ``None`` and decide for themselves.
        """
        loop = asyncio.get_running_loop()
        slot = ("refresh", key, rejected, loop, route)
        entry = self._entries.get(key)
        if entry is None or entry[0][1].nonce != rejected:
            return None
        page, old = entry[0]

        async def replace() -> CachedTokens:
            fresh = await fetch(old)
            current = self._entries.get(key)
            if current is not None and current[0][1].nonce == rejected:
                self._entries[key] = ((page, fresh), current[1])  # the page's age is kept
            return page, fresh

        outcome = await self._shared(slot, replace)
        return None if outcome is None else outcome[1]

    async def _shared(
        self, slot: tuple[Hashable, ...], make: Callable[[], Awaitable[CachedTokens]]
    ) -> CachedTokens | None:
        """Run ``make()`` once for every caller of ``slot`` at the same time.

        ``None`` for a caller whose shared run, started by someone else, failed.
        """
        task = self._inflight.get(slot)
        started = task is None
        if task is None:
            task = asyncio.get_running_loop().create_task(make())  # type: ignore[arg-type]
            self._inflight[slot] = task
            task.add_done_callback(lambda done: self._settle(slot, done))
        try:
            return await self._wait(task)
        except BaseException:
            if started or not task.done() or _cancelled_here():
                raise
            return None

    async def _wait(self, task: asyncio.Task[CachedTokens]) -> CachedTokens:
        self._waiters[task] = self._waiters.get(task, 0) + 1
        try:
            return await asyncio.shield(task)
        finally:
            left = self._waiters.get(task, 1) - 1
            if left > 0:
                self._waiters[task] = left
            else:
                self._waiters.pop(task, None)
                if not task.done():
                    task.cancel()

    async def _fill(self, key: str, fetch: Callable[[], Awaitable[CachedTokens]]) -> CachedTokens:
        value = await fetch()
        self.put(key, value)
        return value

    def _settle(self, slot: tuple[Hashable, ...], task: asyncio.Task[CachedTokens]) -> None:
        if self._inflight.get(slot) is task:
            del self._inflight[slot]
        self._waiters.pop(task, None)
        if not task.cancelled():
            task.exception()  # retrieved: no "exception never retrieved" if all waiters left


def _cancelled_here() -> bool:
    """Whether the running task itself is being cancelled (not just a task it awaited)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
