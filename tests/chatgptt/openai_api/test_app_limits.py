"""Scale and lifecycle: admission past ``max_concurrency``, a pool that lets every admitted
stream flow, a client hanging up cancels its upstream request, and the graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.base_protocol import BaseProtocol
from aiohttp.http_writer import StreamWriter
from aiohttp.test_utils import make_mocked_request

from chatgptt import RetryPolicy
from chatgptt.emulator import Fault
from chatgptt.openai_api import ServeOptions
from chatgptt.openai_api.app import _BoundedWriter, _ClientStalledError
from chatgptt.testing import provider_for
from tests.chatgptt.openai_api.support import (
    PROC_TCP,
    listening_sockets,
    post_request,
    read_reply,
    sse_data,
    until_refused,
    wait_until,
)

HELLO = [{"role": "user", "content": "Hello"}]
STREAM = {"model": "gpt-4o", "messages": HELLO, "stream": True}
ANSWER = "Hello from upstream: Hello"
PATH = "/v1/chat/completions"
#: The answer stops after its first piece for 30 s (until the client leaves).
STALL = Fault(kind="stall", where="inside", after_tokens=1, seconds=30.0)

needs_proc = pytest.mark.skipif(not PROC_TCP.exists(), reason="needs Linux /proc/net/tcp")


def stalled(emulator: Any) -> type[Any]:
    return provider_for(emulator, retry_policy=RetryPolicy(attempts=1))


class OpenStream:
    """A streamed request read up to its first piece of text, held open."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url
        self.reply: aiohttp.ClientResponse | None = None
        self.received = b""

    async def start(self) -> OpenStream:
        self.reply = await self.session.post(self.url, json=STREAM)
        assert self.reply.status == 200, await self.reply.read()
        while b'"content":"H' not in self.received:
            chunk = await self.reply.content.readany()
            assert chunk, "the stream ended before its first piece"
            self.received += chunk
        return self

    async def rest(self) -> bytes:
        assert self.reply is not None
        self.received += await self.reply.read()
        return self.received

    def hang_up(self) -> None:
        assert self.reply is not None
        self.reply.close()  # closes the connection, not just the response


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    # No pool limit on the test's side: the server's is what is tested.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        yield session


def events_text(raw: bytes) -> tuple[str, list[dict[str, Any]]]:
    events = sse_data(raw)
    assert events[-1] == "[DONE]"
    frames = [json.loads(data) for data in events[:-1]]
    text = "".join(
        frame["choices"][0]["delta"].get("content") or ""
        for frame in frames
        if frame.get("choices")
    )
    return text, frames


# --- admission and the pool -------------------------------------------------------------------


async def test_past_max_concurrency_a_429_with_retry_after(
    start_api, emulator_factory, client
) -> None:
    emulator = emulator_factory(
        faults=[Fault(kind="stall", where="inside", after_tokens=1, seconds=30.0, times=2)]
    )
    api = await start_api(stalled(emulator), ServeOptions(max_concurrency=2, grace=1))
    url = api.base + "/chat/completions"
    held = [await OpenStream(client, url).start() for _ in range(2)]
    async with client.post(url, json=STREAM) as reply:
        assert reply.status == 429
        assert reply.headers["Retry-After"] == "1"
        error = (await reply.json())["error"]
    assert error["code"] == "rate_limit_exceeded"
    assert "limit of 2" in error["message"]
    async with client.get(api.origin + "/health") as reply:
        assert (await reply.json())["in_flight"] == 2
    # A client that asks before sending its body is told so at once, without "100 Continue".
    reader, writer = await asyncio.open_connection(api.host, api.port)
    try:
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Length: 50\r\n"
            b"Content-Type: application/json\r\nExpect: 100-continue\r\n\r\n"
        )
        refused = await asyncio.wait_for(read_reply(reader), 10)
    finally:
        writer.close()
    assert (refused.status, refused.headers["retry-after"]) == (429, "1")  # not 100 first
    for stream in held:
        stream.hang_up()
    await wait_until(lambda: not api.state.in_flight)
    async with client.post(url, json=STREAM) as reply:
        assert reply.status == 200
        text, _ = events_text(await reply.read())
    assert text == ANSWER


async def test_every_admitted_stream_flows_past_the_librarys_default_pool(
    start_api, emulator_factory, client
) -> None:
    """The library's shared session holds 100 connections; the server sizes its own pool
    to what it admits, so 110 streams are all on the wire at once."""
    streams = 110
    emulator = emulator_factory(
        faults=[Fault(kind="stall", where="inside", after_tokens=1, seconds=30.0, times=streams)]
    )
    api = await start_api(stalled(emulator), ServeOptions(max_concurrency=streams, grace=1))
    url = api.base + "/chat/completions"
    opened = await asyncio.wait_for(
        asyncio.gather(*(OpenStream(client, url).start() for _ in range(streams))), 30.0
    )
    assert len(api.state.in_flight) == streams  # all of them mid-answer, none finished
    for stream in opened:
        stream.hang_up()
    await wait_until(lambda: not api.state.in_flight)


