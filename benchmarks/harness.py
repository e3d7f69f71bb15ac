"""What every benchmark section shares: the presets, the records a section produces (tables,
targets, data), the context that runs workers and emulators, and the per-run figures.

Interleaving: in repetition *r* every client runs once on the same emulator, in an order
rotated by *r*, so slow phases of the shared machine hit all clients alike. A figure is the
median over repetitions with its min–max spread; a ratio is computed per repetition
(client in run *r* over the floor or the peer in run *r*) and then summarised the same way.
Warm-up calls are never counted.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.emulator import EmulatorProcess, EmulatorSettings
from benchmarks.envs import Unavailable, Venv
from benchmarks.stats import Figure, percentile, ratio_figure
from benchmarks.workers import WorkerError, run_worker

__all__ = [
    "CLIENTS",
    "FIRST_TOKEN_DELAY",
    "FIRST_TOKEN_TOKENS",
    "PRESETS",
    "SHORT_ANSWER",
    "Context",
    "Preset",
    "Runs",
    "Section",
    "Table",
    "Target",
    "fmt",
    "fmt_ratio",
    "metrics",
    "rotated",
    "verdict",
]

CLIENTS = ("floor", "chatgptt", "peer")
_MODULES = {
    "floor": "benchmarks.client_floor",
    "chatgptt": "benchmarks.client_chatgptt",
    "peer": "benchmarks.client_peer",
    "aipkit_floor": "benchmarks.client_aipkit_floor",
}
#: Short answers: about what the site's model says to "Hello".
SHORT_ANSWER = 200
FIRST_TOKEN_DELAY = 0.025
FIRST_TOKEN_TOKENS = 40


@dataclass(frozen=True)
class Preset:
    """How much to measure: ``quick`` (a smoke run), ``default`` (``make bench``), ``full``."""

    name: str
    runs: int
    calls_c1: int
    calls_c32: int
    warmup: int
    sse_calls: bool
    trace_blocks: int
    trace_block_calls: int
    ttft_runs: int
    ttft_calls: int
    decode_size_mb: float
    decode_runs: int
    decode_chunkings: tuple[str, ...] | None
    memory_runs: int
    streams: int
    big_answer_chars: int
    scaling_runs: int
    answer_calls: tuple[tuple[int, int], ...]
    history_turns: tuple[int, ...]
    history_calls: int
    #: The server section (``chatgptt serve`` against a relay and gpt4free's API server).
    server_runs: int = 5
    server_calls_c1: int = 1000
    server_calls_c32: int = 2000
    server_ttft_calls: int = 10
    server_streams_runs: int = 2


PRESETS: dict[str, Preset] = {
    "quick": Preset(
        name="quick",
        runs=2,
        calls_c1=300,
        calls_c32=600,
        warmup=30,
        sse_calls=False,
        trace_blocks=6,
        trace_block_calls=150,
        ttft_runs=1,
        ttft_calls=5,
        decode_size_mb=2,
        decode_runs=3,
        decode_chunkings=("fixed 4 KiB", "random 1-512 B"),
        memory_runs=1,
        streams=1000,
        big_answer_chars=100_000_000,
        scaling_runs=1,
        answer_calls=((1_000, 100), (10_000, 60), (100_000, 20), (1_000_000, 6)),
        history_turns=(1, 10, 50, 200),
        history_calls=100,
        server_runs=2,
        server_calls_c1=300,
        server_calls_c32=600,
        server_ttft_calls=5,
        server_streams_runs=1,
    ),
    "default": Preset(
        name="default",
        runs=7,
        calls_c1=1500,
        calls_c32=3000,
        warmup=100,
        sse_calls=True,
        trace_blocks=24,
        trace_block_calls=250,
        ttft_runs=3,
        ttft_calls=10,
        decode_size_mb=8,
        decode_runs=5,
        decode_chunkings=None,
        memory_runs=2,
        streams=1000,
        big_answer_chars=100_000_000,
        scaling_runs=3,
        answer_calls=((1_000, 300), (10_000, 200), (100_000, 60), (1_000_000, 10)),
        history_turns=(1, 10, 50, 200),
        history_calls=300,
    ),
    "full": Preset(
        name="full",
        runs=9,
        calls_c1=3000,
        calls_c32=6000,
        warmup=200,
        sse_calls=True,
        trace_blocks=30,
        trace_block_calls=300,
        ttft_runs=5,
        ttft_calls=20,
        decode_size_mb=32,
        decode_runs=7,
        decode_chunkings=None,
        memory_runs=3,
        streams=1000,
        big_answer_chars=100_000_000,
        scaling_runs=5,
        answer_calls=((1_000, 600), (10_000, 400), (100_000, 120), (1_000_000, 20)),
        history_turns=(1, 10, 50, 200),
        history_calls=600,
        server_runs=7,
        server_calls_c1=2000,
        server_calls_c32=4000,
        server_ttft_calls=20,
        server_streams_runs=3,
    ),
}


@dataclass
class Table:
    """A table of the report; ``note`` says what was measured and how."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    note: str = ""


