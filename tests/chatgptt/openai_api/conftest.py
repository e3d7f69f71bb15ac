"""The OpenAI-compatible API started in the test's loop, in front of an emulator."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web

from chatgptt.openai_api import (
    ESTIMATE,
    STATE_KEY,
    ServeOptions,
    ServerState,
    UsageCounter,
    make_app,
    make_runner,
)

#: Tests end their streams; a stray one must not hold the test's teardown for long.
TEST_OPTIONS = ServeOptions(grace=1.0)


@dataclass
class Api:
    """A running API: ``base`` (``http://127.0.0.1:PORT/v1``), ``host``, ``port``, its
    ``state`` and ``runner``."""

    base: str
    host: str
    port: int
    state: ServerState
    runner: web.AppRunner

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.port}"


StartApi = Callable[..., Awaitable[Api]]


@pytest.fixture
async def start_api() -> AsyncIterator[StartApi]:
    """``await start_api(provider, options=..., counter=...)``: an API listening on a free
    loopback port, stopped at teardown."""
    runners: list[web.AppRunner] = []

    async def start(
        provider: type[Any],
        options: ServeOptions = TEST_OPTIONS,
        counter: UsageCounter = ESTIMATE,
    ) -> Api:
        app = make_app(provider, options, counter=counter)
        runner = make_runner(app)
        await runner.setup()
        runners.append(runner)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port = int(runner.addresses[0][1])
        return Api(f"http://127.0.0.1:{port}/v1", "127.0.0.1", port, app[STATE_KEY], runner)

    yield start
    for runner in runners:
        if runner.server is not None:  # not stopped by the test itself
            await runner.cleanup()
