"""Long life, part two: a soak of hours in the simulated world, with outages and flapping all
along and `kill -9`s of the daemon at random moments; memory and file descriptors over time,
and no event lost or duplicated across the crashes.

    sudo .venv/bin/python bench/bench_soak.py [--hours 2 | --minutes 10] [--kills 20]
        [--scale 0.03] [--kill-span 0.25] [--warmup 1350] [--seed N] [--no-bgp] [--out DIR]
        [--no-write]

The defaults are the conditions of the verdict in docs/BENCHMARKS.md ("Soak").

Long: `bench/run_all.py` skips it unless asked (`run_all.py --soak`, or `--only soak`).

The world is monitor/sim's DPRK (network namespaces, 198.18.0.0/15 only) with one vantage where
the real daemon runs (`python -m monitor run`, monitor/sim/daemonproc.py), time-scaled
(`--scale 0.03`: a 30 s interval runs as 0.9 s, every detection duration alike; 3.3 times the
faults, events and probes an hour of the integration tests' 0.1), BGP on against the world's
RIS Live look-alike (10 peers) unless `--no-bgp`.

- Faults, one after another all along: blackout (routes withdrawn, and in BGP), silent blackout,
  one /24 blackholed, an upstream lost, web stopped or hung, DNS stopped, 30 % loss, our own
  uplink cut, a BGP withdrawal storm, flapping (blackout toggled); each held 2-15 intervals,
  then repaired, then 2-8 quiet intervals.
- `--kills` `kill -9`s at random moments within the first `--kill-span` of the run:
  half anywhere, a quarter within three intervals after a fault that opens events, a quarter
  within three intervals after a repair (when the detector opens, updates or closes events,
  i.e. writes them). The daemon is started again after 0-2 s, as systemd would
  (Restart=always). The rest of the run is one process: memory and descriptors are judged
  on it, after its first `--warmup` s (at most a quarter of its life).
- Every ~10 s: the daemon's RSS (VmRSS), open file descriptors (/proc/PID/fd) and threads.
- Every ~2 s: `/api/v1/outages`; every event id seen is kept with what was seen of it.

At the end (after a clean stop), the log is read back with `dprk-monitor outages --format json`
and checked: every id seen during the run is still there (none lost); no two events of one
entity overlap in time, none was closed as a "duplicate open event" (none duplicated); every
event open at a `kill -9` carries a `resumed_at` time from the restart that followed (it was
continued, not replaced). RSS and fd slopes are least squares per hour, over the longest-lived
process (after its first `--warmup` s) and over all samples across the restarts; the kills fall
in the first `--kill-span` of the run, so the rest is one uninterrupted process. The process's
RSS is also printed by work (median after each 20 faults it lived through): a process's RSS
climbs about 1.7 MiB over its first ~250 faults and then holds. At `--scale 0.03` the
uninterrupted process of a 2-hour run lives through ~440 faults, so the stretch judged holds
the end of the climb and the plateau; at 0.1 it lives through ~130 and reads the climb alone.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import itertools
import json
import math
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

import benchlib  # noqa: E402
from bench_longlife import HEADING, INTRO, SOAK_SUBHEADING, SUBHEADING, merge_subsection  # noqa: E402

PORT = 9474
SAMPLE_EVERY = 10.0
OBSERVE_EVERY = 2.0
NO_EVENT = {"30 % loss", "our uplink cut"}  # faults after which no event opens
SCRAPE_EVERY = 15.0  # /metrics and / as Prometheus and an open status page would
N_PEERS = 10
HOOK_PORT, DEAD_PORT, SMTP_PORT = 9480, 9481, 9482
# name -> labels: what the extras line reports (from the last process's /metrics)
EXTRA_METRICS: dict[str, dict[str, str]] = {
    "dprk_monitor_probes_total": {"kind": "census"},
    "dprk_monitor_notifications_sent_total": {"receiver": "hook"},
    "dprk_monitor_notifications_failed_total": {"receiver": "dead"},
    "dprk_monitor_notifications_dropped_total": {"receiver": "dead"},
    "dprk_monitor_notifications_queued": {},
    "dprk_monitor_history_points_written_total": {},
}


def with_extras(text: str, census_every: float) -> str:
    """The soak's daemon with everything a long-lived one runs: a census of every entity
    every `census_every` minutes (sampling between), the history (on by default), and two
    notification receivers: `hook` (live, in the vantage namespace) and `dead` (nothing
    listens: retried, then given up after max_age)."""
    import yaml

    doc = yaml.safe_load(text)
    for ent in doc["entities"]:
        ent["discover"] = True
    doc["discovery"] = {"interval": f"{census_every:g}m"}
    doc["api"] = {"base_url": "http://monitor.test"}
    retry = {"timeout": "2s", "retry_initial": "2s", "retry_max": "30s"}
    doc["notify"] = [
        {"url": f"json://127.0.0.1:{HOOK_PORT}/soak", "name": "hook", "rate_limit": 0, **retry},
        {"url": f"json://127.0.0.1:{DEAD_PORT}/soak", "name": "dead", "max_age": "10m", **retry},
    ]
    return str(yaml.safe_dump(doc, sort_keys=False))


# -- records --------------------------------------------------------------------------------


@dataclass
class Sample:
    t: float  # wall clock
    pid: int
    uptime: float  # since the process became ready
    rss: float  # MiB
    fds: int
    threads: int


@dataclass
class Life:
    """One daemon process, start to kill (or to the end)."""

    pid: int
    started: float  # wall clock: Popen
    ready: float  # wall clock: /readyz 200
    ended: float | None = None
    how: str = ""  # "kill -9 (random)", "kill -9 (after fault)", "end", "died: exit N"
    samples: list[Sample] = field(default_factory=list)


@dataclass
class Seen:
    """What the API showed of one event during the run."""

    id: str
    entity: str
    first_seen: float
    last_seen: float
    start: str
    kinds: set[str] = field(default_factory=set)
    ends: set[str | None] = field(default_factory=set)


@dataclass
class Kill:
    at: float
    why: str
    pid: int
    ready_again: float | None = None
    open_ids: list[str] = field(default_factory=list)  # last observation before the kill


# -- /proc ----------------------------------------------------------------------------------


def proc_sample(pid: int, ready: float) -> Sample | None:
    try:
        mem = benchlib.memory_mb(pid)
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        threads = 0
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Threads:"):
                    threads = int(line.split()[1])
    except (OSError, KeyError, ValueError):
        return None
    now = time.time()
    return Sample(now, pid, now - ready, mem["VmRSS"], fds, threads)


def slope_per_hour(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (t seconds, y) in y per hour; None with < 3 points or no span."""
    if len(points) < 3:
        return None
    ts = [t for t, _ in points]
    ys = [y for _, y in points]
    mt, my = statistics.fmean(ts), statistics.fmean(ys)
    den = sum((t - mt) ** 2 for t in ts)
    if den == 0:
        return None
    return sum((t - mt) * (y - my) for t, y in points) / den * 3600


