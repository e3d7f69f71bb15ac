"""AIPKit transport: step 1's replies mapped as the real plugin sent them, and both steps
against a real loopback server (the emulator's end-to-end tests cover the rest)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping

import attrs
import pytest
from aiohttp import web

from stages.aipkit.payload import CONTINUED, Continued
from stages.aipkit.tokens import AipkitTokens
from stages.aipkit.transport import (
    CacheAndStream,
    cache_key_of,
    fetch_nonce,
    nonce_of,
    step1_error,
)
from stages.conversations import ConversationStore
from stages.core import Exchange
from stages.errors import (
    BotProtectionError,
    ChatGpttError,
    EmptyMessageError,
    IncompleteReplyError,
    MalformedResponseError,
    NonceRejectedError,
    ServerError,
    SiteError,
    UnknownActionError,
)
from tests.conftest import VECTORS

AIPKIT = VECTORS / "aipkit"
URL = "http://127.0.0.1:8080/wp-admin/admin-ajax.php"


def captured(name: str) -> tuple[int, Mapping[str, str], bytes]:
    response = json.loads((AIPKIT / f"{name}.response.json").read_text("utf-8"))
    return response["status"], response["headers"], (AIPKIT / f"{name}.body").read_bytes()


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("cache_bad_nonce", NonceRejectedError),
        ("cache_missing_nonce_urlenc", NonceRejectedError),
        ("cache_empty_message", EmptyMessageError),
        ("cache_message_zero", EmptyMessageError),
        ("cache_foreign_origin", SiteError),
        ("unknown_action", UnknownActionError),
        ("old_action_on_new_site", UnknownActionError),
    ],
)
def test_step_one_refusals_are_typed(name: str, error: type[ChatGpttError]) -> None:
    status, headers, body = captured(name)
    mapped = step1_error(status, body, URL, headers, nonce="ef9a0a6714")
    assert type(mapped) is error
    if isinstance(mapped, NonceRejectedError):
        assert mapped.nonce == "ef9a0a6714"
        assert "nonce_failure_cache_sse" in str(mapped)
    if isinstance(mapped, SiteError):
        message = json.loads(body)["data"]["message"]
        assert mapped.site_message == message


def test_the_foreign_origin_refusal_says_so() -> None:
    status, headers, body = captured("cache_foreign_origin")
    assert "embed_not_available" in str(step1_error(status, body, URL, headers, nonce=None))


@pytest.mark.parametrize("name", ["cache_ok_urlencoded", "cache_ok_multipart", "cache_for_bad_bot"])
def test_step_one_successes_give_their_key(name: str) -> None:
    _status, _headers, body = captured(name)
    assert cache_key_of(body, URL) == json.loads(body)["data"]["cache_key"]


@pytest.mark.parametrize(
    "body",
    [b"", b"[]", b'{"success":true}', b'{"success":true,"data":{"cache_key":"x y"}}', b"<html>"],
)
def test_a_step_one_success_without_a_key_is_malformed(body: bytes) -> None:
    with pytest.raises(MalformedResponseError):
        cache_key_of(body, URL)


def test_a_step_one_success_cut_where_the_connection_closed_is_incomplete() -> None:
    """PHP's server declares no length: a reply stopping inside its JSON was cut (retried);
    with a declared length the site sent it so (malformed)."""
    _status, _headers, body = captured("cache_ok_urlencoded")
    cut = body[: len(body) // 2]
    assert isinstance(step1_error(200, cut, URL, {}, nonce=None), IncompleteReplyError)
    declared = {"Content-Length": str(len(cut))}
    error = step1_error(200, cut, URL, declared, nonce=None)
    assert type(error) is MalformedResponseError
    page = b'<html><body>Our 27" monitors are on sale</body></html>'  # not JSON: quoted
    error = step1_error(200, page, URL, {}, nonce=None)
    assert type(error) is MalformedResponseError
    assert "27" in str(error)


def test_the_nonce_endpoints_reply_gives_the_nonce() -> None:
    _status, _headers, body = captured("get_nonce")
    assert nonce_of(body, URL) == "ef9a0a6714"
    with pytest.raises(MalformedResponseError):
        nonce_of(b'{"success":false,"data":{"message":"x"}}', URL)


def test_other_step_one_failures_go_through_the_shared_classification() -> None:
    assert isinstance(step1_error(503, b"busy", URL, {}, nonce=None), ServerError)
    challenge = b"<title>Just a moment...</title>"
    assert isinstance(step1_error(403, challenge, URL, {}, nonce=None), BotProtectionError)


# --- against a loopback server -------------------------------------------------------------


def tokens_for(base: str) -> AipkitTokens:
    return AipkitTokens(
        nonce="abcdef0123",
        post_id="6",
        bot_id="5",
        ajax_url=base + "/wp-admin/admin-ajax.php",
        page_url=base + "/?page_id=6",
        site_url=base,
    )


Seen = list[tuple[str, dict[str, str], dict[str, str]]]


@pytest.fixture
async def site() -> AsyncIterator[tuple[str, Seen]]:
    """A tiny stand-in for the site that records what reaches each step."""
    seen: Seen = []

    async def ajax(request: web.Request) -> web.StreamResponse:
        form = dict(await request.post()) if request.method == "POST" else {}
        seen.append((request.method, dict(request.query), {k: str(v) for k, v in form.items()}))
        headers = dict(request.headers)
        seen[-1][2]["__origin"] = headers.get("Origin", "")
        if form.get("action") == "aipkit_get_frontend_chat_nonce":
            return web.json_response({"success": True, "data": {"nonce": "fresh12345"}})
        if form.get("action") == "aipkit_cache_sse_message":
            return web.json_response({"success": True, "data": {"cache_key": "aipkit_sse_K1"}})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
        await response.prepare(request)
        await response.write(b'event: done\ndata: {"finished":true}\n\n')
        return response

    app = web.Application()
    app.router.add_route("*", "/wp-admin/admin-ajax.php", ajax)
    runner = web.AppRunner(app)
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    await tcp.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


async def test_both_steps_send_what_the_plugins_script_sends(site, exchange_for) -> None:  # type: ignore[no-untyped-def]
    base, seen = site
    tokens = tokens_for(base)
    exchange = exchange_for(url=base)

    exchange = attrs.evolve(
        exchange,
        dialect="aipkit",
        tokens=tokens,
        form=(
            ("action", "aipkit_cache_sse_message"),
            ("_ajax_nonce", "abcdef0123"),
            ("message", "Hi"),
        ),
        query=(("bot_id", "5"), ("session_id", "s"), ("conversation_uuid", "c"), ("post_id", "6")),
    )
    result = await CacheAndStream()(exchange)
    assert result.reply is not None
    await result.reply.body.aclose()
    (m1, _q1, form), (m2, query, _f2) = seen
    assert (m1, m2) == ("POST", "GET")
    assert form["message"] == "Hi"
    assert form["__origin"] == "", "no Origin: the plugin refuses one that is not its own"
    assert list(query) == [
        "action",
        "cache_key",
        "bot_id",
        "session_id",
        "conversation_uuid",
        "post_id",
        "_ts",
        "_ajax_nonce",
    ]
    assert query["cache_key"] == "aipkit_sse_K1"
    assert query["_ajax_nonce"] == "abcdef0123"


async def test_the_nonce_is_refreshed_without_the_page(
    site: tuple[str, Seen], exchange_for: Callable[..., Exchange]
) -> None:
    base, seen = site
    fresh = await fetch_nonce(exchange_for(url=base).call, tokens_for(base))
    assert fresh.nonce == "fresh12345"
    assert [(method, form.get("action"), form.get("bot_id")) for method, _q, form in seen] == [
        ("POST", "aipkit_get_frontend_chat_nonce", "5")
    ]


async def test_a_refused_step_one_gives_the_conversation_back(
    exchange_for: Callable[..., Exchange],
) -> None:
    """The message never reached the chat: the conversation it would continue stays held."""

    async def refuse(_request: web.Request) -> web.Response:
        body = {"success": False, "data": {"message": "expired", "code": "nonce_failure_cache_sse"}}
        return web.json_response(body, status=403)

    app = web.Application()
    app.router.add_post("/wp-admin/admin-ajax.php", refuse)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    store = ConversationStore()
    exchange = exchange_for(url=base)
    exchange = attrs.evolve(
        exchange,
        call=attrs.evolve(exchange.call, conversations=store),
        dialect="aipkit",
        tokens=tokens_for(base),
        form=(("action", "aipkit_cache_sse_message"), ("message", "And now?")),
        query=(("bot_id", "5"), ("session_id", "s"), ("conversation_uuid", "c")),
        notes={CONTINUED: Continued(key=b"k", ids={"session_id": "s", "conversation_uuid": "c"})},
    )
    try:
        with pytest.raises(NonceRejectedError):
            await CacheAndStream()(exchange)
    finally:
        await runner.cleanup()
    assert store.take(b"k") == {"session_id": "s", "conversation_uuid": "c"}
