"""An event's evidence: typed records with one codec, lenient when reading, bounded in size."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.detect.detector import DetectionParams, Detector
from monitor.detect.evidence import (
    MAX_BLIND,
    MAX_RESUMED,
    BgpWithdrawal,
    BlockEvidence,
    Evidence,
    Failure,
    HopEvidence,
    Interval,
    KindEvidence,
    OwnerRef,
    PathEvidence,
    PrefixRouting,
    Seen,
    SpecificVisibility,
    UnreachableSighting,
)
from tests.unit.test_detector import Sim, World, at, dprk_box, one_event

# Times at millisecond resolution: the JSON form is ISO 8601 with milliseconds.
times = st.integers(0, 4_000_000_000_000).map(lambda ms: ms / 1000)
opt_times = st.none() | times
text = st.text(max_size=12)
owners = st.none() | st.builds(OwnerRef, text, st.none() | st.integers(1, 2**32 - 1), text)
silent_hops = st.builds(HopEvidence, st.integers(1, 64))
traced_hops = st.builds(
    HopEvidence,
    st.integers(1, 64),
    text,
    st.none() | st.floats(0, 1e4, allow_nan=False),
    st.sampled_from(["time_exceeded", "unreachable", "reply"]),
    text,
    owners,
    st.none() | st.just("traceroute"),
)
# The last answer learnt from the ordinary probes: no TTL, no RTT.
probe_hops = st.builds(
    HopEvidence, st.none(), text, st.none(), st.just("unreachable"), text, owners, st.just("probes")
)
hops = silent_hops | traced_hops
evidence = st.builds(
    Evidence,
    kinds=st.dictionaries(
        st.sampled_from(["icmp", "tcp", "http", "dns"]),
        st.builds(
            KindEvidence,
            st.none() | st.builds(Seen, text, times),
            st.none() | st.builds(Failure, text, times, text, text),
        ),
    ),
    failure_order=st.lists(text, max_size=4).map(tuple),
    blocks=st.lists(st.builds(BlockEvidence, text, opt_times, opt_times), max_size=4).map(tuple),
    targets_down=st.dictionaries(text, st.lists(text, max_size=3).map(tuple), max_size=3),
    vantage_blind=st.lists(st.builds(Interval, opt_times, opt_times), max_size=3).map(tuple),
    vantage_blind_dropped=st.integers(0, 100),
    resumed_at=st.lists(times, max_size=3).map(tuple),
    resumed_dropped=st.integers(0, 100),
    bgp=st.none()
    | st.dictionaries(
        text,
        st.builds(
            PrefixRouting,
            st.none() | st.floats(0, 1),
            st.integers(0, 2000),
            st.integers(0, 2000),
            st.dictionaries(
                text, st.builds(SpecificVisibility, st.none() | st.floats(0, 1), st.integers(0, 9))
            ),
            st.none()
            | st.builds(
                BgpWithdrawal, opt_times, opt_times, st.integers(0, 9), st.none() | st.floats(0, 1)
            ),
        ),
        max_size=2,
    ),
    path=st.none()
    | st.builds(
        PathEvidence,
        text,
        times,
        st.floats(0, 100),
        st.booleans(),
        st.lists(hops, max_size=3).map(tuple),
        st.integers(0, 64),
        st.integers(1, 64),
        st.none() | text,
        st.lists(
            st.builds(
                UnreachableSighting, text, text, st.integers(0, 9), times, times, text, owners
            ),
            max_size=2,
        ).map(tuple),
        st.none() | traced_hops | probe_hops,
        text,
        st.none() | text,
    ),
    other=st.dictionaries(st.sampled_from(["annotations", "future"]), st.integers() | text),
)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(evidence)
def test_codec_round_trips(ev: Evidence) -> None:
    """What is written reads back equal, through JSON text as the event log stores it."""
    assert Evidence.from_json(json.loads(json.dumps(ev.to_json()))) == ev


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=30,
)
shaped = st.fixed_dictionaries(
    {},
    optional={
        k: json_values
        for k in ("kinds", "blocks", "vantage_blind", "resumed_at", "bgp", "path", "targets_down")
    },
)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(json_values | shaped)
def test_reading_never_raises_on_garbage(doc: Any) -> None:
    """A hand-edited or corrupt evidence document reads as what can be made of it."""
    ev = Evidence.from_json(doc)
    json.dumps(ev.to_json())  # and it can be written back


def test_unknown_keys_are_kept_verbatim() -> None:
    """Keys written by a newer version survive a read and a write by this one."""
    doc = {"failure_order": ["dns"], "annotations": {"cause": "power"}, "kinds": {}}
    again = Evidence.from_json(doc).to_json()
    assert again["annotations"] == {"cause": "power"} and again["failure_order"] == ["dns"]


def test_blind_intervals_are_bounded_within_one_event() -> None:
    """A months-long event with a flaky vantage keeps its first blind interval and the latest
    ones, and counts the rest, instead of growing without bound."""
    cuts = [(at(1000 + 400 * i), at(1000 + 400 * i + 150)) for i in range(MAX_BLIND + 8)]
    end = cuts[-1][1] + 600
    w = World(seed=3, blackout=[(at(600), end)], uplink_down=cuts)
    sim = Sim(w)
    sim.run_until(end + 900)
    _, closed = one_event(sim.log)
    ev = closed.evidence
    assert len(ev.vantage_blind) == MAX_BLIND
    assert ev.vantage_blind_dropped == 8
    assert ev.vantage_blind[0].start is not None and ev.vantage_blind[0].start < cuts[1][0]
    assert ev.vantage_blind[-1].start is not None and ev.vantage_blind[-1].start >= cuts[-2][1]
    assert closed.evidence.to_json()["vantage_blind_dropped"] == 8


def test_restarts_are_bounded_within_one_event() -> None:
    """An event resumed at every restart of a crash loop lists the first and latest restarts."""
    w = World(seed=11, blackout=[(at(600), at(100_000))])
    first = Sim(w)
    first.run_until(at(700))
    (stored,) = first.det.open_events()
    spec, controls = dprk_box()
    for i in range(MAX_RESUMED + 5):
        det = Detector(DetectionParams(), [spec], controls, now=at(800 + i))
        det.resume([stored], at(800 + i))
        (stored,) = det.open_events()
    assert len(stored.evidence.resumed_at) == MAX_RESUMED
    assert stored.evidence.resumed_dropped == 5
    assert stored.evidence.resumed_at[0] == at(800)
    assert stored.evidence.resumed_at[-1] == at(800 + MAX_RESUMED + 4)
