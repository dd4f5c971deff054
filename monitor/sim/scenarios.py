"""Outage scenarios replayed in the simulated world against the real daemon, with measurements.

The same scenarios serve the integration tests (time-scaled: `scale` 0.2 runs a 30 s interval as
6 s, with every detection duration scaled alike, so ratios hold) and `bench/bench_detection.py`
(scale 1: the defaults, full length). Each returns an `Outcome` with what a user cares about:
how long until the outage was flagged and closed, how far the event's start and end are from the
true ones, and how many events were opened (false ones included).

The patterns follow the documented DPRK outages (facts file): total blackout (Dec 2014, Jun
2025), DDoS-like loss then routers dropping (Jan 2022), DNS first then everything (Nov 2022),
web-only (May 2021), one /24 or one upstream lost (partial), flapping (Oct 2017).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from monitor.detect.model import parse_time
from monitor.detect.params import DetectionParams
from monitor.sim.daemonproc import DaemonProcess, Metrics
from monitor.sim.world import FaultRecord, World

# detection.* parameters that are durations: scaled with the interval.
_DURATIONS = (
    "negative_spacing",
    "repeat_spacing",
    "suspect_min",
    "partial_after",
    "routing_after",
    "degraded_window",
    "degraded_after",
    "vantage_window",
    "merge_gap",
    "normal_tau",
)
DEFAULT_INTERVAL = 30.0
DEFAULT_TIMEOUT = 3.0
DEFAULT_MAX_RATE = 20.0
# The contract's goals at the default interval (scaled with it).
DETECT_WITHIN = 40.0
CLOSE_WITHIN = 40.0


def scaled_config(scale: float, timeout: float | None = None) -> dict[str, Any]:
    """`World.daemon_config` keywords for a daemon running `scale` times the default timings.
    `timeout`: the probe timeout in seconds, not scaled (realistic paths: a path's latency is
    physics, a 0.6 s timeout would call a 650 ms satellite path dead)."""
    d = DetectionParams()
    return {
        "interval": f"{DEFAULT_INTERVAL * scale:g}s",
        "timeout": f"{timeout if timeout is not None else DEFAULT_TIMEOUT * scale:g}s",
        # The same probes per interval: the politeness budget scales with the clock.
        "max_rate": DEFAULT_MAX_RATE / scale,
        "detection": {k: f"{getattr(d, k) * scale:g}s" for k in _DURATIONS},
    }


@dataclass
class Outcome:
    scenario: str
    scale: float
    detect_delay: float | None = None  # fault -> outage_active 1 (seconds)
    start_error: float | None = None  # event start - true start
    close_delay: float | None = None  # repair -> outage_active 0
    end_error: float | None = None  # event end - true end
    events: list[dict[str, Any]] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def kinds(self) -> list[str]:
        return [e["kind"] for e in self.events]


class Runner:
    """Drives one daemon in one world; times are wall-clock epoch seconds."""

    def __init__(self, world: World, daemon: DaemonProcess, scale: float, entity: str = "star-jv"):
        self.world, self.daemon, self.scale, self.entity = world, daemon, scale, entity
        self.interval = DEFAULT_INTERVAL * scale
        self.poll = max(0.05, self.interval / 60)
        self.started = self.t0 = time.time()

    def metrics(self) -> Metrics:
        return self.daemon.metrics()

    def state(self, m: Metrics | None = None) -> str | None:
        m = m or self.metrics()
        return m.one_hot("dprk_monitor_entity_state", "state", entity=self.entity)

    def active(self, m: Metrics) -> bool:
        return m.value("dprk_monitor_outage_active", 0.0, entity=self.entity) == 1

    def wait(self, pred: Callable[[Metrics], bool], within: float, what: str) -> float:
        """Poll until `pred`; return the wall time it was first seen true."""
        deadline = time.time() + within
        while True:
            m = self.metrics()
            if pred(m):
                return time.time()
            if time.time() > deadline:
                raise AssertionError(
                    f"{what}: not within {within:.1f}s (state {self.state(m)}, "
                    f"active {self.active(m)})\n{self.daemon.log_tail(3000)}"
                )
            time.sleep(self.poll)

    def hold(self, intervals: float, check: Callable[[Metrics], None] | None = None) -> None:
        """Let time pass (in intervals), checking an invariant all along if given."""
        end = time.time() + intervals * self.interval
        while time.time() < end:
            if check is not None:
                check(self.metrics())
            time.sleep(self.poll)

    def warm(self) -> None:
        """Wait until the daemon has probed every target twice (a full round learns which
        addresses answer) and judges the entity up."""
        self.wait(lambda m: self.state(m) == "up", 6 * self.interval + 10, "entity up at start")
        rest = self.started + 2 * self.interval - time.time()
        if rest > 0:
            time.sleep(rest)
        self.t0 = time.time()

    def events(self) -> list[dict[str, Any]]:
        evs = self.daemon.outages() or []
        return [e for e in evs if e["entity"] == self.entity]

    def world_entities(self) -> list[str]:
        return [e.name for e in self.world.spec.entities]

    def all_events(self) -> list[dict[str, Any]]:
        """Every entity's events (for scenarios where none should open anywhere)."""
        return list(self.daemon.outages() or [])

    def measure_open(
        self,
        o: Outcome,
        fault_at: float,
        within: float | None = None,
        check: Callable[[Metrics], None] | None = None,
    ) -> None:
        def opened(m: Metrics) -> bool:
            if check is not None:
                check(m)
            return self.active(m)

        t = self.wait(opened, within or 4 * DETECT_WITHIN * self.scale, "outage opened")
        o.detect_delay = t - fault_at
        evs = self.events()
        if evs:
            o.start_error = parse_time(evs[-1]["start"]) - fault_at

    def measure_close(self, o: Outcome, repair_at: float) -> None:
        t = self.wait(
            lambda m: not self.active(m), 4 * CLOSE_WITHIN * self.scale + 10, "outage closed"
        )
        o.close_delay = t - repair_at
        evs = self.events()
        if evs and evs[-1]["end"] is not None:
            o.end_error = parse_time(evs[-1]["end"]) - repair_at


