"""The measuring loop every client worker shares: warm-up, timed calls, CPU, latency, memory.

A worker is ``python -m benchmarks.client_X SPEC.json RESULT.json``. It builds its client,
then this module runs the spec's phases — each a number of calls at a concurrency after a
warm-up — and writes one JSON result. Only the timed calls count: process CPU time
(``time.process_time``, all threads), wall time, each call's latency and time to its first
chunk, and the resident memory before and at its peak (``VmHWM`` reset through
``/proc/self/clear_refs`` so the peak is that of the phase, not of start-up).

Standard library only: the peer worker imports it from a virtual environment that has
g4f and nothing of this project.
"""

from __future__ import annotations

import asyncio
import cProfile
import gc
import json
import os
import resource
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CallFn",
    "Client",
    "Messages",
    "conversation",
    "main",
    "peak_rss_kb",
    "reset_peak_rss",
    "rss_kb",
]

Messages = list[dict[str, str]]
#: One call: the conversation in, the answer's chunks (text or raw bytes) out.
CallFn = Callable[[Messages], AsyncIterator[Any]]

_TURN_TEXT = (
    "Turn {n}: a sentence of ordinary conversation, long enough to look like what people "
    "write, with a question at the end?"
)


def conversation(turns: int, question: str = "Hello, how are you?") -> Messages:
    """A conversation of ``turns`` messages, alternating user and assistant, ending with
    the user's ``question`` (the same for every client)."""
    if turns < 1:
        raise ValueError("a conversation has at least one turn")
    messages: Messages = [
        {
            "role": "user" if (turns - 1 - n) % 2 == 0 else "assistant",
            "content": _TURN_TEXT.format(n=n + 1),
        }
        for n in range(turns - 1)
    ]
    messages.append({"role": "user", "content": question})
    return messages


def _status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_kb() -> int | None:
    """The process's resident set size now, in KiB (Linux), else ``None``."""
    return _status_kb("VmRSS")


def peak_rss_kb() -> int | None:
    """The resident high-water mark since start or the last :func:`reset_peak_rss`."""
    return _status_kb("VmHWM")


def reset_peak_rss() -> bool:
    """Reset ``VmHWM`` to the current RSS (Linux ``clear_refs`` 5); ``False`` if unsupported."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear:
            clear.write("5")
    except OSError:
        return False
    return True


def maxrss_kb() -> int:
    """``ru_maxrss``: the lifetime peak, KiB on Linux."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


@dataclass
class Client:
    """What a worker measures: one callable per variant, and how to close them.

    Attributes:
        calls: variant name -> call; ``default`` is required.
        counts_chars: the chunks are answer text (so their length can be checked
            against the expected answer size), not raw bytes.
        close: awaited once all phases ran.
        info: facts about the client for the report (versions, pool size...).
    """

    calls: dict[str, CallFn]
    counts_chars: bool = True
    close: Callable[[], Awaitable[None]] | None = None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Tally:
    latencies: list[float] = field(default_factory=list)
    firsts: list[float] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    open_streams: int = 0
    max_open_streams: int = 0


async def _one(call: CallFn, messages: Messages, tally: _Tally, expect: int | None) -> None:
    start = time.perf_counter()
    first: float | None = None
    size = 0
    error: str | None = None
    try:
        async for chunk in call(messages):
            if first is None and chunk:
                first = time.perf_counter() - start
                tally.open_streams += 1
                tally.max_open_streams = max(tally.max_open_streams, tally.open_streams)
            size += len(chunk)
    except Exception as exc:  # a failed call is counted, and the run goes on
        error = f"{type(exc).__name__}: {exc}"[:300]
    finally:
        if first is not None:
            tally.open_streams -= 1
    elapsed = time.perf_counter() - start
    if error is None and expect is not None and size != expect:
        error = f"answer of {size} characters, expected {expect}"
    if error is not None:
        tally.errors.append(error)
        return
    tally.latencies.append(elapsed)
    tally.firsts.append(first if first is not None else elapsed)
    tally.sizes.append(size)


