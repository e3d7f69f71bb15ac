"""Layers: cross-cutting behaviour that wraps any stage (``Layer = Stage -> Stage``).

- :func:`traced` logs ``stage.started`` / ``stage.completed`` / ``stage.failed``
  with ``duration_ms`` through structlog — only when the application configured
  structlog; the library never configures it and prints nothing on its own.
- :func:`retrying` sends a failed request again per the call's ``RetryPolicy``,
  with tenacity.
- :func:`refreshing_tokens` renews the site's tokens once per call when the site
  rejects the nonce (the way the dialect declares) or stops speaking the dialect.
- :func:`token_cached` serves the page and tokens from the provider's cache.
- :func:`timeout` and :func:`bounded` bound a stage in time.

:func:`assemble` is the one place where their order is written down; what it needs
to know of a dialect, the dialect declares (:class:`~stages.dialects.Dialect`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import attrs
import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.stop import stop_base
from tenacity.wait import wait_exponential, wait_random

from .config import RetryPolicy
from .core import Call, Exchange, Pipeline, Stage, Tokens, require
from .dialects import AUTO, Dialects
from .errors import (
    ChatGpttError,
    ConfigurationError,
    HTTPStatusError,
    IncompleteReplyError,
    NonceRejectedError,
    ProviderTimeoutError,
    RateLimitError,
    TokensNotFoundError,
)

__all__ = [
    "ByDialect",
    "ChooseDialect",
    "Layer",
    "assemble",
    "assemble_site",
    "bounded",
    "log",
    "refreshing_tokens",
    "retrying",
    "timeout",
    "token_cached",
    "traced",
    "tracing_enabled",
]

Layer = Callable[[Stage], Stage]

#: The library's logger. Bind per-call context with ``structlog.contextvars``.
log = structlog.get_logger("chatgptt")


def tracing_enabled() -> bool:
    """Whether log events are emitted: only once the application configured structlog.

    Unconfigured structlog prints to stdout; a library must not, so until the
    application (or the CLI's ``--trace``) configures it, nothing is logged and
    the tracing layer costs one function call.
    """
    return structlog.is_configured()


def _millis(start: float) -> float:
    return round((time.perf_counter() - start) * 1000.0, 3)


def _describe(exc: BaseException) -> dict[str, Any]:
    return {"error": type(exc).__name__, "message": str(exc)}


@attrs.frozen
class Wrapped:
    """What every layer's stage has: the stage it wraps, whose name it keeps (so a
    pipeline still finds the stage by name once layers are around it)."""

    inner: Stage

    @property
    def name(self) -> str:
        return self.inner.name


@attrs.frozen
class Traced(Wrapped):
    """A stage whose runs are logged; it keeps the wrapped stage's name."""

    async def __call__(self, exchange: Exchange, /) -> Exchange:
        if not structlog.is_configured():
            return await self.inner(exchange)
        stage_log = log.bind(stage=self.inner.name)
        start = time.perf_counter()
        stage_log.debug("stage.started")
        try:
            result = await self.inner(exchange)
        except asyncio.CancelledError:
            stage_log.debug("stage.cancelled", duration_ms=_millis(start))
            raise
        except BaseException as exc:
            stage_log.warning("stage.failed", duration_ms=_millis(start), **_describe(exc))
            raise
        stage_log.debug("stage.completed", duration_ms=_millis(start))
        return result


def traced(stage: Stage) -> Stage:
    """Log each run of ``stage`` (started, completed or failed, with its duration)."""
    return Traced(stage)


class _PreferRetryAfter:
    """Wait what the server asked (``Retry-After``) when it did, else back off
    exponentially with jitter (tenacity's waits), capped at ``max_delay``."""

    def __init__(self, policy: RetryPolicy) -> None:
        self._policy = policy
        self._backoff = wait_exponential(multiplier=policy.initial_delay, max=policy.max_delay)
        self._jitter = wait_random(0, policy.jitter)

    def __call__(self, state: RetryCallState) -> float:
        policy = self._policy
        outcome = state.outcome
        exc = outcome.exception() if outcome is not None else None
        retry_after = getattr(exc, "retry_after", None)
        if isinstance(retry_after, int | float) and retry_after <= policy.max_retry_after:
            return float(retry_after)
        return min(float(self._backoff(state) + self._jitter(state)), policy.max_delay)


