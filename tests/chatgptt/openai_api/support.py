"""Test aids: a raw HTTP/1.1 client on asyncio streams, an SSE reader, and a look at the
emulator's sockets (Linux ``/proc/net/tcp``)."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROC_TCP = Path("/proc/net/tcp")
_ESTABLISHED = "01"


@dataclass
class RawReply:
    """A response as it came off the wire."""

    status: int
    headers: dict[str, str]
    body: bytes
    raw_body: bytes = field(repr=False, default=b"")

    def json(self) -> Any:
        return json.loads(self.body)


async def read_reply(reader: asyncio.StreamReader) -> RawReply:
    """One HTTP/1.1 response: its status line, headers, and body (by ``Content-Length``,
    chunked, or up to the connection's close)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        raw = bytearray()
        body = bytearray()
        while True:
            size_line = await reader.readuntil(b"\r\n")
            raw += size_line
            size = int(size_line.split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            raw += chunk
            assert chunk.endswith(b"\r\n"), "a chunk must end with CRLF"
            if size == 0:
                break
            body += chunk[:-2]
        return RawReply(status, headers, bytes(body), bytes(raw))
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
        return RawReply(status, headers, body, body)
    body = await reader.read()
    return RawReply(status, headers, body, body)


async def raw_exchange(host: str, port: int, request: bytes, seconds: float = 10.0) -> RawReply:
    """Send ``request`` bytes as they are on a new connection; the response."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(read_reply(reader), seconds)
    finally:
        writer.close()


def post_request(
    path: str,
    body: bytes,
    *,
    content_type: str | None = "application/json",
    extra: str = "",
    close: bool = True,
) -> bytes:
    """A POST request's bytes."""
    head = f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {len(body)}\r\n"
    if content_type is not None:
        head += f"Content-Type: {content_type}\r\n"
    if close:
        head += "Connection: close\r\n"
    return (head + extra + "\r\n").encode() + body


def sse_data(body: bytes) -> list[str]:
    """The ``data`` of each event of a stream body, checking the framing: every event is
    ``data: …`` lines ended by a blank line, nothing else."""
    text = body.decode("utf-8")
    assert text.endswith("\n\n"), "a stream ends with a complete event"
    events = []
    for block in text[:-2].split("\n\n"):
        lines = block.split("\n")
        assert all(line.startswith("data: ") for line in lines), block
        events.append("\n".join(line[len("data: ") :] for line in lines))
    return events


def listening_sockets(port: int, state: str = _ESTABLISHED) -> int:
    """How many TCP sockets on this machine have local port ``port`` in ``state``: the
    server side of the connections an emulator on ``port`` holds open."""
    count = 0
    for line in PROC_TCP.read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].rsplit(":", 1)[1], 16)
        if local_port == port and fields[3] == state:
            count += 1
    return count


async def refused(host: str, port: int) -> bool:
    """Whether a connection to ``host:port`` is refused (nothing listens there)."""
    try:
        _, writer = await asyncio.open_connection(host, port)
    except OSError:
        return True
    writer.close()
    return False


async def until_refused(host: str, port: int, seconds: float = 10.0) -> None:
    """Wait until the server stops listening on ``host:port``."""
    deadline = time.monotonic() + seconds
    for _ in iter(int, 1):
        if await refused(host, port):
            return
        assert time.monotonic() < deadline, f"{host}:{port} still accepts connections"
        await asyncio.sleep(0.01)


async def wait_until(done: Callable[[], bool], seconds: float = 10.0) -> None:
    """Poll a condition another thread or process makes true."""
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, "the condition never came true"
        await asyncio.sleep(0.005)


class ServeProcess:
    """``chatgptt serve ARGS`` in a child process; its stderr lines read as they come.

    A context manager: the process is killed (and reaped) on leaving if still running.
    """

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        import os
        import subprocess
        import sys
        import threading

        environment = {**os.environ, "CHATGPTT_USAGE_TOKENIZER": "estimate", **(env or {})}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "chatgptt.cli", "serve", "--port", "0", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=environment,
            start_new_session=True,  # its workers too are ended at the end
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self.lines.append("")  # end of output
            self._changed.notify_all()

    def wait_for_line(self, pattern: str, seconds: float = 30.0) -> re.Match[str]:
        """The first stderr line matching ``pattern`` (waiting for it)."""
        compiled = re.compile(pattern)
        deadline = time.monotonic() + seconds
        with self._changed:
            while True:
                for line in self.lines:
                    found = compiled.search(line)
                    if found:
                        return found
                if self.lines and self.lines[-1] == "" and self.process.poll() is not None:
                    raise AssertionError(f"the server ended without {pattern!r}: {self.lines}")
                left = deadline - time.monotonic()
                assert left > 0, f"no line matching {pattern!r} in {self.lines}"
                self._changed.wait(left)

    @property
    def base(self) -> str:
        """The API's base URL, from the first line."""
        return self.wait_for_line(r"on (http://\S+/v1)").group(1)

    @property
    def port(self) -> int:
        return int(self.base.rsplit(":", 1)[1].split("/")[0])

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self, seconds: float = 30.0) -> int:
        return self.process.wait(seconds)

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        import contextlib
        import os
        import signal

        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self._reader.join(5)
        if self.process.stderr is not None:
            self.process.stderr.close()
