"""Rounds of probes, spread over the interval, under one politeness budget.

- Every target has a fixed slot in the interval (targets sorted by a hash of their key and
  spaced evenly), so probing is continuous rather than a burst per round: a blackout is seen by
  the next slot, within about interval / targets seconds, not at the next round.
- One rate limiter (`max_rate` probes/s toward monitored networks, all kinds together) gates
  every probe to an entity: scheduled ones, re-probes and extra probes asked for by detection.
  Control probes go through a limiter of their own: they are outside the monitored networks
  and must not eat the budget that protects them.
- A TCP/HTTP connect's SYN resends are packets too: the kernel sends each only after the
  prober took a send for it (`acquire_resend`, monitor.probes.tcp.SynGuard) from the budget its
  probe came from: the entities', the controls' (a control probe), or the background share
  (`acquire_background_resend`, a census).
- A failed probe is re-probed at once (up to `reprobes` times) ahead of scheduled work, so a
  single lost packet never counts as a failed round. Re-probes and extra probes wait in one
  queue per entity, served in turn (FairQueue): a small entity's confirmation probes do not
  wait behind a big entity's burst.
- Each probe's timeout is learned per path (monitor.rto: RFC 6298's SRTT/RTTVAR per /24 and
  kind, per target for HTTP and DNS), between `min_timeout` and `timeout` (for HTTP, a fetch of
  several exchanges, up to a few times `timeout`), from every result that passes here; a probe
  that timed out doubles its target's next timeout (its re-probes).
- A reply that arrives after its probe timed out (a prober with an `on_late` hook: ICMP) is
  not lost: its RTT is learned (the next timeouts grow to cover the slow path) and the sink
  hears of it (`LateSink.on_late`) as an answer of the entity whose probe timed out, so that a
  path slower than the timeout is not taken for a dead one. The probe's result stays a failure
  (its round was already judged).
- Blocks with a census (monitor.discovery) are sampled: a sample job has a slot like a target
  and, when due, asks its `pick` callback which addresses to probe this round (a few of E(b),
  more while the block's belief is uncertain); those probes queue behind re-probes and go
  through the same rate limiter. They are not re-probed here: a failure starts the block's
  failure run and the detector asks for extra probes of it.
- Background work (a census) takes sends through `acquire_background`: at most
  `background_share` of `max_rate`, inside the same cap, and never while a re-probe, an extra
  or a sample probe waits, so ordinary probing keeps its slots during a census.
- Failures are contained: a prober that raises (its `probe()`, or `start()` of a callback
  prober) gives a failed result with reason `other` naming the exception, logged once per
  target (WARNING with the traceback; silent until that target succeeds or is removed). The
  job is freed, its round completes and it is probed again next round; a sink that raises is
  logged the same way and the job is freed all the same.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import hashlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import structlog

from monitor.config import ProbingConfig
from monitor.probes.base import (
    CallbackProber,
    IcmpTarget,
    Kind,
    Prober,
    ProbeResult,
    Reason,
    Target,
    now,
)
from monitor.rto import Timeouts, transaction_cap

log = structlog.get_logger("monitor.scheduler")

# Whether the probe running in this task is a control probe: its SYN resends (acquire_resend)
# then take sends of the controls' budget, not the entities'. A context variable because the
# prober is shared by both lanes and the resend is asked for from a task the probe started
# (SynGuard), which inherits the probe task's context.
_CONTROL_PROBE: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "scheduler_control_probe", default=False
)


class RateLimiter:
    """At most `rate` sends in any one-second window, spaced rather than bursty.

    A token bucket with a small capacity (5 ms of tokens, at least one) keeps sends spaced and
    lets the dispatcher release several per wake-up at high rates; a log of the last `rate` send
    times makes the per-second cap exact whatever the capacity.
    """

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self._clock = clock
        self._capacity = max(1.0, rate * 0.005)
        self._tokens = 1.0
        self._last = clock()
        self._window: collections.deque[float] = collections.deque()
        self._limit = max(1, int(rate))
        # The cap must hold where the packets arrive too: a little slack for send jitter.
        self._span = 1.0 + min(0.05, 1.0 / rate)

    def _refill(self, now: float) -> None:
        self._tokens = min(self._capacity, self._tokens + (now - self._last) * self.rate)
        self._last = now

    def try_acquire(self, send_by: float | None = None) -> float:
        """Take one send if allowed now (returns 0.0), else return seconds to wait.

        `send_by`: the send happens later, by then (a kernel SYN resend): it is logged there,
        so every one-second window around it counts it (conservatively, until it ages out)."""
        now = self._clock()
        self._refill(now)
        window = self._window
        while window and now - window[0] >= self._span:
            window.popleft()
        if len(window) >= self._limit:
            return max(self._span - (now - window[0]), 1e-4)
        if self._tokens < 1.0:
            return max((1.0 - self._tokens) / self.rate, 1e-5)
        self._tokens -= 1.0
        window.append(now if send_by is None else max(now, send_by))
        return 0.0


@dataclass(slots=True)
class Job:
    """One configured target and its slot; `entity` is the metrics label (controls included)."""

    entity: str
    target: Target
    control: bool
    offset: float = 0.0
    busy: bool = False  # a probe (or its re-probes) of this job is still running
    removed: bool = False  # dropped by a reload while a probe was in flight
    attempt: int = 0
    round_ok: bool = False
    # A sample job (a sampled block): `target` only names it (the block's network address),
    # and `pick()` gives the addresses to probe when its slot is due.
    pick: Callable[[], Sequence[Target]] | None = None


# What a sample job is: (entity, block label, pick). See Scheduler.set_samplers.
Sampler = tuple[str, IcmpTarget, Callable[[], Sequence[Target]]]


@dataclass(slots=True)
class _Send:
    job: Job | None  # None: an extra probe from detection, or a sample (not part of a round)
    entity: str
    target: Target
    control: bool
    sample: bool = False  # a probe of a sampled block (not counted as a pending extra)


class ResultSink(Protocol):
    def on_result(self, entity: str, result: ProbeResult, control: bool) -> None:
        """Every single probe result, re-probes and extra probes included."""

    def on_round(self, entity: str, target: Target, ok: bool, control: bool) -> None:
        """A target's outcome for one round, after its re-probes."""

    def on_skipped(self, entity: str, target: Target, late: bool) -> None:
        """A scheduled probe was skipped (still busy) or sent late (budget exhausted)."""


