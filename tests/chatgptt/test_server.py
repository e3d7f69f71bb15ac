"""chatgptt serve: the OpenAI-compatible API in front of the provider (emulator behind)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from chatgptt import RetryPolicy
from chatgptt.emulator import Fault
from chatgptt.server import make_app
from chatgptt.testing import provider_for
from stages.sse import decode_events

HELLO = [{"role": "user", "content": "Hello"}]

Serve = Callable[[type[Any]], Awaitable[str]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    runners: list[web.AppRunner] = []

    async def start(provider: type[Any]) -> str:
        runner = web.AppRunner(make_app(provider), handler_cancellation=True, shutdown_timeout=0.1)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        runners.append(runner)
        return f"http://127.0.0.1:{runner.addresses[0][1]}/v1"

    yield start
    for runner in runners:
        await runner.cleanup()


async def post(url: str, body: Any) -> tuple[int, bytes, str]:
    async with (
        aiohttp.ClientSession() as client,
        client.post(url + "/chat/completions", json=body) as reply,
    ):
        return reply.status, await reply.read(), reply.content_type


async def test_models_are_listed(serve, emulator) -> None:
    base = await serve(provider_for(emulator))
    async with aiohttp.ClientSession() as client, client.get(base + "/models") as reply:
        listed = await reply.json()
    assert [model["id"] for model in listed["data"]] == ["gpt-4", "gpt-4o", "gpt-4o-mini"]


async def test_a_whole_completion(serve, emulator) -> None:
    base = await serve(provider_for(emulator))
    status, body, _ = await post(base, {"model": "gpt-4o", "messages": HELLO})
    assert status == 200
    completion = json.loads(body)
    assert completion["object"] == "chat.completion"
    assert completion["choices"][0]["message"] == {
        "role": "assistant",
        "content": "Hello from upstream: Hello",
    }


async def test_a_streamed_completion_is_openai_chunks_ending_in_done(
    serve, emulator_factory
) -> None:
    emulator = emulator_factory(token_delay=0.001)
    base = await serve(provider_for(emulator))
    status, body, content_type = await post(
        base, {"model": "gpt-4o-mini", "messages": HELLO, "stream": True}
    )
    assert (status, content_type) == (200, "text/event-stream")
    events = [event.data for event in decode_events([body])]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(data) for data in events[:-1]]
    assert {chunk["object"] for chunk in chunks} == {"chat.completion.chunk"}
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    text = "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in chunks)
    assert text == "Hello from upstream: Hello"


@pytest.mark.parametrize(
    ("body", "status", "text"),
    [
        ({"model": "gpt-4o", "messages": [{"role": "tool", "content": "x"}]}, 400, "messages[0]"),
        ({"model": "gpt-9", "messages": HELLO}, 404, "unknown model"),
        ([1, 2], 400, "JSON object"),
    ],
)
async def test_bad_requests_get_openai_errors(serve, emulator, body, status, text) -> None:
    base = await serve(provider_for(emulator))
    got_status, raw, _ = await post(base, body)
    assert got_status == status
    assert text in json.loads(raw)["error"]["message"]


async def test_site_failures_map_to_statuses(serve, emulator_factory, fake_sleep) -> None:
    emulator = emulator_factory(faults=[Fault(kind="status", status=429, retry_after="120")])
    base = await serve(provider_for(emulator, retry_policy=RetryPolicy(sleep=fake_sleep)))
    status, raw, _ = await post(base, {"model": "gpt-4o", "messages": HELLO, "stream": True})
    assert status == 429
    assert "rate limited" in json.loads(raw)["error"]["message"]
    emulator.faults.add(Fault(kind="error_words"))
    status, raw, _ = await post(base, {"model": "gpt-4o", "messages": HELLO})
    assert status == 502
    assert "Incorrect API key" in json.loads(raw)["error"]["message"]


async def test_an_interruption_mid_stream_is_an_error_event(serve, emulator_factory) -> None:
    emulator = emulator_factory(token_delay=0.001, faults=[Fault(kind="drop", after_tokens=2)])
    base = await serve(provider_for(emulator))
    status, body, _ = await post(base, {"model": "gpt-4o", "messages": HELLO, "stream": True})
    assert status == 200
    events = [event.data for event in decode_events([body])]
    assert events[-1] == "[DONE]"
    assert "interrupted" in json.loads(events[-2])["error"]["message"]