def _blackout(r: Runner, name: str, mode: str | None) -> Outcome:
    o = Outcome(name, r.scale)
    r.warm()
    cut = r.world.blackout(mode)
    o.notes["mode"] = cut.params.get("mode")
    # Every entity's own delay, the small ones (one /24, three addresses) included: the
    # headline is the main entity's, but a researcher may watch one of them alone.
    seen: dict[str, float] = {}

    def every(m: Metrics) -> None:
        for name in r.world_entities():
            if name not in seen and m.value("dprk_monitor_outage_active", 0.0, entity=name):
                seen[name] = time.time() - cut.at

    r.measure_open(o, cut.at, check=every)
    r.hold(3, every)
    o.notes["entity_flagged"] = seen
    rep = r.world.repair_blackout()
    r.measure_close(o, rep.at)
    o.events = r.events()
    return o


def blackout(r: Runner) -> Outcome:
    """Every route withdrawn at both upstreams (Dec 2014, Jun 2025), as the world does by
    default (ideal paths: routers answer unreachable; realistic paths: silent)."""
    return _blackout(r, "blackout", None)


def blackout_silent(r: Runner) -> Outcome:
    """A blackout whose routers drop silently (an upstream keeping a default route): no ICMP
    error, only timeouts. The headline case: real paths often give no fast evidence."""
    return _blackout(r, "blackout_silent", "blackhole")


def blackout_unreachable(r: Runner) -> Outcome:
    """A blackout whose routers answer ICMP host unreachable (rate-limited)."""
    return _blackout(r, "blackout_unreachable", "unreachable")


def ddos(r: Runner) -> Outcome:
    """Loss ramps up (timeouts, high loss), then the routers drop (Jan 2022)."""
    o = Outcome("ddos", r.scale)
    r.warm()
    first = r.world.loss(0.5)
    r.hold(2)
    r.world.loss(0.8)
    r.hold(2)
    r.world.loss(0.95)
    r.hold(2)
    cut = r.world.blackout()
    r.measure_open(o, cut.at)
    o.notes["loss_started"] = first.at
    r.hold(2)
    r.world.clear_loss()
    rep = r.world.repair_blackout()
    r.measure_close(o, rep.at)
    o.events = r.events()
    return o


