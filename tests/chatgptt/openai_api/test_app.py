"""The API's answers, in front of the emulator: completions with usage, streams, agent
conversations, health, the API key, and every error in OpenAI's shape."""

from __future__ import annotations

import contextlib
import io
import json
from typing import Any

import aiohttp
import attrs
import pytest

from chatgptt import ChatGptt, RetryPolicy
from chatgptt.emulator import Fault
from chatgptt.openai_api import ESTIMATE, ServeOptions
from chatgptt.testing import provider_for
from stages.core import TextStream, stage
from tests.chatgptt.openai_api.support import sse_data, wait_until
from tests.conftest import agent_turns

HELLO = [{"role": "user", "content": "Hello"}]
ANSWER = "Hello from upstream: Hello"
ERROR_KEYS = {"message", "type", "param", "code"}


async def post(
    url: str, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, bytes, aiohttp.ClientResponse]:
    async with (
        aiohttp.ClientSession() as client,
        client.post(url, json=body, headers=headers) as reply,
    ):
        return reply.status, await reply.read(), reply


def openai_error(raw: bytes) -> dict[str, Any]:
    """The error object of an error body (failing unless it has OpenAI's shape)."""
    body = json.loads(raw)
    assert set(body) == {"error"}
    assert set(body["error"]) == ERROR_KEYS
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    return dict(body["error"])


# --- answers ----------------------------------------------------------------------------------


async def test_models_are_listed_and_retrieved(start_api, emulator) -> None:
    api = await start_api(provider_for(emulator))
    async with aiohttp.ClientSession() as client:
        async with client.get(api.base + "/models") as reply:
            listed = await reply.json()
        async with client.get(api.base + "/models/gpt-4o-mini") as reply:
            one = await reply.json()
        async with client.get(api.base + "/models/gpt-9") as reply:
            missing = (reply.status, await reply.read())
    assert listed["object"] == "list"
    assert [model["id"] for model in listed["data"]] == ["gpt-4", "gpt-4o", "gpt-4o-mini"]
    assert one == {"id": "gpt-4o-mini", "object": "model", "created": 0, "owned_by": "chatgptt"}
    assert missing[0] == 404
    assert openai_error(missing[1])["code"] == "model_not_found"


async def test_a_whole_completion_has_usage(start_api, emulator) -> None:
    api = await start_api(provider_for(emulator))
    status, body, reply = await post(
        api.base + "/chat/completions", {"model": "gpt-4o-2024-11-20", "messages": HELLO}
    )
    assert status == 200
    assert reply.content_type == "application/json"
    completion = json.loads(body)
    assert completion["object"] == "chat.completion"
    assert completion["id"].startswith("chatcmpl-")
    assert completion["model"] == "gpt-4o"
    (choice,) = completion["choices"]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == ANSWER
    assert choice["finish_reason"] == "stop"
    usage = completion["usage"]
    assert usage["prompt_tokens"] == ESTIMATE.prompt("gpt-4o", HELLO)
    assert usage["completion_tokens"] == ESTIMATE.text("gpt-4o", ANSWER)
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


async def test_a_stream_is_openai_chunks_ending_in_done(start_api, emulator_factory) -> None:
    emulator = emulator_factory(token_delay=0.001)
    api = await start_api(provider_for(emulator))
    status, body, reply = await post(
        api.base + "/chat/completions", {"model": "gpt-4o-mini", "messages": HELLO, "stream": True}
    )
    assert (status, reply.content_type) == (200, "text/event-stream")
    events = sse_data(body)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(data) for data in events[:-1]]
    assert {chunk["object"] for chunk in chunks} == {"chat.completion.chunk"}
    assert len({chunk["id"] for chunk in chunks}) == 1
    assert all("usage" not in chunk for chunk in chunks)  # not asked for
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    text = "".join(chunk["choices"][0]["delta"].get("content") or "" for chunk in chunks)
    assert text == ANSWER
    assert len(chunks) >= 3  # the role, the text (in pieces as the site's reads gave them), the end


