"""The benchmark sections, in the order they run; each is one comparison in its own file
under :mod:`benchmarks.sections` (the shared machinery is :mod:`benchmarks.harness`).

A section is ``(Context) -> Section``: it starts its emulators (and servers), runs the workers
interleaved, and returns its tables, targets and data. To add a comparison, write
``benchmarks/sections/NAME.py`` and list it here.
"""

from __future__ import annotations

from collections.abc import Callable

from benchmarks.harness import PRESETS, Context, Preset, Section, Table, Target
from benchmarks.sections import (
    aipkit,
    calls,
    decode,
    first_token,
    memory,
    scaling,
    server,
    silence,
    tracing,
)

__all__ = ["PRESETS", "SECTIONS", "Context", "Preset", "Section", "Table", "Target"]

#: The sections in the order they run (silence last: it checks the other runs' output).
SECTIONS: dict[str, Callable[[Context], Section]] = {
    # chatgptt as a client of the site (classic dialect), against the floor and the peer.
    "calls": calls.section_calls,
    "tracing": tracing.section_tracing,
    "first_token": first_token.section_first_token,
    "decode": decode.section_decode,
    "memory": memory.section_memory,
    "scaling": scaling.section_scaling,
    # The AIPKit path (the plugin's v2.3+ protocol) against its own floor.
    "aipkit": aipkit.section_aipkit,
    # `chatgptt serve` against a hand-written relay and gpt4free's own API server.
    "server": server.section_server,
    "silence": silence.section_silence,
}
