"""WordPress-like nonces: 10 hex characters derived from a secret, an action and a tick.

WordPress accepts the nonce of the current and of the previous 12-hour tick; the emulator
advances its tick on demand (:meth:`NonceBook.rotate`) so tests can expire a nonce at once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading

__all__ = ["AIPKIT_NONCE_ACTION", "CHAT_NONCE_ACTION", "IMAGE_NONCE_ACTION", "NonceBook"]

#: The action the chat nonce is made for (``data-nonce``, ``search_nonce``, ``_wpnonce``).
CHAT_NONCE_ACTION = "wpaicg-chatbox"
#: The image-upload nonce on the same page: 10 hex characters too, but not a chat nonce.
IMAGE_NONCE_ACTION = "wpaicg-image-upload"
#: The AIPKit page's nonce (``data-config.nonce``).
AIPKIT_NONCE_ACTION = "aipkit_frontend_chat_nonce"


class NonceBook:
    """The server's nonces. Thread-safe: tests rotate from their own thread."""

    def __init__(self, secret: str | None = None) -> None:
        self._secret = (secret if secret is not None else secrets.token_hex(16)).encode(
            errors="surrogatepass"
        )
        self._lock = threading.Lock()
        self._tick = 1
        self._previous_accepted = True

    def create(self, action: str = CHAT_NONCE_ACTION) -> str:
        """The current nonce for ``action``."""
        with self._lock:
            tick = self._tick
        return self._for_tick(action, tick)

    @property
    def current(self) -> str:
        """The current chat nonce."""
        return self.create()

    def rotate(self, keep_previous: bool = False) -> str:
        """Start a new tick and return the new chat nonce.

        With ``keep_previous`` the nonce before it stays valid (WordPress's grace tick);
        otherwise it is rejected from now on.
        """
        with self._lock:
            self._tick += 1
            self._previous_accepted = keep_previous
            tick = self._tick
        return self._for_tick(CHAT_NONCE_ACTION, tick)

    def verify(self, nonce: str | None, action: str = CHAT_NONCE_ACTION) -> bool:
        """Whether ``nonce`` is valid for ``action`` now."""
        if not nonce:
            return False
        with self._lock:
            tick, previous_accepted = self._tick, self._previous_accepted
        ticks = (tick, tick - 1) if previous_accepted and tick > 1 else (tick,)
        given = nonce.encode(errors="surrogatepass")  # compare_digest refuses non-ASCII str
        return any(hmac.compare_digest(given, self._for_tick(action, t).encode()) for t in ticks)

    def _for_tick(self, action: str, tick: int) -> str:
        message = f"{tick}|{action}".encode(errors="surrogatepass")
        digest = hmac.new(self._secret, message, hashlib.sha256).hexdigest()
        # WordPress keeps 10 characters from the end of its hash; so do we.
        return digest[-12:-2]
