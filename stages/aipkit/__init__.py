"""The AIPKit dialect: the ``aipkit_*`` chat of the plugin from release 2.3 on.

Step 1 caches the message for a one-use key, step 2 streams the answer to it as named
events; the server keeps each conversation's history (PROTOCOL-AIPKIT.md).
"""

from __future__ import annotations

from stages.core import Pipeline
from stages.dialects import Dialect

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


#: The AIPKit dialect: a rejected nonce is replaced through the nonce endpoint.
AIPKIT = Dialect(
    name="aipkit",
    pipeline=aipkit_pipeline(),
    recognises=recognises_page,
    refresh_nonce=fetch_nonce,
    description="aipkit_* chat of plugin releases 2.3 and later",
)
