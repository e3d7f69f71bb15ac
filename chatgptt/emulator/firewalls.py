"""The pages WordPress firewalls answer with in place of the site (the ``firewall`` fault).

Each is written after the real one — its markers, status and headers — from the firewall's
own templates and published block pages; ``tests/vectors/firewalls/`` holds one rendering
of each, which the client's tests replay. Cloudflare's is the emulator's challenge page.
"""

from __future__ import annotations

import functools
import secrets
import time
from importlib import resources
from string import Template
from typing import Literal, get_args

import attrs

from chatgptt.emulator.pages import challenge_page
from chatgptt.emulator.replies import Reply, html_page

__all__ = [
    "FIREWALL_NAMES",
    "FIREWALL_PAGES",
    "FirewallName",
    "FirewallPage",
    "PageValues",
    "firewall_reply",
    "render_firewall",
]

FirewallName = Literal[
    "cloudflare",
    "sucuri",
    "sucuri_block",
    "wordfence",
    "wordfence_waf",
    "solid_security",
    "cloudfront",
    "imperva",
    "ddos_guard",
]
FIREWALL_NAMES: tuple[FirewallName, ...] = get_args(FirewallName)


@attrs.frozen(kw_only=True)
class FirewallPage:
    """How a firewall answers: its page, the status it usually sends, its headers.

    ``firewall`` is the name the client gives it (``BotProtectionError.firewall``).
    """

    firewall: str
    template: str | None
    status: int
    headers: tuple[tuple[str, str], ...]


FIREWALL_PAGES: dict[FirewallName, FirewallPage] = {
    "cloudflare": FirewallPage(
        firewall="Cloudflare",
        template=None,  # pages.challenge_page
        status=403,
        headers=(
            ("cf-mitigated", "challenge"),
            ("Server", "cloudflare"),
            ("Cache-Control", "private, max-age=0, no-store, no-cache, must-revalidate"),
        ),
    ),
    # Sucuri's JavaScript check: a 200 whose script sets a cookie and reloads.
    "sucuri": FirewallPage(
        firewall="Sucuri",
        template="firewall_sucuri.html",
        status=200,
        headers=(("Server", "Sucuri/Cloudproxy"), ("X-Sucuri-ID", "14013")),
    ),
    "sucuri_block": FirewallPage(
        firewall="Sucuri",
        template="firewall_sucuri_block.html",
        status=403,
        headers=(
            ("Server", "Sucuri/Cloudproxy"),
            ("X-Sucuri-ID", "14013"),
            ("X-Sucuri-Block", "BNP005"),
        ),
    ),
    # The plugin's block: PHP itself answers, so only PHP's headers come with it.
    "wordfence": FirewallPage(
        firewall="Wordfence",
        template="firewall_wordfence.html",
        status=503,
        headers=(("Cache-Control", "no-cache, no-store, must-revalidate"),),
    ),
    "wordfence_waf": FirewallPage(
        firewall="Wordfence",
        template="firewall_wordfence_waf.html",
        status=403,
        headers=(("Cache-Control", "no-cache, no-store, must-revalidate"),),
    ),
    "solid_security": FirewallPage(
        firewall="Solid Security (iThemes Security)",
        template="firewall_solid_security.html",
        status=403,
        headers=(("Cache-Control", "no-cache, must-revalidate, max-age=0"),),
    ),
    "cloudfront": FirewallPage(
        firewall="CloudFront",
        template="firewall_cloudfront.html",
        status=403,
        headers=(
            ("Server", "CloudFront"),
            ("X-Cache", "Error from cloudfront"),
            ("Via", "1.1 3f2a9c0e5b7d1c4a.cloudfront.net (CloudFront)"),
        ),
    ),
    "imperva": FirewallPage(
        firewall="Imperva (Incapsula)",
        template="firewall_imperva.html",
        status=403,
        headers=(("X-CDN", "Imperva"), ("X-Iinfo", "8-41772361-0 0NNN RT(1780000000000 14)")),
    ),
    "ddos_guard": FirewallPage(
        firewall="DDoS-Guard",
        template="firewall_ddos_guard.html",
        status=403,
        headers=(("Server", "ddos-guard"),),
    ),
}


@attrs.frozen(kw_only=True)
class PageValues:
    """What a firewall page quotes of the request; fixed values render a page exactly."""

    host: str
    path: str = "/"
    base_url: str = ""
    client_ip: str = "127.0.0.1"
    user_agent: str = ""
    time: str = "Thu, 26 Nov 2026 05:50:07 GMT"
    token: str = "0123456789abcdef"

    @classmethod
    def fresh(cls, host: str, path: str, base_url: str, user_agent: str) -> PageValues:
        """Values for a live request: its host and path, the time now, a random id."""
        return cls(
            host=host,
            path=path,
            base_url=base_url,
            user_agent=user_agent,
            time=time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime()),
            token=secrets.token_hex(8),
        )


@functools.cache
def _template(name: str) -> Template:
    text = (resources.files("chatgptt.emulator") / "templates" / name).read_text("utf-8")
    return Template(text)


def render_firewall(name: FirewallName, values: PageValues) -> str:
    """The page of firewall ``name`` for a request described by ``values``."""
    page = FIREWALL_PAGES[name]
    if page.template is None:
        return challenge_page(values.token + "-AMS")
    return _template(page.template).substitute(
        host=values.host,
        path=values.path,
        base_url=values.base_url,
        client_ip=values.client_ip,
        user_agent=values.user_agent,
        time=values.time,
        nonce=values.token,
        request_id=values.token,
        incident_id=f"{int(values.token[:8], 16)}-{int(values.token[8:], 16)}",
        challenge=values.token,
    )


def firewall_reply(name: FirewallName, values: PageValues, status: int | None = None) -> Reply:
    """The firewall's answer: its page, with its usual status unless ``status`` is given."""
    page = FIREWALL_PAGES[name]
    headers = list(page.headers)
    if name == "cloudflare":
        headers.append(("CF-RAY", values.token + "-AMS"))
    return html_page(status or page.status, render_firewall(name, values), headers=headers)
