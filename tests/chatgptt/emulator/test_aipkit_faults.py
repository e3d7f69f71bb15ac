"""Every fault kind on an AIPKit site, aimed at one of a chat's requests, seen by a raw client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any, Protocol

import aiohttp
import pytest

from chatgptt.emulator import EmulatorConfig, EmulatorServer, Fault, ManualClock
from chatgptt.emulator.aipkit.answers import (
    BANNED_IP,
    BANNED_WORDS,
    CACHE_NOT_FOUND,
    MODERATION_FLAGGED,
    QUOTA_MESSAGE,
    SECURITY_CHECK_FAILED,
)
from chatgptt.emulator.model import UPSTREAM_ERROR_MESSAGE

from .aipkit_captures import MESSAGE_ID_RANDOM
from .aipkit_support import CONVERSATION, PADDING, SESSION, Guest, parse_events, summary, text_of

START = 1_795_672_367.0
ANSWER = ["message_start", "delta", "delta", "delta", "delta", "done"]


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


class MakeGuest(Protocol):
    """Starts an AIPKit site with these faults and config; a guest who loaded its page."""

    async def __call__(self, *faults: Fault, **config: Any) -> Guest: ...


@pytest.fixture
async def make(client: aiohttp.ClientSession) -> AsyncIterator[MakeGuest]:
    started: list[EmulatorServer] = []

    async def factory(*faults: Fault, **config: Any) -> Guest:
        site_config = EmulatorConfig(dialect="aipkit", clock=ManualClock(START), **config)
        site = EmulatorServer(site_config, faults)
        await site.start()
        started.append(site)
        guest = Guest(site, client)
        await guest.load_page()
        return guest

    yield factory
    for site in started:
        await site.stop()


async def read_until_broken(response: aiohttp.ClientResponse) -> tuple[bytes, bool]:
    data = bytearray()
    try:
        async for chunk in response.content.iter_any():
            data += chunk
    except aiohttp.ClientPayloadError:
        return bytes(data), True
    return bytes(data), False


async def read_into(response: aiohttp.ClientResponse, data: bytearray) -> None:
    """Read the body into ``data`` as it comes, so a timeout keeps what arrived."""
    async for chunk in response.content.iter_any():
        data += chunk


def frames(body: bytes) -> list[bytes]:
    return [frame for frame in body.split(b"\n\n") if frame]


# --- targets -------------------------------------------------------------------------------------


async def test_drop_the_stream_after_two_tokens(make: MakeGuest) -> None:
    guest = await make(Fault(kind="drop", after_tokens=2, target="stream"))
    key = await guest.key()  # step 1 is left alone
    async with guest.client.get(guest.ajax, params=guest.stream_query(key)) as response:
        assert response.status == 200
        body, broken = await read_until_broken(response)
    assert broken
    assert body.startswith(PADDING)
    assert summary(parse_events(body)) == ["message_start", "delta", "delta"]
    assert text_of(await guest.say("again")) == "Hello from upstream: again"
    # The site logged the whole answer: it was the connection that broke.
    assert guest.site.state.conversations[(SESSION, CONVERSATION)][1]["content"] == (
        "Hello from upstream: Hello"
    )


async def test_a_classic_drop_spec_means_the_stream(make: MakeGuest) -> None:
    """``drop,after_tokens=N`` with the default target skips step 1: it means the answer."""
    guest = await make(Fault(kind="drop", after_tokens=1))
    key = await guest.key()
    async with guest.client.get(guest.ajax, params=guest.stream_query(key)) as response:
        body, broken = await read_until_broken(response)
    assert broken
    assert summary(parse_events(body)) == ["message_start", "delta"]


@pytest.mark.parametrize("after_bytes", [0, 100, 4101, 4140])
async def test_drop_the_stream_after_bytes(make: MakeGuest, after_bytes: int) -> None:
    """The connection breaks after exactly that many body bytes (4101: after the padding)."""
    guest = await make(Fault(kind="drop", after_bytes=after_bytes, target="stream"))
    key = await guest.key()
    async with guest.client.get(guest.ajax, params=guest.stream_query(key)) as response:
        body, broken = await read_until_broken(response)
    assert broken
    assert len(body) == after_bytes
    assert (PADDING + b"event: message_start\ndata: ").startswith(body) or body.startswith(
        PADDING + b"event: message_start\ndata: "
    )


async def test_drop_step_one_after_bytes(make: MakeGuest) -> None:
    guest = await make(Fault(kind="drop", after_bytes=10, target="cache"))
    form = {"action": "aipkit_cache_sse_message", "_ajax_nonce": guest.nonce, "message": "x"}
    async with guest.client.post(guest.ajax, data=form) as response:
        body, broken = await read_until_broken(response)
    assert (body, broken) == (b'{"success"', True)


async def test_status_on_step_one_only(make: MakeGuest) -> None:
    guest = await make(Fault(kind="status", status=503, retry_after="7", target="cache", times=2))
    for _ in range(2):
        status, _ = await guest.cache()
        assert status == 503
    async with guest.client.post(
        guest.ajax, data={"action": "aipkit_cache_sse_message", "_ajax_nonce": guest.nonce}
    ) as response:
        assert response.status == 400  # the fault is used up: the site's own answer
    assert text_of(await guest.say("Hello")) == "Hello from upstream: Hello"


async def test_status_with_retry_after_on_step_one(make: MakeGuest) -> None:
    guest = await make(Fault(kind="status", status=429, retry_after="7", target="cache"))
    form = {"action": "aipkit_cache_sse_message", "_ajax_nonce": guest.nonce, "message": "x"}
    async with guest.client.post(guest.ajax, data=form) as response:
        assert response.status == 429
        assert response.headers["Retry-After"] == "7"
        assert "429 Too Many Requests" in await response.text()


async def test_status_on_the_nonce_endpoint(make: MakeGuest) -> None:
    guest = await make(Fault(kind="status", status=502, target="nonce"))
    assert text_of(await guest.say("Hello")) == "Hello from upstream: Hello"
    form = {"action": "aipkit_get_frontend_chat_nonce"}
    async with guest.client.post(guest.ajax, data=form) as response:
        assert response.status == 502
    async with guest.client.post(guest.ajax, data=form) as response:
        assert response.status == 200
    assert guest.site.state.nonce_fetches == 1  # the faulted one never reached the plugin


async def test_ajax_target_hits_the_first_ajax_request(make: MakeGuest) -> None:
    guest = await make(Fault(kind="status", status=500))
    assert (await guest.cache())[0] == 500
    assert text_of(await guest.say("Hello")) == "Hello from upstream: Hello"


async def test_challenge_on_the_stream(make: MakeGuest) -> None:
    guest = await make(Fault(kind="challenge", status=503, target="stream"))
    key = await guest.key()
    response, body = await guest.stream(key)
    assert response.status == 503
    assert response.headers["cf-mitigated"] == "challenge"
    assert b"Just a moment..." in body
    assert key in guest.site.state.sse_cache  # the plugin never saw the request


async def test_status_on_the_page(make: MakeGuest) -> None:
    guest = await make()
    guest.site.faults.add(Fault(kind="status", status=521, target="page"))
    async with guest.client.get(guest.site.url) as response:
        assert response.status == 521
    await guest.load_page()
    assert text_of(await guest.say("Hello")) == "Hello from upstream: Hello"


# --- nonce ---------------------------------------------------------------------------------------


async def test_expired_nonce_on_step_one(make: MakeGuest) -> None:
    guest = await make(Fault(kind="expire_nonce", target="cache"))
    status, payload = await guest.cache()
    assert (status, payload["data"]["code"]) == (403, "nonce_failure_cache_sse")
    async with guest.client.post(
        guest.ajax, data={"action": "aipkit_get_frontend_chat_nonce"}
    ) as response:
        guest.config["nonce"] = (await response.json())["data"]["nonce"]
    assert text_of(await guest.say("Hello")) == "Hello from upstream: Hello"


async def test_expired_nonce_on_step_two_keeps_the_key(make: MakeGuest) -> None:
    guest = await make(Fault(kind="expire_nonce", target="stream"))
    key = await guest.key()
    events = await guest.events(key)
    assert [(e.name, e.json) for e in events] == [
        ("error", {"error": SECURITY_CHECK_FAILED}),
        ("done", {"finished": True}),
    ]
    async with guest.client.post(
        guest.ajax, data={"action": "aipkit_get_frontend_chat_nonce"}
    ) as response:
        guest.config["nonce"] = (await response.json())["data"]["nonce"]
    assert text_of(await guest.events(key)) == "Hello from upstream: Hello"


# --- stalls --------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["before", "inside"])
async def test_short_stall_then_the_whole_stream(make: MakeGuest, where: str) -> None:
    fault = Fault(kind="stall", seconds=0.01, where=where, after_tokens=2, target="stream")  # type: ignore[arg-type]
    guest = await make(fault)
    assert summary(await guest.say("Hello")) == ANSWER


async def test_stall_inside_after_a_token(make: MakeGuest) -> None:
    """The client sees the padding, ``message_start`` and one delta, then nothing."""
    guest = await make(
        Fault(kind="stall", seconds=60, where="inside", after_tokens=1, target="stream")
    )
    key = await guest.key()
    data = bytearray()
    async with guest.client.get(
        guest.ajax, params=guest.stream_query(key), timeout=aiohttp.ClientTimeout(sock_read=0.3)
    ) as response:
        with pytest.raises(asyncio.TimeoutError):
            await read_into(response, data)
    assert summary(parse_events(bytes(data))) == ["message_start", "delta"]


# --- malformed streams ---------------------------------------------------------------------------


async def body_with(make: MakeGuest, fault: Fault, message: str = "Hello") -> tuple[bytes, bool]:
    guest = await make(fault)
    key = await guest.key(message)
    async with guest.client.get(guest.ajax, params=guest.stream_query(key)) as response:
        body, broken = await read_until_broken(response)
    return stable(body), broken


def stable(body: bytes) -> bytes:
    """``body`` with the random part of message ids masked."""
    return MESSAGE_ID_RANDOM.sub(rb"\1<random>", body)


async def normal_body(make: MakeGuest) -> bytes:
    guest = await make()
    _, body = await guest.stream(await guest.key())
    return stable(body)


async def test_malformed_invalid_json(make: MakeGuest) -> None:
    body, broken = await body_with(make, Fault(kind="malformed", variant="invalid_json"))
    assert not broken
    found = frames(body)
    assert found[3] == b'data: {"delta":"unfinished'
    with pytest.raises(json.JSONDecodeError):
        json.loads(found[3].removeprefix(b"data: "))
    normal = frames(await normal_body(make))
    assert found[:3] == normal[:3]
    assert found[4:] == normal[3:]


async def test_malformed_no_done(make: MakeGuest) -> None:
    body, broken = await body_with(make, Fault(kind="malformed", variant="no_done"))
    assert not broken
    assert summary(parse_events(body)) == ANSWER[:-1]


async def test_malformed_truncated_end(make: MakeGuest) -> None:
    body, broken = await body_with(make, Fault(kind="malformed", variant="truncated_end"))
    assert not broken
    assert body.endswith(b"event: done\ndata: ")  # the last frame cut in half
    assert body == (await normal_body(make))[: len(body)]


async def test_malformed_invalid_utf8(make: MakeGuest) -> None:
    body, _ = await body_with(make, Fault(kind="malformed", variant="invalid_utf8", after_tokens=2))
    assert frames(body)[4] == b'data: {"delta":"\xff\xfe"}'
    with pytest.raises(UnicodeDecodeError):
        body.decode()


async def test_malformed_limited_has_no_aipkit_form(make: MakeGuest) -> None:
    body, _ = await body_with(make, Fault(kind="malformed", variant="limited"))
    assert summary(parse_events(body)) == ANSWER


async def test_answer_faults_wait_for_the_stream(make: MakeGuest) -> None:
    """With the default target, an answer-shaping fault passes step 1 and the nonce fetch."""
    guest = await make(Fault(kind="malformed", variant="no_done"))
    async with guest.client.post(
        guest.ajax, data={"action": "aipkit_get_frontend_chat_nonce"}
    ) as response:
        assert response.status == 200
    assert summary(await guest.say("Hello")) == ANSWER[:-1]
    assert summary(await guest.say("Hello")) == ANSWER


# --- upstream errors -----------------------------------------------------------------------------


async def test_error_words_is_the_upstream_error(make: MakeGuest) -> None:
    guest = await make(Fault(kind="error_words"))
    events = await guest.say("Hello")
    assert [(e.name, e.json) for e in events] == [
        ("message_start", events[0].json),
        ("error", {"error": f"API Error: {UPSTREAM_ERROR_MESSAGE} (Code: invalid_api_key)"}),
    ]
    state = guest.site.state
    assert len(state.received) == 1  # the request reached the model
    assert state.conversations[(SESSION, CONVERSATION)] == [{"role": "user", "content": "Hello"}]


async def test_error_words_message(make: MakeGuest) -> None:
    guest = await make(Fault(kind="error_words", message="Rate limit reached"))
    events = await guest.say("Hello")
    assert events[-1].json == {"error": "API Error: Rate limit reached (Code: invalid_api_key)"}


async def test_error_object_is_an_upstream_error_chunk(make: MakeGuest) -> None:
    guest = await make(Fault(kind="error_object", message="Model overloaded"))
    events = await guest.say("Hello")
    assert summary(events) == ["message_start", "error"]
    assert events[-1].json == {"error": "Model overloaded"}


# --- refusals before the model -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("ipBanned", BANNED_IP),
        ("messageFlagged", BANNED_WORDS),
        ("modflag", MODERATION_FLAGGED),
        (
            "pineconeError",
            "There was an error querying Pinecone. Please check your Pinecone settings.",
        ),
    ],
)
async def test_control_flags_become_aipkit_refusals(
    make: MakeGuest, flag: str, message: str
) -> None:
    guest = await make(Fault(kind="control", flag=flag))  # type: ignore[arg-type]
    events = await guest.say("Hello")
    assert [(e.name, e.json) for e in events] == [
        ("error", {"error": message}),
        ("done", {"finished": True}),
    ]
    assert events[0].id == f"err-{int(START)}"
    assert list(guest.site.state.received) == []
    assert len(guest.site.state.conversations) == 0


async def test_control_message_replaces_the_default(make: MakeGuest) -> None:
    guest = await make(Fault(kind="control", flag="ipBanned", message="Go away."))
    assert (await guest.say("Hello"))[0].json == {"error": "Go away."}


@pytest.mark.parametrize(
    "fault",
    [Fault(kind="quota"), Fault(kind="control", flag="tokenLimitReached")],
    ids=["quota", "control"],
)
async def test_quota_error_with_notice(make: MakeGuest, fault: Fault) -> None:
    guest = await make(fault)
    events = await guest.say("Hello")
    assert [(e.name, e.json) for e in events] == [
        (
            "error",
            {
                "error": QUOTA_MESSAGE,
                "quota_notice": {"type": "quota_notice", "message": QUOTA_MESSAGE, "actions": []},
            },
        ),
        ("done", {"finished": True}),
    ]
    assert list(guest.site.state.received) == []


async def test_quota_error_without_notice(make: MakeGuest) -> None:
    guest = await make(Fault(kind="quota", message="Access disabled for guests.", notice=False))
    assert (await guest.say("Hello"))[0].json == {"error": "Access disabled for guests."}


# --- scripted events -----------------------------------------------------------------------------


async def test_error_event_before_message_start(make: MakeGuest) -> None:
    guest = await make(Fault(kind="error_event", message="Boom"))
    assert [(e.name, e.json) for e in await guest.say("Hello")] == [
        ("error", {"error": "Boom"}),
        ("done", {"finished": True}),
    ]
    assert list(guest.site.state.received) == []


async def test_error_event_before_without_done(make: MakeGuest) -> None:
    guest = await make(Fault(kind="error_event", message="Boom", done=False))
    assert summary(await guest.say("Hello")) == ["error"]


async def test_error_event_inside_the_answer(make: MakeGuest) -> None:
    guest = await make(Fault(kind="error_event", message="Boom", where="inside", after_tokens=2))
    events = await guest.say("Hello")
    assert summary(events) == ["message_start", "delta", "delta", "error"]
    assert text_of(events) == "Hello from upstr"
    assert events[-1].id == f"err-{int(START)}"
    # The message was logged; the broken answer was not.
    assert guest.site.state.conversations[(SESSION, CONVERSATION)] == [
        {"role": "user", "content": "Hello"}
    ]


async def test_error_event_inside_with_done(make: MakeGuest) -> None:
    guest = await make(Fault(kind="error_event", where="inside", done=True))
    events = await guest.say("Hello")
    assert summary(events) == ["message_start", "error", "done"]
    assert events[1].json == {"error": "An error occurred."}


async def test_warning_then_the_answer(make: MakeGuest) -> None:
    guest = await make(Fault(kind="warning", message="Careful", after_tokens=1))
    events = await guest.say("Hello")
    assert summary(events) == ["message_start", "delta", "warning", *ANSWER[2:]]
    assert events[2].json == {"error": "Careful"}
    assert events[2].id == f"err-{int(START)}"
    assert text_of(events) == "Hello from upstream: Hello"


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (
            Fault(kind="named_event", event="citations", data='[{"url":"https://a.example"}]'),
            ["message_start", "citations", *ANSWER[1:]],
        ),
        (
            Fault(kind="named_event", event="status", where="inside", after_tokens=2),
            ["message_start", "delta", "delta", "status", *ANSWER[3:]],
        ),
        (
            Fault(kind="named_event", event="surprise.v2", where="before"),
            ["surprise.v2", *ANSWER],
        ),
    ],
)
async def test_named_events(make: MakeGuest, fault: Fault, expected: list[str]) -> None:
    guest = await make(fault)
    events = await guest.say("Hello")
    assert summary(events) == expected
    extra = next(e for e in events if e.name == fault.event)
    assert extra.data == (fault.data or "{}")
    assert text_of(events) == "Hello from upstream: Hello"


async def test_done_carries_citations_and_grounding(make: MakeGuest) -> None:
    guest = await make(Fault(kind="done_data"))
    done = (await guest.say("Hello"))[-1]
    assert done.name == "done"
    assert done.json["finished"] is True
    assert set(done.json) == {"finished", "grounding_metadata", "citations"}


async def test_done_data_as_given(make: MakeGuest) -> None:
    guest = await make(Fault(kind="done_data", data='{"finished":true,"citations":[]}'))
    assert (await guest.say("Hello"))[-1].data == '{"finished":true,"citations":[]}'


async def test_responses_mode_keeps_its_frames_around_faults(make: MakeGuest) -> None:
    guest = await make(Fault(kind="warning", after_tokens=0), aipkit_api_mode="responses")
    assert summary(await guest.say("Hello")) == [
        "message_start",
        "status",
        "status",
        "warning",
        "delta",
        "delta",
        "delta",
        "delta",
        "openai_response_id",
        "done",
    ]


async def test_fault_for_every_stream(make: MakeGuest) -> None:
    guest = await make(Fault(kind="quota", times=None))
    for _ in range(3):
        assert summary(await guest.say("Hello")) == ["error", "done"]
    guest.site.faults.clear()
    assert summary(await guest.say("Hello")) == ANSWER


async def test_aipkit_kinds_never_hit_a_classic_site(client: aiohttp.ClientSession) -> None:
    """A classic chat ignores AIPKit-only faults (they stay pending)."""
    async with EmulatorServer(faults=[Fault(kind="quota"), Fault(kind="warning")]) as site:
        form = {
            "_wpnonce": site.nonce,
            "action": "wpaicg_chat_shortcode_message",
            "message": "Hello",
        }
        async with client.post(site.url + "/wp-admin/admin-ajax.php", data=form) as response:
            assert b"Hello fr" in await response.read()
        assert len(site.faults.pending) == 2


async def test_reused_key_after_a_dropped_stream(make: MakeGuest) -> None:
    """A client that retries step 2 with the same key after a drop gets "not found"."""
    guest = await make(Fault(kind="drop", after_tokens=1, target="stream"))
    key = await guest.key()
    async with guest.client.get(guest.ajax, params=guest.stream_query(key)) as response:
        _, broken = await read_until_broken(response)
    assert broken
    assert (await guest.events(key))[0].json == {"error": CACHE_NOT_FOUND}
