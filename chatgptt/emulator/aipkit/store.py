"""What an AIPKit site keeps between requests: step-1 cache keys and the conversations.

Both are thread-safe: the server's loop writes them while tests read them from their own
thread. Both are bounded, so a long-running emulator does not grow without end.
"""

from __future__ import annotations

import threading
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import Literal

import attrs

from chatgptt.emulator.aipkit.events import new_cache_key
from chatgptt.emulator.aipkit.wordpress import sanitize_key

__all__ = [
    "CACHE_CLEANUP_SECONDS",
    "CachedMessage",
    "ConversationKey",
    "ConversationStore",
    "ManualClock",
    "Miss",
    "SseCache",
    "StoredMessage",
    "collation_key",
]

#: The plugin's cron deletes expired keys hourly; until then they read as "expired".
CACHE_CLEANUP_SECONDS = 3600.0
#: A lookup that found nothing usable: no key given, no such key, or an expired one.
Miss = Literal["missing", "not_found", "expired"]
#: ``(session_id, conversation_uuid)`` as the plugin stores them (sanitised).
ConversationKey = tuple[str, str]
#: One stored message: ``{"role": "user" | "assistant", "content": ...}``.
StoredMessage = dict[str, str]


@attrs.frozen(kw_only=True)
class CachedMessage:
    """What step 1 stored under a cache key."""

    message: str
    expires_at: float
    client_message_id: str | None = None
    images: int = 0


class SseCache:
    """Step-1 cache keys: each lives ``ttl`` seconds and works once.

    Keys are matched as the plugin does (``sanitize_key`` lowers them; MySQL compares without
    case). A read deletes the key, whatever happens to the request afterwards; an expired key
    stays "expired" until the hourly cleanup, then is "not found".
    """

    def __init__(self, limit: int = 100_000) -> None:
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, CachedMessage] = OrderedDict()
        self._limit = limit

    def put(
        self,
        message: str,
        *,
        now: float,
        ttl: float,
        client_message_id: str | None = None,
        images: int = 0,
    ) -> str:
        """Store ``message`` and return its new key."""
        key = new_cache_key()
        entry = CachedMessage(
            message=message,
            expires_at=now + ttl,
            client_message_id=client_message_id,
            images=images,
        )
        with self._lock:
            self._purge(now)
            self._entries[key.lower()] = entry
            while len(self._entries) > self._limit:
                self._entries.popitem(last=False)
        return key

    def take(self, raw_key: str | None, now: float) -> CachedMessage | Miss:
        """The message under ``raw_key`` (then deleted), or why there is none."""
        key = sanitize_key(raw_key or "")
        if not key:
            return "missing"
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return "not_found"
            if now >= entry.expires_at:
                return "expired"
            del self._entries[key]
        return entry

    def __contains__(self, raw_key: object) -> bool:
        if not isinstance(raw_key, str):
            return False
        with self._lock:
            return sanitize_key(raw_key) in self._entries

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def _purge(self, now: float) -> None:
        while self._entries:
            first = next(iter(self._entries.values()))
            if now < first.expires_at + CACHE_CLEANUP_SECONDS:
                break
            self._entries.popitem(last=False)


def collation_key(text: str) -> str:
    """How MySQL's ``utf8mb4_unicode_520_ci`` compares ids: without case or accents."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


class ConversationStore(Mapping[ConversationKey, list[StoredMessage]]):
    """The site's chat log, per ``(session_id, conversation_uuid)``, oldest message first.

    Ids match as the plugin's table matches them (:func:`collation_key`): ``Sess`` and
    ``sess`` are one session; a conversation keeps the spelling it was first logged under.
    Reading gives copies. The least recently written conversations go first beyond ``limit``.
    """

    def __init__(self, limit: int = 10_000) -> None:
        self._lock = threading.Lock()
        self._threads: OrderedDict[ConversationKey, tuple[ConversationKey, list[StoredMessage]]]
        self._threads = OrderedDict()
        self._limit = limit

    @staticmethod
    def _fold(key: ConversationKey) -> ConversationKey:
        return collation_key(key[0]), collation_key(key[1])

    def append(self, key: ConversationKey, role: str, content: str) -> None:
        """Log one message at the end of conversation ``key``."""
        folded = self._fold(key)
        with self._lock:
            spelling, thread = self._threads.pop(folded, (key, []))
            thread.append({"role": role, "content": content})
            self._threads[folded] = (spelling, thread)
            while len(self._threads) > self._limit:
                self._threads.popitem(last=False)

    def clear(self) -> None:
        """Forget every conversation."""
        with self._lock:
            self._threads.clear()

    def __getitem__(self, key: ConversationKey) -> list[StoredMessage]:
        folded = self._fold(key)
        with self._lock:
            return [dict(message) for message in self._threads[folded][1]]

    def __contains__(self, key: object) -> bool:
        if not (isinstance(key, tuple) and len(key) == 2 and all(isinstance(k, str) for k in key)):
            return False
        with self._lock:
            return self._fold(key) in self._threads

    def __iter__(self) -> Iterator[ConversationKey]:
        with self._lock:
            return iter([spelling for spelling, _ in self._threads.values()])

    def __len__(self) -> int:
        with self._lock:
            return len(self._threads)


class ManualClock:
    """A clock for tests: it stays where it is set, so keys expire without sleeping.

    >>> clock = ManualClock(1_700_000_000.0)
    >>> clock.advance(61)
    1700000061.0
    """

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else float(start)

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        """Move ``seconds`` forward; the new time."""
        self._now += seconds
        return self._now

    def set(self, now: float) -> None:
        """Jump to ``now``."""
        self._now = float(now)
