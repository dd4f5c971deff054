"""Wiring: probers, scheduler, metrics and the web app; signals and reload."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterable
from typing import Any

import structlog
from aiohttp import web

from monitor import __version__, systemd
from monitor import config as config_mod
from monitor.config import Config
from monitor.detect.hysteresis import Hysteresis
from monitor.metrics import CONTROLS, Metrics, configured_targets
from monitor.probes.base import Kind, ProbeResult, Target
from monitor.scheduler import Scheduler
from monitor.web import make_app

log = structlog.get_logger("monitor.daemon")


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
        self._hyst: dict[tuple[str, Target], Hysteresis] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._runner: web.AppRunner | None = None
        self._ready = False
        self._stop = asyncio.Event()
        self.listen_port: int | None = None

    # --- ResultSink ----------------------------------------------------------------------------

    def on_result(self, entity: str, result: ProbeResult, control: bool) -> None:
        self.metrics.record(entity, result)
        if not result.ok:
            log.debug(
                "probe failed",
                entity=entity,
                kind=result.kind.value,
                target=result.target.key,
                reason=result.reason,
                detail=result.detail,
            )

    def on_round(self, entity: str, target: Target, ok: bool, control: bool) -> None:
        h = self._hyst.get((entity, target))
        if h is None:
            return
        if h.update(ok):
            self.metrics.set_target_up(entity, target, h.up)
            log.info(
                "target up" if h.up else "target down",
                entity=entity,
                kind=target.kind.value,
                target=target.key,
            )

    def on_skipped(self, entity: str, target: Target, late: bool) -> None:
        metric = self.metrics.probes_late if late else self.metrics.probes_skipped
        metric.labels(entity, target.kind.value).inc()

    # --- lifecycle -----------------------------------------------------------------------------

    def _apply(self, cfg: Config) -> None:
        """Make `cfg` the running configuration (at start and on a good reload)."""
        d = cfg.detection
        keys = {(e, t) for e, t in configured_targets(cfg)}
        self._hyst = {k: self._hyst.get(k) or Hysteresis(d.down_after, d.up_after) for k in keys}
        for h in self._hyst.values():
            h.down_after, h.up_after = d.down_after, d.up_after
        self.metrics.apply_config(cfg)
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
        self.probers = build_probers()
        icmp = self.probers.get(Kind.ICMP)
        if icmp is not None:
            self.metrics.bind_icmp_ignored(lambda: dict(icmp.ignored))
        p = cfg.probing
        self.scheduler = Scheduler(
            self.probers, self, p.interval, p.timeout, p.max_rate, p.reprobes, p.splay
        )
        self._apply(cfg)
        app = make_app(self.metrics, lambda: self._ready)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, cfg.listen_host, cfg.listen_port)
        await site.start()
        server = getattr(site, "_server", None)
        if server is not None and server.sockets:
            self.listen_port = server.sockets[0].getsockname()[1]
        self._tasks.append(asyncio.create_task(self.scheduler.run(), name="scheduler"))
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
            targets=len(self._hyst),
        )
        systemd.notify("READY=1\nSTATUS=probing")

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
        self._apply(new)
        log.info("reloaded", config=new.source, targets=len(self._hyst))
        systemd.notify("READY=1")
        return True

    def request_stop(self) -> None:
        self._stop.set()

    async def stop(self) -> None:
        systemd.notify("STOPPING=1")
        self._ready = False
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.scheduler is not None:
            await self.scheduler.close()
        for prober in self.probers.values():
            await prober.close()
        if self._runner is not None:
            await self._runner.cleanup()
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
