"""Fault records, the plan that hands them out, and the ``--fault`` spec parser."""

from __future__ import annotations

import re
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatgptt.emulator import (
    CONTROL_FLAGS,
    MALFORMED_VARIANTS,
    Fault,
    FaultPlan,
    format_fault,
    parse_fault,
)
from chatgptt.emulator.faults import EMPTY_STREAM_CONTENTS
from chatgptt.emulator.firewalls import FIREWALL_NAMES


@pytest.mark.parametrize(
    ("spec", "fault"),
    [
        (
            "status=503,times=2,retry_after=1",
            Fault(kind="status", status=503, times=2, retry_after="1"),
        ),
        ("challenge,target=page", Fault(kind="challenge", target="page")),
        ("challenge=503", Fault(kind="challenge", status=503)),
        ("drop,after_tokens=3", Fault(kind="drop", after_tokens=3)),
        ("drop,after_bytes=0,target=any", Fault(kind="drop", after_bytes=0, target="any")),
        (
            "stall=5,where=inside,after_tokens=2",
            Fault(kind="stall", seconds=5.0, where="inside", after_tokens=2),
        ),
        ("stall=0.5", Fault(kind="stall", seconds=0.5)),
        ("malformed=limited", Fault(kind="malformed", variant="limited")),
        ("control=ipBanned", Fault(kind="control", flag="ipBanned")),
        ("error_words", Fault(kind="error_words")),
        (
            "error_words=Rate limit,limited=true",
            Fault(kind="error_words", message="Rate limit", limited=True),
        ),
        ("error_object=boom", Fault(kind="error_object", message="boom")),
        ("expire_nonce,times=every", Fault(kind="expire_nonce", times=None)),
        (
            r"status=429,retry_after=Wed\, 21 Oct 2015 07:28:00 GMT",
            Fault(kind="status", status=429, retry_after="Wed, 21 Oct 2015 07:28:00 GMT"),
        ),
        (" status = 500 , times = 3", Fault(kind="status", status=500, times=3)),
        ("linger", Fault(kind="linger")),
        ("linger=1", Fault(kind="linger", seconds=1.0)),
        ("empty_stream", Fault(kind="empty_stream")),
        ("empty_stream=php_fatal", Fault(kind="empty_stream", content="php_fatal")),
        ("cut,after_tokens=1", Fault(kind="cut", after_tokens=1)),
        ("cut,after_bytes=10,target=page", Fault(kind="cut", after_bytes=10, target="page")),
        ("firewall=sucuri", Fault(kind="firewall", firewall="sucuri")),
        (
            "firewall=wordfence,status=503,target=any,times=every",
            Fault(kind="firewall", firewall="wordfence", status=503, target="any", times=None),
        ),
    ],
)
def test_parse_examples(spec: str, fault: Fault) -> None:
    assert parse_fault(spec) == fault


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ("", "empty"),
        ("explode", "unknown fault kind 'explode'"),
        ("status", "needs 'status'"),
        ("status=abc", "status='abc' is not a number"),
        ("status=99", "100-599"),
        ("status=503,after_tokens=1", "takes no 'after_tokens'"),
        ("drop=3", "takes no value"),
        ("drop,after_bytes=1,after_tokens=1", "not both"),
        ("drop,after_bytes=-1", "non-negative"),
        ("stall=nan", "non-negative"),
        ("stall=1,where=middle", "where"),
        ("malformed=garbled", "variant"),
        ("control=angry", "flag"),
        ("challenge=500", "403 or 503"),
        ("status=503,times=0", "times"),
        ("status=503,times=x", "times='x' is not a number"),
        ("status=503,,times=2", "empty item"),
        ("status=503,times", "expected NAME=VALUE"),
        ("status=503,target=everywhere", "target"),
        ("status=503,times=1,times=2", "given twice"),
        ("error_words,limited=maybe", "limited='maybe'"),
        ("malformed=limited,target=page", "only applies to the AJAX endpoint"),
        ("status=503=1", "equals sign"),
        ("linger=0", "must be positive"),
        ("linger,target=page", "only applies to the AJAX endpoint"),
        ("empty_stream=garbage", "content"),
        ("empty_stream,target=page", "only applies to the AJAX endpoint"),
        ("cut,after_bytes=1,after_tokens=1", "not both"),
        ("firewall", "needs 'firewall'"),
        ("firewall=akamai", "firewall"),
        ("firewall=sucuri,after_tokens=1", "takes no 'after_tokens'"),
    ],
)
def test_parse_rejects_bad_specs(spec: str, named: str) -> None:
    with pytest.raises(ValueError, match=re.escape(named)) as raised:
        parse_fault(spec)
    assert "Attribute(" not in str(raised.value)  # attrs' details stay out of the message


