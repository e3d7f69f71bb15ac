"""Where the emulator comes closer to the real site: PHP's close-delimited replies, varied
upstream frames, the streaming flag on the page — and the faults that reproduce what hostile
sites do (``linger``, ``empty_stream``, ``cut``, ``firewall``). Wire-level checks use a raw
socket, since aiohttp's client hides how a body was delimited."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest

from chatgptt.emulator import EmulatorConfig, EmulatorServer, Fault, Mode
from chatgptt.emulator.firewalls import FIREWALL_NAMES, FIREWALL_PAGES
from chatgptt.emulator.replies import DONE_FRAME
from stages.protection import detect_protection

AJAX = "/wp-admin/admin-ajax.php"
ANSWER = "Hello from upstream: Hello"


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def form(nonce: str) -> dict[str, str]:
    return {"_wpnonce": nonce, "action": "wpaicg_chat_shortcode_message", "message": "Hello"}


async def raw_exchange(
    site: EmulatorServer, method: str, path: str, data: dict[str, str] | None = None
) -> tuple[str, dict[str, str], bytes]:
    """One HTTP/1.1 request on a fresh socket; the status line, headers (lower-case names)
    and every byte after them until the server closes — or, for a kept-alive connection,
    until the declared body has come."""
    reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
    body = urlencode(data).encode() if data is not None else b""
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{site.port}\r\n"
    if data is not None:
        head += "Content-Type: application/x-www-form-urlencoded\r\n"
        head += f"Content-Length: {len(body)}\r\n"
    writer.write(head.encode() + b"\r\n" + body)
    await writer.drain()
    raw = await reader.readuntil(b"\r\n\r\n")
    status, *lines = raw.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines if x)}
    rest = bytearray()
    length = headers.get("content-length")
    async with asyncio.timeout(10):
        if length is not None:
            rest += await reader.readexactly(int(length))
        elif headers.get("transfer-encoding") == "chunked":
            rest += await reader.readuntil(b"\r\n0\r\n\r\n")
        else:
            while chunk := await reader.read(65536):
                rest += chunk
    writer.close()
    return status, headers, bytes(rest)


def texts_of(body: bytes) -> list[str]:
    """The content pieces of an event-stream body, parsed as JSON (any spacing)."""
    pieces = []
    for block in body.split(b"\n\n"):
        if block.startswith(b"data: {"):
            delta = json.loads(block[6:])["choices"][0]["delta"]
            if delta.get("content"):
                pieces.append(delta["content"])
    return pieces


# --- the real server's transport ------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sse", "json"])
async def test_close_framing_sends_every_reply_as_phps_server_does(mode: Mode) -> None:
    async with EmulatorServer(EmulatorConfig(mode=mode, framing="close")) as site:
        for method, path, data in (
            ("GET", "/", None),
            ("POST", AJAX, form(site.nonce)),
            ("GET", "/missing", None),
        ):
            status, headers, body = await raw_exchange(site, method, path, data)
            assert "content-length" not in headers, (path, headers)
            assert "transfer-encoding" not in headers, (path, headers)
            assert headers["connection"] == "close"
            assert body, path  # the body came, and ended when the server closed
        assert status.endswith("404 Not Found")
    # The chat reply read that way is the whole answer.
    if mode == "sse":
        async with EmulatorServer(EmulatorConfig(mode=mode, framing="close")) as site:
            _, _, body = await raw_exchange(site, "POST", AJAX, form(site.nonce))
        assert "".join(texts_of(body)) == ANSWER
        assert body.endswith(DONE_FRAME)


async def test_length_framing_declares_every_body_and_keeps_alive() -> None:
    async with EmulatorServer() as site:
        _, page, _ = await raw_exchange(site, "GET", "/")
        _, stream, _ = await raw_exchange(site, "POST", AJAX, form(site.nonce))
    assert "content-length" in page
    assert stream["transfer-encoding"] == "chunked"
    assert "connection" not in stream or stream["connection"].lower() != "close"


async def test_a_drop_under_close_framing_looks_like_a_clean_end(
    client: aiohttp.ClientSession,
) -> None:
    config = EmulatorConfig(framing="close")
    async with (
        EmulatorServer(config, faults=[Fault(kind="drop", after_tokens=1)]) as site,
        client.post(site.url + AJAX, data=form(site.nonce)) as response,
    ):
        body = await response.read()  # no ClientPayloadError: nothing says it was cut
    assert texts_of(body) == ["Hello fr"]
    assert b'"stop"' not in body  # no finish frame
    assert DONE_FRAME not in body


@pytest.mark.parametrize("framing", ["length", "close"])
async def test_a_cut_is_close_delimited_whatever_the_framing(
    client: aiohttp.ClientSession, framing: Any
) -> None:
    config = EmulatorConfig(framing=framing)
    async with EmulatorServer(config, faults=[Fault(kind="cut", after_tokens=2)]) as site:
        _, headers, body = await raw_exchange(site, "POST", AJAX, form(site.nonce))
        assert (await client.post(site.url + AJAX, data=form(site.nonce))).status == 200
    assert "content-length" not in headers
    assert "transfer-encoding" not in headers
    assert texts_of(body) == ["Hello fr", "om upstr"]
    assert DONE_FRAME not in body


async def test_a_cut_of_the_page_after_some_bytes(client: aiohttp.ClientSession) -> None:
    fault = Fault(kind="cut", after_bytes=300, target="page")
    async with EmulatorServer(faults=[fault]) as site:
        _, headers, body = await raw_exchange(site, "GET", "/")
    assert "content-length" not in headers
    assert len(body) == 300


# --- the relayed frames vary as a real upstream's do ------------------------------------------


async def test_varied_frames_differ_between_replies_but_carry_the_same_answer(
    client: aiohttp.ClientSession,
) -> None:
    bodies = []
    async with EmulatorServer() as site:
        for _ in range(6):
            async with client.post(site.url + AJAX, data=form(site.nonce)) as response:
                bodies.append(await response.read())
    ids = set()
    for body in bodies:
        assert "".join(texts_of(body)) == ANSWER
        first = json.loads(body.split(b"\n\n")[0][6:])
        assert first["id"].startswith("chatcmpl-")
        assert len(first["id"]) == len("chatcmpl-") + 29
        ids.add(first["id"])
    assert len(ids) == 6
    assert len(set(bodies)) == 6


async def test_capture_frames_are_the_same_bytes_every_time(
    client: aiohttp.ClientSession,
) -> None:
    async with EmulatorServer(EmulatorConfig(frames="capture")) as site:
        bodies = set()
        for _ in range(3):
            async with client.post(site.url + AJAX, data=form(site.nonce)) as response:
                bodies.add(await response.read())
    assert len(bodies) == 1
    assert b'"id": "chatcmpl-fake0001"' in bodies.pop()


# --- the page says whether the site streams ---------------------------------------------------


@pytest.mark.parametrize(("mode", "flag"), [("sse", "1"), ("json", "0")])
@pytest.mark.parametrize("style", ["capture", "widget", "reordered"])
async def test_the_page_says_whether_the_site_streams(
    client: aiohttp.ClientSession, mode: Mode, flag: str, style: Any
) -> None:
    async with (
        EmulatorServer(EmulatorConfig(mode=mode, page_style=style)) as site,
        client.get(site.url + "/") as response,
    ):
        page = await response.text()
    assert f'data-openai_stream_nav="{flag}"' in page
    assert page.count("data-openai_stream_nav=") == 1


# --- faults that reproduce hostile sites --------------------------------------------------------


async def test_linger_sends_comments_instead_of_done_until_the_client_leaves(
    client: aiohttp.ClientSession,
) -> None:
    async with EmulatorServer(faults=[Fault(kind="linger", seconds=0.01)]) as site:
        async with client.post(site.url + AJAX, data=form(site.nonce)) as response:
            seen = b""
            async with asyncio.timeout(10):
                while not seen.endswith(b":\n:\n:\n"):
                    seen += await response.content.readany()
        assert b"[DONE]" not in seen
        assert "".join(texts_of(seen)) == ANSWER
        assert seen.split(b"\n\n")[-2].count(b'"stop"') == 1  # the finish frame, then comments
        assert (await client.get(site.url + "/")).status == 200
    # Leaving the block stopped the server at once, although the fault never ends by itself.


async def test_linger_in_json_mode_is_an_ordinary_reply(client: aiohttp.ClientSession) -> None:
    config = EmulatorConfig(mode="json")
    async with (
        EmulatorServer(config, faults=[Fault(kind="linger")]) as site,
        client.post(site.url + AJAX, data=form(site.nonce)) as response,
    ):
        assert (await response.json())["data"] == ANSWER


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, b""),
        ("nothing", b""),
        ("php_fatal", b"Call to undefined function curl_init()"),
        ("challenge", b"<title>Just a moment...</title>"),
    ],
)
async def test_empty_stream_has_the_stream_headers_and_no_events(
    client: aiohttp.ClientSession, content: Any, expected: bytes
) -> None:
    fault = Fault(kind="empty_stream", content=content)
    async with (
        EmulatorServer(faults=[fault]) as site,
        client.post(site.url + AJAX, data=form(site.nonce)) as response,
    ):
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/event-stream;charset=UTF-8"
        body = await response.read()
    assert expected in body
    assert b"data:" not in body
    if not expected:
        assert body == b""


@pytest.mark.parametrize("name", FIREWALL_NAMES)
@pytest.mark.parametrize("target", ["page", "ajax"])
async def test_firewall_pages_come_with_their_status_and_markers(
    client: aiohttp.ClientSession, name: Any, target: Any
) -> None:
    page = FIREWALL_PAGES[name]
    async with EmulatorServer(
        faults=[Fault(kind="firewall", firewall=name, target=target)]
    ) as site:
        if target == "page":
            response = await client.get(site.url + "/")
        else:
            response = await client.post(site.url + AJAX, data=form(site.nonce))
        async with response:
            body = await response.read()
            headers = response.headers
        assert response.status == page.status
        for header, value in page.headers:
            assert headers[header] == value
        found = detect_protection(body)
        assert found is not None
        assert found.firewall == page.firewall
        # Used up: the next request is the site's own.
        assert (await client.get(site.url + "/")).status == 200


async def test_a_firewall_status_can_be_overridden(client: aiohttp.ClientSession) -> None:
    fault = Fault(kind="firewall", firewall="sucuri_block", status=200)
    async with (
        EmulatorServer(faults=[fault]) as site,
        client.post(site.url + AJAX, data=form(site.nonce)) as response,
    ):
        assert response.status == 200
        assert b"Access Denied - Sucuri Website Firewall" in await response.read()
