"""Settings records validate at construction and say which setting is wrong."""

from __future__ import annotations

import pytest

from stages.config import Limits, RetryPolicy, Settings, Site, Timeouts, is_retryable
from stages.errors import (
    BotProtectionError,
    CloudflareOriginError,
    ConfigurationError,
    HTTPStatusError,
    NonceRejectedError,
    ProviderConnectionError,
    ProviderTimeoutError,
    RateLimitError,
    ServerError,
    UpstreamError,
)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Timeouts(connect=0), "connect must be a positive number"),
        (lambda: Timeouts(idle=-1), "idle must be a positive number"),
        (lambda: Timeouts(total="5"), "total must be a positive number"),
        (lambda: Limits(max_body_bytes=0), "max_body_bytes must be a positive integer"),
        (lambda: Limits(max_stream_bytes=-5), "max_stream_bytes must be a positive integer"),
        (lambda: RetryPolicy(attempts=0), "attempts must be a positive integer"),
        (lambda: RetryPolicy(jitter=-1), "jitter must be a non-negative number"),
        (lambda: Site.at("ftp://example.com"), "url must be an http"),
        (lambda: Site.at("not a url"), "url must be an http"),
        (lambda: Settings(site=Site.at("https://x.org"), history="all"), "history must be one of"),
    ],
)
def test_bad_settings_fail_early_naming_the_setting(make, message) -> None:
    with pytest.raises(ConfigurationError, match=message):
        make()


def test_site_at_uses_wordpress_defaults() -> None:
    site = Site.at("https://chatgptt.me/")
    assert site.url == "https://chatgptt.me"
    assert site.page_url == "https://chatgptt.me/"
    assert site.api_endpoint == "https://chatgptt.me/wp-admin/admin-ajax.php"


def test_site_errors_never_show_credentials() -> None:
    with pytest.raises(ConfigurationError) as info:
        Site.at("ftp://user:hunter2@example.com")
    assert "hunter2" not in str(info.value)


def test_timeouts_may_be_switched_off() -> None:
    assert Timeouts(connect=None, first_byte=None, idle=None, total=None).total is None


URL = "https://chatgptt.me/wp-admin/admin-ajax.php"


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (ProviderConnectionError("reset"), True),
        (ProviderTimeoutError("connect", 10), True),
        (ProviderTimeoutError("first_byte", 60), True),
        (ProviderTimeoutError("idle", 60), True),
        (ProviderTimeoutError("total", 300), False),
        (HTTPStatusError(408, URL), True),
        (HTTPStatusError(409, URL), True),
        (RateLimitError(URL), True),
        (ServerError(503, URL), True),
        (CloudflareOriginError(522, URL), True),
        (HTTPStatusError(404, URL), False),
        (HTTPStatusError(403, URL), False),
        (BotProtectionError(URL, 503, "cf"), False),
        (NonceRejectedError(URL, "expired"), False),
        (UpstreamError("bad key"), False),
        (ValueError("bug"), False),
    ],
)
def test_what_is_retryable(error: BaseException, retryable: bool) -> None:
    assert is_retryable(error) is retryable
    assert RetryPolicy().should_retry(error) is retryable


def test_retry_after_beyond_the_cap_is_final() -> None:
    policy = RetryPolicy(max_retry_after=30)
    assert policy.should_retry(RateLimitError(URL, retry_after=30))
    assert not policy.should_retry(RateLimitError(URL, retry_after=31))
    assert not policy.should_retry(ServerError(503, URL, retry_after=3600))


def test_custom_retry_predicate() -> None:
    policy = RetryPolicy(retry_on=lambda exc: isinstance(exc, UpstreamError))
    assert policy.should_retry(UpstreamError("overloaded"))
    assert not policy.should_retry(ProviderConnectionError("reset"))
