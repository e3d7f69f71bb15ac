"""What the hand-written floors share: reading the site's landing page, the classic chat
request, and running a benchmark server until it is signalled to stop.

The floor client (:mod:`benchmarks.client_floor`), the floor relay
(:mod:`benchmarks.relay_floor`) and ``serve-only`` (:mod:`benchmarks.serve_only`) all send
the site this same request, so their figures compare like with like.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

__all__ = ["FORM_HEADERS", "chat_form", "landing", "serve_until_signalled"]

_NONCE = re.compile(r'data-nonce="([0-9a-f]+)"')
_POST_ID = re.compile(r'data-post-id="([0-9]+)"')
_PREFIX = {"user": "Human: ", "assistant": "AI: ", "system": "Human: System: "}
#: The chat request's headers: only its form's type.
FORM_HEADERS = {"Content-Type": "application/x-www-form-urlencoded; charset=UTF-8"}


async def landing(session: aiohttp.ClientSession, url: str) -> tuple[str, str]:
    """The nonce and post id of the site's landing page (``url`` without its final ``/``)."""
    async with session.get(url + "/") as page:
        html = await page.text()
    nonce_match, post_match = _NONCE.search(html), _POST_ID.search(html)
    if nonce_match is None or post_match is None:
        raise RuntimeError(f"no nonce or post id on {url}/")
    return nonce_match.group(1), post_match.group(1)


def chat_form(url: str, nonce: str, post_id: str, messages: list[dict[str, str]]) -> str:
    """The urlencoded chat request for ``messages`` (the last one is the question): the
    fields chatgptt sends, history as the plugin's ``"Human: …"``/``"AI: …"`` array."""
    history = [_PREFIX[m["role"]] + m["content"] for m in messages[:-1]]
    return urlencode(
        (
            ("_wpnonce", nonce),
            ("post_id", post_id),
            ("url", url),
            ("action", "wpaicg_chat_shortcode_message"),
            ("message", messages[-1]["content"]),
            ("bot_id", "0"),
            ("chatbot_identity", "shortcode"),
            ("wpaicg_chat_client_id", "Ab3dE5gH9k"),
            ("wpaicg_chat_history", json.dumps(history, ensure_ascii=False)),
        )
    )


async def serve_until_signalled(runner: web.AppRunner, announce: str) -> None:
    """Listen on a free loopback port, print ``announce`` with ``{url}`` filled in (on
    stderr, where the benchmark looks for it), and serve until SIGTERM or SIGINT."""
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0, backlog=2048).start()
        port = runner.addresses[0][1]
        print(announce.format(url=f"http://127.0.0.1:{port}/v1"), file=sys.stderr, flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()
