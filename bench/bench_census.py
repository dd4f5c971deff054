"""Census and block sampling, measured in the simulated world against the real daemon.

    sudo .venv/bin/python bench/bench_census.py [--rates 20,100] [--steady 600] [--runs 3]
        [--modes blackhole,unreachable] [--parallel 2] [--quick] [--no-write]

Three questions (issue 12), each answered at the receiver or from the daemon's own records:

1. *Politeness during a census.* The default world's configuration with `discover: true` on every
   entity and no stored census, so the daemon censuses every entity at start (the two /24s, then
   star-jv's /22, one after the other) while its ordinary probing goes on. In the DPRK namespace an
   AF_PACKET capture on the border link (`bench_politeness.Capture`, kernel receive timestamps)
   records every probe packet that arrives from the vantage (ICMP echo requests, TCP SYNs, UDP
   to :53: census, listed targets and samples alike). Over the census window (first census
   start to last census end, from `census.sqlite3`) we report the fullest one-second window and
   calendar second against `max_rate`, the seconds over it, the census's length and the share of
   `max_rate` it actually took (its probes / length / max_rate, against `discovery.share`), and
   the daemon's `probes_late_total` / `probes_skipped_total` (ordinary probes that lost their slot).
2. *Steady state.* After the census (plus a settling minute) the same capture counts, for
   `--steady` seconds at the default timings, the probe packets per /24 and extrapolates them to
   one hour, for the default world (every answering host listed) and for the same world with every
   entity given its prefixes only (judged by sampling E(b) alone).
3. *Detection delay of a blackout* (silent: routes blackholed; unreachable: routers answer host
   unreachable) at the default timings: the default world's listed targets (discover off, as
   `bench_detection.py`) against every entity given its prefixes only with `discover: true` and a
   census already stored (copied from the prefixes-only run of 2., so that the run starts in
   steady state: no census during the measurement). `scenarios.blackout_*` measure it.

`--long-warm SECONDS` adds blackouts with sampled blocks that long after the daemon's start (the
detector's belief has then seen most of E(b) answer); `--add-to RAW --census-from DIR` runs only
those and adds them to a saved result. `--detect-only --add-to RAW --census-from DIR` runs only
question 3 (`--variants`: listed, sampled, and sampled-census: the same sampled world with
star-jv's stored census made a day older, so that its census runs during the blackout; after the
run the worker waits for that census to end and reports E(b) per block against the stored one,
whether each block's census was trusted and when the next census comes), and replaces the
detection results of RAW (the politeness and steady-state ones are kept). Each run is a worker process (`--worker JSON`) with its
own world; at most `--parallel` worlds at
a time. The summary goes to the "Census and block sampling" section of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import dataclasses
import ipaddress
import json
import os
import shutil
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_politeness as politeness  # noqa: E402
import benchlib  # noqa: E402

SECTION = "## Census and block sampling"
DEFAULT_SHARE = 0.25  # discovery.share's default (monitor/discovery/params.py)
TRINOCULAR_PER_HOUR = 20  # Quan et al.: < 20 probes per hour per /24 block
SETTLE = 60.0  # after the census, before the steady-state window: samples reach certainty

Arrival = tuple[float, str, bool, str]  # (kernel time s, kind, SYN retransmission, dst address)


# -- the receiver: a capture in the DPRK namespace -------------------------------------------


class BlockCapture(politeness.Capture):
    """bench_politeness's capture (socket, kernel timestamps, thread), classifying packets from
    `source` to any of `blocks` and keeping each packet's destination address."""

    def __init__(self, ifname: str, source: str, blocks: list[str]) -> None:
        self.source = socket.inet_aton(source)
        self.nets = [ipaddress.IPv4Network(b) for b in blocks]
        self.arrivals: list[Arrival] = []
        super().__init__(ifname)

    def _classify(self, ts: int, pkt: bytes) -> None:
        if len(pkt) < 34 or pkt[12:14] != b"\x08\x00":
            return
        ihl = (pkt[14] & 0x0F) * 4
        proto, src, dst = pkt[23], pkt[26:30], pkt[30:34]
        if src != self.source:
            return
        addr = ipaddress.IPv4Address(dst)
        if not any(addr in n for n in self.nets):
            return
        l4 = 14 + ihl
        kind: str | None = None
        rtx = False
        if proto == 1 and len(pkt) > l4 and pkt[l4] == 8:
            kind = "icmp"
        elif proto == 6 and len(pkt) >= l4 + 14:
            sport, dport, seq = struct.unpack_from("!HHI", pkt, l4)
            flags = pkt[l4 + 13]
            if flags & 0x02 and not flags & 0x10:  # SYN without ACK: TCP and HTTP(S) probes
                kind = "tcp"
                key = (src, sport, dst, dport, seq)
                rtx = self.seen_syn.setdefault(key, ts) != ts
        elif proto == 17 and len(pkt) >= l4 + 8 and pkt[l4 + 2 : l4 + 4] == b"\x00\x35":
            kind = "dns"
        if kind is None:
            self.other += 1
            return
        with self.lock:
            self.arrivals.append((ts / 1e9, kind, rtx, str(addr)))

    def snapshot(self) -> list[Arrival]:
        with self.lock:
            return list(self.arrivals)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        self.sock.close()


# -- configurations ---------------------------------------------------------------------------


