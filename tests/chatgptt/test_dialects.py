"""Both dialects end to end against the emulator: the same provider, the same behaviours —
answers, detection, conversations, nonce refresh, retries before text, interruptions after
it, completeness, the site's refusals — whichever protocol the site speaks."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from chatgptt import (
    ChatGptt,
    ChatGpttError,
    ChatNotFoundError,
    IncompleteReplyError,
    IPBannedError,
    MessageFlaggedError,
    NonceRejectedError,
    ProviderConnectionError,
    RetryPolicy,
    StreamInterruptedError,
    TokenLimitError,
    TokensNotFoundError,
    UnknownActionError,
    UpstreamError,
)
from chatgptt.emulator import UPSTREAM_ERROR_TRIGGER, Fault
from chatgptt.emulator.answers import DEFAULT_ERROR_OBJECT_MESSAGE
from chatgptt.testing import provider_for
from tests.conftest import FakeSleep

HELLO = [{"role": "user", "content": "Hello"}]
ANSWER = "Hello from upstream: Hello"
DIALECTS = ("classic", "aipkit")

#: The AJAX requests one attempt makes: classic one POST, AIPKit step 1 and step 2.
REQUESTS = {"classic": 1, "aipkit": 2}


@pytest.fixture(params=DIALECTS)
def dialect(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def site(emulator_factory: Any, dialect: str, **config: Any) -> Any:
    return emulator_factory(dialect=dialect, **config)


def provider(emulator: Any, sleep: FakeSleep | None = None, **attributes: Any) -> type[ChatGptt]:
    if sleep is not None:
        attributes["retry_policy"] = RetryPolicy(sleep=sleep, jitter=0)
    return provider_for(emulator, **attributes)


async def collect(
    cls: type[ChatGptt], messages: Any = HELLO, **options: Any
) -> tuple[str, ChatGpttError | None]:
    chunks: list[str] = []
    try:
        async for chunk in cls.create_async_generator("gpt-4o", messages, **options):
            chunks.append(chunk)
    except ChatGpttError as exc:
        error: ChatGpttError | None = exc
    else:
        error = None
    text = "".join(chunks)
    assert error is None or error.partial_text == text, "the error carries exactly what came"
    return text, error


# --- answers and detection -----------------------------------------------------------------


@pytest.mark.parametrize("page", ["inline", "popup"])
async def test_the_page_picks_the_dialect_and_the_answer_streams(
    emulator_factory, dialect: str, page: str
) -> None:
    emulator = site(emulator_factory, dialect, aipkit_page=page, token_delay=0.0)
    cls = provider(emulator)
    chunks = [chunk async for chunk in cls.create_async_generator("gpt-4o", HELLO)]
    assert "".join(chunks) == ANSWER
    assert emulator.stats.received[-1][-1] == {"role": "user", "content": "Hello"}
    assert cls.token_cache.peek(cls.settings().site.page_url)[1].dialect == dialect  # type: ignore[index]


async def test_a_forced_dialect_the_site_does_not_speak_fails_clearly(
    emulator_factory, dialect: str
) -> None:
    emulator = site(emulator_factory, dialect)
    other = "classic" if dialect == "aipkit" else "aipkit"
    _text, error = await collect(provider(emulator), dialect=other)
    assert isinstance(error, TokensNotFoundError)
    assert emulator.stats.ajax_requests == 0


@pytest.mark.parametrize("framing", ["length", "close"])
async def test_a_page_without_a_chat_names_its_url(emulator_factory, framing: str) -> None:
    """Also when the page came without a declared length: it ended with its </html>."""
    emulator = emulator_factory(page_style="no_chat", framing=framing)
    _text, error = await collect(provider(emulator))
    assert isinstance(error, ChatNotFoundError)
    assert emulator.url in str(error)
    assert emulator.stats.ajax_requests == 0


@pytest.mark.parametrize("before", DIALECTS)
async def test_a_site_that_changes_its_plugin_is_spoken_to_in_its_new_dialect(
    emulator_factory, before: str
) -> None:
    """The site upgrades (or downgrades) the plugin while the tokens are cached: its 400 0
    makes the same call read the page again, and it succeeds."""
    emulator = site(emulator_factory, before)
    cls = provider(emulator)
    assert await collect(cls) == (ANSWER, None)
    after = "aipkit" if before == "classic" else "classic"
    emulator.config = attrs.evolve(emulator.config, dialect=after)
    assert await collect(cls) == (ANSWER, None)
    assert emulator.stats.page_fetches == 2
    assert cls.token_cache.peek(cls.settings().site.page_url)[1].dialect == after  # type: ignore[index]
    assert await collect(cls) == (ANSWER, None)
    assert emulator.stats.page_fetches == 2, "the new dialect is cached in turn"


# --- conversations -----------------------------------------------------------------------------


async def test_a_three_turn_conversation_continues_one_server_conversation(
    emulator_factory,
) -> None:
    emulator = site(emulator_factory, "aipkit")
    cls = provider(emulator)
    messages: list[dict[str, str]] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello"},
    ]
    answers = []
    for question in ("And now?", "Bye"):
        text, error = await collect(cls, messages)
        assert error is None
        answers.append(text)
        messages += [{"role": "assistant", "content": text}, {"role": "user", "content": question}]
    text, error = await collect(cls, messages)
    assert error is None
    answers.append(text)
    first = "System: Be brief.\nUser: Hello\nAssistant:"
    assert answers == [
        f"Hello from upstream: {first}",
        "Hello from upstream: And now?",
        "Hello from upstream: Bye",
    ]
    streams = [
        r for r in emulator.stats.requests if r.query.get("action") == "aipkit_frontend_chat_stream"
    ]
    ids = {(r.query["session_id"], r.query["conversation_uuid"]) for r in streams}
    assert len(streams) == 3
    assert len(ids) == 1, "one server conversation"
    (key,) = ids
    stored = emulator.stats.conversations[key]
    assert [m["content"] for m in stored if m["role"] == "user"] == [first, "And now?", "Bye"]
    # What the model saw last: the bot's prompt, the server's own history, the new message.
    seen = emulator.stats.received[-1]
    assert seen[0]["role"] == "system"
    assert [m["content"] for m in seen[1:]] == [
        first,
        answers[0],
        "And now?",
        answers[1],
        "Bye",
    ]


async def test_history_reaches_the_model_in_either_dialect(emulator_factory, dialect: str) -> None:
    emulator = site(emulator_factory, dialect)
    conversation = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "And now?"},
    ]
    text, error = await collect(provider(emulator), conversation)
    assert error is None
    seen = [m["content"] for m in emulator.stats.received[-1]]
    if dialect == "classic":
        assert seen[1:] == ["Hi", "Hello! How can I help?", "And now?"]
    else:  # a conversation this provider never held: folded into a new one
        assert seen[-1] == "User: Hi\nAssistant: Hello! How can I help?\nUser: And now?\nAssistant:"
    assert text.startswith("Hello from upstream: ")


# --- the nonce ---------------------------------------------------------------------------------


async def test_a_rotated_nonce_is_renewed_once_per_call(emulator_factory, dialect: str) -> None:
    emulator = site(emulator_factory, dialect)
    cls = provider(emulator)
    assert await collect(cls) == (ANSWER, None)
    emulator.rotate_nonce()
    assert await collect(cls) == (ANSWER, None)
    if dialect == "classic":
        assert emulator.stats.page_fetches == 2, "the page gives the new nonce"
    else:
        assert (emulator.stats.page_fetches, emulator.stats.nonce_fetches) == (1, 1)
    assert await collect(cls) == (ANSWER, None)
    assert emulator.stats.page_fetches == (2 if dialect == "classic" else 1)


async def test_a_nonce_rejected_twice_is_final(emulator_factory, dialect: str) -> None:
    emulator = site(emulator_factory, dialect, faults=[Fault(kind="expire_nonce", times=None)])
    _text, error = await collect(provider(emulator))
    assert isinstance(error, NonceRejectedError)
    assert error.attempts == 2


async def test_concurrent_calls_that_see_the_nonce_rejected_renew_it_once(
    emulator_factory, dialect: str
) -> None:
    import asyncio

    emulator = site(emulator_factory, dialect)
    cls = provider(emulator)
    assert await collect(cls) == (ANSWER, None)
    emulator.rotate_nonce()
    results = await asyncio.gather(*(collect(cls) for _ in range(20)))
    assert all(result == (ANSWER, None) for result in results)
    renewals = (
        emulator.stats.page_fetches - 1 if dialect == "classic" else emulator.stats.nonce_fetches
    )
    assert renewals == 1


# --- retries before text, interruptions after ------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        Fault(kind="status", status=503),
        Fault(kind="drop"),
        Fault(kind="malformed", variant="no_done", times=1),
    ],
    ids=["503", "drop-before-text", "no-done"],
)
async def test_a_failure_before_text_is_retried(
    emulator_factory, dialect: str, fault: Fault
) -> None:
    emulator = site(emulator_factory, dialect, faults=[fault])
    sleep = FakeSleep()
    text, error = await collect(provider(emulator, sleep))
    if fault.variant == "no_done" and dialect == "classic":
        # The finish frame came, only [DONE] is missing: the answer is complete.
        assert (text, error) == (ANSWER, None)
        return
    if fault.variant == "no_done":
        # Its text came before the missing end: an interruption, not a retry.
        assert isinstance(error, StreamInterruptedError)
        assert isinstance(error.cause, IncompleteReplyError)
        assert text
        assert ANSWER.startswith(text)
        return
    assert (text, error) == (ANSWER, None)
    assert sleep.delays == [0.5]
    # A fault hits the first AJAX request: on AIPKit step 1, whose retry starts over.
    assert emulator.stats.ajax_requests == 1 + REQUESTS[dialect]


async def test_an_aipkit_step_one_failure_retries_from_step_one(emulator_factory) -> None:
    emulator = site(
        emulator_factory, "aipkit", faults=[Fault(kind="status", status=502, target="cache")]
    )
    sleep = FakeSleep()
    assert await collect(provider(emulator, sleep)) == (ANSWER, None)
    assert emulator.stats.ajax_requests == 3, "the failed step 1, then both steps"
    assert emulator.stats.stream_gets == 1


async def test_an_aipkit_stream_cut_before_text_needs_a_new_key(emulator_factory) -> None:
    """The first stream spent its one-use key: the retry starts again from step 1."""
    emulator = site(emulator_factory, "aipkit", faults=[Fault(kind="drop", target="stream")])
    sleep = FakeSleep()
    assert await collect(provider(emulator, sleep)) == (ANSWER, None)
    assert (emulator.stats.cache_posts, emulator.stats.stream_gets) == (2, 2)


async def test_a_drop_after_text_is_an_interruption_carrying_it(
    emulator_factory, dialect: str
) -> None:
    emulator = site(emulator_factory, dialect, faults=[Fault(kind="drop", after_tokens=1)])
    sleep = FakeSleep()
    text, error = await collect(provider(emulator, sleep))
    assert text == "Hello fr"
    assert isinstance(error, StreamInterruptedError)
    assert isinstance(error.cause, ProviderConnectionError)
    assert error.partial_text == "Hello fr"
    assert sleep.delays == [], "nothing seen is retried"


async def test_an_answer_without_its_end_is_interrupted_after_text(
    emulator_factory, dialect: str
) -> None:
    emulator = site(
        emulator_factory, dialect, faults=[Fault(kind="malformed", variant="truncated_end")]
    )
    text, error = await collect(provider(emulator, FakeSleep()))
    assert isinstance(error, StreamInterruptedError)
    assert text == ANSWER, "all the text came, but not the end the site promised"


async def test_a_stall_inside_the_answer_hits_the_idle_limit(
    emulator_factory, dialect: str
) -> None:
    from chatgptt import Timeouts

    emulator = site(
        emulator_factory,
        dialect,
        faults=[Fault(kind="stall", where="inside", after_tokens=1, seconds=30.0)],
    )
    text, error = await collect(provider(emulator), timeouts=Timeouts(idle=0.2))
    assert text == "Hello fr"
    assert isinstance(error, StreamInterruptedError)
    assert getattr(error.cause, "limit", None) == "idle"


# --- the site's refusals -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "error_type"),
    [
        ("tokenLimitReached", TokenLimitError),
        ("ipBanned", IPBannedError),
        ("messageFlagged", MessageFlaggedError),
    ],
)
async def test_the_sites_refusals_are_the_same_errors(
    emulator_factory, dialect: str, flag: str, error_type: type[ChatGpttError]
) -> None:
    emulator = site(emulator_factory, dialect, faults=[Fault(kind="control", flag=flag)])
    sleep = FakeSleep()
    _text, error = await collect(provider(emulator, sleep))
    assert isinstance(error, error_type)
    assert sleep.delays == [], "the site said no on purpose: not retried"


async def test_an_upstream_failure_is_an_upstream_error(emulator_factory, dialect: str) -> None:
    emulator = site(emulator_factory, dialect)
    message = [{"role": "user", "content": f"please {UPSTREAM_ERROR_TRIGGER} now"}]
    text, error = await collect(provider(emulator, FakeSleep()), message)
    assert text == ""
    assert isinstance(error, UpstreamError)
    assert "Incorrect API key provided" in str(error)


async def test_the_models_error_chunk_is_an_upstream_error(emulator_factory, dialect: str) -> None:
    """The model's own error mid-call: classic relays its error object, AIPKit its bare
    message in an ``error`` event after ``message_start``; either way the model failed."""
    emulator = site(emulator_factory, dialect, faults=[Fault(kind="error_object")])
    text, error = await collect(provider(emulator, FakeSleep()))
    assert text == ""
    assert type(error) is UpstreamError
    assert error.site_message == DEFAULT_ERROR_OBJECT_MESSAGE


async def test_400_0_on_every_request_is_final(emulator_factory, dialect: str) -> None:
    emulator = site(
        emulator_factory, dialect, faults=[Fault(kind="status", status=400, body="0", times=None)]
    )
    _text, error = await collect(provider(emulator, FakeSleep()))
    assert isinstance(error, UnknownActionError)
    assert emulator.stats.page_fetches == 2, "read once more, in case the plugin changed"


async def test_the_bot_asked_for_is_honoured_whatever_the_cache_holds(emulator_factory) -> None:
    """The cache keeps each bot's tokens apart: a warm cache never answers for another bot."""
    emulator = site(emulator_factory, "aipkit")  # its page shows bot 5
    cls = provider(emulator)
    assert await collect(cls) == (ANSWER, None)
    _text, error = await collect(cls, bot_id=7)
    assert isinstance(error, TokensNotFoundError)
    assert "bots: 5" in str(error)
    assert await collect(cls, bot_id=5) == (ANSWER, None)
    assert emulator.stats.stream_gets == 2, "bot 7 was never talked to"


async def test_a_forced_dialect_keeps_its_own_cache_entry(emulator_factory) -> None:
    """Calls that force the dialect and calls that let the page decide do not evict each
    other's tokens."""
    emulator = site(emulator_factory, "aipkit")
    cls = provider(emulator)
    for _ in range(3):
        assert await collect(cls) == (ANSWER, None)
        assert await collect(cls, dialect="aipkit") == (ANSWER, None)
    assert emulator.stats.page_fetches == 2


async def test_errors_never_show_the_conversations_ids(emulator_factory) -> None:
    """A failed stream request names the AJAX URL, not its query (the nonce, the guest's
    session and conversation ids)."""
    from chatgptt import Timeouts

    emulator = site(
        emulator_factory, "aipkit", faults=[Fault(kind="stall", seconds=30.0, target="stream")]
    )
    _text, error = await collect(
        provider(emulator), timeouts=Timeouts(first_byte=0.2), retry=RetryPolicy(attempts=1)
    )
    assert error is not None
    assert "session_id" not in str(error)
    assert "conversation_uuid" not in str(error)
    assert emulator.url + "/wp-admin/admin-ajax.php" in str(error)
