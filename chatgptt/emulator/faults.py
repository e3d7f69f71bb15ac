"""Scripted faults: what can go wrong on the way to the site, and the plan that serves them.

A :class:`Fault` says what to break and for how many requests; a :class:`FaultPlan` hands
each request the first pending fault that fits it. :func:`parse_fault` and
:func:`format_fault` convert faults to and from the command line's ``--fault`` specs, e.g.
``status=503,times=2,retry_after=1`` or ``stall=5,where=inside,after_tokens=2``.

The kinds (token positions count streamed content pieces; JSON bodies have none):

- ``status``: answer HTTP ``status`` (optional ``retry_after``, ``body``); 520-527 get
  Cloudflare's origin-error page.
- ``challenge``: a Cloudflare challenge page, 403 (default) or 503.
- ``expire_nonce``: rotate the nonce first, so this request's nonce is stale.
- ``drop``: close the connection after ``after_bytes`` body bytes or ``after_tokens``
  pieces (right after the headers when neither is given): the body breaks off. (A
  fixed-length body cut at or past its end arrives whole; streams always break.)
- ``stall``: wait ``seconds`` before handling (``where=before``) or after ``after_tokens``
  pieces (``where=inside``); ends early when the client leaves or the server stops.
- ``malformed``: ``invalid_json``, ``limited``, ``no_done``, ``truncated_end`` or
  ``invalid_utf8`` renditions of the answer.
- ``error_words``: the plugin's upstream-error stream with ``message`` (``limited`` ends it
  with ``[LIMITED]``); in JSON mode the error JSON.
- ``control``: a control frame with ``flag`` (and ``message``); in JSON mode its JSON form.
- ``error_object``: a ``{"error":{"message":…}}`` frame; in JSON mode the error JSON.
- ``linger``: the answer's frames up to its finish frame, then, instead of ``[DONE]``, a
  keep-alive comment (``:``) every ``seconds`` (0.2 by default) until the client leaves — a
  site that never says the stream is over (``linger``, ``linger=1``). Streams only.
- ``empty_stream``: a 200 reply with the plugin's event-stream headers and no events: its
  body is ``nothing`` (the default: the real plugin on a PHP without curl), ``php_fatal``
  (PHP's fatal-error page, with ``display_errors`` on) or ``challenge`` (a Cloudflare page).
- ``cut``: the reply sent as PHP's built-in server sends every reply — no length, no
  chunking — and its connection closed after ``after_bytes`` body bytes or ``after_tokens``
  pieces (right after the headers when neither is given): the client sees a clean end.
  (``--framing close`` sends every reply that way; ``drop`` then cuts them like this too.)
- ``firewall``: a WordPress firewall's block or challenge page in place of the site, with
  the firewall's own status (``status`` overrides it) and headers: ``cloudflare``, ``sucuri``
  (its JavaScript check, 200), ``sucuri_block``, ``wordfence`` (503), ``wordfence_waf``,
  ``solid_security``, ``cloudfront``, ``imperva``, ``ddos_guard``; e.g.
  ``firewall=wordfence,target=any``. See :mod:`chatgptt.emulator.firewalls`.

On an AIPKit site (``dialect="aipkit"``) a chat takes up to three AJAX requests, which
``target`` can pick: ``nonce`` (``aipkit_get_frontend_chat_nonce``), ``cache`` (step 1,
``aipkit_cache_sse_message``) and ``stream`` (step 2, ``aipkit_frontend_chat_stream``);
``ajax`` hits the first AJAX request of any kind, ``page`` the landing page. The kinds that
shape an answer only ever hit the stream, and so do, with an ``ajax`` or ``any`` target,
faults placed by token position (``drop`` or ``cut`` with ``after_tokens``, ``stall``
with ``where=inside``): a fault suite written for the classic dialect keeps its meaning. On the
stream the kinds above become the plugin's own forms (token positions count
``{"delta":…}`` frames):

- ``malformed``: ``invalid_json`` (an unfinished delta frame), ``no_done`` (the stream
  closes after the last delta), ``truncated_end`` (the ``done`` frame cut in half),
  ``invalid_utf8`` (a delta with bytes that are not UTF-8); ``limited`` has no AIPKit form.
- ``error_words``: the upstream-error relay, ``message_start`` then ``error`` "API Error:
  <message> (Code: invalid_api_key)" and a close without ``done``.
- ``error_object``: an upstream error chunk, ``message_start`` then ``error`` "<message>",
  no ``done``.
- ``control``: ``tokenLimitReached`` is the quota error (below); ``ipBanned``,
  ``messageFlagged`` (banned words), ``modflag`` (moderation) and ``pineconeError`` are
  ``error`` + ``done`` with the plugin's messages.

and five kinds exist for AIPKit streams only:

- ``error_event``: an ``error`` frame with ``message``, ``where=before`` (default: before
  ``message_start``) or ``where=inside`` (after ``after_tokens`` deltas); followed by
  ``done`` unless ``done=false`` (default: ``done`` before, none inside, as the plugin does).
- ``quota``: the quota error, ``error`` + ``done`` with ``quota_notice`` (``notice=false``:
  without it, as before 2.4.5); ``message`` replaces "You have reached your quota…".
- ``warning``: a non-fatal ``warning`` frame after ``after_tokens`` deltas; the answer goes on.
- ``named_event``: any other named event (``event=NAME``, ``data=JSON``, default ``{}``):
  ``status``, ``citations``, ``grounding_metadata`` or one no client knows; ``where=before``
  puts it before ``message_start``, else after ``after_tokens`` deltas.
- ``done_data``: the ``done`` frame carries ``data`` (a JSON object; default: ``finished``
  with ``grounding_metadata`` and ``citations``).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable
from typing import Any, Literal, get_args

import attrs

from chatgptt.emulator.firewalls import FIREWALL_NAMES, FirewallName

__all__ = [
    "AIPKIT_ONLY_KINDS",
    "AJAX_ONLY_KINDS",
    "ANSWER_KINDS",
    "CONTROL_FLAGS",
    "DIALECT_REQUESTS",
    "EMPTY_STREAM_CONTENTS",
    "FAULT_KINDS",
    "MALFORMED_VARIANTS",
    "ControlFlag",
    "EmptyStreamContent",
    "Fault",
    "FaultKind",
    "FaultPlan",
    "MalformedVariant",
    "RequestKind",
    "Target",
    "fault_syntax",
    "format_fault",
    "never_fires",
    "parse_fault",
    "validation_message",
]

FaultKind = Literal[
    "status",
    "challenge",
    "expire_nonce",
    "drop",
    "stall",
    "malformed",
    "error_words",
    "control",
    "error_object",
    "error_event",
    "quota",
    "warning",
    "named_event",
    "done_data",
    "linger",
    "empty_stream",
    "cut",
    "firewall",
]
#: Which requests a fault may hit: the landing page, the AJAX endpoint, either, or one of
#: an AIPKit chat's AJAX requests (``cache``: step 1, ``stream``: step 2, ``nonce``).
Target = Literal["page", "ajax", "any", "cache", "stream", "nonce"]
#: What a request is, for matching faults against it (``ajax``: any other AJAX request).
RequestKind = Literal["page", "ajax", "cache", "stream", "nonce"]
MalformedVariant = Literal["invalid_json", "limited", "no_done", "truncated_end", "invalid_utf8"]
ControlFlag = Literal["tokenLimitReached", "messageFlagged", "ipBanned", "pineconeError", "modflag"]
StallPoint = Literal["before", "inside"]
#: The body of an ``empty_stream`` reply.
EmptyStreamContent = Literal["nothing", "php_fatal", "challenge"]

FAULT_KINDS: tuple[FaultKind, ...] = get_args(FaultKind)
TARGETS: tuple[Target, ...] = get_args(Target)
MALFORMED_VARIANTS: tuple[MalformedVariant, ...] = get_args(MalformedVariant)
CONTROL_FLAGS: tuple[ControlFlag, ...] = get_args(ControlFlag)
STALL_POINTS: tuple[StallPoint, ...] = get_args(StallPoint)
EMPTY_STREAM_CONTENTS: tuple[EmptyStreamContent, ...] = get_args(EmptyStreamContent)
#: Kinds that shape a chat answer or its nonce check: they never hit a page request.
AJAX_ONLY_KINDS: frozenset[FaultKind] = frozenset(
    {
        "expire_nonce",
        "malformed",
        "error_words",
        "control",
        "error_object",
        "linger",
        "empty_stream",
    }
)
#: Kinds for AIPKit streams only: they hit step 2 and nothing else.
AIPKIT_ONLY_KINDS: frozenset[FaultKind] = frozenset(
    {"error_event", "quota", "warning", "named_event", "done_data"}
)
#: Kinds that shape an answer: on an AIPKit site they hit the stream, never step 1 or the
#: nonce endpoint.
ANSWER_KINDS: frozenset[FaultKind] = (AJAX_ONLY_KINDS - {"expire_nonce"}) | AIPKIT_ONLY_KINDS
_EVENT_NAME = re.compile(r"[A-Za-z0-9_.\-]+")

# The parameters each kind takes besides target and times; the first is its "kind=VALUE".
_PARAMETERS: dict[FaultKind, tuple[str, ...]] = {
    "status": ("status", "retry_after", "body"),
    "challenge": ("status",),
    "expire_nonce": (),
    "drop": ("after_bytes", "after_tokens"),
    "stall": ("seconds", "where", "after_tokens"),
    "malformed": ("variant", "after_tokens"),
    "error_words": ("message", "limited"),
    "control": ("flag", "message"),
    "error_object": ("message",),
    "error_event": ("message", "where", "after_tokens", "done"),
    "quota": ("message", "notice"),
    "warning": ("message", "after_tokens"),
    "named_event": ("event", "data", "where", "after_tokens"),
    "done_data": ("data",),
    "linger": ("seconds",),
    "empty_stream": ("content",),
    "cut": ("after_bytes", "after_tokens"),
    "firewall": ("firewall", "status"),
}
_PRIMARY: dict[FaultKind, str] = {
    "status": "status",
    "challenge": "status",
    "stall": "seconds",
    "malformed": "variant",
    "error_words": "message",
    "control": "flag",
    "error_object": "message",
    "error_event": "message",
    "quota": "message",
    "warning": "message",
    "named_event": "event",
    "done_data": "data",
    "linger": "seconds",
    "empty_stream": "content",
    "firewall": "firewall",
}
_REQUIRED: dict[FaultKind, tuple[str, ...]] = {
    "status": ("status",),
    "stall": ("seconds",),
    "malformed": ("variant",),
    "control": ("flag",),
    "named_event": ("event",),
    "firewall": ("firewall",),
}
_OPTIONAL_FIELDS = (
    "status",
    "retry_after",
    "body",
    "after_bytes",
    "after_tokens",
    "seconds",
    "where",
    "variant",
    "message",
    "limited",
    "flag",
    "done",
    "notice",
    "event",
    "data",
    "content",
    "firewall",
)
_DEFAULTS: dict[str, object] = dict.fromkeys(_OPTIONAL_FIELDS) | {"limited": False, "notice": True}
_BOOLEANS = frozenset({"limited", "done", "notice"})


def _non_negative(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValueError(f"{attribute.name} must be a non-negative number, got {value!r}")


@attrs.frozen(kw_only=True)
class Fault:
    """One scripted fault.

    Args:
        kind: what goes wrong (the module's docstring lists them).
        target: ``ajax`` (default), ``page``, ``any``, or on an AIPKit site ``cache``,
            ``stream`` or ``nonce``. Kinds in :data:`AJAX_ONLY_KINDS` never hit a page, those
            in :data:`ANSWER_KINDS` only the request that answers (:meth:`hits`).
        times: how many matching requests it hits; ``None`` hits every one.
        status: HTTP status (``status``: required; ``challenge``: 403 or 503).
        retry_after: ``Retry-After`` value, seconds or an HTTP date (``status``).
        body: response body instead of the default page (``status``).
        after_bytes: body bytes sent before the connection drops (``drop``).
        after_tokens: content pieces sent before the drop, the stall, or the malformed frame.
        seconds: how long a ``stall`` lasts.
        where: ``before`` the headers (default) or ``inside`` the body (``stall``);
            before ``message_start`` or inside the answer (``error_event``, ``named_event``).
        variant: which ``malformed`` stream to send.
        message: error text (``error_words``, ``error_object``, ``error_event``, ``quota``,
            ``warning``) or control ``msg``.
        limited: end the ``error_words`` stream with ``data: [LIMITED]``.
        flag: the ``control`` frame's flag.
        done: whether ``done`` follows an ``error_event`` (default: as the plugin does).
        notice: whether a ``quota`` error carries ``quota_notice``.
        event: a ``named_event``'s name.
        data: JSON text: a ``named_event``'s data or a ``done_data`` payload.
        content: the body of an ``empty_stream`` reply.
        firewall: whose page a ``firewall`` fault sends.
    """

    kind: FaultKind = attrs.field(validator=attrs.validators.in_(FAULT_KINDS))
    target: Target = attrs.field(default="ajax", validator=attrs.validators.in_(TARGETS))
    times: int | None = attrs.field(default=1)
    status: int | None = None
    retry_after: str | None = None
    body: str | None = None
    after_bytes: int | None = attrs.field(default=None, validator=_non_negative)
    after_tokens: int | None = attrs.field(default=None, validator=_non_negative)
    seconds: float | None = attrs.field(default=None, validator=_non_negative)
    where: StallPoint | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.in_(STALL_POINTS))
    )
    variant: MalformedVariant | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(attrs.validators.in_(MALFORMED_VARIANTS)),
    )
    message: str | None = None
    limited: bool = False
    flag: ControlFlag | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.in_(CONTROL_FLAGS))
    )
    done: bool | None = None
    notice: bool = True
    event: str | None = None
    data: str | None = None
    content: EmptyStreamContent | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(attrs.validators.in_(EMPTY_STREAM_CONTENTS)),
    )
    firewall: FirewallName | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.in_(FIREWALL_NAMES))
    )

    @times.validator
    def _check_times(self, _attribute: attrs.Attribute[int | None], value: int | None) -> None:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"times must be a positive integer or None, got {value!r}")
        if value is not None and value < 1:
            raise ValueError(
                f"times must be at least 1 (or None, times=every on the command line, for every "
                f"request), got {value}"
            )

    def __attrs_post_init__(self) -> None:
        allowed = _PARAMETERS[self.kind]
        for name in _OPTIONAL_FIELDS:
            if getattr(self, name) != _DEFAULTS[name] and name not in allowed:
                raise ValueError(
                    f"{self.kind} fault takes no {name!r} (it takes: {', '.join(allowed) or '-'})"
                )
        for name in _REQUIRED.get(self.kind, ()):
            if getattr(self, name) is None:
                raise ValueError(f"{self.kind} fault needs {name!r}")
        if self.status is not None and not 100 <= self.status <= 599:
            raise ValueError(f"status must be an HTTP status 100-599, got {self.status}")
        if self.kind == "linger" and self.seconds is not None and self.seconds <= 0:
            raise ValueError(f"a linger fault's seconds must be positive, got {self.seconds}")
        if self.kind == "challenge" and self.status not in (None, 403, 503):
            raise ValueError(f"a challenge answers 403 or 503, got {self.status}")
        if self.kind in AJAX_ONLY_KINDS and self.target == "page":
            raise ValueError(f"{self.kind} fault only applies to the AJAX endpoint, not a page")
        if (
            self.kind in ("drop", "cut")
            and self.after_bytes is not None
            and self.after_tokens is not None
        ):
            raise ValueError(f"{self.kind} fault takes after_bytes or after_tokens, not both")
        self._check_aipkit_fields()

    def _check_aipkit_fields(self) -> None:
        if self.kind in ANSWER_KINDS and self.target in ("cache", "nonce"):
            raise ValueError(f"{self.kind} fault shapes an answer: it only hits the stream")
        if self.kind in AIPKIT_ONLY_KINDS and self.target == "page":
            raise ValueError(f"{self.kind} fault only applies to an AIPKit stream")
        if (
            self.kind in ("error_event", "named_event")
            and self.where == "before"
            and self.after_tokens is not None
        ):
            raise ValueError(f"{self.kind} fault: after_tokens needs where=inside")
        if self.event is not None and not _EVENT_NAME.fullmatch(self.event):
            raise ValueError(f"event must be a name of letters, digits, _ . -, got {self.event!r}")
        if self.data is not None:
            try:
                value = json.loads(self.data)
            except ValueError:
                raise ValueError(f"data must be JSON text, got {self.data!r}") from None
            if "\n" in self.data or "\r" in self.data:
                raise ValueError("data must be one line of JSON (a newline ends an SSE field)")
            if self.kind == "done_data" and not isinstance(value, dict):
                raise ValueError(f"done_data's data must be a JSON object, got {self.data!r}")

    @property
    def _by_token(self) -> bool:
        """Placed by token position: it means the request that streams the answer."""
        return (self.kind in ("drop", "cut") and self.after_tokens is not None) or (
            self.kind == "stall" and self.where == "inside"
        )

    def hits(self, request: RequestKind) -> bool:
        """Whether this fault may hit a request of this kind.

        ``ajax`` and ``any`` targets hit AIPKit's AJAX requests too, but an answer-shaping
        kind or a fault placed by token position waits for the request that answers (an
        AIPKit stream, a classic chat POST), and an AIPKit-only kind for an AIPKit stream.
        """
        if request == "page" and self.kind in AJAX_ONLY_KINDS | AIPKIT_ONLY_KINDS:
            return False
        if request in ("cache", "nonce") and self.kind in ANSWER_KINDS:
            return False
        if request in ("cache", "nonce") and self.target in ("ajax", "any") and self._by_token:
            return False
        if request == "ajax" and self.kind in AIPKIT_ONLY_KINDS:
            return False
        if self.target == "any":
            return True
        if self.target == "ajax":
            return request != "page"
        return self.target == request


#: The requests each dialect's site answers (what :meth:`Fault.hits` is asked about).
DIALECT_REQUESTS: dict[str, tuple[RequestKind, ...]] = {
    "classic": ("page", "ajax"),
    "aipkit": ("page", "nonce", "cache", "stream"),
}


def never_fires(fault: Fault, dialect: str) -> str | None:
    """Why ``fault`` can never fire on a site of ``dialect`` (``None``: it can).

    A fault a site cannot act on would let a fault suite run against the wrong dialect
    pass while testing nothing; the command line refuses it.
    """
    if not any(fault.hits(request) for request in DIALECT_REQUESTS[dialect]):
        if dialect == "classic":
            return "it hits only AIPKit's requests or events (an AIPKit site: --dialect aipkit)"
        return "it hits no request of an AIPKit site"
    if dialect == "aipkit" and fault.kind == "malformed" and fault.variant == "limited":
        return "the AIPKit plugin has no [LIMITED] frame (it is the classic dialect's)"
    return None


@attrs.define
class _Entry:
    fault: Fault
    remaining: int | None


class FaultPlan:
    """The pending faults, in order. Thread-safe: tests add faults from their own thread.

    Each request takes the first pending fault that fits it and uses up one of its ``times``.
    """

    def __init__(self, faults: Iterable[Fault] = ()) -> None:
        self._lock = threading.Lock()
        self._entries = [_Entry(fault, fault.times) for fault in faults]

    def add(self, fault: Fault) -> None:
        """Queue ``fault`` after the faults already pending."""
        with self._lock:
            self._entries.append(_Entry(fault, fault.times))

    def clear(self) -> None:
        """Drop every pending fault."""
        with self._lock:
            self._entries.clear()

    @property
    def pending(self) -> tuple[Fault, ...]:
        """The faults still to hit, each with ``times`` set to the hits it has left."""
        with self._lock:
            return tuple(attrs.evolve(e.fault, times=e.remaining) for e in self._entries)

    def take(self, request: RequestKind) -> Fault | None:
        """The fault for this request, if any, using up one of its hits."""
        with self._lock:
            for index, entry in enumerate(self._entries):
                if not entry.fault.hits(request):
                    continue
                if entry.remaining is not None:
                    entry.remaining -= 1
                    if entry.remaining == 0:
                        del self._entries[index]
                return entry.fault
        return None


def validation_message(exc: BaseException) -> str:
    """The readable part of a validation error (attrs puts its message first in ``args``)."""
    first = exc.args[0] if exc.args else None
    return first if isinstance(first, str) else str(exc)


def _split_unescaped(text: str, separator: str) -> list[str]:
    """``text`` split at each ``separator`` not preceded by a backslash; escapes kept."""
    parts, current, escaped = [], [], False
    for char in text:
        if escaped:
            current.append("\\" + char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if escaped:
        current.append("\\")
    parts.append("".join(current))
    return parts


def _unescape(text: str) -> str:
    out, escaped = [], False
    for char in text:
        if escaped or char != "\\":
            out.append(char)
            escaped = False
        else:
            escaped = True
    if escaped:
        out.append("\\")
    return "".join(out)


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def _convert(kind: FaultKind, name: str, raw: str) -> object:
    """The typed value of parameter ``name`` written as ``raw`` in a spec."""
    try:
        if name in ("status", "after_bytes", "after_tokens"):
            return int(raw)
        if name == "times":
            return None if raw.lower() == "every" else int(raw)
        if name == "seconds":
            return float(raw)
    except ValueError:
        raise ValueError(f"{kind} fault: {name}={raw!r} is not a number") from None
    if name in _BOOLEANS:
        if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(f"{kind} fault: {name}={raw!r} is not true or false")
        return raw.lower() in ("true", "1", "yes")
    return raw


def parse_fault(spec: str) -> Fault:
    """The fault a ``--fault`` spec describes.

    A spec is ``KIND[=VALUE]`` followed by ``,NAME=VALUE`` items. ``VALUE`` after the kind is
    its main parameter: ``status=503``, ``challenge=503``, ``stall=5`` (seconds),
    ``malformed=limited``, ``control=ipBanned``, ``error_words=Some message``,
    ``error_object=Some message``, ``error_event=Some message``, ``quota=Some message``,
    ``warning=Some message``, ``named_event=citations``, ``done_data={"finished":true}``.
    ``times=every`` hits every request. Write ``\\,`` and ``\\=`` for a literal comma or
    equals sign (e.g. in an HTTP date or JSON data).

    Raises:
        ValueError: naming the part of the spec that is wrong.
    """
    if not spec.strip():
        raise ValueError("empty fault spec")
    items = _split_unescaped(spec, ",")
    head, rest = _split_unescaped(items[0], "="), items[1:]
    kind_text = head[0].strip()
    if kind_text not in FAULT_KINDS:
        raise ValueError(
            f"unknown fault kind {kind_text!r} in {spec!r} (known: {', '.join(FAULT_KINDS)})"
        )
    kind: FaultKind = kind_text
    fields: dict[str, object] = {}
    if len(head) > 2:
        raise ValueError(f"{items[0]!r}: write \\= for an equals sign inside a value")
    if len(head) == 2:
        if kind not in _PRIMARY:
            raise ValueError(f"{kind} fault takes no value after its name (got {items[0]!r})")
        primary = _PRIMARY[kind]
        fields[primary] = _convert(kind, primary, _unescape(head[1]))
    for item in rest:
        if not item.strip():
            raise ValueError(f"empty item in {spec!r}")
        pieces = _split_unescaped(item, "=")
        if len(pieces) != 2 or not pieces[0].strip():
            raise ValueError(f"expected NAME=VALUE, got {item!r} in {spec!r}")
        name = pieces[0].strip()
        if name not in ("target", "times", *_PARAMETERS[kind]):
            allowed = ", ".join(("target", "times", *_PARAMETERS[kind]))
            raise ValueError(f"{kind} fault takes no {name!r} (it takes: {allowed})")
        if name in fields:
            raise ValueError(f"{name!r} given twice in {spec!r}")
        fields[name] = _convert(kind, name, _unescape(pieces[1]))
    try:
        return Fault(kind=kind, **fields)  # type: ignore[arg-type]  # values checked by attrs
    except (TypeError, ValueError) as exc:
        raise ValueError(f"bad fault spec {spec!r}: {validation_message(exc)}") from None


def fault_syntax() -> str:
    """One line per fault kind: its ``--fault`` form and parameters (for ``--help``)."""
    lines = []
    for kind in FAULT_KINDS:
        primary = _PRIMARY.get(kind)
        head: str
        if primary is None:
            head = kind
        elif primary in _REQUIRED.get(kind, ()):
            head = f"{kind}={primary.upper()}"
        else:
            head = f"{kind}[={primary.upper()}]"
        others = "".join(f"[,{name}=...]" for name in _PARAMETERS[kind] if name != primary)
        lines.append(f"  {head}{others}")
    return "\n".join(lines)


def format_fault(fault: Fault) -> str:
    """The ``--fault`` spec of ``fault``; :func:`parse_fault` reads it back unchanged."""
    parts: list[str] = [fault.kind]
    primary = _PRIMARY.get(fault.kind)
    if primary is not None and getattr(fault, primary) is not None:
        parts[0] += "=" + _escape(_format_value(getattr(fault, primary)))
    for name in _PARAMETERS[fault.kind]:
        value = getattr(fault, name)
        if name != primary and value != _DEFAULTS[name]:
            parts.append(f"{name}={_escape(_format_value(value))}")
    if fault.target != "ajax":
        parts.append(f"target={fault.target}")
    if fault.times != 1:
        parts.append("times=every" if fault.times is None else f"times={fault.times}")
    return ",".join(parts)


def _format_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
