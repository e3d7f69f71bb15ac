"""The OpenAI-compatible servers compared, each in its own process, so that its CPU time and
memory are its own.

``ServerProcess`` starts a command, waits for the line that says where it listens, and stops
it (SIGTERM, then SIGKILL) however the ``with`` block ends. It reads the server's CPU time and
resident memory from ``/proc``, and resets its peak (``VmHWM``, through ``clear_refs``) so a
phase's peak is that phase's. Output goes to a log file under ``benchmarks/.work/``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

__all__ = ["ServerError", "ServerProcess"]

_START_TIMEOUT = 60.0
_STOP_TIMEOUT = 15.0


class ServerError(RuntimeError):
    """A server did not start (its log's tail is in the message)."""


class ServerProcess:
    """A running server: ``name``, ``base_url`` (``http://…/v1``), ``pid``, CPU and memory."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        ready: str,
        *,
        work_dir: Path,
        cwd: Path,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.command = list(command)
        self._ready = re.compile(ready)
        self._cwd = cwd
        self._env = {**os.environ, **(env or {})}
        self._env.pop("PYTHONPATH", None)
        work_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = work_dir / f"server-{name}-{os.getpid()}-{time.monotonic_ns()}.log"
        self._process: subprocess.Popen[bytes] | None = None
        self.base_url = ""

    @property
    def pid(self) -> int:
        if self._process is None:
            raise ServerError(f"{self.name} is not running")
        return self._process.pid

    def start(self) -> ServerProcess:
        """Start the server and wait until it says it listens (group ``1`` of ``ready``)."""
        with open(self.log_path, "wb") as log:
            self._process = subprocess.Popen(
                self.command,
                cwd=self._cwd,
                env=self._env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            found = self._ready.search(self.log_path.read_text(errors="replace"))
            if found is not None:
                self.base_url = found.group(1)
                return self
            if self._process.poll() is not None:
                break
            time.sleep(0.02)
        tail = self.log_tail()
        self.stop()
        raise ServerError(f"{self.name} did not start ({' '.join(self.command)}):\n{tail}")

    def _proc(self, name: str) -> str:
        return Path(f"/proc/{self.pid}/{name}").read_text()

    def cpu_seconds(self) -> float:
        """The server's CPU time so far: the run time of its threads in nanoseconds
        (``/proc/PID/task/*/schedstat``), where ``/proc/PID/stat`` counts 10 ms ticks."""
        total = 0
        try:
            tasks = list(Path(f"/proc/{self.pid}/task").iterdir())
        except OSError:
            return float("nan")
        for task in tasks:
            try:
                total += int((task / "schedstat").read_text().split()[0])
            except (OSError, IndexError, ValueError):
                continue  # a thread that ended meanwhile
        return total / 1e9

    def _status_kb(self, key: str) -> int | None:
        try:
            for line in self._proc("status").splitlines():
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        except OSError:
            return None
        return None

    def rss_kb(self) -> int | None:
        """Resident memory now."""
        return self._status_kb("VmRSS")

    def peak_rss_kb(self) -> int | None:
        """Resident memory's high-water mark since start or :meth:`reset_peak_rss`."""
        return self._status_kb("VmHWM")

    def reset_peak_rss(self) -> bool:
        """Reset the high-water mark to the current RSS (Linux); ``False`` if unsupported."""
        try:
            with open(f"/proc/{self.pid}/clear_refs", "w", encoding="ascii") as clear:
                clear.write("5")
        except OSError:
            return False
        return True

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a grace period; idempotent."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
