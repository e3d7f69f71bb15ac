"""Transport: POST the form to the AJAX endpoint and map the status to typed errors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar
from urllib.parse import urlsplit

import attrs

from stages.classic.tokens import ClassicTokens
from stages.core import Exchange, Reply, require, require_tokens
from stages.errors import NonceRejectedError
from stages.http import ResponseBody, classify_failure, encode_form, read_prefix, send

__all__ = ["PostForm", "encode_form", "post_headers"]  # encode_form: re-exported

#: Fields whose values change with every message; the others repeat for hours.
_PER_MESSAGE = frozenset({"message", "wpaicg_chat_history"})


#: WordPress's page for a nonce it rejects (``wp_nonce_ays``), which the classic
#: handler answers with HTTP 403 (PROTOCOL.md §3).
NONCE_EXPIRED = b"The link you followed has expired."

_ACCEPT = "text/event-stream, application/json;q=0.9, */*;q=0.8"


def post_headers(site_headers: Mapping[str, str], page_url: str) -> dict[str, str]:
    """The headers of the plugin's own script posting from ``page_url``."""
    parts = urlsplit(page_url)
    return {
        **site_headers,
        "Accept": _ACCEPT,
        "Content-Type": "application/x-www-form-urlencoded; charset=UTF-8",
        "Origin": f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}",
        "Referer": page_url,
    }


@attrs.frozen
class PostForm:
    """POST the form, form-urlencoded, to the AJAX URL the page named.

    A 200 reply is handed on with its body unread (the decode stage streams it);
    any other status is read only far enough to classify it — a rejected nonce,
    WordPress's ``400 0``, a challenge page, a rate limit — and raised as such.
    Redirects are not followed: a POST that is redirected lost its body.
    """

    name: str = "transport"
    #: Every wait of this stage is bounded by the call's deadline (or it has none).
    honours_deadline: ClassVar[bool] = True

    async def __call__(self, exchange: Exchange, /) -> Exchange:
        call = exchange.call
        settings = call.settings
        tokens = require_tokens(exchange, ClassicTokens, self.name)
        form = require(exchange.form, self.name, "form")
        url = tokens.ajax_url
        response = await send(
            call,
            "POST",
            url,
            headers=post_headers(settings.site.headers, tokens.page_url),
            data=encode_form(form, changing=_PER_MESSAGE),
            allow_redirects=False,
        )
        body = ResponseBody.of_call(response, call, url, max_bytes=settings.limits.max_stream_bytes)
        if response.status != 200:
            try:
                preview = await read_prefix(body)
            finally:
                await body.aclose()
            if response.status == 403 and preview.lstrip().startswith(NONCE_EXPIRED):
                raise NonceRejectedError(
                    url, "the link you followed has expired (HTTP 403)", nonce=tokens.nonce
                )
            raise classify_failure(
                response.status, response.headers, preview, url, action=tokens.action
            )
        reply = Reply(url=url, status=200, headers=response.headers, body=body)
        return attrs.evolve(exchange, reply=reply)
