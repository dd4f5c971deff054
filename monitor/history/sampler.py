"""The pure half of the history: a step's point from what the daemon saw, and the downsampling
of points into coarser ones. No I/O, no clock: every call is given its times.

`Sampler` is fed as things happen (each probe result of an entity's target, each state change,
each change of the vantage's health) and closes a step with a `Snapshot` of what the detector
and the BGP client know at its end (targets configured and up per kind, block beliefs, prefix
visibility). Per entity and step:

- state: the worst held at any time in the step (a 3 s blackout inside a 10 s step shows);
- answered: distinct targets per kind that answered at least once (a refusal, an HTTP status
  or a DNS error is an answer, as for the detector's blocks);
- loss: unanswered share of the probes sent to targets that answered at least once since the
  start (a configured address that never answers is not loss); None when none was sent;
- rtt_median: the median round trip of the step's answered ICMP probes (None: none);
- vantage_healthy: False if the vantage was unhealthy at any time in the step.

Downsampling (`downsample`) keeps the worst of each bucket, so an outage never disappears
when zooming out: state the worst, `up`/`answered` the minimum, `targets` the maximum, block
beliefs and BGP ratios the minimum, loss the mean, RTT the median of the medians,
vantage_healthy all of them.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from monitor.detect.model import State
from monitor.history.point import MAX_BLOCKS, MAX_PREFIXES, HistoryPoint, worst

# RTTs kept per entity and step for the median (the rest of a huge step is not needed).
MAX_RTTS = 4096


def bucket(t: float, step: int) -> int:
    """The start of the step-aligned bucket holding `t` (epoch seconds)."""
    return math.floor(t / step) * step


@dataclass(frozen=True, slots=True)
class EntitySnapshot:
    """What the daemon knows of one entity at the end of a step."""

    name: str
    state: State
    targets: Mapping[str, int] = field(default_factory=dict)
    up: Mapping[str, int] = field(default_factory=dict)
    blocks: Mapping[str, float] = field(default_factory=dict)
    bgp: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Snapshot:
    entities: Sequence[EntitySnapshot]
    vantage_healthy: bool


@dataclass(slots=True)
class _Acc:
    """One entity's step so far."""

    held: list[State]
    answered: dict[str, set[Hashable]] = field(default_factory=dict)
    sent: int = 0
    lost: int = 0
    rtts: list[float] = field(default_factory=list)


class Sampler:
    def __init__(self, step: int) -> None:
        self.step = step
        self._acc: dict[str, _Acc] = {}
        self._state: dict[str, State] = {}
        self._responsive: dict[str, set[Hashable]] = {}
        self._vantage_now = True
        self._vantage_step = True

    def _get(self, entity: str) -> _Acc:
        acc = self._acc.get(entity)
        if acc is None:
            acc = self._acc[entity] = _Acc([self._state.get(entity, State.UNKNOWN)])
        return acc

    def observe(
        self, entity: str, kind: str, target: Hashable, answered: bool, rtt: float | None = None
    ) -> None:
        """One probe result of `entity`'s `target` (`rtt`: of an answered ICMP probe)."""
        acc = self._get(entity)
        responsive = self._responsive.setdefault(entity, set())
        if answered:
            acc.answered.setdefault(kind, set()).add(target)
            responsive.add(target)
            if rtt is not None and len(acc.rtts) < MAX_RTTS:
                acc.rtts.append(rtt)
        if target in responsive:
            acc.sent += 1
            acc.lost += not answered

    def state_changed(self, entity: str, state: State) -> None:
        self._state[entity] = state
        self._get(entity).held.append(state)

    def vantage_changed(self, healthy: bool) -> None:
        self._vantage_now = healthy
        self._vantage_step = self._vantage_step and healthy

    def close(self, t: float, snap: Snapshot) -> list[HistoryPoint]:
        """The points of the step that began at `t`, one per entity of `snap`; the next step
        begins."""
        vantage = self._vantage_step and snap.vantage_healthy
        points = []
        names = set()
        for e in snap.entities:
            names.add(e.name)
            acc = self._acc.pop(e.name, None)
            held = acc.held if acc is not None else [self._state.get(e.name, e.state)]
            answered = {k: len(v) for k, v in acc.answered.items()} if acc is not None else {}
            points.append(
                HistoryPoint(
                    entity=e.name,
                    t=float(t),
                    step=self.step,
                    state=worst([*held, e.state]),
                    targets=dict(e.targets),
                    up=dict(e.up),
                    answered={k: answered.get(k, 0) for k in e.targets},
                    loss=acc.lost / acc.sent if acc is not None and acc.sent else None,
                    rtt_median=statistics.median(acc.rtts) if acc and acc.rtts else None,
                    blocks=_first(e.blocks, MAX_BLOCKS),
                    bgp=_first(e.bgp, MAX_PREFIXES),
                    vantage_healthy=vantage,
                )
            )
            self._state[e.name] = e.state
        # Entities gone from the configuration are forgotten.
        self._acc.clear()
        for gone in set(self._state) - names:
            del self._state[gone]
            self._responsive.pop(gone, None)
        self._vantage_step = self._vantage_now = snap.vantage_healthy
        return points


def _first(values: Mapping[str, float], n: int) -> dict[str, float]:
    keys = sorted(values)[:n]
    return {k: round(float(values[k]), 4) for k in keys}


def _min_by_key(maps: Iterable[Mapping[str, float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for m in maps:
        for k, v in m.items():
            out[k] = min(out[k], v) if k in out else v
    return out


def downsample(points: Sequence[HistoryPoint], t: float, step: int) -> HistoryPoint:
    """One point of `step` at `t` from the finer points of its bucket (one entity, at least
    one point): the worst of each field (see the module docstring)."""
    if not points:
        raise ValueError("downsample: no points")
    targets: dict[str, int] = {}
    for p in points:
        for k, n in p.targets.items():
            targets[k] = max(targets.get(k, 0), n)
    losses = [p.loss for p in points if p.loss is not None]
    rtts = [p.rtt_median for p in points if p.rtt_median is not None]
    return HistoryPoint(
        entity=points[0].entity,
        t=float(t),
        step=step,
        state=worst([p.state for p in points]),
        targets=targets,
        up={k: int(v) for k, v in _min_by_key(p.up for p in points).items()},
        answered={k: int(v) for k, v in _min_by_key(p.answered for p in points).items()},
        loss=round(statistics.fmean(losses), 6) if losses else None,
        rtt_median=statistics.median(rtts) if rtts else None,
        blocks=_min_by_key(p.blocks for p in points),
        bgp=_min_by_key(p.bgp for p in points),
        vantage_healthy=all(p.vantage_healthy for p in points),
    )


def regroup(points: Iterable[HistoryPoint], step: int) -> list[HistoryPoint]:
    """Finer points (one entity, in time order) as points of `step`, one per bucket."""
    out: list[HistoryPoint] = []
    group: list[HistoryPoint] = []
    current: int | None = None
    for p in points:
        b = bucket(p.t, step)
        if current is not None and b != current and group:
            out.append(downsample(group, current, step))
            group = []
        current = b
        group.append(p)
    if group and current is not None:
        out.append(downsample(group, current, step))
    return out


def choose_step(
    steps: Sequence[int],
    retention: Sequence[float],
    since: float,
    until: float,
    now: float,
    max_points: int,
) -> int:
    """The finest tier whose retention still holds `since` and that answers [since, until]
    in at most `max_points` points; the coarsest when none does. `steps` finest first."""
    for step, keep in zip(steps, retention, strict=True):
        if since >= now - keep and (until - since) / step <= max_points:
            return step
    return steps[-1]
