"""``chatgptt serve`` against a hand-written relay (the floor) and gpt4free's own API server.

Three OpenAI-compatible servers, each its own process in front of the same emulator:

- floor: :mod:`benchmarks.relay_floor`, the least a relay can do (aiohttp by hand);
- chatgptt: ``chatgptt serve --url <emulator>`` as users run it;
- serve-only: ``chatgptt serve``'s application with the floor's hand-written site call in
  place of the library's (:mod:`benchmarks.serve_only`), for whole answers: the server's own
  share of its CPU per request, the rest being the library call's;
- g4f: ``g4f api`` (0.4.5.4, in the peer's venv) with the original provider pointed at the
  emulator (:mod:`benchmarks.server_g4f`). Its provider reads JSON replies only, so it gets
  the emulator in JSON mode, and where the others stream it gets a JSON reply sent after the
  time the stream takes, as the site would send it.

One load worker (:mod:`benchmarks.client_openai`) per measurement. Figures: the *server's*
CPU per request (its process, read from ``/proc`` around the timed calls; each server is warmed
up once, unmeasured, when it starts) and requests per second at concurrency 1 and 32, whole
and streamed; the time to the first piece of a streamed answer; and the server's peak RSS with
1,000 streams open at once, with how many were flowing together.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.emulator import EmulatorSettings
from benchmarks.envs import Venv
from benchmarks.harness import (
    SHORT_ANSWER,
    Context,
    Runs,
    Section,
    Table,
    Target,
    fmt,
    fmt_ratio,
    rotated,
    verdict,
)
from benchmarks.servers import ServerError, ServerProcess
from benchmarks.stats import Figure
from benchmarks.workers import WorkerError, run_worker

__all__ = ["section_server"]

SERVERS = ("floor", "chatgptt", "g4f")
_READY = {
    "floor": r"relay listening on (\S+)",
    "chatgptt": r"as an OpenAI API on (\S+)",
    "chatgptt-estimate": r"as an OpenAI API on (\S+)",
    "serve-only": r"as an OpenAI API on (\S+)",
    "g4f": r"g4f api listening on (\S+)",
}
#: gpt4free's server costs milliseconds a request: fewer requests give the same precision.
G4F_SHARE = {1: 10, 32: 4}
TTFC_DELAY, TTFC_TOKENS = 0.025, 40
STREAMS, STREAM_TOKENS, STREAM_DELAY = 1000, 20, 0.15
WARMUP_CALLS = 200


def _tiktoken_cache() -> str | None:
    """A folder holding tiktoken's encodings without a download (litellm ships them)."""
    spec = importlib.util.find_spec("litellm")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "litellm_core_utils" / "tokenizers"
    return str(folder) if folder.is_dir() else None


def _usage_env() -> tuple[dict[str, str], str]:
    """How chatgptt counts usage in this run: tiktoken where its encodings are at hand
    offline, else the estimate (the benchmark never downloads)."""
    folder = _tiktoken_cache()
    if folder is not None and importlib.util.find_spec("tiktoken") is not None:
        return {"TIKTOKEN_CACHE_DIR": folder, "CHATGPTT_USAGE_TOKENIZER": "tiktoken"}, "tiktoken"
    return {"CHATGPTT_USAGE_TOKENIZER": "estimate"}, "estimate"


def _server(ctx: Context, name: str, site: str) -> ServerProcess:
    env: dict[str, str] = {}
    if name == "floor":
        command = [ctx.python, "-m", "benchmarks.relay_floor", site, str(STREAMS + 100)]
    elif name == "serve-only":
        command = [ctx.python, "-m", "benchmarks.serve_only", site]
        env = _usage_env()[0]
    elif name.startswith("chatgptt"):
        command = [ctx.python, "-m", "chatgptt.cli", "serve", "--url", site, "--port", "0"]
        env = _usage_env()[0]
        if name == "chatgptt-estimate":
            env = {"CHATGPTT_USAGE_TOKENIZER": "estimate"}
    else:
        assert isinstance(ctx.peer, Venv)
        command = [ctx.peer.python, "-m", "benchmarks.server_g4f", site]
    return ServerProcess(name, command, _READY[name], work_dir=ctx.work, cwd=ctx.root, env=env)


