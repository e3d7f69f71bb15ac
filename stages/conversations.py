"""Server-side conversations: which ids continue the caller's conversation on a site.

gpt4free callers send the whole conversation with every call. A site whose server keeps
the history itself (the AIPKit dialect) accepts only the new message, and continues a
conversation by its ids. The :class:`ConversationStore` bridges the two: it remembers,
per site, each conversation this provider held there — keyed by a digest of its turns
exactly as the caller sees them (what was sent, and the answer received) — with the ids
that continue it on the server.

A conversation is taken out of the store when a call continues it, and put back (under
its longer key) only when the answer completed. So a call that fails half way, a retry,
or two callers continuing the same conversation at once can never talk into a server
conversation whose history differs from what the caller believes: they start a new one.

No text is kept: keys are SHA-256 digests, values the server's ids.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence

from .core import Message
from .errors import ConfigurationError

__all__ = ["AnswerDigest", "ConversationStore", "conversation_key", "extend_key", "held_key"]

_ROLE_TAGS: Mapping[str, bytes] = {"system": b"S", "user": b"U", "assistant": b"A"}
_ENCODING = "utf-8"
_ERRORS = "surrogatepass"  # validated messages hold none, but a digest must never fail


def _content_digest(content: str) -> bytes:
    return hashlib.sha256(content.encode(_ENCODING, _ERRORS)).digest()


def extend_key(key: bytes, role: str, content_digest: bytes) -> bytes:
    """The key of a conversation ``key`` followed by one more turn (by its content's digest)."""
    return hashlib.sha256(key + _ROLE_TAGS[role] + content_digest).digest()


def conversation_key(site: str, messages: Iterable[Message]) -> bytes:
    """The digest of ``messages`` (in order, roles included) as a conversation on ``site``.

    Two conversations get the same key exactly when they are the same turns on the
    same site (SHA-256 chaining; each turn is its role and its content's digest).
    """
    key = hashlib.sha256(b"chatgptt conversation\0" + site.encode(_ENCODING, _ERRORS)).digest()
    for message in messages:
        key = extend_key(key, message.role, _content_digest(message.content))
    return key


class AnswerDigest:
    """The digest of an answer's text, fed chunk by chunk as it streams (no text kept)."""

    __slots__ = ("_hash",)

    def __init__(self) -> None:
        self._hash = hashlib.sha256()

    def update(self, chunk: str) -> None:
        """Add the next chunk of the answer."""
        self._hash.update(chunk.encode(_ENCODING, _ERRORS))

    def digest(self) -> bytes:
        """The digest of the text fed so far (the same as of the whole text at once)."""
        return self._hash.digest()


def _positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigurationError(f"{name} must be a positive number, got {value!r}")


class ConversationStore:
    """The server-side conversations a provider holds, bounded in number and age.

    Thread-safe (the synchronous entry points run on a loop of their own). Keys come
    from :func:`conversation_key`, so they already name the site.

    Args:
        max_entries: conversations kept at most; the least recently used go first.
        max_age: seconds a conversation is kept after its last answer (the server may
            forget it too; continuing a forgotten one would only lose its history).
        clock: the monotonic clock ages are measured on (inject one in tests).
    """

    def __init__(
        self,
        *,
        max_entries: int = 4096,
        max_age: float = 12 * 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1:
            raise ConfigurationError(f"max_entries must be a positive integer, got {max_entries!r}")
        _positive("max_age", max_age)
        self.max_entries = max_entries
        self.max_age = float(max_age)
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[bytes, tuple[tuple[tuple[str, str], ...], float]] = OrderedDict()

    def __len__(self) -> int:
        with self._lock:
            self._expire(self._clock())
            return len(self._entries)

    def take(self, key: bytes) -> dict[str, str] | None:
        """The ids continuing conversation ``key``, removed from the store; ``None`` if
        this provider holds no such conversation (or it is too old)."""
        with self._lock:
            now = self._clock()
            self._expire(now)
            entry = self._entries.pop(key, None)
        return None if entry is None else dict(entry[0])

    def put(self, key: bytes, ids: Mapping[str, str]) -> None:
        """Remember that conversation ``key`` continues on the server with ``ids``."""
        with self._lock:
            now = self._clock()
            self._entries[key] = (tuple(ids.items()), now)
            self._entries.move_to_end(key)
            self._expire(now)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        """Forget every conversation."""
        with self._lock:
            self._entries.clear()

    def _expire(self, now: float) -> None:
        # Entries are in order of their last put, so the expired ones are at the front.
        while self._entries:
            _key, (_ids, stored_at) = next(iter(self._entries.items()))
            if now - stored_at < self.max_age:
                return
            self._entries.popitem(last=False)


def held_key(site: str, messages: Sequence[Message], answer: AnswerDigest) -> bytes:
    """The key of ``messages`` followed by the assistant's ``answer``: what the caller
    will send as the earlier turns of the next call, if it continues."""
    return extend_key(conversation_key(site, messages), "assistant", answer.digest())
