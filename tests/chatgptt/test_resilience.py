"""Resilience end to end against the emulator: the fault matrix, retries, nonce refresh,
time and size limits, and single-flight page fetches.

Backoffs go through an injected sleep that records its delays (``jitter=0`` makes them
exact); time limits are short real ones (0.2-0.3 s) against stalls the emulator ends as
soon as the client leaves.
"""

from __future__ import annotations

import asyncio
import email.utils
import socket
import time
from collections.abc import Iterator, Mapping
from typing import Any

import aiohttp
import attrs
import pytest
import structlog
from structlog.testing import capture_logs

from chatgptt import (
    BotProtectionError,
    ChatGptt,
    ChatGpttError,
    CloudflareOriginError,
    HTTPStatusError,
    IncompleteReplyError,
    IPBannedError,
    Limits,
    MalformedResponseError,
    MessageFlaggedError,
    NonceRejectedError,
    ProviderConnectionError,
    ProviderTimeoutError,
    RateLimitError,
    ResponseTooLargeError,
    RetryPolicy,
    ServerError,
    StreamInterruptedError,
    Timeouts,
    TokenLimitError,
    UnknownActionError,
    UpstreamError,
)
from chatgptt.emulator import UPSTREAM_ERROR_MESSAGE, UPSTREAM_ERROR_TRIGGER, Fault
from chatgptt.emulator.answers import CONTROL_MESSAGES, DEFAULT_ERROR_OBJECT_MESSAGE
from chatgptt.emulator.firewalls import FIREWALL_NAMES, FIREWALL_PAGES
from chatgptt.emulator.model import fit_answer
from chatgptt.emulator.pages import challenge_page
from chatgptt.emulator.replies import DONE_FRAME, answer_frames
from chatgptt.testing import provider_for
from stages.cache import TokenCache
from stages.http import map_client_error
from tests.conftest import FakeSleep

HELLO = [{"role": "user", "content": "Hello"}]
ANSWER = "Hello from upstream: Hello"
# The emulator streams the answer in pieces of 8 characters ("Hello fr", "om upstr", ...),
# so an interruption after 1 or 2 pieces has delivered "Hello fr" or "Hello from upstr".
AJAX_PATH = "/wp-admin/admin-ajax.php"
MODES = ("sse", "json")
#: A stall the emulator ends as soon as the client hangs up; no test waits for it.
LONG = 30.0
SHORT = 0.2  # a time limit that a stall certainly exceeds and a loopback reply never does


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


# --- helpers ----------------------------------------------------------------------------------

#: The sites the suites below run against: the classic dialect streaming or answering in
#: JSON, and the AIPKit dialect (whose call is two AJAX requests).
SITES = ("sse", "json", "aipkit")
REQUESTS = {"sse": 1, "json": 1, "aipkit": 2}


def site_for(emulator_factory: Any, mode: str, **config: Any) -> Any:
    """An emulator of ``mode``: a classic site in that mode, or the AIPKit site."""
    if mode == "aipkit":
        return emulator_factory(dialect="aipkit", **config)
    return emulator_factory(mode=mode, **config)


async def collect(
    provider: type[ChatGptt], messages: Any = HELLO, **options: Any
) -> tuple[list[str], ChatGpttError | None]:
    """The chunks the caller received, and the typed error that ended the call, if any."""
    chunks: list[str] = []
    try:
        async for chunk in provider.create_async_generator("gpt-4o", messages, **options):
            chunks.append(chunk)
    except ChatGpttError as exc:
        return chunks, exc
    return chunks, None


def policy(sleep: FakeSleep, **changes: Any) -> RetryPolicy:
    """Three attempts, backoff 0.5 s then 1.0 s (no jitter), through the fake sleep."""
    return RetryPolicy(**{"sleep": sleep, "attempts": 3, "jitter": 0, **changes})


@attrs.frozen(kw_only=True)
class Expect:
    """What a faulted call must end in.

    Either ``text`` (the whole answer) or ``error``, with ``partial`` the text delivered
    before it. ``timeout``, ``cause`` and ``site_message`` are checked on the error — on
    its ``cause`` for a ``StreamInterruptedError``.
    """

    text: str | None = None
    error: type[ChatGpttError] | None = None
    partial: str = ""
    cause: type[BaseException] | None = None
    status: int | None = None
    retry_after: float | None = None
    url: str | None = None  # "page" or "ajax": the error names that URL
    site_message: str | None = None
    timeout: tuple[str, float] | None = None
    message_contains: str | None = None
    firewall: str | None = None
    ajax: int = 1
    pages: int = 1
    delays: tuple[float, ...] = ()


@attrs.frozen(kw_only=True)
class Case:
    """A row of the matrix.

    ``close`` is what the call ends in where it differs when the site sends every reply
    as PHP's built-in server does (``framing="close"``: no length, no chunks, the body
    ends when the connection closes): a cut then looks like an end, and only the body can
    tell — a stream without its finish frame, a JSON document that stops early.
    """

    faults: tuple[Fault, ...]
    expect: Expect | Mapping[str, Expect]  # one for both modes, or one per mode
    options: Mapping[str, Any] = attrs.field(factory=dict)
    config: Mapping[str, Any] = attrs.field(factory=dict)
    close: Expect | Mapping[str, Expect] | None = None

    def expected(self, mode: str, framing: str = "length") -> Expect:
        expect = self.close if framing == "close" and self.close is not None else self.expect
        return expect if isinstance(expect, Expect) else expect[mode]


def _status(status: int, **fields: Any) -> Fault:
    return Fault(kind="status", status=status, **fields)


_RETRIED_ONCE = Expect(text=ANSWER, ajax=2, delays=(0.5,))
_EMPTY_REPLY = {
    "sse": Expect(error=MalformedResponseError, message_contains="event stream was empty"),
    "json": Expect(error=MalformedResponseError, message_contains="an empty reply"),
}
_RETRIED_ONCE_PAGE = Expect(text=ANSWER, ajax=1, pages=2, delays=(0.5,))


