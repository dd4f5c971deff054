"""Truth on real paths, over hours: the daemon at its default timings on realistic paths with
congestion episodes, and no outage at all; every event it opens is a false one.

    sudo .venv/bin/python bench/bench_realsoak.py [--hours 2 | --minutes 10] [--worlds 3]
        [--episodes 2] [--no-write]

Each world is monitor/sim's DPRK on the `realistic` profile (network namespaces, 198.18.0.0/15
only): delay lines with China Unicom ~300 ms, TransTelecom ~400 ms and the satellite block
~650 ms RTT, 10-15 % jitter, 1.5-2.5 % loss per direction with Gilbert-Elliott bursts, stale
addresses in the config that never answer, two hosts that come and go, slow web sites and a
TLS 1.0-only HTTPS site. On top, random congestion episodes on every upstream (`--episodes` per
hour per link, Poisson; each 3 minutes, RTT x2.5 and 8 % loss per direction with 20 s ramps).
The real daemon (`python -m monitor run`) runs with the shipped defaults (interval 30 s,
timeout 3 s, max_rate 20, detection defaults), BGP off. `--worlds` worlds run side by side, each
in its own worker process, so one run gives worlds x hours of paths.

Counted from `/metrics`, polled every 5 s (the daemon's hysteresis keeps every state for at least
one interval, so a 5 s poll misses no change), and from `/api/v1/outages` at the end:
- false events: every event of any kind (nothing failed; all of them are false);
- entity-state changes: transitions of `entity_state` per entity (any state to any other);
- target flips: transitions of `target_up` per target, split into the hosts that really come and
  go (true flips: the world takes them away) and every other target (false flips);
- vantage flips: transitions of `vantage_healthy`.

To pin causes, every false event, false target flip and entity-state change is stored with the
congestion/loss episodes of the delay lines that overlap it (the episode timeline: link, label,
begin, end, RTT factor, loss, ramps, read from the delay lines at the end): an episode overlaps
when it runs at any time from LOOKBACK s before the event's start (before the poll before a
flip) to its end (to the flip's poll). Each is marked `on_path` when its link carries the
entity's blocks or the target's address. Printed at the end and kept in the raw JSON.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import benchlib  # noqa: E402

HEADING = "## Realistic paths over hours"
POLL = 5.0
WARMUP = 120.0  # s: targets answer for the first time, entities leave `unknown`; not counted
# s before an event or flip in which an episode counts as a possible cause: a target goes down
# after its failed rounds (up to about three 30 s intervals), an event's start is its fault's.
LOOKBACK = 90.0


def host_of(target: str) -> str:
    """The address a `target` label probes: `A`, `A:port`, `A/name/TYPE`, `URL@A`."""
    return target.rsplit("@", 1)[-1].split("/", 1)[0].split(":", 1)[0]


def _links(spec: Any) -> tuple[dict[str, set[str]], list[tuple[Any, str]]]:
    """Which delay-line links carry each entity, and (network, link) of every block."""
    import ipaddress

    by_entity: dict[str, set[str]] = {}
    blocks: list[tuple[Any, str]] = []
    for e in spec.entities:
        for b in e.blocks:
            by_entity.setdefault(e.name, set()).add(b.upstream)
            blocks.append((ipaddress.ip_network(b.prefix), b.upstream))
    return by_entity, blocks


def link_of(host: str, blocks: list[tuple[Any, str]]) -> str | None:
    """The link that carries `host` (None: a control or an address outside the blocks)."""
    import ipaddress

    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return None
    return next((link for net, link in blocks if addr in net), None)


def episode_timeline(stats: dict[str, Any]) -> list[dict[str, Any]]:
    """Every episode the delay lines began (wall times), by begin time."""
    out = [
        {
            "link": link,
            "label": h.get("label"),
            "begins": float(h["begins"]),
            "ends": float(h["ends"]),
            "rtt_factor": h.get("rtt_factor"),
            "loss": h.get("loss"),
            "ramp_up": h.get("ramp_up"),
            "ramp_down": h.get("ramp_down"),
        }
        for link, s in stats.items()
        if isinstance(s, dict)
        for h in s.get("episodes") or []
    ]
    return sorted(out, key=lambda x: x["begins"])


def overlapping(
    timeline: list[dict[str, Any]], lo: float, hi: float, on_path: set[str]
) -> list[dict[str, Any]]:
    """Episodes running at any time in [lo, hi], each marked on_path (its link in `on_path`)."""
    return [
        {**ep, "on_path": ep["link"] in on_path}
        for ep in timeline
        if ep["begins"] <= hi and ep["ends"] >= lo
    ]


def _epoch(iso: Any) -> float | None:
    if not iso:
        return None
    return dt.datetime.fromisoformat(str(iso).replace("Z", "+00:00")).timestamp()


def pin_causes(doc: dict[str, Any], timeline: list[dict[str, Any]], spec: Any, end: float) -> None:
    """Attach the overlapping episodes to every event, false flip and state change of `doc`."""
    by_entity, blocks = _links(spec)
    for ev in doc["events"]:
        start, stop = _epoch(ev.get("start")), _epoch(ev.get("end"))
        if start is None:
            continue
        on = by_entity.get(str(ev.get("entity")), set())
        ev["episodes"] = overlapping(timeline, start - LOOKBACK, stop or end, on)
    for fl in doc["flip_log"]:
        link = link_of(host_of(fl["target"]), blocks)
        fl["link"] = link
        fl["episodes"] = overlapping(
            timeline, fl["prev"] - LOOKBACK, fl["t"], {link} if link else set()
        )
    for ch in doc["state_log"]:
        on = by_entity.get(ch["entity"], set())
        ch["episodes"] = overlapping(timeline, ch["prev"] - LOOKBACK, ch["t"], on)


# A congestion episode of DESIGN.md's realistic paths scales the RTT by 2-3; episodes of one
# link may overlap, and their factors multiply (monitor/sim/world.py). Beyond this factor the
# path is slower than any single episode, and `degraded` (median RTT >= 3 x normal for a
# minute) is the detector's documented answer, not a false one.
CONGESTION_MAX = 3.0


def peak_factor(eps: list[dict[str, Any]]) -> float:
    """The largest RTT factor one on-path link had at once over `eps` (each episode at full
    strength from the end of its ramp up; overlapping ones multiply)."""
    on = [e for e in eps if e.get("on_path")]
    best = 1.0
    for e in on:
        t = e["begins"] + float(e.get("ramp_up") or 0.0)
        if t > e["ends"]:
            continue
        f = 1.0
        for x in on:
            if x["link"] == e["link"] and x["begins"] <= t <= x["ends"]:
                f *= float(x.get("rtt_factor") or 1.0)
        best = max(best, f)
    return best


def beyond_congestion(ev: dict[str, Any]) -> bool:
    """A `degraded` event while its path's overlapping episodes made it more than
    CONGESTION_MAX times slower: the path was degraded (see CONGESTION_MAX)."""
    return ev.get("kind") == "degraded" and peak_factor(ev.get("episodes", [])) > CONGESTION_MAX


def _when(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%H:%M:%S")


def describe_episodes(eps: list[dict[str, Any]]) -> str:
    if not eps:
        return "no episode"
    return "; ".join(
        f"{e['link']}{'' if e['on_path'] else ' (other path)'} {e['label']} "
        f"x{e['rtt_factor']:g} +{(e['loss'] or 0) * 100:.0f}% loss "
        f"{_when(e['begins'])}-{_when(e['ends'])}"
        for e in eps
    )


def cause_report(results: list[dict[str, Any]]) -> list[str]:
    """One line per false event, entity-state change and false flip, with its episodes."""
    lines: list[str] = []
    for r in results:
        if "error" in r:
            continue
        w = r.get("world")
        for ev in r["events"]:
            lines.append(
                f"world {w} EVENT {ev.get('entity')} {ev.get('kind')} {ev.get('start')} .. "
                f"{ev.get('end')}: {describe_episodes(ev.get('episodes', []))}"
            )
        for ch in r.get("state_log", []):
            lines.append(
                f"world {w} STATE {ch['entity']} {ch['from']}->{ch['to']} at {_when(ch['t'])}: "
                f"{describe_episodes(ch.get('episodes', []))}"
            )
        for fl in r.get("flip_log", []):
            lines.append(
                f"world {w} FLIP {fl['entity']} {fl['kind']} {fl['target']} -> {fl['to']:g} at "
                f"{_when(fl['t'])} (link {fl.get('link')}): "
                f"{describe_episodes(fl.get('episodes', []))}"
            )
    return lines


def worker(minutes: float, episodes: float) -> dict[str, Any]:
    """One world for `minutes`: returns the counts as JSON-able data."""
    from monitor.sim import scenarios
    from monitor.sim.daemonproc import DaemonProcess
    from monitor.sim.spec import dprk, realistic
    from monitor.sim.world import World

    spec = realistic(dprk(), episodes_per_hour=episodes)
    flaky = {f.address for f in spec.flaky}
    with World.build(spec) as w, tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "config.yaml"
        cfg.write_text(
            w.daemon_config(state_dir=f"{tmp}/var", **scenarios.scaled_config(1.0)),
            encoding="utf-8",
        )
        d = DaemonProcess(w, cfg, log_path=Path(tmp) / "daemon.log")
        d.start()
        t_start = time.time()
        end = t_start + minutes * 60
        targets: dict[tuple[str, str, str], float] = {}
        states: dict[str, str] = {}
        vantage: float | None = None
        flips_true: Counter[str] = Counter()
        flips_false: Counter[str] = Counter()
        state_changes: Counter[str] = Counter()
        transitions: Counter[str] = Counter()
        vantage_flips = 0
        polls = failed_polls = 0
        # When each false flip and state change was seen: the poll, and the one before it.
        flip_log: list[dict[str, Any]] = []
        state_log: list[dict[str, Any]] = []
        prev_poll = t_start
        active_seen: set[str] = set()
        # The delay line is a user-space process: on a loaded machine it writes packets late,
        # which a real path would not do. Its lateness is sampled so a reader can tell.
        late: list[dict[str, float]] = []
        next_stats = t_start + 600
        try:
            while time.time() < end:
                t = time.time()
                try:
                    m = d.metrics()
                except Exception:  # a failed poll is counted, not fatal
                    failed_polls += 1
                    time.sleep(POLL)
                    continue
                polls += 1
                counting = t - t_start >= WARMUP
                for lb, v in m.values("dprk_monitor_target_up"):
                    key = (lb.get("entity", ""), lb.get("kind", ""), lb.get("target", ""))
                    old = targets.get(key)
                    if counting and old is not None and old != v:
                        (flips_true if host_of(key[2]) in flaky else flips_false)[key[2]] += 1
                        if host_of(key[2]) not in flaky:
                            flip_log.append(
                                {"t": t, "prev": prev_poll, "entity": key[0], "kind": key[1]}
                                | {"target": key[2], "to": v}
                            )
                    targets[key] = v
                for lb, v in m.values("dprk_monitor_entity_state"):
                    if v != 1:
                        continue
                    name, st = lb.get("entity", ""), lb.get("state", "")
                    prev = states.get(name)
                    if counting and prev is not None and prev != st:
                        state_changes[name] += 1
                        transitions[f"{prev}->{st}"] += 1
                        state_log.append(
                            {"t": t, "prev": prev_poll, "entity": name, "from": prev, "to": st}
                        )
                    states[name] = st
                for lb, v in m.values("dprk_monitor_outage_active"):
                    if v == 1:
                        active_seen.add(lb.get("entity", ""))
                vh = m.value("dprk_monitor_vantage_healthy")
                if counting and vantage is not None and vh is not None and vh != vantage:
                    vantage_flips += 1
                vantage = vh if vh is not None else vantage
                if t >= next_stats:
                    next_stats = t + 600
                    late.append(_lateness(w.path_stats()))
                prev_poll = t
                time.sleep(max(0.0, POLL - (time.time() - t)))
            events = list(d.outages() or [])
            last = d.metrics()
            probes: Counter[str] = Counter()
            for lb, v in last.values("dprk_monitor_probes_total"):
                probes[lb.get("kind", "")] += int(v)
            failures: Counter[str] = Counter()
            for lb, v in last.values("dprk_monitor_probe_failures_total"):
                failures[f"{lb.get('kind', '')}/{lb.get('reason', '')}"] += int(v)
            stats = w.path_stats()
            late.append(_lateness(stats))
            rc = d.stop(timeout=30)
        finally:
            if d.running:
                d.stop(timeout=30)
        episodes_begun = {
            link: len(s.get("episodes", s.get("history", [])) or [])
            for link, s in stats.items()
            if isinstance(s, dict)
        }
        never = [k[2] for k, v in targets.items() if v == 0]
        timeline = episode_timeline(stats)
        doc: dict[str, Any] = {
            "minutes": (time.time() - t_start) / 60,
            "counted_minutes": (time.time() - t_start - WARMUP) / 60,
            "events": [
                {k: e.get(k) for k in ("id", "entity", "kind", "start", "end")} for e in events
            ],
            "active_seen": sorted(active_seen),
            "state_changes": dict(state_changes),
            "transitions": dict(transitions),
            "flips_true": dict(flips_true),
            "flips_false": dict(flips_false),
            "vantage_flips": vantage_flips,
            "targets": len(targets),
            "down_at_end": never,
            "flaky": sorted(flaky),
            "episodes": episodes_begun,
            "late": late,
            "polls": polls,
            "probes": dict(probes),
            "failures": dict(failures),
            "failed_polls": failed_polls,
            "exit": rc,
            "timeline": timeline,
            "flip_log": flip_log,
            "state_log": state_log,
        }
        pin_causes(doc, timeline, spec, time.time())
        return doc


def _lateness(stats: dict[str, Any]) -> dict[str, float]:
    """The delay lines' scheduling error (s) over their last packets: worst p99 and max over
    links and directions, and the share of packets the model dropped."""
    p99 = mx = 0.0
    packets = dropped = 0
    for s in stats.values():
        if not isinstance(s, dict):
            continue
        for d in ("down", "up"):
            st = s.get(d) or {}
            lt = st.get("late") or {}
            p99, mx = max(p99, float(lt.get("p99", 0.0))), max(mx, float(lt.get("max", 0.0)))
            packets += int(st.get("packets", 0))
            dropped += int(st.get("dropped", 0))
    return {"p99": p99, "max": mx, "dropped": dropped / packets if packets else 0.0}


def run_worker(i: int, minutes: float, episodes: float, out: Path) -> dict[str, Any]:
    p = subprocess.run(
        [
            sys.executable,
            __file__,
            "--worker",
            "--minutes",
            str(minutes),
            "--episodes",
            str(episodes),
        ],
        capture_output=True,
        text=True,
        timeout=minutes * 60 + 1800,
    )
    (out / f"world{i}.stderr").write_text(p.stderr, encoding="utf-8")
    if p.returncode != 0:
        return {"world": i, "error": (p.stderr or p.stdout)[-3000:]}
    doc: dict[str, Any] = json.loads(p.stdout.strip().splitlines()[-1])
    doc["world"] = i
    return doc


def per_hour(n: float, hours: float) -> str:
    return f"{n / hours:.2f}" if hours > 0 else "-"


def render(
    results: list[dict[str, Any]], args: argparse.Namespace, info: dict[str, str], date: str
) -> str:
    ok = [r for r in results if "error" not in r]
    hours = sum(r["counted_minutes"] for r in ok) / 60
    every = [e for r in ok for e in r["events"]]
    events = [e for e in every if not beyond_congestion(e)]
    compounded = [e for e in every if beyond_congestion(e)]
    kinds = Counter(str(e["kind"]) for e in events)
    changes = sum(sum(r["state_changes"].values()) for r in ok)
    trans: Counter[str] = Counter()
    for r in ok:
        trans.update(r["transitions"])
    ftrue = sum(sum(r["flips_true"].values()) for r in ok)
    ffalse = sum(sum(r["flips_false"].values()) for r in ok)
    false_targets: Counter[str] = Counter()
    for r in ok:
        false_targets.update(r["flips_false"])
    vflips = sum(r["vantage_flips"] for r in ok)
    eps = sum(sum(r["episodes"].values()) for r in ok)
    polls = sum(r["polls"] for r in ok)
    lates = [x for r in ok for x in r.get("late", [])]
    late_p99 = max((x["p99"] for x in lates), default=0.0)
    late_max = max((x["max"] for x in lates), default=0.0)
    drop = max((x["dropped"] for x in lates), default=0.0)
    failed = sum(r["failed_polls"] for r in ok)
    per_world = ", ".join(
        f"{len(r['events'])} events / {sum(r['state_changes'].values())} state changes / "
        f"{sum(r['flips_false'].values())} false flips"
        for r in ok
    )
    lines = [
        HEADING,
        "",
        "Measured by `bench/bench_realsoak.py` (as root). The real daemon at the **default "
        "timings** (interval 30 s, timeout 3 s, max_rate 20, detection defaults; BGP off) in "
        "monitor/sim's DPRK on the `realistic` profile: delay lines with China Unicom ~300 ms, "
        "TransTelecom ~400 ms and the satellite block ~650 ms RTT, 10-15 % jitter, 1.5-2.5 % "
        "loss per direction with Gilbert-Elliott bursts, stale addresses in the config that "
        "never answer, two hosts that come and go (up 4 min / gone 1.5 min, up 7 min / gone "
        "3 min), slow web sites, a TLS 1.0-only HTTPS site; and random congestion episodes on "
        f"every upstream ({args.episodes:g} per hour per link on average, Poisson; each 3 min, "
        "RTT x2.5 and 8 % loss per direction, 20 s ramps). No outage is injected: every event "
        f"is a false one. `/metrics` polled every {POLL:g} s (every state lasts at least one "
        f"interval), changes counted after the first {WARMUP:g} s (first answers, entities "
        "leaving `unknown`); events over the whole run, read from the log at the end. Several worlds side by side, one worker "
        "process each.",
        "",
        f"- date: {date}; {len(ok)} of {len(results)} worlds completed, "
        f"{args.minutes / 60:.1f} h each side by side: {hours:.1f} world-hours",
        f"- machine: {info['cpu']}; kernel {info['kernel']}; Python {info['python']}; "
        f"load average {info['load']} at the start (other benches and test runs shared the "
        "machine)",
        f"- code: {benchlib.commit()}",
        f"- congestion episodes begun on the delay lines: {eps} in all; /metrics polls "
        f"{polls}, failed {failed}",
        f"- the delay lines' own scheduling error (a user-space forwarder on a shared machine; "
        f"sampled every 10 min over their last packets): worst p99 {late_p99 * 1000:.1f} ms, "
        f"worst {late_max * 1000:.0f} ms; packets dropped by the path model: "
        f"{drop * 100:.1f} % at most (base loss, bursts, episodes)",
        "",
        "| figure | count | per hour (per world) |",
        "|---|---|---|",
        f"| false events (any kind) | {len(events)} | {per_hour(len(events), hours)} |",
        f"| `degraded` while overlapping episodes made a path more than x{CONGESTION_MAX:g} "
        f"slower (true: see below) | {len(compounded)} | {per_hour(len(compounded), hours)} |",
        f"| entities with `outage_active` 1 at any poll | "
        f"{len({(r['world'], x) for r in ok for x in r['active_seen']})} | - |",
        f"| entity-state changes (all entities) | {changes} | {per_hour(changes, hours)} |",
        f"| target flips, hosts that really come and go | {ftrue} | {per_hour(ftrue, hours)} |",
        f"| target flips, every other target (false) | {ffalse} | {per_hour(ffalse, hours)} |",
        f"| `vantage_healthy` flips | {vflips} | {per_hour(vflips, hours)} |",
        "",
        f"- per world: {per_world}",
        f"- events by kind: {', '.join(f'{k} {n}' for k, n in kinds.most_common()) or 'none'}",
        f"- state transitions: {', '.join(f'{k} {n}' for k, n in trans.most_common()) or 'none'}",
    ]
    if false_targets:
        lines.append(
            "- targets with false flips: "
            + ", ".join(f"{k} {n}" for k, n in false_targets.most_common(8))
        )
    flips = [f for r in ok for f in r.get("flip_log", [])]
    if flips:
        on = sum(1 for f in flips if any(e["on_path"] for e in f.get("episodes", [])))
        lines.append(
            f"- false flips with an episode on their path from {LOOKBACK:g} s before: "
            f"{on} of {len(flips)}"
        )
    for r in ok:
        for ev in r["events"]:
            what = (
                f"degraded at x{peak_factor(ev.get('episodes', [])):.2f}"
                if beyond_congestion(ev)
                else "false event"
            )
            lines.append(
                f"- world {r['world']}: {what} {ev.get('entity')} {ev.get('kind')} "
                f"{ev.get('start')} .. {ev.get('end')}; episodes: "
                f"{describe_episodes(ev.get('episodes', []))}"
            )
    errs = [r for r in results if "error" in r]
    if errs:
        lines.append(f"- worlds that failed: {len(errs)} (see the raw file)")
    lines += [
        "",
        "Goal (DESIGN.md): zero false events of any kind over hours of realistic paths with "
        "congestion episodes, the small entities (one /24, three addresses) included. A "
        "state change is any move of `entity_state` (up, degraded, partial, down, unknown); "
        "flips of the two coming-and-going hosts are true (the world takes them away), and "
        "show that the daemon follows a host without calling its block down. Episodes of one "
        "link may overlap and their factors multiply (two x2.5 episodes: x6.25, ~1.9 s on "
        f"Unicom, and 16 % loss): beyond x{CONGESTION_MAX:g}, more than any single congestion "
        "episode of DESIGN.md, a `degraded` event is what the detector is meant to say "
        "(median RTT at least 3 x normal for a minute) and is counted apart; every other "
        "event, web and DNS ones in the same moments included, is a false one.",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--hours", type=float, default=None, help="length (default 2)")
    g.add_argument("--minutes", type=float, default=None)
    ap.add_argument("--worlds", type=int, default=3)
    ap.add_argument("--episodes", type=float, default=2.0, help="per hour per link")
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--from-raw", type=Path, help="render a raw results file again, no run")
    args = ap.parse_args()
    args.minutes = args.minutes if args.minutes is not None else (args.hours or 2.0) * 60
    if args.from_raw is not None:
        results = json.loads(args.from_raw.read_text(encoding="utf-8"))
        done = [r for r in results if "error" not in r]
        args.minutes = max((float(r["minutes"]) for r in done), default=args.minutes)
        mtime = dt.datetime.fromtimestamp(args.from_raw.stat().st_mtime, dt.UTC)
        # the raw file is written when the run ends
        date = mtime.strftime("%Y-%m-%d %H:%M UTC") + " (the run's end)"
        text = render(results, args, benchlib.machine(), date)
        benchlib.publish(HEADING, text, not args.no_write)
        return 0
    if args.worker:
        print(json.dumps(worker(args.minutes, args.episodes)))
        return 0
    if os.geteuid() != 0:
        print("bench_realsoak needs root (network namespaces)", file=sys.stderr)
        return 2
    info = benchlib.machine()
    date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    out = Path(tempfile.mkdtemp(prefix="bench-realsoak-"))
    print(f"{args.worlds} worlds x {args.minutes:g} min; worker logs in {out}", flush=True)
    with concurrent.futures.ThreadPoolExecutor(args.worlds) as pool:
        futs = [
            pool.submit(run_worker, i, args.minutes, args.episodes, out) for i in range(args.worlds)
        ]
        results = []
        for f in futs:
            try:
                results.append(f.result())
            except Exception:
                results.append({"error": traceback.format_exc()})
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    raw = ROOT / "bench" / "results" / f"realsoak-{int(time.time())}.json"
    raw.write_text(json.dumps(results, indent=1), encoding="utf-8")
    for line in cause_report(results):
        print(line)
    text = render(results, args, info, date)
    benchlib.publish(HEADING, text, not args.no_write)
    print(f"raw: {raw}")
    bad = any("error" in r for r in results) or any(r.get("events") for r in results)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
