"""The emulator answers like the captured site: replays of every classic capture, and more."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import attrs
import pytest

from chatgptt.emulator import EmulatorConfig, EmulatorServer, UpstreamError
from chatgptt.emulator.nonces import IMAGE_NONCE_ACTION

from .captures import CLASSIC, Capture, ajax_capture_names, load_capture, localise

AJAX = "/wp-admin/admin-ajax.php"
# Headers of the capture's PHP server or of aiohttp, not of WordPress.
_SERVER_HEADERS = frozenset(
    {"host", "date", "connection", "x-powered-by", "server", "content-length", "transfer-encoding"}
)


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def site() -> AsyncIterator[EmulatorServer]:
    async with EmulatorServer() as server:
        yield server


def chat_form(nonce: str, message: str = "Hello", **extra: str) -> dict[str, str]:
    return {
        "_wpnonce": nonce,
        "post_id": "4",
        "action": "wpaicg_chat_shortcode_message",
        "message": message,
        "bot_id": "0",
        "wpaicg_chat_client_id": "Ab3dE5gH9k",
        **extra,
    }


def config_for(capture: Capture) -> EmulatorConfig:
    return EmulatorConfig(
        mode="sse" if capture.streamed else "json",
        model_name="gpt4o-dep" if capture.name.startswith("azure") else "gpt-4o-mini",
        frames="capture",
    )


def content_type_headers(response: aiohttp.ClientResponse) -> list[tuple[bytes, bytes]]:
    return [(k, v) for k, v in response.raw_headers if k.lower() == b"content-type"]


@pytest.mark.parametrize("name", ajax_capture_names())
async def test_replays_capture(name: str, client: aiohttp.ClientSession) -> None:
    """Each captured request gets the captured status, headers and body bytes."""
    capture = load_capture(name)
    async with EmulatorServer(config_for(capture)) as site:
        fit = functools.partial(localise, port=site.port, nonce=site.nonce)
        target = fit(capture.target.encode()).decode()
        headers = [(k, fit(v.encode()).decode()) for k, v in capture.headers]
        async with client.request(
            capture.method,
            site.url + target,
            headers=headers,
            data=fit(capture.body) if capture.body else None,
        ) as response:
            body = await response.read()
            assert response.status == capture.status
            assert body == fit(capture.response_body)
            (content_type,) = content_type_headers(response)
            if capture.response_header("Content-Type") == "text/event-stream;charset=UTF-8":
                assert content_type == (b"Content-type", b"text/event-stream;charset=UTF-8")
                assert response.headers.get("Transfer-Encoding") == "chunked"
                assert "Content-Length" not in response.headers
            else:
                assert content_type[1].decode() == capture.response_header("Content-Type")
            sent = [(k.decode(), v.decode()) for k, v in response.raw_headers]
            assert [h for h in sent if h[0].lower() not in _SERVER_HEADERS] == [
                h for h in capture.response_headers.items() if h[0].lower() not in _SERVER_HEADERS
            ]
        assert list(site.state.received) == capture.upstream


@pytest.mark.parametrize(
    ("path", "capture_name", "front_page"),
    [("/", "landing_front_page", True), ("/?page_id=4", "landing", False)],
)
async def test_landing_page_is_the_capture(
    path: str, capture_name: str, front_page: bool, client: aiohttp.ClientSession
) -> None:
    """The landing pages are the captured ones with this server's address and nonces."""
    capture_body = (CLASSIC / f"{capture_name}.body").read_bytes()
    async with EmulatorServer() as site:
        image_nonce = site.state.nonces.create(IMAGE_NONCE_ACTION)
        async with client.get(site.url + path) as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "text/html; charset=UTF-8"
            expected = localise(
                capture_body, port=site.port, nonce=site.nonce, image_nonce=image_nonce
            )
            assert await response.read() == expected
            shortlink = f"{site.url}/" if front_page else f"{site.url}/?p=4"
            assert f"<{shortlink}>; rel=shortlink" in response.headers.getall("Link")
        assert site.state.page_fetches == 1


@pytest.mark.parametrize("path", ["/chat", "/chat/", "/?page_id=4"])
async def test_chat_page_paths(
    site: EmulatorServer, client: aiohttp.ClientSession, path: str
) -> None:
    """``/chat`` and ``/?page_id=<post id>`` serve the chat page too."""
    async with client.get(site.url + path) as response:
        assert response.status == 200
        assert f'data-nonce="{site.nonce}"' in await response.text()