def world_config(
    world: Any,
    state_dir: Path,
    *,
    max_rate: float,
    discover: bool,
    prefixes_only: bool,
    share: float | None = None,
) -> str:
    """The world's configuration at the default timings (scenarios.scaled_config(1.0)), with
    `max_rate`, `discover` on every entity, every entity stripped to name/asn/prefixes if
    `prefixes_only`, the discovery defaults unless `share` is given."""
    from monitor.sim import scenarios

    kw = scenarios.scaled_config(1.0)
    kw["max_rate"] = max_rate
    doc: dict[str, Any] = yaml.safe_load(world.daemon_config(state_dir=str(state_dir), **kw))
    ents = []
    for ent in doc["entities"]:
        if prefixes_only:
            ent = {k: v for k, v in ent.items() if k in ("name", "asn", "prefixes")}
        if discover:
            ent["discover"] = True
        ents.append(ent)
    doc["entities"] = ents
    if share is not None:
        doc["discovery"] = {"share": share}
    return yaml.safe_dump(doc, sort_keys=False)


def census_runs(state_dir: Path) -> list[dict[str, Any]]:
    """The censuses the daemon stored: entity, started, finished, probes, answered."""
    path = state_dir / "census.sqlite3"
    if not path.exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        rows = db.execute(
            "SELECT entity, started, finished, probes, answered FROM census ORDER BY started"
        ).fetchall()
    finally:
        db.close()
    keys = ("entity", "started", "finished", "probes", "answered")
    return [dict(zip(keys, r, strict=True)) for r in rows]


def listed_icmp(config_text: str) -> set[str]:
    """The ICMP addresses listed in a world config (single addresses; CIDRs expanded)."""
    out: set[str] = set()
    for ent in yaml.safe_load(config_text)["entities"]:
        for a in ent.get("icmp", []):
            if "/" in str(a):
                out.update(str(h) for h in ipaddress.IPv4Network(a).hosts())
            else:
                out.add(str(a))
    return out


def counters(m: Any) -> dict[str, float]:
    """The daemon counters a census run reports (sums over labels; probes_total per kind)."""
    out = {
        "late": m.total("dprk_monitor_probes_late_total"),
        "skipped": m.total("dprk_monitor_probes_skipped_total"),
    }
    for lb, v in m.values("dprk_monitor_probes_total"):
        key = f"probes/{lb.get('entity')}/{lb.get('kind')}"
        out[key] = out.get(key, 0.0) + v
    return out


# -- worker: a census, then steady state -------------------------------------------------------


def census_worker(job: dict[str, Any]) -> dict[str, Any]:
    from monitor.sim.daemonproc import DaemonProcess
    from monitor.sim.world import World

    max_rate = float(job["max_rate"])
    share = job.get("share")
    eff_share = float(share) if share is not None else DEFAULT_SHARE
    with World.build() as w, tempfile.TemporaryDirectory(prefix="bench-census-") as tmp:
        state = Path(tmp) / "var"
        text = world_config(
            w,
            state,
            max_rate=max_rate,
            discover=True,
            prefixes_only=bool(job["prefixes_only"]),
            share=share,
        )
        cfg = Path(tmp) / "config.yaml"
        cfg.write_text(text, encoding="utf-8")
        blocks = sorted(w.blocks, key=ipaddress.IPv4Network)
        border = w.link("border", "dprk")
        cap: BlockCapture = w.call_in(
            "dprk",
            lambda: BlockCapture(border.b_if, w.vantage_addresses[0], blocks),
            timeout=10,
        )
        d = DaemonProcess(w, cfg, log_path=Path(tmp) / "daemon.log")
        entities = [e.name for e in w.spec.entities]
        samples: list[tuple[float, dict[str, float]]] = []  # (time, counters) every poll
        out: dict[str, Any] = {"job": job, "blocks": blocks}
        try:
            launched = time.time()
            d.start()
            ready = time.time()
            # expected census length: every address once at share x max_rate, plus margin
            size = 1024 + 256 + 256
            limit = size / (eff_share * max_rate) * 2 + 180
            deadline = time.time() + limit
            while True:
                m = d.metrics()
                samples.append((time.time(), counters(m)))
                done = all(
                    m.value("dprk_monitor_census_last_timestamp_seconds", None, entity=e)
                    is not None
                    for e in entities
                )
                if done:
                    break
                if time.time() > deadline or not d.running:
                    raise RuntimeError(f"census not done within {limit:.0f} s\n{d.log_tail(3000)}")
                time.sleep(1.0)
            census_end_seen = time.time()
            runs = census_runs(state)
            steady: dict[str, Any] = {}
            steady_s = float(job.get("steady", 0))
            if steady_s > 0:
                time.sleep(SETTLE)
                m0, t0 = counters(d.metrics()), time.time()
                time.sleep(steady_s)
                m1, t1 = counters(d.metrics()), time.time()
                steady = {"t0": t0, "t1": t1, "m0": m0, "m1": m1}
            status = d.status()
            out["discovery"] = status.get("discovery") if isinstance(status, dict) else None
            out["events"] = d.outages() or []
        finally:
            d.stop()
            time.sleep(1.0)
            drops = cap.drops()
            cap.close()
        arrivals = cap.snapshot()
        out.update(
            launched=launched,
            ready=ready,
            census_end_seen=census_end_seen,
            runs=runs,
            polls=samples,
            steady=steady,
            arrivals=arrivals,
            listed=sorted(listed_icmp(text)),
            capture_drops=drops,
            share=eff_share,
        )
        if job.get("save_census"):
            dst = Path(job["save_census"])
            dst.mkdir(parents=True, exist_ok=True)
            for f in state.glob("census.sqlite3*"):
                shutil.copy2(f, dst / f.name)
        return out


# -- worker: a blackout ------------------------------------------------------------------------


