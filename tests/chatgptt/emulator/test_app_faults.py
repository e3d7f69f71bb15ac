"""Every fault kind, in both reply modes, as a raw HTTP client sees it."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterable

import aiohttp
import attrs
import pytest

from chatgptt.emulator import EmulatorConfig, Fault, Mode
from chatgptt.emulator import EmulatorServer as _EmulatorServer
from chatgptt.emulator.answers import CONTROL_MESSAGES, PROHIBITED_WORDS

from .captures import CLASSIC
from .support import AnnouncingLog

AJAX = "/wp-admin/admin-ajax.php"
MODES: list[Mode] = ["sse", "json"]
ANSWER_FRAMES = 1 + 4 + 2  # role, the four 8-character pieces of the echo, finish, [DONE]


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def capture_site(
    config: EmulatorConfig | None = None, faults: Iterable[Fault] = ()
) -> _EmulatorServer:
    """An emulator sending the capture's frames: these tests compare the bytes of a faulted
    reply with a normal one, so every reply must relay the same frames."""
    return _EmulatorServer(attrs.evolve(config or EmulatorConfig(), frames="capture"), faults)


def form(nonce: str, message: str = "Hello") -> dict[str, str]:
    return {"_wpnonce": nonce, "action": "wpaicg_chat_shortcode_message", "message": message}


async def read_until_broken(response: aiohttp.ClientResponse) -> tuple[bytes, bool]:
    """The body bytes received, and whether the body broke off (ClientPayloadError)."""
    data = bytearray()
    try:
        async for chunk in response.content.iter_any():
            data += chunk
    except aiohttp.ClientPayloadError:
        return bytes(data), True
    return bytes(data), False


async def chat(
    client: aiohttp.ClientSession, site: _EmulatorServer, message: str = "Hello"
) -> tuple[int, bytes]:
    async with client.post(site.url + AJAX, data=form(site.nonce, message)) as response:
        return response.status, await response.read()


async def read_into(response: aiohttp.ClientResponse, data: bytearray) -> None:
    """Read the body into ``data`` as it comes, so a timeout keeps what arrived."""
    async for chunk in response.content.iter_any():
        data += chunk


def frames_of(body: bytes) -> list[bytes]:
    return [frame for frame in body.split(b"\n\n") if frame]


async def normal_body(mode: Mode) -> bytes:
    async with capture_site(EmulatorConfig(mode=mode)) as site, aiohttp.ClientSession() as c:
        return (await chat(c, site))[1]


# --- status and challenge ----------------------------------------------------------------


async def test_status_with_retry_after_for_two_requests(client: aiohttp.ClientSession) -> None:
    fault = Fault(kind="status", status=503, retry_after="7", times=2)
    async with capture_site(faults=[fault]) as site:
        for _ in range(2):
            async with client.post(site.url + AJAX, data=form(site.nonce)) as response:
                assert response.status == 503
                assert response.headers["Retry-After"] == "7"
                assert response.headers["Content-Type"] == "text/html; charset=UTF-8"
                assert "503 Service Unavailable" in await response.text()
        async with client.get(site.url) as response:
            assert response.status == 200  # target "ajax": pages are left alone
        assert (await chat(client, site))[0] == 200


async def test_status_on_page_only(client: aiohttp.ClientSession) -> None:
    date = "Wed, 21 Oct 2015 07:28:00 GMT"
    fault = Fault(kind="status", status=429, retry_after=date, target="page", body="slow down")
    async with capture_site(faults=[fault]) as site:
        assert (await chat(client, site))[0] == 200
        async with client.get(site.url) as response:
            assert (response.status, await response.text()) == (429, "slow down")
            assert response.headers["Retry-After"] == date


async def test_cloudflare_origin_error(client: aiohttp.ClientSession) -> None:
    async with capture_site(faults=[Fault(kind="status", status=521, target="any")]) as site:
        async with client.get(site.url) as response:
            text = await response.text()
            assert response.status == 521
            assert response.headers["Server"] == "cloudflare"
            assert "CF-RAY" in response.headers
        assert "521: Web server is down" in text
        assert 'id="cf-cloudflare-status"' in text
        assert "Just a moment" not in text


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("status", "target"), [(None, "page"), (503, "ajax")])
async def test_challenge(
    client: aiohttp.ClientSession, mode: Mode, status: int | None, target: str
) -> None:
    fault = Fault(kind="challenge", status=status, target=target)  # type: ignore[arg-type]
    async with capture_site(EmulatorConfig(mode=mode), faults=[fault]) as site:
        url = site.url if target == "page" else site.url + AJAX
        async with client.post(url, data=form(site.nonce)) as response:
            text = await response.text()
            assert response.status == (status or 403)
            assert response.headers["cf-mitigated"] == "challenge"
            assert response.headers["Content-Type"] == "text/html; charset=UTF-8"
        assert "<title>Just a moment...</title>" in text
        assert '<div id="cf-please-wait">' in text
        assert (await chat(client, site))[0] == 200
        assert list(site.state.received) == [
            site.state.received[0]
        ]  # the challenged one got nowhere


# --- nonce ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("nonce_style", ["403", "json"])
async def test_expire_nonce(client: aiohttp.ClientSession, mode: Mode, nonce_style: str) -> None:
    config = EmulatorConfig(mode=mode, nonce_style=nonce_style)  # type: ignore[arg-type]
    async with capture_site(config, faults=[Fault(kind="expire_nonce")]) as site:
        old = site.nonce
        status, body = await chat(client, site)
        if nonce_style == "403":
            assert (status, body) == (403, b"The link you followed has expired.")
        else:
            assert (status, body) == (200, b'{"status":"error","msg":"Nonce verification failed"}')
        assert site.nonce != old
        assert (await chat(client, site))[0] == 200
        assert len(site.state.received) == 1


# --- drop ----------------------------------------------------------------------------------


async def test_drop_after_tokens_breaks_the_stream(client: aiohttp.ClientSession) -> None:
    async with capture_site(faults=[Fault(kind="drop", after_tokens=2)]) as site:
        async with client.post(site.url + AJAX, data=form(site.nonce)) as response:
            assert response.status == 200
            data, broken = await read_until_broken(response)
        assert broken
        assert frames_of(data) == frames_of(await normal_body("sse"))[:3]
        assert (await chat(client, site))[0] == 200  # the next request is fine


async def test_drop_raises_client_payload_error(client: aiohttp.ClientSession) -> None:
    """A raw aiohttp client reading the whole body gets ClientPayloadError."""
    async with (
        capture_site(faults=[Fault(kind="drop", after_tokens=1)]) as site,
        client.post(site.url + AJAX, data=form(site.nonce)) as response,
    ):
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()


async def test_drop_after_more_tokens_than_sent(client: aiohttp.ClientSession) -> None:
    """The stream still breaks: after the last piece, before the finish frame."""
    async with (
        capture_site(faults=[Fault(kind="drop", after_tokens=99)]) as site,
        client.post(site.url + AJAX, data=form(site.nonce)) as response,
    ):
        data, broken = await read_until_broken(response)
    assert broken
    assert frames_of(data) == frames_of(await normal_body("sse"))[:5]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("after_bytes", [0, 1, 100, 250])
async def test_drop_after_bytes(
    client: aiohttp.ClientSession, mode: Mode, after_bytes: int
) -> None:
    full = await normal_body(mode)
    fault = Fault(kind="drop", after_bytes=after_bytes)
    async with (
        capture_site(EmulatorConfig(mode=mode), faults=[fault]) as site,
        client.post(site.url + AJAX, data=form(site.nonce)) as response,
    ):
        assert response.status == 200
        data, broken = await read_until_broken(response)
    assert broken
    assert data == full[:after_bytes]


@pytest.mark.parametrize("mode", MODES)
async def test_plain_drop_cuts_after_headers(client: aiohttp.ClientSession, mode: Mode) -> None:
    async with (
        capture_site(EmulatorConfig(mode=mode), faults=[Fault(kind="drop")]) as site,
        client.post(site.url + AJAX, data=form(site.nonce)) as response,
    ):
        assert response.status == 200
        assert await read_until_broken(response) == (b"", True)


async def test_drop_in_json_mode_by_tokens_cuts_after_headers(
    client: aiohttp.ClientSession,
) -> None:
    fault = Fault(kind="drop", after_tokens=3)
    async with (
        capture_site(EmulatorConfig(mode="json"), faults=[fault]) as site,
        client.post(site.url + AJAX, data=form(site.nonce)) as response,
    ):
        data, broken = await read_until_broken(response)
    assert (data, broken) == (b"", True)


async def test_drop_on_page(client: aiohttp.ClientSession) -> None:
    fault = Fault(kind="drop", after_bytes=1000, target="page")
    async with capture_site(faults=[fault]) as site:
        async with client.get(site.url) as response:
            data, broken = await read_until_broken(response)
        assert broken
        assert len(data) == 1000
        async with client.get(site.url) as response:
            assert response.status == 200
            assert len(await response.read()) > 1000


# --- stall ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("where", ["before", "inside"])
async def test_short_stall_then_full_answer(
    client: aiohttp.ClientSession, mode: Mode, where: str
) -> None:
    full = await normal_body(mode)
    fault = Fault(kind="stall", seconds=0.01, where=where, after_tokens=2)  # type: ignore[arg-type]
    async with capture_site(EmulatorConfig(mode=mode), faults=[fault]) as site:
        assert await chat(client, site) == (200, full)


async def test_client_timeout_during_stall_before(client: aiohttp.ClientSession) -> None:
    """The client gives up; the handler ends with it and the server stops promptly."""
    site = capture_site(faults=[Fault(kind="stall", seconds=60)])
    await site.start()
    try:
        with pytest.raises(asyncio.TimeoutError):
            async with client.post(
                site.url + AJAX,
                data=form(site.nonce),
                timeout=aiohttp.ClientTimeout(total=0.3),
            ) as response:
                await response.read()
    finally:
        started = time.monotonic()
        await site.stop()
    assert time.monotonic() - started < 5
    assert list(site.state.received) == []  # cancelled before it reached the model


async def test_client_timeout_during_stall_inside(client: aiohttp.ClientSession) -> None:
    fault = Fault(kind="stall", seconds=60, where="inside", after_tokens=2)
    site = capture_site(faults=[fault])
    await site.start()
    data = bytearray()
    try:
        async with client.post(
            site.url + AJAX, data=form(site.nonce), timeout=aiohttp.ClientTimeout(sock_read=0.3)
        ) as response:
            with pytest.raises(asyncio.TimeoutError):
                await read_into(response, data)
    finally:
        started = time.monotonic()
        await site.stop()
    assert time.monotonic() - started < 5
    assert frames_of(bytes(data)) == frames_of(await normal_body("sse"))[:3]


@pytest.mark.parametrize("where", ["before", "inside"])
async def test_shutdown_ends_stalls_with_a_connected_client(
    client: aiohttp.ClientSession, where: str
) -> None:
    """Stopping the server does not wait for a long stall while the client still waits."""
    fault = Fault(kind="stall", seconds=60, where=where)  # type: ignore[arg-type]
    site = capture_site(faults=[fault])
    await site.start()
    headers_seen = asyncio.Event()

    async def ask() -> BaseException | None:
        try:
            async with client.post(site.url + AJAX, data=form(site.nonce)) as response:
                headers_seen.set()
                await response.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            return exc
        return None

    arrived = asyncio.Event()
    site.state.requests = AnnouncingLog(arrived.set)
    request = asyncio.create_task(ask())
    await (headers_seen if where == "inside" else arrived).wait()
    started = time.monotonic()
    await site.stop()
    outcome = await request
    assert time.monotonic() - started < 5
    assert isinstance(outcome, aiohttp.ClientError)


# --- malformed -----------------------------------------------------------------------------


async def malformed_body(variant: str, mode: Mode = "sse", **params: int) -> tuple[bytes, bool]:
    fault = Fault(kind="malformed", variant=variant, **params)  # type: ignore[arg-type]
    async with (
        capture_site(EmulatorConfig(mode=mode), faults=[fault]) as site,
        aiohttp.ClientSession() as client,
        client.post(site.url + AJAX, data=form(site.nonce)) as response,
    ):
        return await read_until_broken(response)


async def test_malformed_invalid_json() -> None:
    normal = frames_of(await normal_body("sse"))
    body, broken = await malformed_body("invalid_json", after_tokens=2)
    frames = frames_of(body)
    assert not broken
    assert frames[:3] == normal[:3]
    assert frames[4:] == normal[3:]
    with pytest.raises(json.JSONDecodeError):
        json.loads(frames[3].removeprefix(b"data: "))


async def test_malformed_limited() -> None:
    body, broken = await malformed_body("limited")
    frames = frames_of(body)
    assert not broken
    assert frames[-1] == b"data: [LIMITED]"
    assert b'"finish_reason": "stop"' not in body
    assert b"[DONE]" not in body
    assert len(frames) == 1 + 4 + 1


async def test_malformed_no_done() -> None:
    body, broken = await malformed_body("no_done")
    assert not broken
    assert frames_of(body) == frames_of(await normal_body("sse"))[:-1]


async def test_malformed_truncated_end() -> None:
    body, broken = await malformed_body("truncated_end")
    assert not broken
    assert frames_of(body) == frames_of(await normal_body("sse"))[:-2]


async def test_malformed_invalid_utf8() -> None:
    body, broken = await malformed_body("invalid_utf8", after_tokens=1)
    frames = frames_of(body)
    assert not broken
    assert b'"content": "\xff\xfe"' in frames[2]
    with pytest.raises(UnicodeDecodeError):
        body.decode()
    assert len(frames) == ANSWER_FRAMES + 1


async def test_malformed_in_json_mode() -> None:
    normal = await normal_body("json")
    warned, _ = await malformed_body("invalid_json", "json")
    assert warned.startswith(b"<br />\n<b>Warning</b>")
    assert warned.endswith(normal)
    truncated, broken = await malformed_body("truncated_end", "json")
    assert not broken
    assert truncated == normal[: len(normal) // 2]
    invalid, _ = await malformed_body("invalid_utf8", "json")
    assert b'"data":"\xff\xfeHello from upstream: Hello"' in invalid
    for variant in ("limited", "no_done"):  # no JSON form: a normal reply
        assert (await malformed_body(variant, "json"))[0] == normal


# --- error words, control frames, error objects ---------------------------------------------


async def test_error_words_default_is_the_capture(client: aiohttp.ClientSession) -> None:
    async with capture_site(faults=[Fault(kind="error_words")]) as site:
        status, body = await chat(client, site)
    assert (status, body) == (200, (CLASSIC / "stream_upstream_error.body").read_bytes())
    assert len(site.state.received) == 2  # the plugin's retry: the model saw it twice


async def test_error_words_message_and_limited(client: aiohttp.ClientSession) -> None:
    fault = Fault(kind="error_words", message='Rate "limit" reached', limited=True)
    async with capture_site(faults=[fault]) as site:
        body = (await chat(client, site))[1]
    frames = frames_of(body)
    assert frames[0] == b'event: message\ndata: {"choices":[{"delta":{"content":"Rate"}}]}'
    assert frames[1] == b'event: message\ndata: {"choices":[{"delta":{"content":" "limit""}}]}'
    assert frames[3] == frames[7] == b'data: {"choices":[{"finish_reason":"stop"}]}'
    assert frames[-1] == b"data: [LIMITED]"
    assert len(frames) == 9


async def test_error_words_in_json_mode(client: aiohttp.ClientSession) -> None:
    fault = Fault(kind="error_words", message="Rate limit reached")
    async with (
        capture_site(EmulatorConfig(mode="json"), faults=[fault]) as site,
        client.post(site.url + AJAX, data=form(site.nonce)) as response,
    ):
        payload = await response.json()
    assert payload["status"] == "error"
    assert payload["msg"] == "Rate limit reached"
    assert payload["log"] is False
    assert "greeting_message" in payload
    assert len(site.state.received) == 1


@pytest.mark.parametrize("flag", ["tokenLimitReached", "pineconeError", "modflag"])
async def test_control_frame_ends_the_stream(client: aiohttp.ClientSession, flag: str) -> None:
    async with capture_site(faults=[Fault(kind="control", flag=flag)]) as site:  # type: ignore[arg-type]
        body = (await chat(client, site))[1]
    (frame,) = frames_of(body)
    assert json.loads(frame.removeprefix(b"data: ")) == {"msg": CONTROL_MESSAGES[flag], flag: True}
    assert list(site.state.received) == []


@pytest.mark.parametrize("flag", ["ipBanned", "messageFlagged"])
async def test_control_frame_then_the_answer(client: aiohttp.ClientSession, flag: str) -> None:
    """The plugin bug: for these flags the answer still streams after the control frame."""
    async with capture_site(faults=[Fault(kind="control", flag=flag, message="no")]) as site:  # type: ignore[arg-type]
        body = (await chat(client, site))[1]
    first, *rest = frames_of(body)
    assert json.loads(first.removeprefix(b"data: ")) == {"msg": "no", flag: True}
    assert rest == frames_of(await normal_body("sse"))


@pytest.mark.parametrize(
    ("flag", "payload"),
    [
        (
            "tokenLimitReached",
            {"msg": "You have reached your token limit.", "tokenLimitReached": True},
        ),
        ("ipBanned", {"status": "error", "msg": "You are not allowed to access this feature."}),
        ("messageFlagged", {"status": "error", "msg": PROHIBITED_WORDS}),
        ("modflag", {"status": "error", "msg": PROHIBITED_WORDS}),
        ("pineconeError", {"status": "error", "msg": CONTROL_MESSAGES["pineconeError"]}),
    ],
)
async def test_control_in_json_mode(
    client: aiohttp.ClientSession, flag: str, payload: dict[str, object]
) -> None:
    fault = Fault(kind="control", flag=flag)  # type: ignore[arg-type]
    async with (
        capture_site(EmulatorConfig(mode="json"), faults=[fault]) as site,
        client.post(site.url + AJAX, data=form(site.nonce)) as response,
    ):
        assert await response.json() == payload


@pytest.mark.parametrize("mode", MODES)
async def test_error_object(client: aiohttp.ClientSession, mode: Mode) -> None:
    fault = Fault(kind="error_object", message="Model overloaded")
    async with capture_site(EmulatorConfig(mode=mode), faults=[fault]) as site:
        body = (await chat(client, site))[1]
    if mode == "sse":
        assert body == b'data: {"error":{"message":"Model overloaded"}}\n\n'
    else:
        assert json.loads(body)["msg"] == "Model overloaded"


async def test_fault_for_every_request(client: aiohttp.ClientSession) -> None:
    async with capture_site(faults=[Fault(kind="status", status=502, times=None)]) as site:
        for _ in range(5):
            assert (await chat(client, site))[0] == 502
        site.faults.clear()
        assert (await chat(client, site))[0] == 200
