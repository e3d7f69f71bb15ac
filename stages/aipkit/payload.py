"""AIPKit payload build: which server-side conversation the message goes to, and the fields.

The AIPKit server keeps each conversation's history itself, keyed by the guest's
``session_id`` and the chat's ``conversation_uuid``, and accepts none from the client
(PROTOCOL-AIPKIT.md §2). Callers of a gpt4free provider send the whole conversation
every time. So:

- when the caller's earlier turns are exactly a conversation this provider held on this
  site and bot (what it sent, and the answer it received — the
  :class:`~stages.conversations.ConversationStore` knows them by digest), the message
  continues it: same ids, only the new user message is sent;
- otherwise a new conversation starts (new ids), and the earlier turns and any system
  message are folded into its first message with :func:`~stages.messages.flatten_prompt`
  (``System: …`` / ``User: …`` / ``Assistant: …`` lines, then ``Assistant:``), so the
  model still sees them. A lone user message is sent as it is.

With ``Settings.history == "flatten"`` every call starts a new conversation, folded.
"""

from __future__ import annotations

import os
import string
import time
from collections.abc import Callable, Mapping, Sequence
from typing import ClassVar

import attrs
import structlog

from stages.aipkit.tokens import AipkitTokens
from stages.conversations import conversation_key
from stages.core import Exchange, Message, require_tokens
from stages.messages import check_last, flatten_prompt

__all__ = [
    "CACHE_ACTION",
    "CONTINUED",
    "BuildAipkitPayload",
    "Continued",
    "Turn",
    "cache_form",
    "client_message_id",
    "conversation_site",
    "give_back",
    "plan_turn",
    "stream_query",
]

#: Step 1: the action that caches the message and returns a one-use key.
CACHE_ACTION = "aipkit_cache_sse_message"

_RANDOM_ALPHABET = string.digits + string.ascii_lowercase
_log = structlog.get_logger("chatgptt")


#: The ``exchange.notes`` key under which the payload records the conversation it took.
CONTINUED = "aipkit.continued"


@attrs.frozen(kw_only=True)
class Continued:
    """A held conversation a call took from the store: its key and its ids."""

    key: bytes = attrs.field(repr=False)
    ids: Mapping[str, str]


@attrs.frozen(kw_only=True)
class Turn:
    """Where one message goes: its text as sent, and the conversation's ids."""

    message: str
    session_id: str
    conversation_uuid: str
    continued: bool


def conversation_site(tokens: AipkitTokens) -> str:
    """What names the server's conversation space: the AJAX endpoint and the bot."""
    return f"{tokens.ajax_url}#bot={tokens.bot_id}"


def _new_id() -> str:
    """A random UUID (version 4) as text, as ``str(uuid.uuid4())`` writes it (at half
    its cost: two per call)."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # the RFC 4122 variant
    text = raw.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def plan_turn(
    messages: Sequence[Message],
    held: Mapping[str, str] | None,
    *,
    new_id: Callable[[], str] = _new_id,
) -> Turn:
    """The message to send and the conversation it goes to (pure).

    Args:
        messages: the validated conversation; the last message is the user's.
        held: the ids of the server conversation holding exactly the earlier turns
            (from the store), or ``None``.
        new_id: makes a conversation's ids (UUIDv4 strings, as the plugin's script).
    """
    check_last(messages)
    if held is not None and "session_id" in held and "conversation_uuid" in held:
        return Turn(
            message=messages[-1].content,
            session_id=held["session_id"],
            conversation_uuid=held["conversation_uuid"],
            continued=True,
        )
    return Turn(
        message=flatten_prompt(messages),
        session_id=new_id(),
        conversation_uuid=new_id(),
        continued=False,
    )


def client_message_id(bot_id: str, *, now: Callable[[], float] = time.time) -> str:
    """``aipkit-client-msg-<bot>-<milliseconds>-<5 random [a-z0-9]>``, as the script makes it."""
    number = int.from_bytes(os.urandom(4), "big")
    suffix = []
    for _ in range(5):
        number, digit = divmod(number, 36)
        suffix.append(_RANDOM_ALPHABET[digit])
    return f"aipkit-client-msg-{bot_id}-{int(now() * 1000)}-{''.join(suffix)}"


def cache_form(tokens: AipkitTokens, message: str, message_id: str) -> tuple[tuple[str, str], ...]:
    """Step 1's fields, in the order the plugin's script sends them."""
    return (
        ("action", CACHE_ACTION),
        ("_ajax_nonce", tokens.nonce),
        ("bot_id", tokens.bot_id),
        ("message", message),
        ("user_client_message_id", message_id),
    )


def stream_query(
    tokens: AipkitTokens, session_id: str, conversation_uuid: str
) -> tuple[tuple[str, str], ...]:
    """Step 2's conversation fields (the transport adds the action, key and nonce);
    ``post_id`` only when the page has one, as the script does."""
    query = [
        ("bot_id", tokens.bot_id),
        ("session_id", session_id),
        ("conversation_uuid", conversation_uuid),
    ]
    if tokens.post_id not in ("", "0"):
        query.append(("post_id", tokens.post_id))
    return tuple(query)


@attrs.frozen
class BuildAipkitPayload:
    """Decide the conversation (continue one held, or start one) and lay out both steps.

    Puts step 1's fields in ``exchange.form`` and step 2's conversation fields in
    ``exchange.query``. A held conversation is taken out of the store here (noted in
    ``exchange.notes[CONTINUED]``); the decode stage puts it back one turn longer once
    the answer completed — or as it was, by :func:`give_back`, when the site refused the
    message before its server could have logged it (so a retry still continues it).
    """

    name: str = "payload"
    #: Pure but for the store: it does not wait on anything.
    honours_deadline: ClassVar[bool] = True

    async def __call__(self, exchange: Exchange, /) -> Exchange:
        call = exchange.call
        tokens = require_tokens(exchange, AipkitTokens, self.name)
        held = None
        store = call.conversations
        if store is not None and call.settings.history == "messages" and len(call.messages) > 1:
            held = store.take(conversation_key(conversation_site(tokens), call.messages[:-1]))
        turn = plan_turn(call.messages, held)
        notes = exchange.notes
        if turn.continued and held is not None:
            key = conversation_key(conversation_site(tokens), call.messages[:-1])
            notes = {**notes, CONTINUED: Continued(key=key, ids=held)}
        if structlog.is_configured():
            _log.debug(
                "conversation.continued" if turn.continued else "conversation.started",
                turns=len(call.messages),
            )
        return attrs.evolve(
            exchange,
            form=cache_form(tokens, turn.message, client_message_id(tokens.bot_id)),
            query=stream_query(tokens, turn.session_id, turn.conversation_uuid),
            notes=notes,
        )


def give_back(exchange: Exchange) -> None:
    """Put the conversation this exchange took back in the store, unchanged: the site
    refused the message before logging it, so the server's conversation did not move."""
    continued = exchange.notes.get(CONTINUED)
    store = exchange.call.conversations
    if isinstance(continued, Continued) and store is not None:
        store.put(continued.key, continued.ids)
