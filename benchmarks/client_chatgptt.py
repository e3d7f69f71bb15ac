"""chatgptt as users run it: ``ChatGptt.derive(url=<emulator>)`` with every default.

Variants (for the tracing figure; the same process alternates them):

- ``default``: what users run. With structlog unconfigured the provider runs its pipeline
  assembled without trace layers (it checks once per call whether anyone listens).
- ``traced``: the trace layers kept in place although no one listens — every stage wrapped
  by ``stages.layers.traced``, each checking per run whether structlog is configured.
- ``untraced``: the same stages and layers minus every trace layer
  (``assemble(..., trace=False)``). ``traced`` against it is what unlistened tracing costs.

Run as a worker: ``python -m benchmarks.client_chatgptt SPEC.json RESULT.json``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import structlog

from benchmarks.driver import Client, Messages, main
from chatgptt import ChatGptt, SessionOptions, Stage
from stages.layers import assemble


def untraced(provider: type[ChatGptt]) -> type[ChatGptt]:
    """``provider`` running its assembly without trace layers."""
    runner = assemble(provider.bootstrap, provider.dialects, trace=False)

    class Untraced(provider):  # type: ignore[valid-type,misc]
        @classmethod
        def assembled(cls, **_options: Any) -> Stage:
            # Whatever the facade asks for (e.g. ``trace=...``), the untraced assembly.
            return runner

    return Untraced


def traced(provider: type[ChatGptt]) -> type[ChatGptt]:
    """``provider`` always running the assembly with trace layers, listened to or not."""

    class Traced(provider):  # type: ignore[valid-type,misc]
        @classmethod
        def assembled(cls, **_options: Any) -> Stage:
            return provider.assembled(trace=True)

    return Traced


async def setup(spec: dict[str, Any]) -> Client:
    """The default provider (and its untraced twin) pointed at the emulator."""
    if structlog.is_configured():
        raise RuntimeError("structlog is configured in the worker; tracing would be listened to")
    if spec.get("pool"):
        ChatGptt.sessions.configure(SessionOptions(max_connections=int(spec["pool"])))
    provider = ChatGptt.derive("Bench", url=spec["url"].rstrip("/"))
    variants = {"default": provider, "traced": traced(provider), "untraced": untraced(provider)}
    if spec.get("warmup_url"):
        # Another site to warm up on: the measured site's page is then fetched by the
        # first measured call, as in a program that has just started.
        variants["warmup"] = ChatGptt.derive("Warmup", url=spec["warmup_url"].rstrip("/"))
    if spec.get("broken_url"):
        # A site whose page is missing: the call fails (for the silence check).
        variants["broken"] = ChatGptt.derive("Broken", url=spec["broken_url"].rstrip("/"))

    def caller(cls: type[ChatGptt]) -> Any:
        def call(messages: Messages) -> AsyncIterator[str]:
            return cls.create_async_generator("gpt-4o", messages)

        return call

    return Client(
        calls={name: caller(cls) for name, cls in variants.items()},
        close=provider.aclose,
        info={
            "aiohttp": aiohttp.__version__,
            "structlog_configured": structlog.is_configured(),
            "pool": f"shared session, {SessionOptions().max_connections} connections",
            "stages": list(provider.pipeline_of("classic").names),
        },
    )


if __name__ == "__main__":
    main(setup)
