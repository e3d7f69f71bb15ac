"""The AIPKit site's behaviour beyond the captures, as checked on the real plugin 2.4.71.

One-use cache keys and their expiry, the order of step 2's checks, who may call from which
``Origin``, the server-side history per ``(session_id, conversation_uuid)`` and its cap, and
how messages are logged. Every expectation here was seen on the real site (see the module
docstrings of :mod:`chatgptt.emulator.aipkit`).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiohttp
import attrs
import pytest

from chatgptt.emulator import EmulatorConfig, EmulatorServer, ManualClock, UpstreamError
from chatgptt.emulator.aipkit.answers import (
    CACHE_EXPIRED,
    CACHE_KEY_MISSING,
    CACHE_NOT_FOUND,
    CONVERSATION_MISSING,
    CORS_DENIED,
    EMPTY_DATA_TO_CACHE,
    INVALID_BOT,
    LOG_FAILED,
    NONCE_FAILURE_CACHE,
    SECURITY_CHECK_FAILED,
    SESSION_MISSING,
)
from chatgptt.emulator.aipkit.store import CACHE_CLEANUP_SECONDS
from chatgptt.emulator.model import Message
from chatgptt.emulator.nonces import AIPKIT_NONCE_ACTION

from .aipkit_support import (
    AJAX,
    CONVERSATION,
    PADDING,
    SESSION,
    Guest,
    summary,
    text_of,
)
from .aipkit_support import (
    parse_events as parse,
)

START = 1_795_672_367.0  # the captures' time: Thu, 26 Nov 2026 05:52:47 GMT
SYSTEM = {
    "role": "system",
    "content": "You are a helpful AI Assistant. Please be friendly. "
    "Today's date is November 26, 2026.",
}


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
async def site(clock: ManualClock) -> AsyncIterator[EmulatorServer]:
    async with EmulatorServer(EmulatorConfig(dialect="aipkit", clock=clock)) as server:
        yield server


@pytest.fixture
async def guest(site: EmulatorServer, client: aiohttp.ClientSession) -> Guest:
    visitor = Guest(site, client)
    await visitor.load_page()
    return visitor


def user(content: str) -> dict[str, str]:
    return {"role": "user", "content": content}


def assistant(content: str) -> dict[str, str]:
    return {"role": "assistant", "content": content}


def echo(content: str) -> dict[str, str]:
    return assistant("Hello from upstream: " + content)


def error_and_done(message: str, now: float = START) -> list[tuple[str | None, Any]]:
    return [("error", {"error": message}), ("done", {"finished": True})]


def named(events: Sequence[Any]) -> list[tuple[str | None, Any]]:
    return [(event.name, event.json) for event in events]


# --- the page and the nonce endpoint ---------------------------------------------------------


async def test_inline_page_config(site: EmulatorServer, client: aiohttp.ClientSession) -> None:
    async with client.get(site.url + "/", headers={"Host": "chat.example:8443"}) as response:
        page = await response.text()
    tag = re.search(r'<div class="aipkit_chat_container[^>]*>', page)
    assert tag is not None
    assert 'data-bot-id="5"' in tag.group(0)
    assert 'id="aipkit_chat_container_5"' in tag.group(0)
    guest = Guest(site, client)
    config = await guest.load_page()
    assert list(config)[:6] == ["botId", "ajaxUrl", "nonce", "postId", "theme", "popupEnabled"]
    assert config["botId"] == 5
    assert config["ajaxUrl"] == site.url + AJAX
    assert config["nonce"] == site.state.nonces.create(AIPKIT_NONCE_ACTION)
    assert config["postId"] == 4
    assert config["popupEnabled"] is False
    assert "streamEnabled" not in config
    assert "http:\\/\\/chat.example:8443\\/wp-admin\\/admin-ajax.php" in page
    assert "wpaicgParams" not in page
    assert 'window.aipkit_getChatNonceAction = "aipkit_get_frontend_chat_nonce";' in page


async def test_popup_page_config(client: aiohttp.ClientSession) -> None:
    config = EmulatorConfig(dialect="aipkit", aipkit_page="popup", aipkit_bot_id="27623")
    async with EmulatorServer(config) as site:
        async with client.get(site.url) as response:
            page = await response.text()
        guest = Guest(site, client)
        data_config = await guest.load_page()
    wrapper = re.search(r'<div class="aipkit_popup_wrapper[^>]*>', page)
    assert wrapper is not None
    assert "data-config='" in wrapper.group(0)
    assert 'data-bot-id="27623"' in wrapper.group(0)
    container = re.search(r'<div class="aipkit_chat_container[^>]*>', page)
    assert container is not None
    assert "data-config" not in container.group(0)
    assert data_config["botId"] == 27623
    assert data_config["popupEnabled"] is True


@pytest.mark.parametrize("enabled", [True, False])
async def test_2_3_era_page_says_whether_it_streams(
    client: aiohttp.ClientSession, enabled: bool
) -> None:
    config = EmulatorConfig(dialect="aipkit", aipkit_stream_enabled=enabled)
    async with EmulatorServer(config) as site:
        data_config = await Guest(site, client).load_page()
    assert list(data_config)[4] == "streamEnabled"
    assert data_config["streamEnabled"] is enabled


async def test_custom_ajax_path(client: aiohttp.ClientSession) -> None:
    async with EmulatorServer(EmulatorConfig(dialect="aipkit", ajax_path="/rizq")) as site:
        guest = Guest(site, client)
        config = await guest.load_page()
        assert config["ajaxUrl"] == site.url + "/rizq"
        form = {"action": "aipkit_get_frontend_chat_nonce"}
        async with client.post(site.url + "/rizq", data=form) as response:
            assert (await response.json())["data"]["nonce"] == guest.nonce


async def test_nonce_endpoint(site: EmulatorServer, guest: Guest) -> None:
    """It returns the page's nonce (POST or GET), and the new one once the nonce rotates."""
    form = {"action": "aipkit_get_frontend_chat_nonce", "bot_id": "5"}
    async with guest.client.post(guest.ajax, data=form) as response:
        assert response.status == 200
        assert await response.read() == b'{"success":true,"data":{"nonce":"%s"}}' % (
            guest.nonce.encode()
        )
    site.rotate_nonce()
    async with guest.client.get(guest.ajax, params={"action": form["action"]}) as response:
        fresh = (await response.json())["data"]["nonce"]
    assert fresh != guest.nonce
    assert site.state.nonce_fetches == 2
    status, payload = await guest.cache()
    assert (status, payload["data"]["code"]) == (403, "nonce_failure_cache_sse")
    guest.config["nonce"] = fresh
    assert (await guest.cache())[0] == 200


