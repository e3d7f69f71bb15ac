"""Running a worker process: spec in a file, result in a file, a time limit, nothing left behind.

Workers write their result to a file, not to stdout, so what a client prints on stdout or
stderr is captured separately: chatgptt must print nothing when logging is not configured,
and every chatgptt worker run is checked for that.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["WorkerError", "WorkerRun", "run_worker"]

_counter = itertools.count(1)


class WorkerError(RuntimeError):
    """A worker failed, timed out, or wrote no result."""


@dataclass(frozen=True)
class WorkerRun:
    """A finished worker: its result and what it printed."""

    result: dict[str, Any]
    stdout: str
    stderr: str
    seconds: float


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def run_worker(
    python: str,
    module: str,
    spec: dict[str, Any],
    *,
    root: Path,
    work_dir: Path,
    timeout: float,
) -> WorkerRun:
    """Run ``python -m module SPEC RESULT`` in ``root``; its result.

    Raises:
        WorkerError: it exited non-zero, exceeded ``timeout`` seconds (its process group
            is killed), or left no result.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    number = next(_counter)
    stem = work_dir / f"{module.rsplit('.', 1)[-1]}-{os.getpid()}-{number}"
    spec_path, result_path = stem.with_suffix(".spec.json"), stem.with_suffix(".result.json")
    out_path, err_path = stem.with_suffix(".stdout"), stem.with_suffix(".stderr")
    spec_path.write_text(json.dumps(spec))
    result_path.unlink(missing_ok=True)
    started = time.perf_counter()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("PYTHONPATH", None)
    try:
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            process = subprocess.Popen(
                [python, "-m", module, str(spec_path), str(result_path)],
                cwd=root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
            try:
                code = process.wait(timeout)
            except subprocess.TimeoutExpired:
                _kill_group(process)
                raise WorkerError(f"{module} timed out after {timeout:.0f} s") from None
            except BaseException:
                _kill_group(process)
                raise
        seconds = time.perf_counter() - started
        stdout = out_path.read_text(errors="replace")
        stderr = err_path.read_text(errors="replace")
        if code != 0 or not result_path.exists():
            tail = "\n".join(stderr.strip().splitlines()[-12:])
            raise WorkerError(f"{module} exited with status {code}:\n{tail}")
        result = json.loads(result_path.read_text())
        return WorkerRun(result=result, stdout=stdout, stderr=stderr, seconds=seconds)
    finally:
        for path in (spec_path, result_path, out_path, err_path):
            path.unlink(missing_ok=True)
