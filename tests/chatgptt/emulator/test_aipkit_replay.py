"""The AIPKit emulator answers every captured request as the real plugin 2.4.71 did.

Each capture is replayed against a fresh emulator whose clock is set to the capture's
``Date``: status, the plugin's headers (names, spelling, order) and the body bytes must be
the captured ones, except for what is random on the real site too — the cache key (32
letters and digits) and the random part of a message id. ``err-<unix>`` ids, the seconds of
message ids and the date in the system prompt come out exactly as captured. What reached the
model must be the capture's ``upstream-received.json``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import AsyncIterator

import aiohttp
import pytest

from chatgptt.emulator import EmulatorConfig, EmulatorServer, ManualClock
from chatgptt.emulator.nonces import AIPKIT_NONCE_ACTION

from .aipkit_captures import (
    AIPKIT,
    CACHE_KEY,
    CAPTURE_BOT_ID,
    CAPTURE_HOST,
    CAPTURE_NONCE,
    CAPTURE_POST_ID,
    MESSAGE_ID_RANDOM,
    SERVER_HEADERS,
    AipkitCapture,
    aipkit_ajax_capture_names,
    key_producers,
    load_aipkit_capture,
)

AJAX = "/wp-admin/admin-ajax.php"
#: Exchanges that came after others in the same conversation (or with the same key).
PRIORS = {
    "stream_continue_same_conversation": ["stream_ok"],
    "stream_reused_key": ["stream_ok"],
    "responses_api_stream_continue": ["responses_api_stream_ok"],
}


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def config_for(name: str, clock: ManualClock) -> EmulatorConfig:
    return EmulatorConfig(
        dialect="aipkit",
        post_id=CAPTURE_POST_ID,
        aipkit_bot_id=CAPTURE_BOT_ID,
        aipkit_api_mode="responses" if name.startswith("responses_api") else "chat_completions",
        clock=clock,
    )


def localise(data: bytes, *, port: int, nonce: str) -> bytes:
    """``data`` from the capture with the emulator's address and nonce put in."""
    return (
        data.replace(CAPTURE_HOST.encode(), f"127.0.0.1:{port}".encode())
        .replace(b"127.0.0.1%3A8080", f"127.0.0.1%3A{port}".encode())
        .replace(CAPTURE_NONCE.encode(), nonce.encode())
    )


def without_message_id_randomness(body: bytes) -> bytes:
    return MESSAGE_ID_RANDOM.sub(rb"\1<random>", body)


class Replayer:
    """Sends captured requests to one emulator, mapping captured cache keys to live ones."""

    def __init__(
        self, site: EmulatorServer, client: aiohttp.ClientSession, clock: ManualClock
    ) -> None:
        self.site = site
        self.client = client
        self.clock = clock
        self.keys: dict[str, str] = {}
        self.nonce = site.state.nonces.create(AIPKIT_NONCE_ACTION)
        self.fit = functools.partial(localise, port=site.port, nonce=self.nonce)

    async def send(self, capture: AipkitCapture) -> tuple[aiohttp.ClientResponse, bytes]:
        await self._make_key_for(capture)
        target = self.fit(capture.target.encode()).decode()
        for captured, live in self.keys.items():
            target = target.replace(captured, live)
        headers = [(k, self.fit(v.encode()).decode()) for k, v in capture.headers]
        self.clock.set(capture.date)
        async with self.client.request(
            capture.method,
            self.site.url + target,
            headers=headers,
            data=self.fit(capture.body) if capture.body else None,
        ) as response:
            body = await response.read()
        if capture.name.startswith("cache_") and capture.cache_key is not None:
            live = CACHE_KEY.search(body)
            assert live is not None, body
            self.keys[capture.cache_key] = live.group(0).decode()
        return response, body

    async def _make_key_for(self, capture: AipkitCapture) -> None:
        """A stream needs a live key: from the cache capture that made it, or a new POST."""
        key = capture.cache_key
        if not capture.name.startswith(("stream_", "responses_api_")) or key is None:
            return
        if key in self.keys or "doesnotexist" in key:
            return
        producer = key_producers().get(key)
        if producer is not None:
            await self.send(load_aipkit_capture(producer))
            return
        message = capture.upstream[-1][-1]["content"]  # the message this stream answered
        form = {"action": "aipkit_cache_sse_message", "_ajax_nonce": self.nonce, "message": message}
        async with self.client.post(self.site.url + AJAX, data=form) as response:
            self.keys[key] = (await response.json())["data"]["cache_key"]


