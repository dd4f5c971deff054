"""Small entities (one /24, three addresses, like kptc-unicom and satgate) and sampled blocks,
driven like the daemon drives the detector (tests/unit/test_detector.py's simulated world):
slots where the scheduler puts them among every entity of the default config, re-probes,
extra probes, results after their RTT or the timeout.
"""

from __future__ import annotations

import ipaddress
import itertools
from pathlib import Path

import pytest

from monitor import config
from monitor.detect.belief import BlockState
from monitor.detect.detector import Detector, EntitySpec
from monitor.detect.model import EventKind, State
from monitor.probes.base import IcmpTarget, ProbeResult, Reason, Target
from tests.unit.test_detector import (
    DEFAULTS,
    T0,
    Sim,
    World,
    at,
    ip,
    real_path,
)

ROOT = Path(__file__).resolve().parents[2]
CONTROLS: list[Target] = [IcmpTarget(ip(f"198.19.0.{i}")) for i in range(1, 4)]


def default_lane() -> list[str]:
    """The scheduler's job keys of every target of config/dprk.yaml (the entity lane)."""
    cfg = config.load(ROOT / "config" / "dprk.yaml")
    return [f"{e.name}/{t.kind}/{t.key}" for e in cfg.entities for t in e.targets.all()]


def small_spec(name: str) -> EntitySpec:
    """`name` of the default config (kptc-unicom, satgate) with its own addresses: three ICMP
    targets in one /24 (never sent: the world is simulated)."""
    cfg = config.load(ROOT / "config" / "dprk.yaml")
    ent = next(e for e in cfg.entities if e.name == name)
    return EntitySpec(name, tuple(ent.prefixes), tuple(ent.targets.all()))


def small_sim(name: str, world: World, slots: dict[Target, float] | None = None) -> Sim:
    """The entity `name` alone in `world`, its slots as in the daemon's lane among every
    target of the default config (or `slots`)."""
    spec = small_spec(name)
    others = [k for k in default_lane() if not k.startswith(name)]
    return Sim(world, spec_controls=(spec, CONTROLS), lane=others, slots=slots, **DEFAULTS)  # type: ignore[arg-type]


def bunched(name: str) -> dict[Target, float]:
    """`name`'s three slots bunched together: 1 s, 1 s and 28 s apart (hash-ordered slots
    gave satgate 2.5, 2.5 and 25 s; the worst case for a learned mean gap)."""
    return {t: float(i) for i, t in enumerate(small_spec(name).targets)}


# --- steady state: no probes beyond the rounds --------------------------------------------------


@pytest.mark.parametrize("layout", ["default", "bunched"])
@pytest.mark.parametrize(("name", "rtt"), [("kptc-unicom", 0.3), ("satgate", 0.65)])
def test_no_suspicion_bursts_in_steady_state(name: str, rtt: float, layout: str) -> None:
    """With every address answering (a realistic path's RTT and jitter, no loss), a small
    entity gets no extra probe over an hour, its slots as the scheduler spreads them or
    bunched (a false alarm now and then: the silence it took is learned, relaxed over an
    hour; it was one to three a round): the answer-gap suspicion
    does not feed on the answers of its own bursts (kptc-unicom was probed twice per round,
    720/h not 360/h)."""
    slots = bunched(name) if layout == "bunched" else None
    for seed in range(4):
        w = World(seed=seed, rtt=lambda t: rtt, jitter=0.15)
        sim = small_sim(name, w, slots)
        sim.run_until(at(3600))
        # bunched: a false alarm when the learned silence has relaxed (~5/h, 3 probes each)
        assert sim.extras <= (3 if layout == "default" else 18), (seed, sim.extras)
        assert sim.log.opened() == []


# --- blackouts: flagged within one timeout and a confirmation burst --------------------------


