"""Silence: the library prints nothing unless logging is configured."""

from __future__ import annotations

import subprocess

from benchmarks.emulator import EmulatorSettings
from benchmarks.harness import (
    SHORT_ANSWER,
    Context,
    Section,
    Table,
    Target,
)


def section_silence(ctx: Context) -> Section:
    """The library prints nothing unless logging is configured: every chatgptt worker's
    output, a run with a retry and a failure, and the CLI with and without ``--trace``."""
    section = Section("silence")
    checks: list[tuple[str, bool, str]] = []
    settings = EmulatorSettings(
        mode="json", answer_chars=SHORT_ANSWER, faults=("status=503,times=1",)
    )
    with ctx.emulator(settings) as emulator:
        before = len(ctx.chatgptt_output)
        spec = {
            "url": emulator.url,
            "broken_url": emulator.url + "/missing",
            "mode": "json",
            "phases": [
                {"name": "retried", "calls": 2, "warmup": 0},
                {"name": "failing", "variant": "broken", "calls": 1, "warmup": 0},
            ],
        }
        result = ctx.run("chatgptt", spec)
        if result is None:
            checks.append(("retry and failure, structlog unconfigured", False, "worker failed"))
        else:
            retried, failing = result["phases"]
            printed = len(ctx.chatgptt_output) > before
            ok = retried["errors"] == 0 and failing["errors"] == 1 and not printed
            checks.append(
                (
                    "a retried call (503 once) and a failing call (404 page), "
                    "structlog unconfigured",
                    ok,
                    f"retried call errors {retried['errors']}, failing call errors "
                    f"{failing['errors']} ({(failing['error_samples'] or ['-'])[0][:80]}), "
                    f"printed {'something' if printed else 'nothing'}",
                )
            )
        for trace in (False, True):
            command = [ctx.python, "-m", "chatgptt.cli", "chat", "--url", emulator.url, "Hello"]
            if trace:
                command.append("--trace")
            try:
                done = subprocess.run(
                    command, cwd=ctx.root, capture_output=True, text=True, timeout=60, check=False
                )
            except subprocess.TimeoutExpired:
                checks.append((" ".join(command[2:]), False, "timed out"))
                continue
            answer_only = done.returncode == 0 and len(done.stdout) == SHORT_ANSWER + 1
            if trace:
                ok = answer_only and "stage" in done.stderr
                detail = (
                    f"exit {done.returncode}, {len(done.stderr.splitlines())} trace lines on stderr"
                )
            else:
                ok = answer_only and not done.stderr
                detail = (
                    f"exit {done.returncode}, stdout {len(done.stdout)} chars (the answer), "
                    f"stderr {len(done.stderr)} chars"
                )
            checks.append(
                ("chatgptt chat --url … Hello" + (" --trace" if trace else ""), ok, detail)
            )
    silent_workers = not ctx.chatgptt_output
    checks.insert(
        0,
        (
            f"every chatgptt worker of this run ({ctx.chatgptt_worker_runs})",
            silent_workers,
            "printed nothing" if silent_workers else f"printed: {ctx.chatgptt_output[0][:200]!r}",
        ),
    )
    table = Table(
        "Silence — the library prints nothing unless logging is configured",
        ["check", "result", "detail"],
        note=(
            "Workers write their results to a file; their stdout and stderr are captured and "
            "must be empty."
        ),
    )
    for name, ok, detail in checks:
        table.rows.append([name, "ok" if ok else "FAILED", detail])
    section.tables.append(table)
    section.data = {"checks": [{"check": n, "ok": ok, "detail": d} for n, ok, d in checks]}
    section.targets.append(
        Target(
            "Silence",
            "prints nothing unless logging is enabled (or --trace)",
            f"{sum(ok for _, ok, _ in checks)}/{len(checks)} checks pass",
            all(ok for _, ok, _ in checks),
        )
    )
    return section


#: The sections in the order they run (silence last: it checks the other runs' output).
