"""``python -m benchmarks.run [--quick | --full] [--only SECTION,...] [--runs N] [--no-peer]``.

Runs the benchmark suite (see :mod:`benchmarks.suite`): prepares the peer's and the reference
decoders' virtual environments (cached), then each section against emulators in their own
processes, and writes the table to stdout, ``benchmarks/RESULTS.md`` and
``benchmarks/results.json``. Progress goes to stderr. ``make bench`` runs the default preset
(under 10 minutes on a 2-core machine); ``--quick`` is a 1–2 minute smoke run.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.envs import Unavailable, Venv, ensure_bench_venv, ensure_peer_venv
from benchmarks.report import (
    machine,
    now,
    render_markdown,
    render_text,
    source_state,
    write_json,
)
from benchmarks.suite import PRESETS, SECTIONS, Context, Section, Target

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "benchmarks"


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _describe(env: Venv | Unavailable) -> str:
    return env.detail if isinstance(env, Venv) else f"unavailable: {env.reason}"


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="Benchmark chatgptt against a floor and the peer.",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="a 1-2 minute smoke run")
    size.add_argument(
        "--full", action="store_true", help="more runs and calls (roughly 2-3 times the default)"
    )
    parser.add_argument(
        "--only",
        default="",
        help=f"comma-separated sections to run (of: {', '.join(SECTIONS)})",
    )
    parser.add_argument("--runs", type=int, default=None, help="override the interleaved runs")
    parser.add_argument("--no-peer", action="store_true", help="do not install or run the peer")
    parser.add_argument(
        "--output",
        type=Path,
        default=HERE,
        help="where RESULTS.md and results.json go (default: benchmarks/)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the suite; exit status 0 when it completed (targets missed are reported, not fatal)."""
    args = build_parser().parse_args(argv)
    preset = PRESETS["quick" if args.quick else "full" if args.full else "default"]
    if args.runs is not None:
        if args.runs < 1:
            raise SystemExit("--runs must be at least 1")
        preset = dataclasses.replace(preset, runs=args.runs)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(SECTIONS)
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        raise SystemExit(f"unknown section(s) {', '.join(unknown)}; known: {', '.join(SECTIONS)}")
    command = "python -m benchmarks.run" + (
        " " + shlex.join(sys.argv[1:] if argv is None else list(argv))
        if (argv or sys.argv[1:])
        else ""
    )
    started = time.perf_counter()
    work = HERE / ".work"
    work.mkdir(parents=True, exist_ok=True)

    _log(f"benchmarks: preset {preset.name}, sections {', '.join(names)}")
    peer: Venv | Unavailable = (
        Unavailable("disabled with --no-peer") if args.no_peer else ensure_peer_venv(ROOT, _log)
    )
    _log(f"peer: {_describe(peer)}")
    bench: Venv | Unavailable = Unavailable("section not run")
    if "decode" in names:
        bench = ensure_bench_venv(ROOT, _log)
        _log(f"reference decoders: {_describe(bench)}")

    ctx = Context(
        root=ROOT, work=work, preset=preset, python=sys.executable, peer=peer, bench=bench, log=_log
    )
    sections: list[Section] = []
    try:
        for name in names:
            _log(f"[{name}] {time.perf_counter() - started:.0f} s")
            try:
                sections.append(SECTIONS[name](ctx))
            except Exception as exc:  # one broken section must not lose the others' figures
                _log(f"[{name}] FAILED: {type(exc).__name__}: {exc}")
                failed = Section(
                    name, notes=[f"section {name} failed: {type(exc).__name__}: {exc}"]
                )
                failed.targets.append(Target(f"section {name}", "runs", f"failed: {exc}", None))
                sections.append(failed)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    meta = {
        "date": now(),
        "command": command,
        "preset": preset.name,
        "preset_parameters": dataclasses.asdict(preset),
        "runs": preset.runs,
        "sections": names,
        "machine": machine(),
        "source": source_state(ROOT),
        "peer": _describe(peer),
        "bench": _describe(bench),
        "wall_s": time.perf_counter() - started,
    }
    print(render_text(meta, sections), end="")
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "RESULTS.md").write_text(render_markdown(meta, sections))
    write_json(args.output / "results.json", meta, sections)
    _log(f"wrote {args.output}/RESULTS.md and results.json in {meta['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
