"""The chatgptt command: chat (streaming, stdin, errors, tracing), models."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from chatgptt.cli import main


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def test_chat_against_the_emulator(capsys) -> None:
    assert main(["chat", "--emulator", "Hello, how are you?"]) == 0
    out, err = capsys.readouterr()
    assert out == "Hello from upstream: Hello, how are you?\n"
    assert err == ""


def test_chat_against_a_url_with_a_system_message(emulator, capsys) -> None:
    assert main(["chat", "--url", emulator.url, "--system", "Be brief.", "Hi"]) == 0
    assert capsys.readouterr().out == "Hello from upstream: Hi\n"
    assert emulator.stats.received[-1][1] == {"role": "user", "content": "System: Be brief."}


def test_prompt_from_stdin(emulator, capsys, monkeypatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("from stdin"))
    assert main(["chat", "--url", emulator.url, "-"]) == 0
    assert capsys.readouterr().out == "Hello from upstream: from stdin\n"


def test_failure_is_one_line_and_a_non_zero_status(capsys) -> None:
    assert main(["chat", "--url", "http://127.0.0.1:9", "--retries", "0", "Hi"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("chatgptt: error: cannot connect to 127.0.0.1:9")
    assert err.count("\n") == 1


def test_trace_logs_stages_on_stderr_only(emulator, capsys) -> None:
    assert main(["chat", "--url", emulator.url, "--trace", "Hi"]) == 0
    out, err = capsys.readouterr()
    assert out == "Hello from upstream: Hi\n"
    for event in ("stage.started", "stage.completed", "answer.completed"):
        assert event in err
    for name in ("bootstrap", "tokens", "payload", "transport", "decode", "request"):
        assert f"stage={name}" in err
    assert "request_id=" in err


def test_models(capsys) -> None:
    assert main(["models"]) == 0
    assert capsys.readouterr().out.split() == ["gpt-4", "gpt-4o", "gpt-4o-mini"]


def test_unknown_model_is_a_usage_error(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["chat", "--model", "gpt-9", "Hi"])
    assert info.value.code == 2
    assert "valid models: gpt-4, gpt-4o, gpt-4o-mini" in capsys.readouterr().err


def test_a_model_alias_in_any_case_is_taken(emulator, capsys) -> None:
    assert main(["chat", "--url", emulator.url, "--model", "GPT-4-Turbo", "Hi"]) == 0
    assert capsys.readouterr().out == "Hello from upstream: Hi\n"


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["chat", "--retries", "-1", "Hi"], "chatgptt chat: error: argument --retries"),
        (["chat", "--timeout", "nan", "Hi"], "chatgptt chat: error: argument --timeout"),
        (["chat", "--timeout", "0", "Hi"], "chatgptt chat: error: argument --timeout"),
        (["probe", "--timeout", "-5", "http://x"], "chatgptt probe: error: argument --timeout"),
        (["chat", "--header", "X-Token SECRET", "Hi"], "argument --header"),
        (["serve", "--port", "70000"], "chatgptt serve: error: argument --port"),
    ],
)
def test_bad_options_are_usage_errors_of_their_command(argv: list[str], named: str, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert named in err
    assert "SECRET" not in err


SECRET_COOKIE = "cf_clearance=COOKIE-SECRET-42"
SECRET_AGENT = "MyBrowser/9.9 SECRET-UA"


@pytest.mark.parametrize("command", ["chat", "probe"])
def test_a_browsers_headers_and_cookies_go_with_every_request_unprinted(
    emulator, capsys, command: str
) -> None:
    """What passes the site's bot check (a browser's User-Agent and cf_clearance) can be
    given on the command line; it reaches every request and is never printed."""
    browser = ["--header", f"User-Agent: {SECRET_AGENT}", "--cookie", SECRET_COOKIE]
    browser += ["--cookie", "b=2"]
    argv = ["chat", "--url", emulator.url, "--trace", *browser, "Hi"]
    if command == "probe":
        argv = ["probe", emulator.url, *browser]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert emulator.stats.requests
    for record in emulator.stats.requests:
        assert record.header("User-Agent") == SECRET_AGENT
        assert set((record.header("Cookie") or "").split("; ")) == {SECRET_COOKIE, "b=2"}
    assert "SECRET" not in out + err


def test_probe_names_a_url_without_a_scheme_as_typed(capsys) -> None:
    assert main(["probe", "chatgptt.me"]) == 1
    assert "got 'chatgptt.me'" in capsys.readouterr().err


def test_the_installed_command_streams_the_demo() -> None:
    command = Path(sys.executable).with_name("chatgptt")
    done = subprocess.run(
        [str(command), "chat", "--emulator", "Hello, how are you?"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Hello from upstream: Hello, how are you?\n"


@pytest.mark.parametrize("dialect", ["auto", "aipkit"])
def test_serve_answers_openai_requests_and_stops_on_ctrl_c(dialect: str) -> None:
    import json
    import re
    import signal
    import urllib.request

    command = Path(sys.executable).with_name("chatgptt")
    server = subprocess.Popen(
        [
            *(str(command), "serve", "--emulator", "--port", "0", "--dialect", dialect),
            *("--usage-tokenizer", "estimate"),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stderr is not None
        line = server.stderr.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/v1", line)
        assert match, line
        request = urllib.request.Request(
            match.group(0) + "/chat/completions",
            data=json.dumps(
                {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]}
            ).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as reply:
            completion = json.loads(reply.read())
        assert completion["choices"][0]["message"]["content"] == "Hello from upstream: Hi"
        with urllib.request.urlopen(match.group(0)[: -len("/v1")] + "/health") as reply:
            health = json.loads(reply.read())
        expected = "aipkit" if dialect == "aipkit" else "classic"
        assert (health["dialect"], health["detected_dialect"]) == (dialect, expected)
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=30) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        assert server.stderr is not None
        server.stderr.close()


def test_a_reader_that_goes_away_ends_the_command_quietly() -> None:
    """`chatgptt chat ... | head -c 5`: no traceback, SIGPIPE's exit status."""
    command = Path(sys.executable).with_name("chatgptt")
    chat = subprocess.Popen(
        [str(command), "chat", "--emulator", "x" * 2000],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert chat.stdout is not None
    assert chat.stderr is not None
    assert len(chat.stdout.read(5)) == 5
    chat.stdout.close()
    assert chat.wait(timeout=60) == 141
    assert chat.stderr.read() == b""
    chat.stderr.close()


def test_chat_speaks_the_aipkit_dialect_with_its_emulator(capsys) -> None:
    assert main(["chat", "--emulator", "--dialect", "aipkit", "Hi"]) == 0
    assert capsys.readouterr() == ("Hello from upstream: Hi\n", "")


def test_chat_detects_the_aipkit_dialect_from_the_page(emulator_factory, capsys) -> None:
    emulator = emulator_factory(dialect="aipkit")
    assert main(["chat", "--url", emulator.url, "--system", "Be brief.", "Hi"]) == 0
    assert (
        capsys.readouterr().out == "Hello from upstream: System: Be brief.\nUser: Hi\nAssistant:\n"
    )
    assert emulator.stats.stream_gets == 1


def test_a_failure_after_text_gets_its_own_line(emulator_factory, capsys) -> None:
    from chatgptt.emulator import Fault

    emulator = emulator_factory(faults=[Fault(kind="drop", after_tokens=1)])
    assert main(["chat", "--url", emulator.url, "--retries", "0", "Hello"]) == 1
    out, err = capsys.readouterr()
    assert out == "Hello fr\n"
    assert err.startswith("chatgptt: error: answer interrupted after 8 characters")


@pytest.mark.parametrize(
    ("dialect", "mode", "expected"),
    [
        ("aipkit", "sse", ["dialect:   aipkit", "bot id:    5", "streaming: not said by the page"]),
        ("classic", "sse", ["dialect:   classic", "bot id:    0", "streaming: on"]),
        ("classic", "json", ["dialect:   classic", "streaming: off"]),
    ],
)
def test_probe_shows_what_the_page_carries(
    emulator_factory, capsys, dialect: str, mode: str, expected: list[str]
) -> None:
    emulator = emulator_factory(dialect=dialect, mode=mode)
    assert main(["probe", emulator.url]) == 0
    out = capsys.readouterr().out
    for line in [*expected, "nonce:     found", "post id:   4", f"page:      {emulator.url}/"]:
        assert any(shown.startswith(line) for shown in out.splitlines()), line
    assert emulator.stats.ajax_requests == 0


def test_probe_as_json_of_a_chat_page_url(emulator_factory, capsys) -> None:
    emulator = emulator_factory(dialect="aipkit", aipkit_stream_enabled=False)
    assert main(["probe", "--json", emulator.url + "/?page_id=4"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["page_url"] == emulator.url + "/?page_id=4"
    assert (found["dialect"], found["streaming"], found["nonce_found"]) == ("aipkit", False, True)


def test_probe_of_a_page_without_a_chat_is_one_error_line(emulator_factory, capsys) -> None:
    emulator = emulator_factory(page_style="no_chat")
    assert main(["probe", emulator.url]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"chatgptt: error: no chat found in the page at {emulator.url}/")
    assert err.count("\n") == 1
