"""Reading the captured exchanges of tests/vectors/classic and fitting them to an emulator."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import attrs

CLASSIC = Path(__file__).parents[2] / "vectors" / "classic"
CAPTURE_HOST = "127.0.0.1:8080"
CAPTURE_NONCE = "18d499d351"
CAPTURE_IMAGE_NONCE = "c68796052f"
# Request headers that belong to the capture's connection, not to the exchange.
_CONNECTION_HEADERS = frozenset({"host", "content-length", "accept-encoding"})


@attrs.frozen
class Capture:
    """One captured exchange: the request as sent and the real site's answer."""

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
    def streamed(self) -> bool:
        """Whether the site had streaming on for this exchange."""
        content_type = next(
            (v for k, v in self.response_headers.items() if k.lower() == "content-type"), ""
        )
        return "event-stream" in content_type or self.name.startswith(("stream_", "azure_stream"))

    def response_header(self, name: str) -> str | None:
        return next(
            (v for k, v in self.response_headers.items() if k.lower() == name.lower()), None
        )


def localise(
    data: bytes, *, port: int, nonce: str, image_nonce: str = CAPTURE_IMAGE_NONCE
) -> bytes:
    """``data`` from the capture with the emulator's address and nonces put in."""
    host = f"127.0.0.1:{port}".encode()
    return (
        data.replace(CAPTURE_HOST.encode(), host)
        .replace(b"127.0.0.1%3A8080", b"127.0.0.1%3A" + str(port).encode())
        .replace(CAPTURE_NONCE.encode(), nonce.encode())
        .replace(CAPTURE_IMAGE_NONCE.encode(), image_nonce.encode())
    )


@cache
def _upstream() -> dict[str, Any]:
    received: dict[str, Any] = json.loads((CLASSIC / "upstream-received.json").read_text("utf-8"))
    return received


@cache
def load_capture(name: str) -> Capture:
    raw = (CLASSIC / f"{name}.request.txt").read_bytes()
    head, _, body = raw.partition(b"\r\n\r\n") if b"\r\n\r\n" in raw else raw.partition(b"\n\n")
    request_line, *header_lines = head.decode().splitlines()
    method, target, _ = request_line.split(" ")
    headers = tuple(
        (name.strip(), value.strip())
        for name, _, value in (line.partition(":") for line in header_lines)
        if name.strip().lower() not in _CONNECTION_HEADERS
    )
    response = json.loads((CLASSIC / f"{name}.response.json").read_text("utf-8"))
    upstream = [entry["json"]["messages"] for entry in _upstream().get(name, [])]
    return Capture(
        name=name,
        method=method,
        target=target,
        headers=headers,
        body=body,
        status=response["status"],
        response_headers=response["headers"],
        response_body=(CLASSIC / f"{name}.body").read_bytes(),
        upstream=upstream,
    )


def ajax_capture_names() -> list[str]:
    """Every captured AJAX exchange that has an answer on file."""
    return sorted(
        path.name.removesuffix(".response.json")
        for path in CLASSIC.glob("*.response.json")
        if not path.name.startswith("landing")
    )
