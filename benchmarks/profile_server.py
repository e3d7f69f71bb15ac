"""``python -m benchmarks.profile_server [--server floor] [--calls N] [--stream] ...``.

Profiles ``chatgptt serve`` under load: an emulator process, the server under cProfile in
another (``python -m cProfile -m chatgptt.cli serve``), one :mod:`benchmarks.client_openai`
worker sending the requests; then SIGINT (the server drains and exits, and cProfile writes its
figures) and the top functions by own and cumulative time. The server's CPU per request (from
``/proc``) is printed too; it is inflated by the profiler, so compare it with the same command
against the floor (``--server floor``) rather than with ``RESULTS.md``.
"""

from __future__ import annotations

import argparse
import os
import pstats
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from benchmarks.emulator import EmulatorProcess, EmulatorSettings
from benchmarks.servers import ServerProcess
from benchmarks.workers import run_worker

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_server")
    parser.add_argument("--server", choices=("chatgptt", "floor"), default="chatgptt")
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--mode", choices=("json", "sse"), default="json")
    parser.add_argument("--stream", action="store_true", help="streamed requests")
    parser.add_argument("--usage-tokenizer", default="estimate", help="chatgptt's usage counting")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="profile-server-"))
    figures = work / "server.prof"
    try:
        settings = EmulatorSettings(mode=args.mode, answer_chars=200)
        with EmulatorProcess(settings, work_dir=work) as emulator:
            profiled = [sys.executable, "-m", "cProfile", "-o", str(figures), "-m"]
            if args.server == "chatgptt":
                command = [*profiled, "chatgptt.cli", "serve", "--url", emulator.url, "--port", "0"]
                ready = r"as an OpenAI API on (\S+)"
            else:
                command = [*profiled, "benchmarks.relay_floor", emulator.url]
                ready = r"relay listening on (\S+)"
            env = {"CHATGPTT_USAGE_TOKENIZER": args.usage_tokenizer}
            server = ServerProcess(args.server, command, ready, work_dir=work, cwd=ROOT, env=env)
            server.start()
            phase = {
                "calls": args.calls,
                "concurrency": args.concurrency,
                "warmup": 100,
                "variant": "stream" if args.stream else "default",
            }
            before = server.cpu_seconds()
            run = run_worker(
                sys.executable,
                "benchmarks.client_openai",
                {"base_url": server.base_url, "pool": 64, "phases": [phase]},
                root=ROOT,
                work_dir=work,
                timeout=600,
            )
            cpu = server.cpu_seconds() - before
            result = run.result["phases"][0]
            print(
                f"{args.server}: {cpu / (args.calls + 100) * 1e6:.0f} µs server CPU per request "
                f"(profiled), {result['errors']} errors"
            )
            os.killpg(server.pid, signal.SIGINT)  # drains, exits 0: cProfile writes
            server.stop()
        stats = pstats.Stats(str(figures))
        stats.sort_stats("tottime").print_stats(args.top)
        stats.sort_stats("cumulative").print_stats(r"chatgptt|stages|benchmarks", args.top)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
