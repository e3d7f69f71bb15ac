"""The floor: the least an OpenAI-compatible relay of the site can do, written by hand on aiohttp.

``POST /v1/chat/completions`` only. The landing page is fetched once (nonce and post id by
regex); each request's JSON body is parsed, the site gets one urlencoded POST with chatgptt's
form fields (history as the plugin's ``"Human: …"``/``"AI: …"`` array), and the reply goes
back as OpenAI expects: a ``chat.completion``, or for ``"stream": true`` one
``chat.completion.chunk`` event per content piece of the site's stream (each frame decoded,
its text re-encoded), a finish chunk and ``data: [DONE]``. No validation, no usage, no error
mapping, no limits, no timeouts: a lower bound, not a server to use.

``python -m benchmarks.relay_floor SITE_URL [POOL]`` prints ``relay listening on URL/v1``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

import aiohttp
from aiohttp import web

from benchmarks.floor_site import FORM_HEADERS, chat_form, landing, serve_until_signalled

_SSE = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}


async def serve(site: str, pool: int) -> None:
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=pool))
    url = site.rstrip("/")
    nonce, post_id = await landing(session, url)
    endpoint = url + "/wp-admin/admin-ajax.php"

    async def chat(request: web.Request) -> web.StreamResponse:
        body = json.loads(await request.read())
        messages = body["messages"]
        model = body["model"]
        form = chat_form(url, nonce, post_id, messages)
        completion_id = "chatcmpl-" + os.urandom(12).hex()
        created = int(time.time())
        async with session.post(endpoint, data=form, headers=FORM_HEADERS) as reply:
            if reply.content_type == "application/json":
                pieces = [json.loads(await reply.read())["data"]]
                upstream = None
            else:
                pieces = []
                upstream = reply.content
            if not body.get("stream"):
                if upstream is not None:
                    async for frame in _frames(upstream):
                        pieces.append(frame)
                return web.json_response(
                    {
                        "id": completion_id,
                        "object": "chat.completion",
                        "created": created,
                        "model": model,
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": "".join(pieces)},
                                "finish_reason": "stop",
                            }
                        ],
                    }
                )
            response = web.StreamResponse(headers=_SSE)
            await response.prepare(request)

            def event(delta: dict[str, str], finish: str | None) -> bytes:
                chunk = {
                    "id": completion_id,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                }
                return b"data: " + json.dumps(chunk).encode() + b"\n\n"

            for piece in pieces:
                await response.write(event({"content": piece}, None))
            if upstream is not None:
                async for piece in _frames(upstream):
                    await response.write(event({"content": piece}, None))
            await response.write(event({}, "stop") + b"data: [DONE]\n\n")
            await response.write_eof()
            return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    try:
        await serve_until_signalled(runner, "relay listening on {url}")
    finally:
        await session.close()


async def _frames(content: aiohttp.StreamReader):  # type: ignore[no-untyped-def]
    """The content pieces of the site's event stream, frame by frame."""
    buffer = b""
    async for data in content.iter_any():
        buffer += data
        *frames, buffer = buffer.split(b"\n\n")
        for frame in frames:
            for line in frame.split(b"\n"):
                if line.startswith(b"data: ") and line != b"data: [DONE]":
                    piece = json.loads(line[6:])["choices"][0]["delta"].get("content")
                    if piece:
                        yield piece


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1024))
