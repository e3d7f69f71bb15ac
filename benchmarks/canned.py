"""The library's own CPU per call, with the network taken out.

``python -m benchmarks.canned [--dialect aipkit|classic] [--calls 5000] [--profile N]``

The emulator serves the landing page once; after that every request of the provider is
answered from memory by a session whose ``request`` returns canned replies (a 200-character
answer: a JSON reply in the classic dialect, step 1's key and a two-chunk event stream in
the AIPKit one). What is left is chatgptt's own work per call — validation, settings, the
layers, the stages and their records, the timers, decoding — which the loopback benchmarks
show only mixed with aiohttp's and the kernel's. Warm, in one process, so stable to about a
microsecond: the figure to compare before and after a change to the hot path. ``--profile
N`` prints the top N functions of a cProfile run instead (its figures are inflated).

A measuring tool only: the tests never replace aiohttp (they talk to a real server).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import time
import urllib.request
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy

from benchmarks.emulator import EmulatorProcess, EmulatorSettings
from chatgptt import ChatGptt
from chatgptt.emulator.aipkit.events import PADDING, delta_frame, done_frame, message_start_frame

ROOT = Path(__file__).resolve().parent.parent
ANSWER = ("Hello from upstream: Hello, how are you? " * 6)[:200]
_PIECES = [ANSWER[i : i + 8] for i in range(0, len(ANSWER), 8)]
STREAM = b"".join(
    [PADDING, message_start_frame("aipkit-msg-1").data]
    + [delta_frame(piece).data for piece in _PIECES]
    + [done_frame().data]
)
STEP1 = b'{"success":true,"data":{"cache_key":"aipkit_sse_abcdefghijklmnopqrstuvwxyz012345"}}'
CLASSIC = f'{{"status":"success","msg":"","data":"{ANSWER}","log":false}}'.encode()


class _Content:
    """What the library reads of ``response.content``: chunks already buffered."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    def read_nowait(self, n: int = -1) -> bytes:
        return self.chunks.pop(0) if self.chunks else b""

    def at_eof(self) -> bool:
        return not self.chunks

    async def readany(self) -> bytes:
        return self.read_nowait()


class _Response:
    def __init__(self, url: str, content_type: str, chunks: list[bytes]) -> None:
        self.url = self.real_url = url
        self.status = 200
        self.charset = "utf-8"
        self.history = ()
        self.headers = CIMultiDictProxy(
            CIMultiDict({"Content-Type": content_type, "Content-Length": "1"})
        )
        self.content = _Content(chunks)

    def release(self) -> None:
        pass

    def close(self) -> None:
        pass


with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # aiohttp discourages subclasses

    class _CannedSession(aiohttp.ClientSession):
        """Answers every request from memory, after one trip through the loop."""

        def __init__(self, page: bytes, dialect: str) -> None:
            super().__init__()
            self.page = page
            self.dialect = dialect

        async def request(self, method: str, str_or_url: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            await asyncio.sleep(0)
            url = str(str_or_url)
            if method == "GET" and kwargs.get("params") is None:
                return _Response(url, "text/html; charset=UTF-8", [self.page])
            if method == "POST":
                body = CLASSIC if self.dialect == "classic" else STEP1
                return _Response(url, "application/json; charset=UTF-8", [body])
            half = len(STREAM) // 2
            return _Response(
                url, "text/event-stream; charset=UTF-8", [STREAM[:half], STREAM[half:]]
            )


class _Pool:
    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def get(self) -> aiohttp.ClientSession:
        return self.session


async def _measure(url: str, page: bytes, dialect: str, calls: int, profile: int) -> str:
    session = _CannedSession(page, dialect)
    provider = ChatGptt.derive("Canned", url=url, sessions=_Pool(session))
    messages = [{"role": "user", "content": "Hello, how are you?"}]

    async def one() -> None:
        text = [chunk async for chunk in provider.create_async_generator("gpt-4o", messages)]
        if "".join(text) != ANSWER:
            raise AssertionError(f"unexpected answer: {''.join(text)!r}")

    try:
        for _ in range(500):
            await one()
        if profile:
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(calls):
                await one()
            profiler.disable()
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(profile)
            return out.getvalue()
        best = float("inf")
        for _ in range(5):
            started = time.process_time()
            for _ in range(calls):
                await one()
            best = min(best, (time.process_time() - started) / calls * 1e6)
        started = time.process_time()
        for _ in range(calls):
            for _ in range(2):
                await asyncio.sleep(0)
        network = (time.process_time() - started) / calls * 1e6
        return (
            f"chatgptt, {dialect} dialect, canned replies: {best:.1f} µs CPU per call "
            f"(best of 5 x {calls}; the canned network's own trips through the loop "
            f"~{network:.1f} µs)"
        )
    finally:
        await session.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Measure and print."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.canned")
    parser.add_argument("--dialect", choices=("aipkit", "classic"), default="aipkit")
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--profile", type=int, default=0, metavar="N")
    args = parser.parse_args(argv)
    work = ROOT / "benchmarks" / ".work" / "canned"
    work.mkdir(parents=True, exist_ok=True)
    mode = "sse" if args.dialect == "aipkit" else "json"
    with EmulatorProcess(EmulatorSettings(mode=mode, dialect=args.dialect), work_dir=work) as emu:
        url = emu.url.rstrip("/")
        with urllib.request.urlopen(url + "/") as reply:
            page = reply.read()
        # The emulator stays up only so that the page names its own URL; no call reaches it.
        print(asyncio.run(_measure(url, page, args.dialect, args.calls, args.profile)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
