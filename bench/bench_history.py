"""The embedded history: write rate and size with the default configuration's shape, and the
worst stall of the daemon's event loop while /api/v1/history is served with 30 days stored.

    .venv/bin/python bench/bench_history.py [--days 30] [--window 20] [--runs 3]
        [--keep DIR] [--before CODE_DIR] [--no-write]

1. Shape: each entity of config/dprk.yaml as a point would hold it (its kinds' target counts,
   its /24 blocks, its prefixes), at the default tiers (10 s kept 2 d, 1 min 30 d, 10 min 730 d).
2. Writes: `--days` of 10 s steps for every entity, one `add()` per step as the daemon does,
   through the store's own writer thread (downsampling and retention included, on a clock that
   follows the points). Points per second = points / wall time until the last is committed.
   The loop's share per step (`Sampler.close` + `add`) is timed apart. Size = the database's
   used pages after the first day (all three tiers) and at the end (retention applied).
3. Serving: a real daemon (`python -m monitor run`, loopback targets only, BGP off, the shipped
   probing and detection blocks) started on that database (its points end now), while a
   separate process polls `GET /healthz` every 10 ms on a keep-alive connection (the loop
   answers only when it runs: the worst latency is the longest stall, within 10 ms) and one
   client asks in turn for the history of the last 24 h, 7 d and 30 d (automatic step), 12 h
   at 10 s and 3 d at 1 min (4,320 points each, near the 5,000 an answer may hold), for
   `--window` seconds, each range ending at the stored points' end. Before that, the same
   polling with no request for `--window / 2` seconds: the control (the loaded machine's own
   noise). `--runs` times, each a fresh daemon on a fresh copy of the same database.

`--keep DIR` fills DIR once (the database and the write figures, `fill.json`) and reuses it
on the next runs (the write figures are then those of that fill). `--before CODE_DIR` also
serves, in the same way and the same session, with the `monitor` package found in CODE_DIR
(e.g. an older commit's tree: `git archive COMMIT monitor | tar -x -C CODE_DIR`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT))

import bench_longlife  # noqa: E402
import benchlib  # noqa: E402

from monitor import config as config_mod  # noqa: E402
from monitor.config import HistoryConfig  # noqa: E402
from monitor.detect.belief import block_of  # noqa: E402
from monitor.detect.model import State, iso  # noqa: E402
from monitor.history import HistoryStore, tiers  # noqa: E402
from monitor.history.sampler import EntitySnapshot, Sampler, Snapshot, bucket  # noqa: E402
from monitor.history.store import FILENAME  # noqa: E402
from monitor.probes.base import target_address  # noqa: E402

HEADING = "## History"
DAY = 86_400


def shapes() -> list[EntitySnapshot]:
    """Each entity of the default configuration as the sampler sees it at a step's end."""
    cfg = config_mod.load(ROOT / "config" / "dprk.yaml")
    out = []
    for e in cfg.entities:
        kinds: dict[str, int] = {}
        blocks: set[str] = set()
        for t in e.targets.all():
            kinds[t.kind.value] = kinds.get(t.kind.value, 0) + 1
            addr = target_address(t)
            if addr is not None:
                blocks.add(str(block_of(addr)))
        out.append(
            EntitySnapshot(
                e.name,
                State.UP,
                kinds,
                {k: max(0, n - 1) for k, n in kinds.items()},
                {b: 0.9987 for b in sorted(blocks)},
                {str(p): 0.97 for p in e.prefixes},
            )
        )
    return out


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def used_bytes(path: Path) -> tuple[int, dict[int, int], dict[str, float]]:
    """Bytes in use, rows per step, and per entity the bytes of one of its rows (its values'
    mean length plus the database's mean overhead per row)."""
    with sqlite3.connect(path) as c:
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages = c.execute("PRAGMA page_count").fetchone()[0]
        free = c.execute("PRAGMA freelist_count").fetchone()[0]
        size = (pages - free) * c.execute("PRAGMA page_size").fetchone()[0]
        rows = dict(c.execute("SELECT step, count(*) FROM points GROUP BY step").fetchall())
        (payload,) = c.execute("SELECT sum(length(data)) FROM points").fetchone()
        per = c.execute(
            "SELECT s.entity, avg(length(p.data)) FROM points p JOIN series s "
            "ON s.id = p.series GROUP BY s.entity"
        ).fetchall()
    overhead = (size - payload) / max(1, sum(rows.values()))
    return (
        int(size),
        {int(k): int(v) for k, v in rows.items()},
        {str(e): float(n) + overhead for e, n in per},
    )


