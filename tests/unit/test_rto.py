"""Per-path probe timeouts learned from the RTT (monitor.rto): plain inputs, no I/O."""

from __future__ import annotations

import ipaddress

import pytest

from monitor.probes.base import HttpTarget, IcmpTarget, ProbeResult, Reason, Target, TcpTarget
from monitor.rto import RttEstimate, Timeouts, transaction_cap


def icmp(addr: str) -> IcmpTarget:
    return IcmpTarget(ipaddress.ip_address(addr))


def ok(t: Target, rtt: float) -> ProbeResult:
    return ProbeResult.success(t, 0.0, rtt)


def timed_out(t: Target) -> ProbeResult:
    return ProbeResult.failure(t, 0.0, Reason.TIMEOUT)


def learned(rtts: list[float], t: Target | None = None, floor: float = 1.0) -> Timeouts:
    tt = Timeouts(3.0, floor)
    for r in rtts:
        tt.observe(ok(t or icmp("198.18.176.1"), r))
    return tt


def test_rfc6298_arithmetic() -> None:
    """First sample: SRTT = R, RTTVAR = R/2; then RTTVAR (with the old SRTT), then SRTT."""
    e = RttEstimate.first(0.4)
    assert (e.srtt, e.rttvar) == (0.4, 0.2)
    e.add(0.8)
    assert e.rttvar == pytest.approx(0.75 * 0.2 + 0.25 * 0.4)
    assert e.srtt == pytest.approx(0.875 * 0.4 + 0.125 * 0.8)
    assert e.latest == 0.8


@pytest.mark.parametrize(
    ("rtts", "expected"),
    [
        ([], 3.0),  # nothing learned: probing.timeout
        ([0.3] * 50, 1.0),  # China Unicom: 3 x 0.3 = 0.9, under the floor
        ([0.4] * 50, 1.2),  # TransTelecom: 3 x SRTT
        ([0.65] * 50, 1.95),  # the satellite block: a x2.5 congestion step (1.6 s) still fits
        ([1.5] * 50, 3.0),  # slower than cap / 3: the cap
        ([0.3] * 50 + [0.9], 2.7),  # one slow answer lengthens the next timeout at once
        ([0.3], 1.0),  # one sample: SRTT + 4 x R/2 = 0.9, under the floor
        ([0.5], 1.5),  # one sample: SRTT + 4 x R/2 = 3 x R
    ],
)
def test_timeout_from_learned_rtt(rtts: list[float], expected: float) -> None:
    """timeout = clamp(max(SRTT + 4 RTTVAR, 3 x max(SRTT, latest)), floor 1 s, cap 3 s)."""
    t = icmp("198.18.176.1")
    assert learned(rtts, t).timeout(t) == pytest.approx(expected, abs=0.01)


def test_floor_at_or_above_the_cap_turns_learning_off() -> None:
    """min_timeout >= timeout (or none): every probe gets probing.timeout, timeouts change
    nothing, as before this module."""
    t = icmp("198.18.176.1")
    for tt in (learned([0.01] * 20, t, floor=3.0), learned([0.01] * 20, t, floor=5.0)):
        tt.observe(timed_out(t))
        assert tt.timeout(t) == 3.0
    off = Timeouts(0.5)  # a time-scaled test's 0.5 s timeout and no floor
    off.observe(ok(t, 0.001))
    assert off.timeout(t) == 0.5


def test_a_block_shares_one_estimate_and_kinds_and_sites_do_not() -> None:
    """ICMP and TCP targets of one /24 learn together (per kind); another /24, another kind or
    another HTTP site learn apart."""
    tt = learned([0.8] * 30, icmp("198.18.176.1"))
    assert tt.timeout(icmp("198.18.176.200")) == pytest.approx(2.4)
    assert tt.timeout(icmp("198.18.177.1")) == 3.0
    assert tt.timeout(TcpTarget(ipaddress.ip_address("198.18.176.1"), 80)) == 3.0
    site = HttpTarget(url="http://airkoryo.com.kp/")
    for _ in range(30):
        tt.observe(ok(site, 0.5))
    assert tt.timeout(site) == pytest.approx(1.5)
    assert tt.timeout(HttpTarget(url="http://rodong.rep.kp/")) == 3.0


def test_a_timeout_doubles_that_targets_next_timeout_until_it_answers() -> None:
    """RFC 6298 5.5 per target: its re-probes wait 2x, 4x (capped); a sibling in the block keeps
    the learned timeout (the burst to a block's other addresses stays fast); an answer resets."""
    a, b = icmp("198.18.176.1"), icmp("198.18.176.2")
    tt = learned([0.3] * 30, a)
    tt.observe(timed_out(a))
    assert tt.timeout(a) == pytest.approx(2.0)
    tt.observe(timed_out(a))
    assert tt.timeout(a) == 3.0
    assert tt.timeout(b) == pytest.approx(1.0)
    tt.observe(ok(a, 0.3))
    assert tt.timeout(a) == pytest.approx(1.0)


