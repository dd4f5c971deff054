"""Wiring: probers, scheduler, detector, event log, BGP, metrics and the web app; signals, reload.

Data flow: the scheduler hands every probe result to `on_result` (metrics, detector, the path
tracer's passive half) and each target's round outcome to `on_round` (hysteresis); a tick lets
the detector judge entities, asks it which extra probes it wants and retries pending event-log
writes. Every `Change` the detector returns is published on one fan-out (`monitor.fanout`) to
its consumers: metrics, the event log, the log lines, the routing annotator and the path
tracer. The daemon only wires them.

Failures are contained and visible, as in Prometheus' run groups: the daemon's own tasks
(scheduler, ticker, watchdog, RIS Live) are supervised; when one dies the daemon is no longer
ready (`/readyz` 503), stops sending `WATCHDOG=1`, stops and exits non-zero so that systemd
restarts it. A reload catches every error, keeps the running configuration and says so.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import time
from collections.abc import Coroutine, Iterable
from typing import Any

import structlog
from aiohttp import web

from monitor import __version__, compat, systemd
from monitor import config as config_mod
from monitor.allocator import TRIM_EVERY, Allocator
from monitor.bgp import RisLiveClient
from monitor.config import CONTROLS, Config, configured_targets
from monitor.detect.detector import Detector, EntitySpec
from monitor.detect.hysteresis import Hysteresis, TargetState, count_states
from monitor.detect.model import (
    EventClosed,
    EventOpened,
    EventUpdated,
    StateChanged,
    VantageChanged,
)
from monitor.discovery.service import Discovery
from monitor.discovery.store import CensusStore
from monitor.events import EventStore
from monitor.fanout import FanOut
from monitor.history import HistoryRecorder
from monitor.journal import log_change
from monitor.metrics import Metrics
from monitor.notify.service import Notifier
from monitor.pages import PageOptions
from monitor.pathtrace import PathTracer
from monitor.probes import build_probers
from monitor.probes.base import Kind, Prober, ProbeResult, Target
from monitor.probes.tcp import TcpProber
from monitor.routing import RoutingWatch
from monitor.scheduler import Scheduler
from monitor.web import make_app

log = structlog.get_logger("monitor.daemon")

TICK = 1.0  # seconds between detector ticks
# The watchdog is fed only while ticks happen: a wedged ticker must not look alive.
TICK_STALE = 10.0


def schedule_entries(cfg: Config) -> Iterable[tuple[str, Target, bool]]:
    for entity, target in configured_targets(cfg):
        yield entity, target, entity == CONTROLS


def _specs(cfg: Config) -> list[EntitySpec]:
    return [EntitySpec.from_config(e) for e in cfg.entities]


class DaemonFailed(RuntimeError):
    """A task of the daemon died: it stopped, and the process must exit non-zero."""


class Daemon:
    """The running monitor. `start`/`stop` for tests; `run` for the CLI (signals included)."""

    def __init__(
        self, cfg: Config, config_path: str | None = None, metrics: Metrics | None = None
    ) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.metrics = metrics or Metrics()
        self.probers: dict[Kind, Prober] = {}  # build_probers() at start
        self.scheduler: Scheduler | None = None
        self.detector: Detector | None = None
        self.store: EventStore | None = None
        self.changes = FanOut(on_error=lambda name: self.metrics.consumer_errors.labels(name).inc())
        self.routing: RoutingWatch | None = None
        self.tracer: PathTracer | None = None
        self.discovery: Discovery | None = None  # censuses and block sampling (issue 12)
        self.history: HistoryRecorder | None = None  # the embedded history (monitor/history)
        self.notifier: Notifier | None = None  # notifications (monitor/notify)
        # Controls only: entity targets' hysteresis lives in the detector.
        self._control_hyst: dict[Target, Hysteresis] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.allocator = Allocator()
        self._runner: web.AppRunner | None = None
        self._ready = False
        self._stopping = False
        self._stop = asyncio.Event()
        self.failed: str | None = None  # what killed the daemon, when a task died
        self._last_tick = time.monotonic()
        self.listen_port: int | None = None
        self._freeze_at: float | None = None  # see _settle_heap

    @property
    def bgp(self) -> RisLiveClient | None:
        """The RIS Live client while BGP is on (tests and tools read its visibility)."""
        return self.routing.client if self.routing is not None else None

    # --- ResultSink (called by the scheduler) ---------------------------------------------------

    def on_result(self, entity: str, result: ProbeResult, control: bool) -> None:
        self.metrics.record(entity, result)
        if self.history is not None and not control:
            self.history.observe(entity, result)
        if not result.ok:
            if not control and self.tracer is not None:
                self.tracer.observe(entity, result)
            log.debug(
                "probe failed",
                entity=entity,
                kind=result.kind.value,
                target=result.target.key,
                reason=result.reason,
                detail=result.detail,
            )
        if self.detector is not None:
            changes = self.detector.observe(None if control else entity, result, time.time())
            if changes:
                self.changes.publish(changes)

    def on_round(self, entity: str, target: Target, ok: bool, control: bool) -> None:
        if control:
            # Like entity targets: never answered (target_up 0) until the first answer, which
            # makes it up at once; the `targets` gauge counts them at the next tick.
            h = self._control_hyst.get(target)
            if h is not None and h.update(ok):
                self.metrics.set_target_up(entity, target, h.up)
            return
        if self.detector is not None:
            changes = self.detector.observe_round(entity, target, ok, time.time())
            if changes:
                self.changes.publish(changes)

    def on_skipped(self, entity: str, target: Target, late: bool) -> None:
        metric = self.metrics.probes_late if late else self.metrics.probes_skipped
        metric.labels(entity, target.kind.value).inc()

    def on_late(
        self, entity: str, target: Target, started: float, rtt: float, control: bool
    ) -> None:
        """A timed-out probe answered after all (scheduler.LateSink): life for its block."""
        if self.detector is not None and not control:
            changes = self.detector.observe_late(entity, target, started, rtt, time.time())
            if changes:
                self.changes.publish(changes)

    # --- wiring of the consumers ----------------------------------------------------------

    def _wire(self) -> None:
        """Subscribe the consumers of the detector's changes (the order is the delivery order:
        the event log first, so that what is logged and counted is also stored)."""
        assert self.store is not None and self.routing is not None and self.tracer is not None
        store, fan = self.store, self.changes
        events = (EventOpened, EventUpdated, EventClosed)
        # Never raises for the disk: kept and retried (events.py).
        fan.subscribe("event_log", lambda c: store.apply((c,)), *events)
        fan.subscribe("metrics", self.metrics.on_change)
        fan.subscribe("log", log_change)
        fan.subscribe("routing", self.routing.on_change, EventOpened, EventUpdated)
        fan.subscribe("path", self.tracer.on_change, EventOpened, EventUpdated)
        if self.history is not None:
            fan.subscribe("history", self.history.on_change, StateChanged, VantageChanged)
        if self.notifier is not None:
            fan.subscribe("notify", self.notifier.on_change, *events, VantageChanged)

    # --- supervision --------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Start one of the daemon's own tasks: if it ends while the daemon runs, the daemon
        stops (see the module docstring)."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.append(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if task in self._tasks:
            self._tasks.remove(task)
        if self._stopping:
            return
        if task.cancelled():
            if self.routing is not None and self.routing.owns(task):
                return
            why: BaseException | None = asyncio.CancelledError()
        else:
            why = task.exception()
        if why is None and self.routing is not None and not self.routing.owns(task):
            why = RuntimeError("returned")
        if why is None:
            return  # a RIS Live client closed by a BGP restart
        self.fail(f"task {task.get_name()} died: {type(why).__name__}: {why}", why)

    def fail(self, reason: str, exc: BaseException | None = None) -> None:
        """Stop being ready and stop the daemon; `run` then raises DaemonFailed."""
        if self.failed is None:
            self.failed = reason
            log.critical("daemon failed, stopping", reason=reason, exc_info=exc)
        self._ready = False
        systemd.notify(f"STATUS=failed: {reason}")
        self._stop.set()

    @property
    def ready(self) -> bool:
        return self._ready and self.failed is None

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
        if self.notifier is not None:
            self.notifier.configure(cfg)
        if self.tracer is not None:
            self.tracer.configure(cfg)
        assert self.scheduler is not None
        self.scheduler.set_targets(schedule_entries(cfg), cfg.probing)
        self.cfg = cfg
        self.metrics.config_reload_ok.set(1)
        self.metrics.config_reload_time.set(time.time())

    async def _acquire_resend(self, deadline: float, send_by: float) -> bool:
        """A TCP/HTTP SYN resend's send of the budget its probe came from (the entities', or the
        controls' for a control probe: Scheduler.acquire_resend; monitor.probes.tcp.SynGuard)."""
        sched = self.scheduler
        return sched is not None and await sched.acquire_resend(deadline, send_by)

    async def start(self) -> None:
        cfg = self.cfg
        now = time.time()
        arenas = self.allocator.tune()  # before the executor's threads take arenas
        mmap_threshold = self.allocator.fix_mmap_threshold()
        transport_fix = compat.release_transport_cycles()
        self.store = EventStore(cfg.state_dir)
        self.detector = Detector(cfg.detection, _specs(cfg), list(cfg.controls.all()), now=now)
        # SYN resends take sends of the scheduler's budgets (made just below; see _acquire_resend).
        probers = self.probers = build_probers(self._acquire_resend)
        icmp = probers.icmp
        self.metrics.bind_icmp_ignored(lambda: dict(icmp.ignored))
        self.scheduler = Scheduler(self.probers, self, cfg.probing)
        timeouts = self.scheduler.timeouts
        self.metrics.bind_probe_timeouts(lambda: {str(k): v for k, v in timeouts.given().items()})
        publish = self.changes.publish
        self.routing = RoutingWatch(self.metrics, self.detector, publish, self._spawn)
        self.tracer = PathTracer(icmp, self.scheduler.acquire, self.detector, publish, cfg)
        self.history = HistoryRecorder(
            cfg.history, cfg.state_dir, self.detector, self.routing, self._entity_names
        )
        self.metrics.bind_history(self.history.store)
        # Reader threads and their connections from the start, not when reads first overlap.
        self.store.prestart_readers()
        if self.history.store is not None:
            self.history.store.prestart_readers()
        self.notifier = Notifier(cfg, self.metrics)
        self._wire()
        self._configure(cfg)
        census = CensusStore(cfg.state_dir)
        # A census's TCP probes: their SYN resends take the background share, as their SYNs.
        tcp = TcpProber(self.scheduler.acquire_background_resend)
        self.discovery = Discovery(
            cfg, census, self.detector, self.scheduler, icmp, tcp, self.metrics, publish
        )
        self.discovery.configure(cfg)  # sampled blocks known before open events are resumed
        # The censuses' addresses get their ICMP table entries now, not at the process's first
        # census (a step of RSS hours into the run; see IcmpProber.prepare).
        prepared = icmp.prepare(self.discovery.census_addresses())
        resumed = self.store.open_events(e.name for e in cfg.entities)
        continued = self.detector.resume(resumed, now)
        # The notifier learns what it already told before the resumed events' updates reach
        # it, so that they are not taken for news.
        self.notifier.resume(self.detector.open_events())
        publish(continued)
        for ev in self.detector.open_events():
            self.metrics.outage_active.labels(ev.entity).set(1 if ev.open else 0)
        if resumed:
            log.warning("resumed open outage events", ids=[e.id for e in resumed])
        pages = PageOptions(
            history=lambda: self.history,  # the event page's chart and the status timelines
            grafana_url=lambda: self.cfg.grafana_url,
        )
        app = make_app(
            self.metrics,
            lambda: self.ready,
            api=self,
            events=self.store,
            pages=pages,
            history=self.history,
            config=lambda: self.cfg,  # read per request: a reload takes effect at once
        )
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, cfg.listen_host, cfg.listen_port)
        await site.start()
        server = getattr(site, "_server", None)
        if server is not None and server.sockets:
            self.listen_port = server.sockets[0].getsockname()[1]
        self._settle_heap(now)
        self._spawn(self.scheduler.run(), "scheduler")
        self._spawn(self._ticker(), "tick")
        self._spawn(self.discovery.run(), "discovery")
        self._spawn(self.history.run(), "history")
        self._spawn(self.notifier.run(), "notify")
        if self.allocator.glibc:
            self._spawn(self._trim_heap(), "malloc-trim")
        await self.routing.start(cfg)
        wd = systemd.watchdog_interval()
        if wd:
            self._spawn(self._watchdog(wd), "watchdog")
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
            malloc_arenas=arenas,
            malloc_mmap_threshold=mmap_threshold,
            transport_cycle_fix=transport_fix,
            census_addresses_prepared=prepared,
        )
        systemd.notify("READY=1\nSTATUS=probing")

    def tick_period(self) -> float:
        # A time-scaled configuration (short interval) ticks proportionally faster.
        return min(TICK, self.cfg.probing.interval / 30)

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.tick_period())
            self.tick(time.time())
            self._last_tick = time.monotonic()

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
        self.changes.publish(det.tick(now))
        for entity, target in det.wanted_probes(now):
            if not sched.request_extra(entity, target):
                break
        if store.pending:
            store.flush()
        self.metrics.event_store_healthy.set(1 if store.healthy else 0)
        self.metrics.event_log_pending.set(store.pending)
        self.metrics.event_log_corrupt_rows.set(store.corrupt_rows)
        self.metrics.set_block_beliefs(det.block_beliefs())
        self.metrics.set_target_counts([*det.target_counts(), *self._control_counts()])

    def _control_counts(self) -> list[tuple[str, Kind, dict[TargetState, int]]]:
        by_kind: dict[Kind, list[TargetState]] = {}
        for t, h in self._control_hyst.items():
            by_kind.setdefault(t.kind, []).append(h.state)
        return [(CONTROLS, kind, count_states(states)) for kind, states in by_kind.items()]

    async def _trim_heap(self) -> None:
        # Free pages inside glibc's arenas go back to the kernel only when asked (see
        # monitor/allocator.py: the soak's RSS growth was that free space).
        while True:
            await asyncio.sleep(TRIM_EVERY)
            released = self.allocator.trim()
            a = self.allocator
            log.debug("malloc_trim", released=released, trims=a.trims, seconds_all=a.trim_seconds)

    async def _watchdog(self, every: float) -> None:
        while True:
            # Fed only while the daemon is healthy and judging: a dead task or a ticker that
            # no longer ticks lets systemd's watchdog restart us.
            stale = time.monotonic() - self._last_tick > max(TICK_STALE, 5 * self.tick_period())
            if self.failed is None and not stale:
                systemd.notify("WATCHDOG=1")
            await asyncio.sleep(every)

    def reload(self) -> bool:
        """Re-read the configuration file; a bad one is rejected and the old one kept. Never
        raises: whatever goes wrong, the running configuration stays and systemd hears READY."""
        if self.config_path is None:
            return False
        systemd.notify("RELOADING=1")
        old = self.cfg
        try:
            new = config_mod.load(self.config_path)
        except Exception as e:
            self.metrics.config_reload_ok.set(0)
            error = str(e) if isinstance(e, config_mod.ConfigError) else f"{type(e).__name__}: {e}"
            log.error("reload rejected, keeping the running configuration", error=error)
            systemd.notify("READY=1")
            return False
        try:
            self._apply_config(new)
        except Exception as e:
            log.exception("reload failed, restoring the running configuration", error=str(e))
            try:
                self._apply_config(old)
            except Exception:
                self.fail("reload failed and the old configuration could not be restored")
                return False
            self.metrics.config_reload_ok.set(0)
            systemd.notify("READY=1")
            return False
        log.info("reloaded", config=new.source)
        systemd.notify("READY=1")
        return True

    def _apply_config(self, new: Config) -> None:
        if (new.listen_host, new.listen_port) != (self.cfg.listen_host, self.cfg.listen_port):
            log.warning("listen address changes need a restart; keeping the old one")
        if new.state_dir != self.cfg.state_dir:
            log.warning("state_dir changes need a restart; keeping the old one")
        if new.history != self.cfg.history:
            log.warning("history changes need a restart; keeping the old one")
        self._configure(new)
        if self.detector is not None:
            self.changes.publish(
                self.detector.reconfigure(
                    new.detection, _specs(new), list(new.controls.all()), time.time()
                )
            )
        if self.discovery is not None:
            self.discovery.configure(new)
        self._settle_heap(time.time())
        if self.routing is not None and self.routing.needs_restart(new):
            asyncio.get_running_loop().create_task(self.routing.restart(new))

    def _entity_names(self) -> list[str]:
        return [e.name for e in self.cfg.entities]

    def request_stop(self) -> None:
        self._stop.set()

    async def stop(self) -> None:
        systemd.notify("STOPPING=1")
        self._ready = False
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.discovery is not None:
            self.discovery.close()
        if self.tracer is not None:
            await self.tracer.close()
        if self.routing is not None:
            await self.routing.stop()
        if self.scheduler is not None:
            await self.scheduler.close()
        for prober in self.probers.values():
            await prober.close()
        if self._runner is not None:
            await self._runner.cleanup()
        if self.history is not None:
            self.history.close()  # what is queued is written
        if self.notifier is not None:
            await self.notifier.close()  # the outbox keeps what is not delivered
        if self.store is not None:
            # Open events stay open in the log and are resumed at the next start. What the
            # disk refuses now goes to a spool file, merged at the next start (events.py).
            closed = self.store.close()
            if closed.pending:
                log.error(
                    "event log: events not in the database at stop",
                    spooled=closed.spooled,
                    spool=None if closed.spool is None else str(closed.spool),
                    lost=closed.lost,
                )
        log.info("stopped")

    async def run(self) -> None:
        """Start, then serve until SIGTERM/SIGINT; SIGHUP reloads. Raises DaemonFailed when
        one of the daemon's tasks died (after stopping cleanly)."""
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.request_stop)
        loop.add_signal_handler(signal.SIGINT, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        await self.start()
        try:
            await self._stop.wait()
        finally:
            await self.stop()
        if self.failed is not None:
            raise DaemonFailed(self.failed)

    # --- the API (web.Api) ------------------------------------------------------------------

    def status(self) -> dict[str, object]:
        assert self.detector is not None
        doc: dict[str, object] = dict(self.detector.status(time.time()))
        health = self.routing.health() if self.routing is not None else None
        if self.routing is not None and health is not None:
            now = time.time()
            for ent in doc.get("entities", []):  # type: ignore[attr-defined]
                routing = self.routing.visibility(ent["name"], now)
                if routing:
                    ent["signals"] = dict(ent["signals"], bgp_visibility=routing)
            doc["bgp"] = health
        if self.discovery is not None:
            doc["discovery"] = self.discovery.status()
        if self.store is not None:
            doc["event_log"] = {
                "healthy": self.store.healthy,
                "pending": self.store.pending,
                "error": self.store.last_error,
                "corrupt_rows": self.store.corrupt_rows,
            }
        return doc
