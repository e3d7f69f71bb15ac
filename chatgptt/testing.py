"""Pytest fixtures for testing against the site emulator; a pytest plugin (``pytest11``).

- ``emulator``: a started :class:`~chatgptt.emulator.ThreadedEmulator` (no token delay),
  stopped after the test.
- ``emulator_factory``: makes more of them, with any config and faults; all are stopped
  after the test. ``emulator_factory(dialect="aipkit")`` serves the AIPKit site.
- ``aipkit_emulator``: a started AIPKit-dialect emulator (no token delay) whose clock is a
  :class:`~chatgptt.emulator.ManualClock` (``aipkit_emulator.config.clock.advance(61)``
  expires the cache keys without sleeping).
- :func:`provider_for`: a ``ChatGptt`` subclass pointed at an emulator.

The emulators run in their own thread and loop, so the fixtures are plain (sync) fixtures
that work with pytest-asyncio, anyio or no async plugin at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import attrs
import pytest

from chatgptt.emulator import EmulatorConfig, Fault, ManualClock, ThreadedEmulator, start_in_thread

__all__ = ["EmulatorFactory", "aipkit_emulator", "emulator", "emulator_factory", "provider_for"]


def provider_for(emulator: Any, name: str = "Emulated", **attributes: Any) -> type[Any]:
    """A ``ChatGptt`` subclass talking to ``emulator`` (anything with a ``url``).

    It has a nonce cache of its own: emulators reuse freed ports, and a cache shared
    across tests would serve one emulator's tokens to the next. ``attributes``
    change other class attributes, e.g. ``history="flatten"``.
    """
    from chatgptt import ChatGptt  # imported late: loading the plugin stays cheap
    from stages.cache import TokenCache

    attributes.setdefault("token_cache", TokenCache())
    return ChatGptt.derive(name, url=emulator.url, **attributes)


class EmulatorFactory:
    """Starts emulators on free loopback ports and remembers them for :meth:`stop_all`."""

    def __init__(self) -> None:
        self._started: list[ThreadedEmulator] = []

    def __call__(
        self,
        config: EmulatorConfig | None = None,
        *,
        faults: Iterable[Fault] = (),
        **overrides: Any,
    ) -> ThreadedEmulator:
        """A started emulator with ``config`` (default: no token delay) changed by ``overrides``.

        ``overrides`` are :class:`EmulatorConfig` fields, e.g. ``mode="json"``.
        """
        base = config if config is not None else EmulatorConfig(token_delay=0.0)
        started = start_in_thread(attrs.evolve(base, **overrides), faults)
        self._started.append(started)
        return started

    def stop_all(self) -> None:
        """Stop every emulator this factory started."""
        while self._started:
            self._started.pop().stop()


@pytest.fixture
def emulator_factory() -> Iterator[EmulatorFactory]:
    """A factory of started emulators, all stopped at teardown."""
    factory = EmulatorFactory()
    try:
        yield factory
    finally:
        factory.stop_all()


@pytest.fixture
def emulator(emulator_factory: EmulatorFactory) -> ThreadedEmulator:
    """A started site emulator (SSE mode, no token delay) on a free loopback port."""
    return emulator_factory()


@pytest.fixture
def aipkit_emulator(emulator_factory: EmulatorFactory) -> ThreadedEmulator:
    """A started AIPKit-dialect site emulator (inline page, no token delay, manual clock)."""
    return emulator_factory(dialect="aipkit", clock=ManualClock())