def fill(state: Path, days: int, end: float) -> dict[str, Any]:
    """Write `days` of 10 s steps ending at `end`; figures of the writes and of the size."""
    snaps = shapes()
    h = HistoryConfig()
    clock = Clock()
    store = HistoryStore(state, tiers(h), clock=clock)
    sampler = Sampler(h.resolution)
    step = h.resolution
    start = bucket(end - days * DAY, step)
    n_steps = days * DAY // step
    loop_us: list[float] = []
    first_day: dict[str, Any] = {}
    t_wall = time.perf_counter()
    cpu0 = time.process_time()
    written_at_day = 0
    for i in range(n_steps):
        t = start + i * step
        clock.t = t + step
        # The loop's part of a step: a few probe results, close, hand over.
        for s in snaps:
            sampler.observe(s.name, "icmp", "a", True, 0.3)
        c0 = time.perf_counter()
        points = sampler.close(t, Snapshot(snaps, True))
        store.add(points)
        loop_us.append((time.perf_counter() - c0) * 1e6)
        if i + 1 == DAY // step:
            store.flush(600)
            took = time.perf_counter() - t_wall
            size, rows, row_bytes = used_bytes(state / FILENAME)
            written_at_day = store.written
            first_day = {
                "seconds": took,
                "points": store.written,
                "size": size,
                "rows": rows,
                "row_bytes": row_bytes,
            }
        # The queue holds an hour of steps: give the writer its turn as real time would.
        if i % 300 == 299:
            store.flush(600)
    store.flush(600)
    took = time.perf_counter() - t_wall
    cpu = time.process_time() - cpu0
    size, rows, _ = used_bytes(state / FILENAME)
    written, dropped = store.written, dict(store.dropped)
    store.close()
    return {
        "entities": [s.name for s in snaps],
        "shape": {
            s.name: {"targets": dict(s.targets), "blocks": len(s.blocks), "prefixes": len(s.bgp)}
            for s in snaps
        },
        "points": written,
        "dropped": dropped,
        "seconds": took,
        "cpu": cpu,
        "rate": written / took,
        "rate_day": first_day["points"] / first_day["seconds"],
        "loop_us_median": statistics.median(loop_us),
        "loop_us_p99": sorted(loop_us)[int(0.99 * len(loop_us))],
        "day": first_day,
        "end": {"size": size, "rows": rows},
        "written_day": written_at_day,
    }


