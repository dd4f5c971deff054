"""Path localisation on outages (a consumer of the daemon's fan-out): when an event opens or
escalates to a network kind, trace the path toward one of its affected addresses in the
background, over the ICMP engine and inside the probing budget, and put the result into the
event's evidence as `path` (see `monitor.detect.path` for what the evidence says)."""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Awaitable, Callable, Iterable

import structlog

from monitor.config import Config, IPNetwork
from monitor.detect.detector import Detector
from monitor.detect.model import Change, EventKind, EventOpened, EventRecord, EventUpdated
from monitor.detect.path import OwnerMap, UnreachableRouters, path_evidence
from monitor.probes.base import IPAddress, ProbeResult
from monitor.probes.traceroute import MAX_HOPS, TracerouteEngine, traceroute

log = structlog.get_logger("monitor.pathtrace")

# Events whose opening (or escalation to) traces the path toward an affected address.
TRACE_KINDS = frozenset({EventKind.BLACKOUT, EventKind.PARTIAL, EventKind.ROUTING})
TRACE_PARALLEL = 4  # TTLs in flight at once


def owner_map(cfg: Config) -> OwnerMap:
    """Hop address -> owner: the `upstreams` entries, then the entities' own prefixes."""
    entries = [(u.prefix, u.name, u.asn) for u in cfg.upstreams]
    entries += [(p, e.name, e.asn) for e in cfg.entities for p in e.prefixes]
    return OwnerMap(entries)


def trace_target(cfg: Config, ev: EventRecord) -> tuple[IPAddress, list[IPNetwork]] | None:
    """An ICMP target of the event's entity in a block still down (the first that failed if
    it is one), and those blocks; for a routing event without a block down, one inside the
    entity's prefixes."""
    ent = cfg.entity(ev.entity)
    if ent is None or not ent.targets.icmp:
        return None
    blocks: list[IPNetwork] = []
    for b in ev.evidence.blocks:
        if b.recovered is None:
            try:
                blocks.append(ipaddress.ip_network(b.block))
            except ValueError:
                continue
    nets = blocks or list(ent.prefixes)
    addrs = [t.address for t in ent.targets.icmp]
    inside = [a for a in addrs if any(a in n for n in nets)] or addrs
    icmp = ev.evidence.kinds.get("icmp")
    first = icmp.first_failed if icmp is not None else None
    key = first.target if first is not None else None
    return next((a for a in inside if str(a) == key), inside[0]), nets


class PathTracer:
    """At most one traceroute per entity in flight; the result annotates the event only if
    that event is still open when the trace ends."""

    def __init__(
        self,
        engine: TracerouteEngine,
        acquire: Callable[[], Awaitable[None]],
        detector: Detector,
        publish: Callable[[Iterable[Change]], None],
        cfg: Config,
    ) -> None:
        self._engine = engine
        self._acquire = acquire
        self._detector = detector
        self._publish = publish
        self._unreachable = UnreachableRouters()  # routers answering unreachable to probes
        self._traces: dict[str, asyncio.Task[None]] = {}
        self.cfg = cfg
        self._owners = owner_map(cfg)

    def configure(self, cfg: Config) -> None:
        self.cfg = cfg
        self._owners = owner_map(cfg)
        self._unreachable.retain(e.name for e in cfg.entities)

    def observe(self, entity: str, result: ProbeResult) -> None:
        """A failed probe of an entity (the passive half: who answered unreachable)."""
        self._unreachable.observe(entity, result)

    def on_change(self, c: Change) -> None:
        if isinstance(c, EventOpened):
            self.trace(c.event, f"opened as {c.event.kind.value}")
        elif isinstance(c, EventUpdated) and c.escalated:
            self.trace(c.event, f"escalated to {c.event.kind.value}")

    def trace(self, ev: EventRecord, trigger: str) -> None:
        if ev.kind not in TRACE_KINDS or ev.entity in self._traces:
            return
        chosen = trace_target(self.cfg, ev)
        if chosen is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # driven synchronously (tests): nowhere to run it
            return
        entity, (address, nets) = ev.entity, chosen
        # What the ordinary probes saw counts from the event's start, at most two rounds back.
        since = max(ev.start, time.time() - 2 * self.cfg.probing.interval)
        task = loop.create_task(self._run(entity, ev.id, address, nets, since, trigger))
        self._traces[entity] = task

        def done(t: asyncio.Task[None]) -> None:
            if self._traces.get(entity) is t:
                del self._traces[entity]

        task.add_done_callback(done)

    async def _run(
        self,
        entity: str,
        event_id: str,
        address: IPAddress,
        nets: list[IPNetwork],
        since: float,
        trigger: str,
    ) -> None:
        log.info("traceroute", entity=entity, target=str(address), trigger=trigger)
        try:
            trace = await traceroute(
                self._engine,
                address,
                max_hops=MAX_HOPS,
                timeout=self.cfg.probing.timeout,
                parallel=TRACE_PARALLEL,
                acquire=self._acquire,
            )
        except Exception:
            # Not a daemon task: a failed trace costs this event its path evidence, no more.
            log.exception("traceroute failed", entity=entity, target=str(address))
            return
        seen = self._unreachable.sightings(entity, nets, since)
        doc = path_evidence(trace, self._owners, seen, trigger=trigger)
        log.info("traceroute done", entity=entity, target=str(address), summary=doc.summary)
        det = self._detector
        if not any(r.id == event_id for r in det.open_events()):
            return  # that event is over: the path belongs to it only
        self._publish(det.annotate(entity, path=doc))

    async def close(self) -> None:
        tasks = list(self._traces.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
