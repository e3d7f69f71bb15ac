"""The stand-in model: deterministic answers, the upstream-error trigger, answer sizing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatgptt.emulator import UPSTREAM_ERROR_MESSAGE, UpstreamError, echo_model, recap_model
from chatgptt.emulator.model import ask_model, fit_answer

PROMPT = {"role": "user", "content": "site prompt"}


def test_echo_answers_the_last_user_turn() -> None:
    messages = [PROMPT, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "x"}]
    assert echo_model(messages) == "Hello from upstream: Hi"
    assert echo_model([PROMPT, {"role": "assistant", "content": "Human:"}]) == (
        "Hello from upstream: site prompt"
    )


def test_recap_depends_on_history() -> None:
    alone = [PROMPT, {"role": "user", "content": "Next"}]
    assert recap_model(alone) == (
        "Hello from upstream: Next (I saw 0 earlier turns; the first user turn was none.)"
    )
    history = [
        PROMPT,
        {"role": "assistant", "content": "plain"},
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "Next"},
    ]
    assert recap_model(history).endswith('(I saw 3 earlier turns; the first user turn was "q1".)')


def test_ask_model_raises_for_the_trigger() -> None:
    with pytest.raises(UpstreamError) as raised:
        ask_model(echo_model, [PROMPT, {"role": "user", "content": "please UPSTREAM_ERROR now"}])
    assert raised.value.message == UPSTREAM_ERROR_MESSAGE
    # Only the current message triggers it.
    history = [
        PROMPT,
        {"role": "user", "content": "UPSTREAM_ERROR"},
        {"role": "user", "content": "ok"},
    ]
    assert ask_model(echo_model, history) == "Hello from upstream: ok"


@settings(deadline=None)
@given(st.text(), st.integers(min_value=0, max_value=500))
def test_fit_answer_has_the_asked_size(answer: str, chars: int) -> None:
    fitted = fit_answer(answer, chars)
    assert len(fitted) == chars
    assert fitted.startswith(answer[:chars])
    assert fit_answer(answer, chars) == fitted  # deterministic


def test_fit_answer_none_keeps_answer() -> None:
    assert fit_answer("abc", None) == "abc"