# -- the soak -------------------------------------------------------------------------------


class Soak:
    def __init__(self, world: Any, args: argparse.Namespace, out: Path) -> None:
        from monitor.sim import scenarios
        from monitor.sim.daemonproc import DaemonProcess

        self.w, self.args, self.out = world, args, out
        self.rng = random.Random(args.seed)
        self.interval = scenarios.DEFAULT_INTERVAL * args.scale
        from monitor.detect.params import DetectionParams

        self.merge_gap = DetectionParams().merge_gap * args.scale
        self.ns = world.vantages[0]
        self.ris: Any = None
        self.peers: list[Any] = []
        self.routes: dict[str, tuple[int, ...]] = {}
        self.withdrawn: set[str] = set()
        bgp: dict[str, Any] = {"enabled": False}
        if not args.no_bgp:
            from monitor.sim import rislive

            self.ris = rislive.RisLiveSim(world, 0).start()
            self.peers = rislive.make_peers(N_PEERS)
            self.routes = rislive.world_routes(world)
            bgp = {"enabled": True, "ris_live_url": self.ris.url}
        self.state_dir = out / "var"
        self.config = out / "daemon.yaml"
        text = world.daemon_config(
            state_dir=str(self.state_dir),
            listen=f"127.0.0.1:{PORT}",
            log_level="info",
            bgp=bgp,
            **scenarios.scaled_config(args.scale),
        )
        self.receivers: Any = None
        if not args.core_only:
            text = with_extras(text, args.census_every)
        self.config.write_text(text, encoding="utf-8")
        self.daemon = DaemonProcess(world, self.config, log_path=out / "daemon.log")
        self.lives: list[Life] = []
        self.kills: list[Kill] = []
        self.seen: dict[str, Seen] = {}
        self.last_open: list[str] = []
        self.faults: Counter[str] = Counter()
        self.fault_log: list[tuple[float, str]] = []
        self.api_errors = 0
        self.scrape_errors = 0
        self.dup_in_response = 0
        self.unexpected: list[str] = []
        self.restart_times: list[float] = []
        self.extra_figures: dict[str, float] = {}

    # --- the daemon ----------------------------------------------------------------------

    def start_receivers(self) -> None:
        """tests/notify_receivers.py in the vantage namespace: the live `hook` receiver
        (`dead` has nothing listening: its messages are retried until they expire)."""
        ready = self.out / "received.jsonl.ready"
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        argv = [sys.executable, "-m", "tests.notify_receivers", "--http", str(HOOK_PORT)]
        argv += ["--smtp", str(SMTP_PORT), "--out", str(self.out / "received.jsonl")]
        self.receivers = self.w.popen(0, argv, env=env, cwd=str(ROOT))
        deadline = time.time() + 30
        while not ready.exists():
            if self.receivers.poll() is not None or time.time() > deadline:
                raise RuntimeError("the notification receivers did not start")
            time.sleep(0.05)

    def received(self) -> list[dict[str, Any]]:
        path = self.out / "received.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line]

    def extras(self) -> dict[str, float]:
        """Census and notification counters from the daemon's `/metrics` (summed over labels)."""
        try:
            m = self.daemon.metrics()
        except Exception:  # a bench reading: absent figures print as "?"
            return {}
        return {name: m.total(name, **labels) for name, labels in EXTRA_METRICS.items()}

    def start_daemon(self) -> None:
        t0 = time.time()
        self.daemon.start(timeout=60)
        ready = time.time()
        assert self.daemon.pid is not None
        self.lives.append(Life(self.daemon.pid, t0, ready))
        self.restart_times.append(ready - t0)
        if self.ris is not None:
            try:
                self.ris.wait_subscribed(timeout=30)
                live = {p: r for p, r in self.routes.items() if p not in self.withdrawn}
                self.ris.announce(live, self.peers)
            except TimeoutError:
                self.unexpected.append(f"{_ts(ready)}: no RIS Live subscription within 30 s")

    def kill9(self, why: str) -> None:
        life = self.lives[-1]
        self.sample()
        k = Kill(time.time(), why, life.pid, open_ids=list(self.last_open))
        self.daemon.kill9()
        life.ended, life.how = k.at, f"kill -9 ({why})"
        time.sleep(self.rng.uniform(0, 2))
        self.start_daemon()
        k.ready_again = self.lives[-1].ready
        self.kills.append(k)
        print(
            f"  {_ts(k.at)} kill -9 ({why}) pid {k.pid}; ready again in "
            f"{k.ready_again - k.at:.1f} s",
            flush=True,
        )

    def check_alive(self) -> None:
        if self.daemon.running:
            return
        proc = self.daemon.proc
        rc = proc.returncode if proc is not None else None
        life = self.lives[-1]
        life.ended, life.how = time.time(), f"died: exit {rc}"
        self.unexpected.append(f"{_ts(life.ended)}: the daemon exited by itself ({rc})")
        print(f"  the daemon exited by itself ({rc}); restarting", flush=True)
        self.start_daemon()

    # --- observation ---------------------------------------------------------------------

    def sample(self) -> None:
        life = self.lives[-1]
        s = proc_sample(life.pid, life.ready)
        if s is not None:
            life.samples.append(s)

    def scrape(self) -> None:
        for path in ("/metrics", "/"):
            try:
                status, _ = benchlib.http_get(self.ns, "127.0.0.1", PORT, path, timeout=10)
            except OSError:
                status = 0
            if status != 200:
                self.scrape_errors += 1

    def observe(self) -> None:
        try:
            events = fetch_events(self.ns)
        except (OSError, ValueError, RuntimeError):
            self.api_errors += 1
            return
        now = time.time()
        ids = [str(e["id"]) for e in events]
        if len(ids) != len(set(ids)):
            self.dup_in_response += 1
        open_ids = []
        for e in events:
            s = self.seen.get(str(e["id"]))
            if s is None:
                s = self.seen[str(e["id"])] = Seen(
                    str(e["id"]), str(e["entity"]), now, now, str(e["start"])
                )
            s.last_seen = now
            s.kinds.add(str(e["kind"]))
            s.ends.add(e.get("end"))
            if e.get("end") is None:
                open_ids.append(s.id)
        self.last_open = open_ids

    # --- faults --------------------------------------------------------------------------

    def fault_menu(self) -> list[tuple[str, Callable[[], Callable[[], None]]]]:
        """(name, apply) where apply() injects the fault and returns its repair."""
        w, rng = self.w, self.rng
        blocks = list(w.blocks)
        ups = [u.key for u in w.spec.upstreams]

        def blackout(mode: str | None) -> Callable[[], Callable[[], None]]:
            def apply() -> Callable[[], None]:
                w.blackout(mode)
                self.bgp_withdraw(blocks)

                def repair() -> None:
                    w.repair_blackout()
                    self.bgp_announce(blocks)

                return repair

            return apply

        def block() -> Callable[[], None]:
            b = rng.choice(blocks)
            w.blackhole_block(b)
            return lambda: (w.restore_block(b), None)[1]

        def upstream() -> Callable[[], None]:
            u = rng.choice(ups)
            w.lose_upstream(u)
            return lambda: (w.restore_upstream(u), None)[1]

        def web_stop() -> Callable[[], None]:
            w.stop_web()
            return lambda: (w.start_web(), None)[1]

        def web_hang() -> Callable[[], None]:
            w.hang_web()
            return lambda: (w.start_web(), None)[1]

        def dns_stop() -> Callable[[], None]:
            w.stop_dns()
            return lambda: (w.start_dns(), None)[1]

        def loss() -> Callable[[], None]:
            w.loss(0.3)
            return lambda: (w.clear_loss(), None)[1]

        def uplink() -> Callable[[], None]:
            w.cut_vantage_uplink(0)
            return lambda: (w.restore_vantage_uplink(0), None)[1]

        def storm() -> Callable[[], None]:
            self.bgp_withdraw(blocks)
            return lambda: self.bgp_announce(blocks)

        def flap() -> Callable[[], None]:
            period = rng.uniform(1, 3) * self.interval
            f = w.flap(period, rng.randint(2, 5))
            stop: Callable[[], None] = f.stop  # which repairs the blackout if it is on
            return stop

        menu: list[tuple[str, Callable[[], Callable[[], None]]]] = [
            ("blackout", blackout(None)),
            ("blackout (silent)", blackout("blackhole")),
            ("one /24 blackholed", block),
            ("upstream lost", upstream),
            ("web stopped", web_stop),
            ("web hung", web_hang),
            ("DNS stopped", dns_stop),
            ("30 % loss", loss),
            ("our uplink cut", uplink),
            ("flapping", flap),
        ]
        if self.ris is not None:
            menu.append(("BGP withdrawal storm", storm))
        return menu

    def bgp_withdraw(self, prefixes: list[str]) -> None:
        if self.ris is None:
            return
        self.withdrawn |= set(prefixes)
        with contextlib.suppress(Exception):
            self.ris.withdraw(prefixes, self.peers)

    def bgp_announce(self, prefixes: list[str]) -> None:
        if self.ris is None:
            return
        self.withdrawn -= set(prefixes)
        with contextlib.suppress(Exception):
            self.ris.announce({p: self.routes[p] for p in prefixes}, self.peers)

    # --- the run -------------------------------------------------------------------------

    def run(self, duration: float) -> None:
        rng, iv = self.rng, self.interval
        t_start = time.time()
        t_end = t_start + duration
        n = self.args.kills
        # Kills at random moments within the first `kill_span` of the run; the rest is one
        # uninterrupted process, the stretch memory and descriptors are judged on.
        span = self.args.kill_span
        kill_at = sorted(rng.uniform(0.03, span) * duration + t_start for _ in range(n))
        # Every other kill waits for the next outage-making fault (alternately: the next
        # repair) and strikes within 3 intervals of it, when the detector opens (closes)
        # events and writes them.
        kinds = ("random", "after fault", "random", "after repair")
        plan = [(t, kinds[i % 4]) for i, t in enumerate(kill_at)]
        armed: list[str] = []  # kills whose time has come, waiting for their moment
        pending: list[tuple[float, str]] = []  # (when, why)
        menu = self.fault_menu()
        repair: Callable[[], None] | None = None
        next_fault = t_start + rng.uniform(4, 8) * iv  # let it warm up first
        next_sample = next_observe = next_scrape = t_start
        if not self.args.core_only:
            self.start_receivers()
        self.start_daemon()
        print(
            f"soak: {duration / 60:.0f} min, interval {iv:g} s, {n} kills, "
            f"{len(menu)} kinds of fault; logs in {self.out}",
            flush=True,
        )
        last_report = t_start
        while time.time() < t_end:
            now = time.time()
            self.check_alive()
            if now >= next_sample:
                self.sample()
                next_sample = now + SAMPLE_EVERY
            if now >= next_observe:
                self.observe()
                next_observe = now + OBSERVE_EVERY
            if now >= next_scrape:
                self.scrape()
                next_scrape = now + SCRAPE_EVERY
            while plan and plan[0][0] <= now:
                _, why = plan.pop(0)
                if why == "random":
                    pending.append((now, why))
                else:
                    armed.append(why)
            if now >= next_fault:
                if repair is None:
                    name, apply = menu[rng.randrange(len(menu))]
                    repair = apply()
                    self.faults[name] += 1
                    self.fault_log.append((now, name))
                    next_fault = now + rng.uniform(2, 15) * iv
                    moment = "after fault" if name not in NO_EVENT else ""
                else:
                    repair()
                    repair = None
                    self.fault_log.append((now, "repair"))
                    next_fault = now + rng.uniform(2, 8) * iv
                    moment = "after repair"
                for why in [w for w in armed if w == moment]:
                    armed.remove(why)
                    pending.append((now + rng.uniform(0, 3) * iv, why))
            pending.sort()
            if pending and pending[0][0] <= now:
                self.kill9(pending.pop(0)[1])
                continue
            if now - last_report >= 300:
                last_report = now
                life = self.lives[-1]
                s = life.samples[-1] if life.samples else None
                print(
                    f"  {_ts(now)} {(now - t_start) / 60:.0f} min: {len(self.seen)} events seen, "
                    f"{len(self.kills)} kills, {sum(self.faults.values())} faults"
                    + (f", RSS {s.rss:.1f} MiB, {s.fds} fds" if s else ""),
                    flush=True,
                )
            time.sleep(0.2)
        # kills not yet done (a run too short for its plan): done now, counted as random
        while len(self.kills) < n:
            self.kill9("random")
            time.sleep(rng.uniform(1, 3) * iv)
        if repair is not None:
            repair()
            self.fault_log.append((time.time(), "repair"))
        self.observe()
        self.sample()
        if not self.args.core_only:
            time.sleep(5)  # let the last closed messages reach the receiver
            self.extra_figures = self.extras()
        life = self.lives[-1]
        rc = self.daemon.stop(timeout=30)
        life.ended, life.how = time.time(), f"end (SIGTERM, exit {rc})"
        if rc != 0:
            self.unexpected.append(f"{_ts(life.ended)}: exit {rc} after SIGTERM")
        if self.ris is not None:
            self.ris.stop()


