"""CPU per call, throughput and latency: floor, chatgptt and the peer as clients of the site."""

from __future__ import annotations

from benchmarks.emulator import EmulatorSettings
from benchmarks.harness import (
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
from benchmarks.stats import Figure


def section_calls(ctx: Context) -> Section:
    """CPU per call, throughput and latency at concurrency 1 and 32, JSON (all three
    clients) and SSE (floor and chatgptt: the peer cannot read a stream)."""
    p = ctx.preset
    section = Section("calls")
    modes = [("json", ctx.clients())]
    if p.sse_calls:
        modes.append(("sse", ctx.clients(peer=False)))
    for mode, clients in modes:
        settings = EmulatorSettings(mode=mode, answer_chars=SHORT_ANSWER)
        by_concurrency: dict[int, Runs] = {1: Runs(), 32: Runs()}
        emulator_cpu: dict[str, list[float]] = {}
        with ctx.emulator(settings) as emulator:
            for run in range(p.runs):
                ctx.log(f"  {mode} run {run + 1}/{p.runs}")
                for concurrency, calls in ((1, p.calls_c1), (32, p.calls_c32)):
                    for client in rotated(clients, run):
                        spec = {
                            "url": emulator.url,
                            "mode": mode,
                            "phases": [
                                {
                                    "calls": calls,
                                    "concurrency": concurrency,
                                    "warmup": p.warmup,
                                    "expect_chars": SHORT_ANSWER,
                                }
                            ],
                        }
                        cpu0 = emulator.cpu_seconds()
                        result = ctx.run(client, spec)
                        if result is not None:
                            by_concurrency[concurrency].add(client, run, result["phases"][0])
                            if concurrency == 32:
                                emulator_cpu.setdefault(client, []).append(
                                    (emulator.cpu_seconds() - cpu0) / (calls + p.warmup)
                                )
        keys = ("cpu_per_call_s", "calls_per_s", "p50_s", "p99_s")
        section.data[mode] = {
            "emulator": settings.describe(),
            "calls": {"1": p.calls_c1, "32": p.calls_c32},
            "warmup_calls": p.warmup,
            "runs": p.runs,
            "by_concurrency": {str(c): r.as_dict(keys) for c, r in by_concurrency.items()},
            "emulator_cpu_per_call_s": {
                c: Figure.of(v).as_dict() for c, v in emulator_cpu.items() if Figure.of(v)
            },
        }
        note = (
            f"{p.calls_c1} calls at concurrency 1 and {p.calls_c32} at 32 per client and run, "
            f"{p.warmup} warm-up calls excluded, {p.runs} interleaved runs; median [min–max] "
            "over runs; ratios per run, then median [min–max]."
        )
        cpu_table = Table(
            f"CPU per call — {settings.describe()}",
            ["client", "conc", "CPU/call µs", "×floor", "×peer", "errors"],
            note=note + " CPU is the client process's (user + system) over the timed calls.",
        )
        table = Table(
            f"Throughput and latency — {settings.describe()}",
            ["client", "conc", "calls/s", "×floor", "×peer", "p50 ms", "p99 ms"],
            note=note,
        )
        for concurrency, runs in by_concurrency.items():
            has_peer = "peer" in runs.by_client
            for client in clients:
                if client not in runs.by_client:
                    cpu_table.rows.append([client, str(concurrency), "failed", "—", "—", "—"])
                    table.rows.append([client, str(concurrency), "failed", *["—"] * 4])
                    continue

                def ratio(
                    other: str,
                    key: str,
                    client: str = client,
                    runs: Runs = runs,
                    has_peer: bool = has_peer,
                ) -> str:
                    if other == "peer" and not has_peer:
                        return "—"
                    return fmt_ratio(runs.ratio(client, other, key))

                cpu_table.rows.append(
                    [
                        client,
                        str(concurrency),
                        fmt(runs.figure(client, "cpu_per_call_s"), 1e6),
                        ratio("floor", "cpu_per_call_s"),
                        ratio("peer", "cpu_per_call_s"),
                        str(runs.total_errors(client)),
                    ]
                )
                table.rows.append(
                    [
                        client,
                        str(concurrency),
                        fmt(runs.figure(client, "calls_per_s")),
                        ratio("floor", "calls_per_s"),
                        ratio("peer", "calls_per_s"),
                        fmt(runs.figure(client, "p50_s"), 1e3, 2),
                        fmt(runs.figure(client, "p99_s"), 1e3, 2),
                    ]
                )
        section.tables.append(cpu_table)
        if emulator_cpu:
            table.note += (
                " Emulator CPU per call at concurrency 32 (its own process): "
                + ", ".join(f"{c} {fmt(Figure.of(v), 1e6)} µs" for c, v in emulator_cpu.items())
                + " (the peer makes two requests per call)."
            )
        section.tables.append(table)
        if mode == "json":
            c1, c32 = by_concurrency[1], by_concurrency[32]
            cpu_ratio = c1.ratio("chatgptt", "floor", "cpu_per_call_s")
            section.targets.append(
                Target(
                    "CPU per call (JSON, short answers, concurrency 1)",
                    "chatgptt ≤ 1.15 × floor",
                    fmt_ratio(cpu_ratio, 3),
                    verdict(cpu_ratio, lambda x: x <= 1.15),
                )
            )
            tput_floor = c32.ratio("chatgptt", "floor", "calls_per_s")
            section.targets.append(
                Target(
                    "Throughput at concurrency 32 vs floor",
                    "chatgptt ≥ 0.9 × floor",
                    fmt_ratio(tput_floor, 3),
                    verdict(tput_floor, lambda x: x >= 0.9),
                )
            )
            tput_peer = c32.ratio("chatgptt", "peer", "calls_per_s")
            section.targets.append(
                Target(
                    "Throughput at concurrency 32 vs peer",
                    "chatgptt ≥ 3 × peer",
                    fmt_ratio(tput_peer, 3)
                    if tput_peer
                    else f"unavailable: {ctx.peer_missing or 'peer failed'}",
                    verdict(tput_peer, lambda x: x >= 3.0),
                )
            )
    return section
