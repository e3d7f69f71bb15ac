"""The site emulator in its own process, so that the clients' CPU and memory are measured alone.

``EmulatorProcess`` runs ``python -m chatgptt.emulator --host 127.0.0.1 --port 0 ...`` (the
project's own command), waits for its ``emulator listening on URL`` line, and stops it
cleanly (SIGTERM, then SIGKILL) however the ``with`` block ends. Its stderr goes to a log
file under ``benchmarks/.work/`` so a chatty server can never block on a full pipe.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

__all__ = ["EmulatorError", "EmulatorProcess", "EmulatorSettings"]

_LISTENING = re.compile(r"emulator listening on (\S+)")
_START_TIMEOUT = 30.0
_STOP_TIMEOUT = 10.0


class EmulatorError(RuntimeError):
    """The emulator did not start (its log's tail is in the message)."""


@dataclass(frozen=True)
class EmulatorSettings:
    """One configuration of the emulated site (``chatgptt emulator``'s options)."""

    mode: str = "json"
    dialect: str = "classic"
    token_delay: float = 0.0
    token_chars: int = 8
    answer_chars: int | None = None
    faults: tuple[str, ...] = ()

    def arguments(self) -> list[str]:
        """The command-line options for this configuration."""
        args = ["--mode", self.mode, "--token-delay", repr(self.token_delay)]
        args += ["--dialect", self.dialect]
        args += ["--token-chars", str(self.token_chars)]
        if self.answer_chars is not None:
            args += ["--answer-chars", str(self.answer_chars)]
        for fault in self.faults:
            args += ["--fault", fault]
        return args

    def describe(self) -> str:
        """A short human description, for tables and logs."""
        parts = ["AIPKit stream"] if self.dialect == "aipkit" else [self.mode.upper()]
        if self.answer_chars is not None:
            parts.append(f"{_size(self.answer_chars)} answers")
        if self.mode == "sse" or self.dialect == "aipkit":
            parts.append(f"{_size(self.token_chars)} per frame")
        if self.token_delay:
            parts.append(f"{self.token_delay * 1000:g} ms/token")
        parts += [f"fault {fault}" for fault in self.faults]
        return ", ".join(parts)


def _size(chars: int) -> str:
    for unit, scale in (("MB", 1_000_000), ("KB", 1_000)):
        if chars >= scale and chars % (scale // 10) == 0:
            return f"{chars / scale:g} {unit}"
    return f"{chars} chars"


class EmulatorProcess:
    """A running emulator: ``url``, ``pid``, ``cpu_seconds()``; a context manager."""

    def __init__(
        self,
        settings: EmulatorSettings,
        *,
        python: str = sys.executable,
        work_dir: Path,
        host: str = "127.0.0.1",
        extra_args: Sequence[str] = (),
    ) -> None:
        self.settings = settings
        self._python = python
        self._host = host
        self._extra = list(extra_args)
        work_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = work_dir / f"emulator-{os.getpid()}-{time.monotonic_ns()}.log"
        self._process: subprocess.Popen[bytes] | None = None
        self.url = ""

    @property
    def pid(self) -> int:
        """The server's process id."""
        if self._process is None:
            raise EmulatorError("the emulator is not running")
        return self._process.pid

    def start(self) -> EmulatorProcess:
        """Start the server and wait until it listens."""
        command = [
            self._python,
            "-m",
            "chatgptt.emulator",
            "--host",
            self._host,
            "--port",
            "0",
            "--request-log",
            "0",  # a benchmark's server keeps no inspection log: it is not what is measured
            *self.settings.arguments(),
            *self._extra,
        ]
        with open(self.log_path, "wb") as log:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C of the harness is handled by us, not it
            )
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            match = _LISTENING.search(self.log_path.read_text(errors="replace"))
            if match is not None:
                self.url = match.group(1)
                return self
            if self._process.poll() is not None:
                break
            time.sleep(0.02)
        tail = self.log_tail()
        self.stop()
        raise EmulatorError(f"the emulator did not start ({' '.join(command)}):\n{tail}")

    def cpu_seconds(self) -> float:
        """The server process's CPU time so far (user + system)."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

    def log_tail(self, lines: int = 20) -> str:
        """The end of the server's output."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after a grace period); idempotent."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
