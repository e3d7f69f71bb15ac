"""Token extraction: the captured landing pages, hand-made pages, and properties."""

from __future__ import annotations

import html
import json
import time
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatgptt.emulator.wordpress import php_json_encode
from stages.classic.tokens import AIPKIT_HINT, ClassicTokens, ExtractTokens, extract_tokens
from stages.config import Settings, Site
from stages.core import Call, Exchange, Page, Tokens
from stages.errors import BotProtectionError, ConfigurationError, TokensNotFoundError
from stages.protection import CHALLENGE_MARKERS

VECTORS = Path(__file__).resolve().parents[2] / "vectors"
PAGE_URL = "https://chatgptt.me/chat"
FALLBACK = "https://chatgptt.me/wp-admin/admin-ajax.php"
CAPTURE_URL = "http://127.0.0.1:8080/?page_id=4"


def extract(page: str, url: str = PAGE_URL) -> Tokens:
    return extract_tokens(page, url, fallback_ajax_url=FALLBACK)


def container(attributes: str, cls: str = "wpaicg-chat-shortcode") -> str:
    return f'<div class="{cls}" {attributes}></div>'


def page(*body: str, head: str = "", body_class: str = "") -> str:
    return (
        f"<!DOCTYPE html><html><head><title>t</title>{head}</head>"
        f'<body class="{body_class}">{"".join(body)}</body></html>'
    )


def params_script(params: dict[str, Any], quote: str = "'") -> str:
    return (
        f"<script id={quote}wpaicg-init-js-extra{quote}>\n"
        f"var wpaicgParams = {php_json_encode(params)};\n</script>"
    )


# --- the captures ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "url"),
    [("landing", CAPTURE_URL), ("landing_front_page", "http://127.0.0.1:8080/")],
)
def test_captured_landing_pages_give_the_capture_tokens(name: str, url: str) -> None:
    """Both captured classic landing pages yield the nonce, post id and endpoint that worked."""
    body = (VECTORS / "classic" / f"{name}.body").read_text(encoding="utf-8")
    tokens = extract_tokens(body, url, fallback_ajax_url="http://elsewhere.invalid/ajax")
    assert tokens == ClassicTokens(
        nonce="18d499d351",
        post_id="4",
        bot_id="0",
        ajax_url="http://127.0.0.1:8080/wp-admin/admin-ajax.php",
        page_url=url,
        site_url="http://127.0.0.1:8080",
        streaming=True,
        chat_type="shortcode",
        source="container",
    )
    assert tokens.action == "wpaicg_chat_shortcode_message"
    assert tokens.chatbot_identity == "shortcode"


@pytest.mark.parametrize("name", ["landing_inline", "landing_popup"])
def test_aipkit_pages_are_named_as_such(name: str) -> None:
    """A page of plugin 2.3+ (AIPKit) fails with a hint naming that dialect."""
    body = (VECTORS / "aipkit" / f"{name}.body").read_text(encoding="utf-8")
    with pytest.raises(TokensNotFoundError) as caught:
        extract_tokens(body, "http://127.0.0.1:8080/", fallback_ajax_url=FALLBACK)
    assert caught.value.missing == ("nonce",)
    assert "AIPKit" in str(caught.value)
    assert AIPKIT_HINT in str(caught.value)


def test_aipkit_is_recognised_by_its_data_config_alone() -> None:
    """An element with an AIPKit ``data-config`` (botId, ajaxUrl, nonce) marks the dialect."""
    config = html.escape(json.dumps({"botId": 5, "ajaxUrl": "/x", "nonce": "ef9a0a6714"}))
    with pytest.raises(TokensNotFoundError, match="AIPKit"):
        extract(page(f'<div id="chat" data-config="{config}"></div>'))


# --- hand-made pages: the container ----------------------------------------------------------


