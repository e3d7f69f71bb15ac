"""Real clients against the API in front of the emulator: the official ``openai`` SDK (sync and
async, streamed and not, ``models.list()``, its typed exceptions) and litellm. What they read
is what the provider yields when called directly (the pieces may be cut differently: the
library joins the site's events that arrive in one read, which varies from run to run; that
answers flow while the site is still sending is shown in test_app_limits)."""

from __future__ import annotations

import asyncio
import inspect
import ipaddress
import os
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import openai
import pytest

from chatgptt import RetryPolicy
from chatgptt.emulator import Fault
from chatgptt.openai_api import ESTIMATE, ServeOptions
from chatgptt.testing import provider_for
from tests.conftest import agent_turns

HELLO = [{"role": "user", "content": "Hello"}]
CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is 2+2?"},
    {"role": "assistant", "content": "4."},
    {"role": "user", "content": "And 3+3? Answer in one word."},
]

# --- no traffic leaves the machine ------------------------------------------------------------

_outbound: list[str] | None = None


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _outbound is None or event != "socket.connect":
        return
    address = args[1]
    if isinstance(address, tuple) and address:
        try:
            if not ipaddress.ip_address(address[0]).is_loopback:
                _outbound.append(str(address[0]))
        except ValueError:
            _outbound.append(str(address[0]))


sys.addaudithook(_audit)


@pytest.fixture(autouse=True)
def loopback_only() -> Iterator[None]:
    """Fail a test whose client tried to reach anything but this machine (litellm fetches
    a price list unless told not to, for one)."""
    global _outbound
    _outbound = []
    try:
        yield
        assert _outbound == [], f"connections attempted off the machine: {_outbound}"
    finally:
        _outbound = None


async def read_into(stream: Any, received: list[str]) -> None:
    async for chunk in stream:
        received.append(chunk.choices[0].delta.content or "")


async def direct_chunks(provider: type[Any], messages: list[dict[str, str]]) -> list[str]:
    """What the provider yields, called directly."""
    async with provider.create_async_generator("gpt-4o", messages) as stream:
        return [chunk async for chunk in stream]


# --- the openai SDK ---------------------------------------------------------------------------


async def test_the_sync_sdk_streamed_and_whole(start_api, emulator_factory) -> None:
    emulator = emulator_factory(token_delay=0.001)
    provider = provider_for(emulator)
    expected = await direct_chunks(provider, CONVERSATION)
    api = await start_api(provider)

    def use_the_sdk() -> tuple[Any, list[Any], list[str]]:
        with openai.OpenAI(base_url=api.base, api_key="unused", max_retries=0) as client:
            whole = client.chat.completions.create(model="gpt-4o", messages=CONVERSATION)
            stream = client.chat.completions.create(
                model="gpt-4o",
                messages=CONVERSATION,
                stream=True,
                stream_options={"include_usage": True},
            )
            chunks = list(stream)
            models = [model.id for model in client.models.list()]
        return whole, chunks, models

    whole, chunks, models = await asyncio.to_thread(use_the_sdk)
    assert whole.choices[0].message.content == "".join(expected)
    assert whole.choices[0].finish_reason == "stop"
    assert whole.usage is not None
    assert whole.usage.prompt_tokens == ESTIMATE.prompt("gpt-4o", CONVERSATION)
    assert whole.usage.completion_tokens == ESTIMATE.text("gpt-4o", "".join(expected))
    deltas = [c.choices[0].delta.content for c in chunks if c.choices]
    assert "".join(d for d in deltas if d) == "".join(expected)
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == whole.usage.total_tokens
    assert models == ["gpt-4", "gpt-4o", "gpt-4o-mini"]


async def test_the_async_sdk_streamed_and_whole(start_api, emulator_factory) -> None:
    emulator = emulator_factory(token_delay=0.001)
    provider = provider_for(emulator)
    expected = await direct_chunks(provider, HELLO)
    api = await start_api(provider, ServeOptions(api_key="sk-test-123", grace=1))
    async with openai.AsyncOpenAI(base_url=api.base, api_key="sk-test-123") as client:
        whole = await client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
        stream = await client.chat.completions.create(
            model="gpt-4o-mini", messages=HELLO, stream=True
        )
        deltas = [chunk.choices[0].delta.content async for chunk in stream]
        listed = [model.id async for model in client.models.list()]
        retrieved = await client.models.retrieve("gpt-4")
    assert whole.choices[0].message.content == "".join(expected)
    assert "".join(d for d in deltas if d) == "".join(expected)
    assert listed == ["gpt-4", "gpt-4o", "gpt-4o-mini"]
    assert retrieved.id == "gpt-4"


