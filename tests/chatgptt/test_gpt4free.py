"""The provider inside the installed gpt4free release, every way its users call it.

Runs against whichever release is installed: ``make test`` installs the newest (the
``gpt4free`` extra), ``make compat`` 0.4.5.4 (the one the original provider shipped in).
The site is the emulator on loopback; what the answers and the site's records hold is
checked exactly.

What each release does with a provider's exception (and these tests pin): 0.4.5.4 and the
8.x releases let it through unchanged on every path here — ``Client`` and ``AsyncClient``
(``create`` with and without ``stream=True``, ``AsyncClient...stream()``) and
``ChatCompletion.create``/``create_async``. One exception: 8.x's ``AsyncClient`` given
``stream_timeout=`` on a streamed call wraps the stream in its own time limit, which turns
any ``TimeoutError`` (our ``ProviderTimeoutError`` is one) into a plain ``TimeoutError``
with the same message, ours two links down its ``__cause__`` chain.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatgptt import (
    BotProtectionError,
    ChatGptt,
    ChatGpttError,
    ProviderTimeoutError,
    RetryPolicy,
    StreamInterruptedError,
    UnknownModelError,
)
from chatgptt.emulator import DEFAULT_GREETING, Fault
from chatgptt.providers import Provider
from chatgptt.testing import provider_for
from stages.cache import TokenCache
from tests.chatgptt.forward_proxy import ForwardProxy
from tests.chatgptt.gpt4free_support import import_gpt4free, isolate_gpt4free_files
from tests.conftest import agent_turns

g4f = import_gpt4free()

from g4f.client import AsyncClient, Client  # noqa: E402  (after the skip and the quiet import)
from g4f.providers.base_provider import (  # noqa: E402
    AsyncGeneratorProvider,
    ProviderModelMixin,
)

RELEASE = version("g4f")
#: 8.x: streamed ``AsyncClient`` calls honour ``stream_timeout`` with a limit of their own.
WRAPS_STREAM_TIMEOUTS = hasattr(AsyncGeneratorProvider, "use_stream_timeout")

HELLO = [{"role": "user", "content": "Hello"}]
CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi there"},
    {"role": "assistant", "content": "Hello! How can I help?"},
    {"role": "user", "content": "And now?"},
]


@pytest.fixture(autouse=True)
def _gpt4free_files_in_tmp(tmp_path, monkeypatch) -> None:
    isolate_gpt4free_files(tmp_path, monkeypatch)


# --- the ways gpt4free's users call a provider; each returns the answer's text ------------


def client(provider: type, messages: Any, model: str = "gpt-4o", **kwargs: Any) -> str:
    completion = Client(provider=provider).chat.completions.create(
        messages=messages, model=model, **kwargs
    )
    return str(completion.choices[0].message.content)


def client_stream(provider: type, messages: Any, model: str = "gpt-4o", **kwargs: Any) -> str:
    chunks = Client(provider=provider).chat.completions.create(
        messages=messages, model=model, stream=True, **kwargs
    )
    return "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)


def async_client(provider: type, messages: Any, model: str = "gpt-4o", **kwargs: Any) -> str:
    async def main() -> str:
        completion = await AsyncClient(provider=provider).chat.completions.create(
            messages=messages, model=model, **kwargs
        )
        return str(completion.choices[0].message.content)

    return asyncio.run(main())


def async_client_stream(provider: type, messages: Any, model: str = "gpt-4o", **kwargs: Any) -> str:
    async def main() -> str:
        chunks = AsyncClient(provider=provider).chat.completions.create(
            messages=messages, model=model, stream=True, **kwargs
        )
        return "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])

    return asyncio.run(main())


def async_client_stream_method(
    provider: type, messages: Any, model: str = "gpt-4o", **kwargs: Any
) -> str:
    async def main() -> str:
        chunks = AsyncClient(provider=provider).chat.completions.stream(
            messages=messages, model=model, **kwargs
        )
        return "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])

    return asyncio.run(main())


def chat_completion(provider: type, messages: Any, model: str = "gpt-4o", **kwargs: Any) -> str:
    return str(g4f.ChatCompletion.create(model, messages, provider=provider, **kwargs))


def chat_completion_stream(
    provider: type, messages: Any, model: str = "gpt-4o", **kwargs: Any
) -> str:
    chunks = g4f.ChatCompletion.create(model, messages, provider=provider, stream=True, **kwargs)
    return "".join(str(chunk) for chunk in chunks)


def chat_completion_async(
    provider: type, messages: Any, model: str = "gpt-4o", **kwargs: Any
) -> str:
    async def main() -> str:
        return str(
            await g4f.ChatCompletion.create_async(model, messages, provider=provider, **kwargs)
        )

    return asyncio.run(main())


Way = Callable[..., str]
WAYS: list[Way] = [
    client,
    client_stream,
    async_client,
    async_client_stream,
    async_client_stream_method,
    chat_completion,
    chat_completion_stream,
    chat_completion_async,
]
each_way = pytest.mark.parametrize("way", WAYS, ids=[way.__name__ for way in WAYS])


# --- standing on gpt4free's classes ----------------------------------------------------------


def test_the_provider_stands_on_this_releases_own_classes() -> None:
    mro = ChatGptt.__mro__
    assert issubclass(ChatGptt, AsyncGeneratorProvider)
    assert issubclass(ChatGptt, ProviderModelMixin)
    # Our methods first: create_completion, create_async, get_model(s) are Provider's.
    assert mro.index(Provider) < mro.index(AsyncGeneratorProvider) < mro.index(ProviderModelMixin)
    for name in ("create_completion", "create_async", "get_model", "get_models"):
        assert getattr(ChatGptt, name).__func__ is Provider.__dict__[name].__func__, name


def test_everything_this_release_defines_for_providers_is_there() -> None:
    expected = {name for base in (AsyncGeneratorProvider, ProviderModelMixin) for name in dir(base)}
    missing = sorted(name for name in expected if not hasattr(ChatGptt, name))
    assert not missing, f"gpt4free {RELEASE} expects {missing}"


def test_a_subclass_stands_on_them_too() -> None:
    class Mirror(ChatGptt):
        url = "http://127.0.0.1:9"

    assert issubclass(Mirror, AsyncGeneratorProvider)
    assert Mirror.api_endpoint == "http://127.0.0.1:9/wp-admin/admin-ajax.php"
    assert Mirror.get_dict() == {"name": "Mirror", "url": "http://127.0.0.1:9", "label": "ChatGptt"}


_NAMED = [*ChatGptt.models, *ChatGptt.model_aliases]


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(st.sampled_from([*_NAMED, *(name.upper() for name in _NAMED), "", "auto"]), st.text())
)
def test_model_names_resolve_our_way_not_the_mixins(name: str) -> None:
    """0.4.5.4's mixin raises its own ModelNotSupportedError, 8.x's returns unknown names
    as they are; ours maps "" and "auto" (8.x's word) to the default and a listed model or
    alias, in any case, to its model, and raises UnknownModelError for anything else."""
    models = {model.lower(): model for model in ChatGptt.models}
    models |= {alias.lower(): model for alias, model in ChatGptt.model_aliases.items()}
    if name.lower() in ("", "auto"):
        assert ChatGptt.get_model(name) == ChatGptt.default_model
    elif name.lower() in models:
        assert ChatGptt.get_model(name) == models[name.lower()]
    else:
        with pytest.raises(UnknownModelError) as caught:
            ChatGptt.get_model(name)
        assert caught.value.model == name


# --- answers, history, system messages, proxies ----------------------------------------------


@each_way
def test_the_answer_arrives_whole(way: Way, emulator) -> None:
    assert way(provider_for(emulator), copy.deepcopy(HELLO)) == "Hello from upstream: Hello"
    assert emulator.stats.ajax_requests == 1


@each_way
def test_history_and_the_system_message_reach_the_site(way: Way, emulator) -> None:
    text = way(provider_for(emulator), copy.deepcopy(CONVERSATION))
    assert text == "Hello from upstream: And now?"
    assert emulator.stats.received[-1] == [
        {"role": "user", "content": DEFAULT_GREETING},
        {"role": "user", "content": "System: Be brief."},
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "And now?"},
    ]


@each_way
def test_an_agents_tool_call_and_result_reach_the_site_as_text(way: Way, emulator) -> None:
    """What agent frameworks send through gpt4free's clients: the call as the assistant's
    turn, its result as the user's (the site knows two speakers)."""
    text = way(provider_for(emulator), agent_turns())
    assert text == "Hello from upstream: [tool result call_1 (weather)]: 18 C"
    assert emulator.stats.received[-1][1:] == [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "[tool call call_1: weather({})]"},
        {"role": "user", "content": "[tool result call_1 (weather)]: 18 C"},
    ]