def _load(ctx: Context, spec: dict[str, Any], timeout: float = 300.0) -> dict[str, Any] | None:
    """One load worker's phase result, or ``None`` (logged) when it failed."""
    try:
        run = run_worker(
            ctx.python,
            "benchmarks.client_openai",
            spec,
            root=ctx.root,
            work_dir=ctx.work,
            timeout=timeout,
        )
    except WorkerError as exc:
        ctx.log(f"    load: FAILED: {exc}")
        return None
    phase: dict[str, Any] = run.result["phases"][0]
    if phase["errors"]:
        ctx.log(f"    load: {phase['errors']} errors: {phase['error_samples'][:1]}")
    return phase


def _spec(server: ServerProcess, phase: dict[str, Any], pool: int = 64) -> dict[str, Any]:
    spec: dict[str, Any] = {"base_url": server.base_url, "pool": pool, "phases": [phase]}
    if server.name == "g4f":
        spec["provider"] = "ChatGptt"
    return spec


@contextlib.contextmanager
def _running(
    ctx: Context, sites: dict[str, str], stream: bool
) -> Iterator[dict[str, ServerProcess]]:
    """The servers, each in front of its site, warmed up (unmeasured)."""
    with contextlib.ExitStack() as stack:
        running: dict[str, ServerProcess] = {}
        for name, site in sites.items():
            try:
                running[name] = stack.enter_context(_server(ctx, name, site))
            except ServerError as exc:
                ctx.log(f"    {name}: FAILED to start: {exc}")
                continue
            ctx.log(f"  {name} server {running[name].base_url} in front of {site}")
            warm = {"calls": WARMUP_CALLS, "concurrency": 32, "warmup": 0}
            if stream:
                warm["variant"] = "stream"
            _load(ctx, _spec(running[name], warm))
        yield running


def _cpu_phase(
    ctx: Context, server: ServerProcess, phase: dict[str, Any], pool: int = 64
) -> dict[str, Any] | None:
    """Run ``phase`` against ``server``; the phase with ``cpu_s`` the server's CPU time."""
    before = server.cpu_seconds()
    result = _load(ctx, _spec(server, phase, pool))
    if result is None:
        return None
    result["client_cpu_s"] = result["cpu_s"]
    result["cpu_s"] = server.cpu_seconds() - before
    return result


