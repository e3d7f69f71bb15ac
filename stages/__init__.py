"""The request flow of chatgptt as composable async stages, and the layers that wrap them.

This package knows HTTP, HTML and server-sent events; it never imports ``chatgptt``.
"""

from __future__ import annotations

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

__all__ = [
    "DEFAULT_HEADERS",
    "Body",
    "Call",
    "Exchange",
    "FunctionStage",
    "Limits",
    "Message",
    "Page",
    "Pipeline",
    "Reply",
    "RetryPolicy",
    "Settings",
    "Site",
    "Stage",
    "TextStream",
    "Timeouts",
    "Tokens",
    "is_retryable",
    "require",
    "stage",
    *_errors_all,
]
