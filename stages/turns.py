"""OpenAI chat messages as the text turns the site knows, the way agent frameworks send them.

The site answers a conversation of plain text turns between two speakers, so tool calls,
tool results and content parts are laid out as text, one turn per message (its index stays
the same, so an error about ``messages[2]`` points at the caller's ``messages[2]``):

================================  ==========================================================
OpenAI message                    turn
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
                                  empty turn, which the dialects skip)
``tool``                          ``user``: ``[tool result ID (NAME)]: CONTENT`` — NAME
                                  from the assistant turn that made the call
``function`` (legacy)             ``user``: ``[function result NAME]: CONTENT``
================================  ==========================================================

Tool results become user turns because the site knows two speakers; a conversation that
ends with a tool result (an agent's loop) therefore ends with a user turn, as the site
needs. ``chatgptt serve`` lays out every request this way; the provider lays out the agent
turns (``tool`` and ``function`` results, ``assistant`` turns with calls or no content) and
reads the others itself, so that gpt4free's clients can carry an agent's conversation too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["PLAIN_ROLES", "ROLES", "TurnReader", "is_agent_turn", "type_name"]

#: Roles passed through as they are (``developer`` is read as ``system`` later).
PLAIN_ROLES = frozenset({"system", "developer", "user", "assistant"})
#: Every role a turn may have.
ROLES = ("system", "developer", "user", "assistant", "tool", "function")

#: Makes the error for a message that cannot be read, from a text naming where it is
#: (``messages[2].tool_calls[0] must be an object, got string``).
Fail = Callable[[str], Exception]


def type_name(value: object) -> str:
    """A value's JSON type, for messages."""
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


def is_agent_turn(message: object) -> bool:
    """Whether ``message`` is a turn of an agent's loop: a tool or function result, or an
    assistant turn that called something or said nothing."""
    if not isinstance(message, Mapping):
        return False
    role = message.get("role")
    if role in ("tool", "function"):
        return True
    return role == "assistant" and (
        message.get("content") is None
        or message.get("tool_calls") is not None
        or message.get("function_call") is not None
    )