class _StopAtDeadlines(stop_base):
    """Stop before a retry that would start after the policy's deadline (counted from
    the first attempt) or end after the call's own deadline."""

    def __init__(self, policy: RetryPolicy, started: float, call_deadline: float | None) -> None:
        self._clock = policy.clock
        self._deadline = None if policy.deadline is None else started + policy.deadline
        self._call_deadline = call_deadline

    def __call__(self, state: RetryCallState) -> bool:
        upcoming = state.upcoming_sleep or 0.0
        if self._deadline is not None and self._clock() + upcoming >= self._deadline:
            return True
        if self._call_deadline is not None:
            return asyncio.get_running_loop().time() + upcoming >= self._call_deadline
        return False


def _log_retry(exchange: Exchange, stage_name: str) -> Callable[[RetryCallState], None]:
    def before_sleep(state: RetryCallState) -> None:
        if not structlog.is_configured():
            return
        outcome = state.outcome
        exc = outcome.exception() if outcome is not None else None
        log.warning(
            "retry.scheduled",
            stage=stage_name,
            attempt=state.attempt_number,
            delay_s=round(state.upcoming_sleep or 0.0, 3),
            **(_describe(exc) if exc is not None else {}),
        )

    return before_sleep


@attrs.frozen
class Retrying(Wrapped):
    """A stage that is run again, per the call's ``RetryPolicy``, when it fails retryably.

    The first attempt runs directly; tenacity takes over only after a failure (its
    per-call setup would otherwise cost ~25 µs — 5 % of a loopback call — on every
    call that never needs it). Cancellation is never retried.
    """

    async def __call__(self, exchange: Exchange, /) -> Exchange:
        policy = exchange.call.settings.retry
        started = policy.clock()
        try:
            return await self.inner(exchange)
        except Exception as exc:
            if policy.attempts < 2 or not policy.should_retry(exc):
                limited = _as_rate_limit(exc, policy)
                if limited is None:
                    raise
                raise limited from exc
            first_failure: Exception = exc
        try:
            return await self._retry(exchange, policy, started, first_failure)
        except HTTPStatusError as exc:
            limited = _as_rate_limit(exc, policy)
            if limited is None:
                raise
            raise limited from exc

    async def _retry(
        self, exchange: Exchange, policy: RetryPolicy, started: float, first_failure: Exception
    ) -> Exchange:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(policy.attempts)
            | _StopAtDeadlines(policy, started, exchange.call.deadline),
            wait=_PreferRetryAfter(policy),
            retry=retry_if_exception(policy.should_retry),
            sleep=policy.sleep,
            before_sleep=_log_retry(exchange, self.inner.name),
            reraise=True,
        )
        attempt_number = 0
        async for attempt in retrying:
            with attempt:
                attempt_number += 1
                if attempt_number == 1:
                    # Tenacity decides about the failure already seen as its attempt 1.
                    raise first_failure
                return await self.inner(exchange)
        raise AssertionError("unreachable: tenacity re-raises the last failure")  # pragma: no cover


def _as_rate_limit(exc: Exception, policy: RetryPolicy) -> RateLimitError | None:
    """A ``Retry-After`` longer than the policy will wait makes any status a rate limit
    (the caller must wait that long): the ``RateLimitError`` to raise instead, if so."""
    if (
        isinstance(exc, HTTPStatusError)
        and not isinstance(exc, RateLimitError)
        and exc.retry_after is not None
        and exc.retry_after > policy.max_retry_after
    ):
        return RateLimitError(exc.url, exc.excerpt, retry_after=exc.retry_after, status=exc.status)
    return None


def retrying(stage: Stage) -> Stage:
    """Retry ``stage`` per the call's ``RetryPolicy`` (read at call time, so per-call
    overrides apply)."""
    return Retrying(stage)


def _cache_key(call: Call, dialects: Dialects) -> str:
    settings = call.settings
    return dialects.cache_key(settings.site.page_url, settings.dialect, call.options)


