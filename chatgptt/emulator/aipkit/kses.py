"""Enough of WordPress's ``wp_kses_post`` to store chat messages as the AIPKit log does.

The plugin logs every message through ``wp_kses_post`` and the model sees the logged text as
history, so what the model reads back differs from what was sent: control characters go,
``&`` becomes ``&amp;`` (known entities stay), a ``<`` that opens no tag becomes ``&lt;``,
tags outside the post allowlist vanish (their text stays), attributes outside it vanish and
unsafe URL schemes are cut. Reimplemented after WordPress 6.1's ``kses.php`` (the release the
real site runs) and checked against what the real plugin logged. Not reproduced: the CSS
filter of ``style`` values and per-attribute value rules.
"""

from __future__ import annotations

import re
from html.entities import name2codepoint

from chatgptt.emulator.wordpress import esc_html

__all__ = ["ALLOWED_POST_TAGS", "kses_post"]

#: ``$allowedposttags``: each tag with its own attributes; all also take the global ones.
ALLOWED_POST_TAGS: dict[str, tuple[str, ...]] = {
    "address": (),
    "a": ("href", "rel", "rev", "name", "target", "download"),
    "abbr": (),
    "acronym": (),
    "area": ("alt", "coords", "href", "nohref", "shape", "target"),
    "article": ("align",),
    "aside": ("align",),
    "audio": ("autoplay", "controls", "loop", "muted", "preload", "src"),
    "b": (),
    "bdo": (),
    "big": (),
    "blockquote": ("cite",),
    "br": (),
    "button": ("disabled", "name", "type", "value"),
    "caption": ("align",),
    "cite": (),
    "code": (),
    "col": ("align", "char", "charoff", "span", "valign", "width"),
    "colgroup": ("align", "char", "charoff", "span", "valign", "width"),
    "del": ("datetime",),
    "dd": (),
    "dfn": (),
    "details": ("align", "open"),
    "div": ("align",),
    "dl": (),
    "dt": (),
    "em": (),
    "fieldset": (),
    "figure": ("align",),
    "figcaption": ("align",),
    "font": ("color", "face", "size"),
    "footer": ("align",),
    "h1": ("align",),
    "h2": ("align",),
    "h3": ("align",),
    "h4": ("align",),
    "h5": ("align",),
    "h6": ("align",),
    "header": ("align",),
    "hgroup": ("align",),
    "hr": ("align", "noshade", "size", "width"),
    "i": (),
    "img": (
        "alt",
        "align",
        "border",
        "height",
        "hspace",
        "loading",
        "longdesc",
        "vspace",
        "src",
        "usemap",
        "width",
    ),
    "ins": ("datetime", "cite"),
    "kbd": (),
    "label": ("for",),
    "legend": ("align",),
    "li": ("align", "value"),
    "main": ("align",),
    "map": ("name",),
    "mark": (),
    "menu": ("type",),
    "nav": ("align",),
    "object": ("data", "type"),
    "p": ("align",),
    "pre": ("width",),
    "q": ("cite",),
    "rb": (),
    "rp": (),
    "rt": (),
    "rtc": (),
    "ruby": (),
    "s": (),
    "samp": (),
    "span": ("align",),
    "section": ("align",),
    "small": (),
    "strike": (),
    "strong": (),
    "sub": (),
    "summary": ("align",),
    "sup": (),
    "table": (
        "align",
        "bgcolor",
        "border",
        "cellpadding",
        "cellspacing",
        "rules",
        "summary",
        "width",
    ),
    "tbody": ("align", "char", "charoff", "valign"),
    "td": (
        "abbr",
        "align",
        "axis",
        "bgcolor",
        "char",
        "charoff",
        "colspan",
        "headers",
        "height",
        "nowrap",
        "rowspan",
        "scope",
        "valign",
        "width",
    ),
    "textarea": ("cols", "rows", "disabled", "name", "readonly"),
    "tfoot": ("align", "char", "charoff", "valign"),
    "th": (
        "abbr",
        "align",
        "axis",
        "bgcolor",
        "char",
        "charoff",
        "colspan",
        "headers",
        "height",
        "nowrap",
        "rowspan",
        "scope",
        "valign",
        "width",
    ),
    "thead": ("align", "char", "charoff", "valign"),
    "title": (),
    "tr": ("align", "bgcolor", "char", "charoff", "valign"),
    "track": ("default", "kind", "label", "src", "srclang"),
    "tt": (),
    "u": (),
    "ul": ("type",),
    "ol": ("start", "type", "reversed"),
    "var": (),
    "video": (
        "autoplay",
        "controls",
        "height",
        "loop",
        "muted",
        "playsinline",
        "poster",
        "preload",
        "src",
        "width",
    ),
}
_GLOBAL_ATTRIBUTES = frozenset(
    {
        "aria-describedby",
        "aria-details",
        "aria-label",
        "aria-labelledby",
        "aria-hidden",
        "class",
        "dir",
        "id",
        "lang",
        "style",
        "title",
        "role",
        "xml:lang",
    }
)
_URI_ATTRIBUTES = frozenset(
    {
        "action",
        "archive",
        "background",
        "cite",
        "classid",
        "codebase",
        "data",
        "formaction",
        "href",
        "icon",
        "longdesc",
        "manifest",
        "poster",
        "profile",
        "src",
        "usemap",
        "xmlns",
    }
)
_PROTOCOLS = frozenset(
    [
        "http",
        "https",
        "ftp",
        "ftps",
        "mailto",
        "news",
        "irc",
        "irc6",
        "ircs",
        "gopher",
        "nntp",
        "feed",
        "telnet",
        "mms",
        "rtsp",
        "sms",
        "svn",
        "tel",
        "fax",
        "xmpp",
        "webcal",
        "urn",
    ]
)
_ENTITY_NAMES = frozenset(name2codepoint) | {"apos"}
_NULLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_SPLIT = re.compile(r"(<!--.*?(-->|$))|(<[^>]*(>|$)|>)", re.DOTALL)
_LESS_THAN = re.compile(r"<[^>]*?((?=<)|>|$)", re.DOTALL)
_ELEMENT = re.compile(r"^<\s*(/\s*)?([a-zA-Z0-9-]+)([^>]*)>?$", re.DOTALL)
_DATA_ATTRIBUTE = re.compile(r"^data(?:-[a-z0-9_]+)+$")
_ATTRIBUTE_NAME = re.compile(r"^[_a-zA-Z][-_a-zA-Z0-9:.]*")
_EQUALS = re.compile(r"^\s*=\s*")
_BLANK = re.compile(r"^\s+")
_DOUBLE_QUOTED = re.compile(r'^"([^"]*)"(\s+|/?$)')
_SINGLE_QUOTED = re.compile(r"^'([^']*)'(\s+|/?$)")
_UNQUOTED = re.compile(r"""^([^\s"']+)(\s+|/?$)""")
_HTML_ERROR = re.compile(r"""^("[^"]*("|$)|'[^']*('|$)|\S)*\s*""")
_COLON_ENTITY = re.compile(r"(&#0*58(?![;0-9])|&#x0*3a(?![;a-f0-9]))", re.IGNORECASE)
_PROTOCOL_SPLIT = re.compile(r":|&#0*58;|&#x0*3a;|&colon;", re.IGNORECASE)


