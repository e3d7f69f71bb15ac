"""The peer: the original provider, ``g4f.Provider.ChatGptt`` from PyPI's ``g4f==0.4.5.4``.

Installed by the harness into ``benchmarks/.venv-peer`` (never a dependency of the project)
and imported from there, not copied. It is pointed at the emulator the gpt4free way, by a
subclass overriding ``url`` and ``api_endpoint``. Its reader takes JSON only (``response.json()``),
so the harness gives it a JSON-mode emulator. This module must not import the project: the
result lists the project modules loaded, which must be none.

Run as a worker: ``benchmarks/.venv-peer/bin/python -m benchmarks.client_peer SPEC RESULT``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from importlib.metadata import version
from typing import Any

from benchmarks.driver import CallFn, Client, Messages, main


async def setup(spec: dict[str, Any]) -> Client:
    """The original provider, subclassed to talk to the emulator."""
    from g4f.Provider import ChatGptt as Original  # the peer venv's g4f

    def caller(site: str) -> CallFn:
        base = site.rstrip("/")

        class Peer(Original):  # type: ignore[misc,valid-type]
            url = base
            api_endpoint = base + "/wp-admin/admin-ajax.php"

        def call(messages: Messages) -> AsyncIterator[str]:
            return Peer.create_async_generator("gpt-4o", messages)  # type: ignore[no-any-return]

        return call

    calls = {"default": caller(spec["url"])}
    if spec.get("warmup_url"):
        calls["warmup"] = caller(spec["warmup_url"])
    return Client(
        calls=calls,
        info={
            "g4f": version("g4f"),
            "aiohttp": version("aiohttp"),
            "pool": "a new ClientSession (and connection) per call",
        },
    )


if __name__ == "__main__":
    main(setup)
