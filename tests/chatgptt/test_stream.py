"""AnswerStream: lazy start, async context manager, interruption carrying the text."""

from __future__ import annotations

import pytest

from chatgptt import ChatGptt, ProviderConnectionError, RetryPolicy, StreamInterruptedError
from chatgptt.emulator import Fault
from chatgptt.stream import AnswerStream
from chatgptt.testing import provider_for

HELLO = [{"role": "user", "content": "Hello"}]
ANSWER = "Hello from upstream: Hello"


async def test_nothing_is_sent_before_the_first_chunk_is_asked_for(emulator) -> None:
    stream = provider_for(emulator).create_async_generator("gpt-4o", HELLO)
    assert isinstance(stream, AnswerStream)
    assert emulator.stats.page_fetches == 0
    await stream.aclose()
    assert [chunk async for chunk in stream] == []
    assert emulator.stats.ajax_requests == 0


async def test_async_with_releases_the_stream(emulator_factory) -> None:
    stall = Fault(kind="stall", where="inside", after_tokens=1, seconds=30.0)
    emulator = emulator_factory(faults=[stall])
    async with provider_for(emulator).create_async_generator("gpt-4o", HELLO) as stream:
        first = await anext(stream)
    assert ANSWER.startswith(first)
    assert [chunk async for chunk in stream] == [], "a closed stream yields nothing more"


async def test_interruption_carries_exactly_what_was_delivered(emulator_factory) -> None:
    emulator = emulator_factory(token_delay=0.001, faults=[Fault(kind="drop", after_tokens=2)])
    got: list[str] = []

    async def consume() -> None:
        async for chunk in provider_for(emulator).create_async_generator("gpt-4o", HELLO):
            got.append(chunk)

    with pytest.raises(StreamInterruptedError) as info:
        await consume()
    assert info.value.partial_text == "".join(got)
    assert ANSWER.startswith(info.value.partial_text)
    assert info.value.partial_text


async def test_a_failure_before_any_text_is_raised_as_itself() -> None:
    provider = ChatGptt.derive("Nowhere", url="http://127.0.0.1:9")
    stream = provider.create_async_generator("gpt-4o", HELLO, retry=RetryPolicy(attempts=1))
    with pytest.raises(ProviderConnectionError):
        await anext(stream)
    with pytest.raises(StopAsyncIteration):
        await anext(stream)