def serve(
    state: Path, window: float, every: float, end: float, code: Path = ROOT
) -> dict[str, Any]:
    """One run: a fresh daemon (the `monitor` package of `code`) on `state`; the control,
    then the requests, each range ending at `end` (the stored points' end)."""
    listeners = bench_longlife.Listeners(10)
    port = bench_longlife.free_port()
    run = state.parent
    cfg = run / "config.yaml"
    text = bench_longlife.daemon_config(state, port, listeners.ports, icmp=os.geteuid() == 0)
    cfg.write_text(text, encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(code), PYTHONUNBUFFERED="1")
    log = open(run / "daemon.log", "wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor", "run", "--config", str(cfg)],
        stdout=log,
        stderr=log,
        env=env,
        cwd=str(code),
    )
    poller: subprocess.Popen[bytes] | None = None
    try:
        benchlib.wait_http_200(
            "/proc/self/ns/net",
            "127.0.0.1",
            port,
            "/readyz",
            time.monotonic() + 120,
            alive=lambda: proc.poll() is None,
        )
        load = os.getloadavg()[0]
        samples = run / "healthz.json"
        poller = subprocess.Popen(
            [sys.executable, __file__, "--poller", str(port), str(samples), "--every", str(every)],
            cwd=str(ROOT),
        )
        time.sleep(1.0)
        # Baseline: the same polling with no request, for the machine's own noise.
        base_start = time.monotonic()
        time.sleep(window / 2)
        base_end = time.monotonic()
        until = {"until": iso(end)}
        asks = {
            "24 h (auto)": {"since": iso(end - DAY), **until},
            "7 d (auto)": {"since": iso(end - 7 * DAY), **until},
            "30 d (auto)": {"since": iso(end - 30 * DAY), **until},
            "12 h at 10 s": {"since": iso(end - DAY / 2), "step": "10", **until},
            "3 d at 1 min": {"since": iso(end - 3 * DAY), "step": "60", **until},
        }
        reqs: list[tuple[str, float, float, int, int, int]] = []
        stop = time.monotonic() + window
        while not reqs or time.monotonic() < stop:
            for name, q in asks.items():
                path = "/api/v1/history?" + urlencode({"entity": "star-jv", **q})
                r0 = time.monotonic()
                status, body = bench_longlife.get(port, path)
                took = time.monotonic() - r0
                n = len(json.loads(body)["points"]) if status == 200 else -1
                reqs.append((name, r0, took, status, len(body), n))
                time.sleep(bench_longlife.GAP)
                if proc.poll() is not None:
                    raise RuntimeError(f"daemon died (exit {proc.returncode})")
        time.sleep(0.5)
        os.kill(poller.pid, signal.SIGTERM)
        poller.wait(30)
        poller = None
        healthz = [(float(t), float(lat)) for t, lat in json.loads(samples.read_text())]
    finally:
        if poller is not None:
            poller.kill()
            poller.wait()
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        log.close()
        listeners.close()
    base = sorted(lat for t, lat in healthz if base_start <= t <= base_end and lat >= 0)
    lats = sorted(lat for t, lat in healthz if t > base_end and lat >= 0)
    per: dict[str, dict[str, Any]] = {}
    for name, r0, took, status, size, n in reqs:
        during = [lat for t, lat in healthz if r0 - 0.05 <= t <= r0 + took and lat >= 0]
        d = per.setdefault(name, {"took": [], "worst": [], "status": status, "size": size, "n": n})
        d["took"].append(took)
        d["worst"].append(max(during, default=0.0))
    return {
        "polls": len(healthz),
        "failed": sum(1 for _, lat in healthz if lat < 0),
        "worst": lats[-1] if lats else None,
        "p99": lats[int(0.99 * (len(lats) - 1))] if lats else None,
        "per": per,
        "requests": len(reqs),
        "load": load,
        "baseline_worst": base[-1] if base else None,
        "baseline_p99": base[int(0.99 * (len(base) - 1))] if base else None,
    }


def mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def ms(values: list[float]) -> str:
    return ", ".join(f"{v * 1000:.0f}" for v in values)


def over_text(worst: list[float], runs: int) -> str:
    over = [w for w in worst if w > 0.05]
    return f" ({len(over)} of {runs} runs over it)" if over else " (every run within it)"


def runs_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    worst = [r["worst"] for r in runs]
    control = [r["baseline_worst"] for r in runs]
    took: dict[str, list[float]] = {}
    during: dict[str, list[float]] = {}
    for r in runs:
        for name, d in r["per"].items():
            took.setdefault(name, []).extend(d["took"])
            during.setdefault(name, []).append(max(d["worst"]))
    return {
        "worst": worst,
        "median_worst": statistics.median(worst),
        "control": control,
        "median_control": statistics.median(control),
        "p99": statistics.median(r["p99"] for r in runs),
        "took": {k: statistics.median(v) for k, v in took.items()},
        "during": during,
        "polls": sum(r["polls"] for r in runs),
        "failed": sum(r["failed"] for r in runs),
        "requests": sum(r["requests"] for r in runs),
        "load": [r["load"] for r in runs],
    }


