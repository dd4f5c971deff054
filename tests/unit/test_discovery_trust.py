"""When a census can be trusted, when the next one comes, which entity goes first.

The daemon's Discovery service with the real detector, store, metrics and scheduler pacing;
the census probes go to `_Net`, an in-process stand-in for the network that answers from a
table of hosts and drops the probes a test names (no packet is sent: the addresses are from
the benchmarking range 198.18.0.0/15 and never reach a socket).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

from prometheus_client import CollectorRegistry

from monitor import config as config_mod
from monitor.detect.detector import Detector, EntitySpec
from monitor.detect.model import Change
from monitor.discovery.plan import (
    MIN_SILENT_RUN,
    RECENSUS_FRACTION,
    census_priority,
    outage_runs,
    recensus_delay,
    silent_run_limit,
)
from monitor.discovery.service import Discovery
from monitor.discovery.store import FILENAME, CensusStore
from monitor.metrics import Metrics
from monitor.probes import build_probers
from monitor.probes.base import (
    CallbackProber,
    IcmpTarget,
    ProbeResult,
    Reason,
    ResultCallback,
    Target,
)
from monitor.scheduler import Scheduler

A = ipaddress.IPv4Address
BLOCK = ipaddress.IPv4Network("198.18.0.0/24")
DAY = 86400.0


def ip(n: int, net: str = "198.18.0") -> ipaddress.IPv4Address:
    return A(f"{net}.{n}")


class _Net:
    """The network as the census sees it: `hosts` answer, except the probes `drop(address,
    nth probe of it in this census)` names; `on_send(address, nth)` runs as each is sent."""

    def __init__(self, hosts: set[ipaddress.IPv4Address]) -> None:
        self.hosts = set(hosts)
        self.drop: Callable[[ipaddress.IPv4Address, int], bool] = lambda _a, _n: False
        self.on_send: Callable[[ipaddress.IPv4Address, int], None] = lambda _a, _n: None
        self.sent: dict[ipaddress.IPv4Address, int] = {}

    def new_census(self) -> None:
        self.sent = {}

    def start(self, target: Target, timeout: float, callback: ResultCallback) -> None:
        assert isinstance(target, IcmpTarget) and isinstance(target.address, A)
        addr = target.address
        n = self.sent[addr] = self.sent.get(addr, 0) + 1
        self.on_send(addr, n)
        now = time.time()
        if addr in self.hosts and not self.drop(addr, n):
            result = ProbeResult.success(target, now, 0.001)
        else:
            result = ProbeResult.failure(target, now, Reason.TIMEOUT)
        asyncio.get_running_loop().call_soon(callback, result)

    async def probe(self, target: Target, timeout: float) -> ProbeResult:
        raise AssertionError("the census uses the callback path")

    async def close(self) -> None:
        pass


def write_config(tmp_path: Path, entities: str) -> config_mod.Config:
    path = tmp_path / "c.yaml"
    path.write_text(
        f"state_dir: {tmp_path / 'var'}\n"
        "probing:\n  interval: 1s\n  timeout: 500ms\n  max_rate: 200\n"
        "discovery:\n  interval: 24h\n  share: 0.5\n"
        "entities:\n" + entities,
        encoding="utf-8",
    )
    return config_mod.load(path)


ONE = "  - name: e\n    prefixes: [198.18.0.0/27]\n    discover: true\n"


class _Harness:
    """The service as the daemon wires it, around a `_Net`."""

    def __init__(self, cfg: config_mod.Config, net: _Net) -> None:
        self.cfg = cfg
        self.net = net
        self.probers = build_probers()
        p = cfg.probing
        p = replace(p, min_timeout=p.timeout)
        self.sched = Scheduler(self.probers, _NoSink(), p)
        self.sched.set_targets([], p)
        self.metrics = Metrics(CollectorRegistry())
        self.metrics.apply_config(cfg)
        self.published: list[Change] = []
        self.det, self.disc = self.start()

    def start(self) -> tuple[Detector, Discovery]:
        """A (re)start: a fresh detector, the service reading the stored censuses."""
        specs = [EntitySpec.from_config(e) for e in self.cfg.entities]
        det = Detector(self.cfg.detection, specs, [], now=time.time())
        icmp: CallbackProber = self.net
        disc = Discovery(
            self.cfg,
            CensusStore(self.cfg.state_dir),
            det,
            self.sched,
            icmp,
            None,
            self.metrics,
            self.published.extend,
        )
        disc.configure(self.cfg)
        return det, disc

    def restart(self) -> None:
        self.disc.close()
        self.det, self.disc = self.start()

    async def census(self, name: str = "e") -> None:
        self.net.new_census()
        await self.disc.census(name)

    def e_b(self, name: str = "e", block: ipaddress.IPv4Network = BLOCK) -> set[A]:
        return set(self.disc._entities[name].census.responsive(block))

    def sample(self, addr: A, ok: bool) -> None:
        """A sample probe's result, as the scheduler hands it to the detector."""
        t = time.time()
        r = (
            ProbeResult.success(IcmpTarget(addr), t, 0.001)
            if ok
            else ProbeResult.failure(IcmpTarget(addr), t, Reason.TIMEOUT)
        )
        self.published.extend(self.det.observe("e", r, t))

    async def close(self) -> None:
        self.disc.close()
        await self.sched.close()
        for prober in self.probers.values():
            await prober.close()


