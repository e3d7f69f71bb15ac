"""A ``POST /v1/chat/completions`` body, checked and turned into what the provider takes.

The site answers a conversation of plain text turns, so whatever agent frameworks send is
laid out as text, one provider message per OpenAI message (its index stays the same, so an
error about ``messages[2]`` points at the client's ``messages[2]``):

================================  ==========================================================
OpenAI message                    provider message
================================  ==========================================================
``system``, ``developer``,        the same role; ``content`` as text
``user``, ``assistant``
content parts                     text parts as they are; other parts as a placeholder on
                                  a line of its own: ``[image]``, ``[audio]``,
                                  ``[file: NAME]``, ``[refusal: TEXT]``, ``[TYPE]``
``name``                          ``NAME: `` before the content
``assistant`` with ``tool_calls`` the content, then one line per call:
                                  ``[tool call ID: NAME(ARGUMENTS)]`` (a ``custom`` tool's
                                  call: ``NAME(INPUT)``; another type: ``[tool call ID:
                                  TYPE]``)
``assistant`` with                ``[function call: NAME(ARGUMENTS)]``
``function_call`` (legacy)
``assistant`` ``content: null``   the tool calls alone (or ``refusal``; or nothing: an
                                  empty turn, which the provider skips)
``tool``                          ``user``: ``[tool result ID (NAME)]: CONTENT`` — NAME
                                  from the assistant turn that made the call
``function`` (legacy)             ``user``: ``[function result NAME]: CONTENT``
================================  ==========================================================

Tool results become user turns because the site knows two speakers; a conversation that
ends with a tool result (an agent's loop) therefore ends with a user turn, as the site
needs. ``tools``, ``tool_choice``, ``response_format`` and the sampling parameters are
type-checked and ignored: the site picks its model's parameters and answers in text.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from chatgptt.openai_api.errors import OpenAIError

__all__ = ["ChatRequest", "parse_chat_request", "to_provider_messages"]

#: Roles passed through as they are (the provider reads ``developer`` as ``system``).
_PLAIN_ROLES = frozenset({"system", "developer", "user", "assistant"})
_ROLES = ("system", "developer", "user", "assistant", "tool", "function")


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


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


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
            raise _bad(f"'{key}' must be {check[1]}, got {_type_name(value)}", key)


# --- the body ---------------------------------------------------------------------------------


def parse_chat_request(body: object, resolve_model: Callable[[str], str]) -> ChatRequest:
    """Check ``body`` (the parsed JSON) and map it; ``resolve_model`` is the provider's
    ``get_model`` (raising ``UnknownModelError``, which the caller maps to a 404).

    Raises:
        OpenAIError: 400 naming the parameter that is wrong.
    """
    if not isinstance(body, dict):
        raise _bad(f"the request body must be a JSON object, got {_type_name(body)}", None)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad(
            "you must provide a model parameter"
            if model is None
            else f"'model' must be a non-empty string, got {_type_name(model)}",
            "model",
        )
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise _bad(
            "you must provide a messages parameter"
            if messages is None
            else f"'messages' must be an array, got {_type_name(messages)}",
            "messages",
        )
    if not messages:
        raise _bad("'messages' must hold at least one message", "messages")
    stream = body.get("stream")
    if stream is None:
        stream = False
    elif not isinstance(stream, bool):
        raise _bad(f"'stream' must be a boolean, got {_type_name(stream)}", "stream")
    include_usage = False
    options = body.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise _bad(
                f"'stream_options' must be an object, got {_type_name(options)}",
                "stream_options",
            )
        wanted = options.get("include_usage")
        if wanted is not None and not isinstance(wanted, bool):
            raise _bad(
                f"'stream_options.include_usage' must be a boolean, got {_type_name(wanted)}",
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


def _placeholder(part: dict[str, Any], where: str) -> str | None:
    """A non-text part as its placeholder; ``None`` for a text part."""
    kind = part.get("type")
    if kind == "text":
        return None
    if kind == "image_url":
        return "[image]"
    if kind == "input_audio":
        return "[audio]"
    if kind == "file":
        file = part.get("file")
        name = file.get("filename") if isinstance(file, dict) else None
        return f"[file: {name}]" if isinstance(name, str) and name else "[file]"
    if kind == "refusal":
        refusal = part.get("refusal")
        return f"[refusal: {refusal}]" if isinstance(refusal, str) else "[refusal]"
    if not isinstance(kind, str) or not kind:
        raise _bad(f"{where}.type must be a string, got {_type_name(kind)}", "messages")
    return f"[{kind}]"


def _parts_text(parts: list[object], where: str) -> str:
    """Text parts joined as they are; each other part a placeholder on a line of its own."""
    pieces: list[str] = []
    run: list[str] = []
    for index, part in enumerate(parts):
        at = f"{where}.content[{index}]"
        if not isinstance(part, dict):
            raise _bad(f"{at} must be an object, got {_type_name(part)}", "messages")
        placeholder = _placeholder(part, at)
        if placeholder is None:
            text = part.get("text")
            if not isinstance(text, str):
                raise _bad(f"{at}.text must be a string, got {_type_name(text)}", "messages")
            run.append(text)
            continue
        if run:
            pieces.append("".join(run))
            run = []
        pieces.append(placeholder)
    if run:
        pieces.append("".join(run))
    return "\n".join(pieces)


def _content_text(content: object, where: str) -> str:
    """A message's content as text: a string, ``null`` (nothing) or an array of parts."""
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    if isinstance(content, list):
        return _parts_text(content, where)
    raise _bad(
        f"{where}.content must be a string, an array of parts or null, got {_type_name(content)}",
        "messages",
    )