def flagged_after_first_failure(name: str) -> tuple[list[float], list[float]]:
    """Per phase of the rounds: the blackout's event opened - its start (the first failed
    probe), and opened - the fault, after checking the start is that probe (<= one slot
    after the fault) and the event is one blackout."""
    out, from_fault = [], []
    for seed in range(12):
        start = at(600 + seed * 2.7)
        w = real_path(seed, blackout=[(start, at(900))])
        sim = small_sim(name, w)
        sim.run_until(at(1000))
        t_open, ev = sim.log.first_open()
        assert ev.kind is EventKind.BLACKOUT, (seed, ev.kind)
        assert start <= ev.start <= start + 30.0, (seed, ev.start - start)
        assert len(sim.log.opened()) == 1
        out.append(t_open - ev.start)
        from_fault.append(t_open - start)
    return out, from_fault


@pytest.mark.parametrize("name", ["kptc-unicom", "satgate"])
def test_small_entity_flagged_within_a_timeout_and_a_burst(name: str) -> None:
    """A blackout of a small entity is flagged about one timeout (3 s) after its first failed
    probe is known: that failure sends confirmation probes to the block's other addresses,
    each address again every `repeat_spacing` until the block is down or answers, so the
    12 negatives the belief needs come from ~4 s of probing, not one timeout per address
    (15-19 s)."""
    delays, _ = flagged_after_first_failure(name)
    delays.sort()
    assert delays[len(delays) // 2] <= 11.0, delays
    assert delays[-1] <= 12.0, delays


@pytest.mark.parametrize("name", ["kptc-unicom", "satgate"])
def test_small_entity_flagged_within_17_seconds_of_the_fault(name: str) -> None:
    """From the fault: the wait for the entity's next slot (its slots spread ~10 s apart by
    the scheduler), then a timeout and a burst: median <= 17 s over the phases of the rounds,
    the slowest <= 23 s (hash-ordered slots bunched satgate's: up to 34 s)."""
    _, from_fault = flagged_after_first_failure(name)
    from_fault.sort()
    assert from_fault[len(from_fault) // 2] <= 17.0, from_fault
    assert from_fault[-1] <= 23.0, from_fault


def test_each_entity_s_slots_are_spread_over_the_interval() -> None:
    """Among every target of the default config, each small entity's three slots are about a
    third of the interval apart (in hash order they could bunch: satgate's were 2.5, 2.5 and
    25 s apart, and an outage right after them was seen 25 s late)."""
    from monitor.scheduler import slot_offsets

    lane = default_lane()
    offsets = slot_offsets(lane, 30.0)
    for name in ("kptc-unicom", "satgate", "star-jv"):
        own = sorted(o for k, o in zip(lane, offsets, strict=True) if k.startswith(name + "/"))
        gaps = [b - a for a, b in itertools.pairwise(own)] + [30.0 - own[-1] + own[0]]
        assert max(gaps) <= 30.0 / len(own) + 2 * 30.0 / len(lane), (name, gaps)


# --- 30 % random loss over many rounds --------------------------------------------------------


@pytest.mark.parametrize("name", ["kptc-unicom", "satgate"])
def test_small_entity_under_30_percent_loss_opens_nothing(name: str) -> None:
    """30 % loss per packet each way (51 % round trip) from the moment the entity is warm,
    20 seeds of an hour, slots as in the daemon: never down, no network event (degraded may
    be: that is what it says of such loss on three addresses)."""
    for seed in range(20):
        w = real_path(seed, loss=0.0)
        w.loss = lambda t: 0.51 if t > at(120) else 0.0
        sim = small_sim(name, w)
        sim.run_until(at(3720))
        kinds = {e.kind for e in sim.log.opened()}
        assert kinds <= {EventKind.DEGRADED}, (seed, kinds)
        assert State.DOWN not in [s for _, s in sim.log.states()], seed
        blocks = sim.det._entities[name].blocks.values()
        assert all(b.state is not BlockState.DOWN for b in blocks), seed


# --- sampled blocks: E(b) from the census counts at once ------------------------------------


def test_sampled_block_blackout_counts_every_census_address() -> None:
    """A sampled block whose census E(b) holds three addresses, of which the daemon's one
    sample per round drew only one since the start: a blackout is flagged within about a
    timeout and a burst of its first failure, from failures of all three (it took ~12
    timeouts of the one address that had answered: 42-50 s in bench_census)."""
    net = ipaddress.IPv4Network("198.18.210.0/24")
    hosts = [ip("198.18.210.1"), ip("198.18.210.7"), ip("198.18.210.9")]
    delays = []
    for seed in range(6):
        start = at(600 + seed * 4.1)
        spec = EntitySpec("kptc-unicom", (net,), ())
        det = Detector(entities=[spec], controls=CONTROLS, now=T0)
        det.set_samples("kptc-unicom", {net: hosts}, T0)  # as monitor.discovery calls it
        w = real_path(seed, blackout=[(start, at(900))])
        sim = Sim(w, spec_controls=(spec, CONTROLS), detector=det, **DEFAULTS)  # type: ignore[arg-type]
        # The sample job: one address per round, always the first here (the others were not
        # drawn since the start).
        sim._schedule_round("kptc-unicom", IcmpTarget(hosts[0]), T0 + 5.0)
        sim.run_until(at(1000))
        t_open, ev = sim.log.first_open()
        assert ev.kind is EventKind.BLACKOUT
        delays.append(t_open - ev.start)
    assert max(delays) <= 12.0, delays


class _HostGone(World):
    """A world where one address stops answering for good at `gone_at` (renumbered)."""

    gone: Target = IcmpTarget(ip("198.18.210.1"))
    gone_at: float = at(600)

    def answer(self, target: Target, t: float, control: bool) -> tuple[bool, Reason | None]:
        if target == self.gone and t >= self.gone_at:
            return False, Reason.TIMEOUT
        return super().answer(target, t, control)


def test_one_dead_host_of_a_sampled_block_is_not_an_outage() -> None:
    """The one census address the daemon drew since the start stops answering while the other
    addresses of E(b) answer: no event (judged on that address alone, its block went down)."""
    net = ipaddress.IPv4Network("198.18.210.0/24")
    hosts = [ip("198.18.210.1"), ip("198.18.210.7"), ip("198.18.210.9")]
    for seed in range(4):
        spec = EntitySpec("kptc-unicom", (net,), ())
        det = Detector(entities=[spec], controls=CONTROLS, now=T0)
        det.set_samples("kptc-unicom", {net: hosts}, T0)
        w = _HostGone(seed=seed, rtt=lambda t: 0.3, jitter=0.15)
        sim = Sim(w, spec_controls=(spec, CONTROLS), detector=det, **DEFAULTS)  # type: ignore[arg-type]
        sim._schedule_round("kptc-unicom", IcmpTarget(hosts[0]), T0 + 5.0)
        sim.run_until(at(1800))
        assert sim.log.opened() == [], seed
        block = det.block_state("kptc-unicom", net)
        assert block is not None and block.state is BlockState.UP


def test_a_suspected_network_checks_the_other_entities_at_once() -> None:
    """When a big entity's answers stop (suspected: its burst goes out), each block of the
    other entities not probed since that silence began gets probes of `confirm_probes` of its
    addresses at once, not at its next slot (here 10 s away; its latest probe just before the
    silence says nothing of it); once."""
    big = [IcmpTarget(ip(f"198.18.176.{i}")) for i in range(1, 21)]
    small = list(small_spec("kptc-unicom").targets)
    specs = [
        EntitySpec("star-jv", (ipaddress.IPv4Network("198.18.176.0/24"),), tuple(big)),
        small_spec("kptc-unicom"),
    ]
    det = Detector(entities=specs, controls=CONTROLS, now=T0)
    t = T0
    for k in range(60):  # a big entity answering every 0.5 s, the small one every 10 s
        det.observe("star-jv", ProbeResult.success(big[k % 20], t, 0.3), t + 0.3)
        if k % 20 == 18:
            x = small[(k // 20) % 3]
            det.observe("kptc-unicom", ProbeResult.success(x, t, 0.3), t + 0.3)
        det.tick(t)
        assert det.wanted_probes(t) == []
        t += 0.5
    asked: list[tuple[str, Target]] = []
    for _ in range(6):  # silence
        t += 1.0
        det.tick(t)
        asked += det.wanted_probes(t)
    assert {e for e, _ in asked} == {"star-jv", "kptc-unicom"}
    # Each of its three addresses (confirm_probes), once: one would leave the block's fate
    # to its next two slots.
    mine = [x for e, x in asked if e == "kptc-unicom"]
    assert sorted(map(str, mine)) == sorted(map(str, small)), mine


def _country_blackout(big_fails: bool) -> tuple[Detector, ipaddress.IPv4Network, float]:
    """A big entity (two /24s, 20 addresses each) and kptc-unicom answer for a minute; then
    kptc-unicom's three addresses fail twice each, 1 s apart (six counted negatives), while
    the big entity's 40 addresses fail too (`big_fails`) or go on answering."""
    big = [IcmpTarget(ip(f"198.18.{b}.{i}")) for b in (176, 177) for i in range(1, 21)]
    small = [x for x in small_spec("kptc-unicom").targets if isinstance(x, IcmpTarget)]
    specs = [
        EntitySpec(
            "star-jv",
            (ipaddress.IPv4Network("198.18.176.0/23"),),
            tuple(big),
        ),
        small_spec("kptc-unicom"),
    ]
    det = Detector(entities=specs, controls=CONTROLS, now=T0)
    t = T0
    for k in range(120):
        det.observe("star-jv", ProbeResult.success(big[k % 40], t, 0.3), t + 0.3)
        det.observe("kptc-unicom", ProbeResult.success(small[k % 3], t, 0.3), t + 0.3)
        for c in CONTROLS:
            det.observe(None, ProbeResult.success(c, t, 0.05), t + 0.05)
        det.tick(t)
        t += 0.5
    for k, x in enumerate(big):
        s = t + k * 0.02
        if big_fails:
            det.observe("star-jv", ProbeResult.failure(x, s, Reason.TIMEOUT), s + 1.0)
        else:
            det.observe("star-jv", ProbeResult.success(x, s, 0.3), s + 0.3)
    for rnd in range(2):
        for i, y in enumerate(small):
            s = t + 0.5 + rnd * 1.1 + i * 0.1
            det.observe("kptc-unicom", ProbeResult.failure(y, s, Reason.TIMEOUT), s + 1.0)
    for c in CONTROLS:
        det.observe(None, ProbeResult.success(c, t + 3.0, 0.05), t + 3.05)
    det.tick(t + 3.1)
    return det, ipaddress.IPv4Network(f"{small[0].address}/24", strict=False), t


def test_a_small_entity_goes_down_with_the_country_on_half_the_failures() -> None:
    """A blackout of the country: the big entity's blocks go down, and a small entity whose
    own failure run began with theirs needs the joint prior's six counted negatives, not
    twelve (it was flagged 11-16 s into a blackout, star-jv 4 s). With the big entity up, the
    same six negatives take the small block nowhere: the prior only lowers the count."""
    det, net, _ = _country_blackout(big_fails=True)
    big_block = det.block_state("star-jv", ipaddress.IPv4Network("198.18.176.0/24"))
    assert big_block is not None and big_block.state is BlockState.DOWN
    block = det.block_state("kptc-unicom", net)
    assert block is not None and block.state is BlockState.DOWN
    det, net, _ = _country_blackout(big_fails=False)
    block = det.block_state("kptc-unicom", net)
    assert block is not None and block.state is not BlockState.DOWN and block.run_count == 6