async def test_nonce_endpoint_refuses_a_foreign_origin_with_a_bot(guest: Guest) -> None:
    form = {"action": "aipkit_get_frontend_chat_nonce", "bot_id": "5"}
    headers = {"Origin": "https://evil.example"}
    async with guest.client.post(guest.ajax, data=form, headers=headers) as response:
        assert response.status == 403
        assert await response.json() == {
            "success": False,
            "data": {"message": CORS_DENIED, "code": "cors_denied"},
        }
    async with guest.client.post(
        guest.ajax, data={"action": "aipkit_get_frontend_chat_nonce"}, headers=headers
    ) as response:
        assert response.status == 200  # no bot_id: no check


# --- step 1 ------------------------------------------------------------------------------------


async def test_cache_key_format(guest: Guest) -> None:
    keys = {await guest.key() for _ in range(5)}
    assert len(keys) == 5
    assert all(re.fullmatch(r"aipkit_sse_[A-Za-z0-9]{32}", key) for key in keys)
    assert guest.site.state.cache_posts == 5
    assert all(key in guest.site.state.sse_cache for key in keys)


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        ({"_ajax_nonce": "0123456789"}, 403, "nonce_failure_cache_sse"),
        ({"_ajax_nonce": ""}, 403, "nonce_failure_cache_sse"),
        ({"message": ""}, 400, "empty_data_to_cache"),
        ({"message": "0"}, 400, "empty_data_to_cache"),
        ({"message": "\0"}, 400, "empty_data_to_cache"),
        ({"image_inputs": "not json"}, 400, "invalid_image_payload"),
        ({"image_inputs": "[]"}, 400, "invalid_image_payload"),
        ({"image_inputs": '[{"mime_type":"image/png"}]'}, 400, "invalid_image_payload"),
        (
            {"image_inputs": '[{"mime_type":"image/gif","base64_data":"aGk="}]'},
            400,
            "invalid_image_type",
        ),
        (
            {"image_inputs": '[{"mime_type":"image/png","base64_data":"!!"}]'},
            400,
            "invalid_image_payload",
        ),
        (
            {
                "image_inputs": "["
                + ",".join(['{"mime_type":"image/png","base64_data":"aGk="}'] * 5)
                + "]"
            },
            400,
            "too_many_images",
        ),
    ],
)
async def test_cache_refusals(guest: Guest, fields: dict[str, str], status: int, code: str) -> None:
    got_status, payload = await guest.cache(**fields)
    assert (got_status, payload["success"], payload["data"]["code"]) == (status, False, code)
    if code == "nonce_failure_cache_sse":
        assert payload["data"]["message"] == NONCE_FAILURE_CACHE
    if code == "empty_data_to_cache":
        assert payload["data"]["message"] == EMPTY_DATA_TO_CACHE
    assert len(guest.site.state.sse_cache) == 0


