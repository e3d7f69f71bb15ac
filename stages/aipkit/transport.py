"""AIPKit transport: step 1 caches the message for a one-use key, step 2 opens its stream.

Step 1 POSTs ``aipkit_cache_sse_message`` and gets ``{"success":true,"data":{"cache_key":…}}``
(the key lives 60 s and works once); step 2 GETs ``aipkit_frontend_chat_stream`` with that
key and the conversation's ids, and hands the event stream on unread. Both run in one
stage so that a retry always starts from step 1: a key is spent by the first step 2 that
reads it, even one that then failed (PROTOCOL-AIPKIT.md §2).

No ``Origin`` is sent: the plugin refuses one whose host differs from WordPress's own
site URL (``embed_not_available``), and a mirror's URL need not match it.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from typing import Any, ClassVar

import attrs

from stages.aipkit.payload import give_back
from stages.aipkit.tokens import AipkitTokens
from stages.core import Call, Exchange, Reply, Tokens, require, require_tokens
from stages.errors import (
    ChatGpttError,
    EmptyMessageError,
    MalformedResponseError,
    NonceRejectedError,
    SiteError,
    excerpt,
)
from stages.http import ResponseBody, classify_failure, encode_form, read_prefix, send
from stages.replies import cut_json

__all__ = [
    "NONCE_ACTION",
    "STREAM_ACTION",
    "CacheAndStream",
    "cache_key_of",
    "fetch_nonce",
    "nonce_of",
    "step1_error",
]

#: Step 2: the action that streams the answer to a cached message.
STREAM_ACTION = "aipkit_frontend_chat_stream"
#: Step 0: a fresh chat nonce without the page (plugin 2.3.41 and later).
NONCE_ACTION = "aipkit_get_frontend_chat_nonce"

_CACHE_KEY = re.compile(r"aipkit_sse_[A-Za-z0-9]{1,128}")
_NONCE = re.compile(r"[A-Za-z0-9]{1,64}")
#: Fields whose values change with every call (quoted each time, never remembered).
_STEP1_CHANGING = frozenset({"message", "user_client_message_id"})
_STEP2_CHANGING = frozenset({"cache_key", "session_id", "conversation_uuid", "_ts"})
_POST_CONTENT_TYPE = "application/x-www-form-urlencoded; charset=UTF-8"


def _post_headers(site_headers: Mapping[str, str], page_url: str) -> dict[str, str]:
    """What the plugin's script sends with a ``fetch`` POST (no ``Origin``: see above)."""
    return {
        **site_headers,
        "Accept": "*/*",
        "Content-Type": _POST_CONTENT_TYPE,
        "Referer": page_url,
    }


def _stream_headers(site_headers: Mapping[str, str], page_url: str) -> dict[str, str]:
    """What a browser's ``EventSource`` sends."""
    return {
        **site_headers,
        "Accept": "text/event-stream",
        "Cache-Control": "no-cache",
        "Referer": page_url,
    }