class _NoSink:
    def on_result(self, entity: str, result: object, control: bool) -> None:
        pass

    def on_round(self, entity: str, target: object, ok: bool, control: bool) -> None:
        pass

    def on_skipped(self, entity: str, target: object, late: bool) -> None:
        pass


@contextlib.asynccontextmanager
async def harness(tmp_path: Path, entities: str, hosts: set[A]) -> AsyncIterator[_Harness]:
    h = _Harness(write_config(tmp_path, entities), _Net(hosts))
    try:
        yield h
    finally:
        await h.close()


HOSTS = {ip(n) for n in (1, 2, 3, 4, 30, 31)}


async def test_block_failing_mid_census_then_up_keeps_e_b_and_recensuses_early(
    tmp_path: Path,
) -> None:
    """A block the detector saw failing (several samples silent) while the census ran, and up
    again by its end: the hosts silent in the census stay in E(b), the block's census is
    marked untrusted, and the next census comes within hours, not a day."""
    async with harness(tmp_path, ONE, HOSTS) as h:
        await h.census()
        assert h.e_b() == HOSTS
        for a in (ip(1), ip(2), ip(3), ip(4)):
            h.sample(a, True)  # the sampled block is up
        retries = 0

        def on_send(addr: A, n: int) -> None:
            nonlocal retries
            if addr == ip(30) and n == 1:
                for a in (ip(2), ip(3), ip(4)):  # the blackout as the samples see it
                    h.sample(a, False)
            if n == 2:
                retries += 1
                if retries == 2:  # the last retry: the network is back before the census ends
                    h.sample(ip(1), True)

        h.net.on_send = on_send
        h.net.drop = lambda a, _n: a in (ip(30), ip(31))
        await h.census()
        block = h.det.block_state("e", BLOCK)
        assert block is not None and block.state.value == "up" and not block.in_failure_run
        assert h.e_b() == HOSTS  # .30 and .31 were silent in the blackout: kept
        summary = h.disc._entities["e"].summaries[BLOCK]
        assert summary.left == () and not summary.trusted
        last = h.disc._entities["e"].census.last
        assert last is not None and last.doubtful == 2  # the first census, then this one
        doc = h.disc.status()["entities"]["e"]
        assert doc["doubtful_censuses"] == 2 and doc["blocks"][0]["trusted"] is False
        assert h.disc._due(h.disc._entities["e"]) == last.finished + DAY * RECENSUS_FRACTION * 2


async def test_outage_seen_by_the_census_alone_after_a_restart(
    tmp_path: Path,
) -> None:
    """Right after a restart the detector has no belief of the block; the census itself sees
    members of E(b) silent in a row and one answering its retry: nothing is removed (not even
    the member whose retry was lost too), the next census comes early, finds the host the
    outage hid, and, trusted, puts the entity back on the daily interval."""
    async with harness(tmp_path, ONE, HOSTS) as h:
        await h.census()
        await h.census()  # the first census's re-check: clean
        last = h.disc._entities["e"].census.last
        assert last is not None and last.doubtful == 0
        assert h.disc._due(h.disc._entities["e"]) == last.finished + DAY
        h.restart()
        belief = h.det.block_state("e", BLOCK)
        assert belief is None or not belief.known
        h.net.hosts.add(ip(5))  # a new host, probed during the outage
        dark = {ip(1), ip(2), ip(3), ip(4), ip(5)}
        h.net.drop = lambda a, n: (a in dark and n == 1) or a == ip(2)
        await h.census()
        assert h.e_b() == HOSTS
        ent = h.disc._entities["e"]
        assert not ent.summaries[BLOCK].trusted and ent.summaries[BLOCK].left == ()
        assert ent.census.last is not None and ent.census.last.doubtful == 1
        assert h.disc._due(ent) == ent.census.last.finished + DAY * RECENSUS_FRACTION
        # the early re-census, the network whole again
        h.restart()  # the doubtful streak survives a restart too
        assert h.disc.next_due(ent.census.last.finished + DAY * RECENSUS_FRACTION) == "e"
        h.net.drop = lambda _a, _n: False
        await h.census()
        assert h.e_b() == HOSTS | {ip(5)}
        ent = h.disc._entities["e"]
        assert ent.census.last is not None and ent.census.last.doubtful == 0
        assert h.disc._due(ent) == ent.census.last.finished + DAY


async def test_hosts_that_left_still_leave(tmp_path: Path) -> None:
    """Three hosts renumbered away (silent in a row, retries too) are not an outage: they
    leave E(b) at the next census."""
    async with harness(tmp_path, ONE, HOSTS) as h:
        await h.census()
        h.net.hosts -= {ip(2), ip(3), ip(4)}
        await h.census()
        assert h.e_b() == {ip(1), ip(30), ip(31)}
        assert h.disc._entities["e"].summaries[BLOCK].trusted


