"""AIPKit token extraction: the captured inline and popup pages, hand-made pages, and the
property that ``data-config`` is found in any page, whatever the attribute's quoting."""

from __future__ import annotations

import html
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stages.aipkit.tokens import (
    AipkitTokens,
    ExtractAipkitTokens,
    chat_configs,
    extract_aipkit_tokens,
    recognises_page,
)
from stages.classic.tokens import recognises_page as recognises_classic_page
from stages.config import Settings, Site
from stages.core import Call, Exchange, Page
from stages.errors import BotProtectionError, TokensNotFoundError
from tests.conftest import VECTORS

AIPKIT = VECTORS / "aipkit"
CAPTURE_URL = "http://127.0.0.1:8080/?page_id=6"
FALLBACK = "http://127.0.0.1:8080/wp-admin/admin-ajax.php"
PAGE_URL = "https://site.example/chat/"


def capture(name: str) -> str:
    return (AIPKIT / f"{name}.body").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", ["landing_inline", "landing_popup"])
def test_captured_pages_give_the_tokens_that_worked(name: str) -> None:
    tokens = extract_aipkit_tokens(
        capture(name), CAPTURE_URL, fallback_ajax_url="http://x.invalid/"
    )
    assert tokens == AipkitTokens(
        nonce="ef9a0a6714",
        post_id="6",
        bot_id="5",
        ajax_url="http://127.0.0.1:8080/wp-admin/admin-ajax.php",
        page_url=CAPTURE_URL,
        site_url="http://127.0.0.1:8080",
    )
    assert tokens.dialect == "aipkit"
    assert tokens.streaming is None, "2.4.71 no longer says (streamEnabled went in 2.4.1)"


def test_the_captured_config_decodes_to_what_the_plugin_put_in() -> None:
    """The page reader undoes esc_attr, JSON the slashes: the config is the captured one."""
    [chat] = chat_configs(capture("landing_inline"))
    expected = json.loads((AIPKIT / "landing_inline.data-config.json").read_text("utf-8"))
    assert chat.config == expected


@pytest.mark.parametrize(
    ("name", "aipkit", "classic"),
    [
        ("aipkit/landing_inline", True, False),
        ("aipkit/landing_popup", True, False),
        ("classic/landing", False, True),
        ("classic/landing_front_page", False, True),
    ],
)
def test_each_dialect_recognises_its_own_pages_only(name: str, aipkit: bool, classic: bool) -> None:
    page = Page(url=CAPTURE_URL, status=200, html=(VECTORS / f"{name}.body").read_text("utf-8"))
    assert (recognises_page(page), recognises_classic_page(page)) == (aipkit, classic)


def element(config: dict[str, Any], *, cls: str = "aipkit_chat_container", extra: str = "") -> str:
    encoded = html.escape(json.dumps(config).replace("/", "\\/"), quote=True)
    return f"<div class=\"{cls}\" {extra} data-config='{encoded}'></div>"


CONFIG = {"botId": 42, "ajaxUrl": "/wp-admin/admin-ajax.php", "nonce": "abcdef0123", "postId": 7}


def test_a_relative_ajax_url_is_resolved_against_the_page() -> None:
    tokens = extract_aipkit_tokens(element(CONFIG), PAGE_URL, fallback_ajax_url=FALLBACK)
    assert tokens.ajax_url == "https://site.example/wp-admin/admin-ajax.php"
    assert (tokens.bot_id, tokens.post_id, tokens.nonce) == ("42", "7", "abcdef0123")


def test_the_elements_data_bot_id_wins_as_in_the_plugins_script() -> None:
    page = element(CONFIG, extra='data-bot-id="43"')
    assert extract_aipkit_tokens(page, PAGE_URL, fallback_ajax_url=FALLBACK).bot_id == "43"


def test_a_missing_ajax_url_or_post_id_falls_back() -> None:
    config = {"botId": 42, "nonce": "abcdef0123"}
    tokens = extract_aipkit_tokens(element(config), PAGE_URL, fallback_ajax_url=FALLBACK)
    assert (tokens.ajax_url, tokens.post_id) == (FALLBACK, "0")


def test_stream_enabled_of_release_2_3_is_reported() -> None:
    page = element({**CONFIG, "streamEnabled": False})
    assert extract_aipkit_tokens(page, PAGE_URL, fallback_ajax_url=FALLBACK).streaming is False


def test_a_page_with_several_bots_gives_the_first_or_the_one_asked_for() -> None:
    page = element(CONFIG) + element({**CONFIG, "botId": 99, "nonce": "99999aaaaa"})
    first = extract_aipkit_tokens(page, PAGE_URL, fallback_ajax_url=FALLBACK)
    chosen = extract_aipkit_tokens(page, PAGE_URL, fallback_ajax_url=FALLBACK, bot_id="99")
    assert (first.bot_id, chosen.bot_id, chosen.nonce) == ("42", "99", "99999aaaaa")
    with pytest.raises(TokensNotFoundError, match="bots: 42, 99"):
        extract_aipkit_tokens(page, PAGE_URL, fallback_ajax_url=FALLBACK, bot_id="7")


