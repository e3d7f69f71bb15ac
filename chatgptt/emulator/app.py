"""The emulated site as an ``aiohttp.web`` application: landing pages and admin-ajax.

The handlers count and log each request, take its scripted fault, act on the HTTP-level
faults (status and challenge pages, stalls, drops, an expired nonce) and leave the answer
itself to :mod:`chatgptt.emulator.answers`.
"""

from __future__ import annotations

import asyncio
import secrets
from http import HTTPStatus
from urllib.parse import quote, urlsplit

from aiohttp import web

from chatgptt.emulator.aipkit.answers import AipkitRequest, answer_aipkit, request_kind
from chatgptt.emulator.aipkit.pages import AipkitPageContext, render_aipkit_landing
from chatgptt.emulator.answers import AjaxRequest, answer_ajax
from chatgptt.emulator.config import EmulatorConfig
from chatgptt.emulator.faults import Fault
from chatgptt.emulator.firewalls import PageValues, firewall_reply
from chatgptt.emulator.nonces import AIPKIT_NONCE_ACTION, IMAGE_NONCE_ACTION
from chatgptt.emulator.pages import (
    PageContext,
    challenge_page,
    landing_links,
    not_found_page,
    origin_error_page,
    render_landing,
    status_page,
)
from chatgptt.emulator.replies import (
    Delivery,
    Frame,
    Pause,
    Reply,
    html_page,
    send_reply,
    sse_reply,
)
from chatgptt.emulator.state import EmulatorState, RequestRecord

__all__ = ["STATE_KEY", "STOPPING_KEY", "make_app"]

STATE_KEY = web.AppKey("chatgptt_emulator_state", EmulatorState)
#: Set when the server begins to stop: stalls and pacing end at once.
STOPPING_KEY = web.AppKey("chatgptt_emulator_stopping", asyncio.Event)


def make_app(state: EmulatorState) -> web.Application:
    """The site's application, answering from (and recording into) ``state``."""
    app = web.Application()
    app[STATE_KEY] = state
    app[STOPPING_KEY] = asyncio.Event()
    app.on_shutdown.append(_announce_stopping)
    # One route: the AJAX path comes from the config in force at each request.
    app.router.add_route("*", "/{path:.*}", _dispatch)
    return app


async def _announce_stopping(app: web.Application) -> None:
    app[STOPPING_KEY].set()


