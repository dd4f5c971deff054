"""The pure half of notifications: filters, severity, transitions, one pair per incident,
escalations once per kind, the rate limit, the vantage, resume; and the messages' content."""

from __future__ import annotations

import dataclasses
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.detect.evidence import (
    BgpWithdrawal,
    BlockEvidence,
    Evidence,
    Failure,
    HopEvidence,
    KindEvidence,
    OwnerRef,
    PathEvidence,
    PrefixRouting,
)
from monitor.detect.model import (
    EventClosed,
    EventKind,
    EventOpened,
    EventRecord,
    EventUpdated,
    State,
    StateChanged,
    VantageChanged,
)
from monitor.notify.format import FormatOptions, render, when
from monitor.notify.params import (
    NOTIFY_SEVERITY,
    Format,
    NotifyReceiver,
    Transition,
    redact,
)
from monitor.notify.policy import Policy

T0 = 1_750_000_000.0  # 2025-06-15 15:06:40 UTC
PY = ZoneInfo("Asia/Pyongyang")


def rcv(name: str = "r", **kw: object) -> NotifyReceiver:
    return NotifyReceiver(url=f"json://127.0.0.1:9/{name}", name=name, **kw)  # type: ignore[arg-type]


def evidence() -> Evidence:
    return Evidence(
        kinds={
            "dns": KindEvidence(
                first_failed=Failure("175.45.176.15:53", T0, "timeout", "no answer")
            ),
            "icmp": KindEvidence(first_failed=Failure("175.45.176.1", T0 + 20, "timeout", "")),
        },
        failure_order=("dns", "icmp"),
        blocks=tuple(BlockEvidence(f"175.45.{176 + i}.0/24", T0 + 20, None) for i in range(6)),
        bgp={
            "175.45.176.0/22": PrefixRouting(
                0.1, 3, 30, withdrawal=BgpWithdrawal(T0 + 5, T0 + 30, 27, 0.1)
            )
        },
        path=PathEvidence(
            target="175.45.176.1",
            started=T0 + 40,
            duration_seconds=2.0,
            reached=False,
            hops=(),
            silent_after=3,
            max_hops=30,
            error=None,
            unreachable_from=(),
            last_answer=HopEvidence(
                3, "198.18.9.1", 1.0, "time_exceeded", owner=OwnerRef("CU", 4837, "x")
            ),
            summary="the path ends at China Unicom",
        ),
    )


def ev(
    kind: EventKind = EventKind.BLACKOUT,
    entity: str = "star-jv",
    end: float | None = None,
    id: str = "ev1",
) -> EventRecord:
    return EventRecord(id, entity, kind, T0, end, {}, evidence())


def opened(e: EventRecord) -> EventOpened:
    return EventOpened(e)


def keys(p: Policy, changes: list[object], now: float = T0 + 60) -> list[str]:
    out = []
    for c in changes:
        out += [f"{n.receiver}:{n.key}" for n in p.on_change(c, now).notifications]  # type: ignore[arg-type]
    return out


# --- filters and transitions ---------------------------------------------------------------


def test_blackout_gives_opened_then_closed() -> None:
    """An event that opens and closes gives its receiver one opened and one closed message."""
    p = Policy([rcv()])
    e = ev()
    assert keys(p, [opened(e), EventClosed(dataclasses.replace(e, end=T0 + 600))]) == [
        "r:ev1/opened",
        "r:ev1/closed",
    ]


def test_entity_filter() -> None:
    """A receiver limited to some entities hears nothing of another entity's events."""
    p = Policy([rcv("a", entities=("kptc",)), rcv("b")])
    assert keys(p, [opened(ev())]) == ["b:ev1/opened"]


def test_kind_filter_and_escalation_into_it_is_an_opened() -> None:
    """An event opening as dns is not told to a blackout-only receiver; its escalation to
    blackout is that receiver's opened (with the blackout content), and its end is told."""
    p = Policy([rcv(kinds=(EventKind.BLACKOUT,))])
    e = ev(EventKind.DNS)
    assert keys(p, [opened(e)]) == []
    up = EventUpdated(dataclasses.replace(e, kind=EventKind.BLACKOUT), EventKind.DNS)
    ns = p.on_change(up, T0 + 60).notifications
    assert [n.key for n in ns] == ["ev1/opened"] and "blackout" in ns[0].title
    assert keys(p, [EventClosed(dataclasses.replace(up.event, end=T0 + 300))]) == ["r:ev1/closed"]


def test_min_severity_order() -> None:
    """min_severity follows degraded < web = dns = routing < partial < blackout."""
    order = [NOTIFY_SEVERITY[k] for k in ("degraded", "web", "partial", "blackout")]  # type: ignore[index]
    assert order == sorted(order) and len(set(order)) == 4
    assert NOTIFY_SEVERITY[EventKind.WEB] == NOTIFY_SEVERITY[EventKind.DNS]
    assert NOTIFY_SEVERITY[EventKind.DNS] == NOTIFY_SEVERITY[EventKind.ROUTING]
    p = Policy([rcv(min_severity=EventKind.PARTIAL)])
    for i, kind in enumerate(EventKind):
        got = keys(p, [opened(ev(kind, id=f"e{i}"))])
        want = kind in (EventKind.PARTIAL, EventKind.BLACKOUT)
        assert bool(got) == want, kind


