"""chatgptt: streamed answers from chatgptt.me and every site running the WordPress
"AI Power" chat plugin, as a gpt4free-style provider.

>>> from chatgptt import ChatGptt
>>> messages = [{"role": "user", "content": "Hi"}]
>>> async for chunk in ChatGptt.create_async_generator("gpt-4o", messages):
...     print(chunk, end="")
"""

from __future__ import annotations

from stages import AIPKIT, AUTO, CLASSIC, ConversationStore, Dialect, Dialects, standard_dialects
from stages import errors as _errors
from stages.core import Exchange, Pipeline, Stage, stage
from stages.errors import *  # noqa: F403

from .chatgptt import ChatGptt, standard_bootstrap
from .config import Limits, RetryPolicy, SessionOptions, Settings, Site, Timeouts, is_retryable
from .providers import Messages, Provider

__version__ = "0.1.0"

__all__ = [
    "AIPKIT",
    "AUTO",
    "CLASSIC",
    "ConversationStore",
    "Dialect",
    "Dialects",
    "standard_dialects",
    "ChatGptt",
    "Exchange",
    "Limits",
    "Messages",
    "Pipeline",
    "Provider",
    "RetryPolicy",
    "SessionOptions",
    "Settings",
    "Site",
    "Stage",
    "Timeouts",
    "is_retryable",
    "stage",
    "standard_bootstrap",
    *_errors.__all__,
]
