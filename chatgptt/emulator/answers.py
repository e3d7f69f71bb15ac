"""What WordPress and the plugin answer to an AJAX chat request, as a :class:`Reply`.

Pure decisions, in the captured order: admin-ajax's action check (``400 0``), the nonce check
(PROTOCOL.md §3), the empty-message check (JSON even when streaming), the history (a 500 for
items the PHP handler cannot read), then the model and the reply, JSON or SSE per
``config.mode``. Answer-shaping faults (malformed streams, error words, control frames,
error objects) are applied here; the HTTP-level ones live in :mod:`chatgptt.emulator.app`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import attrs

from chatgptt.emulator.config import EmulatorConfig
from chatgptt.emulator.faults import Fault
from chatgptt.emulator.model import UPSTREAM_ERROR_MESSAGE, UpstreamError, ask_model, fit_answer
from chatgptt.emulator.pages import CRITICAL_ERROR_BODY, NONCE_EXPIRED_BODY
from chatgptt.emulator.replies import (
    COMPLETION_ID,
    ERROR_FINISH_FRAME,
    LIMITED_FRAME,
    Frame,
    Reply,
    ajax_html,
    ajax_json,
    answer_frames,
    chunk_frame,
    control_frame,
    error_object_frame,
    error_word_frames,
    frame_style,
    sse_reply,
)
from chatgptt.emulator.state import EmulatorState
from chatgptt.emulator.wordpress import (
    SiteCrashError,
    build_conversation,
    php_empty,
    php_json_encode,
)

__all__ = [
    "CHAT_ACTIONS",
    "CONTROL_MESSAGES",
    "EMPTY_MESSAGE",
    "NONCE_FAILED",
    "PROHIBITED_WORDS",
    "AjaxRequest",
    "answer_ajax",
]

log = logging.getLogger(__name__)

#: The plugin's two AJAX actions for a chat message; one handler serves both.
CHAT_ACTIONS = frozenset({"wpaicg_chat_shortcode_message", "wpaicg_chatbox_message"})

EMPTY_MESSAGE = "It appears that nothing was inputted."
NONCE_FAILED = "Nonce verification failed"
DEFAULT_ERROR_OBJECT_MESSAGE = (
    "The server had an error while processing your request. Sorry about that!"
)
PROHIBITED_WORDS = (
    "Your message contains prohibited words. Please modify your message and try again."
)
CONTROL_MESSAGES = {
    "tokenLimitReached": "You have reached your token limit.",
    "ipBanned": "You are not allowed to access this feature.",
    "messageFlagged": PROHIBITED_WORDS,
    "modflag": PROHIBITED_WORDS,
    "pineconeError": "There was an error querying Pinecone. Please check your Pinecone settings.",
}
#: Flags after which the plugin still streams the answer (a bug worth emulating).
_CONTROL_THEN_ANSWER = frozenset({"ipBanned", "messageFlagged"})
# Printed by PHP ahead of the JSON when a notice is on (the JSON-mode "invalid_json").
_PHP_WARNING = (
    b'<br />\n<b>Warning</b>:  Undefined array key "wpaicg_chat_client_id" in '
    b"<b>/var/www/html/wp-includes/functions.php</b> on line <b>1042</b><br />\n"
)
_INVALID_UTF8_MARK = "\ue000"


def _no_referer() -> str | None:
    return None


@attrs.frozen(kw_only=True)
class AjaxRequest:
    """What the AJAX handler reads of a request.

    Args:
        query: the URL's query fields (PHP's ``$_GET``).
        form: the POSTed fields (``$_POST``), urlencoded or multipart.
        referer: gives the ``Referer``, escaped for an ``href``, if WordPress would link
            back to it (same host, not this URL), else ``None``. A function: only the
            nonce-rejection page needs it, and working it out costs every request.
    """

    query: Mapping[str, str]
    form: Mapping[str, str]
    referer: Callable[[], str | None] = _no_referer


def answer_ajax(state: EmulatorState, request: AjaxRequest, fault: Fault | None = None) -> Reply:
    """What WordPress and the plugin answer; records what reaches the model in ``state``."""
    config = state.config
    fields = {**request.query, **request.form}  # $_REQUEST: POST values win over the query's
    action = fields.get("action")
    if not action:
        return ajax_html(400, "0", before_admin_init=True)
    if action not in CHAT_ACTIONS:
        return ajax_html(400, "0")
    if not state.nonces.verify(fields.get("_wpnonce")):
        return _nonce_rejection(config, request.referer())
    message = request.form.get("message")  # the plugin reads $_POST only
    if message is None or php_empty(message):
        return ajax_json({"status": "error", "msg": EMPTY_MESSAGE})
    try:
        conversation = build_conversation(
            config.greeting, request.form.get("wpaicg_chat_history"), message
        )
    except SiteCrashError:
        return ajax_html(500, CRITICAL_ERROR_BODY)
    return _chat_answer(state, config, conversation, fault)


def _nonce_rejection(config: EmulatorConfig, referer: str | None) -> Reply:
    if config.nonce_style == "json":
        return ajax_json({"status": "error", "msg": NONCE_FAILED})
    text = NONCE_EXPIRED_BODY
    if referer is not None:
        text += f'</p><p><a href="{referer}">Please try again.</a>'
    return ajax_html(403, text)


def _chat_answer(
    state: EmulatorState,
    config: EmulatorConfig,
    conversation: list[dict[str, str]],
    fault: Fault | None,
) -> Reply:
    """The reply to a valid chat request, shaped by an answer fault if there is one."""
    prelude: list[Frame] = []
    if fault is not None and fault.kind == "control":
        reply, prelude = _control_answer(config, fault)
        if reply is not None:
            return reply
    elif fault is not None and fault.kind in ("error_words", "error_object"):
        return _failed_upstream(state, config, conversation, fault)
    _remember(state, conversation)
    try:
        answer = ask_model(config.model, [dict(turn) for turn in conversation])
    except UpstreamError as exc:
        # WordPress's HTTP library retried the failed streaming call: the model saw it twice.
        if config.mode == "sse":
            _remember(state, conversation)
        return _upstream_error(config, exc.message)
    except Exception:
        log.exception("emulator model failed")
        return ajax_html(500, CRITICAL_ERROR_BODY)
    answer = fit_answer(answer, config.answer_chars)
    if fault is not None and fault.kind == "malformed":
        return _malformed(config, answer, fault)
    if config.mode == "sse":
        frames = answer_frames(
            answer,
            token_chars=config.token_chars,
            model_name=config.model_name,
            style=frame_style(config.frames),
        )
        return sse_reply(prelude + frames)
    return ajax_json(_success_payload(config, answer))


def _control_answer(config: EmulatorConfig, fault: Fault) -> tuple[Reply | None, list[Frame]]:
    """The ``control`` fault: a reply that ends there, or frames to stream before the answer."""
    flag = fault.flag or "tokenLimitReached"
    message = fault.message or CONTROL_MESSAGES[flag]
    if config.mode == "json":
        if flag == "tokenLimitReached":
            return ajax_json({"msg": message, "tokenLimitReached": True}), []
        return ajax_json({"status": "error", "msg": message}), []
    if flag in _CONTROL_THEN_ANSWER:
        return None, [control_frame(flag, message)]
    return sse_reply([control_frame(flag, message)]), []


def _failed_upstream(
    state: EmulatorState, config: EmulatorConfig, conversation: list[dict[str, str]], fault: Fault
) -> Reply:
    """The ``error_words`` and ``error_object`` faults: the model call fails."""
    if fault.kind == "error_words":
        _remember(state, conversation, twice=config.mode == "sse")  # the retry, as above
        message = fault.message or UPSTREAM_ERROR_MESSAGE
        return _upstream_error(config, message, limited=fault.limited)
    _remember(state, conversation)
    message = fault.message or DEFAULT_ERROR_OBJECT_MESSAGE
    if config.mode == "sse":
        return sse_reply([error_object_frame(message)])
    return _upstream_error(config, message)


def _remember(
    state: EmulatorState, conversation: list[dict[str, str]], *, twice: bool = False
) -> None:
    for _ in range(2 if twice else 1):
        state.received.append([dict(turn) for turn in conversation])


def _success_payload(config: EmulatorConfig, answer: str) -> dict[str, object]:
    return {
        "status": "success",
        "msg": "Something went wrong",  # the handler's initial msg, left in (plugin quirk)
        "greeting_message": config.greeting,
        "data": answer,
        "log": False,
    }


def _upstream_error(config: EmulatorConfig, message: str, *, limited: bool = False) -> Reply:
    """The plugin's relay of an upstream API error (PROTOCOL.md §5, §7)."""
    if config.mode == "json":
        return ajax_json(
            {"status": "error", "msg": message, "greeting_message": config.greeting, "log": False}
        )
    block = [*error_word_frames(message), Frame(ERROR_FINISH_FRAME)]
    return sse_reply([*block, *block, *([Frame(LIMITED_FRAME)] if limited else [])])


