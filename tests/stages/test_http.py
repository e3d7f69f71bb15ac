"""The network seam: status classification, Retry-After, body reading limits and timeouts."""

from __future__ import annotations

import asyncio
import email.utils
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
import yarl
from aiohttp import web
from aiohttp.client_reqrep import ConnectionKey
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from stages.config import Timeouts
from stages.errors import (
    BotProtectionError,
    CloudflareOriginError,
    ConfigurationError,
    HTTPStatusError,
    NonceRejectedError,
    ProviderConnectionError,
    ProviderTimeoutError,
    RateLimitError,
    ResponseTooLargeError,
    ServerError,
    UnknownActionError,
)
from stages.http import (
    RETRY_AFTER_CEILING,
    ResponseBody,
    classify_failure,
    encode_form,
    length_declared,
    map_client_error,
    parse_retry_after,
    readable_excerpt,
    send,
    shareable_cause,
    shown_proxy,
)
from tests.conftest import VECTORS, make_call

URL = "https://chatgptt.me/wp-admin/admin-ajax.php"
CLASSIC = VECTORS / "classic"
CHALLENGE = b"<!DOCTYPE html><html><head><title>Just a moment...</title></head><body></body></html>"


def test_a_dialects_nonce_page_is_the_dialects_to_recognise() -> None:
    """The shared classification knows no dialect's nonce page: a plain 403 here."""
    error = classify_failure(
        403, {"Content-Type": "text/html"}, (CLASSIC / "bad_nonce.body").read_bytes(), URL
    )
    assert type(error) is HTTPStatusError
    assert not isinstance(error, NonceRejectedError)


def test_unknown_action_is_recognised() -> None:
    error = classify_failure(
        400, {}, (CLASSIC / "unknown_action.body").read_bytes(), URL, action="wpaicg_x"
    )
    assert isinstance(error, UnknownActionError)
    assert error.action == "wpaicg_x"


def test_critical_error_page_is_a_server_error_with_a_readable_excerpt() -> None:
    body = (CLASSIC / "json_history_roles.body").read_bytes()
    error = classify_failure(500, {"Content-Type": "text/html; charset=UTF-8"}, body, URL)
    assert isinstance(error, ServerError)
    assert "There has been a critical error on this website." in str(error)
    assert "<p>" not in str(error)


@pytest.mark.parametrize("status", [403, 503, 429])
def test_challenge_pages_are_bot_protection_whatever_the_status(status: int) -> None:
    error = classify_failure(status, {"Content-Type": "text/html"}, CHALLENGE, URL)
    assert isinstance(error, BotProtectionError)
    assert "bot protection page from https://chatgptt.me" in str(error)


def test_rate_limits_carry_retry_after() -> None:
    error = classify_failure(429, {"Retry-After": "12"}, b"slow down", URL)
    assert isinstance(error, RateLimitError)
    assert error.retry_after == 12.0


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (520, CloudflareOriginError),
        (527, CloudflareOriginError),
        (502, ServerError),
        (404, HTTPStatusError),
    ],
)
def test_statuses_map_to_their_types(status: int, kind: type) -> None:
    error = classify_failure(status, {}, b"oops", URL)
    assert type(error) is kind
    assert error.status == status


def test_redirects_name_their_target() -> None:
    error = classify_failure(302, {"Location": "https://chatgptt.me/login"}, b"", URL)
    assert "redirected to https://chatgptt.me/login" in str(error)
    error = classify_failure(302, {}, b"", URL)
    assert str(error).endswith(": a redirect without a Location")


def test_a_proxy_that_cannot_be_reached_is_named_once() -> None:
    key = ConnectionKey("proxy.invalid", 3128, False, True, None, None, None)
    unresolved = aiohttp.ClientConnectorError(key, OSError(-2, "Name or service not known"))
    proxy = "http://u:pw@proxy.invalid:3128"
    error = map_client_error(unresolved, URL, proxy=proxy)
    assert "cannot connect to the proxy proxy.invalid:3128: " in str(error)
    assert "through the proxy" not in str(error)
    site = ConnectionKey("chatgptt.me", 443, True, True, None, None, None)
    error = map_client_error(
        aiohttp.ClientConnectorError(site, OSError(111, "no")), URL, proxy=proxy
    )
    assert "cannot connect to chatgptt.me:443 through the proxy proxy.invalid:3128" in str(error)


