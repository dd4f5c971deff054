"""The daemon's side of the history: feeds the sampler, closes a step on its own timer and
hands the points to the store's writer thread; serves `GET /api/v1/history`.

Wiring (monitor/daemon.py): each probe result of an entity goes to `observe`, the detector's
`StateChanged`/`VantageChanged` come through the fan-out to `on_change`, `run` is one of the
daemon's supervised tasks. Closing a step reads the detector's counts and beliefs and the BGP
visibility (a few dict reads per entity and block) on the loop; SQLite is never touched there.
A failure to sample is logged (in full the first time), counted as dropped points, and the
next step goes on: the history must never stop the daemon.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import structlog

from monitor.config import HistoryConfig
from monitor.detect.detector import ANSWERED, Detector
from monitor.detect.hysteresis import TargetState
from monitor.detect.model import Change, StateChanged, VantageChanged
from monitor.history.point import HistoryPoint
from monitor.history.sampler import EntitySnapshot, Sampler, Snapshot, bucket
from monitor.history.store import HistoryError, HistoryStore, Tier
from monitor.probes.base import Kind, ProbeResult
from monitor.routing import RoutingWatch

log = structlog.get_logger("monitor.history")


def tiers(cfg: HistoryConfig) -> list[Tier]:
    """The three tiers: the resolution, 6x and 60x it (10 s, 1 min, 10 min by default)."""
    r = cfg.resolution
    keep = cfg.retention
    return [Tier(r, keep.fine), Tier(6 * r, keep.medium), Tier(60 * r, keep.coarse)]


class HistoryRecorder:
    def __init__(
        self,
        cfg: HistoryConfig,
        state_dir: str | Path,
        detector: Detector,
        routing: RoutingWatch | None,
        entities: Callable[[], Iterable[str]],
    ) -> None:
        self.cfg = cfg
        self.step = cfg.resolution
        self._steps = tuple(t.step for t in tiers(cfg))
        self._detector = detector
        self._routing = routing
        self._entities = entities
        self.sampler = Sampler(self.step)
        self.store: HistoryStore | None = None
        self._off: str | None = None
        self._failed_once = False
        if not cfg.enabled:
            self._off = "disabled in the configuration (history.enabled: false)"
            return
        try:
            self.store = HistoryStore(state_dir, tiers(cfg))
        except Exception as e:
            # Refused (a newer schema) or unusable: probing goes on without a history.
            self._off = f"{type(e).__name__}: {e}"
            log.error("history off: the database cannot be used", error=self._off)

    # --- HistorySource ------------------------------------------------------------------------

    @property
    def steps(self) -> tuple[int, ...]:
        return self._steps

    @property
    def off_reason(self) -> str | None:
        return self._off

    async def render(
        self, entity: str, since: float, until: float, step: int | None
    ) -> bytes | None:
        if self.store is None:
            raise HistoryError(f"no history: {self._off}")
        known = entity in set(self._entities())
        return await self.store.render_async(entity, since, until, step, known)

    def query(
        self, entity: str, since: float, until: float, step: int | None = None
    ) -> list[HistoryPoint]:
        """`HistoryStore.query` (sync, thread-safe: not on the loop); HistoryError when off."""
        if self.store is None:
            raise HistoryError(f"no history: {self._off}")
        return self.store.query(entity, since, until, step)

    # --- input (on the loop) ------------------------------------------------------------------

    def observe(self, entity: str, result: ProbeResult) -> None:
        """A probe result of one of `entity`'s targets (controls are not entities)."""
        if self.store is None:
            return
        answered = result.ok or result.reason in ANSWERED
        rtt = result.rtt if result.ok and result.kind is Kind.ICMP else None
        self.sampler.observe(entity, result.kind.value, result.target, answered, rtt)

    def on_change(self, c: Change) -> None:
        if isinstance(c, StateChanged):
            self.sampler.state_changed(c.entity, c.new)
        elif isinstance(c, VantageChanged):
            self.sampler.vantage_changed(c.healthy)

    # --- the step timer -----------------------------------------------------------------------

    def snapshot(self, now: float) -> Snapshot:
        det = self._detector
        counts: dict[str, tuple[dict[str, int], dict[str, int]]] = {}
        for entity, kind, by_state in det.target_counts():
            targets, up = counts.setdefault(entity, ({}, {}))
            targets[kind.value] = sum(by_state.values())
            up[kind.value] = by_state.get(TargetState.UP, 0)
        blocks: dict[str, dict[str, float]] = {}
        for entity, block, belief in det.block_beliefs():
            blocks.setdefault(entity, {})[block] = belief
        ents = []
        for name in self._entities():
            try:
                state = det.entity_state(name)
            except KeyError:  # configured by a reload the detector has not seen yet
                continue
            vis = self._routing.visibility(name, now) if self._routing is not None else {}
            targets, up = counts.get(name, ({}, {}))
            ents.append(
                EntitySnapshot(
                    name,
                    state,
                    targets,
                    up,
                    blocks.get(name, {}),
                    {p: r for p, r in vis.items() if r is not None},
                )
            )
        return Snapshot(ents, det.vantage_healthy)

    def sample(self, t: float, now: float) -> None:
        """Close the step that began at `t` and queue its points for writing."""
        if self.store is None:
            return
        try:
            points = self.sampler.close(t, self.snapshot(now))
        except Exception as e:
            log.error(
                "history: sampling failed, the step is dropped",
                error=f"{type(e).__name__}: {e}",
                exc_info=e if not self._failed_once else None,
            )
            self._failed_once = True
            self.store.dropped["error"] = self.store.dropped.get("error", 0) + 1
            return
        self.store.add(points)

    async def run(self) -> None:
        """Close a step at each step boundary (wall clock, aligned: 10 s steps end at :00,
        :10, ...). A late loop closes one longer step rather than inventing points."""
        if self.store is None:
            await asyncio.Event().wait()  # nothing to do; the supervisor still sees a task
        step = self.step
        begun = float(bucket(time.time(), step))
        while True:
            await asyncio.sleep(max(0.0, begun + step - time.time()))
            now = time.time()
            self.sample(begun, now)
            # Never the same step twice (a timer that fires a hair early), never a gap.
            begun = max(begun + step, float(bucket(now, step)))

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
