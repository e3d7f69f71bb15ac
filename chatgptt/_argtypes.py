"""Argument types shared by the command lines (``chatgptt`` and ``chatgptt.emulator``):
each turns bad input into argparse's usage error naming the option, not a traceback."""

from __future__ import annotations

import argparse
import math

__all__ = ["non_negative_count", "port_number", "positive_seconds"]


def _whole_number(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None


def port_number(text: str) -> int:
    """A TCP port number (0: any free one)."""
    port = _whole_number(text, "a port number")
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 to 65535, got {port}")
    return port


def positive_seconds(text: str) -> float:
    """A finite, positive number of seconds."""
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return seconds


def non_negative_count(text: str) -> int:
    """A whole number, 0 or more."""
    count = _whole_number(text, "a whole number")
    if count < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {count}")
    return count