def _interrupted(partial: str, cause: type[BaseException], **fields: Any) -> Expect:
    return Expect(error=StreamInterruptedError, partial=partial, cause=cause, **fields)


_MATRIX: dict[str, Case] = {
    # Retryable statuses: 408, 409, 429, 5xx and Cloudflare's 520-527, once each.
    **{
        f"status-{status}-once": Case(faults=(_status(status),), expect=_RETRIED_ONCE)
        for status in (408, 409, 429, 500, 502, 503, 504, *range(520, 528))
    },
    "status-503-twice": Case(
        faults=(_status(503, times=2),), expect=Expect(text=ANSWER, ajax=3, delays=(0.5, 1.0))
    ),
    "status-503-always": Case(
        faults=(_status(503, times=None),),
        expect=Expect(error=ServerError, status=503, url="ajax", ajax=3, delays=(0.5, 1.0)),
    ),
    "status-520-always": Case(
        faults=(_status(520, times=None),),
        expect=Expect(error=CloudflareOriginError, status=520, ajax=3, delays=(0.5, 1.0)),
    ),
    "status-429-always": Case(
        faults=(_status(429, times=None),),
        expect=Expect(error=RateLimitError, status=429, ajax=3, delays=(0.5, 1.0)),
    ),
    "status-503-on-page-once": Case(
        faults=(_status(503, target="page"),), expect=_RETRIED_ONCE_PAGE
    ),
    "status-429-on-page-once": Case(
        faults=(_status(429, target="page"),), expect=_RETRIED_ONCE_PAGE
    ),
    # Retry-After: honoured up to RetryPolicy.max_retry_after (30 s), final beyond it.
    "retry-after-2": Case(
        faults=(_status(429, retry_after="2"),), expect=Expect(text=ANSWER, ajax=2, delays=(2.0,))
    ),
    "retry-after-on-503": Case(
        faults=(_status(503, retry_after="3"),), expect=Expect(text=ANSWER, ajax=2, delays=(3.0,))
    ),
    "retry-after-at-the-cap": Case(
        faults=(_status(429, retry_after="30"),),
        expect=Expect(text=ANSWER, ajax=2, delays=(30.0,)),
    ),
    "retry-after-beyond-the-cap": Case(
        faults=(_status(429, retry_after="31"),),
        expect=Expect(error=RateLimitError, status=429, retry_after=31.0, ajax=1),
    ),
    "retry-after-beyond-the-cap-on-page": Case(
        faults=(_status(429, retry_after="100", target="page"),),
        expect=Expect(error=RateLimitError, status=429, retry_after=100.0, url="page", ajax=0),
    ),
    "retry-after-beyond-the-cap-on-503": Case(
        faults=(_status(503, retry_after="100"),),
        expect=Expect(error=RateLimitError, status=503, retry_after=100.0, ajax=1),
    ),
    # Not retryable: what the site or a proxy says on purpose.
    "status-404": Case(
        faults=(_status(404),),
        expect=Expect(error=HTTPStatusError, status=404, url="ajax", message_contains="Not Found"),
    ),
    "status-403-plain": Case(
        faults=(_status(403),), expect=Expect(error=HTTPStatusError, status=403, url="ajax")
    ),
    # "400 0": the site no longer knows the action (it changed the plugin): the page is
    # read again and decides the dialect; a second "400 0" is final.
    "status-400-zero": Case(
        faults=(_status(400, body="0"),), expect=Expect(text=ANSWER, ajax=2, pages=2)
    ),
    "status-400-zero-always": Case(
        faults=(_status(400, body="0", times=None),),
        expect=Expect(
            error=UnknownActionError, status=400, message_contains="AIPKit", ajax=2, pages=2
        ),
    ),
    "status-400-zero-forced-dialect": Case(
        faults=(_status(400, body="0"),),
        options={"dialect": "classic"},
        expect=Expect(error=UnknownActionError, status=400, message_contains="AIPKit"),
    ),
    "status-404-on-page": Case(
        faults=(_status(404, target="page"),),
        expect=Expect(error=HTTPStatusError, status=404, url="page", ajax=0),
    ),
    # Bot protection: never a token or JSON error, never retried; names the URL.
    **{
        f"challenge-{status}-on-{target}": Case(
            faults=(Fault(kind="challenge", status=status, target=target),),
            expect=Expect(
                error=BotProtectionError,
                status=status,
                url=target,
                message_contains="bot protection",
                ajax=0 if target == "page" else 1,
            ),
        )
        for status in (403, 503)
        for target in ("page", "ajax")
    },
    **{
        f"challenge-200-on-{target}": Case(
            faults=(_status(200, body=challenge_page("8f00dd-AMS"), target=target),),
            expect=Expect(
                error=BotProtectionError, status=200, url=target, ajax=0 if target == "page" else 1
            ),
        )
        for target in ("page", "ajax")
    },
    # The nonce: refetched once per call; a second rejection is final.
    "expire-nonce-once": Case(
        faults=(Fault(kind="expire_nonce"),), expect=Expect(text=ANSWER, ajax=2, pages=2)
    ),
    "expire-nonce-twice": Case(
        faults=(Fault(kind="expire_nonce", times=2),),
        expect=Expect(error=NonceRejectedError, url="ajax", ajax=2, pages=2),
    ),
    "expire-nonce-once-json-rejection": Case(
        faults=(Fault(kind="expire_nonce"),),
        config={"nonce_style": "json"},
        expect=Expect(text=ANSWER, ajax=2, pages=2),
    ),
    "expire-nonce-twice-json-rejection": Case(
        faults=(Fault(kind="expire_nonce", times=2),),
        config={"nonce_style": "json"},
        expect=Expect(error=NonceRejectedError, ajax=2, pages=2),
    ),
    "nonce-rejected-plugin-1.6-form": Case(
        faults=(
            _status(200, body='{"status":"error","msg":"Invalid nonce. Please refresh the page."}'),
        ),
        expect=Expect(text=ANSWER, ajax=2, pages=2),
    ),
    # Drops: before any text, retried from the request; after text, never retried.
    # Close-delimited, a drop right after the headers is an empty body: what the plugin
    # sends on a PHP without curl, said as such and not retried.
    "drop-after-headers": Case(
        faults=(Fault(kind="drop"),), expect=_RETRIED_ONCE, close=_EMPTY_REPLY
    ),
    "drop-after-10-bytes": Case(faults=(Fault(kind="drop", after_bytes=10),), expect=_RETRIED_ONCE),
    "drop-after-0-tokens": Case(
        faults=(Fault(kind="drop", after_tokens=0),), expect=_RETRIED_ONCE, close=_EMPTY_REPLY
    ),
    "drop-after-2-tokens": Case(
        faults=(Fault(kind="drop", after_tokens=2),),
        expect={
            "sse": _interrupted("Hello from upstr", ProviderConnectionError, ajax=1),
            "json": _RETRIED_ONCE,  # a JSON body has no pieces: it breaks before any text
        },
        close={
            "sse": _interrupted("Hello from upstr", IncompleteReplyError, ajax=1),
            "json": _EMPTY_REPLY["json"],
        },
    ),
    "drop-always": Case(
        faults=(Fault(kind="drop", times=None),),
        expect=Expect(error=ProviderConnectionError, url="ajax", ajax=3, delays=(0.5, 1.0)),
        close=_EMPTY_REPLY,
    ),
    # A landing page cut short is retried — close-delimited too: no length, no </html> and
    # no tokens is a cut page, not a page without a chat.
    "drop-page-after-headers": Case(
        faults=(Fault(kind="drop", target="page"),), expect=_RETRIED_ONCE_PAGE
    ),
    "drop-page-after-100-bytes": Case(
        faults=(Fault(kind="drop", target="page", after_bytes=100),),
        expect=_RETRIED_ONCE_PAGE,
    ),
    # The same cuts as the real site's transport makes them, whatever the emulator's framing.
    "cut-after-headers": Case(faults=(Fault(kind="cut"),), expect=_EMPTY_REPLY),
    "cut-after-10-bytes": Case(faults=(Fault(kind="cut", after_bytes=10),), expect=_RETRIED_ONCE),
    "cut-after-2-tokens": Case(
        faults=(Fault(kind="cut", after_tokens=2),),
        expect={
            "sse": _interrupted("Hello from upstr", IncompleteReplyError, ajax=1),
            "json": _EMPTY_REPLY["json"],
        },
    ),
    "cut-after-1-token-twice": Case(
        faults=(Fault(kind="cut", after_tokens=1, times=2),),
        expect={
            "sse": _interrupted("Hello fr", IncompleteReplyError, ajax=1),
            "json": _EMPTY_REPLY["json"],
        },
    ),
    # The JSON document or the first frame stops before its end: retried.
    "cut-after-60-bytes": Case(faults=(Fault(kind="cut", after_bytes=60),), expect=_RETRIED_ONCE),
    # Lingering after the finish frame: the answer is whole (and returned at once: see
    # test_hostile_sites for the timing); JSON replies have nothing to linger after.
    "linger": Case(faults=(Fault(kind="linger", seconds=0.05),), expect=Expect(text=ANSWER)),
    # An event stream with no events: never an empty answer, never retried.
    **{
        f"empty-stream-{content}": Case(
            faults=(Fault(kind="empty_stream", content=content),),  # type: ignore[arg-type]
            expect=Expect(error=error, message_contains=says, url="ajax"),
        )
        for content, error, says in (
            ("nothing", MalformedResponseError, "event stream was empty"),
            ("php_fatal", MalformedResponseError, "curl_init()"),
            ("challenge", BotProtectionError, "Cloudflare"),
        )
    },
    # Firewalls: named, whatever the status, never retried, on the page or the POST.
    **{
        f"firewall-{name}-on-{target}": Case(
            faults=(Fault(kind="firewall", firewall=name, target=target, times=None),),
            expect=Expect(
                error=BotProtectionError,
                firewall=FIREWALL_PAGES[name].firewall,
                status=FIREWALL_PAGES[name].status,
                url=target,
                ajax=0 if target == "page" else 1,
            ),
        )
        for name in FIREWALL_NAMES
        for target in ("page", "ajax")
    },
    "firewall-wordfence-with-503-on-both": Case(
        faults=(Fault(kind="firewall", firewall="wordfence", target="any", times=None),),
        expect=Expect(error=BotProtectionError, firewall="Wordfence", status=503, ajax=0),
    ),
    # Stalls against short time limits.
    "stall-before-headers-once": Case(
        faults=(Fault(kind="stall", seconds=LONG),),
        options={"timeouts": Timeouts(first_byte=SHORT)},
        expect=_RETRIED_ONCE,
    ),
    "stall-before-headers-always": Case(
        faults=(Fault(kind="stall", seconds=LONG, times=None),),
        options={"timeouts": Timeouts(first_byte=SHORT)},
        expect=Expect(
            error=ProviderTimeoutError,
            timeout=("first_byte", SHORT),
            url="ajax",
            ajax=3,
            delays=(0.5, 1.0),
        ),
    ),
    "stall-page-once": Case(
        faults=(Fault(kind="stall", seconds=LONG, target="page"),),
        options={"timeouts": Timeouts(first_byte=SHORT)},
        expect=_RETRIED_ONCE_PAGE,
    ),
    "stall-page-body": Case(
        faults=(Fault(kind="stall", seconds=LONG, where="inside", target="page"),),
        options={"timeouts": Timeouts(idle=SHORT)},
        expect=_RETRIED_ONCE_PAGE,
    ),
    "stall-inside-before-text-once": Case(
        faults=(Fault(kind="stall", seconds=LONG, where="inside", after_tokens=0),),
        options={"timeouts": Timeouts(idle=SHORT)},
        expect=_RETRIED_ONCE,
    ),
    "stall-inside-before-text-always": Case(
        faults=(Fault(kind="stall", seconds=LONG, where="inside", after_tokens=0, times=None),),
        options={"timeouts": Timeouts(idle=SHORT)},
        expect=Expect(
            error=ProviderTimeoutError, timeout=("idle", SHORT), ajax=3, delays=(0.5, 1.0)
        ),
    ),
    "stall-inside-after-2-tokens": Case(
        faults=(Fault(kind="stall", seconds=LONG, where="inside", after_tokens=2),),
        options={"timeouts": Timeouts(idle=SHORT)},
        expect={
            "sse": _interrupted(
                "Hello from upstr", ProviderTimeoutError, timeout=("idle", SHORT), ajax=1
            ),
            "json": _RETRIED_ONCE,
        },
    ),
    "per-call-timeout-stall-before": Case(
        faults=(Fault(kind="stall", seconds=LONG),),
        options={"timeout": 0.3},
        expect=Expect(error=ProviderTimeoutError, timeout=("total", 0.3), ajax=1),
    ),
    "per-call-timeout-stall-inside": Case(
        faults=(Fault(kind="stall", seconds=LONG, where="inside", after_tokens=1),),
        options={"timeout": 0.3},
        expect={
            "sse": _interrupted("Hello fr", ProviderTimeoutError, timeout=("total", 0.3)),
            "json": Expect(error=ProviderTimeoutError, timeout=("total", 0.3)),
        },
    ),
    "total-timeout-record-stall-inside": Case(
        faults=(Fault(kind="stall", seconds=LONG, where="inside", after_tokens=1),),
        options={"timeouts": Timeouts(total=0.3)},
        expect={
            "sse": _interrupted("Hello fr", ProviderTimeoutError, timeout=("total", 0.3)),
            "json": Expect(error=ProviderTimeoutError, timeout=("total", 0.3)),
        },
    ),
    # Malformed replies: the text recovered, or a typed error saying what was malformed.
    "malformed-invalid-json-after-1-token": Case(
        faults=(Fault(kind="malformed", variant="invalid_json", after_tokens=1),),
        expect={
            "sse": _interrupted("Hello fr", MalformedResponseError, message_contains="valid JSON"),
            "json": Expect(error=MalformedResponseError, message_contains="does not parse"),
        },
    ),
    "malformed-invalid-json-before-text": Case(
        faults=(Fault(kind="malformed", variant="invalid_json", after_tokens=0),),
        expect={
            "sse": Expect(error=MalformedResponseError, message_contains="valid JSON"),
            "json": Expect(error=MalformedResponseError, message_contains="does not parse"),
        },
    ),
    "malformed-limited": Case(
        faults=(Fault(kind="malformed", variant="limited"),),
        expect={
            # [LIMITED] instead of the finish frame: all text came, then the site gave up.
            "sse": _interrupted(ANSWER, UpstreamError, site_message="[LIMITED]"),
            "json": Expect(text=ANSWER),
        },
    ),
    "malformed-no-done": Case(
        faults=(Fault(kind="malformed", variant="no_done"),), expect=Expect(text=ANSWER)
    ),
    "malformed-truncated-end": Case(
        faults=(Fault(kind="malformed", variant="truncated_end"),),
        expect={
            # A clean end after whole frames but before the finish frame: the site never
            # said the answer was complete, so the caller is told it may not be.
            "sse": _interrupted(ANSWER, IncompleteReplyError),
            "json": Expect(error=MalformedResponseError, message_contains="does not parse"),
        },
        close={
            "sse": _interrupted(ANSWER, IncompleteReplyError),
            # With no declared length, half a document is a cut connection: retried.
            "json": _RETRIED_ONCE,
        },
    ),
    "malformed-invalid-utf8": Case(
        faults=(Fault(kind="malformed", variant="invalid_utf8", after_tokens=1),),
        expect={
            # The bytes that are not UTF-8 become U+FFFD; the text around them is kept.
            "sse": Expect(text="Hello fr\ufffd\ufffdom upstream: Hello"),
            "json": Expect(text="\ufffd\ufffd" + ANSWER),
        },
    ),
    # Upstream errors: raised with their message, never yielded as the answer.
    "error-words": Case(
        faults=(Fault(kind="error_words"),),
        expect=Expect(error=UpstreamError, site_message=UPSTREAM_ERROR_MESSAGE),
    ),
    "error-words-limited": Case(
        faults=(Fault(kind="error_words", limited=True),),
        expect=Expect(error=UpstreamError, site_message=UPSTREAM_ERROR_MESSAGE),
    ),
    "error-words-with-quotes": Case(
        faults=(Fault(kind="error_words", message='Model "gpt-x" said: no \\ way'),),
        expect=Expect(error=UpstreamError, site_message='Model "gpt-x" said: no \\ way'),
    ),
    "error-object": Case(
        faults=(Fault(kind="error_object"),),
        expect=Expect(error=UpstreamError, site_message=DEFAULT_ERROR_OBJECT_MESSAGE),
    ),
    "error-object-custom": Case(
        faults=(Fault(kind="error_object", message="Rate limit reached for gpt-4o"),),
        expect=Expect(error=UpstreamError, site_message="Rate limit reached for gpt-4o"),
    ),
    # Control frames: each flag its typed error; the answer that follows is not yielded.
    **{
        f"control-{flag}": Case(
            faults=(Fault(kind="control", flag=flag),),
            expect=Expect(error=error, site_message=CONTROL_MESSAGES[flag]),
        )
        for flag, error in (
            ("tokenLimitReached", TokenLimitError),
            ("messageFlagged", MessageFlaggedError),
            ("modflag", MessageFlaggedError),
            ("ipBanned", IPBannedError),
            ("pineconeError", UpstreamError),
        )
    },
    "control-tokenLimitReached-custom-message": Case(
        faults=(Fault(kind="control", flag="tokenLimitReached", message="Come back tomorrow."),),
        expect=Expect(error=TokenLimitError, site_message="Come back tomorrow."),
    ),
    # Size limits.
    "limit-page-bytes": Case(
        faults=(),
        options={"limits": Limits(max_page_bytes=100)},
        expect=Expect(error=ResponseTooLargeError, url="page", ajax=0),
    ),
    "limit-event-bytes": Case(
        faults=(),
        config={"answer_chars": 3000, "token_chars": 3000},
        options={"limits": Limits(max_event_bytes=1000)},
        expect={
            "sse": Expect(error=ResponseTooLargeError, message_contains="1000 bytes"),
            "json": Expect(text=fit_answer(ANSWER, 3000)),  # no events in a JSON reply
        },
    ),
    "limit-body-bytes": Case(
        faults=(),
        options={"limits": Limits(max_body_bytes=100)},
        expect={
            "sse": Expect(text=ANSWER),  # a stream is bounded per event, not by this
            "json": Expect(error=ResponseTooLargeError, message_contains="100 bytes"),
        },
    ),
}


