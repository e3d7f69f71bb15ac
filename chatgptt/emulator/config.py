"""Settings of the site emulator: how it answers and what its pages look like."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Literal, get_args

import attrs
from attrs import validators as v

from chatgptt.emulator.model import Model, echo_model

__all__ = [
    "AIPKIT_API_MODES",
    "AIPKIT_PAGES",
    "DEFAULT_AIPKIT_INSTRUCTIONS",
    "DEFAULT_AJAX_PATH",
    "DEFAULT_GREETING",
    "DIALECTS",
    "FRAME_STYLES",
    "FRAMINGS",
    "MODES",
    "NONCE_STYLES",
    "PAGE_STYLES",
    "AipkitApiMode",
    "AipkitPage",
    "Dialect",
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
#: Which protocol the site speaks: ``classic`` (``wpaicg_*``, plugin up to 2.2) or ``aipkit``
#: (``aipkit_*``, plugin 2.3+ as captured from 2.4.71); see :mod:`chatgptt.emulator.aipkit`.
Dialect = Literal["classic", "aipkit"]
#: Where an AIPKit page puts ``data-config``: on ``.aipkit_chat_container`` or on the popup's
#: ``.aipkit_popup_wrapper``.
AipkitPage = Literal["inline", "popup"]
#: The OpenAI API behind an AIPKit bot; ``responses`` adds ``status``/``openai_response_id``.
AipkitApiMode = Literal["chat_completions", "responses"]
DIALECTS: tuple[Dialect, ...] = get_args(Dialect)
AIPKIT_PAGES: tuple[AipkitPage, ...] = get_args(AipkitPage)
AIPKIT_API_MODES: tuple[AipkitApiMode, ...] = get_args(AipkitApiMode)
FRAMINGS: tuple[Framing, ...] = get_args(Framing)
FRAME_STYLES: tuple[FrameStyleName, ...] = get_args(FrameStyleName)

#: The site's system prompt on the captured install; it comes back as ``greeting_message``.
DEFAULT_GREETING = (
    "Converse as if you were an AI assistant. Answer the question as truthfully as possible "
    'using the provided context. Tone: Friendly.\n, Current context: "Chat"'
)
DEFAULT_AJAX_PATH = "/wp-admin/admin-ajax.php"
#: An AIPKit bot's default instructions; ``[date]`` becomes e.g. "November 26, 2026".
DEFAULT_AIPKIT_INSTRUCTIONS = (
    "You are a helpful AI Assistant. Please be friendly. Today's date is [date]."
)
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
        page_style: how the classic landing page carries the tokens (client tests of
            extraction); AIPKit pages follow ``aipkit_page``.
        nonce_style: how a bad nonce is rejected.
        nonce_secret: seeds the nonces; ``None`` picks a random secret per server.
        request_log_limit: how many requests the server's ``requests`` log keeps.
        dialect: ``classic`` or ``aipkit``: the protocol, pages and AJAX actions of the site.
        aipkit_page: ``inline`` or ``popup`` landing page (AIPKit).
        aipkit_api_mode: ``chat_completions`` or ``responses`` (AIPKit stream extras).
        aipkit_bot_id: the AIPKit bot's id (a published bot; there is no bot 0).
        aipkit_instructions: the AIPKit bot's system prompt (``[date]``, ``[username]``
            filled in); the first (system) message the model sees.
        aipkit_history_limit: how many stored messages of a conversation reach the model
            (the bot's ``max_messages``).
        aipkit_cache_ttl: seconds a step-1 cache key lives.
        aipkit_stream_enabled: ``None`` serves the 2.4.71 page; ``True``/``False`` adds the
            2.3-era ``streamEnabled`` key to ``data-config`` (the AJAX side stays 2.4.71's).
        clock: the wall clock (Unix seconds) for key expiry, ``err-<unix>`` ids, message ids
            and ``[date]``; tests pass a :class:`~chatgptt.emulator.aipkit.ManualClock`.
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
    dialect: Dialect = attrs.field(default="classic", validator=v.in_(DIALECTS))
    aipkit_page: AipkitPage = attrs.field(default="inline", validator=v.in_(AIPKIT_PAGES))
    aipkit_api_mode: AipkitApiMode = attrs.field(
        default="chat_completions", validator=v.in_(AIPKIT_API_MODES)
    )
    aipkit_bot_id: str = attrs.field(default="5", validator=v.matches_re(r"[1-9][0-9]*"))
    aipkit_instructions: str = attrs.field(
        default=DEFAULT_AIPKIT_INSTRUCTIONS, validator=v.instance_of(str)
    )
    aipkit_history_limit: int = attrs.field(default=15, validator=[v.instance_of(int), v.ge(0)])
    aipkit_cache_ttl: float = attrs.field(
        default=60.0, validator=[v.instance_of((int, float)), v.gt(0)]
    )
    aipkit_stream_enabled: bool | None = attrs.field(
        default=None, validator=v.optional(v.instance_of(bool))
    )
    clock: Callable[[], float] = attrs.field(default=time.time, validator=v.is_callable())
    framing: Framing = attrs.field(default="length", validator=v.in_(FRAMINGS))
    frames: FrameStyleName = attrs.field(default="varied", validator=v.in_(FRAME_STYLES))