def _route(call: Call) -> tuple[Any, ...]:
    """What a shared page fetch or nonce refresh goes through: only calls that would
    make the same request share one (never another call's proxy or cookies)."""
    extra = (
        tuple(sorted(call.headers.items())) if call.headers else (),
        tuple(sorted(call.cookies.items())) if call.cookies else (),
    )
    return (call.proxy, id(call.session), call.settings.dialect, extra)


@attrs.frozen
class RefreshingTokens(Wrapped):
    """Renew the site's tokens once per call when the site says they went stale.

    - The nonce was rejected (``NonceRejectedError``): the dialect's
      ``refresh_nonce`` gets a fresh one without the page, shared by the calls that
      saw the same nonce rejected; a dialect without one (or a failed refresh) drops
      the cached entry, so the page is fetched again.
    - The site no longer speaks the dialect (the dialect's ``retired`` says so, e.g.
      ``400 0`` after a plugin upgrade) while the dialect is chosen by the page: the
      entry is dropped and the page decides again.

    Then the wrapped stage runs once more. A second rejection in the same call is
    final: ``NonceRejectedError`` with ``attempts == 2``.
    """

    dialects: Dialects = attrs.field(repr=False)

    async def __call__(self, exchange: Exchange, /) -> Exchange:
        call = exchange.call
        try:
            return await self.inner(exchange)
        except NonceRejectedError as first:
            await self._renew_nonce(call, first)
        except ChatGpttError as first:
            if not self._retired(call, first):
                raise
            if structlog.is_configured():
                log.info("dialect.retired", url=call.settings.site.page_url, **_describe(first))
        try:
            return await self.inner(exchange)
        except NonceRejectedError as second:
            raise NonceRejectedError(
                second.url, second.detail, attempts=2, nonce=second.nonce
            ) from second

    def _retired(self, call: Call, exc: ChatGpttError) -> bool:
        cache = call.token_cache
        if call.settings.dialect != AUTO or cache is None:
            return False  # a dialect the caller chose is not second-guessed
        key = _cache_key(call, self.dialects)
        entry = cache.peek(key)
        dialect = self.dialects.get(entry[1].dialect) if entry is not None else None
        if dialect is None or not dialect.retired(exc):
            return False
        cache.invalidate(key)
        return True

    async def _renew_nonce(self, call: Call, rejection: NonceRejectedError) -> None:
        cache = call.token_cache
        if structlog.is_configured():
            log.info("nonce.rejected", url=rejection.url, detail=rejection.detail)
        if cache is None or rejection.nonce is None:
            return  # nothing cached: the next run fetches the page anyway
        key = _cache_key(call, self.dialects)
        entry = cache.peek(key)
        dialect = self.dialects.get(entry[1].dialect) if entry is not None else None
        refresh = dialect.refresh_nonce if dialect is not None else None
        if refresh is None:
            cache.invalidate(key, nonce=rejection.nonce)
            return

        async def fetch(tokens: Tokens) -> Tokens:
            return await refresh(call, tokens)

        try:
            await cache.refresh(key, rejection.nonce, fetch, route=_route(call))
        except ChatGpttError as exc:
            if structlog.is_configured():
                log.info("nonce.refresh_failed", **_describe(exc))
            cache.invalidate(key, nonce=rejection.nonce)  # fall back to the page


def refreshing_tokens(stage: Stage, dialects: Dialects) -> Stage:
    """Renew the site's tokens once per call when the site rejects them (see
    :class:`RefreshingTokens`)."""
    return RefreshingTokens(stage, dialects)