FRAMINGS = ("length", "close")


def _matrix() -> Iterator[Any]:
    for name, case in _MATRIX.items():
        for mode in MODES:
            for framing in FRAMINGS:
                yield pytest.param(mode, framing, case, id=f"{mode}-{framing}-{name}")


def _check_error(error: BaseException, expect: Expect, emulator: Any) -> None:
    """Check the fields of ``error`` (the cause, for an interruption) that ``expect`` names."""
    if expect.status is not None:
        assert getattr(error, "status", None) == expect.status
    if expect.retry_after is not None:
        assert getattr(error, "retry_after", None) == expect.retry_after
    if expect.url is not None:
        url = emulator.url + ("/" if expect.url == "page" else AJAX_PATH)
        assert getattr(error, "url", None) == url
        assert url in str(error)
    if expect.message_contains is not None:
        assert expect.message_contains in str(error)
    if expect.firewall is not None:
        assert getattr(error, "firewall", None) == expect.firewall
        assert expect.firewall in str(error)


@pytest.mark.parametrize(("mode", "framing", "case"), list(_matrix()))
async def test_fault_matrix(
    emulator_factory, fake_sleep, mode: str, framing: str, case: Case
) -> None:
    expect = case.expected(mode, framing)
    config = {"mode": mode, "framing": framing, **case.config}
    emulator = emulator_factory(faults=case.faults, **config)
    provider = provider_for(emulator, retry_policy=policy(fake_sleep))
    chunks, error = await collect(provider, **case.options)

    if expect.text is not None:
        assert error is None, f"expected the answer, got {error!r}"
        assert "".join(chunks) == expect.text
    else:
        assert expect.error is not None
        assert isinstance(error, expect.error), f"expected {expect.error.__name__}, got {error!r}"
        # The caller got exactly the text the error reports, and it is the answer's start.
        assert "".join(chunks) == error.partial_text == expect.partial
        target: BaseException = error
        if isinstance(error, StreamInterruptedError):
            assert expect.cause is not None
            assert isinstance(error.cause, expect.cause)
            assert error.__cause__ is error.cause
            assert error.delivered_chars == len(expect.partial)
            target = error.cause
        _check_error(target, expect, emulator)
        if expect.timeout is not None:
            assert isinstance(target, ProviderTimeoutError)
            assert (target.limit, target.seconds) == expect.timeout
            assert expect.timeout[0] in str(target)
            assert f"{expect.timeout[1]:g} s" in str(target)
        if expect.site_message is not None:
            assert getattr(target, "site_message", None) == expect.site_message
            assert expect.site_message in str(target)
    assert emulator.stats.ajax_requests == expect.ajax
    assert emulator.stats.page_fetches == expect.pages
    assert fake_sleep.delays == list(expect.delays)


