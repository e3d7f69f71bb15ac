"""A property over random fault schedules: the caller gets the whole answer, exactly, or a
typed error whose partial text is what it received — a prefix of the answer.

Each example scripts 0-3 faults of every kind with random parameters, in JSON or SSE mode,
with a random answer length and piece size, and runs one call with retries (fake sleep)
and short time limits against one emulator (its plan is cleared between examples).
"""

from __future__ import annotations

import asyncio
import string
from typing import Any

import attrs
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from chatgptt import ChatGpttError, RetryPolicy, StreamInterruptedError, Timeouts
from chatgptt.emulator import CONTROL_FLAGS, EmulatorConfig, Fault
from chatgptt.emulator.faults import EMPTY_STREAM_CONTENTS
from chatgptt.emulator.firewalls import FIREWALL_NAMES
from chatgptt.emulator.model import fit_answer
from chatgptt.testing import provider_for
from tests.conftest import FakeSleep

#: Stalls are ended by the emulator as soon as the client gives up (after 50 ms).
STALL_SECONDS = 30.0
LIMITS = Timeouts(connect=5.0, first_byte=0.05, idle=0.05, total=20.0)
ATTEMPTS = 3

_targets = st.sampled_from(["ajax", "page", "any"])
_times = st.sampled_from([1, 1, 2])
_tokens = st.integers(min_value=0, max_value=8)

statuses = st.builds(
    Fault,
    kind=st.just("status"),
    status=st.sampled_from([400, 403, 404, 408, 409, 429, 500, 502, 503, 520, 527]),
    retry_after=st.sampled_from([None, None, "0", "1", "100"]),
    target=_targets,
    times=st.sampled_from([1, 2, None]),
)
challenges = st.builds(
    Fault, kind=st.just("challenge"), status=st.sampled_from([403, 503]), target=_targets
)
expired_nonces = st.builds(Fault, kind=st.just("expire_nonce"), times=_times)
drops = st.one_of(
    st.builds(Fault, kind=st.just("drop"), target=_targets, times=_times),
    st.builds(
        Fault,
        kind=st.just("drop"),
        after_bytes=st.integers(min_value=0, max_value=2000),
        target=_targets,
        times=_times,
    ),
    st.builds(Fault, kind=st.just("drop"), after_tokens=_tokens, times=_times),
)
stalls = st.one_of(
    st.builds(
        Fault, kind=st.just("stall"), seconds=st.just(STALL_SECONDS), target=_targets, times=_times
    ),
    st.builds(
        Fault,
        kind=st.just("stall"),
        seconds=st.just(STALL_SECONDS),
        where=st.just("inside"),
        after_tokens=_tokens,
        times=_times,
    ),
)
malformed = st.builds(
    Fault,
    kind=st.just("malformed"),
    # invalid_utf8 is left out: it adds text of its own (U+FFFD) to the answer, which the
    # fault matrix checks exactly.
    variant=st.sampled_from(["invalid_json", "limited", "no_done", "truncated_end"]),
    after_tokens=st.one_of(st.none(), _tokens),
)
error_words = st.builds(
    Fault,
    kind=st.just("error_words"),
    message=st.sampled_from([None, "Quota exceeded.", 'Bad "model" \\ name']),
    limited=st.booleans(),
)
controls = st.builds(Fault, kind=st.just("control"), flag=st.sampled_from(CONTROL_FLAGS))
error_objects = st.builds(
    Fault, kind=st.just("error_object"), message=st.sampled_from([None, "Server overloaded"])
)
cuts = st.one_of(
    st.builds(Fault, kind=st.just("cut"), target=_targets, times=_times),
    st.builds(
        Fault,
        kind=st.just("cut"),
        after_bytes=st.integers(min_value=0, max_value=2000),
        target=_targets,
        times=_times,
    ),
    st.builds(Fault, kind=st.just("cut"), after_tokens=_tokens, times=_times),
)
lingers = st.builds(Fault, kind=st.just("linger"), seconds=st.just(0.02))
empty_streams = st.builds(
    Fault, kind=st.just("empty_stream"), content=st.sampled_from(EMPTY_STREAM_CONTENTS)
)
firewalls = st.builds(
    Fault,
    kind=st.just("firewall"),
    firewall=st.sampled_from(FIREWALL_NAMES),
    status=st.sampled_from([None, 200, 503]),
    target=_targets,
)

faults = st.one_of(
    statuses,
    challenges,
    expired_nonces,
    drops,
    stalls,
    malformed,
    error_words,
    controls,
    error_objects,
    cuts,
    lingers,
    empty_streams,
    firewalls,
)

# Words joined by single spaces: trimmed (the site trims the turn) and never PHP-empty.
_WORD = st.text(
    alphabet=string.ascii_letters + string.digits + ".,!?'\"&<>/\\éß€😀", min_size=1, max_size=6
)
messages = st.lists(_WORD, min_size=1, max_size=4).map(lambda words: " ".join(words) + ".")


@attrs.frozen
class Scenario:
    mode: str
    answer_chars: int | None
    token_chars: int
    message: str
    faults: tuple[Fault, ...]
    framing: str = "length"


