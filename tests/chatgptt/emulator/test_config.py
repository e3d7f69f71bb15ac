"""Bad settings fail when the config is made, with a message that names them."""

from __future__ import annotations

import attrs
import pytest

from chatgptt.emulator import DEFAULT_GREETING, EmulatorConfig, echo_model


def test_defaults_match_the_capture() -> None:
    config = EmulatorConfig()
    assert (config.mode, config.token_chars, config.post_id, config.bot_id) == ("sse", 8, "4", "0")
    assert config.ajax_path == "/wp-admin/admin-ajax.php"
    assert config.greeting == DEFAULT_GREETING
    assert config.model is echo_model


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"mode": "xml"}, "mode"),
        ({"token_chars": 0}, "token_chars"),
        ({"token_delay": -1.0}, "token_delay"),
        ({"answer_chars": -1}, "answer_chars"),
        ({"post_id": "four"}, "post_id"),
        ({"ajax_path": "admin-ajax.php"}, "ajax_path"),
        ({"ajax_path": "/"}, "ajax_path"),
        ({"ajax_path": "/x?y=1"}, "ajax_path"),
        ({"page_style": "fancy"}, "page_style"),
        ({"nonce_style": "401"}, "nonce_style"),
        ({"model": "echo"}, "model"),
        ({"page_style": "aipkit"}, "page_style"),  # the dialect replaced it
        ({"dialect": "modern"}, "dialect"),
        ({"aipkit_page": "sidebar"}, "aipkit_page"),
        ({"aipkit_api_mode": "assistants"}, "aipkit_api_mode"),
        ({"aipkit_bot_id": "0"}, "aipkit_bot_id"),
        ({"aipkit_bot_id": "five"}, "aipkit_bot_id"),
        ({"aipkit_history_limit": -1}, "aipkit_history_limit"),
        ({"aipkit_cache_ttl": 0}, "aipkit_cache_ttl"),
        ({"aipkit_stream_enabled": "yes"}, "aipkit_stream_enabled"),
        ({"clock": 5}, "clock"),
    ],
)
def test_bad_values_are_refused(changes: dict[str, object], named: str) -> None:
    with pytest.raises((ValueError, TypeError), match=named):
        EmulatorConfig(**changes)  # type: ignore[arg-type]


def test_aipkit_defaults_match_the_capture() -> None:
    config = EmulatorConfig()
    assert config.dialect == "classic"
    assert (config.aipkit_page, config.aipkit_api_mode, config.aipkit_bot_id) == (
        "inline",
        "chat_completions",
        "5",
    )
    assert (config.aipkit_history_limit, config.aipkit_cache_ttl) == (15, 60.0)
    assert config.aipkit_instructions.endswith("Today's date is [date].")


def test_secret_is_not_in_repr() -> None:
    assert "hush" not in repr(EmulatorConfig(nonce_secret="hush"))


def test_evolve() -> None:
    assert attrs.evolve(EmulatorConfig(), mode="json").mode == "json"
