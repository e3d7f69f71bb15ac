"""Message validation and the flattened prompt, shared by every dialect."""

from __future__ import annotations

import ast
import json
import re
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from stages.core import Message
from stages.errors import ConfigurationError, InvalidMessagesError
from stages.messages import flatten_prompt, normalize_messages
from tests.conftest import VECTORS, agent_turns

CLASSIC = VECTORS / "classic"


def user(text: str) -> Message:
    return Message("user", text)


def assistant(text: str) -> Message:
    return Message("assistant", text)


def system(text: str) -> Message:
    return Message("system", text)


# --- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("messages", "index", "fragment"),
    [
        ("Hello", None, "must be a list"),
        ({"role": "user", "content": "Hi"}, None, "must be a list"),
        (None, None, "got NoneType"),
        ([], None, "at least one message"),
        ([{"role": "user", "content": "a"}, "Hi"], 1, "must be a mapping"),
        ([{"content": "Hi"}], 0, "missing 'role'"),
        ([{"role": "user"}], 0, "missing 'content'"),
        (
            [
                {"role": "user", "content": "a"},
                {"role": "user", "content": "b"},
                {"role": "robot", "content": "c"},
            ],
            2,
            "role must be one of system, developer, user, assistant, tool, function; got 'robot'",
        ),
        (
            [
                {"role": "user", "content": "a"},
                {"role": "assistant", "content": None, "tool_calls": [{"function": {}}]},
                {"role": "user", "content": "b"},
            ],
            1,
            "tool_calls[0].function.name must be a string, got null",
        ),
        ([{"role": "tool", "content": 7}], 0, "content must be a string, an array of parts"),
        ([{"role": "User", "content": "Hi"}], 0, "got 'User'"),
        ([{"role": None, "content": "Hi"}], 0, "got None"),
        ([{"role": "user", "content": 42}], 0, "content must be a string or a list"),
        ([{"role": "user", "content": None}], 0, "got NoneType"),
        ([{"role": "user", "content": ["Hi"]}], 0, "content[0] must be a mapping"),
        (
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
            0,
            "content[0] has type 'image_url'; only 'text' parts are supported",
        ),
        (
            [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text"}]}],
            0,
            "content[1]['text'] must be a string",
        ),
        (
            [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}],
            1,
            "the last message must be from the user; got role 'assistant'",
        ),
        ([{"role": "system", "content": "Be brief."}], 0, "must be from the user"),
        ([{"role": "user", "content": ""}], 0, "is empty"),
        ([{"role": "user", "content": " \n\t "}], 0, "is empty"),
        ([{"role": "user", "content": [{"type": "text", "text": "  "}]}], 0, "is empty"),
    ],
)
def test_bad_messages_are_refused_with_where_and_what(
    messages: object, index: int | None, fragment: str
) -> None:
    """Every kind of malformed input names the problem and the message it is in."""
    with pytest.raises(InvalidMessagesError) as caught:
        normalize_messages(messages)
    error = caught.value
    assert error.index == index
    assert fragment in str(error)
    prefix = f"messages[{index}]: " if index is not None else "messages: "
    assert str(error).startswith(prefix)
    assert isinstance(error, ConfigurationError)
    assert isinstance(error, ValueError)


def test_good_messages_are_normalised() -> None:
    """Developer is system, text parts are joined, tuples and records are accepted."""
    messages = (
        {"role": "developer", "content": "Be brief."},
        {
            "role": "user",
            "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}],
        },
        Message("assistant", "Hello!"),
        {"role": "user", "content": "Next", "name": "ignored"},
    )
    assert normalize_messages(messages) == (
        system("Be brief."),
        user("Hi there"),
        assistant("Hello!"),
        user("Next"),
    )
    assert normalize_messages([{"role": "user", "content": "Hi"}]) == (user("Hi"),)
    records = [Message("developer", "Be brief."), Message("user", "Hi")]  # type: ignore[arg-type]
    assert normalize_messages(records) == (system("Be brief."), user("Hi"))


def test_an_agents_turns_are_laid_out_as_text() -> None:
    """A tool call and its result, as agent frameworks send them through gpt4free: the
    call as the assistant's text, the result as the user's, named after the call."""
    messages = agent_turns(arguments='{"city":"Paris"}')
    assert normalize_messages(messages) == (
        user("Weather in Paris?"),
        assistant('[tool call call_1: weather({"city":"Paris"})]'),
        user("[tool result call_1 (weather)]: 18 C"),
    )


def test_a_message_record_with_an_unknown_role_is_refused() -> None:
    """A hand-built record is validated too: its roles are the site's three."""
    with pytest.raises(InvalidMessagesError, match=r"messages\[0\]: a Message record's role"):
        normalize_messages([Message("tool", "x")])  # type: ignore[arg-type]


def test_lone_surrogates_become_replacement_characters() -> None:
    """Text that UTF-8 cannot encode is repaired: lone halves become U+FFFD, pairs join."""
    (message,) = normalize_messages([{"role": "user", "content": "a\ud800b \ud83d\ude00 \udfff"}])
    assert message.content == "a\ufffdb \U0001f600 \ufffd"
    message.content.encode("utf-8")


def test_flatten_prompt_reproduces_the_original_provider() -> None:
    """The original provider's prompts, as the captured g4f run sent them."""
    yields = json.loads((CLASSIC / "g4f-yields.json").read_text(encoding="utf-8"))
    echoed = ast.literal_eval(yields["stream_setting_0_multi"]["yielded"][0]["repr"])
    single = ast.literal_eval(yields["stream_setting_0_single"]["yielded"][0]["repr"])
    prefix = "Hello from upstream: "
    messages = (system("Be brief."), user("Hi"), assistant("Hello!"), user('Say "x" & <y>'))
    assert prefix + flatten_prompt(messages) == echoed
    assert prefix + flatten_prompt((user("Hello"),)) == single


texts = st.text(max_size=12) | st.sampled_from(["\ud800", "a\udc00b", "\ud83d\ude00", "é"])
roles = st.sampled_from(["system", "user", "assistant"])


@given(st.lists(st.builds(Message, roles, texts), min_size=1, max_size=6), texts)
def test_normalised_messages_keep_roles_and_text(previous: list[Message], question: str) -> None:
    """Valid input comes back with the same roles and text, free of lone surrogates."""
    assume(question.strip())
    raw: list[dict[str, Any]] = [{"role": m.role, "content": m.content} for m in previous]
    raw.append({"role": "user", "content": question})
    normalized = normalize_messages(raw)
    assert [m.role for m in normalized] == [m["role"] for m in raw]
    for message, original in zip(normalized, raw, strict=True):
        message.content.encode("utf-8")
        if not re.search("[\ud800-\udfff]", original["content"]):
            assert message.content == original["content"]