@dataclass
class Target:
    """One target of the issue and whether this run met it (``None``: not measured)."""

    name: str
    goal: str
    value: str
    met: bool | None


@dataclass
class Section:
    """What a section produced."""

    name: str
    tables: list[Table] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class Context:
    """What every section needs: paths, the preset, the interpreters, the bookkeeping."""

    root: Path
    work: Path
    preset: Preset
    python: str
    peer: Venv | Unavailable
    bench: Venv | Unavailable
    log: Callable[[str], None]
    #: Output printed by chatgptt workers (must stay empty: the library prints nothing).
    chatgptt_output: list[str] = field(default_factory=list)
    chatgptt_worker_runs: int = 0
    peer_project_modules: set[str] = field(default_factory=set)

    def clients(self, *, peer: bool = True) -> list[str]:
        """The clients to compare (the peer only when its venv is usable)."""
        return [c for c in CLIENTS if c != "peer" or (peer and isinstance(self.peer, Venv))]

    @property
    def peer_missing(self) -> str:
        """Why the peer is not measured ("" when it is)."""
        return self.peer.reason if isinstance(self.peer, Unavailable) else ""

    @contextmanager
    def emulator(self, settings: EmulatorSettings) -> Iterator[EmulatorProcess]:
        """A running emulator with ``settings`` (stopped on exit)."""
        with EmulatorProcess(settings, python=self.python, work_dir=self.work) as emulator:
            self.log(f"  emulator {emulator.url}: {settings.describe()}")
            yield emulator

    def run(
        self, client: str, spec: dict[str, Any], *, timeout: float = 180.0
    ) -> dict[str, Any] | None:
        """Run one worker; its result, or ``None`` (logged) when it failed."""
        python = (
            self.peer.python if client == "peer" and isinstance(self.peer, Venv) else self.python
        )
        try:
            run = run_worker(
                python,
                _MODULES[client],
                {"client": client, **spec},
                root=self.root,
                work_dir=self.work,
                timeout=timeout,
            )
        except WorkerError as exc:
            self.log(f"    {client}: FAILED: {exc}")
            return None
        if client == "chatgptt":
            self.chatgptt_worker_runs += 1
            printed = (run.stdout + run.stderr).strip()
            if printed:
                self.chatgptt_output.append(printed[:500])
        if client == "peer":
            self.peer_project_modules.update(run.result.get("project_modules", []))
        phases = run.result["phases"]
        errors = sum(p["errors"] for p in phases)
        samples = [sample for p in phases for sample in p["error_samples"]]
        self.log(
            f"    {client:9} {run.seconds:5.1f} s"
            + "".join(f"  {_phase_brief(p)}" for p in phases[:2])
            + (f"  ERRORS {errors}: {samples[:1]}" if errors else "")
        )
        return run.result


def _phase_brief(phase: dict[str, Any]) -> str:
    cpu = phase["cpu_s"] / max(phase["calls"], 1) * 1e6
    rate = phase["ok"] / phase["wall_s"] if phase["wall_s"] else float("nan")
    return f"c{phase['concurrency']} {cpu:.0f} µs cpu/call {rate:.0f} calls/s"


