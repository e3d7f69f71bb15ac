"""Tests for the incremental server-sent events decoder (stages/sse.py).

Example tests replay the WHATWG spec's own examples and the captured plugin streams;
property tests check that any chunking of any byte stream gives the events of a slow,
line-by-line reading of the spec written here.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stages.sse import ServerSentEvent, SSEDecoder, SSELineTooLongError, decode_events

VECTORS = Path(__file__).parent.parent / "vectors"
STREAM_BODIES = sorted(
    path
    for path in VECTORS.glob("*/*stream*.body")
    if path.read_bytes().startswith((b"data:", b"event:", b":"))
)
BOM = b"\xef\xbb\xbf"


# --- a slow, obviously correct reading of the spec, to compare against ---------------------


def spec_lines(stream: bytes) -> tuple[list[bytes], bytes]:
    """Split a whole stream into its complete lines and the unfinished rest, as the spec does."""
    lines = []
    start = position = 0
    while position < len(stream):
        byte = stream[position]
        if byte in b"\r\n":
            lines.append(stream[start:position])
            if stream[position : position + 2] == b"\r\n":
                position += 1
            start = position + 1
        position += 1
    return lines, stream[start:]


def spec_decode(stream: bytes) -> tuple[list[ServerSentEvent], str, int | None]:
    """The events of a whole stream, and the last event id and retry it leaves in effect."""
    if stream.startswith(BOM):
        stream = stream[len(BOM) :]
    events = []
    data = event_type = last_event_id = ""
    retry = None
    for raw_line in spec_lines(stream)[0]:
        line = raw_line.decode("utf-8", "replace")
        if not line:
            if data:
                events.append(
                    ServerSentEvent(data.removesuffix("\n"), event_type, last_event_id, retry)
                )
            data = event_type = ""
            continue
        if line.startswith(":"):
            continue
        if ":" in line:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
        else:
            name, value = line, ""
        if name == "data":
            data += value + "\n"
        elif name == "event":
            event_type = value
        elif name == "id" and "\0" not in value:
            last_event_id = value
        elif name == "retry" and value and all(char in "0123456789" for char in value):
            retry = int(value)
    return events, last_event_id, retry


def longest_line(stream: bytes) -> int:
    """Bytes in the longest line of a stream, its unfinished last line included.

    The start of a BOM is not a line yet: nobody knows until the third byte.
    """
    if stream.startswith(BOM):
        stream = stream[len(BOM) :]
    elif BOM.startswith(stream):
        return 0
    lines, rest = spec_lines(stream)
    return max(map(len, [*lines, rest]))


def feed_each(decoder: SSEDecoder, chunks: Iterable[bytes]) -> list[ServerSentEvent]:
    events = []
    for chunk in chunks:
        events += decoder.feed(chunk)
    return events


def feed_all(decoder: SSEDecoder, chunks: Iterable[bytes]) -> list[ServerSentEvent]:
    return feed_each(decoder, chunks) + decoder.close()


def cut(stream: bytes, positions: Iterable[int]) -> list[bytes]:
    """``stream`` cut at ``positions`` (any order, repeats give empty chunks)."""
    bounds = [0, *sorted(positions), len(stream)]
    return [stream[start:end] for start, end in itertools.pairwise(bounds)]


def every_byte(stream: bytes) -> list[bytes]:
    return [stream[i : i + 1] for i in range(len(stream))]


def message(data: str, event: str = "", id: str = "", retry: int | None = None) -> ServerSentEvent:
    return ServerSentEvent(data=data, event=event, id=id, retry=retry)


# --- the spec's examples ---------------------------------------------------------------


def test_multiline_data_joins_with_lf() -> None:
    """The spec's stock-ticker example: three data lines make one event."""
    events = decode_events([b"data: YHOO\ndata: +2\ndata: 10\n\n"])
    assert events == [message("YHOO\n+2\n10")]
    assert events[0].type == "message"


def test_comments_and_ids() -> None:
    """The spec's second example: a comment, an id, an empty id that resets it."""
    stream = (
        b": test stream\n\ndata: first event\nid: 1\n\n"
        b"data:second event\nid\n\ndata:  third event\n\n"
    )
    assert decode_events([stream]) == [
        message("first event", id="1"),
        message("second event"),
        message(" third event"),
    ]