def _json_object(body: bytes, url: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(body.decode("utf-8", "replace"))
    except ValueError:
        raise MalformedResponseError(
            f"{what} is not JSON", url=url, preview=excerpt(body)
        ) from None
    if not isinstance(value, dict):
        raise MalformedResponseError(f"{what} is not a JSON object", url=url, preview=excerpt(body))
    return value


def step1_error(
    status: int, body: bytes, url: str, headers: Mapping[str, str], *, nonce: str | None
) -> ChatGpttError:
    """The error step 1's reply means: the plugin's ``{"success":false,"data":{…}}`` codes
    (PROTOCOL-AIPKIT.md §4), else what the status and page say."""
    try:
        value = json.loads(body.decode("utf-8", "replace"))
    except ValueError:
        value = None
    data = value.get("data") if isinstance(value, dict) else None
    if isinstance(value, dict) and value.get("success") is False and isinstance(data, dict):
        code = data.get("code")
        message = data.get("message")
        text = message if isinstance(message, str) and message else str(code)
        if code == "nonce_failure_cache_sse":
            return NonceRejectedError(url, f"{text} (HTTP {status}, {code})", nonce=nonce)
        if code == "empty_data_to_cache":
            return EmptyMessageError(
                "the site found the message empty (it rejects '' and '0'): " + text,
                site_message=text,
            )
        if code in ("embed_not_available", "cors_denied"):
            return SiteError(
                f"the site refused the request's origin ({code}): {text}", site_message=text
            )
        return SiteError(
            f"the site refused the message ({code}, HTTP {status}): {text}", site_message=text
        )
    if status == 200:
        cut = cut_json(body, headers, url) if _starts_as_json(body) else None
        return cut or MalformedResponseError(
            "step 1's reply has no cache key", url=url, preview=excerpt(body)
        )
    return classify_failure(status, headers, body, url, action="aipkit_cache_sse_message")


def _starts_as_json(body: bytes) -> bool:
    """Whether ``body`` opens a JSON document (a page with a quote in it does not)."""
    return body.lstrip().removeprefix(b"\xef\xbb\xbf").startswith((b"{", b"["))


def cache_key_of(body: bytes, url: str) -> str:
    """The one-use key of step 1's success reply."""
    return _success_field(body, url, "step 1's reply", "cache_key", _CACHE_KEY)


def nonce_of(body: bytes, url: str) -> str:
    """The nonce of ``aipkit_get_frontend_chat_nonce``'s success reply."""
    return _success_field(body, url, "the nonce reply", "nonce", _NONCE)


def _success_field(body: bytes, url: str, what: str, field: str, form: re.Pattern[str]) -> str:
    """``data[field]`` of a ``{"success": true, "data": {…}}`` reply, checked against
    ``form``; anything else is a :class:`MalformedResponseError` naming ``what``."""
    value = _json_object(body, url, what)
    data = value.get("data")
    found = data.get(field) if isinstance(data, dict) else None
    if value.get("success") is not True or not isinstance(found, str) or not form.fullmatch(found):
        raise MalformedResponseError(f"{what} has no valid {field}", url=url, preview=excerpt(body))
    return found


async def _post(
    call: Call, tokens: Tokens, form: tuple[tuple[str, str], ...]
) -> tuple[int, Mapping[str, str], bytes]:
    """POST ``form`` to the AJAX URL; the status, headers and (bounded) body."""
    settings = call.settings
    url = tokens.ajax_url
    response = await send(
        call,
        "POST",
        url,
        headers=_post_headers(settings.site.headers, tokens.page_url),
        data=encode_form(form, changing=_STEP1_CHANGING),
        allow_redirects=False,
    )
    body = ResponseBody.of_call(response, call, url, max_bytes=None)
    try:
        if response.status != 200:
            return response.status, response.headers, await read_prefix(body)
        return response.status, response.headers, await body.read(settings.limits.max_body_bytes)
    finally:
        await body.aclose()


async def fetch_nonce(call: Call, tokens: Tokens) -> Tokens:
    """``tokens`` with a fresh chat nonce from ``aipkit_get_frontend_chat_nonce`` (no page).

    The dialect's ``refresh_nonce``. Raises what the reply means (``400 0`` on a site
    older than 2.3.41: the caller then fetches the page instead).
    """
    form = (("action", NONCE_ACTION), ("bot_id", tokens.bot_id))
    status, headers, body = await _post(call, tokens, form)
    if status != 200:
        raise classify_failure(status, headers, body, tokens.ajax_url, action=NONCE_ACTION)
    return attrs.evolve(tokens, nonce=nonce_of(body, tokens.ajax_url))


@attrs.frozen
class CacheAndStream:
    """Step 1 (cache the message, get its key), then step 2 (open its event stream).

    Step 1's errors are mapped here (a rejected nonce, an empty message, a refused
    origin, ``400 0``…); step 2 always answers 200 and reports its errors as events,
    which the decode stage reads. The reply is handed on with its body unread.
    """

    name: str = "transport"
    #: Every wait of this stage is bounded by the call's deadline (or it has none).
    honours_deadline: ClassVar[bool] = True

    async def __call__(self, exchange: Exchange, /) -> Exchange:
        call = exchange.call
        tokens = require_tokens(exchange, AipkitTokens, self.name)
        form = require(exchange.form, self.name, "form")
        query = require(exchange.query, self.name, "query")
        url = tokens.ajax_url
        try:
            status, headers, body = await _post(call, tokens, form)
            if status != 200:
                raise step1_error(status, body, url, headers, nonce=tokens.nonce)
            try:
                cache_key = cache_key_of(body, url)
            except MalformedResponseError:
                raise step1_error(status, body, url, headers, nonce=tokens.nonce) from None
        except BaseException:
            give_back(exchange)  # the message never reached the chat: the server did not move
            raise
        params = (
            ("action", STREAM_ACTION),
            ("cache_key", cache_key),
            *query,
            ("_ts", str(int(time.time() * 1000))),
            ("_ajax_nonce", tokens.nonce),
        )
        settings = call.settings
        response = await send(
            call,
            "GET",
            url,  # the query stays out of the URL that errors and logs show: it holds ids
            params=encode_form(params, changing=_STEP2_CHANGING).decode("ascii"),
            headers=_stream_headers(settings.site.headers, tokens.page_url),
            allow_redirects=False,
        )
        stream = ResponseBody.of_call(
            response, call, url, max_bytes=settings.limits.max_stream_bytes
        )
        if response.status != 200:
            try:
                preview = await read_prefix(stream)
            finally:
                await stream.aclose()
            raise classify_failure(
                response.status, response.headers, preview, url, action=STREAM_ACTION
            )
        reply = Reply(url=url, status=200, headers=response.headers, body=stream)
        return attrs.evolve(exchange, reply=reply)
