"""An agent's turns laid out as text (``stages.turns``); the whole table is exercised
through ``chatgptt serve``'s request mapping in ``tests/chatgptt/openai_api``."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stages.turns import PLAIN_ROLES, TurnReader, is_agent_turn


class _RefusedError(Exception):
    pass


def _reader() -> TurnReader:
    return TurnReader(_RefusedError)


@pytest.mark.parametrize(
    ("message", "agent"),
    [
        ({"role": "tool", "tool_call_id": "c", "content": "1"}, True),
        ({"role": "function", "name": "f", "content": "1"}, True),
        ({"role": "assistant", "content": None}, True),
        ({"role": "assistant", "content": "", "tool_calls": []}, True),
        ({"role": "assistant", "content": "x", "function_call": {"name": "f"}}, True),
        ({"role": "assistant", "content": "Hello"}, False),
        ({"role": "user", "content": None}, False),  # refused later, not laid out
        ({"role": "system", "content": "Be brief."}, False),
        ("tool", False),
    ],
)
def test_which_turns_are_an_agents(message: object, agent: bool) -> None:
    assert is_agent_turn(message) is agent


def test_a_result_is_named_after_the_call_an_earlier_turn_made() -> None:
    reader = _reader()
    call = {
        "role": "assistant",
        "content": "Looking.",
        "tool_calls": [
            {"id": "a", "type": "function", "function": {"name": "lookup", "arguments": "{}"}},
            {"id": "b", "type": "custom", "custom": {"name": "grep", "input": "x"}},
        ],
    }
    assert reader.read(call, "messages[0]") == {
        "role": "assistant",
        "content": "Looking.\n[tool call a: lookup({})]\n[tool call b: grep(x)]",
    }
    result = reader.read({"role": "tool", "tool_call_id": "b", "content": "hit"}, "messages[1]")
    assert result == {"role": "user", "content": "[tool result b (grep)]: hit"}
    unknown = reader.read({"role": "tool", "tool_call_id": "z", "content": ""}, "messages[2]")
    assert unknown == {"role": "user", "content": "[tool result z]: "}


def test_what_cannot_be_read_is_the_callers_error_naming_where() -> None:
    with pytest.raises(
        _RefusedError, match=r"^messages\[3\]\.tool_calls must be an array, got string"
    ):
        _reader().read({"role": "assistant", "tool_calls": "x"}, "messages[3]")
    with pytest.raises(_RefusedError, match=r"^messages\[0\] has no role"):
        _reader().read_all([{"content": "x"}])


_turns = st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "developer", "user", "assistant", "tool", "function"])},
    optional={
        "content": st.one_of(st.none(), st.text(max_size=20)),
        "name": st.text(max_size=5),
        "tool_call_id": st.text(max_size=5),
    },
)


@given(st.lists(_turns, max_size=8))
def test_one_turn_per_message_between_the_sites_speakers(messages: list[dict[str, Any]]) -> None:
    turns = _reader().read_all(messages)
    assert len(turns) == len(messages)
    for message, turn in zip(messages, turns, strict=True):
        assert set(turn) == {"role", "content"}
        assert isinstance(turn["content"], str)
        assert turn["role"] in PLAIN_ROLES
        if message["role"] in ("tool", "function"):
            assert turn["role"] == "user"
            assert turn["content"].startswith(f"[{message['role']} result")