def test_retry_after_forms() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after({"Retry-After": "30"}) == 30.0
    date = email.utils.formatdate(now + 90, usegmt=True)
    assert parse_retry_after({"Retry-After": date}, now=now) == pytest.approx(90, abs=1)
    assert (
        parse_retry_after({"Retry-After": email.utils.formatdate(now - 90, usegmt=True)}, now=now)
        == 0.0
    )
    assert parse_retry_after({"retry-after-ms": "1500"}) == 1.5
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({}) is None


@given(st.integers(min_value=0, max_value=10**6))
def test_retry_after_seconds_round_trip_up_to_the_ceiling(seconds: int) -> None:
    assert parse_retry_after({"Retry-After": str(seconds)}) == min(
        float(seconds), RETRY_AFTER_CEILING
    )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    """Start a throwaway aiohttp server on a free loopback port with one handler."""
    runners: list[web.AppRunner] = []

    async def start(handler: Handler) -> str:
        app = web.Application()
        app.router.add_route("*", "/", handler)
        runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return f"http://127.0.0.1:{port}/"

    yield start
    for runner in runners:
        await runner.cleanup()


def body_reader(
    response: aiohttp.ClientResponse, url: str, **limits: float | int | None
) -> ResponseBody:
    options: dict[str, float | int | None] = {
        "idle": 5.0,
        "deadline": None,
        "total": None,
        "max_bytes": None,
    }
    options.update(limits)
    return ResponseBody(response, url=url, **options)  # type: ignore[arg-type]


async def test_body_chunks_arrive_as_sent_and_release_the_connection(serve, session) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for part in (b"one", b"two", b"three"):
            await response.write(part)
        await response.write_eof()
        return response

    url = await serve(handler)
    response = await send(make_call(session, url=url), "GET", url, headers={})
    body = body_reader(response, url)
    assert b"".join([chunk async for chunk in body]) == b"onetwothree"
    await body.aclose()
    assert body.received == 11


def first_then_waiting(release: asyncio.Event) -> Callable[[web.Request], Awaitable[Any]]:
    """A handler that sends ``first`` and holds the body open until ``release`` is set."""

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"first")
        await release.wait()
        return response

    return handler


async def test_idle_limit_names_itself(serve, session) -> None:
    # Never released: the client must give up on its own.
    url = await serve(first_then_waiting(asyncio.Event()))
    response = await send(make_call(session, url=url), "GET", url, headers={})
    body = body_reader(response, url, idle=0.05)
    assert await body.__anext__() == b"first"
    with pytest.raises(ProviderTimeoutError) as info:
        await body.__anext__()
    assert (info.value.limit, info.value.seconds) == ("idle", 0.05)
    await body.aclose()


async def test_first_byte_limit_covers_the_wait_for_headers(serve, session) -> None:
    release = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        await release.wait()
        return web.Response()

    url = await serve(handler)
    call = make_call(session, url=url, timeouts=Timeouts(first_byte=0.05))
    with pytest.raises(ProviderTimeoutError) as info:
        await send(call, "GET", url, headers={})
    assert info.value.limit == "first_byte"


async def test_a_broken_chunked_body_is_a_connection_error(serve, session) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"partial")
        assert request.transport is not None
        request.transport.close()
        return response

    url = await serve(handler)
    response = await send(make_call(session, url=url), "GET", url, headers={})
    body = body_reader(response, url)
    with pytest.raises(ProviderConnectionError, match="broke after"):
        async for _ in body:
            pass
    await body.aclose()


