"""Error messages: what went wrong, where, and no secrets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stages.errors import (
    ChatGpttError,
    HTTPStatusError,
    IncompleteReplyError,
    InvalidMessagesError,
    MalformedResponseError,
    NonceRejectedError,
    ProviderConnectionError,
    ProviderTimeoutError,
    RateLimitError,
    RedirectError,
    StreamInterruptedError,
    TokensNotFoundError,
    UnknownActionError,
    UnknownModelError,
    excerpt,
    redact_url,
)


def test_redact_url_hides_userinfo_only() -> None:
    assert (
        redact_url("http://user:pw@proxy.local:3128/x?y=1") == "http://***@proxy.local:3128/x?y=1"
    )
    assert redact_url("https://chatgptt.me/") == "https://chatgptt.me/"
    assert redact_url("http://[::1]:8080/") == "http://[::1]:8080/"
    assert redact_url("http://u:p@[::1]:8080/") == "http://***@[::1]:8080/"
    assert redact_url("http://host/a@b") == "http://host/a@b"  # not userinfo


def test_redact_url_hides_userinfo_written_without_a_scheme() -> None:
    # urlsplit reads "u:pw@host:1" as the scheme "u" and finds no user in it.
    assert redact_url("u:SECRET@127.0.0.1:1") == "***@127.0.0.1:1"
    assert redact_url("user:pw@proxy.local:3128/x") == "***@proxy.local:3128/x"
    # Not a URL urlsplit can read the authority of: all before the last "@" goes.
    assert redact_url("proxy.local:3128/a@b") == "***@b"


@pytest.mark.parametrize(
    ("typed", "shown"),
    [
        ("http//alice:S3CRET@127.0.0.1:9", "http//***@127.0.0.1:9"),
        ("http:/alice:S3CRET@127.0.0.1:9", "http:/***@127.0.0.1:9"),
        ("http:///alice:S3CRET@127.0.0.1:9", "http:///***@127.0.0.1:9"),
        ("http//S3CRET@127.0.0.1:9", "http//***@127.0.0.1:9"),  # a token, no name
        ("http:/S3CRET@127.0.0.1:9", "http:/***@127.0.0.1:9"),
        ("http//alice:S3@CRET@h", "http//***@h"),  # a password holding "@", "/" or a space
        ("http//alice:S3/CRET@h", "http//***@h"),
        ("http//alice:S3 CRET@h", "http//***@h"),
        ("https://x.example/y?mail=a@b.c", "https://x.example/y?mail=a@b.c"),
    ],
)
def test_redact_url_hides_userinfo_of_a_mistyped_scheme(typed: str, shown: str) -> None:
    assert redact_url(typed) == shown


@given(
    st.text(
        alphabet=st.characters(whitelist_categories=("Ll", "Lu", "Nd")), min_size=1, max_size=12
    ),
    st.text(
        alphabet=st.characters(whitelist_categories=("Ll", "Lu", "Nd")), min_size=4, max_size=24
    ),
)
def test_redacted_urls_never_contain_the_password(user: str, password: str) -> None:
    url = f"http://{user}:{password}@proxy.example:8080/"
    assert redact_url(url) == "http://***@proxy.example:8080/"
    assert redact_url(url.removeprefix("http://")) == "***@proxy.example:8080/"
    assert password not in redact_url(url.replace("://", "//"))
    assert password not in redact_url(url.replace("://", ":/"))
    errors: list[ChatGpttError] = [
        ProviderConnectionError("failed", url=url),
        ProviderTimeoutError("connect", 1, url=url),
        HTTPStatusError(502, url),
        RateLimitError(url, retry_after=3),
        RedirectError(url, "scheme", location="ftp://" + url.removeprefix("http://")),
        RedirectError(url, "loop", location=url, chain=(url, url + "a", url)),
        IncompleteReplyError("cut", url=url),
        MalformedResponseError("bad", url=url),
    ]
    for error in errors:
        assert f":{password}@" not in str(error)


def test_messages_say_what_and_where() -> None:
    assert (
        str(UnknownModelError("gpt-5", ["gpt-4", "gpt-4o"]))
        == "unknown model 'gpt-5'; valid models: gpt-4, gpt-4o"
    )
    assert (
        str(InvalidMessagesError("content must be a string", 2))
        == "messages[2]: content must be a string"
    )
    timeout = ProviderTimeoutError("idle", 2.5, url="https://x.org/a")
    assert (timeout.limit, timeout.seconds) == ("idle", 2.5)
    assert "idle timeout: 2.5 s" in str(timeout)
    assert "https://x.org/a" in str(timeout)
    assert "nonce rejected twice" in str(NonceRejectedError("https://x.org", "expired", attempts=2))
    assert "AIPKit" in str(
        UnknownActionError("https://x.org/wp-admin/admin-ajax.php", "wpaicg_chat_shortcode_message")
    )
    assert "retry after 12 s" in str(RateLimitError("https://x.org", retry_after=12))


def test_builtin_bases_let_callers_catch_broadly() -> None:
    assert isinstance(ProviderTimeoutError("idle", 1), TimeoutError)
    assert isinstance(ProviderConnectionError("x"), ConnectionError)
    assert isinstance(TokensNotFoundError("https://x.org/", ["nonce"]), RuntimeError)
    assert isinstance(UnknownModelError("m", ["a"]), ValueError)


def test_stream_interrupted_carries_partial_text_and_cause() -> None:
    cause = ProviderConnectionError("reset")
    error = StreamInterruptedError("Hello wor", cause)
    assert error.partial_text == "Hello wor"
    assert error.cause is cause
    assert error.delivered_chars == 9
    assert "after 9 characters" in str(error)
    assert ChatGpttError("x").partial_text == ""


def test_excerpt_is_one_short_line() -> None:
    assert excerpt(b"<p>a\n\n  b</p>") == "<p>a b</p>"
    long = excerpt("x" * 500, limit=50)
    assert len(long) == 50
    assert long.endswith("…")
    assert excerpt(b"\xff\xfeok") == "\ufffd\ufffdok"


def test_keyerror_subclass_prints_plainly() -> None:
    from stages.errors import StageNotFoundError

    with pytest.raises(KeyError) as info:
        raise StageNotFoundError("x", ("a",))
    assert str(info.value) == "no stage named 'x'; stages: a"


@given(st.floats(min_value=0, allow_nan=False, allow_infinity=True))
def test_a_wait_always_reads_as_a_number_and_a_unit(seconds: float) -> None:
    from stages.errors import describe_wait

    text = describe_wait(seconds)
    assert text == "an unbounded time" or text.endswith((" s", " min", " h", " days"))
    assert "inf" not in text
    assert "nan" not in text