@pytest.mark.parametrize(
    "attributes",
    [
        'data-nonce="5e2498d71a" data-post-id="22" data-bot-id="0"',
        "data-nonce='5e2498d71a' data-post-id='22'",
        "data-nonce=5e2498d71a data-post-id=22",
        'data-post-id = "22"\n     data-nonce =\n"5e2498d71a"',
        'data-post-id="&#50;2" data-nonce="&#x35;e2498d71a"',
        'DATA-NONCE="5e2498d71a" Data-Post-Id="22"',
        'data-nonce=" 5e2498d71a " data-post-id="22 "',
        'data-nonce="5e2498d71a"data-post-id="22"',
    ],
    ids=[
        "double",
        "single",
        "unquoted",
        "spaces-around-equals",
        "entities",
        "upper-case-names",
        "padded-values",
        "no-space-between",
    ],
)
def test_container_attributes_in_any_spelling(attributes: str) -> None:
    """Quotes, spacing, entities and name case do not matter."""
    tokens = extract(page(container(attributes)))
    assert (tokens.nonce, tokens.post_id, tokens.bot_id) == ("5e2498d71a", "22", "0")
    assert tokens.source == "container"


def test_unquoted_attributes_on_a_minified_page() -> None:
    """A minified page with unquoted values and the class among others."""
    minified = (
        "<html><body><div class=wpaicg-chat-shortcode data-nonce=5e2498d71a data-post-id=22 "
        "data-url=https://chatgptt.me data-bot-id=0 data-type=shortcode></div></body></html>"
    )
    tokens = extract(minified)
    assert (tokens.nonce, tokens.post_id, tokens.site_url) == (
        "5e2498d71a",
        "22",
        "https://chatgptt.me",
    )


def test_the_class_must_be_a_whole_class_name() -> None:
    """``wpaicg-chat-shortcode-content`` and friends are not the container."""
    decoys = (
        '<div class="wpaicg-chat-shortcode-content" data-nonce="bad0000001" data-post-id="9">'
        '<ul class="wpaicg-chat-shortcode-messages" data-nonce="bad0000002" data-post-id="9">'
        '<div class="xwpaicg-chatbox" data-nonce="bad0000003" data-post-id="9">'
        '<div class="wpaicg-chatbox\xa0x" data-nonce="bad0000004" data-post-id="9">'
    )
    real = container('data-nonce="5e2498d71a" data-post-id="22"', cls="a wpaicg-chat-shortcode b")
    assert extract(page(decoys, real)).nonce == "5e2498d71a"
    with pytest.raises(TokensNotFoundError):
        extract(page(decoys))


def test_the_first_container_with_a_nonce_wins() -> None:
    """A container without a nonce is passed over; of two with one, the first counts."""
    first = container('data-post-id="1" data-bot-id="7"')
    second = container('data-nonce="aaaaaaaaaa" data-post-id="2" data-bot-id="8"')
    third = container('data-nonce="bbbbbbbbbb" data-post-id="3"')
    tokens = extract(page(first, second, third))
    assert (tokens.nonce, tokens.post_id, tokens.bot_id) == ("aaaaaaaaaa", "2", "8")


@pytest.mark.parametrize(
    "decoy",
    [
        '<script>var t = \'<div class="wpaicg-chat-shortcode" data-nonce="decoy00000" '
        'data-post-id="99">\';</script>',
        '<script>document.write("data-nonce=decoy00000 data-post-id=99")</script>',
        '<style>.x::after { content: \'<div class="wpaicg-chatbox" data-nonce="decoy00000"\' }'
        "</style>",
        '<!-- a > b <div class="wpaicg-chat-shortcode" data-nonce="decoy00000" data-post-id="9"> '
        "-->",
        '<span title=\'<div class="wpaicg-chat-shortcode" data-nonce="decoy00000">\'></span>',
        '<textarea><div class="wpaicg-chat-shortcode" data-nonce="decoy00000"></textarea>',
        'data-nonce="decoy00000" data-post-id="99" as plain text',
        '<!-- -- > <div class="wpaicg-chat-shortcode" data-nonce="decoy00000"> -->',
    ],
    ids=["script", "script-text", "style", "comment", "attribute", "textarea", "text", "odd"],
)
def test_text_that_looks_like_a_container_does_not_fool_it(decoy: str) -> None:
    """Scripts, styles, comments, attribute values and text are not tags."""
    real = container('data-nonce="5e2498d71a" data-post-id="22"')
    tokens = extract(page(decoy, real))
    assert (tokens.nonce, tokens.post_id) == ("5e2498d71a", "22")


