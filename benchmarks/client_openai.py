"""The load: a client of an OpenAI-compatible server, measuring what a user of that server sees.

One aiohttp session (pool sized by the spec); per call one ``POST /chat/completions`` with the
conversation. Whole: the answer's text once the JSON arrives. Streamed (``"stream": true``): the
text of each ``chat.completion.chunk`` as its event arrives, so the driver's first-chunk time is
the first piece of text and its open-stream count says how many answers flowed at once. A
non-200 status or an ``error`` event fails the call. The server's own CPU and memory are read by
the section from ``/proc``; this worker's are not what is compared.

Run as a worker: ``python -m benchmarks.client_openai SPEC.json RESULT.json``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from benchmarks.driver import CallFn, Client, Messages, main


def _caller(session: aiohttp.ClientSession, spec: dict[str, Any], stream: bool) -> CallFn:
    url = spec["base_url"].rstrip("/") + "/chat/completions"
    extra = {"provider": spec["provider"]} if spec.get("provider") else {}

    async def call(messages: Messages) -> AsyncIterator[Any]:
        body = {"model": "gpt-4o", "messages": messages, "stream": stream, **extra}
        async with session.post(url, json=body) as reply:
            if reply.status != 200:
                raise RuntimeError(f"HTTP {reply.status}: {(await reply.read())[:200]!r}")
            if not stream:
                yield json.loads(await reply.read())["choices"][0]["message"]["content"]
                return
            async for line in reply.content:
                if not line.startswith(b"data: "):
                    continue
                data = line[6:].strip()
                if data == b"[DONE]":
                    return
                event = json.loads(data)
                if "error" in event:
                    raise RuntimeError(f"error event: {event['error']}")
                for choice in event.get("choices") or ():
                    piece = (choice.get("delta") or {}).get("content")
                    if piece:
                        yield piece
            raise RuntimeError("the stream ended without [DONE]")

    return call


async def setup(spec: dict[str, Any]) -> Client:
    """One session; whole and streamed calls."""
    pool = int(spec.get("pool") or 100)
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=pool), timeout=aiohttp.ClientTimeout(total=300)
    )
    return Client(
        calls={"default": _caller(session, spec, False), "stream": _caller(session, spec, True)},
        close=session.close,
        info={"aiohttp": aiohttp.__version__, "pool": pool},
    )


if __name__ == "__main__":
    main(setup)
