"""Layers: tracing, retries (with an injected sleep), nonce refresh, token cache, assembly."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import attrs
import pytest
import structlog
from structlog.testing import capture_logs

from stages.cache import TokenCache
from stages.config import RetryPolicy
from stages.core import Exchange, FunctionStage, Page, Pipeline, Tokens
from stages.errors import (
    NonceRejectedError,
    ProviderConnectionError,
    RateLimitError,
    ServerError,
    UpstreamError,
)
from stages.layers import (
    RefreshingNonce,
    Retrying,
    TokenCached,
    Traced,
    assemble,
    retrying,
    timeout,
    token_cached,
    traced,
)
from tests.conftest import FakeSleep

URL = "https://chatgptt.me/wp-admin/admin-ajax.php"
TOKENS = Tokens(
    nonce="5e2498d71a",
    post_id="22",
    ajax_url=URL,
    page_url="https://chatgptt.me/",
    site_url="https://chatgptt.me",
)


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


class Flaky:
    """A stage that raises the given errors in turn, then succeeds."""

    name = "flaky"

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self, exchange: Exchange) -> Exchange:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return attrs.evolve(exchange, notes={"calls": self.calls})


def policy(sleep: FakeSleep, **changes: object) -> RetryPolicy:
    return RetryPolicy(sleep=sleep, jitter=0, **changes)  # type: ignore[arg-type]


async def test_traced_logs_start_completion_and_duration(exchange_for) -> None:
    with capture_logs() as logs:
        await traced(Flaky())(exchange_for())
    assert [entry["event"] for entry in logs] == ["stage.started", "stage.completed"]
    assert all(entry["stage"] == "flaky" for entry in logs)
    assert logs[1]["duration_ms"] >= 0


async def test_traced_logs_failure_with_error_type(exchange_for) -> None:
    with capture_logs() as logs, pytest.raises(UpstreamError):
        await traced(Flaky(UpstreamError("bad key")))(exchange_for())
    failed = logs[-1]
    assert failed["event"] == "stage.failed"
    assert failed["error"] == "UpstreamError"
    assert "bad key" in failed["message"]


async def test_traced_is_silent_and_transparent_when_structlog_is_unconfigured(
    exchange_for, capsys
) -> None:
    structlog.reset_defaults()
    assert not structlog.is_configured()
    result = await traced(Flaky())(exchange_for())
    assert result.notes == {"calls": 1}
    assert capsys.readouterr() == ("", "")


async def test_retry_recovers_from_transient_failures(exchange_for, fake_sleep) -> None:
    stage = Flaky(ProviderConnectionError("reset"), ServerError(503, URL))
    result = await retrying(stage)(
        exchange_for(retry=policy(fake_sleep, attempts=3, initial_delay=0.5))
    )
    assert result.notes == {"calls": 3}
    assert fake_sleep.delays == [0.5, 1.0], "exponential backoff from initial_delay"


async def test_retry_gives_up_after_attempts_with_the_last_error(exchange_for, fake_sleep) -> None:
    stage = Flaky(*(ServerError(500 + n, URL) for n in range(5)))
    with pytest.raises(ServerError) as info:
        await retrying(stage)(exchange_for(retry=policy(fake_sleep, attempts=3)))
    assert stage.calls == 3
    assert info.value.status == 502


async def test_backoff_is_capped(exchange_for, fake_sleep) -> None:
    stage = Flaky(*(ProviderConnectionError("x") for _ in range(5)))
    await retrying(stage)(
        exchange_for(retry=policy(fake_sleep, attempts=6, initial_delay=1, max_delay=3))
    )
    assert fake_sleep.delays == [1, 2, 3, 3, 3]


async def test_jitter_stays_within_bounds(exchange_for, fake_sleep) -> None:
    stage = Flaky(*(ProviderConnectionError("x") for _ in range(3)))
    retry = RetryPolicy(sleep=fake_sleep, attempts=4, initial_delay=1, jitter=0.5, max_delay=100)
    await retrying(stage)(exchange_for(retry=retry))
    for delay, base in zip(fake_sleep.delays, (1, 2, 4), strict=True):
        assert base <= delay <= base + 0.5


async def test_non_retryable_failures_are_raised_at_once(exchange_for, fake_sleep) -> None:
    stage = Flaky(UpstreamError("bad key"))
    with pytest.raises(UpstreamError):
        await retrying(stage)(exchange_for(retry=policy(fake_sleep)))
    assert stage.calls == 1
    assert fake_sleep.delays == []


async def test_retry_after_is_honoured_up_to_the_cap(exchange_for, fake_sleep) -> None:
    stage = Flaky(RateLimitError(URL, retry_after=7))
    await retrying(stage)(exchange_for(retry=policy(fake_sleep, max_retry_after=10)))
    assert fake_sleep.delays == [7.0]


async def test_retry_after_beyond_the_cap_fails_at_once(exchange_for, fake_sleep) -> None:
    stage = Flaky(RateLimitError(URL, retry_after=120))
    with pytest.raises(RateLimitError) as info:
        await retrying(stage)(exchange_for(retry=policy(fake_sleep, max_retry_after=10)))
    assert info.value.retry_after == 120
    assert stage.calls == 1
    assert fake_sleep.delays == []


async def test_no_retry_starts_past_the_deadline(exchange_for, fake_sleep) -> None:
    stage = Flaky(ProviderConnectionError("a"), ProviderConnectionError("b"))
    with pytest.raises(ProviderConnectionError, match="a"):
        await retrying(stage)(exchange_for(retry=policy(fake_sleep, initial_delay=5, deadline=2)))
    assert stage.calls == 1


async def test_cancellation_is_never_retried(exchange_for, fake_sleep) -> None:
    stage = Flaky(asyncio.CancelledError())
    with pytest.raises(asyncio.CancelledError):
        await retrying(stage)(exchange_for(retry=policy(fake_sleep)))
    assert stage.calls == 1


async def test_retries_are_logged(exchange_for, fake_sleep) -> None:
    stage = Flaky(ServerError(503, URL))
    with capture_logs() as logs:
        await retrying(stage)(exchange_for(retry=policy(fake_sleep, initial_delay=0.25)))
    scheduled = [entry for entry in logs if entry["event"] == "retry.scheduled"]
    assert len(scheduled) == 1
    assert scheduled[0]["attempt"] == 1
    assert scheduled[0]["delay_s"] == 0.25
    assert scheduled[0]["error"] == "ServerError"


async def test_nonce_refresh_invalidates_cache_and_tries_once_more(exchange_for) -> None:
    cache = TokenCache()
    exchange = exchange_for(cache=cache)
    key = exchange.call.settings.site.page_url
    cache.put(key, (None, TOKENS))
    stage = Flaky(NonceRejectedError(URL, "expired", nonce=TOKENS.nonce))
    result = await RefreshingNonce(stage)(exchange)
    assert result.notes == {"calls": 2}
    assert cache.get(key, 60) is None, "the rejected nonce was dropped"


async def test_a_second_rejection_is_final(exchange_for) -> None:
    stage = Flaky(
        NonceRejectedError(URL, "expired"),
        NonceRejectedError(URL, "expired"),
        NonceRejectedError(URL, "x"),
    )
    with pytest.raises(NonceRejectedError, match="rejected twice") as info:
        await RefreshingNonce(stage)(exchange_for())
    assert info.value.attempts == 2
    assert stage.calls == 2


async def test_token_cached_fills_once_then_serves_from_cache(exchange_for) -> None:
    fills = 0

    async def fetch(exchange: Exchange) -> Exchange:
        nonlocal fills
        fills += 1
        return attrs.evolve(
            exchange,
            page=Page(url="https://chatgptt.me/", status=200, html="<html>"),
            tokens=TOKENS,
        )

    stage = token_cached(FunctionStage("tokens", fetch))
    exchange = exchange_for(cache=TokenCache())
    results = await asyncio.gather(*(stage(exchange) for _ in range(50)))
    assert fills == 1
    assert all(result.tokens == TOKENS and result.page is not None for result in results)
    assert (await stage(exchange)).tokens == TOKENS
    assert fills == 1


async def test_token_cached_without_a_cache_just_runs(exchange_for) -> None:
    stage = TokenCached(Flaky())
    assert (await stage(exchange_for())).notes == {"calls": 1}


async def test_timeout_layer_names_its_limit(exchange_for) -> None:
    blocker = asyncio.Event()

    async def hang(exchange: Exchange) -> Exchange:
        await blocker.wait()
        return exchange

    with pytest.raises(TimeoutError) as info:
        await timeout(0.01, limit="slow-stage")(FunctionStage("hang", hang))(exchange_for())
    assert info.value.limit == "slow-stage"  # type: ignore[attr-defined]


def names_of(stage: object) -> object:
    """The assembled structure as nested names and layer types, for comparison."""
    if isinstance(stage, Pipeline):
        return [names_of(inner) for inner in stage.stages]
    if isinstance(stage, Traced | Retrying | RefreshingNonce | TokenCached):
        return (type(stage).__name__, names_of(stage.inner))
    return stage.name  # type: ignore[attr-defined]


def test_assemble_writes_the_layer_order_once() -> None:
    def plain(name: str) -> FunctionStage:
        async def run(exchange: Exchange) -> Exchange:
            return exchange

        return FunctionStage(name, run)

    pipeline = Pipeline(
        [plain(n) for n in ("bootstrap", "tokens", "payload", "transport", "decode")]
    )
    assert names_of(assemble(pipeline)) == (
        "Traced",
        (
            "RefreshingNonce",
            (
                "Retrying",
                [
                    ("TokenCached", [("Traced", "bootstrap"), ("Traced", "tokens")]),
                    ("Traced", "payload"),
                    ("Traced", "transport"),
                    ("Traced", "decode"),
                ],
            ),
        ),
    )
    custom = pipeline.insert_after("payload", plain("sign")).remove("bootstrap")
    assembled = names_of(assemble(custom))
    assert ("TokenCached", [("Traced", "tokens")]) in assembled[1][1][1]  # type: ignore[index]
    assert ("Traced", "sign") in assembled[1][1][1]  # type: ignore[index]
    assert assemble(pipeline).name == "request"