async def test_cache_takes_an_image_without_text_and_a_blank_message(guest: Guest) -> None:
    image = '[{"mime_type":"image/png","base64_data":"data:image/png;base64,aGk="}]'
    assert (await guest.cache("", image_inputs=image))[0] == 200
    assert (await guest.cache("   "))[0] == 200  # PHP's empty() is false for blanks


async def test_cache_reads_only_the_post_body(guest: Guest) -> None:
    params = {"action": "aipkit_cache_sse_message", "_ajax_nonce": guest.nonce, "message": "Hi"}
    async with guest.client.get(guest.ajax, params=params) as response:
        assert response.status == 403
        assert (await response.json())["data"]["code"] == "nonce_failure_cache_sse"


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        (None, True),
        ("", True),
        ("http://127.0.0.1:9999", True),  # the port does not count
        ("127.0.0.1", True),  # esc_url_raw makes it http://127.0.0.1
        ("HTTP://127.0.0.1:1", True),
        ("https://127.0.0.1", False),  # the scheme does
        ("http://localhost", False),
        ("null", False),
        ("https://evil.example", False),
    ],
)
async def test_cache_origin_check(guest: Guest, origin: str | None, allowed: bool) -> None:
    """As on the real site: another host or scheme is refused (free plan), the port is not."""
    headers = {} if origin is None else {"Origin": origin}
    status, payload = await guest.cache(headers=headers)
    if allowed:
        assert status == 200
    else:
        assert status == 403
        assert payload["data"] == {
            "message": "Embed feature is not available with your current plan.",
            "code": "embed_not_available",
        }
    status, _ = await guest.cache(headers=headers, bot_id="0")
    assert status == 200  # without a bot id there is no check


# --- step 2: keys ------------------------------------------------------------------------------


async def test_a_key_works_once(guest: Guest) -> None:
    key = await guest.key()
    assert text_of(await guest.events(key)) == "Hello from upstream: Hello"
    assert named(await guest.events(key)) == error_and_done(CACHE_NOT_FOUND)
    assert key not in guest.site.state.sse_cache


async def test_a_key_is_gone_even_when_a_later_check_fails(guest: Guest) -> None:
    key = await guest.key()
    assert named(await guest.events(key, bot_id="999")) == error_and_done(INVALID_BOT)
    assert named(await guest.events(key)) == error_and_done(CACHE_NOT_FOUND)


async def test_checks_before_the_key_keep_it(guest: Guest) -> None:
    """A bad nonce or a foreign origin is refused before the key is read: it still works."""
    key = await guest.key()
    assert named(await guest.events(key, _ajax_nonce="0123456789")) == error_and_done(
        SECURITY_CHECK_FAILED
    )
    _, body = await guest.stream(key, headers={"Origin": "https://evil.example"})
    assert named(parse(body)) == error_and_done(CORS_DENIED)
    assert text_of(await guest.events(key)) == "Hello from upstream: Hello"


async def test_keys_match_without_case(guest: Guest) -> None:
    key = await guest.key()
    assert text_of(await guest.events(key.upper())) == "Hello from upstream: Hello"


async def test_keys_expire(site: EmulatorServer, guest: Guest, clock: ManualClock) -> None:
    """A key lives 60 s; an expired key stays "expired" until the hourly cleanup."""
    fresh, stale = await guest.key("fresh"), await guest.key("stale")
    clock.advance(59.9)
    assert text_of(await guest.events(fresh)) == "Hello from upstream: fresh"
    clock.advance(0.1)
    assert named(await guest.events(stale)) == error_and_done(CACHE_EXPIRED)
    assert named(await guest.events(stale)) == error_and_done(CACHE_EXPIRED)
    clock.advance(CACHE_CLEANUP_SECONDS)
    await guest.key("another")  # the cleanup runs as keys are made
    assert named(await guest.events(stale)) == error_and_done(CACHE_NOT_FOUND)


