"""The reply writers produce the captured bytes, and chunking never loses text."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatgptt.emulator import UPSTREAM_ERROR_MESSAGE
from chatgptt.emulator.replies import (
    COMPLETION_ID,
    ERROR_FINISH_FRAME,
    Frame,
    FrameStyle,
    answer_frames,
    control_frame,
    error_object_frame,
    error_word_frames,
    split_answer,
)
from chatgptt.testing import provider_for
from stages.classic.decode import StreamInterpreter
from stages.sse import SSEDecoder

from .captures import CLASSIC


def contents(frames: list[Frame]) -> list[str]:
    """The ``delta.content`` of each chunk frame (finish and [DONE] frames skipped)."""
    found = []
    for frame in frames:
        data = frame.data.decode().removeprefix("data: ")
        if data.startswith("{"):
            delta = json.loads(data)["choices"][0]["delta"]
            if delta.get("content"):
                found.append(delta["content"])
    return found


@settings(deadline=None)
@given(st.text(), st.integers(min_value=1, max_value=50))
def test_split_answer_joins_back(answer: str, size: int) -> None:
    pieces = split_answer(answer, size)
    assert "".join(pieces) == answer
    assert all(len(piece) == size for piece in pieces[:-1])
    assert all(0 < len(piece) <= size for piece in pieces)


@settings(deadline=None)
@given(st.text(), st.integers(min_value=1, max_value=20))
def test_answer_frames_carry_the_answer(answer: str, size: int) -> None:
    frames = answer_frames(answer, token_chars=size, model_name="m")
    assert "".join(contents(frames)) == answer
    assert sum(frame.token for frame in frames) == len(split_answer(answer, size))
    assert frames[-1].data == b"data: [DONE]\n\n"
    assert all(frame.data.endswith(b"\n\n") for frame in frames)


def test_answer_frames_are_the_capture() -> None:
    """Key order, separators and escapes as the capture rig wrote them."""
    for name, answer in (
        ("stream_ok_urlencoded", "Hello from upstream: Hello"),
        (
            "stream_special_chars",
            "Hello from upstream: Quote \" apos ' back\\slash <b>tag</b> & amp; "
            "café 日本 😀 %41 +plus",
        ),
    ):
        frames = answer_frames(answer, token_chars=8, model_name="gpt-4o-mini")
        assert b"".join(f.data for f in frames) == (CLASSIC / f"{name}.body").read_bytes()


def test_error_words_are_the_capture() -> None:
    block = b"".join(f.data for f in error_word_frames(UPSTREAM_ERROR_MESSAGE))
    block += ERROR_FINISH_FRAME
    assert block * 2 == (CLASSIC / "stream_upstream_error.body").read_bytes()


@settings(deadline=None)
@given(st.text(alphabet=st.characters(exclude_categories=["Cs"]), min_size=1))
def test_error_words_join_back(message: str) -> None:
    frames = error_word_frames(message)
    words = [
        re.fullmatch(
            r'event: message\ndata: \{"choices":\[\{"delta":\{"content":"(.*)"\}\}\]\}\n\n',
            frame.data.decode(),
            re.DOTALL,
        )
        for frame in frames
    ]
    assert "".join(match.group(1) for match in words if match is not None) == message
    assert all(frame.token for frame in frames)


def test_error_words_are_not_escaped() -> None:
    (frame, *_) = error_word_frames('say "hi"')
    assert b'"content":"say"' in frame.data
    assert b'"content":" \\"hi\\""' not in error_word_frames('say "hi"')[1].data


def test_control_and_error_frames() -> None:
    assert (
        control_frame("tokenLimitReached", "You have reached your token limit.").data
        == b'data: {"msg":"You have reached your token limit.","tokenLimitReached":true}\n\n'
    )
    assert error_object_frame("boom").data == b'data: {"error":{"message":"boom"}}\n\n'


@settings(deadline=None, max_examples=200)
@given(
    st.text(alphabet=st.characters(exclude_categories=["Cs"])),
    st.integers(min_value=1, max_value=20),
    st.randoms(use_true_random=False),
)
def test_varied_frames_decode_to_the_answer_in_the_client(answer: str, size: int, rng: Any) -> None:
    """Whatever id, timestamp, spacing or fingerprint the relayed frames carry, the client's
    decoder reads the same answer out of them, complete."""
    style = FrameStyle.varied(rng)
    body = b"".join(
        f.data for f in answer_frames(answer, token_chars=size, model_name="m", style=style)
    )
    decoder = SSEDecoder()
    interpreter = StreamInterpreter("http://127.0.0.1/")
    text = interpreter.feed(decoder.feed(body))
    interpreter.end()
    assert text == answer
    assert interpreter.done


def test_the_capture_style_is_the_default() -> None:
    assert answer_frames("Hi", token_chars=8, model_name="m") == answer_frames(
        "Hi", token_chars=8, model_name="m", style=FrameStyle.CAPTURE
    )
    varied = FrameStyle.varied()
    assert varied.id.startswith("chatcmpl-")
    assert varied.id != COMPLETION_ID


# --- a client that leaves mid-answer --------------------------------------------------------


@pytest.mark.parametrize("dialect", ["classic", "aipkit"])
def test_a_client_leaving_mid_answer_is_no_server_error(
    emulator_factory, caplog: pytest.LogCaptureFixture, dialect: str
) -> None:
    """Written as fast as the socket takes it (no delay between pieces), a long answer's
    next write fails once the client hangs up: the emulator stops there, quietly, as the
    real site's PHP does, rather than logging an error of its own."""
    emulator = emulator_factory(
        dialect=dialect, token_delay=0.0, answer_chars=400_000, token_chars=5
    )
    provider = provider_for(emulator)

    async def leave_after_the_first_piece() -> None:
        stream = provider.create_async_generator("gpt-4o", [{"role": "user", "content": "Hi"}])
        async with stream:
            await anext(stream)

    with caplog.at_level(logging.INFO, logger="aiohttp"):
        asyncio.run(leave_after_the_first_piece())
        emulator.stop()  # waits for the handler: what it logs, it has logged
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
