"""Dialects: the generations of the plugin's chat protocol, as sets of stages.

The plugin has spoken two protocols — classic (``wpaicg_*``, up to release 2.2) and
AIPKit (``aipkit_*``, 2.3 on) — and a site speaks one. A :class:`Dialect` is that
protocol's stages (token extraction, payload, transport, decode) plus what the shared
layers and the facade must know of it: how to recognise its page, which of its stages
make the site's tokens (what the token cache keeps), how to get a fresh nonce without the
page, which failure says a site no longer speaks it, and which stage gives the answer.
:class:`Dialects` is the ordered set a provider speaks; the landing page, fetched by the
shared bootstrap, picks one. A third dialect is a third entry, not an edit of the layers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Any

import attrs

from .core import Call, Page, Pipeline, Stage, Tokens
from .errors import (
    BotProtectionError,
    ChatNotFoundError,
    ConfigurationError,
    UnknownActionError,
)
from .protection import challenge_marker

__all__ = ["AUTO", "Dialect", "Dialects", "NonceRefresh"]

#: The dialect setting that lets the landing page decide.
AUTO = "auto"

#: Fetches a fresh nonce for ``tokens``' chat without the landing page, returning the
#: tokens with it; used when the site rejected the cached one.
NonceRefresh = Callable[[Call, Tokens], Awaitable[Tokens]]


def _unknown_action(exc: BaseException) -> bool:
    return isinstance(exc, UnknownActionError)


def _no_options(_options: Mapping[str, Any]) -> None:
    return None


def _check_name(_inst: object, _attr: object, name: str) -> None:
    if not isinstance(name, str) or not name.isidentifier() or name == AUTO:
        raise ConfigurationError(
            f"a dialect's name must be an identifier other than {AUTO!r}, got {name!r}"
        )


@attrs.frozen(kw_only=True)
class Dialect:
    """One protocol of the plugin: its stages and what the shared machinery needs to know.

    Attributes:
        name: how callers and the cache name it (``classic``, ``aipkit``).
        pipeline: its stages, run after the shared bootstrap (which fetched the page).
        recognises: whether a landing page carries this dialect's chat.
        tokens_stage: the stage that completes the site's tokens: the stages up to and
            including it run once per site and their result is cached.
        answer_stage: the stage that leaves the answer in ``exchange.text``.
        refresh_nonce: gets a fresh nonce without the page when the site rejects the
            cached one (``None``: the page is fetched again).
        retired: whether a failure says the site no longer speaks this dialect (it
            upgraded or downgraded the plugin); the site's cached tokens are then
            dropped and the page decides again.
        token_options: the call options that change which tokens its page yields (AIPKit:
            ``bot_id``, on a page with several bots); they are part of the cache key.
        check_options: checks the call options this dialect reads, raising a
            ``ConfigurationError`` that names a bad one (before anything is sent).
        description: one line for people (``chatgptt probe``, errors).
    """

    name: str = attrs.field(validator=_check_name)
    pipeline: Pipeline
    recognises: Callable[[Page], bool] = attrs.field(eq=False)
    tokens_stage: str = "tokens"
    answer_stage: str = "decode"
    refresh_nonce: NonceRefresh | None = attrs.field(default=None, eq=False)
    retired: Callable[[BaseException], bool] = attrs.field(default=_unknown_action, eq=False)
    token_options: tuple[str, ...] = ()
    check_options: Callable[[Mapping[str, Any]], None] = attrs.field(default=_no_options, eq=False)
    description: str = ""

    def __attrs_post_init__(self) -> None:
        for role, stage_name in (("tokens", self.tokens_stage), ("answer", self.answer_stage)):
            if stage_name not in self.pipeline:
                raise ConfigurationError(
                    f"the {self.name} dialect's pipeline has no stage {stage_name!r} "
                    f"(its {role} stage); stages: {', '.join(self.pipeline.names)}"
                )

    def split(self) -> tuple[tuple[Stage, ...], tuple[Stage, ...]]:
        """Its stages in two: those that make the site's tokens (cached), and the rest."""
        end = self.pipeline.names.index(self.tokens_stage) + 1
        return self.pipeline.stages[:end], self.pipeline.stages[end:]

    def with_pipeline(self, pipeline: Pipeline) -> Dialect:
        """The same dialect running ``pipeline``."""
        return attrs.evolve(self, pipeline=pipeline)