def dns_first(r: Runner) -> Outcome:
    """Name servers offline first, then the key routers (Nov 2022): one event, escalating."""
    o = Outcome("dns_first", r.scale)
    r.warm()
    dns = r.world.stop_dns()
    r.measure_open(o, dns.at, within=6 * r.interval + 10)
    r.hold(2)
    cut = r.world.blackout()
    t = r.wait(lambda m: r.state(m) == "down", 4 * DETECT_WITHIN * r.scale, "down after routes")
    o.notes["blackout_detect_delay"] = t - cut.at
    r.hold(2)
    rep = r.world.repair_blackout()
    r.world.start_dns()
    r.measure_close(o, rep.at)
    o.events = r.events()
    return o


def web_only(r: Runner) -> Outcome:
    """The web server stops, the network stays up (May 2021)."""
    o = Outcome("web_only", r.scale)
    r.warm()
    web = r.world.stop_web()
    r.measure_open(o, web.at, within=6 * r.interval + 10)
    o.notes["state"] = r.state()
    r.hold(2)
    rep = r.world.start_web()
    r.measure_close(o, rep.at)
    o.events = r.events()
    return o


def _partial(
    r: Runner, name: str, cut: Callable[[], FaultRecord], repair: Callable[[], FaultRecord]
) -> Outcome:
    """Part of the network lost, the rest answers: flagged once `partial_after` has passed."""
    o = Outcome(name, r.scale)
    r.warm()
    fault = cut()
    r.measure_open(o, fault.at, within=(60 + 4 * DETECT_WITHIN) * r.scale + 10)
    o.notes["state"] = r.state()
    r.hold(2)
    rep = repair()
    r.measure_close(o, rep.at)
    o.events = r.events()
    return o


def partial_block(r: Runner, prefix: str = "198.18.177.0/24") -> Outcome:
    """One /24 blackholed, the others answer."""
    return _partial(
        r,
        "partial_block",
        lambda: r.world.blackhole_block(prefix),
        lambda: r.world.restore_block(prefix),
    )


def partial_upstream(r: Runner, upstream: str = "ttk") -> Outcome:
    """One upstream (TransTelecom: .177 and .178) withdraws its routes."""
    return _partial(
        r,
        "partial_upstream",
        lambda: r.world.lose_upstream(upstream),
        lambda: r.world.restore_upstream(upstream),
    )


def flapping(r: Runner) -> Outcome:
    """Routes toggle every ~45 s, four times (Oct 2017): one event, or a few, not dozens."""
    o = Outcome("flapping", r.scale)
    r.warm()
    flap = r.world.flap(period=45 * r.scale, count=4)
    flap.wait(4 * 2 * 45 * r.scale + 30)
    first = flap.records[0].at
    last = flap.records[-1].at
    o.notes["flap_start"], o.notes["flap_end"] = first, last
    r.measure_close(o, last)
    o.events = r.events()
    if o.events:
        o.start_error = parse_time(o.events[0]["start"]) - first
    return o


def _watch_all(r: Runner, o: Outcome, states: dict[str, set[str]]) -> Callable[[Metrics], None]:
    """An invariant check for `Runner.hold`: every entity's states seen, and the first time any
    entity had an outage open."""
    names = r.world_entities()

    def check(m: Metrics) -> None:
        for name in names:
            states.setdefault(name, set()).add(
                m.one_hot("dprk_monitor_entity_state", "state", entity=name) or "?"
            )
            if m.value("dprk_monitor_outage_active", 0.0, entity=name) == 1:
                o.notes.setdefault("active_seen", {}).setdefault(name, time.time())

    return check


