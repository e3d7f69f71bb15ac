"""The AIPKit landing pages: the captured 2.4.71 pages with this server's tokens put in.

``inline`` puts ``data-bot-id`` and ``data-config`` on ``div.aipkit_chat_container``;
``popup`` puts ``data-config`` (then ``data-bot-id``) on ``div.aipkit_popup_wrapper``. The
``data-config`` attribute is single-quoted and written as the plugin writes it:
``wp_json_encode`` with ``JSON_UNESCAPED_UNICODE`` and the ``JSON_HEX_*`` flags, then
``esc_attr`` (so ``&quot;`` for quotes, ``\\/`` for slashes).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from importlib import resources
from string import Template
from typing import Any
from urllib.parse import quote

import attrs

from chatgptt.emulator.aipkit.wordpress import esc_attr, json_for_attribute
from chatgptt.emulator.config import AipkitPage

__all__ = [
    "AipkitPageContext",
    "data_config_attribute",
    "frontend_config",
    "render_aipkit_landing",
]


@attrs.frozen(kw_only=True)
class AipkitPageContext:
    """What an AIPKit landing page needs to know about the server and the request.

    Args:
        stream_enabled: ``None`` for 2.4.71's config; a bool adds 2.3's ``streamEnabled``.
    """

    base_url: str
    ajax_url: str
    nonce: str
    bot_id: str
    post_id: str
    page: AipkitPage = "inline"
    stream_enabled: bool | None = None


@functools.cache
def _template(name: str) -> Template:
    text = (resources.files("chatgptt.emulator") / "templates" / name).read_text("utf-8")
    return Template(text)


@functools.cache
def _captured_config() -> str:
    return (resources.files("chatgptt.emulator") / "templates" / "aipkit_config.json").read_text(
        "utf-8"
    )


def frontend_config(context: AipkitPageContext) -> dict[str, Any]:
    """The page's ``data-config`` object: the captured bot's settings with this site's
    ``botId``, ``ajaxUrl``, ``nonce`` and ``postId``, in the plugin's key order."""
    captured: dict[str, Any] = json.loads(_captured_config())
    ours: dict[str, Any] = {}
    for key, value in captured.items():
        ours[key] = value
        if key == "postId" and context.stream_enabled is not None:
            ours["streamEnabled"] = context.stream_enabled
    ours.update(
        botId=int(context.bot_id),
        ajaxUrl=context.ajax_url,
        nonce=context.nonce,
        postId=int(context.post_id),
        popupEnabled=context.page == "popup",
    )
    return ours


def data_config_attribute(config: Mapping[str, Any]) -> str:
    """The value between the quotes of ``data-config='…'``."""
    return esc_attr(json_for_attribute(config))


def render_aipkit_landing(context: AipkitPageContext) -> str:
    """The landing page (``inline`` or ``popup``) for this server and request."""
    return _template(f"aipkit_{context.page}.html").substitute(
        base_url=context.base_url,
        base_url_escaped=context.base_url.replace("/", "\\/"),
        base_url_encoded=quote(context.base_url, safe=""),
        post_id=context.post_id,
        bot_id=context.bot_id,
        data_config=data_config_attribute(frontend_config(context)),
    )