# --- Retry-After, backoff, deadlines, logs ------------------------------------------------------


def _http_date(seconds_from_now: float) -> str:
    return email.utils.formatdate(time.time() + seconds_from_now, usegmt=True)


@pytest.mark.parametrize("framing", FRAMINGS)
async def test_an_aipkit_step_one_reply_cut_short_is_retried(
    emulator_factory, fake_sleep, framing: str
) -> None:
    """Step 1's reply cut inside its JSON where the connection closed — how every cut looks
    on the real site, whose PHP server declares no length — is an incomplete reply, sent
    again; not a site that answered without a key."""
    emulator = site_for(emulator_factory, "aipkit", framing=framing)
    provider = provider_for(emulator, retry_policy=RetryPolicy(sleep=fake_sleep))
    emulator.faults.add(Fault(kind="cut", after_bytes=8, target="cache"))
    chunks, error = await collect(provider)
    assert error is None
    assert "".join(chunks) == ANSWER
    assert emulator.stats.ajax_requests == 3  # step 1 twice, then the stream
    assert len(fake_sleep.delays) == 1


@pytest.mark.parametrize("mode", MODES)
async def test_retry_after_as_an_http_date_is_honoured(emulator_factory, fake_sleep, mode) -> None:
    emulator = emulator_factory(mode=mode, faults=[_status(429, retry_after=_http_date(10))])
    chunks, error = await collect(provider_for(emulator, retry_policy=policy(fake_sleep)))
    assert error is None
    assert "".join(chunks) == ANSWER
    [delay] = fake_sleep.delays
    assert 8.0 < delay <= 10.0  # an HTTP date has whole seconds