def detect_worker(job: dict[str, Any]) -> dict[str, Any]:
    from monitor.sim import scenarios
    from monitor.sim.daemonproc import DaemonProcess
    from monitor.sim.world import World

    sampled = job["variant"] != "listed"
    during = job["variant"] == "sampled-census"
    warm = float(job.get("warm", 0.0))
    stored: dict[str, int] = {}
    with World.build() as w, tempfile.TemporaryDirectory(prefix="bench-census-") as tmp:
        state = Path(tmp) / "var"
        state.mkdir()
        if sampled and job.get("census"):
            for f in Path(job["census"]).glob("census.sqlite3*"):
                shutil.copy2(f, state / f.name)
            if during:
                stored = age_census(state / "census.sqlite3", "star-jv", 2 * 86400.0)
            text = world_config(
                w,
                state,
                max_rate=scenarios.DEFAULT_MAX_RATE,
                discover=True,
                prefixes_only=True,
            )
        else:
            text = w.daemon_config(state_dir=str(state), **scenarios.scaled_config(1.0))
        cfg = Path(tmp) / "config.yaml"
        cfg.write_text(text, encoding="utf-8")
        d = DaemonProcess(w, cfg, log_path=Path(tmp) / "daemon.log")
        d.start()
        started = time.time()
        try:
            census_before = 0.0
            if warm:
                # the blackout comes `warm` seconds after the start (plus the scenario's own
                # warm-up): the sampler has drawn most of each E(b) by then
                time.sleep(max(0.0, started + warm - time.time()))
                m = d.metrics()
                census_before = m.total("dprk_monitor_probes_total", kind="census")
                if (
                    m.value(
                        "dprk_monitor_census_last_timestamp_seconds",
                        None,
                        entity="star-jv",
                    )
                    is None
                ):
                    raise RuntimeError(f"census not done {warm:.0f} s after start")
            name = "blackout_silent" if job["mode"] == "blackhole" else "blackout_unreachable"
            o = scenarios.SCENARIOS[name](scenarios.Runner(w, d, 1.0))
            m = d.metrics()
            census_probes = m.total("dprk_monitor_probes_total", kind="census") - census_before
            all_events = d.outages() or []
            after: dict[str, Any] | None = None
            if during:
                after = census_after(d, started, stored)
        finally:
            d.stop()
        out = dataclasses.asdict(o)
        out.update(
            job=job, census_probes=census_probes, all_events=len(all_events), census_after=after
        )
        return out


def age_census(path: Path, entity: str, by: float) -> dict[str, int]:
    """Make `entity`'s stored censuses `by` seconds older (so one is due at start); returns its
    stored E(b) size per block."""
    db = sqlite3.connect(path)
    try:
        db.execute(
            "UPDATE census SET started = started - ?, finished = finished - ? WHERE entity = ?",
            (by, by, entity),
        )
        db.commit()
        rows = db.execute(
            "SELECT block, SUM(responsive) FROM address WHERE entity = ? GROUP BY block",
            (entity,),
        ).fetchall()
    finally:
        db.close()
    return {str(b): int(n) for b, n in rows}


def census_after(d: Any, started: float, stored: dict[str, int]) -> dict[str, Any]:
    """After a blackout during star-jv's census: wait for the census to end, then its E(b)
    per block against the stored one, each block's trust and the next census (from the API)."""
    deadline = time.time() + 420
    while time.time() < deadline:
        t = d.metrics().value("dprk_monitor_census_last_timestamp_seconds", None, entity="star-jv")
        if t is not None and t > started:
            break
        time.sleep(2.0)
    doc = d.status()["discovery"]["entities"]["star-jv"]
    return {
        "blocks": [
            {
                "block": b["block"],
                "stored": stored.get(b["block"], 0),
                "after": b["responsive"],
                "left": len(b["left"]),
                "trusted": b.get("trusted"),
                "monitorable": b["monitorable"],
            }
            for b in doc["blocks"]
        ],
        "doubtful": doc.get("doubtful_censuses"),
        "last_census": doc.get("last_census"),
        "next_census": doc.get("next_census"),
        "running": doc.get("running"),
    }


# -- orchestration -----------------------------------------------------------------------------


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    t0 = time.time()
    p = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(job)],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if p.returncode != 0:
        return {
            "job": job,
            "error": (p.stderr or p.stdout)[-3000:],
            "wall": time.time() - t0,
        }
    out: dict[str, Any] = json.loads(p.stdout.strip().splitlines()[-1])
    out["wall"] = time.time() - t0
    return out


def run_all(jobs: list[dict[str, Any]], parallel: int, t0: float) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
        futs = [pool.submit(run_job, j) for j in jobs]
        for f in concurrent.futures.as_completed(futs):
            r = f.result()
            results.append(r)
            print(f"[{time.time() - t0:6.0f}s] {describe(r)}", flush=True)
    return results


def describe(r: dict[str, Any]) -> str:
    j = r["job"]
    head = f"{j['type']} {json.dumps({k: v for k, v in j.items() if k != 'type'})}"
    if "error" in r:
        return f"{head}: FAILED\n{r['error']}"
    if j["type"] == "census":
        c = census_summary(r)
        return (
            f"{head}: census {c['duration']:.0f} s, {c['census_probes']} probes, share used "
            f"{c['share_used']:.3f}, max 1 s window {c['max_sliding']}, calendar "
            f"{c['max_calendar']}, over cap {c['over_cap']}, late +{c['late']:.0f}, skipped "
            f"+{c['skipped']:.0f}, drops {r['capture_drops']} ({r['wall']:.0f} s)"
        )
    return (
        f"{head}: flagged {r['detect_delay']}, start error {r['start_error']}, closed "
        f"{r['close_delay']}, events {len(r['events'])}, census probes {r['census_probes']} "
        f"({r['wall']:.0f} s)"
    )


