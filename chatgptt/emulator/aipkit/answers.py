"""What an AIPKit site (plugin 2.4.71) answers on admin-ajax, as a :class:`Reply`.

Three actions, in the order and with the exact texts the real plugin showed
(``tests/vectors/aipkit/``, PROTOCOL-AIPKIT.md, and the real site where they disagree):

- ``aipkit_get_frontend_chat_nonce``: the current chat nonce.
- ``aipkit_cache_sse_message`` (step 1, ``$_POST`` only): cross-site ``Origin`` (with a
  ``bot_id``), nonce, image inputs, empty message; then a one-use cache key.
- ``aipkit_frontend_chat_stream`` (step 2, ``$_GET`` only but the nonce): always 200 and an
  event stream. Cross-site ``Origin``, nonce, cache key (read and deleted here, even if a
  check below fails), bot, conversation id, session id, message; each failure is ``error``
  then ``done``. Then the user message is logged, the model sees the bot's instructions,
  the last ``aipkit_history_limit`` logged messages and the new message, and the answer
  streams as ``message_start``, ``{"delta":…}`` pieces and ``done``. An upstream error comes
  after ``message_start`` and ends the stream without ``done``.

Every other action, the classic ones included, gets ``400 0``. Answer-shaping faults are
applied here; see :mod:`chatgptt.emulator.faults` for what each does on an AIPKit stream.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from chatgptt.emulator.aipkit.events import (
    PADDING,
    data_frame,
    delta_frame,
    done_frame,
    error_frame,
    event_frame,
    message_id,
    message_start_frame,
    response_id_frame,
    status_frames,
)
from chatgptt.emulator.aipkit.kses import kses_post
from chatgptt.emulator.aipkit.store import CachedMessage, ConversationKey, StoredMessage
from chatgptt.emulator.aipkit.wordpress import (
    absint,
    is_cross_origin,
    php_trim,
    sanitize_key,
    sanitize_text_field,
)
from chatgptt.emulator.answers import DEFAULT_ERROR_OBJECT_MESSAGE  # the classic one's
from chatgptt.emulator.config import EmulatorConfig
from chatgptt.emulator.faults import Fault, RequestKind
from chatgptt.emulator.model import UPSTREAM_ERROR_MESSAGE, UpstreamError, ask_model, fit_answer
from chatgptt.emulator.nonces import AIPKIT_NONCE_ACTION
from chatgptt.emulator.pages import CRITICAL_ERROR_BODY
from chatgptt.emulator.replies import Frame, Reply, ajax_html, ajax_json, split_answer
from chatgptt.emulator.wordpress import php_empty

if TYPE_CHECKING:  # the state imports this package's store: no import at run time
    from chatgptt.emulator.state import EmulatorState

__all__ = [
    "AIPKIT_ACTIONS",
    "BANNED_IP",
    "BANNED_WORDS",
    "CACHE_EXPIRED",
    "CACHE_KEY_MISSING",
    "CACHE_NOT_FOUND",
    "CONVERSATION_MISSING",
    "CORS_DENIED",
    "DEFAULT_CITATIONS_DONE",
    "EMBED_NOT_AVAILABLE",
    "EMPTY_DATA_TO_CACHE",
    "EMPTY_MESSAGE",
    "GUESTS_DISABLED",
    "INVALID_BOT",
    "LOG_FAILED",
    "MODERATION_FLAGGED",
    "NONCE_FAILURE_CACHE",
    "QUOTA_MESSAGE",
    "SECURITY_CHECK_FAILED",
    "SESSION_MISSING",
    "SSE_HEADERS",
    "AipkitRequest",
    "answer_aipkit",
    "model_messages",
    "request_kind",
    "upstream_error_text",
]

log = logging.getLogger(__name__)

#: The AIPKit actions and the fault target each one is.
AIPKIT_ACTIONS: dict[str, RequestKind] = {
    "aipkit_get_frontend_chat_nonce": "nonce",
    "aipkit_cache_sse_message": "cache",
    "aipkit_frontend_chat_stream": "stream",
}

# Step 1 ({"success":false,"data":{"message":…,"code":…}}).
NONCE_FAILURE_CACHE = (
    "Your session has expired or the request is invalid. Please refresh the page and try again."
)
EMPTY_DATA_TO_CACHE = "Data to cache (message or image) cannot be empty."
EMBED_NOT_AVAILABLE = "Embed feature is not available with your current plan."
CORS_DENIED = "This domain is not permitted to access the chatbot."
_INVALID_IMAGES = "Invalid image upload payload."
_INVALID_IMAGE_DATA = "Invalid image data provided."
_INVALID_IMAGE_TYPE = "Invalid image type. Allowed: JPG, PNG, WEBP."
_TOO_MANY_IMAGES = "Too many images uploaded. Max images: 4."
_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/webp"})
# Step 2 (error events).
SECURITY_CHECK_FAILED = "Security check failed. Please refresh the page and try again."
CACHE_KEY_MISSING = "Message cache key is missing."
CACHE_NOT_FOUND = "Message not found in cache."
CACHE_EXPIRED = "Cached message has expired."
INVALID_BOT = "Invalid chatbot specified."
CONVERSATION_MISSING = "Conversation ID is missing."
SESSION_MISSING = "Session ID is missing for guest."
EMPTY_MESSAGE = "Message or image cannot be empty."
QUOTA_MESSAGE = "You have reached your quota for this period."
GUESTS_DISABLED = "Access disabled for guests."
BANNED_IP = "Access from your IP address has been blocked."
BANNED_WORDS = "Sorry, your message could not be sent as it contains prohibited words."
MODERATION_FLAGGED = "Your message was flagged by the moderation system and could not be sent."
#: The log table's ``session_id`` holds 64 characters, ``conversation_uuid`` 36: longer ids
#: make the insert fail.
LOG_FAILED = "Failed to log user message."
SESSION_ID_CHARS = 64
CONVERSATION_ID_CHARS = 36
_CACHE_MISSES = {
    "missing": CACHE_KEY_MISSING,
    "not_found": CACHE_NOT_FOUND,
    "expired": CACHE_EXPIRED,
}
# The classic control frame's Pinecone text: AIPKit's own is not pinned down.
_VECTOR_STORE_ERROR = "There was an error querying Pinecone. Please check your Pinecone settings."
#: What each classic control flag becomes on an AIPKit stream (tokenLimitReached: quota).
_CONTROL_REFUSALS = {
    "ipBanned": BANNED_IP,
    "messageFlagged": BANNED_WORDS,
    "modflag": MODERATION_FLAGGED,
    "pineconeError": _VECTOR_STORE_ERROR,
}
#: The ``done_data`` fault's payload when it gives none.
DEFAULT_CITATIONS_DONE = json.dumps(
    {
        "finished": True,
        "grounding_metadata": {"webSearchQueries": ["emulator"]},
        "citations": [{"url": "https://example.com/source", "title": "Example source"}],
    },
    separators=(",", ":"),
)
_MINIMAL_INSTRUCTIONS = "You are a helpful AI Assistant."

# The stream's headers, in the plugin's order; PHP's own Connection header comes last.
SSE_HEADERS: tuple[tuple[str, str], ...] = (
    ("X-Robots-Tag", "noindex"),
    ("X-Content-Type-Options", "nosniff"),
    ("Expires", "Wed, 11 Jan 1984 05:00:00 GMT"),
    ("Referrer-Policy", "strict-origin-when-cross-origin"),
    ("X-Frame-Options", "SAMEORIGIN"),
    ("Cache-Control", "no-cache, no-store, must-revalidate, max-age=0, no-transform"),
    ("Pragma", "no-cache"),
    ("Content-Type", "text/event-stream; charset=utf-8"),
    ("X-Accel-Buffering", "no"),
    ("Connection", "keep-alive"),
)


@attrs.frozen(kw_only=True)
class AipkitRequest:
    """What the AIPKit handlers read of a request.

    Args:
        query: ``$_GET``.
        form: ``$_POST`` (urlencoded or multipart).
        origin: the ``Origin`` header, if any.
        site_netloc: the site's host as the request names it (``Host``).
        site_scheme: ``http`` or ``https``.
    """

    query: Mapping[str, str]
    form: Mapping[str, str]
    origin: str | None = None
    site_netloc: str = "127.0.0.1"
    site_scheme: str = "http"

    def cross_origin(self) -> bool:
        """Whether ``Origin`` names another site than this one."""
        return is_cross_origin(self.origin, self.site_netloc, self.site_scheme)


def request_kind(config: EmulatorConfig, fields: Mapping[str, str]) -> RequestKind:
    """Which fault target an AJAX request is: an AIPKit step on an AIPKit site, else ``ajax``."""
    if config.dialect != "aipkit":
        return "ajax"
    return AIPKIT_ACTIONS.get(fields.get("action", ""), "ajax")


def answer_aipkit(
    state: EmulatorState, request: AipkitRequest, fault: Fault | None = None
) -> Reply:
    """What the AIPKit site answers; updates the counters, cache and conversations in ``state``."""
    fields = {**request.query, **request.form}  # admin-ajax reads the action from $_REQUEST
    action = fields.get("action")
    if not action:
        return ajax_html(400, "0", before_admin_init=True)
    kind = AIPKIT_ACTIONS.get(action)
    if kind == "nonce":
        state.nonce_fetches += 1
        return _nonce(state, request)
    if kind == "cache":
        state.cache_posts += 1
        return _cache(state, request)
    if kind == "stream":
        state.stream_gets += 1
        return _Stream(state, request, fault).reply()
    return ajax_html(400, "0")


def _json_error(status: int, message: str, code: str) -> Reply:
    reply = ajax_json({"success": False, "data": {"message": message, "code": code}})
    return attrs.evolve(reply, status=status)


def _nonce(state: EmulatorState, request: AipkitRequest) -> Reply:
    if absint(request.form.get("bot_id")) > 0 and request.cross_origin():
        return _json_error(403, CORS_DENIED, "cors_denied")
    nonce = state.nonces.create(AIPKIT_NONCE_ACTION)
    return ajax_json({"success": True, "data": {"nonce": nonce}})


def _cache(state: EmulatorState, request: AipkitRequest) -> Reply:
    config, form = state.config, request.form
    if absint(form.get("bot_id")) > 0 and request.cross_origin():
        return _json_error(403, EMBED_NOT_AVAILABLE, "embed_not_available")
    nonce = form.get("_ajax_nonce")
    if nonce is None or not state.nonces.verify(sanitize_key(nonce), AIPKIT_NONCE_ACTION):
        return _json_error(403, NONCE_FAILURE_CACHE, "nonce_failure_cache_sse")
    message = form.get("message", "").replace("\0", "")
    images = _count_images(form.get("image_inputs"))
    if isinstance(images, Reply):
        return images
    if php_empty(message) and not images:
        return _json_error(400, EMPTY_DATA_TO_CACHE, "empty_data_to_cache")
    client_id = form.get("user_client_message_id")
    key = state.sse_cache.put(
        message,
        now=config.clock(),
        ttl=config.aipkit_cache_ttl,
        client_message_id=None if client_id is None else sanitize_key(client_id),
        images=images,
    )
    return ajax_json({"success": True, "data": {"cache_key": key}})


def _count_images(raw: str | None) -> int | Reply:
    """How many valid images ``image_inputs`` holds, or the plugin's 400 for bad ones."""
    if not raw:
        return 0
    try:
        items: Any = json.loads(raw)
    except ValueError:
        items = None
    if not isinstance(items, list) or not items:
        return _json_error(400, _INVALID_IMAGES, "invalid_image_payload")
    if len(items) > 4:
        return _json_error(400, _TOO_MANY_IMAGES, "too_many_images")
    for item in items:
        if not isinstance(item, dict):
            return _json_error(400, _INVALID_IMAGES, "invalid_image_payload")
        mime = str(item.get("mime_type", "")).strip().lower()
        data = str(item.get("base64_data", "")).strip()
        if not mime or not data:
            return _json_error(400, _INVALID_IMAGES, "invalid_image_payload")
        if data.startswith("data:") and "base64," in data:
            data = data.split("base64,", 1)[1]
        if mime not in _IMAGE_TYPES:
            return _json_error(400, _INVALID_IMAGE_TYPE, "invalid_image_type")
        try:
            decoded = base64.b64decode("".join(data.split()), validate=True)
        except (binascii.Error, ValueError):
            decoded = b""
        if not decoded:
            return _json_error(400, _INVALID_IMAGE_DATA, "invalid_image_payload")
    return len(items)


