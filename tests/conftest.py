"""Shared test helpers: building calls and exchanges without a server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest
from hypothesis import HealthCheck, settings

from stages.cache import TokenCache
from stages.config import RetryPolicy, Settings, Site
from stages.core import Call, Exchange, Message
from stages.errors import ResponseTooLargeError

VECTORS = Path(__file__).parent / "vectors"

# How fast examples are made and run depends on the machine's load (CI shares 2 cores), not
# on the code under test: no property fails for it. Each property's own assertions stand.
settings.register_profile("chatgptt", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("chatgptt")


def agent_turns(
    call_id: str = "call_1", name: str = "weather", arguments: str = "{}", result: str = "18 C"
) -> list[dict[str, Any]]:
    """An agent's loop as OpenAI clients send it: a question, the assistant's call of a tool
    (no content), and the tool's result."""
    return [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": name, "arguments": arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call_id, "content": result},
    ]


class FakeSleep:
    """An injected ``sleep`` that records the delays it was asked for and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def fake_sleep() -> FakeSleep:
    return FakeSleep()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def make_call(
    session: aiohttp.ClientSession,
    *,
    url: str = "http://127.0.0.1:9",
    retry: RetryPolicy | None = None,
    cache: TokenCache | None = None,
    **settings_changes: Any,
) -> Call:
    """A call to ``url`` with test-friendly settings."""
    settings = Settings(site=Site.at(url), **settings_changes)
    if retry is not None:
        settings = attrs.evolve(settings, retry=retry)
    return Call(
        request_id="test",
        model="gpt-4o",
        messages=(Message("user", "Hello"),),
        settings=settings,
        session=session,
        token_cache=cache,
    )


@pytest.fixture
def exchange_for(session: aiohttp.ClientSession) -> Callable[..., Exchange]:
    def build(**kwargs: Any) -> Exchange:
        return Exchange(call=make_call(session, **kwargs))

    return build


def run(coro: Any) -> Any:
    """Run a coroutine from a synchronous (e.g. hypothesis) test."""
    return asyncio.run(coro)


class MemoryBody:
    """A reply body (the ``stages.core.Body`` protocol) made of given chunks, optionally
    failing after them — for decode stages tested without a server."""

    def __init__(self, chunks: Iterable[bytes], error: BaseException | None = None) -> None:
        self.chunks = list(chunks)
        self.error = error
        self.closed = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[bytes]:
        while self.chunks:
            yield self.chunks.pop(0)
        if self.error is not None:
            raise self.error

    async def read(self, limit: int) -> bytes:
        data = b"".join([chunk async for chunk in self])
        if len(data) > limit:
            raise ResponseTooLargeError("the reply", limit)
        return data

    async def aclose(self) -> None:
        self.closed = True