async def test_include_usage_ends_the_stream_with_a_usage_chunk(
    start_api, emulator_factory
) -> None:
    emulator = emulator_factory(token_delay=0.001)
    api = await start_api(provider_for(emulator))
    body = {
        "model": "gpt-4",
        "messages": HELLO,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    _, raw, _ = await post(api.base + "/chat/completions", body)
    events = sse_data(raw)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(data) for data in events[:-1]]
    *answer, last = chunks
    assert all(chunk["usage"] is None for chunk in answer)  # present, null: as OpenAI
    assert answer[-1]["choices"][0]["finish_reason"] == "stop"
    assert last["choices"] == []
    assert last["id"] == answer[0]["id"]
    assert last["usage"]["prompt_tokens"] == ESTIMATE.prompt("gpt-4", HELLO)
    assert last["usage"]["completion_tokens"] == ESTIMATE.text("gpt-4", ANSWER)
    assert last["usage"]["total_tokens"] == sum(
        last["usage"][key] for key in ("prompt_tokens", "completion_tokens")
    )


async def test_an_agent_conversation_reaches_the_site_as_text(start_api, emulator) -> None:
    api = await start_api(provider_for(emulator))
    messages = [
        {"role": "system", "content": "Use the tools."},
        *agent_turns(call_id="call_7", arguments='{"city":"Paris"}'),
    ]
    body = {
        "model": "gpt-4o",
        "messages": messages,
        "tools": [{"type": "function", "function": {"name": "weather", "parameters": {}}}],
        "tool_choice": "auto",
        "temperature": 0,
    }
    status, raw, _ = await post(api.base + "/chat/completions", body)
    assert status == 200, raw
    answer = json.loads(raw)["choices"][0]["message"]["content"]
    assert answer == "Hello from upstream: [tool result call_7 (weather)]: 18 C"
    history = emulator.stats.received[-1]
    assert history[-2]["role"] == "assistant"
    # The site's sanitising makes quotes full-width in history; the call is there.
    assert "[tool call call_7: weather(" in history[-2]["content"]


async def test_health_says_what_it_serves_without_a_key(start_api, emulator) -> None:
    class Aipkit(provider_for(emulator)):  # type: ignore[misc]
        dialect = "aipkit"

    auto = provider_for(emulator)
    classic = await start_api(auto, ServeOptions(api_key="k1"))
    other = await start_api(Aipkit)
    async with aiohttp.ClientSession() as client:
        async with client.get(classic.origin + "/health") as reply:
            assert reply.status == 200
            health = await reply.json()
        async with client.get(other.origin + "/health") as reply:
            assert (await reply.json())["dialect"] == "aipkit"
        assert await auto.create_async("gpt-4o", [{"role": "user", "content": "Hi"}])
        async with client.get(classic.origin + "/health") as reply:
            assert (await reply.json())["detected_dialect"] == "classic"
    assert health["status"] == "ok"
    assert health["site"] == emulator.url
    assert (health["dialect"], health["detected_dialect"]) == ("auto", None)
    assert health["in_flight"] == 0
    assert health["usage"] == "estimate"
    assert "k1" not in json.dumps(health)


async def test_health_never_shows_the_credentials_of_the_sites_url(start_api, emulator) -> None:
    """``/health`` is open to anyone who can reach the port: a site URL carrying a user
    and password (which the provider does use) is shown without them."""
    url = emulator.url.replace("http://", "http://alice:s3cret@")
    api = await start_api(ChatGptt.derive("Behind", url=url), ServeOptions(api_key="k1"))
    async with aiohttp.ClientSession() as client, client.get(api.origin + "/health") as reply:
        health = await reply.json()
    assert health["site"] == emulator.url.replace("http://", "http://***@")
    assert "s3cret" not in json.dumps(health)


# --- the API key ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "words"),
    [
        ({}, "didn't provide an API key"),
        ({"Authorization": "Bearer wrong-key"}, "Incorrect API key"),
        ({"Authorization": "Bearer s3cret-key-0"}, "Incorrect API key"),  # a prefix
        ({"Authorization": "s3cret-key-01"}, "Incorrect API key"),  # no scheme
    ],
)
async def test_a_key_is_required_on_v1(start_api, emulator, headers, words) -> None:
    api = await start_api(provider_for(emulator), ServeOptions(api_key="s3cret-key-01"))
    status, raw, _ = await post(
        api.base + "/chat/completions", {"model": "gpt-4o", "messages": HELLO}, headers
    )
    assert status == 401
    error = openai_error(raw)
    assert words in error["message"]
    assert error["code"] == "invalid_api_key"
    assert b"s3cret" not in raw
    assert b"wrong-key" not in raw
    async with (
        aiohttp.ClientSession() as client,
        client.get(api.base + "/models", headers=headers) as reply,
    ):
        assert reply.status == 401
    assert emulator.stats.ajax_requests == 0


