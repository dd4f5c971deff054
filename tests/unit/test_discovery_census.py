"""A census with the real ICMP engine on loopback: the CLI, the daemon's service, the store."""

from __future__ import annotations

import asyncio
import ipaddress
import time
from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from monitor import cli
from monitor import config as config_mod
from monitor.detect.belief import BlockState
from monitor.detect.detector import Detector, EntitySpec
from monitor.detect.model import Change
from monitor.discovery.service import Discovery
from monitor.discovery.store import FILENAME, CensusStore
from monitor.metrics import Metrics
from monitor.probes import build_probers
from monitor.probes.base import Kind
from monitor.scheduler import Scheduler

LOOP = ipaddress.IPv4Network("127.0.0.0/24")


def write_config(tmp_path: Path, interval: str = "24h") -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(
        f"state_dir: {tmp_path / 'var'}\n"
        "probing:\n  interval: 1s\n  timeout: 500ms\n  max_rate: 200\n"
        f"discovery:\n  interval: {interval}\n  share: 0.5\n"
        "entities:\n  - name: lo\n    prefixes: [127.0.0.0/29]\n    discover: true\n",
        encoding="utf-8",
    )
    return path


def test_cli_discover_prints_each_block_and_stores_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`discover` censuses the prefixes once, prints the /24 with its answering addresses and
    stores E(b); a second run shows no change."""
    path = write_config(tmp_path)
    assert cli.main(["discover", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("lo "))
    assert row.split()[1:7] == ["127.0.0.0/24", "8", "8", "1.00", "+8", "-0"]
    assert "lo: 8 probes, 8 addresses answered" in out
    store = CensusStore(tmp_path / "var")
    try:
        stored = store.load("lo")
    finally:
        store.close()
    assert len(stored.responsive(LOOP)) == 8 and stored.last is not None
    assert cli.main(["discover", "--config", str(path), "--entity", "lo"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("lo "))
    assert row.split()[5:7] == ["+0", "-0"]


def test_cli_discover_refuses_without_entities(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`discover` with no entity to census says why and exits 1."""
    path = write_config(tmp_path)
    assert cli.main(["discover", "--config", str(path), "--entity", "nope"]) == 1
    assert "no entity named 'nope'" in capsys.readouterr().err


class _Sink:
    def __init__(self, det: Detector) -> None:
        self.det = det

    def on_result(self, entity: str, result: object, control: bool) -> None:
        self.det.observe(entity, result, time.time())  # type: ignore[arg-type]

    def on_round(self, entity: str, target: object, ok: bool, control: bool) -> None:
        pass

    def on_skipped(self, entity: str, target: object, late: bool) -> None:
        pass


async def test_daemon_service_census_then_sampling_and_restart(tmp_path: Path) -> None:
    """The service censuses an entity with prefixes only at start, the detector then judges
    its block from sampled probes, census probes are counted under kind census, and a restart
    takes E(b) from the store without a new census (the first one's re-check stays due in an
    hour)."""
    cfg = config_mod.load(write_config(tmp_path))
    (e,) = cfg.entities
    det = Detector(cfg.detection, [EntitySpec.from_config(e)], [], now=time.time())
    probers = build_probers()
    p = cfg.probing
    sched = Scheduler(probers, _Sink(det), replace(p, min_timeout=p.timeout))
    sched.set_targets([], replace(p, min_timeout=p.timeout))
    metrics = Metrics(CollectorRegistry())
    metrics.apply_config(cfg)
    published: list[Change] = []

    def service() -> Discovery:
        d = Discovery(
            cfg,
            CensusStore(cfg.state_dir),
            det,
            sched,
            probers.icmp,
            probers[Kind.TCP],
            metrics,
            published.extend,
        )
        d.configure(cfg)
        return d

    disc = service()
    tasks = [asyncio.create_task(sched.run()), asyncio.create_task(disc.run())]
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            block = det.block_state("lo", LOOP)
            if block is not None and block.state is BlockState.UP:
                break
            await asyncio.sleep(0.1)
        block = det.block_state("lo", LOOP)
        assert block is not None and block.state is BlockState.UP
        reg = metrics.registry
        assert (
            reg.get_sample_value("dprk_monitor_probes_total", {"entity": "lo", "kind": "census"})
            == 8
        )
        assert (
            reg.get_sample_value(
                "dprk_monitor_block_responsive_addresses", {"entity": "lo", "block": str(LOOP)}
            )
            == 8
        )
        assert (
            reg.get_sample_value(
                "dprk_monitor_block_monitorable", {"entity": "lo", "block": str(LOOP)}
            )
            == 1
        )
        assert (
            reg.get_sample_value("dprk_monitor_census_last_timestamp_seconds", {"entity": "lo"})
            is not None
        )
        status = disc.status()["entities"]["lo"]
        assert status["unmonitorable"] == [] and status["blocks"][0]["responsive"] == 8
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        disc.close()
    # a restart: E(b) comes from the store; the next census is the first one's re-check, an
    # hour (interval / 24) after it, not at start
    det2 = Detector(cfg.detection, [EntitySpec.from_config(e)], [], now=time.time())
    disc2 = Discovery(
        cfg, CensusStore(cfg.state_dir), det2, sched, probers.icmp, None, metrics, published.extend
    )
    disc2.configure(cfg)
    try:
        assert det2.block_state("lo", LOOP) is not None
        assert disc2.status()["entities"]["lo"]["blocks"][0]["responsive"] == 8
        (ent,) = disc2._entities.values()
        assert ent.census.last is not None and ent.census.last.doubtful == 1
        assert disc2._due(ent) == ent.census.last.finished + 3600
        assert disc2.next_due(time.time()) is None
    finally:
        disc2.close()
        await sched.close()
        for prober in probers.values():
            await prober.close()
    assert (tmp_path / "var" / FILENAME).exists()
