"""AIPKit token extraction: bot id, nonce, AJAX URL and post id from ``data-config`` (pure).

The chat's element — ``div.aipkit_chat_container`` inline, ``div.aipkit_popup_wrapper``
for the popup — carries ``data-config``: the bot's settings as ``wp_json_encode`` wrote
them (slashes as ``\\/``) and ``esc_attr`` escaped them (``&quot;``). The page reader
undoes the HTML escaping, JSON the rest (PROTOCOL-AIPKIT.md §1).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import attrs

from stages.core import Exchange, Page, Tokens, require
from stages.errors import BotProtectionError, TokensNotFoundError
from stages.html import class_list, http_url, origin, start_tags
from stages.protection import challenge_marker

__all__ = [
    "CHAT_CLASSES",
    "AipkitTokens",
    "ChatElement",
    "ExtractAipkitTokens",
    "chat_configs",
    "extract_aipkit_tokens",
    "recognises_page",
]

#: The classes of the element that carries the chat's ``data-config``.
CHAT_CLASSES: frozenset[str] = frozenset({"aipkit_chat_container", "aipkit_popup_wrapper"})

_NONCE = re.compile(r"[A-Za-z0-9]{1,64}")
_DIGITS = re.compile(r"[0-9]{1,20}")
_CONFIG_KEYS = ("botId", "ajaxUrl", "nonce")


@attrs.frozen(kw_only=True)
class AipkitTokens(Tokens):
    """The AIPKit chat's tokens (the shared fields say it all)."""

    dialect: str = "aipkit"


@attrs.frozen(kw_only=True)
class ChatElement:
    """One chat element of the page: its attributes and its decoded ``data-config``."""

    attributes: Mapping[str, str]
    config: Mapping[str, Any] | None


def _decode(value: str) -> Mapping[str, Any] | None:
    try:
        config = json.loads(value)
    except ValueError:
        return None
    return config if isinstance(config, dict) else None


def chat_configs(html: str) -> list[ChatElement]:
    """The page's AIPKit chat elements in document order, with their decoded configs.

    An element counts when its class list holds one of :data:`CHAT_CLASSES` and it
    has ``data-config``, or when any element's ``data-config`` decodes to an object
    with ``botId``, ``ajaxUrl`` and ``nonce`` (a theme that renamed the wrapper).
    """
    chats: list[ChatElement] = []
    for tag in start_tags(html):
        attributes = tag.attributes
        raw = attributes.get("data-config")
        if raw is None:
            continue
        config = _decode(raw)
        if class_list(attributes) & CHAT_CLASSES or (
            config is not None and all(key in config for key in _CONFIG_KEYS)
        ):
            chats.append(ChatElement(attributes=attributes, config=config))
    return chats


def recognises_page(page: Page) -> bool:
    """Whether the page carries an AIPKit chat (a chat element with ``data-config``)."""
    if "data-config" not in page.html:  # cheap test before reading the page
        return False
    return bool(chat_configs(page.html))


def _text(value: object, pattern: re.Pattern[str]) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        value = str(value)
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value if pattern.fullmatch(value) else None


def extract_aipkit_tokens(
    html: str,
    page_url: str,
    *,
    fallback_ajax_url: str,
    status: int = 200,
    bot_id: str | None = None,
) -> AipkitTokens:
    """The tokens of the page's AIPKit chat (the first one, or the one of ``bot_id``).

    The bot id is the element's ``data-bot-id`` (what the plugin's script uses),
    else ``botId`` of the config; the nonce, AJAX URL (relative ones resolved against
    ``page_url``; ``fallback_ajax_url`` when absent) and post id (``0`` when absent)
    come from the config.

    Raises:
        BotProtectionError: the page is a bot-protection challenge.
        TokensNotFoundError: no chat element, an undecodable ``data-config``, no
            nonce or bot id, or no chat of ``bot_id``; ``missing`` names what.
    """
    chats = chat_configs(html)
    if not chats:
        marker = challenge_marker(html)
        if marker is not None:
            raise BotProtectionError(page_url, status, marker)
        raise TokensNotFoundError(page_url, ["AIPKit chat"], hint="no element carries data-config")
    found: Sequence[tuple[ChatElement, str | None]] = [(chat, _bot_of(chat)) for chat in chats]
    if bot_id is not None:
        matching = [(chat, bot) for chat, bot in found if bot == bot_id]
        if not matching:
            bots = ", ".join(sorted({bot for _chat, bot in found if bot})) or "none"
            raise TokensNotFoundError(
                page_url, [f"bot {bot_id}"], hint=f"the page's AIPKit chats are of bots: {bots}"
            )
        found = matching
    chat, bot = found[0]
    config = chat.config
    if config is None:
        raise TokensNotFoundError(
            page_url, ["data-config"], hint="the chat's data-config is not a JSON object"
        )
    nonce = _text(config.get("nonce"), _NONCE)
    missing = [what for what, value in (("nonce", nonce), ("bot id", bot)) if value is None]
    if nonce is None or bot is None:
        raise TokensNotFoundError(
            page_url, missing, hint="the AIPKit chat's data-config lacks them"
        )
    stream_enabled = config.get("streamEnabled")  # releases 2.3 to 2.4.0 only
    return AipkitTokens(
        nonce=nonce,
        post_id=_text(config.get("postId"), _DIGITS) or "0",
        bot_id=bot,
        ajax_url=http_url(config.get("ajaxUrl"), page_url) or fallback_ajax_url,
        page_url=page_url,
        site_url=origin(page_url),
        streaming=stream_enabled if isinstance(stream_enabled, bool) else None,
    )


def _bot_of(chat: ChatElement) -> str | None:
    bot = _text(chat.attributes.get("data-bot-id"), _DIGITS)
    if bot is None and chat.config is not None:
        bot = _text(chat.config.get("botId"), _DIGITS)
    return bot if bot != "0" else None  # there is no bot 0 in AIPKit


@attrs.frozen
class ExtractAipkitTokens:
    """Read the AIPKit chat's tokens from the page the bootstrap fetched.

    The caller's ``bot_id`` option picks one chat when the page shows several.
    """

    name: str = "tokens"
    #: Pure: it does not wait on anything.
    honours_deadline: ClassVar[bool] = True

    async def __call__(self, exchange: Exchange, /) -> Exchange:
        page = require(exchange.page, self.name, "page")
        bot_id = exchange.call.options.get("bot_id")
        tokens = extract_aipkit_tokens(
            page.html,
            page.url,
            fallback_ajax_url=exchange.call.settings.site.api_endpoint,
            status=page.status,
            bot_id=None if bot_id is None else str(bot_id),
        )
        return attrs.evolve(exchange, tokens=tokens)
