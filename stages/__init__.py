"""The request flow of chatgptt as composable async stages, and the layers that wrap them.

The shared machinery (the records, ``Pipeline``, the layers, the page fetch, the network
seam, the SSE decoder, the errors) sits at the top; each dialect of the plugin's
protocol is a package of its own stages (:mod:`stages.classic`, :mod:`stages.aipkit`)
described by a :class:`Dialect`. This package knows HTTP, HTML and server-sent events;
it never imports ``chatgptt``.
"""

from __future__ import annotations

from .aipkit import (
    AIPKIT,
    AipkitTokens,
    BuildAipkitPayload,
    CacheAndStream,
    DecodeAipkitStream,
    ExtractAipkitTokens,
    aipkit_pipeline,
)
from .bootstrap import FetchPage
from .cache import TokenCache
from .classic import CLASSIC, ClassicTokens, classic_pipeline
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
from .conversations import ConversationStore
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
    require_tokens,
    stage,
)
from .dialects import AUTO, Dialect, Dialects
from .errors import *  # noqa: F403
from .errors import __all__ as _errors_all
from .layers import Layer, assemble, refreshing_tokens, retrying, timeout, token_cached, traced
from .messages import flatten_prompt, normalize_messages
from .sse import ServerSentEvent, SSEDecoder

__all__ = [
    "AIPKIT",
    "AUTO",
    "CLASSIC",
    "DEFAULT_HEADERS",
    "AipkitTokens",
    "Body",
    "BuildAipkitPayload",
    "BuildPayload",
    "CacheAndStream",
    "Call",
    "ClassicTokens",
    "ConversationStore",
    "DecodeAipkitStream",
    "DecodeReply",
    "Dialect",
    "Dialects",
    "Exchange",
    "ExtractAipkitTokens",
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
    "aipkit_pipeline",
    "assemble",
    "build_form",
    "classic_pipeline",
    "conversation_client_id",
    "decode_json_reply",
    "extract_tokens",
    "flatten_prompt",
    "is_retryable",
    "normalize_messages",
    "refreshing_tokens",
    "require",
    "require_tokens",
    "retrying",
    "safe_history_text",
    "stage",
    "standard_dialects",
    "timeout",
    "token_cached",
    "traced",
    *_errors_all,
]


def standard_dialects() -> Dialects:
    """The dialects a page is tested against, newest first: AIPKit, then classic."""
    return Dialects((AIPKIT, CLASSIC))