def _throughput(
    ctx: Context,
    section: Section,
    settings: EmulatorSettings,
    names: list[str],
    stream: bool,
) -> dict[int, Runs]:
    """CPU per request and requests per second at concurrency 1 and 32."""
    p = ctx.preset
    by_concurrency = {1: Runs(), 32: Runs()}
    with ctx.emulator(settings) as emulator:
        sites = dict.fromkeys(names, emulator.url)
        with _running(ctx, sites, stream) as servers:
            for run in range(p.server_runs):
                ctx.log(f"  {'streamed' if stream else 'whole'} run {run + 1}/{p.server_runs}")
                for concurrency, calls in ((1, p.server_calls_c1), (32, p.server_calls_c32)):
                    for name in rotated(list(servers), run):
                        count = calls
                        if name == "g4f":
                            count = max(50, calls // G4F_SHARE[concurrency])
                        phase: dict[str, Any] = {
                            "calls": count,
                            "concurrency": concurrency,
                            "warmup": 0,
                            "expect_chars": SHORT_ANSWER,
                        }
                        if stream:
                            phase["variant"] = "stream"
                        result = _cpu_phase(ctx, servers[name], phase)
                        if result is not None:
                            by_concurrency[concurrency].add(name, run, result)
                            ctx.log(
                                f"    {name:9} c{concurrency} "
                                f"{result['cpu_s'] / count * 1e6:.0f} µs server CPU/request, "
                                f"{result['ok'] / result['wall_s']:.0f} requests/s"
                            )
    kind = "streamed answers (SSE from the site)" if stream else "whole answers"
    table = Table(
        f"Server CPU per request — {kind}, {settings.describe()}",
        [
            "server",
            "conc",
            "CPU/request µs",
            "×floor",
            "×g4f",
            "requests/s",
            "×floor",
            "p50 ms",
            "errors",
        ],
        note=(
            f"{p.server_calls_c1} requests at concurrency 1 and {p.server_calls_c32} at 32 per "
            f"server and run (g4f: a {G4F_SHARE[1]}th and a {G4F_SHARE[32]}th of that, at least "
            f"50), {p.server_runs} interleaved runs; each server warmed up once with "
            f"{WARMUP_CALLS} unmeasured requests. CPU is the server process's (user + system, "
            "from /proc) over the timed requests; median [min–max] over runs, ratios per run. "
            f"chatgptt counts usage with {_usage_env()[1]}; the floor does not count it."
        ),
    )
    for concurrency, runs in by_concurrency.items():
        for name in names:
            if name not in runs.by_client:
                table.rows.append([name, str(concurrency), "failed", *["—"] * 6])
                continue

            def ratio(other: str, key: str, name: str = name, runs: Runs = runs) -> str:
                if other not in runs.by_client:
                    return "—"
                return fmt_ratio(runs.ratio(name, other, key))

            table.rows.append(
                [
                    name,
                    str(concurrency),
                    fmt(runs.figure(name, "cpu_per_call_s"), 1e6),
                    ratio("floor", "cpu_per_call_s"),
                    ratio("g4f", "cpu_per_call_s"),
                    fmt(runs.figure(name, "calls_per_s")),
                    ratio("floor", "calls_per_s"),
                    fmt(runs.figure(name, "p50_s"), 1e3, 2),
                    str(runs.total_errors(name)),
                ]
            )
    section.tables.append(table)
    label = "streamed" if stream else "whole"
    section.data[f"throughput_{label}"] = {
        str(c): r.as_dict(("cpu_per_call_s", "calls_per_s", "p50_s"))
        for c, r in by_concurrency.items()
    }
    for concurrency, runs in by_concurrency.items():
        vs_floor = runs.ratio("chatgptt", "floor", "cpu_per_call_s")
        section.targets.append(
            Target(
                f"Server CPU per request vs floor ({label}, concurrency {concurrency})",
                "chatgptt ≤ 1.15 × floor",
                fmt_ratio(vs_floor, 3),
                verdict(vs_floor, lambda x: x <= 1.15),
            )
        )
        if not stream:
            vs_g4f = runs.ratio("chatgptt", "g4f", "cpu_per_call_s")
            section.targets.append(
                Target(
                    f"Server CPU per request vs gpt4free's server (concurrency {concurrency})",
                    "chatgptt ≤ 0.25 × g4f",
                    fmt_ratio(vs_g4f, 3)
                    if vs_g4f
                    else "unavailable: " + (ctx.peer_missing or "g4f failed"),
                    verdict(vs_g4f, lambda x: x <= 0.25),
                )
            )
    return by_concurrency


def _first_chunk(ctx: Context, section: Section, names: list[str]) -> None:
    p = ctx.preset
    answer = TTFC_TOKENS * 8
    stream_settings = EmulatorSettings(
        mode="sse", token_delay=TTFC_DELAY, token_chars=8, answer_chars=answer
    )
    whole = TTFC_TOKENS * TTFC_DELAY
    json_settings = EmulatorSettings(
        mode="json", answer_chars=answer, faults=(f"stall={whole:g},times=every",)
    )
    runs = Runs()
    with ctx.emulator(stream_settings) as sse, ctx.emulator(json_settings) as js:
        sites = {name: (js.url if name == "g4f" else sse.url) for name in names}
        with _running(ctx, sites, stream=True) as servers:
            for run in range(p.ttft_runs):
                for name in rotated(list(servers), run):
                    phase = {
                        "calls": p.server_ttft_calls,
                        "concurrency": 5,
                        "warmup": 2,
                        "variant": "stream",
                        "expect_chars": answer,
                    }
                    result = _load(ctx, _spec(servers[name], phase))
                    if result is not None:
                        runs.add(name, run, result)
    table = Table(
        f"Time to the first chunk of a streamed answer — {TTFC_TOKENS} tokens, "
        f"{TTFC_DELAY * 1000:g} ms apart",
        ["server", "from the site", "first chunk ms", "− floor ms", "whole answer ms", "errors"],
        note=(
            f"{p.server_ttft_calls} streamed requests per server and run (5 at a time), 2 warm-up "
            f"requests excluded, {p.ttft_runs} runs; median per run, then median [min–max]. "
            f"g4f's provider reads JSON only: its site answers after {whole:g} s, when the whole "
            "answer is done, as the real site does in JSON mode."
        ),
    )
    differences: dict[str, Figure | None] = {}
    for name in names:
        if name not in runs.by_client:
            table.rows.append([name, "—", "failed", "—", "—", "—"])
            continue
        mine, floor = runs.by_client[name], runs.by_client.get("floor", {})
        common = sorted(set(mine) & set(floor))
        differences[name] = Figure.of(
            [mine[r]["first_chunk_s"] - floor[r]["first_chunk_s"] for r in common]
        )
        table.rows.append(
            [
                name,
                "JSON after the whole answer" if name == "g4f" else "SSE stream",
                fmt(runs.figure(name, "first_chunk_s"), 1e3, 1),
                fmt(differences[name], 1e3, 2),
                fmt(runs.figure(name, "p50_s"), 1e3, 0),
                str(runs.total_errors(name)),
            ]
        )
    section.tables.append(table)
    section.data["first_chunk"] = runs.as_dict(("first_chunk_s", "p50_s"))
    gap = differences.get("chatgptt")
    section.targets.append(
        Target(
            "Server time to first chunk vs floor",
            "chatgptt within 2 ms of the floor",
            fmt(gap, 1e3, 2, "ms") + " after the floor" if gap else "failed",
            verdict(gap, lambda x: x <= 0.002),
        )
    )


def _many_streams(ctx: Context, section: Section, names: list[str]) -> None:
    p = ctx.preset
    if _usage_env()[1] == "tiktoken":  # and as it runs without tiktoken's encodings
        names = [*names[:2], "chatgptt-estimate", *names[2:]]
    answer = STREAM_TOKENS * 8
    duration = STREAM_TOKENS * STREAM_DELAY
    stream_settings = EmulatorSettings(
        mode="sse", token_delay=STREAM_DELAY, token_chars=8, answer_chars=answer
    )
    json_settings = EmulatorSettings(
        mode="json", answer_chars=answer, faults=(f"stall={duration:g},times=every",)
    )
    runs = Runs()
    with ctx.emulator(stream_settings) as sse, ctx.emulator(json_settings) as js:
        sites = {name: (js.url if name == "g4f" else sse.url) for name in names}
        with _running(ctx, sites, stream=True) as servers:
            for run in range(p.server_streams_runs):
                ctx.log(f"  {STREAMS} streams at once, run {run + 1}/{p.server_streams_runs}")
                for name in rotated(list(servers), run):
                    server = servers[name]
                    rss_before = server.rss_kb()
                    reset = server.reset_peak_rss()
                    phase = {
                        "calls": STREAMS,
                        "concurrency": STREAMS,
                        "warmup": 0,
                        "variant": "stream",
                        "expect_chars": answer,
                    }
                    result = _load(ctx, _spec(server, phase, pool=STREAMS), timeout=600)
                    if result is None:
                        continue
                    result["rss_before_kb"] = rss_before
                    result["rss_peak_kb"] = server.peak_rss_kb() if reset else None
                    runs.add(name, run, result)
                    ctx.log(
                        f"    {name:9} peak RSS {(result['rss_peak_kb'] or 0) / 1024:.0f} MB, "
                        f"{result['max_open_streams']} flowing at once, {result['errors']} errors"
                    )
    usage = _usage_env()[1]
    table = Table(
        f"{STREAMS} streamed answers at once — {STREAM_TOKENS} pieces {STREAM_DELAY * 1000:g} ms "
        "apart",
        ["server", "peak RSS MB", "RSS before MB", "flowing at once", "wall s", "errors"],
        note=(
            f"{STREAMS} clients ask at once; each answer takes {duration:g} s at the site (g4f: "
            "a JSON reply after that time). Peak = the server process's VmHWM, reset before the "
            "requests. 'Flowing at once': the most answers that had started (first piece "
            "received) and not ended at the same moment, as the clients saw them (g4f: one "
            f"piece per answer). chatgptt counts usage with {usage} (its encodings take about "
            "105 MB; chatgptt-estimate is the same server counting with the estimate); "
            f"{p.server_streams_runs} runs."
        ),
    )
    for name in names:
        if name not in runs.by_client:
            table.rows.append([name, "failed", "—", "—", "—", "—"])
            continue
        wall = Figure.of(
            [STREAMS / m["calls_per_s"] for m in runs.by_client[name].values() if m["calls_per_s"]]
        )
        table.rows.append(
            [
                name,
                fmt(runs.figure(name, "rss_peak_mb"), 1, 1),
                fmt(runs.figure(name, "rss_before_mb"), 1, 1),
                fmt(runs.figure(name, "max_open_streams")),
                fmt(wall, 1, 1),
                str(runs.total_errors(name)),
            ]
        )
    section.tables.append(table)
    section.data["many_streams"] = runs.as_dict(
        ("rss_peak_mb", "rss_before_mb", "max_open_streams")
    )
    ours = runs.by_client.get("chatgptt", {})
    if ours:
        peak = max(m["rss_peak_mb"] for m in ours.values())
        flowing = min(m["max_open_streams"] for m in ours.values())
        errors = runs.total_errors("chatgptt")
        value = (
            f"{flowing:.0f} of {STREAMS} flowing at once (fewest), "
            f"peak {peak:.1f} MB (worst), {errors} errors"
        )
        met: bool | None = flowing == STREAMS and peak < 200 and errors == 0
    else:
        value, met = "failed", None
    section.targets.append(
        Target(
            f"Server with {STREAMS} streams at once",
            "all flowing, peak RSS < 200 MB, no error",
            value,
            met,
        )
    )


def _with_serve_only(names: list[str]) -> list[str]:
    at = names.index("chatgptt") + 1
    return [*names[:at], "serve-only", *names[at:]]


def _split(section: Section, by_concurrency: dict[int, Runs]) -> None:
    """Where chatgptt's whole answers cost more than the floor's: the server's own work
    (serve-only against the floor) and the library's call (chatgptt against serve-only)."""
    parts = []
    for concurrency, runs in by_concurrency.items():
        own = runs.ratio("serve-only", "floor", "cpu_per_call_s")
        library = runs.ratio("chatgptt", "serve-only", "cpu_per_call_s")
        if own is None or library is None:
            continue
        parts.append(
            f"at concurrency {concurrency} the server's own work (serve-only) costs "
            f"{fmt_ratio(own)} the floor's CPU per request, and the library's call takes "
            f"chatgptt to {fmt_ratio(library)} serve-only's"
        )
    if parts:
        section.notes.append(
            "Whole answers, split: " + "; ".join(parts) + ". serve-only is chatgptt serve's "
            "application asking the site with the floor's own hand-written code instead of the "
            "library (no timeouts, retries, validation of the site's reply or error mapping)."
        )


def section_server(ctx: Context) -> Section:
    """The three servers: CPU and rate, first chunk, 1,000 streams."""
    section = Section("server")
    with_g4f = list(SERVERS) if isinstance(ctx.peer, Venv) else ["floor", "chatgptt"]
    if "g4f" not in with_g4f:
        section.notes.append(f"gpt4free's server not measured: {ctx.peer_missing}")
    whole = EmulatorSettings(mode="json", answer_chars=SHORT_ANSWER)
    by_concurrency = _throughput(ctx, section, whole, _with_serve_only(with_g4f), stream=False)
    _split(section, by_concurrency)
    if ctx.preset.sse_calls:
        streamed = EmulatorSettings(mode="sse", answer_chars=SHORT_ANSWER, token_chars=8)
        _throughput(ctx, section, streamed, ["floor", "chatgptt"], stream=True)
    _first_chunk(ctx, section, with_g4f)
    _many_streams(ctx, section, with_g4f)
    section.data["usage_tokenizer"] = _usage_env()[1]
    return section
