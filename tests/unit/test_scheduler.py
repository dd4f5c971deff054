"""The scheduler: slots spread over the interval, one politeness budget, immediate re-probes.

The tests of its timing run on a virtual-time loop (tests/virtual_time.py) with the scheduler's
clocks pointed at it: every slot, re-probe and rate-limit wait happens at its exact virtual time,
so the outcome does not depend on how fast or loaded the machine is, and seconds take none.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import math
import time
from collections.abc import Callable, Sequence

import pytest
import structlog
import structlog.testing

from monitor.config import ProbingConfig
from monitor.probes.base import IcmpTarget, Kind, ProbeResult, Reason, Target, TcpTarget
from monitor.scheduler import RateLimiter, Scheduler, slot_offsets
from tests.virtual_time import loop_clock, virtual_test


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def max_in_any_window(times: list[float], width: float = 1.0) -> int:
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - width:
            j += 1
        best = max(best, i - j + 1)
    return best


def test_rate_limiter_never_exceeds_rate_in_any_second() -> None:
    """However eagerly it is asked, the limiter grants at most `rate` sends per 1 s window."""
    for rate in (1, 20, 333, 5000):
        clock = FakeClock()
        lim = RateLimiter(rate, clock)
        sent: list[float] = []
        while clock.t < 1010:
            wait = lim.try_acquire()
            if wait == 0:
                sent.append(clock.t)
            else:
                clock.t += min(wait, 0.0007)  # limiter floors waits, so time moves
        assert max_in_any_window(sent) <= rate
        assert len(sent) >= rate * 9.5, "and it does let the full rate through"


class FakeProber:
    """Answers from a table; records send times (the loop's clock) per target."""

    def __init__(
        self,
        fail_first: set[str] | None = None,
        always_fail: set[str] | None = None,
        delay: float = 0.0,
    ) -> None:
        self.sent: list[tuple[float, str]] = []
        self.fail_first = set(fail_first or ())
        self.always_fail = set(always_fail or ())
        self.delay = delay

    async def probe(self, target: Target, timeout: float) -> ProbeResult:
        self.sent.append((loop_clock(), target.key))
        if self.delay:
            await asyncio.sleep(self.delay)
        if target.key in self.fail_first:
            self.fail_first.discard(target.key)
            return ProbeResult.failure(target, time.time(), Reason.TIMEOUT)
        if target.key in self.always_fail:
            return ProbeResult.failure(target, time.time(), Reason.TIMEOUT)
        return ProbeResult.success(target, time.time(), 0.001)

    async def close(self) -> None:
        pass


class Sink:
    def __init__(self) -> None:
        self.results: list[tuple[float, str, ProbeResult]] = []
        self.rounds: list[tuple[str, bool]] = []
        self.skipped: list[tuple[str, bool]] = []

    def on_result(self, entity: str, result: ProbeResult, control: bool) -> None:
        self.results.append((loop_clock(), entity, result))

    def on_round(self, entity: str, target: Target, ok: bool, control: bool) -> None:
        self.rounds.append((target.key, ok))

    def on_skipped(self, entity: str, target: Target, late: bool) -> None:
        self.skipped.append((target.key, late))


def targets(n: int, base: str = "198.18.176.0") -> list[IcmpTarget]:
    start = ipaddress.ip_address(base)
    return [IcmpTarget(start + i) for i in range(1, n + 1)]


async def run_for(sched: Scheduler, seconds: float) -> None:
    task = asyncio.create_task(sched.run())
    await asyncio.sleep(seconds)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await sched.close()


def make(
    prober: FakeProber,
    sink: Sink,
    entries: Sequence[tuple[str, Target, bool]],
    *,
    interval: float,
    max_rate: float,
    reprobes: int = 2,
    splay: bool = True,
) -> Scheduler:
    p = ProbingConfig(
        interval=interval,
        timeout=0.5,
        max_rate=max_rate,
        reprobes=reprobes,
        splay=splay,
        min_timeout=0.5,
    )
    sched = Scheduler({Kind.ICMP: prober, Kind.TCP: prober}, sink, p)
    sched.set_targets(entries, p)
    return sched


def test_slot_offsets_spread_evenly_and_stably() -> None:
    """Slots are i*interval/n in a hash order that does not depend on list order."""
    keys = [f"t{i}" for i in range(10)]
    a = slot_offsets(keys, 30.0)
    assert sorted(a) == [i * 3.0 for i in range(10)]
    b = slot_offsets(list(reversed(keys)), 30.0)
    assert dict(zip(keys, a, strict=True)) == dict(zip(reversed(keys), b, strict=True))


def test_slot_offsets_spread_each_kind_of_an_entity() -> None:
    """Within an entity each kind's targets are interleaved evenly: a web-only outage's first
    failed probe (the event's start) comes within about interval/m of the stop. In plain hash
    order 5 of star-jv's web targets left an 11 s gap (the bench's web_only start error: 13 s)."""
    keys = [f"star-jv/icmp/198.18.176.{i}" for i in range(27)]
    keys += [f"star-jv/http/http://site{i}.kp/" for i in range(5)]
    keys += [f"star-jv/tcp/198.18.176.{i}:80" for i in range(5)]
    keys += [f"star-jv/dns/198.18.176.{i}/kp/SOA" for i in range(4)]
    offsets = dict(zip(keys, slot_offsets(keys, 30.0), strict=True))
    sizes = {"icmp": 27, "http": 5, "tcp": 5, "dns": 4}
    slot = 30.0 / len(keys)
    for kind, m in sizes.items():
        slots = sorted(o for k, o in offsets.items() if k.startswith(f"star-jv/{kind}/"))
        gaps = [b - a for a, b in itertools.pairwise(slots)] + [slots[0] + 30.0 - slots[-1]]
        # Between two of this kind's slots, at most ceil(m_other / m) of each other kind.
        bound = 1 + sum(math.ceil(n / m) for k, n in sizes.items() if k != kind)
        assert max(gaps) <= bound * slot + 1e-9, (kind, gaps)
    # A small entity beside it keeps its three targets about interval/3 apart.
    keys += [f"small/icmp/198.18.179.{i}" for i in range(3)]
    small = sorted(o for k, o in zip(keys, slot_offsets(keys, 30.0), strict=True) if "small" in k)
    gaps = [b - a for a, b in itertools.pairwise(small)] + [small[0] + 30.0 - small[-1]]
    assert max(gaps) <= 30.0 / 3 + 1.0, gaps


@virtual_test
async def test_probes_are_spread_over_the_interval(vclock: None) -> None:
    """With splay, 10 targets at a 1 s interval are probed about 100 ms apart, not in a burst."""
    prober, sink = FakeProber(), Sink()
    sched = make(prober, sink, [("e", t, False) for t in targets(10)], interval=1.0, max_rate=1000)
    await run_for(sched, 0.95)
    times = sorted(t for t, _ in prober.sent)
    assert len(times) == 10
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps == pytest.approx([0.1] * 9), "one slot every interval / n"


@virtual_test
async def test_rate_cap_holds_with_reprobes(vclock: None) -> None:
    """At max_rate 20, 60 targets every second plus their re-probes never exceed 20 sends/s."""
    prober = FakeProber(always_fail={str(t.address) for t in targets(60)[::3]})
    sink = Sink()
    sched = make(prober, sink, [("e", t, False) for t in targets(60)], interval=1.0, max_rate=20)
    await run_for(sched, 3.2)
    times = [t for t, _ in prober.sent]
    assert len(times) >= 55, "the budget is used"
    assert max_in_any_window(times) <= 20
    assert any(late for _, late in sink.skipped), "lateness is reported"


@virtual_test
async def test_single_loss_is_reprobed_at_once_and_round_is_ok(vclock: None) -> None:
    """One lost probe is re-probed immediately and the round counts as a success."""
    tgt = targets(1)[0]
    prober, sink = FakeProber(fail_first={tgt.key}), Sink()
    sched = make(prober, sink, [("e", tgt, False)], interval=5.0, max_rate=20)
    await run_for(sched, 0.5)
    assert [r.ok for _, _, r in sink.results] == [False, True]
    assert sink.rounds == [(tgt.key, True)]
    t0, t1 = (t for t, _ in prober.sent)
    assert t1 - t0 <= 1 / 20, "the re-probe is immediate (the budget's spacing), not next round"


@virtual_test
async def test_persistent_failure_uses_all_reprobes_then_fails_round(vclock: None) -> None:
    """A dead target gets 1 + reprobes attempts, then one failed round."""
    tgt = TcpTarget(ipaddress.ip_address("198.18.176.71"), 80)
    prober, sink = FakeProber(always_fail={tgt.key}), Sink()
    sched = make(prober, sink, [("e", tgt, False)], interval=5.0, max_rate=20, reprobes=2)
    await run_for(sched, 0.5)
    assert len(prober.sent) == 3
    assert sink.rounds == [(tgt.key, False)]


@virtual_test
async def test_busy_target_is_skipped_not_stacked(vclock: None) -> None:
    """A probe still running when its next slot comes is skipped and counted, not doubled."""
    tgt = targets(1)[0]
    prober, sink = FakeProber(delay=0.35), Sink()
    sched = make(prober, sink, [("e", tgt, False)], interval=0.2, max_rate=100)
    await run_for(sched, 0.9)
    assert len(prober.sent) <= 3
    assert (tgt.key, False) in sink.skipped


@virtual_test
async def test_controls_have_their_own_budget(vclock: None) -> None:
    """Controls are still probed on time when entity probes saturate max_rate."""
    ctl = IcmpTarget(ipaddress.ip_address("198.19.8.8"))
    entries = [("e", t, False) for t in targets(200)] + [("_controls", ctl, True)]
    prober, sink = FakeProber(), Sink()
    sched = make(prober, sink, entries, interval=1.0, max_rate=10)
    await run_for(sched, 2.2)
    ctl_times = [t for t, k in prober.sent if k == ctl.key]
    ent_times = sorted(t for t, k in prober.sent if k != ctl.key)
    assert len(ctl_times) >= 2

    # Their own budget, not a share of the entities': some one-second window holds a control
    # probe AND a full max_rate of entity probes (with one shared limiter it would hold at most
    # max_rate in all, so at most 9 entity probes beside the control).
    def entity_probes_beside(tc: float) -> int:
        return max(
            sum(1 for t in ent_times if w <= t < w + 1.0)
            for w in [x for x in ent_times if x <= tc < x + 1.0] + [tc]
        )

    assert max_in_any_window(ent_times) <= 10
    assert max(entity_probes_beside(tc) for tc in ctl_times) == 10


@virtual_test
async def test_extra_probes_share_the_budget(vclock: None) -> None:
    """Extra probes from detection are sent, ahead of scheduled work, inside max_rate."""
    prober, sink = FakeProber(), Sink()
    sched = make(prober, sink, [("e", t, False) for t in targets(5)], interval=10.0, max_rate=10)
    extra = targets(30, "198.18.177.0")
    for t in extra:
        assert sched.request_extra("e", t)
    await run_for(sched, 1.5)
    times = [t for t, _ in prober.sent]
    assert max_in_any_window(times) <= 10
    assert sum(1 for _, k in prober.sent if k.startswith("198.18.177.")) >= 10


# -- containment: a prober or sink that raises costs one target one failed probe, not forever ----


class RaisingProber(FakeProber):
    """A FakeProber whose probe() raises for the keys in `raise_for` (while they are in it)."""

    def __init__(self, raise_for: set[str]) -> None:
        super().__init__()
        self.raise_for = raise_for

    async def probe(self, target: Target, timeout: float) -> ProbeResult:
        if target.key in self.raise_for:
            self.sent.append((loop_clock(), target.key))
            raise RuntimeError(f"boom at {target.key}")
        return await super().probe(target, timeout)


class CallbackFake:
    """A `CallbackProber`: start() answers on the next loop step, or raises for `raise_for`."""

    def __init__(self, raise_for: set[str]) -> None:
        self.raise_for = raise_for
        self.started: list[str] = []
        self.awaited = 0

    def start(
        self, target: Target, timeout: float, callback: Callable[[ProbeResult], None]
    ) -> None:
        self.started.append(target.key)
        if target.key in self.raise_for:
            raise ValueError("bad address")
        result = ProbeResult.success(target, time.time(), 0.001)
        asyncio.get_running_loop().call_soon(callback, result)

    async def probe(self, target: Target, timeout: float) -> ProbeResult:
        self.awaited += 1
        return ProbeResult.success(target, time.time(), 0.001)

    async def close(self) -> None:
        pass


def loop_errors() -> list[dict[str, object]]:
    """Everything that reaches the loop's exception handler (e.g. 'Task exception was never
    retrieved') from now on."""
    errors: list[dict[str, object]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: errors.append(ctx))
    return errors


@virtual_test
async def test_raising_prober_fails_the_target_which_keeps_being_probed(vclock: None) -> None:
    """A probe() that raises is a failed `other` probe; the target's rounds go on, logged once."""
    bad, *good = [TcpTarget(ipaddress.ip_address("198.18.176.1") + i, 80) for i in range(3)]
    prober, sink = RaisingProber(raise_for={bad.key}), Sink()
    errors = loop_errors()
    sched = make(prober, sink, [("e", t, False) for t in [bad, *good]], interval=0.2, max_rate=1000)
    with structlog.testing.capture_logs() as logs:
        await run_for(sched, 0.75)
        await asyncio.sleep(0.05)  # let a dropped task's exception surface, if any
    bad_rounds = [ok for key, ok in sink.rounds if key == bad.key]
    assert len(bad_rounds) >= 3 and not any(bad_rounds), "probed again every round, and failed"
    for key in (g.key for g in good):
        assert [ok for k, ok in sink.rounds if k == key].count(True) >= 3
    bad_results = [r for _, _, r in sink.results if r.target == bad]
    assert len(bad_results) == 3 * len(bad_rounds), "1 probe + 2 re-probes per round"
    assert {(r.ok, r.reason, r.detail) for r in bad_results} == {
        (False, Reason.OTHER, f"prober raised RuntimeError: boom at {bad.key}")
    }
    raised = [e for e in logs if e["event"] == "probe_raised"]
    assert len(raised) == 1, logs
    assert raised[0]["log_level"] == "warning" and raised[0]["target"] == bad.key
    assert isinstance(raised[0]["exc_info"], RuntimeError)
    assert errors == []


@virtual_test
async def test_raising_is_logged_again_after_a_success_or_a_removal(vclock: None) -> None:
    """Once per target: silent while it keeps raising, logged anew after it answered or left."""
    tgt = targets(1)[0]
    prober, sink = RaisingProber(raise_for={tgt.key}), Sink()
    entry = [("e", tgt, False)]
    sched = make(prober, sink, entry, interval=0.1, max_rate=1000, reprobes=0)
    task = asyncio.create_task(sched.run())
    with structlog.testing.capture_logs() as logs:
        await asyncio.sleep(0.25)  # raises in several rounds: one line
        prober.raise_for.clear()
        await asyncio.sleep(0.15)  # answers
        prober.raise_for.add(tgt.key)
        await asyncio.sleep(0.15)  # raises again: a second line
        p = ProbingConfig(interval=0.1, timeout=0.5, max_rate=1000, reprobes=0, min_timeout=0.5)
        sched.set_targets([], p)
        await asyncio.sleep(0.05)
        sched.set_targets(entry, p)
        await asyncio.sleep(0.15)  # back after a removal: a third line
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await sched.close()
    assert [e["event"] for e in logs if e["event"] == "probe_raised"] == ["probe_raised"] * 3


@virtual_test
async def test_callback_prober_raising_in_start_is_contained(vclock: None) -> None:
    """A CallbackProber whose start() raises: a failed `other` result, later rounds still sent."""
    bad, good = targets(2)
    prober, sink = CallbackFake(raise_for={bad.key}), Sink()
    errors = loop_errors()
    p = ProbingConfig(interval=0.2, timeout=0.5, max_rate=1000, reprobes=1, min_timeout=0.5)
    sched = Scheduler({Kind.ICMP: prober}, sink, p)
    sched.set_targets([("e", bad, False), ("e", good, False)], p)
    with structlog.testing.capture_logs() as logs:
        await run_for(sched, 0.55)
    assert prober.awaited == 0, "the callback path is used, not probe()"
    assert prober.started.count(bad.key) >= 4  # 2 rounds x (1 + 1 re-probe)
    assert [ok for k, ok in sink.rounds if k == bad.key][:2] == [False, False]
    assert [ok for k, ok in sink.rounds if k == good.key][:2] == [True, True]
    details = {r.detail for _, _, r in sink.results if r.target == bad}
    assert details == {"prober raised ValueError: bad address"}
    assert [e["event"] for e in logs] == ["probe_raised"]
    assert errors == []


@virtual_test
async def test_sink_raising_for_one_target_does_not_stall_it(vclock: None) -> None:
    """A result sink that raises for one target: the job is freed, every target keeps its rounds."""
    bad, good = targets(2)

    class BadSink(Sink):
        def on_result(self, entity: str, result: ProbeResult, control: bool) -> None:
            super().on_result(entity, result, control)
            if result.target == bad:
                raise KeyError("detector bug")

    prober, sink = CallbackFake(raise_for=set()), BadSink()
    errors = loop_errors()
    p = ProbingConfig(interval=0.2, timeout=0.5, max_rate=1000, reprobes=1, min_timeout=0.5)
    sched = Scheduler({Kind.ICMP: prober}, sink, p)
    sched.set_targets([("e", bad, False), ("e", good, False)], p)
    with structlog.testing.capture_logs() as logs:
        await run_for(sched, 0.55)
    assert [k for k, _ in sink.rounds].count(bad.key) >= 2
    assert [k for k, _ in sink.rounds].count(good.key) >= 2
    assert [(e["event"], e["log_level"]) for e in logs] == [("result_sink_raised", "error")]
    assert errors == []


# -- SYN resends (monitor.probes.tcp.SynGuard) take sends of the budget their probe came from -----


class ResendingProber(FakeProber):
    """Like a connect that waits for its SYN-ACK: each probe of a key in `resend_for` asks the
    scheduler for `resends` SYN resends in turn (as SynGuard does), then answers."""

    def __init__(self, sched_box: list[Scheduler], resend_for: set[str], resends: int) -> None:
        super().__init__()
        self.sched_box = sched_box
        self.resend_for = resend_for
        self.resends = resends
        self.asked: list[tuple[float, str, bool]] = []

    async def probe(self, target: Target, timeout: float) -> ProbeResult:
        if target.key in self.resend_for:
            self.sent.append((loop_clock(), target.key))
            for _ in range(self.resends):
                await asyncio.sleep(0.01)
                t = loop_clock()
                ok = await self.sched_box[0].acquire_resend(t + 0.3, t + 0.35)
                self.asked.append((t, target.key, ok))
            return ProbeResult.success(target, time.time(), 0.4)
        return await super().probe(target, timeout)


@virtual_test
async def test_control_probes_resend_from_the_controls_budget(vclock: None) -> None:
    """A control probe's SYN resends take sends of the controls' budget: all granted, and the
    entity probes, nearly filling max_rate on their own, keep every slot (drawn from the
    entities' budget, the resends pushed them back)."""
    ctl = TcpTarget(ipaddress.ip_address("198.19.8.8"), 443)
    entries = [("e", t, False) for t in targets(5)] + [("_controls", ctl, True)]
    box: list[Scheduler] = []
    prober, sink = ResendingProber(box, {ctl.key}, resends=4), Sink()
    sched = make(prober, sink, entries, interval=1.0, max_rate=6)
    box.append(sched)
    await run_for(sched, 3.1)
    ctl_asked = [ok for _, k, ok in prober.asked if k == ctl.key]
    ent_times = [t for t, k in prober.sent if k != ctl.key]
    assert len(ctl_asked) >= 12 and all(ctl_asked), ctl_asked
    assert sorted(ent_times) == pytest.approx([i * 0.2 for i in range(16)], abs=1e-3)


@virtual_test
async def test_entity_resends_share_max_rate_with_the_probes(vclock: None) -> None:
    """An entity probe's resends count in max_rate, at the time the kernel sends them: probes
    plus granted resends never exceed it in any one-second window, and resends do get sends
    (they go ahead of the next scheduled probes)."""
    tcp = [TcpTarget(ipaddress.ip_address(f"198.18.176.{i}"), 80) for i in range(1, 21)]
    box: list[Scheduler] = []
    prober, sink = ResendingProber(box, {t.key for t in tcp}, resends=2), Sink()
    sched = make(prober, sink, [("e", t, False) for t in tcp], interval=2.0, max_rate=5)
    box.append(sched)
    await run_for(sched, 6.0)
    granted = [t + 0.35 for t, _, ok in prober.asked if ok]
    assert len(granted) >= 5
    assert max_in_any_window([t for t, _ in prober.sent] + granted) <= 5


@virtual_test
async def test_census_resends_take_the_background_share(vclock: None) -> None:
    """A census probe's resends take the background share (25 % of max_rate 20: 5/s), and none
    while an extra probe waits for the budget."""
    sched = make(FakeProber(), Sink(), [], interval=10.0, max_rate=20)
    loop = asyncio.get_running_loop()
    grants: list[float] = []

    async def resend() -> None:
        t = loop.time()
        if await sched.acquire_background_resend(t + 2.0, t + 0.1):
            grants.append(loop.time())

    await asyncio.gather(*(resend() for _ in range(30)))
    assert 5 <= len(grants) <= 12 and max_in_any_window(grants) <= 5, grants
    assert sched.request_extra("e", targets(1)[0])  # queued: the dispatcher is not running
    t = loop.time()
    assert not await sched.acquire_background_resend(t + 0.5, t + 0.6)
    assert await sched.acquire_resend(t + 0.5, t + 0.6), "an entity probe's resend still goes"


# -- per-path timeouts learned from the RTT (monitor.rto) ------------------------------------------


class ScriptedProber(FakeProber):
    """Answers in 50 ms (a reported rtt, no wait) while `up`, else times out; records the
    timeout each probe was given."""

    def __init__(self) -> None:
        super().__init__()
        self.up = True
        self.timeouts: list[float] = []

    async def probe(self, target: Target, timeout: float) -> ProbeResult:
        self.timeouts.append(timeout)
        if self.up:
            return ProbeResult.success(target, time.time(), 0.05)
        return ProbeResult.failure(target, time.time(), Reason.TIMEOUT)


@virtual_test
async def test_probe_timeouts_are_learned_between_min_timeout_and_timeout(vclock: None) -> None:
    """With min_timeout, a target's probes get the timeout learned from its answers (50 ms:
    SRTT + 4 RTTVAR = 0.15 s) instead of probing.timeout (0.5 s); a probe that times out doubles
    the next (its re-probes: 0.3 s, then the cap)."""
    tgt = targets(1)[0]
    prober, sink = ScriptedProber(), Sink()
    p = ProbingConfig(interval=1.0, timeout=0.5, max_rate=20, reprobes=2, min_timeout=0.1)
    sched = Scheduler({Kind.ICMP: prober}, sink, p)
    sched.set_targets([("e", tgt, False)], p)
    asyncio.get_running_loop().call_later(1.5, setattr, prober, "up", False)
    await run_for(sched, 2.5)
    assert prober.timeouts == pytest.approx([0.5, 0.15, 0.15, 0.3, 0.5])


@virtual_test
async def test_without_min_timeout_every_probe_gets_the_timeout(vclock: None) -> None:
    """No min_timeout (the scheduler's callers other than the daemon): probing.timeout always."""
    prober, sink = ScriptedProber(), Sink()
    sched = make(prober, sink, [("e", targets(1)[0], False)], interval=1.0, max_rate=20)
    await run_for(sched, 2.5)
    assert prober.timeouts == [0.5, 0.5, 0.5]


class SlowPathProber:
    """A `CallbackProber` on a path of `rtt` seconds: answers in time when the timeout allows,
    else times out and, if `late_replies`, the reply still arrives `rtt` after the send (the
    ICMP engine's on_late hook). Records the timeout each probe was given."""

    def __init__(self, late_replies: bool) -> None:
        self.late_replies = late_replies
        self.rtt = 0.05
        self.timeouts: list[float] = []
        self.on_late: Callable[[IcmpTarget, float, float], None] | None = None

    def start(
        self, target: Target, timeout: float, callback: Callable[[ProbeResult], None]
    ) -> None:
        assert isinstance(target, IcmpTarget)
        loop = asyncio.get_running_loop()
        self.timeouts.append(timeout)
        started, rtt = time.time(), self.rtt
        if rtt <= timeout:
            loop.call_later(rtt, callback, ProbeResult.success(target, started, rtt))
            return
        loop.call_later(timeout, callback, ProbeResult.failure(target, started, Reason.TIMEOUT))
        if self.late_replies and self.on_late is not None:
            loop.call_later(rtt, self.on_late, target, started, rtt)

    async def probe(self, target: Target, timeout: float) -> ProbeResult:
        raise AssertionError("the scheduler uses start()")

    async def close(self) -> None:
        pass


class LateSinkRecorder(Sink):
    def __init__(self) -> None:
        super().__init__()
        self.late: list[tuple[str, str, float, float, bool]] = []

    def on_late(
        self, entity: str, target: Target, started: float, rtt: float, control: bool
    ) -> None:
        self.late.append((entity, target.key, started, rtt, control))


async def slow_path_run(late_replies: bool) -> tuple[SlowPathProber, LateSinkRecorder]:
    """A target answering in 50 ms until t=3 s, then in 1 s (min_timeout 0.1 s, cap 5 s)."""
    tgt = targets(1)[0]
    prober, sink = SlowPathProber(late_replies), LateSinkRecorder()
    p = ProbingConfig(interval=2.0, timeout=5.0, max_rate=20, reprobes=2, min_timeout=0.1)
    sched = Scheduler({Kind.ICMP: prober}, sink, p)
    sched.set_targets([("e", tgt, False)], p)
    asyncio.get_running_loop().call_later(3.0, setattr, prober, "rtt", 1.0)
    await run_for(sched, 9.0)
    return prober, sink


@virtual_test
async def test_a_late_reply_raises_the_next_timeout_and_reaches_the_sink(vclock: None) -> None:
    """When the path slows from 50 ms to 1 s, the probe and its re-probes time out (0.15, 0.3,
    0.6 s); their replies still come and are learned: the next round's probe gets 3 x 1 s (not
    the backoff's 1.2 s) and every late reply reaches the sink as entity e's answer."""
    prober, sink = await slow_path_run(late_replies=True)
    assert prober.timeouts[:5] == pytest.approx([5.0, 0.15, 0.15, 0.3, 0.6])
    assert prober.timeouts[5] >= 3.0
    assert [(e, k, rtt, c) for e, k, _, rtt, c in sink.late] == [
        ("e", "198.18.176.1", 1.0, False)
    ] * 3
    failed = [r.started for _, _, r in sink.results if not r.ok]
    assert [started for _, _, started, _, _ in sink.late] == failed


@virtual_test
async def test_without_late_replies_the_backoff_alone_grows_the_timeout(vclock: None) -> None:
    """The same slow path without late replies (sanity for the test above): the next round's
    probe gets only the backoff's 8 x 0.15 s, and the sink hears of no late answer."""
    prober, sink = await slow_path_run(late_replies=False)
    assert prober.timeouts[:6] == pytest.approx([5.0, 0.15, 0.15, 0.3, 0.6, 1.2])
    assert sink.late == []


def test_the_icmp_engine_s_late_replies_are_wired_to_the_scheduler() -> None:
    """The real ICMP engine's on_late hook is set by the scheduler that uses it (the daemon
    passes build_probers()); a prober without the hook is left alone."""
    from monitor.probes.icmp import IcmpProber

    icmp, other = IcmpProber(), FakeProber()
    sched = Scheduler(
        {Kind.ICMP: icmp, Kind.TCP: other},
        LateSinkRecorder(),
        ProbingConfig(interval=30.0, timeout=3.0, max_rate=20, reprobes=2, min_timeout=3.0),
    )
    assert icmp.on_late is not None
    tgt = targets(1)[0]
    icmp.on_late(tgt, 123.0, 4.0)  # not a probe of the scheduler's: the RTT only
    assert sched.timeouts._paths, "the late RTT was learned"
    assert not hasattr(other, "on_late")


@virtual_test
async def test_urgent_probes_are_served_in_turn_per_entity(vclock: None) -> None:
    """A big entity's 40 queued extra probes do not hold back a small entity's 3, asked for
    after them: at max_rate 10 the small entity's go out within the first half second (one
    queue: after the 40, four seconds later)."""
    prober, sink = FakeProber(), Sink()
    sched = make(prober, sink, [("big", t, False) for t in targets(2)], interval=30.0, max_rate=10)
    for t in targets(40, "198.18.177.0"):
        assert sched.request_extra("big", t)
    small = targets(3, "198.18.178.0")
    for t in small:
        assert sched.request_extra("small", t)
    t0 = loop_clock()
    await run_for(sched, 5.0)
    sent = {k: t - t0 for t, k in prober.sent}
    assert all(sent[t.key] < 0.6 for t in small), sorted(sent[t.key] for t in small)
    big = sorted(t for t, k in prober.sent if k.startswith("198.18.177."))
    assert len(big) == 40 and max_in_any_window(big) <= 10
    # In order within one entity.
    order = [k for _, k in prober.sent if k.startswith("198.18.177.")]
    assert order == [t.key for t in targets(40, "198.18.177.0")]