@pytest.mark.parametrize("comment", ["<!-->", "<!--->", "<!-- x --!>", "<!---->"])
def test_short_comments_end_where_a_browser_ends_them(comment: str) -> None:
    """``<!-->`` and ``<!--->`` are whole comments: the tag after them is real."""
    body = page(comment, container('data-nonce="5e2498d71a" data-post-id="22"'))
    assert extract(body).nonce == "5e2498d71a"


def test_a_script_that_mentions_its_end_tag_in_another_case_still_ends() -> None:
    """``</SCRIPT >`` closes a script (end tags are case-insensitive)."""
    body = page(
        '<script>var s = "<div class=wpaicg-chatbox data-nonce=decoy00000>";</SCRIPT >',
        container('data-nonce="5e2498d71a" data-post-id="22"'),
    )
    assert extract(body).nonce == "5e2498d71a"


def test_a_repeated_attribute_keeps_its_first_value() -> None:
    """As in a browser, the first of two same-named attributes counts."""
    tokens = extract(
        page(container('data-nonce="aaaaaaaaaa" data-nonce="bbbbbbbbbb" data-post-id=1'))
    )
    assert tokens.nonce == "aaaaaaaaaa"


@pytest.mark.parametrize(
    ("cls", "attributes", "chat_type", "action"),
    [
        (
            "wpaicg-chat-shortcode",
            'data-type="shortcode"',
            "shortcode",
            "wpaicg_chat_shortcode_message",
        ),
        ("wpaicg-chatbox", "", "widget", "wpaicg_chatbox_message"),
        ("wpaicg-chat-shortcode", 'data-type="widget"', "widget", "wpaicg_chatbox_message"),
    ],
)
def test_chat_type_comes_from_data_type_or_the_widget_class(
    cls: str, attributes: str, chat_type: str, action: str
) -> None:
    """``data-type="widget"`` or the ``wpaicg-chatbox`` class make a widget."""
    tokens = extract(page(container(f'data-nonce="5e2498d71a" data-post-id=2 {attributes}', cls)))
    assert (tokens.chat_type, tokens.action) == (chat_type, action)


@pytest.mark.parametrize(
    ("bot", "expected", "identity"),
    [
        ('data-bot-id="123"', "123", "custom_bot_123"),
        ('data-bot-id="0"', "0", "shortcode"),
        ("", "0", "shortcode"),
        ('data-bot-id="abc"', "0", "shortcode"),
        ('data-bot-id=""', "0", "shortcode"),
    ],
)
def test_bot_id_defaults_to_zero(bot: str, expected: str, identity: str) -> None:
    """A custom bot's id is taken; a missing or non-numeric one means the default bot."""
    tokens = extract(page(container(f'data-nonce="5e2498d71a" data-post-id="2" {bot}')))
    assert (tokens.bot_id, tokens.chatbot_identity) == (expected, identity)


@pytest.mark.parametrize(
    ("data_url", "page_url", "expected"),
    [
        ('data-url="https://chatgptt.me"', PAGE_URL, "https://chatgptt.me"),
        ('data-url="https://other.example/blog"', PAGE_URL, "https://other.example/blog"),
        ("", "https://chatgptt.me/chat?x=1", "https://chatgptt.me"),
        ('data-url="javascript:alert(1)"', PAGE_URL, "https://chatgptt.me"),
        ("", "https://user:secret@chatgptt.me:8443/chat", "https://chatgptt.me:8443"),
    ],
)
def test_site_url_from_data_url_else_the_page_origin(
    data_url: str, page_url: str, expected: str
) -> None:
    """``data-url`` when it is an http(s) URL, else the page's origin (without credentials)."""
    body = page(container(f'data-nonce="5e2498d71a" data-post-id="2" {data_url}'))
    assert extract(body, page_url).site_url == expected


