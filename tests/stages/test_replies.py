"""What every dialect's decoder says about replies that never were a stream, and the
text-first rule their interpreters share (``stages.replies``)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stages.errors import (
    BotProtectionError,
    ChatGpttError,
    IncompleteReplyError,
    MalformedResponseError,
    UpstreamError,
)
from stages.replies import TextFirst, eventless

URL = "https://chat.example/wp-admin/admin-ajax.php"


class Words(TextFirst):
    """An interpreter of words where ``!`` is an error event."""

    __slots__ = ()

    def feed(self, words: list[str]) -> str:
        parts: list[str] = []
        try:
            for word in words:
                if word == "!":
                    raise UpstreamError("the model failed")
                parts.append(word)
        except ChatGpttError as exc:
            return self._hold(exc, parts)
        return "".join(parts)


@given(st.lists(st.sampled_from(["a", "bc", "!"]), max_size=8))
def test_text_before_an_error_comes_first_then_the_error(words: list[str]) -> None:
    interpreter = Words()
    before = words[: words.index("!")] if "!" in words else words
    if "!" in words and not before:
        with pytest.raises(UpstreamError):
            interpreter.feed(words)
        interpreter.check()  # nothing held: the error was raised at once
        return
    assert interpreter.feed(words) == "".join(before)
    if "!" in words:
        with pytest.raises(UpstreamError):
            interpreter.check()
    interpreter.check()  # raised once, never twice


def test_an_empty_stream_says_it_was_empty() -> None:
    error = eventless(b"", URL, cut=False)
    assert isinstance(error, MalformedResponseError)
    assert "empty" in str(error)


def test_a_stream_cut_in_its_first_frame_is_incomplete() -> None:
    error = eventless(b'data: {"id":"chatcmpl', URL, cut=True)
    assert isinstance(error, IncompleteReplyError)
    assert "first frame" in str(error)


def test_a_page_in_place_of_a_stream_is_quoted() -> None:
    error = eventless(b"<b>Fatal error</b>: Uncaught Error", URL, cut=False)
    assert type(error) is MalformedResponseError
    assert "Fatal error" in str(error)


def test_a_challenge_page_in_place_of_a_stream_is_bot_protection() -> None:
    page = b"<html><head><title>Just a moment...</title></head></html>"
    assert isinstance(eventless(page, URL, cut=False), BotProtectionError)
