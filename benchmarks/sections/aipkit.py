"""The AIPKit path (the plugin's v2.3+ protocol): chatgptt against a floor written by hand.

Both clients talk to the emulator's AIPKit site: step 1 (cache the message, get a one-use
key) and step 2 (stream the answer to it), the page and its nonce fetched once. chatgptt
runs as users run it (the page picks the dialect; its conversation store and two-step
transport included); the floor (``benchmarks.client_aipkit_floor``) does the least a client
can. Figures: CPU per call at concurrency 1 and 32, time to the first token, and 1,000
AIPKit streams open at once.
"""

from __future__ import annotations

from benchmarks.emulator import EmulatorSettings
from benchmarks.harness import (
    FIRST_TOKEN_DELAY,
    FIRST_TOKEN_TOKENS,
    SHORT_ANSWER,
    Context,
    Runs,
    Section,
    Table,
    Target,
    fmt,
    fmt_ratio,
    rotated,
    verdict,
)

CLIENTS = ("aipkit_floor", "chatgptt")
_NAMES = {"aipkit_floor": "floor (by hand)", "chatgptt": "chatgptt"}


def section_aipkit(ctx: Context) -> Section:
    """CPU per call (c1, c32), time to first token, and 1,000 concurrent AIPKit streams."""
    section = Section("aipkit")
    _cpu(ctx, section)
    _first_token(ctx, section)
    _streams(ctx, section)
    return section


def _spec(url: str, calls: int, concurrency: int, warmup: int, chars: int) -> dict[str, object]:
    return {
        "url": url,
        "mode": "sse",
        "phases": [
            {
                "calls": calls,
                "concurrency": concurrency,
                "warmup": warmup,
                "expect_chars": chars,
            }
        ],
    }


def _cpu(ctx: Context, section: Section) -> None:
    p = ctx.preset
    settings = EmulatorSettings(mode="sse", dialect="aipkit", answer_chars=SHORT_ANSWER)
    by_concurrency: dict[int, Runs] = {1: Runs(), 32: Runs()}
    with ctx.emulator(settings) as emulator:
        for run in range(p.runs):
            ctx.log(f"  aipkit CPU run {run + 1}/{p.runs}")
            for concurrency, calls in ((1, p.calls_c1), (32, p.calls_c32)):
                for client in rotated(list(CLIENTS), run):
                    spec = _spec(emulator.url, calls, concurrency, p.warmup, SHORT_ANSWER)
                    result = ctx.run(client, spec)
                    if result is not None:
                        by_concurrency[concurrency].add(client, run, result["phases"][0])
    table = Table(
        f"AIPKit path: CPU per call — {settings.describe()}",
        ["client", "conc", "CPU/call µs", "×floor", "calls/s", "errors"],
        note=(
            f"{p.calls_c1} calls at concurrency 1 and {p.calls_c32} at 32 per client and run, "
            f"{p.warmup} warm-up calls excluded, {p.runs} interleaved runs; median [min–max] "
            "over runs, ratios per run. Two requests per call (step 1 and step 2); every call "
            "a new conversation. CPU is the client process's (user + system)."
        ),
    )
    for concurrency, runs in by_concurrency.items():
        for client in CLIENTS:
            if client not in runs.by_client:
                table.rows.append([_NAMES[client], str(concurrency), "failed", "—", "—", "—"])
                continue
            table.rows.append(
                [
                    _NAMES[client],
                    str(concurrency),
                    fmt(runs.figure(client, "cpu_per_call_s"), 1e6, 0),
                    fmt_ratio(runs.ratio(client, "aipkit_floor", "cpu_per_call_s")),
                    fmt(runs.figure(client, "calls_per_s"), 1, 0),
                    str(runs.total_errors(client)),
                ]
            )
        ratio = runs.ratio("chatgptt", "aipkit_floor", "cpu_per_call_s")
        section.targets.append(
            Target(
                f"AIPKit CPU per call, c{concurrency}",
                "chatgptt ≤ 1.15 × the floor",
                f"{fmt_ratio(ratio)} the floor" if ratio else "failed",
                verdict(ratio, lambda x: x <= 1.15),
            )
        )
    section.tables.append(table)
    section.data["cpu"] = {
        str(c): r.as_dict(("cpu_per_call_s", "calls_per_s", "p50_s"))
        for c, r in by_concurrency.items()
    }