def plugin_headers(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(k, v) for k, v in pairs if k.lower() not in SERVER_HEADERS]


@pytest.mark.parametrize("name", aipkit_ajax_capture_names())
async def test_replays_capture(name: str, client: aiohttp.ClientSession) -> None:
    capture = load_aipkit_capture(name)
    clock = ManualClock(capture.date)
    async with EmulatorServer(config_for(name, clock)) as site:
        replayer = Replayer(site, client, clock)
        for prior in PRIORS.get(name, []):
            await replayer.send(load_aipkit_capture(prior))
        received_before = len(site.state.received)
        response, body = await replayer.send(capture)
        assert response.status == capture.status
        sent = [(k.decode(), v.decode()) for k, v in response.raw_headers]
        assert plugin_headers(sent) == plugin_headers(list(capture.response_headers.items()))
        expected = replayer.fit(capture.response_body)
        if capture.cache_key is not None and capture.name.startswith("cache_"):
            expected = expected.replace(
                capture.cache_key.encode(), replayer.keys[capture.cache_key].encode()
            )
        assert without_message_id_randomness(body) == without_message_id_randomness(expected)
        assert list(site.state.received)[received_before:] == capture.upstream


@pytest.mark.parametrize("name", ["stream_ok", "responses_api_stream_ok", "stream_upstream_error"])
async def test_streams_are_chunked_and_end_with_php_connection_header(
    name: str, client: aiohttp.ClientSession
) -> None:
    """The stream goes out chunked (no length), each frame in its own write; PHP's own
    ``Connection: keep-alive`` comes after the plugin's headers, as the real site sent it."""
    capture = load_aipkit_capture(name)
    clock = ManualClock(capture.date)
    async with EmulatorServer(config_for(name, clock)) as site:
        response, _ = await Replayer(site, client, clock).send(capture)
    assert response.headers["Transfer-Encoding"] == "chunked"
    assert "Content-Length" not in response.headers
    names = [k.decode() for k, _ in response.raw_headers]
    assert names.index("Connection") == names.index("X-Accel-Buffering") + 1
    assert response.headers["Connection"] == "keep-alive"


@pytest.mark.parametrize("page", ["inline", "popup"])
@pytest.mark.parametrize("path", ["/", "/?page_id=6", "/chat"])
async def test_landing_page_is_the_capture(
    page: str, path: str, client: aiohttp.ClientSession
) -> None:
    """The inline and popup pages are the captured ones with this server's address and nonce."""
    capture = (AIPKIT / f"landing_{page}.body").read_bytes()
    config = EmulatorConfig(
        dialect="aipkit",
        aipkit_page=page,
        post_id="6",
        aipkit_bot_id="5",  # type: ignore[arg-type]
    )
    async with EmulatorServer(config) as site:
        nonce = site.state.nonces.create(AIPKIT_NONCE_ACTION)
        async with client.get(site.url + path) as response:
            body = await response.read()
            assert response.status == 200
            assert response.headers["Content-Type"] == "text/html; charset=UTF-8"
            assert response.headers.getall("Link") == [
                f'<{site.url}/index.php?rest_route=/>; rel="https://api.w.org/"',
                f'<{site.url}/index.php?rest_route=/wp/v2/pages/6>; rel="alternate"; '
                'type="application/json"',
                f"<{site.url}/>; rel=shortlink",
            ]
        assert body == localise(capture, port=site.port, nonce=nonce)
        assert site.state.page_fetches == 1


def test_every_capture_is_replayed() -> None:
    """A capture added to the vectors is replayed without a change here (or fails loudly)."""
    names = set(aipkit_ajax_capture_names())
    assert {"stream_ok", "cache_ok_multipart", "get_nonce", "unknown_action"} <= names
    assert all(re.fullmatch(r"[a-z_]+", name) for name in names)
