"""The shared session's cookie jar keeps at most so many cookies per site."""

from __future__ import annotations

import asyncio
import sys
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from yarl import URL

from chatgptt.session import BoundedCookieJar, SessionOptions, SessionRegistry, make_session

SITES = [URL("http://127.0.0.1:8080/"), URL("https://chat.example/page"), URL("http://b.example/")]


def kept(jar: BoundedCookieJar) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for morsel in jar:
        found.setdefault(morsel["domain"], {})[morsel.key] = morsel.value
    return found


# One step: which site sets which cookie (from a small pool of names, so some are set again).
steps = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=len(SITES) - 1),
        st.integers(min_value=0, max_value=12),
        st.integers(min_value=0, max_value=3),
        st.booleans(),
    ),
    max_size=60,
)


@settings(deadline=None, max_examples=200)
@given(steps, st.integers(min_value=1, max_value=6))
async def test_each_site_keeps_the_cookies_it_set_last_up_to_the_bound(
    operations: list[tuple[int, int, int, bool]], bound: int
) -> None:
    """Against a model: per site, the ``bound`` cookies whose value was set most recently."""
    jar = BoundedCookieJar(per_site=bound)
    model: dict[str, dict[str, str]] = {}
    for site, name, value, from_headers in operations:
        url = SITES[site]
        cookie, text = f"c{name}", f"v{value}"
        if from_headers:
            jar.update_cookies_from_headers([f"{cookie}={text}; Path=/"], url)
        else:
            jar.update_cookies({cookie: text}, url)
        domain = model.setdefault(url.host or "", {})
        if domain.get(cookie) != text:
            domain.pop(cookie, None)
            domain[cookie] = text  # set anew: the most recent
        while len(domain) > bound:
            del domain[next(iter(domain))]
    assert kept(jar) == {host: cookies for host, cookies in model.items() if cookies}


async def test_a_site_flooding_cookies_leaves_other_sites_alone() -> None:
    jar = BoundedCookieJar(per_site=3)
    jar.update_cookies({"session": "keep"}, SITES[1])
    for index in range(100):
        jar.update_cookies({f"junk{index}": "x"}, SITES[0])
    assert kept(jar)["chat.example"] == {"session": "keep"}
    assert list(kept(jar)["127.0.0.1"]) == ["junk97", "junk98", "junk99"]
    assert len(jar.filter_cookies(SITES[0])) == 3


def test_the_bound_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        BoundedCookieJar(per_site=0)


async def test_the_shared_sessions_jar_is_bounded_by_the_options() -> None:
    for options, bound in ((SessionOptions(max_cookies_per_site=7), 7), (SessionOptions(), 50)):
        session = make_session(options)
        try:
            assert isinstance(session.cookie_jar, BoundedCookieJar)
            assert session.cookie_jar.per_site == bound
        finally:
            await session.close()


# --- the registry of loops' sessions, from many threads -----------------------------------------


class _StandInSession:
    """What the registry uses of a session: ``closed`` and ``close()``."""

    closed = False

    async def close(self) -> None:
        self.closed = True


def test_loops_of_many_threads_add_and_drop_their_sessions_safely() -> None:
    """Threads each running loops — some closed by hand, whose slots the next loop drops —
    while others hold theirs: no thread sees the registry change under it. (Switching
    threads as often as possible, so a missing lock fails this rather than rarely.)"""
    registry = SessionRegistry(factory=_StandInSession)  # type: ignore[arg-type]
    errors: list[BaseException] = []
    holding = threading.Event()

    def hold() -> None:
        loop = asyncio.new_event_loop()
        loop.run_until_complete(registry.get())
        holding.wait()
        loop.close()

    def churn() -> None:
        try:
            for _ in range(200):
                loop = asyncio.new_event_loop()
                loop.run_until_complete(registry.get())
                loop.close()  # by hand: its slot stays until another loop's first call
                asyncio.run(registry.get())
        except BaseException as exc:
            errors.append(exc)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        holders = [threading.Thread(target=hold) for _ in range(200)]
        churners = [threading.Thread(target=churn) for _ in range(6)]
        for thread in [*holders, *churners]:
            thread.start()
        for thread in churners:
            thread.join(timeout=60)
    finally:
        sys.setswitchinterval(interval)
        holding.set()
        for thread in holders:
            thread.join(timeout=60)
    assert errors == []
    assert not any(thread.is_alive() for thread in [*holders, *churners])