def fetch_events(ns: str) -> list[dict[str, Any]]:
    """Every event: `/api/v1/outages` without `limit` answers the whole list."""
    status, body = benchlib.http_get(ns, "127.0.0.1", PORT, "/api/v1/outages", timeout=10)
    if status != 200:
        raise RuntimeError(f"/api/v1/outages: {status}")
    doc = json.loads(body)
    if not isinstance(doc, list):
        raise ValueError("/api/v1/outages: not a list")
    return doc


def _ts(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%H:%M:%S")


# -- the checks -----------------------------------------------------------------------------


@dataclass
class Verdict:
    stored: int
    lost: list[str]
    overlaps: list[tuple[str, str]]
    dup_closed: list[str]
    kills_checked: int
    not_resumed: list[tuple[str, str]]  # (kill time, event id)
    split: list[tuple[str, str]]  # one incident as two events around a kill
    start_moved: list[str]
    by_kind: Counter[str]

    @property
    def events_ok(self) -> bool:
        return not (self.lost or self.overlaps or self.dup_closed or self.not_resumed or self.split)


def read_store(config: Path) -> list[dict[str, Any]]:
    """The log as `dprk-monitor outages --format json` prints it (read-only)."""
    out = subprocess.run(
        [sys.executable, "-m", "monitor", "outages", "--config", str(config), "--format", "json"],
        cwd=str(ROOT),
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if out.returncode != 0:
        raise RuntimeError(f"outages --format json failed: {out.stderr[-2000:]}")
    doc = json.loads(out.stdout)
    if isinstance(doc, dict):
        doc = doc.get("events", doc.get("items", []))
    return list(doc)


def check(soak: Soak, stored: list[dict[str, Any]]) -> Verdict:
    from monitor.detect.model import parse_time

    by_id = {str(e["id"]): e for e in stored}
    lost = sorted(i for i in soak.seen if i not in by_id)
    start_moved = sorted(
        i for i, s in soak.seen.items() if i in by_id and str(by_id[i]["start"]) != s.start
    )
    far = time.time() + 10 * 365 * 86400
    spans: dict[str, list[tuple[float, float, str]]] = {}
    for e in stored:
        start = parse_time(e["start"])
        end = far if e.get("end") is None else parse_time(e["end"])
        spans.setdefault(str(e["entity"]), []).append((start, end, str(e["id"])))
    overlaps = []
    for items in spans.values():
        items.sort()
        for (_, a_end, a_id), (b_start, _, b_id) in itertools.pairwise(items):
            if b_start < a_end:
                overlaps.append((a_id, b_id))
    dup_closed = sorted(
        str(e["id"])
        for e in stored
        if "duplicate" in str((e.get("signals") or {}).get("closed_because", ""))
    )
    # One incident cut in two by a kill: the next event of the entity starts less than
    # merge_gap after the previous one ended (the detector would have merged them) and a kill
    # fell between the two.
    split = []
    for items in spans.values():
        for (_, a_end, a_id), (b_start, _, b_id) in itertools.pairwise(items):
            gap = b_start - a_end
            if 0 <= gap < soak.merge_gap and any(
                a_end <= k.at <= b_start + 2 * soak.interval for k in soak.kills
            ):
                split.append((a_id, b_id))
    # Seen open by the API just before a kill (and not closed before it): must go on after
    # the restart as the same event, with the restart in its `resumed_at`.
    not_resumed = []
    checked = 0
    for k in soak.kills:
        if k.ready_again is None:
            continue
        for i in k.open_ids:
            ev = by_id.get(i)
            if ev is None:
                continue  # counted as lost
            ended = None if ev.get("end") is None else parse_time(ev["end"])
            if ended is not None and ended <= k.at:
                continue  # closed (and written) before the kill
            checked += 1
            resumed = [
                parse_time(t)
                for t in (ev.get("evidence") or {}).get("resumed_at") or []
                if isinstance(t, str)
            ]
            if not any(k.at - 1 <= t <= k.ready_again + 10 for t in resumed):
                not_resumed.append((_ts(k.at), str(ev["id"])))
    return Verdict(
        len(stored),
        lost,
        overlaps,
        dup_closed,
        checked,
        not_resumed,
        split,
        start_moved,
        Counter(str(e["kind"]) for e in stored),
    )


# -- report ---------------------------------------------------------------------------------


RSS_SLOPE_MAX = 1.0  # MiB per hour over the longest-lived process
RSS_RISE_MAX = 2.0  # MiB between its first and last fifth (medians)
FD_RISE_MAX = 2  # fds between its first and last fifth (floors: probes in flight come and go)
JUDGE_AFTER = 30 * 60.0  # a stretch shorter than this is too short to call memory flat


@dataclass
class Flatness:
    longest: Life
    span: float  # seconds the longest-lived process was measured after its warm-up
    warmup: float
    rss_slope: float | None
    fd_slope: float | None
    all_rss_slope: float | None
    # of its first and second half: a growth that levels off shows as a smaller second one
    rss_slope_halves: tuple[float | None, float | None]
    # from the end of its first census on (minutes after its start, slope, rise between the
    # first and last fifth of that stretch): the census probes every address of the prefixes,
    # and the per-address state it leaves (bounded by the configuration) comes once per process
    after_census: tuple[float, float | None, float] | None
    rss_first: float  # median RSS of the first fifth of the stretch
    rss_last: float
    fd_first: int  # fewest fds in the first fifth
    fd_last: int
    rss_max: float
    fd_min: int
    fd_max: int
    threads_max: int
    life_medians: list[float]  # median RSS of each process, in order (fresh-process baseline)
    # its RSS through its whole life, warm-up included: the median of each CURVE_STEP s (the
    # shape a slope hides: a climb that levels off, or one that does not)
    curve: list[float]
    # the same by work rather than time: its RSS (median) after each WORK_STEP faults it
    # lived through (a growth that comes with work and levels off, and another scale's run
    # with it, compare here; a growth with time alone does not)
    work: list[tuple[int, float]] = field(default_factory=list)

    @property
    def judged(self) -> bool:
        return self.span >= JUDGE_AFTER

    @property
    def flat(self) -> bool:
        return (
            self.rss_slope is not None
            and self.rss_slope <= RSS_SLOPE_MAX
            and self.rss_last - self.rss_first <= RSS_RISE_MAX
            and self.fd_last - self.fd_first <= FD_RISE_MAX
        )


def census_ends(log: Path) -> list[float]:
    """Wall times of the daemon log's `census done` lines (every process, in order)."""
    out: list[float] = []
    if not log.exists():
        return out
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        if '"census done"' not in line:
            continue
        with contextlib.suppress(ValueError, KeyError, TypeError):
            rec = json.loads(line)
            out.append(dt.datetime.fromisoformat(rec["timestamp"]).timestamp())
    return out


def after_first_census(
    samples: list[Sample], ready: float, ends: list[float]
) -> tuple[float, float | None, float] | None:
    first = next((t for t in ends if t > samples[0].t), None) if samples else None
    after = [s for s in samples if first is not None and s.t >= first]
    if first is None or len(after) < 10:
        return None
    fifth = max(1, len(after) // 5)
    rise = statistics.median(s.rss for s in after[-fifth:]) - statistics.median(
        s.rss for s in after[:fifth]
    )
    return (first - ready) / 60, slope_per_hour([(s.t, s.rss) for s in after]), rise


def flatness(
    lives: list[Life],
    warmup: float,
    census: list[float] | None = None,
    faults: list[float] | None = None,
) -> Flatness:
    def length(lf: Life) -> float:
        return (lf.ended or time.time()) - lf.ready

    longest = max(lives, key=length)
    # at most a quarter of a short stretch is warm-up
    wu = min(warmup, 0.25 * length(longest))
    lsamp = [s for s in longest.samples if s.uptime >= wu] or longest.samples
    fifth = max(1, len(lsamp) // 5)
    first, last = lsamp[:fifth], lsamp[-fifth:]
    settled = [s for lf in lives for s in lf.samples if s.uptime >= min(wu, 60.0)]
    settled = settled or [s for lf in lives for s in lf.samples]
    return Flatness(
        longest,
        lsamp[-1].t - lsamp[0].t,
        wu,
        slope_per_hour([(s.t, s.rss) for s in lsamp]),
        slope_per_hour([(s.t, float(s.fds)) for s in lsamp]),
        slope_per_hour([(s.t, s.rss) for s in settled]),
        (
            slope_per_hour([(s.t, s.rss) for s in lsamp[: len(lsamp) // 2]]),
            slope_per_hour([(s.t, s.rss) for s in lsamp[len(lsamp) // 2 :]]),
        ),
        after_first_census(lsamp, longest.ready, census or []),
        statistics.median(s.rss for s in first),
        statistics.median(s.rss for s in last),
        min(s.fds for s in first),
        min(s.fds for s in last),
        max(s.rss for s in settled),
        min(s.fds for s in settled),
        max(s.fds for s in settled),
        max(s.threads for s in settled),
        [statistics.median(s.rss for s in lf.samples) for lf in lives if lf.samples],
        rss_curve(longest.samples),
        work_curve(longest.samples, faults or []),
    )


CURVE_STEP = 600.0


def rss_curve(samples: list[Sample]) -> list[float]:
    """Median RSS of each CURVE_STEP s of a process's life (by uptime; a last, partial step
    counts when it holds at least half a step)."""
    bins: dict[int, list[float]] = {}
    for s in samples:
        bins.setdefault(int(max(0.0, s.uptime) // CURVE_STEP), []).append(s.rss)
    full = max(1, int(CURVE_STEP / SAMPLE_EVERY) // 2)
    return [statistics.median(v) for _, v in sorted(bins.items()) if len(v) >= full]


WORK_STEP = 20


def work_curve(samples: list[Sample], faults: list[float]) -> list[tuple[int, float]]:
    """Median RSS of a process between its (k·WORK_STEP)th and ((k+1)·WORK_STEP)th fault (by
    the fault's wall time; faults before the process started count nowhere), as (k·WORK_STEP,
    median) for each stretch that holds samples."""
    if not samples:
        return []
    mine = sorted(t for t in faults if samples[0].t <= t <= samples[-1].t)
    out: list[tuple[int, float]] = []
    for k in range(0, len(mine) + 1, WORK_STEP):
        lo = mine[k - 1] if k else samples[0].t
        hi = mine[k + WORK_STEP - 1] if k + WORK_STEP - 1 < len(mine) else math.inf
        got = [s.rss for s in samples if lo <= s.t < hi]
        if got:
            out.append((k, statistics.median(got)))
    return out


def _sl(v: float | None, unit: str) -> str:
    return "-" if v is None else f"{v:+.2f} {unit}/h"


def extras_lines(soak: Soak, args: argparse.Namespace) -> list[str]:
    """What the census, history and notifications did (counters of the last process)."""
    if args.core_only:
        return ["- the daemon ran without census and notifications (`--core-only`)"]
    x = soak.extra_figures
    got = soak.received()
    keys = [m.get("key") for m in got]
    dup = len(keys) - len(set(keys))

    def n(name: str) -> str:
        v = x.get(name)
        return "?" if v is None else f"{v:.0f}"

    return [
        f"- also running: a census of every entity every {args.census_every:g} min with "
        f"block sampling between ({n('dprk_monitor_probes_total')} census probes counted by "
        f"the last process), the history ({n('dprk_monitor_history_points_written_total')} "
        f"points written by it), and two notification receivers: `hook` live "
        f"({len(got)} messages received over the whole run, {dup} of them repeats of a key "
        f"already received), `dead` with nothing listening (the last process: "
        f"{n('dprk_monitor_notifications_failed_total')} failed attempts, "
        f"{n('dprk_monitor_notifications_dropped_total')} messages given up after max_age "
        f"10 min; {n('dprk_monitor_notifications_queued')} queued at the end)",
    ]


def render(
    soak: Soak,
    v: Verdict,
    f: Flatness,
    args: argparse.Namespace,
    info: dict[str, str],
    date: str,
    wall: float,
) -> str:
    kills_random = sum(1 for k in soak.kills if k.why == "random")
    kills_fault = sum(1 for k in soak.kills if k.why == "after fault")
    kills_after = len(soak.kills) - kills_random - kills_fault
    lf = f.longest
    lf_span = ((lf.ended or time.time()) - lf.ready) / 60
    faults = ", ".join(f"{name} {n}" for name, n in soak.faults.most_common())
    kinds = ", ".join(f"{k} {n}" for k, n in v.by_kind.most_common()) or "none"
    restarts = benchlib.spread(soak.restart_times, ".2f")
    verdict_ev = "**no event lost or duplicated**" if v.events_ok else "**events: FAILED**"
    if not f.judged:
        verdict_mem = (
            f"not judged (the longest-lived process was measured {f.span / 60:.0f} min; "
            f"memory is judged from {JUDGE_AFTER / 60:.0f} min)"
        )
    else:
        verdict_mem = "flat" if f.flat else "**not flat**"

    def wrap(s: str) -> str:
        return textwrap.fill(s, width=96, break_on_hyphens=False)

    lines = [
        SOAK_SUBHEADING,
        "",
        wrap(
            "Measured by `bench/bench_soak.py` (as root; `run_all.py` runs it only when asked). "
            "The real daemon in the simulated world (network namespaces, 198.18.0.0/15 only), "
            f"time-scaled {args.scale:g} (interval {soak.interval:g} s, every detection "
            "duration alike), "
            + (
                f"BGP on against the world's RIS Live look-alike ({N_PEERS} peers, routes "
                "withdrawn with each blackout and storm and announced again after each repair "
                "and restart)"
                if soak.ris is not None
                else "BGP off"
            )
            + ". Faults one after another all along (each held 2-15 intervals, repaired, then "
            "2-8 quiet intervals), and `kill -9`s of the daemon at random moments, half of "
            "them within three intervals after a fault (while events open and are written) or after "
            "a repair (while they close); "
            "the daemon is started again 0-2 s later. RSS, open fds and threads from /proc "
            f"every {SAMPLE_EVERY:g} s; `/api/v1/outages` every {OBSERVE_EVERY:g} s; `/metrics` "
            f"and `/` every {SCRAPE_EVERY:g} s, as Prometheus and an open status page ask; "
            "at the end "
            "the log read back with `dprk-monitor outages --format json`."
        ),
        "",
        f"- date: {date}; wall time {wall / 60:.0f} min (soak {args.duration / 60:.0f} min); "
        f"seed {args.seed}",
        f"- machine: {info['cpu']}; kernel {info['kernel']}; Python {info['python']}; "
        f"load average {info['load']} at the start",
        f"- code: {benchlib.commit()}",
        f"- faults: {sum(soak.faults.values())} ({faults})",
        f"- `kill -9`: {len(soak.kills)} ({kills_random} at random moments, {kills_fault} "
        f"within three intervals after a fault, {kills_after} after a repair); start-up after "
        f"each: {restarts} s; "
        f"exits nobody asked for: {len(soak.unexpected)}",
        f"- events: {len(soak.seen)} ids seen through the API during the run, {v.stored} in the "
        f"log at the end ({kinds})",
        *extras_lines(soak, args),
        "",
        "| check | result |",
        "|---|---|",
        f"| ids seen during the run missing from the log at the end | {len(v.lost)} |",
        f"| events of one entity overlapping in time | {len(v.overlaps)} |",
        f"| events closed as a duplicate open event | {len(v.dup_closed)} |",
        f"| events seen open just before a `kill -9` and continued after the restart "
        f"(over all kills) | {v.kills_checked - len(v.not_resumed)} of {v.kills_checked} |",
        f"| one incident cut in two around a kill (next event within merge_gap "
        f"{soak.merge_gap:g} s) | {len(v.split)} |",
        f"| events whose start changed after it was first shown | {len(v.start_moved)} |",
        f"| API answers with the same id twice / failed API polls / failed scrapes of "
        f"`/metrics` and `/` | {soak.dup_in_response} / {soak.api_errors} / "
        f"{soak.scrape_errors} |",
        "",
        "| memory and descriptors | figure |",
        "|---|---|",
        f"| longest-lived process | {lf_span:.0f} min (pid {lf.pid}), measured after "
        f"{f.warmup:.0f} s of warm-up |",
        f"| its RSS, median of the first and of the last fifth | {f.rss_first:.1f} MiB, "
        f"{f.rss_last:.1f} MiB |",
        f"| its RSS slope (least squares) / over all processes across the restarts | "
        f"{_sl(f.rss_slope, 'MiB')} / {_sl(f.all_rss_slope, 'MiB')} |",
        f"| its RSS slope over the first and over the second half of that stretch | "
        f"{_sl(f.rss_slope_halves[0], 'MiB')}, {_sl(f.rss_slope_halves[1], 'MiB')} |",
        "| its RSS from the end of its first census on (not the verdict's stretch): slope, "
        "rise between first and last fifth | "
        + (
            "no census in the stretch"
            if f.after_census is None
            else f"census ended {f.after_census[0]:.0f} min after its start: "
            f"{_sl(f.after_census[1], 'MiB')}, {f.after_census[2]:+.1f} MiB"
        )
        + " |",
        f"| its RSS through its life, median of each {CURVE_STEP / 60:.0f} min (warm-up "
        f"included) | {', '.join(f'{x:.1f}' for x in f.curve)} MiB |",
        f"| the same by work: its RSS after each {WORK_STEP} faults it lived through (faults "
        f"survived: median RSS) | {', '.join(f'{k}: {x:.1f}' for k, x in f.work) or '-'} MiB |",
        f"| median RSS of the first and of the last process ({len(f.life_medians)} in all) | "
        f"{f.life_medians[0]:.1f} MiB, {f.life_medians[-1]:.1f} MiB |",
        f"| highest RSS of any process | {f.rss_max:.1f} MiB |",
        f"| its open fds, fewest in the first and in the last fifth | {f.fd_first}, {f.fd_last} |",
        f"| its fd slope | {_sl(f.fd_slope, 'fds')} |",
        f"| open fds of any process, fewest-most (probes in flight come and go) | "
        f"{f.fd_min}-{f.fd_max} |",
        f"| threads, most | {f.threads_max} |",
        "",
        wrap(
            f"Verdict: {verdict_ev}; memory and descriptors {verdict_mem}. Flat means, over "
            f"the longest-lived process: RSS slope ≤ {RSS_SLOPE_MAX:g} MiB/h, its last fifth's "
            f"median RSS within {RSS_RISE_MAX:g} MiB of its first fifth's, and the fewest "
            f"open fds of its last fifth within {FD_RISE_MAX} of its first fifth's. The kills "
            f"fall in the first {args.kill_span * 100:.0f} % of the run so that the rest is "
            "one uninterrupted process. A slope from hours bounds slow leaks only roughly "
            "(+1 MiB/h would be +720 MiB a month)."
        ),
    ]
    details = []
    if v.lost:
        details.append(f"lost ids: {', '.join(v.lost[:10])}")
    if v.overlaps:
        details.append(f"overlaps: {v.overlaps[:5]}")
    if v.dup_closed:
        details.append(f"closed as duplicates: {', '.join(v.dup_closed[:10])}")
    if v.not_resumed:
        details.append(f"open at a kill, not resumed: {v.not_resumed[:10]}")
    if v.split:
        details.append(f"cut in two around a kill: {v.split[:5]}")
    if soak.unexpected:
        details.append(f"unexpected: {soak.unexpected[:5]}")
    if details:
        lines += ["", *(f"- {d}" for d in details)]
    return "\n".join(lines) + "\n"


# -- main -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--hours", type=float, default=None, help="soak length (default 2)")
    g.add_argument("--minutes", type=float, default=None, help="soak length, for checks")
    ap.add_argument("--kills", type=int, default=20, help="kill -9s over the run")
    ap.add_argument("--scale", type=float, default=0.03, help="time scale (0.03: 0.9 s interval)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument(
        "--warmup",
        type=float,
        default=1350.0,
        help="s of the longest process not fitted (at most a quarter of its life)",
    )
    ap.add_argument(
        "--kill-span",
        type=float,
        default=0.25,
        help="share of the run the kills fall in (the rest: one process)",
    )
    ap.add_argument("--no-bgp", action="store_true", help="no RIS Live look-alike")
    ap.add_argument(
        "--core-only",
        action="store_true",
        help="no census, no notification receivers (the first soaks' daemon)",
    )
    ap.add_argument("--census-every", type=float, default=20.0, help="minutes between censuses")
    ap.add_argument("--out", type=Path, default=None, help="keep logs and samples here")
    ap.add_argument("--no-write", action="store_true", help="print only; leave the docs alone")
    args = ap.parse_args(argv)
    args.duration = args.minutes * 60 if args.minutes is not None else (args.hours or 2.0) * 3600
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1 << 30)
    if os.geteuid() != 0:
        print("bench_soak: run as root (it builds network namespaces)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    from monitor.sim.world import World

    info = benchlib.machine()
    date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    out = args.out or Path(f"/tmp/bench-soak-{stamp}")
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    print("building the world (198.18.0.0/15 only)...", flush=True)
    with World.build() as w:
        soak = Soak(w, args, out)
        try:
            soak.run(args.duration)
        finally:
            if soak.daemon.running:
                soak.daemon.stop(timeout=30)
            if soak.ris is not None:
                with contextlib.suppress(Exception):
                    soak.ris.stop()
        # read while the world (its CA file, named in the config) is still there
        stored = read_store(soak.config)
        w.assert_no_leaks()
    v = check(soak, stored)
    faults = [t for t, name in soak.fault_log if name != "repair"]
    f = flatness(soak.lives, args.warmup, census_ends(out / "daemon.log"), faults)
    (out / "samples.json").write_text(
        json.dumps(
            {
                "lives": [
                    {
                        "pid": lf.pid,
                        "started": lf.started,
                        "ready": lf.ready,
                        "ended": lf.ended,
                        "how": lf.how,
                        "samples": [[s.t, s.uptime, s.rss, s.fds, s.threads] for s in lf.samples],
                    }
                    for lf in soak.lives
                ],
                "kills": [[k.at, k.why, k.pid, k.ready_again, k.open_ids] for k in soak.kills],
                "faults": soak.fault_log,
                "seen": {
                    i: {"entity": s.entity, "start": s.start, "kinds": sorted(s.kinds)}
                    for i, s in soak.seen.items()
                },
            }
        ),
        encoding="utf-8",
    )
    text = render(soak, v, f, args, info, date, time.time() - started)
    full = merge_subsection(HEADING, INTRO, SOAK_SUBHEADING, text, [SUBHEADING, SOAK_SUBHEADING])
    benchlib.publish(HEADING, full, not args.no_write)
    print(f"logs and samples kept in {out}")
    ok = v.events_ok and (f.flat or not f.judged) and not soak.unexpected
    print("soak verdict:", "PASS" if ok else "FAIL")
    if not args.out and ok:
        shutil.rmtree(out / "var", ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
