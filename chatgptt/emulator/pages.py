"""The HTML the emulated site serves: landing pages in several shapes, and error pages.

The ``capture`` landing page is the captured WordPress page (``templates/``) with this
server's URLs, nonces and post id put in; the other styles change only how the chat tokens
are written, so clients can be tested against the shapes real sites use (PROTOCOL.md §1).
"""

from __future__ import annotations

import functools
import re
from importlib import resources
from string import Template
from urllib.parse import quote

import attrs

from chatgptt.emulator.config import PageStyle
from chatgptt.emulator.wordpress import php_json_encode

__all__ = [
    "CRITICAL_ERROR_BODY",
    "DECOY_NONCE",
    "DECOY_POST_ID",
    "NONCE_EXPIRED_BODY",
    "PageContext",
    "challenge_page",
    "landing_links",
    "not_found_page",
    "origin_error_page",
    "render_landing",
    "status_page",
]

#: WordPress's answer when the PHP handler dies (e.g. history items it cannot read).
CRITICAL_ERROR_BODY = (
    "<p>There has been a critical error on this website.</p>"
    '<p><a href="https://wordpress.org/support/article/faq-troubleshooting/">'
    "Learn more about troubleshooting WordPress.</a></p>"
)
#: The start of WordPress's answer to a bad nonce (``wp_nonce_ays``).
NONCE_EXPIRED_BODY = "The link you followed has expired."
#: The fake tokens the ``decoy`` page shows before the real container.
DECOY_NONCE = "deadbeef00"
DECOY_POST_ID = "999"

_SITE_NAME = "Realsite Test"
_ATTRIBUTE = re.compile(r'([\w-]+)(\s*=\s*)"([^"]*)"')
_NEEDS_QUOTES = re.compile(r"""[\s"'=<>`]|^$""")
_CLOUDFLARE_ORIGIN_ERRORS = {
    520: "Web server is returning an unknown error",
    521: "Web server is down",
    522: "Connection timed out",
    523: "Origin is unreachable",
    524: "A timeout occurred",
    525: "SSL handshake failed",
    526: "Invalid SSL certificate",
    527: "Railgun Listener to origin error",
}


@attrs.frozen(kw_only=True)
class PageContext:
    """What a landing page needs to know about the server and the request."""

    base_url: str
    ajax_url: str
    nonce: str
    image_nonce: str
    post_id: str
    bot_id: str
    front_page: bool
    #: ``data-openai_stream_nav``: ``1`` when the site streams, ``0`` when it answers in JSON.
    stream_nav: str = "1"


@functools.cache
def _template(name: str) -> Template:
    text = (resources.files("chatgptt.emulator") / "templates" / name).read_text("utf-8")
    return Template(text)


def render_landing(style: PageStyle, page: PageContext) -> str:
    """The landing page in ``style`` for this server and request.

    AIPKit pages are :func:`chatgptt.emulator.aipkit.render_aipkit_landing`'s.
    """
    params_script = _template("params_script.html").substitute(
        ajax_url_json=php_json_encode(page.ajax_url), nonce=page.nonce
    )
    if style == "no_chat":
        entry_content = _ordinary_content()
        params_script = ""
    elif style == "widget":
        entry_content = _widget_content(page)
    else:
        entry_content = _template("shortcode.html").substitute(
            container_tag=_container_tag(style, page), image_nonce=page.image_nonce
        )
    return _template("landing.html").substitute(
        base_url=page.base_url,
        post_id=page.post_id,
        entry_content=entry_content,
        params_script=params_script,
        **_page_or_front_page(page),
    )


def _page_or_front_page(page: PageContext) -> dict[str, str]:
    """The bits where the captured front page (``/``) and page (``/?page_id=N``) differ."""
    home = page.base_url + "/"
    site_link = f'<a href="{home}">{_SITE_NAME}</a>'
    if page.front_page:
        return {
            "title": _SITE_NAME,
            "canonical_url": home,
            "shortlink_url": home,
            "oembed_target": quote(home, safe=""),
            "body_class": "home ",
            "site_title": f'<h1 class="site-title">{_SITE_NAME}</h1>',
            "entry_header": "",
            "footer_site_name": _SITE_NAME,
        }
    canonical = f"{home}?page_id={page.post_id}"
    return {
        "title": f"Chat &#8211; {_SITE_NAME}",
        "canonical_url": canonical,
        "shortlink_url": f"{home}?p={page.post_id}",
        "oembed_target": quote(canonical, safe=""),
        "body_class": "",
        "site_title": f'<p class="site-title">{site_link}</p>',
        "entry_header": (
            '\t\t\t<header class="entry-header alignwide">\n'
            '\t\t\t<h1 class="entry-title">Chat</h1>\t\t\t\t\t</header><!-- .entry-header -->\n'
        ),
        "footer_site_name": site_link + "\n",
    }