@pytest.mark.parametrize("path", ["/nothing", "/?page_id=5", "/wp-admin/admin-ajax.phpx"])
async def test_other_paths_are_not_found(
    site: EmulatorServer, client: aiohttp.ClientSession, path: str
) -> None:
    async with client.get(site.url + path) as response:
        assert response.status == 404
        assert response.headers["Content-Type"] == "text/html; charset=UTF-8"
        assert "Nothing here" in await response.text()


async def test_original_provider_flow(client: aiohttp.ClientSession) -> None:
    """g4f's ChatGptt: first data-nonce/data-post-id by regex, urlencoded POST, ``json()``."""
    async with EmulatorServer(EmulatorConfig(mode="json")) as site:
        async with client.get(site.url) as response:
            page = await response.text()
        nonce = re.search(r'data-nonce="(.*?)"', page)
        post_id = re.search(r'data-post-id="(.*?)"', page)
        assert nonce is not None
        assert post_id is not None
        prompt = 'System: Be brief.\nUser: Hi\nAssistant: Hello!\nUser: Say "x" & <y>\nAssistant:'
        form = chat_form(nonce.group(1), prompt, post_id=post_id.group(1))
        form["wpaicg_chat_history"] = "None"
        headers = {"accept": "application/json", "origin": site.url, "referer": site.url + "/chat"}
        async with client.post(site.url + AJAX, data=form, headers=headers) as response:
            assert (await response.json())["data"] == "Hello from upstream: " + prompt


async def test_original_provider_fails_on_streams(
    site: EmulatorServer, client: aiohttp.ClientSession
) -> None:
    """With streaming on, ``response.json()`` raises as it did against the real site."""
    async with client.post(site.url + AJAX, data=chat_form(site.nonce)) as response:
        with pytest.raises(aiohttp.ContentTypeError, match="text/event-stream;charset=utf-8"):
            await response.json()


@pytest.mark.parametrize("mode", ["sse", "json"])
async def test_multipart_and_urlencoded_agree(client: aiohttp.ClientSession, mode: str) -> None:
    config = EmulatorConfig(mode=mode, frames="capture")  # type: ignore[arg-type]
    async with EmulatorServer(config) as site:
        multipart = aiohttp.FormData(chat_form(site.nonce), default_to_multipart=True)
        async with client.post(site.url + AJAX, data=multipart) as response:
            from_multipart = await response.read()
        async with client.post(site.url + AJAX, data=chat_form(site.nonce)) as response:
            from_urlencoded = await response.read()
    assert from_multipart == from_urlencoded
    assert b"Hello fr" in from_multipart or b"Hello from upstream: Hello" in from_multipart


async def test_get_reads_action_and_nonce_but_not_message(
    site: EmulatorServer, client: aiohttp.ClientSession
) -> None:
    """admin-ajax reads ``$_REQUEST`` for the action and nonce; the plugin reads ``$_POST``."""
    async with client.get(site.url + AJAX, params=chat_form(site.nonce)) as response:
        assert await response.json() == {
            "status": "error",
            "msg": "It appears that nothing was inputted.",
        }
    async with client.get(site.url + AJAX, params=chat_form("0000000000")) as response:
        assert response.status == 403


async def test_post_fields_win_over_query(
    site: EmulatorServer, client: aiohttp.ClientSession
) -> None:
    params = {"_wpnonce": "0000000000", "action": "nothing"}
    async with client.post(site.url + AJAX, params=params, data=chat_form(site.nonce)) as response:
        assert response.status == 200
        assert b"Hello fr" in await response.read()


async def test_repeated_field_keeps_last_value(
    site: EmulatorServer, client: aiohttp.ClientSession
) -> None:
    """PHP keeps the last of repeated fields."""
    form = [*chat_form(site.nonce, "first").items(), ("message", "second")]
    async with client.post(site.url + AJAX, data=form) as response:
        await response.read()
    assert site.state.received[-1][-1] == {"role": "user", "content": "second"}


async def test_missing_action_and_other_bodies(
    site: EmulatorServer, client: aiohttp.ClientSession
) -> None:
    async with client.post(site.url + AJAX, json={"action": "x"}) as response:
        assert (response.status, await response.text()) == (400, "0")
    async with client.put(site.url + AJAX, data=chat_form(site.nonce)) as response:
        assert (response.status, await response.text()) == (400, "0")


@pytest.mark.parametrize("action", ["wpaicg_chat_shortcode_message", "wpaicg_chatbox_message"])
async def test_both_actions_answer(client: aiohttp.ClientSession, action: str) -> None:
    async with EmulatorServer(EmulatorConfig(mode="json")) as site:
        form = chat_form(site.nonce) | {"action": action}
        async with client.post(site.url + AJAX, data=form) as response:
            assert (await response.json())["status"] == "success"