async def test_cache_ttl_is_configurable(
    site: EmulatorServer, guest: Guest, clock: ManualClock
) -> None:
    site.config = attrs.evolve(site.config, aipkit_cache_ttl=5.0)
    key = await guest.key()
    clock.advance(5)
    assert named(await guest.events(key)) == error_and_done(CACHE_EXPIRED)


# --- step 2: the checks, in order ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"_ajax_nonce": None}, SECURITY_CHECK_FAILED),
        ({"_ajax_nonce": None, "cache_key": "junk"}, SECURITY_CHECK_FAILED),
        ({"cache_key": None}, CACHE_KEY_MISSING),
        ({"cache_key": "!!!"}, CACHE_KEY_MISSING),  # sanitize_key leaves nothing
        ({"cache_key": "aipkit_sse_doesnotexist0000000000000000"}, CACHE_NOT_FOUND),
        ({"bot_id": None}, INVALID_BOT),
        ({"bot_id": "0"}, INVALID_BOT),
        ({"bot_id": "abc"}, INVALID_BOT),
        ({"bot_id": "999", "conversation_uuid": None}, INVALID_BOT),
        ({"conversation_uuid": None}, CONVERSATION_MISSING),
        ({"conversation_uuid": "!!"}, CONVERSATION_MISSING),
        ({"conversation_uuid": None, "session_id": None}, CONVERSATION_MISSING),
        ({"session_id": None}, SESSION_MISSING),
        ({"session_id": "   "}, SESSION_MISSING),
        ({"session_id": "<b></b>"}, SESSION_MISSING),
        ({"session_id": "s" * 65}, LOG_FAILED),
        ({"conversation_uuid": "c" * 37}, LOG_FAILED),
    ],
)
async def test_refusals_are_error_then_done(
    guest: Guest, clock: ManualClock, changes: dict[str, str | None], message: str
) -> None:
    key = await guest.key()
    clock.advance(3)
    response, body = await guest.stream(key, **changes)
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert body.startswith(PADDING)
    events = parse(body)
    assert named(events) == error_and_done(message)
    assert events[0].id == f"err-{int(START) + 3}"
    assert list(guest.site.state.received) == []
    assert len(guest.site.state.conversations) == 0


async def test_longest_ids_are_fine(guest: Guest) -> None:
    events = await guest.say("Hi", session_id="s" * 64, conversation_uuid="c" * 36)
    assert text_of(events) == "Hello from upstream: Hi"


async def test_nonce_may_come_in_the_body_but_nothing_else(guest: Guest) -> None:
    """check_ajax_referer reads ``$_REQUEST``; the rest of step 2 reads ``$_GET`` only."""
    query = guest.stream_query(await guest.key(), _ajax_nonce=None)
    async with guest.client.post(
        guest.ajax, params=query, data={"_ajax_nonce": guest.nonce}
    ) as response:
        assert text_of(parse(await response.read())) == "Hello from upstream: Hello"
    async with guest.client.post(
        guest.ajax, data=guest.stream_query(await guest.key())
    ) as response:
        assert named(parse(await response.read())) == error_and_done(CACHE_KEY_MISSING)


# --- step 2: the answer ------------------------------------------------------------------------


async def test_answer_frames(guest: Guest) -> None:
    events = await guest.say("Hello")
    assert summary(events) == ["message_start", "delta", "delta", "delta", "delta", "done"]
    assert re.fullmatch(r"aipkit-msg-6b07c92f00000[0-9]\.[0-9]{8}", events[0].json["message_id"])
    assert [event.json["delta"] for event in events[1:5]] == [
        "Hello fr",
        "om upstr",
        "eam: Hel",
        "lo",
    ]
    assert events[-1].json == {"finished": True}
    assert guest.site.state.stream_gets == 1


async def test_deltas_are_php_json(guest: Guest) -> None:
    site = guest.site
    site.config = attrs.evolve(
        site.config, model=lambda _: 'a/b \u2028 é 😀 "q" <\\>', token_chars=100
    )
    _, body = await guest.stream(await guest.key())
    assert b'data: {"delta":"a\\/b \\u2028 \xc3\xa9 \xf0\x9f\x98\x80 \\"q\\" <\\\\>"}\n\n' in body


