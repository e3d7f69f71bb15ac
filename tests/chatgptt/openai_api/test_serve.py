"""``chatgptt serve`` as a real process: SIGTERM and SIGINT stop it gracefully, ``--workers``
runs several processes on one port, the API key comes from the environment, and what it
prints."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from chatgptt import ChatGptt
from chatgptt.emulator import Fault
from chatgptt.openai_api import ServeOptions
from chatgptt.openai_api.serve import ECHO, _announce
from chatgptt.openai_api.usage import ESTIMATE
from tests.chatgptt.openai_api.support import ServeProcess, sse_data, until_refused, wait_until

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

HELLO = [{"role": "user", "content": "Hello"}]
STREAM = {"model": "gpt-4o", "messages": HELLO, "stream": True}


async def first_piece(client: aiohttp.ClientSession, url: str) -> tuple[Any, bytes]:
    reply = await client.post(url, json=STREAM)
    assert reply.status == 200
    received = b""
    while b'"content":"H' not in received:
        chunk = await reply.content.readany()
        assert chunk
        received += chunk
    return reply, received


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_a_signal_lets_the_answer_in_flight_finish(emulator_factory, signum) -> None:
    emulator = emulator_factory(token_delay=0.02, answer_chars=400)  # ~1 s of answer
    with ServeProcess("--url", emulator.url, "--grace", "30") as server:
        async with aiohttp.ClientSession() as client:
            reply, received = await first_piece(client, server.base + "/chat/completions")
            server.signal(signum)
            await until_refused("127.0.0.1", server.port)  # it stopped accepting at once
            received += await reply.read()
            reply.release()
        assert await asyncio.to_thread(server.wait, 30) == 0
    events = sse_data(received)
    assert events[-1] == "[DONE]"
    text = "".join(json.loads(e)["choices"][0]["delta"].get("content") or "" for e in events[:-1])
    assert len(text) == 400
    assert "stopping: 1 answers in flight get 30 s" in "\n".join(server.lines)


async def test_past_the_grace_the_stream_ends_with_an_error_event(emulator_factory) -> None:
    emulator = emulator_factory(
        faults=[Fault(kind="stall", where="inside", after_tokens=1, seconds=30.0)]
    )
    with ServeProcess("--url", emulator.url, "--grace", "0.3") as server:
        async with aiohttp.ClientSession() as client:
            reply, received = await first_piece(client, server.base + "/chat/completions")
            server.signal(signal.SIGTERM)
            received += await asyncio.wait_for(reply.read(), 20)
            reply.release()
        assert await asyncio.to_thread(server.wait, 30) == 0
    events = sse_data(received)
    assert events[-1] == "[DONE]"
    error = json.loads(events[-2])["error"]
    assert error["code"] == "server_shutting_down"


async def test_a_second_ctrl_c_ends_the_grace(emulator_factory) -> None:
    emulator = emulator_factory(
        faults=[Fault(kind="stall", where="inside", after_tokens=1, seconds=30.0)]
    )
    with ServeProcess("--url", emulator.url, "--grace", "60") as server:
        async with aiohttp.ClientSession() as client:
            reply, received = await first_piece(client, server.base + "/chat/completions")
            server.signal(signal.SIGINT)
            await asyncio.to_thread(server.wait_for_line, "stopping: ")
            server.signal(signal.SIGINT)
            received += await asyncio.wait_for(reply.read(), 20)  # not the 60 s grace
            reply.release()
        assert await asyncio.to_thread(server.wait, 30) == 0
    assert sse_data(received)[-1] == "[DONE]"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc")
async def test_with_workers_a_second_ctrl_c_ends_the_grace(emulator_factory) -> None:
    """Ctrl-C reaches every process of the terminal's group, and the arbiter relays it: a
    worker takes that echo for the same request, and a second Ctrl-C for a second one."""
    emulator = emulator_factory(
        faults=[Fault(kind="stall", where="inside", after_tokens=1, seconds=30.0)]
    )
    with ServeProcess("--url", emulator.url, "--workers", "2", "--grace", "60") as server:
        await wait_until(lambda: len(children_of(server.process.pid)) == 2)
        async with aiohttp.ClientSession() as client:
            reply, received = await first_piece(client, server.base + "/chat/completions")
            os.killpg(server.process.pid, signal.SIGINT)  # as a terminal's Ctrl-C
            line = await asyncio.to_thread(server.wait_for_line, r"worker \d+ stopping: 1 ")
            assert "get 60 s to finish" in line.string
            # Not a wait for something to happen: the second press must come after the
            # first one's echoes, as a person's would.
            await asyncio.sleep(2 * ECHO)
            assert not reply.content.at_eof()  # the grace held meanwhile
            os.killpg(server.process.pid, signal.SIGINT)
            received += await asyncio.wait_for(reply.read(), 20)  # not the 60 s grace
            reply.release()
        assert await asyncio.to_thread(server.wait, 30) == 0
    events = sse_data(received)
    assert events[-1] == "[DONE]"
    assert json.loads(events[-2])["error"]["code"] == "server_shutting_down"


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def children_of(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc")
async def test_workers_share_the_port(emulator) -> None:
    with ServeProcess("--url", emulator.url, "--workers", "2", "--grace", "5") as server:
        line = server.wait_for_line(r"2 worker processes")
        assert "per worker" in line.string
        # The port is bound before the workers start (clients wait in its queue meanwhile).
        await wait_until(lambda: len(children_of(server.process.pid)) == 2)
        workers = children_of(server.process.pid)
        answered_by: set[int] = set()
        async with aiohttp.ClientSession() as client:
            for _ in range(400):  # new connections until both workers have taken some
                async with client.get(
                    server.base.removesuffix("/v1") + "/health",
                    headers={"Connection": "close"},
                ) as reply:
                    answered_by.add((await reply.json())["pid"])
                if answered_by == workers:
                    break
            assert answered_by == workers
            async with client.post(
                server.base + "/chat/completions", json={"model": "gpt-4o", "messages": HELLO}
            ) as reply:
                completion = await reply.json()
        assert completion["choices"][0]["message"]["content"] == "Hello from upstream: Hello"
        server.signal(signal.SIGTERM)
        assert await asyncio.to_thread(server.wait, 30) == 0
        assert not children_of(server.process.pid)


async def test_the_key_from_the_environment_is_required_and_never_printed(emulator) -> None:
    key = "sk-env-key-4242"
    with ServeProcess("--url", emulator.url, env={"CHATGPTT_API_KEY": key}) as server:
        async with aiohttp.ClientSession() as client:
            url = server.base + "/chat/completions"
            body = {"model": "gpt-4o", "messages": HELLO}
            async with client.post(url, json=body) as reply:
                assert reply.status == 401
            async with client.post(
                url, json=body, headers={"Authorization": f"Bearer {key}"}
            ) as reply:
                assert reply.status == 200
        server.signal(signal.SIGTERM)
        assert await asyncio.to_thread(server.wait, 30) == 0
    printed = "\n".join(server.lines)
    assert "API key required" in printed
    assert key not in printed


def test_listening_beyond_loopback_without_a_key_is_called_an_open_relay() -> None:
    out = io.StringIO()
    _announce(out, ChatGptt, ServeOptions(), ESTIMATE, "0.0.0.0", 8000, workers=1)
    assert "open relay" in out.getvalue()
    quiet = io.StringIO()
    _announce(quiet, ChatGptt, ServeOptions(api_key="k"), ESTIMATE, "0.0.0.0", 8000, workers=1)
    _announce(quiet, ChatGptt, ServeOptions(), ESTIMATE, "127.0.0.1", 8000, workers=1)
    assert "open relay" not in quiet.getvalue()


def test_what_it_prints_never_shows_the_credentials_of_the_sites_url() -> None:
    out = io.StringIO()
    site = ChatGptt.derive("Behind", url="https://alice:s3cret@example.org")
    _announce(out, site, ServeOptions(), ESTIMATE, "0.0.0.0", 8000, workers=1)
    assert "serving https://***@example.org as an OpenAI API" in out.getvalue()
    assert "s3cret" not in out.getvalue()  # the open relay's warning names the site too


def test_bad_options_are_refused_before_starting(emulator) -> None:
    with ServeProcess("--url", emulator.url, "--max-concurrency", "0") as server:
        assert server.wait(30) == 2
    assert "max_concurrency must be positive" in "\n".join(server.lines)
    with ServeProcess("--url", emulator.url, env={"CHATGPTT_USAGE_TOKENIZER": "exact"}) as server:
        assert server.wait(30) == 1
    assert "must be one of" in "\n".join(server.lines)
    with ServeProcess("--url", emulator.url, "--port", str(emulator.port)) as server:
        assert server.wait(30) == 1  # the emulator's port is taken
    assert "cannot listen" in "\n".join(server.lines)
    with ServeProcess("--url", emulator.url, "--port", "70000") as server:
        assert server.wait(30) == 2
    assert "a port is 0 to 65535, got 70000" in "\n".join(server.lines)
    assert "Traceback" not in "\n".join(server.lines)
    # A key variable set but empty (a secret that expanded to nothing) does not run open.
    with ServeProcess("--url", emulator.url, env={"CHATGPTT_API_KEY": ""}) as server:
        assert server.wait(30) == 2
    assert "the API key must be a non-empty string" in "\n".join(server.lines)


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc")
async def test_workers_in_front_of_their_own_emulator() -> None:
    """``--emulator --workers 2``: the emulator runs in a process of its own (gunicorn
    forks), answers every worker, and goes with the server."""
    with ServeProcess("--emulator", "--workers", "2", "--grace", "5") as server:
        base = server.base
        await wait_until(lambda: len(children_of(server.process.pid)) == 3)  # 2 + emulator
        started = children_of(server.process.pid)
        async with (
            aiohttp.ClientSession() as client,
            client.post(
                base + "/chat/completions", json={"model": "gpt-4o", "messages": HELLO}
            ) as reply,
        ):
            completion = await reply.json()
        assert completion["choices"][0]["message"]["content"] == "Hello from upstream: Hello"
        server.signal(signal.SIGTERM)
        assert await asyncio.to_thread(server.wait, 30) == 0
    assert not any(map(alive, started))