def _called(call: object, where: str, given: str) -> tuple[str, str]:
    """``(name, what it was given)`` of a called function (``given="arguments"``) or custom
    tool (``given="input"``, free text)."""
    if not isinstance(call, dict):
        raise _bad(f"{where} must be an object, got {_type_name(call)}", "messages")
    name = call.get("name")
    if not isinstance(name, str):
        raise _bad(f"{where}.name must be a string, got {_type_name(name)}", "messages")
    value = call.get(given)
    if value is None:
        value = ""
    elif not isinstance(value, str):
        raise _bad(f"{where}.{given} must be a string, got {_type_name(value)}", "messages")
    return name, value


def _named(message: Mapping[str, Any], text: str, where: str) -> str:
    name = message.get("name")
    if name is None or name == "":
        return text
    if not isinstance(name, str):
        raise _bad(f"{where}.name must be a string, got {_type_name(name)}", "messages")
    return f"{name}: {text}"


def _assistant_text(message: Mapping[str, Any], where: str, calls: dict[str, str]) -> str:
    lines = []
    text = _content_text(message.get("content"), where)
    if not text and isinstance(message.get("refusal"), str):
        text = message["refusal"]
    if text:
        lines.append(_named(message, text, where))
    tool_calls = message.get("tool_calls")
    if tool_calls is not None:
        if not isinstance(tool_calls, list):
            raise _bad(
                f"{where}.tool_calls must be an array, got {_type_name(tool_calls)}", "messages"
            )
        for index, call in enumerate(tool_calls):
            at = f"{where}.tool_calls[{index}]"
            if not isinstance(call, dict):
                raise _bad(f"{at} must be an object, got {_type_name(call)}", "messages")
            call_id = call.get("id")
            call_id = call_id if isinstance(call_id, str) else ""
            kind = call.get("type")
            if kind is None or kind == "function":
                name, arguments = _called(call.get("function"), f"{at}.function", "arguments")
            elif kind == "custom":
                name, arguments = _called(call.get("custom"), f"{at}.custom", "input")
            elif isinstance(kind, str):  # a kind of call not known here: named, not refused
                if call_id:
                    calls[call_id] = kind
                lines.append(f"[tool call {call_id}: {kind}]")
                continue
            else:
                raise _bad(f"{at}.type must be a string, got {_type_name(kind)}", "messages")
            if call_id:
                calls[call_id] = name
            lines.append(f"[tool call {call_id}: {name}({arguments})]")
    function_call = message.get("function_call")
    if function_call is not None:
        name, arguments = _called(function_call, f"{where}.function_call", "arguments")
        lines.append(f"[function call: {name}({arguments})]")
    return "\n".join(lines)


def to_provider_messages(messages: Sequence[object]) -> list[dict[str, str]]:
    """OpenAI chat messages as the provider's ``{"role", "content"}`` messages, one for one
    (see the module's table).

    Raises:
        OpenAIError: 400 naming the message (``messages[2].tool_calls[0]...``) that cannot
            be read: not an object, an unknown role, content of the wrong type.
    """
    out: list[dict[str, str]] = []
    calls: dict[str, str] = {}  # tool call id -> function name, for the tool turns
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise _bad(f"{where} must be an object, got {_type_name(message)}", "messages")
        role = message.get("role")
        if not isinstance(role, str):
            raise _bad(
                f"{where}.role must be one of {', '.join(_ROLES)}; got {_type_name(role)}"
                if role is not None
                else f"{where} has no role",
                "messages",
            )
        content = message.get("content")
        if role in _PLAIN_ROLES and type(content) is str and len(message) == 2:
            out.append(message)  # the common case, already what the provider takes
            continue
        if role == "assistant":
            out.append({"role": "assistant", "content": _assistant_text(message, where, calls)})
        elif role in _PLAIN_ROLES:
            text = _named(message, _content_text(content, where), where)
            out.append({"role": str(role), "content": text})
        elif role == "tool":
            call_id = message.get("tool_call_id")
            if call_id is not None and not isinstance(call_id, str):
                raise _bad(
                    f"{where}.tool_call_id must be a string, got {_type_name(call_id)}",
                    "messages",
                )
            call_id = call_id or ""
            name = calls.get(call_id) or message.get("name")
            label = f"{call_id} ({name})" if isinstance(name, str) and name else call_id
            text = _content_text(content, where)
            out.append({"role": "user", "content": f"[tool result {label}]: {text}"})
        elif role == "function":
            name = message.get("name")
            label = name if isinstance(name, str) else ""
            text = _content_text(content, where)
            out.append({"role": "user", "content": f"[function result {label}]: {text}"})
        else:
            raise _bad(
                f"{where}.role must be one of {', '.join(_ROLES)}; got {role!r}"
                if role is not None
                else f"{where} has no role",
                "messages",
            )
    return out