async def test_retry_after_as_a_past_http_date_means_now(emulator, fake_sleep) -> None:
    emulator.faults.add(_status(503, retry_after=_http_date(-60)))
    chunks, error = await collect(provider_for(emulator, retry_policy=policy(fake_sleep)))
    assert (error, "".join(chunks)) == (None, ANSWER)
    assert fake_sleep.delays == [0.0]


async def test_retry_after_as_a_far_http_date_fails_at_once(emulator, fake_sleep) -> None:
    emulator.faults.add(_status(429, retry_after=_http_date(3600)))
    chunks, error = await collect(provider_for(emulator, retry_policy=policy(fake_sleep)))
    assert isinstance(error, RateLimitError)
    assert error.retry_after is not None
    assert 3500 < error.retry_after <= 3600
    assert chunks == []
    assert emulator.stats.ajax_requests == 1
    assert fake_sleep.delays == []


async def test_backoff_is_exponential_and_capped(emulator, fake_sleep) -> None:
    emulator.faults.add(_status(503, times=5))
    retry = RetryPolicy(sleep=fake_sleep, attempts=6, initial_delay=1.0, max_delay=3.0, jitter=0)
    chunks, error = await collect(provider_for(emulator, retry_policy=retry))
    assert (error, "".join(chunks)) == (None, ANSWER)
    assert fake_sleep.delays == [1.0, 2.0, 3.0, 3.0, 3.0]


