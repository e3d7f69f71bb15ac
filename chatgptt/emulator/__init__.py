"""A local emulator of chatgptt.me: WordPress with the AI Power chat plugin.

An ``aiohttp.web`` server that answers like the captured site — landing page, nonce checks,
JSON and streamed replies, the plugin's quirks — plus scripted faults (status codes,
Cloudflare pages, drops, stalls, malformed streams). Real clients of the real site work
against it unchanged. It speaks the classic dialect (``wpaicg_*``, plugin up to 2.2) or,
with ``EmulatorConfig(dialect="aipkit")``, the AIPKit one of plugin 2.3+
(:mod:`chatgptt.emulator.aipkit`). Start one with :class:`EmulatorServer` (async),
:func:`start_in_thread` (sync) or :func:`run` (blocking, for the command line).
"""

from chatgptt.emulator.aipkit import ConversationStore, ManualClock, SseCache
from chatgptt.emulator.app import make_app
from chatgptt.emulator.command import add_arguments, config_from_args, main_from_args
from chatgptt.emulator.config import (
    AIPKIT_API_MODES,
    AIPKIT_PAGES,
    DEFAULT_AIPKIT_INSTRUCTIONS,
    DEFAULT_AJAX_PATH,
    DEFAULT_GREETING,
    DIALECTS,
    MODES,
    NONCE_STYLES,
    PAGE_STYLES,
    AipkitApiMode,
    AipkitPage,
    Dialect,
    EmulatorConfig,
    Mode,
    NonceStyle,
    PageStyle,
)
from chatgptt.emulator.faults import (
    AIPKIT_ONLY_KINDS,
    ANSWER_KINDS,
    CONTROL_FLAGS,
    FAULT_KINDS,
    MALFORMED_VARIANTS,
    Fault,
    FaultPlan,
    format_fault,
    parse_fault,
)
from chatgptt.emulator.model import (
    UPSTREAM_ERROR_MESSAGE,
    UPSTREAM_ERROR_TRIGGER,
    Model,
    UpstreamError,
    echo_model,
    recap_model,
)
from chatgptt.emulator.nonces import NonceBook
from chatgptt.emulator.server import EmulatorServer, ThreadedEmulator, run, start_in_thread
from chatgptt.emulator.state import EmulatorState, RequestRecord

__all__ = [
    "AIPKIT_API_MODES",
    "AIPKIT_ONLY_KINDS",
    "AIPKIT_PAGES",
    "ANSWER_KINDS",
    "CONTROL_FLAGS",
    "DEFAULT_AIPKIT_INSTRUCTIONS",
    "DEFAULT_AJAX_PATH",
    "DEFAULT_GREETING",
    "DIALECTS",
    "FAULT_KINDS",
    "MALFORMED_VARIANTS",
    "MODES",
    "NONCE_STYLES",
    "PAGE_STYLES",
    "UPSTREAM_ERROR_MESSAGE",
    "UPSTREAM_ERROR_TRIGGER",
    "AipkitApiMode",
    "AipkitPage",
    "ConversationStore",
    "Dialect",
    "EmulatorConfig",
    "EmulatorServer",
    "EmulatorState",
    "Fault",
    "FaultPlan",
    "ManualClock",
    "Mode",
    "Model",
    "NonceBook",
    "NonceStyle",
    "PageStyle",
    "RequestRecord",
    "SseCache",
    "ThreadedEmulator",
    "UpstreamError",
    "add_arguments",
    "config_from_args",
    "echo_model",
    "format_fault",
    "main_from_args",
    "make_app",
    "parse_fault",
    "recap_model",
    "run",
    "start_in_thread",
]