def _first_token(ctx: Context, section: Section) -> None:
    p = ctx.preset
    answer = FIRST_TOKEN_TOKENS * 8
    settings = EmulatorSettings(
        mode="sse",
        dialect="aipkit",
        token_delay=FIRST_TOKEN_DELAY,
        token_chars=8,
        answer_chars=answer,
    )
    runs = Runs()
    with ctx.emulator(settings) as emulator:
        for run in range(p.ttft_runs):
            ctx.log(f"  aipkit first token, run {run + 1}/{p.ttft_runs}")
            for client in rotated(list(CLIENTS), run):
                spec = _spec(emulator.url, p.ttft_calls, min(5, p.ttft_calls), 2, answer)
                result = ctx.run(client, spec)
                if result is not None:
                    runs.add(client, run, result["phases"][0])
    table = Table(
        f"AIPKit path: time to first token — {FIRST_TOKEN_TOKENS} tokens, "
        f"{FIRST_TOKEN_DELAY * 1000:g} ms apart",
        ["client", "first token ms", "whole answer ms", "errors"],
        note=(
            f"{p.ttft_calls} calls per client and run (5 at a time), 2 warm-up calls excluded, "
            f"{p.ttft_runs} runs; median per run, then median [min–max]. The first token "
            "comes after step 1 and step 2's headers; the floor counts its first body chunk "
            "holding a delta."
        ),
    )
    for client in CLIENTS:
        if client not in runs.by_client:
            table.rows.append([_NAMES[client], "failed", "—", "—"])
            continue
        table.rows.append(
            [
                _NAMES[client],
                fmt(runs.figure(client, "first_chunk_s"), 1e3, 1),
                fmt(runs.figure(client, "p50_s"), 1e3, 0),
                str(runs.total_errors(client)),
            ]
        )
    section.tables.append(table)
    section.data["first_token"] = runs.as_dict(("first_chunk_s", "p50_s"))
    ours = runs.figure("chatgptt", "first_chunk_s")
    floor = runs.figure("aipkit_floor", "first_chunk_s")
    gap = None if ours is None or floor is None else ours.median - floor.median
    section.targets.append(
        Target(
            "AIPKit time to first token",
            "chatgptt within 10 ms of the floor's",
            f"{gap * 1000:+.1f} ms vs the floor" if gap is not None else "failed",
            None if gap is None else gap <= 0.010,
        )
    )


def _streams(ctx: Context, section: Section) -> None:
    p = ctx.preset
    tokens, delay = 25, 0.02
    settings = EmulatorSettings(
        mode="sse", dialect="aipkit", token_delay=delay, token_chars=8, answer_chars=tokens * 8
    )
    many = Runs()
    with ctx.emulator(settings) as emulator:
        for run in range(p.memory_runs):
            ctx.log(f"  {p.streams} concurrent AIPKit streams, run {run + 1}/{p.memory_runs}")
            for client in rotated(list(CLIENTS), run):
                spec = {
                    **_spec(emulator.url, p.streams, p.streams, 10, tokens * 8),
                    "pool": p.streams,
                }
                result = ctx.run(client, spec, timeout=300.0)
                if result is not None:
                    many.add(client, run, result["phases"][0])
    table = Table(
        f"AIPKit path: {p.streams} concurrent streams",
        ["client", "peak RSS MB", "max open streams", "errors"],
        note=(
            f"Each call streams {tokens} tokens {delay * 1000:g} ms apart after its step 1; "
            f"pools sized for all {p.streams} at once; 10 warm-up calls; {p.memory_runs} runs."
        ),
    )
    for client in CLIENTS:
        if client not in many.by_client:
            table.rows.append([_NAMES[client], "failed", "—", "—"])
            continue
        table.rows.append(
            [
                _NAMES[client],
                fmt(many.figure(client, "rss_peak_mb"), 1, 1),
                fmt(many.figure(client, "max_open_streams")),
                str(many.total_errors(client)),
            ]
        )
    section.tables.append(table)
    section.data["streams"] = many.as_dict(("rss_peak_mb", "max_open_streams"))
    errors = many.total_errors("chatgptt") if "chatgptt" in many.by_client else None
    section.targets.append(
        Target(
            f"{p.streams} concurrent AIPKit streams",
            "no error",
            f"{errors} errors" if errors is not None else "failed",
            None if errors is None else errors == 0,
        )
    )