@attrs.frozen
class TokenCached(Wrapped):
    """Serve ``page``, ``dialect`` and ``tokens`` from the call's ``TokenCache``, running
    the wrapped stage (bootstrap, the dialect's choice and its token stages) only to
    fill it — once for all concurrent calls.

    The key is the page, the dialect the caller chose (an entry of the page's own
    choice stays apart) and the options that shape a dialect's tokens (the AIPKit bot):
    :meth:`Dialects.cache_key`.
    """

    dialects: Dialects = attrs.field(repr=False)

    async def __call__(self, exchange: Exchange, /) -> Exchange:
        call = exchange.call
        cache = call.token_cache
        if cache is None:
            return await self.inner(exchange)
        settings = call.settings
        key = _cache_key(call, self.dialects)
        cached = cache.get(key, settings.token_ttl)
        if cached is None or not _fits(cached[1], settings.dialect):

            async def fetch() -> tuple[Any, Any]:
                filled = await self.inner(exchange)
                if filled.tokens is None:
                    raise ChatGpttError(
                        f"stage {self.inner.name!r} produced no tokens to cache; "
                        "it must set exchange.tokens"
                    )
                return filled.page, filled.tokens

            scope = asyncio.timeout_at(call.deadline)  # another call's fetch may outlast ours
            try:
                async with scope:
                    cached = await cache.get_or_fetch(
                        key, settings.token_ttl, fetch, route=_route(call)
                    )
            except TimeoutError:
                if scope.expired():
                    seconds = settings.timeouts.total or 0.0
                    raise ProviderTimeoutError("total", seconds, url=settings.site.url) from None
                raise
        page, tokens = cached
        return attrs.evolve(exchange, page=page, dialect=tokens.dialect, tokens=tokens)


def _fits(tokens: Tokens, choice: str) -> bool:
    return choice in (AUTO, tokens.dialect)


def token_cached(stage: Stage, dialects: Dialects) -> Stage:
    """Cache the page and tokens ``stage`` produces, per site (and per the options the
    ``dialects`` say shape their tokens)."""
    return TokenCached(stage, dialects)


@attrs.frozen
class ChooseDialect:
    """Decide which dialect the call speaks: the caller's choice, else the page's.

    It runs after the bootstrap on a cache miss only; a cached entry carries the
    dialect with the tokens.
    """

    dialects: Dialects = attrs.field(repr=False)
    name: str = "dialect"
    honours_deadline: ClassVar[bool] = True

    async def __call__(self, exchange: Exchange, /) -> Exchange:
        choice = exchange.call.settings.dialect
        if choice != AUTO:
            return attrs.evolve(exchange, dialect=self.dialects[choice].name)
        page = require(exchange.page, self.name, "page")
        dialect = self.dialects.detect(page)
        if structlog.is_configured():
            log.debug("dialect.detected", dialect=dialect.name, url=page.url)
        return attrs.evolve(exchange, dialect=dialect.name)


@attrs.frozen
class ByDialect:
    """Run the pipeline of the exchange's dialect (one per dialect, assembled)."""

    name: str
    pipelines: Mapping[str, Stage] = attrs.field(repr=False)
    honours_deadline: ClassVar[bool] = True

    async def __call__(self, exchange: Exchange, /) -> Exchange:
        dialect = exchange.dialect
        pipeline = self.pipelines.get(dialect) if dialect is not None else None
        if pipeline is None:
            raise ConfigurationError(
                f"stage {self.name!r} needs the exchange's dialect, one of "
                f"{', '.join(self.pipelines)}; got {dialect!r}"
            )
        return await pipeline(exchange)


@attrs.frozen
class TimedOut(Wrapped):
    """A stage bounded by ``seconds``; exceeding it raises ``ProviderTimeoutError``."""

    seconds: float
    limit: str = "stage"

    async def __call__(self, exchange: Exchange, /) -> Exchange:
        scope = asyncio.timeout(self.seconds)
        try:
            async with scope:
                return await self.inner(exchange)
        except TimeoutError:
            if scope.expired():
                raise ProviderTimeoutError(self.limit, self.seconds) from None
            raise


@attrs.frozen
class Bounded(Wrapped):
    """A stage run within the call's deadline, for stages that do not bound their own
    waits by it (the standard ones do, wait by wait, and say so with
    ``honours_deadline = True``)."""

    async def __call__(self, exchange: Exchange, /) -> Exchange:
        call = exchange.call
        if call.deadline is None:
            return await self.inner(exchange)
        scope = asyncio.timeout_at(call.deadline)
        try:
            async with scope:
                return await self.inner(exchange)
        except TimeoutError:
            if scope.expired():
                seconds = call.settings.timeouts.total or 0.0
                raise ProviderTimeoutError("total", seconds, url=call.settings.site.url) from None
            raise