def test_never_told_opened_means_no_closed() -> None:
    """The end of an event the receiver never heard of (filtered out) is not sent to it."""
    p = Policy([rcv(kinds=(EventKind.BLACKOUT,))])
    e = ev(EventKind.WEB)
    assert keys(p, [opened(e), EventClosed(dataclasses.replace(e, end=T0 + 60))]) == []


def test_transitions_filter() -> None:
    """`transitions: [closed]` gives only the closed message."""
    p = Policy([rcv(transitions=(Transition.CLOSED,))])
    e = ev()
    assert keys(p, [opened(e), EventClosed(dataclasses.replace(e, end=T0 + 60))]) == [
        "r:ev1/closed"
    ]


def test_escalation_once_per_kind() -> None:
    """Escalations are told once per kind reached: dns -> partial -> blackout gives two."""
    p = Policy([rcv()])
    e = ev(EventKind.DNS)
    changes: list[object] = [opened(e)]
    prev = EventKind.DNS
    for k in (EventKind.PARTIAL, EventKind.PARTIAL, EventKind.BLACKOUT, EventKind.BLACKOUT):
        changes.append(EventUpdated(dataclasses.replace(e, kind=k), prev))
        prev = k
    assert keys(p, changes) == [
        "r:ev1/opened",
        "r:ev1/escalated/partial",
        "r:ev1/escalated/blackout",
    ]


def test_flapping_event_gives_one_pair() -> None:
    """A flapping outage kept as one event (phases, recoveries, relapses as EventUpdated
    without escalation) gives one opened and one closed, not dozens."""
    p = Policy([rcv()])
    e = ev()
    changes: list[object] = [opened(e)]
    for i in range(40):
        changes.append(EventUpdated(dataclasses.replace(e, signals={"n": i}), EventKind.BLACKOUT))
    changes.append(EventClosed(dataclasses.replace(e, end=T0 + 900)))
    assert keys(p, changes) == ["r:ev1/opened", "r:ev1/closed"]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(list(EventKind)), st.booleans()), min_size=0, max_size=30)
)
def test_any_update_sequence_gives_at_most_one_per_key(steps: list[tuple[EventKind, bool]]) -> None:
    """Whatever updates an event gets, a receiver gets one opened, one closed, and at most one
    escalation per kind (kinds only rise, as the detector escalates them)."""
    from monitor.detect.model import SEVERITY

    p = Policy([rcv()])
    e = ev(EventKind.DEGRADED)
    got = [n.key for n in p.on_change(opened(e), T0).notifications]
    cur = e
    for kind, _ in steps:
        new = kind if SEVERITY[kind] > SEVERITY[cur.kind] else cur.kind
        nxt = dataclasses.replace(cur, kind=new)
        got += [n.key for n in p.on_change(EventUpdated(nxt, cur.kind), T0).notifications]
        cur = nxt
    got += [
        n.key
        for n in p.on_change(EventClosed(dataclasses.replace(cur, end=T0 + 1)), T0).notifications
    ]
    assert len(got) == len(set(got))
    assert got[0] == "ev1/opened" and got[-1] == "ev1/closed"
    assert got.count("ev1/opened") == 1 and got.count("ev1/closed") == 1


def test_other_changes_say_nothing() -> None:
    """State changes are not notifications."""
    p = Policy([rcv()])
    assert keys(p, [StateChanged("star-jv", State.UP, State.DOWN, T0, T0, {})]) == []


# --- rate limit -----------------------------------------------------------------------------


def test_rate_limit_drops_opened_and_its_closed_only() -> None:
    """Over `rate_limit` per hour, an opened is dropped (counted) and so is its closed; the
    closed of a told event is always sent; an hour later opened messages flow again."""
    p = Policy([rcv(rate_limit=2)])
    evs = [ev(id=f"e{i}") for i in range(3)]
    d = [p.on_change(opened(e), T0 + i) for i, e in enumerate(evs)]
    assert [n.key for x in d for n in x.notifications] == ["e0/opened", "e1/opened"]
    assert [(x.receiver, x.key, x.reason) for x in d[2].dropped] == [
        ("r", "e2/opened", "rate_limited")
    ]
    closed = [
        n.key
        for e in evs
        for n in p.on_change(EventClosed(dataclasses.replace(e, end=T0 + 9)), T0 + 10).notifications
    ]
    assert closed == ["e0/closed", "e1/closed"]
    later = p.on_change(opened(ev(id="e3")), T0 + 3601).notifications
    assert [n.key for n in later] == ["e3/opened"]