@each_way
def test_a_subclass_with_its_own_url(way: Way, emulator) -> None:
    class Mirror(ChatGptt):
        url = emulator.url
        token_cache = TokenCache()

    assert way(Mirror, copy.deepcopy(HELLO), model="") == "Hello from upstream: Hello"
    assert emulator.stats.page_fetches == 1


@each_way
def test_the_proxy_carries_every_request(way: Way, emulator) -> None:
    with ForwardProxy() as proxy:
        text = way(provider_for(emulator), copy.deepcopy(HELLO), proxy=proxy.url())
        targets = [(request.method, request.target) for request in proxy.requests]
    assert text == "Hello from upstream: Hello"
    assert targets == [
        ("GET", emulator.url + "/"),
        ("POST", emulator.url + "/wp-admin/admin-ajax.php"),
    ]


@pytest.mark.parametrize("make_client", [Client, AsyncClient], ids=["Client", "AsyncClient"])
def test_a_client_wide_proxy(make_client: Callable[..., Any], emulator) -> None:
    with ForwardProxy() as proxy:
        completions = make_client(provider=provider_for(emulator), proxies=proxy.url())
        result = completions.chat.completions.create(messages=copy.deepcopy(HELLO), model="")
        if make_client is AsyncClient:
            result = asyncio.run(_awaited(result))
        assert len(proxy.requests) == 2
    assert result.choices[0].message.content == "Hello from upstream: Hello"


