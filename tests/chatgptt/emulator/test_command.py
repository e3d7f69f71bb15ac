"""The emulator's command-line options."""

from __future__ import annotations

import argparse
import re
import socket

import pytest

from chatgptt.emulator import Fault, add_arguments, config_from_args, main_from_args, recap_model
from chatgptt.emulator.command import faults_from_args


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_defaults() -> None:
    ns = parse()
    assert (ns.host, ns.port, ns.mode, ns.fault) == ("127.0.0.1", 8080, "sse", [])
    config = config_from_args(ns)
    assert config.ajax_path == "/wp-admin/admin-ajax.php"
    assert config.token_delay == 0
    assert (config.framing, config.frames) == ("length", "varied")


def test_every_option() -> None:
    ns = parse(
        *("--host", "0.0.0.0", "--port", "0", "--mode", "json", "--token-delay", "0.05"),
        *("--token-chars", "3", "--answer-chars", "400", "--page-style", "decoy"),
        *("--ajax-path", "/rizq", "--nonce-style", "json", "--model", "recap"),
        *("--fault", "status=503,times=2", "--fault", "challenge,target=page"),
        *("--framing", "close", "--frames", "capture"),
        *("--fault", "linger=0.5", "--fault", "empty_stream=php_fatal"),
        *("--fault", "cut,after_tokens=1", "--fault", "firewall=wordfence,target=any"),
    )
    config = config_from_args(ns)
    assert (config.mode, config.token_delay, config.token_chars, config.answer_chars) == (
        "json",
        0.05,
        3,
        400,
    )
    assert (config.page_style, config.ajax_path, config.nonce_style) == ("decoy", "/rizq", "json")
    assert config.model is recap_model
    assert (config.framing, config.frames) == ("close", "capture")
    assert ns.fault == [
        Fault(kind="status", status=503, times=2),
        Fault(kind="challenge", target="page"),
        Fault(kind="linger", seconds=0.5),
        Fault(kind="empty_stream", content="php_fatal"),
        Fault(kind="cut", after_tokens=1),
        Fault(kind="firewall", firewall="wordfence", target="any"),
    ]


def test_bad_fault_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse("--fault", "stall=1,where=middle")
    assert "where" in capsys.readouterr().err


def test_bad_setting_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main_from_args(parse("--token-chars", "0")) == 2
    assert "token_chars" in capsys.readouterr().err


def test_busy_port_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        assert main_from_args(parse("--port", str(sock.getsockname()[1]))) == 1
    assert "cannot listen" in capsys.readouterr().err


def test_fault_specs_as_strings_are_accepted() -> None:
    ns = parse("--token-chars", "0")
    ns.fault = ["explode"]
    assert main_from_args(ns) == 2


def test_aipkit_options() -> None:
    ns = parse(
        *("--dialect", "aipkit", "--aipkit-page", "popup", "--aipkit-api-mode", "responses"),
        *("--aipkit-bot-id", "27623", "--aipkit-history", "4", "--aipkit-cache-ttl", "5"),
        *("--aipkit-stream-enabled", "off"),
        *("--fault", "drop,after_tokens=2,target=stream", "--fault", "quota,notice=false"),
    )
    config = config_from_args(ns)
    assert (config.dialect, config.aipkit_page, config.aipkit_api_mode) == (
        "aipkit",
        "popup",
        "responses",
    )
    assert (config.aipkit_bot_id, config.aipkit_history_limit, config.aipkit_cache_ttl) == (
        "27623",
        4,
        5.0,
    )
    assert config.aipkit_stream_enabled is False
    assert ns.fault == [
        Fault(kind="drop", after_tokens=2, target="stream"),
        Fault(kind="quota", notice=False),
    ]


def test_aipkit_defaults() -> None:
    config = config_from_args(parse("--dialect", "aipkit"))
    assert (config.dialect, config.aipkit_page, config.aipkit_bot_id) == ("aipkit", "inline", "5")
    assert config.aipkit_stream_enabled is None
    assert config_from_args(parse()).dialect == "classic"


@pytest.mark.parametrize(
    "argv",
    [
        ("--dialect", "modern"),
        ("--aipkit-page", "sidebar"),
        ("--aipkit-stream-enabled", "maybe"),
        ("--fault", "quota,target=cache"),
    ],
)
def test_bad_aipkit_options_are_usage_errors(argv: tuple[str, ...]) -> None:
    with pytest.raises(SystemExit):
        parse(*argv)


def test_bad_aipkit_bot_id_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main_from_args(parse("--dialect", "aipkit", "--aipkit-bot-id", "0")) == 2
    assert "aipkit_bot_id" in capsys.readouterr().err


def test_help_documents_the_aipkit_faults() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    text = parser.format_help()
    for word in ("--dialect", "target", "stream", "cache", "nonce", "error_event", "quota"):
        assert word in text


@pytest.mark.parametrize("port", ["70000", "-1", "http"])
def test_a_port_out_of_range_is_a_usage_error(
    port: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        parse("--port", port)
    assert info.value.code == 2
    assert "--port" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (("--fault", "quota"), "quota"),
        (("--fault", "error_event"), "error_event"),
        (("--fault", "status=503,target=stream"), "status=503,target=stream"),
        (("--fault", "expire_nonce,target=nonce"), "expire_nonce,target=nonce"),
        (("--dialect", "aipkit", "--fault", "malformed=limited"), "malformed=limited"),
    ],
)
def test_a_fault_the_sites_dialect_never_meets_is_refused(
    argv: tuple[str, ...], named: str
) -> None:
    """A fault suite run against the wrong dialect would pass while testing nothing."""
    ns = parse(*argv)
    with pytest.raises(ValueError, match=f"--fault {re.escape(named)} never fires on"):
        faults_from_args(ns, config_from_args(ns))


def test_a_refused_fault_exits_2_before_listening(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:  # should the fault be taken, the run still ends: exit 1
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        ns = parse("--port", str(busy.getsockname()[1]), "--fault", "quota")
        assert main_from_args(ns) == 2
    assert "--fault quota never fires on a classic site" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ("--fault", "status=503"),
        ("--fault", "cut,after_tokens=1"),
        ("--dialect", "aipkit", "--fault", "quota"),
        ("--dialect", "aipkit", "--fault", "malformed=no_done"),
        ("--dialect", "aipkit", "--fault", "expire_nonce,target=nonce"),
    ],
)
def test_a_fault_the_site_meets_is_taken(argv: tuple[str, ...]) -> None:
    ns = parse(*argv)
    assert faults_from_args(ns, config_from_args(ns)) == ns.fault
