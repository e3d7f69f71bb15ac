"""What a raw client sees on the wire: a stream's exact bytes, and bad input — malformed JSON,
wrong types, a 10 MB body, a header flood, garbage, slow clients — each answered with a clear
OpenAI error while the server goes on serving others."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from chatgptt.openai_api import ServeOptions
from chatgptt.testing import provider_for
from tests.chatgptt.openai_api.support import (
    post_request,
    raw_exchange,
    read_reply,
    sse_data,
)

HELLO = [{"role": "user", "content": "Hello"}]
ANSWER = "Hello from upstream: Hello"
PATH = "/v1/chat/completions"


async def still_serving(api: Any) -> None:
    """Another client gets its answer."""
    async with (
        aiohttp.ClientSession() as client,
        client.post(
            api.base + "/chat/completions", json={"model": "gpt-4o", "messages": HELLO}
        ) as reply,
    ):
        assert reply.status == 200
        assert (await reply.json())["choices"][0]["message"]["content"] == ANSWER


def error_of(reply: Any, status: int) -> dict[str, Any]:
    assert reply.status == status, reply.body[:300]
    assert reply.headers["content-type"].startswith("application/json")
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return dict(error)


async def test_the_stream_s_bytes(start_api, emulator_factory) -> None:
    """Chunked transfer, ``text/event-stream``, events of ``data: <json>`` and a blank line,
    ending with ``data: [DONE]``."""
    emulator = emulator_factory(token_delay=0.001)
    api = await start_api(provider_for(emulator))
    body = json.dumps({"model": "gpt-4o", "messages": HELLO, "stream": True}).encode()
    reply = await raw_exchange(api.host, api.port, post_request(PATH, body))
    assert reply.status == 200
    assert reply.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert reply.headers["transfer-encoding"] == "chunked"
    assert reply.headers["cache-control"] == "no-cache"
    assert reply.body.startswith(b'data: {"id":"chatcmpl-')
    assert reply.body.endswith(b"\n\ndata: [DONE]\n\n")
    events = sse_data(reply.body)
    text = "".join(
        json.loads(data)["choices"][0]["delta"].get("content") or "" for data in events[:-1]
    )
    assert text == ANSWER


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}', "parse the JSON"),
        (b"{'model': 'gpt-4o'}", "parse the JSON"),
        (b'{"model": ["gpt-4o"], "messages": []}', "'model' must be a non-empty string"),
        (b'{"model": "gpt-4o", "messages": {"role": "user"}}', "'messages' must be an array"),
        (b'{"model": "gpt-4o", "messages": [{"role": "user", "content": {}}]}', "content must be"),
        (
            b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}], '
            b'"stream": "true"}',
            "'stream' must be a boolean",
        ),
    ],
)
async def test_malformed_json_and_wrong_types(start_api, emulator, body, words) -> None:
    api = await start_api(provider_for(emulator))
    reply = await raw_exchange(api.host, api.port, post_request(PATH, body))
    assert words in error_of(reply, 400)["message"]
    await still_serving(api)


async def test_a_10_mb_body(start_api, emulator) -> None:
    api = await start_api(provider_for(emulator))
    body = (
        b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "'
        + b"x" * (10 << 20)
        + b'"}]}'
    )
    reply = await raw_exchange(api.host, api.port, post_request(PATH, body), seconds=30)
    error = error_of(reply, 413)
    assert error["code"] == "request_too_large"
    assert "the limit is 4194304" in error["message"]
    await still_serving(api)


async def test_a_10_mb_body_without_a_length(start_api, emulator) -> None:
    api = await start_api(provider_for(emulator))
    head = (
        f"POST {PATH} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    ).encode()
    piece = b"x" * (1 << 20)
    chunks = (b"%x\r\n" % len(piece) + piece + b"\r\n") * 10 + b"0\r\n\r\n"
    reply = await raw_exchange(api.host, api.port, head + chunks, seconds=30)
    assert error_of(reply, 413)["code"] == "request_too_large"
    await still_serving(api)


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ("".join(f"X-Flood-{n}: {n}\r\n" for n in range(500)), "Too many headers"),
        ("X-Long: " + "a" * 20_000 + "\r\n", "Got more than 8190 bytes"),
    ],
)
async def test_a_header_flood(start_api, emulator, extra, words) -> None:
    api = await start_api(provider_for(emulator))
    body = json.dumps({"model": "gpt-4o", "messages": HELLO}).encode()
    reply = await raw_exchange(api.host, api.port, post_request(PATH, body, extra=extra))
    error = error_of(reply, 400)
    assert error["message"].startswith("Bad Request: ")
    assert words.lower() in error["message"].lower()
    await still_serving(api)


async def test_garbage_instead_of_http(start_api, emulator) -> None:
    api = await start_api(provider_for(emulator))
    reply = await raw_exchange(api.host, api.port, b"\x16\x03\x01\x02\x00hello\r\n\r\n")
    assert error_of(reply, 400)["type"] == "invalid_request_error"
    await still_serving(api)


async def test_a_client_too_slow_to_send_its_body(start_api, emulator) -> None:
    api = await start_api(provider_for(emulator), ServeOptions(body_timeout=0.3, grace=1))
    body = json.dumps({"model": "gpt-4o", "messages": HELLO}).encode()
    reader, writer = await asyncio.open_connection(api.host, api.port)
    try:
        writer.write(post_request(PATH, body)[: -len(body) + 5])  # headers and 5 body bytes
        await writer.drain()
        reply = await asyncio.wait_for(read_reply(reader), 10)
    finally:
        writer.close()
    error = error_of(reply, 408)
    assert error["code"] == "request_timeout"
    assert reply.headers["connection"] == "close"
    await still_serving(api)


async def test_a_client_stuck_in_its_headers_is_disconnected(start_api, emulator) -> None:
    api = await start_api(provider_for(emulator), ServeOptions(idle_timeout=0.3, grace=1))
    reader, writer = await asyncio.open_connection(api.host, api.port)
    try:
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Le")
        await writer.drain()
        await still_serving(api)  # meanwhile
        assert await asyncio.wait_for(reader.read(), 10) == b""  # closed by the server
    finally:
        writer.close()


async def test_expect_100_continue_and_an_unknown_expectation(start_api, emulator) -> None:
    api = await start_api(provider_for(emulator))
    body = json.dumps({"model": "gpt-4o", "messages": HELLO}).encode()
    reader, writer = await asyncio.open_connection(api.host, api.port)
    try:
        head = post_request(PATH, body, extra="Expect: 100-continue\r\n")
        writer.write(head[: -len(body)])  # the headers only: wait to be told to go on
        await writer.drain()
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(body)
        await writer.drain()
        reply = await asyncio.wait_for(read_reply(reader), 10)
    finally:
        writer.close()
    assert reply.status == 200
    assert reply.json()["choices"][0]["message"]["content"] == ANSWER
    refused = await raw_exchange(
        api.host, api.port, post_request(PATH, body, extra="Expect: something-else\r\n")
    )
    assert "Unknown Expect" in error_of(refused, 417)["message"]


async def answer_to_headers(api: Any, head: bytes) -> Any:
    """The first response to a request's headers alone (a client waiting for ``100
    Continue`` before it sends its body)."""
    reader, writer = await asyncio.open_connection(api.host, api.port)
    try:
        writer.write(head)
        await writer.drain()
        return await asyncio.wait_for(read_reply(reader), 10)
    finally:
        writer.close()


async def test_expect_100_continue_is_refused_before_the_body(start_api, emulator) -> None:
    """A request the server would refuse gets the refusal instead of ``100 Continue``
    (curl asks so for bodies over 1 MB), and the connection closes: the body is never sent."""
    api = await start_api(provider_for(emulator), ServeOptions(api_key="k1", max_body_bytes=1000))
    body = json.dumps({"model": "gpt-4o", "messages": HELLO}).encode()
    expect = "Expect: 100-continue\r\n"
    keyless = post_request(PATH, body, extra=expect, close=False)[: -len(body)]
    refused = await answer_to_headers(api, keyless)  # not 100 first
    assert error_of(refused, 401)["code"] == "invalid_api_key"
    assert refused.headers["connection"] == "close"
    big = post_request(
        PATH, b"x" * 5000, extra=expect + "Authorization: Bearer k1\r\n", close=False
    )[:-5000]
    refused = await answer_to_headers(api, big)
    assert "the limit is 1000" in error_of(refused, 413)["message"]
    assert refused.headers["connection"] == "close"
    # A request it takes is told to go on, as before.
    reader, writer = await asyncio.open_connection(api.host, api.port)
    try:
        writer.write(post_request(PATH, body, extra=expect + "Authorization: Bearer k1\r\n"))
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK")


async def test_an_authorization_header_that_is_not_utf_8_is_a_401(start_api, emulator) -> None:
    """Bytes that are not UTF-8 in the key's header: a 401 like any wrong key, not a 500."""
    api = await start_api(provider_for(emulator), ServeOptions(api_key="k1"))
    body = json.dumps({"model": "gpt-4o", "messages": HELLO}).encode()
    request = post_request(PATH, body).replace(
        b"\r\n\r\n", b"\r\nAuthorization: Bearer \xff\xfe\r\n\r\n", 1
    )
    reply = await raw_exchange(api.host, api.port, request)
    error = error_of(reply, 401)
    assert "k1" not in json.dumps(error)
    await still_serving_with_key(api)


async def still_serving_with_key(api: Any) -> None:
    async with (
        aiohttp.ClientSession() as client,
        client.post(
            api.base + "/chat/completions",
            json={"model": "gpt-4o", "messages": HELLO},
            headers={"Authorization": "Bearer k1"},
        ) as reply,
    ):
        assert reply.status == 200
