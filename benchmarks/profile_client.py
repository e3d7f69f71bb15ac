"""Profile a client worker's timed calls: where chatgptt (or the floor) spends its CPU.

``python -m benchmarks.profile_client [--client chatgptt] [--mode json] [--calls 1000]
[--concurrency 1] [--answer-chars 200] [--dialect aipkit] [--top 30]
[--save FILE.prof]`` starts an emulator in
its own process, runs the worker with cProfile enabled over the timed calls only (warm-up
excluded) and prints the top functions sorted by cumulative and by own (tottime) time.
"""

from __future__ import annotations

import argparse
import io
import pstats
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from benchmarks.emulator import EmulatorProcess, EmulatorSettings
from benchmarks.workers import run_worker

ROOT = Path(__file__).resolve().parent.parent


def main(argv: Sequence[str] | None = None) -> int:
    """Run the profile and print it."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_client")
    parser.add_argument(
        "--client", choices=("chatgptt", "floor", "aipkit_floor"), default="chatgptt"
    )
    parser.add_argument("--dialect", choices=("classic", "aipkit"), default="classic")
    parser.add_argument("--variant", default="default", help="chatgptt: default or untraced")
    parser.add_argument("--mode", choices=("json", "sse"), default="json")
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--answer-chars", type=int, default=200)
    parser.add_argument("--token-chars", type=int, default=8)
    parser.add_argument("--turns", type=int, default=1)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--save", type=Path, default=None, help="keep the .prof file here")
    args = parser.parse_args(argv)

    work = ROOT / "benchmarks" / ".work" / "profile"
    work.mkdir(parents=True, exist_ok=True)
    prof = (args.save or work / "client.prof").resolve()
    settings = EmulatorSettings(
        mode=args.mode,
        dialect=args.dialect,
        answer_chars=args.answer_chars,
        token_chars=args.token_chars,
    )
    try:
        with EmulatorProcess(settings, work_dir=work) as emulator:
            spec = {
                "client": args.client,
                "url": emulator.url,
                "mode": args.mode,
                "profile": str(prof),
                "phases": [
                    {
                        "calls": args.calls,
                        "concurrency": args.concurrency,
                        "warmup": 100,
                        "variant": args.variant,
                        "turns": args.turns,
                    }
                ],
            }
            run = run_worker(
                sys.executable,
                f"benchmarks.client_{args.client}",
                spec,
                root=ROOT,
                work_dir=work,
                timeout=600,
            )
        phase = run.result["phases"][0]
        print(
            f"{args.client} ({args.variant}), {settings.describe()}: {phase['calls']} calls at "
            f"concurrency {phase['concurrency']}, {phase['errors']} errors, "
            f"{phase['cpu_s'] / phase['calls'] * 1e6:.0f} µs CPU per call (with the profiler "
            "running, which inflates it)"
        )
        for order in ("cumulative", "tottime"):
            out = io.StringIO()
            stats = pstats.Stats(str(prof), stream=out)
            stats.sort_stats(order).print_stats(args.top)
            print(f"\n=== sorted by {order} ===")
            print(out.getvalue().split("\n", 4)[-1].rstrip())
    finally:
        if args.save is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