async def test_json_nonce_style(client: aiohttp.ClientSession) -> None:
    async with (
        EmulatorServer(EmulatorConfig(nonce_style="json")) as site,
        client.post(site.url + AJAX, data=chat_form("0123456789")) as response,
    ):
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/json; charset=UTF-8"
        assert await response.read() == b'{"status":"error","msg":"Nonce verification failed"}'


@pytest.mark.parametrize(
    ("referer", "link"),
    [
        (None, False),
        ("https://elsewhere.example/chat", False),
        ("{url}/chat", True),
        ("http://127.0.0.1:1/other-port", True),
        ("{url}" + AJAX, False),
    ],
)
async def test_nonce_page_links_back_to_same_host_referer(
    site: EmulatorServer, client: aiohttp.ClientSession, referer: str | None, link: bool
) -> None:
    """WordPress links back only to a referer on its own host that is not this URL."""
    headers = {} if referer is None else {"Referer": referer.format(url=site.url)}
    async with client.post(
        site.url + AJAX, data=chat_form("0123456789"), headers=headers
    ) as response:
        text = await response.text()
    assert response.status == 403
    expected = "The link you followed has expired."
    if link:
        assert referer is not None
        expected += f'</p><p><a href="{referer.format(url=site.url)}">Please try again.</a>'
    assert text == expected


async def test_nonce_rotation(site: EmulatorServer, client: aiohttp.ClientSession) -> None:
    """A rotated-out nonce is refused unless the previous tick is kept; pages show the new one."""
    first = site.nonce
    second = site.rotate_nonce(keep_previous=True)
    assert second != first
    assert second == site.nonce
    for nonce, status in ((first, 200), (second, 200)):
        async with client.post(site.url + AJAX, data=chat_form(nonce)) as response:
            assert response.status == status
            await response.read()
    third = site.rotate_nonce()
    for nonce, status in ((second, 403), (first, 403), (third, 200)):
        async with client.post(site.url + AJAX, data=chat_form(nonce)) as response:
            assert response.status == status
            await response.read()
    async with client.get(site.url) as response:
        page = await response.text()
    assert f'data-nonce="{third}"' in page
    assert f'"search_nonce":"{third}"' in page


async def test_search_nonce_and_image_nonce(
    site: EmulatorServer, client: aiohttp.ClientSession
) -> None:
    """``search_nonce`` works as ``_wpnonce``; the image-upload nonce on the page does not."""
    async with client.get(site.url) as response:
        page = await response.text()
    search = re.search(r'"search_nonce":"([0-9a-f]{10})"', page)
    image = re.search(r'id="wpaicg-img-nonce" value="([0-9a-f]{10})"', page)
    assert search is not None
    assert image is not None
    async with client.post(site.url + AJAX, data=chat_form(search.group(1))) as response:
        assert response.status == 200
        await response.read()
    async with client.post(site.url + AJAX, data=chat_form(image.group(1))) as response:
        assert response.status == 403


@pytest.mark.parametrize("action", ["wpaicg_chat_shortcode_message", "wpaicg_chatbox_message"])
async def test_aipkit_site_refuses_classic_actions(
    client: aiohttp.ClientSession, action: str
) -> None:
    """A site on plugin 2.3+ (the AIPKit dialect) answers the classic actions with ``400 0``."""
    async with (
        EmulatorServer(EmulatorConfig(dialect="aipkit")) as site,
        client.post(site.url + AJAX, data=chat_form(site.nonce, action=action)) as response,
    ):
        assert (response.status, await response.text()) == (400, "0")
    assert list(site.state.received) == []


@pytest.mark.parametrize(
    "action",
    ["aipkit_cache_sse_message", "aipkit_frontend_chat_stream", "aipkit_get_frontend_chat_nonce"],
)
async def test_classic_site_refuses_aipkit_actions(
    site: EmulatorServer, client: aiohttp.ClientSession, action: str
) -> None:
    form = {"action": action, "_ajax_nonce": site.nonce, "bot_id": "5", "message": "Hello"}
    async with client.post(site.url + AJAX, data=form) as response:
        assert (response.status, await response.text()) == (400, "0")
    assert (site.state.cache_posts, site.state.stream_gets, site.state.nonce_fetches) == (0, 0, 0)


async def test_custom_ajax_path(client: aiohttp.ClientSession) -> None:
    async with EmulatorServer(EmulatorConfig(ajax_path="/rizq")) as site:
        async with client.get(site.url) as response:
            page = await response.text()
        expected = site.url.replace("/", "\\/") + "\\/rizq"
        assert f'"ajax_url":"{expected}"' in page
        async with client.post(site.url + "/rizq", data=chat_form(site.nonce)) as response:
            assert response.status == 200
            await response.read()
        async with client.post(site.url + AJAX, data=chat_form(site.nonce)) as response:
            assert response.status == 404