def kses_post(text: str) -> str:
    """``wp_kses_post($text)``: what the AIPKit log keeps of a message."""
    text = _NULLS.sub("", text)
    text = _normalize_entities(text)
    text = _LESS_THAN.sub(lambda m: m.group(0) if ">" in m.group(0) else esc_html(m.group(0)), text)
    return _SPLIT.sub(lambda m: _split2(m.group(0)), text)


def _valid_unicode(code: int) -> bool:
    return (
        code in (0x9, 0xA, 0xD)
        or 0x20 <= code <= 0xD7FF
        or 0xE000 <= code <= 0xFFFD
        or 0x10000 <= code <= 0x10FFFF
    )


def _named(match: re.Match[str]) -> str:
    name = match.group(1)
    return f"&{name};" if name in _ENTITY_NAMES else f"&amp;{name};"


def _decimal(match: re.Match[str]) -> str:
    digits = match.group(1)
    if not _valid_unicode(int(digits)):
        return f"&amp;#{digits};"
    return "&#" + (digits.lstrip("0") or "").rjust(3, "0") + ";"


def _hexadecimal(match: re.Match[str]) -> str:
    digits = match.group(1)
    if not _valid_unicode(int(digits, 16)):
        return f"&amp;#x{digits};"
    return "&#x" + digits.lstrip("0") + ";"