# --- a client that hangs up -------------------------------------------------------------------


@needs_proc
async def test_a_client_hanging_up_closes_the_upstream_stream(
    start_api, emulator_factory, client
) -> None:
    emulator = emulator_factory(faults=[STALL])
    api = await start_api(stalled(emulator), ServeOptions(max_concurrency=1, grace=1))

    def emulator_connections() -> int:
        # Open on the emulator's side: established, or closed by us but not yet by it.
        return listening_sockets(emulator.port, "01") + listening_sockets(emulator.port, "08")

    stream = await OpenStream(client, api.base + "/chat/completions").start()
    during = emulator_connections()
    assert during >= 1
    stream.hang_up()
    # The emulator would stall for 30 s more: its side closes because ours did.
    await wait_until(lambda: emulator_connections() == during - 1)
    await wait_until(lambda: not api.state.in_flight)
    async with client.post(api.base + "/chat/completions", json=STREAM) as reply:
        text, _ = events_text(await reply.read())
    assert text == ANSWER  # the one admitted slot and its connection are free again


async def small_window(api: Any) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to ``api`` whose receive window is small: what the client leaves unread
    fills it, and the server's writes wait, after a few KiB."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, (api.host, api.port))
    except BaseException:
        sock.close()
        raise
    return await asyncio.open_connection(sock=sock)


