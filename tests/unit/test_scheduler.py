"""The scheduler: slots spread over the interval, one politeness budget, immediate re-probes."""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import time

from monitor.probes.base import IcmpTarget, Kind, ProbeResult, Reason, Target, TcpTarget
from monitor.scheduler import RateLimiter, Scheduler, slot_offsets


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
    """Answers from a table; records send times (monotonic) per target."""

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
        self.sent.append((time.monotonic(), target.key))
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
        self.results.append((time.monotonic(), entity, result))

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
    entries: list[tuple[str, Target, bool]],
    *,
    interval: float,
    max_rate: float,
    reprobes: int = 2,
    splay: bool = True,
) -> Scheduler:
    sched = Scheduler(
        {Kind.ICMP: prober, Kind.TCP: prober}, sink, interval, 0.5, max_rate, reprobes, splay
    )
    sched.set_targets(entries, interval, 0.5, max_rate, reprobes, splay)
    return sched


def test_slot_offsets_spread_evenly_and_stably() -> None:
    """Slots are i*interval/n in a hash order that does not depend on list order."""
    keys = [f"t{i}" for i in range(10)]
    a = slot_offsets(keys, 30.0)
    assert sorted(a) == [i * 3.0 for i in range(10)]
    b = slot_offsets(list(reversed(keys)), 30.0)
    assert dict(zip(keys, a, strict=True)) == dict(zip(reversed(keys), b, strict=True))


async def test_probes_are_spread_over_the_interval() -> None:
    """With splay, 10 targets at a 1 s interval are probed about 100 ms apart, not in a burst."""
    prober, sink = FakeProber(), Sink()
    sched = make(prober, sink, [("e", t, False) for t in targets(10)], interval=1.0, max_rate=1000)
    await run_for(sched, 0.95)
    times = sorted(t for t, _ in prober.sent)
    assert len(times) == 10
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) > 0.06 and max(gaps) < 0.2


async def test_rate_cap_holds_with_reprobes() -> None:
    """At max_rate 20, 60 targets every second plus their re-probes never exceed 20 sends/s."""
    prober = FakeProber(always_fail={str(t.address) for t in targets(60)[::3]})
    sink = Sink()
    sched = make(prober, sink, [("e", t, False) for t in targets(60)], interval=1.0, max_rate=20)
    await run_for(sched, 3.2)
    times = [t for t, _ in prober.sent]
    assert len(times) >= 55, "the budget is used"
    assert max_in_any_window(times) <= 20
    assert any(late for _, late in sink.skipped), "lateness is reported"


async def test_single_loss_is_reprobed_at_once_and_round_is_ok() -> None:
    """One lost probe is re-probed immediately and the round counts as a success."""
    tgt = targets(1)[0]
    prober, sink = FakeProber(fail_first={tgt.key}), Sink()
    sched = make(prober, sink, [("e", tgt, False)], interval=5.0, max_rate=20)
    await run_for(sched, 0.5)
    assert [r.ok for _, _, r in sink.results] == [False, True]
    assert sink.rounds == [(tgt.key, True)]
    t0, t1 = (t for t, _ in prober.sent)
    assert t1 - t0 < 0.2, "the re-probe is immediate, not at the next round"


async def test_persistent_failure_uses_all_reprobes_then_fails_round() -> None:
    """A dead target gets 1 + reprobes attempts, then one failed round."""
    tgt = TcpTarget(ipaddress.ip_address("198.18.176.71"), 80)
    prober, sink = FakeProber(always_fail={tgt.key}), Sink()
    sched = make(prober, sink, [("e", tgt, False)], interval=5.0, max_rate=20, reprobes=2)
    await run_for(sched, 0.5)
    assert len(prober.sent) == 3
    assert sink.rounds == [(tgt.key, False)]


async def test_busy_target_is_skipped_not_stacked() -> None:
    """A probe still running when its next slot comes is skipped and counted, not doubled."""
    tgt = targets(1)[0]
    prober, sink = FakeProber(delay=0.35), Sink()
    sched = make(prober, sink, [("e", tgt, False)], interval=0.2, max_rate=100)
    await run_for(sched, 0.9)
    assert len(prober.sent) <= 3
    assert (tgt.key, False) in sink.skipped


async def test_controls_have_their_own_budget() -> None:
    """Controls are still probed on time when entity probes saturate max_rate."""
    ctl = IcmpTarget(ipaddress.ip_address("198.19.8.8"))
    entries = [("e", t, False) for t in targets(200)] + [("_controls", ctl, True)]
    prober, sink = FakeProber(), Sink()
    sched = make(prober, sink, entries, interval=1.0, max_rate=10)
    await run_for(sched, 2.2)
    assert sum(1 for _, k in prober.sent if k == ctl.key) >= 2


async def test_extra_probes_share_the_budget() -> None:
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