async def test_the_right_key_is_let_through(start_api, emulator) -> None:
    api = await start_api(provider_for(emulator), ServeOptions(api_key="s3cret-key-01"))
    status, raw, _ = await post(
        api.base + "/chat/completions",
        {"model": "gpt-4o", "messages": HELLO},
        {"Authorization": "Bearer s3cret-key-01"},
    )
    assert status == 200
    assert json.loads(raw)["choices"][0]["message"]["content"] == ANSWER


@pytest.mark.parametrize(
    ("header", "status"),
    [
        ("bearer s3cret-key-01", 200),  # HTTP's auth schemes are case-insensitive
        ("BEARER  s3cret-key-01", 200),
        ("Basic s3cret-key-01", 401),
        ("s3cret-key-01", 401),
        ("Bearer s3cret-key-01x", 401),
        ("Bearer", 401),
    ],
)
async def test_the_bearer_scheme_in_any_case(start_api, emulator, header, status) -> None:
    api = await start_api(provider_for(emulator), ServeOptions(api_key="s3cret-key-01"))
    async with (
        aiohttp.ClientSession() as client,
        client.get(api.base + "/models", headers={"Authorization": header}) as reply,
    ):
        assert reply.status == status


def test_the_key_stays_out_of_the_options_repr() -> None:
    assert "s3cret" not in repr(ServeOptions(api_key="s3cret"))
    with pytest.raises(ValueError, match="API key"):
        ServeOptions(api_key="two words")


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/v1/chat/completion", 404, "unknown_url"),
        ("POST", "/v2/anything", 404, "unknown_url"),
        ("GET", "/v1/chat/completions", 405, "method_not_allowed"),
        ("DELETE", "/v1/models", 405, "method_not_allowed"),
        ("GET", "/v1/models/", 404, "unknown_url"),  # a model's path, without the model
        ("PUT", "/v1/models/", 405, "method_not_allowed"),
    ],
)
async def test_routes_and_methods_aiohttp_rejects(start_api, emulator, method, path, status, code):
    api = await start_api(provider_for(emulator))
    async with (
        aiohttp.ClientSession() as client,
        client.request(method, api.origin + path) as reply,
    ):
        assert reply.status == status
        assert reply.content_type == "application/json"
        error = openai_error(await reply.read())
    assert error["code"] == code
    assert path in error["message"]


@pytest.mark.parametrize(
    ("data", "content_type", "status", "words"),
    [
        (b'{"model": "gpt-4o", "messages": [', "application/json", 400, "parse the JSON"),
        (b"\xff\xfe\x00", "application/json", 400, "parse the JSON"),
        (b"[" * 100_000, "application/json", 400, "nested too deeply"),
        (b"", "application/json", 400, "parse the JSON"),
        (b"model=gpt-4o", "multipart/form-data; boundary=x", 415, "must be JSON"),
        (b"<xml/>", "application/xml", 415, "must be JSON"),
        (b"x" * (2 << 20), "application/json", 413, "the limit is"),
    ],
)
async def test_bodies_that_cannot_be_read(start_api, emulator, data, content_type, status, words):
    api = await start_api(provider_for(emulator), ServeOptions(max_body_bytes=1 << 20, grace=1))
    async with (
        aiohttp.ClientSession() as client,
        client.post(
            api.base + "/chat/completions",
            data=io.BytesIO(data),
            headers={"Content-Type": content_type},
        ) as reply,
    ):
        assert reply.status == status
        error = openai_error(await reply.read())
    assert words in error["message"]


async def test_a_chunked_body_over_the_limit_is_413(start_api, emulator) -> None:
    api = await start_api(provider_for(emulator), ServeOptions(max_body_bytes=1 << 20))

    async def body() -> Any:
        for _ in range(3):
            yield b"x" * (512 << 10)

    async with (
        aiohttp.ClientSession() as client,
        client.post(
            api.base + "/chat/completions",
            data=body(),
            headers={"Content-Type": "application/json"},
        ) as reply,
    ):
        assert reply.status == 413
        assert openai_error(await reply.read())["code"] == "request_too_large"


