"""What tracing costs when no one listens: chatgptt with and without its trace layers."""

from __future__ import annotations

from typing import Any

from benchmarks.emulator import EmulatorSettings
from benchmarks.harness import (
    SHORT_ANSWER,
    Context,
    Section,
    Table,
    Target,
    fmt,
    fmt_ratio,
    verdict,
)
from benchmarks.stats import Figure


def section_tracing(ctx: Context) -> Section:
    """What tracing costs when no one listens: chatgptt with its trace layers against the
    same pipeline without them, alternated in one process (blocks A B A B …)."""
    p = ctx.preset
    section = Section("tracing")
    settings = EmulatorSettings(mode="json", answer_chars=SHORT_ANSWER)
    variants = ("traced", "untraced", "default")
    phases: list[dict[str, Any]] = [
        {"name": "warmup", "calls": p.warmup, "variant": v, "warmup": p.warmup if i == 0 else 0}
        for i, v in enumerate(variants)
    ]
    for block in range(p.trace_blocks):
        order = variants[block % 3 :] + variants[: block % 3]
        phases += [{"calls": p.trace_block_calls, "variant": v} for v in order]
    with ctx.emulator(settings) as emulator:
        result = ctx.run("chatgptt", {"url": emulator.url, "mode": "json", "phases": phases})
    if result is None:
        section.targets.append(
            Target("Unlistened tracing", "≤ 3 % of CPU per call", "failed", None)
        )
        return section
    timed = [ph for ph in result["phases"] if ph["name"] != "warmup"]
    cpu: dict[str, list[float]] = {v: [] for v in variants}
    pairs: dict[str, list[float]] = {"traced": [], "default": []}
    for start in range(0, len(timed) - 2, 3):
        per = {ph["variant"]: ph["cpu_s"] / ph["calls"] for ph in timed[start : start + 3]}
        for variant, value in per.items():
            cpu[variant].append(value)
        pairs["traced"].append(per["traced"] / per["untraced"])
        pairs["default"].append(per["default"] / per["untraced"])
    ratio = Figure.of(pairs["traced"])
    default_ratio = Figure.of(pairs["default"])
    total = sum(cpu["traced"]) / sum(cpu["untraced"])
    errors = sum(ph["errors"] for ph in timed)
    table = Table(
        "Tracing that no one listens to (structlog unconfigured)",
        ["pipeline", "CPU/call µs", "×untraced"],
        note=(
            f"One chatgptt worker, {p.trace_blocks} blocks of the three variants "
            f"({p.trace_block_calls} calls each), order rotated; JSON, short answers, "
            "concurrency 1. Ratio per block, median [min–max]; traced over all calls "
            f"{total:.3f}×. Errors: {errors}. 'default' is what users run: while structlog is "
            "unconfigured the provider leaves the trace layers out of its assembly; 'traced' "
            "keeps them in, each checking per run whether anyone listens."
        ),
    )
    table.rows.append(
        ["traced (trace layers in place)", fmt(Figure.of(cpu["traced"]), 1e6), fmt_ratio(ratio)]
    )
    table.rows.append(
        ["default (as users run it)", fmt(Figure.of(cpu["default"]), 1e6), fmt_ratio(default_ratio)]
    )
    table.rows.append(
        ["untraced (same layers minus trace)", fmt(Figure.of(cpu["untraced"]), 1e6), "1.00×"]
    )
    section.tables.append(table)
    section.data = {
        "blocks": p.trace_blocks,
        "calls_per_block": p.trace_block_calls,
        "ratio_per_pair": ratio.as_dict() if ratio else None,
        "ratio_all_calls": total,
        "cpu_per_call_s": {k: Figure.of(v).as_dict() for k, v in cpu.items() if Figure.of(v)},
        "errors": errors,
    }
    section.targets.append(
        Target(
            "Unlistened tracing",
            "≤ 3 % of CPU per call (traced ≤ 1.03 × untraced)",
            f"{fmt_ratio(ratio, 3)} (all calls {total:.3f}×)",
            verdict(ratio, lambda x: x <= 1.03),
        )
    )
    return section