# --- hand-made pages: the fallbacks ----------------------------------------------------------


def test_wpaicg_params_gives_the_nonce_when_the_container_has_none() -> None:
    """``search_nonce`` stands in for a missing ``data-nonce``; escaped slashes unescape."""
    script = params_script(
        {"ajax_url": "https://chatgptt.me/wp-admin/admin-ajax.php", "search_nonce": "5e2498d71a"}
    )
    assert "\\/" in script
    tokens = extract(page(container('data-post-id="22"'), script))
    assert tokens.nonce == "5e2498d71a"
    assert tokens.source == "wpaicgParams"
    assert tokens.ajax_url == "https://chatgptt.me/wp-admin/admin-ajax.php"


@pytest.mark.parametrize(
    ("ajax_url", "expected"),
    [
        ("https://chatgptt.me/rizq", "https://chatgptt.me/rizq"),
        ("/rizq", "https://chatgptt.me/rizq"),
        ("//cdn.chatgptt.me/ajax", "https://cdn.chatgptt.me/ajax"),
        ("javascript:alert(1)", FALLBACK),
        ("ftp://chatgptt.me/x", FALLBACK),
        ("//", FALLBACK),
        ("http://", FALLBACK),
        ("", FALLBACK),
        (42, FALLBACK),
    ],
)
def test_ajax_url_from_wpaicg_params(ajax_url: object, expected: str) -> None:
    """The page's ``ajax_url`` (joined with the page URL) if http(s), else the fallback."""
    script = params_script({"ajax_url": ajax_url, "search_nonce": "5e2498d71a"})
    tokens = extract(page(container('data-nonce="5e2498d71a" data-post-id="22"'), script))
    assert tokens.ajax_url == expected


def test_wpaicg_params_trailing_code_and_other_spellings() -> None:
    """The object is decoded on its own; what follows it does not matter."""
    script = (
        '<script>window.wpaicgParams={"ajax_url":"\\/a","search_nonce":"abc123"};'
        "console.log(1)</script>"
    )
    tokens = extract(page(container("data-post-id=5"), script))
    assert (tokens.nonce, tokens.ajax_url) == ("abc123", "https://chatgptt.me/a")


def test_wpaicg_params_in_a_comment_or_an_external_script_is_ignored() -> None:
    """Only an inline script's ``wpaicgParams`` counts."""
    commented = '<!-- <script>var wpaicgParams = {"search_nonce":"decoy00000"};</script> -->'
    with pytest.raises(TokensNotFoundError) as caught:
        extract(page(container("data-post-id=5"), commented))
    assert caught.value.missing == ("nonce",)


def test_an_undecodable_wpaicg_params_is_skipped_for_a_later_one() -> None:
    """A JavaScript (non-JSON) assignment does not hide a later JSON one."""
    scripts = (
        "<script>var wpaicgParams = {ajax_url: x};</script>"
        '<script>var wpaicgParams = {"search_nonce":"abc123"};</script>'
    )
    assert extract(page(container("data-post-id=5"), scripts)).nonce == "abc123"


@pytest.mark.parametrize(
    ("body_class", "head", "expected"),
    [
        ("page-template-default page page-id-4 singular", "", "4"),
        ("post-template-default single postid-17", "", "17"),
        ("", "<link rel='shortlink' href='https://chatgptt.me/?p=31' />", "31"),
        ("home", "<link rel=shortlink href='https://chatgptt.me/?page_id=8'>", "8"),
        ("page-id-4", "<link rel='shortlink' href='https://chatgptt.me/?p=31' />", "4"),
    ],
)
def test_post_id_fallbacks(body_class: str, head: str, expected: str) -> None:
    """No ``data-post-id``: the body class, then the shortlink."""
    body = page(container('data-nonce="5e2498d71a"'), head=head, body_class=body_class)
    assert extract(body).post_id == expected