def upstream_error_text(message: str) -> str:
    """How the plugin relays an OpenAI error: ``API Error: <message> (Code: <code>)``."""
    return f"API Error: {message} (Code: invalid_api_key)"


def _instructions(config: EmulatorConfig, now: float) -> str:
    text = config.aipkit_instructions or _MINIMAL_INSTRUCTIONS
    day = dt.datetime.fromtimestamp(now, tz=dt.UTC)
    return text.replace("[date]", f"{day:%B} {day.day}, {day.year}").replace("[username]", "")


def model_messages(
    instructions: str, history: list[StoredMessage], current: str, limit: int
) -> list[dict[str, str]]:
    """What reaches the model: the instructions, the last ``limit`` logged messages before
    the new one (as logged, so after ``wp_kses_post``), and the new one as sent; each
    trimmed, blank ones left out.

    ``limit`` 0 keeps them all, as the plugin's ``array_slice($history, -0)`` does.
    """
    if limit and len(history) > limit:
        history = history[-limit:]
    messages = [{"role": "system", "content": instructions}]
    for message in [*history, {"role": "user", "content": current}]:
        content = php_trim(message["content"])
        if content:
            messages.append({"role": message["role"], "content": content})
    return messages


@attrs.frozen
class _Refusal:
    """A check failed: the stream is this ``error`` (then ``done``)."""

    message: str
    extra: Mapping[str, object] | None = None