async def test_backoff_jitter_stays_within_its_bounds_and_the_cap(emulator, fake_sleep) -> None:
    emulator.faults.add(_status(503, times=5))
    retry = RetryPolicy(sleep=fake_sleep, attempts=6, initial_delay=1.0, max_delay=3.0, jitter=0.5)
    chunks, error = await collect(provider_for(emulator, retry_policy=retry))
    assert (error, "".join(chunks)) == (None, ANSWER)
    bases = [1.0, 2.0, 3.0, 3.0, 3.0]
    assert len(fake_sleep.delays) == len(bases)
    for delay, base in zip(fake_sleep.delays, bases, strict=True):
        assert base <= delay <= min(base + 0.5, 3.0)
    assert fake_sleep.delays[:2] != bases[:2]  # jitter was added (zero twice: ~never)


async def test_retry_policy_per_call_overrides_the_providers(emulator, fake_sleep) -> None:
    emulator.faults.add(_status(503))
    provider = provider_for(emulator, retry_policy=RetryPolicy(attempts=1))
    chunks, error = await collect(provider, retry=RetryPolicy(sleep=fake_sleep, jitter=0))
    assert (error, "".join(chunks)) == (None, ANSWER)
    assert len(fake_sleep.delays) == 1
    emulator.faults.add(_status(503))
    chunks, error = await collect(provider)
    assert isinstance(error, ServerError)
    assert emulator.stats.ajax_requests == 3


def test_the_settings_records_are_frozen() -> None:
    for record, field, value in (
        (RetryPolicy(), "attempts", 5),
        (Timeouts(), "idle", 1.0),
        (Limits(), "max_event_bytes", 1),
    ):
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            setattr(record, field, value)


async def test_a_retry_that_would_overrun_the_policy_deadline_is_not_started(
    emulator, fake_sleep
) -> None:
    emulator.faults.add(_status(503, retry_after="2"))
    retry = policy(fake_sleep, deadline=1.0)
    chunks, error = await collect(provider_for(emulator, retry_policy=retry))
    assert isinstance(error, ServerError)
    assert error.retry_after == 2.0
    assert chunks == []
    assert emulator.stats.ajax_requests == 1
    assert fake_sleep.delays == []


async def test_the_policy_deadline_bounds_all_attempts(emulator, fake_sleep) -> None:
    """Attempts that each time out after 0.1 s (the backoff is injected and zero) against
    a 0.35 s deadline: no attempt starts after it."""
    emulator.faults.add(Fault(kind="stall", seconds=LONG, times=None))
    retry = policy(fake_sleep, attempts=100, initial_delay=0, max_delay=0, deadline=0.35)
    provider = provider_for(emulator, retry_policy=retry)
    started = time.monotonic()
    chunks, error = await collect(provider, timeouts=Timeouts(first_byte=0.1))
    elapsed = time.monotonic() - started
    assert isinstance(error, ProviderTimeoutError)
    assert (error.limit, error.seconds) == ("first_byte", 0.1)
    assert chunks == []
    assert 2 <= emulator.stats.ajax_requests <= 4
    assert elapsed < 1.0


async def test_a_retry_that_would_overrun_the_call_timeout_is_not_started(
    emulator, fake_sleep
) -> None:
    emulator.faults.add(_status(503, retry_after="2"))
    provider = provider_for(emulator, retry_policy=policy(fake_sleep))
    _, error = await collect(provider, timeout=1.0)
    assert isinstance(error, ServerError)
    assert error.retry_after == 2.0
    assert emulator.stats.ajax_requests == 1
    assert fake_sleep.delays == []


async def test_retries_are_logged_with_attempt_delay_and_cause(emulator, fake_sleep) -> None:
    emulator.faults.add(_status(503, times=2))
    provider = provider_for(emulator, retry_policy=policy(fake_sleep))
    with capture_logs() as logs:
        chunks, error = await collect(provider)
    assert (error, "".join(chunks)) == (None, ANSWER)
    scheduled = [entry for entry in logs if entry["event"] == "retry.scheduled"]
    assert [(entry["attempt"], entry["delay_s"]) for entry in scheduled] == [(1, 0.5), (2, 1.0)]
    for entry in scheduled:
        assert entry["error"] == "ServerError"
        assert "HTTP 503" in entry["message"]


# --- time limits --------------------------------------------------------------------------------


@pytest.fixture
def unanswered_port() -> Iterator[int]:
    """A loopback port whose listener never accepts and whose backlog is full: a connect
    to it neither succeeds nor fails (the SYN is dropped) until the client gives up."""
    listener = socket.socket()
    fillers: list[socket.socket] = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