def landing_links(base_url: str, post_id: str, front_page: bool) -> tuple[str, ...]:
    """The ``Link`` headers WordPress sends with the landing page."""
    shortlink = f"{base_url}/" if front_page else f"{base_url}/?p={post_id}"
    return (
        f'<{base_url}/index.php?rest_route=/>; rel="https://api.w.org/"',
        f'<{base_url}/index.php?rest_route=/wp/v2/pages/{post_id}>; rel="alternate"; '
        'type="application/json"',
        f"<{shortlink}>; rel=shortlink",
    )


def _container_tag(style: PageStyle, page: PageContext) -> str:
    """The chat container's opening tag, written the way ``style`` says."""
    captured = _template("container_tag.html").substitute(
        nonce=page.nonce,
        post_id=page.post_id,
        bot_id=page.bot_id,
        base_url=page.base_url,
        stream_nav=page.stream_nav,
    )
    attributes = [(name, value) for name, _, value in _ATTRIBUTE.findall(captured)]
    if style == "single_quotes":
        return _ATTRIBUTE.sub(r"\1\2'\3'", captured)
    if style == "unquoted":
        # A minifier's output: one line, quotes only where the value needs them.
        written = [
            f'{name}="{value}"' if _NEEDS_QUOTES.search(value) else f"{name}={value}"
            for name, value in attributes
        ]
        return "<div " + " ".join(written) + ">"
    if style == "reordered":
        first = [a for a in attributes if a[0] == "data-post-id"]
        first += [a for a in attributes if a[0] == "data-nonce"]
        last = [a for a in attributes if a[0] == "class"]
        middle = [a for a in attributes if a not in first and a not in last]
        return _multiline_tag(first + middle + last)
    if style == "params_only":
        kept = [a for a in attributes if a[0] not in ("data-nonce", "data-post-id")]
        return _multiline_tag(kept)
    if style == "decoy":
        decoy = (
            f'<div class="wpaicg-chat-shortcode" data-nonce="{DECOY_NONCE}" '
            f'data-post-id="{DECOY_POST_ID}">'
        )
        return (
            f"<!-- previous chat, kept for reference: {decoy} -->\n"
            f"<script>var wpaicgTemplate = '{decoy}</div>';</script>\n" + captured
        )
    return captured


def _multiline_tag(attributes: list[tuple[str, str]]) -> str:
    """A ``div`` tag laid out like the plugin's: the first attribute inline, then one a line."""
    (name, value), *rest = attributes
    lines = [f'<div {name}="{value}"', *(f'     {n}="{v}"' for n, v in rest), ">"]
    return "\n".join(lines)


def _widget_content(page: PageContext) -> str:
    """The page's content with the plugin's floating chat widget instead of the shortcode."""
    return (
        "<p>Ask our assistant with the chat box in the corner.</p>\n"
        '<div class="wpaicg_chat_widget wpaicg_widget_open">\n'
        '<div class="wpaicg_chat_widget_content">\n'
        '<div class="wpaicg-chatbox"\n'
        f'     data-nonce="{page.nonce}"\n'
        f'     data-post-id="{page.post_id}"\n'
        f'     data-url="{page.base_url}"\n'
        f'     data-bot-id="{page.bot_id}"\n'
        '     data-width="350"\n'
        '     data-height="400"\n'
        f'     data-openai_stream_nav="{page.stream_nav}"\n'
        '     data-type="widget"\n'
        ">\n"
        '    <div class="wpaicg-chatbox-content">\n'
        '        <ul class="wpaicg-chatbox-messages"></ul>\n'
        "    </div>\n"
        '    <div class="wpaicg-chatbox-type">\n'
        '        <textarea class="wpaicg-chatbox-typing" placeholder="Type a message"></textarea>\n'
        '        <span class="wpaicg-chatbox-send">Send</span>\n'
        "    </div>\n"
        "</div>\n"
        "</div>\n"
        "</div>\n"
    )


def _ordinary_content() -> str:
    return (
        "\t\t<p>Welcome to our site. We write about gardening, cooking and the weather.</p>\n"
        "<p>There is no chat on this page.</p>\n"
    )


def not_found_page(base_url: str) -> str:
    """WordPress's 404 page, shortened."""
    return (
        '<!doctype html>\n<html lang="en-US">\n<head>\n\t<meta charset="UTF-8" />\n'
        f"\t<title>Page not found &#8211; {_SITE_NAME}</title>\n</head>\n"
        '<body class="error404 hfeed">\n'
        '<h1 class="page-title">Nothing here</h1>\n'
        "<p>It looks like nothing was found at this location.</p>\n"
        f'<p><a href="{base_url}/">{_SITE_NAME}</a></p>\n'
        "</body>\n</html>\n"
    )


