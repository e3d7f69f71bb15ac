"""Hostile and broken sites (issue 9), each played by a raw socket server on loopback: what
the caller gets when a site lingers after its answer, sends an event stream with no events,
closes a body that had no declared length, redirects where it should not, hides behind a
gzip that does not decode or a proxy that misbehaves, asks to wait forever, or piles up
cookies. Each test failed before the behaviour it checks was built.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import pytest

from chatgptt import (
    BotProtectionError,
    ChatGptt,
    ChatGpttError,
    ConfigurationError,
    IncompleteReplyError,
    MalformedResponseError,
    ProviderConnectionError,
    RateLimitError,
    RedirectError,
    RetryPolicy,
    StreamInterruptedError,
)
from chatgptt.emulator.firewalls import PageValues, render_firewall
from chatgptt.testing import provider_for
from tests.chatgptt.raw_site import (
    ANSWER_TEXT,
    RawRequest,
    RawSite,
    event_stream_head,
    frame,
    http_head,
    serve_bytes,
)
from tests.conftest import FakeSleep

HELLO = [{"role": "user", "content": "Hello"}]
PIECES = ["Hello fr", "om upstr", "eam: Hel", "lo"]
WHOLE_STREAM = (
    frame("")
    + b"".join(frame(piece) for piece in PIECES)
    + frame(finish="stop")
    + b"data: [DONE]\n\n"
)


def provider(site: Any, sleep: FakeSleep, **attributes: Any) -> type[ChatGptt]:
    return provider_for(site, retry_policy=RetryPolicy(sleep=sleep, jitter=0), **attributes)


async def collect(
    provider: type[ChatGptt], **options: Any
) -> tuple[list[str], ChatGpttError | None]:
    chunks: list[str] = []
    try:
        async for chunk in provider.create_async_generator("gpt-4o", HELLO, **options):
            chunks.append(chunk)
    except ChatGpttError as exc:
        return chunks, exc
    return chunks, None


# --- 1. a finished answer does not wait for the site to say [DONE] -------------------------------


async def test_comments_after_the_finish_frame_do_not_hold_the_answer(fake_sleep) -> None:
    """The site keeps the stream open after the finish frame with a comment every 0.2 s
    and never sends [DONE]: the answer is returned at once, not when the 8 s run out."""
    comments_sent = 0

    async def linger(_request: RawRequest, writer: asyncio.StreamWriter) -> None:
        nonlocal comments_sent
        writer.write(event_stream_head() + WHOLE_STREAM.removesuffix(b"data: [DONE]\n\n"))
        await writer.drain()
        with contextlib.suppress(ConnectionError):
            for _ in range(300):  # 60 s at most: far past the call's deadline
                await asyncio.sleep(0.2)
                writer.write(b":\n")
                await writer.drain()
                comments_sent += 1

    async with RawSite(linger) as site:
        started = time.monotonic()
        text = await provider(site, fake_sleep).create_async("gpt-4o", HELLO, timeout=8)
        elapsed = time.monotonic() - started
    assert text == ANSWER_TEXT
    assert elapsed < 4.0, f"the finished answer waited {elapsed:.1f} s for [DONE]"


# --- 2. an event stream without events is not an empty answer ------------------------------------

PHP_FATAL = (
    b"<br />\n<b>Fatal error</b>:  Uncaught Error: Call to undefined function curl_init() in "
    b"/var/www/html/wp-content/plugins/gpt3-ai-content-generator/classes/wpaicg_chat.php:812\n"
)


@pytest.mark.parametrize(
    ("body", "error_type", "says"),
    [
        pytest.param(b"", MalformedResponseError, "event stream was empty", id="php-without-curl"),
        pytest.param(PHP_FATAL, MalformedResponseError, "curl_init()", id="php-fatal-error"),
        pytest.param(
            render_firewall("cloudflare", PageValues(host="x")).encode(),
            BotProtectionError,
            "Cloudflare",
            id="challenge-page",
        ),
        pytest.param(
            render_firewall("sucuri", PageValues(host="x")).encode(),
            BotProtectionError,
            "Sucuri",
            id="sucuri-check",
        ),
    ],
)
async def test_a_200_event_stream_with_no_events_is_an_error(
    fake_sleep, body: bytes, error_type: type, says: str
) -> None:
    async with RawSite(serve_bytes(event_stream_head() + body)) as site:
        chunks, error = await collect(provider(site, fake_sleep))
        posts = site.count("POST")
    assert chunks == []
    assert isinstance(error, error_type), repr(error)
    assert says in str(error)
    assert posts == 1  # what the site said on purpose is not retried


# --- 3. a body with no declared length, cut by closing the connection ----------------------------


async def test_a_close_delimited_stream_cut_after_text_is_an_interruption(fake_sleep) -> None:
    cut = event_stream_head() + frame("") + frame("Hel")
    async with RawSite(serve_bytes(cut)) as site:
        chunks, error = await collect(provider(site, fake_sleep))
        posts = site.count("POST")
    assert chunks == ["Hel"]
    assert isinstance(error, StreamInterruptedError)
    assert error.partial_text == "Hel"
    assert isinstance(error.cause, IncompleteReplyError)
    assert posts == 1  # never retried after text


@pytest.mark.parametrize(
    "first_reply",
    [
        pytest.param(event_stream_head(), id="stream-cut-after-the-headers-of-a-frame"),
        pytest.param(event_stream_head() + frame(""), id="stream-cut-before-text"),
        pytest.param(event_stream_head() + frame("")[:25], id="stream-cut-inside-a-frame"),
        pytest.param(
            http_head("200 OK", [("Connection", "close"), ("Content-Type", "application/json")])
            + b'{"status":"success","msg":"Something went wrong","da',
            id="json-cut-mid-document",
        ),
    ],
)
async def test_a_close_delimited_reply_cut_before_text_is_retried(
    fake_sleep, first_reply: bytes
) -> None:
    replies = [first_reply, event_stream_head() + WHOLE_STREAM]

    async def answer(_request: RawRequest, writer: asyncio.StreamWriter) -> None:
        writer.write(replies.pop(0))
        await writer.drain()

    async with RawSite(answer) as site:
        chunks, error = await collect(provider(site, fake_sleep))
        posts = site.count("POST")
    if first_reply == event_stream_head():
        # No event at all: an empty stream, which is what a PHP without curl sends; said so.
        assert isinstance(error, MalformedResponseError)
        assert "empty" in str(error)
        assert posts == 1
        return
    assert (error, "".join(chunks)) == (None, ANSWER_TEXT)
    assert posts == 2
    assert fake_sleep.delays == [0.5]


# --- 4. redirects that cannot be followed --------------------------------------------------------


def redirects(table: dict[str, str]) -> Any:
    async def answer(request: RawRequest, writer: asyncio.StreamWriter) -> None:
        location = table[request.target]
        writer.write(
            http_head(
                "302 Found",
                [("Location", location), ("Content-Length", "0"), ("Connection", "close")],
            )
        )
        await writer.drain()

    return answer


async def test_a_redirect_loop_on_the_landing_page_says_so_and_where(fake_sleep) -> None:
    async with RawSite(redirects({"/": "/welcome", "/welcome": "/"}), landing=False) as site:
        _, error = await collect(provider(site, fake_sleep))
        gets = site.count("GET")
    assert isinstance(error, RedirectError)
    assert error.reason == "loop"
    assert "redirected in a loop" in str(error)
    assert f"{site.url}/welcome" in str(error)
    assert gets <= 11  # one round of aiohttp's redirects: never retried


async def test_endless_redirects_say_how_many_and_where_they_went(fake_sleep) -> None:
    table = {f"/{n}" if n else "/": f"/{n + 1}" for n in range(40)}
    async with RawSite(redirects(table), landing=False) as site:
        _, error = await collect(provider(site, fake_sleep))
    assert isinstance(error, RedirectError)
    assert error.reason == "too_many"
    assert f"{site.url}/10" in str(error)


@pytest.mark.parametrize(
    "location", ["file:///etc/passwd", "ftp://files.example/pub/", "javascript:alert(1)"]
)
async def test_a_redirect_to_another_scheme_names_it_and_blames_the_site(
    fake_sleep, location: str
) -> None:
    async with RawSite(redirects({"/": location}), landing=False) as site:
        _, error = await collect(provider(site, fake_sleep))
    assert isinstance(error, RedirectError)
    assert not isinstance(error, ConfigurationError)  # the caller's URL is fine
    assert error.reason == "scheme"
    assert location in str(error)
    assert f"the site at {site.url}/" in str(error)


async def test_a_redirect_to_something_that_is_not_a_url_says_so(fake_sleep) -> None:
    async with RawSite(redirects({"/": "http://[::1:99999/"}), landing=False) as site:
        _, error = await collect(provider(site, fake_sleep))
    assert isinstance(error, RedirectError)
    assert error.reason == "invalid"
    assert "not a valid URL" in str(error)


# --- smaller ones ---------------------------------------------------------------------------------


@pytest.mark.parametrize("framing", ["content-length", "close"])
async def test_a_body_whose_gzip_does_not_decode_is_malformed_not_retried(
    fake_sleep, framing: str
) -> None:
    garbage = b"\x1f\x8b\x08\x00not really gzip at all"
    headers = [("Content-Type", "application/json"), ("Content-Encoding", "gzip")]
    headers.append(
        ("Content-Length", str(len(garbage)))
        if framing == "content-length"
        else ("Connection", "close")
    )
    async with RawSite(serve_bytes(http_head("200 OK", headers) + garbage)) as site:
        _, error = await collect(provider(site, fake_sleep))
        posts = site.count("POST")
    assert isinstance(error, MalformedResponseError)
    assert "Content-Encoding does not decode" in str(error)
    assert posts == 1


@pytest.mark.parametrize(
    ("reply", "error_type", "says"),
    [
        pytest.param(b"", ProviderConnectionError, "closed the connection", id="closes"),
        pytest.param(
            b"SSH-2.0-OpenSSH_9.6\r\n\r\n", MalformedResponseError, "invalid HTTP", id="garbage"
        ),
    ],
)
async def test_a_proxy_that_misbehaves_is_named_without_its_credentials(
    fake_sleep, reply: bytes, error_type: type, says: str
) -> None:
    async with RawSite(serve_bytes(reply), landing=False) as proxy:
        site = ChatGptt.derive("Behind", url="http://chat.example")
        _, error = await collect(
            site,
            proxy=f"http://user:s3cret@127.0.0.1:{proxy.port}",
            retry=RetryPolicy(sleep=fake_sleep, attempts=1),
        )
    assert isinstance(error, error_type), repr(error)
    assert says in str(error)
    assert f"proxy 127.0.0.1:{proxy.port}" in str(error)
    assert "s3cret" not in str(error)
    assert "user" not in str(error)


@pytest.mark.parametrize(
    ("header", "value"),
    [("Retry-After", "9" * 400), ("retry-after-ms", "inf"), ("retry-after-ms", "1e400")],
)
async def test_an_endless_retry_after_reads_as_a_day(fake_sleep, header: str, value: str) -> None:
    reply = http_head(
        "429 Too Many Requests",
        [(header, value), ("Content-Length", "0"), ("Connection", "close")],
    )
    async with RawSite(serve_bytes(reply)) as site:
        _, error = await collect(provider(site, fake_sleep))
        posts = site.count("POST")
    assert isinstance(error, RateLimitError)
    assert error.retry_after == 86_400.0
    assert "retry after 24 h" in str(error)
    assert "inf" not in str(error)
    assert posts == 1


async def test_a_site_that_sets_a_new_cookie_every_time_cannot_grow_the_jar(fake_sleep) -> None:
    """150 calls, each reply setting a cookie of a new name: the Cookie header stays at the
    per-site bound (50) instead of carrying every cookie ever set."""
    served = 0

    async def answer(_request: RawRequest, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        served += 1
        head = http_head(
            "200 OK",
            [
                ("Connection", "close"),
                ("Set-Cookie", f"visit_{served:04d}=abcdefghijklmnopqrstuvwxyz; Path=/"),
                ("Content-type", "text/event-stream;charset=UTF-8"),
            ],
        )
        writer.write(head + WHOLE_STREAM)
        await writer.drain()

    async with RawSite(answer, page_headers=[("Set-Cookie", "session=keep; Path=/")]) as site:
        chatty = provider(site, fake_sleep)
        for _ in range(150):
            assert await chatty.create_async("gpt-4o", HELLO) == ANSWER_TEXT
        cookie = site.requests[-1].header("Cookie") or ""
    sent = [pair.split("=", 1)[0] for pair in cookie.split("; ")]
    assert len(sent) == 50
    assert len(cookie) < 2_500
    assert sent[-1] == "visit_0149"  # the newest are kept
