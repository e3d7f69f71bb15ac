"""Dialects: the registry a provider speaks, and which dialect a page carries."""

from __future__ import annotations

import pytest

from stages import AIPKIT, CLASSIC, standard_dialects
from stages.core import Page, Pipeline
from stages.dialects import Dialect, Dialects
from stages.errors import BotProtectionError, ChatNotFoundError, ConfigurationError
from tests.conftest import VECTORS


def page(name: str) -> Page:
    return Page(url="http://127.0.0.1:8080/", status=200, html=(VECTORS / name).read_text("utf-8"))


@pytest.mark.parametrize(
    ("name", "dialect"),
    [
        ("aipkit/landing_inline.body", "aipkit"),
        ("aipkit/landing_popup.body", "aipkit"),
        ("classic/landing.body", "classic"),
        ("classic/landing_front_page.body", "classic"),
    ],
)
def test_the_captured_pages_pick_their_dialect(name: str, dialect: str) -> None:
    assert standard_dialects().detect(page(name)).name == dialect


def test_a_page_without_a_chat_names_the_url_and_the_dialects() -> None:
    with pytest.raises(ChatNotFoundError) as info:
        standard_dialects().detect(Page(url="https://x.test/about", status=200, html="<p>Hi</p>"))
    assert "https://x.test/about" in str(info.value)
    assert "aipkit, classic" in str(info.value)
    assert info.value.missing == ("chat",)


def test_a_challenge_page_is_bot_protection_not_no_chat() -> None:
    challenge = Page(url="https://x.test/", status=403, html="<title>Just a moment...</title>")
    with pytest.raises(BotProtectionError):
        standard_dialects().detect(challenge)


def test_the_standard_dialects_declare_their_stages() -> None:
    assert AIPKIT.pipeline.names == ("tokens", "payload", "transport", "decode")
    assert CLASSIC.pipeline.names == ("tokens", "payload", "transport", "decode")
    assert AIPKIT.refresh_nonce is not None, "AIPKit renews a nonce without the page"
    assert CLASSIC.refresh_nonce is None, "classic fetches the page again"
    assert [stage.name for stage in AIPKIT.split()[0]] == ["tokens"]


def test_the_registry_replaces_adds_and_checks_names() -> None:
    dialects = standard_dialects()
    renamed = Pipeline(dialects["classic"].pipeline.stages, name="mine")
    edited = dialects.with_pipeline("classic", renamed)
    assert edited["classic"].pipeline.name == "mine"
    assert dialects["classic"].pipeline.name == "classic", "a value: the original is unchanged"
    third = Dialect(name="third", pipeline=CLASSIC.pipeline, recognises=lambda page: True)
    assert dialects.add(third).names == ("aipkit", "classic", "third")
    assert dialects.add(third, first=True).names == ("third", "aipkit", "classic")
    assert dialects.check_choice("auto") == "auto"
    with pytest.raises(ConfigurationError, match="one of aipkit, classic"):
        dialects.check_choice("modern")
    with pytest.raises(ConfigurationError, match="no dialect named 'modern'"):
        dialects["modern"]
    with pytest.raises(ConfigurationError, match="two dialects"):
        Dialects([CLASSIC, CLASSIC])
    with pytest.raises(ConfigurationError, match="identifier other than 'auto'"):
        Dialect(name="auto", pipeline=CLASSIC.pipeline, recognises=lambda page: True)


def test_the_cache_key_names_the_choice_and_the_token_options() -> None:
    dialects = standard_dialects()
    page = "https://x.test/"
    assert dialects.cache_key(page, "auto", {}) == page
    assert dialects.cache_key(page, "auto", {"temperature": 1}) == page
    assert dialects.cache_key(page, "aipkit", {}) == page + "\ndialect=aipkit"
    assert dialects.cache_key(page, "auto", {"bot_id": 7}) == page + "\nbot_id=7"
    assert dialects.cache_key(page, "auto", {"bot_id": 7}) != dialects.cache_key(
        page, "auto", {"bot_id": 8}
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"client_id": "not valid!"}, "client_id must be 1 to 64 letters or digits"),
        ({"bot_id": 0}, "bot_id must be a positive number"),
        ({"bot_id": True}, "bot_id must be a positive number"),
    ],
)
def test_each_dialect_checks_the_options_it_reads(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        standard_dialects().check_options(options)
    standard_dialects().check_options({"client_id": "Ab3dE5gH9k", "bot_id": "27623"})
