"""Wiring: probers, scheduler, detector, event log, BGP, metrics and the web app; signals, reload.

Data flow: the scheduler hands every probe result to `on_result` (metrics, detector) and each
target's round outcome to `on_round` (hysteresis); a one-second tick lets the detector judge
entities, asks it which extra probes it wants, retries pending event-log writes and refreshes
the gauges that are snapshots (block beliefs, event-store health). Every `Change` the detector
returns goes through `_apply`, the one place that turns decisions into metrics, log lines and
stored events.
"""

from __future__ import annotations

import asyncio
import gc
import ipaddress
import signal
import time
from collections.abc import Iterable
from typing import Any

import structlog
from aiohttp import web

from monitor import __version__, systemd
from monitor import config as config_mod
from monitor.bgp import DEFAULT_URL, RIPESTAT_SNAPSHOT_URL, RisLiveClient, Visibility
from monitor.config import Config
from monitor.detect.detector import Detector, EntitySpec
from monitor.detect.hysteresis import Hysteresis
from monitor.detect.model import (
    Change,
    EventClosed,
    EventKind,
    EventOpened,
    EventRecord,
    EventUpdated,
    StateChanged,
    TargetChanged,
    VantageChanged,
    iso_or_none,
)
from monitor.events import EventStore, render_csv, render_json
from monitor.metrics import CONTROLS, Metrics, configured_targets
from monitor.probes.base import IPAddress, Kind, ProbeResult, Target
from monitor.probes.traceroute import (
    MAX_HOPS,
    OwnerMap,
    UnreachableRouters,
    path_evidence,
    traceroute,
)
from monitor.scheduler import Scheduler
from monitor.web import make_app

log = structlog.get_logger("monitor.daemon")

TICK = 1.0  # seconds between detector ticks
# With fewer collector peers than this, a ratio means little (one peer's message at start-up).
BGP_MIN_PEERS = 3
BGP_MAX_LISTED = 32  # more-specifics listed per prefix in the `bgp` evidence
# Events whose opening (or escalation to) traces the path toward an affected address.
TRACE_KINDS = frozenset({EventKind.BLACKOUT, EventKind.PARTIAL, EventKind.ROUTING})
TRACE_PARALLEL = 4  # TTLs in flight at once


def build_probers() -> dict[Kind, Any]:
    """One prober per protocol; imported here so that `check-config` stays light."""
    from monitor.probes.dns import DnsProber
    from monitor.probes.http import HttpProber
    from monitor.probes.icmp import IcmpProber
    from monitor.probes.tcp import TcpProber

    return {
        Kind.ICMP: IcmpProber(),
        Kind.TCP: TcpProber(),
        Kind.HTTP: HttpProber(),
        Kind.DNS: DnsProber(),
    }


def schedule_entries(cfg: Config) -> Iterable[tuple[str, Target, bool]]:
    for entity, target in configured_targets(cfg):
        yield entity, target, entity == CONTROLS


def _specs(cfg: Config) -> list[EntitySpec]:
    return [EntitySpec.from_config(e) for e in cfg.entities]


def _prefix_owners(cfg: Config) -> dict[str, list[str]]:
    """Watched prefix -> the entities announcing it."""
    owners: dict[str, list[str]] = {}
    for e in cfg.entities:
        for p in e.prefixes:
            owners.setdefault(str(p), []).append(e.name)
    return owners


def _owner_map(cfg: Config) -> OwnerMap:
    """Hop address -> owner: the `upstreams` entries, then the entities' own prefixes."""
    entries = [(u.prefix, u.name, u.asn) for u in cfg.upstreams]
    entries += [(p, e.name, e.asn) for e in cfg.entities for p in e.prefixes]
    return OwnerMap(entries)


def _trace_target(
    cfg: Config, ev: EventRecord
) -> tuple[IPAddress, list[config_mod.IPNetwork]] | None:
    """An ICMP target of the event's entity in a block still down (the first that failed if
    it is one), and those blocks; for a routing event without a block down, one inside the
    entity's prefixes."""
    ent = cfg.entity(ev.entity)
    if ent is None or not ent.targets.icmp:
        return None
    blocks: list[config_mod.IPNetwork] = []
    for b in ev.evidence.get("blocks") or ():
        if isinstance(b, dict) and b.get("recovered") is None:
            try:
                blocks.append(ipaddress.ip_network(str(b.get("block"))))
            except ValueError:
                continue
    nets = blocks or list(ent.prefixes)
    addrs = [t.address for t in ent.targets.icmp]
    inside = [a for a in addrs if any(a in n for n in nets)] or addrs
    icmp = (ev.evidence.get("kinds") or {}).get("icmp")
    first = icmp.get("first_failed") if isinstance(icmp, dict) else None
    key = first.get("target") if isinstance(first, dict) else None
    return next((a for a in inside if str(a) == key), inside[0]), nets


