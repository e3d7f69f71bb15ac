"""Payload build: validate the messages and lay them out as the plugin's form fields (pure).

Two layouts (``Settings.history``):

- ``messages``: the last user message is sent as ``message`` exactly as given, and
  the turns before it as ``wpaicg_chat_history``, a JSON array of ``"Human: …"`` /
  ``"AI: …"`` strings. The server sanitises that field before decoding it
  (HTML tags and ``%XX`` octets removed, every backslash deleted), so each turn is
  first rewritten by :func:`safe_history_text` into text that passes through
  unchanged. A system message has no field of its own: it becomes the history
  item ``"Human: System: <content>"`` at its place in the conversation (the site
  itself sends its own system prompt as a user turn).
- ``flatten``: the whole conversation folded into ``message`` by
  :func:`flatten_prompt`, as the original provider did, with an empty history.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import ClassVar, Literal

import attrs

from stages.classic.tokens import ClassicTokens
from stages.core import Exchange, Message, require_tokens
from stages.messages import check_last, flatten_prompt, replace_lone_surrogates

__all__ = [
    "CLIENT_ID_ALPHABET",
    "CLIENT_ID_LENGTH",
    "HISTORY_SUBSTITUTIONS",
    "PROCESS_SALT",
    "BuildPayload",
    "build_form",
    "conversation_client_id",
    "encode_history",
    "safe_history_text",
]

_Role = Literal["system", "user", "assistant"]

# --- the safe-text mapping ---------------------------------------------------------------

_CONTROL_PICTURES = {
    chr(code): chr(0x2400 + code) for code in range(0x20) if chr(code) not in "\t\n\r"
}

#: How :func:`safe_history_text` rewrites what the server would eat or mangle.
#:
#: The history field is sanitised as one string before it is JSON-decoded, so a
#: character survives only if JSON needs no escape for it (escapes use a
#: backslash, which the server deletes) and the sanitiser leaves it alone:
#:
#: - ``"`` → ``＂`` (U+FF02) and ``\`` → ``＼`` (U+FF3C): JSON would escape them.
#: - ``<`` → ``＜`` (U+FF1C): HTML tags (and lone ``<`` runs) are stripped or escaped.
#: - ``%`` → ``％`` (U+FF05), only where two hex digits follow: ``%XX`` octets are
#:   deleted, repeatedly, and then runs of spaces collapse.
#: - ``\r\n``, ``\r``, ``\n`` → U+2028 LINE SEPARATOR: a visible line break that
#:   JSON carries raw (a raw newline is invalid JSON; ``\n`` loses its backslash).
#: - TAB → four spaces: JSON would escape it.
#: - any other C0 control U+0000–U+001F → its Control Picture U+2400+n (``\x00`` → ``␀``).
#:
#: Everything else, non-ASCII included, is sent as raw UTF-8 and arrives as is.
#: Lone surrogates (not encodable) become U+FFFD, as in :func:`normalize_messages`.
HISTORY_SUBSTITUTIONS: Mapping[str, str] = MappingProxyType(
    {
        '"': "\uff02",
        "\\": "\uff3c",
        "<": "\uff1c",
        "%": "\uff05",
        "\r\n": "\u2028",
        "\r": "\u2028",
        "\n": "\u2028",
        "\t": "    ",
        **_CONTROL_PICTURES,
    }
)

_UNSAFE_IN_HISTORY = re.compile(r'\r\n|[\x00-\x1f"\\<]|%(?=[0-9A-Fa-f]{2})')


def safe_history_text(text: str) -> str:
    """``text`` rewritten so that it survives the server's sanitising of the history.

    Applies :data:`HISTORY_SUBSTITUTIONS` (quotes, backslashes, ``<``, ``%XX``,
    line breaks, tabs and other control characters become visible look-alikes)
    and replaces lone surrogates with U+FFFD. The result, written as raw UTF-8 in
    a JSON string, needs no escape, so the history arrives with only these
    substitutions instead of vanishing or being corrupted.
    """
    text = replace_lone_surrogates(text)
    return _UNSAFE_IN_HISTORY.sub(lambda match: HISTORY_SUBSTITUTIONS[match.group()], text)


# --- the two layouts -----------------------------------------------------------------------

_HISTORY_PREFIX: Mapping[_Role, str] = MappingProxyType(
    {"user": "Human: ", "assistant": "AI: ", "system": "Human: System: "}
)


def encode_history(previous: Sequence[Message]) -> str:
    """The ``wpaicg_chat_history`` value for the turns before the current message.

    Each turn becomes ``"Human: <text>"`` (user), ``"AI: <text>"`` (assistant) or
    ``"Human: System: <text>"`` (system), where ``<text>`` is
    ``safe_history_text(content).strip()`` (the server trims items anyway); turns
    left empty are skipped. The JSON is written with raw UTF-8 and contains no
    backslash.
    """
    if not previous:
        return "[]"
    items = []
    for message in previous:
        text = safe_history_text(message.content).strip()
        if text:
            items.append(_HISTORY_PREFIX[message.role] + text)
    return json.dumps(items, ensure_ascii=False)


def build_form(
    tokens: ClassicTokens,
    messages: tuple[Message, ...],
    *,
    client_id: str,
    history: str = "messages",
) -> tuple[tuple[str, str], ...]:
    """The POST fields, in the order the plugin's own script sends them.

    Args:
        tokens: what the landing page provided.
        messages: the validated conversation; the last message is the user's.
        client_id: the conversation's ``wpaicg_chat_client_id``.
        history: ``messages`` (the last message as ``message``, earlier turns as
            history) or ``flatten`` (everything in ``message``, history ``[]``).

    Raises:
        InvalidMessagesError: the conversation does not end with a user message.
        ValueError: ``history`` is neither layout.
    """
    check_last(messages)
    if history == "messages":
        message = messages[-1].content
        history_field = encode_history(messages[:-1])
    elif history == "flatten":
        message = flatten_prompt(messages)
        history_field = "[]"
    else:
        raise ValueError(f"history must be 'messages' or 'flatten'; got {history!r}")
    return (
        ("_wpnonce", tokens.nonce),
        ("post_id", tokens.post_id),
        ("url", tokens.site_url),
        ("action", tokens.action),
        ("message", message),
        ("bot_id", tokens.bot_id),
        ("chatbot_identity", tokens.chatbot_identity),
        ("wpaicg_chat_client_id", client_id),
        ("wpaicg_chat_history", history_field),
    )


# --- the client id -------------------------------------------------------------------------

#: The characters of a ``wpaicg_chat_client_id``, as the plugin's script makes them.
CLIENT_ID_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
#: The length of a ``wpaicg_chat_client_id``.
CLIENT_ID_LENGTH = 10

#: Random per process: client ids are stable within a process and unlinkable across.
PROCESS_SALT: bytes = secrets.token_bytes(32)


def conversation_client_id(messages: Sequence[Message], *, salt: bytes) -> str:
    """A ``wpaicg_chat_client_id`` that stays the same for every turn of one conversation.

    Derived (HMAC-SHA-256 keyed with ``salt``) from the conversation's opening:
    the system messages before the first user message and that user message,
    which later turns repeat. The server counts guest limits per id, so one
    conversation keeps one id, and different conversations get different ones.
    """
    opening: list[tuple[str, str]] = []
    for message in messages:
        if message.role == "user":
            opening.append((message.role, message.content))
            break
        if message.role == "system":
            opening.append((message.role, message.content))
    key = (salt, tuple(opening))
    # Every turn of a conversation asks again and the HMAC is most of the cost, so ids
    # are remembered — by the opening's hash only: the cache keeps no prompt text.
    remembered = _CLIENT_IDS.get(hash(key))
    if remembered is not None and remembered[0] == len(opening):
        return remembered[1]
    client_id = _client_id_of(*key)
    if len(_CLIENT_IDS) >= _CLIENT_IDS_KEPT:
        _CLIENT_IDS.pop(next(iter(_CLIENT_IDS)))
    _CLIENT_IDS[hash(key)] = (len(opening), client_id)
    return client_id


#: Client ids of recent conversations, by the hash of (salt, opening): no text kept.
_CLIENT_IDS: dict[int, tuple[int, str]] = {}
_CLIENT_IDS_KEPT = 1024


def _client_id_of(salt: bytes, opening: tuple[tuple[str, str], ...]) -> str:
    data = json.dumps(opening, ensure_ascii=True).encode("ascii")
    number = int.from_bytes(hmac.new(salt, data, hashlib.sha256).digest(), "big")
    base = len(CLIENT_ID_ALPHABET)
    characters = []
    for _ in range(CLIENT_ID_LENGTH):
        number, digit = divmod(number, base)
        characters.append(CLIENT_ID_ALPHABET[digit])
    return "".join(characters)


# --- the stage -----------------------------------------------------------------------------


@attrs.frozen
class BuildPayload:
    """Lay out the call's messages as the form the transport stage posts.

    The conversation's ``wpaicg_chat_client_id`` is the caller's ``client_id`` option,
    else derived from the conversation's opening (:func:`conversation_client_id`).
    """

    name: str = "payload"
    #: Every wait of this stage is bounded by the call's deadline (or it has none).
    honours_deadline: ClassVar[bool] = True

    async def __call__(self, exchange: Exchange, /) -> Exchange:
        call = exchange.call
        tokens = require_tokens(exchange, ClassicTokens, self.name)
        client_id = call.options.get("client_id") or conversation_client_id(
            call.messages, salt=PROCESS_SALT
        )
        form = build_form(tokens, call.messages, client_id=client_id, history=call.settings.history)
        return attrs.evolve(exchange, form=form)
