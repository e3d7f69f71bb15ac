"""Reading the captured AIPKit exchanges of tests/vectors/aipkit (the real plugin 2.4.71)."""

from __future__ import annotations

import email.utils
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import attrs

AIPKIT = Path(__file__).parents[2] / "vectors" / "aipkit"
CAPTURE_HOST = "127.0.0.1:8080"
CAPTURE_NONCE = "ef9a0a6714"
CAPTURE_BOT_ID = "5"
CAPTURE_POST_ID = "6"
# Request headers that belong to the capture's connection, not to the exchange.
_CONNECTION_HEADERS = frozenset({"host", "content-length", "accept-encoding"})
#: Response headers of the capture's PHP server or of aiohttp, not of WordPress or the plugin.
SERVER_HEADERS = frozenset(
    {"host", "date", "connection", "x-powered-by", "server", "content-length", "transfer-encoding"}
)
CACHE_KEY = re.compile(rb"aipkit_sse_[A-Za-z0-9]{32}")
#: A message id's random part (microseconds and PHP's lcg digits); its seconds are the clock's.
MESSAGE_ID_RANDOM = re.compile(rb"(aipkit-msg-[0-9a-f]{8})[0-9a-f]{5}[0-9]\.[0-9]{8}")


@attrs.frozen
class AipkitCapture:
    """One captured exchange with the real 2.4.71 site."""

    name: str
    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    status: int
    response_headers: dict[str, str]
    response_body: bytes
    upstream: list[list[dict[str, str]]]

    @property
    def date(self) -> float:
        """When the site answered (its ``Date`` header), as Unix time."""
        parsed = email.utils.parsedate_to_datetime(self.response_headers["Date"])
        return parsed.timestamp()

    @property
    def cache_key(self) -> str | None:
        """The step-1 key this exchange used (a stream) or got (a cache POST), if any."""
        found = CACHE_KEY.search(self.target.encode()) or CACHE_KEY.search(self.response_body)
        if found is None:
            unknown = re.search(r"cache_key=(aipkit_sse_[A-Za-z0-9]+)", self.target)
            return None if unknown is None else unknown.group(1)
        return found.group(0).decode()


@cache
def _upstream() -> dict[str, Any]:
    received: dict[str, Any] = json.loads((AIPKIT / "upstream-received.json").read_text("utf-8"))
    return received


@cache
def load_aipkit_capture(name: str) -> AipkitCapture:
    raw = (AIPKIT / f"{name}.request.txt").read_bytes()
    head, _, body = raw.partition(b"\r\n\r\n") if b"\r\n\r\n" in raw else raw.partition(b"\n\n")
    request_line, *header_lines = head.decode().splitlines()
    method, target, _ = request_line.split(" ")
    headers = tuple(
        (name.strip(), value.strip())
        for name, _, value in (line.partition(":") for line in header_lines)
        if name.strip().lower() not in _CONNECTION_HEADERS
    )
    response = json.loads((AIPKIT / f"{name}.response.json").read_text("utf-8"))
    upstream = []
    for entry in _upstream().get(name, []):
        payload = entry["json"]
        upstream.append(payload.get("messages") or payload.get("input"))
    return AipkitCapture(
        name=name,
        method=method,
        target=target,
        headers=headers,
        body=body,
        status=response["status"],
        response_headers=response["headers"],
        response_body=(AIPKIT / f"{name}.body").read_bytes(),
        upstream=upstream,
    )


def aipkit_ajax_capture_names() -> list[str]:
    """Every captured AJAX exchange (all but the landing pages)."""
    return sorted(
        path.name.removesuffix(".response.json")
        for path in AIPKIT.glob("*.response.json")
        if not path.name.startswith("landing")
    )


def key_producers() -> dict[str, str]:
    """Which cache capture handed out each captured cache key."""
    producers = {}
    for name in aipkit_ajax_capture_names():
        capture = load_aipkit_capture(name)
        if name.startswith("cache_") and capture.status == 200 and capture.cache_key:
            producers[capture.cache_key] = name
    return producers