async def test_two_lost_probes_during_a_census_keep_it_trusted(tmp_path: Path) -> None:
    """A lost sample and a lost re-probe of another address (a lossy path) while the census
    runs are no outage: hosts that left leave E(b), the next census keeps the daily interval."""
    async with harness(tmp_path, ONE, HOSTS) as h:
        await h.census()
        await h.census()  # the first census's re-check
        for a in (ip(1), ip(2), ip(3), ip(4)):
            h.sample(a, True)

        def on_send(addr: A, n: int) -> None:
            if addr == ip(10):
                h.sample(ip(2), False)  # lost
                h.sample(ip(4), False)  # a re-probe of another address, lost too
            if addr == ip(20):
                h.sample(ip(3), True)  # the next one answers

        h.net.on_send = on_send
        h.net.hosts -= {ip(30), ip(31)}
        await h.census()
        assert h.e_b() == {ip(1), ip(2), ip(3), ip(4)}
        ent = h.disc._entities["e"]
        assert ent.summaries[BLOCK].trusted and ent.census.last is not None
        assert h.disc._due(ent) == ent.census.last.finished + DAY


async def test_census_order_blind_smallest_first_then_listed(
    tmp_path: Path,
) -> None:
    """With no census stored, the entities nothing else judges go first, the smallest first,
    then those with listed targets (not alphabetical); stored ones go most overdue first."""
    entities = (
        "  - name: a-listed\n    prefixes: [198.18.2.0/28]\n    icmp: [198.18.2.1]\n"
        "    discover: true\n"
        "  - name: b-blind-big\n    prefixes: [198.18.0.0/26]\n    discover: true\n"
        "  - name: c-blind-small\n    prefixes: [198.18.1.0/28]\n    discover: true\n"
    )
    async with harness(tmp_path, entities, {ip(1), ip(1, "198.18.1"), ip(1, "198.18.2")}) as h:
        task = asyncio.create_task(h.disc.run())
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if all(e.census.last is not None for e in h.disc._entities.values()):
                    break
                await asyncio.sleep(0.05)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        db = sqlite3.connect(Path(h.cfg.state_dir) / FILENAME)
        try:
            order = [r[0] for r in db.execute("SELECT entity FROM census ORDER BY started")]
        finally:
            db.close()
        assert order == ["c-blind-small", "b-blind-big", "a-listed"]
        finished = {n: e.census.last.finished for n, e in h.disc._entities.items() if e.census.last}
        assert h.disc.next_due(max(finished.values()) + DAY) == "c-blind-small"


def test_outage_runs_need_a_member_back() -> None:
    """A run counts distinct members silent in a row at their first probe, and only when one
    of them answered later; other addresses and retries do not break it."""
    members = {ip(n) for n in (1, 2, 3, 4, 9)}
    trail = [
        (ip(1), False),
        (ip(7), True),  # not a member: says nothing
        (ip(2), False),
        (ip(3), False),
        (ip(4), True),
        (ip(9), False),
        (ip(1), True),  # the retry of .1
        (ip(9), False),
    ]
    assert outage_runs(trail, members, {ip(1), ip(4), ip(7)}) == {BLOCK: 3}
    assert outage_runs(trail, members, {ip(4), ip(7)}) == {}  # gone for good: not an outage


def test_silent_run_limit_and_recensus_delay() -> None:
    """The run that makes a census doubtful grows as members answer less; the early
    re-census doubles with each doubtful census in a row, never beyond the interval."""
    assert silent_run_limit(1.0) == MIN_SILENT_RUN
    assert silent_run_limit(0.5) == 7  # 0.5^7 < 1 % <= 0.5^6
    assert recensus_delay(DAY, 0) == DAY
    assert [recensus_delay(DAY, n) / 3600 for n in range(1, 7)] == [1, 2, 4, 8, 16, 24]
    assert recensus_delay(DAY, 1000) == DAY


def test_census_priority_key() -> None:
    """Blind and never censused, then never censused, then stored by due time."""
    keys = [
        census_priority(True, True, 10, 5.0),
        census_priority(False, True, 10, 0.0),
        census_priority(False, False, 1024, 0.0),
        census_priority(False, False, 256, 0.0),
        census_priority(True, False, 10, 1.0),
    ]
    assert sorted(keys) == [keys[3], keys[2], keys[1], keys[4], keys[0]]


def test_store_adds_the_doubtful_column_to_an_old_database(tmp_path: Path) -> None:
    """A census database written before the doubtful streak opens with its censuses kept
    (streak 0), and the streak is stored from then on."""
    path = tmp_path / FILENAME
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE census (entity TEXT NOT NULL, started REAL NOT NULL, "
        "finished REAL NOT NULL, probes INTEGER NOT NULL, answered INTEGER NOT NULL);"
        "INSERT INTO census VALUES ('e', 1.0, 2.0, 256, 3);"
    )
    db.commit()
    db.close()
    store = CensusStore(tmp_path)
    try:
        last = store.load("e").last
        assert last is not None and (last.finished, last.probes, last.doubtful) == (2.0, 256, 0)
    finally:
        store.close()