class TurnReader:
    """Reads one conversation's messages in order (a tool result is named after the call
    an earlier turn made); ``fail`` makes the error for a message it cannot read."""

    __slots__ = ("_calls", "fail")

    def __init__(self, fail: Fail) -> None:
        self.fail = fail
        self._calls: dict[str, str] = {}  # tool call id -> the name of what was called

    def read_all(self, messages: Sequence[object]) -> list[dict[str, str]]:
        """Every message as a ``{"role", "content"}`` turn, one for one."""
        out: list[dict[str, str]] = []
        for index, message in enumerate(messages):
            where = f"messages[{index}]"
            if not isinstance(message, dict):
                raise self.fail(f"{where} must be an object, got {type_name(message)}")
            role = message.get("role")
            if not isinstance(role, str):
                raise self.fail(
                    f"{where}.role must be one of {', '.join(ROLES)}; got {type_name(role)}"
                    if role is not None
                    else f"{where} has no role"
                )
            content = message.get("content")
            if role in PLAIN_ROLES and type(content) is str and len(message) == 2:
                out.append(message)  # the common case, already a turn
            else:
                out.append(self.read(message, where))
        return out

    def read(self, message: Mapping[str, Any], where: str) -> dict[str, str]:
        """One message (a mapping) as a turn; ``where`` names it in errors."""
        role = message.get("role")
        content = message.get("content")
        if role == "assistant":
            return {"role": "assistant", "content": self._assistant_text(message, where)}
        if role in PLAIN_ROLES:
            text = self._named(message, self._content_text(content, where), where)
            return {"role": str(role), "content": text}
        if role == "tool":
            call_id = message.get("tool_call_id")
            if call_id is not None and not isinstance(call_id, str):
                raise self.fail(f"{where}.tool_call_id must be a string, got {type_name(call_id)}")
            call_id = call_id or ""
            name = self._calls.get(call_id) or message.get("name")
            label = f"{call_id} ({name})" if isinstance(name, str) and name else call_id
            text = self._content_text(content, where)
            return {"role": "user", "content": f"[tool result {label}]: {text}"}
        if role == "function":
            name = message.get("name")
            label = name if isinstance(name, str) else ""
            text = self._content_text(content, where)
            return {"role": "user", "content": f"[function result {label}]: {text}"}
        raise self.fail(
            f"{where}.role must be one of {', '.join(ROLES)}; got {role!r}"
            if role is not None
            else f"{where} has no role"
        )

    def _placeholder(self, part: dict[str, Any], where: str) -> str | None:
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
            raise self.fail(f"{where}.type must be a string, got {type_name(kind)}")
        return f"[{kind}]"

    def _parts_text(self, parts: list[object], where: str) -> str:
        """Text parts joined as they are; each other part a placeholder on a line of its own."""
        pieces: list[str] = []
        run: list[str] = []
        for index, part in enumerate(parts):
            at = f"{where}.content[{index}]"
            if not isinstance(part, dict):
                raise self.fail(f"{at} must be an object, got {type_name(part)}")
            placeholder = self._placeholder(part, at)
            if placeholder is None:
                text = part.get("text")
                if not isinstance(text, str):
                    raise self.fail(f"{at}.text must be a string, got {type_name(text)}")
                run.append(text)
                continue
            if run:
                pieces.append("".join(run))
                run = []
            pieces.append(placeholder)
        if run:
            pieces.append("".join(run))
        return "\n".join(pieces)

    def _content_text(self, content: object, where: str) -> str:
        """A message's content as text: a string, ``null`` (nothing) or an array of parts."""
        if isinstance(content, str):
            return content
        if content is None:
            return ""
        if isinstance(content, list):
            return self._parts_text(content, where)
        raise self.fail(
            f"{where}.content must be a string, an array of parts or null, got {type_name(content)}"
        )

    def _called(self, call: object, where: str, given: str) -> tuple[str, str]:
        """``(name, what it was given)`` of a called function (``given="arguments"``) or
        custom tool (``given="input"``, free text)."""
        if not isinstance(call, dict):
            raise self.fail(f"{where} must be an object, got {type_name(call)}")
        name = call.get("name")
        if not isinstance(name, str):
            raise self.fail(f"{where}.name must be a string, got {type_name(name)}")
        value = call.get(given)
        if value is None:
            value = ""
        elif not isinstance(value, str):
            raise self.fail(f"{where}.{given} must be a string, got {type_name(value)}")
        return name, value

    def _named(self, message: Mapping[str, Any], text: str, where: str) -> str:
        name = message.get("name")
        if name is None or name == "":
            return text
        if not isinstance(name, str):
            raise self.fail(f"{where}.name must be a string, got {type_name(name)}")
        return f"{name}: {text}"

    def _assistant_text(self, message: Mapping[str, Any], where: str) -> str:
        lines = []
        text = self._content_text(message.get("content"), where)
        if not text and isinstance(message.get("refusal"), str):
            text = message["refusal"]
        if text:
            lines.append(self._named(message, text, where))
        tool_calls = message.get("tool_calls")
        if tool_calls is not None:
            if not isinstance(tool_calls, list):
                raise self.fail(f"{where}.tool_calls must be an array, got {type_name(tool_calls)}")
            for index, call in enumerate(tool_calls):
                lines.append(self._tool_call(call, f"{where}.tool_calls[{index}]"))
        function_call = message.get("function_call")
        if function_call is not None:
            name, arguments = self._called(function_call, f"{where}.function_call", "arguments")
            lines.append(f"[function call: {name}({arguments})]")
        return "\n".join(lines)

    def _tool_call(self, call: object, at: str) -> str:
        if not isinstance(call, dict):
            raise self.fail(f"{at} must be an object, got {type_name(call)}")
        call_id = call.get("id")
        call_id = call_id if isinstance(call_id, str) else ""
        kind = call.get("type")
        if kind is None or kind == "function":
            name, arguments = self._called(call.get("function"), f"{at}.function", "arguments")
        elif kind == "custom":
            name, arguments = self._called(call.get("custom"), f"{at}.custom", "input")
        elif isinstance(kind, str):  # a kind of call not known here: named, not refused
            if call_id:
                self._calls[call_id] = kind
            return f"[tool call {call_id}: {kind}]"
        else:
            raise self.fail(f"{at}.type must be a string, got {type_name(kind)}")
        if call_id:
            self._calls[call_id] = name
        return f"[tool call {call_id}: {name}({arguments})]"
