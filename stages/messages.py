"""The conversation as the caller gave it: validated, normalised, and laid out as text.

Shared by every dialect: whatever the wire looks like, a call's ``messages`` are
checked once, up front, with an error that points at the culprit.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Literal

from stages.core import Message
from stages.errors import InvalidMessagesError
from stages.turns import ROLES, TurnReader, is_agent_turn

__all__ = [
    "check_last",
    "flatten_prompt",
    "normalize_messages",
    "replace_lone_surrogates",
]

_Role = Literal["system", "user", "assistant"]

#: Roles accepted in the input, and the role each becomes (OpenAI's ``developer``
#: is its newer name for ``system``).
_ROLES: Mapping[str, _Role] = MappingProxyType(
    {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
)

_SURROGATE = re.compile("[\ud800-\udfff]")


def replace_lone_surrogates(text: str) -> str:
    """``text`` with lone surrogates as U+FFFD (a valid pair is joined into its character)."""
    if _SURROGATE.search(text) is None:
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


# --- validation ----------------------------------------------------------------------------


def _content_text(content: object, index: int) -> str:
    """A message's content as one string: a string, or the text of OpenAI-style parts."""
    if isinstance(content, str):
        return replace_lone_surrogates(content)
    if isinstance(content, list | tuple):
        texts: list[str] = []
        for part_index, part in enumerate(content):
            where = f"content[{part_index}]"
            if not isinstance(part, Mapping):
                raise InvalidMessagesError(
                    f"{where} must be a mapping like {{'type': 'text', 'text': '…'}}; "
                    f"got {type(part).__name__}",
                    index,
                )
            part_type = part.get("type")
            if part_type != "text":
                raise InvalidMessagesError(
                    f"{where} has type {part_type!r}; only 'text' parts are supported", index
                )
            text = part.get("text")
            if not isinstance(text, str):
                raise InvalidMessagesError(
                    f"{where}['text'] must be a string; got {type(text).__name__}", index
                )
            texts.append(text)
        return replace_lone_surrogates("".join(texts))
    raise InvalidMessagesError(
        f"content must be a string or a list of text parts; got {type(content).__name__}", index
    )


def _message(item: object, index: int) -> Message:
    if isinstance(item, Message):  # already a record: validate it all the same
        if item.role not in _ROLES:
            raise InvalidMessagesError(
                f"a Message record's role must be one of {', '.join(_ROLES)}; got {item.role!r}",
                index,
            )
        item = {"role": item.role, "content": item.content}
    if not isinstance(item, Mapping):
        raise InvalidMessagesError(
            f"must be a mapping with 'role' and 'content'; got {type(item).__name__}", index
        )
    for key in ("role", "content"):
        if key not in item:
            raise InvalidMessagesError(f"missing {key!r}", index)
    role = item["role"]
    if not isinstance(role, str) or role not in _ROLES:
        raise InvalidMessagesError(f"role must be one of {', '.join(ROLES)}; got {role!r}", index)
    return Message(_ROLES[role], _content_text(item["content"], index))


def normalize_messages(messages: object) -> tuple[Message, ...]:
    """Validate gpt4free-style ``messages`` and return them as :class:`Message` records.

    Accepts a list or tuple of mappings with ``role`` (``system``, ``developer`` —
    read as ``system`` —, ``user``, ``assistant``) and ``content`` (a string, or a
    list of OpenAI-style parts of which only ``text`` parts are allowed; their
    texts are joined). The turns of an agent's loop — ``tool`` and ``function``
    results, ``assistant`` turns with ``tool_calls`` or no content — are laid out as
    text (:mod:`stages.turns`): a tool result becomes a user turn. There must be at
    least one message and the last one must be a non-blank user message. Lone
    surrogates become U+FFFD so that encoding never fails later.

    Raises:
        InvalidMessagesError: naming the first problem and the index it is at.
    """
    if isinstance(messages, str | bytes) or not isinstance(messages, list | tuple):
        raise InvalidMessagesError(
            f"must be a list of {{'role': …, 'content': …}} mappings; got {type(messages).__name__}"
        )
    if not messages:
        raise InvalidMessagesError("at least one message is required")
    turns: TurnReader | None = None
    normalized: list[Message] = []
    for index, item in enumerate(messages):
        if is_agent_turn(item):  # a tool result, or a turn that called a tool: as text
            turns = turns or TurnReader(_turn_error)
            item = turns.read(item, f"messages[{index}]")
        normalized.append(_message(item, index))
    check_last(normalized)
    return tuple(normalized)


_TURN_PATH = re.compile(r"messages\[(\d+)\]\.?")


def _turn_error(text: str) -> InvalidMessagesError:
    """:class:`TurnReader`'s error, which names ``messages[i]...``, with its index."""
    found = _TURN_PATH.match(text)
    if found is None:
        return InvalidMessagesError(text)
    return InvalidMessagesError(text[found.end() :].lstrip(), int(found[1]))


def check_last(messages: Sequence[Message]) -> None:
    """Fail unless the conversation ends with a non-blank user message."""
    if not messages:
        raise InvalidMessagesError("at least one message is required")
    last_index = len(messages) - 1
    last = messages[last_index]
    if last.role != "user":
        raise InvalidMessagesError(
            f"the last message must be from the user; got role {last.role!r}", last_index
        )
    if not last.content.strip():
        raise InvalidMessagesError("the last message (the user's question) is empty", last_index)


def flatten_prompt(messages: Sequence[Message]) -> str:
    """The whole conversation as one prompt, the original provider's layout.

    A single message is its bare content; otherwise one ``Role: content`` line
    per message (``System``, ``User``, ``Assistant``) followed by ``Assistant:``.
    """
    if len(messages) == 1:
        return messages[0].content
    lines = [f"{message.role.capitalize()}: {message.content}" for message in messages]
    return "\n".join(lines) + "\nAssistant:"
