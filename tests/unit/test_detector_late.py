"""Late answers (a reply that came after its probe timed out: `Detector.observe_late`) on a
path slower than the probe timeout, driven like the daemon drives the detector
(tests/unit/test_detector.py's simulated world)."""

from __future__ import annotations

from monitor.detect.belief import BlockState
from monitor.detect.model import Change, EventClosed, EventKind, EventOpened, State, StateChanged
from tests.unit.test_detector import DEFAULTS, T0, Sim, World, at, lost, ok, small
from tests.unit.test_detector_small import CONTROLS, default_lane, small_spec

SLOW_FROM = at(900)  # the normal loss and RTT are learned by then


class SlowLink(World):
    """The entity's link slows down; our controls (elsewhere) keep a fast path."""

    def rtt_of(self, t: float, control: bool) -> float:
        return 0.05 if control else super().rtt_of(t, control)


def satgate_on_a_slow_path(seed: int, late_answers: bool) -> Sim:
    """satgate (one /24, three addresses) at 650 ms until SLOW_FROM, then at ~4 s (two
    congestion episodes on a satellite link) for an hour: over the 3 s timeout, every probe
    times out; with `late_answers` their replies still arrive, 4 s after each send."""
    spec = small_spec("satgate")
    others = [k for k in default_lane() if not k.startswith("satgate")]
    w = SlowLink(seed=seed, rtt=lambda t: 0.65 if t < SLOW_FROM else 4.0, jitter=0.1)
    sim = Sim(
        w,
        spec_controls=(spec, CONTROLS),
        lane=others,
        late_answers=late_answers,
        **DEFAULTS,  # type: ignore[arg-type]
    )
    sim.run_until(SLOW_FROM + 3600.0)
    return sim


def test_a_path_slower_than_the_timeout_that_answers_late_is_not_down() -> None:
    """Every probe of a small entity times out for an hour but is answered late (~4 s RTT
    over the 3 s timeout): its block never goes down, the entity is never down and no
    outage opens; only `degraded` may (latency over 6x its normal, sustained: what the word
    means, and what the few answers under the timeout alone said before)."""
    for seed in range(3):
        sim = satgate_on_a_slow_path(seed, late_answers=True)
        assert sim.late > 300, sim.late
        kinds = {e.kind for e in sim.log.opened()}
        assert kinds <= {EventKind.DEGRADED}, (seed, kinds)
        assert State.DOWN not in [s for _, s in sim.log.states()], seed
        block = next(iter(sim.det._entities["satgate"].blocks.values()))
        assert block.state is not BlockState.DOWN


def test_the_same_slow_path_without_late_answers_goes_down() -> None:
    """Sanity for the test above: the same hour without the late answers (what the daemon did
    before) takes satgate down: a false blackout."""
    sim = satgate_on_a_slow_path(0, late_answers=False)
    assert EventKind.BLACKOUT in {e.kind for e in sim.log.opened()}


def test_a_late_answer_after_the_entity_went_down_ends_the_outage_now_not_before() -> None:
    """A block down on timeouts, then a late answer to a probe sent before it went down: the
    entity is up again and the event ends at the answer's arrival (no end before the event
    was even opened: the answer says the path answers now, not that it was never down)."""
    det, _, targets, (ctl,) = small()
    changes: list[Change] = []
    for x in targets:
        changes += det.observe("box", ok(x, T0), T0 + 0.05)
    t = T0 + 10.0
    while det.entity_state("box") is not State.DOWN:
        assert t < T0 + 100.0, "never went down"
        changes += det.observe("box", lost(targets[int(t) % 3], t), t + 3.0)
        changes += det.observe(None, ok(ctl, t + 2.0), t + 3.0)
        changes += det.tick(t + 3.0)
        t += 1.0
    t_down = t + 2.0
    opened = [c.event for c in changes if isinstance(c, EventOpened)]
    assert [e.kind for e in opened] == [EventKind.BLACKOUT]
    arrival = t_down + 1.0
    changes = det.observe_late("box", targets[0], T0 + 10.0, arrival - (T0 + 10.0), arrival)
    now = arrival
    while not any(isinstance(c, EventClosed) for c in changes):
        assert now < arrival + 3600.0, "never closed"
        now += 1.0
        det.observe(None, ok(ctl, now), now + 0.05)
        det.observe("box", ok(targets[int(now) % 3], now), now + 0.05)
        changes += det.tick(now + 0.1)
    assert det.entity_state("box") is State.UP
    (closed,) = [c.event for c in changes if isinstance(c, EventClosed)]
    assert closed.end == arrival
    ups = [c for c in changes if isinstance(c, StateChanged) and c.new is State.UP]
    assert ups and ups[0].since == arrival