def random_loss(r: Runner, rate: float = 0.3, minutes: float = 10) -> Outcome:
    """30% random loss per packet (into every block, from every upstream) for 10 minutes: no
    outage and never down, for any entity, the small ones (one /24, three addresses) included.
    `events` are every entity's."""
    o = Outcome("random_loss", r.scale)
    r.warm()
    r.world.loss(rate)
    states: dict[str, set[str]] = {}
    check = _watch_all(r, o, states)
    r.hold(minutes * 60 / DEFAULT_INTERVAL, check)
    r.world.clear_loss()
    o.notes["states"] = sorted(states.get(r.entity, ()))
    o.notes["states_by_entity"] = {k: sorted(v) for k, v in states.items()}
    o.events = r.all_events()
    return o


def congestion(
    r: Runner, minutes: float = 5, rtt_factor: float = 2.5, loss: float = 0.08
) -> Outcome:
    """A congestion episode on every upstream (RTT x2.5, 8 % loss per direction, 20 s ramps)
    for 5 minutes: no event of any kind for any entity. Realistic paths only (the episode
    lives on the delay lines). The episode's length scales with the clock; its latency does
    not (a path's RTT is physics)."""
    o = Outcome("congestion", r.scale)
    r.warm()
    duration = minutes * 60 * r.scale
    links = [ln for ln in r.world.path_links if ln != "ctl"]
    if not links:
        raise RuntimeError("congestion needs realistic paths (World.build(profile='realistic'))")
    first = None
    for ln in links:
        rec = r.world.congestion(
            ln, duration=duration, rtt_factor=rtt_factor, loss=loss, ramp=min(20.0, duration / 4)
        )
        first = first or rec
    states: dict[str, set[str]] = {}
    check = _watch_all(r, o, states)
    r.hold(duration / r.interval + 2, check)
    o.notes["states"] = sorted(states.get(r.entity, ()))
    o.notes["states_by_entity"] = {k: sorted(v) for k, v in states.items()}
    o.events = r.all_events()
    return o


def vantage_uplink(r: Runner, minutes: float = 5) -> Outcome:
    """Our own uplink cut for 5 minutes: vantage_healthy 0, states unknown, no outage."""
    o = Outcome("vantage_uplink", r.scale)
    r.warm()
    cut = r.world.cut_vantage_uplink()
    t = r.wait(
        lambda m: m.value("dprk_monitor_vantage_healthy") == 0,
        4 * DETECT_WITHIN * r.scale + 10,
        "vantage offline",
    )
    o.notes["vantage_offline_delay"] = t - cut.at
    states: set[str] = set()

    def check(m: Metrics) -> None:
        states.add(r.state(m) or "?")
        if r.active(m):
            o.notes.setdefault("active_seen", time.time())

    r.hold(max(0.0, minutes * 60 / DEFAULT_INTERVAL - (time.time() - cut.at) / r.interval), check)
    rep = r.world.restore_vantage_uplink()
    t = r.wait(
        lambda m: m.value("dprk_monitor_vantage_healthy") == 1,
        4 * DETECT_WITHIN * r.scale + 10,
        "vantage back",
    )
    o.notes["vantage_back_delay"] = t - rep.at
    r.wait(lambda m: r.state(m) == "up", 6 * r.interval + 10, "entity up again")
    o.notes["states"] = sorted(states)
    o.events = r.events()
    return o


def kill9_midoutage(r: Runner) -> Outcome:
    """kill -9 of the daemon during a blackout, restart, repair: one event, right start and end."""
    o = Outcome("kill9_midoutage", r.scale)
    r.warm()
    cut = r.world.blackout()
    r.measure_open(o, cut.at)
    r.daemon.kill9()
    r.hold(1)
    r.daemon.start()
    o.notes["resumed_active"] = r.active(r.metrics())
    r.hold(2)
    rep = r.world.repair_blackout()
    r.measure_close(o, rep.at)
    o.events = r.events()
    return o


SCENARIOS: dict[str, Callable[[Runner], Outcome]] = {
    f.__name__: f
    for f in (
        blackout,
        blackout_silent,
        blackout_unreachable,
        ddos,
        dns_first,
        web_only,
        partial_block,
        partial_upstream,
        flapping,
        random_loss,
        congestion,
        vantage_uplink,
        kill9_midoutage,
    )
}