def _malformed(config: EmulatorConfig, answer: str, fault: Fault) -> Reply:
    """A broken rendition of a good answer (the ``malformed`` fault)."""
    variant = fault.variant
    after = fault.after_tokens if fault.after_tokens is not None else 1
    if config.mode == "json":
        body = php_json_encode(_success_payload(config, answer)).encode()
        if variant == "invalid_json":
            return ajax_json({}, body=_PHP_WARNING + body)
        if variant == "truncated_end":
            return ajax_json({}, body=body[: len(body) // 2])
        if variant == "invalid_utf8":
            marked = php_json_encode(_success_payload(config, _INVALID_UTF8_MARK + answer))
            return ajax_json({}, body=marked.encode().replace(b"\\ue000", b"\xff\xfe"))
        return ajax_json(_success_payload(config, answer))  # limited, no_done: no JSON form
    style = frame_style(config.frames)
    frames = answer_frames(
        answer, token_chars=config.token_chars, model_name=config.model_name, style=style
    )
    if variant == "limited":
        return sse_reply([*frames[:-2], Frame(LIMITED_FRAME)])
    if variant == "no_done":
        return sse_reply(frames[:-1])
    if variant == "truncated_end":
        return sse_reply(frames[:-2])
    if variant == "invalid_json":
        unfinished = f'{{"id": "{COMPLETION_ID}", "choices": [{{"index": 0, "delta": {{"content": "'
        extra = Frame(b"data: " + unfinished.encode() + b"unfinished\n\n")
    else:  # invalid_utf8
        # Escaped, so that the mark's escape can be swapped for the invalid bytes.
        escaped = attrs.evolve(style, ensure_ascii=True)
        good = chunk_frame({"content": _INVALID_UTF8_MARK}, None, config.model_name, escaped)
        extra = Frame(good.replace(b"\\ue000", b"\xff\xfe"))
    return sse_reply(_insert_after_tokens(frames, after, extra))


def _insert_after_tokens(frames: list[Frame], tokens: int, extra: Frame) -> list[Frame]:
    """``frames`` with ``extra`` placed after the ``tokens``-th content piece (or the last)."""
    seen = 0
    for index, frame in enumerate(frames):
        if seen >= tokens and index > 0:
            return [*frames[:index], extra, *frames[index:]]
        seen += frame.token
    return [*frames[:-2], extra, *frames[-2:]]
