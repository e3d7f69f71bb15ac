"""The proxy: every request of a call goes through it, its credentials never show, and an
unreachable one is a clear connection error."""

from __future__ import annotations

import asyncio
import base64
import socket
import traceback
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from chatgptt import (
    ChatGptt,
    ChatGpttError,
    Exchange,
    HTTPStatusError,
    ProviderConnectionError,
    RetryPolicy,
    stage,
)
from chatgptt.cli import main
from chatgptt.emulator import Fault
from chatgptt.testing import provider_for
from stages.cache import TokenCache
from tests.chatgptt.forward_proxy import ForwardProxy, basic_credentials
from tests.conftest import FakeSleep

HELLO = [{"role": "user", "content": "Hello"}]
ANSWER = "Hello from upstream: Hello"
USER = "alice"
#: The password as written in the proxy URL (percent-encoded) and as sent.
PASSWORD_IN_URL = "pa%24%24-w0rd"
PASSWORD = "pa$$-w0rd"
#: Every spelling of the secret that must never show.
SECRETS = (PASSWORD, PASSWORD_IN_URL, base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode())


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


@pytest.fixture
def proxy() -> Iterator[ForwardProxy]:
    with ForwardProxy(credentials=(USER, PASSWORD)) as running:
        yield running


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


def describe(error: BaseException) -> str:
    """Everything an error shows: its text, repr, attributes, and those of its causes,
    and the traceback a program would print."""
    parts = ["".join(traceback.format_exception(error))]
    seen: BaseException | None = error
    while seen is not None:
        parts += [str(seen), repr(seen), repr(getattr(seen, "__dict__", {}))]
        seen = seen.__cause__ or seen.__context__
    return "\n".join(parts)


async def collect(provider: type[ChatGptt], **options: Any) -> list[str]:
    return [chunk async for chunk in provider.create_async_generator("gpt-4o", HELLO, **options)]


@pytest.mark.parametrize("mode", ["sse", "json"])
async def test_the_page_and_the_post_go_through_the_proxy_with_credentials(
    emulator_factory, proxy, mode: str
) -> None:
    emulator = emulator_factory(mode=mode)
    chunks = await collect(provider_for(emulator), proxy=proxy.url(USER, PASSWORD_IN_URL))
    assert "".join(chunks) == ANSWER
    assert [(r.method, r.target) for r in proxy.requests] == [
        ("GET", emulator.url + "/"),
        ("POST", emulator.url + "/wp-admin/admin-ajax.php"),
    ]
    assert {r.proxy_authorization for r in proxy.requests} == {basic_credentials(USER, PASSWORD)}
    assert (emulator.stats.page_fetches, emulator.stats.ajax_requests) == (1, 1)


async def test_both_aipkit_steps_and_its_nonce_refresh_go_through_the_proxy(
    emulator_factory, proxy
) -> None:
    emulator = emulator_factory(dialect="aipkit")
    provider = provider_for(emulator)
    chunks = await collect(provider, proxy=proxy.url(USER, PASSWORD_IN_URL))
    assert "".join(chunks) == ANSWER
    emulator.rotate_nonce()
    chunks = await collect(provider, proxy=proxy.url(USER, PASSWORD_IN_URL))
    assert "".join(chunks) == ANSWER
    ajax = emulator.url + "/wp-admin/admin-ajax.php"
    steps = [(r.method, r.target.split("?")[0]) for r in proxy.requests]
    assert steps == [
        ("GET", emulator.url + "/"),
        ("POST", ajax),  # step 1
        ("GET", ajax),  # step 2
        ("POST", ajax),  # step 1, the nonce rejected
        ("POST", ajax),  # the nonce endpoint: no page fetch
        ("POST", ajax),  # step 1 again
        ("GET", ajax),  # step 2
    ]
    assert {r.proxy_authorization for r in proxy.requests} == {basic_credentials(USER, PASSWORD)}


async def test_retries_and_nonce_refetches_go_through_the_proxy(
    emulator, proxy, fake_sleep
) -> None:
    emulator.faults.add(Fault(kind="status", status=503))
    emulator.faults.add(Fault(kind="expire_nonce"))
    provider = provider_for(emulator, retry_policy=RetryPolicy(sleep=fake_sleep))
    chunks = await collect(provider, proxy=proxy.url(USER, PASSWORD_IN_URL))
    assert "".join(chunks) == ANSWER
    assert [r.method for r in proxy.requests] == ["GET", "POST", "POST", "GET", "POST"]
    assert len(proxy.requests) == emulator.stats.page_fetches + emulator.stats.ajax_requests
    assert {r.proxy_authorization for r in proxy.requests} == {basic_credentials(USER, PASSWORD)}


