"""Firewall pages: each recognised by name, whatever the status, and nothing else mistaken
for one. The pages are the vectors of tests/vectors/firewalls (see its README)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stages.classic.tokens import extract_tokens
from stages.errors import BotProtectionError, CloudflareOriginError
from stages.http import classify_failure
from stages.protection import (
    CHALLENGE_MARKERS,
    FIREWALLS,
    challenge_marker,
    detect_protection,
    firewall_of,
)
from tests.conftest import VECTORS

FIREWALL_VECTORS = VECTORS / "firewalls"
NAMES = sorted(path.name.removesuffix(".body") for path in FIREWALL_VECTORS.glob("*.body"))
URL = "https://chat.example/wp-admin/admin-ajax.php"


def vector(name: str) -> tuple[bytes, int, dict[str, str], str]:
    meta = json.loads((FIREWALL_VECTORS / f"{name}.response.json").read_text("utf-8"))
    body = (FIREWALL_VECTORS / f"{name}.body").read_bytes()
    return body, meta["status"], meta["headers"], meta["firewall"]


def test_every_firewall_has_a_vector() -> None:
    named = {vector(name)[3] for name in NAMES}
    assert named == {firewall.name for firewall in FIREWALLS}


@pytest.mark.parametrize("name", NAMES)
def test_each_page_names_its_firewall_from_the_body_alone(name: str) -> None:
    body, _, _, firewall = vector(name)
    found = detect_protection(body)
    assert found is not None
    assert found.firewall == firewall
    assert found.marker.lower() in body.decode().lower()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("status", ["own", 200, 403, 429, 500, 503])
def test_a_firewall_page_is_bot_protection_whatever_the_status(name: str, status) -> None:
    """Wordfence blocks with 503 and Sucuri's check comes with 200: the page decides, and
    a BotProtectionError is never retried (not an HTTPStatusError)."""
    body, own, headers, firewall = vector(name)
    code = own if status == "own" else status
    error = classify_failure(code, headers, body, URL)
    assert isinstance(error, BotProtectionError)
    assert (error.firewall, error.status) == (firewall, code)
    assert firewall in str(error)
    assert "bot protection page from https://chat.example/wp-admin/admin-ajax.php" in str(error)


@pytest.mark.parametrize("name", NAMES)
def test_a_firewall_page_instead_of_the_landing_page_is_bot_protection(name: str) -> None:
    body, _, _, firewall = vector(name)
    with pytest.raises(BotProtectionError) as caught:
        extract_tokens(body.decode(), "https://chat.example/", fallback_ajax_url=URL, status=200)
    assert caught.value.firewall == firewall


@pytest.mark.parametrize(
    ("headers", "firewall"),
    [
        ({"cf-mitigated": "challenge", "Server": "cloudflare"}, "Cloudflare"),
        ({"X-Sucuri-Block": "BNP005", "Server": "Sucuri/Cloudproxy"}, "Sucuri"),
    ],
)
def test_headers_that_only_a_block_carries_are_enough(headers, firewall) -> None:
    error = classify_failure(403, headers, b"<html><body>Forbidden</body></html>", URL)
    assert isinstance(error, BotProtectionError)
    assert error.firewall == firewall


def test_headers_every_reply_carries_are_not_a_block() -> None:
    """A 502 through a CDN is the site failing behind it: retried, not bot protection."""
    for headers in (
        {"Server": "ddos-guard"},
        {"Server": "Sucuri/Cloudproxy", "X-Sucuri-ID": "14013"},
        {"Server": "cloudflare"},
        {"cf-mitigated": "none"},
    ):
        error = classify_failure(502, headers, b"<html>Bad Gateway</html>", URL)
        assert not isinstance(error, BotProtectionError), headers


@pytest.mark.parametrize(
    "name", ["landing", "landing_front_page", "json_ok_urlencoded", "stream_ok_urlencoded"]
)
def test_the_real_sites_pages_are_not_firewall_pages(name: str) -> None:
    assert detect_protection((VECTORS / "classic" / f"{name}.body").read_bytes()) is None


def test_the_aipkit_pages_are_not_firewall_pages() -> None:
    for path in sorted((VECTORS / "aipkit").glob("*.body")):
        assert detect_protection(path.read_bytes()) is None, path.name


def test_cloudflare_origin_errors_stay_origin_errors() -> None:
    """Their pages carry Cloudflare's status boxes: the status decides first."""
    body = b'<div id="cf-cloudflare-status">Cloudflare Working</div>'
    assert isinstance(classify_failure(522, {}, body, URL), CloudflareOriginError)


def test_every_marker_belongs_to_its_firewall() -> None:
    for firewall in FIREWALLS:
        for marker in firewall.markers:
            assert firewall_of(marker) == firewall.name
    assert firewall_of("something else") == "bot protection"
    assert len(set(CHALLENGE_MARKERS)) == len(CHALLENGE_MARKERS)


@given(
    st.sampled_from(CHALLENGE_MARKERS),
    st.text(max_size=200),
    st.text(max_size=200),
    st.sampled_from([str.lower, str.upper, str]),
)
def test_a_marker_anywhere_in_any_case_is_found(marker: str, before: str, after: str, case) -> None:
    found = detect_protection((before + case(marker) + after).encode())
    assert found is not None
    # An earlier firewall's marker may sit in the surrounding text; this one is at least found.
    assert challenge_marker(before + marker + after) is not None
