"""Settings of the site emulator: how it answers and what its pages look like."""

from __future__ import annotations

import re
from typing import Literal, get_args

import attrs
from attrs import validators as v

from chatgptt.emulator.model import Model, echo_model

__all__ = [
    "DEFAULT_AJAX_PATH",
    "DEFAULT_GREETING",
    "FRAME_STYLES",
    "FRAMINGS",
    "MODES",
    "NONCE_STYLES",
    "PAGE_STYLES",
    "EmulatorConfig",
    "FrameStyleName",
    "Framing",
    "Mode",
    "NonceStyle",
    "PageStyle",
]

#: ``sse``: the plugin streams (its default for the shortcode); ``json``: one JSON reply.
Mode = Literal["sse", "json"]
#: How the landing page carries the tokens; see :mod:`chatgptt.emulator.pages`.
PageStyle = Literal[
    "capture",
    "single_quotes",
    "unquoted",
    "reordered",
    "widget",
    "params_only",
    "decoy",
    "no_chat",
    "aipkit",
]
#: How a bad nonce is rejected: ``403`` (plugin 1.8.91+) or ``json`` (1.8.79 to 1.8.90).
NonceStyle = Literal["403", "json"]
#: How a reply's body is delimited: ``length`` (a ``Content-Length``, or chunks for streams,
#: with keep-alive) or ``close`` (as PHP's built-in server, the real site's: no length, no
#: chunking, the body ends when the connection closes, never kept alive).
Framing = Literal["length", "close"]
#: The relayed upstream frames: ``varied`` (each reply its own ``id``, ``created`` and JSON
#: spacing, as a real upstream's are) or ``capture`` (the capture rig's, byte for byte).
FrameStyleName = Literal["varied", "capture"]

MODES: tuple[Mode, ...] = get_args(Mode)
PAGE_STYLES: tuple[PageStyle, ...] = get_args(PageStyle)
NONCE_STYLES: tuple[NonceStyle, ...] = get_args(NonceStyle)
FRAMINGS: tuple[Framing, ...] = get_args(Framing)
FRAME_STYLES: tuple[FrameStyleName, ...] = get_args(FrameStyleName)

#: The site's system prompt on the captured install; it comes back as ``greeting_message``.
DEFAULT_GREETING = (
    "Converse as if you were an AI assistant. Answer the question as truthfully as possible "
    'using the provided context. Tone: Friendly.\n, Current context: "Chat"'
)
DEFAULT_AJAX_PATH = "/wp-admin/admin-ajax.php"
_RESERVED_PATHS = frozenset({"/", "/chat", "/chat/"})


def _check_ajax_path(_instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str) or not value.startswith("/") or value in _RESERVED_PATHS:
        raise ValueError(
            f"{attribute.name} must be a path starting with '/' other than the landing "
            f"pages {sorted(_RESERVED_PATHS)}, got {value!r}"
        )
    if re.search(r"[?#\s]", value):
        raise ValueError(f"{attribute.name} must be a bare path, got {value!r}")


@attrs.frozen(kw_only=True)
class EmulatorConfig:
    """How the emulated site behaves.

    A server reads its config at each request, so a new one takes effect at the next;
    ``nonce_secret`` and ``request_log_limit`` are read once, when the server is made.

    Args:
        mode: ``sse`` streams the answer like the plugin's default; ``json`` sends one reply.
        token_delay: seconds to wait before each streamed content piece.
        token_chars: characters per streamed content piece (the capture relays 8).
        answer_chars: pad or cut every answer to this many characters (benchmarks).
        greeting: the site's system prompt; it is the first (user) turn the model sees and
            comes back as ``greeting_message`` in JSON replies.
        model: turns the conversation into the answer; see :mod:`chatgptt.emulator.model`.
        model_name: the ``model`` field of streamed chunks (``gpt4o-dep`` for Azure captures).
        post_id: the chat page's post id; ``/?page_id=<post_id>`` serves the landing page.
        bot_id: the container's ``data-bot-id``.
        ajax_path: where the AJAX endpoint lives; the pages' ``ajax_url`` follows it.
        page_style: how the landing page carries the tokens (client tests of extraction).
        nonce_style: how a bad nonce is rejected.
        nonce_secret: seeds the nonces; ``None`` picks a random secret per server.
        request_log_limit: how many requests the server's ``requests`` log keeps.
        framing: ``length`` or ``close`` (every reply as PHP's built-in server sends it).
        frames: ``varied`` upstream frames or the ``capture``'s exact bytes.
    """

    mode: Mode = attrs.field(default="sse", validator=v.in_(MODES))
    token_delay: float = attrs.field(default=0.0, validator=[v.instance_of((int, float)), v.ge(0)])
    token_chars: int = attrs.field(default=8, validator=[v.instance_of(int), v.ge(1)])
    answer_chars: int | None = attrs.field(
        default=None, validator=v.optional([v.instance_of(int), v.ge(0)])
    )
    greeting: str = attrs.field(default=DEFAULT_GREETING, validator=v.instance_of(str))
    model: Model = attrs.field(default=echo_model, validator=v.is_callable())
    model_name: str = attrs.field(default="gpt-4o-mini", validator=v.instance_of(str))
    post_id: str = attrs.field(default="4", validator=v.matches_re(r"[0-9]+"))
    bot_id: str = attrs.field(default="0", validator=v.matches_re(r"[0-9]+"))
    ajax_path: str = attrs.field(default=DEFAULT_AJAX_PATH, validator=_check_ajax_path)
    page_style: PageStyle = attrs.field(default="capture", validator=v.in_(PAGE_STYLES))
    nonce_style: NonceStyle = attrs.field(default="403", validator=v.in_(NONCE_STYLES))
    nonce_secret: str | None = attrs.field(
        default=None, repr=False, validator=v.optional(v.instance_of(str))
    )
    request_log_limit: int = attrs.field(default=200, validator=[v.instance_of(int), v.ge(0)])
    framing: Framing = attrs.field(default="length", validator=v.in_(FRAMINGS))
    frames: FrameStyleName = attrs.field(default="varied", validator=v.in_(FRAME_STYLES))
