"""The AIPKit dialect of the emulated site: the ``aipkit_*`` protocol of plugin 2.3+.

What the real 2.4.71 serves and answers (``tests/vectors/aipkit/``): landing pages whose
``data-config`` carries the bot id, AJAX URL, nonce and post id (:mod:`.pages`); the nonce
endpoint, step 1's one-use cache keys and step 2's event stream with its padding, headers,
``message_start``/delta/``done`` frames and every error form (:mod:`.answers`); the chat log
the site keeps per ``(session_id, conversation_uuid)`` (:mod:`.store`). Pick it with
``EmulatorConfig(dialect="aipkit")``.
"""

from chatgptt.emulator.aipkit.answers import (
    AIPKIT_ACTIONS,
    SSE_HEADERS,
    AipkitRequest,
    answer_aipkit,
    model_messages,
    request_kind,
    upstream_error_text,
)
from chatgptt.emulator.aipkit.events import PADDING, RESPONSE_ID
from chatgptt.emulator.aipkit.pages import (
    AipkitPageContext,
    data_config_attribute,
    frontend_config,
    render_aipkit_landing,
)
from chatgptt.emulator.aipkit.store import (
    CachedMessage,
    ConversationStore,
    ManualClock,
    SseCache,
)

__all__ = [
    "AIPKIT_ACTIONS",
    "PADDING",
    "RESPONSE_ID",
    "SSE_HEADERS",
    "AipkitPageContext",
    "AipkitRequest",
    "CachedMessage",
    "ConversationStore",
    "ManualClock",
    "SseCache",
    "answer_aipkit",
    "data_config_attribute",
    "frontend_config",
    "model_messages",
    "render_aipkit_landing",
    "request_kind",
    "upstream_error_text",
]
