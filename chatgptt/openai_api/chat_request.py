"""A ``POST /v1/chat/completions`` body, checked and turned into what the provider takes.

The site answers a conversation of plain text turns, so whatever agent frameworks send —
tool calls and their results, ``name`` fields, content parts — is laid out as text, one turn
per OpenAI message, as :mod:`stages.turns` says (its table; the README shows it too). An
error about ``messages[2]`` points at the client's ``messages[2]``. ``tools``,
``tool_choice``, ``response_format`` and the sampling parameters are type-checked and
ignored: the site picks its model's parameters and answers in text.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from chatgptt.openai_api.errors import OpenAIError
from stages.turns import TurnReader, type_name

__all__ = ["ChatRequest", "parse_chat_request", "to_provider_messages"]


@attrs.frozen
class ChatRequest:
    """What the server acts on.

    Attributes:
        model: the provider's name for the model asked for.
        messages: the conversation as the provider takes it.
        stream: answer with ``chat.completion.chunk`` events.
        include_usage: end the stream with a chunk carrying ``usage``.
    """

    model: str
    messages: list[dict[str, str]]
    stream: bool = False
    include_usage: bool = False


def _bad(message: str, param: str | None) -> OpenAIError:
    return OpenAIError(400, message, param=param)


# --- the parameters that are accepted and ignored ----------------------------------------------


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_stop(value: object) -> bool:
    return isinstance(value, str) or (
        isinstance(value, list) and all(isinstance(item, str) for item in value)
    )


def _is_tool_choice(value: object) -> bool:
    return isinstance(value, str | dict)


_IGNORED: Mapping[str, tuple[Callable[[object], bool], str]] = {
    "temperature": (_is_number, "a number"),
    "top_p": (_is_number, "a number"),
    "presence_penalty": (_is_number, "a number"),
    "frequency_penalty": (_is_number, "a number"),
    "max_tokens": (_is_integer, "an integer"),
    "max_completion_tokens": (_is_integer, "an integer"),
    "seed": (_is_integer, "an integer"),
    "top_logprobs": (_is_integer, "an integer"),
    "logprobs": (lambda v: isinstance(v, bool), "a boolean"),
    "parallel_tool_calls": (lambda v: isinstance(v, bool), "a boolean"),
    "store": (lambda v: isinstance(v, bool), "a boolean"),
    "stop": (_is_stop, "a string or an array of strings"),
    "user": (lambda v: isinstance(v, str), "a string"),
    "service_tier": (lambda v: isinstance(v, str), "a string"),
    "reasoning_effort": (lambda v: isinstance(v, str), "a string"),
    "logit_bias": (lambda v: isinstance(v, dict), "an object"),
    "metadata": (lambda v: isinstance(v, dict), "an object"),
    "response_format": (lambda v: isinstance(v, dict), "an object"),
    "tools": (lambda v: isinstance(v, list), "an array"),
    "functions": (lambda v: isinstance(v, list), "an array"),
    "tool_choice": (_is_tool_choice, "a string or an object"),
    "function_call": (_is_tool_choice, "a string or an object"),
    "modalities": (lambda v: isinstance(v, list), "an array"),
}


def _check_ignored(body: Mapping[str, Any]) -> None:
    for key, value in body.items():
        check = _IGNORED.get(key)
        if check is not None and value is not None and not check[0](value):
            raise _bad(f"'{key}' must be {check[1]}, got {type_name(value)}", key)


# --- the body ---------------------------------------------------------------------------------


def parse_chat_request(body: object, resolve_model: Callable[[str], str]) -> ChatRequest:
    """Check ``body`` (the parsed JSON) and map it; ``resolve_model`` is the provider's
    ``get_model`` (raising ``UnknownModelError``, which the caller maps to a 404).

    Raises:
        OpenAIError: 400 naming the parameter that is wrong.
    """
    if not isinstance(body, dict):
        raise _bad(f"the request body must be a JSON object, got {type_name(body)}", None)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad(
            "you must provide a model parameter"
            if model is None
            else f"'model' must be a non-empty string, got {type_name(model)}",
            "model",
        )
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise _bad(
            "you must provide a messages parameter"
            if messages is None
            else f"'messages' must be an array, got {type_name(messages)}",
            "messages",
        )
    if not messages:
        raise _bad("'messages' must hold at least one message", "messages")
    stream = body.get("stream")
    if stream is None:
        stream = False
    elif not isinstance(stream, bool):
        raise _bad(f"'stream' must be a boolean, got {type_name(stream)}", "stream")
    include_usage = False
    options = body.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise _bad(
                f"'stream_options' must be an object, got {type_name(options)}",
                "stream_options",
            )
        wanted = options.get("include_usage")
        if wanted is not None and not isinstance(wanted, bool):
            raise _bad(
                f"'stream_options.include_usage' must be a boolean, got {type_name(wanted)}",
                "stream_options.include_usage",
            )
        include_usage = bool(wanted) and stream
    choices = body.get("n")
    if choices is not None and choices != 1:
        if not _is_integer(choices) or choices < 1:
            raise _bad(f"'n' must be a positive integer, got {choices!r}", "n")
        raise _bad(f"'n' must be 1: the site gives one answer per request, got {choices}", "n")
    if len(body) > 2:  # more than model and messages: check what is ignored
        _check_ignored(body)
    return ChatRequest(
        model=resolve_model(model),
        messages=to_provider_messages(messages),
        stream=stream,
        include_usage=include_usage,
    )


# --- the messages ------------------------------------------------------------------------------


def _fail(text: str) -> OpenAIError:
    return _bad(text, "messages")


def to_provider_messages(messages: Sequence[object]) -> list[dict[str, str]]:
    """OpenAI chat messages as the provider's ``{"role", "content"}`` messages, one for one
    (:mod:`stages.turns`).

    Raises:
        OpenAIError: 400 naming the message (``messages[2].tool_calls[0]...``) that cannot
            be read: not an object, an unknown role, content of the wrong type.
    """
    return TurnReader(_fail).read_all(messages)
