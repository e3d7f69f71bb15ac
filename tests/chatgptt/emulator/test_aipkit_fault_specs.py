"""The AIPKit fault kinds and targets: specs, validation, and which requests they hit."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatgptt.emulator import (
    AIPKIT_ONLY_KINDS,
    ANSWER_KINDS,
    FAULT_KINDS,
    Fault,
    FaultPlan,
    format_fault,
    parse_fault,
)
from chatgptt.emulator.faults import RequestKind


@pytest.mark.parametrize(
    ("spec", "fault"),
    [
        ("drop,after_tokens=2,target=stream", Fault(kind="drop", after_tokens=2, target="stream")),
        ("expire_nonce,target=cache", Fault(kind="expire_nonce", target="cache")),
        ("status=502,target=nonce", Fault(kind="status", status=502, target="nonce")),
        ("quota", Fault(kind="quota")),
        ("quota=No more,notice=false", Fault(kind="quota", message="No more", notice=False)),
        ("error_event=Boom", Fault(kind="error_event", message="Boom")),
        (
            "error_event=Boom,where=inside,after_tokens=1,done=true",
            Fault(kind="error_event", message="Boom", where="inside", after_tokens=1, done=True),
        ),
        (
            "warning=Careful,after_tokens=3",
            Fault(kind="warning", message="Careful", after_tokens=3),
        ),
        ("named_event=citations,data=[]", Fault(kind="named_event", event="citations", data="[]")),
        (
            r"named_event=status,data={\"a\":1\,\"b\":2},where=before",
            Fault(kind="named_event", event="status", data='{"a":1,"b":2}', where="before"),
        ),
        ("done_data", Fault(kind="done_data")),
        (
            r"done_data={\"finished\":true\,\"citations\":[]}",
            Fault(kind="done_data", data='{"finished":true,"citations":[]}'),
        ),
    ],
)
def test_parse_examples(spec: str, fault: Fault) -> None:
    assert parse_fault(spec) == fault
    assert parse_fault(format_fault(fault)) == fault


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ("quota,target=page", "only applies to an AIPKit stream"),
        ("quota,target=cache", "only hits the stream"),
        ("malformed=no_done,target=nonce", "only hits the stream"),
        ("error_event,where=before,after_tokens=1", "after_tokens needs where=inside"),
        ("named_event", "needs 'event'"),
        ("named_event=bad name", "event must be a name"),
        ("named_event=x,data=nope", "data must be JSON"),
        ("done_data=[1]", "must be a JSON object"),
        ("quota,notice=perhaps", "notice='perhaps'"),
        ("warning,where=inside", "takes no 'where'"),
        ("status=503,target=steam", "target"),
    ],
)
def test_parse_rejects_bad_specs(spec: str, named: str) -> None:
    with pytest.raises(ValueError, match=re.escape(named)):
        parse_fault(spec)


def test_a_newline_in_data_is_refused() -> None:
    with pytest.raises(ValueError, match="one line"):
        Fault(kind="done_data", data='{\n"finished":true}')


REQUESTS: list[RequestKind] = ["page", "ajax", "cache", "stream", "nonce"]


@pytest.mark.parametrize(
    ("fault", "hit"),
    [
        (Fault(kind="status", status=503), {"ajax", "cache", "stream", "nonce"}),
        (Fault(kind="status", status=503, target="any"), set(REQUESTS)),
        (Fault(kind="status", status=503, target="cache"), {"cache"}),
        (Fault(kind="drop", target="stream"), {"stream"}),
        (Fault(kind="drop"), {"ajax", "cache", "stream", "nonce"}),
        (Fault(kind="drop", after_bytes=10), {"ajax", "cache", "stream", "nonce"}),
        (Fault(kind="drop", after_tokens=2), {"ajax", "stream"}),
        (Fault(kind="drop", after_tokens=2, target="cache"), {"cache"}),
        (Fault(kind="cut", after_tokens=2), {"ajax", "stream"}),
        (Fault(kind="cut", after_bytes=10), {"ajax", "cache", "stream", "nonce"}),
        (Fault(kind="stall", seconds=1, where="inside", target="any"), {"page", "ajax", "stream"}),
        (Fault(kind="stall", seconds=1), {"ajax", "cache", "stream", "nonce"}),
        (Fault(kind="expire_nonce"), {"ajax", "cache", "stream", "nonce"}),
        (Fault(kind="malformed", variant="no_done"), {"ajax", "stream"}),
        (Fault(kind="control", flag="ipBanned", target="any"), {"ajax", "stream"}),
        (Fault(kind="quota"), {"stream"}),
        (Fault(kind="warning", target="any"), {"stream"}),
        (Fault(kind="done_data", target="stream"), {"stream"}),
    ],
)
def test_which_requests_a_fault_hits(fault: Fault, hit: set[str]) -> None:
    assert {request for request in REQUESTS if fault.hits(request)} == hit


def test_plan_skips_step_one_for_a_stream_fault() -> None:
    plan = FaultPlan([Fault(kind="drop", after_tokens=2, target="stream")])
    assert plan.take("cache") is None
    assert plan.take("nonce") is None
    assert plan.take("stream") == Fault(kind="drop", after_tokens=2, target="stream")


def test_kind_sets() -> None:
    assert AIPKIT_ONLY_KINDS <= ANSWER_KINDS <= set(FAULT_KINDS)
    assert "expire_nonce" not in ANSWER_KINDS


_texts = st.text(min_size=0, max_size=20)
_json_texts = st.sampled_from(["{}", "[]", '{"a":1}', "null", '"x, y = z"', "[1,2]"])
_times = st.none() | st.integers(min_value=1, max_value=50)
_counts = st.none() | st.integers(min_value=0, max_value=100)
aipkit_faults = st.one_of(
    st.builds(
        Fault,
        kind=st.just("error_event"),
        message=st.none() | _texts,
        where=st.just("inside"),
        after_tokens=_counts,
        done=st.none() | st.booleans(),
        target=st.sampled_from(["ajax", "any", "stream"]),
        times=_times,
    ),
    st.builds(
        Fault,
        kind=st.just("quota"),
        message=st.none() | _texts,
        notice=st.booleans(),
        target=st.sampled_from(["ajax", "stream"]),
    ),
    st.builds(Fault, kind=st.just("warning"), message=st.none() | _texts, after_tokens=_counts),
    st.builds(
        Fault,
        kind=st.just("named_event"),
        event=st.from_regex(r"[A-Za-z0-9_.\-]{1,12}", fullmatch=True),
        data=st.none() | _json_texts,
        where=st.sampled_from([None, "before", "inside"]),
    ),
    st.builds(Fault, kind=st.just("done_data"), data=st.none() | st.just('{"finished":true}')),
    st.builds(
        Fault,
        kind=st.just("status"),
        status=st.integers(100, 599),
        target=st.sampled_from(["cache", "stream", "nonce"]),
    ),
    st.builds(
        Fault,
        kind=st.just("drop"),
        after_tokens=_counts,
        target=st.sampled_from(["cache", "stream"]),
    ),
)


@settings(deadline=None)
@given(aipkit_faults)
def test_format_round_trips(fault: Fault) -> None:
    assert parse_fault(format_fault(fault)) == fault


def test_syntax_lists_every_kind_with_its_parameters() -> None:
    from chatgptt.emulator.faults import fault_syntax

    lines = fault_syntax().splitlines()
    assert [line.split()[0].split("=")[0].split("[")[0] for line in lines] == list(FAULT_KINDS)
    assert "  named_event=EVENT[,data=...][,where=...][,after_tokens=...]" in lines
    assert "  quota[=MESSAGE][,notice=...]" in lines