def test_a_renamed_wrapper_is_found_by_its_config() -> None:
    page = element(CONFIG, cls="my-theme-chat")
    assert extract_aipkit_tokens(page, PAGE_URL, fallback_ajax_url=FALLBACK).bot_id == "42"


def test_decoys_in_scripts_and_comments_are_not_chats() -> None:
    decoy = element({**CONFIG, "botId": 1, "nonce": "decoy00000"})
    page = f"<!-- {decoy} --><script>var t = `{decoy}`;</script>" + element(CONFIG)
    assert extract_aipkit_tokens(page, PAGE_URL, fallback_ajax_url=FALLBACK).nonce == "abcdef0123"


@pytest.mark.parametrize(
    ("page", "missing"),
    [
        ("<p>no chat here</p>", ("AIPKit chat",)),
        ("<div class='aipkit_chat_container' data-config='{not json'></div>", ("data-config",)),
        (element({"botId": 42, "ajaxUrl": "/a"}), ("nonce",)),
        (element({"nonce": "abcdef0123"}), ("bot id",)),
        (element({**CONFIG, "botId": 0}), ("bot id",)),
        (element({**CONFIG, "nonce": "<script>"}), ("nonce",)),
    ],
)
def test_what_is_missing_is_named(page: str, missing: tuple[str, ...]) -> None:
    with pytest.raises(TokensNotFoundError) as info:
        extract_aipkit_tokens(page, PAGE_URL, fallback_ajax_url=FALLBACK)
    assert info.value.missing == missing
    assert PAGE_URL in str(info.value)


def test_a_challenge_page_is_bot_protection() -> None:
    with pytest.raises(BotProtectionError):
        extract_aipkit_tokens(
            "<title>Just a moment...</title>", PAGE_URL, fallback_ajax_url=FALLBACK, status=403
        )


async def test_the_stage_reads_the_page_and_the_bot_option() -> None:
    page = Page(url=PAGE_URL, status=200, html=element(CONFIG) + element({**CONFIG, "botId": 9}))
    call = Call(
        request_id="t",
        model="gpt-4o",
        messages=(),
        settings=Settings(site=Site.at("https://site.example")),
        session=None,  # type: ignore[arg-type]  # a pure stage never touches it
        options={"bot_id": 9},
    )
    result = await ExtractAipkitTokens()(Exchange(call=call, page=page))
    assert result.tokens is not None
    assert result.tokens.bot_id == "9"


# --- the property ----------------------------------------------------------------------------

texts = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30)


@st.composite
def pages(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """A page with an AIPKit chat element among decoys, its config encoded as the plugin
    does (JSON with ``\\/``, HTML-escaped) and quoted in any legal way."""
    config: dict[str, Any] = {
        "botId": draw(st.integers(1, 10**9)),
        "ajaxUrl": "https://site.example/" + draw(st.from_regex(r"[a-z/_-]{0,20}", fullmatch=True)),
        "nonce": draw(st.from_regex(r"[0-9a-f]{10}", fullmatch=True)),
        "postId": draw(st.integers(0, 10**6)),
        "text": {"greeting": draw(texts)},  # anything the site owner wrote
    }
    encoded = json.dumps(config, ensure_ascii=draw(st.booleans())).replace("/", "\\/")
    quote = draw(st.sampled_from(["'", '"']))
    value = html.escape(encoded, quote=True)
    if draw(st.booleans()):  # entities for the quotes only, as esc_attr writes them
        value = encoded.replace("&", "&amp;").replace('"', "&quot;").replace("'", "&#039;")
    cls = draw(st.sampled_from(["aipkit_chat_container", "aipkit_popup_wrapper x"]))
    spacing = draw(st.sampled_from(["", " ", "\n  "]))
    chat = f'<div class="{cls}" data-config{spacing}={spacing}{quote}{value}{quote}>'
    decoys = draw(
        st.lists(
            st.sampled_from(
                [
                    "<p>Hello &amp; welcome</p>",
                    "<!-- data-config='{\"botId\":1}' -->",
                    "<script>var c = \"<div class='aipkit_chat_container' "
                    "data-config='x'>\";</script>",
                    "<div data-config='[1,2]'></div>",
                    "<img src=x.png alt='a > b'>",
                ]
            ),
            max_size=5,
        )
    )
    split = draw(st.integers(0, len(decoys)))
    return "".join([*decoys[:split], chat, *decoys[split:]]), config


@settings(deadline=None, max_examples=200)
@given(pages())
def test_data_config_is_found_in_any_page_and_quoting(case: tuple[str, dict[str, Any]]) -> None:
    page, config = case
    tokens = extract_aipkit_tokens(page, PAGE_URL, fallback_ajax_url=FALLBACK)
    assert tokens.bot_id == str(config["botId"])
    assert tokens.nonce == config["nonce"]
    assert tokens.ajax_url == config["ajaxUrl"]
    assert tokens.post_id == str(config["postId"])