def bounded(stage: Stage) -> Stage:
    """Run ``stage`` within the call's deadline — unless it declares
    ``honours_deadline = True`` (it bounds each of its waits itself)."""
    return stage if getattr(stage, "honours_deadline", False) else Bounded(stage)


def timeout(seconds: float, *, limit: str = "stage") -> Layer:
    """A layer bounding a stage to ``seconds`` (``limit`` names it in the error)."""

    def wrap(stage: Stage) -> Stage:
        return TimedOut(stage, seconds, limit)

    return wrap


def assemble(
    bootstrap: Pipeline, dialects: Dialects, *, name: str = "request", trace: bool = True
) -> Stage:
    """Wrap the standard layers around the shared bootstrap and each dialect's stages.

    The order, outermost first::

        traced(refreshing_tokens(retrying(attempt)))
        attempt = [token_cached([*traced(bootstrap), traced(dialect choice),
                                 by dialect: traced(its stages through tokens_stage)]),
                   by dialect: traced(its other stages: payload, transport, decode)]

    - One trace span covers the whole request, all attempts included, and each
      stage of each attempt has its own.
    - Retry wraps the whole attempt, not single stages: a stream can only be
      retried by sending the request again (and an AIPKit cache key works once),
      and retries nested per stage would multiply. The decode stage reads up to the
      first text, so every failure before text reaches the caller happens inside
      the attempt.
    - The token renewal sits outside retry so that it happens once per call.
    - The cache sits inside the attempt: a retry reuses tokens already fetched. It
      covers the bootstrap, the choice of dialect (so the dialect is cached with the
      tokens) and the stages each dialect names as making its tokens.
    - The call's deadline is honoured by every wait of the standard stages (they
      say so with ``honours_deadline``); any other stage is :func:`bounded` by it.
      So the deadline costs no timer of its own on the standard path.

    ``trace=False`` leaves the tracing layers out: the facade runs that assembly
    while structlog is unconfigured, so silent tracing costs nothing at all.
    """
    wrap: Layer = traced if trace else _unchanged
    site = assemble_site(bootstrap, dialects, trace=trace)
    tails = {
        dialect.name: Pipeline(
            [wrap(bounded(step)) for step in dialect.split()[1]], name=dialect.name
        )
        for dialect in dialects
    }
    attempt = Pipeline([token_cached(site, dialects), ByDialect("chat", tails)], name=name)
    return wrap(refreshing_tokens(retrying(attempt), dialects))


def assemble_site(bootstrap: Pipeline, dialects: Dialects, *, trace: bool = True) -> Pipeline:
    """What makes a site's tokens: the bootstrap, the choice of dialect, and the chosen
    dialect's stages through its ``tokens_stage`` — the span :func:`assemble` caches."""
    wrap: Layer = traced if trace else _unchanged
    heads: dict[str, Stage] = {
        dialect.name: Pipeline(
            [wrap(bounded(step)) for step in dialect.split()[0]], name=dialect.name
        )
        for dialect in dialects
    }
    return Pipeline(
        [
            *(wrap(bounded(step)) for step in bootstrap),
            WholePage(Pipeline([wrap(ChooseDialect(dialects)), ByDialect("tokens", heads)])),
        ],
        name="site",
    )


@attrs.frozen
class WholePage(Wrapped):
    """A page that may have been cut (no declared length, no ``</html>``) and lacks the
    chat's tokens is a cut reply — :class:`IncompleteReplyError`, retried — rather than
    a page without a chat."""

    async def __call__(self, exchange: Exchange, /) -> Exchange:
        try:
            return await self.inner(exchange)
        except TokensNotFoundError as exc:
            page = exchange.page
            if page is None or not page.maybe_cut:
                raise
            raise IncompleteReplyError(
                f"the landing page ended without </html> and without the chat's tokens "
                f"({', '.join(exc.missing)})",
                url=page.url,
            ) from exc


def _unchanged(stage: Stage) -> Stage:
    return stage