def report(
    f: dict[str, Any],
    runs: list[dict[str, Any]],
    before: list[dict[str, Any]],
    args: argparse.Namespace,
) -> str:
    m = benchlib.machine()
    day = f["day"]
    rows_day = day["rows"]
    n_ent = len(f["entities"])
    per_row = day["size"] / sum(rows_day.values())
    fine_day = rows_day.get(10, 0) / n_ent
    # Steady state at the default retention: 2 d of 10 s, 30 d of 1 min, 730 d of 10 min.
    steady_rows = 2 * 8640 + 30 * 1440 + 730 * 144
    year_rows = 365 * 144
    shape = "; ".join(
        f"{name}: {sum(v['targets'].values())} targets "
        f"({', '.join(f'{k} {n}' for k, n in v['targets'].items())}), {v['blocks']} /24s, "
        f"{v['prefixes']} prefixes"
        for name, v in f["shape"].items()
    )
    a = runs_summary(runs)
    b = runs_summary(before) if before else None
    loads = [*a["load"], *(b["load"] if b else [])]
    lines = [
        HEADING,
        "",
        f"`bench/bench_history.py --days {args.days} --window {args.window:g} --runs "
        f"{args.runs}{' --before DIR' if before else ''}` ({time.strftime('%Y-%m-%d')}; "
        f"{m['cpu']}, Python {m['python']}; the machine was shared with other helpers' "
        f"tests and benchmarks: load average {min(loads):.1f} to {max(loads):.1f} at the "
        "runs' starts, on 2 CPUs).",
        "",
        f"Shape: the entities of config/dprk.yaml as points hold them ({shape}); default tiers "
        "(10 s kept 2 days, 1 min kept 30 days, 10 min kept 730 days).",
        "",
        f"Writes ({f.get('date', 'this run')}):",
        "",
        "| figure | value |",
        "|---|---|",
        f"| history writes, first day (empty database) | {f['rate_day']:,.0f} points/s |",
        f"| history writes, {args.days} days (retention deleting as it goes) | "
        f"{f['rate']:,.0f} points/s ({f['points']:,} points in {f['seconds']:.0f} s, "
        f"{f['cpu']:.0f} s CPU; dropped {sum(f['dropped'].values())}) |",
        f"| the loop's part of a 10 s step ({n_ent} entities: close + hand over) | "
        f"{f['loop_us_median']:.0f} µs median, {f['loop_us_p99']:.0f} µs p99 |",
        f"| bytes per stored point (all tiers, keys once per layout) | {per_row:.0f} B |",
        f"| bytes per entity per day at 10 s ({fine_day:,.0f} points + its 1 and 10 min "
        f"points) | {day['size'] / n_ent / 1000:,.0f} kB |",
        *(
            f"| {name}: bytes per row; per day at 10 s; per year at 10 min; at the default "
            f"retention (steady state, {steady_rows:,} points) | {b_:.0f} B; "
            f"{b_ * (8640 + 1440 + 144) / 1000:,.0f} kB; {mib(year_rows * b_)}; "
            f"{mib(steady_rows * b_)} |"
            for name, b_ in day["row_bytes"].items()
        ),
        f"| database after {args.days} days, {n_ent} entities (fine tier pruned to 2 days) | "
        f"{mib(f['end']['size'])} ({', '.join(f'{k} s: {v:,}' for k, v in sorted(f['end']['rows'].items()))} rows) |",
        "",
        f"Serving, with those {args.days} days stored: {args.runs} runs, each a fresh daemon "
        "(loopback targets, the shipped probing) on a fresh copy of the database. Per run, "
        f"the control: `GET /healthz` polled every 10 ms by another process for "
        f"{args.window / 2:g} s with no other request; then one client asking in turn for "
        f"{len(a['took'])} history ranges of star-jv (ending at the stored points' end) for "
        f"{args.window:g} s while the polling goes on ({a['requests']} requests, "
        f"{a['polls']:,} polls, {a['failed']} failed).",
        "",
    ]
    if b:
        lines += [
            "| request (star-jv) | points | body | time, median (before) | worst /healthz "
            "during, each run (before) |",
            "|---|---|---|---|---|",
        ]
    else:
        lines += [
            "| request (star-jv) | points | body | time, median | worst /healthz during, "
            "each run |",
            "|---|---|---|---|---|",
        ]
    for name, d in runs[0]["per"].items():
        row = (
            f"| {name} | {d['n']:,} | {d['size'] / 1000:,.0f} kB | {a['took'][name] * 1000:.0f} ms"
        )
        if b:
            row += f" ({b['took'][name] * 1000:.0f} ms)"
        row += f" | {ms(a['during'][name])} ms"
        if b:
            row += f" ({ms(b['during'][name])} ms)"
        lines.append(row + " |")
    verdict = "within" if a["median_worst"] * 1000 <= 50 else "over"
    lines += [
        "",
        f"Worst /healthz wait while history was served, each run: {ms(a['worst'])} ms "
        f"(median **{a['median_worst'] * 1000:.0f} ms**, p99 {a['p99'] * 1000:.1f} ms): "
        f"the median is {verdict} the 50 ms goal"
        f"{over_text(a['worst'], args.runs)}. The control, each run's worst with no request: "
        f"{ms(a['control'])} ms (median {a['median_control'] * 1000:.0f} ms): what the "
        "loaded machine alone makes the loop wait.",
    ]
    if b:
        lines += [
            "",
            f"Before (`--before DIR`: the `monitor` package of {args.before_label}, the same "
            f"database, runs interleaved with the above): each run's worst /healthz wait while "
            f"served "
            f"{ms(b['worst'])} ms (median {b['median_worst'] * 1000:.0f} ms, p99 "
            f"{b['p99'] * 1000:.1f} ms), its control {ms(b['control'])} ms.",
        ]
    lines += [
        "",
        "How: each query and its JSON run in the history's reader threads; the rows go "
        "straight to the API's JSON (each layout's keys made into a template once, the stored "
        "values checked cheaply and put in: no validated point, no dicts, no encoder; a row "
        "that is not exactly what the writer writes goes through the validated path, served "
        "the same or skipped and counted), in pieces of 100 points with a 1 ms sleep between "
        "(a sleep hands the GIL to the loop; `sleep(0)` need not), so the reader never holds "
        "the GIL for long and makes few objects (no full garbage collections). An answer "
        "holds at most 5,000 points.",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--window", type=float, default=20.0)
    ap.add_argument("--every", type=float, default=0.01)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--keep", type=Path, help="fill this directory once and reuse it")
    ap.add_argument("--before", type=Path, help="also serve with the monitor package here")
    ap.add_argument("--before-label", default="that tree", help="what --before holds")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--poller", nargs=2, metavar=("PORT", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.poller:
        return bench_longlife.poller_main(int(args.poller[0]), args.poller[1], args.every)
    with tempfile.TemporaryDirectory(prefix="bench-history-") as tmp:
        keep = args.keep or Path(tmp) / "filled"
        filled = keep / "fill.json"
        if filled.exists():
            f = json.loads(filled.read_text())
            # JSON made the steps' keys strings
            for d in (f["day"], f["end"]):
                d["rows"] = {int(k): v for k, v in d["rows"].items()}
        else:
            (keep / "var").mkdir(parents=True, exist_ok=True)
            end = float(bucket(time.time(), 10))
            f = fill(keep / "var", args.days, end)
            f["end_t"], f["date"] = end, time.strftime("%Y-%m-%d")
            filled.write_text(json.dumps(f, default=str))
        f.setdefault("date", "the fill")
        print(json.dumps({k: v for k, v in f.items() if k != "shape"}, indent=1, default=str))
        end = float(f["end_t"])
        if time.time() - end > DAY:
            raise SystemExit(f"{keep}: filled over a day ago (the 10 s tier is pruned): refill")
        served: dict[str, list[dict[str, Any]]] = {"after": [], "before": []}
        for i in range(args.runs):
            for label, code in (("after", ROOT), ("before", args.before)):
                if code is None:
                    continue
                run = Path(tmp) / f"{label}-{i}"
                shutil.copytree(keep / "var", run / "var")
                s = serve(run / "var", args.window, args.every, end, code.resolve())
                print(label, i, json.dumps(s, indent=1, default=str))
                served[label].append(s)
                shutil.rmtree(run)
    text = report(f, served["after"], served["before"], args)
    benchlib.publish(HEADING, text, not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