async def test_the_sdk_s_typed_exceptions(start_api, emulator_factory, fake_sleep) -> None:
    emulator = emulator_factory(token_delay=0.001)
    provider = provider_for(emulator, retry_policy=RetryPolicy(sleep=fake_sleep))
    api = await start_api(provider, ServeOptions(api_key="sk-right", grace=1))
    right = openai.AsyncOpenAI(base_url=api.base, api_key="sk-right", max_retries=0)
    wrong = openai.AsyncOpenAI(base_url=api.base, api_key="sk-wrong", max_retries=0)
    async with right, wrong:
        with pytest.raises(openai.AuthenticationError) as auth:
            await wrong.chat.completions.create(model="gpt-4o", messages=HELLO)
        assert auth.value.code == "invalid_api_key"
        with pytest.raises(openai.NotFoundError) as missing:
            await right.chat.completions.create(model="gpt-9", messages=HELLO)
        assert missing.value.code == "model_not_found"
        with pytest.raises(openai.BadRequestError) as bad:
            await right.chat.completions.create(
                model="gpt-4o", messages=[{"role": "assistant", "content": "x"}]
            )
        assert bad.value.param == "messages"
        with pytest.raises(openai.BadRequestError, match="must be 1"):
            await right.chat.completions.create(model="gpt-4o", messages=HELLO, n=2)

        emulator.faults.add(Fault(kind="status", status=429, retry_after="90"))
        with pytest.raises(openai.RateLimitError) as limited:
            await right.chat.completions.create(model="gpt-4o", messages=HELLO)
        assert limited.value.response.headers["retry-after"] == "90"

        emulator.faults.add(Fault(kind="error_words"))
        with pytest.raises(openai.InternalServerError) as failed:
            await right.chat.completions.create(model="gpt-4o", messages=HELLO, stream=True)
        assert failed.value.status_code == 502

        emulator.faults.add(Fault(kind="drop", after_tokens=2))
        stream = await right.chat.completions.create(model="gpt-4o", messages=HELLO, stream=True)
        received: list[str] = []
        with pytest.raises(openai.APIError, match="interrupted"):
            await read_into(stream, received)
        assert "".join(received)  # what came before the break was delivered


async def test_the_sdk_past_max_concurrency(start_api, emulator_factory) -> None:
    """A full server is the SDK's RateLimitError, which it retries after Retry-After."""
    emulator = emulator_factory(
        faults=[Fault(kind="stall", where="inside", after_tokens=1, seconds=30.0)]
    )
    api = await start_api(
        provider_for(emulator, retry_policy=RetryPolicy(attempts=1)),
        ServeOptions(max_concurrency=1, grace=0.1),
    )
    async with openai.AsyncOpenAI(base_url=api.base, api_key="x", max_retries=0) as client:
        held = await client.chat.completions.create(model="gpt-4o", messages=HELLO, stream=True)
        first = await anext(aiter(held))
        assert first.choices[0].delta.role == "assistant"
        with pytest.raises(openai.RateLimitError) as full:
            await client.chat.completions.create(model="gpt-4o", messages=HELLO)
        assert full.value.response.headers["retry-after"] == "1"
        await held.close()


# --- litellm ----------------------------------------------------------------------------------


@pytest.fixture
async def litellm(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    # Its bundled price list, not the one it would download (read when it is imported).
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    monkeypatch.setenv("LITELLM_TELEMETRY", "False")
    cache = os.environ.get("TIKTOKEN_CACHE_DIR")
    import litellm as module

    # litellm points tiktoken at the encodings it ships when it loads them; leave the
    # process as it was for the other tests.
    if cache is None:
        monkeypatch.delenv("TIKTOKEN_CACHE_DIR", raising=False)
    module.suppress_debug_info = True
    yield module
    # litellm keeps the SDK clients it made, with their connections: close them.
    clients = module.in_memory_llm_clients_cache
    for client in list(getattr(clients, "cache_dict", {}).values()):
        close = getattr(client, "close", None)
        if callable(close):
            closing = close()
            if inspect.isawaitable(closing):
                await closing
    clients.flush_cache()


async def test_litellm_whole_and_streamed(start_api, emulator_factory, litellm) -> None:
    emulator = emulator_factory(token_delay=0.001)
    provider = provider_for(emulator)
    expected = "".join(await direct_chunks(provider, CONVERSATION))
    api = await start_api(provider, ServeOptions(api_key="sk-lite", grace=1))
    options = {"model": "openai/gpt-4o", "api_base": api.base, "api_key": "sk-lite"}
    whole = await litellm.acompletion(messages=CONVERSATION, **options)
    assert whole.choices[0].message.content == expected
    assert whole.usage.prompt_tokens == ESTIMATE.prompt("gpt-4o", CONVERSATION)
    stream = await litellm.acompletion(messages=CONVERSATION, stream=True, **options)
    pieces = [chunk.choices[0].delta.content or "" async for chunk in stream]
    assert "".join(pieces) == expected

    def sync() -> str:
        reply = litellm.completion(messages=HELLO, **options)
        return str(reply.choices[0].message.content)

    assert await asyncio.to_thread(sync) == "Hello from upstream: Hello"
    with pytest.raises(litellm.AuthenticationError):
        await litellm.acompletion(messages=HELLO, **{**options, "api_key": "nope"})


async def test_litellm_with_tools_in_the_conversation(start_api, emulator, litellm) -> None:
    """An agent's turn as litellm sends it: tools declared, a tool call and its result."""
    api = await start_api(provider_for(emulator))
    messages = agent_turns(arguments='{"city": "Paris"}', result="sunny")
    tools = [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "description": "The weather in a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    reply = await litellm.acompletion(
        model="openai/gpt-4o",
        api_base=api.base,
        api_key="x",
        messages=messages,
        tools=tools,
        temperature=0.1,
    )
    assert reply.choices[0].message.content == (
        "Hello from upstream: [tool result call_1 (weather)]: sunny"
    )