def _normalize_entities(text: str) -> str:
    text = text.replace("&", "&amp;")
    text = re.sub(r"&amp;([A-Za-z]{2,8}[0-9]{0,2});", _named, text)
    text = re.sub(r"&amp;#(0*[0-9]{1,7});", _decimal, text)
    return re.sub(r"&amp;#[Xx](0*[0-9A-Fa-f]{1,6});", _hexadecimal, text)


def _split2(piece: str) -> str:
    piece = piece.replace('\\"', '"')  # wp_kses_stripslashes
    if not piece.startswith("<"):
        return "&gt;"
    if piece.startswith("<!--"):
        inner = piece.replace("<!--", "").replace("-->", "")
        while (cleaned := kses_post(inner)) != inner:
            inner = cleaned
        if not inner:
            return ""
        inner = re.sub(r"-$", "", re.sub(r"--+", "-", inner))
        return f"<!--{inner}-->"
    match = _ELEMENT.match(piece)
    if match is None:
        return ""
    slash, element, attributes = match.group(1), match.group(2), match.group(3)
    if element.lower() not in ALLOWED_POST_TAGS:
        return ""
    if slash and slash.strip():
        return f"</{element}>"
    return _tag(element, attributes)


def _allowed_attribute(element: str, name: str) -> bool:
    name = name.lower()
    if name in _GLOBAL_ATTRIBUTES or name in ALLOWED_POST_TAGS[element.lower()]:
        return True
    return _DATA_ATTRIBUTE.match(name) is not None


def _tag(element: str, attributes: str) -> str:
    xhtml_slash = " /" if re.search(r"\s*/\s*$", attributes) else ""
    kept = "".join(
        f" {whole}"
        for name, whole in _parse_attributes(attributes)
        if _allowed_attribute(element, name)
    )
    kept = re.sub(r"[<>]", "", kept)
    return f"<{element}{kept}{xhtml_slash}>"


def _parse_attributes(text: str) -> list[tuple[str, str]]:
    """``wp_kses_hair``: each attribute's name and its rewritten ``name="value"`` text."""
    found: dict[str, str] = {}
    mode, name = 0, ""
    while text:
        working = False
        if mode == 0:
            match = _ATTRIBUTE_NAME.match(text)
            if match:
                name, text, mode, working = match.group(0), text[match.end() :], 1, True
        elif mode == 1:
            match = _EQUALS.match(text)
            if match:
                text, mode, working = text[match.end() :], 2, True
            elif match := _BLANK.match(text):
                found.setdefault(name, name)
                text, mode, working = text[match.end() :], 0, True
        else:
            for pattern, quote in ((_DOUBLE_QUOTED, '"'), (_SINGLE_QUOTED, "'"), (_UNQUOTED, "")):
                match = pattern.match(text)
                if match:
                    value = match.group(1)
                    if name.lower() in _URI_ATTRIBUTES:
                        value = _bad_protocol(value)
                    mark = quote or '"'
                    found.setdefault(name, f"{name}={mark}{value}{mark}")
                    text, mode, working = text[match.end() :], 0, True
                    break
        if not working:  # not well-formed: drop up to the next blank and go on
            text, mode = _HTML_ERROR.sub("", text, count=1), 0
    if mode == 1:
        found.setdefault(name, name)
    return list(found.items())


def _bad_protocol(value: str) -> str:
    """``wp_kses_bad_protocol``: unsafe schemes cut until none is left (or the value goes)."""
    value = _NULLS.sub("", value)
    for _ in range(6):
        before = value
        value = _bad_protocol_once(value)
        if value == before:
            return value
    return ""


def _bad_protocol_once(value: str) -> str:
    value = _COLON_ENTITY.sub(r"\1;", value)
    parts = _PROTOCOL_SPLIT.split(value, maxsplit=1)
    if len(parts) == 2 and not re.search(r"[/?]", parts[0]):
        scheme = _NULLS.sub("", re.sub(r"\s", "", _decode_entities(parts[0]))).lower()
        rest = parts[1].strip(" \t\n\r\0\x0b")
        return (f"{scheme}:" if scheme in _PROTOCOLS else "") + rest
    return value


def _decode_entities(text: str) -> str:
    text = re.sub(
        r"&#0*([0-9]+);",
        lambda m: chr(int(m.group(1))) if int(m.group(1)) < 0x110000 else m.group(0),
        text,
    )
    return re.sub(
        r"&#[Xx]0*([0-9A-Fa-f]+);",
        lambda m: chr(int(m.group(1), 16)) if int(m.group(1), 16) < 0x110000 else m.group(0),
        text,
    )
