"""Nonces look like WordPress's and expire the way the emulator promises."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from chatgptt.emulator import NonceBook
from chatgptt.emulator.nonces import IMAGE_NONCE_ACTION


@settings(deadline=None)
@given(st.text(), st.text())
def test_nonce_shape(secret: str, action: str) -> None:
    assert re.fullmatch(r"[0-9a-f]{10}", NonceBook(secret).create(action))


def test_same_secret_same_nonces() -> None:
    assert NonceBook("s").current == NonceBook("s").current
    assert NonceBook().current != NonceBook().current  # random secrets


def test_actions_differ() -> None:
    book = NonceBook("s")
    assert book.create(IMAGE_NONCE_ACTION) != book.current
    assert not book.verify(book.create(IMAGE_NONCE_ACTION))


def test_rotation() -> None:
    book = NonceBook("s")
    first = book.current
    assert book.verify(first)
    assert not book.verify("")
    assert not book.verify(None)
    assert not book.verify("0123456789")
    assert not book.verify("café☕")
    second = book.rotate(keep_previous=True)
    assert book.current == second != first
    assert book.verify(first)
    assert book.verify(second)
    third = book.rotate()
    assert not book.verify(first)
    assert not book.verify(second)
    assert book.verify(third)
    book.rotate(keep_previous=True)
    assert book.verify(third)
    assert not book.verify(second)