async def _batch(
    call: CallFn, messages: Messages, calls: int, concurrency: int, expect: int | None
) -> _Tally:
    tally = _Tally()
    remaining = calls

    async def lane() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await _one(call, messages, tally, expect)

    await asyncio.gather(*(lane() for _ in range(max(1, min(concurrency, calls)))))
    return tally


async def _phase(
    client: Client, phase: dict[str, Any], profiler: cProfile.Profile | None
) -> dict[str, Any]:
    variant = phase.get("variant", "default")
    call = client.calls[variant]
    messages = conversation(int(phase.get("turns", 1)))
    calls = int(phase["calls"])
    concurrency = int(phase.get("concurrency", 1))
    warmup = int(phase.get("warmup", 0))
    expect = phase.get("expect_chars") if client.counts_chars else None
    warm_variant = phase.get("warmup_variant", variant)
    warm_call = client.calls.get(warm_variant, call)
    warm_expect = expect if warm_variant == variant else None
    warm = _Tally()
    if warmup:
        warm = await _batch(warm_call, messages, warmup, concurrency, warm_expect)
    gc.collect()
    peak_reset = reset_peak_rss()
    rss_before = rss_kb()
    if profiler is not None:
        profiler.enable()
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    tally = await _batch(call, messages, calls, concurrency, expect)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    if profiler is not None:
        profiler.disable()
    return {
        "name": phase.get("name", variant),
        "variant": variant,
        "calls": calls,
        "concurrency": concurrency,
        "warmup": warmup,
        "turns": int(phase.get("turns", 1)),
        "ok": len(tally.latencies),
        "errors": len(tally.errors),
        "error_samples": sorted(set(tally.errors))[:5],
        "warmup_errors": len(warm.errors),
        "cpu_s": cpu,
        "user_s": usage.ru_utime - usage0.ru_utime,
        "sys_s": usage.ru_stime - usage0.ru_stime,
        "context_switches": (usage.ru_nvcsw - usage0.ru_nvcsw)
        + (usage.ru_nivcsw - usage0.ru_nivcsw),
        "wall_s": wall,
        "latency_s": [round(x, 7) for x in tally.latencies],
        "first_chunk_s": [round(x, 7) for x in tally.firsts],
        "chunk_units": sum(tally.sizes),
        "rss_before_kb": rss_before,
        "rss_peak_kb": peak_rss_kb() if peak_reset else None,
        "maxrss_kb": maxrss_kb(),
        "max_open_streams": tally.max_open_streams,
    }


async def _run(
    setup: Callable[[dict[str, Any]], Awaitable[Client]], spec: dict[str, Any]
) -> dict[str, Any]:
    client = await setup(spec)
    profiler = cProfile.Profile() if spec.get("profile") else None
    results = []
    try:
        for phase in spec["phases"]:
            results.append(await _phase(client, phase, profiler))
    finally:
        if client.close is not None:
            await client.close()
    if profiler is not None:
        profiler.dump_stats(spec["profile"])
    return {
        "client": spec.get("client"),
        "python": sys.version.split()[0],
        "info": client.info,
        "phases": results,
        "project_modules": sorted(
            name for name in sys.modules if name.split(".")[0] in ("chatgptt", "stages")
        ),
    }


def main(
    setup: Callable[[dict[str, Any]], Awaitable[Client]], argv: Sequence[str] | None = None
) -> None:
    """Run a worker: read the spec, run its phases, write the result (never to stdout:
    what the client prints there is part of what is checked)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        raise SystemExit("usage: python -m benchmarks.client_NAME SPEC.json RESULT.json")
    spec_path, result_path = args
    with open(spec_path, encoding="utf-8") as source:
        spec = json.load(source)
    result = asyncio.run(_run(setup, spec))
    tmp = result_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as out:
        json.dump(result, out)
    os.replace(tmp, result_path)
