"""Token extraction: the nonce, post id, bot id and AJAX URL from the landing page (pure).

The page is read with a small HTML tokenizer of its own rather than regular
expressions over the raw text: comments, ``<script>``/``<style>`` contents and
quoted attribute values are skipped the way a browser skips them, so text that
merely looks like the chat container never wins over the real one. The
tokenizer is linear in the page's length (``html.parser`` of Python 3.11 is
quadratic on some malformed input, and the page comes from the network).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, ClassVar, Literal
from urllib.parse import parse_qs, urlsplit

import attrs

from stages.core import Exchange, Page, Tokens, require
from stages.errors import BotProtectionError, TokensNotFoundError
from stages.html import StartTag, class_list, http_url, origin, start_tags
from stages.protection import challenge_marker

__all__ = [
    "AIPKIT_HINT",
    "CONTAINER_CLASSES",
    "ClassicTokens",
    "ExtractTokens",
    "extract_tokens",
    "recognises_page",
]

#: Class names that mark the classic chat container: the shortcode and the widget.
CONTAINER_CLASSES: frozenset[str] = frozenset({"wpaicg-chat-shortcode", "wpaicg-chatbox"})

#: What a :class:`TokensNotFoundError` adds when the page carries the newer chat.
AIPKIT_HINT = (
    "the page carries the AIPKit chat of plugin release 2.3 or later "
    "(aipkit_* AJAX actions), not the classic one: use dialect 'aipkit' or 'auto'"
)


@attrs.frozen(kw_only=True)
class ClassicTokens(Tokens):
    """The classic chat's tokens.

    Attributes:
        chat_type: ``shortcode`` or ``widget``, from the container.
        source: ``container`` or ``wpaicgParams``: where the nonce was found.
    """

    dialect: str = "classic"
    bot_id: str = "0"  # the plugin's default chat
    chat_type: Literal["shortcode", "widget"] = "shortcode"
    source: Literal["container", "wpaicgParams"] = "container"

    @property
    def action(self) -> str:
        """The AJAX action: the widget and the shortcode have one each (same handler)."""
        return (
            "wpaicg_chatbox_message"
            if self.chat_type == "widget"
            else "wpaicg_chat_shortcode_message"
        )

    @property
    def chatbot_identity(self) -> str:
        """``custom_bot_<id>`` for a custom bot, else the chat type."""
        return f"custom_bot_{self.bot_id}" if self.bot_id not in ("", "0") else self.chat_type


_WIDGET_CLASS = "wpaicg-chatbox"
_AIPKIT_CLASSES = frozenset({"aipkit_chat_container", "aipkit_popup_wrapper"})
_AIPKIT_CONFIG_KEYS = frozenset({"botId", "ajaxUrl", "nonce"})

# A WordPress nonce is 10 lowercase hex characters; accept any short alphanumeric
# token so that a site with a customised nonce still works, but not template junk.
_NONCE = re.compile(r"[A-Za-z0-9]{1,64}")
_DIGITS = re.compile(r"[0-9]{1,20}")
_BODY_POST_ID = re.compile(r"(?:^|[\t\n\f\r ])(?:page-id|postid)-([0-9]{1,20})(?=[\t\n\f\r ]|$)")
_PARAMS_ASSIGNMENT = re.compile(r"\bwpaicgParams\s*=\s*(?=\{)")
_MAX_PARAMS_ATTEMPTS = 8  # each attempt may scan far; a few bound the work on hostile pages

# --- reading the tokens --------------------------------------------------------------------


def _valid(pattern: re.Pattern[str], value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip("\t\n\f\r ")
    return value if pattern.fullmatch(value) else None


def _wpaicg_params(script: str) -> dict[str, Any] | None:
    """The object of ``var wpaicgParams = {...}`` in an inline script, if it decodes."""
    decoder = json.JSONDecoder()
    for attempt, match in enumerate(_PARAMS_ASSIGNMENT.finditer(script)):
        if attempt >= _MAX_PARAMS_ATTEMPTS:
            break
        try:
            value, _end = decoder.raw_decode(script, match.end())
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def _is_aipkit_config(value: str) -> bool:
    if "botId" not in value:  # cheap test before decoding
        return False
    try:
        config = json.loads(value)
    except ValueError:
        return False
    return isinstance(config, dict) and config.keys() >= _AIPKIT_CONFIG_KEYS


@attrs.define
class _PageScan:
    """What one pass over the page found."""

    first_container: Mapping[str, str] | None = None
    nonce_container: Mapping[str, str] | None = None
    body_post_id: str | None = None
    shortlink_post_id: str | None = None
    params: dict[str, Any] | None = None
    aipkit: bool = False

    @classmethod
    def of(cls, page: str) -> _PageScan:
        scan = cls()
        for tag in start_tags(page):
            scan._see(tag)
        return scan

    def _see(self, tag: StartTag) -> None:
        attributes = tag.attributes
        classes = class_list(attributes)
        if classes & CONTAINER_CLASSES:
            if self.first_container is None:
                self.first_container = attributes
            if self.nonce_container is None and _valid(_NONCE, attributes.get("data-nonce")):
                self.nonce_container = attributes
        if not self.aipkit and (
            classes & _AIPKIT_CLASSES
            or ("data-config" in attributes and _is_aipkit_config(attributes["data-config"]))
        ):
            self.aipkit = True
        if tag.name == "body" and self.body_post_id is None:
            found = _BODY_POST_ID.search(attributes.get("class", ""))
            self.body_post_id = found.group(1) if found else None
        elif tag.name == "link" and self.shortlink_post_id is None:
            if "shortlink" in attributes.get("rel", "").lower().split():
                self.shortlink_post_id = _post_id_in_link(attributes.get("href", ""))
        elif (
            tag.name == "script"
            and self.params is None
            and tag.text is not None
            and "src" not in attributes
            and "wpaicgParams" in tag.text
        ):
            self.params = _wpaicg_params(tag.text)


def _post_id_in_link(href: str) -> str | None:
    try:
        query = parse_qs(urlsplit(href).query)
    except ValueError:
        return None
    for key in ("p", "page_id"):
        for value in query.get(key, ()):
            if _DIGITS.fullmatch(value):
                return value
    return None


def extract_tokens(
    html: str, page_url: str, *, fallback_ajax_url: str, status: int = 200
) -> ClassicTokens:
    """The chat tokens carried by a landing page.

    The container is the first element whose class list holds
    ``wpaicg-chat-shortcode`` or ``wpaicg-chatbox`` and that has a valid
    ``data-nonce`` (else the first such element). Fallbacks, in order: the
    nonce from ``wpaicgParams.search_nonce``; the post id from the body class
    (``page-id-N``, ``postid-N``) and then the shortlink (``?p=N``); the AJAX URL
    from ``wpaicgParams.ajax_url``, else ``fallback_ajax_url``; the site URL from
    ``data-url``, else the origin of ``page_url``.

    Args:
        html: the page's text.
        page_url: where the page came from (after redirects); relative URLs
            are resolved against it.
        fallback_ajax_url: the endpoint to use when the page names none.
        status: the page's HTTP status, for the error raised on a challenge page.

    Raises:
        BotProtectionError: the page is a bot-protection challenge.
        TokensNotFoundError: the nonce or the post id is missing; ``missing``
            names which, and the hint says when the site runs the AIPKit dialect.
    """
    scan = _PageScan.of(html)
    params = scan.params or {}
    container = scan.nonce_container or scan.first_container or {}

    nonce = _valid(_NONCE, container.get("data-nonce"))
    source: Literal["container", "wpaicgParams"] = "container"
    if nonce is None:
        search_nonce = params.get("search_nonce")
        nonce = _valid(_NONCE, search_nonce) if isinstance(search_nonce, str) else None
        source = "wpaicgParams"
    post_id = (
        _valid(_DIGITS, container.get("data-post-id"))
        or scan.body_post_id
        or scan.shortlink_post_id
    )

    missing = [what for what, value in (("nonce", nonce), ("post id", post_id)) if value is None]
    if nonce is None or post_id is None:
        marker = challenge_marker(html)
        if marker is not None:
            raise BotProtectionError(page_url, status, marker)
        raise TokensNotFoundError(page_url, missing, hint=_missing_hint(scan, missing))

    chat_type: Literal["shortcode", "widget"] = (
        "widget"
        if container.get("data-type", "").strip().lower() == "widget"
        or _WIDGET_CLASS in class_list(container)
        else "shortcode"
    )
    stream_nav = container.get("data-openai_stream_nav", "").strip()
    return ClassicTokens(
        nonce=nonce,
        post_id=post_id,
        bot_id=_valid(_DIGITS, container.get("data-bot-id")) or "0",
        ajax_url=http_url(params.get("ajax_url"), page_url) or fallback_ajax_url,
        page_url=page_url,
        site_url=http_url(container.get("data-url"), page_url) or origin(page_url),
        streaming={"1": True, "0": False}.get(stream_nav),
        chat_type=chat_type,
        source=source,
    )


def recognises_page(page: Page) -> bool:
    """Whether the page carries the classic chat: its container, or ``wpaicgParams``."""
    scan = _PageScan.of(page.html)
    return scan.first_container is not None or scan.params is not None


def _missing_hint(scan: _PageScan, missing: list[str]) -> str:
    if scan.aipkit:
        return AIPKIT_HINT
    if scan.first_container is None:
        return ""
    if "nonce" in missing:
        return "its chat container has no valid data-nonce and no wpaicgParams.search_nonce"
    return "its chat container has no data-post-id and the page names no post id elsewhere"


@attrs.frozen
class ExtractTokens:
    """Read the chat tokens from the landing page the bootstrap stage fetched."""

    name: str = "tokens"
    #: Every wait of this stage is bounded by the call's deadline (or it has none).
    honours_deadline: ClassVar[bool] = True

    async def __call__(self, exchange: Exchange, /) -> Exchange:
        page = require(exchange.page, self.name, "page")
        tokens = extract_tokens(
            page.html,
            page.url,
            fallback_ajax_url=exchange.call.settings.site.api_endpoint,
            status=page.status,
        )
        return attrs.evolve(exchange, tokens=tokens)