async def test_connect_timeout_names_its_limit(unanswered_port, fake_sleep) -> None:
    class Unanswered(ChatGptt):
        url = f"http://127.0.0.1:{unanswered_port}"
        token_cache = TokenCache()
        retry_policy = policy(fake_sleep, attempts=2)

    started = time.monotonic()
    chunks, error = await collect(Unanswered, timeouts=Timeouts(connect=0.1))
    assert time.monotonic() - started < 2.0
    assert isinstance(error, ProviderTimeoutError)
    assert (error.limit, error.seconds) == ("connect", 0.1)
    assert str(error).startswith("connect timeout: 0.1 s passed while connecting")
    assert fake_sleep.delays == [0.5]  # a connect timeout is retried
    assert chunks == []


def test_aiohttps_connect_timeout_maps_to_the_connect_limit() -> None:
    error = map_client_error(
        aiohttp.ConnectionTimeoutError("timed out"), "http://u:pw@h:1/", connect_timeout=2.5
    )
    assert isinstance(error, ProviderTimeoutError)
    assert (error.limit, error.seconds) == ("connect", 2.5)
    assert "pw" not in str(error)


@pytest.mark.parametrize("mode", SITES)
async def test_the_per_call_timeout_bounds_the_whole_call(emulator_factory, mode) -> None:
    emulator = site_for(emulator_factory, mode, faults=[Fault(kind="stall", seconds=LONG)])
    started = time.monotonic()
    chunks, error = await collect(provider_for(emulator), timeout=0.25)
    elapsed = time.monotonic() - started
    assert isinstance(error, ProviderTimeoutError)
    assert (error.limit, error.seconds) == ("total", 0.25)
    assert chunks == []
    assert 0.25 <= elapsed < 1.0


async def test_the_per_call_timeout_bounds_all_attempts(emulator, fake_sleep) -> None:
    """Attempts that each time out after 0.1 s, retried without end, in a 0.35 s call:
    the call ends at its deadline with the ``total`` limit."""
    emulator.faults.add(Fault(kind="stall", seconds=LONG, times=None))
    retry = policy(fake_sleep, attempts=100, initial_delay=0, max_delay=0, deadline=None)
    provider = provider_for(emulator, retry_policy=retry)
    started = time.monotonic()
    chunks, error = await collect(provider, timeout=0.35, timeouts=Timeouts(first_byte=0.1))
    elapsed = time.monotonic() - started
    assert isinstance(error, ProviderTimeoutError)
    assert (error.limit, error.seconds) == ("total", 0.35)
    assert chunks == []
    assert 2 <= emulator.stats.ajax_requests <= 4
    assert 0.35 <= elapsed < 1.0


async def test_partial_text_of_an_interruption_is_capped(emulator, fake_sleep) -> None:
    emulator.faults.add(Fault(kind="drop", after_tokens=2))
    provider = provider_for(emulator, retry_policy=policy(fake_sleep))
    chunks, error = await collect(provider, limits=Limits(max_partial_text=5))
    assert isinstance(error, StreamInterruptedError)
    assert "".join(chunks) == "Hello from upstr"
    assert error.partial_text == "Hello"
    assert error.delivered_chars == 16


# --- size limits ---------------------------------------------------------------------------------


async def test_a_stream_beyond_its_byte_limit_is_interrupted(emulator_factory, fake_sleep) -> None:
    """A pause after the first piece makes it reach the caller before the rest arrives."""
    pause = Fault(kind="stall", where="inside", after_tokens=1, seconds=0.1)
    emulator = emulator_factory(answer_chars=20_000, faults=[pause])
    full = fit_answer(ANSWER, 20_000)
    provider = provider_for(emulator, retry_policy=policy(fake_sleep))
    chunks, error = await collect(provider, limits=Limits(max_stream_bytes=8_000))
    assert isinstance(error, StreamInterruptedError)
    assert isinstance(error.cause, ResponseTooLargeError)
    assert error.cause.limit == 8_000
    assert "".join(chunks) == error.partial_text
    assert error.partial_text
    assert full.startswith(error.partial_text)
    assert len(error.partial_text) < 8_000
    assert emulator.stats.ajax_requests == 1


@pytest.mark.parametrize(
    ("body", "what"),
    [
        pytest.param("data: " + "x" * 100_000, "a stream line", id="one-endless-line"),
        pytest.param(
            'data: {"choices":[{"delta":{"content":"Hi"}}]}\n' * 5_000,
            "a stream event",
            id="lines-without-a-blank-line",
        ),
    ],
)
async def test_a_hostile_stream_cannot_grow_an_event_without_bound(
    emulator, fake_sleep, body: str, what: str
) -> None:
    """An event that never ends — one endless line, or lines with no blank line to end
    the event — fails at the event size limit instead of filling memory."""
    emulator.faults.add(_status(200, body=body))
    provider = provider_for(emulator, retry_policy=policy(fake_sleep))
    chunks, error = await collect(provider, limits=Limits(max_event_bytes=1_000))
    assert isinstance(error, ResponseTooLargeError)
    assert error.limit == 1_000
    assert f"{what} exceeds the limit of 1000 bytes" in str(error)
    assert chunks == []
    assert emulator.stats.ajax_requests == 1


async def test_an_error_page_is_quoted_in_a_short_excerpt(emulator, fake_sleep) -> None:
    emulator.faults.add(_status(404, body="<html><body><p>Gone.</p>" + "x" * 1_000_000))
    _, error = await collect(provider_for(emulator, retry_policy=policy(fake_sleep)))
    assert isinstance(error, HTTPStatusError)
    assert error.status == 404
    assert error.excerpt.startswith("Gone.")
    assert len(error.excerpt) <= 160
    assert len(str(error)) < 300


# --- streams that end badly -----------------------------------------------------------------------

_FRAME = 'data: {{"choices":[{{"delta":{{"content":"{}"}}}}]}}'
_FINISH = 'data: {"choices":[{"delta":{"content":" world"},"finish_reason":"stop"}]}'