@pytest.mark.parametrize("way", [chat_completion, chat_completion_stream], ids=["create", "stream"])
def test_the_proxy_from_gpt4frees_environment_variable(way: Way, emulator, monkeypatch) -> None:
    with ForwardProxy() as proxy:
        monkeypatch.setenv("G4F_PROXY", proxy.url())
        assert way(provider_for(emulator), copy.deepcopy(HELLO)) == "Hello from upstream: Hello"
        assert len(proxy.requests) == 2


CLEARANCE = "cf-clearance-SECRET-0123456789"
BROWSER = "Mozilla/5.0 (Macintosh) MyBrowser/1.0"


@each_way
@pytest.mark.parametrize(
    "cookies", [{"cf_clearance": CLEARANCE}, f"cf_clearance={CLEARANCE}"], ids=["dict", "header"]
)
def test_a_browsers_cookies_and_headers_go_with_that_call_only(
    way: Way, cookies: Any, emulator, tmp_path
) -> None:
    """gpt4free's conventional ``cookies=`` and ``headers=`` (a cf_clearance and the
    User-Agent of a browser that passed the site's challenge) reach the page GET and the
    chat request of the call that brought them, and no file gpt4free writes."""
    provider = provider_for(emulator)
    text = way(provider, copy.deepcopy(HELLO), cookies=cookies, headers={"User-Agent": BROWSER})
    assert text == "Hello from upstream: Hello"
    page, post = emulator.stats.requests
    for record in (page, post):
        assert record.header("Cookie") == f"cf_clearance={CLEARANCE}"
        assert record.header("User-Agent") == BROWSER
    way(provider, copy.deepcopy(HELLO))
    later = emulator.stats.requests[-1]
    assert later.header("Cookie") is None
    assert later.header("User-Agent") != BROWSER
    written = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert not any(CLEARANCE in path.read_text(errors="replace") for path in written)


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


