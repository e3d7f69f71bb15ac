"""The report: aligned tables on stdout, ``benchmarks/RESULTS.md``, ``benchmarks/results.json``."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.harness import Section, Table, Target

__all__ = ["machine", "now", "render_markdown", "render_text", "source_state", "write_json"]


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory": memory,
        "os": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
    }


def source_state(root: Path) -> str:
    """The library's commit and whether ``chatgptt/`` or ``stages/`` have uncommitted changes."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "chatgptt", "stages"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return f"commit {commit}" + (" + uncommitted changes in chatgptt/ or stages/" if dirty else "")


def _widths(table: Table) -> list[int]:
    cells = [table.columns, *table.rows]
    return [max(len(row[i]) for row in cells if i < len(row)) for i in range(len(table.columns))]


def _text_table(table: Table) -> str:
    widths = _widths(table)
    lines = [table.title, "-" * len(table.title)]
    for index, row in enumerate([table.columns, *table.rows]):
        lines.append(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)).rstrip()
        )
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    if table.note:
        lines.append(_wrap(table.note, 100))
    return "\n".join(lines)


def _wrap(text: str, width: int) -> str:
    words, lines, line = text.split(), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    if line:
        lines.append(line)
    return "\n".join("  " + entry for entry in lines)


def _mark(met: bool | None) -> str:
    return {True: "met", False: "NOT met", None: "not measured"}[met]


def targets_of(sections: Sequence[Section]) -> list[Target]:
    """Every section's targets, in order."""
    return [target for section in sections for target in section.targets]


def render_text(meta: dict[str, Any], sections: Sequence[Section]) -> str:
    """The report for the terminal."""
    m = meta["machine"]
    parts = [
        f"chatgptt benchmarks — {meta['date']} — preset {meta['preset']}, "
        f"{meta['runs']} interleaved runs per comparison (warm-up excluded)",
        f"{m['cpu']}, {m['cores']} cores, {m['memory']}; Python {m['python']}; "
        f"peer: {meta['peer']}; decoders: {meta['bench']}",
        f"command: {meta['command']}   wall time: {meta['wall_s']:.0f} s",
        f"library measured: {meta['source']}",
    ]
    for section in sections:
        parts += [_text_table(table) for table in section.tables]
        parts += [f"note: {note}" for note in section.notes]
    targets = targets_of(sections)
    target_table = Table("Targets", ["target", "goal", "this run", "verdict"])
    target_table.rows = [[t.name, t.goal, t.value, _mark(t.met)] for t in targets]
    parts.append(_text_table(target_table))
    return "\n\n".join(parts) + "\n"


def _md_table(table: Table) -> str:
    def row(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    lines = [f"### {table.title}", "", row(table.columns), row(["---"] * len(table.columns))]
    lines += [row(r) for r in table.rows]
    if table.note:
        lines += ["", table.note]
    return "\n".join(lines)


def render_markdown(meta: dict[str, Any], sections: Sequence[Section]) -> str:
    """``RESULTS.md``: machine, date, command, run counts, every table, the targets."""
    m = meta["machine"]
    targets = targets_of(sections)
    met = sum(t.met is True for t in targets)
    lines = [
        "# chatgptt benchmark results",
        "",
        "Written by `python -m benchmarks.run` (`make bench`); do not edit by hand.",
        "",
        f"- **Date**: {meta['date']}",
        f"- **Command**: `{meta['command']}` (preset `{meta['preset']}`)",
        f"- **Machine**: {m['cpu']}, {m['cores']} cores, {m['memory']}, {m['os']}",
        f"- **Python**: {m['implementation']} {m['python']}",
        f"- **Library measured**: {meta['source']}",
        f"- **Clients**: floor (aiohttp by hand), chatgptt (default stages and layers), "
        f"peer ({meta['peer']})",
        f"- **Reference decoders**: {meta['bench']}",
        f"- **Runs**: {meta['runs']} interleaved runs per comparison (order rotated each run); "
        "warm-up calls excluded; figures are median [min–max] over runs; ratios are computed "
        "per run and then summarised the same way",
        f"- **Wall time**: {meta['wall_s']:.0f} s",
        "",
        "Absolute times on this shared, noisy machine are not stable; the ratios measured in "
        "the same run are what the targets are about.",
        "",
        f"## Targets: {met} of {len(targets)} met",
        "",
        "| target | goal | this run | verdict |",
        "| --- | --- | --- | --- |",
    ]
    lines += [f"| {t.name} | {t.goal} | {t.value} | {_mark(t.met)} |" for t in targets]
    if any(t.met is False for t in targets):
        lines += [
            "",
            "Where a target is not met, [PROFILE.md](PROFILE.md) says what limits it, with the "
            "profile that shows it.",
        ]
    lines += ["", "## Figures", ""]
    for section in sections:
        for table in section.tables:
            lines += [_md_table(table), ""]
        lines += [f"Note: {note}\n" for note in section.notes]
    return "\n".join(lines).rstrip() + "\n"


def write_json(path: Path, meta: dict[str, Any], sections: Sequence[Section]) -> None:
    """``results.json``: the same figures, machine-readable."""
    document = {
        "meta": meta,
        "targets": [asdict(t) for t in targets_of(sections)],
        "sections": {
            s.name: {"data": s.data, "tables": [asdict(t) for t in s.tables], "notes": s.notes}
            for s in sections
        },
    }
    path.write_text(json.dumps(document, indent=1, default=str) + "\n")


def now() -> str:
    """The date and time, UTC."""
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
