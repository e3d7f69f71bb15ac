"""Scaling: CPU per call as the answer and the history grow."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

from benchmarks.emulator import EmulatorSettings
from benchmarks.harness import (
    SHORT_ANSWER,
    Context,
    Runs,
    Section,
    Table,
    Target,
    fmt,
    rotated,
)
from benchmarks.stats import linear_fit


def growth_exponent(points: Sequence[tuple[float, float]]) -> float:
    """How the cost above the smallest case grows between the last two sizes: 1 for a
    linear cost, 2 for a quadratic one (``log(Δy ratio) / log(Δx ratio)``)."""
    if len(points) < 3:
        return math.nan
    (x0, y0), (x1, y1), (x2, y2) = points[0], points[-2], points[-1]
    dy1, dy2 = y1 - y0, y2 - y0
    if dy1 <= 0 or dy2 <= 0:
        return math.nan
    return math.log(dy2 / dy1) / math.log((x2 - x0) / (x1 - x0))


def _verdict_of(exponent: float, top_step_vs_floor: float) -> str:
    """Linear if the exponent is at most 1.25; "as the floor" if the cost per unit over the
    last step is at most 1.5 × the floor's over the same step: the growth the floor shows
    too is the machine's and the HTTP stack's (caches, allocator), not the client's code."""
    if not math.isnan(exponent) and exponent <= 1.25:
        return "linear"
    if not math.isnan(top_step_vs_floor) and top_step_vs_floor <= 1.5:
        return "linear (as the floor)"
    if math.isnan(exponent):
        return "unclear"
    return "slightly superlinear" if exponent <= 1.6 else "superlinear"


def _scaling_table(
    title: str,
    unit: str,
    xs: Sequence[int],
    per_x: dict[int, Runs],
    clients: Sequence[str],
    note: str,
    per: float,
) -> tuple[Table, dict[str, Any]]:
    """CPU per call for each x, the fitted slope per ``unit`` and a linearity verdict; plus
    chatgptt's own share (chatgptt − floor)."""
    table = Table(
        title,
        [
            "client",
            *[f"{x:,}" for x in xs],
            f"slope µs/{unit}",
            f"top step µs/{unit}",
            "exponent",
            "verdict",
        ],
        note=note
        + " Exponent: log of how much the cost above the smallest case grew over the last "
        "step, divided by the log of how much the size above the smallest grew — 1 for a "
        "linear cost, 2 for a quadratic one; linear if ≤ 1.25. Top step: µs per unit between "
        "the two largest cases; a client whose top step costs at most 1.5 × the floor's "
        "scales as the floor does (growth the floor shows too is the machine's: caches, "
        "allocator, the HTTP library).",
    )
    data: dict[str, Any] = {}
    series: dict[str, list[float]] = {}
    for client in clients:
        medians: list[float] = []
        for x in xs:
            fig = per_x[x].figure(client, "cpu_per_call_s")
            medians.append(fig.median if fig else math.nan)
        series[client] = medians
    if "chatgptt" in series and "floor" in series:
        series["chatgptt − floor"] = [
            a - b for a, b in zip(series["chatgptt"], series["floor"], strict=True)
        ]
    floor_top = math.nan
    for client, medians in series.items():
        if client in per_x[xs[0]].by_client:
            cells = [fmt(per_x[x].figure(client, "cpu_per_call_s"), 1e6) for x in xs]
        else:
            cells = ["—" if math.isnan(y) else f"{y * 1e6:.0f}" for y in medians]
        points = [(x / per, y * 1e6) for x, y in zip(xs, medians, strict=True) if not math.isnan(y)]
        if len(points) < 2:
            table.rows.append([client, *cells, "—", "—", "—", "—"])
            continue
        intercept, slope, r2 = linear_fit([pt[0] for pt in points], [pt[1] for pt in points])
        marginal = [(b[1] - a[1]) / (b[0] - a[0]) for a, b in itertools.pairwise(points)]
        exponent = growth_exponent(points)
        top = marginal[-1]
        if client == "floor":
            floor_top = top
        versus_floor = math.nan if client == "floor" or not floor_top > 0 else top / floor_top
        verdict = _verdict_of(exponent, versus_floor)
        table.rows.append(
            [client, *cells, f"{slope:.2f}", f"{top:.2f}", f"{exponent:.2f}", verdict]
        )
        data[client] = {
            "x": list(xs),
            "cpu_per_call_s": medians,
            "intercept_us": intercept,
            f"slope_us_per_{unit}": slope,
            "r2": r2,
            "marginal_us_per_unit": marginal,
            "exponent": exponent,
            "top_step_vs_floor": versus_floor,
            "verdict": verdict,
        }
    return table, data