async def test_the_sync_client_inside_a_running_loop_leaves_the_loop_alone(emulator) -> None:
    """Our create_completion (a background loop) wins over gpt4free's, which would patch
    the running loop with nest_asyncio (0.4.5.4) or need it."""
    loop = asyncio.get_running_loop()
    assert client(provider_for(emulator), copy.deepcopy(HELLO)) == "Hello from upstream: Hello"
    assert not hasattr(type(loop), "_nest_patched")


def test_the_clients_model_list_is_ours(emulator) -> None:
    models = getattr(Client(provider=provider_for(emulator)), "models", None)
    if not hasattr(models, "get_all"):
        pytest.skip(f"gpt4free {RELEASE}'s Client lists no provider models")
    assert models.get_all() == ["gpt-4", "gpt-4o", "gpt-4o-mini"]


# --- errors -------------------------------------------------------------------------------------

ONE_ATTEMPT = RetryPolicy(attempts=1)


@each_way
def test_a_challenge_is_our_bot_protection_error(way: Way, emulator_factory) -> None:
    emulator = emulator_factory(faults=[Fault(kind="challenge", target="page")])
    with pytest.raises(BotProtectionError) as caught:
        way(provider_for(emulator, retry_policy=ONE_ATTEMPT), copy.deepcopy(HELLO))
    assert caught.value.status == 403
    assert emulator.stats.ajax_requests == 0


@each_way
def test_an_unknown_model_is_our_error_before_anything_is_sent(way: Way, emulator) -> None:
    with pytest.raises(UnknownModelError, match="'claude-9'; valid models: gpt-4, gpt-4o"):
        way(provider_for(emulator), copy.deepcopy(HELLO), model="claude-9")
    assert emulator.stats.page_fetches == 0


@each_way
def test_a_broken_stream_is_our_interruption_with_the_delivered_text(
    way: Way, emulator_factory
) -> None:
    emulator = emulator_factory(faults=[Fault(kind="drop", after_tokens=1)])
    with pytest.raises(StreamInterruptedError) as caught:
        way(provider_for(emulator, retry_policy=ONE_ATTEMPT), copy.deepcopy(HELLO))
    assert caught.value.partial_text
    assert "Hello from upstream: Hello".startswith(caught.value.partial_text)


@pytest.mark.parametrize("stream_timeout", [None, 30], ids=["plain", "stream_timeout"])
def test_a_timeout_in_a_streamed_async_call(stream_timeout: int | None, emulator_factory) -> None:
    emulator = emulator_factory(faults=[Fault(kind="stall", seconds=30, where="before")])
    extra = {} if stream_timeout is None else {"stream_timeout": stream_timeout}
    with pytest.raises(TimeoutError) as caught:
        async_client_stream(provider_for(emulator), copy.deepcopy(HELLO), timeout=0.5, **extra)
    chain = _causes(caught.value)
    ours = [error for error in chain if isinstance(error, ProviderTimeoutError)]
    assert ours, chain
    assert ours[0].limit == "total"
    if stream_timeout is not None and WRAPS_STREAM_TIMEOUTS:
        assert type(caught.value) is TimeoutError
        assert str(caught.value) == str(ours[0])
    else:
        assert caught.value is ours[0]


def _causes(error: BaseException | None) -> list[BaseException]:
    chain = []
    while error is not None:
        chain.append(error)
        error = error.__cause__
    return chain


def test_our_errors_are_not_gpt4frees() -> None:
    assert not issubclass(ChatGpttError, g4f.errors.ProviderNotWorkingError)
