"""The PHP and WordPress functions whose output the AIPKit dialect shows on the wire.

Reimplemented from their documented behaviour and checked against the real plugin 2.4.71:
``json_encode`` with the flag sets the plugin uses, ``esc_attr``, ``sanitize_key``,
``sanitize_text_field``, ``absint`` and the cross-origin test of its CORS checks.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

from chatgptt.emulator.wordpress import esc_html, sanitize_textarea_field

__all__ = [
    "PHP_TRIM",
    "absint",
    "esc_attr",
    "is_cross_origin",
    "json_for_attribute",
    "json_unescaped_unicode",
    "php_trim",
    "sanitize_key",
    "sanitize_text_field",
]

#: The characters PHP's ``trim`` removes.
PHP_TRIM = " \t\n\r\0\x0b"
_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "/": "\\/", "\b": "\\b", "\f": "\\f", "\n": "\\n"}
_SHORT_ESCAPES |= {"\r": "\\r", "\t": "\\t", "\u2028": "\\u2028", "\u2029": "\\u2029"}
# JSON_HEX_TAG | JSON_HEX_APOS | JSON_HEX_AMP | JSON_HEX_QUOT: PHP writes these in upper case.
_HEX_ESCAPES = {"<": "\\u003C", ">": "\\u003E", "'": "\\u0027", "&": "\\u0026", '"': "\\u0022"}
_KEY_JUNK = re.compile(r"[^a-z0-9_\-]")
_BLANKS = re.compile(r"[\r\n\t ]+")
_LEADING_INTEGER = re.compile(r"[ \t\n\r\x0b\f]*[+-]?([0-9]+)")


def _escape_string(text: str, hex_escapes: bool) -> str:
    out = ['"']
    for char in text:
        if hex_escapes and char in _HEX_ESCAPES:
            out.append(_HEX_ESCAPES[char])
        elif char in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[char])
        elif char < " ":
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def _encode(value: object, hex_escapes: bool) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return _escape_string(value, hex_escapes)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)  # PHP's serialize_precision -1: the shortest exact form
    if isinstance(value, Mapping):
        items = (
            f"{_escape_string(str(key), hex_escapes)}:{_encode(item, hex_escapes)}"
            for key, item in value.items()
        )
        return "{" + ",".join(items) + "}"
    if isinstance(value, Sequence):
        return "[" + ",".join(_encode(item, hex_escapes) for item in value) + "]"
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def json_unescaped_unicode(value: object) -> str:
    """PHP ``json_encode($value, JSON_UNESCAPED_UNICODE)``: how the plugin writes SSE data.

    Non-ASCII stays raw (but U+2028/U+2029 are escaped), ``/`` becomes ``\\/``, no spaces.
    """
    return _encode(value, hex_escapes=False)


def json_for_attribute(value: object) -> str:
    """``wp_json_encode`` with ``JSON_UNESCAPED_UNICODE`` and the four ``JSON_HEX_*`` flags.

    The plugin encodes ``data-config`` so: ``< > ' & "`` inside strings become ``\\u003C``…
    """
    return _encode(value, hex_escapes=True)


def esc_attr(text: str) -> str:
    """WordPress ``esc_attr``: the same escaping as ``esc_html``."""
    return esc_html(text)


def php_trim(text: str) -> str:
    """PHP ``trim``."""
    return text.strip(PHP_TRIM)


def sanitize_key(text: str) -> str:
    """WordPress ``sanitize_key``: lower case, only ``a-z 0-9 _ -`` kept."""
    return _KEY_JUNK.sub("", text.lower())


def sanitize_text_field(text: str) -> str:
    """WordPress ``sanitize_text_field``: tags and ``%XX`` octets out, blanks folded, trimmed."""
    return php_trim(_BLANKS.sub(" ", sanitize_textarea_field(text)))


def absint(text: str | None) -> int:
    """PHP ``absint`` of a request string: its leading integer, made non-negative; else 0."""
    if text is None:
        return 0
    match = _LEADING_INTEGER.match(text)
    return int(match.group(1)) if match else 0


def _host_and_scheme(url: str) -> tuple[str, str]:
    """The host and lower-case scheme PHP's ``wp_parse_url`` finds after ``esc_url_raw``."""
    if not re.match(r"[A-Za-z][A-Za-z0-9+.\-]*://", url):
        url = "http://" + url  # esc_url_raw's guess for a URL without a scheme
    try:
        parts = urlsplit(url)
    except ValueError:
        return "", ""
    netloc = parts.netloc.rpartition("@")[2]
    if netloc.startswith("["):  # an IPv6 address keeps its brackets, as in PHP
        end = netloc.find("]")
        host = netloc[: end + 1] if end >= 0 else netloc
    else:
        host = netloc.partition(":")[0]
    return host, parts.scheme.lower()


def is_cross_origin(origin: str | None, site_netloc: str, site_scheme: str) -> bool:
    """Whether the plugin treats ``Origin`` as another site (host or scheme differs).

    No ``Origin`` (or an empty one) is the site itself; the port does not count, so
    ``http://127.0.0.1:1`` is the same site as ``http://127.0.0.1:8080``.
    """
    if not origin:
        return False
    host, scheme = _host_and_scheme(origin.strip())
    site_host, _ = _host_and_scheme(f"{site_scheme}://{site_netloc}")
    return host != site_host or (scheme or "http") != site_scheme.lower()
