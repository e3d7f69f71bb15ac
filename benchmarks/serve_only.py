"""``chatgptt serve``'s application with the library's call taken out: what the server costs.

``python -m benchmarks.serve_only SITE_URL`` prints ``as an OpenAI API on URL/v1``.

The application is :func:`chatgptt.openai_api.make_app` as ``chatgptt serve`` runs it (the
guard, the body checks, the request mapped and validated, ``usage`` counted as
``$CHATGPTT_USAGE_TOKENIZER`` says, the completion written, the in-flight record), but its
provider asks the site with the floor's own hand-written code (:mod:`benchmarks.relay_floor`:
one urlencoded POST, its JSON read) instead of running the library's stages. Measured beside
the floor and ``chatgptt serve``, it splits the server's CPU per request into the server's
own share and the library call's. A measuring tool, not a provider: it reads classic JSON
replies only and has no timeouts, retries or error mapping.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import aiohttp

from benchmarks.floor_site import FORM_HEADERS, chat_form, landing, serve_until_signalled
from chatgptt import ChatGptt
from chatgptt.openai_api import load_counter
from chatgptt.openai_api.app import make_app, make_runner

__all__ = ["HandCalled"]


class _Answer:
    """One chat request made by hand; the answer as one chunk (a classic JSON reply)."""

    __slots__ = ("_done", "_messages", "_session", "_site")

    def __init__(self, site: _Site, messages: list[dict[str, str]], session: Any) -> None:
        self._site = site
        self._messages = messages
        self._session: aiohttp.ClientSession = session
        self._done = False

    async def __aenter__(self) -> _Answer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None

    def __aiter__(self) -> _Answer:
        return self

    async def __anext__(self) -> str:
        if self._done:
            raise StopAsyncIteration
        self._done = True
        site = self._site
        nonce, post_id = await site.tokens(self._session)
        form = chat_form(site.url, nonce, post_id, self._messages)
        async with self._session.post(site.endpoint, data=form, headers=FORM_HEADERS) as reply:
            answer: str = json.loads(await reply.read())["data"]
        return answer


class _Site:
    """The site's address and its landing page's tokens, read once."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.endpoint = self.url + "/wp-admin/admin-ajax.php"
        self._tokens: tuple[str, str] | None = None
        self._lock = asyncio.Lock()

    async def tokens(self, session: aiohttp.ClientSession) -> tuple[str, str]:
        if self._tokens is None:
            async with self._lock:
                if self._tokens is None:
                    self._tokens = await landing(session, self.url)
        return self._tokens


class HandCalled(ChatGptt):
    """ChatGptt's models and settings, with each answer asked of :attr:`site` by hand."""

    site: _Site | None = None

    @classmethod
    def create_async_generator(  # type: ignore[override]
        cls, model: str, messages: Sequence[Any], proxy: str | None = None, **kwargs: Any
    ) -> _Answer:
        assert cls.site is not None, "set HandCalled.site first"
        return _Answer(cls.site, list(messages), kwargs["session"])


async def _serve(site: str) -> None:
    HandCalled.site = _Site(site)
    mode = os.environ.get("CHATGPTT_USAGE_TOKENIZER") or "auto"
    if mode not in ("auto", "tiktoken", "estimate"):
        raise SystemExit(f"CHATGPTT_USAGE_TOKENIZER: not a tokenizer mode: {mode!r}")
    counter = load_counter(HandCalled.get_models(), mode)
    runner = make_runner(make_app(HandCalled, counter=counter))
    await serve_until_signalled(runner, "as an OpenAI API on {url}")


if __name__ == "__main__":
    asyncio.run(_serve(sys.argv[1]))
