"""The benchmark-only virtual environments, created on first use and kept between runs.

- ``benchmarks/.venv-peer``: ``g4f==0.4.5.4`` and its dependencies, plus what its API server
  (``g4f api``) needs at the releases of its time; nothing of this project (the peer worker
  imports the original provider from there, and the server section runs ``g4f api`` there).
- ``benchmarks/.venv-bench``: the project (editable) plus the reference SSE decoders of the
  ``openai`` SDK and ``httpx-sse``, for ``benchmarks.sse_decode``.

Neither is a dependency of the project. A venv that cannot be made is reported as
``Unavailable(reason)`` and the figures that need it say so; the rest still runs.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "PEER_API_REQUIREMENTS",
    "PEER_REQUIREMENT",
    "Unavailable",
    "Venv",
    "ensure_bench_venv",
    "ensure_peer_venv",
]

#: Progress lines go here (the harness prints them).
Log = Callable[[str], None]

PEER_REQUIREMENT = "g4f==0.4.5.4"
#: ``g4f api``'s own dependencies (not g4f's), pinned to releases of g4f 0.4.5.4's time.
PEER_API_REQUIREMENTS = (
    "fastapi==0.115.8",
    "uvicorn==0.34.0",
    "pydantic==2.10.6",
    "python-multipart==0.0.20",
)
#: Pinned: the decode figure compares against these releases of the reference decoders.
BENCH_REQUIREMENTS = ("openai==3.57.0", "httpx-sse==0.4.3", "httpx==0.28.1")
_INSTALL_TIMEOUT = 600.0
_CHECK_TIMEOUT = 60.0


@dataclass(frozen=True)
class Venv:
    """A usable virtual environment."""

    path: Path
    python: str
    created: bool
    detail: str


@dataclass(frozen=True)
class Unavailable:
    """Why a virtual environment could not be used."""

    reason: str


def _check(python: Path, code: str) -> str | None:
    """Run ``code`` under ``python``; its stdout when it succeeds, else ``None``."""
    if not python.exists():
        return None
    try:
        done = subprocess.run(
            [str(python), "-c", code],
            capture_output=True,
            text=True,
            timeout=_CHECK_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _create(path: Path, requirements: list[str], log: Log | None) -> str | None:
    """Make the venv and pip-install ``requirements``; the error text, or ``None``."""
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(path)],
        [
            str(path / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            *requirements,
        ],
    ]
    for command in steps:
        if log is not None:
            log("  $ " + " ".join(command))
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=_INSTALL_TIMEOUT, check=False
            )
        except subprocess.TimeoutExpired:
            return f"timed out after {_INSTALL_TIMEOUT:.0f} s: {' '.join(command)}"
        except OSError as exc:
            return f"{exc}: {' '.join(command)}"
        if done.returncode != 0:
            errors = [line for line in done.stderr.splitlines() if "WARNING" not in line]
            tail = " | ".join(errors[-3:]) or done.stderr.strip()[-300:]
            return f"`{' '.join(command[-3:])}` failed (exit {done.returncode}): {tail}"
    return None


def ensure_peer_venv(root: Path, log: Log | None = None) -> Venv | Unavailable:
    """The peer's venv with ``g4f==0.4.5.4`` and its API server importable, made if missing
    or broken."""
    path = root / "benchmarks" / ".venv-peer"
    python = path / "bin" / "python"
    probe = (
        "from importlib.metadata import version; from g4f.Provider import ChatGptt; "
        "import g4f.api, uvicorn; print(version('g4f'))"
    )
    wanted = PEER_REQUIREMENT.split("==")[1]
    found = _check(python, probe)
    if found == wanted:
        return Venv(path, str(python), False, f"g4f {found} (cached)")
    if log is not None:
        log(f"creating {path.relative_to(root)} with {PEER_REQUIREMENT} ...")
    error = _create(path, [PEER_REQUIREMENT, *PEER_API_REQUIREMENTS], log)
    if error is not None:
        return Unavailable(f"cannot install {PEER_REQUIREMENT}: {error}")
    found = _check(python, probe)
    if found != wanted:
        return Unavailable(
            f"{PEER_REQUIREMENT} installed but g4f.Provider.ChatGptt or g4f.api does not import"
        )
    return Venv(path, str(python), True, f"g4f {found} (installed now)")


def ensure_bench_venv(root: Path, log: Log | None = None) -> Venv | Unavailable:
    """The decoder benchmark's venv (project + openai + httpx-sse), made if missing."""
    path = root / "benchmarks" / ".venv-bench"
    python = path / "bin" / "python"
    probe = (
        "from importlib.metadata import version; import openai, httpx_sse, stages.sse; "
        "print('openai', version('openai'), 'httpx-sse', version('httpx-sse'))"
    )
    found = _check(python, probe)
    if found:
        return Venv(path, str(python), False, found + " (cached)")
    if log is not None:
        log(f"creating {path.relative_to(root)} with {', '.join(BENCH_REQUIREMENTS)} ...")
    error = _create(path, [*BENCH_REQUIREMENTS, "-e", str(root)], log)
    if error is not None:
        return Unavailable(f"cannot install the reference decoders: {error}")
    found = _check(python, probe)
    if not found:
        return Unavailable("the reference decoders installed but do not import")
    return Venv(path, str(python), True, found + " (installed now)")