async def test_curl_s_default_form_type_is_read_as_json(start_api, emulator) -> None:
    """``curl -d '{...}'`` without a Content-Type header sends a form type."""
    api = await start_api(provider_for(emulator))
    async with (
        aiohttp.ClientSession() as client,
        client.post(
            api.base + "/chat/completions",
            data=json.dumps({"model": "gpt-4o", "messages": HELLO}),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        ) as reply,
    ):
        assert reply.status == 200


@pytest.mark.parametrize(
    ("body", "status", "param", "words"),
    [
        (
            {"model": "gpt-4o", "messages": [{"role": "assistant", "content": "x"}]},
            400,
            "messages",
            "last message",
        ),
        (
            {"model": "gpt-4o", "messages": [{"role": "robot", "content": "x"}]},
            400,
            "messages",
            "messages[0].role",
        ),
        ({"model": "gpt-9", "messages": HELLO}, 404, "model", "unknown model"),
        ({"model": "gpt-4o", "messages": HELLO, "n": 3}, 400, "n", "must be 1"),
        ({"model": 1, "messages": HELLO}, 400, "model", "string"),
    ],
)
async def test_bad_requests_get_openai_errors(start_api, emulator, body, status, param, words):
    api = await start_api(provider_for(emulator))
    got, raw, _ = await post(api.base + "/chat/completions", body)
    assert got == status
    error = openai_error(raw)
    assert (error["type"], error["param"]) == ("invalid_request_error", param)
    assert words in error["message"]
    assert emulator.stats.ajax_requests == 0


async def test_site_failures_map_to_statuses(start_api, emulator_factory, fake_sleep) -> None:
    emulator = emulator_factory(faults=[Fault(kind="status", status=429, retry_after="120")])
    provider = provider_for(emulator, retry_policy=RetryPolicy(sleep=fake_sleep))
    api = await start_api(provider)
    url = api.base + "/chat/completions"
    status, raw, reply = await post(url, {"model": "gpt-4o", "messages": HELLO, "stream": True})
    assert status == 429
    assert reply.headers["Retry-After"] == "120"
    error = openai_error(raw)
    assert "rate limited" in error["message"]
    assert error["code"] == "rate_limit_exceeded"

    emulator.faults.add(Fault(kind="error_words"))
    status, raw, _ = await post(url, {"model": "gpt-4o", "messages": HELLO})
    assert status == 502
    assert "Incorrect API key" in openai_error(raw)["message"]

    emulator.faults.add(Fault(kind="control", flag="tokenLimitReached", message="limit"))
    status, raw, _ = await post(url, {"model": "gpt-4o", "messages": HELLO})
    assert status == 429
    assert openai_error(raw)["code"] == "insufficient_quota"


@pytest.mark.parametrize(
    ("status", "retry_after"), [(429, "7"), (429, "0"), (503, "2"), (502, "2")]
)
async def test_the_sites_rate_limit_is_passed_on_at_once(
    start_api, emulator_factory, fake_sleep, status, retry_after
) -> None:
    """OpenAI's clients wait ``Retry-After`` and retry a 429 themselves: the server passes
    the site's 429 on without waiting it out first. A 429 that asks for no wait, and a 5xx
    with a ``Retry-After``, are still retried here."""
    fault = Fault(kind="status", status=status, retry_after=retry_after, times=1)
    emulator = emulator_factory(faults=[fault])
    provider = provider_for(emulator, retry_policy=RetryPolicy(sleep=fake_sleep))
    api = await start_api(provider)
    answered, raw, reply = await post(
        api.base + "/chat/completions", {"model": "gpt-4o", "messages": HELLO}
    )
    if (status, retry_after) == (429, "7"):
        assert (answered, reply.headers["Retry-After"]) == (429, "7")
        assert emulator.stats.ajax_requests == 1  # not sent again
        assert fake_sleep.delays == []  # nor waited for
        assert "x-should-retry" not in reply.headers  # the client's retry will succeed
    else:
        assert answered == 200, raw
        assert json.loads(raw)["choices"][0]["message"]["content"] == ANSWER
        assert emulator.stats.ajax_requests == 2
        assert fake_sleep.delays == [float(retry_after)]
    # The caller's class is unchanged: the server serves a subclass of it.
    assert provider.retry_policy.retry_on is RetryPolicy().retry_on