async def test_a_body_whose_session_was_closed_is_a_connection_error(serve, session) -> None:
    release = asyncio.Event()
    url = await serve(first_then_waiting(release))
    own = aiohttp.ClientSession()
    response = await send(make_call(own, url=url), "GET", url, headers={})
    body = body_reader(response, url)
    assert await body.__anext__() == b"first"
    await own.close()
    with pytest.raises(ProviderConnectionError, match="its aiohttp session was closed"):
        await body.__anext__()
    release.set()
    await body.aclose()


async def test_a_closed_session_cannot_send() -> None:
    own = aiohttp.ClientSession()
    await own.close()
    url = "http://127.0.0.1:9/"
    with pytest.raises(ConfigurationError, match="session was closed"):
        await send(make_call(own, url=url), "GET", url, headers={})


async def test_aiohttps_other_refusals_are_quoted_without_advice(session) -> None:
    from stages.http import _unusable_session

    error = _unusable_session(session, "http://u:pw@site.example/", RuntimeError("no TLS here"))
    assert str(error) == "aiohttp cannot request http://***@site.example/: no TLS here"


def test_only_causes_without_the_requests_secrets_are_kept() -> None:
    info = aiohttp.RequestInfo(
        yarl.URL("http://site.example/"), "GET", CIMultiDictProxy(CIMultiDict(Cookie="a=b"))
    )
    assert shareable_cause(aiohttp.ClientResponseError(info, ())) is None
    assert shareable_cause(aiohttp.TooManyRedirects(info, ())) is None
    key = ConnectionKey("h", 1, False, True, None, None, None)
    assert shareable_cause(aiohttp.ClientProxyConnectionError(key, OSError(111, "no"))) is None
    broken = aiohttp.ClientPayloadError("cut")
    assert shareable_cause(broken) is broken
    assert shareable_cause(ConnectionResetError()) is not None


async def test_size_limits(serve, session) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(body=b"x" * 1000)

    url = await serve(handler)
    response = await send(make_call(session, url=url), "GET", url, headers={})
    with pytest.raises(ResponseTooLargeError, match="100 bytes"):
        await body_reader(response, url).read(100)
    response.close()
    response = await send(make_call(session, url=url), "GET", url, headers={})
    with pytest.raises(ResponseTooLargeError):
        async for _ in body_reader(response, url, max_bytes=10):
            pass
    response.close()


async def test_refused_connection_is_a_clear_connection_error(session) -> None:
    url = "http://127.0.0.1:9/"  # discard port: nothing listens on loopback here
    with pytest.raises(ProviderConnectionError, match=r"cannot connect to 127\.0\.0\.1:9"):
        await send(make_call(session, url=url), "GET", url, headers={})


@pytest.mark.parametrize(
    "headers",
    [
        {"Retry-After": "9" * 400},
        {"Retry-After": "99999999999"},
        {"retry-after-ms": "inf"},
        {"retry-after-ms": "1e400"},
        {"Retry-After": email.utils.formatdate(4_000_000_000, usegmt=True)},
    ],
)
def test_an_endless_retry_after_is_capped_at_a_day(headers: dict[str, str]) -> None:
    assert parse_retry_after(headers, now=1_700_000_000.0) == RETRY_AFTER_CEILING == 86_400.0


@pytest.mark.parametrize(
    "headers",
    [
        {"retry-after-ms": "nan"},
        {"Retry-After": "-5"},
        {"Retry-After": "1e3"},
        {"Retry-After": "٣"},
    ],
)
def test_an_unreadable_retry_after_is_ignored(headers: dict[str, str]) -> None:
    assert parse_retry_after(headers) is None


def test_a_rate_limit_reads_its_wait_in_units_a_person_uses() -> None:
    for seconds, text in ((12, "12 s"), (600, "10 min"), (86_400, "24 h"), (7 * 86_400, "7 days")):
        assert f"retry after {text}" in str(RateLimitError(URL, retry_after=seconds))
    assert "inf" not in str(RateLimitError(URL, retry_after=float("inf")))


