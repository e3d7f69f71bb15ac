"""One ``aiohttp`` session per event loop, shared by every provider, closed with its loop.

A session belongs to the loop it was made on. Each loop gets one, made on first
use, so connections and cookies are reused across calls. Its closing is tied to
the loop's shutdown: a small async generator guards the session, and
``loop.shutdown_asyncgens()`` — which ``asyncio.run``, ``asyncio.Runner`` and
pytest-asyncio call on the way out — closes the guard, which closes the session.
No "Unclosed client session" warning, no call the user must remember.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncGenerator, Callable

import aiohttp
import attrs

__all__ = ["SessionOptions", "SessionRegistry", "make_session"]


@attrs.frozen(kw_only=True)
class SessionOptions:
    """How the shared session is built.

    Attributes:
        max_connections: the connection pool's size (all hosts).
        keepalive_timeout: seconds an idle pooled connection is kept.
    """

    max_connections: int = 100
    keepalive_timeout: float = 15.0


def make_session(options: SessionOptions = SessionOptions()) -> aiohttp.ClientSession:
    """A session for chatgptt: no default time limit (each request sets its own), a
    cookie jar that also keeps cookies of IP-address hosts (mirrors on loopback)."""
    connector = aiohttp.TCPConnector(
        limit=options.max_connections,
        limit_per_host=0,
        keepalive_timeout=options.keepalive_timeout,
        ttl_dns_cache=300,
    )
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.CookieJar(unsafe=True),
        timeout=aiohttp.ClientTimeout(total=None),
    )


class _Slot:
    __slots__ = ("guard", "session")

    def __init__(self, session: aiohttp.ClientSession, guard: AsyncGenerator[None, None]) -> None:
        self.session = session
        self.guard = guard


async def _guard(session: aiohttp.ClientSession) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        await session.close()


class SessionRegistry:
    """The session of each running loop."""

    def __init__(self, factory: Callable[[], aiohttp.ClientSession] = make_session) -> None:
        #: Makes a loop's session; replace it (or use :meth:`configure`) before first use.
        self.factory = factory
        self._slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Slot] = (
            weakref.WeakKeyDictionary()
        )

    def configure(self, options: SessionOptions) -> None:
        """Build the sessions made from now on with ``options`` (e.g. a larger pool)."""
        self.factory = lambda: make_session(options)

    async def get(self) -> aiohttp.ClientSession:
        """The running loop's session, made (and guarded) on first use."""
        loop = asyncio.get_running_loop()
        slot = self._slots.get(loop)
        if slot is not None and not slot.session.closed:
            return slot.session
        session = self.factory()
        guard = _guard(session)
        self._slots[loop] = _Slot(session, guard)
        await guard.asend(None)  # started: the loop now tracks it for shutdown_asyncgens
        return session

    async def aclose(self) -> None:
        """Close the running loop's session now (a new one is made on next use)."""
        loop = asyncio.get_running_loop()
        slot = self._slots.pop(loop, None)
        if slot is not None:
            await slot.guard.aclose()
