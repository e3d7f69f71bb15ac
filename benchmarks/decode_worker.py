"""Worker for the SSE decoding figure: runs :func:`benchmarks.sse_decode.run` and saves its report.

It runs under ``benchmarks/.venv-bench`` (the project plus the ``openai`` SDK and
``httpx-sse``, whose decoders are the references), because those are benchmark-only
dependencies. ``python -m benchmarks.decode_worker SPEC.json RESULT.json`` where the spec is
``{"size_mb": 8, "runs": 5, "chunkings": ["fixed 4 KiB", ...] or null}``.
"""

from __future__ import annotations

import json
import os
import sys
from importlib.metadata import version

from benchmarks import sse_decode


def main() -> None:
    """Read the spec, run the decoder benchmark, write its report as JSON."""
    spec_path, result_path = sys.argv[1:3]
    with open(spec_path, encoding="utf-8") as source:
        spec = json.load(source)
    chunkings = None
    if spec.get("chunkings"):
        chunkings = {name: sse_decode.CHUNKINGS[name] for name in spec["chunkings"]}
    report = sse_decode.run(float(spec["size_mb"]), int(spec["runs"]), chunkings=chunkings)
    report["versions"] = {name: version(name) for name in ("openai", "httpx-sse", "httpx")}
    tmp = result_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as out:
        json.dump(report, out)
    os.replace(tmp, result_path)


if __name__ == "__main__":
    main()