# -- analysis ------------------------------------------------------------------------------------


def census_summary(r: dict[str, Any]) -> dict[str, Any]:
    """The census window's figures, at the receiver and from the daemon."""
    runs = r["runs"]
    cap = float(r["job"]["max_rate"])
    start = min(x["started"] for x in runs)
    end = max(x["finished"] for x in runs)
    probes = sum(int(x["probes"]) for x in runs)
    busy = sum(x["finished"] - x["started"] for x in runs)
    arr = [a for a in r["arrivals"] if start <= a[0] <= end]
    times = [a[0] for a in arr]
    first = [a[0] for a in arr if not a[2]]
    per_sec = collections.Counter(int(t) for t in times)
    # whole life of the daemon, too (the census starts right at start-up)
    life = [a[0] for a in r["arrivals"]]

    def at(t: float) -> dict[str, float]:
        """Counters at the last poll before `t` (the first poll if none)."""
        best = r["polls"][0][1]
        for when, c in r["polls"]:
            if when <= t:
                best = c
        return dict(best)

    c0, c1 = at(start), r["polls"][-1][1]
    return {
        "start": start,
        "end": end,
        "duration": end - start,
        "busy": busy,
        "census_probes": probes,
        "answered": sum(int(x["answered"]) for x in runs),
        "per_entity": [
            (
                x["entity"],
                x["finished"] - x["started"],
                int(x["probes"]),
                int(x["answered"]),
            )
            for x in runs
        ],
        "share_used": probes / busy / cap if busy > 0 else 0.0,
        # each census ends with a wait for its last answer (up to the 3 s timeout): without it
        "share_sending": probes / (busy - 3.0 * len(runs)) / cap if busy > 3.0 * len(runs) else 0.0,
        "arrived": len(times),
        "rtx": len(times) - len(first),
        "avg": len(times) / (end - start) if end > start else 0.0,
        "max_sliding": politeness.max_sliding(times),
        "max_sliding_first": politeness.max_sliding(first),
        "max_calendar": max(per_sec.values(), default=0),
        "over_cap": sum(1 for n in per_sec.values() if n > cap),
        "over_cap_sliding": politeness.worst_window(times)[1] > cap,
        "life_sliding": politeness.max_sliding(life),
        "late": c1.get("late", 0.0) - c0.get("late", 0.0),
        "skipped": c1.get("skipped", 0.0) - c0.get("skipped", 0.0),
        "late_total": c1.get("late", 0.0),
        "skipped_total": c1.get("skipped", 0.0),
    }


def block_of(addr: str, blocks: list[str]) -> str:
    a = ipaddress.IPv4Address(addr)
    return next((b for b in blocks if a in ipaddress.IPv4Network(b)), "?")


def steady_summary(r: dict[str, Any]) -> dict[str, Any] | None:
    """Per /24: probe packets per hour at the receiver in the steady-state window, by kind, the
    ICMP ones split into listed addresses and the others (samples of E(b), extra probes)."""
    s = r.get("steady") or {}
    if not s:
        return None
    t0, t1 = s["t0"], s["t1"]
    hours = (t1 - t0) / 3600
    listed = set(r["listed"])
    blocks: list[str] = r["blocks"]
    per: dict[str, collections.Counter[str]] = {b: collections.Counter() for b in blocks}
    for t, kind, rtx, dst in r["arrivals"]:
        if not t0 <= t < t1:
            continue
        c = per[block_of(dst, blocks)]
        c["all"] += 1
        if rtx:
            c["rtx"] += 1
        elif kind == "icmp":
            c["icmp listed" if dst in listed else "icmp other"] += 1
        else:
            c[kind] += 1
    # bursts: 3 or more probe packets into one block within 250 ms (at 20/s the limiter spaces
    # them 50 ms apart); reported only where the listed addresses got more than one probe a round
    bursts: dict[str, int] = {}
    for b in blocks:
        ts = sorted(a[0] for a in r["arrivals"] if t0 <= a[0] < t1 and block_of(a[3], blocks) == b)
        i = 0
        while i + 2 < len(ts):
            if ts[i + 2] - ts[i] <= 0.25:
                bursts[b] = bursts.get(b, 0) + 1
                j = i
                while j < len(ts) and ts[j] - ts[i] <= 0.25:
                    j += 1
                i = j
            else:
                i += 1
    m0, m1 = s["m0"], s["m1"]
    delta = {k: m1.get(k, 0.0) - m0.get(k, 0.0) for k in m1 if k.startswith("probes/")}
    return {
        "seconds": t1 - t0,
        "bursts": bursts,
        "listed_per_block": {b: sum(1 for a in listed if block_of(a, blocks) == b) for b in blocks},
        "per_hour": {b: {k: v / hours for k, v in c.items()} for b, c in per.items()},
        "daemon_per_hour": {k: v / hours for k, v in delta.items() if v},
        "late": m1.get("late", 0.0) - m0.get("late", 0.0),
        "skipped": m1.get("skipped", 0.0) - m0.get("skipped", 0.0),
    }


def benchlib_iso(text: str) -> float:
    """Epoch seconds of an ISO 8601 UTC time from the API."""
    import datetime as dt

    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def fmt(values: list[float], unit: str = " s") -> str:
    return benchlib.spread(values, ".1f") + (unit if values else "")


# -- report --------------------------------------------------------------------------------------


