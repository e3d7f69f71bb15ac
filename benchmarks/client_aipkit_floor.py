"""The AIPKit floor: the least a client of an AIPKit site can do, written by hand on aiohttp.

One ``aiohttp.ClientSession``; the landing page fetched once and its ``data-config`` (nonce,
bot id, AJAX URL, post id) taken by regex; then per call step 1 (one urlencoded POST caching
the message, its JSON read for the key) and step 2 (one GET of the event stream, read to its
end without decoding; the first chunk that carries a delta counts as the first token). Every
call is a new conversation with the same ids chatgptt would make. No retries, no validation,
no timeouts, no conversation store: a lower bound, not a client to use.

Run as a worker: ``python -m benchmarks.client_aipkit_floor SPEC.json RESULT.json``.
"""

from __future__ import annotations

import html
import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import aiohttp

from benchmarks.driver import CallFn, Client, Messages, main

_CONFIG = re.compile(r"data-config='([^']*)'")
_DELTA_MARK = b'data: {"delta":'
_FORM = {"Content-Type": "application/x-www-form-urlencoded; charset=UTF-8"}


async def _caller(session: aiohttp.ClientSession, site: str) -> CallFn:
    """Fetch ``site``'s page once; the call that then talks to its AJAX URL in two steps."""
    url = site.rstrip("/")
    async with session.get(url + "/") as page:
        text = await page.text()
    found = _CONFIG.search(text)
    if found is None:
        raise RuntimeError(f"no data-config on {url}/")
    config = json.loads(html.unescape(found.group(1)))
    nonce, bot_id, post_id = config["nonce"], str(config["botId"]), str(config["postId"])
    endpoint = config["ajaxUrl"]

    async def call(messages: Messages) -> AsyncIterator[Any]:
        message = messages[-1]["content"]
        body = urlencode(
            (
                ("action", "aipkit_cache_sse_message"),
                ("_ajax_nonce", nonce),
                ("bot_id", bot_id),
                ("message", message),
                ("user_client_message_id", f"aipkit-client-msg-{bot_id}-1-abcde"),
            )
        )
        async with session.post(endpoint, data=body, headers=_FORM) as cached:
            if cached.status != 200:
                raise RuntimeError(f"step 1: HTTP {cached.status}")
            key = json.loads(await cached.read())["data"]["cache_key"]
        params = (
            ("action", "aipkit_frontend_chat_stream"),
            ("cache_key", key),
            ("bot_id", bot_id),
            ("session_id", str(uuid.uuid4())),
            ("conversation_uuid", str(uuid.uuid4())),
            ("post_id", post_id),
            ("_ts", str(int(time.time() * 1000))),
            ("_ajax_nonce", nonce),
        )
        async with session.get(endpoint, params=params) as stream:
            if stream.status != 200:
                raise RuntimeError(f"step 2: HTTP {stream.status}")
            seen_delta = False
            async for chunk in stream.content.iter_any():
                if seen_delta:
                    yield chunk
                elif _DELTA_MARK in chunk:
                    seen_delta = True
                    yield chunk

    return call


async def setup(spec: dict[str, Any]) -> Client:
    """One session; the page of each site fetched once; two requests per call."""
    pool = int(spec.get("pool") or 100)  # aiohttp's default limit unless the section asks
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=pool))
    try:
        calls = {"default": await _caller(session, spec["url"])}
        if spec.get("warmup_url"):
            calls["warmup"] = await _caller(session, spec["warmup_url"])
    except BaseException:
        await session.close()
        raise
    return Client(
        calls=calls,
        counts_chars=False,
        close=session.close,
        info={"aiohttp": aiohttp.__version__, "pool": f"one session, {pool} connections"},
    )


if __name__ == "__main__":
    main(setup)