async def test_token_chars_and_answer_chars(guest: Guest) -> None:
    guest.site.config = attrs.evolve(guest.site.config, token_chars=3, answer_chars=50)
    events = await guest.say("Hello")
    pieces = [event.json["delta"] for event in events if event.name is None]
    assert len("".join(pieces)) == 50
    assert all(len(piece) == 3 for piece in pieces[:-1])


async def test_an_empty_answer_has_no_delta(guest: Guest) -> None:
    guest.site.config = attrs.evolve(guest.site.config, model=lambda _: "")
    assert summary(await guest.say("Hello")) == ["message_start", "done"]


async def test_responses_api_mode(guest: Guest) -> None:
    guest.site.config = attrs.evolve(guest.site.config, aipkit_api_mode="responses")
    events = await guest.say("Hello")
    assert summary(events) == [
        "message_start",
        "status",
        "status",
        "delta",
        "delta",
        "delta",
        "delta",
        "openai_response_id",
        "done",
    ]
    assert [event.json["type"] for event in events[1:3]] == [
        "response.created",
        "response.in_progress",
    ]
    assert events[-2].json == {"id": "resp_fake0001"}


async def test_upstream_error_has_no_done(guest: Guest) -> None:
    events = await guest.say("please UPSTREAM_ERROR now")
    assert summary(events) == ["message_start", "error"]
    assert events[1].json["error"].startswith("API Error: Incorrect API key provided")
    assert events[1].json["error"].endswith(" (Code: invalid_api_key)")
    assert events[1].id == f"err-{int(START)}"


async def test_model_upstream_error_is_relayed(guest: Guest) -> None:
    def failing(_: Sequence[Message]) -> str:
        raise UpstreamError("Rate limit reached")

    guest.site.config = attrs.evolve(guest.site.config, model=failing)
    events = await guest.say("Hello")
    assert named(events)[1] == (
        "error",
        {"error": "API Error: Rate limit reached (Code: invalid_api_key)"},
    )


async def test_a_crashing_model_breaks_the_stream(guest: Guest) -> None:
    def crashing(_: Sequence[Message]) -> str:
        raise RuntimeError("bug")

    guest.site.config = attrs.evolve(guest.site.config, model=crashing)
    _, body = await guest.stream(await guest.key())
    assert b"There has been a critical error on this website." in body
    assert b"event: done" not in body


async def test_head_gets_headers_only(guest: Guest) -> None:
    async with guest.client.head(guest.ajax, params=guest.stream_query(await guest.key())) as r:
        assert r.status == 200
        assert r.headers["Content-Type"] == "text/event-stream; charset=utf-8"
        assert await r.read() == b""


# --- history -------------------------------------------------------------------------------------


async def test_three_turns_continue_one_conversation(guest: Guest) -> None:
    for message in ("Hello", "And now?", "Third"):
        await guest.say(message)
    state = guest.site.state
    assert state.conversations[(SESSION, CONVERSATION)] == [
        user("Hello"),
        echo("Hello"),
        user("And now?"),
        echo("And now?"),
        user("Third"),
        echo("Third"),
    ]
    assert list(state.received) == [
        [SYSTEM, user("Hello")],
        [SYSTEM, user("Hello"), echo("Hello"), user("And now?")],
        [SYSTEM, user("Hello"), echo("Hello"), user("And now?"), echo("And now?"), user("Third")],
    ]
    assert (state.page_fetches, state.cache_posts, state.stream_gets, state.nonce_fetches) == (
        1,
        3,
        3,
        0,
    )


async def test_conversations_are_per_session_and_conversation_id(guest: Guest) -> None:
    await guest.say("one")
    await guest.say("two", conversation_uuid="11111111-2222-4333-8444-555555555555")
    await guest.say("three", session_id="aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee")
    conversations = guest.site.state.conversations
    assert len(conversations) == 3
    assert all(len(thread) == 2 for thread in conversations.values())
    assert [messages[1:] for messages in guest.site.state.received] == [
        [user("one")],
        [user("two")],
        [user("three")],
    ]


async def test_ids_match_as_the_plugin_stores_them(guest: Guest) -> None:
    """The conversation id is lower-cased (sanitize_key); the session id matches without case
    or accents (the log table's collation), and is trimmed and stripped of tags."""
    await guest.say("one", session_id="Café-Guest", conversation_uuid="ABC-1")
    await guest.say("two", session_id=" cafe-guest ", conversation_uuid="abc-1")
    await guest.say("three", session_id="<b>CAFE</b>-guest", conversation_uuid="aBc-1")
    conversations = guest.site.state.conversations
    assert list(conversations) == [("Café-Guest", "abc-1")]
    assert conversations[("cafe-guest", "abc-1")] == [
        user("one"),
        echo("one"),
        user("two"),
        echo("two"),
        user("three"),
        echo("three"),
    ]


