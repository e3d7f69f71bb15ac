"""The emulator's command-line options, for ``chatgptt emulator`` and ``python -m``.

``--dialect aipkit`` serves the AIPKit site (plugin 2.3+) instead of the classic one; the
``--aipkit-*`` options shape it. ``--fault SPEC`` (repeatable) scripts faults; the spec
syntax is :func:`chatgptt.emulator.faults.parse_fault`'s, e.g.::

    --fault 'status=503,times=2,retry_after=1'      the next two AJAX requests get 503
    --fault 'challenge,target=page'                 a Cloudflare challenge on the page
    --fault 'drop,after_tokens=2,target=stream'     AIPKit: cut step 2 after two deltas
    --fault 'expire_nonce,target=cache'             AIPKit: step 1 sees a stale nonce
    --fault 'quota'                                 AIPKit: the quota error on step 2
    --fault 'error_event=Boom,where=inside,after_tokens=1'
    --fault 'named_event=citations,data=[]'
"""

from __future__ import annotations

import argparse
import sys

from chatgptt._argtypes import port_number
from chatgptt.emulator.config import (
    AIPKIT_API_MODES,
    AIPKIT_PAGES,
    DEFAULT_AJAX_PATH,
    DIALECTS,
    FRAME_STYLES,
    FRAMINGS,
    MODES,
    NONCE_STYLES,
    PAGE_STYLES,
    EmulatorConfig,
)
from chatgptt.emulator.faults import (
    FAULT_KINDS,
    Fault,
    fault_syntax,
    format_fault,
    never_fires,
    parse_fault,
    validation_message,
)
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


def _on_off(text: str) -> bool:
    if text.lower() in ("on", "true", "1", "yes"):
        return True
    if text.lower() in ("off", "false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected on or off, got {text!r}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the emulator's options to ``parser`` (and the fault kinds to its help)."""
    if parser.epilog is None:
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
        parser.epilog = (
            "fault kinds (--fault KIND[=VALUE][,NAME=VALUE...]; each also takes target= and "
            "times=;\nsee chatgptt.emulator.faults for what they do):\n" + fault_syntax()
        )
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to listen on")
    parser.add_argument("--port", type=port_number, default=DEFAULT_PORT, help="port (0: any free)")
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
        help="scripted fault, repeatable: KIND[=VALUE][,NAME=VALUE...] with KIND one of "
        f"{', '.join(FAULT_KINDS)}; NAME target (ajax, page, any; AIPKit: cache, stream, "
        "nonce), times (N or every) or the kind's parameters. E.g. "
        "'status=503,times=2,retry_after=1', 'challenge,target=page', 'drop,after_tokens=3', "
        "'stall=5,where=inside', 'drop,after_tokens=2,target=stream', 'quota', "
        "'error_event=Boom,where=inside,after_tokens=1', 'linger', 'empty_stream=php_fatal', "
        "'cut,after_tokens=1', 'firewall=wordfence,target=any'. "
        "Escape , and = in values as \\, \\=",
    )
    aipkit = parser.add_argument_group("AIPKit site (--dialect aipkit)")
    parser.add_argument(
        "--dialect",
        choices=DIALECTS,
        default="classic",
        help="the plugin's protocol: classic (wpaicg_*, up to 2.2) or aipkit (2.3+)",
    )
    aipkit.add_argument(
        "--aipkit-page", choices=AIPKIT_PAGES, default="inline", help="inline or popup chat"
    )
    aipkit.add_argument(
        "--aipkit-api-mode",
        choices=AIPKIT_API_MODES,
        default="chat_completions",
        help="responses adds the status and openai_response_id events",
    )
    aipkit.add_argument("--aipkit-bot-id", default="5", metavar="N", help="the bot's id")
    aipkit.add_argument(
        "--aipkit-history",
        type=int,
        default=15,
        metavar="N",
        help="stored messages the model sees (the bot's max_messages)",
    )
    aipkit.add_argument(
        "--aipkit-cache-ttl",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how long a step-1 cache key lives",
    )
    aipkit.add_argument(
        "--aipkit-stream-enabled",
        type=_on_off,
        default=None,
        metavar="on|off",
        help="serve a 2.3-era page whose data-config has streamEnabled",
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
            dialect=getattr(ns, "dialect", "classic"),
            aipkit_page=getattr(ns, "aipkit_page", "inline"),
            aipkit_api_mode=getattr(ns, "aipkit_api_mode", "chat_completions"),
            aipkit_bot_id=getattr(ns, "aipkit_bot_id", "5"),
            aipkit_history_limit=getattr(ns, "aipkit_history", 15),
            aipkit_cache_ttl=getattr(ns, "aipkit_cache_ttl", 60.0),
            aipkit_stream_enabled=getattr(ns, "aipkit_stream_enabled", None),
            framing=getattr(ns, "framing", "length"),
            frames=getattr(ns, "frames", "varied"),
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(validation_message(exc)) from None


def faults_from_args(ns: argparse.Namespace, config: EmulatorConfig) -> list[Fault]:
    """The ``--fault`` options, each one the site of ``config`` can meet.

    Raises:
        ValueError: a spec that does not parse, or a fault that never fires on a site of
            the configured dialect (a fault suite run against the wrong dialect would pass
            while testing nothing).
    """
    faults = [f if isinstance(f, Fault) else parse_fault(f) for f in ns.fault or ()]
    for fault in faults:
        reason = never_fires(fault, config.dialect)
        if reason is not None:
            site = "an AIPKit" if config.dialect == "aipkit" else "a classic"
            raise ValueError(f"--fault {format_fault(fault)} never fires on {site} site: {reason}")
    return faults


def main_from_args(ns: argparse.Namespace) -> int:
    """Run the emulator the parsed options describe until Ctrl-C; the exit status."""
    try:
        config = config_from_args(ns)
        faults = faults_from_args(ns, config)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        run(config, ns.host, ns.port, faults)
    except OSError as exc:
        print(f"error: cannot listen on {ns.host}:{ns.port}: {exc}", file=sys.stderr)
        return 1
    return 0