@runtime_checkable
class LateSink(Protocol):
    """A sink that also hears of late answers (optional: sinks without it do not)."""

    def on_late(
        self, entity: str, target: Target, started: float, rtt: float, control: bool
    ) -> None:
        """A probe of `target` (sent at `started`, epoch) that timed out was answered after
        all, `rtt` seconds after it was sent: the target answers, more slowly than its
        timeout. Once per probe, after its failed result."""


# (target, started, rtt): what a prober's on_late hook is called with (monitor.probes.icmp).
LateHook = Callable[[IcmpTarget, float, float], None]


@runtime_checkable
class LateReporter(Protocol):
    """A prober that reports replies arriving after their probe timed out."""

    on_late: LateHook | None


# Who a timed-out probe belonged to is remembered this long (s), for its late reply: longer
# than the ICMP engine remembers the probe itself (monitor.probes.icmp._LATE_FOR).
_LATE_OWNER_FOR = 60.0
_LATE_OWNER_MAX = 1 << 16


def _wake_up(fut: asyncio.Future[None] | None) -> None:
    if fut is not None and not fut.done():
        fut.set_result(None)


def _long_cap(p: ProbingConfig) -> float:
    """The timeout cap of a probe of several exchanges (HTTP): monitor.rto."""
    return transaction_cap(p.timeout, p.interval, p.reprobes)


def _hash01(text: str) -> float:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest()) / 2.0**64