@pytest.mark.parametrize(("limit", "seen"), [(15, 15), (4, 4), (0, 20)])
async def test_the_model_sees_the_last_messages(guest: Guest, limit: int, seen: int) -> None:
    """The bot's max_messages (15 by default; 0 keeps all, as the plugin's array_slice)."""
    guest.site.config = attrs.evolve(guest.site.config, aipkit_history_limit=limit)
    for turn in range(11):
        await guest.say(f"turn {turn}")
    last = guest.site.state.received[-1]
    logged = guest.site.state.conversations[(SESSION, CONVERSATION)][:-2]  # before turn 10
    assert last[0] == SYSTEM
    assert last[1:-1] == logged[-seen:]
    assert last[-1] == user("turn 10")


async def test_a_failed_turn_stays_in_the_history(guest: Guest) -> None:
    """The user message is logged before the model is asked; a failed answer is not."""
    await guest.say("first")
    await guest.say("please UPSTREAM_ERROR x")
    await guest.say("after")
    assert guest.site.state.received[-1] == [
        SYSTEM,
        user("first"),
        echo("first"),
        user("please UPSTREAM_ERROR x"),
        user("after"),
    ]


async def test_history_is_logged_through_kses(guest: Guest) -> None:
    """Logged messages go through wp_kses_post; the new message reaches the model as sent."""
    await guest.say("a & b <script>x</script> <3")
    await guest.say("next")
    logged = guest.site.state.conversations[(SESSION, CONVERSATION)]
    assert logged[:2] == [user("a &amp; b x &lt;3"), echo("a &amp; b x &lt;3")]
    received = guest.site.state.received
    assert received[0] == [SYSTEM, user("a & b <script>x</script> <3")]
    assert received[1] == [SYSTEM, *logged[:2], user("next")]


async def test_blank_messages_reach_the_model_as_nothing(guest: Guest) -> None:
    """Each message is trimmed for the model and left out if blank (as on the real site)."""
    await guest.say("   ")
    await guest.say("  padded  ")
    assert guest.site.state.conversations[(SESSION, CONVERSATION)][:2] == [
        user("   "),
        echo(""),
    ]
    assert list(guest.site.state.received) == [
        [SYSTEM],
        [SYSTEM, assistant("Hello from upstream:"), user("padded")],
    ]


async def test_instructions(guest: Guest, clock: ManualClock) -> None:
    guest.site.config = attrs.evolve(
        guest.site.config, aipkit_instructions="Be brief, [username]. It is [date]."
    )
    clock.set(1_700_000_000)  # 2023-11-14 22:13:20 UTC
    await guest.say("Hi")
    assert guest.site.state.received[-1][0] == {
        "role": "system",
        "content": "Be brief, . It is November 14, 2023.",
    }
    guest.site.config = attrs.evolve(guest.site.config, aipkit_instructions="")
    await guest.say("Hi")
    assert guest.site.state.received[-1][0]["content"] == "You are a helpful AI Assistant."


# --- other actions -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "form",
    [
        {"action": "aipkit_frontend_chat_message", "_ajax_nonce": "x", "message": "Hello"},
        {"action": "wpaicg_chat_shortcode_message", "_wpnonce": "x", "message": "Hello"},
        {"action": "aipkit_no_such_action"},
    ],
)
async def test_other_actions_get_400_0(guest: Guest, form: dict[str, str]) -> None:
    async with guest.client.post(guest.ajax, data=form) as response:
        assert (response.status, await response.text()) == (400, "0")
        assert "X-Frame-Options" in response.headers


async def test_no_action(guest: Guest) -> None:
    async with guest.client.post(guest.ajax, data={"message": "x"}) as response:
        assert (response.status, await response.text()) == (400, "0")
        assert "X-Frame-Options" not in response.headers  # admin-ajax gave up before admin_init


async def test_dialect_can_change_between_requests(
    site: EmulatorServer, client: aiohttp.ClientSession
) -> None:
    site.config = attrs.evolve(site.config, dialect="classic")
    async with client.get(site.url) as response:
        page = await response.text()
    assert "data-nonce=" in page
    assert "data-config=" not in page
