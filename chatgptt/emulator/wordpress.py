"""What WordPress and the plugin do to a chat request before the model sees it.

Reimplemented from the observed behaviour (PROTOCOL.md §7 and the captures):
``wpaicg_chat_history`` goes through ``sanitize_textarea_field``, then every
backslash is deleted, then it is JSON-decoded; each item (and the current
message, prefixed ``Human: ``) is trimmed and becomes a user turn if it starts
with ``Human: ``, an assistant turn otherwise (``AI: `` removed). The current
``message`` itself is only unslashed, so it arrives unchanged.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = [
    "SiteCrashError",
    "build_conversation",
    "decode_history",
    "delete_backslashes",
    "esc_html",
    "php_empty",
    "php_json_encode",
    "sanitize_textarea_field",
    "turn_of",
]

_PHP_TRIM = " \t\n\r\0\x0b"
_LESS_THAN_RUN = re.compile(r"<[^>]*?(?:(?=<)|>|$)", re.DOTALL)
_SCRIPT_OR_STYLE = re.compile(r"<(script|style)[^>]*?>.*?</\1>", re.DOTALL | re.IGNORECASE)
# PHP's strip_tags keeps a "<" that is followed by whitespace.
_TAG = re.compile(r"<(?![\s])[^>]*>", re.DOTALL)
_PERCENT_OCTET = re.compile(r"%[a-f0-9]{2}", re.IGNORECASE)
_SPACES = re.compile(r" +")
_ENTITY = re.compile(r"&(?:[A-Za-z][A-Za-z0-9]*|#[0-9]+|#x[0-9A-Fa-f]+);")


class SiteCrashError(Exception):
    """The PHP handler would die here; WordPress answers 500 'critical error'."""


def esc_html(text: str) -> str:
    """WordPress ``esc_html``: escape ``& < > " '``, leaving existing entities alone."""
    out = []
    pos = 0
    for match in _ENTITY.finditer(text):
        out.append(_escape_plain(text[pos : match.start()]))
        out.append(match.group(0))
        pos = match.end()
    out.append(_escape_plain(text[pos:]))
    return "".join(out)


def _escape_plain(text: str) -> str:
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("'", "&#039;")
    )


def sanitize_textarea_field(text: str) -> str:
    """WordPress ``sanitize_textarea_field``: tags stripped, trimmed, ``%XX`` octets removed."""
    filtered = text
    if "<" in filtered:
        # wp_pre_kses_less_than: a "<" run with no ">" is text, not a tag: escape it.
        filtered = _LESS_THAN_RUN.sub(
            lambda m: m.group(0) if ">" in m.group(0) else esc_html(m.group(0)), filtered
        )
        # wp_strip_all_tags: script/style elements with their content, then every tag.
        filtered = _SCRIPT_OR_STYLE.sub("", filtered)
        filtered = _TAG.sub("", filtered)
        filtered = filtered.strip(_PHP_TRIM)
        filtered = filtered.replace("<\n", "&lt;\n")
    filtered = filtered.strip(_PHP_TRIM)
    found = False
    while True:
        match = _PERCENT_OCTET.search(filtered)
        if match is None:
            break
        filtered = filtered.replace(match.group(0), "")
        found = True
    if found:
        filtered = _SPACES.sub(" ", filtered).strip(_PHP_TRIM)
    return filtered


def delete_backslashes(text: str) -> str:
    """The plugin removes every backslash from the history before decoding it."""
    return text.replace("\\", "")


def decode_history(raw: str | None) -> list[str]:
    """The history items as the plugin sees them.

    ``None``, ``""``, ``"None"``, invalid JSON or a non-list all mean no history.
    Raises :class:`SiteCrashError` for items the handler cannot read (anything but a
    string or an object with a ``text`` string), as the real site does.
    """
    if raw is None:
        return []
    cleaned = delete_backslashes(sanitize_textarea_field(raw))
    if not cleaned:
        return []
    try:
        value: Any = json.loads(cleaned)
    except ValueError:
        return []
    if not isinstance(value, list):
        return []
    items: list[str] = []
    for item in value:
        if isinstance(item, str):
            items.append(item)
        elif isinstance(item, dict) and isinstance(item.get("text"), str):
            items.append(item["text"])
        else:
            raise SiteCrashError(f"history item of unsupported shape: {item!r}")
    return items


def turn_of(item: str) -> dict[str, str]:
    """One history item (or ``Human: <message>``) as the upstream chat message it becomes."""
    item = item.strip(_PHP_TRIM)
    if item.startswith("Human: "):
        return {"role": "user", "content": item[len("Human: ") :]}
    if item.startswith("AI: "):
        item = item[len("AI: ") :]
    return {"role": "assistant", "content": item}


def build_conversation(
    greeting: str, raw_history: str | None, message: str
) -> list[dict[str, str]]:
    """The messages that reach the model: the site's prompt (as a user turn), the
    history, then the current message."""
    items = decode_history(raw_history)
    items.append("Human: " + message)
    return [{"role": "user", "content": greeting}, *(turn_of(item) for item in items)]


def php_empty(value: str | None) -> bool:
    """PHP ``empty()`` on a request string: missing, ``""`` and ``"0"`` are empty."""
    return value is None or value in ("", "0")


def php_json_encode(value: object) -> str:
    """PHP ``json_encode`` with default flags: ``\\/`` and ``\\uXXXX`` escapes, no spaces."""
    # "/" can only occur inside JSON strings, so escaping it in the text is exact.
    return json.dumps(value, ensure_ascii=True, separators=(",", ":")).replace("/", "\\/")