@attrs.frozen
class _Accepted:
    """Every check passed: the cached message and the conversation it belongs to."""

    cached: CachedMessage
    key: ConversationKey


class _Stream:
    """Step 2: the checks, the log, the model and the frames, shaped by ``fault``."""

    def __init__(self, state: EmulatorState, request: AipkitRequest, fault: Fault | None) -> None:
        self.state = state
        self.config = state.config
        self.request = request
        self.fault = fault
        self.now = self.config.clock()
        self.frames: list[Frame] = [Frame(PADDING)]

    def reply(self) -> Reply:
        checked = self._check()
        if isinstance(checked, _Refusal):
            return self._end_with_error(checked)
        if self._fault_is("error_event") and self._where() == "before":
            return self._end_with_error(_Refusal(self._fault_message()), self._done_after_error())
        if self._fault_is("named_event") and self._where() == "before":
            self.frames.append(self._named_event())
        conversations = self.state.conversations
        conversations.append(checked.key, "user", kses_post(checked.cached.message))
        messages = model_messages(
            _instructions(self.config, self.now),
            conversations[checked.key][:-1],  # the plugin drops the user message just logged
            checked.cached.message,
            self.config.aipkit_history_limit,
        )
        self.state.received.append([dict(message) for message in messages])
        self.frames.append(message_start_frame(message_id(self.now)))
        answer = self._call_model(messages)
        if isinstance(answer, Frame):
            return _sse([*self.frames, answer])  # the plugin stops without ``done``
        responses_api = self.config.aipkit_api_mode == "responses"
        if responses_api:
            self.frames += status_frames()
        deltas = [delta_frame(piece) for piece in split_answer(answer, self.config.token_chars)]
        tail = [*([response_id_frame()] if responses_api else []), self._done()]
        if self._fault_is("error_event"):  # inside the answer: the stream stops there
            end = [error_frame(self._fault_message(), self.now)]
            if self._done_after_error():
                end.append(done_frame())
            return _sse([*self.frames, *deltas[: self._after_tokens()], *end])
        conversations.append(checked.key, "assistant", kses_post(answer))
        if self._fault_is("warning") or (
            self._fault_is("named_event") and self._where() == "inside"
        ):
            extra = (
                error_frame(self._fault_message(), self.now, warning=True)
                if self._fault_is("warning")
                else self._named_event()
            )
            after = self._after_tokens()
            deltas = [*deltas[:after], extra, *deltas[after:]]
        if self._fault_is("malformed"):
            return self._malformed(deltas, tail)
        return _sse([*self.frames, *deltas, *tail])

    # --- the checks before the model ----------------------------------------------------

    def _check(self) -> _Refusal | _Accepted:
        """The first failed check in the plugin's order, or what the request carries."""
        query, state = self.request.query, self.state
        bot_id = absint(query.get("bot_id"))
        if bot_id > 0 and self.request.cross_origin():
            return _Refusal(CORS_DENIED)
        nonce = {**query, **self.request.form}.get("_ajax_nonce")  # check_ajax_referer: $_REQUEST
        if not state.nonces.verify(nonce, AIPKIT_NONCE_ACTION):
            return _Refusal(SECURITY_CHECK_FAILED)
        taken = state.sse_cache.take(query.get("cache_key"), self.now)
        if isinstance(taken, str):
            return _Refusal(_CACHE_MISSES[taken])
        if str(bot_id) != self.config.aipkit_bot_id:
            return _Refusal(INVALID_BOT)
        conversation = sanitize_key(query.get("conversation_uuid", ""))
        if not conversation:
            return _Refusal(CONVERSATION_MISSING)
        session = sanitize_text_field(query.get("session_id", ""))
        if not session:
            return _Refusal(SESSION_MISSING)
        if php_empty(taken.message) and not taken.images:
            return _Refusal(EMPTY_MESSAGE)
        refused = self._fault_refusal()
        if refused is not None:
            return refused
        if len(session) > SESSION_ID_CHARS or len(conversation) > CONVERSATION_ID_CHARS:
            return _Refusal(LOG_FAILED)
        return _Accepted(taken, (session, conversation))

    def _fault_refusal(self) -> _Refusal | None:
        """Quota and moderation faults: refused before the message is logged."""
        fault = self.fault
        if fault is None:
            return None
        if fault.kind == "quota" or (fault.kind == "control" and fault.flag == "tokenLimitReached"):
            message = fault.message or QUOTA_MESSAGE
            if fault.kind == "quota" and not fault.notice:
                return _Refusal(message)
            notice = {"type": "quota_notice", "message": message, "actions": []}
            return _Refusal(message, {"quota_notice": notice})
        if fault.kind == "control" and fault.flag is not None:
            return _Refusal(fault.message or _CONTROL_REFUSALS[fault.flag])
        return None

    def _end_with_error(self, refusal: _Refusal, done: bool = True) -> Reply:
        self.frames.append(error_frame(refusal.message, self.now, extra=refusal.extra))
        if done:
            self.frames.append(done_frame())
        return _sse(self.frames)

    # --- the model ----------------------------------------------------------------------

    def _call_model(self, messages: list[dict[str, str]]) -> str | Frame:
        """The answer, or the frame that ends the stream when the model call fails."""
        if self._fault_is("error_words"):
            message = self._fault_message(UPSTREAM_ERROR_MESSAGE)
            return error_frame(upstream_error_text(message), self.now)
        if self._fault_is("error_object"):
            return error_frame(self._fault_message(DEFAULT_ERROR_OBJECT_MESSAGE), self.now)
        try:
            answer = ask_model(self.config.model, [dict(m) for m in messages])
        except UpstreamError as exc:
            return error_frame(upstream_error_text(exc.message), self.now)
        except Exception:
            log.exception("emulator model failed")
            # PHP dies mid-stream: WordPress prints its error page into the open stream.
            return Frame(CRITICAL_ERROR_BODY.encode())
        return fit_answer(answer, self.config.answer_chars)

    # --- fault helpers ------------------------------------------------------------------

    def _fault_is(self, *kinds: str) -> bool:
        return self.fault is not None and self.fault.kind in kinds

    def _fault_message(self, default: str = "An error occurred.") -> str:
        return (self.fault.message if self.fault is not None else None) or default

    def _where(self) -> str:
        """Where an ``error_event``/``named_event`` goes: ``before`` or ``inside`` the answer."""
        fault = self.fault
        if fault is None:
            return "before"
        if fault.where is not None:
            return fault.where
        if fault.kind == "error_event" and fault.after_tokens is None:
            return "before"
        return "inside"

    def _after_tokens(self) -> int:
        return (self.fault.after_tokens if self.fault is not None else None) or 0

    def _done_after_error(self) -> bool:
        if self.fault is not None and self.fault.done is not None:
            return self.fault.done
        return self._where() == "before"

    def _named_event(self) -> Frame:
        name = self.fault.event if self.fault is not None else None
        data = self.fault.data if self.fault is not None else None
        return Frame(event_frame(name or "message", data or "{}"))

    def _done(self) -> Frame:
        if self.fault is not None and self.fault.kind == "done_data":
            return Frame(event_frame("done", self.fault.data or DEFAULT_CITATIONS_DONE))
        return done_frame()

    def _malformed(self, deltas: list[Frame], tail: list[Frame]) -> Reply:
        assert self.fault is not None
        variant = self.fault.variant
        after = self.fault.after_tokens if self.fault.after_tokens is not None else 1
        if variant == "no_done":
            return _sse([*self.frames, *deltas, *tail[:-1]])
        if variant == "truncated_end":
            done = tail[-1].data
            return _sse([*self.frames, *deltas, *tail[:-1], Frame(done[: len(done) // 2])])
        if variant == "invalid_json":
            extra = Frame(b'data: {"delta":"unfinished\n\n')
        elif variant == "invalid_utf8":
            marked = data_frame({"delta": "\ue000"})
            extra = Frame(marked.replace("\ue000".encode(), b"\xff\xfe"))
        else:  # limited: the plugin has no such frame
            return _sse([*self.frames, *deltas, *tail])
        return _sse([*self.frames, *deltas[:after], extra, *deltas[after:], *tail])


def _sse(frames: list[Frame]) -> Reply:
    return Reply(status=200, headers=SSE_HEADERS, frames=tuple(frames), streamed=True)