def test_rate_limit_zero_is_unlimited() -> None:
    """rate_limit 0 sends everything."""
    p = Policy([rcv(rate_limit=0)])
    assert len(keys(p, [opened(ev(id=f"e{i}")) for i in range(100)])) == 100


# --- the vantage ----------------------------------------------------------------------------


def test_nothing_while_blind_then_the_truth() -> None:
    """Changes arriving while the vantage is unhealthy are held and sent once it is back;
    only receivers with `vantage: true` hear of the vantage itself."""
    p = Policy([rcv("plain"), rcv("v", vantage=True)])
    off = p.on_change(VantageChanged(False, T0), T0).notifications
    assert [(n.receiver, n.transition) for n in off] == [("v", Transition.VANTAGE_OFFLINE)]
    assert p.on_change(opened(ev()), T0 + 5).notifications == []
    back = p.on_change(VantageChanged(True, T0 + 300), T0 + 300).notifications
    assert [(n.receiver, n.key) for n in back] == [
        ("v", f"vantage/{T0:.0f}/back"),
        ("plain", "ev1/opened"),
        ("v", "ev1/opened"),
    ]
    assert "5 min" in back[0].title


def test_uplink_cut_alone_sends_nothing_to_plain_receivers() -> None:
    """An uplink cut and its return tell nothing to a receiver without `vantage: true`."""
    p = Policy([rcv()])
    assert keys(p, [VantageChanged(False, T0), VantageChanged(True, T0 + 60)]) == []


# --- resume ---------------------------------------------------------------------------------


def test_resume_reoffers_opened_and_knows_it_was_told() -> None:
    """After a restart, open events that match are re-offered as opened (the outbox dedupes)
    and their close is told; events older than max_age are not re-offered."""
    p = Policy([rcv(max_age=3600.0)])
    fresh, old = ev(id="fresh"), dataclasses.replace(ev(id="old"), start=T0 - 7200)
    d = p.resume([fresh, old], T0 + 60)
    assert [n.key for n in d.notifications] == ["fresh/opened"]
    assert keys(p, [EventClosed(dataclasses.replace(old, end=T0 + 90))]) == ["r:old/closed"]


# --- messages -------------------------------------------------------------------------------


def test_short_message_content() -> None:
    """The short form names entity, kind, start in UTC and Pyongyang time, what failed first,
    blocks (a few, the rest counted), BGP, path, the link and the key."""
    e = ev()
    title, body = render(
        e,
        Transition.OPENED,
        Format.SHORT,
        FormatOptions("https://mon.example.org", PY),
        "ev1/opened",
        T0 + 60,
    )
    assert title == "[dprk-monitor] star-jv: blackout started"
    assert "star-jv: blackout (nothing answers)." in body
    assert "Start: 2025-06-15 15:06:40 UTC (2025-06-16 00:06:40 KST local)" in body
    assert "First failed: DNS (175.45.176.15:53: timeout), then ICMP" in body
    assert "175.45.176.0/24" in body and "(+2 more)" in body
    assert "BGP: 175.45.176.0/22 withdrawn (27 peers, seen by 10% of peers)" in body
    assert "Path: the path ends at China Unicom; last answer from 198.18.9.1 (CU AS4837)" in body
    assert "Event: https://mon.example.org/outages/ev1" in body
    assert body.endswith("Key: ev1/opened")
    assert len(body.splitlines()) <= 10


def test_closed_long_message_has_duration_blocks_and_story() -> None:
    """The long closed form has the end and the duration, every block with its times, and
    the event's story; without a base URL it names the event id."""
    e = dataclasses.replace(ev(), end=T0 + 3900)
    title, body = render(
        e, Transition.CLOSED, Format.LONG, FormatOptions(None, PY), "ev1/closed", T0 + 4000
    )
    assert title == "[dprk-monitor] star-jv: blackout over after 65 min"
    assert "End: 2025-06-15 16:11:40 UTC" in body and "lasted 65 min" in body
    assert body.count("  175.45.1") == 6
    assert "Story:" in body and "Event id: ev1" in body and "Event: http" not in body
    assert body.endswith("Key: ev1/closed")


def test_when_leaves_out_a_utc_local_zone() -> None:
    """A vantage in UTC gets the UTC time once."""
    assert when(T0, ZoneInfo("UTC")) == "2025-06-15 15:06:40 UTC"


def test_redact_hides_tokens_and_passwords() -> None:
    """Secrets of a URL (password, token path, query values) never survive redaction."""
    url = "mailtos://user:hunter2pw@smtp.example.org?to=x@example.org&pass=sekrit99"
    text = f"failed to send to {url}: auth hunter2pw sekrit99 rejected"
    out = redact(text, url)
    assert "hunter2pw" not in out and "sekrit99" not in out and url not in out
    tg = "tgram://123456789:AAEabcdefghijklmnop/987654"
    assert "AAEabcdefghijklmnop" not in redact("bad token 123456789:AAEabcdefghijklmnop", tg)