def test_a_non_numeric_post_id_falls_back() -> None:
    """A ``data-post-id`` that is not digits is ignored in favour of the body class."""
    body = page(container('data-nonce="5e2498d71a" data-post-id="x1"'), body_class="page-id-4")
    assert extract(body).post_id == "4"


@pytest.mark.parametrize(
    "nonce", ["{{nonce}}", "", "5e2498d71a!", "a" * 65, "5e24 98d71a", "ñ2498d71a"]
)
def test_a_nonce_that_is_not_a_wordpress_nonce_is_not_taken(nonce: str) -> None:
    """Template junk or odd characters are not sent as a nonce."""
    body = page(container(f'data-nonce="{nonce}" data-post-id="22"'))
    with pytest.raises(TokensNotFoundError) as caught:
        extract(body)
    assert caught.value.missing == ("nonce",)


# --- failures -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "missing"),
    [
        (page("<p>Hello</p>"), ("nonce", "post id")),
        (page(container('data-post-id="22"')), ("nonce",)),
        (page(container('data-nonce="5e2498d71a"')), ("post id",)),
        ("", ("nonce", "post id")),
    ],
)
def test_missing_tokens_are_named(body: str, missing: tuple[str, ...]) -> None:
    """The error names exactly what is missing and the page, and is a RuntimeError."""
    with pytest.raises(TokensNotFoundError) as caught:
        extract(body, "https://chatgptt.me/chat")
    error = caught.value
    assert error.missing == missing
    assert isinstance(error, RuntimeError)
    assert "https://chatgptt.me/chat" in str(error)
    for what in missing:
        assert f"no {what}" in str(error)


def test_missing_token_messages_hint_at_the_container() -> None:
    """A container without a nonce is mentioned, so the user knows the page is close."""
    with pytest.raises(TokensNotFoundError, match="container has no valid data-nonce"):
        extract(page(container('data-post-id="22"')))


def test_credentials_in_the_page_url_do_not_reach_the_message() -> None:
    """The page URL is redacted in the error."""
    with pytest.raises(TokensNotFoundError) as caught:
        extract("<p>nothing</p>", "https://user:secret@chatgptt.me/")
    assert "secret" not in str(caught.value)


@pytest.mark.parametrize("marker", CHALLENGE_MARKERS)
def test_challenge_pages_are_bot_protection(marker: str) -> None:
    """A challenge page is reported as bot protection, not as missing tokens."""
    body = f"<!DOCTYPE html><html><head>{marker}</head><body>checking…</body></html>"
    with pytest.raises(BotProtectionError) as caught:
        extract_tokens(body, PAGE_URL, fallback_ajax_url=FALLBACK, status=200)
    assert caught.value.marker == marker
    assert caught.value.status == 200
    assert "bot protection" in str(caught.value)


def test_a_chat_page_that_mentions_a_marker_is_still_a_chat_page() -> None:
    """Markers only explain a failure; a page with tokens is used."""
    body = page(
        "<p>We use cf-browser-verification.</p>",
        container('data-nonce="5e2498d71a" data-post-id="22"'),
    )
    assert extract(body).nonce == "5e2498d71a"


