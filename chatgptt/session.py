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
import threading
import weakref
from collections.abc import AsyncGenerator, Callable, Sequence

import aiohttp
import attrs
from aiohttp.typedefs import LooseCookies
from yarl import URL

__all__ = ["BoundedCookieJar", "SessionOptions", "SessionRegistry", "make_session"]

#: RFC 6265 §6.1: a user agent should keep at least 50 cookies per domain.
DEFAULT_COOKIES_PER_SITE = 50


@attrs.frozen(kw_only=True)
class SessionOptions:
    """How the shared session is built.

    Attributes:
        max_connections: the connection pool's size (all hosts).
        keepalive_timeout: seconds an idle pooled connection is kept.
        max_cookies_per_site: cookies kept per domain (see :class:`BoundedCookieJar`).
    """

    max_connections: int = 100
    keepalive_timeout: float = 15.0
    max_cookies_per_site: int = DEFAULT_COOKIES_PER_SITE


_CookieKey = tuple[str, str]  # (path, name) within a domain
_NO_URL = URL()


class BoundedCookieJar(aiohttp.CookieJar):
    """A cookie jar that keeps at most ``per_site`` cookies for each domain.

    The session is shared by every call for hours; a site that sets a new cookie on
    every reply would otherwise grow the jar, and the ``Cookie`` header sent with each
    request, without bound. Beyond ``per_site`` cookies, the ones set least recently go
    first (setting a cookie again with a new value makes it recent). Cookies of
    IP-address hosts are kept too (mirrors on loopback), as with ``unsafe=True``.
    """

    def __init__(self, *, per_site: int = DEFAULT_COOKIES_PER_SITE) -> None:
        if per_site < 1:
            raise ValueError(f"per_site must be at least 1, got {per_site}")
        super().__init__(unsafe=True)
        self.per_site = per_site
        # Per domain, each cookie's value, oldest set first.
        self._set_order: dict[str, dict[_CookieKey, str]] = {}

    def update_cookies(self, cookies: LooseCookies, response_url: URL = _NO_URL) -> None:
        super().update_cookies(cookies, response_url)
        self._bound()

    def update_cookies_from_headers(self, headers: Sequence[str], response_url: URL) -> None:
        super().update_cookies_from_headers(headers, response_url)
        self._bound()

    def _bound(self) -> None:
        """Record what was set since the last update and drop the oldest beyond the cap."""
        current: dict[str, dict[_CookieKey, str]] = {}
        for morsel in self:
            current.setdefault(morsel["domain"], {})[(morsel["path"], morsel.key)] = morsel.value
        evict: set[tuple[str, str, str]] = set()
        order: dict[str, dict[_CookieKey, str]] = {}
        for domain, cookies in current.items():
            before = self._set_order.get(domain, {})
            kept = {key: value for key, value in before.items() if cookies.get(key) == value}
            kept.update((key, value) for key, value in cookies.items() if key not in kept)
            excess = len(kept) - self.per_site
            if excess > 0:
                for path, name in list(kept)[:excess]:
                    evict.add((domain, path, name))
                    del kept[(path, name)]
            order[domain] = kept
        self._set_order = order
        if evict:
            self.clear(lambda morsel: (morsel["domain"], morsel["path"], morsel.key) in evict)


def make_session(options: SessionOptions = SessionOptions()) -> aiohttp.ClientSession:
    """A session for chatgptt: no default time limit (each request sets its own), a
    cookie jar bounded per site that also keeps cookies of IP-address hosts."""
    connector = aiohttp.TCPConnector(
        limit=options.max_connections,
        limit_per_host=0,
        keepalive_timeout=options.keepalive_timeout,
        ttl_dns_cache=300,
    )
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=BoundedCookieJar(per_site=options.max_cookies_per_site),
        timeout=aiohttp.ClientTimeout(total=None),
    )


class _Slot:
    __slots__ = ("guard", "session")

    def __init__(self, session: aiohttp.ClientSession, guard: AsyncGenerator[None, None]) -> None:
        self.session = session
        self.guard = guard


async def _guard(
    session: aiohttp.ClientSession, release: Callable[[], None]
) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        release()
        await session.close()


class SessionRegistry:
    """The session of each running loop."""

    def __init__(self, factory: Callable[[], aiohttp.ClientSession] = make_session) -> None:
        #: Makes a loop's session; replace it (or use :meth:`configure`) before first use.
        self.factory = factory
        self._slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Slot] = (
            weakref.WeakKeyDictionary()
        )
        # Loops of other threads add and drop their slots too: changes (never awaited
        # under it) hold this lock, so none iterates the slots while another edits them.
        self._lock = threading.RLock()  # re-entered when a dropped guard closes at once

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
        guard = _guard(session, lambda: self._release(loop, session))
        with self._lock:
            self._forget_closed_loops()
            self._slots[loop] = _Slot(session, guard)
        await guard.asend(None)  # started: the loop now tracks it for shutdown_asyncgens
        return session

    def _release(self, loop: asyncio.AbstractEventLoop, session: aiohttp.ClientSession) -> None:
        """The loop shuts down (or :meth:`aclose`): forget its slot. The slot's session
        refers to the loop, so the weak key alone would never let the loop go."""
        with self._lock:
            slot = self._slots.get(loop)
            if slot is not None and slot.session is session:
                self._slots.pop(loop, None)

    def _forget_closed_loops(self) -> None:
        """Drop the slots of loops closed without ``shutdown_asyncgens`` (a loop closed by
        hand), whose guards never ran: nothing else would free those loops. Under the lock."""
        for loop in [loop for loop in list(self._slots.keys()) if loop.is_closed()]:
            self._slots.pop(loop, None)

    async def aclose(self) -> None:
        """Close the running loop's session now (a new one is made on next use)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            slot = self._slots.pop(loop, None)
        if slot is not None:
            await slot.guard.aclose()
