"""An incremental decoder of server-sent events: bytes in, as they arrive, events out.

It follows the WHATWG "event stream interpretation" exactly, whatever the chunking: lines
end in LF, CRLF or CR (also when CR and LF arrive in different chunks), a leading BOM is
skipped, UTF-8 is decoded with replacement only over whole lines, and an event is
dispatched by its blank line. It is built for speed on the streams this library reads
(OpenAI ``data:`` frames relayed by the chat plugin): line scanning and decoding run in
C over whole blocks of events, and Python code runs about once per event, not per line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from itertools import repeat
from typing import Final, NamedTuple

__all__ = ["SSEDecoder", "SSELineTooLongError", "ServerSentEvent", "decode_events"]

_BOM: Final = b"\xef\xbb\xbf"
# As ints: "in" looks for an int with memchr, much faster than for a one-byte bytes.
_CR: Final = 0x0D
_LF: Final = 0x0A
# Once line ends are normalised to LF, a blank line is "\n\n": every event ends there.
_EVENT_END: Final = b"\n\n"
_DATA_PREFIX: Final = b"data: "
_DATA_PREFIX_TEXT: Final = "data: "
_EVENT_PREFIX_TEXT: Final = "event: "
_DATA_EVENT_SEPARATOR: Final = b"\n\ndata: "
# An event still unfinished after this many bytes is held as a list of chunks, so that
# a huge event arriving in small chunks costs linear time, not quadratic.
_LONG_EVENT_BYTES: Final = 16 << 10
# From this many events on, map() and zip() build them faster than a loop.
_MANY_EVENTS: Final = 16


class ServerSentEvent(NamedTuple):
    """One dispatched event.

    Attributes:
        data: the event's ``data`` lines joined with ``"\\n"``.
        event: the ``event`` field as sent; ``""`` when the event had none.
        id: the last event id in effect when the event was dispatched (ids persist
            from one event to the next, as the spec says).
        retry: the reconnection time in milliseconds last set by a ``retry`` field of
            the stream, or ``None`` if none was; like ``id`` it stays in effect.
    """

    data: str
    event: str = ""
    id: str = ""
    retry: int | None = None

    @property
    def type(self) -> str:
        """The event type: ``event``, or ``"message"`` (the spec's default) when empty."""
        return self.event or "message"


# ``tuple.__new__`` builds an event in C; the NamedTuple's own ``__new__`` is Python code
# and would cost a function call per event on the hot path.
_EventFields = tuple[str, str, str, int | None]
_new_event: Final[Callable[[type[ServerSentEvent], _EventFields], ServerSentEvent]] = tuple.__new__


class SSELineTooLongError(ValueError):
    """A line of the stream, or the unfinished line at its end, exceeds ``max_line_bytes``."""

    def __init__(self, limit: int, length: int) -> None:
        super().__init__(
            f"server-sent events line of at least {length} bytes exceeds max_line_bytes={limit}"
        )
        self.limit = limit
        self.length = length


class SSEDecoder:
    """Decode one event stream incrementally.

    Feed it the body's bytes in whatever chunks the network delivers; each
    :meth:`feed` returns the events those bytes completed, and :meth:`close` ends the
    stream. Bytes after the last blank line wait, undecoded, for the rest of their event.

    Args:
        max_line_bytes: the longest line accepted, in bytes without its line end;
            :meth:`feed` raises :class:`SSELineTooLongError` as soon as a line, complete
            or not, is longer. ``None`` accepts any length.
    """

    __slots__ = (
        "_after_cr",
        "_bom_prefix",
        "_bytes_fed",
        "_closed",
        "_last_event_id",
        "_long_event",
        "_long_event_bytes",
        "_max_line_bytes",
        "_needs_care",
        "_partial_line_bytes",
        "_retry",
        "_stream_start",
        "_tail",
    )

    def __init__(self, *, max_line_bytes: int | None = None) -> None:
        if max_line_bytes is not None and max_line_bytes < 1:
            raise ValueError(f"max_line_bytes must be a positive number, got {max_line_bytes}")
        self._max_line_bytes = max_line_bytes
        self._bytes_fed = 0
        self._closed = False
        # Until the first bytes that cannot begin a BOM, a BOM may still be arriving.
        self._stream_start = True
        self._bom_prefix = b""
        # The previous chunk ended in CR: an LF opening the next one ends the same line.
        self._after_cr = False
        # The bytes after the last blank line, line ends already rewritten to LF. Short
        # ones are concatenated with the next chunk; an event longer than
        # _LONG_EVENT_BYTES collects in _long_event instead, to be joined once at its end.
        self._tail = b""
        self._long_event: list[bytes] = []
        self._long_event_bytes = 0
        # In a long event with max_line_bytes, the length of its unfinished last line.
        self._partial_line_bytes = 0
        self._last_event_id = ""
        self._retry: int | None = None
        # Whether feed() must leave its fast path: at the stream start, after a CR, in a
        # long event, or once closed.
        self._needs_care = True

    @property
    def bytes_fed(self) -> int:
        """How many bytes :meth:`feed` has received, exactly as given."""
        return self._bytes_fed

    @property
    def last_event_id(self) -> str:
        """The last event id set by the stream (a reconnection sends it as ``Last-Event-ID``)."""
        return self._last_event_id

    @property
    def retry(self) -> int | None:
        """The reconnection time in milliseconds last set by the stream, or ``None``."""
        return self._retry

    @property
    def buffered_bytes(self) -> int:
        """How many bytes wait for the blank line that ends their event."""
        return len(self._tail) + self._long_event_bytes + len(self._bom_prefix)

    @property
    def pending(self) -> bool:
        """Whether the stream so far stops inside an event.

        True when an unfinished line, or a field line (``data``, ``event``, …) not yet
        followed by its blank line, remains; comment and blank lines alone do not count.
        Checked after the last chunk, it tells a stream that was cut mid-event (whose
        last event :meth:`close` must discard) from one that ended cleanly.
        """
        if self._bom_prefix:
            return True
        held = self._held_bytes()
        if not held:
            return False
        *complete, unfinished = held.decode("utf-8", "replace").split("\n")
        return bool(unfinished) or any(line and line[0] != ":" for line in complete)

    @property
    def inside_line(self) -> bool:
        """Whether the stream so far stops inside a line (no line end after its last byte):
        checked after the last chunk, it tells a stream cut mid-line from one whose last
        event lacks only its blank line."""
        if self._bom_prefix:
            return True
        held = self._held_bytes()
        return bool(held) and not held.endswith(b"\n")

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """Take the next bytes of the stream; return the events they complete, in order.

        Raises:
            SSELineTooLongError: a line exceeds ``max_line_bytes``.
            ValueError: the decoder was closed.
        """
        self._bytes_fed += len(chunk)
        if self._needs_care or _CR in chunk:
            chunk = self._prepare(chunk)
            if self._long_event:
                return self._feed_long_event(chunk)
        # Everything before the last blank line is whole events. The tail starts a line,
        # and a blank line may begin on its last byte.
        tail = self._tail
        if tail:
            buffer = tail + chunk
            event_end = buffer.rfind(_EVENT_END, len(tail) - 1)
        else:
            buffer = chunk
            event_end = chunk.rfind(_EVENT_END)
        # A line cannot be longer than the buffer it sits in.
        if self._max_line_bytes is not None and len(buffer) > self._max_line_bytes:
            self._check_line_lengths(buffer, self._max_line_bytes)
        if event_end < 0:
            if len(buffer) > _LONG_EVENT_BYTES:
                self._begin_long_event(buffer)
            else:
                self._tail = buffer
            return []
        self._tail = buffer[event_end + 2 :]
        # The commonest case when chunks are small: one event of one "data: " line.
        if buffer.startswith(_DATA_PREFIX) and buffer.find(b"\n") == event_end:
            data = buffer[len(_DATA_PREFIX) : event_end].decode("utf-8", "replace")
            return [_new_event(ServerSentEvent, (data, "", self._last_event_id, self._retry))]
        return self._decode_events(buffer[:event_end])

    def close(self) -> list[ServerSentEvent]:
        """End the stream; return the events it completes, which is always none.

        The spec discards an event whose blank line never came, but its complete lines
        still count: an ``id`` or ``retry`` among them updates :attr:`last_event_id` and
        :attr:`retry`. Check :attr:`pending` first to learn whether an event was cut.
        The list return keeps :meth:`close` symmetric with :meth:`feed`; :meth:`feed`
        raises after it.
        """
        if self._closed:
            return []
        # The held bytes hold no blank line, so nothing in them can dispatch.
        held = self._held_bytes()
        if held:
            for line in held.decode("utf-8", "replace").split("\n")[:-1]:
                name, _, value = line.partition(":")
                if value[:1] == " ":
                    value = value[1:]
                if name == "id" and "\0" not in value:
                    self._last_event_id = value
                elif name == "retry" and value.isascii() and value.isdigit():
                    self._retry = int(value)
        self._closed = self._needs_care = True
        self._tail = self._bom_prefix = b""
        self._long_event = []
        self._long_event_bytes = 0
        return []

    def _held_bytes(self) -> bytes:
        return b"".join(self._long_event) if self._long_event else self._tail

    def _prepare(self, chunk: bytes) -> bytes:
        """Return ``chunk`` without a BOM at the stream start and with LF line ends only."""
        if self._closed:
            raise ValueError("SSEDecoder.feed() called after close()")
        if self._stream_start:
            chunk = self._skip_bom(chunk)
        if chunk and (self._after_cr or _CR in chunk):
            chunk = self._normalize_line_ends(chunk)
        self._needs_care = self._stream_start or self._after_cr or bool(self._long_event)
        return chunk

    def _skip_bom(self, chunk: bytes) -> bytes:
        """Drop a UTF-8 BOM at the start of the stream, even one split across chunks."""
        head = self._bom_prefix + chunk
        if len(head) < len(_BOM) and _BOM.startswith(head):
            self._bom_prefix = head
            return b""
        self._stream_start = False
        self._bom_prefix = b""
        return head[len(_BOM) :] if head.startswith(_BOM) else head

    def _normalize_line_ends(self, chunk: bytes) -> bytes:
        """Rewrite CRLF and CR as LF, pairing a CR that ended the previous chunk."""
        if self._after_cr:
            self._after_cr = False
            if chunk[0] == _LF:
                chunk = chunk[1:]
        if _CR not in chunk:
            return chunk
        ends_line = chunk[-1] in b"\r\n"
        self._after_cr = chunk[-1] == _CR
        # For bytes, splitlines breaks at CR, LF and CRLF only, in one pass in C.
        lines = b"\n".join(chunk.splitlines())
        return lines + b"\n" if ends_line else lines

    def _begin_long_event(self, buffer: bytes) -> None:
        """Hold ``buffer``, the start of an event too long to re-copy on every chunk."""
        self._tail = b""
        self._long_event = [buffer]
        self._long_event_bytes = len(buffer)
        self._partial_line_bytes = len(buffer) - buffer.rfind(b"\n") - 1
        self._needs_care = True

    def _feed_long_event(self, chunk: bytes) -> list[ServerSentEvent]:
        """Collect one more chunk of a long event; decode once its blank line has come."""
        limit = self._max_line_bytes
        if limit is not None:
            self._check_line_lengths(chunk, limit, self._partial_line_bytes)
            last_end = chunk.rfind(b"\n")
            if last_end < 0:
                self._partial_line_bytes += len(chunk)
            else:
                self._partial_line_bytes = len(chunk) - last_end - 1
        parts = self._long_event
        event_end = chunk.rfind(_EVENT_END)
        if event_end < 0:
            if not (chunk[:1] == b"\n" and parts[-1][-1] == _LF):
                if chunk:
                    parts.append(chunk)
                    self._long_event_bytes += len(chunk)
                return []
            event_end = -1  # the blank line begins on the last byte held
        parts.append(chunk)
        buffer = b"".join(parts)
        event_end += self._long_event_bytes
        self._long_event = []
        self._long_event_bytes = 0
        self._needs_care = self._after_cr
        self._tail = buffer[event_end + 2 :]
        return self._decode_events(buffer[:event_end])

    @staticmethod
    def _check_line_lengths(lines: bytes, limit: int, continued: int = 0) -> None:
        """Raise if a line in ``lines`` (LF-only) is over ``limit`` bytes.

        ``lines`` starts a line, or continues one already ``continued`` bytes long.
        """
        first_end = lines.find(b"\n")
        if first_end < 0:
            first_end = len(lines)
        last_end = lines.rfind(b"\n")
        longest = max(continued + first_end, len(lines) - last_end - 1)
        # The lines between the first and the last LF can only be too long if their
        # span is; only then are they measured one by one.
        if longest <= limit < last_end - first_end - 1:
            longest = max(map(len, lines[first_end + 1 : last_end].split(b"\n")))
        if longest > limit:
            raise SSELineTooLongError(limit, longest)

    def _decode_events(self, block: bytes) -> list[ServerSentEvent]:
        """Decode the events of ``block + b"\\n\\n"``: whole LF-only lines, then a blank one.

        LF never occurs inside a UTF-8 sequence, so decoding whole lines, together or
        one by one, gives the same text, replacement characters included.
        """
        last_event_id = self._last_event_id
        retry = self._retry
        # Fast path: every event is one "data: " line, as in OpenAI streams. The block
        # then splits into the payloads at each "\n\ndata: ", with no LF left in them.
        if block.startswith(_DATA_PREFIX):
            payloads = block.split(_DATA_EVENT_SEPARATOR)
            if _LF not in b"".join(payloads):
                payloads[0] = payloads[0][len(_DATA_PREFIX) :]
                try:
                    # Strict decoding is the fastest call; invalid UTF-8 is rare. For a few
                    # events a loop beats the set-up cost of map() and zip().
                    if len(payloads) < _MANY_EVENTS:
                        events = []
                        for payload in payloads:
                            data = payload.decode()
                            events.append(
                                _new_event(ServerSentEvent, (data, "", last_event_id, retry))
                            )
                        return events
                    texts = map(bytes.decode, payloads)
                    fields = zip(texts, repeat(""), repeat(last_event_id), repeat(retry))
                    return list(map(_new_event, repeat(ServerSentEvent), fields))
                except UnicodeDecodeError:
                    texts = map(str, payloads, repeat("utf-8"), repeat("replace"))
                    fields = zip(texts, repeat(""), repeat(last_event_id), repeat(retry))
                    return list(map(_new_event, repeat(ServerSentEvent), fields))
        return self._decode_lines(block.decode("utf-8", "replace"))

    def _decode_lines(self, text: str) -> list[ServerSentEvent]:
        """Decode the events of ``text + "\\n\\n"`` field by field: the spec's algorithm."""
        last_event_id = self._last_event_id
        retry = self._retry
        events: list[ServerSentEvent] = []
        add_event = events.append
        # Each "\n\n" is a line end and a blank line: the events end there, so each piece
        # between them is the lines of one event (a piece starting with LF has a blank
        # line first, which dispatches nothing).
        for piece in text.split("\n\n"):
            # The usual events first, each a single slice: one data line, a named event
            # of one data line, a comment alone (the padding some sites open with).
            if piece.startswith(_DATA_PREFIX_TEXT):
                if "\n" not in piece:
                    data = piece[len(_DATA_PREFIX_TEXT) :]
                    add_event(_new_event(ServerSentEvent, (data, "", last_event_id, retry)))
                    continue
            elif piece.startswith(_EVENT_PREFIX_TEXT):
                name_end = piece.find("\n")
                if piece.startswith(_DATA_PREFIX_TEXT, name_end + 1) and (
                    piece.find("\n", name_end + 1) < 0
                ):
                    event_type = piece[len(_EVENT_PREFIX_TEXT) : name_end]
                    data = piece[name_end + 1 + len(_DATA_PREFIX_TEXT) :]
                    add_event(_new_event(ServerSentEvent, (data, event_type, last_event_id, retry)))
                    continue
            elif piece.startswith(":") and "\n" not in piece:
                continue
            data_lines: list[str] = []
            event_type = ""
            for line in piece.split("\n"):
                # The usual spellings first; the spec's general parsing below.
                if line.startswith(_DATA_PREFIX_TEXT):
                    data_lines.append(line[len(_DATA_PREFIX_TEXT) :])
                    continue
                if line.startswith("event: "):
                    event_type = line[7:]
                    continue
                if line.startswith("id: ") and "\0" not in line:
                    last_event_id = line[4:]
                    continue
                if not line:
                    if data_lines:
                        data = "\n".join(data_lines)
                        add_event(
                            _new_event(ServerSentEvent, (data, event_type, last_event_id, retry))
                        )
                        data_lines = []
                    event_type = ""
                    continue
                if line[0] == ":":
                    continue  # a comment
                name, _, value = line.partition(":")
                if value[:1] == " ":
                    value = value[1:]
                if name == "data":
                    data_lines.append(value)
                elif name == "event":
                    event_type = value
                elif name == "id":
                    if "\0" not in value:
                        last_event_id = value
                elif name == "retry" and value.isascii() and value.isdigit():
                    retry = int(value)
            if data_lines:
                data = "\n".join(data_lines)
                add_event(_new_event(ServerSentEvent, (data, event_type, last_event_id, retry)))
        self._last_event_id = last_event_id
        self._retry = retry
        return events


def decode_events(chunks: Iterable[bytes]) -> list[ServerSentEvent]:
    """Decode a whole stream given as chunks of bytes; return all its events."""
    decoder = SSEDecoder()
    events: list[ServerSentEvent] = []
    for chunk in chunks:
        events += decoder.feed(chunk)
    events += decoder.close()
    return events