class Daemon:
    """The running monitor. `start`/`stop` for tests; `run` for the CLI (signals included)."""

    def __init__(
        self, cfg: Config, config_path: str | None = None, metrics: Metrics | None = None
    ) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.metrics = metrics or Metrics()
        self.probers: dict[Kind, Any] = {}
        self.scheduler: Scheduler | None = None
        self.detector: Detector | None = None
        self.store: EventStore | None = None
        self.bgp: RisLiveClient | None = None
        self._bgp_task: asyncio.Task[None] | None = None
        self._bgp_owners: dict[str, list[str]] = {}
        self._owners = OwnerMap()
        self._unreachable = UnreachableRouters()  # routers answering unreachable to probes
        self._traces: dict[str, asyncio.Task[None]] = {}  # entity -> its traceroute in flight
        # Controls only: entity targets' hysteresis lives in the detector.
        self._control_hyst: dict[Target, Hysteresis] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._runner: web.AppRunner | None = None
        self._ready = False
        self._stop = asyncio.Event()
        self.listen_port: int | None = None
        self._freeze_at: float | None = None  # see _settle_heap

    # --- ResultSink (called by the scheduler) ---------------------------------------------------

    def on_result(self, entity: str, result: ProbeResult, control: bool) -> None:
        self.metrics.record(entity, result)
        if not result.ok:
            if not control:
                self._unreachable.observe(entity, result)
            log.debug(
                "probe failed",
                entity=entity,
                kind=result.kind.value,
                target=result.target.key,
                reason=result.reason,
                detail=result.detail,
            )
        if self.detector is not None:
            self._apply(self.detector.observe(None if control else entity, result, time.time()))

    def on_round(self, entity: str, target: Target, ok: bool, control: bool) -> None:
        if control:
            h = self._control_hyst.get(target)
            if h is not None and h.update(ok):
                self.metrics.set_target_up(entity, target, h.up)
            return
        if self.detector is not None:
            self._apply(self.detector.observe_round(entity, target, ok, time.time()))

    def on_skipped(self, entity: str, target: Target, late: bool) -> None:
        metric = self.metrics.probes_late if late else self.metrics.probes_skipped
        metric.labels(entity, target.kind.value).inc()

    # --- decisions -> metrics, log, event log -----------------------------------------------

    def _apply(self, changes: list[Change]) -> None:
        m = self.metrics
        for c in changes:
            if isinstance(c, TargetChanged):
                m.set_target_up(c.entity, c.target, c.up)
                log.info(
                    "target up" if c.up else "target down",
                    entity=c.entity,
                    kind=c.target.kind.value,
                    target=c.target.key,
                )
            elif isinstance(c, StateChanged):
                m.set_entity_state(c.entity, c.new.value)
                log.info(
                    "entity state",
                    entity=c.entity,
                    old=c.old.value,
                    new=c.new.value,
                    since=iso_or_none(c.since),
                )
            elif isinstance(c, VantageChanged):
                m.vantage_healthy.set(1 if c.healthy else 0)
                log.warning("vantage healthy" if c.healthy else "vantage offline: controls fail")
            elif isinstance(c, EventOpened | EventUpdated | EventClosed):
                ev = c.event
                if self.store is not None:
                    self.store.save(ev)
                if isinstance(c, EventOpened):
                    m.outages.labels(ev.entity, ev.kind.value).inc()
                    log.warning(
                        "outage opened",
                        entity=ev.entity,
                        kind=ev.kind.value,
                        id=ev.id,
                        start=iso_or_none(ev.start),
                    )
                    self._annotate_bgp(ev.entity)
                    self._trace_path(ev, f"opened as {ev.kind.value}")
                elif isinstance(c, EventUpdated) and c.escalated:
                    # An escalation is a new kind of outage (dns -> blackout): count it.
                    m.outages.labels(ev.entity, ev.kind.value).inc()
                    log.warning(
                        "outage escalated",
                        entity=ev.entity,
                        kind=ev.kind.value,
                        previous=c.previous_kind.value,
                        id=ev.id,
                    )
                    self._annotate_bgp(ev.entity)
                    self._trace_path(ev, f"escalated to {ev.kind.value}")
                elif isinstance(c, EventClosed):
                    log.info(
                        "outage closed",
                        entity=ev.entity,
                        kind=ev.kind.value,
                        id=ev.id,
                        start=iso_or_none(ev.start),
                        end=iso_or_none(ev.end),
                    )
                m.outage_active.labels(ev.entity).set(1 if ev.open else 0)
        if self.store is not None:
            m.event_store_healthy.set(1 if self.store.healthy else 0)

    # --- BGP --------------------------------------------------------------------------------

    def _on_bgp(self, prefix: str, ratio: float | None) -> None:
        client, det = self.bgp, self.detector
        if client is None or det is None:
            return
        now = time.time()
        episode = client.visibility.withdrawal(prefix)
        since = episode.first if episode is not None else None
        for entity in self._bgp_owners.get(prefix, []):
            if ratio is None:
                self.metrics.remove_bgp_visibility(entity, prefix)
            else:
                self.metrics.bgp_visibility.labels(entity, prefix).set(ratio)
            self._apply(det.observe_bgp(entity, prefix, ratio, now, since=since))
            if episode is not None:
                self._annotate_bgp(entity)

    def _annotate_bgp(self, entity: str) -> None:
        """Put the routing picture (withdrawal time, peers) into the entity's open event."""
        client, det = self.bgp, self.detector
        if client is None or det is None:
            return
        now = time.time()
        routing: dict[str, object] = {}
        for prefix, owners in self._bgp_owners.items():
            if entity not in owners:
                continue
            st = client.visibility.status(prefix, now)
            w = st.withdrawal
            # A peer "sees" the prefix while it has a route into it: the announced parts that
            # not every recent peer sees (one upstream's /24s) are listed on their own.
            missing = [
                v
                for v in st.detail.values()
                if v.prefix != prefix and v.ratio is not None and v.ratio < 1.0
            ]
            routing[prefix] = {
                "visibility_ratio": st.ratio,
                "peers_seeing": st.seeing,
                "peers_recent": st.recent,
                "more_specifics_missing": {
                    v.prefix: {"visibility_ratio": v.ratio, "peers_seeing": v.seeing}
                    for v in missing[:BGP_MAX_LISTED]
                },
                "withdrawal": None
                if w is None
                else {
                    "first": iso_or_none(w.first),
                    "confirmed": iso_or_none(w.time),
                    "peers_withdrawn": w.peers,
                    "ratio": w.ratio,
                },
            }
        if routing:
            self._apply(det.annotate(entity, "bgp", routing))

    async def _start_bgp(self, cfg: Config) -> None:
        owners = _prefix_owners(cfg)
        if not cfg.bgp.enabled or not owners:
            return
        self._bgp_owners = owners
        vis = Visibility(owners, min_peers=BGP_MIN_PEERS, threshold=cfg.detection.bgp_lost_ratio)
        # The RIPEstat snapshot only makes sense next to the real RIS Live.
        snapshot = RIPESTAT_SNAPSHOT_URL if cfg.bgp.ris_live_url == DEFAULT_URL else None
        self.bgp = RisLiveClient(
            vis, cfg.bgp.ris_live_url, on_change=self._on_bgp, snapshot_url=snapshot
        )
        self._bgp_task = asyncio.create_task(self.bgp.run(), name="ris-live")
        self.metrics.bind_bgp(self.bgp)

    async def _stop_bgp(self) -> None:
        if self.bgp is not None:
            await self.bgp.close()
        if self._bgp_task is not None:
            self._bgp_task.cancel()
            await asyncio.gather(self._bgp_task, return_exceptions=True)
        self.bgp, self._bgp_task = None, None
        self.metrics.bind_bgp(None)

    # --- path localisation -------------------------------------------------------------------

    def _trace_path(self, ev: EventRecord, trigger: str) -> None:
        """Trace the path toward an affected address of the event, in the background (at most
        one traceroute per entity in flight); the result goes into its evidence as `path`."""
        if ev.kind not in TRACE_KINDS or ev.entity in self._traces:
            return
        chosen = _trace_target(self.cfg, ev)
        if chosen is None or Kind.ICMP not in self.probers or self.scheduler is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # driven synchronously (tests): nowhere to run it
            return
        entity, (address, nets) = ev.entity, chosen
        # What the ordinary probes saw counts from the event's start, at most two rounds back.
        since = max(ev.start, time.time() - 2 * self.cfg.probing.interval)
        task = loop.create_task(self._run_trace(entity, ev.id, address, nets, since, trigger))
        self._traces[entity] = task

        def done(t: asyncio.Task[None]) -> None:
            if self._traces.get(entity) is t:
                del self._traces[entity]

        task.add_done_callback(done)

    async def _run_trace(
        self,
        entity: str,
        event_id: str,
        address: IPAddress,
        nets: list[config_mod.IPNetwork],
        since: float,
        trigger: str,
    ) -> None:
        assert self.scheduler is not None
        log.info("traceroute", entity=entity, target=str(address), trigger=trigger)
        try:
            trace = await traceroute(
                self.probers[Kind.ICMP],
                address,
                max_hops=MAX_HOPS,
                timeout=self.cfg.probing.timeout,
                parallel=TRACE_PARALLEL,
                acquire=self.scheduler.acquire,
            )
        except Exception:
            log.exception("traceroute failed", entity=entity, target=str(address))
            return
        seen = self._unreachable.sightings(entity, nets, since)
        doc = path_evidence(trace, self._owners, seen)
        doc["trigger"] = trigger
        log.info("traceroute done", entity=entity, target=str(address), summary=doc["summary"])
        det = self.detector
        if det is None or not any(r.id == event_id for r in det.open_events()):
            return  # that event is over: the path belongs to it only
        self._apply(det.annotate(entity, "path", doc))

    async def _stop_traces(self) -> None:
        tasks = list(self._traces.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # --- lifecycle ----------------------------------------------------------------------------

    def _configure(self, cfg: Config) -> None:
        """Make `cfg` the running configuration (at start and on a good reload)."""
        d = cfg.detection
        self._control_hyst = {
            t: self._control_hyst.get(t) or Hysteresis(d.down_after, d.up_after)
            for t in cfg.controls.all()
        }
        for h in self._control_hyst.values():
            h.down_after, h.up_after = d.down_after, d.up_after
        self.metrics.apply_config(cfg)
        self._owners = _owner_map(cfg)
        self._unreachable.retain(e.name for e in cfg.entities)
        p = cfg.probing
        assert self.scheduler is not None
        self.scheduler.set_targets(
            schedule_entries(cfg), p.interval, p.timeout, p.max_rate, p.reprobes, p.splay
        )
        self.cfg = cfg
        self.metrics.config_reload_ok.set(1)
        self.metrics.config_reload_time.set(time.time())

    async def start(self) -> None:
        cfg = self.cfg
        now = time.time()
        self.store = EventStore(cfg.state_dir)
        self.detector = Detector(cfg.detection, _specs(cfg), list(cfg.controls.all()), now=now)
        self.probers = build_probers()
        icmp = self.probers[Kind.ICMP]
        self.metrics.bind_icmp_ignored(lambda: dict(icmp.ignored))
        p = cfg.probing
        self.scheduler = Scheduler(
            self.probers, self, p.interval, p.timeout, p.max_rate, p.reprobes, p.splay
        )
        self._configure(cfg)
        resumed = self.store.open_events()
        self._apply(self.detector.resume(resumed, now))
        for ev in self.detector.open_events():
            self.metrics.outage_active.labels(ev.entity).set(1 if ev.open else 0)
        if resumed:
            log.warning("resumed open outage events", ids=[e.id for e in resumed])
        app = make_app(self.metrics, lambda: self._ready, api=self)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, cfg.listen_host, cfg.listen_port)
        await site.start()
        server = getattr(site, "_server", None)
        if server is not None and server.sockets:
            self.listen_port = server.sockets[0].getsockname()[1]
        self._settle_heap(now)
        self._tasks.append(asyncio.create_task(self.scheduler.run(), name="scheduler"))
        self._tasks.append(asyncio.create_task(self._ticker(), name="tick"))
        await self._start_bgp(cfg)
        wd = systemd.watchdog_interval()
        if wd:
            self._tasks.append(asyncio.create_task(self._watchdog(wd), name="watchdog"))
        self._ready = True
        log.info(
            "started",
            version=__version__,
            config=cfg.source,
            listen=f"{cfg.listen_host}:{self.listen_port}",
            entities=len(cfg.entities),
            targets=sum(len(e.targets) for e in cfg.entities),
            controls=len(cfg.controls),
            state_dir=str(cfg.state_dir),
        )
        systemd.notify("READY=1\nSTATUS=probing")

    async def _ticker(self) -> None:
        while True:
            # A time-scaled configuration (short interval) ticks proportionally faster.
            await asyncio.sleep(min(TICK, self.cfg.probing.interval / 30))
            self.tick(time.time())

    def _settle_heap(self, now: float) -> None:
        """Collect once, then freeze what is alive, and again at every tick of the next round.

        Why: the state kept per target and per address never dies, and at 100,000 targets it is
        ~0.5 M objects that every full garbage collection walks, on the event loop (pauses of
        160-300 ms in bench/bench_scale.py). Full collections are set off by growth, i.e. at
        start and during the first round, when the ICMP engine and the blocks learn each
        address; freezing once after that round still left collections of up to 150 ms inside
        it, so the round's growth is frozen as it comes (gc.freeze() is O(1)). Frozen objects
        are skipped by the collector; refcounting still frees what is dropped, and the cost is
        that a reference cycle made unreachable during that one round is never collected.
        The collection here, at start or on a reload, is the one pause we accept."""
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        p = self.cfg.probing
        self._freeze_at = now + p.interval + (p.reprobes + 1) * p.timeout

    def tick(self, now: float) -> None:
        if self._freeze_at is not None:
            gc.freeze()  # the first round's per-address state (no collection: no pause)
            if now >= self._freeze_at:
                self._freeze_at = None
        det, sched, store = self.detector, self.scheduler, self.store
        assert det is not None and sched is not None and store is not None
        self._apply(det.tick(now))
        for entity, target in det.wanted_probes(now):
            if not sched.request_extra(entity, target):
                break
        if store.pending:
            store.flush()
        self.metrics.event_store_healthy.set(1 if store.healthy else 0)
        self.metrics.set_block_beliefs(det.block_beliefs())

    async def _watchdog(self, every: float) -> None:
        while True:
            systemd.notify("WATCHDOG=1")
            await asyncio.sleep(every)

    def reload(self) -> bool:
        """Re-read the configuration file; a bad one is rejected and the old one kept."""
        if self.config_path is None:
            return False
        systemd.notify("RELOADING=1")
        try:
            new = config_mod.load(self.config_path)
        except config_mod.ConfigError as e:
            self.metrics.config_reload_ok.set(0)
            log.error("reload rejected, keeping the running configuration", error=str(e))
            systemd.notify("READY=1")
            return False
        if (new.listen_host, new.listen_port) != (self.cfg.listen_host, self.cfg.listen_port):
            log.warning("listen address changes need a restart; keeping the old one")
        if new.state_dir != self.cfg.state_dir:
            log.warning("state_dir changes need a restart; keeping the old one")
        old_bgp = (self.cfg.bgp, _prefix_owners(self.cfg))
        self._configure(new)
        if self.detector is not None:
            self._apply(
                self.detector.reconfigure(
                    new.detection, _specs(new), list(new.controls.all()), time.time()
                )
            )
        self._settle_heap(time.time())
        if (new.bgp, _prefix_owners(new)) != old_bgp:
            asyncio.get_running_loop().create_task(self._restart_bgp(new))
        log.info("reloaded", config=new.source)
        systemd.notify("READY=1")
        return True

    async def _restart_bgp(self, cfg: Config) -> None:
        await self._stop_bgp()
        await self._start_bgp(cfg)

    def request_stop(self) -> None:
        self._stop.set()

    async def stop(self) -> None:
        systemd.notify("STOPPING=1")
        self._ready = False
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self._stop_traces()
        await self._stop_bgp()
        if self.scheduler is not None:
            await self.scheduler.close()
        for prober in self.probers.values():
            await prober.close()
        if self._runner is not None:
            await self._runner.cleanup()
        if self.store is not None:
            # Open events stay open in the log and are resumed at the next start.
            self.store.flush()
            self.store.close()
        log.info("stopped")

    async def run(self) -> None:
        """Start, then serve until SIGTERM/SIGINT; SIGHUP reloads."""
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.request_stop)
        loop.add_signal_handler(signal.SIGINT, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        await self.start()
        try:
            await self._stop.wait()
        finally:
            await self.stop()

    # --- the API (web.Api) ------------------------------------------------------------------

    def status(self) -> dict[str, object]:
        assert self.detector is not None
        doc: dict[str, object] = dict(self.detector.status(time.time()))
        if self.bgp is not None:
            now = time.time()
            for ent in doc.get("entities", []):  # type: ignore[attr-defined]
                routing = {}
                for prefix, owners in self._bgp_owners.items():
                    if ent["name"] in owners:
                        routing[prefix] = self.bgp.visibility.ratio(prefix, now)
                if routing:
                    ent["signals"] = dict(ent["signals"], bgp_visibility=routing)
            doc["bgp"] = {"connected": self.bgp.connected, "messages": self.bgp.messages}
        if self.store is not None:
            doc["event_log"] = {
                "healthy": self.store.healthy,
                "pending": self.store.pending,
                "error": self.store.last_error,
            }
        return doc

    def outages(
        self, since: str | None, until: str | None, entity: str | None, fmt: str
    ) -> tuple[str, str]:
        assert self.store is not None
        events = self.store.query(since=since, until=until, entity=entity, now=time.time())
        if fmt == "csv":
            return "text/csv", render_csv(events)
        return "application/json", render_json(events)