@pytest.mark.parametrize(
    ("proxy", "shown"),
    [
        ("http://user:pass@proxy.local:3128", "proxy.local:3128"),
        ("http://proxy.local", "proxy.local"),
        ("http://u:p@[::1]:8080/", "[::1]:8080"),
        ("http://:8080", "<proxy without a host>"),
    ],
)
def test_a_proxy_is_shown_without_its_credentials(proxy: str, shown: str) -> None:
    assert shown_proxy(proxy) == shown


def test_a_proxy_that_drops_the_tunnel_is_named() -> None:
    key = aiohttp.client_reqrep.ConnectionKey("chat.example", 443, True, True, None, None, None)
    exc = aiohttp.ClientConnectorError(key, ConnectionResetError(104, "Connection reset by peer"))
    error = map_client_error(exc, "https://chat.example/", proxy="http://u:pw@10.0.0.1:3128")
    assert str(error) == (
        "cannot connect to chat.example:443 through the proxy 10.0.0.1:3128: "
        "Connection reset by peer"
    )


@pytest.mark.parametrize(
    ("headers", "declared"),
    [
        ({"Content-Length": "10"}, True),
        ({"Transfer-Encoding": "chunked"}, True),
        ({"Transfer-Encoding": "gzip, chunked"}, True),
        ({"Connection": "close"}, False),
        ({}, False),
    ],
)
def test_a_body_end_is_declared_by_a_length_or_chunks(headers, declared: bool) -> None:
    assert length_declared(CIMultiDict(headers)) is declared


@given(st.sampled_from(["Retry-After", "retry-after-ms"]), st.text(max_size=40))
def test_any_retry_after_is_absent_or_a_finite_wait_up_to_the_ceiling(
    header: str, value: str
) -> None:
    wait = parse_retry_after({header: value}, now=1_700_000_000.0)
    assert wait is None or 0.0 <= wait <= RETRY_AFTER_CEILING


@given(
    st.text(alphabet=st.characters(whitelist_categories=("Ll", "Nd")), min_size=1, max_size=12),
    st.text(alphabet=st.characters(whitelist_categories=("Lu", "Nd")), min_size=6, max_size=24),
    st.integers(min_value=1, max_value=65535),
)
def test_a_shown_proxy_never_carries_its_credentials(user: str, password: str, port: int) -> None:
    shown = shown_proxy(f"http://{user}:{password}@proxy.example:{port}")
    assert shown == f"proxy.example:{port}"
    assert password not in shown


def test_an_html_excerpt_reads_like_the_page() -> None:
    page = b"<br />\n<b>Fatal error</b>:  Uncaught Error in <b>/x.php</b> on line <b>8</b><br />"
    assert readable_excerpt(page) == "Fatal error: Uncaught Error in /x.php on line 8"
    assert readable_excerpt(b"<p>One</p><p>Two &amp; three</p>") == "One Two & three"


# --- encode_form ------------------------------------------------------------------------------

form_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=20)
form_pairs = st.lists(st.tuples(form_text, form_text), max_size=6)


@given(form_pairs, st.data())
def test_encode_form_writes_what_urlencode_writes(
    pairs: list[tuple[str, str]], data: st.DataObject
) -> None:
    """Whichever fields are declared changing (quoted each time, or passed as they are
    when quoting would not change them) and whichever are remembered."""
    changing = data.draw(st.frozensets(st.sampled_from([key for key, _ in pairs] or ["-"])))
    expected = urlencode(pairs).encode("ascii")
    assert encode_form(pairs, changing=changing) == expected
    assert encode_form(pairs, changing=changing) == expected  # remembered ones, again


def test_encode_form_quotes_changing_values_that_need_it() -> None:
    pairs = [("id", "a-b_c.d~9"), ("message", "a b&c=d/é"), ("ts", "1712345678901")]
    assert encode_form(pairs, changing={"id", "message", "ts"}) == (
        b"id=a-b_c.d~9&message=a+b%26c%3Dd%2F%C3%A9&ts=1712345678901"
    )