def test_empty_data_lines_and_unfinished_last_event() -> None:
    """The spec's third example: "data" alone is an empty value; the last event never ends."""
    assert decode_events([b"data\n\ndata\ndata\n\ndata:"]) == [message(""), message("\n")]


def test_one_leading_space_is_stripped() -> None:
    """The spec's fourth example: "data:test" and "data: test" are the same event."""
    assert decode_events([b"data:test\n\ndata: test\n\n"]) == [message("test")] * 2


@pytest.mark.parametrize(
    ("line", "data"),
    [(b"data", ""), (b"data:", ""), (b"data: ", ""), (b"data:  x", " x"), (b"data:x: y", "x: y")],
)
def test_data_field_spellings(line: bytes, data: str) -> None:
    """A field without a colon has an empty value; only one space after the colon goes."""
    assert decode_events([line + b"\n\n"]) == [message(data)]


def test_event_type_applies_to_its_event_only() -> None:
    """``event`` names one event; the next one is a "message" again."""
    events = decode_events([b"event: status\ndata: a\n\ndata: b\n\n"])
    assert [(event.type, event.event, event.data) for event in events] == [
        ("status", "status", "a"),
        ("message", "", "b"),
    ]


def test_event_without_data_dispatches_nothing_and_resets_its_type() -> None:
    """An event with no data lines is not dispatched, and its type does not leak."""
    assert decode_events([b"event: ping\n\ndata: x\n\n"]) == [message("x")]
    assert decode_events([b"event: ping\nid: 4\n\n\n\n"]) == []


def test_id_persists_across_events_and_nul_ids_are_ignored() -> None:
    """The last event id stays in effect; an id containing U+0000 is ignored."""
    stream = b"id: 1\ndata: a\n\ndata: b\n\nid: 2\0x\ndata: c\n\nid: 3\n\ndata: d\n\n"
    assert [event.id for event in decode_events([stream])] == ["1", "1", "1", "3"]


@pytest.mark.parametrize(
    ("value", "retry"),
    [
        (b"3000", 3000),
        (b"007", 7),
        (b"", None),
        (b"10a", None),
        (b"-1", None),
        (b"+1", None),
        (b"1 000", None),
        (b"1_000", None),
        ("١٢".encode(), None),
        ("²".encode(), None),
    ],
)
def test_retry_takes_ascii_digits_only(value: bytes, retry: int | None) -> None:
    """``retry`` counts only when it is all ASCII digits; it stays in effect like ``id``."""
    decoder = SSEDecoder()
    events = feed_all(decoder, [b"retry: " + value + b"\ndata: x\n\ndata: y\n\n"])
    assert [event.retry for event in events] == [retry, retry]
    assert decoder.retry == retry


def test_comments_and_unknown_fields_are_ignored() -> None:
    """Lines starting with a colon and unknown field names change nothing."""
    stream = b":\n: keep-alive\n:data: no\nfoo: bar\nDATA: no\ndata : no\ndata: yes\n\n"
    assert decode_events([stream]) == [message("yes")]


@pytest.mark.parametrize("line_end", [b"\n", b"\r", b"\r\n"])
def test_every_line_end(line_end: bytes) -> None:
    """LF, CR and CRLF all end lines."""
    stream = line_end.join([b"event: e", b"data: a", b"data: b", b"", b"data: c", b"", b""])
    assert decode_events([stream]) == [message("a\nb", event="e"), message("c")]


def test_mixed_line_ends() -> None:
    """Line ends may change from line to line; LF CR is two line ends, CR LF one."""
    assert decode_events([b"data: a\r\ndata: b\rdata: c\n\r\n\rdata: d\n\r"]) == [
        message("a\nb\nc"),
        message("d"),
    ]


