"""OpenAI's error shape for every failure, the provider's errors mapped to the statuses that say
who failed, and the stream's hand-built events equal to what ``json.dumps`` would give."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatgptt import ChatGptt
from chatgptt.openai_api import ChatRequest, OpenAIError, parse_chat_request
from chatgptt.openai_api.app import ChunkFrames, completion_body
from chatgptt.openai_api.errors import for_status, from_provider
from chatgptt.openai_api.usage import usage_object
from stages import errors

URL = "https://site.example/wp-admin/admin-ajax.php"


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (errors.UnknownModelError("gpt-9", ["gpt-4o"]), 404, "model_not_found"),
        (errors.InvalidMessagesError("missing 'role'", 0), 400, None),
        (errors.ConfigurationError("bad"), 400, None),
        (errors.MessageFlaggedError("flagged"), 400, "content_policy_violation"),
        (errors.EmptyMessageError("empty"), 400, None),
        (errors.RateLimitError(URL, retry_after=2.5), 429, "rate_limit_exceeded"),
        (errors.TokenLimitError("limit"), 429, "insufficient_quota"),
        (errors.ProviderTimeoutError("first_byte", 30.0, url=URL), 504, "upstream_timeout"),
        (errors.ProviderConnectionError("refused", url=URL), 502, "upstream_unreachable"),
        (errors.BotProtectionError(URL, 403, "cf-mitigated"), 502, "bot_protection"),
        (errors.ServerError(503, url=URL), 502, "upstream_error"),
        (errors.UpstreamError("Incorrect API key"), 502, "upstream_error"),
        (errors.MalformedResponseError("the reply", url=URL), 502, "upstream_error"),
    ],
)
def test_the_providers_errors_map_to_statuses(error, status, code) -> None:
    mapped = from_provider(error)
    assert (mapped.status, mapped.code) == (status, code)
    assert mapped.message == str(error)
    if isinstance(error, errors.RateLimitError):
        assert mapped.headers == {"Retry-After": "3"}  # rounded up
    # What a retry cannot mend says so to OpenAI's SDKs, which retry every 429 and 5xx.
    final = isinstance(error, errors.TokenLimitError | errors.BotProtectionError)
    assert (mapped.headers.get("x-should-retry") == "false") is final


def test_a_rate_limit_without_a_wait_has_no_retry_after() -> None:
    assert from_provider(errors.RateLimitError(URL)).headers == {}


def concrete_errors() -> list[type[errors.ChatGpttError]]:
    found: list[type[errors.ChatGpttError]] = []
    pending: list[type[errors.ChatGpttError]] = [errors.ChatGpttError]
    while pending:
        kind = pending.pop()
        found.append(kind)
        pending.extend(kind.__subclasses__())
    return found


def test_every_error_of_the_hierarchy_is_a_4xx_or_5xx() -> None:
    for kind in concrete_errors():
        error = kind.__new__(kind)
        errors.ChatGpttError.__init__(error, f"{kind.__name__} happened")
        for name, value in (("retry_after", None), ("status", 500), ("url", URL)):
            if not hasattr(error, name):
                setattr(error, name, value)
        mapped = from_provider(error)
        assert 400 <= mapped.status <= 599, kind
        body = mapped.body()["error"]
        assert set(body) == {"message", "type", "param", "code"}
        assert body["message"] == f"{kind.__name__} happened"


@given(st.integers(400, 599), st.one_of(st.none(), st.text(max_size=50)))
def test_any_status_has_the_shape(status: int, detail: str | None) -> None:
    error = for_status(status, detail)
    body = json.loads(error.response().body)  # type: ignore[arg-type]
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["type"] == ("invalid_request_error" if status < 500 else "server_error")
    assert json.loads(error.event().removeprefix(b"data: ")) == body


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
bodies = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {"model": st.sampled_from(["gpt-4o", "gpt-4", 3, None]), "messages": json_values},
        optional={
            "stream": json_values,
            "stream_options": json_values,
            "n": json_values,
            "temperature": json_values,
            "tools": json_values,
            "stop": json_values,
        },
    ),
)


@given(bodies)
def test_any_json_body_is_a_request_or_a_400(body: Any) -> None:
    """Whatever JSON a client sends, the server answers with a request to make or an
    OpenAI 400 naming what is wrong — never another exception (a 500)."""
    refused: OpenAIError | None = None
    try:
        chat = parse_chat_request(body, ChatGptt.get_model)
    except OpenAIError as exc:
        refused = exc
    if refused is not None:
        assert refused.status == 400
        assert refused.message
    else:
        assert isinstance(chat, ChatRequest)
        assert all(set(m) == {"role", "content"} for m in chat.messages)


@given(st.text(), st.sampled_from(["gpt-4o", "gpt-4o-mini", 'we"ird\\model']), st.booleans())
def test_the_streams_events_are_the_json_they_stand_for(
    text: str, model: str, include_usage: bool
) -> None:
    chat = ChatRequest(model=model, messages=[], stream=True, include_usage=include_usage)
    frames = ChunkFrames(chat)

    def frame(data: bytes) -> dict[str, Any]:
        assert data.startswith(b"data: ")
        assert data.endswith(b"\n\n")
        assert b"\n" not in data[:-2]  # one line: a text's newlines are escaped
        return dict(json.loads(data[len(b"data: ") : -2]))

    def expected(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": frames.completion_id,
            "object": "chat.completion.chunk",
            "created": frames.created,
            "model": model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if include_usage:
            out["usage"] = None
        return out

    assert frame(frames.content(text)) == expected({"content": text}, None)
    assert frame(frames.role()) == expected(
        {"role": "assistant", "content": "", "refusal": None}, None
    )
    assert frame(frames.finish()) == expected({}, "stop")
    usage = {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
    assert frame(frames.usage(usage))["usage"] == usage


@given(
    st.text(),
    st.sampled_from(["gpt-4o", 'we"ird\\model']),
    st.integers(0, 10**6),
    st.integers(0, 10**6),
)
def test_the_completion_body_is_the_json_it_stands_for(
    text: str, model: str, prompt: int, completion: int
) -> None:
    body = completion_body("chatcmpl-abc", 1700000000, model, text, prompt, completion)
    assert json.loads(body) == {
        "id": "chatcmpl-abc",
        "object": "chat.completion",
        "created": 1700000000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": text,
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": usage_object(prompt, completion),
        "system_fingerprint": None,
    }