def _as_entries(entries: Iterable[Dialect]) -> tuple[Dialect, ...]:
    return tuple(entries)


def _check_entries(_inst: object, _attr: object, entries: tuple[Dialect, ...]) -> None:
    if not entries:
        raise ConfigurationError("a provider needs at least one dialect")
    seen: set[str] = set()
    for entry in entries:
        if not isinstance(entry, Dialect):
            raise ConfigurationError(f"not a Dialect: {entry!r}")
        if entry.name in seen:
            raise ConfigurationError(f"two dialects are named {entry.name!r}")
        seen.add(entry.name)


@attrs.frozen
class Dialects:
    """The dialects a provider speaks, in the order a page is tested against them."""

    entries: tuple[Dialect, ...] = attrs.field(converter=_as_entries, validator=_check_entries)

    @property
    def names(self) -> tuple[str, ...]:
        """The dialects' names, in detection order."""
        return tuple(entry.name for entry in self.entries)

    def __iter__(self) -> Iterator[Dialect]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def __getitem__(self, name: str) -> Dialect:
        for entry in self.entries:
            if entry.name == name:
                return entry
        raise ConfigurationError(
            f"no dialect named {name!r}; dialects: {', '.join(self.names)} (or {AUTO!r})"
        )

    def get(self, name: str | None) -> Dialect | None:
        """The dialect called ``name``, or ``None``."""
        return next((entry for entry in self.entries if entry.name == name), None)

    def check_choice(self, name: object) -> str:
        """``name`` if it is ``auto`` or one of the dialects; else a clear error."""
        if name == AUTO or (isinstance(name, str) and name in self.names):
            return name
        raise ConfigurationError(
            f"dialect must be {AUTO!r} or one of {', '.join(self.names)}; got {name!r}"
        )

    def replace(self, dialect: Dialect) -> Dialects:
        """These dialects with the one of the same name replaced by ``dialect``."""
        self[dialect.name]
        return Dialects(dialect if entry.name == dialect.name else entry for entry in self)

    def with_pipeline(self, name: str, pipeline: Pipeline) -> Dialects:
        """These dialects with dialect ``name`` running ``pipeline``."""
        return self.replace(self[name].with_pipeline(pipeline))

    def add(self, dialect: Dialect, *, first: bool = False) -> Dialects:
        """These dialects plus ``dialect``, tested last (or ``first``) against pages."""
        entries = (dialect, *self.entries) if first else (*self.entries, dialect)
        return Dialects(entries)

    def cache_key(self, page_url: str, choice: str, options: Mapping[str, Any]) -> str:
        """The token cache's key for a call: the page, the dialect the caller chose (if
        any: an entry of the page's own choice stays apart), and the values of the
        options any dialect declares as shaping its tokens."""
        parts = [page_url]
        if choice != AUTO:
            parts.append(f"dialect={choice}")
        for name in sorted({name for entry in self.entries for name in entry.token_options}):
            value = options.get(name)
            if value is not None:
                parts.append(f"{name}={value}")
        return "\n".join(parts)

    def check_options(self, options: Mapping[str, Any]) -> None:
        """Every dialect checks the call options it reads (errors name the option)."""
        for entry in self.entries:
            entry.check_options(options)

    def detect(self, page: Page) -> Dialect:
        """The first dialect whose chat the page carries.

        Raises:
            BotProtectionError: the page is a bot-protection challenge.
            ChatNotFoundError: no dialect recognises the page; names the URL.
        """
        for entry in self.entries:
            if entry.recognises(page):
                return entry
        marker = challenge_marker(page.html)
        if marker is not None:
            raise BotProtectionError(page.url, page.status, marker)
        raise ChatNotFoundError(page.url, self.names)