async def _dispatch(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    config = state.config
    if request.path == config.ajax_path:
        return await _handle_ajax(request, state, config)
    front_page = _landing_kind(request, config)
    if front_page is not None:
        return await _handle_landing(request, state, config, front_page=front_page)
    if state.requests.maxlen:
        state.requests.append(_record(request, form={}))
    reply = html_page(404, not_found_page(_base_url(request)))
    return await send_reply(request, reply, Delivery(framing=config.framing), _pause_for(request))


def _landing_kind(request: web.Request, config: EmulatorConfig) -> bool | None:
    """``True`` for the front page, ``False`` for the chat page, ``None`` for neither."""
    if request.path in ("/chat", "/chat/"):
        return False
    if request.path != "/":
        return None
    page_id = request.query.get("page_id")
    if page_id is None:
        return True
    return False if page_id == config.post_id else None


def _base_url(request: web.BaseRequest) -> str:
    return f"{request.scheme}://{request.host}"


def _pause_for(request: web.Request) -> Pause:
    """A sleep that ends early, returning ``False``, when the server begins to stop."""
    stopping = request.app[STOPPING_KEY]

    async def pause(seconds: float) -> bool:
        if stopping.is_set():
            return False
        if seconds <= 0:
            return True
        try:
            await asyncio.wait_for(stopping.wait(), timeout=seconds)
        except TimeoutError:
            return True
        return False

    return pause


async def _handle_landing(
    request: web.Request, state: EmulatorState, config: EmulatorConfig, *, front_page: bool
) -> web.StreamResponse:
    state.page_fetches += 1
    if state.requests.maxlen:
        state.requests.append(_record(request, form={}))
    fault = state.faults.take("page")
    pause = _pause_for(request)
    stall = _stall_before(fault)
    if stall is not None and not await pause(stall):
        return _refuse(request)
    reply = _fault_page(request, fault)
    if reply is None:
        reply = _landing_page(request, state, config, front_page=front_page)
    return await send_reply(request, reply, _delivery(fault, config), pause)


def _landing_page(
    request: web.Request, state: EmulatorState, config: EmulatorConfig, *, front_page: bool
) -> Reply:
    base_url = _base_url(request)
    if config.dialect == "aipkit":
        # The captured AIPKit page is the site's front page: one page at every landing path.
        aipkit_page = AipkitPageContext(
            base_url=base_url,
            ajax_url=base_url + config.ajax_path,
            nonce=state.nonces.create(AIPKIT_NONCE_ACTION),
            bot_id=config.aipkit_bot_id,
            post_id=config.post_id,
            page=config.aipkit_page,
            stream_enabled=config.aipkit_stream_enabled,
        )
        text = render_aipkit_landing(aipkit_page)
        front_page = True
    else:
        page = PageContext(
            base_url=base_url,
            ajax_url=base_url + config.ajax_path,
            nonce=state.nonces.current,
            image_nonce=state.nonces.create(IMAGE_NONCE_ACTION),
            post_id=config.post_id,
            bot_id=config.bot_id,
            front_page=front_page,
            stream_nav="0" if config.mode == "json" else "1",
        )
        text = render_landing(config.page_style, page)
    links = landing_links(base_url, config.post_id, front_page)
    return html_page(200, text, headers=[("Link", link) for link in links])


async def _handle_ajax(
    request: web.Request, state: EmulatorState, config: EmulatorConfig
) -> web.StreamResponse:
    state.ajax_requests += 1
    query = dict(request.query.items())
    form = await _read_form(request)
    if state.requests.maxlen:
        state.requests.append(_record(request, form=form))
    fault = state.faults.take(request_kind(config, {**query, **form}))
    pause = _pause_for(request)
    stall = _stall_before(fault)
    if stall is not None and not await pause(stall):
        return _refuse(request)
    reply = _fault_page(request, fault)
    if reply is None:
        if fault is not None and fault.kind == "expire_nonce":
            state.rotate_nonce()
        if config.dialect == "aipkit":
            aipkit = AipkitRequest(
                query=query,
                form=form,
                origin=request.headers.get("Origin"),
                site_netloc=request.host,
                site_scheme=request.scheme,
            )
            reply = answer_aipkit(state, aipkit, fault)
        else:

            def referer() -> str | None:
                found = _same_site_referer(request)
                return None if found is None else _esc_url(found)

            ajax = AjaxRequest(query=query, form=form, referer=referer)
            reply = answer_ajax(state, ajax, fault)
    return await send_reply(request, reply, _delivery(fault, config), pause)


async def _read_form(request: web.Request) -> dict[str, str]:
    """The POSTed fields (urlencoded or multipart); a repeated field keeps its last value."""
    if request.method != "POST" or not request.body_exists:
        return {}
    try:
        data = await request.post()
    except ValueError:
        return {}
    return {key: value for key, value in data.items() if isinstance(value, str)}


def _record(request: web.Request, *, form: dict[str, str]) -> RequestRecord:
    return RequestRecord(
        method=request.method,
        path=request.path,
        query=dict(request.query.items()),
        headers=tuple(request.headers.items()),
        form=dict(form),
    )


def _stall_before(fault: Fault | None) -> float | None:
    """Seconds to wait before handling the request, when the fault is such a stall."""
    if fault is not None and fault.kind == "stall" and fault.where != "inside":
        return fault.seconds or 0.0
    return None


def _refuse(request: web.Request) -> web.StreamResponse:
    """The server is stopping during a stall: close the connection with no answer."""
    if request.transport is not None:
        request.transport.close()
    response = web.Response(status=503)
    response.force_close()
    return response


#: How often a ``linger`` fault sends its keep-alive comment when no ``seconds`` are given.
LINGER_SECONDS = 0.2


def _delivery(fault: Fault | None, config: EmulatorConfig) -> Delivery:
    framing = config.framing
    if fault is None:
        return Delivery(token_delay=config.token_delay, framing=framing)
    if fault.kind in ("drop", "cut"):
        by_tokens = fault.after_tokens is not None
        return Delivery(
            token_delay=config.token_delay,
            cut_after_bytes=None if by_tokens else (fault.after_bytes or 0),
            cut_after_tokens=fault.after_tokens,
            framing="close" if fault.kind == "cut" else framing,
        )
    if fault.kind == "stall" and fault.where == "inside":
        return Delivery(
            token_delay=config.token_delay,
            stall_seconds=fault.seconds,
            stall_after_tokens=fault.after_tokens or 0,
            framing=framing,
        )
    if fault.kind == "linger" and config.mode == "sse":
        return Delivery(
            token_delay=config.token_delay,
            framing=framing,
            linger_seconds=fault.seconds or LINGER_SECONDS,
        )
    return Delivery(token_delay=config.token_delay, framing=framing)


#: What PHP prints for the plugin's first curl call on a PHP without curl (display_errors on).
PHP_FATAL_ERROR_PAGE = (
    "<br />\n<b>Fatal error</b>:  Uncaught Error: Call to undefined function curl_init() in "
    "/var/www/html/wp-content/plugins/gpt3-ai-content-generator/classes/wpaicg_chat.php:812\n"
    "Stack trace:\n#0 /var/www/html/wp-includes/class-wp-hook.php(324): "
    "WPAICG\\WPAICG_Chat->wpaicg_chatbox_message('')\n#1 {main}\n  thrown in "
    "<b>/var/www/html/wp-content/plugins/gpt3-ai-content-generator/classes/wpaicg_chat.php</b>"
    " on line <b>812</b><br />\n"
)


def _fault_page(request: web.Request, fault: Fault | None) -> Reply | None:
    """The reply of a fault that answers in place of the site (a proxy, CDN or firewall
    page, or a PHP that fails before the answer)."""
    if fault is None:
        return None
    if fault.kind == "firewall" and fault.firewall is not None:
        values = PageValues.fresh(
            host=request.host,
            path=request.path_qs,
            base_url=_base_url(request),
            user_agent=request.headers.get("User-Agent", ""),
        )
        return firewall_reply(fault.firewall, values, fault.status)
    if fault.kind == "empty_stream":
        content = fault.content or "nothing"
        body = {
            "nothing": "",
            "php_fatal": PHP_FATAL_ERROR_PAGE,
            "challenge": challenge_page(secrets.token_hex(8) + "-AMS"),
        }[content]
        return sse_reply([Frame(body.encode())] if body else [])
    if fault.kind not in ("status", "challenge"):
        return None
    ray_id = secrets.token_hex(8) + "-AMS"
    if fault.kind == "challenge":
        return html_page(
            fault.status or 403,
            challenge_page(ray_id),
            headers=[
                ("cf-mitigated", "challenge"),
                ("Server", "cloudflare"),
                ("CF-RAY", ray_id),
                ("Cache-Control", "private, max-age=0, no-store, no-cache, must-revalidate"),
                ("X-Frame-Options", "SAMEORIGIN"),
            ],
        )
    status = fault.status or 500
    headers: list[tuple[str, str]] = []
    if fault.retry_after is not None:
        headers.append(("Retry-After", fault.retry_after))
    if 520 <= status <= 527:
        body = origin_error_page(status, request.host.split(":")[0], ray_id)
        headers += [("Server", "cloudflare"), ("CF-RAY", ray_id)]
        reason = None
    else:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Error"
        body = status_page(status, reason)
    return html_page(
        status, fault.body if fault.body is not None else body, headers=headers, reason=reason
    )


def _same_site_referer(request: web.Request) -> str | None:
    """The ``Referer`` as WordPress's ``wp_get_referer`` gives it: same host, not this URL."""
    referer = request.headers.get("Referer")
    if not referer or referer in (request.path_qs, _base_url(request) + request.path_qs):
        return None
    try:
        host = urlsplit(referer).hostname
    except ValueError:
        return None
    return referer if host is not None and host == request.url.host else None


def _esc_url(url: str) -> str:
    """Enough of WordPress's ``esc_url`` for a link: unsafe characters out, ``&`` escaped."""
    cleaned = quote(url, safe="/:?#[]@!$&'()*+,;=%~-._")
    return cleaned.replace("&", "&#038;").replace("'", "&#039;")
