"""Session bootstrap: GET the landing page that carries the chat's tokens."""

from __future__ import annotations

import codecs
import re
from collections.abc import Mapping
from typing import ClassVar

import attrs

from .core import Exchange, Page
from .http import ResponseBody, classify_failure, length_declared, read_prefix, send

__all__ = ["FetchPage", "page_headers"]

_PAGE_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def _known_charset(charset: str | None) -> str:
    """The page's declared charset if Python knows it, else UTF-8 (WordPress's default;
    sites declare names such as ``utf8mb4`` that no decoder has)."""
    if charset:
        try:
            return codecs.lookup(charset).name
        except LookupError:
            pass
    return "utf-8"


_HTML_END = re.compile(rb"</html\s*>", re.IGNORECASE)


def _ends_the_document(raw: bytes) -> bool:
    """Whether the page's last kilobytes hold its closing ``</html>``."""
    return _HTML_END.search(raw, max(0, len(raw) - 4096)) is not None


def page_headers(site_headers: Mapping[str, str]) -> dict[str, str]:
    """The headers of a browser loading the page: the site's, asking for HTML."""
    return {**site_headers, "Accept": _PAGE_ACCEPT}


@attrs.frozen
class FetchPage:
    """GET the site's landing page through the call's session and proxy.

    Redirects are followed (``Page.url`` is where they ended). Any status but 200
    is an error that says what the page was: a bot-protection challenge, a rate
    limit, a server failure. The page is read whole, up to ``Limits.max_page_bytes``.
    """

    name: str = "bootstrap"
    #: Every wait of this stage is bounded by the call's deadline (or it has none).
    honours_deadline: ClassVar[bool] = True

    async def __call__(self, exchange: Exchange, /) -> Exchange:
        call = exchange.call
        settings = call.settings
        url = settings.site.page_url
        response = await send(call, "GET", url, headers=page_headers(settings.site.headers))
        body = ResponseBody.of_call(response, call, url, max_bytes=None)
        try:
            if response.status != 200:
                preview = await read_prefix(body)
                raise classify_failure(response.status, response.headers, preview, url)
            raw = await body.read(settings.limits.max_page_bytes)
        finally:
            await body.aclose()
        html = raw.decode(_known_charset(response.charset), "replace")
        maybe_cut = not length_declared(response.headers) and not _ends_the_document(raw)
        page = Page(url=str(response.url), status=response.status, html=html, maybe_cut=maybe_cut)
        return attrs.evolve(exchange, page=page)
