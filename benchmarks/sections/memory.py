"""Memory: 1,000 concurrent streaming calls, and one 100 MB streamed answer."""

from __future__ import annotations

from benchmarks.emulator import EmulatorSettings
from benchmarks.harness import (
    Context,
    Runs,
    Section,
    Table,
    Target,
    fmt,
    rotated,
)
from benchmarks.stats import Figure


def section_memory(ctx: Context) -> Section:
    """Peak RSS with 1,000 concurrent streaming calls; RSS growth streaming a 100 MB answer."""
    p = ctx.preset
    section = Section("memory")
    tokens, delay = 25, 0.02
    stream_settings = EmulatorSettings(
        mode="sse", token_delay=delay, token_chars=8, answer_chars=tokens * 8
    )
    json_settings = EmulatorSettings(
        mode="json", answer_chars=tokens * 8, faults=(f"stall={tokens * delay:g},times=every",)
    )
    many = Runs()
    clients = ctx.clients()
    with ctx.emulator(stream_settings) as sse, ctx.emulator(json_settings) as js:
        for run in range(p.memory_runs):
            ctx.log(f"  {p.streams} concurrent streams, run {run + 1}/{p.memory_runs}")
            for client in rotated(clients, run):
                emulator = js if client == "peer" else sse
                spec = {
                    "url": emulator.url,
                    "mode": emulator.settings.mode,
                    "pool": p.streams,  # every stream on the wire at once, not 100 at a time
                    "phases": [
                        {
                            "calls": p.streams,
                            "concurrency": p.streams,
                            "warmup": 10,
                            "expect_chars": tokens * 8,
                        }
                    ],
                }
                result = ctx.run(client, spec, timeout=300.0)
                if result is not None:
                    many.add(client, run, result["phases"][0])
    table = Table(
        f"Memory — {p.streams} concurrent streaming calls",
        ["client", "reply", "peak RSS MB", "RSS before MB", "wall s", "max open streams", "errors"],
        note=(
            f"Each call streams {tokens} tokens {delay * 1000:g} ms apart (0.5 s); the peer gets "
            "the JSON reply after the same 0.5 s. Peak = the worker's VmHWM over the timed calls "
            f"(reset before them); 10 warm-up calls excluded; {p.memory_runs} runs. The pools "
            f"are sized for all {p.streams} streams at once (chatgptt: "
            "ChatGptt.sessions.configure(SessionOptions(max_connections=N)); the floor: its "
            "connector's limit), so 'max open streams' counts streams really open together; "
            "the peer opens a session per call (no bound)."
        ),
    )
    for client in clients:
        if client not in many.by_client:
            table.rows.append([client, "—", "failed", "—", "—", "—", "—"])
            continue
        wall = Figure.of(
            [
                p.streams / m["calls_per_s"]
                for m in many.by_client[client].values()
                if m["calls_per_s"]
            ]
        )
        table.rows.append(
            [
                client,
                "JSON" if client == "peer" else "SSE",
                fmt(many.figure(client, "rss_peak_mb"), 1, 1),
                fmt(many.figure(client, "rss_before_mb"), 1, 1),
                fmt(wall, 1, 1),
                "n/a (one JSON chunk)"
                if client == "peer"
                else fmt(many.figure(client, "max_open_streams")),
                str(many.total_errors(client)),
            ]
        )
    section.tables.append(table)
    section.data["concurrent_streams"] = many.as_dict(
        ("rss_peak_mb", "rss_before_mb", "max_open_streams", "calls_per_s")
    )
    peak = many.figure("chatgptt", "rss_peak_mb")
    errors = many.total_errors("chatgptt") if "chatgptt" in many.by_client else None
    met = None if peak is None or errors is None else (peak.high <= 150 and errors == 0)
    section.targets.append(
        Target(
            f"{p.streams} concurrent streams",
            "no error and client peak RSS ≤ 150 MB",
            f"{fmt(peak, 1, 1, 'MB')} peak (worst {peak.high:.1f}), {errors} errors"
            if peak is not None
            else "failed",
            met,
        )
    )

    big = Runs()
    big_settings = EmulatorSettings(mode="sse", token_chars=65536, answer_chars=p.big_answer_chars)
    warm_settings = EmulatorSettings(mode="sse")
    big_clients = ctx.clients(peer=False)
    with ctx.emulator(big_settings) as large, ctx.emulator(warm_settings) as warm:
        for run in range(p.memory_runs):
            ctx.log(f"  {p.big_answer_chars / 1e6:g} MB answer, run {run + 1}/{p.memory_runs}")
            for client in rotated(big_clients, run):
                spec = {
                    "url": large.url,
                    "warmup_url": warm.url,
                    "mode": "sse",
                    "phases": [
                        {
                            "calls": 1,
                            "concurrency": 1,
                            "warmup": 5,
                            "warmup_variant": "warmup",
                            "expect_chars": p.big_answer_chars,
                        }
                    ],
                }
                result = ctx.run(client, spec, timeout=300.0)
                if result is not None:
                    big.add(client, run, result["phases"][0])
    table = Table(
        f"Memory — one {p.big_answer_chars / 1e6:g} MB streamed answer",
        [
            "client",
            "RSS before MB",
            "peak RSS MB",
            "growth MB",
            "wall s",
            "CPU s",
            "MB per CPU s",
            "errors",
        ],
        note=(
            "The answer comes as 64 KiB content pieces; the client consumes each chunk and drops "
            "it; the wall time includes the emulator building the answer (seconds of its CPU). "
            "Growth = VmHWM during the call − VmRSS just before it (after 5 warm-up calls on "
            "another emulator). chatgptt keeps up to Limits.max_partial_text = 4 Mi characters of "
            "delivered text for StreamInterruptedError, by design. The peer's JSON reader cannot "
            f"stream (it would hold the whole answer); not measured. {p.memory_runs} runs."
        ),
    )
    for client in big_clients:
        if client not in big.by_client:
            table.rows.append([client, "failed", *["—"] * 6])
            continue
        rate = Figure.of(
            [
                p.big_answer_chars / 1e6 / m["cpu_per_call_s"]
                for m in big.by_client[client].values()
                if m["cpu_per_call_s"]
            ]
        )
        table.rows.append(
            [
                client,
                fmt(big.figure(client, "rss_before_mb"), 1, 1),
                fmt(big.figure(client, "rss_peak_mb"), 1, 1),
                fmt(big.figure(client, "rss_growth_mb"), 1, 1),
                fmt(big.figure(client, "p50_s"), 1, 1),
                fmt(big.figure(client, "cpu_per_call_s"), 1, 2),
                fmt(rate, 1, 0),
                str(big.total_errors(client)),
            ]
        )
    section.tables.append(table)
    section.data["big_answer"] = big.as_dict(
        ("rss_before_mb", "rss_peak_mb", "rss_growth_mb", "cpu_per_call_s")
    )
    growth = big.figure("chatgptt", "rss_growth_mb")
    errors_big = big.total_errors("chatgptt") if "chatgptt" in big.by_client else None
    section.targets.append(
        Target(
            f"Streaming a {p.big_answer_chars / 1e6:g} MB answer",
            "RSS grows ≤ 20 MB",
            f"{fmt(growth, 1, 1, 'MB')} (worst {growth.high:.1f}), {errors_big} errors"
            if growth is not None
            else "failed",
            None if growth is None else (growth.high <= 20 and errors_big == 0),
        )
    )
    return section
