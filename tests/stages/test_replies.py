"""What every dialect's decoder says about replies that never were a stream or were cut,
and the text-first rule their interpreters share (``stages.replies``)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stages.errors import (
    BotProtectionError,
    ChatGpttError,
    IncompleteReplyError,
    MalformedResponseError,
    UpstreamError,
)
from stages.replies import TextFirst, cut_json, eventless, json_unfinished

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


# --- JSON replies cut where the connection closed ------------------------------------------

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@settings(deadline=None, max_examples=300)
@given(st.dictionaries(st.text(), _json_values, max_size=5), st.booleans(), st.data())
def test_every_proper_prefix_of_a_json_object_is_unfinished(
    document: dict[str, Any], ascii_only: bool, data: st.DataObject
) -> None:
    text = json.dumps(document, ensure_ascii=ascii_only)
    assert not json_unfinished(text)
    cut = data.draw(st.integers(min_value=1, max_value=len(text) - 1))
    assert json_unfinished(text[:cut])


@given(st.text())
def test_text_whose_brackets_close_is_never_unfinished_unless_a_string_is_open(
    text: str,
) -> None:
    """Garbage is judged by its brackets and strings only: the function never raises."""
    assert json_unfinished(text) in (True, False)
    assert not json_unfinished("<b>Warning</b>: x " + json.dumps({"a": text}))


@given(st.dictionaries(st.text(), _json_values, min_size=1, max_size=5), st.data())
def test_a_cut_json_reply_is_incomplete_only_without_a_declared_length(
    document: dict[str, Any], data: st.DataObject
) -> None:
    raw = json.dumps(document).encode()
    cut = raw[: data.draw(st.integers(min_value=1, max_value=len(raw) - 1))]
    error = cut_json(cut, {}, "http://site.example/wp-admin/admin-ajax.php")
    assert isinstance(error, IncompleteReplyError)
    assert f"after {len(cut)} bytes" in str(error)
    assert cut_json(cut, {"Content-Length": str(len(cut))}, "http://x/") is None
    assert cut_json(cut, {"Transfer-Encoding": "chunked"}, "http://x/") is None
    assert cut_json(raw, {}, "http://x/") is None  # whole: not cut
    assert cut_json(b"  ", {}, "http://x/") is None  # empty: not cut either