def render(
    results: list[dict[str, Any]],
    info: dict[str, str],
    date: str,
    command: str,
    wall: float,
    load_after: str,
    detect_info: dict[str, str] | None = None,
) -> str:
    ok = [r for r in results if "error" not in r]
    census = sorted(
        (r for r in ok if r["job"]["type"] == "census"),
        key=lambda r: (
            r["job"]["prefixes_only"],
            r["job"]["max_rate"],
            r["job"].get("share", 0),
        ),
    )
    detect = [r for r in ok if r["job"]["type"] == "detect"]
    lines = [
        SECTION,
        "",
        "Measured by `bench/bench_census.py` (as root) in the simulated world (network "
        "namespaces, ideal paths) against the real daemon, at the **default timings** (interval "
        "30 s, timeout 3 s, detection defaults; no time scaling), at most two worlds at a time.",
        "Probe packets are counted **at the receiver**: an AF_PACKET capture in the DPRK "
        "namespace on its link to the border router (`bench_politeness.Capture`, kernel receive "
        "timestamps) records every ICMP echo request, TCP SYN (TCP and HTTP(S) probes; the "
        "kernel's SYN retransmissions counted too) and UDP query to :53 that arrives from the "
        "vantage for any of the six /24s, census probes, listed targets and samples alike.",
        "",
        f"- date: {date}; wall time {wall / 60:.0f} min; command: `{command}`",
        f"- machine: {info['cpu']}; kernel {info['kernel']}; Python {info['python']}; load "
        f"average {info['load']} at the start, {load_after} at the end: **the machine is shared** "
        "(other benchmarks and test runs were going on), so durations carry its noise; counts "
        "and caps do not depend on it.",
        "",
        "### Politeness during a census",
        "",
        "No stored census, `discover: true` on every entity: the daemon censuses every entity "
        "at start, one at a time (kptc-unicom's and satgate's /24s, 256 addresses each, then "
        "star-jv's /22, 1,024), while its ordinary probing goes on. *Listed*: the world's default "
        "configuration (every answering host listed, plus TCP, HTTP and DNS targets); "
        "*prefixes only*: every entity stripped to its prefixes (nothing to probe but the census "
        "until it is done). The census window runs from the first census's start to the last "
        "one's end (`census.sqlite3`); *share used* = census probes / time censusing / max_rate; "
        "*while sending*: the same without the wait for each census's last answer (3 s, the "
        "timeout, per entity); *late / skipped*: the daemon's `probes_late_total` / "
        "`probes_skipped_total` over the census (ordinary probes sent more than 1 s after their "
        "slot / dropped).",
        "",
        "| config | max_rate | share | census | census probes (answered) | share used "
        "| packets in window (avg /s) | fullest 1 s window | fullest calendar second "
        "| seconds over max_rate | late / skipped |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in census:
        j = r["job"]
        c = census_summary(r)
        lines.append(
            f"| {'prefixes only' if j['prefixes_only'] else 'listed'} | {j['max_rate']:g} "
            f"| {r['share']:g} ({r['share'] * j['max_rate']:g}/s) | {c['duration']:.0f} s "
            f"| {c['census_probes']:,} ({c['answered']}) | {c['share_used']:.3f} "
            f"({c['share_used'] * j['max_rate']:.2f}/s); {c['share_sending']:.3f} while "
            f"sending | {c['arrived']:,} ({c['avg']:.2f}) "
            f"| {c['max_sliding']} | {c['max_calendar']} | **{c['over_cap']}** "
            f"| {c['late']:.0f} / {c['skipped']:.0f} |"
        )
    lines.append("")
    per_ent = []
    for r in census:
        c = census_summary(r)
        j = r["job"]
        per_ent.append(
            f"- {'prefixes only' if j['prefixes_only'] else 'listed'}, max_rate "
            f"{j['max_rate']:g}, share {r['share']:g}: "
            + "; ".join(
                f"{e} {s:.0f} s, {p:,} probes, {a} answered ({p / s:.2f}/s)"
                for e, s, p, a in c["per_entity"]
            )
            + f"; the daemon's whole life: fullest 1 s window {c['life_sliding']}; "
            f"capture drops {r['capture_drops']}, SYN retransmissions in the window {c['rtx']}"
        )
    lines += ["Per entity (census start to end):", "", *per_ent, ""]

    summaries = [(r, steady_summary(r)) for r in census if r.get("steady")]
    steady = [(r, s) for r, s in summaries if s is not None]
    if steady:
        lines += [
            "### Probes per hour per /24 in steady state",
            "",
            "After the census and a settling minute, the capture counts each /24's probe packets "
            f"for {steady[0][1]['seconds'] / 60:.0f} min at the default timings (interval "
            "30 s) and extrapolates to one hour (x 3600 / window). *ICMP listed*: echo requests "
            "to addresses listed in the config; *ICMP other*: to any other address (the samples "
            "of E(b), and extra probes when a sample fails); *TCP* counts SYNs of TCP and "
            "HTTP(S) probes. A census adds 256 echo requests per /24 a day (10.7/h spread over "
            "the day, plus one retry per silent member of E(b)). Trinocular: fewer than "
            f"{TRINOCULAR_PER_HOUR} probes per hour per /24 (11-minute rounds, 1-15 probes a "
            "round).",
            "",
            "| config | block | all /h | ICMP listed /h | ICMP other /h | TCP /h | DNS /h "
            "| vs Trinocular's < 20/h |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r, s in steady:
            name = "prefixes only" if r["job"]["prefixes_only"] else "listed"
            for b in r["blocks"]:
                ph = s["per_hour"][b]
                total = ph.get("all", 0.0)
                lines.append(
                    f"| {name} | {b} | {total:.0f} | {ph.get('icmp listed', 0.0):.0f} "
                    f"| {ph.get('icmp other', 0.0):.0f} | {ph.get('tcp', 0.0):.0f} "
                    f"| {ph.get('dns', 0.0):.0f} | x{total / TRINOCULAR_PER_HOUR:.1f} |"
                )
        lines.append("")
        for r, s in steady:
            name = "prefixes only" if r["job"]["prefixes_only"] else "listed"
            daemon = ", ".join(
                f"{k.split('/', 1)[1]} {v:.0f}" for k, v in sorted(s["daemon_per_hour"].items())
            )
            lines.append(
                f"- {name}: the daemon's `probes_total` per hour in the same window (entity/kind):"
                f" {daemon}; late / skipped {s['late']:.0f} / {s['skipped']:.0f}"
            )
            rounds = s["seconds"] / 30.0
            for b, n in sorted(s["bursts"].items()):
                listed_n = s["listed_per_block"][b]
                if s["per_hour"][b].get("icmp listed", 0.0) <= 1.1 * listed_n * 120:
                    continue  # no extra probes: clusters of ordinary slots
                lines.append(
                    f"- {name}, {b}: {n} bursts of 3 or more probes within 250 ms in "
                    f"{rounds:.0f} rounds ({listed_n} listed addresses: "
                    f"{listed_n * 120} probes/h expected without them, "
                    f"{s['per_hour'][b].get('all', 0.0):.0f}/h measured): extra probes of every "
                    "listed address at once, once a round, with nothing failing: apparently the "
                    "detector's suspicion burst, kept going by its own answers (milliseconds "
                    "apart, they shrink the learned usual gap between answers, so the round's "
                    "longest gap between slots sets it off again); not census-related, reported"
                )
        lines.append("")

    if detect:
        by: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for r in detect:
            by.setdefault((r["job"]["variant"], r["job"]["mode"]), []).append(r)
        failed = [r for r in results if "error" in r and r["job"]["type"] == "detect"]
        lines += [
            "### Detection delay of a blackout: sampled blocks vs listed addresses",
            "",
            "Default timings (scale 1.0), one fresh world and daemon per run; star-jv's outage "
            "measured by `monitor/sim/scenarios.py` (`blackout_silent`: every upstream drops "
            "silently; `blackout_unreachable`: routes withdrawn, routers answer host "
            "unreachable, rate-limited). *Listed*: the world's default configuration, discover "
            "off (as in the Detection section). *Sampled*: every entity given its prefixes "
            "only, `discover: true`, and a census already stored (copied from the prefixes-only "
            "run above), so each block is judged on the samples of its E(b) alone and no census "
            "runs during the measurement. Median (min-max). *flagged*: fault → `outage_active` 1;"
            " *start error*: event start - fault; *closed*: repair → `outage_active` 0; *false "
            "events*: star-jv events beyond the one expected.",
            "",
        ]
        if detect_info:
            lines += [
                f"- these runs: {detect_info['date']}, code at commit {detect_info['commit']}; "
                f"command: `{detect_info['command']}`; load average {detect_info['load']} at "
                f"the start, {detect_info['load_after']} at the end (shared machine); wall "
                f"time {float(detect_info['wall']) / 60:.0f} min",
                "",
            ]
        lines += [
            "| targets | blackout | runs ok | flagged | start error | closed | end error "
            "| events | false events |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        if any(k[0] == "sampled-census" for k in by):
            lines[-2:-2] = [
                "*Sampled, census running*: the same sampled world, with star-jv's stored census "
                "made two days older, so that the daemon censuses star-jv's /22 (1,024 addresses "
                "at 5/s, about 220 s) from its start: the blackout (two intervals after the start,"
                " held three) falls inside that census. After the run the census is let finish "
                "and star-jv's E(b) is read back (below the table).",
                "",
            ]
        if any(k[0] == "sampled-long" for k in by):
            lines[-2:-2] = [
                "*Sampled, N min after start*: the same, but the blackout comes N minutes after "
                "the daemon's start rather than two intervals: by then the sampler has drawn "
                "most members of each E(b) once, and the detector's belief counts an address "
                "only once it has answered since the start (see the note below).",
                "",
            ]
        order = {"listed": 0, "sampled": 1, "sampled-census": 2, "sampled-long": 3}
        for key in sorted(by, key=lambda k: (k[1], order.get(k[0], 3))):
            rs = by[key]
            n_fail = sum(1 for f in failed if (f["job"]["variant"], f["job"]["mode"]) == key)

            def vals(k: str, rs: list[dict[str, Any]] = rs) -> list[float]:
                return [float(x[k]) for x in rs if x.get(k) is not None]

            counts = sorted({len(x["events"]) for x in rs})
            false = sum(max(0, len(x["events"]) - 1) for x in rs)
            missed = sum(1 for x in rs if not x["events"])
            census_in_run = sum(x["census_probes"] for x in rs)
            label = key[0]
            if label == "sampled-long":
                label = f"sampled, {rs[0]['job']['warm'] / 60:.0f} min after start"
            elif label == "sampled-census":
                label = "sampled, census running"
            lines.append(
                f"| {label} | {key[1]} | {len(rs)}/{len(rs) + n_fail} "
                f"| {fmt(vals('detect_delay'))} | {fmt(vals('start_error'))} "
                f"| {fmt(vals('close_delay'))} | {fmt(vals('end_error'))} "
                f"| {'/'.join(map(str, counts))} | {false}"
                + (f" ({missed} missed)" if missed else "")
                + (f"; census probes during runs: {census_in_run:.0f}" if census_in_run else "")
                + " |"
            )
        lines.append("")
        during = [r for r in detect if r.get("census_after")]
        if during:
            lines += [
                "star-jv's E(b) after the census that the blackout fell into (stored → after, "
                "per /24; *untrusted*: the census saw the block down at some moment, so it only "
                "added addresses; *next census*: minutes after that census):",
                "",
            ]
            for r in sorted(during, key=lambda r: (r["job"]["mode"], r["job"]["run"])):
                a = r["census_after"]
                blocks = ", ".join(
                    f"{b['block']} {b['stored']}→{b['after']}"
                    + ("" if b["trusted"] else " untrusted")
                    + ("" if b["monitorable"] else " UNMONITORABLE")
                    for b in a["blocks"]
                )
                nxt = ""
                if a.get("last_census") and a.get("next_census") and not a.get("running"):
                    gap = benchlib_iso(a["next_census"]) - benchlib_iso(a["last_census"])
                    nxt = f"; next census {gap / 60:.0f} min later"
                lines.append(
                    f"- {r['job']['mode']} run {r['job']['run']}: {blocks}; doubtful "
                    f"censuses {a.get('doubtful')}{nxt}"
                    + ("; census still running at the end" if a.get("running") else "")
                )
            lines.append("")
        if any(k[0] != "listed" for k in by) and detect_info:
            lines += [
                "Note (sampled blocks since the E(b) seeding fix): the census's E(b) reaches "
                "the blocks' belief at start (`Detector.set_samples` seeds every member with "
                "its latest census answer), so sampled blocks are judged from their first "
                "samples, with no warm-up. What still separates sampled from listed: (1) the "
                "first failed probe: with one sample per /24 per 30 s round, star-jv's four "
                "blocks get four probes a round (one every 7.5 s on average) where its 35 listed "
                "addresses get about one a second, so the first failure (the event's start) "
                "comes about 4.9 s after the fault instead of 0.3 s (the same every run: the "
                "sampler's draws are seeded per block and the round's slots are fixed); (2) the "
                "confirmation, from that first failure to the event (flagged minus start "
                "error): a block of 3-4 members (three of star-jv's four /24s) is confirmed by "
                "the detector's extra and confirmation probes of those few addresses, where "
                "listed targets give dozens. *Sampled, census running*: the census keeps E(b) "
                "whole through the blackout (list above). Its probes do not feed the detector "
                "and take at most 5 of the 20 probes/s, behind re-probes and samples; in the "
                "unreachable mode they also draw host-unreachable errors from the routers, "
                "whose ICMP errors are rate-limited, which is a likely (not verified) reason "
                "why that row is slower than the sampled one without a census.",
                "",
            ]
        elif any(k[0] != "listed" for k in by):
            lines += [
                "Note (why sampled blocks are slower right after a start): the census's E(b) is "
                "handed to the detector (`Detector.set_samples`) but not to the blocks' belief "
                "(`BlockBelief`), which still learns E(b) from answers: a sampled address counts "
                "for its block only once it has answered since the daemon started, and the "
                "silence of any other member of E(b) is ignored (`not in E(b): its silence says "
                "nothing`). With one sample per block and round, drawn least recently drawn "
                "first, a block of n addresses needs about n rounds (n x 30 s) before its "
                "samples' failures count; until then a blackout is seen only when a sample "
                "happens to hit an address that has answered already (or a burst does). Reported "
                "as a bug (issue 12). The sampler's random draws are seeded per block "
                "(`random.Random(entity/block)`), so runs of the same configuration repeat the "
                "same draws: hence the narrow spreads.",
                "",
            ]
    errors = [r for r in results if "error" in r]
    if errors:
        lines += [f"{len(errors)} run(s) failed:", ""]
        for e in errors:
            last = [ln for ln in e["error"].splitlines() if ln.strip()][-1:] or ["?"]
            lines.append(f"- {json.dumps(e['job'])}: `{last[0][:200]}`")
        lines.append("")
    return "\n".join(lines)


# -- main ----------------------------------------------------------------------------------------


def render_raw(raw: dict[str, Any]) -> str:
    """The section from a saved raw results file (bench/results/census-*.json)."""
    return render(
        raw["results"],
        raw["info"],
        raw["date"],
        raw["command"],
        raw["wall"],
        raw["load_after"],
        raw.get("detect_info"),
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--rates", default="20,100", help="max_rate of the census runs (listed)")
    ap.add_argument("--steady", type=float, default=600.0, help="steady-state window, seconds")
    ap.add_argument("--runs", type=int, default=3, help="blackout runs per variant and mode")
    ap.add_argument("--modes", default="blackhole,unreachable", help="blackout modes")
    ap.add_argument("--parallel", type=int, default=2, help="worlds at a time (at most 2 here)")
    ap.add_argument(
        "--quick",
        action="store_true",
        help="short check: max_rate 100, 60 s steady, 1 run",
    )
    ap.add_argument(
        "--stress-share",
        type=float,
        default=0.9,
        help="one more census at the first rate with this discovery.share (0: skip)",
    )
    ap.add_argument(
        "--long-warm",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="also blackouts with sampled blocks this long after a start with no stored census",
    )
    ap.add_argument("--long-runs", type=int, default=1, help="runs per mode of --long-warm")
    ap.add_argument("--add-to", help="run only the --long-warm jobs, add them to this raw file")
    ap.add_argument("--census-from", help="with --add-to: a directory holding a census.sqlite3")
    ap.add_argument(
        "--detect-only",
        action="store_true",
        help="with --add-to and --census-from: run only the blackout detection runs "
        "(--variants x --modes x --runs) and replace RAW's detection results",
    )
    ap.add_argument(
        "--variants",
        default="listed,sampled,sampled-census",
        help="detection variants of --detect-only",
    )
    ap.add_argument("--no-write", action="store_true", help="print only")
    ap.add_argument("--from-raw", help="re-render a saved bench/results/census-*.json")
    args = ap.parse_args()
    if args.worker:
        job = json.loads(args.worker)
        fn = census_worker if job["type"] == "census" else detect_worker
        print(json.dumps(fn(job)))
        return 0
    command = "sudo .venv/bin/python bench/bench_census.py " + " ".join(sys.argv[1:])
    if args.from_raw:
        raw = json.loads(Path(args.from_raw).read_text(encoding="utf-8"))
        text = render_raw(raw)
        benchlib.publish(SECTION, text, not args.no_write)
        return 0
    if os.geteuid() != 0:
        print("bench_census needs root (network namespaces)", file=sys.stderr)
        return 2
    long_jobs: list[dict[str, Any]] = [
        {
            "type": "detect",
            "variant": "sampled-long",
            "mode": m,
            "run": i,
            "warm": args.long_warm,
            "census": args.census_from,
        }
        for i in range(args.long_runs if args.long_warm > 0 else 0)
        for m in [x for x in args.modes.split(",") if x]
    ]
    if args.detect_only:
        if not (args.add_to and args.census_from):
            print("--detect-only needs --add-to RAW and --census-from DIR", file=sys.stderr)
            return 2
        raw = json.loads(Path(args.add_to).read_text(encoding="utf-8"))
        jobs = [
            {"type": "detect", "variant": v, "mode": m, "run": i, "census": args.census_from}
            for i in range(args.runs)
            for m in [x for x in args.modes.split(",") if x]
            for v in [x for x in args.variants.split(",") if x]
        ]
        load0 = f"{os.getloadavg()[0]:.2f}"
        t0 = time.time()
        new = run_all(jobs, args.parallel, t0)
        raw["results"] = [r for r in raw["results"] if r["job"]["type"] != "detect"] + new
        raw["detect_info"] = {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t0)),
            "commit": benchlib.commit(),
            "command": command,
            "load": load0,
            "load_after": f"{os.getloadavg()[0]:.2f}",
            "wall": f"{time.time() - t0:.0f}",
        }
        Path(args.add_to).write_text(json.dumps(raw), encoding="utf-8")
        text = render_raw(raw)
        benchlib.publish(SECTION, text, not args.no_write)
        return 1 if any("error" in r for r in new) else 0
    if args.add_to:
        raw = json.loads(Path(args.add_to).read_text(encoding="utf-8"))
        t0 = time.time()
        raw["results"] += run_all(long_jobs, args.parallel, t0)
        raw["wall"] += time.time() - t0
        raw["load_after"] = f"{os.getloadavg()[0]:.2f}"
        raw["command"] += f"; then {command}"
        Path(args.add_to).write_text(json.dumps(raw), encoding="utf-8")
        text = render(
            raw["results"],
            raw["info"],
            raw["date"],
            raw["command"],
            raw["wall"],
            raw["load_after"],
        )
        benchlib.publish(SECTION, text, not args.no_write)
        return 0
    if args.quick:
        args.rates, args.steady, args.runs = "100", 60.0, 1
        args.modes = args.modes.split(",")[0]
    rates = [float(x) for x in args.rates.split(",") if x]
    modes = [m for m in args.modes.split(",") if m]
    info = benchlib.machine()
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    t0 = time.time()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-census-db-") as keep:
        seed = Path(keep) / "census"
        # phase 1: a census at the default max_rate, listed and prefixes only, then steady state;
        # the prefixes-only run's census seeds the sampled blackout runs.
        first = [
            {
                "type": "census",
                "max_rate": rates[0],
                "prefixes_only": False,
                "steady": args.steady,
            },
            {
                "type": "census",
                "max_rate": rates[0],
                "prefixes_only": True,
                "steady": args.steady,
                "save_census": str(seed),
            },
        ]
        results += run_all(first, args.parallel, t0)
        rest: list[dict[str, Any]] = [
            {"type": "census", "max_rate": r, "prefixes_only": False, "steady": 0}
            for r in rates[1:]
        ]
        if args.stress_share > 0:
            # the cap under pressure: a census allowed nearly all of max_rate beside probing
            rest.append(
                {
                    "type": "census",
                    "max_rate": rates[0],
                    "prefixes_only": False,
                    "steady": 0,
                    "share": args.stress_share,
                }
            )
        if seed.exists():
            variants = ["listed", "sampled"]
        else:
            variants = ["listed"]
            print(
                "no stored census from the prefixes-only run: sampled runs skipped",
                flush=True,
            )
        rest += [
            {"type": "detect", "variant": v, "mode": m, "run": i, "census": str(seed)}
            for i in range(args.runs)
            for m in modes
            for v in variants
        ]
        rest += long_jobs
        results += run_all(rest, args.parallel, t0)
    wall = time.time() - t0
    load_after = f"{os.getloadavg()[0]:.2f}"
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    raw_path = ROOT / "bench" / "results" / f"census-{int(t0)}.json"
    raw_path.write_text(
        json.dumps(
            {
                "results": results,
                "info": info,
                "date": date,
                "command": command,
                "wall": wall,
                "load_after": load_after,
            }
        ),
        encoding="utf-8",
    )
    text = render(results, info, date, command, wall, load_after)
    benchlib.publish(SECTION, text, not args.no_write)
    print(f"raw: {raw_path}")
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