def test_other_failures_do_not_back_off() -> None:
    """A refusal or an unreachable is an answer in time: no backoff."""
    a = icmp("198.18.176.1")
    tt = learned([0.3] * 30, a)
    tt.observe(ProbeResult.failure(a, 0.0, Reason.UNREACHABLE))
    tt.observe(ProbeResult.failure(a, 0.0, Reason.REFUSED))
    assert tt.timeout(a) == pytest.approx(1.0)


def test_memory_is_bounded_least_recently_updated_first() -> None:
    """At most max_paths estimates and max_backoffs backed-off targets."""
    tt = Timeouts(3.0, 1.0, max_paths=2, max_backoffs=2)
    x, y, z = icmp("198.18.176.1"), icmp("198.18.177.1"), icmp("198.18.178.1")
    for t in (x, y):
        tt.observe(ok(t, 0.8))
    tt.observe(ok(x, 0.8))  # x updated last: y goes first
    tt.observe(ok(z, 0.8))
    assert tt.timeout(y) == 3.0 and tt.timeout(x) < 3.0 and tt.timeout(z) < 3.0
    for t in (x, y, z):
        tt.observe(timed_out(t))
    assert tt.timeout(x) == pytest.approx(2.4)  # x's backoff was dropped: the plain estimate


def test_given_is_the_recent_mean_per_kind() -> None:
    """`given()` holds, per kind, the mean timeout handed out lately (for a gauge)."""
    t = icmp("198.18.176.1")
    tt = learned([0.3] * 30, t)
    for _ in range(2000):
        tt.timeout(t)
    assert tt.given() == {t.kind: pytest.approx(1.0)}


def test_a_late_reply_is_a_sample_and_ends_the_backoff() -> None:
    """A reply that came after its probe timed out (1.6 s on a 0.4 s path) is learned: the
    next timeout covers it (3 x 1.6 s, capped at 3 s), where without it the backoff kept
    doubling the 1.2 s that timed out."""
    t = icmp("198.18.176.1")
    tt = learned([0.4] * 20)
    assert tt.timeout(t) == pytest.approx(1.2)
    tt.observe(timed_out(t))
    assert tt.timeout(t) == pytest.approx(2.4)
    tt.late(t, 1.6)
    assert tt.timeout(t) == pytest.approx(3.0)
    other = icmp("198.18.176.2")  # the same /24: the same path, no backoff of its own
    assert tt.timeout(other) == pytest.approx(3.0)


def test_a_fetch_of_several_exchanges_may_outgrow_the_one_exchange_cap() -> None:
    """An HTTPS fetch on a 300 ms path takes ~1.3 s (TCP, TLS, request); in a x2.5 congestion
    episode ~3.3 s. Its timeout follows (3 x the latest fetch, up to the transaction cap), where
    capped at probing.timeout (3 s) every fetch of the episode failed. ICMP keeps the 3 s cap."""
    site = HttpTarget(url="https://kcna.kp/")
    tt = Timeouts(3.0, 1.0, long_cap=10.0)
    for _ in range(30):
        tt.observe(ok(site, 1.3))
    assert tt.timeout(site) == pytest.approx(3.9)
    tt.observe(ok(site, 3.25))  # the episode's first fetch: it came in under 3.9 s
    assert tt.timeout(site) == pytest.approx(9.75)
    tt.observe(ok(site, 5.0))
    assert tt.timeout(site) == 10.0
    t = icmp("198.18.176.1")
    tt.observe(ok(t, 2.0))
    assert tt.timeout(t) == 3.0


def test_a_site_slower_than_the_timeout_gets_its_first_answer_by_backing_off() -> None:
    """Never heard from: probing.timeout first; each timeout doubles the next (up to the
    transaction cap for HTTP, probing.timeout for one exchange), so a 4 s site answers by the
    second re-probe instead of timing out at 3 s forever."""
    site = HttpTarget(url="https://kcna.kp/")
    t = icmp("198.18.176.1")
    tt = Timeouts(3.0, 1.0, long_cap=10.0)
    assert tt.timeout(site) == 3.0
    for expected in (6.0, 10.0, 10.0):
        tt.observe(timed_out(site))
        tt.observe(timed_out(t))
        assert tt.timeout(site) == expected
        assert tt.timeout(t) == 3.0
    tt.observe(ok(site, 4.0))
    assert tt.timeout(site) == pytest.approx(10.0)  # 3 x 4 s, capped


@pytest.mark.parametrize(
    ("timeout", "interval", "reprobes", "cap"),
    [
        (3.0, 30.0, 2, 10.0),  # the defaults: a probe and two re-probes fit in the interval
        (3.0, 60.0, 2, 12.0),  # 4 exchanges x timeout
        (0.5, 3.0, 2, 1.0),  # a time-scaled test
        (3.0, 6.0, 2, 3.0),  # never below probing.timeout
    ],
)
def test_transaction_cap(timeout: float, interval: float, reprobes: int, cap: float) -> None:
    """transaction_cap = max(timeout, min(4 x timeout, interval / (1 + reprobes)))."""
    assert transaction_cap(timeout, interval, reprobes) == pytest.approx(cap)
