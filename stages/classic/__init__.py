"""The classic dialect: the ``wpaicg_*`` chat of the plugin up to release 2.2.

One POST of the message and its history to ``wpaicg_chat_shortcode_message`` (or the
widget's ``wpaicg_chatbox_message``); the reply is the upstream OpenAI stream relayed,
or one JSON object (PROTOCOL.md).
"""

from __future__ import annotations

from stages.core import Pipeline
from stages.dialects import Dialect

from .decode import DecodeReply
from .payload import BuildPayload
from .tokens import ClassicTokens, ExtractTokens, recognises_page
from .transport import PostForm

__all__ = ["CLASSIC", "ClassicTokens", "classic_pipeline"]


def classic_pipeline() -> Pipeline:
    """The classic dialect's stages: tokens, payload, transport, decode."""
    return Pipeline([ExtractTokens(), BuildPayload(), PostForm(), DecodeReply()], name="classic")


#: The classic dialect: a rejected nonce is refreshed by fetching the page again.
CLASSIC = Dialect(
    name="classic",
    pipeline=classic_pipeline(),
    recognises=recognises_page,
    description="wpaicg_* chat of plugin releases up to 2.2",
)