@pytest.mark.parametrize(
    ("body", "delivered", "complete"),
    [
        pytest.param(
            _FRAME.format("Hello") + "\n\n" + _FRAME.format(" world"),
            "Hello world",
            False,
            id="after-text",
        ),
        pytest.param(_FRAME.format("Hello world"), "Hello world", False, id="only-event"),
        pytest.param(
            _FRAME.format("Hello") + "\n\n" + 'data: {"choices":[{"delta":{"con',
            "Hello",
            False,
            id="inside-a-line",
        ),
        pytest.param(
            _FRAME.format("Hello") + "\n\n" + _FINISH, "Hello world", True, id="finish-last"
        ),
    ],
)
@pytest.mark.parametrize("framing", ["length", "close"])
async def test_a_stream_ending_inside_an_event_never_drops_text_silently(
    emulator_factory, fake_sleep, body: str, delivered: str, complete: bool, framing: str
) -> None:
    """The body ends cleanly but inside an event (no blank line after its last line): the
    text of a whole last frame is delivered, a cut one is not; the answer is complete only
    if a finish frame came, else a typed error says the stream was cut — never an answer
    cut short without a word.

    Served as an HTML 200 page, which the client sniffs as a stream (hosts mislabel it).
    """
    emulator = emulator_factory(framing=framing)
    emulator.faults.add(_status(200, body=body))
    chunks, error = await collect(provider_for(emulator, retry_policy=policy(fake_sleep)))
    assert "".join(chunks) == delivered
    if complete:
        assert error is None
    else:
        assert isinstance(error, StreamInterruptedError)
        assert error.partial_text == delivered
        assert isinstance(error.cause, IncompleteReplyError)
    assert emulator.stats.ajax_requests == 1


@pytest.mark.parametrize("short_of_the_end", [len(DONE_FRAME), 3], ids=["before", "inside"])
async def test_a_break_after_the_finish_frame_does_not_fail_a_complete_answer(
    emulator_factory, fake_sleep, short_of_the_end: int
) -> None:
    """The answer ended at its ``finish_reason``; the connection then breaks before (or
    inside) ``[DONE]``. Nothing of the answer is missing: the call completes, as it does
    when the stream ends cleanly without ``[DONE]`` (``malformed-no-done``).

    The capture's frames, whose length is known, so the cut falls where it should."""
    emulator = emulator_factory(frames="capture")
    frames = answer_frames(ANSWER, token_chars=8, model_name=emulator.config.model_name)
    body = b"".join(frame.data for frame in frames)
    assert frames[-1].data == DONE_FRAME
    assert b'"finish_reason": "stop"' in frames[-2].data
    emulator.faults.add(Fault(kind="drop", after_bytes=len(body) - short_of_the_end))
    chunks, error = await collect(provider_for(emulator, retry_policy=policy(fake_sleep)))
    assert "".join(chunks) == ANSWER
    assert error is None, f"a complete answer ended in {error!r}"
    assert emulator.stats.ajax_requests == 1


@pytest.mark.parametrize("mode", MODES)
async def test_an_upstream_failure_of_the_model_is_an_upstream_error(
    emulator_factory, mode
) -> None:
    emulator = emulator_factory(mode=mode)
    messages = [{"role": "user", "content": f"please {UPSTREAM_ERROR_TRIGGER} now"}]
    chunks, error = await collect(provider_for(emulator), messages)
    assert isinstance(error, UpstreamError)
    assert error.site_message == UPSTREAM_ERROR_MESSAGE
    assert chunks == []


# --- the nonce and the page cache ----------------------------------------------------------------


async def test_a_refreshed_nonce_is_cached_for_the_next_calls(emulator) -> None:
    emulator.faults.add(Fault(kind="expire_nonce"))
    provider = provider_for(emulator)
    for _ in range(3):
        chunks, error = await collect(provider)
        assert (error, "".join(chunks)) == (None, ANSWER)
    assert emulator.stats.page_fetches == 2
    assert emulator.stats.ajax_requests == 4


def _messages(index: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Hello {index}"}]


async def _many(provider: type[ChatGptt], count: int) -> None:
    """``count`` concurrent calls, each with its own message; each gets its own answer."""
    results = await asyncio.gather(*(collect(provider, _messages(i)) for i in range(count)))
    for index, (chunks, error) in enumerate(results):
        assert error is None, error
        assert "".join(chunks) == f"Hello from upstream: Hello {index}"


@pytest.mark.parametrize("mode", SITES)
async def test_200_concurrent_calls_on_a_cold_cache_fetch_the_page_once(
    emulator_factory, mode
) -> None:
    emulator = site_for(emulator_factory, mode)
    await _many(provider_for(emulator), 200)
    assert emulator.stats.page_fetches == 1
    assert emulator.stats.ajax_requests == 200 * REQUESTS[mode]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("mode", ["sse", "aipkit"])
async def test_concurrent_calls_on_a_stale_cache_fetch_the_page_once(
    emulator_factory, mode
) -> None:
    emulator = site_for(emulator_factory, mode)
    clock = FakeClock()
    provider = provider_for(emulator, token_cache=TokenCache(clock=clock), token_ttl=60.0)
    await _many(provider, 1)
    clock.now += 61.0
    await _many(provider, 50)
    assert emulator.stats.page_fetches == 2


async def test_concurrent_calls_with_a_rejected_nonce_refetch_the_page_once(emulator) -> None:
    provider = provider_for(emulator)
    await _many(provider, 1)
    emulator.rotate_nonce()
    await _many(provider, 50)
    assert emulator.stats.page_fetches == 2
    assert emulator.stats.ajax_requests == 1 + 50 * 2


@pytest.mark.parametrize("mode", ["sse", "aipkit"])
async def test_a_failed_shared_page_fetch_is_retried_by_every_waiter(
    emulator_factory, fake_sleep, mode
) -> None:
    emulator = site_for(emulator_factory, mode)
    emulator.faults.add(_status(503, target="page"))
    await _many(provider_for(emulator, retry_policy=policy(fake_sleep)), 50)
    assert emulator.stats.page_fetches == 2
    assert emulator.stats.ajax_requests == 50 * REQUESTS[mode]