@pytest.mark.parametrize(
    "unit",
    ["<a ", "<!--", "<a b='", "</a", "<a b=", "<a b c=d ", "<x", "<script></scrip", "<"],
)
def test_malformed_pages_are_read_in_linear_time(unit: str) -> None:
    """Pathological input (quadratic for Python 3.11's html.parser) stays linear: four times
    the page costs about four times as much, not sixteen. Judged by a ratio measured in this
    run (fastest of three tries each), not by a wall-clock bound a loaded machine could miss."""

    def cost(repeats: int) -> float:
        body = unit * repeats
        tries = []
        for _ in range(3):
            started = time.perf_counter()
            with pytest.raises(TokensNotFoundError):
                extract(body)
            tries.append(time.perf_counter() - started)
        return min(tries)

    small, large = cost(10_000), cost(40_000)
    assert large / small < 9.0, (
        f"4x the page cost {large / small:.1f}x ({small:.4f} s, {large:.4f} s)"
    )


# --- the stage -------------------------------------------------------------------------------


def make_exchange(page_value: Page | None) -> Exchange:
    call = Call(
        request_id="test",
        model="gpt-4o",
        messages=(),
        settings=Settings(site=Site.at("https://chatgptt.me")),
        session=None,  # type: ignore[arg-type]  # a pure stage never touches it
    )
    return Exchange(call=call, page=page_value)


async def test_the_stage_fills_in_the_tokens() -> None:
    """``ExtractTokens`` reads the exchange's page; the site's endpoint is the fallback."""
    body = page(container('data-nonce="5e2498d71a" data-post-id="22"'))
    exchange = make_exchange(Page(url=PAGE_URL, status=200, html=body))
    result = await ExtractTokens()(exchange)
    assert result.tokens == extract(body)
    assert result.tokens is not None
    assert result.tokens.ajax_url == "https://chatgptt.me/wp-admin/admin-ajax.php"
    assert attrs.evolve(result, tokens=None) == exchange
    assert ExtractTokens().name == "tokens"


async def test_the_stage_needs_a_page() -> None:
    """Without a bootstrap stage before it, the error says what is missing."""
    with pytest.raises(ConfigurationError, match="page"):
        await ExtractTokens()(make_exchange(None))


async def test_the_stage_reports_the_page_status_on_a_challenge() -> None:
    """The page's own status is carried into ``BotProtectionError``."""
    challenge = "<html><head><title>Just a moment...</title></head></html>"
    exchange = make_exchange(Page(url=PAGE_URL, status=203, html=challenge))
    with pytest.raises(BotProtectionError) as caught:
        await ExtractTokens()(exchange)
    assert caught.value.status == 203


# --- properties ------------------------------------------------------------------------------

nonces = st.from_regex(r"[0-9a-f]{10}", fullmatch=True) | st.from_regex(
    r"[A-Za-z0-9]{1,64}", fullmatch=True
)
ids = st.integers(min_value=0, max_value=10**12).map(str)
site_urls = st.sampled_from(
    [
        "https://chatgptt.me",
        "http://127.0.0.1:8080",
        "https://example.org/blog",
        "https://a.b/?x=1&y=2",
    ]
)
plain_text = st.text(st.characters(codec="utf-8"), max_size=30)
# Names of extra attributes: never one the extractor reads.
extra_names = st.from_regex(r"(data-)?[a-z][a-z0-9_-]{0,12}", fullmatch=True).filter(
    lambda name: (
        name
        not in {
            "class",
            "data-nonce",
            "data-post-id",
            "data-bot-id",
            "data-type",
            "data-url",
            "data-config",
        }
    )
)


@st.composite
def rendered_attribute(draw: st.DrawFn, name: str, value: str) -> str:
    """One attribute as some page might spell it: any quotes, spacing and name case."""
    if draw(st.booleans()):
        name = "".join(c.upper() if draw(st.booleans()) else c for c in name)
    equals = draw(st.sampled_from(["=", " = ", "=\n     ", "\t=", "= "]))
    unquotable = value and not any(c in value for c in "\t\n\f\r \"'=<>`&")
    styles = ["double", "single", "entities"] + (["none"] if unquotable else [])
    style = draw(st.sampled_from(styles))
    if style == "double":
        return f'{name}{equals}"{value.replace("&", "&amp;").replace(chr(34), "&quot;")}"'
    if style == "single":
        return f"{name}{equals}'{value.replace('&', '&amp;').replace(chr(39), '&#39;')}'"
    if style == "entities":
        return f'{name}{equals}"{html.escape(value, quote=True)}"'
    return f"{name}{equals}{value}"