async def test_page_urls_follow_the_host_header(
    site: EmulatorServer, client: aiohttp.ClientSession
) -> None:
    async with client.get(site.url, headers={"Host": "chat.example:8443"}) as response:
        page = await response.text()
    assert 'data-url="http://chat.example:8443"' in page
    assert '"ajax_url":"http:\\/\\/chat.example:8443\\/wp-admin\\/admin-ajax.php"' in page


async def test_config_changes_between_requests(
    site: EmulatorServer, client: aiohttp.ClientSession
) -> None:
    async with client.post(site.url + AJAX, data=chat_form(site.nonce)) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        await response.read()
    site.config = attrs.evolve(site.config, mode="json")
    async with client.post(site.url + AJAX, data=chat_form(site.nonce)) as response:
        assert response.headers["Content-Type"] == "application/json; charset=UTF-8"
        await response.read()


@pytest.mark.parametrize("token_chars", [1, 3, 8, 1000])
async def test_token_chars_and_answer_chars(
    client: aiohttp.ClientSession, token_chars: int
) -> None:
    config = EmulatorConfig(token_chars=token_chars, answer_chars=50)
    async with (
        EmulatorServer(config) as site,
        client.post(site.url + AJAX, data=chat_form(site.nonce)) as response,
    ):
        body = (await response.read()).decode()
    chunks = [json.loads(line[6:]) for line in body.split("\n\n") if line.startswith("data: {")]
    pieces = [c["choices"][0]["delta"]["content"] for c in chunks if c["choices"][0]["delta"]]
    pieces = [piece for piece in pieces if piece]
    assert len("".join(pieces)) == 50
    assert all(len(piece) == token_chars for piece in pieces[:-1])


async def test_history_reaches_the_recap_model(client: aiohttp.ClientSession) -> None:
    from chatgptt.emulator import recap_model

    async with EmulatorServer(EmulatorConfig(mode="json", model=recap_model)) as site:
        history = '["Human: Hi there", "AI: Hello!"]'
        form = chat_form(site.nonce, "And now?", wpaicg_chat_history=history)
        async with client.post(site.url + AJAX, data=form) as response:
            data = (await response.json())["data"]
    assert data == (
        'Hello from upstream: And now? (I saw 2 earlier turns; the first user turn was "Hi there".)'
    )


async def test_model_errors(client: aiohttp.ClientSession) -> None:
    """A model's UpstreamError is relayed; any other exception is WordPress's 500 page."""

    def failing(messages: Any) -> str:
        raise UpstreamError("Rate limit reached")

    def crashing(messages: Any) -> str:
        raise RuntimeError("bug")

    async with EmulatorServer(EmulatorConfig(mode="json", model=failing)) as site:
        async with client.post(site.url + AJAX, data=chat_form(site.nonce)) as response:
            assert (await response.json())["msg"] == "Rate limit reached"
        site.config = attrs.evolve(site.config, model=crashing)
        async with client.post(site.url + AJAX, data=chat_form(site.nonce)) as response:
            assert response.status == 500
            assert "critical error" in await response.text()


async def test_received_is_a_copy(client: aiohttp.ClientSession) -> None:
    def scribbling(messages: Any) -> str:
        messages[-1]["content"] = "changed"
        return "ok"

    async with (
        EmulatorServer(EmulatorConfig(model=scribbling)) as site,
        client.post(site.url + AJAX, data=chat_form(site.nonce)) as response,
    ):
        await response.read()
    assert site.state.received[0][-1]["content"] == "Hello"


async def test_counters_and_request_log(client: aiohttp.ClientSession) -> None:
    async with EmulatorServer(EmulatorConfig(request_log_limit=2)) as site:
        async with client.get(site.url) as response:
            await response.read()
        for message in ("one", "two"):
            data = chat_form(site.nonce, message)
            async with client.post(
                site.url + AJAX, data=data, headers={"X-Test": message}
            ) as response:
                await response.read()
        assert (site.state.page_fetches, site.state.ajax_requests) == (1, 2)
        first, second = site.state.requests  # the page fetch fell out of the log
        assert (first.method, first.path, first.form["message"]) == ("POST", AJAX, "one")
        assert second.header("x-test") == "two"


async def test_head_request_gets_headers_only(
    site: EmulatorServer, client: aiohttp.ClientSession
) -> None:
    async with client.head(site.url) as response:
        assert response.status == 200
        assert await response.read() == b""
    async with client.get(site.url) as response:
        assert response.status == 200
