"""Layers: tracing, retries (with an injected sleep), nonce refresh, token cache, assembly."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import attrs
import pytest
import structlog
from structlog.testing import capture_logs

from stages.cache import TokenCache
from stages.classic.tokens import ClassicTokens
from stages.config import RetryPolicy
from stages.core import Call, Exchange, FunctionStage, Page, Pipeline, Tokens
from stages.dialects import Dialect, Dialects
from stages.errors import (
    ChatNotFoundError,
    ConfigurationError,
    NonceRejectedError,
    ProviderConnectionError,
    RateLimitError,
    ServerError,
    UnknownActionError,
    UpstreamError,
)
from stages.layers import (
    ByDialect,
    ChooseDialect,
    RefreshingTokens,
    Retrying,
    TokenCached,
    Traced,
    WholePage,
    assemble,
    retrying,
    timeout,
    token_cached,
    traced,
)
from tests.conftest import FakeSleep

URL = "https://chatgptt.me/wp-admin/admin-ajax.php"
TOKENS = ClassicTokens(
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


def plain(name: str) -> FunctionStage:
    async def run(exchange: Exchange) -> Exchange:
        return exchange

    return FunctionStage(name, run)


def dialect(name: str, marker: str, **declared: object) -> Dialect:
    """A dialect of four pass-through stages recognising pages that contain ``marker``."""
    return Dialect(
        name=name,
        pipeline=Pipeline([plain(n) for n in ("tokens", "payload", "transport", "decode")]),
        recognises=lambda page: marker in page.html,
        **declared,  # type: ignore[arg-type]
    )


CLASSIC_LIKE = Dialects([dialect("classic", "wpaicg")])


async def test_nonce_refresh_invalidates_cache_and_tries_once_more(exchange_for) -> None:
    cache = TokenCache()
    exchange = exchange_for(cache=cache)
    key = exchange.call.settings.site.page_url
    cache.put(key, (None, TOKENS))
    stage = Flaky(NonceRejectedError(URL, "expired", nonce=TOKENS.nonce))
    result = await RefreshingTokens(stage, CLASSIC_LIKE)(exchange)
    assert result.notes == {"calls": 2}
    assert cache.get(key, 60) is None, "the rejected nonce was dropped"


async def test_a_second_rejection_is_final(exchange_for) -> None:
    stage = Flaky(
        NonceRejectedError(URL, "expired"),
        NonceRejectedError(URL, "expired"),
        NonceRejectedError(URL, "x"),
    )
    with pytest.raises(NonceRejectedError, match="rejected twice") as info:
        await RefreshingTokens(stage, CLASSIC_LIKE)(exchange_for())
    assert info.value.attempts == 2
    assert stage.calls == 2


async def test_a_dialect_refreshes_its_nonce_once_for_all_concurrent_calls(exchange_for) -> None:
    """A dialect with ``refresh_nonce`` keeps the page: one refresh serves every call that
    saw the same nonce rejected, and the cache then holds the fresh nonce."""
    refreshes = 0
    release = asyncio.Event()

    async def refresh(call: Call, tokens: Tokens) -> Tokens:
        nonlocal refreshes
        refreshes += 1
        await release.wait()
        return attrs.evolve(tokens, nonce="fresh00001")

    dialects = Dialects([dialect("classic", "wpaicg", refresh_nonce=refresh)])
    cache = TokenCache()
    exchange = exchange_for(cache=cache)
    key = exchange.call.settings.site.page_url
    page = Page(url=key, status=200, html="wpaicg")
    cache.put(key, (page, TOKENS))
    stages = [Flaky(NonceRejectedError(URL, "expired", nonce=TOKENS.nonce)) for _ in range(20)]
    calls = [asyncio.ensure_future(RefreshingTokens(s, dialects)(exchange)) for s in stages]
    await asyncio.sleep(0)
    release.set()
    results = await asyncio.gather(*calls)
    assert refreshes == 1
    assert all(result.notes == {"calls": 2} for result in results)
    cached = cache.get(key, 60)
    assert cached is not None
    assert cached == (page, attrs.evolve(TOKENS, nonce="fresh00001")), "the page is kept"


async def test_a_failed_nonce_refresh_falls_back_to_the_page(exchange_for) -> None:
    async def refresh(call: Call, tokens: Tokens) -> Tokens:
        raise UnknownActionError(URL, "aipkit_get_frontend_chat_nonce")

    dialects = Dialects([dialect("classic", "wpaicg", refresh_nonce=refresh)])
    cache = TokenCache()
    exchange = exchange_for(cache=cache)
    key = exchange.call.settings.site.page_url
    cache.put(key, (None, TOKENS))
    stage = Flaky(NonceRejectedError(URL, "expired", nonce=TOKENS.nonce))
    assert (await RefreshingTokens(stage, dialects)(exchange)).notes == {"calls": 2}
    assert cache.get(key, 60) is None


async def test_a_retired_dialect_drops_the_entry_and_runs_once_more(exchange_for) -> None:
    """``400 0`` to the action sent (the site upgraded the plugin): the page decides again."""
    cache = TokenCache()
    exchange = exchange_for(cache=cache)
    key = exchange.call.settings.site.page_url
    cache.put(key, (None, TOKENS))
    stage = Flaky(UnknownActionError(URL, "wpaicg_chat_shortcode_message"))
    with capture_logs() as logs:
        result = await RefreshingTokens(stage, CLASSIC_LIKE)(exchange)
    assert result.notes == {"calls": 2}
    assert cache.get(key, 60) is None
    assert [entry["event"] for entry in logs] == ["dialect.retired"]


async def test_a_dialect_the_caller_chose_is_not_second_guessed(exchange_for) -> None:
    cache = TokenCache()
    exchange = exchange_for(cache=cache, dialect="classic")
    cache.put(exchange.call.settings.site.page_url, (None, TOKENS))
    stage = Flaky(UnknownActionError(URL, "wpaicg_chat_shortcode_message"))
    with pytest.raises(UnknownActionError):
        await RefreshingTokens(stage, CLASSIC_LIKE)(exchange)
    assert stage.calls == 1


async def test_other_failures_pass_through_the_renewal(exchange_for) -> None:
    stage = Flaky(UpstreamError("bad key"))
    with pytest.raises(UpstreamError):
        await RefreshingTokens(stage, CLASSIC_LIKE)(exchange_for(cache=TokenCache()))
    assert stage.calls == 1


TWO = Dialects([dialect("aipkit", "data-config"), dialect("classic", "wpaicg")])


@pytest.mark.parametrize(
    ("html", "choice", "expected"),
    [
        ("<div data-config='{}'>", "auto", "aipkit"),
        ("<div class='wpaicg-chat-shortcode'>", "auto", "classic"),
        ("<div data-config='{}'> wpaicg", "auto", "aipkit"),  # tested in order
        ("<div data-config='{}'>", "classic", "classic"),  # the caller's choice wins
    ],
)
async def test_choose_dialect_takes_the_callers_choice_else_the_page(
    exchange_for, html: str, choice: str, expected: str
) -> None:
    exchange = attrs.evolve(
        exchange_for(dialect=choice), page=Page(url="https://x.test/", status=200, html=html)
    )
    assert (await ChooseDialect(TWO)(exchange)).dialect == expected


async def test_a_page_no_dialect_recognises_is_no_chat(exchange_for) -> None:
    exchange = attrs.evolve(
        exchange_for(), page=Page(url="https://x.test/blog", status=200, html="<p>hello</p>")
    )
    with pytest.raises(ChatNotFoundError, match=r"https://x\.test/blog") as info:
        await ChooseDialect(TWO)(exchange)
    assert info.value.dialects == ("aipkit", "classic")


async def test_by_dialect_runs_the_exchanges_dialect_only(exchange_for) -> None:
    ran: list[str] = []

    def note(name: str) -> FunctionStage:
        async def run(exchange: Exchange) -> Exchange:
            ran.append(name)
            return exchange

        return FunctionStage(name, run)

    stage = ByDialect("chat", {"aipkit": note("a"), "classic": note("c")})
    await stage(attrs.evolve(exchange_for(), dialect="classic"))
    assert ran == ["c"]
    with pytest.raises(ConfigurationError, match="needs the exchange's dialect"):
        await stage(exchange_for())


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

    stage = token_cached(FunctionStage("tokens", fetch), CLASSIC_LIKE)
    exchange = exchange_for(cache=TokenCache())
    results = await asyncio.gather(*(stage(exchange) for _ in range(50)))
    assert fills == 1
    assert all(result.tokens == TOKENS and result.page is not None for result in results)
    assert (await stage(exchange)).tokens == TOKENS
    assert fills == 1


async def test_token_cached_without_a_cache_just_runs(exchange_for) -> None:
    stage = TokenCached(Flaky(), CLASSIC_LIKE)
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
    if isinstance(stage, ByDialect):
        return {name: names_of(inner) for name, inner in stage.pipelines.items()}
    if isinstance(stage, Traced | Retrying | RefreshingTokens | TokenCached | WholePage):
        return (type(stage).__name__, names_of(stage.inner))
    return stage.name  # type: ignore[attr-defined]


def test_assemble_writes_the_layer_order_once() -> None:
    bootstrap = Pipeline([plain("bootstrap")])
    assembled = assemble(bootstrap, TWO)
    each = [
        ("Traced", "payload"),
        ("Traced", "transport"),
        ("Traced", "decode"),
    ]
    assert names_of(assembled) == (
        "Traced",
        (
            "RefreshingTokens",
            (
                "Retrying",
                [
                    (
                        "TokenCached",
                        [
                            ("Traced", "bootstrap"),
                            (
                                "WholePage",
                                [
                                    ("Traced", "dialect"),
                                    {
                                        "aipkit": [("Traced", "tokens")],
                                        "classic": [("Traced", "tokens")],
                                    },
                                ],
                            ),
                        ],
                    ),
                    {"aipkit": each, "classic": each},
                ],
            ),
        ),
    )
    assert assembled.name == "request"


def test_each_dialect_declares_what_the_token_cache_covers() -> None:
    """The cached span ends at the dialect's own ``tokens_stage``, whatever its name."""
    steps = Pipeline([plain(n) for n in ("scan", "keys", "sign", "post", "read")])
    custom = Dialect(
        name="third",
        pipeline=steps,
        recognises=lambda page: True,
        tokens_stage="keys",
        answer_stage="read",
    )
    assembled = names_of(assemble(Pipeline([plain("bootstrap")]), Dialects([custom]), trace=False))
    cached, chat = assembled[1][1][0], assembled[1][1][1]  # type: ignore[index]
    assert cached == (
        "TokenCached",
        ["bootstrap", ("WholePage", ["dialect", {"third": ["scan", "keys"]}])],
    )
    assert chat == {"third": ["sign", "post", "read"]}


def test_a_dialect_must_hold_its_declared_stages() -> None:
    with pytest.raises(ConfigurationError, match="no stage 'tokens'"):
        Dialect(name="x", pipeline=Pipeline([plain("decode")]), recognises=lambda page: True)
