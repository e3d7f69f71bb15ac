"""What one emulated site knows and what tests can look at: config, nonces, faults, logs."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping

import attrs

from chatgptt.emulator.aipkit.store import ConversationStore, SseCache
from chatgptt.emulator.config import EmulatorConfig
from chatgptt.emulator.faults import Fault, FaultPlan
from chatgptt.emulator.nonces import NonceBook

__all__ = ["EmulatorState", "RequestRecord"]


@attrs.frozen(kw_only=True)
class RequestRecord:
    """One request as the site received it (for tests that check what a client sent)."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: tuple[tuple[str, str], ...]
    form: Mapping[str, str]

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (any case), or ``None``."""
        lowered = name.lower()
        return next((value for key, value in self.headers if key.lower() == lowered), None)


class EmulatorState:
    """The shared state of one emulated site.

    The server's loop updates it; tests read it (and rotate nonces, add faults, swap the
    config) from any thread. Attributes:

    - ``config``: the :class:`EmulatorConfig` in force; assign a new one between requests.
    - ``nonces``: the :class:`NonceBook`; ``nonce`` is the current chat nonce.
    - ``faults``: the :class:`FaultPlan`.
    - ``page_fetches`` / ``ajax_requests``: requests seen on the landing pages / AJAX path.
    - ``received``: the last ``config.request_log_limit`` message lists that reached the
      model, in order (each a list of ``{"role", "content"}`` dicts, like the captures'
      ``upstream-received.json``).
    - ``requests``: the last ``config.request_log_limit`` requests, as :class:`RequestRecord`.

    And for an AIPKit site (``config.dialect == "aipkit"``):

    - ``conversations``: the chat log, ``conversations[(session_id, conversation_uuid)]`` a
      list of ``{"role": "user" | "assistant", "content"}`` (the ids as the plugin
      sanitises them: the conversation id lower-cased).
    - ``sse_cache``: the step-1 cache keys not yet used (``key in sse_cache``, ``len``).
    - ``nonce_fetches`` / ``cache_posts`` / ``stream_gets``: the AIPKit AJAX requests seen
      (``aipkit_get_frontend_chat_nonce``, step 1, step 2), whatever their outcome.
    """

    def __init__(self, config: EmulatorConfig | None = None, faults: Iterable[Fault] = ()) -> None:
        self.config = config if config is not None else EmulatorConfig()
        self.nonces = NonceBook(self.config.nonce_secret)
        self.faults = faults if isinstance(faults, FaultPlan) else FaultPlan(faults)
        self.page_fetches = 0
        self.ajax_requests = 0
        # Bounded like the request log: a long-running emulator must not grow forever.
        self.received: deque[list[dict[str, str]]] = deque(maxlen=self.config.request_log_limit)
        self.requests: deque[RequestRecord] = deque(maxlen=self.config.request_log_limit)
        self.conversations = ConversationStore()
        self.sse_cache = SseCache()
        self.nonce_fetches = 0
        self.cache_posts = 0
        self.stream_gets = 0

    @property
    def nonce(self) -> str:
        """The chat nonce the landing page shows now."""
        return self.nonces.current

    def rotate_nonce(self, keep_previous: bool = False) -> str:
        """Make a new nonce and return it; see :meth:`NonceBook.rotate`."""
        return self.nonces.rotate(keep_previous=keep_previous)
