"""The request flow of chatgptt as composable async stages, and the layers that wrap them.

This package knows HTTP, HTML and server-sent events; it never imports ``chatgptt``.
"""

from __future__ import annotations

from .bootstrap import FetchPage
from .cache import TokenCache
from .classic.decode import DecodeReply, StreamInterpreter, decode_json_reply
from .classic.payload import (
    BuildPayload,
    build_form,
    conversation_client_id,
    safe_history_text,
)
from .classic.tokens import ExtractTokens, extract_tokens
from .classic.transport import PostForm
from .config import DEFAULT_HEADERS, Limits, RetryPolicy, Settings, Site, Timeouts, is_retryable
from .core import (
    Body,
    Call,
    Exchange,
    FunctionStage,
    Message,
    Page,
    Pipeline,
    Reply,
    Stage,
    TextStream,
    Tokens,
    require,
    stage,
)
from .errors import *  # noqa: F403
from .errors import __all__ as _errors_all
from .layers import Layer, assemble, refreshing_nonce, retrying, timeout, token_cached, traced
from .messages import flatten_prompt, normalize_messages
from .sse import ServerSentEvent, SSEDecoder

__all__ = [
    "DEFAULT_HEADERS",
    "Body",
    "BuildPayload",
    "Call",
    "DecodeReply",
    "Exchange",
    "ExtractTokens",
    "FetchPage",
    "FunctionStage",
    "Layer",
    "Limits",
    "Message",
    "Page",
    "Pipeline",
    "PostForm",
    "Reply",
    "RetryPolicy",
    "SSEDecoder",
    "ServerSentEvent",
    "Settings",
    "Site",
    "Stage",
    "StreamInterpreter",
    "TextStream",
    "Timeouts",
    "TokenCache",
    "Tokens",
    "assemble",
    "build_form",
    "conversation_client_id",
    "decode_json_reply",
    "extract_tokens",
    "flatten_prompt",
    "is_retryable",
    "normalize_messages",
    "refreshing_nonce",
    "require",
    "retrying",
    "safe_history_text",
    "stage",
    "timeout",
    "token_cached",
    "traced",
    *_errors_all,
]
