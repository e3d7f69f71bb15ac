"""Session bootstrap: the landing page GET, its decoding and its failures."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from stages.bootstrap import FetchPage, page_headers
from stages.config import DEFAULT_HEADERS
from stages.core import Exchange
from stages.errors import BotProtectionError, ServerError


@pytest.fixture
async def site() -> AsyncIterator[tuple[str, dict[str, web.Response]]]:
    """A loopback server whose page reply each test sets."""
    replies: dict[str, web.Response] = {}

    async def page(request: web.Request) -> web.Response:
        replies["seen_headers"] = web.Response(text=str(dict(request.headers)))
        return replies["page"]

    app = web.Application()
    app.router.add_get("/", page)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}", replies
    await runner.cleanup()


def exchange_at(exchange_for, url: str) -> Exchange:
    return exchange_for(url=url)


async def test_the_page_is_fetched_with_browser_headers(exchange_for, site) -> None:
    url, replies = site
    replies["page"] = web.Response(text="<html>café</html>", content_type="text/html")
    result = await FetchPage()(exchange_at(exchange_for, url))
    assert result.page is not None
    assert result.page.html == "<html>café</html>"
    assert result.page.url == url + "/"
    assert DEFAULT_HEADERS["User-Agent"] in replies["seen_headers"].text
    assert page_headers(DEFAULT_HEADERS)["Accept"].startswith("text/html")


async def test_an_unknown_charset_falls_back_to_utf8(exchange_for, site) -> None:
    url, replies = site
    replies["page"] = web.Response(
        body="<html>日本</html>".encode(), headers={"Content-Type": "text/html; charset=utf8mb4"}
    )
    result = await FetchPage()(exchange_at(exchange_for, url))
    assert result.page is not None
    assert result.page.html == "<html>日本</html>"


async def test_a_declared_charset_is_honoured(exchange_for, site) -> None:
    url, replies = site
    replies["page"] = web.Response(
        body="<html>café</html>".encode("latin-1"),
        headers={"Content-Type": "text/html; charset=ISO-8859-1"},
    )
    result = await FetchPage()(exchange_at(exchange_for, url))
    assert result.page is not None
    assert result.page.html == "<html>café</html>"


async def test_failures_are_classified(exchange_for, site) -> None:
    url, replies = site
    replies["page"] = web.Response(
        status=503, text="<title>Just a moment...</title>", content_type="text/html"
    )
    with pytest.raises(BotProtectionError, match=r"bot protection page from http://127\.0\.0\.1"):
        await FetchPage()(exchange_at(exchange_for, url))
    replies["page"] = web.Response(status=502, text="Bad gateway")
    with pytest.raises(ServerError, match="HTTP 502"):
        await FetchPage()(exchange_at(exchange_for, url))
