"""Micro-benchmark: our SSE decoder against the OpenAI SDK's and httpx-sse's, on the same bytes.

It builds a large recorded-style stream of OpenAI ``chat.completion.chunk`` frames (with
non-ASCII text), cuts it into chunks (fixed and random sizes, the same chunks for every
decoder), checks that all decoders produce the same (type, data, id, retry) events, then
times each one as a streaming consumer uses it (every event looked at once, then
dropped), in round-robin runs. It prints each decoder's throughput (median, with min-max)
and the ratio of ours, without and with ``max_line_bytes``, to the faster reference.

The references are benchmark-only dependencies (httpx-sse needs httpx but does not
declare it); from the project root::

    python3 -m venv benchmarks/.venv-bench
    benchmarks/.venv-bench/bin/pip install openai httpx-sse httpx -e .
    benchmarks/.venv-bench/bin/python -m benchmarks.sse_decode [--size-mb 32] [--runs 7]
        [--crlf] [--named]

:func:`run` returns the same numbers as a dict, for a harness.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from stages.sse import SSEDecoder

__all__ = ["CHUNKINGS", "DECODERS", "build_stream", "cut_stream", "run"]

# A normalised event, so that the three libraries' records compare equal.
Event = tuple[str, str, str, int | None]
Decoder = Callable[[Iterable[bytes]], Iterator[Any]]

# Chunk sizes: fixed reads as an HTTP client makes them, random sizes as proxies re-cut a
# stream, and small random sizes as a live stream trickles in.
CHUNKINGS: dict[str, tuple[int, int]] = {
    "fixed 1 KiB": (1024, 1024),
    "fixed 4 KiB": (4096, 4096),
    "fixed 16 KiB": (16384, 16384),
    "random 1 B-16 KiB": (1, 16384),
    "random 1-512 B": (1, 512),
}

_WORDS = (
    "the", " answer", " is", " streaming", ",", " token", " by", " token", ".", "\n\n",
    " café", " naïve", " résumé", " 日本語", " 中文", " привет", " Ελληνικά", " עברית",
    " 😀", " 👍🏽", " 🚀", ' "quoted"', " back\\slash", " <b>tag</b>", " &amp;", " 42",
)  # fmt: skip


def _frame(completion_id: str, created: int, delta: dict[str, str], finish: str | None) -> str:
    """One OpenAI ``chat.completion.chunk`` frame, compact JSON with raw UTF-8 as OpenAI sends."""
    chunk = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": "gpt-4o-mini-2024-07-18",
        "service_tier": "default",
        "system_fingerprint": "fp_0ba0d124f1",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    return "data: " + json.dumps(chunk, ensure_ascii=False, separators=(",", ":")) + "\n\n"


def build_stream(
    size_mb: float, *, line_end: str = "\n", named: bool = False, seed: int = 1
) -> bytes:
    """Streamed answers (role frame, content frames, stop, ``[DONE]``) of ``size_mb`` or more.

    ``named`` puts ``event: message`` and an ``id:`` line before each frame's ``data:``
    line (as the plugin's AIPKit dialect and upstream-error frames do), which takes our
    decoder off its fast path for ``data:``-only events.
    """
    rng = random.Random(seed)
    target = int(size_mb * 1_000_000)
    parts: list[str] = []
    size = 0
    answer = 0
    while size < target:
        answer += 1
        completion_id = f"chatcmpl-{answer:08d}{rng.getrandbits(64):016x}"
        created = 1_732_600_000 + answer
        frames = [_frame(completion_id, created, {"role": "assistant", "content": ""}, None)]
        for _ in range(rng.randint(20, 300)):
            content = "".join(rng.choices(_WORDS, k=rng.randint(1, 3)))
            frames.append(_frame(completion_id, created, {"content": content}, None))
        frames.append(_frame(completion_id, created, {}, "stop"))
        frames.append("data: [DONE]\n\n")
        text = "".join(frames)
        parts.append(text)
        size += len(text.encode())
    stream = "".join(parts)
    if named:
        frames = stream.split("\n\n")[:-1]
        stream = "".join(f"event: message\nid: {n}\n{frame}\n\n" for n, frame in enumerate(frames))
    if line_end != "\n":
        stream = stream.replace("\n", line_end)
    return stream.encode()


def cut_stream(stream: bytes, smallest: int, largest: int, *, seed: int = 2) -> list[bytes]:
    """Cut ``stream`` into chunks of ``smallest``..``largest`` bytes (fixed when equal)."""
    rng = random.Random(seed)
    chunks = []
    position = 0
    while position < len(stream):
        size = smallest if smallest == largest else rng.randint(smallest, largest)
        chunks.append(stream[position : position + size])
        position += size
    return chunks


def iter_ours(chunks: Iterable[bytes], max_line_bytes: int | None = None) -> Iterator[Any]:
    """Our decoder, fed chunk by chunk; each ``feed`` returns the events it completed."""
    decoder = SSEDecoder(max_line_bytes=max_line_bytes)
    feed = decoder.feed
    for chunk in chunks:
        yield from feed(chunk)
    yield from decoder.close()


def iter_ours_limited(chunks: Iterable[bytes]) -> Iterator[Any]:
    """Our decoder with a line limit, as the library runs it (``Limits.max_event_bytes``)."""
    return iter_ours(chunks, max_line_bytes=4 << 20)


def iter_openai(chunks: Iterable[bytes]) -> Iterator[Any]:
    """The OpenAI SDK's decoder, through ``iter_bytes`` as its ``Stream`` drives it."""
    from openai._streaming import SSEDecoder as OpenAIDecoder

    return OpenAIDecoder().iter_bytes(iter(chunks))


def iter_httpx_sse(chunks: Iterable[bytes]) -> Iterator[Any]:
    """httpx-sse's decoder, fed as ``EventSource.iter_sse`` feeds it, with fewer generators.

    httpx's ``Response.iter_text`` decodes each chunk with its incremental ``TextDecoder``
    (and skips empty texts), ``SSELineDecoder`` splits the text into lines, and each line
    goes through ``rstrip("\\n")`` into ``SSEDecoder.decode``. The library stacks three
    generators for this (``iter_text``, ``_iter_sse_lines``, ``iter_sse``); one here
    only makes httpx-sse faster.
    """
    from httpx._decoders import TextDecoder
    from httpx_sse._decoders import SSEDecoder as HttpxSSEDecoder
    from httpx_sse._decoders import SSELineDecoder

    text_decoder = TextDecoder()
    line_decoder = SSELineDecoder()
    decode = HttpxSSEDecoder().decode
    for chunk in chunks:
        text = text_decoder.decode(chunk)
        if text:
            for line in line_decoder.decode(text):
                sse = decode(line.rstrip("\n"))
                if sse is not None:
                    yield sse
    text = text_decoder.flush()
    lines = [*line_decoder.decode(text), *line_decoder.flush()] if text else line_decoder.flush()
    for line in lines:
        sse = decode(line.rstrip("\n"))
        if sse is not None:
            yield sse


DECODERS: dict[str, Decoder] = {
    "ours": iter_ours,
    "ours+limit": iter_ours_limited,
    "openai": iter_openai,
    "httpx-sse": iter_httpx_sse,
}
OURS = ("ours", "ours+limit")
REFERENCES = ("openai", "httpx-sse")


def normalise(events: Iterable[Any]) -> list[Event]:
    """(type, data, id, retry) of each event, whichever library made it."""
    return [(e.event or "message", e.data, e.id or "", e.retry) for e in events]


def _time(decoder: Decoder, chunks: Sequence[bytes]) -> float:
    """Seconds to decode ``chunks``, handling each event as a streaming consumer does.

    The consumer looks at each event once and drops it, as a client of a live stream
    does; keeping them all would time the memory allocator more than the decoders.
    """
    gc.collect()
    start = time.perf_counter()
    for _event in decoder(chunks):
        pass
    return time.perf_counter() - start


def run(
    size_mb: float = 32,
    runs: int = 7,
    *,
    chunkings: dict[str, tuple[int, int]] | None = None,
    line_ends: Sequence[str] = ("\n",),
    named: bool = False,
    echo: Callable[[str], object] | None = None,
) -> dict[str, Any]:
    """Benchmark the three decoders; return the throughputs per line end and chunking.

    Args:
        size_mb: the stream's size in megabytes (10**6 bytes).
        runs: timed runs per decoder and chunking; the median is reported.
        chunkings: name -> (smallest, largest) chunk size; :data:`CHUNKINGS` by default.
        line_ends: build one stream per line end (``"\\n"``, ``"\\r\\n"``, ``"\\r"``).
        named: give every event an ``event:`` and an ``id:`` line (see :func:`build_stream`).
        echo: called with a line of text per result, for progress.

    Returns:
        ``{"size_bytes", "events", "runs", "results": [{"line_end", "chunking",
        "chunks", "mb_per_s": {decoder: {"median", "min", "max"}}, "ratio": {ours:
        ratio}}]}`` where a ratio is the median throughput of ours (without and with
        ``max_line_bytes``) over the faster reference's.

    Raises:
        AssertionError: the decoders disagree on the events.
    """
    chunkings = CHUNKINGS if chunkings is None else chunkings
    results: list[dict[str, Any]] = []
    report: dict[str, Any] = {"runs": runs, "results": results}
    for line_end in line_ends:
        stream = build_stream(size_mb, line_end=line_end, named=named)
        report["size_bytes"] = len(stream)
        megabytes = len(stream) / 1e6
        for name, (smallest, largest) in chunkings.items():
            chunks = cut_stream(stream, smallest, largest)
            expected = normalise(iter_ours(chunks))
            report["events"] = len(expected)
            for other, decoder in DECODERS.items():
                if normalise(decoder(chunks)) != expected:
                    raise AssertionError(f"{other} disagrees with ours on {name!r}")
            # Round-robin runs, each in a different order, so that a noisy machine slows
            # every decoder alike.
            rates: dict[str, list[float]] = {decoder_name: [] for decoder_name in DECODERS}
            order = list(DECODERS)
            for _ in range(runs):
                for decoder_name in order:
                    seconds = _time(DECODERS[decoder_name], chunks)
                    rates[decoder_name].append(megabytes / seconds)
                order = order[1:] + order[:1]
            speeds = {
                decoder_name: {
                    "median": statistics.median(values),
                    "min": min(values),
                    "max": max(values),
                }
                for decoder_name, values in rates.items()
            }
            faster = max(speeds[reference]["median"] for reference in REFERENCES)
            result = {
                "line_end": line_end,
                "chunking": name,
                "chunks": len(chunks),
                "mb_per_s": speeds,
                "ratio": {ours: speeds[ours]["median"] / faster for ours in OURS},
            }
            results.append(result)
            if echo is not None:
                echo(_format(result))
    return report


def _format(result: dict[str, Any]) -> str:
    speeds = "  ".join(
        f"{name} {s['median']:7.1f} MB/s ({s['min']:.0f}-{s['max']:.0f})"
        for name, s in result["mb_per_s"].items()
    )
    ratios = "  ".join(f"{ours}/faster {ratio:.2f}x" for ours, ratio in result["ratio"].items())
    return (
        f"{result['line_end']!r:6} {result['chunking']:18} {result['chunks']:6} chunks  "
        f"{speeds}  {ratios}"
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: print one line per line end and chunking."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--size-mb", type=float, default=32, help="stream size (default 32)")
    parser.add_argument("--runs", type=int, default=7, help="timed runs each (default 7)")
    parser.add_argument("--crlf", action="store_true", help="also run a CRLF stream")
    parser.add_argument("--named", action="store_true", help="events with event: and id: lines")
    args = parser.parse_args(argv)
    line_ends = ("\n", "\r\n") if args.crlf else ("\n",)
    report = run(args.size_mb, args.runs, line_ends=line_ends, named=args.named, echo=print)
    print(f"{report['size_bytes'] / 1e6:.1f} MB, {report['events']} events, {args.runs} runs")


if __name__ == "__main__":
    main()