def slot_offsets(keys: list[str], interval: float) -> list[float]:
    """Even, stable spacing: i * interval / n in an order that depends on the keys only. Keys
    "entity/kind/..." of one entity are spread over the interval (the m of an entity at a phase
    of its own + r/m), and within the entity each kind's targets are interleaved evenly
    (stride order: the j-th of a kind's m_k targets at j/m_k). Why: a small entity's three
    targets are ~interval/3 apart, so its outage is seen at a slot ~interval/6 later on
    average (hash order bunched them: 2.5, 2.5 and 25 s apart for satgate in the default
    config); and a web-only or DNS-only outage's first failure, the event's start, comes
    within interval/m_k of the stop (in hash order the 8 web targets of star-jv left a gap of
    13 s, so the event started 13 s late)."""
    n = len(keys)
    groups: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        groups.setdefault(k.split("/", 1)[0], []).append(i)
    phase = [0.0] * n
    stride = [0.0] * n
    for group, members in groups.items():
        kinds: dict[str, list[int]] = {}
        for i in members:
            kinds.setdefault(keys[i].split("/", 2)[1] if keys[i].count("/") else "", []).append(i)
        for kind, same in kinds.items():
            same.sort(key=lambda i: _hash01(keys[i]))
            shift = _hash01(f"{group}/{kind}")
            for j, i in enumerate(same):
                stride[i] = (j + shift) / len(same)
        members.sort(key=lambda i: (stride[i], _hash01(keys[i])))
        base = _hash01(group)
        for r, i in enumerate(members):
            phase[i] = (base + r / len(members)) % 1.0
    order = sorted(range(n), key=lambda i: (phase[i], _hash01(keys[i])))
    offsets = [0.0] * n
    for rank, i in enumerate(order):
        offsets[i] = rank * interval / n
    return offsets


class FairQueue:
    """Urgent sends (re-probes, extra probes) taken in turn per entity, first in first out
    within one.

    Why: in a blackout the big entity asks for dozens of re-probes and confirmation probes at
    once; in one queue a small entity's three confirmation probes waited behind them all for
    the budget (seconds at `max_rate` 20), and its blackout was flagged seconds later than it
    had to be. In turn, each entity's next send goes out within one send per waiting entity.
    """

    def __init__(self) -> None:
        self._queues: collections.OrderedDict[str, collections.deque[_Send]] = (
            collections.OrderedDict()
        )
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def __bool__(self) -> bool:
        return self._n > 0

    def append(self, send: _Send) -> None:
        q = self._queues.get(send.entity)
        if q is None:
            q = self._queues[send.entity] = collections.deque()
        q.append(send)
        self._n += 1

    def popleft(self) -> _Send:
        """The oldest send of the entity whose turn it is; that entity goes to the back."""
        entity, q = next(iter(self._queues.items()))  # callers test for emptiness first
        send = q.popleft()
        self._n -= 1
        if q:
            self._queues.move_to_end(entity)
        else:
            del self._queues[entity]
        return send


class _Lane:
    """Jobs walked in slot order under one rate limiter, with a queue of urgent sends.

    Entities and controls are separate lanes, so that a saturated entity budget can delay
    neither the controls (our own health) nor be eaten by them.
    """

    def __init__(self, limiter: RateLimiter) -> None:
        self.limiter = limiter
        self.jobs: list[Job] = []
        self.urgent = FairQueue()
        self.samples: collections.deque[_Send] = collections.deque()
        self.round_start = time.monotonic()
        self.index = 0
        self.resending = 0  # SYN resends waiting for a send (acquire_resend)

    def restart_at(self, now: float, running: bool) -> None:
        """After a new job list: continue the current round at the first slot not yet due."""
        elapsed = now - self.round_start if running else 0.0
        self.index = next(
            (i for i, j in enumerate(self.jobs) if j.offset >= elapsed), len(self.jobs)
        )