@st.composite
def decoy_html(draw: st.DrawFn) -> str:
    """HTML that holds no container a browser would see, but text that looks like one."""
    fake = container(
        f'data-nonce="{draw(nonces)}" data-post-id="{draw(ids)}" data-bot-id="{draw(ids)}"',
        cls=draw(st.sampled_from(["wpaicg-chat-shortcode", "wpaicg-chatbox"])),
    )
    kind = draw(
        st.sampled_from(
            ["text", "tag", "comment", "script", "style", "attribute", "textarea", "bare", "end"]
        )
    )
    text = html.escape(draw(plain_text))
    if kind == "text":
        return text
    if kind == "tag":
        tag = draw(st.sampled_from(["p", "span", "section", "a", "img", "br", "input"]))
        return f'<{tag} class="{text}" id=x{draw(ids)}>{text}'
    if kind == "comment":
        return f"<!-- {text} -> a > b {fake} -->"
    if kind == "script":
        return f"<script>var html = '{fake}'; var x = {{\"data-nonce\": 1}};</script>"
    if kind == "style":
        return f"<style>/* {fake} */ .a {{ color: red }}</style>"
    if kind == "attribute":
        return f"<span title='{fake}' data-x=\"{text}\">{text}</span>"
    if kind == "textarea":
        return f"<textarea>{fake}</textarea>"
    if kind == "bare":
        return f'data-nonce="{draw(nonces)}" {text}'
    return f"</{draw(st.sampled_from(['div', 'p', 'span']))}>"


@st.composite
def chat_pages(draw: st.DrawFn) -> tuple[str, Tokens]:
    """A page whose first container with a nonce is known, and the tokens it carries."""
    nonce, post_id, bot_id = draw(nonces), draw(ids), draw(ids)
    site_url = draw(site_urls)
    widget_class = draw(st.booleans())
    data_type = draw(st.sampled_from(["shortcode", "widget", None]))
    wanted = [("data-nonce", nonce), ("data-post-id", post_id), ("data-bot-id", bot_id)]
    wanted.append(("data-url", site_url))
    if data_type is not None:
        wanted.append(("data-type", data_type))
    extras = draw(st.lists(st.tuples(extra_names, plain_text), max_size=6))
    pairs = draw(st.permutations(wanted + extras))
    classes = draw(
        st.lists(st.sampled_from(["chat", "wpaicg-chat-shortcode-content", "x"]), max_size=3)
    )
    classes.insert(
        draw(st.integers(0, len(classes))),
        "wpaicg-chatbox" if widget_class else "wpaicg-chat-shortcode",
    )
    class_attribute = draw(rendered_attribute("class", " ".join(classes)))
    rendered = [draw(rendered_attribute(name, value)) for name, value in pairs]
    position = draw(st.integers(0, len(rendered)))
    rendered.insert(position, class_attribute)
    separators = [draw(st.sampled_from([" ", "\n     ", "\t", "  "])) for _ in rendered]
    the_container = (
        "<div" + "".join(sep + attr for sep, attr in zip(separators, rendered, strict=True)) + ">"
    )
    # Before it: decoys, and real containers without a nonce; after it: anything.
    nonceless = container(f'data-post-id="{draw(ids)}" data-bot-id="{draw(ids)}"')
    before = draw(st.lists(decoy_html() | st.just(nonceless), max_size=6))
    later = container(f'data-nonce="{draw(nonces)}" data-post-id="{draw(ids)}"')
    after = draw(st.lists(decoy_html() | st.just(later), max_size=4))
    body = page(*before, the_container, "</div>", *after)
    expected = ClassicTokens(
        nonce=nonce,
        post_id=post_id,
        bot_id=bot_id,
        ajax_url=FALLBACK,
        page_url=PAGE_URL,
        site_url=site_url,
        chat_type="widget" if widget_class or data_type == "widget" else "shortcode",
        source="container",
    )
    return body, expected


