"""Pipeline as a value: composing, naming, running; the records; TextStream."""

from __future__ import annotations

from collections.abc import AsyncIterator

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stages.core import Exchange, FunctionStage, Pipeline, TextStream, require, stage
from stages.errors import ConfigurationError, StageNotFoundError


def tagging(name: str) -> FunctionStage:
    """A stage that appends its name to ``notes['trail']``."""

    async def run(exchange: Exchange) -> Exchange:
        trail = (*exchange.notes.get("trail", ()), name)
        return attrs.evolve(exchange, notes={**exchange.notes, "trail": trail})

    return FunctionStage(name, run)


async def test_runs_stages_in_order(exchange_for) -> None:
    pipeline = Pipeline([tagging("a"), tagging("b"), tagging("c")])
    result = await pipeline(exchange_for())
    assert result.notes["trail"] == ("a", "b", "c")


async def test_insert_replace_remove_give_new_pipelines(exchange_for) -> None:
    base = Pipeline([tagging("a"), tagging("c")])
    grown = base.insert_before("c", tagging("b")).insert_after("c", tagging("d"))
    assert grown.names == ("a", "b", "c", "d")
    assert base.names == ("a", "c"), "the original pipeline is unchanged"
    swapped = grown.replace("b", FunctionStage("b", tagging("B").function))
    result = await swapped(exchange_for())
    assert result.notes["trail"] == ("a", "B", "c", "d")
    assert grown.remove("a").names == ("b", "c", "d")
    assert grown.append(tagging("e")).names[-1] == "e"


def test_unknown_stage_name_lists_the_stages() -> None:
    pipeline = Pipeline([tagging("a"), tagging("b")])
    with pytest.raises(StageNotFoundError, match=r"no stage named 'z'; stages: a, b"):
        pipeline.remove("z")
    with pytest.raises(KeyError):
        pipeline["z"]


def test_duplicate_names_and_non_stages_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="two stages are named 'a'"):
        Pipeline([tagging("a"), tagging("a")])
    with pytest.raises(ConfigurationError, match="not a stage"):
        Pipeline([object()])  # type: ignore[list-item]


async def test_pipelines_nest(exchange_for) -> None:
    inner = Pipeline([tagging("b"), tagging("c")], name="inner")
    outer = Pipeline([tagging("a"), inner, tagging("d")])
    assert outer.names == ("a", "inner", "d")
    result = await outer(exchange_for())
    assert result.notes["trail"] == ("a", "b", "c", "d")


async def test_stage_decorator(exchange_for) -> None:
    @stage("mark")
    async def mark(exchange: Exchange) -> Exchange:
        return attrs.evolve(exchange, notes={"marked": True})

    assert mark.name == "mark"
    assert (await mark(exchange_for())).notes == {"marked": True}


def test_require_names_the_stage_and_what_is_missing() -> None:
    assert require(1, "x", "tokens") == 1
    with pytest.raises(ConfigurationError, match=r"stage 'transport' needs the exchange's tokens"):
        require(None, "transport", "tokens")


@given(st.lists(st.sampled_from("abcdefgh"), unique=True, min_size=1), st.data())
def test_insert_then_remove_is_identity(names: list[str], data: st.DataObject) -> None:
    pipeline = Pipeline([tagging(n) for n in names])
    anchor = data.draw(st.sampled_from(names))
    for grown in (
        pipeline.insert_before(anchor, tagging("new")),
        pipeline.insert_after(anchor, tagging("new")),
    ):
        assert len(grown) == len(pipeline) + 1
        assert grown.remove("new").names == pipeline.names


async def _chunks(*items: str) -> AsyncIterator[str]:
    for item in items:
        yield item


async def test_text_stream_primes_to_first_non_empty_chunk() -> None:
    pulled: list[str] = []

    async def source() -> AsyncIterator[str]:
        for item in ("", "", "Hel", "", "lo"):
            pulled.append(item)
            yield item

    stream = TextStream(source())
    await stream.prime()
    assert pulled == ["", "", "Hel"], "priming reads exactly up to the first text"
    assert [chunk async for chunk in stream] == ["Hel", "lo"]


async def test_text_stream_close_runs_callback_once() -> None:
    closed: list[int] = []

    async def on_close() -> None:
        closed.append(1)

    stream = TextStream(_chunks("a", "b"), on_close=on_close)
    await stream.prime()
    await stream.aclose()
    await stream.aclose()
    assert closed == [1]


class _Body:
    def __init__(self) -> None:
        self.closed = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return _chunks_bytes()

    async def read(self, limit: int) -> bytes:
        return b""

    async def aclose(self) -> None:
        self.closed = True


async def _chunks_bytes() -> AsyncIterator[bytes]:
    yield b""


async def test_a_failing_stage_releases_the_reply_an_earlier_one_opened(exchange_for) -> None:
    from multidict import CIMultiDict, CIMultiDictProxy

    from stages.core import Reply

    body = _Body()

    @stage("transport")
    async def transport(exchange: Exchange) -> Exchange:
        reply = Reply(url="u", status=200, headers=CIMultiDictProxy(CIMultiDict()), body=body)
        return attrs.evolve(exchange, reply=reply)

    @stage("broken")
    async def broken(exchange: Exchange) -> Exchange:
        raise RuntimeError("bug in a custom stage")

    with pytest.raises(RuntimeError, match="bug in a custom stage"):
        await Pipeline([transport, broken])(exchange_for())
    assert body.closed
