"""Reading a web page the way a browser does, for the pure token-extraction stages.

A small HTML tokenizer rather than regular expressions over the raw text: comments,
``<script>``/``<style>`` contents and quoted attribute values are skipped the way a
browser skips them, so text that merely looks like a chat container never wins over
the real one. It is linear in the page's length (``html.parser`` of Python 3.11 is
quadratic on some malformed input, and the page comes from the network).
"""

from __future__ import annotations

import functools
import html as html_entities
import re
from collections.abc import Iterator, Mapping
from urllib.parse import urljoin, urlsplit

import attrs

__all__ = ["StartTag", "class_list", "http_url", "origin", "start_tags"]

_HTML_SPACE = "\t\n\f\r "
# Elements whose content is text to the browser, never tags (WHATWG raw text and RCDATA).
_RAW_TEXT_ELEMENTS = frozenset(
    {"script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes", "noscript"}
)
_COMMENT_END = re.compile(r"--!?>")
_SPACE_RUN = re.compile(r"[\t\n\f\r ]*")
_SPACE_OR_SLASH_RUN = re.compile(r"[\t\n\f\r /]*")
_TAG_NAME = re.compile(r"[^\t\n\f\r />]*")
_ATTRIBUTE_NAME = re.compile(r"[^\t\n\f\r />][^\t\n\f\r />=]*")
_UNQUOTED_VALUE = re.compile(r"[^\t\n\f\r >]*")
_CLASS_SEPARATOR = re.compile(r"[\t\n\f\r ]+")


@attrs.frozen
class StartTag:
    """A start tag as a browser reads it; ``text`` is the content of a raw-text element."""

    name: str
    attributes: Mapping[str, str]
    text: str | None = None


@functools.cache
def _raw_text_end(name: str) -> re.Pattern[str]:
    """The end tag that closes the raw-text element ``name`` (any letter case)."""
    return re.compile(rf"</{name}[\t\n\f\r />]", re.IGNORECASE | re.ASCII)


def _skip(run: re.Pattern[str], page: str, position: int) -> int:
    """The index just after the run of ``run`` characters that starts at ``position``."""
    match = run.match(page, position)
    return match.end() if match else position


def _is_ascii_letter(character: str) -> bool:
    return character.isascii() and character.isalpha()


def _read_tag(page: str, start: int) -> tuple[str, dict[str, str], int] | None:
    """Read the tag whose name starts at ``start``: name, attributes, the index after ``>``.

    ``None`` when the page ends inside the tag (a browser drops such a tag).
    Attribute names are lower-cased, values entity-decoded; a repeated attribute
    keeps its first value, as in a browser.
    """
    end = len(page)
    position = _skip(_TAG_NAME, page, start)
    name = page[start:position].lower()
    attributes: dict[str, str] = {}
    while True:
        position = _skip(_SPACE_OR_SLASH_RUN, page, position)
        if position >= end:
            return None
        if page[position] == ">":
            return name, attributes, position + 1
        attribute_match = _ATTRIBUTE_NAME.match(page, position)
        assert attribute_match is not None  # page[position] is not space, "/" or ">"
        attribute = attribute_match.group().lower()
        after_name = _skip(_SPACE_RUN, page, attribute_match.end())
        value = ""
        if after_name < end and page[after_name] == "=":
            value_start = _skip(_SPACE_RUN, page, after_name + 1)
            if value_start >= end:
                return None
            quote = page[value_start]
            if quote in "\"'":
                closing = page.find(quote, value_start + 1)
                if closing < 0:
                    return None
                value = page[value_start + 1 : closing]
                position = closing + 1
            else:
                position = _skip(_UNQUOTED_VALUE, page, value_start)
                value = page[value_start:position]
        else:
            position = after_name
        if attribute not in attributes:
            attributes[attribute] = html_entities.unescape(value) if "&" in value else value


def start_tags(page: str) -> Iterator[StartTag]:
    """The page's start tags in document order, skipping comments, end tags and text.

    A simplified WHATWG tokenizer: enough to tell a real tag from one inside a
    comment, a script or an attribute value. Every step moves forward, so the
    whole page is read in linear time.
    """
    end = len(page)
    position = 0
    while True:
        opening = page.find("<", position)
        if opening < 0 or opening + 1 >= end:
            return
        following = page[opening + 1]
        if page.startswith("!--", opening + 1):
            # "<!-->" and "<!--->" are complete (empty) comments, hence the search from "--".
            closing = _COMMENT_END.search(page, opening + 2)
            if closing is None:
                return
            position = closing.end()
        elif following in "!?" or (
            following == "/" and not _is_ascii_letter(page[opening + 2 : opening + 3])
        ):
            # A doctype, CDATA, processing instruction or "</>": a bogus comment up to ">".
            closing_index = page.find(">", opening + 2)
            if closing_index < 0:
                return
            position = closing_index + 1
        elif following == "/":
            end_tag = _read_tag(page, opening + 2)
            if end_tag is None:
                return
            position = end_tag[2]
        elif _is_ascii_letter(following):
            tag = _read_tag(page, opening + 1)
            if tag is None:
                return
            name, attributes, position = tag
            if name in _RAW_TEXT_ELEMENTS:
                closing = _raw_text_end(name).search(page, position)
                text_end = end if closing is None else closing.start()
                yield StartTag(name, attributes, page[position:text_end])
                if closing is None:
                    return
                position = text_end
            else:
                yield StartTag(name, attributes)
        else:
            position = opening + 1  # a "<" that opens nothing is text


_CLASS_SEPARATOR_RUN = re.compile(r"[\t\n\f\r ]+")


def class_list(attributes: Mapping[str, str]) -> frozenset[str]:
    """The classes of an element, from its ``class`` attribute."""
    return frozenset(_CLASS_SEPARATOR_RUN.split(attributes.get("class", "")))


def http_url(candidate: object, base: str) -> str | None:
    """``candidate`` resolved against ``base`` if it is an http(s) URL with a host."""
    if not isinstance(candidate, str) or not candidate.strip():
        return None
    candidate = candidate.strip()
    try:
        if candidate.startswith("//") and not urlsplit(candidate).hostname:
            return None  # urljoin would quietly give back the base
        resolved = urljoin(base, candidate)
        parts = urlsplit(resolved)
        if parts.scheme in ("http", "https") and parts.hostname:
            return resolved
    except ValueError:
        pass
    return None


def origin(url: str) -> str:
    """``scheme://host[:port]`` of ``url``, without any credentials."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