def status_page(status: int, reason: str) -> str:
    """A plain error page such as a web server or proxy sends."""
    return (
        f"<!DOCTYPE html>\n<html>\n<head><title>{status} {reason}</title></head>\n"
        f"<body>\n<center><h1>{status} {reason}</h1></center>\n"
        "<hr><center>nginx</center>\n</body>\n</html>\n"
    )


def origin_error_page(status: int, host: str, ray_id: str) -> str:
    """Cloudflare's page for an origin error (520-527): the site behind it failed.

    Like the real one it shows the browser/Cloudflare/host status boxes, so it contains
    ``id="cf-cloudflare-status"`` although it is not a challenge.
    """
    title = _CLOUDFLARE_ORIGIN_ERRORS.get(status, "Origin error")
    return (
        '<!DOCTYPE html>\n<html lang="en-US">\n<head>\n'
        f"<title>{host} | {status}: {title}</title>\n"
        '<meta charset="UTF-8" />\n<meta name="robots" content="noindex, nofollow" />\n'
        "</head>\n<body>\n"
        '<div id="cf-wrapper">\n<div id="cf-error-details" class="p-0">\n'
        '<header class="mx-auto pt-10 lg:pt-6 lg:px-8 w-240 lg:w-full mb-8">\n'
        '<h1 class="inline-block sm:block sm:mb-2 font-light text-60 lg:text-4xl">\n'
        f'<span class="inline-block">{title}</span>\n'
        f'<span class="code-label">Error code {status}</span>\n</h1>\n</header>\n'
        '<div class="my-8 bg-gradient-gray">\n<div class="w-240 lg:w-full mx-auto">\n'
        '<div class="clearfix md:px-8">\n'
        '<div id="cf-browser-status" class="relative w-1/3 md:w-full py-15 md:p-0 '
        "md:py-8 md:text-left md:border-solid md:border-0 md:border-b md:border-gray-400 "
        'overflow-hidden float-left md:float-none text-center">'
        '<span class="md:block w-full truncate">Browser</span> '
        '<span class="cf-status-label text-green-success">Working</span></div>\n'
        '<div id="cf-cloudflare-status" class="relative w-1/3 md:w-full py-15 md:p-0 '
        'md:py-8 md:text-left overflow-hidden float-left md:float-none text-center">'
        '<span class="md:block w-full truncate">Cloudflare</span> '
        '<span class="cf-status-label text-green-success">Working</span></div>\n'
        '<div id="cf-host-status" class="cf-error-source relative w-1/3 md:w-full py-15 '
        'md:p-0 md:py-8 md:text-left overflow-hidden float-left md:float-none text-center">'
        f'<span class="md:block w-full truncate">{host}</span> '
        '<span class="cf-status-label text-red-error">Error</span></div>\n'
        "</div>\n</div>\n</div>\n"
        '<div class="cf-error-footer cf-wrapper w-240 lg:w-full py-10 sm:py-4 sm:px-8 '
        'mx-auto text-center sm:text-left border-solid border-0 border-t border-gray-300">\n'
        f'<p>Cloudflare Ray ID: <strong class="font-semibold">{ray_id}</strong></p>\n'
        "</div>\n</div>\n</div>\n</body>\n</html>\n"
    )


def challenge_page(ray_id: str) -> str:
    """A Cloudflare "managed challenge" page (PROTOCOL.md §6), as a browser would get it."""
    return (
        '<!DOCTYPE html><html lang="en-US"><head><title>Just a moment...</title>'
        '<meta http-equiv="Content-Type" content="text/html; charset=UTF-8">'
        '<meta http-equiv="X-UA-Compatible" content="IE=Edge">'
        '<meta name="robots" content="noindex,nofollow">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        "<style>*{box-sizing:border-box;margin:0;padding:0}</style></head>"
        '<body class="no-js"><div class="main-wrapper" role="main">'
        '<div class="main-content"><h1 class="zone-name-title h1">Checking your browser</h1>'
        '<noscript><div id="challenge-error-title"><div class="h2">'
        '<span class="icon-wrapper"><div class="heading-icon warning-icon"></div></span>'
        '<span id="challenge-error-text">Enable JavaScript and cookies to continue</span>'
        "</div></div></noscript>"
        '<div id="cf-please-wait"><p id="cf-spinner-please-wait">'
        "Please stand by, while we are checking your browser...</p></div>"
        "</div></div>"
        f"<script>(function(){{window._cf_chl_opt={{cvId: '3',cType: 'managed',"
        f"cRay: '{ray_id}'}};}}());</script>"
        "</body></html>"
    )
