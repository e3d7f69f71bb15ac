"""Classic transport: the POST as the plugin's script sends it, and the site's refusals
(the captured nonce pages, 400 0) mapped to typed errors, against a loopback server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable

import attrs
import pytest
from aiohttp import web

from stages.classic.tokens import ClassicTokens
from stages.classic.transport import PostForm
from stages.core import Exchange
from stages.errors import NonceRejectedError, UnknownActionError
from tests.conftest import VECTORS

CLASSIC = VECTORS / "classic"


@pytest.fixture
async def site() -> AsyncIterator[tuple[str, dict[str, str]]]:
    """A stand-in that answers each POST with the capture named by ``reply["name"]``."""
    reply = {"name": "bad_nonce"}

    async def ajax(_request: web.Request) -> web.Response:
        name = reply["name"]
        response = json.loads((CLASSIC / f"{name}.response.json").read_text("utf-8"))
        return web.Response(
            status=response["status"],
            body=(CLASSIC / f"{name}.body").read_bytes(),
            content_type="text/html",
        )

    app = web.Application()
    app.router.add_post("/wp-admin/admin-ajax.php", ajax)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", reply
    finally:
        await runner.cleanup()


def exchange_at(exchange_for: Callable[..., Exchange], base: str) -> Exchange:
    tokens = ClassicTokens(
        nonce="18d499d351",
        post_id="4",
        ajax_url=base + "/wp-admin/admin-ajax.php",
        page_url=base + "/",
        site_url=base,
    )
    return attrs.evolve(
        exchange_for(url=base), dialect="classic", tokens=tokens, form=(("message", "Hi"),)
    )


@pytest.mark.parametrize("name", ["bad_nonce", "bad_nonce_referer", "missing_nonce"])
async def test_the_captured_nonce_pages_are_nonce_rejections(
    site: tuple[str, dict[str, str]], exchange_for: Callable[..., Exchange], name: str
) -> None:
    base, reply = site
    reply["name"] = name
    with pytest.raises(NonceRejectedError) as info:
        await PostForm()(exchange_at(exchange_for, base))
    assert info.value.nonce == "18d499d351", "the rejected nonce, so only its entry is dropped"


async def test_400_0_names_the_action_sent(
    site: tuple[str, dict[str, str]], exchange_for: Callable[..., Exchange]
) -> None:
    base, reply = site
    reply["name"] = "unknown_action"
    with pytest.raises(UnknownActionError) as info:
        await PostForm()(exchange_at(exchange_for, base))
    assert info.value.action == "wpaicg_chat_shortcode_message"
