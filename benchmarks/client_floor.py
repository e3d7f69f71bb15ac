"""The floor: the least any client of the site can do, written by hand on aiohttp.

One ``aiohttp.ClientSession``; the landing page fetched once and the nonce and post id taken
by regex; then per call one urlencoded POST with the same form fields chatgptt sends
(``stages.payload.build_form``'s list, history as the plugin's ``"Human: …"`` / ``"AI: …"``
JSON array) and the reply read whole: JSON parsed for its ``data``, an event stream read to
its end without decoding (the first chunk that carries a content piece counts as the first
token). No retries, no validation, no timeouts: a lower bound, not a client to use.

Run as a worker: ``python -m benchmarks.client_floor SPEC.json RESULT.json``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from benchmarks.driver import CallFn, Client, Messages, main
from benchmarks.floor_site import FORM_HEADERS, chat_form, landing

# A streamed content piece; the role frame carries "content": "" after "role", so it
# does not match.
_TOKEN_MARK = b'{"content": '


async def _caller(session: aiohttp.ClientSession, site: str) -> CallFn:
    """Fetch ``site``'s page once; the call that then posts to ``site``."""
    url = site.rstrip("/")
    nonce, post_id = await landing(session, url)
    endpoint = url + "/wp-admin/admin-ajax.php"

    async def call(messages: Messages) -> AsyncIterator[Any]:
        body = chat_form(url, nonce, post_id, messages)
        async with session.post(endpoint, data=body, headers=FORM_HEADERS) as reply:
            if reply.status != 200:
                raise RuntimeError(f"HTTP {reply.status}")
            if reply.content_type == "application/json":
                yield json.loads(await reply.read())["data"]
                return
            seen_token = False
            async for chunk in reply.content.iter_any():
                if seen_token:
                    yield chunk
                elif _TOKEN_MARK in chunk:
                    seen_token = True
                    yield chunk

    return call


async def setup(spec: dict[str, Any]) -> Client:
    """One session; the page of each site fetched once; one POST per call."""
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
        counts_chars=spec.get("mode", "json") == "json",
        close=session.close,
        info={
            "aiohttp": aiohttp.__version__,
            "pool": "one session, aiohttp's default 100 connections",
        },
    )


if __name__ == "__main__":
    main(setup)
