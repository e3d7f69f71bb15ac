"""The PHP/WordPress pieces of the AIPKit dialect: JSON flags, esc_attr, ids, origins, kses."""

from __future__ import annotations

import html
import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatgptt.emulator.aipkit import (
    AipkitPageContext,
    data_config_attribute,
    frontend_config,
    model_messages,
    render_aipkit_landing,
)
from chatgptt.emulator.aipkit.events import error_frame, event_frame, message_id
from chatgptt.emulator.aipkit.kses import kses_post
from chatgptt.emulator.aipkit.wordpress import (
    absint,
    is_cross_origin,
    json_for_attribute,
    json_unescaped_unicode,
    sanitize_key,
    sanitize_text_field,
)

_json_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text()
_json_values = st.recursive(
    _json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@settings(deadline=None)
@given(st.dictionaries(st.text(), _json_values, max_size=6))
def test_data_config_round_trips(config: dict[str, Any]) -> None:
    """Any config comes back from the attribute by HTML-unescaping and JSON-decoding it."""
    attribute = data_config_attribute(config)
    assert "'" not in attribute  # it sits between single quotes
    assert '"' not in attribute
    assert not re.search(r"[<>]", attribute)
    assert json.loads(html.unescape(attribute)) == config


@settings(deadline=None)
@given(_json_values)
def test_stream_json_round_trips_and_is_one_line(value: Any) -> None:
    encoded = json_unescaped_unicode(value)
    assert json.loads(encoded) == value
    assert "\n" not in encoded
    assert "\r" not in encoded
    assert "/" not in encoded.replace("\\/", "")


def test_stream_json_is_phps() -> None:
    """As the real site wrote deltas: raw UTF-8, ``\\/``, short escapes, U+2028/9 escaped."""
    text = 'line\u2028sep\u2029 tab\t nl\n cr\r ctl\x01 </b> é 😀 "q" \\ back'
    assert json_unescaped_unicode({"delta": text}) == (
        '{"delta":"line\\u2028sep\\u2029 tab\\t nl\\n cr\\r ctl\\u0001 <\\/b> é 😀 '
        '\\"q\\" \\\\ back"}'
    )


def test_attribute_json_uses_the_hex_flags() -> None:
    """As the real site wrote a bot setting with these characters into data-config."""
    text = "He said \"hi\" & <b>'x'</b> / ☃ sep\u2028end \\ back"
    assert json_for_attribute(text) == (
        '"He said \\u0022hi\\u0022 \\u0026 \\u003Cb\\u003E\\u0027x\\u0027\\u003C\\/b\\u003E '
        '\\/ ☃ sep\\u2028end \\\\ back"'
    )


def test_page_config_is_written_like_the_capture() -> None:
    page = AipkitPageContext(
        base_url="https://chat.example",
        ajax_url="https://chat.example/wp-admin/admin-ajax.php",
        nonce="5e2498d71a",
        bot_id="27623",
        post_id="22",
    )
    attribute = data_config_attribute(frontend_config(page))
    assert attribute.startswith(
        "{&quot;botId&quot;:27623,&quot;ajaxUrl&quot;:&quot;https:\\/\\/chat.example\\/"
        "wp-admin\\/admin-ajax.php&quot;,&quot;nonce&quot;:&quot;5e2498d71a&quot;,"
        "&quot;postId&quot;:22,&quot;theme&quot;:"
    )
    rendered = render_aipkit_landing(page)
    assert f"data-config='{attribute}'" in rendered
    assert "127.0.0.1:8080" not in rendered
    assert 'id="aipkit_chat_container_27623" data-bot-id="27623"' in rendered


def test_frames() -> None:
    assert event_frame("done", {"finished": True}) == b'event: done\ndata: {"finished":true}\n\n'
    assert event_frame(None, {"delta": "a/b"}) == b'data: {"delta":"a\\/b"}\n\n'
    assert event_frame("citations", "[]") == b"event: citations\ndata: []\n\n"  # strings as is
    warning = error_frame("Careful", 1_795_672_368.9, warning=True)
    assert warning.data == b'event: warning\nid: err-1795672368\ndata: {"error":"Careful"}\n\n'
    assert not warning.token


@settings(deadline=None)
@given(st.floats(min_value=0, max_value=2**32 - 1, allow_nan=False))
def test_message_ids_are_phps_uniqid(now: float) -> None:
    found = re.fullmatch(r"aipkit-msg-([0-9a-f]{8})([0-9a-f]{5})[0-9]\.[0-9]{8}", message_id(now))
    assert found is not None
    assert int(found.group(1), 16) == int(now)
    assert int(found.group(2), 16) < 1_000_000


@settings(deadline=None)
@given(st.text())
def test_sanitize_key(text: str) -> None:
    key = sanitize_key(text)
    assert re.fullmatch(r"[a-z0-9_\-]*", key)
    assert sanitize_key(key) == key


def test_sanitize_examples() -> None:
    assert sanitize_key("9B1E-2d3c_X!") == "9b1e-2d3c_x"
    assert sanitize_text_field("  a\tb\n<b>c</b>  ") == "a b c"
    assert sanitize_text_field("<b></b>") == ""


@pytest.mark.parametrize(
    ("text", "number"),
    [(None, 0), ("", 0), ("5", 5), (" 5", 5), ("5abc", 5), ("-5", 5), ("abc", 0), ("0", 0)],
)
def test_absint(text: str | None, number: int) -> None:
    assert absint(text) == number


@pytest.mark.parametrize(
    ("origin", "cross"),
    [
        (None, False),
        ("", False),
        ("http://127.0.0.1:9999", False),
        ("127.0.0.1", False),
        ("HTTP://127.0.0.1:1", False),
        ("https://127.0.0.1", True),
        ("http://localhost", True),
        ("null", True),
        ("https://evil.example", True),
        ("http://user@127.0.0.1:5/x", False),
    ],
)
def test_cross_origin_as_the_real_site_decided(origin: str | None, cross: bool) -> None:
    assert is_cross_origin(origin, "127.0.0.1:8080", "http") is cross


def test_cross_origin_ipv6() -> None:
    assert not is_cross_origin("http://[::1]:1", "[::1]:8080", "http")
    assert is_cross_origin("http://[::2]:8080", "[::1]:8080", "http")


# What the real plugin logged for these messages (read back from the model's history).
KSES_SEEN_ON_THE_REAL_SITE = {
    "a & b && c": "a &amp; b &amp;&amp; c",
    "x < y > z": "x  z",
    "if (a<b) {}": "if (a&lt;b) {}",
    "<script>alert(1)</script>tail": "alert(1)tail",
    '<b onclick="x">bold</b>': "<b>bold</b>",
    "<a href='http://x.org/p?a=1&b=2'>l</a>": "<a href='http://x.org/p?a=1&amp;b=2'>l</a>",
    "&amp; &copy; &#39; &bogus; &#x41;": "&amp; &copy; &#039; &amp;bogus; &#x41;",
    "<3 love": "&lt;3 love",
    '<p>para</p><div class="c">div</div><iframe src=x></iframe>': (
        '<p>para</p><div class="c">div</div>'
    ),
    "ctl\x01\x02\x7f end": "ctl\x7f end",
    "<?php echo 1; ?>": "",
    "<!-- c -->after": "<!-- c -->after",
    "`<tag>` code": "`` code",
    "a <b>unclosed": "a <b>unclosed",
    'javascript:alert(1) <a href="javascript:x">j</a>': 'javascript:alert(1) <a href="x">j</a>',
    "%41 %zz": "%41 %zz",
    "\\slash": "\\slash",
    "tab\tend": "tab\tend",
}


@pytest.mark.parametrize(("sent", "logged"), list(KSES_SEEN_ON_THE_REAL_SITE.items()))
def test_kses_as_the_real_site_logged(sent: str, logged: str) -> None:
    assert kses_post(sent) == logged


@settings(deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab <>/=\"'&;#x1-!?\t\x01é")), max_size=40))
def test_kses_is_stable_and_safe(text: str) -> None:
    """Logging a logged message changes nothing; no control character or script tag survives."""
    once = kses_post(text)
    assert kses_post(once) == once
    assert not re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f]", once)
    assert "<script" not in once.lower()


@settings(deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {"role": st.sampled_from(["user", "assistant"]), "content": st.text(max_size=5)}
        ),
        max_size=30,
    ),
    st.text(max_size=5),
    st.integers(min_value=0, max_value=20),
)
def test_model_messages(history: list[dict[str, str]], current: str, limit: int) -> None:
    """The instructions first, then at most ``limit`` of the last logged messages (all for
    0), then the new one; nothing blank, everything trimmed, order kept."""
    messages = model_messages("Be nice.", history, current, limit)
    assert messages[0] == {"role": "system", "content": "Be nice."}
    kept = history[-limit:] if limit else history
    expected = [
        {"role": m["role"], "content": m["content"].strip(" \t\n\r\0\x0b")}
        for m in [*kept, {"role": "user", "content": current}]
        if m["content"].strip(" \t\n\r\0\x0b")
    ]
    assert messages[1:] == expected
