"""The request body: checked with errors that name the parameter, agent conversations laid out
as text the provider accepts, one message for one."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatgptt import ChatGptt, UnknownModelError
from chatgptt.openai_api import OpenAIError, parse_chat_request, to_provider_messages
from stages.messages import normalize_messages

HELLO = [{"role": "user", "content": "Hello"}]


def parse(body: Any) -> Any:
    return parse_chat_request(body, ChatGptt.get_model)


def error_of(body: Any) -> OpenAIError:
    with pytest.raises(OpenAIError) as caught:
        parse(body)
    assert caught.value.status == 400
    return caught.value


# --- the body ---------------------------------------------------------------------------------


def test_a_plain_request() -> None:
    chat = parse({"model": "gpt-4o-2024-08-06", "messages": HELLO})
    assert chat.model == "gpt-4o"  # the provider's alias resolution
    assert chat.messages == HELLO
    assert (chat.stream, chat.include_usage) == (False, False)


def test_stream_and_usage() -> None:
    chat = parse(
        {
            "model": "gpt-4o",
            "messages": HELLO,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )
    assert (chat.stream, chat.include_usage) == (True, True)
    # Without a stream there is no final chunk to carry it: ignored.
    plain = parse({"model": "gpt-4o", "messages": HELLO, "stream_options": {"include_usage": True}})
    assert plain.include_usage is False


def test_an_unknown_model_is_the_providers_error() -> None:
    with pytest.raises(UnknownModelError):
        parse({"model": "gpt-9", "messages": HELLO})


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        ([1, 2], None, "JSON object, got array"),
        ("text", None, "JSON object, got string"),
        ({"messages": HELLO}, "model", "provide a model"),
        ({"model": 4, "messages": HELLO}, "model", "non-empty string, got number"),
        ({"model": "gpt-4o"}, "messages", "provide a messages"),
        ({"model": "gpt-4o", "messages": "Hi"}, "messages", "array, got string"),
        ({"model": "gpt-4o", "messages": []}, "messages", "at least one"),
        ({"model": "gpt-4o", "messages": HELLO, "stream": "yes"}, "stream", "boolean"),
        (
            {"model": "gpt-4o", "messages": HELLO, "stream_options": []},
            "stream_options",
            "object",
        ),
        (
            {"model": "gpt-4o", "messages": HELLO, "stream_options": {"include_usage": 1}},
            "stream_options.include_usage",
            "boolean",
        ),
        ({"model": "gpt-4o", "messages": HELLO, "n": 2}, "n", "must be 1"),
        ({"model": "gpt-4o", "messages": HELLO, "n": 0}, "n", "positive integer"),
        ({"model": "gpt-4o", "messages": HELLO, "temperature": "hot"}, "temperature", "number"),
        ({"model": "gpt-4o", "messages": HELLO, "max_tokens": 1.5}, "max_tokens", "integer"),
        ({"model": "gpt-4o", "messages": HELLO, "stop": [1]}, "stop", "array of strings"),
        ({"model": "gpt-4o", "messages": HELLO, "tools": {}}, "tools", "array"),
        ({"model": "gpt-4o", "messages": HELLO, "seed": True}, "seed", "integer"),
    ],
)
def test_wrong_types_name_the_parameter(body: Any, param: str | None, words: str) -> None:
    error = error_of(body)
    assert error.param == param
    assert words in error.message


def test_what_the_site_cannot_honour_is_accepted_and_ignored() -> None:
    body = {
        "model": "gpt-4o",
        "messages": HELLO,
        "n": 1,
        "temperature": 0.2,
        "top_p": 1,
        "max_tokens": 50,
        "max_completion_tokens": 50,
        "stop": ["\n"],
        "seed": 7,
        "presence_penalty": 0,
        "frequency_penalty": 0.5,
        "user": "someone",
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "response_format": {"type": "json_object"},
        "logit_bias": {"50256": -100},
        "something_new": {"any": "thing"},
        "temperature_unit": None,
    }
    assert parse(body).messages == HELLO
    assert parse({**body, "temperature": None, "stop": "END"}).messages == HELLO


# --- the messages -----------------------------------------------------------------------------

AGENT = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "name": "alice", "content": "What is the weather in Paris?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            },
            {
                "id": "call_2",
                "type": "function",
                "function": {"name": "get_time", "arguments": "{}"},
            },
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "18 °C, sunny"},
    {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "14:00"}]},
]


def test_an_agent_conversation_is_laid_out_as_text() -> None:
    assert to_provider_messages(AGENT) == [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "alice: What is the weather in Paris?"},
        {
            "role": "assistant",
            "content": '[tool call call_1: get_weather({"city": "Paris"})]\n'
            "[tool call call_2: get_time({})]",
        },
        {"role": "user", "content": "[tool result call_1 (get_weather)]: 18 °C, sunny"},
        {"role": "user", "content": "[tool result call_2 (get_time)]: 14:00"},
    ]
    normalize_messages(to_provider_messages(AGENT))  # and the provider takes it


def test_content_parts_and_legacy_functions() -> None:
    messages = [
        {
            "role": "developer",
            "content": [{"type": "text", "text": "Be "}, {"type": "text", "text": "brief."}],
        },
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                {"type": "file", "file": {"filename": "a.pdf", "file_data": "..."}},
                {"type": "input_audio", "input_audio": {"data": "...", "format": "wav"}},
                {"type": "text", "text": "Thanks."},
            ],
        },
        {
            "role": "assistant",
            "content": "Checking.",
            "function_call": {"name": "look", "arguments": "{}"},
        },
        {"role": "function", "name": "look", "content": "a cat"},
        {"role": "assistant", "content": None, "refusal": "I cannot."},
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]},
        {"role": "user", "content": "ok"},
    ]
    assert [m["content"] for m in to_provider_messages(messages)] == [
        "Be brief.",
        "What is this?\n[image]\n[file: a.pdf]\n[audio]\nThanks.",
        "Checking.\n[function call: look({})]",
        "[function result look]: a cat",
        "I cannot.",
        "[refusal: No.]",
        "ok",
    ]


def test_a_tool_result_without_its_call_keeps_its_id_or_name() -> None:
    mapped = to_provider_messages(
        [
            {"role": "tool", "tool_call_id": "x9", "content": "1"},
            {"role": "tool", "tool_call_id": "x8", "name": "calc", "content": "2"},
        ]
    )
    assert [m["content"] for m in mapped] == [
        "[tool result x9]: 1",
        "[tool result x8 (calc)]: 2",
    ]


def test_custom_tool_calls_and_calls_of_other_types_are_laid_out_too() -> None:
    """The SDK's custom tools (free-text input) and call types this mapping does not know
    are agent conversations all the same: text, never a 400."""
    mapped = to_provider_messages(
        [
            {"role": "user", "content": "Find foo."},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "custom", "custom": {"name": "grep", "input": "foo"}},
                    {"id": "c2", "type": "web_search", "web_search": {}},
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "a.py:3"},
            {"role": "tool", "tool_call_id": "c2", "content": "none"},
        ]
    )
    assert [m["content"] for m in mapped[1:]] == [
        "[tool call c1: grep(foo)]\n[tool call c2: web_search]",
        "[tool result c1 (grep)]: a.py:3",
        "[tool result c2 (web_search)]: none",
    ]


@pytest.mark.parametrize(
    ("message", "words"),
    [
        ("Hi", "messages[0] must be an object, got string"),
        ({"content": "Hi"}, "messages[0] has no role"),
        ({"role": "robot", "content": "Hi"}, "messages[0].role must be one of"),
        # Not a string: named, never a lookup that fails (a list or object is unhashable).
        ({"role": ["user"], "content": "Hi"}, "messages[0].role must be one of"),
        ({"role": {"a": 1}, "content": "Hi"}, "got object"),
        ({"role": 1, "content": "Hi"}, "got number"),
        ({"role": "user", "content": 5}, "messages[0].content must be a string"),
        ({"role": "user", "content": [5]}, "messages[0].content[0] must be an object"),
        ({"role": "user", "content": [{"type": "text"}]}, "content[0].text must be a string"),
        ({"role": "user", "content": [{"text": "x"}]}, "content[0].type must be a string"),
        ({"role": "user", "name": 3, "content": "Hi"}, "messages[0].name must be a string"),
        ({"role": "assistant", "tool_calls": {}}, "messages[0].tool_calls must be an array"),
        ({"role": "assistant", "tool_calls": [1]}, "messages[0].tool_calls[0] must be an object"),
        (
            {"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": 1}}]},
            "tool_calls[0].function.name must be a string",
        ),
        (
            {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": {}}}]},
            "tool_calls[0].function.arguments must be a string",
        ),
        ({"role": "tool", "tool_call_id": 1, "content": "x"}, "tool_call_id must be a string"),
        (
            {"role": "assistant", "tool_calls": [{"type": 7, "function": {"name": "f"}}]},
            "tool_calls[0].type must be a string",
        ),
        (
            {"role": "assistant", "tool_calls": [{"type": "custom", "custom": None}]},
            "tool_calls[0].custom must be an object",
        ),
        (
            {"role": "assistant", "tool_calls": [{"type": "custom", "custom": {"input": "x"}}]},
            "tool_calls[0].custom.name must be a string",
        ),
        (
            {
                "role": "assistant",
                "tool_calls": [{"type": "custom", "custom": {"name": "g", "input": 1}}],
            },
            "tool_calls[0].custom.input must be a string",
        ),
    ],
)
def test_an_unreadable_message_is_named(message: Any, words: str) -> None:
    with pytest.raises(OpenAIError) as caught:
        to_provider_messages([message])
    assert caught.value.status == 400
    assert caught.value.param == "messages"
    assert words in caught.value.message


# --- properties -------------------------------------------------------------------------------

text = st.text(max_size=40)
call_id = st.text(alphabet="abcdef0123456789_", min_size=1, max_size=8)
call = st.one_of(
    st.fixed_dictionaries(
        {
            "id": call_id,
            "type": st.just("function"),
            "function": st.fixed_dictionaries(
                {"name": st.text(min_size=1, max_size=12), "arguments": text}
            ),
        }
    ),
    st.fixed_dictionaries(
        {
            "id": call_id,
            "type": st.just("custom"),
            "custom": st.fixed_dictionaries(
                {"name": st.text(min_size=1, max_size=12)}, optional={"input": text}
            ),
        }
    ),
)
part = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": text}),
    st.fixed_dictionaries({"type": st.just("image_url"), "image_url": st.just({"url": "x"})}),
)
content = st.one_of(text, st.lists(part, max_size=4))
openai_message = st.one_of(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["system", "developer", "user", "assistant"]), "content": content},
        optional={"name": st.text(min_size=1, max_size=8)},
    ),
    st.fixed_dictionaries(
        {
            "role": st.just("assistant"),
            "content": st.one_of(st.none(), text),
            "tool_calls": st.lists(call, max_size=3),
        }
    ),
    st.fixed_dictionaries(
        {"role": st.just("tool"), "tool_call_id": st.text(max_size=8), "content": content}
    ),
)


@given(st.lists(openai_message, min_size=1, max_size=8))
def test_every_message_maps_to_one_plain_message(messages: list[dict[str, Any]]) -> None:
    mapped = to_provider_messages(messages)
    assert len(mapped) == len(messages)
    for original, out in zip(messages, mapped, strict=True):
        assert set(out) == {"role", "content"}
        assert isinstance(out["content"], str)
        expected_role = "user" if original["role"] == "tool" else original["role"]
        assert out["role"] == expected_role
        for tool_call in original.get("tool_calls") or []:
            name = tool_call[tool_call["type"]]["name"]
            assert f"[tool call {tool_call['id']}: {name}(" in out["content"]


@given(st.lists(openai_message, max_size=6), st.text(min_size=1).filter(str.strip))
def test_a_conversation_ending_with_a_question_or_a_tool_result_is_accepted(
    history: list[dict[str, Any]], last: str
) -> None:
    """Whatever an agent's history holds, the provider accepts the mapped conversation
    when it ends with the user's question or a tool's result: never a 400."""
    for final in (
        {"role": "user", "content": last},
        {"role": "tool", "tool_call_id": "c", "content": last},
    ):
        normalize_messages(to_provider_messages([*history, final]))


@given(
    st.lists(
        st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant"]), "content": text}),
        min_size=1,
    )
)
def test_plain_messages_pass_through_unchanged(messages: list[dict[str, str]]) -> None:
    assert to_provider_messages(messages) == messages
