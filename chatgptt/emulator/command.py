"""The emulator's command-line options, for ``chatgptt emulator`` and ``python -m``."""

from __future__ import annotations

import argparse
import sys

from chatgptt.emulator.config import (
    DEFAULT_AJAX_PATH,
    FRAME_STYLES,
    FRAMINGS,
    MODES,
    NONCE_STYLES,
    PAGE_STYLES,
    EmulatorConfig,
)
from chatgptt.emulator.faults import Fault, parse_fault, validation_message
from chatgptt.emulator.model import Model, echo_model, recap_model
from chatgptt.emulator.server import DEFAULT_HOST, DEFAULT_PORT, run

__all__ = ["MODELS", "add_arguments", "config_from_args", "main_from_args"]

#: The models the command line can pick by name.
MODELS: dict[str, Model] = {"echo": echo_model, "recap": recap_model}


def _fault_argument(spec: str) -> Fault:
    try:
        return parse_fault(spec)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the emulator's options to ``parser``."""
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to listen on")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (0: any free)")
    parser.add_argument("--mode", choices=MODES, default="sse", help="stream (sse) or json")
    parser.add_argument(
        "--token-delay", type=float, default=0.0, metavar="SECONDS", help="pause per piece"
    )
    parser.add_argument(
        "--token-chars", type=int, default=8, metavar="N", help="characters per piece"
    )
    parser.add_argument(
        "--answer-chars", type=int, default=None, metavar="N", help="pad or cut answers to N"
    )
    parser.add_argument("--page-style", choices=PAGE_STYLES, default="capture")
    parser.add_argument(
        "--ajax-path", default=DEFAULT_AJAX_PATH, metavar="PATH", help="the AJAX endpoint"
    )
    parser.add_argument("--nonce-style", choices=NONCE_STYLES, default="403")
    parser.add_argument("--model", choices=sorted(MODELS), default="echo")
    parser.add_argument(
        "--request-log",
        type=int,
        default=200,
        metavar="N",
        help="requests (and conversations) kept for inspection; 0 keeps none",
    )
    parser.add_argument(
        "--framing",
        choices=FRAMINGS,
        default="length",
        help="'close': every reply as PHP's built-in server (the real site) sends it: "
        "no Content-Length, no chunking, the body ends when the connection closes",
    )
    parser.add_argument(
        "--frames",
        choices=FRAME_STYLES,
        default="varied",
        help="'varied' upstream frames (ids, timestamps, JSON spacing) or the capture's bytes",
    )
    parser.add_argument(
        "--fault",
        action="append",
        type=_fault_argument,
        default=[],
        metavar="SPEC",
        help="scripted fault, repeatable, e.g. 'status=503,times=2,retry_after=1', "
        "'challenge,target=page', 'drop,after_tokens=3', 'stall=5,where=inside', 'linger', "
        "'empty_stream=php_fatal', 'cut,after_tokens=1', 'firewall=wordfence,target=any' "
        "(all kinds: chatgptt.emulator.faults)",
    )


def config_from_args(ns: argparse.Namespace) -> EmulatorConfig:
    """The :class:`EmulatorConfig` the parsed options describe (``ValueError`` if invalid)."""
    try:
        return EmulatorConfig(
            mode=ns.mode,
            token_delay=ns.token_delay,
            token_chars=ns.token_chars,
            answer_chars=ns.answer_chars,
            page_style=ns.page_style,
            ajax_path=ns.ajax_path,
            nonce_style=ns.nonce_style,
            model=MODELS[getattr(ns, "model", "echo")],
            request_log_limit=getattr(ns, "request_log", 200),
            framing=getattr(ns, "framing", "length"),
            frames=getattr(ns, "frames", "varied"),
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(validation_message(exc)) from None


def main_from_args(ns: argparse.Namespace) -> int:
    """Run the emulator the parsed options describe until Ctrl-C; the exit status."""
    try:
        config = config_from_args(ns)
        faults = [f if isinstance(f, Fault) else parse_fault(f) for f in ns.fault or ()]
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        run(config, ns.host, ns.port, faults)
    except OSError as exc:
        print(f"error: cannot listen on {ns.host}:{ns.port}: {exc}", file=sys.stderr)
        return 1
    return 0