async def closed(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


@needs_proc
async def test_a_client_that_stops_reading_is_cut_off(start_api, emulator_factory) -> None:
    """A client that keeps its connection open but reads nothing: aiohttp's writes would
    wait for it forever, holding the slot and the upstream stream. Once a write has waited
    ``idle_timeout``, the connection is closed, and the slot and upstream go with it."""
    emulator = emulator_factory(token_delay=0.0, token_chars=4000, answer_chars=16_000_000)
    options = ServeOptions(max_concurrency=1, grace=1, idle_timeout=0.3)
    api = await start_api(stalled(emulator), options)
    _, writer = await small_window(api)
    try:
        writer.write(post_request(PATH, json.dumps(STREAM).encode()))
        await writer.drain()
        await wait_until(lambda: bool(api.state.in_flight))
        await wait_until(lambda: listening_sockets(emulator.port) == 1)  # upstream, in use
        # Nothing is read, ever: the server gives up on the client on its own.
        await wait_until(lambda: not api.state.in_flight, seconds=30)
        await wait_until(lambda: listening_sockets(emulator.port) == 0)
    finally:
        await closed(writer)


@needs_proc
async def test_a_large_whole_answer_reaches_a_reader_and_is_cut_off_for_a_stalled_one(
    start_api, emulator_factory, client
) -> None:
    """A ``chat.completion`` larger than the socket's buffer is written under the same bound
    as a stream: whole to a client that reads, cut off for one that does not."""
    emulator = emulator_factory(token_delay=0.0, token_chars=4000, answer_chars=3_000_000)
    options = ServeOptions(max_concurrency=1, grace=1, idle_timeout=0.3)
    api = await start_api(stalled(emulator), options)
    whole = {"model": "gpt-4o", "messages": HELLO}
    async with client.post(api.base + "/chat/completions", json=whole) as reply:
        assert reply.status == 200
        assert (reply.content_length or 0) > 3_000_000
        completion = await reply.json()
    assert len(completion["choices"][0]["message"]["content"]) == 3_000_000
    assert completion["usage"]["completion_tokens"] > 0
    reader, writer = await small_window(api)
    try:
        writer.write(post_request(PATH, json.dumps(whole).encode()))
        await writer.drain()
        await wait_until(lambda: bool(api.state.in_flight))
        await wait_until(lambda: not api.state.in_flight, seconds=30)
        # What did arrive is the start of the answer, then the server closed the connection.
        received = b""
        with contextlib.suppress(ConnectionError):
            while chunk := await asyncio.wait_for(reader.read(1 << 16), 10):
                received += chunk
        assert received.startswith(b"HTTP/1.1 200 OK\r\n")
        assert len(received) < 3_000_000
    finally:
        await closed(writer)


class StalledSocket(asyncio.Transport):
    """Stands in for the socket of a client that stopped reading: what is written stays in
    its buffer, whose size the test sets (as the client's earlier reads would have)."""

    def __init__(self) -> None:
        super().__init__()
        self.size = 0
        self.aborted = False

    def get_write_buffer_size(self) -> int:
        return self.size

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (16 * 1024, 64 * 1024)

    def is_closing(self) -> bool:
        return self.aborted

    def write(self, data: Any) -> None:
        self.size += len(data)

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def abort(self) -> None:
        self.aborted = True


class ServerProtocol(BaseProtocol):
    """aiohttp's flow control of a server connection (the request keeps its writer)."""

    writer: Any = None
    ssl_context = peername = sockname = None


async def test_a_write_while_writing_is_paused_is_timed() -> None:
    """Writing paused (the buffer went over its high mark) and the client since read a
    little: the buffer is below the high mark but above the low one, where aiohttp's drain
    still waits. A small write there must be timed like any other, or a client that stops
    reading at that moment holds the request for ever."""
    loop = asyncio.get_running_loop()
    socket_ = StalledSocket()
    protocol = ServerProtocol(loop)
    protocol.connection_made(socket_)
    writer = StreamWriter(protocol, loop)
    request = make_mocked_request("POST", PATH, writer=writer, transport=socket_, protocol=protocol)
    response = web.StreamResponse()
    await response.prepare(request)
    bounded = _BoundedWriter(request, response, 0.2)
    try:
        await bounded.write(b"x" * 64_000)  # the buffer takes it: no wait
        protocol.pause_writing()  # it went over the high mark...
        socket_.size = 20_000  # ...and the client read some, not down to the low mark
        with pytest.raises(_ClientStalledError):
            await asyncio.wait_for(bounded.write(b"y" * 2_000), 10)  # not the 10 s: 0.2
    finally:
        bounded.close()


@needs_proc
async def test_a_slow_but_steady_reader_gets_a_large_answer_whole(
    start_api, emulator_factory
) -> None:
    """The limit is on the client's pauses, not on the time the whole answer takes: a
    reader that takes longer than ``idle_timeout`` for a large answer, but never pauses that
    long, gets all of it."""
    emulator = emulator_factory(token_delay=0.0, token_chars=4000, answer_chars=2_000_000)
    options = ServeOptions(max_concurrency=1, grace=1, idle_timeout=0.8)
    api = await start_api(stalled(emulator), options)
    reader, writer = await small_window(api)
    loop = asyncio.get_running_loop()
    try:
        server = api.runner.server
        assert server is not None
        await wait_until(lambda: bool(server.connections))
        for connection in server.connections:  # a kernel buffer far smaller than the answer
            assert connection.transport is not None
            accepted = connection.transport.get_extra_info("socket")
            accepted.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        body = json.dumps({"model": "gpt-4o", "messages": HELLO}).encode()
        writer.write(post_request(PATH, body))
        await writer.drain()
        received = b""
        started = loop.time()
        while chunk := await asyncio.wait_for(reader.read(16 * 1024), 10):
            received += chunk
            await asyncio.sleep(0.01)  # the slow reader under test, not a wait for an event
        took = loop.time() - started
    finally:
        await closed(writer)
    head, _, payload = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert len(json.loads(payload)["choices"][0]["message"]["content"]) == 2_000_000
    assert took > options.idle_timeout  # longer than the limit in all, and not cut off


# --- stopping ---------------------------------------------------------------------------------


async def test_on_stop_answers_in_flight_finish_within_the_grace(
    start_api, emulator_factory, client
) -> None:
    emulator = emulator_factory(token_delay=0.02, answer_chars=400)  # 50 pieces, ~1 s
    api = await start_api(provider_for(emulator), ServeOptions(grace=30.0))
    stream = await OpenStream(client, api.base + "/chat/completions").start()
    stopping = asyncio.create_task(api.runner.cleanup())
    await until_refused(api.host, api.port)  # while the answer is still coming
    assert not stopping.done()
    text, frames = events_text(await stream.rest())
    assert len(text) == 400
    assert frames[-1]["choices"][0]["finish_reason"] == "stop"
    await asyncio.wait_for(stopping, 10.0)  # it did not wait out the 30 s grace


async def test_past_the_grace_answers_are_ended_with_an_error(
    start_api, emulator_factory, client
) -> None:
    emulator = emulator_factory(faults=[STALL, Fault(kind="stall", seconds=30.0, target="ajax")])
    api = await start_api(stalled(emulator), ServeOptions(grace=0.2))
    stream = await OpenStream(client, api.base + "/chat/completions").start()
    whole = asyncio.create_task(
        client.post(api.base + "/chat/completions", json={"model": "gpt-4o", "messages": HELLO})
    )
    await wait_until(lambda: len(api.state.in_flight) == 2 and emulator.stats.ajax_requests == 2)
    await asyncio.wait_for(api.runner.cleanup(), 10.0)
    events = sse_data(await stream.rest())
    assert events[-1] == "[DONE]"
    error = json.loads(events[-2])["error"]
    assert error["code"] == "server_shutting_down"
    reply = await whole
    assert reply.status == 503
    assert (await reply.json())["error"]["code"] == "server_shutting_down"
    reply.release()


async def test_a_second_signal_ends_the_grace_at_once(start_api, emulator_factory, client) -> None:
    emulator = emulator_factory(faults=[STALL])
    api = await start_api(stalled(emulator), ServeOptions(grace=30.0))
    stream = await OpenStream(client, api.base + "/chat/completions").start()
    stopping = asyncio.create_task(api.runner.cleanup())
    await until_refused(api.host, api.port)
    api.state.hurry()
    await asyncio.wait_for(stopping, 10.0)
    events = sse_data(await stream.rest())
    assert json.loads(events[-2])["error"]["code"] == "server_shutting_down"
    assert events[-1] == "[DONE]"