def test_crlf_split_between_chunks_is_one_line_end() -> None:
    """A CR ending one chunk and an LF starting the next end the same line."""
    assert decode_events([b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"]) == [message("a\nb")]
    assert decode_events([b"data: a\r", b"", b"\n", b"\r", b"\n"]) == [message("a")]


def test_cr_at_chunk_end_followed_by_cr_is_two_line_ends() -> None:
    """A CR then another CR in the next chunk are two line ends: a blank line."""
    assert decode_events([b"data: a\r", b"\rdata: b\r\r"]) == [message("a"), message("b")]


def test_line_breaks_other_than_cr_and_lf_are_data() -> None:
    """Vertical tab, form feed, U+001C…U+001E, NEL, LS and PS do not end lines."""
    odd = "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
    assert decode_events([f"data: a{odd}b\n\n".encode()]) == [message(f"a{odd}b")]


# --- the byte-order mark and UTF-8 ---------------------------------------------------------


def test_leading_bom_is_skipped_once() -> None:
    """A BOM opening the stream is dropped; a second one is part of the first field name."""
    assert decode_events([BOM + b"data: a\n\n"]) == [message("a")]
    assert decode_events([BOM + BOM + b"data: a\n\n"]) == []


@pytest.mark.parametrize("split", [1, 2, 3])
def test_bom_split_across_chunks(split: int) -> None:
    """The BOM is recognised even when it arrives a byte at a time."""
    stream = BOM + b"data: a\n\n"
    assert decode_events([stream[:split], stream[split:]]) == [message("a")]
    assert decode_events(every_byte(stream)) == [message("a")]


def test_bom_prefix_that_is_no_bom_is_kept() -> None:
    """Bytes that start like a BOM but are not one are the stream's first bytes."""
    assert decode_events([b"\xef\xbb", b"data: a\n\ndata: b\n\n"]) == [message("b")]
    assert decode_events([b"\xef", b"\n", b"data: b\n\n"]) == [message("b")]


def test_bom_later_in_the_stream_is_data() -> None:
    """Only the stream's first bytes can be a BOM."""
    assert decode_events([b"data: a\n\n", BOM + b"data: b\n\n"]) == [message("a")]
    assert decode_events([b"data: " + BOM + b"\n\n"]) == [message("\ufeff")]


def test_multibyte_characters_split_across_chunks() -> None:
    """Characters of 2, 3 and 4 bytes decode right wherever the chunks are cut."""
    stream = "data: é 日本 😀\n\n".encode()
    for position in range(len(stream) + 1):
        assert decode_events(cut(stream, [position])) == [message("é 日本 😀")]
    assert decode_events(every_byte(stream)) == [message("é 日本 😀")]


def test_invalid_utf8_is_replaced() -> None:
    """Invalid bytes become U+FFFD, as decoding each line with "replace" gives."""
    line = b"data: a\xff\xe2\x82b\xf0\x9f\n\n"
    expected = line[6:-2].decode("utf-8", "replace")
    assert decode_events([line]) == [message(expected)]
    assert decode_events([line * 3]) == [message(expected)] * 3
    assert decode_events(every_byte(line)) == [message(expected)]


def test_truncated_character_before_a_line_end_stays_on_its_line() -> None:
    """An incomplete UTF-8 sequence ends at the LF: it is replaced, and the LF still counts."""
    assert decode_events([b"data: \xe2\x82", b"\n\ndata: \x82\xac\n\n"]) == [
        message("\ufffd"),
        message("\ufffd\ufffd"),
    ]


# --- the end of the stream -------------------------------------------------------------


@pytest.mark.parametrize("stream", [b"data: x", b"data: x\n", b"data: x\r", b"event: e\ndata: x"])
def test_unfinished_event_is_discarded_at_close(stream: bytes) -> None:
    """Without its blank line an event is not dispatched, and ``pending`` says so."""
    decoder = SSEDecoder()
    assert decoder.feed(stream) == []
    assert decoder.pending
    assert decoder.close() == []


@pytest.mark.parametrize("stream", [b"", b"data: x\n\n", b"data: x\n\n: bye\n", b"data: x\n\n\n"])
def test_stream_that_ended_cleanly_is_not_pending(stream: bytes) -> None:
    """After a blank line, only comments and blank lines: nothing is pending."""
    decoder = SSEDecoder()
    decoder.feed(stream)
    assert not decoder.pending


def test_pending_counts_unfinished_lines_and_fields() -> None:
    """A partial comment line, or a field line without its blank line, is pending."""
    for stream in [b": partial comment", b"id: 4\n", b"\xef\xbb", b"data: x\n\nretry: 5\n"]:
        decoder = SSEDecoder()
        decoder.feed(stream)
        assert decoder.pending, stream


def test_complete_lines_of_the_last_event_still_set_id_and_retry() -> None:
    """At close the unfinished event goes, but its complete ``id``/``retry`` lines count."""
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n\nid: 7\nretry: 250\ndata: lost\nid: 8") == [message("a")]
    assert decoder.close() == []
    assert (decoder.last_event_id, decoder.retry) == ("7", 250)


def test_feed_after_close_raises_and_close_is_idempotent() -> None:
    """A closed decoder refuses more bytes; closing again is harmless."""
    decoder = SSEDecoder()
    decoder.feed(b"data: a\n\n")
    assert decoder.close() == []
    assert decoder.close() == []
    with pytest.raises(ValueError, match="after close"):
        decoder.feed(b"data: b\n\n")


def test_bytes_fed_counts_every_byte_given() -> None:
    """BOM, CRs and unfinished lines count too."""
    decoder = SSEDecoder()
    chunks = [BOM[:1], BOM[1:] + b"data: a\r", b"\n\r\n", b"", b"data: b"]
    feed_all(decoder, chunks)
    assert decoder.bytes_fed == sum(map(len, chunks))


def test_decode_events_accepts_any_iterable() -> None:
    """The convenience function takes a generator of chunks."""
    assert decode_events(chunk for chunk in [b"data: a\n", b"\n"]) == [message("a")]


def test_event_record() -> None:
    """Events are immutable tuples with defaults and a spec-style ``type``."""
    event = ServerSentEvent("x")
    assert (event.data, event.event, event.id, event.retry, event.type) == (
        "x",
        "",
        "",
        None,
        "message",
    )
    assert ServerSentEvent("x", event="done").type == "done"
    with pytest.raises(AttributeError):
        event.data = "y"  # type: ignore[misc]


# --- long events and max_line_bytes ----------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [1, 7, 1000, 4096, 20_000, 100_000])
@pytest.mark.parametrize("line_end", [b"\n", b"\r\n", b"\r"])
def test_long_events_in_any_chunks(chunk_size: int, line_end: bytes) -> None:
    """Events far longer than a chunk, one long line or many short ones, decode whole."""
    long_line = b"data: " + b"x" * 50_000
    many_lines = line_end.join(b"data: %d" % n for n in range(5_000))
    stream = line_end.join([long_line, b"", many_lines, b"", b"data: end", b"", b""])
    chunks = [stream[i : i + chunk_size] for i in range(0, len(stream), chunk_size)]
    assert decode_events(chunks) == spec_decode(stream)[0]
    assert len(decode_events(chunks)) == 3


def test_long_event_blank_line_split_across_chunks() -> None:
    """In a long event, a blank line whose LFs arrive in two chunks still ends it."""
    body = b"data: " + b"y" * 40_000
    for ending in [[b"\n", b"\n"], [b"\r", b"\n\r\n"], [b"\r\n", b"\r\n"], [b"\n", b"", b"\r"]]:
        chunks = [body[:20_000], body[20_000:], *ending, b"data: z\n\n"]
        assert decode_events(chunks) == [message("y" * 40_000), message("z")], ending


def test_buffered_bytes_follows_the_unfinished_event() -> None:
    """What waits for its blank line is counted, and released when the event ends."""
    decoder = SSEDecoder()
    decoder.feed(b"data: a\n\ndata: b")
    assert decoder.buffered_bytes == len(b"data: b")
    decoder.feed(b"x" * 30_000)
    assert decoder.buffered_bytes == len(b"data: b") + 30_000
    assert decoder.feed(b"\n\n") == [message("b" + "x" * 30_000)]
    assert decoder.buffered_bytes == 0


def test_max_line_bytes_allows_lines_up_to_the_limit() -> None:
    """A line of exactly the limit passes; line ends do not count."""
    decoder = SSEDecoder(max_line_bytes=10)
    assert (
        feed_all(decoder, [b"data: 1234\r\n\r\n", b"data:1234\r", b"\r"]) == [message("1234")] * 2
    )


@pytest.mark.parametrize("chunk_size", [1, 3, 11, 64, 100_000])
def test_max_line_bytes_raises_for_a_long_line(chunk_size: int) -> None:
    """An over-long line raises whether it arrives in one chunk or in many."""
    stream = b"data: ok\n\n" + b"data: " + b"z" * 100 + b"\n\ndata: ok\n\n"
    decoder = SSEDecoder(max_line_bytes=50)
    chunks = [stream[i : i + chunk_size] for i in range(0, len(stream), chunk_size)]
    with pytest.raises(SSELineTooLongError, match="max_line_bytes=50") as error:
        feed_each(decoder, chunks)
    assert error.value.limit == 50
    assert error.value.length > 50
    assert isinstance(error.value, ValueError)


def test_max_line_bytes_raises_for_an_unfinished_line() -> None:
    """A line still arriving raises as soon as it is over the limit, before its end."""
    decoder = SSEDecoder(max_line_bytes=100)
    decoder.feed(b"data: " + b"a" * 90)
    with pytest.raises(SSELineTooLongError):
        decoder.feed(b"a" * 10)


def test_max_line_bytes_in_a_long_event() -> None:
    """Inside an event longer than the buffer threshold, lines are still measured."""
    short_lines = b"data: 0123456789\n" * 3_000
    decoder = SSEDecoder(max_line_bytes=20)
    for i in range(0, len(short_lines), 1000):
        assert decoder.feed(short_lines[i : i + 1000]) == []
    with pytest.raises(SSELineTooLongError):
        feed_each(decoder, [b"x" * 5] * 10)


def test_max_line_bytes_counts_a_line_continued_across_chunks_of_a_long_event() -> None:
    """In a long event, a line begun in one chunk and continued in the next counts whole."""
    decoder = SSEDecoder(max_line_bytes=20)
    feed_each(decoder, [b"data: 0123456789\n" * 2_000 + b"data: 01", b"23\ndata: 0123456789"])
    with pytest.raises(SSELineTooLongError):
        decoder.feed(b"01234")


def test_max_line_bytes_must_be_positive() -> None:
    """A limit below one byte is a mistake."""
    with pytest.raises(ValueError, match="max_line_bytes"):
        SSEDecoder(max_line_bytes=0)


# --- the captured plugin streams ----------------------------------------------------------


def read(name: str) -> bytes:
    return (VECTORS / name).read_bytes()


def test_classic_stream_ok() -> None:
    """The relayed OpenAI stream: 7 JSON events, the last one "[DONE]"."""
    events = decode_events([read("classic/stream_ok_urlencoded.body")])
    assert len(events) == 7
    assert events[-1] == message("[DONE]")
    chunks = [json.loads(event.data) for event in events[:-1]]
    text = "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in chunks)
    assert text == "Hello from upstream: Hello"


def test_classic_stream_special_chars() -> None:
    """Quotes, backslashes, tags and non-ASCII survive."""
    events = decode_events([read("classic/stream_special_chars.body")])
    chunks = [json.loads(event.data) for event in events[:-1]]
    text = "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in chunks)
    assert "Quote \" apos ' back\\slash <b>tag</b> & amp; café 日本 😀" in text


def test_classic_stream_upstream_error() -> None:
    """The error-word frames carry ``event: message``; words are not JSON-escaped."""
    events = decode_events([read("classic/stream_upstream_error.body")])
    assert {(event.event, event.type) for event in events} == {
        ("message", "message"),
        ("", "message"),
    }
    assert events[0].data == '{"choices":[{"delta":{"content":"Incorrect"}}]}'
    assert "[DONE]" not in [event.data for event in events]


def test_aipkit_stream_ok() -> None:
    """AIPKit pads the start with a 4096-space comment and names its events."""
    body = read("aipkit/stream_ok.body")
    assert body.startswith(b":" + b" " * 4096)
    events = decode_events([body])
    assert [event.type for event in events] == ["message_start", *["message"] * 4, "done"]
    assert (
        "".join(json.loads(event.data)["delta"] for event in events[1:-1])
        == "Hello from upstream: Hello"
    )


def test_aipkit_stream_error_has_an_id() -> None:
    """Error events carry an ``id:`` line, which the next events keep."""
    events = decode_events([read("aipkit/stream_bad_nonce.body")])
    assert [event.type for event in events] == ["error", "done"]
    assert events[0].id.startswith("err-")
    assert events[1].id == events[0].id
    assert "Security check failed" in json.loads(events[0].data)["error"]


@pytest.mark.parametrize("path", STREAM_BODIES, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_capture_decodes_the_same_cut_anywhere(path: Path) -> None:
    """Every capture gives the spec's events whole, cut at any byte, or a byte at a time."""
    body = path.read_bytes()
    expected = spec_decode(body)[0]
    assert expected
    assert decode_events([body]) == expected
    for position in range(len(body) + 1):
        assert decode_events(cut(body, [position])) == expected
    assert decode_events(every_byte(body)) == expected


# --- properties -----------------------------------------------------------------------------

# Pieces that make up SSE-like byte streams, awkward ones included: line ends, BOM bytes,
# invalid and multi-byte UTF-8, NUL, and characters that str.splitlines would break at.
PIECES = [
    b"data",
    b"data:",
    b"data: ",
    b"event: ",
    b"id:",
    b"retry: ",
    b":",
    b" ",
    b"x",
    b"7",
    "١".encode(),
    "²".encode(),
    b"\n",
    b"\r",
    b"\r\n",
    b"\n\n",
    BOM,
    b"\xef",
    b"\xbb",
    b"\xff",
    b"\x00",
    b"\x0b\x0c\x1c\x85",
    "é".encode(),
    "日".encode(),
    "😀".encode(),
    "😀".encode()[:2],
]
raw_streams = st.lists(st.sampled_from(PIECES), max_size=60).map(b"".join)

field_names = st.sampled_from(["data", "data", "data", "event", "id", "retry", "", "foo"])
field_values = st.one_of(
    st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=12),
    st.integers(0, 10**6).map(str),
)
line_ends = st.sampled_from([b"\n", b"\r", b"\r\n"])
# Streams with events longer than the decoder's 16 KiB threshold for holding them as parts.
long_streams = st.lists(
    st.sampled_from([*PIECES, b"y" * 5_000, b"data: " + b"z" * 9_000]), max_size=40
).map(b"".join)


@st.composite
def event_streams(draw: st.DrawFn) -> bytes:
    """Well-formed streams: events of fields with random line ends, maybe unfinished."""
    stream = b"".join([BOM] if draw(st.booleans()) else [])
    for _ in range(draw(st.integers(0, 6))):
        for _ in range(draw(st.integers(0, 4))):
            name = draw(field_names)
            separator = draw(st.sampled_from([":", ": ", ":  ", ""]))
            value = draw(field_values) if separator else ""
            stream += f"{name}{separator}{value}".encode() + draw(line_ends)
        stream += draw(line_ends)
    if draw(st.booleans()):
        stream += b"data: unfinished" + draw(st.sampled_from([b"", b"\n", b"\r"]))
    return stream


@st.composite
def chunkings(draw: st.DrawFn, streams: st.SearchStrategy[bytes]) -> tuple[bytes, list[bytes]]:
    stream = draw(streams)
    positions = draw(st.lists(st.integers(0, len(stream)), max_size=12))
    return stream, cut(stream, positions)


def assert_matches_spec(
    stream: bytes, chunks: Sequence[bytes], decoder: SSEDecoder | None = None
) -> None:
    expected, last_event_id, retry = spec_decode(stream)
    decoder = decoder or SSEDecoder()
    assert feed_all(decoder, chunks) == expected
    assert (decoder.last_event_id, decoder.retry) == (last_event_id, retry)
    assert decoder.bytes_fed == len(stream)


@st.composite
def plugin_streams(draw: st.DrawFn) -> bytes:
    """Streams shaped as the chat plugin sends them — comments (its padding), one-line
    ``data`` events and named events of one ``data`` line — with values that look like
    fields themselves, and the odd extra line or blank line in between."""
    value = st.text(
        st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=8
    ) | st.sampled_from(["", ":", "data: x", "event: y", " "])
    items = []
    for _ in range(draw(st.integers(0, 8))):
        shape = draw(st.sampled_from(["comment", "data", "named", "named", "extra", "blank"]))
        if shape == "comment":
            items.append(":" + draw(value) + "\n\n")
        elif shape == "data":
            items.append("data: " + draw(value) + "\n\n")
        elif shape == "named":
            items.append(f"event: {draw(value)}\ndata: {draw(value)}\n\n")
        elif shape == "extra":
            items.append(f"event: {draw(value)}\ndata: {draw(value)}\nid: {draw(value)}\n\n")
        else:
            items.append("\n")
    return "".join(items).encode()


@settings(deadline=None)
@given(chunkings(plugin_streams()))
def test_plugin_shaped_streams_decode_as_the_spec_says_in_any_chunks(
    case: tuple[bytes, list[bytes]],
) -> None:
    """The shortcuts taken for the plugin's usual events give what the spec gives."""
    assert_matches_spec(*case)


@settings(deadline=None)
@given(chunkings(event_streams()))
def test_event_streams_decode_as_the_spec_says_in_any_chunks(
    case: tuple[bytes, list[bytes]],
) -> None:
    """Well-formed streams, cut anywhere (CRLF and characters too), match the spec."""
    assert_matches_spec(*case)


@settings(deadline=None, max_examples=300)
@given(chunkings(raw_streams))
def test_any_bytes_decode_as_the_spec_says_in_any_chunks(case: tuple[bytes, list[bytes]]) -> None:
    """Arbitrary SSE-ish bytes, cut anywhere, match the spec."""
    assert_matches_spec(*case)


@settings(deadline=None, max_examples=50)
@given(chunkings(long_streams), st.sampled_from([None, 100, 6_000, 20_000]))
def test_long_events_decode_as_the_spec_says_in_any_chunks(
    case: tuple[bytes, list[bytes]], limit: int | None
) -> None:
    """Events longer than the buffering threshold, cut anywhere, match the spec."""
    stream, chunks = case
    decoder = SSEDecoder(max_line_bytes=limit)
    if limit is not None and longest_line(stream) > limit:
        with pytest.raises(SSELineTooLongError):
            feed_each(decoder, chunks)
    else:
        assert_matches_spec(stream, chunks, decoder)


@settings(deadline=None)
@given(raw_streams)
def test_byte_at_a_time_equals_all_at_once(stream: bytes) -> None:
    """The smallest chunks give the same events as the whole stream."""
    assert decode_events(every_byte(stream)) == decode_events([stream])


@settings(deadline=None, max_examples=300)
@given(chunkings(st.one_of(raw_streams, event_streams())), st.integers(1, 40))
def test_max_line_bytes_raises_exactly_for_over_long_lines(
    case: tuple[bytes, list[bytes]], limit: int
) -> None:
    """The limit raises if and only if some line, finished or not, is longer."""
    stream, chunks = case
    decoder = SSEDecoder(max_line_bytes=limit)
    if longest_line(stream) > limit:
        with pytest.raises(SSELineTooLongError):
            feed_each(decoder, chunks)
    else:
        assert feed_all(decoder, chunks) == spec_decode(stream)[0]


@pytest.mark.parametrize(
    ("stream", "inside"),
    [
        (b"", False),
        (b"data: x\n\n", False),
        (b"data: x\n", False),
        (b"data: x", True),
        (b'event: done\ndata: {"fin', True),
        (b"data: x\r", False),
        (b"\xef\xbb", True),
    ],
)
def test_inside_line_tells_a_cut_line_from_a_missing_blank_line(
    stream: bytes, inside: bool
) -> None:
    decoder = SSEDecoder()
    decoder.feed(stream)
    assert decoder.inside_line is inside