class Scheduler:
    def __init__(
        self,
        probers: Mapping[Kind, Prober],
        sink: ResultSink,
        probing: ProbingConfig,
        max_extra_pending: int = 1000,
        background_share: float = 0.25,
    ) -> None:
        self._probers = probers
        # The callback capability, found once here rather than per send.
        self._callbacks: dict[Kind, CallbackProber] = {
            k: p for k, p in probers.items() if isinstance(p, CallbackProber)
        }
        # Targets whose prober raised (or whose sink raised), logged already: silent until the
        # target succeeds again or is removed, so a bug hitting every round logs once, not forever.
        self._raised: set[tuple[str, Target]] = set()
        self._sink_raised: set[tuple[str, Target]] = set()  # the same for the sink, until removed
        self._sink = sink
        self._late_sink = sink if isinstance(sink, LateSink) else None
        # The entity (and lane) of each target whose probe timed out lately, oldest first: a
        # late reply names the target only. (send, when it timed out)
        self._late_owner: collections.OrderedDict[Target, tuple[_Send, float]] = (
            collections.OrderedDict()
        )
        for p in probers.values():
            if isinstance(p, LateReporter):
                p.on_late = self._on_late
        self.interval = probing.interval
        self.timeout = probing.timeout
        self.reprobes = probing.reprobes
        self.splay = probing.splay
        max_rate = probing.max_rate
        # Each probe's timeout, learned per path between min_timeout and timeout (monitor.rto);
        # with min_timeout at or above timeout every probe gets `timeout`.
        self.timeouts = Timeouts(probing.timeout, probing.min_timeout, _long_cap(probing))
        self._entities = _Lane(RateLimiter(max_rate))
        # Controls are few and outside the monitored networks; their own cap keeps them polite.
        self._controls = _Lane(RateLimiter(max(max_rate, 10.0)))
        self.background_share = background_share
        self._background = RateLimiter(max_rate * background_share)
        self._targets: list[tuple[str, Target, bool]] = []
        self._samplers: list[Sampler] = []
        self._extra_pending = 0
        self._max_extra_pending = max_extra_pending
        self._waiter: asyncio.Future[None] | None = None  # the dispatcher's sleep, see _kick
        self._tasks: set[asyncio.Task[None]] = set()
        self._running = False

    @property
    def max_rate(self) -> float:
        return self._entities.limiter.rate

    # --- configuration ---------------------------------------------------------------------

    def set_targets(
        self,
        targets: Iterable[tuple[str, Target, bool]],
        probing: ProbingConfig,
    ) -> None:
        """Replace the job list and the probing settings (at start and on reload); jobs of kept
        targets keep their state."""
        self._targets = list(targets)
        p = probing
        self.interval, self.timeout, self.reprobes, self.splay = (
            p.interval,
            p.timeout,
            p.reprobes,
            p.splay,
        )
        self.timeouts.configure(p.timeout, p.min_timeout, _long_cap(p))
        max_rate = p.max_rate
        if max_rate != self.max_rate:
            self._entities.limiter = RateLimiter(max_rate)
            self._controls.limiter = RateLimiter(max(max_rate, 10.0))
            self._background = RateLimiter(max_rate * self.background_share)
        self._rebuild()

    def set_samplers(self, samplers: Iterable[Sampler]) -> None:
        """Replace the sample jobs: (entity, the block's label target, pick) each; `pick()` is
        called when the block's slot is due and returns the targets to probe this round."""
        self._samplers = list(samplers)
        self._rebuild()

    def set_background_share(self, share: float) -> None:
        """The share of `max_rate` that `acquire_background` may take (a census)."""
        if share != self.background_share:
            self.background_share = share
            self._background = RateLimiter(self.max_rate * share)

    def _rebuild(self) -> None:
        old: dict[tuple[str, Target, bool], Job | None] = {
            (j.entity, j.target, j.pick is not None): j for lane in self._lanes() for j in lane.jobs
        }
        jobs = [old.pop((e, t, False), None) or Job(e, t, c) for e, t, c in self._targets]
        for e, label, pick in self._samplers:
            job = old.pop((e, label, True), None) or Job(e, label, False)
            job.pick = pick
            jobs.append(job)
        for gone in old.values():
            if gone is not None:
                gone.removed = True
                self.timeouts.forget(gone.target)
                self._raised.discard((gone.entity, gone.target))
                self._sink_raised.discard((gone.entity, gone.target))
        interval, splay = self.interval, self.splay
        now = time.monotonic()
        for lane, control in ((self._entities, False), (self._controls, True)):
            lane_jobs = [j for j in jobs if j.control == control]
            keys = [
                f"{j.entity}/{'sample' if j.pick else j.target.kind}/{j.target.key}"
                for j in lane_jobs
            ]
            offsets = slot_offsets(keys, interval) if splay else [0.0] * len(lane_jobs)
            for job, off in zip(lane_jobs, offsets, strict=True):
                job.offset = off
            lane_jobs.sort(key=lambda j: j.offset)
            lane.jobs = lane_jobs
            lane.restart_at(now, self._running)
        self._kick()

    def _lanes(self) -> tuple[_Lane, _Lane]:
        return self._entities, self._controls

    # --- extra probes from detection ---------------------------------------------------------

    def request_extra(self, entity: str, target: Target) -> bool:
        """Queue an extra probe (uncertain block); refused when too many are pending."""
        if self._extra_pending >= self._max_extra_pending:
            return False
        self._extra_pending += 1
        self._entities.urgent.append(_Send(None, entity, target, False))
        self._kick()
        return True

    async def acquire_background(self) -> None:
        """Wait for one send of background work (a census): at most `background_share` of
        `max_rate`, inside the cap that every probe shares, and only while no re-probe, extra
        or sample probe is waiting for the budget."""
        while True:
            wait = self._background.try_acquire()
            if wait <= 0:
                break
            await asyncio.sleep(wait)
        lane = self._entities
        while True:
            if lane.urgent or lane.samples:
                await asyncio.sleep(1.0 / lane.limiter.rate)
                continue
            wait = lane.limiter.try_acquire()
            if wait <= 0:
                return
            await asyncio.sleep(wait)

    async def acquire(self) -> None:
        """Wait for one send of the entity budget (`max_rate`), for probes sent outside the
        rounds (a traceroute): they share the cap with every scheduled probe."""
        while True:
            wait = self._entities.limiter.try_acquire()
            if wait <= 0:
                return
            await asyncio.sleep(wait)

    async def acquire_resend(self, deadline: float, send_by: float) -> bool:
        """One send of the entity budget for a SYN the kernel resends by `send_by`, taken by
        `deadline` (time.monotonic()) or not at all (False): see monitor.probes.tcp.SynGuard.
        A control probe's resend takes a send of the controls' budget instead."""
        lane = self._controls if _CONTROL_PROBE.get() else self._entities
        return await self._take_resend(lane, deadline, send_by)

    async def acquire_background_resend(self, deadline: float, send_by: float) -> bool:
        """`acquire_resend` for background work (a census's TCP probes): a send of the
        background share first, then of the entity budget while no re-probe, extra or sample
        probe waits for it, as `acquire_background`; both by `deadline` or not at all."""
        if not await _take(self._background, deadline, send_by):
            return False
        lane = self._entities
        while lane.urgent or lane.samples:
            wait = 1.0 / lane.limiter.rate
            if time.monotonic() + wait > deadline:
                return False
            await asyncio.sleep(wait)
        return await _take(lane.limiter, deadline, send_by)

    async def _take_resend(self, lane: _Lane, deadline: float, send_by: float) -> bool:
        """A resend goes first (the dispatcher holds everything back while one waits): it
        continues a probe already running, and without it the probe fails and its re-probe
        costs the same packet. Given way to, a saturated budget stayed saturated with
        re-probes of connects that gave up at their first resend, and no resend got through."""
        lane.resending += 1
        try:
            return await _take(lane.limiter, deadline, send_by)
        finally:
            lane.resending -= 1
            if not lane.resending:
                self._kick()

    # --- the dispatcher ------------------------------------------------------------------------

    async def run(self) -> None:
        """Dispatch forever (until cancelled)."""
        now = time.monotonic()
        for lane in self._lanes():
            lane.round_start, lane.index = now, 0
        self._running = True
        try:
            loop = asyncio.get_running_loop()
            while True:
                delay = min(self._dispatch(self._controls), self._dispatch(self._entities))
                if delay > 0:
                    await self._sleep(loop, delay)
                else:
                    await asyncio.sleep(0)
        finally:
            self._running = False

    async def _sleep(self, loop: asyncio.AbstractEventLoop, delay: float) -> None:
        """Until `delay` has passed or `_kick()`. One future and one timer: the dispatcher
        sleeps once per send at scale, and `wait_for` on an Event made a task each time."""
        fut = self._waiter = loop.create_future()
        timer = loop.call_later(delay, _wake_up, fut)
        try:
            await fut
        finally:
            timer.cancel()
            self._waiter = None

    def _kick(self) -> None:
        """Wake the dispatcher: something became due before the time it sleeps until."""
        _wake_up(self._waiter)

    def _dispatch(self, lane: _Lane) -> float:
        """Send what is due in the lane that its budget allows; return how long to sleep."""
        limiter = lane.limiter
        if lane.resending:
            return 1.0 / limiter.rate  # or sooner: _take_resend kicks when none waits
        # Re-probes and extra probes first: they decide whether something is down.
        while lane.urgent:
            wait = limiter.try_acquire()
            if wait > 0:
                return wait
            self._send(lane.urgent.popleft())
        while lane.samples:
            wait = limiter.try_acquire()
            if wait > 0:
                return wait
            self._send(lane.samples.popleft())
        jobs = lane.jobs
        if not jobs:
            return self.interval
        now = time.monotonic()
        while True:
            if lane.index >= len(jobs):
                lane.round_start += self.interval
                lane.index = 0
            job = jobs[lane.index]
            due = lane.round_start + job.offset
            if due > now:
                return due - now
            if job.pick is not None:
                lane.index += 1
                if not job.removed:
                    self._pick(lane, job, job.pick)
                if lane.samples:
                    return 0.0  # sent from the top, behind any re-probe
                continue
            if job.busy:
                lane.index += 1
                self._sink.on_skipped(job.entity, job.target, late=False)
                continue
            wait = limiter.try_acquire()
            if wait > 0:
                return wait
            lane.index += 1
            if now - due > 1.0:
                self._sink.on_skipped(job.entity, job.target, late=True)
            job.busy, job.attempt, job.round_ok = True, 0, False
            self._send(_Send(job, job.entity, job.target, job.control))

    def _pick(self, lane: _Lane, job: Job, pick: Callable[[], Sequence[Target]]) -> None:
        try:
            targets = pick()
        except Exception as exc:
            _log_once(
                self._raised,
                log.warning,
                "sample_pick_raised",
                _Send(job, job.entity, job.target, False),
                exc,
            )
            return
        for t in targets:
            lane.samples.append(_Send(None, job.entity, t, False, sample=True))

    def _send(self, send: _Send) -> None:
        target = send.target
        kind = target.kind
        prober = self._probers.get(kind)
        if prober is None:
            return
        if send.job is not None:
            send.job.attempt += 1
        timeout = self.timeouts.timeout(target)

        def done(result: ProbeResult) -> None:
            self._on_result(send, result)

        fast = self._callbacks.get(kind)
        if fast is not None:
            # Callback API (ICMP): no task per probe.
            try:
                fast.start(target, timeout, done)
            except Exception as exc:
                # Delivered on the next loop step, like any other result: the dispatcher is
                # walking its queues right now and must not re-enter them.
                result = self._raised_result(send, exc)
                asyncio.get_running_loop().call_soon(done, result)
            return
        task = asyncio.get_running_loop().create_task(self._run_probe(prober, send, timeout, done))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_probe(
        self, prober: Prober, send: _Send, timeout: float, done: Callable[[ProbeResult], None]
    ) -> None:
        if send.control:
            _CONTROL_PROBE.set(True)  # this task's context only (see acquire_resend)
        try:
            result = await prober.probe(send.target, timeout)
        except Exception as exc:  # CancelledError is not an Exception: close() still cancels
            result = self._raised_result(send, exc)
        done(result)

    def _raised_result(self, send: _Send, exc: Exception) -> ProbeResult:
        """A failed probe standing for a prober's exception; logged once per target."""
        _log_once(self._raised, log.warning, "probe_raised", send, exc)
        detail = f"prober raised {type(exc).__name__}: {exc}"
        if len(detail) > 300:
            detail = detail[:299] + "…"
        return ProbeResult.failure(send.target, now(), Reason.OTHER, detail)

    def _on_result(self, send: _Send, result: ProbeResult) -> None:
        job = send.job
        self.timeouts.observe(result)
        if result.ok:
            self._raised.discard((send.entity, send.target))
        elif result.reason is Reason.TIMEOUT and self._late_sink is not None:
            self._timed_out(send)
        try:
            self._sink.on_result(send.entity, result, send.control)
        except Exception as exc:
            self._sink_failed(send, exc)
        if job is None:
            if not send.sample:
                self._extra_pending -= 1
            return
        if result.ok:
            job.round_ok = True
        elif job.attempt <= self.reprobes and not job.removed:
            lane = self._controls if job.control else self._entities
            lane.urgent.append(_Send(job, job.entity, job.target, job.control))
            self._kick()
            return
        job.busy = False
        try:
            self._sink.on_round(job.entity, job.target, job.round_ok, job.control)
        except Exception as exc:
            self._sink_failed(send, exc)

    def _timed_out(self, send: _Send) -> None:
        """Remember whose probe of this target timed out, for a late reply (see _on_late)."""
        owners = self._late_owner
        at = time.monotonic()
        cut = at - _LATE_OWNER_FOR
        while owners and (len(owners) >= _LATE_OWNER_MAX or next(iter(owners.values()))[1] < cut):
            owners.popitem(last=False)
        owners.pop(send.target, None)  # to the end: time order
        owners[send.target] = (send, at)

    def _on_late(self, target: IcmpTarget, started: float, rtt: float) -> None:
        """A prober's late reply: learn its RTT; tell the sink, as the answer of the entity
        whose probe of the target timed out (unknown when the probe was not ours: a census's
        or a traceroute's probe through the same engine only teaches the RTT)."""
        self.timeouts.late(target, rtt)
        sink = self._late_sink
        owner = self._late_owner.get(target)
        if sink is None or owner is None:
            return
        send = owner[0]
        try:
            sink.on_late(send.entity, target, started, rtt, send.control)
        except Exception as exc:
            self._sink_failed(send, exc)

    def _sink_failed(self, send: _Send, exc: Exception) -> None:
        # A bug downstream (metrics, detection) must not leave the job busy forever.
        _log_once(self._sink_raised, log.error, "result_sink_raised", send, exc)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