scenarios = st.builds(
    Scenario,
    mode=st.sampled_from(["sse", "json"]),
    answer_chars=st.one_of(st.none(), st.integers(min_value=0, max_value=400)),
    token_chars=st.integers(min_value=1, max_value=40),
    message=messages,
    faults=st.integers(min_value=0, max_value=3).flatmap(
        lambda count: st.lists(faults, min_size=count, max_size=count).map(tuple)
    ),
    framing=st.sampled_from(["length", "close"]),
)


async def run_call(emulator: Any, scenario: Scenario) -> tuple[list[str], ChatGpttError | None]:
    provider = provider_for(
        emulator,
        retry_policy=RetryPolicy(sleep=FakeSleep(), attempts=ATTEMPTS),
        timeouts=LIMITS,
    )
    chunks: list[str] = []
    stream = provider.create_async_generator(
        "gpt-4o", [{"role": "user", "content": scenario.message}]
    )
    try:
        async for chunk in stream:
            chunks.append(chunk)
    except ChatGpttError as exc:  # anything else is untyped: it fails the test
        return chunks, exc
    return chunks, None


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scenario=scenarios)
def test_the_answer_is_whole_or_a_typed_error_with_a_prefix(emulator, scenario: Scenario) -> None:
    emulator.faults.clear()
    emulator.config = EmulatorConfig(
        token_delay=0.0,
        mode=scenario.mode,
        answer_chars=scenario.answer_chars,
        token_chars=scenario.token_chars,
        framing=scenario.framing,
    )
    for fault in scenario.faults:
        emulator.faults.add(fault)
    full = fit_answer("Hello from upstream: " + scenario.message, scenario.answer_chars)

    ajax_before = emulator.stats.ajax_requests
    chunks, error = asyncio.run(run_call(emulator, scenario))
    text = "".join(chunks)

    event(f"outcome: {type(error).__name__ if error else 'the answer'}")
    assert all(chunks), "an empty chunk was yielded"
    if error is None:
        assert text == full
    else:
        assert error.partial_text == text, "the error's partial text is not what was delivered"
        assert full.startswith(text), "delivered text is not a prefix of the answer"
        if text:
            assert isinstance(error, StreamInterruptedError)
    # Retries are bounded: each attempt may be sent twice (one nonce refetch per call).
    assert emulator.stats.ajax_requests - ajax_before <= 2 * ATTEMPTS


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    mode=st.sampled_from(["sse", "json"]),
    answer_chars=st.integers(min_value=0, max_value=3000),
    token_chars=st.integers(min_value=1, max_value=500),
)
def test_without_faults_every_answer_arrives_exactly(
    emulator, mode: str, answer_chars: int, token_chars: int
) -> None:
    """The baseline of the property: the full answer the property compares against."""
    emulator.faults.clear()
    emulator.config = EmulatorConfig(
        token_delay=0.0, mode=mode, answer_chars=answer_chars, token_chars=token_chars
    )
    scenario = Scenario(mode, answer_chars, token_chars, "Hi", ())
    chunks, error = asyncio.run(run_call(emulator, scenario))
    assert error is None
    assert "".join(chunks) == fit_answer("Hello from upstream: Hi", answer_chars)


#: Failures that strike after at least one piece of the answer was sent (SSE mode).
after_text = st.one_of(
    st.builds(
        Fault,
        kind=st.just("drop"),
        after_tokens=st.integers(min_value=1, max_value=8),
        times=_times,
    ),
    st.builds(
        Fault,
        kind=st.just("stall"),
        seconds=st.just(STALL_SECONDS),
        where=st.just("inside"),
        after_tokens=st.integers(min_value=1, max_value=8),
    ),
    st.builds(
        Fault,
        kind=st.just("malformed"),
        variant=st.sampled_from(["invalid_json", "limited"]),
        after_tokens=st.integers(min_value=1, max_value=8),
    ),
    st.builds(Fault, kind=st.just("cut"), after_tokens=st.integers(min_value=1, max_value=8)),
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    before=st.lists(faults, max_size=2),
    failure=after_text,
    token_chars=st.integers(min_value=1, max_value=12),
    message=messages,
    framing=st.sampled_from(["length", "close"]),
)
def test_a_failure_after_text_carries_exactly_the_delivered_prefix(
    emulator, before: list[Fault], failure: Fault, token_chars: int, message: str, framing: str
) -> None:
    """Whatever failed first, once text has been delivered the caller gets either the whole
    answer or a StreamInterruptedError whose partial text is exactly what it received."""
    emulator.faults.clear()
    emulator.config = EmulatorConfig(
        token_delay=0.0, mode="sse", token_chars=token_chars, framing=framing
    )
    for fault in [*before, failure]:
        emulator.faults.add(fault)
    full = "Hello from upstream: " + message
    chunks, error = asyncio.run(run_call(emulator, Scenario("sse", None, token_chars, message, ())))
    text = "".join(chunks)
    event(f"outcome: {type(error).__name__ if error else 'the answer'}")
    if error is None:
        assert text == full
        return
    assert error.partial_text == text
    assert full.startswith(text)
    if text:
        assert isinstance(error, StreamInterruptedError)
        assert not isinstance(error.cause, StreamInterruptedError)
