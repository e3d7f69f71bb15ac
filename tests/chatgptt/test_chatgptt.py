"""The ChatGptt provider end to end against the emulator on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
import sys
import textwrap
from typing import Any

import attrs
import pytest
import structlog
from aiohttp import web
from structlog.testing import capture_logs

from chatgptt import (
    ChatGptt,
    ChatNotFoundError,
    ConfigurationError,
    InvalidMessagesError,
    NonceRejectedError,
    Pipeline,
    ProviderConnectionError,
    RetryPolicy,
    StreamInterruptedError,
    UnknownModelError,
    stage,
)
from chatgptt.emulator import DEFAULT_GREETING, Fault
from chatgptt.testing import provider_for
from stages.cache import TokenCache
from stages.core import Exchange

HELLO = [{"role": "user", "content": "Hello"}]
CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi there"},
    {"role": "assistant", "content": "Hello! How can I help?"},
    {"role": "user", "content": 'And now? Say "x" & <y>'},
]


async def answer(provider: type[ChatGptt], messages: Any = HELLO, **kwargs: Any) -> list[str]:
    return [chunk async for chunk in provider.create_async_generator("gpt-4o", messages, **kwargs)]


def test_the_seed_attributes() -> None:
    assert ChatGptt.url == "https://chatgptt.me"
    assert ChatGptt.api_endpoint == "https://chatgptt.me/wp-admin/admin-ajax.php"
    assert ChatGptt.working is True
    assert ChatGptt.supports_stream is True
    assert ChatGptt.supports_system_message is True
    assert ChatGptt.supports_message_history is True
    assert ChatGptt.default_model == "gpt-4o"
    assert ChatGptt.models == ["gpt-4", "gpt-4o", "gpt-4o-mini"]


def test_models_and_aliases() -> None:
    assert ChatGptt.get_models() == ["gpt-4", "gpt-4o", "gpt-4o-mini"]
    assert ChatGptt.get_model("") == "gpt-4o"
    assert ChatGptt.get_model("gpt-4o-mini") == "gpt-4o-mini"
    assert ChatGptt.get_model("gpt-4o-2024-08-06") == "gpt-4o"
    with pytest.raises(UnknownModelError, match="valid models: gpt-4, gpt-4o, gpt-4o-mini"):
        ChatGptt.get_model("claude-3")


def test_api_endpoint_follows_url_unless_set() -> None:
    class Mirror(ChatGptt):
        url = "http://127.0.0.1:8080"

    class Pinned(ChatGptt):
        url = "http://127.0.0.1:8080"
        api_endpoint = "http://127.0.0.1:8080/rizq"

    assert Mirror.api_endpoint == "http://127.0.0.1:8080/wp-admin/admin-ajax.php"
    assert Pinned.api_endpoint == "http://127.0.0.1:8080/rizq"
    assert Mirror.settings().site.page_url == "http://127.0.0.1:8080/"


@pytest.mark.parametrize("mode", ["sse", "json"])
async def test_answers_in_both_modes(emulator_factory, mode: str) -> None:
    emulator = emulator_factory(mode=mode)
    chunks = await answer(provider_for(emulator))
    assert "".join(chunks) == "Hello from upstream: Hello"
    assert emulator.stats.received[-1] == [
        {"role": "user", "content": DEFAULT_GREETING},
        {"role": "user", "content": "Hello"},
    ]


async def test_text_reaches_the_caller_before_the_answer_is_complete(emulator_factory) -> None:
    stall = Fault(kind="stall", where="inside", after_tokens=2, seconds=30.0)
    emulator = emulator_factory(faults=[stall])
    stream = provider_for(emulator).create_async_generator("gpt-4o", HELLO)
    async with contextlib.aclosing(stream):
        first = await anext(stream)
    assert "Hello from upstream: Hello".startswith(first)
    assert first != "Hello from upstream: Hello"


async def test_history_and_system_messages_reach_the_model(emulator) -> None:
    chunks = await answer(provider_for(emulator), CONVERSATION)
    assert "".join(chunks) == 'Hello from upstream: And now? Say "x" & <y>'
    assert emulator.stats.received[-1] == [
        {"role": "user", "content": DEFAULT_GREETING},
        {"role": "user", "content": "System: Be brief."},
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": 'And now? Say "x" & <y>'},
    ]


async def test_history_with_awkward_characters_survives_the_sanitiser(emulator) -> None:
    messages = [
        {"role": "user", "content": 'He said "hi" C:\\path <i>x</i> 100%41 café\nline two'},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "Next"},
    ]
    await answer(provider_for(emulator), messages)
    received = emulator.stats.received[-1]
    assert len(received) == 4, "the history did not vanish"
    assert received[1] == {
        "role": "user",
        "content": "He said ＂hi＂ C:＼path ＜i>x＜/i> 100％41 café\u2028line two",
    }


async def test_flatten_mode_sends_one_message(emulator) -> None:
    await answer(provider_for(emulator, history="flatten"), CONVERSATION)
    assert emulator.stats.received[-1][1:] == [
        {
            "role": "user",
            "content": "System: Be brief.\nUser: Hi there\nAssistant: Hello! How can I help?\n"
            'User: And now? Say "x" & <y>\nAssistant:',
        }
    ]


async def test_history_option_per_call(emulator) -> None:
    await answer(provider_for(emulator), CONVERSATION, history="flatten")
    assert len(emulator.stats.received[-1]) == 2


async def test_the_nonce_is_reused_across_calls(emulator) -> None:
    provider = provider_for(emulator)
    for _ in range(3):
        assert "".join(await answer(provider)) == "Hello from upstream: Hello"
    assert emulator.stats.page_fetches == 1
    assert emulator.stats.ajax_requests == 3


async def test_a_rotated_nonce_is_refetched_once(emulator) -> None:
    provider = provider_for(emulator)
    await answer(provider)
    emulator.rotate_nonce()
    assert "".join(await answer(provider)) == "Hello from upstream: Hello"
    assert emulator.stats.page_fetches == 2
    assert emulator.stats.ajax_requests == 3, "one rejected POST, then the one that worked"


@pytest.mark.parametrize("nonce_style", ["403", "json"])
async def test_a_nonce_rejected_twice_is_a_typed_error(emulator_factory, nonce_style: str) -> None:
    emulator = emulator_factory(
        nonce_style=nonce_style, faults=[Fault(kind="expire_nonce", times=None)]
    )
    with pytest.raises(NonceRejectedError, match="rejected twice") as info:
        await answer(provider_for(emulator))
    assert info.value.attempts == 2
    assert emulator.stats.page_fetches == 2


async def test_a_custom_stage_inserted_into_the_pipeline(emulator) -> None:
    @stage("shout")
    async def shout(exchange: Exchange) -> Exchange:
        assert exchange.form is not None
        form = tuple(
            (key, value.upper() if key == "message" else value) for key, value in exchange.form
        )
        return attrs.evolve(exchange, form=form)

    classic = ChatGptt.dialects["classic"].pipeline
    loud = provider_for(emulator).with_pipeline(
        classic.insert_after("payload", shout), dialect="classic", name="Loud"
    )
    assert loud.pipeline_of("classic").names == (
        "bootstrap",
        "tokens",
        "payload",
        "shout",
        "transport",
        "decode",
    )
    assert "".join(await answer(loud)) == "Hello from upstream: HELLO"
    assert ChatGptt.pipeline_of("classic").names == (
        "bootstrap",
        "tokens",
        "payload",
        "transport",
        "decode",
    )


def test_a_dialects_pipeline_cannot_hold_the_shared_bootstrap() -> None:
    """The page fetch is shared: a dialect pipeline holding it would fetch it twice."""
    with pytest.raises(ConfigurationError, match="derive\\(bootstrap="):
        ChatGptt.with_pipeline(ChatGptt.pipeline_of("classic"), dialect="classic")


async def test_a_stage_replaced_in_the_pipeline(emulator) -> None:
    original = ChatGptt.dialects["classic"].pipeline["decode"]

    @stage("decode")
    async def decode_then_reverse(exchange: Exchange) -> Exchange:
        decoded = await original(exchange)
        assert decoded.text is not None
        text = "".join([chunk async for chunk in decoded.text])
        from stages.core import TextStream

        return attrs.evolve(decoded, text=TextStream.of(text[::-1]))

    classic = ChatGptt.dialects["classic"].pipeline
    reversed_provider = provider_for(emulator).with_pipeline(
        classic.replace("decode", decode_then_reverse), dialect="classic"
    )
    assert "".join(await answer(reversed_provider)) == "olleH :maertspu morf olleH"


async def test_extra_options_reach_custom_stages(emulator) -> None:
    seen: list[Any] = []

    @stage("peek")
    async def peek(exchange: Exchange) -> Exchange:
        seen.append(exchange.call.options)
        return exchange

    provider = provider_for(emulator, bootstrap=Pipeline([peek, *ChatGptt.bootstrap]))
    await answer(provider, temperature=0.2, web_search=True)
    assert seen == [{"temperature": 0.2, "web_search": True}]


async def test_the_page_ajax_url_is_honoured(emulator_factory) -> None:
    emulator = emulator_factory(ajax_path="/rizq")
    assert "".join(await answer(provider_for(emulator))) == "Hello from upstream: Hello"
    assert [record.path for record in emulator.stats.requests] == ["/", "/rizq"]


@pytest.mark.parametrize(
    "style", ["single_quotes", "unquoted", "reordered", "widget", "params_only", "decoy"]
)
async def test_every_page_style_works(emulator_factory, style: str) -> None:
    emulator = emulator_factory(page_style=style)
    assert "".join(await answer(provider_for(emulator))) == "Hello from upstream: Hello"


async def test_create_async_returns_the_whole_text(emulator) -> None:
    text = await provider_for(emulator).create_async("gpt-4o", HELLO)
    assert text == "Hello from upstream: Hello"


def test_create_completion_from_synchronous_code(emulator) -> None:
    provider = provider_for(emulator)
    assert "".join(provider.create_completion("gpt-4o", HELLO)) == "Hello from upstream: Hello"
    assert list(provider.create_completion("gpt-4o", HELLO, stream=False)) == [
        "Hello from upstream: Hello"
    ]


async def test_create_completion_inside_a_running_loop(emulator) -> None:
    """As in a notebook: the sync API called while an event loop runs in this thread."""
    asyncio.get_running_loop()
    chunks = list(provider_for(emulator).create_completion("gpt-4o", HELLO))
    assert "".join(chunks) == "Hello from upstream: Hello"


def test_breaking_out_of_a_sync_stream_releases_it(emulator_factory) -> None:
    import time

    stall = Fault(kind="stall", where="inside", after_tokens=1, seconds=30.0)
    emulator = emulator_factory(faults=[stall])
    completion = provider_for(emulator).create_completion("gpt-4o", HELLO)
    first = next(completion)
    started = time.monotonic()
    completion.close()  # what `break` does; must not wait for the 30 s stall
    assert time.monotonic() - started < 10, "closing waited for the stalled stream"
    assert "Hello from upstream: Hello".startswith(first)
    # And the provider goes on working after the early close.
    assert "".join(provider_for(emulator).create_completion("gpt-4o", HELLO)) == (
        "Hello from upstream: Hello"
    )


async def test_invalid_input_fails_before_any_request(emulator) -> None:
    provider = provider_for(emulator)
    with pytest.raises(InvalidMessagesError, match=r"messages\[0\]"):
        await answer(provider, [{"role": "robot", "content": "x"}])
    with pytest.raises(InvalidMessagesError, match=r"messages\[0\]: tool_calls must be an array"):
        await answer(provider, [{"role": "assistant", "tool_calls": 1}, *HELLO])
    with pytest.raises(UnknownModelError):
        await provider.create_async("gpt-9", HELLO)
    assert emulator.stats.page_fetches == 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"timeout": -1}, "timeout must be a positive number"),
        ({"retry": 3}, "retry must be a RetryPolicy"),
        ({"history": "all"}, "history must be 'messages' or 'flatten'"),
        ({"client_id": "not valid!"}, "client_id must be 1 to 64 letters or digits"),
        ({"session": object()}, "session must be an aiohttp.ClientSession"),
    ],
)
async def test_bad_options_are_named(emulator, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        await answer(provider_for(emulator), **options)


async def test_the_client_id_is_stable_per_conversation(emulator) -> None:
    provider = provider_for(emulator)
    await answer(provider, CONVERSATION[:2])
    await answer(provider, CONVERSATION)
    await answer(provider, [{"role": "user", "content": "Something else"}])
    ids = [
        record.form["wpaicg_chat_client_id"] for record in emulator.stats.requests if record.form
    ]
    assert ids[0] == ids[1] != ids[2]
    await answer(provider, HELLO, client_id="Mine123456")
    assert emulator.stats.requests[-1].form["wpaicg_chat_client_id"] == "Mine123456"


async def test_one_session_per_loop_reused_across_calls(emulator) -> None:
    provider = provider_for(emulator)
    await answer(provider)
    first = await ChatGptt.sessions.get()
    await answer(provider)
    assert await ChatGptt.sessions.get() is first
    await ChatGptt.aclose()
    assert first.closed


async def test_a_callers_own_session_is_used_and_left_open(emulator) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as own:
        assert (
            "".join(await answer(provider_for(emulator), session=own))
            == "Hello from upstream: Hello"
        )
        assert not own.closed


async def test_a_closed_session_is_refused_before_any_request(emulator) -> None:
    import aiohttp

    own = aiohttp.ClientSession()
    await own.close()
    with pytest.raises(ConfigurationError, match="session is closed"):
        await answer(provider_for(emulator), session=own)
    assert emulator.stats.page_fetches == 0


async def test_a_session_closed_during_the_answer_interrupts_it_with_a_typed_error(
    emulator_factory,
) -> None:
    """ChatGptt.aclose() (or code closing a caller's session) while an answer streams: the
    rest of it cannot be read, and the caller gets a ChatGpttError saying why, not
    aiohttp's bare ``RuntimeError``."""
    emulator = emulator_factory(
        faults=[Fault(kind="stall", where="inside", after_tokens=1, seconds=30.0)]
    )
    stream = provider_for(emulator).create_async_generator("gpt-4o", HELLO)
    first = await anext(stream)
    await ChatGptt.aclose()
    with pytest.raises(StreamInterruptedError, match="its aiohttp session was closed") as info:
        async for _chunk in stream:
            pass
    assert info.value.partial_text == first
    assert isinstance(info.value.cause, ProviderConnectionError)
    await stream.aclose()


def test_a_session_of_another_event_loop_is_a_configuration_error(emulator) -> None:
    import aiohttp

    async def make() -> aiohttp.ClientSession:
        return aiohttp.ClientSession()

    other = asyncio.new_event_loop()
    foreign = other.run_until_complete(make())
    try:
        with pytest.raises(ConfigurationError, match="belongs to another event loop"):
            asyncio.run(answer(provider_for(emulator), session=foreign))
    finally:
        other.run_until_complete(foreign.close())
        other.close()


async def test_retry_policy_per_provider(emulator_factory, fake_sleep) -> None:
    emulator = emulator_factory(faults=[Fault(kind="status", status=503, times=2)])
    provider = provider_for(emulator, retry_policy=RetryPolicy(sleep=fake_sleep, attempts=3))
    assert "".join(await answer(provider)) == "Hello from upstream: Hello"
    assert len(fake_sleep.delays) == 2


def test_a_script_closes_cleanly_and_prints_nothing(emulator) -> None:
    """asyncio.run closes the shared session: no 'Unclosed client session', no output
    from the library (structlog is not configured)."""
    script = textwrap.dedent(
        f"""
        import asyncio
        from chatgptt import ChatGptt

        class Mirror(ChatGptt):
            url = {emulator.url!r}

        async def main():
            return await Mirror.create_async("gpt-4o", [{{"role": "user", "content": "Hi"}}])

        assert asyncio.run(main()) == "Hello from upstream: Hi"
        """
    )
    done = subprocess.run(
        [sys.executable, "-W", "error", "-X", "dev", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert done.stderr == ""


async def test_a_shared_page_fetch_that_fails_for_its_starter_is_not_the_others_failure(
    emulator_factory,
) -> None:
    """A short-deadline call starts the page fetch and gives up; a patient one still gets in."""
    emulator = emulator_factory(faults=[Fault(kind="stall", target="page", seconds=0.5)])
    provider = provider_for(emulator)
    hasty = asyncio.create_task(provider.create_async("gpt-4o", HELLO, timeout=0.2))
    patient = asyncio.create_task(provider.create_async("gpt-4o", HELLO))
    results = await asyncio.gather(hasty, patient, return_exceptions=True)
    assert isinstance(results[0], TimeoutError)
    assert results[1] == "Hello from upstream: Hello"


async def test_a_page_is_never_fetched_through_another_calls_proxy(emulator) -> None:
    from chatgptt import ProviderConnectionError

    provider = provider_for(emulator)
    through_dead_proxy = asyncio.create_task(
        provider.create_async(
            "gpt-4o", HELLO, proxy="http://127.0.0.1:9", retry=RetryPolicy(attempts=1)
        )
    )
    direct = asyncio.create_task(provider.create_async("gpt-4o", HELLO))
    results = await asyncio.gather(through_dead_proxy, direct, return_exceptions=True)
    assert isinstance(results[0], ProviderConnectionError)
    assert "proxy" in str(results[0])
    assert results[1] == "Hello from upstream: Hello"


@pytest.mark.parametrize(
    ("proxy", "message"),
    [
        ("http://user:secret@host:99999", "the proxy URL is not valid"),
        ("http://user:secret@:8080", "with a host"),
        ("socks5://host:1080", "http:// or https://"),
        ("user:secret@host:3128", "http:// or https://"),  # no scheme
        ("http//user:secret@host:3128", "http:// or https://"),  # a mistyped one
        ("http:/user:secret@host:3128", "http:// or https://"),
    ],
)
async def test_bad_proxy_urls_are_named_without_their_secrets(
    emulator, proxy: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message) as info:
        await answer(provider_for(emulator), proxy=proxy)
    assert "secret" not in str(info.value)
    assert "secret" not in repr(info.value)
    assert emulator.stats.page_fetches == 0


# --- per-call headers and cookies --------------------------------------------------------------

CLEARANCE = "cf-clearance-SECRET-0123456789"
BROWSER = "Mozilla/5.0 (Macintosh) MyBrowser/1.0"


@pytest.mark.parametrize(
    "cookies", [{"cf_clearance": CLEARANCE, "b": "2"}, f"cf_clearance={CLEARANCE}; b=2"]
)
async def test_headers_and_cookies_go_with_that_calls_requests_only(emulator, cookies: Any) -> None:
    """A browser's User-Agent and cf_clearance reach the page GET and the POST of the call
    that brought them — and neither the next call nor the shared cookie jar."""
    provider = provider_for(emulator)
    await answer(provider, headers={"User-Agent": BROWSER}, cookies=cookies)
    page, post = emulator.stats.requests
    for record in (page, post):
        assert record.header("User-Agent") == BROWSER
        cookie = record.header("Cookie") or ""
        assert sorted(cookie.split("; ")) == ["b=2", f"cf_clearance={CLEARANCE}"]
    await answer(provider)
    later = emulator.stats.requests[-1]
    assert later.header("Cookie") is None
    assert later.header("User-Agent") != BROWSER
    session = await ChatGptt.sessions.get()
    assert not any(cookie.key == "cf_clearance" for cookie in session.cookie_jar)


async def test_headers_and_cookies_never_reach_the_log(emulator) -> None:
    structlog.configure(processors=[])
    try:
        with capture_logs() as logs:
            await answer(
                provider_for(emulator),
                headers={"User-Agent": BROWSER},
                cookies={"cf_clearance": CLEARANCE},
            )
    finally:
        structlog.reset_defaults()
    assert logs, "the call was traced"
    assert CLEARANCE not in repr(logs)
    assert BROWSER not in repr(logs)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"cookies": 5}, "cookies must be a mapping or a Cookie header string"),
        ({"cookies": f"{CLEARANCE}"}, "item 1 of the string has no '='"),
        ({"cookies": {"bad name": CLEARANCE}}, "'bad name' is not a valid cookie name"),
        ({"cookies": {"cf": CLEARANCE + ";x"}}, "cookies['cf'] must be a string without ';'"),
        ({"headers": ["User-Agent"]}, "headers must be a mapping"),
        ({"headers": {"X-Bad": CLEARANCE + "\r\nX-Evil: 1"}}, "headers['X-Bad'] must be"),
        ({"headers": {"Bad Name": "x"}}, "'Bad Name' is not a valid header name"),
        ({"dialect": "modern"}, "dialect must be 'auto' or one of aipkit, classic"),
        ({"bot_id": "abc"}, "bot_id must be a positive number"),
    ],
)
async def test_bad_request_options_are_named_without_their_values(
    emulator, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        await answer(provider_for(emulator), **options)
    assert message in str(info.value)
    assert CLEARANCE not in str(info.value)
    assert not emulator.stats.requests, "nothing was sent"


# --- the probe -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "streaming"), [("sse", True), ("json", True)])
async def test_the_probe_says_what_a_classic_page_carries(
    emulator_factory, mode: str, streaming: bool
) -> None:
    emulator = emulator_factory(mode=mode)
    found = await provider_for(emulator).probe()
    assert found.dialect == "classic"
    assert (found.bot_id, found.post_id, found.nonce_found) == ("0", "4", True)
    assert found.ajax_url == emulator.url + "/wp-admin/admin-ajax.php"
    assert found.page_url == emulator.url + "/"
    assert emulator.stats.ajax_requests == 0, "nothing was sent"


async def test_the_probe_names_what_a_page_lacks() -> None:
    """A page whose chat container lacks its nonce: the dialect, and what is missing."""
    page = '<div class="wpaicg-chat-shortcode" data-post-id="4" data-bot-id="0"></div>'

    async def landing(_request: web.Request) -> web.Response:
        return web.Response(text=page, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", landing)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        found = await ChatGptt.derive("Bare", url=url, token_cache=TokenCache()).probe()
    finally:
        await runner.cleanup()
    assert (found.dialect, found.nonce_found, found.missing) == ("classic", False, ("nonce",))


async def test_the_probe_of_a_page_without_a_chat_is_a_typed_error(emulator_factory) -> None:
    emulator = emulator_factory(page_style="no_chat")
    with pytest.raises(ChatNotFoundError, match=re.escape(emulator.url)):
        await provider_for(emulator).probe()