def section_scaling(ctx: Context) -> Section:
    """CPU per call as the answer grows (1 KB → 1 MB) and as the history grows (1 → 200 turns)."""
    p = ctx.preset
    section = Section("scaling")
    verdicts: list[str] = []
    for mode in ("json", "sse"):
        clients = ctx.clients(peer=mode == "json")
        per_size: dict[int, Runs] = {}
        for size, calls in p.answer_calls:
            runs = per_size[size] = Runs()
            settings = EmulatorSettings(mode=mode, answer_chars=size, token_chars=64)
            with ctx.emulator(settings) as emulator:
                for run in range(p.scaling_runs):
                    for client in rotated(clients, run):
                        spec = {
                            "url": emulator.url,
                            "mode": mode,
                            "phases": [
                                {
                                    "calls": calls,
                                    "concurrency": 1,
                                    "warmup": max(2, calls // 10),
                                    "expect_chars": size,
                                }
                            ],
                        }
                        result = ctx.run(client, spec, timeout=300.0)
                        if result is not None:
                            runs.add(client, run, result["phases"][0])
        sizes = [size for size, _ in p.answer_calls]
        frames = "64-character content pieces" if mode == "sse" else "one JSON reply"
        table, data = _scaling_table(
            f"Scaling — CPU per call (µs) by answer size (characters), {mode.upper()}",
            "KB",
            sizes,
            per_size,
            clients,
            (
                f"{frames}; concurrency 1; calls per size "
                + ", ".join(f"{s:,}: {c}" for s, c in p.answer_calls)
                + f"; {p.scaling_runs} runs, median [min–max]. Slope: least-squares µs per KB "
                "(1 KB = 1,000 characters)."
            ),
            1000.0,
        )
        section.tables.append(table)
        section.data[f"answer_{mode}"] = data
        if "chatgptt" in data:
            verdicts.append(
                f"answer/{mode}: {data['chatgptt']['verdict']} "
                f"(exponent {data['chatgptt']['exponent']:.2f})"
            )

    clients = ctx.clients()
    per_turns: dict[int, Runs] = {}
    settings = EmulatorSettings(mode="json", answer_chars=SHORT_ANSWER)
    with ctx.emulator(settings) as emulator:
        for turns in p.history_turns:
            runs = per_turns[turns] = Runs()
            for run in range(p.scaling_runs):
                for client in rotated(clients, run):
                    spec = {
                        "url": emulator.url,
                        "mode": "json",
                        "phases": [
                            {
                                "calls": p.history_calls,
                                "concurrency": 1,
                                "warmup": max(2, p.history_calls // 10),
                                "turns": turns,
                                "expect_chars": SHORT_ANSWER,
                            }
                        ],
                    }
                    result = ctx.run(client, spec)
                    if result is not None:
                        runs.add(client, run, result["phases"][0])
    table, data = _scaling_table(
        "Scaling — CPU per call (µs) by conversation length (turns)",
        "turn",
        p.history_turns,
        per_turns,
        clients,
        (
            f"JSON, short answers, concurrency 1, {p.history_calls} calls per length, "
            f"{p.scaling_runs} runs. Each earlier turn is about 120 characters; floor and "
            "chatgptt send them as wpaicg_chat_history, the peer flattens them into the message."
        ),
        1.0,
    )
    section.tables.append(table)
    section.data["history"] = data
    if "chatgptt" in data:
        verdicts.append(
            f"history: {data['chatgptt']['verdict']} (exponent {data['chatgptt']['exponent']:.2f})"
        )
    all_linear = bool(verdicts) and all(v.split(": ", 1)[1].startswith("linear") for v in verdicts)
    section.targets.append(
        Target(
            "Scaling",
            "CPU per call linear in answer size and history length",
            "; ".join(verdicts) or "failed",
            all_linear if verdicts else None,
        )
    )
    return section