async def _take(limiter: RateLimiter, deadline: float, send_by: float) -> bool:
    """One send of `limiter` for a packet the kernel sends by `send_by`, taken by `deadline`."""
    while True:
        wait = limiter.try_acquire(send_by)
        if wait <= 0:
            return True
        if time.monotonic() + wait > deadline:
            return False
        await asyncio.sleep(wait)


def _log_once(
    seen: set[tuple[str, Target]],
    emit: Callable[..., object],
    event: str,
    send: _Send,
    exc: Exception,
) -> None:
    """Log `exc` with its traceback the first time for this target (the caller forgets the
    target again when it answers or is removed)."""
    key = (send.entity, send.target)
    if key in seen:
        return
    seen.add(key)
    emit(
        event,
        entity=send.entity,
        kind=str(send.target.kind),
        target=send.target.key,
        error=f"{type(exc).__name__}: {exc}",
        exc_info=exc,
    )


@dataclass
class RoundCollector:
    """A sink that gathers one round's results (used by `dprk-monitor probe`)."""

    expected: int
    results: list[tuple[str, ProbeResult]] = field(default_factory=list)
    rounds: dict[tuple[str, str], bool] = field(default_factory=dict)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def on_result(self, entity: str, result: ProbeResult, control: bool) -> None:
        self.results.append((entity, result))

    def on_round(self, entity: str, target: Target, ok: bool, control: bool) -> None:
        self.rounds[(entity, f"{target.kind}/{target.key}")] = ok
        if len(self.rounds) >= self.expected:
            self.done.set()

    def on_skipped(self, entity: str, target: Target, late: bool) -> None:
        pass