@settings(deadline=None, max_examples=200)
@given(chat_pages())
def test_any_spelling_of_the_container_among_any_html_gives_its_tokens(
    case: tuple[str, Tokens],
) -> None:
    """Attribute order, quoting, spacing, extra attributes and decoys never change the result."""
    body, expected = case
    assert extract(body) == expected


@settings(deadline=None)
@given(
    nonce=nonces,
    post_id=ids,
    path=st.from_regex(r"/([a-z0-9_-][a-z0-9/_-]{0,30})?", fullmatch=True),
    absolute=st.booleans(),
    decoys=st.lists(decoy_html(), max_size=4),
)
def test_wpaicg_params_fallback_with_escaped_slashes(
    nonce: str, post_id: str, path: str, absolute: bool, decoys: list[str]
) -> None:
    """``search_nonce`` and ``ajax_url`` come through PHP's JSON escaping intact."""
    ajax_url = ("https://chatgptt.me" + path) if absolute else path
    script = params_script({"ajax_url": ajax_url, "search_nonce": nonce, "logged_in": "0"})
    body = page(*decoys, script, container(f"data-post-id={post_id}"))
    tokens = extract(body)
    assert (tokens.nonce, tokens.post_id, tokens.source) == (nonce, post_id, "wpaicgParams")
    assert tokens.ajax_url == "https://chatgptt.me" + path


@settings(deadline=None)
@given(
    has_container_nonce=st.booleans(),
    has_params_nonce=st.booleans(),
    post_id_source=st.sampled_from(["container", "body", "shortlink", None]),
    decoys=st.lists(decoy_html(), max_size=4),
)
def test_missing_pieces_are_named_exactly(
    has_container_nonce: bool,
    has_params_nonce: bool,
    post_id_source: str | None,
    decoys: list[str],
) -> None:
    """Whatever combination of sources a page has, the error names exactly what lacks one."""
    attributes = 'data-nonce="5e2498d71a" ' if has_container_nonce else ""
    attributes += 'data-post-id="22"' if post_id_source == "container" else ""
    parts = [*decoys, container(attributes)]
    if has_params_nonce:
        parts.append(params_script({"search_nonce": "abcdef0123"}))
    head = "<link rel='shortlink' href='https://chatgptt.me/?p=22' />"
    body = page(
        *parts,
        head=head if post_id_source == "shortlink" else "",
        body_class="page page-id-22" if post_id_source == "body" else "page",
    )
    missing = []
    if not (has_container_nonce or has_params_nonce):
        missing.append("nonce")
    if post_id_source is None:
        missing.append("post id")
    if not missing:
        tokens = extract(body)
        assert tokens.post_id == "22"
        assert tokens.source == ("container" if has_container_nonce else "wpaicgParams")
        return
    with pytest.raises(TokensNotFoundError) as caught:
        extract(body)
    assert caught.value.missing == tuple(missing)
    assert PAGE_URL in str(caught.value)


@settings(deadline=None, max_examples=300)
@given(
    st.text()
    | st.lists(
        st.sampled_from(
            [
                "<",
                ">",
                "'",
                '"',
                "=",
                " ",
                "!--",
                "/",
                "a",
                "script",
                "wpaicg-chatbox",
                "data-nonce",
                "&",
                "class",
            ]
        )
    ).map("".join)
)
def test_any_text_gives_tokens_or_a_typed_error(text: str) -> None:
    """Arbitrary input never crashes the extractor with anything but its own errors."""
    try:
        tokens = extract(text)
    except (TokensNotFoundError, BotProtectionError):
        return
    assert tokens.nonce
    assert tokens.post_id.isdigit()
