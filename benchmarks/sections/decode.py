"""SSE decoding throughput: ours against the openai SDK's and httpx-sse's decoders."""

from __future__ import annotations

import statistics

from benchmarks.envs import Unavailable
from benchmarks.harness import (
    Context,
    Section,
    Table,
    Target,
)
from benchmarks.workers import WorkerError, run_worker


def section_decode(ctx: Context) -> Section:
    """SSE decoding throughput: ours against the openai SDK's and httpx-sse's decoders, the
    same bytes in the same chunks (``benchmarks.sse_decode``, in the bench venv)."""
    p = ctx.preset
    section = Section("sse_decode")
    goal = "≥ 1.5 × the faster reference, identical events"
    if isinstance(ctx.bench, Unavailable):
        section.notes.append(f"SSE decoding skipped: {ctx.bench.reason}")
        section.targets.append(Target("SSE decoding", goal, f"skipped: {ctx.bench.reason}", None))
        return section
    spec = {
        "size_mb": p.decode_size_mb,
        "runs": p.decode_runs,
        "chunkings": list(p.decode_chunkings) if p.decode_chunkings else None,
    }
    try:
        run = run_worker(
            ctx.bench.python,
            "benchmarks.decode_worker",
            spec,
            root=ctx.root,
            work_dir=ctx.work,
            timeout=900.0,
        )
    except WorkerError as exc:
        reason = str(exc).splitlines()[0] if "AssertionError" not in str(exc) else str(exc)[-300:]
        ctx.log(f"    decode: FAILED: {exc}")
        section.targets.append(Target("SSE decoding", goal, f"skipped: {reason}", None))
        return section
    report = run.result
    ctx.log(f"    decode {run.seconds:.1f} s")
    rows = report.get("results", [])
    decoders = list(rows[0]["mb_per_s"]) if rows else []
    table = Table(
        f"SSE decoding — {report.get('size_bytes', 0) / 1e6:.1f} MB recorded-style stream, "
        f"{report.get('events', 0)} events",
        ["line end", "chunking", "chunks", *[f"{d} MB/s" for d in decoders], "ours ×faster ref"],
        note=(
            f"Median [min–max] of {report.get('runs')} runs per decoder; events checked identical "
            "across decoders before timing (the run fails otherwise). References: "
            + ", ".join(f"{k} {v}" for k, v in report.get("versions", {}).items())
            + "."
        ),
    )
    ratios = []
    for row in rows:
        speeds = row["mb_per_s"]
        faster = max(speeds["openai"]["median"], speeds["httpx-sse"]["median"])
        ratio = speeds["ours"]["median"] / faster
        ratios.append(ratio)
        table.rows.append(
            [
                repr(row["line_end"]),
                row["chunking"],
                str(row["chunks"]),
                *[
                    f"{speeds[d]['median']:.0f} [{speeds[d]['min']:.0f}–{speeds[d]['max']:.0f}]"
                    for d in decoders
                ],
                f"{ratio:.2f}×",
            ]
        )
    section.tables.append(table)
    section.data = report
    worst = min(ratios) if ratios else None
    section.targets.append(
        Target(
            "SSE decoding",
            goal,
            f"{worst:.2f}× (worst chunking), {statistics.median(ratios):.2f}× median"
            if ratios
            else "no results",
            None if worst is None else worst >= 1.5,
        )
    )
    return section
