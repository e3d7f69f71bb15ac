"""The conversation store: keys that tell conversations apart, ids taken once, bounds."""

from __future__ import annotations

import hashlib
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stages.conversations import (
    AnswerDigest,
    ConversationStore,
    conversation_key,
    extend_key,
    held_key,
)
from stages.core import Message
from stages.errors import ConfigurationError

SITE = "https://site.example/wp-admin/admin-ajax.php#bot=5"

roles = st.sampled_from(["system", "user", "assistant"])
messages = st.lists(st.builds(Message, roles, st.text(max_size=6)), max_size=5).map(tuple)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@given(a=messages, b=messages)
def test_keys_are_equal_exactly_when_the_conversations_are(
    a: tuple[Message, ...], b: tuple[Message, ...]
) -> None:
    assert (conversation_key(SITE, a) == conversation_key(SITE, b)) == (a == b)


@given(conversation=messages)
def test_a_key_names_its_site(conversation: tuple[Message, ...]) -> None:
    assert conversation_key(SITE, conversation) != conversation_key(SITE + "x", conversation)


@given(conversation=messages, chunks=st.lists(st.text(max_size=5), max_size=6))
def test_an_answer_digested_in_chunks_keys_like_the_whole_turn(
    conversation: tuple[Message, ...], chunks: list[str]
) -> None:
    digest = AnswerDigest()
    for chunk in chunks:
        digest.update(chunk)
    whole = (*conversation, Message("assistant", "".join(chunks)))
    assert held_key(SITE, conversation, digest) == conversation_key(SITE, whole)


def test_extend_key_is_one_more_turn() -> None:
    one = (Message("user", "Hi"),)
    assert extend_key(conversation_key(SITE, ()), "user", hashlib.sha256(b"Hi").digest()) == (
        conversation_key(SITE, one)
    )


def test_ids_are_taken_once() -> None:
    store = ConversationStore()
    store.put(b"k", {"session_id": "s", "conversation_uuid": "c"})
    assert store.take(b"k") == {"session_id": "s", "conversation_uuid": "c"}
    assert store.take(b"k") is None


def test_the_store_is_bounded_by_count_least_recent_first() -> None:
    store = ConversationStore(max_entries=3)
    for index in range(5):
        store.put(bytes([index]), {"i": str(index)})
    assert len(store) == 3
    assert store.take(bytes([0])) is None
    assert store.take(bytes([4])) == {"i": "4"}


def test_the_store_is_bounded_by_age() -> None:
    clock = Clock()
    store = ConversationStore(max_age=10, clock=clock)
    store.put(b"old", {"i": "old"})
    clock.now = 6
    store.put(b"new", {"i": "new"})
    clock.now = 10.5
    assert store.take(b"old") is None
    assert store.take(b"new") == {"i": "new"}


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"max_entries": 0}, "max_entries"),
        ({"max_age": -1}, "max_age"),
        ({"max_age": True}, "max_age"),
    ],
)
def test_bad_bounds_are_refused(options: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigurationError, match=fragment):
        ConversationStore(**options)  # type: ignore[arg-type]


def test_concurrent_takers_get_a_conversation_at_most_once() -> None:
    store = ConversationStore()
    for index in range(200):
        store.put(index.to_bytes(2, "big"), {"i": str(index)})
    taken: list[dict[str, str]] = []
    lock = threading.Lock()

    def take_all() -> None:
        for index in range(200):
            ids = store.take(index.to_bytes(2, "big"))
            if ids is not None:
                with lock:
                    taken.append(ids)

    threads = [threading.Thread(target=take_all) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(int(ids["i"]) for ids in taken) == list(range(200))
