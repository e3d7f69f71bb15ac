"""The classic dialect: the ``wpaicg_*`` chat of the plugin up to release 2.2.

One POST of the message and its history to ``wpaicg_chat_shortcode_message`` (or the
widget's ``wpaicg_chatbox_message``); the reply is the upstream OpenAI stream relayed,
or one JSON object (PROTOCOL.md).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from stages.core import Pipeline
from stages.dialects import Dialect
from stages.errors import ConfigurationError

from .decode import DecodeReply
from .payload import BuildPayload
from .tokens import ClassicTokens, ExtractTokens, recognises_page
from .transport import PostForm

__all__ = ["CLASSIC", "ClassicTokens", "classic_pipeline"]


def classic_pipeline() -> Pipeline:
    """The classic dialect's stages: tokens, payload, transport, decode."""
    return Pipeline([ExtractTokens(), BuildPayload(), PostForm(), DecodeReply()], name="classic")


_CLIENT_ID = re.compile(r"[A-Za-z0-9]{1,64}")


def check_options(options: Mapping[str, Any]) -> None:
    """``client_id``, the conversation's ``wpaicg_chat_client_id``: 1 to 64 letters or digits."""
    client_id = options.get("client_id")
    if client_id is not None and (
        not isinstance(client_id, str) or not _CLIENT_ID.fullmatch(client_id)
    ):
        raise ConfigurationError(f"client_id must be 1 to 64 letters or digits, got {client_id!r}")


#: The classic dialect: a rejected nonce is refreshed by fetching the page again.
CLASSIC = Dialect(
    name="classic",
    pipeline=classic_pipeline(),
    recognises=recognises_page,
    check_options=check_options,
    description="wpaicg_* chat of plugin releases up to 2.2",
)