async def test_the_credentials_never_show_in_logs_or_reprs(emulator, proxy, fake_sleep) -> None:
    """Traced (as with ``--trace``), through a retry and a nonce refresh."""
    seen: list[Exchange] = []

    @stage("spy")
    async def spy(exchange: Exchange) -> Exchange:
        seen.append(exchange)
        return exchange

    provider = provider_for(
        emulator,
        retry_policy=RetryPolicy(sleep=fake_sleep),
        dialects=ChatGptt.dialects.with_pipeline(
            "classic", ChatGptt.dialects["classic"].pipeline.append(spy)
        ),
    )
    emulator.faults.add(Fault(kind="status", status=503))
    emulator.faults.add(Fault(kind="expire_nonce"))
    with capture_logs() as logs:
        chunks = await collect(provider, proxy=proxy.url(USER, PASSWORD_IN_URL))
    assert "".join(chunks) == ANSWER
    events = {entry["event"] for entry in logs}
    assert {"retry.scheduled", "nonce.rejected", "stage.failed"} <= events
    assert_no_secret(repr(logs))
    [exchange] = seen
    assert exchange.call.proxy is not None  # it is there, just never shown
    for shown in (repr(exchange), str(exchange), repr(exchange.call), str(exchange.call)):
        assert_no_secret(shown)


async def test_wrong_credentials_are_an_error_that_does_not_repeat_them(
    emulator, proxy, fake_sleep
) -> None:
    provider = provider_for(emulator, retry_policy=RetryPolicy(sleep=fake_sleep))
    proxy_url = proxy.url(USER, "wrong-" + PASSWORD_IN_URL)
    with capture_logs() as logs, pytest.raises(HTTPStatusError) as caught:
        await collect(provider, proxy=proxy_url)
    assert caught.value.status == 407
    assert "wrong-" not in describe(caught.value)
    assert_no_secret(describe(caught.value))
    assert "wrong-" not in repr(logs)


async def test_an_unreachable_proxy_is_a_clear_connection_error(
    emulator, closed_port, fake_sleep
) -> None:
    provider = provider_for(emulator, retry_policy=RetryPolicy(sleep=fake_sleep))
    proxy_url = f"http://{USER}:{PASSWORD_IN_URL}@127.0.0.1:{closed_port}"
    with capture_logs() as logs, pytest.raises(ProviderConnectionError) as caught:
        await collect(provider, proxy=proxy_url)
    error = caught.value
    assert f"proxy 127.0.0.1:{closed_port}" in str(error)
    assert_no_secret(describe(error))
    assert_no_secret(repr(logs))
    assert USER not in str(error)
    assert len(fake_sleep.delays) == 2  # a connection failure is retried
    assert emulator.stats.page_fetches == 0


@pytest.fixture
async def garbage_proxy() -> AsyncIterator[int]:
    """A port whose "proxy" answers every request with bytes that are not HTTP."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"garbage\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()


async def test_a_proxy_answering_garbage_is_an_error_that_carries_no_secret(
    emulator, garbage_proxy: int
) -> None:
    """aiohttp's error for it holds the request's headers (the proxy's credentials, the
    call's cookies and headers): it is neither the typed error's cause nor its context."""
    provider = provider_for(emulator, retry_policy=RetryPolicy(attempts=1))
    proxy_url = f"http://{USER}:{PASSWORD_IN_URL}@127.0.0.1:{garbage_proxy}"
    with pytest.raises(ChatGpttError, match="invalid HTTP response through the proxy") as caught:
        await collect(
            provider,
            proxy=proxy_url,
            cookies={"cf_clearance": "CLEARANCE-SECRET"},
            headers={"X-Token": "HEADER-SECRET"},
        )
    shown = describe(caught.value)
    assert_no_secret(shown)
    assert "CLEARANCE-SECRET" not in shown
    assert "HEADER-SECRET" not in shown


def test_the_cli_never_prints_the_credentials(
    emulator, proxy, closed_port, capsys, monkeypatch
) -> None:
    monkeypatch.setattr(ChatGptt, "retry_policy", RetryPolicy(sleep=FakeSleep()))
    monkeypatch.setattr(ChatGptt, "token_cache", TokenCache())  # not shared with other tests
    good = proxy.url(USER, PASSWORD_IN_URL)
    assert main(["chat", "--url", emulator.url, "--proxy", good, "--trace", "Hello"]) == 0
    out, err = capsys.readouterr()
    assert out == ANSWER + "\n"
    assert "stage.completed" in err
    assert_no_secret(out + err)
    assert len(proxy.requests) == 2

    bad = f"http://{USER}:{PASSWORD_IN_URL}@127.0.0.1:{closed_port}"
    assert main(["chat", "--url", emulator.url, "--proxy", bad, "--trace", "Hello"]) == 1
    out, err = capsys.readouterr()
    assert f"chatgptt: error: cannot connect to the proxy 127.0.0.1:{closed_port}" in err
    assert_no_secret(out + err)


async def test_a_proxy_that_is_not_an_http_url_is_refused_before_any_request(emulator) -> None:
    with pytest.raises(ChatGpttError) as caught:
        await collect(provider_for(emulator), proxy=f"socks5://{USER}:{PASSWORD_IN_URL}@h:1")
    assert "proxy" in str(caught.value)
    assert_no_secret(describe(caught.value))
    assert emulator.stats.page_fetches == 0