_texts = st.text(min_size=0, max_size=30)
_counts = st.none() | st.integers(min_value=0, max_value=10_000)
_targets = st.sampled_from(["ajax", "any", "page"])
_times = st.none() | st.integers(min_value=1, max_value=100)
faults = st.one_of(
    st.builds(
        Fault,
        kind=st.just("status"),
        status=st.integers(100, 599),
        retry_after=st.none() | _texts,
        body=st.none() | _texts,
        target=_targets,
        times=_times,
    ),
    st.builds(
        Fault,
        kind=st.just("challenge"),
        status=st.sampled_from([None, 403, 503]),
        target=_targets,
        times=_times,
    ),
    st.builds(
        Fault, kind=st.just("expire_nonce"), target=st.sampled_from(["ajax", "any"]), times=_times
    ),
    st.builds(Fault, kind=st.just("drop"), after_bytes=_counts, target=_targets, times=_times),
    st.builds(Fault, kind=st.just("drop"), after_tokens=_counts, target=_targets, times=_times),
    st.builds(
        Fault,
        kind=st.just("stall"),
        seconds=st.floats(min_value=0, max_value=1e6, allow_nan=False),
        where=st.sampled_from([None, "before", "inside"]),
        after_tokens=_counts,
        target=_targets,
        times=_times,
    ),
    st.builds(
        Fault,
        kind=st.just("malformed"),
        variant=st.sampled_from(MALFORMED_VARIANTS),
        after_tokens=_counts,
        times=_times,
    ),
    st.builds(
        Fault, kind=st.just("error_words"), message=st.none() | _texts, limited=st.booleans()
    ),
    st.builds(
        Fault,
        kind=st.just("control"),
        flag=st.sampled_from(CONTROL_FLAGS),
        message=st.none() | _texts,
    ),
    st.builds(Fault, kind=st.just("error_object"), message=st.none() | _texts, times=_times),
    st.builds(
        Fault,
        kind=st.just("linger"),
        seconds=st.none() | st.floats(min_value=0.001, max_value=1e3, allow_nan=False),
        times=_times,
    ),
    st.builds(
        Fault,
        kind=st.just("empty_stream"),
        content=st.sampled_from([None, *EMPTY_STREAM_CONTENTS]),
        times=_times,
    ),
    st.builds(Fault, kind=st.just("cut"), after_bytes=_counts, target=_targets, times=_times),
    st.builds(Fault, kind=st.just("cut"), after_tokens=_counts, target=_targets, times=_times),
    st.builds(
        Fault,
        kind=st.just("firewall"),
        firewall=st.sampled_from(FIREWALL_NAMES),
        status=st.none() | st.integers(100, 599),
        target=_targets,
        times=_times,
    ),
)


@settings(deadline=None)
@given(faults)
def test_format_round_trips(fault: Fault) -> None:
    assert parse_fault(format_fault(fault)) == fault


def test_format_is_readable() -> None:
    fault = Fault(kind="stall", seconds=5, where="inside", after_tokens=2, times=None)
    assert format_fault(fault) == "stall=5,where=inside,after_tokens=2,times=every"


def test_plan_matches_targets_in_order() -> None:
    page_503 = Fault(kind="status", status=503, target="page")
    drop = Fault(kind="drop", after_tokens=1)
    plan = FaultPlan([page_503, drop])
    assert plan.take("ajax") == drop
    assert plan.take("ajax") is None
    assert plan.take("page") == page_503
    assert plan.take("page") is None


def test_plan_uses_up_times() -> None:
    plan = FaultPlan()
    plan.add(Fault(kind="status", status=503, times=2))
    plan.add(Fault(kind="status", status=500, target="any"))
    assert plan.pending[0].times == 2
    taken = [plan.take("ajax"), plan.take("page"), plan.take("ajax")]
    assert [fault.status if fault else None for fault in taken] == [503, 500, 503]
    assert plan.pending == ()
    assert plan.take("ajax") is None


def test_plan_every_request_until_cleared() -> None:
    plan = FaultPlan([Fault(kind="expire_nonce", times=None, target="any")])
    assert all(plan.take("ajax") is not None for _ in range(50))
    assert plan.take("page") is None  # expire_nonce never hits a page
    plan.clear()
    assert plan.take("ajax") is None


def test_plan_is_thread_safe() -> None:
    """Concurrent takers never use a fault more often than its ``times``."""
    plan = FaultPlan([Fault(kind="status", status=503, times=500)])
    taken: list[Fault | None] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(200):
            fault = plan.take("ajax")
            with lock:
                taken.append(fault)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(fault is not None for fault in taken) == 500


def test_fault_hits() -> None:
    assert Fault(kind="status", status=503, target="any").hits("page")
    assert not Fault(kind="control", flag="ipBanned", target="any").hits("page")
    assert Fault(kind="control", flag="ipBanned", target="any").hits("ajax")
