"""The AIPKit dialect: the ``aipkit_*`` chat of the plugin from release 2.3 on.

Step 1 caches the message for a one-use key, step 2 streams the answer to it as named
events; the server keeps each conversation's history (PROTOCOL-AIPKIT.md).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from stages.core import Pipeline
from stages.dialects import Dialect
from stages.errors import ConfigurationError

from .decode import AipkitInterpreter, DecodeAipkitStream, event_error
from .payload import BuildAipkitPayload, plan_turn
from .tokens import AipkitTokens, ExtractAipkitTokens, extract_aipkit_tokens, recognises_page
from .transport import CacheAndStream, fetch_nonce

__all__ = [
    "AIPKIT",
    "AipkitInterpreter",
    "AipkitTokens",
    "BuildAipkitPayload",
    "CacheAndStream",
    "DecodeAipkitStream",
    "ExtractAipkitTokens",
    "aipkit_pipeline",
    "event_error",
    "extract_aipkit_tokens",
    "fetch_nonce",
    "plan_turn",
]


def aipkit_pipeline() -> Pipeline:
    """The AIPKit dialect's stages: tokens, payload, transport (both steps), decode."""
    return Pipeline(
        [ExtractAipkitTokens(), BuildAipkitPayload(), CacheAndStream(), DecodeAipkitStream()],
        name="aipkit",
    )


_BOT_ID = re.compile(r"[1-9][0-9]{0,19}")


def check_options(options: Mapping[str, Any]) -> None:
    """``bot_id``, the bot to talk to on a page that shows several: a positive number."""
    bot_id = options.get("bot_id")
    if bot_id is not None and (
        isinstance(bot_id, bool)
        or not isinstance(bot_id, str | int)
        or not _BOT_ID.fullmatch(str(bot_id))
    ):
        raise ConfigurationError(f"bot_id must be a positive number, got {bot_id!r}")


#: The AIPKit dialect: a rejected nonce is replaced through the nonce endpoint; the
#: ``bot_id`` option picks the chat (and so the tokens) on a page with several.
AIPKIT = Dialect(
    name="aipkit",
    pipeline=aipkit_pipeline(),
    recognises=recognises_page,
    refresh_nonce=fetch_nonce,
    token_options=("bot_id",),
    check_options=check_options,
    description="aipkit_* chat of plugin releases 2.3 and later",
)