def rotated(items: Sequence[str], turn: int) -> list[str]:
    """``items`` rotated by ``turn`` (interleaving order of repetition ``turn``)."""
    if not items:
        return []
    shift = turn % len(items)
    return [*items[shift:], *items[:shift]]


# --- per-run metrics ----------------------------------------------------------------------


def metrics(phase: dict[str, Any]) -> dict[str, float]:
    """The figures of one phase (one client, one run)."""
    latencies = phase["latency_s"]
    firsts = phase["first_chunk_s"]
    calls = max(phase["calls"], 1)
    before, peak = phase.get("rss_before_kb"), phase.get("rss_peak_kb")
    return {
        "cpu_per_call_s": phase["cpu_s"] / calls,
        "calls_per_s": phase["ok"] / phase["wall_s"] if phase["wall_s"] else math.nan,
        "p50_s": percentile(latencies, 0.50),
        "p99_s": percentile(latencies, 0.99),
        "first_chunk_s": statistics.median(firsts) if firsts else math.nan,
        "errors": float(phase["errors"]),
        "rss_before_mb": before / 1024 if before else math.nan,
        "rss_peak_mb": peak / 1024 if peak else math.nan,
        "rss_growth_mb": (peak - before) / 1024 if peak and before else math.nan,
        "max_open_streams": float(phase.get("max_open_streams", 0)),
    }


class Runs:
    """Per-run metrics of several clients: ``runs[client][run] = metrics``."""

    def __init__(self) -> None:
        self.by_client: dict[str, dict[int, dict[str, float]]] = {}
        self.errors: dict[str, list[str]] = {}

    def add(self, client: str, run: int, phase: dict[str, Any]) -> None:
        """Record ``phase`` as ``client``'s run ``run``."""
        self.by_client.setdefault(client, {})[run] = metrics(phase)
        if phase["errors"]:
            self.errors.setdefault(client, []).extend(phase["error_samples"])

    def values(self, client: str, key: str) -> list[float]:
        """``key`` of every run of ``client``."""
        return [m[key] for m in self.by_client.get(client, {}).values()]

    def figure(self, client: str, key: str) -> Figure | None:
        """Median and spread of ``key`` over ``client``'s runs."""
        return Figure.of(self.values(client, key))

    def ratio(self, client: str, other: str, key: str) -> Figure | None:
        """``client``'s ``key`` over ``other``'s, per run, summarised."""
        mine, theirs = self.by_client.get(client, {}), self.by_client.get(other, {})
        common = sorted(set(mine) & set(theirs))
        return ratio_figure([mine[r][key] for r in common], [theirs[r][key] for r in common])

    def total_errors(self, client: str) -> int:
        """Failed calls over all runs."""
        return int(sum(self.values(client, "errors")))

    def as_dict(self, keys: Sequence[str]) -> dict[str, Any]:
        """Figures per client, for the JSON output."""
        out: dict[str, Any] = {}
        for client in self.by_client:
            out[client] = {
                key: fig.as_dict() for key in keys if (fig := self.figure(client, key)) is not None
            }
            out[client]["per_run"] = [
                self.by_client[client][r] for r in sorted(self.by_client[client])
            ]
            if client in self.errors:
                out[client]["error_samples"] = sorted(set(self.errors[client]))[:5]
        return out


def fmt(figure: Figure | None, scale: float = 1.0, digits: int = 0, unit: str = "") -> str:
    """A figure as ``median [min–max]``, or ``—`` when missing."""
    return "—" if figure is None else figure.format(scale, digits, unit)


def fmt_ratio(figure: Figure | None, digits: int = 2) -> str:
    """A ratio as ``1.23× [1.20–1.30]`` (targets use 3 digits, so that rounding never
    shows a ratio as equal to a limit it misses)."""
    if figure is None:
        return "—"
    text = f"{figure.median:.{digits}f}×"
    if figure.runs > 1:
        text += f" [{figure.low:.{digits}f}–{figure.high:.{digits}f}]"
    return text


def verdict(figure: Figure | None, ok: Callable[[float], bool]) -> bool | None:
    return None if figure is None else ok(figure.median)
