"""Time to the first token of a streamed answer: floor, chatgptt, and the peer."""

from __future__ import annotations

from benchmarks.emulator import EmulatorSettings
from benchmarks.harness import (
    FIRST_TOKEN_DELAY,
    FIRST_TOKEN_TOKENS,
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


def section_first_token(ctx: Context) -> Section:
    """Time to first token of a streamed answer: floor and chatgptt on an event stream, the
    peer on the JSON reply the site sends once the whole answer is done."""
    p = ctx.preset
    section = Section("first_token")
    answer = FIRST_TOKEN_TOKENS * 8
    stream_settings = EmulatorSettings(
        mode="sse", token_delay=FIRST_TOKEN_DELAY, token_chars=8, answer_chars=answer
    )
    whole = FIRST_TOKEN_TOKENS * FIRST_TOKEN_DELAY
    json_settings = EmulatorSettings(
        mode="json", answer_chars=answer, faults=(f"stall={whole:g},times=every",)
    )
    runs = Runs()
    clients = ctx.clients()
    with ctx.emulator(stream_settings) as sse, ctx.emulator(json_settings) as js:
        for run in range(p.ttft_runs):
            ctx.log(f"  run {run + 1}/{p.ttft_runs}")
            for client in rotated(clients, run):
                emulator = js if client == "peer" else sse
                spec = {
                    "url": emulator.url,
                    "mode": emulator.settings.mode,
                    "phases": [
                        {
                            "calls": p.ttft_calls,
                            "concurrency": min(5, p.ttft_calls),
                            "warmup": 2,
                            "expect_chars": answer,
                        }
                    ],
                }
                result = ctx.run(client, spec)
                if result is not None:
                    runs.add(client, run, result["phases"][0])
    table = Table(
        f"Time to first token — {FIRST_TOKEN_TOKENS} tokens, {FIRST_TOKEN_DELAY * 1000:g} ms apart",
        [
            "client",
            "reply",
            "first token ms",
            "whole answer ms",
            "×chatgptt (first token)",
            "errors",
        ],
        note=(
            f"{p.ttft_calls} calls per client and run (5 at a time), 2 warm-up calls excluded, "
            f"{p.ttft_runs} runs; median per run, then median [min–max]. The emulator waits "
            f"{FIRST_TOKEN_DELAY * 1000:g} ms before each token; for the peer (JSON only) it "
            f"answers after {whole:g} s, when the whole answer is done, as the site does. "
            "The floor counts its first body chunk holding a content piece."
        ),
    )
    for client in clients:
        if client not in runs.by_client:
            table.rows.append([client, "—", "failed", "—", "—", "—"])
            continue
        table.rows.append(
            [
                client,
                "JSON (answer when complete)" if client == "peer" else "SSE stream",
                fmt(runs.figure(client, "first_chunk_s"), 1e3, 1),
                fmt(runs.figure(client, "p50_s"), 1e3, 0),
                fmt_ratio(runs.ratio(client, "chatgptt", "first_chunk_s")),
                str(runs.total_errors(client)),
            ]
        )
    section.tables.append(table)
    section.data = runs.as_dict(("first_chunk_s", "p50_s"))
    ours = runs.figure("chatgptt", "first_chunk_s")
    limit = FIRST_TOKEN_DELAY + 0.010
    section.targets.append(
        Target(
            "Time to first token",
            f"chatgptt ≤ {FIRST_TOKEN_DELAY * 1000:g} ms + 10 ms",
            fmt(ours, 1e3, 1, "ms"),
            verdict(ours, lambda x: x <= limit),
        )
    )
    sooner = runs.ratio("peer", "chatgptt", "first_chunk_s")
    section.targets.append(
        Target(
            "First token vs peer",
            "chatgptt ≥ 10 × sooner than the peer",
            f"{fmt_ratio(sooner)} sooner"
            if sooner
            else f"unavailable: {ctx.peer_missing or 'peer failed'}",
            verdict(sooner, lambda x: x >= 10.0),
        )
    )
    return section
