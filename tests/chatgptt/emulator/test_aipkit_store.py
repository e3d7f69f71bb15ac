"""Step-1 cache keys and the conversation log, on their own."""

from __future__ import annotations

import threading
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from chatgptt.emulator import ConversationStore, ManualClock, SseCache
from chatgptt.emulator.aipkit.store import CACHE_CLEANUP_SECONDS, CachedMessage, collation_key


def test_a_key_is_read_once() -> None:
    cache = SseCache()
    key = cache.put("Hello", now=100.0, ttl=60, client_message_id="m1", images=0)
    assert key in cache
    taken = cache.take(key, now=100.0)
    assert taken == CachedMessage(message="Hello", expires_at=160.0, client_message_id="m1")
    assert cache.take(key, now=100.0) == "not_found"
    assert len(cache) == 0


def test_misses() -> None:
    cache = SseCache()
    key = cache.put("Hello", now=100.0, ttl=60)
    assert cache.take(None, now=100.0) == "missing"
    assert cache.take("!!!", now=100.0) == "missing"
    assert cache.take("aipkit_sse_" + "x" * 32, now=100.0) == "not_found"
    assert cache.take(key, now=160.0) == "expired"
    assert cache.take(key, now=160.0 + CACHE_CLEANUP_SECONDS - 1) == "expired"
    cache.put("other", now=160.0 + CACHE_CLEANUP_SECONDS, ttl=60)  # the hourly cleanup runs
    assert cache.take(key, now=160.0 + CACHE_CLEANUP_SECONDS) == "not_found"


def test_keys_match_as_sanitize_key_and_mysql_do() -> None:
    cache = SseCache()
    key = cache.put("Hello", now=0.0, ttl=60)
    assert cache.take(" " + key.upper() + "\n", now=0.0) != "not_found"


def test_the_cache_is_bounded() -> None:
    cache = SseCache(limit=3)
    keys = [cache.put(str(n), now=0.0, ttl=60) for n in range(5)]
    assert len(cache) == 3
    assert [key in cache for key in keys] == [False, False, True, True, True]


def test_keys_are_safe_to_make_from_many_threads() -> None:
    cache = SseCache()
    made: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(200):
            key = cache.put("m", now=0.0, ttl=60)
            with lock:
                made.append(key)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(made)) == len(cache) == 800


def test_conversation_store() -> None:
    store = ConversationStore()
    store.append(("Sess", "conv"), "user", "Hi")
    store.append(("sess", "conv"), "assistant", "Hello")
    store.append(("other", "conv"), "user", "Yo")
    assert list(store) == [("Sess", "conv"), ("other", "conv")]
    assert store[("SESS", "conv")] == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
    ]
    copy = store[("sess", "conv")]
    copy.append({"role": "user", "content": "changed"})
    assert len(store[("sess", "conv")]) == 2
    assert ("sess", "conv") in store
    assert "sess" not in store
    store.clear()
    assert len(store) == 0


def test_conversation_store_is_bounded() -> None:
    store = ConversationStore(limit=2)
    for name in ("a", "b", "a", "c"):
        store.append((name, "c"), "user", name)
    assert list(store) == [("a", "c"), ("c", "c")]  # b was the least recently written


_PLAIN = str.maketrans("éÉçÇüÜ", "eEcCuU")


@settings(deadline=None)
@given(st.text(alphabet=st.sampled_from(list("aAeEéÉcCçÇüÜ-19 ")), max_size=12))
def test_collation_ignores_case_and_accents(text: str) -> None:
    key = collation_key(text)
    assert collation_key(text.swapcase()) == key
    assert collation_key(text.translate(_PLAIN)) == key
    assert collation_key(key) == key
    assert key == text.translate(_PLAIN).lower()


def test_manual_clock() -> None:
    clock = ManualClock(10)
    assert clock() == 10.0
    assert clock.advance(2.5) == 12.5
    clock.set(1)
    assert clock() == 1.0
    assert abs(ManualClock()() - time.time()) < 60
