"""Every landing-page style carries the tokens where it says, and only there."""

from __future__ import annotations

import json
import re

import attrs
import pytest

from chatgptt.emulator import PAGE_STYLES, PageStyle
from chatgptt.emulator.pages import (
    DECOY_NONCE,
    DECOY_POST_ID,
    PageContext,
    challenge_page,
    origin_error_page,
    render_landing,
    status_page,
)

BASE = "http://127.0.0.1:4321"
PAGE = PageContext(
    base_url=BASE,
    ajax_url=BASE + "/wp-admin/admin-ajax.php",
    nonce="0a1b2c3d4e",
    image_nonce="9f8e7d6c5b",
    post_id="22",
    bot_id="7",
    front_page=True,
)
PARAMS = re.compile(r"var wpaicgParams = (\{.*?\});\n")
CHALLENGE_MARKERS = (
    "<title>Just a moment...</title>",
    '<div id="cf-please-wait">',
    '<p id="cf-spinner-please-wait">',
)


def params_of(page: str) -> dict[str, str]:
    found = PARAMS.search(page)
    assert found is not None
    parsed: dict[str, str] = json.loads(found.group(1))
    return parsed


def container_of(page: str, css_class: str) -> str:
    """The opening tag of the element whose class attribute is ``css_class``."""
    found = re.search(r"<div\b[^>]*\bclass=[\"']?" + re.escape(css_class) + r"\b[^>]*>", page)
    assert found is not None
    return found.group(0)


def attribute(tag: str, name: str) -> str | None:
    found = re.search(name + r"""\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""", tag)
    if found is None:
        return None
    return next(group for group in found.groups() if group is not None)


@pytest.mark.parametrize("style", [s for s in PAGE_STYLES if s != "no_chat"])
def test_params_script_in_every_chat_page(style: PageStyle) -> None:
    """``wpaicgParams`` gives the AJAX URL and ``search_nonce`` (= data-nonce) on chat pages."""
    params = params_of(render_landing(style, PAGE))
    assert params["ajax_url"] == PAGE.ajax_url
    assert params["search_nonce"] == PAGE.nonce


@pytest.mark.parametrize(
    ("style", "css_class"),
    [
        ("capture", "wpaicg-chat-shortcode"),
        ("single_quotes", "wpaicg-chat-shortcode"),
        ("unquoted", "wpaicg-chat-shortcode"),
        ("reordered", "wpaicg-chat-shortcode"),
        ("decoy", "wpaicg-chat-shortcode"),
        ("widget", "wpaicg-chatbox"),
    ],
)
def test_container_carries_tokens(style: PageStyle, css_class: str) -> None:
    page = render_landing(style, PAGE)
    tags = re.findall(r"<div\b[^>]*\bdata-nonce\b[^>]*>", page)
    real = [tag for tag in tags if DECOY_NONCE not in tag]
    assert len(real) == 1
    (tag,) = real
    assert css_class in tag
    assert attribute(tag, "data-nonce") == PAGE.nonce
    assert attribute(tag, "data-post-id") == PAGE.post_id
    assert attribute(tag, "data-bot-id") == PAGE.bot_id
    assert attribute(tag, "data-url") == BASE


def test_capture_layout() -> None:
    """One attribute a line, including the ``name = "value"`` forms."""
    tag = container_of(render_landing("capture", PAGE), "wpaicg-chat-shortcode")
    assert tag.startswith('<div class="wpaicg-chat-shortcode"\n     data-user-bg-color=')
    assert f'\n     data-nonce="{PAGE.nonce}"\n     data-post-id="22"\n' in tag
    assert '\n     data-typewriter-effect = ""\n' in tag
    assert tag.endswith('\n     data-type="shortcode"\n>')
    assert "<script id='wpaicg-init-js-extra'>" in render_landing("capture", PAGE)


def test_single_quotes() -> None:
    tag = container_of(render_landing("single_quotes", PAGE), "wpaicg-chat-shortcode")
    assert f"data-nonce='{PAGE.nonce}'" in tag
    assert "data-typewriter-effect = ''" in tag
    assert '"' not in tag


def test_unquoted_is_one_minified_line() -> None:
    tag = container_of(render_landing("unquoted", PAGE), "wpaicg-chat-shortcode")
    assert "\n" not in tag
    assert f" data-nonce={PAGE.nonce} data-post-id=22 " in tag
    assert f" data-url={BASE} " in tag
    assert ' data-feedback_success="Thank you for your feedback!" ' in tag  # spaces: quoted


def test_reordered() -> None:
    page = render_landing("reordered", PAGE)
    tag = re.search(r"<div data-post-id=[^>]*>", page)
    assert tag is not None
    text = tag.group(0)
    assert text.index("data-post-id") < text.index("data-nonce") < text.index("class=")
    assert text.endswith('class="wpaicg-chat-shortcode"\n>')


def test_widget() -> None:
    tag = container_of(render_landing("widget", PAGE), "wpaicg-chatbox")
    assert attribute(tag, "data-type") == "widget"
    assert "wpaicg-chat-shortcode" not in render_landing("widget", PAGE)


def test_params_only() -> None:
    """No data-nonce or data-post-id anywhere; nonce in wpaicgParams, post id in body class."""
    page = render_landing("params_only", PAGE)
    assert "data-nonce" not in page
    assert "data-post-id" not in page
    assert params_of(page)["search_nonce"] == PAGE.nonce
    body = re.search(r'<body class="([^"]*)"', page)
    assert body is not None
    assert "page-id-22" in body.group(1).split()
    assert "wpaicg-chat-shortcode" in page


def test_decoy_comes_first() -> None:
    """A first-match regex picks the decoy; the real container comes after it."""
    page = render_landing("decoy", PAGE)
    first_nonce = re.search(r'data-nonce="(.*?)"', page)
    first_post = re.search(r'data-post-id="(.*?)"', page)
    assert first_nonce is not None
    assert first_post is not None
    assert (first_nonce.group(1), first_post.group(1)) == (DECOY_NONCE, DECOY_POST_ID)
    decoy_at = page.index(DECOY_NONCE)
    assert page.index(f'data-nonce="{PAGE.nonce}"') > decoy_at
    comment = re.search(r"<!--(.*?)-->", page[page.index("entry-content") :], re.DOTALL)
    assert comment is not None
    assert DECOY_NONCE in comment.group(1)
    script = re.search(r"<script>var wpaicgTemplate = '(.*?)';</script>", page)
    assert script is not None
    assert DECOY_NONCE in script.group(1)


def test_no_chat() -> None:
    page = render_landing("no_chat", PAGE)
    assert "data-nonce" not in page
    assert "wpaicgParams" not in page
    assert PAGE.nonce not in page
    assert "<html" in page
    assert "There is no chat on this page." in page


@pytest.mark.parametrize("front_page", [True, False])
def test_page_urls_use_base_url(front_page: bool) -> None:
    for style in PAGE_STYLES:
        page = render_landing(style, attrs.evolve(PAGE, front_page=front_page))
        assert "127.0.0.1:8080" not in page
        assert f'href="{BASE}/' in page


def test_challenge_page_has_markers() -> None:
    page = challenge_page("8a1b2c3d4e5f6a7b-AMS")
    assert all(marker in page for marker in CHALLENGE_MARKERS)


def test_error_pages_are_not_challenges() -> None:
    for page in (status_page(503, "Service Unavailable"), origin_error_page(521, "h", "r")):
        assert not any(marker in page for marker in CHALLENGE_MARKERS)
    assert "521: Web server is down" in origin_error_page(521, "example.com", "r")
