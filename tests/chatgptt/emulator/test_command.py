"""The emulator's command-line options."""

from __future__ import annotations

import argparse
import socket

import pytest

from chatgptt.emulator import Fault, add_arguments, config_from_args, main_from_args, recap_model


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