async def test_what_a_retry_cannot_mend_tells_the_sdk_not_to_retry(
    start_api, emulator_factory
) -> None:
    emulator = emulator_factory(
        faults=[Fault(kind="control", flag="tokenLimitReached", message="limit")]
    )
    api = await start_api(provider_for(emulator))
    status, raw, reply = await post(
        api.base + "/chat/completions", {"model": "gpt-4o", "messages": HELLO}
    )
    assert (status, openai_error(raw)["code"]) == (429, "insufficient_quota")
    assert reply.headers["x-should-retry"] == "false"


async def stream_ending_in_error(api: Any) -> tuple[list[str], dict[str, Any]]:
    """A streamed request's events, checked to end with an error event (OpenAI's error
    object) and ``[DONE]``; the events and that error."""
    status, raw, _ = await post(
        api.base + "/chat/completions", {"model": "gpt-4o", "messages": HELLO, "stream": True}
    )
    assert status == 200
    events = sse_data(raw)
    assert events[-1] == "[DONE]"
    error: dict[str, Any] = json.loads(events[-2])["error"]
    assert set(error) == ERROR_KEYS
    return events, error


async def test_an_interruption_mid_stream_is_an_error_event(start_api, emulator_factory) -> None:
    emulator = emulator_factory(token_delay=0.001, faults=[Fault(kind="drop", after_tokens=2)])
    api = await start_api(provider_for(emulator))
    events, error = await stream_ending_in_error(api)
    assert "interrupted" in error["message"]
    assert error["code"] == "upstream_error"
    received = "".join(
        json.loads(data)["choices"][0]["delta"].get("content") or "" for data in events[:-2]
    )
    assert ANSWER.startswith(received)
    assert received


async def test_a_bug_mid_stream_still_ends_the_stream_readably(
    start_api, emulator_factory, caplog
) -> None:
    """Not a provider error but a bug (here in a custom stage) after the first chunk: the
    client still gets an error event and ``[DONE]``, not a cut body; the log has the bug."""

    @stage("buggy")
    async def buggy(exchange: Any) -> Any:
        text = exchange.text

        async def chunks() -> Any:
            async for chunk in text:
                yield chunk
                raise RuntimeError("a bug in a custom stage")

        return attrs.evolve(exchange, text=TextStream(chunks(), on_close=text.aclose))

    emulator = emulator_factory(token_delay=0.001)
    provider = provider_for(emulator).edit_pipelines(lambda pipeline: pipeline.append(buggy))
    api = await start_api(provider)
    events, error = await stream_ending_in_error(api)
    assert (error["type"], "see the server's log" in error["message"]) == ("server_error", True)
    assert json.loads(events[0])["choices"][0]["delta"]["role"] == "assistant"
    assert "a bug in a custom stage" in caplog.text


async def test_a_client_gone_mid_stream_is_not_logged_as_a_bug(
    start_api, emulator_factory, caplog
) -> None:
    """A write that finds the client gone (its reset seen before the handler was cancelled)
    ends the request as aiohttp ends any hang-up, not as a failure of the answer."""
    connections: list[Any] = []

    @stage("hang_up")
    async def hang_up(exchange: Any) -> Any:
        text = exchange.text

        async def chunks() -> Any:
            first = True
            async for chunk in text:
                if not first:  # mid-stream: the client's reset, seen before the next write
                    for connection in connections[0].server.connections:
                        connection.transport.close()
                first = False
                yield chunk

        return attrs.evolve(exchange, text=TextStream(chunks(), on_close=text.aclose))

    emulator = emulator_factory(token_delay=0.001)
    api = await start_api(provider_for(emulator).edit_pipelines(lambda p: p.append(hang_up)))
    connections.append(api.runner)
    with contextlib.suppress(aiohttp.ClientError):
        await post(
            api.base + "/chat/completions", {"model": "gpt-4o", "messages": HELLO, "stream": True}
        )
    await wait_until(lambda: not api.state.in_flight)
    assert "the answer failed" not in caplog.text


async def test_the_default_provider_needs_no_arguments() -> None:
    """``make_app()`` serves chatgptt.me (not contacted here)."""
    from chatgptt.openai_api import STATE_KEY, make_app

    served = make_app()[STATE_KEY].provider
    assert issubclass(served, ChatGptt)
    assert (served.url, served.__name__) == (ChatGptt.url, "ChatGptt")
    assert make_app(served)[STATE_KEY].provider is served  # derived once, not per app
