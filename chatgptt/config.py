"""Configuration records, re-exported from ``stages.config`` where the stages read them.

They live with the stages (which must not import this package); users import them
from here or from ``chatgptt`` directly.
"""

from __future__ import annotations

from stages.config import (
    DEFAULT_HEADERS,
    Limits,
    RetryPolicy,
    Settings,
    Site,
    Timeouts,
    is_retryable,
)

from .session import SessionOptions

__all__ = [
    "DEFAULT_HEADERS",
    "Limits",
    "RetryPolicy",
    "SessionOptions",
    "Settings",
    "Site",
    "Timeouts",
    "is_retryable",
]
