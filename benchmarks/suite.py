"""The measurements: each section starts its emulators, runs the workers interleaved, and
turns their results into tables, machine-readable data and target verdicts.

Interleaving: in repetition *r* every client runs once on the same emulator, in an order
rotated by *r*, so slow phases of the shared machine hit all clients alike. A figure is the
median over repetitions with its min–max spread; a ratio is computed per repetition
(client in run *r* over the floor or the peer in run *r*) and then summarised the same way.
Warm-up calls are never counted.
"""

from __future__ import annotations

import itertools
import math
import statistics
import subprocess
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.emulator import EmulatorProcess, EmulatorSettings
from benchmarks.envs import Unavailable, Venv
from benchmarks.stats import Figure, linear_fit, percentile, ratio_figure
from benchmarks.workers import WorkerError, run_worker

__all__ = [
    "PRESETS",
    "SECTIONS",
    "Context",
    "Preset",
    "Section",
    "Table",
    "Target",
]

CLIENTS = ("floor", "chatgptt", "peer")
_MODULES = {
    "floor": "benchmarks.client_floor",
    "chatgptt": "benchmarks.client_chatgptt",
    "peer": "benchmarks.client_peer",
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


def _verdict(figure: Figure | None, ok: Callable[[float], bool]) -> bool | None:
    return None if figure is None else ok(figure.median)


# --- sections -------------------------------------------------------------------------------


def section_calls(ctx: Context) -> Section:
    """CPU per call, throughput and latency at concurrency 1 and 32, JSON (all three
    clients) and SSE (floor and chatgptt: the peer cannot read a stream)."""
    p = ctx.preset
    section = Section("calls")
    modes = [("json", ctx.clients())]
    if p.sse_calls:
        modes.append(("sse", ctx.clients(peer=False)))
    for mode, clients in modes:
        settings = EmulatorSettings(mode=mode, answer_chars=SHORT_ANSWER)
        by_concurrency: dict[int, Runs] = {1: Runs(), 32: Runs()}
        emulator_cpu: dict[str, list[float]] = {}
        with ctx.emulator(settings) as emulator:
            for run in range(p.runs):
                ctx.log(f"  {mode} run {run + 1}/{p.runs}")
                for concurrency, calls in ((1, p.calls_c1), (32, p.calls_c32)):
                    for client in rotated(clients, run):
                        spec = {
                            "url": emulator.url,
                            "mode": mode,
                            "phases": [
                                {
                                    "calls": calls,
                                    "concurrency": concurrency,
                                    "warmup": p.warmup,
                                    "expect_chars": SHORT_ANSWER,
                                }
                            ],
                        }
                        cpu0 = emulator.cpu_seconds()
                        result = ctx.run(client, spec)
                        if result is not None:
                            by_concurrency[concurrency].add(client, run, result["phases"][0])
                            if concurrency == 32:
                                emulator_cpu.setdefault(client, []).append(
                                    (emulator.cpu_seconds() - cpu0) / (calls + p.warmup)
                                )
        keys = ("cpu_per_call_s", "calls_per_s", "p50_s", "p99_s")
        section.data[mode] = {
            "emulator": settings.describe(),
            "calls": {"1": p.calls_c1, "32": p.calls_c32},
            "warmup_calls": p.warmup,
            "runs": p.runs,
            "by_concurrency": {str(c): r.as_dict(keys) for c, r in by_concurrency.items()},
            "emulator_cpu_per_call_s": {
                c: Figure.of(v).as_dict() for c, v in emulator_cpu.items() if Figure.of(v)
            },
        }
        note = (
            f"{p.calls_c1} calls at concurrency 1 and {p.calls_c32} at 32 per client and run, "
            f"{p.warmup} warm-up calls excluded, {p.runs} interleaved runs; median [min–max] "
            "over runs; ratios per run, then median [min–max]."
        )
        cpu_table = Table(
            f"CPU per call — {settings.describe()}",
            ["client", "conc", "CPU/call µs", "×floor", "×peer", "errors"],
            note=note + " CPU is the client process's (user + system) over the timed calls.",
        )
        table = Table(
            f"Throughput and latency — {settings.describe()}",
            ["client", "conc", "calls/s", "×floor", "×peer", "p50 ms", "p99 ms"],
            note=note,
        )
        for concurrency, runs in by_concurrency.items():
            has_peer = "peer" in runs.by_client
            for client in clients:
                if client not in runs.by_client:
                    cpu_table.rows.append([client, str(concurrency), "failed", "—", "—", "—"])
                    table.rows.append([client, str(concurrency), "failed", *["—"] * 4])
                    continue

                def ratio(
                    other: str,
                    key: str,
                    client: str = client,
                    runs: Runs = runs,
                    has_peer: bool = has_peer,
                ) -> str:
                    if other == "peer" and not has_peer:
                        return "—"
                    return fmt_ratio(runs.ratio(client, other, key))

                cpu_table.rows.append(
                    [
                        client,
                        str(concurrency),
                        fmt(runs.figure(client, "cpu_per_call_s"), 1e6),
                        ratio("floor", "cpu_per_call_s"),
                        ratio("peer", "cpu_per_call_s"),
                        str(runs.total_errors(client)),
                    ]
                )
                table.rows.append(
                    [
                        client,
                        str(concurrency),
                        fmt(runs.figure(client, "calls_per_s")),
                        ratio("floor", "calls_per_s"),
                        ratio("peer", "calls_per_s"),
                        fmt(runs.figure(client, "p50_s"), 1e3, 2),
                        fmt(runs.figure(client, "p99_s"), 1e3, 2),
                    ]
                )
        section.tables.append(cpu_table)
        if emulator_cpu:
            table.note += (
                " Emulator CPU per call at concurrency 32 (its own process): "
                + ", ".join(f"{c} {fmt(Figure.of(v), 1e6)} µs" for c, v in emulator_cpu.items())
                + " (the peer makes two requests per call)."
            )
        section.tables.append(table)
        if mode == "json":
            c1, c32 = by_concurrency[1], by_concurrency[32]
            cpu_ratio = c1.ratio("chatgptt", "floor", "cpu_per_call_s")
            section.targets.append(
                Target(
                    "CPU per call (JSON, short answers, concurrency 1)",
                    "chatgptt ≤ 1.15 × floor",
                    fmt_ratio(cpu_ratio, 3),
                    _verdict(cpu_ratio, lambda x: x <= 1.15),
                )
            )
            tput_floor = c32.ratio("chatgptt", "floor", "calls_per_s")
            section.targets.append(
                Target(
                    "Throughput at concurrency 32 vs floor",
                    "chatgptt ≥ 0.9 × floor",
                    fmt_ratio(tput_floor, 3),
                    _verdict(tput_floor, lambda x: x >= 0.9),
                )
            )
            tput_peer = c32.ratio("chatgptt", "peer", "calls_per_s")
            section.targets.append(
                Target(
                    "Throughput at concurrency 32 vs peer",
                    "chatgptt ≥ 3 × peer",
                    fmt_ratio(tput_peer, 3)
                    if tput_peer
                    else f"unavailable: {ctx.peer_missing or 'peer failed'}",
                    _verdict(tput_peer, lambda x: x >= 3.0),
                )
            )
    return section


def section_tracing(ctx: Context) -> Section:
    """What tracing costs when no one listens: chatgptt with its trace layers against the
    same pipeline without them, alternated in one process (blocks A B A B …)."""
    p = ctx.preset
    section = Section("tracing")
    settings = EmulatorSettings(mode="json", answer_chars=SHORT_ANSWER)
    variants = ("traced", "untraced", "default")
    phases: list[dict[str, Any]] = [
        {"name": "warmup", "calls": p.warmup, "variant": v, "warmup": p.warmup if i == 0 else 0}
        for i, v in enumerate(variants)
    ]
    for block in range(p.trace_blocks):
        order = variants[block % 3 :] + variants[: block % 3]
        phases += [{"calls": p.trace_block_calls, "variant": v} for v in order]
    with ctx.emulator(settings) as emulator:
        result = ctx.run("chatgptt", {"url": emulator.url, "mode": "json", "phases": phases})
    if result is None:
        section.targets.append(
            Target("Unlistened tracing", "≤ 3 % of CPU per call", "failed", None)
        )
        return section
    timed = [ph for ph in result["phases"] if ph["name"] != "warmup"]
    cpu: dict[str, list[float]] = {v: [] for v in variants}
    pairs: dict[str, list[float]] = {"traced": [], "default": []}
    for start in range(0, len(timed) - 2, 3):
        per = {ph["variant"]: ph["cpu_s"] / ph["calls"] for ph in timed[start : start + 3]}
        for variant, value in per.items():
            cpu[variant].append(value)
        pairs["traced"].append(per["traced"] / per["untraced"])
        pairs["default"].append(per["default"] / per["untraced"])
    ratio = Figure.of(pairs["traced"])
    default_ratio = Figure.of(pairs["default"])
    total = sum(cpu["traced"]) / sum(cpu["untraced"])
    errors = sum(ph["errors"] for ph in timed)
    table = Table(
        "Tracing that no one listens to (structlog unconfigured)",
        ["pipeline", "CPU/call µs", "×untraced"],
        note=(
            f"One chatgptt worker, {p.trace_blocks} blocks of the three variants "
            f"({p.trace_block_calls} calls each), order rotated; JSON, short answers, "
            "concurrency 1. Ratio per block, median [min–max]; traced over all calls "
            f"{total:.3f}×. Errors: {errors}. 'default' is what users run: while structlog is "
            "unconfigured the provider leaves the trace layers out of its assembly; 'traced' "
            "keeps them in, each checking per run whether anyone listens."
        ),
    )
    table.rows.append(
        ["traced (trace layers in place)", fmt(Figure.of(cpu["traced"]), 1e6), fmt_ratio(ratio)]
    )
    table.rows.append(
        ["default (as users run it)", fmt(Figure.of(cpu["default"]), 1e6), fmt_ratio(default_ratio)]
    )
    table.rows.append(
        ["untraced (same layers minus trace)", fmt(Figure.of(cpu["untraced"]), 1e6), "1.00×"]
    )
    section.tables.append(table)
    section.data = {
        "blocks": p.trace_blocks,
        "calls_per_block": p.trace_block_calls,
        "ratio_per_pair": ratio.as_dict() if ratio else None,
        "ratio_all_calls": total,
        "cpu_per_call_s": {k: Figure.of(v).as_dict() for k, v in cpu.items() if Figure.of(v)},
        "errors": errors,
    }
    section.targets.append(
        Target(
            "Unlistened tracing",
            "≤ 3 % of CPU per call (traced ≤ 1.03 × untraced)",
            f"{fmt_ratio(ratio, 3)} (all calls {total:.3f}×)",
            _verdict(ratio, lambda x: x <= 1.03),
        )
    )
    return section


def section_first_token(ctx: Context) -> Section:
    """Time to first token of a streamed answer: floor and chatgptt on an event stream, the
    peer on the JSON reply the site sends once the whole answer is done."""
    p = ctx.preset
    section = Section("first_token")
    answer = FIRST_TOKEN_TOKENS * 8
    stream_settings = EmulatorSettings(
        mode="sse", token_delay=FIRST_TOKEN_DELAY, token_chars=8, answer_chars=answer
    )
    whole = FIRST_TOKEN_TOKENS * FIRST_TOKEN_DELAY
    json_settings = EmulatorSettings(
        mode="json", answer_chars=answer, faults=(f"stall={whole:g},times=every",)
    )
    runs = Runs()
    clients = ctx.clients()
    with ctx.emulator(stream_settings) as sse, ctx.emulator(json_settings) as js:
        for run in range(p.ttft_runs):
            ctx.log(f"  run {run + 1}/{p.ttft_runs}")
            for client in rotated(clients, run):
                emulator = js if client == "peer" else sse
                spec = {
                    "url": emulator.url,
                    "mode": emulator.settings.mode,
                    "phases": [
                        {
                            "calls": p.ttft_calls,
                            "concurrency": min(5, p.ttft_calls),
                            "warmup": 2,
                            "expect_chars": answer,
                        }
                    ],
                }
                result = ctx.run(client, spec)
                if result is not None:
                    runs.add(client, run, result["phases"][0])
    table = Table(
        f"Time to first token — {FIRST_TOKEN_TOKENS} tokens, {FIRST_TOKEN_DELAY * 1000:g} ms apart",
        [
            "client",
            "reply",
            "first token ms",
            "whole answer ms",
            "×chatgptt (first token)",
            "errors",
        ],
        note=(
            f"{p.ttft_calls} calls per client and run (5 at a time), 2 warm-up calls excluded, "
            f"{p.ttft_runs} runs; median per run, then median [min–max]. The emulator waits "
            f"{FIRST_TOKEN_DELAY * 1000:g} ms before each token; for the peer (JSON only) it "
            f"answers after {whole:g} s, when the whole answer is done, as the site does. "
            "The floor counts its first body chunk holding a content piece."
        ),
    )
    for client in clients:
        if client not in runs.by_client:
            table.rows.append([client, "—", "failed", "—", "—", "—"])
            continue
        table.rows.append(
            [
                client,
                "JSON (answer when complete)" if client == "peer" else "SSE stream",
                fmt(runs.figure(client, "first_chunk_s"), 1e3, 1),
                fmt(runs.figure(client, "p50_s"), 1e3, 0),
                fmt_ratio(runs.ratio(client, "chatgptt", "first_chunk_s")),
                str(runs.total_errors(client)),
            ]
        )
    section.tables.append(table)
    section.data = runs.as_dict(("first_chunk_s", "p50_s"))
    ours = runs.figure("chatgptt", "first_chunk_s")
    limit = FIRST_TOKEN_DELAY + 0.010
    section.targets.append(
        Target(
            "Time to first token",
            f"chatgptt ≤ {FIRST_TOKEN_DELAY * 1000:g} ms + 10 ms",
            fmt(ours, 1e3, 1, "ms"),
            _verdict(ours, lambda x: x <= limit),
        )
    )
    sooner = runs.ratio("peer", "chatgptt", "first_chunk_s")
    section.targets.append(
        Target(
            "First token vs peer",
            "chatgptt ≥ 10 × sooner than the peer",
            f"{fmt_ratio(sooner)} sooner"
            if sooner
            else f"unavailable: {ctx.peer_missing or 'peer failed'}",
            _verdict(sooner, lambda x: x >= 10.0),
        )
    )
    return section


def section_decode(ctx: Context) -> Section:
    """SSE decoding throughput: ours against the openai SDK's and httpx-sse's decoders, the
    same bytes in the same chunks (``benchmarks.sse_decode``, in the bench venv)."""
    p = ctx.preset
    section = Section("sse_decode")
    goal = "≥ 1.5 × the faster reference, identical events"
    if isinstance(ctx.bench, Unavailable):
        section.notes.append(f"SSE decoding skipped: {ctx.bench.reason}")
        section.targets.append(Target("SSE decoding", goal, f"skipped: {ctx.bench.reason}", None))
        return section
    spec = {
        "size_mb": p.decode_size_mb,
        "runs": p.decode_runs,
        "chunkings": list(p.decode_chunkings) if p.decode_chunkings else None,
    }
    try:
        run = run_worker(
            ctx.bench.python,
            "benchmarks.decode_worker",
            spec,
            root=ctx.root,
            work_dir=ctx.work,
            timeout=900.0,
        )
    except WorkerError as exc:
        reason = str(exc).splitlines()[0] if "AssertionError" not in str(exc) else str(exc)[-300:]
        ctx.log(f"    decode: FAILED: {exc}")
        section.targets.append(Target("SSE decoding", goal, f"skipped: {reason}", None))
        return section
    report = run.result
    ctx.log(f"    decode {run.seconds:.1f} s")
    rows = report.get("results", [])
    decoders = list(rows[0]["mb_per_s"]) if rows else []
    table = Table(
        f"SSE decoding — {report.get('size_bytes', 0) / 1e6:.1f} MB recorded-style stream, "
        f"{report.get('events', 0)} events",
        ["line end", "chunking", "chunks", *[f"{d} MB/s" for d in decoders], "ours ×faster ref"],
        note=(
            f"Median [min–max] of {report.get('runs')} runs per decoder; events checked identical "
            "across decoders before timing (the run fails otherwise). References: "
            + ", ".join(f"{k} {v}" for k, v in report.get("versions", {}).items())
            + "."
        ),
    )
    ratios = []
    for row in rows:
        speeds = row["mb_per_s"]
        faster = max(speeds["openai"]["median"], speeds["httpx-sse"]["median"])
        ratio = speeds["ours"]["median"] / faster
        ratios.append(ratio)
        table.rows.append(
            [
                repr(row["line_end"]),
                row["chunking"],
                str(row["chunks"]),
                *[
                    f"{speeds[d]['median']:.0f} [{speeds[d]['min']:.0f}–{speeds[d]['max']:.0f}]"
                    for d in decoders
                ],
                f"{ratio:.2f}×",
            ]
        )
    section.tables.append(table)
    section.data = report
    worst = min(ratios) if ratios else None
    section.targets.append(
        Target(
            "SSE decoding",
            goal,
            f"{worst:.2f}× (worst chunking), {statistics.median(ratios):.2f}× median"
            if ratios
            else "no results",
            None if worst is None else worst >= 1.5,
        )
    )
    return section


def section_memory(ctx: Context) -> Section:
    """Peak RSS with 1,000 concurrent streaming calls; RSS growth streaming a 100 MB answer."""
    p = ctx.preset
    section = Section("memory")
    tokens, delay = 25, 0.02
    stream_settings = EmulatorSettings(
        mode="sse", token_delay=delay, token_chars=8, answer_chars=tokens * 8
    )
    json_settings = EmulatorSettings(
        mode="json", answer_chars=tokens * 8, faults=(f"stall={tokens * delay:g},times=every",)
    )
    many = Runs()
    clients = ctx.clients()
    with ctx.emulator(stream_settings) as sse, ctx.emulator(json_settings) as js:
        for run in range(p.memory_runs):
            ctx.log(f"  {p.streams} concurrent streams, run {run + 1}/{p.memory_runs}")
            for client in rotated(clients, run):
                emulator = js if client == "peer" else sse
                spec = {
                    "url": emulator.url,
                    "mode": emulator.settings.mode,
                    "pool": p.streams,  # every stream on the wire at once, not 100 at a time
                    "phases": [
                        {
                            "calls": p.streams,
                            "concurrency": p.streams,
                            "warmup": 10,
                            "expect_chars": tokens * 8,
                        }
                    ],
                }
                result = ctx.run(client, spec, timeout=300.0)
                if result is not None:
                    many.add(client, run, result["phases"][0])
    table = Table(
        f"Memory — {p.streams} concurrent streaming calls",
        ["client", "reply", "peak RSS MB", "RSS before MB", "wall s", "max open streams", "errors"],
        note=(
            f"Each call streams {tokens} tokens {delay * 1000:g} ms apart (0.5 s); the peer gets "
            "the JSON reply after the same 0.5 s. Peak = the worker's VmHWM over the timed calls "
            f"(reset before them); 10 warm-up calls excluded; {p.memory_runs} runs. The pools "
            f"are sized for all {p.streams} streams at once (chatgptt: "
            "ChatGptt.sessions.configure(SessionOptions(max_connections=N)); the floor: its "
            "connector's limit), so 'max open streams' counts streams really open together; "
            "the peer opens a session per call (no bound)."
        ),
    )
    for client in clients:
        if client not in many.by_client:
            table.rows.append([client, "—", "failed", "—", "—", "—", "—"])
            continue
        wall = Figure.of(
            [
                p.streams / m["calls_per_s"]
                for m in many.by_client[client].values()
                if m["calls_per_s"]
            ]
        )
        table.rows.append(
            [
                client,
                "JSON" if client == "peer" else "SSE",
                fmt(many.figure(client, "rss_peak_mb"), 1, 1),
                fmt(many.figure(client, "rss_before_mb"), 1, 1),
                fmt(wall, 1, 1),
                "n/a (one JSON chunk)"
                if client == "peer"
                else fmt(many.figure(client, "max_open_streams")),
                str(many.total_errors(client)),
            ]
        )
    section.tables.append(table)
    section.data["concurrent_streams"] = many.as_dict(
        ("rss_peak_mb", "rss_before_mb", "max_open_streams", "calls_per_s")
    )
    peak = many.figure("chatgptt", "rss_peak_mb")
    errors = many.total_errors("chatgptt") if "chatgptt" in many.by_client else None
    met = None if peak is None or errors is None else (peak.high <= 150 and errors == 0)
    section.targets.append(
        Target(
            f"{p.streams} concurrent streams",
            "no error and client peak RSS ≤ 150 MB",
            f"{fmt(peak, 1, 1, 'MB')} peak (worst {peak.high:.1f}), {errors} errors"
            if peak is not None
            else "failed",
            met,
        )
    )

    big = Runs()
    big_settings = EmulatorSettings(mode="sse", token_chars=65536, answer_chars=p.big_answer_chars)
    warm_settings = EmulatorSettings(mode="sse")
    big_clients = ctx.clients(peer=False)
    with ctx.emulator(big_settings) as large, ctx.emulator(warm_settings) as warm:
        for run in range(p.memory_runs):
            ctx.log(f"  {p.big_answer_chars / 1e6:g} MB answer, run {run + 1}/{p.memory_runs}")
            for client in rotated(big_clients, run):
                spec = {
                    "url": large.url,
                    "warmup_url": warm.url,
                    "mode": "sse",
                    "phases": [
                        {
                            "calls": 1,
                            "concurrency": 1,
                            "warmup": 5,
                            "warmup_variant": "warmup",
                            "expect_chars": p.big_answer_chars,
                        }
                    ],
                }
                result = ctx.run(client, spec, timeout=300.0)
                if result is not None:
                    big.add(client, run, result["phases"][0])
    table = Table(
        f"Memory — one {p.big_answer_chars / 1e6:g} MB streamed answer",
        [
            "client",
            "RSS before MB",
            "peak RSS MB",
            "growth MB",
            "wall s",
            "CPU s",
            "MB per CPU s",
            "errors",
        ],
        note=(
            "The answer comes as 64 KiB content pieces; the client consumes each chunk and drops "
            "it; the wall time includes the emulator building the answer (seconds of its CPU). "
            "Growth = VmHWM during the call − VmRSS just before it (after 5 warm-up calls on "
            "another emulator). chatgptt keeps up to Limits.max_partial_text = 4 Mi characters of "
            "delivered text for StreamInterruptedError, by design. The peer's JSON reader cannot "
            f"stream (it would hold the whole answer); not measured. {p.memory_runs} runs."
        ),
    )
    for client in big_clients:
        if client not in big.by_client:
            table.rows.append([client, "failed", *["—"] * 6])
            continue
        rate = Figure.of(
            [
                p.big_answer_chars / 1e6 / m["cpu_per_call_s"]
                for m in big.by_client[client].values()
                if m["cpu_per_call_s"]
            ]
        )
        table.rows.append(
            [
                client,
                fmt(big.figure(client, "rss_before_mb"), 1, 1),
                fmt(big.figure(client, "rss_peak_mb"), 1, 1),
                fmt(big.figure(client, "rss_growth_mb"), 1, 1),
                fmt(big.figure(client, "p50_s"), 1, 1),
                fmt(big.figure(client, "cpu_per_call_s"), 1, 2),
                fmt(rate, 1, 0),
                str(big.total_errors(client)),
            ]
        )
    section.tables.append(table)
    section.data["big_answer"] = big.as_dict(
        ("rss_before_mb", "rss_peak_mb", "rss_growth_mb", "cpu_per_call_s")
    )
    growth = big.figure("chatgptt", "rss_growth_mb")
    errors_big = big.total_errors("chatgptt") if "chatgptt" in big.by_client else None
    section.targets.append(
        Target(
            f"Streaming a {p.big_answer_chars / 1e6:g} MB answer",
            "RSS grows ≤ 20 MB",
            f"{fmt(growth, 1, 1, 'MB')} (worst {growth.high:.1f}), {errors_big} errors"
            if growth is not None
            else "failed",
            None if growth is None else (growth.high <= 20 and errors_big == 0),
        )
    )
    return section


def growth_exponent(points: Sequence[tuple[float, float]]) -> float:
    """How the cost above the smallest case grows between the last two sizes: 1 for a
    linear cost, 2 for a quadratic one (``log(Δy ratio) / log(Δx ratio)``)."""
    if len(points) < 3:
        return math.nan
    (x0, y0), (x1, y1), (x2, y2) = points[0], points[-2], points[-1]
    dy1, dy2 = y1 - y0, y2 - y0
    if dy1 <= 0 or dy2 <= 0:
        return math.nan
    return math.log(dy2 / dy1) / math.log((x2 - x0) / (x1 - x0))


def _verdict_of(exponent: float, top_step_vs_floor: float) -> str:
    """Linear if the exponent is at most 1.25; "as the floor" if the cost per unit over the
    last step is at most 1.5 × the floor's over the same step: the growth the floor shows
    too is the machine's and the HTTP stack's (caches, allocator), not the client's code."""
    if not math.isnan(exponent) and exponent <= 1.25:
        return "linear"
    if not math.isnan(top_step_vs_floor) and top_step_vs_floor <= 1.5:
        return "linear (as the floor)"
    if math.isnan(exponent):
        return "unclear"
    return "slightly superlinear" if exponent <= 1.6 else "superlinear"


def _scaling_table(
    title: str,
    unit: str,
    xs: Sequence[int],
    per_x: dict[int, Runs],
    clients: Sequence[str],
    note: str,
    per: float,
) -> tuple[Table, dict[str, Any]]:
    """CPU per call for each x, the fitted slope per ``unit`` and a linearity verdict; plus
    chatgptt's own share (chatgptt − floor)."""
    table = Table(
        title,
        [
            "client",
            *[f"{x:,}" for x in xs],
            f"slope µs/{unit}",
            f"top step µs/{unit}",
            "exponent",
            "verdict",
        ],
        note=note
        + " Exponent: log of how much the cost above the smallest case grew over the last "
        "step, divided by the log of how much the size above the smallest grew — 1 for a "
        "linear cost, 2 for a quadratic one; linear if ≤ 1.25. Top step: µs per unit between "
        "the two largest cases; a client whose top step costs at most 1.5 × the floor's "
        "scales as the floor does (growth the floor shows too is the machine's: caches, "
        "allocator, the HTTP library).",
    )
    data: dict[str, Any] = {}
    series: dict[str, list[float]] = {}
    for client in clients:
        medians: list[float] = []
        for x in xs:
            fig = per_x[x].figure(client, "cpu_per_call_s")
            medians.append(fig.median if fig else math.nan)
        series[client] = medians
    if "chatgptt" in series and "floor" in series:
        series["chatgptt − floor"] = [
            a - b for a, b in zip(series["chatgptt"], series["floor"], strict=True)
        ]
    floor_top = math.nan
    for client, medians in series.items():
        if client in per_x[xs[0]].by_client:
            cells = [fmt(per_x[x].figure(client, "cpu_per_call_s"), 1e6) for x in xs]
        else:
            cells = ["—" if math.isnan(y) else f"{y * 1e6:.0f}" for y in medians]
        points = [(x / per, y * 1e6) for x, y in zip(xs, medians, strict=True) if not math.isnan(y)]
        if len(points) < 2:
            table.rows.append([client, *cells, "—", "—", "—", "—"])
            continue
        intercept, slope, r2 = linear_fit([pt[0] for pt in points], [pt[1] for pt in points])
        marginal = [(b[1] - a[1]) / (b[0] - a[0]) for a, b in itertools.pairwise(points)]
        exponent = growth_exponent(points)
        top = marginal[-1]
        if client == "floor":
            floor_top = top
        versus_floor = math.nan if client == "floor" or not floor_top > 0 else top / floor_top
        verdict = _verdict_of(exponent, versus_floor)
        table.rows.append(
            [client, *cells, f"{slope:.2f}", f"{top:.2f}", f"{exponent:.2f}", verdict]
        )
        data[client] = {
            "x": list(xs),
            "cpu_per_call_s": medians,
            "intercept_us": intercept,
            f"slope_us_per_{unit}": slope,
            "r2": r2,
            "marginal_us_per_unit": marginal,
            "exponent": exponent,
            "top_step_vs_floor": versus_floor,
            "verdict": verdict,
        }
    return table, data


def section_scaling(ctx: Context) -> Section:
    """CPU per call as the answer grows (1 KB → 1 MB) and as the history grows (1 → 200 turns)."""
    p = ctx.preset
    section = Section("scaling")
    verdicts: list[str] = []
    for mode in ("json", "sse"):
        clients = ctx.clients(peer=mode == "json")
        per_size: dict[int, Runs] = {}
        for size, calls in p.answer_calls:
            runs = per_size[size] = Runs()
            settings = EmulatorSettings(mode=mode, answer_chars=size, token_chars=64)
            with ctx.emulator(settings) as emulator:
                for run in range(p.scaling_runs):
                    for client in rotated(clients, run):
                        spec = {
                            "url": emulator.url,
                            "mode": mode,
                            "phases": [
                                {
                                    "calls": calls,
                                    "concurrency": 1,
                                    "warmup": max(2, calls // 10),
                                    "expect_chars": size,
                                }
                            ],
                        }
                        result = ctx.run(client, spec, timeout=300.0)
                        if result is not None:
                            runs.add(client, run, result["phases"][0])
        sizes = [size for size, _ in p.answer_calls]
        frames = "64-character content pieces" if mode == "sse" else "one JSON reply"
        table, data = _scaling_table(
            f"Scaling — CPU per call (µs) by answer size (characters), {mode.upper()}",
            "KB",
            sizes,
            per_size,
            clients,
            (
                f"{frames}; concurrency 1; calls per size "
                + ", ".join(f"{s:,}: {c}" for s, c in p.answer_calls)
                + f"; {p.scaling_runs} runs, median [min–max]. Slope: least-squares µs per KB "
                "(1 KB = 1,000 characters)."
            ),
            1000.0,
        )
        section.tables.append(table)
        section.data[f"answer_{mode}"] = data
        if "chatgptt" in data:
            verdicts.append(
                f"answer/{mode}: {data['chatgptt']['verdict']} "
                f"(exponent {data['chatgptt']['exponent']:.2f})"
            )

    clients = ctx.clients()
    per_turns: dict[int, Runs] = {}
    settings = EmulatorSettings(mode="json", answer_chars=SHORT_ANSWER)
    with ctx.emulator(settings) as emulator:
        for turns in p.history_turns:
            runs = per_turns[turns] = Runs()
            for run in range(p.scaling_runs):
                for client in rotated(clients, run):
                    spec = {
                        "url": emulator.url,
                        "mode": "json",
                        "phases": [
                            {
                                "calls": p.history_calls,
                                "concurrency": 1,
                                "warmup": max(2, p.history_calls // 10),
                                "turns": turns,
                                "expect_chars": SHORT_ANSWER,
                            }
                        ],
                    }
                    result = ctx.run(client, spec)
                    if result is not None:
                        runs.add(client, run, result["phases"][0])
    table, data = _scaling_table(
        "Scaling — CPU per call (µs) by conversation length (turns)",
        "turn",
        p.history_turns,
        per_turns,
        clients,
        (
            f"JSON, short answers, concurrency 1, {p.history_calls} calls per length, "
            f"{p.scaling_runs} runs. Each earlier turn is about 120 characters; floor and "
            "chatgptt send them as wpaicg_chat_history, the peer flattens them into the message."
        ),
        1.0,
    )
    section.tables.append(table)
    section.data["history"] = data
    if "chatgptt" in data:
        verdicts.append(
            f"history: {data['chatgptt']['verdict']} (exponent {data['chatgptt']['exponent']:.2f})"
        )
    all_linear = bool(verdicts) and all(v.split(": ", 1)[1].startswith("linear") for v in verdicts)
    section.targets.append(
        Target(
            "Scaling",
            "CPU per call linear in answer size and history length",
            "; ".join(verdicts) or "failed",
            all_linear if verdicts else None,
        )
    )
    return section


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
SECTIONS: dict[str, Callable[[Context], Section]] = {
    "calls": section_calls,
    "tracing": section_tracing,
    "first_token": section_first_token,
    "decode": section_decode,
    "memory": section_memory,
    "scaling": section_scaling,
    "silence": section_silence,
}
