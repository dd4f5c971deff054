"""Detection next to blackbox_exporter + Prometheus: the same worlds, the same run, realistic paths.

    sudo .venv/bin/python bench/bench_peer.py [--runs 3] [--parallel 3] [--minutes 24]
        [--only blackout_silent,blackout_unreachable,calm] [--no-write] [--from-raw FILE]

Each run is one worker process (`--worker SCENARIO`) that builds its own world on realistic paths
(`World.build(dprk(vantages=2), profile="realistic")`: delay lines with the China Unicom,
TransTelecom and satellite RTTs, jitter, loss and bursts, stale and come-and-go hosts, slow web
sites, a TLS 1.0-only HTTPS site) and runs, side by side:

- vantage0: the real daemon at the default timings (interval 30 s, timeout 3 s, max_rate 20,
  detection defaults: `scenarios.scaled_config(1.0)`, as bench_detection at scale 1);
- vantage1: prometheus-blackbox-exporter probing the same targets (modules from
  bench_footprint.blackbox_setup, see bench/peer_prom.py), scraped every 15 s by a real
  Prometheus (monitor/sim/promproc.py) evaluating, every 15 s, a blackout rule (every ICMP target
  of an entity failing, `for: 1m`) and the per-target rule (`probe_success == 0`, `for: 1m`).

Both vantages reach DPRK through the same delay lines, so both see the same paths and faults.
Alert state is read once a second from both: the daemon's /metrics (`outage_active`, and
`target_up` for comparison), Prometheus' /api/v1/alerts. Scenarios: a silent blackout (the
upstreams drop: mode "blackhole"), a blackout answering host unreachable, and a calm window
(quiet realistic paths, one congestion episode, two phases of 30 % random loss) counting false
alerts of both. Results: bench/results/peer-*.json and the section "## Detection next to
blackbox_exporter + Prometheus" of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import functools
import json
import os
import random
import statistics
import subprocess
import sys
import textwrap
import time
import urllib.parse
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

import benchlib  # noqa: E402
import peer_prom  # noqa: E402
from peer_prom import BLACKOUT_ALERT, CONTROLS, TARGET_ALERT  # noqa: E402

HEADING = "## Detection next to blackbox_exporter + Prometheus"
HEADLINE = "star-jv"  # the entity of the headline figures (four /24s, as in bench_detection)
SCENARIOS = ("blackout_silent", "blackout_unreachable", "calm")
MODES = {"blackout_silent": "blackhole", "blackout_unreachable": "unreachable"}
WHAT = {
    "blackout_silent": "all routes dropped silently by the upstreams (blackhole)",
    "blackout_unreachable": "all routes withdrawn, routers answer host unreachable",
}
# The calm window, as fractions of --minutes: (phase, start, end).
CALM_PHASES = (
    ("quiet", 0.00, 0.15),
    ("congestion", 0.15, 0.40),
    ("quiet", 0.40, 0.50),
    ("loss", 0.50, 0.70),
    ("quiet", 0.70, 0.80),
    ("loss", 0.80, 0.95),
    ("quiet", 0.95, 1.00),
)
CONGESTION = {"rtt_factor": 2.5, "loss": 0.08, "ramp": 20.0}
LOSS = 0.3
WAIT_FLAG = 300.0  # a tool that has not flagged (or cleared) by then missed
HOLD_DOWN = 60.0  # blackout held this long after both tools flagged every entity
TAIL = 60.0  # watched after both cleared: relapses count as false
PHASE = 15.0  # Prometheus' scrape and evaluation interval


# -- the worker (one world, both tools) ----------------------------------------------------


def daemon_sample(d: Any) -> dict[str, str]:
    """The daemon's alert state and per-target view from one /metrics."""
    m = d.metrics()
    out: dict[str, str] = {}
    for lb, v in m.values("dprk_monitor_outage_active"):
        out[f"active|{lb['entity']}"] = str(int(v))
    for lb, v in m.values("dprk_monitor_entity_state"):
        if v == 1:
            out[f"state|{lb['entity']}"] = lb["state"]
    for lb, v in m.values("dprk_monitor_target_up"):
        out[f"up|{lb['entity']}|{lb['kind']}|{lb['target']}"] = str(int(v))
    out["vantage_healthy"] = str(int(m.value("dprk_monitor_vantage_healthy", -1.0) or 0))
    return out


def daemon_counts(d: Any) -> dict[str, float]:
    """probes and failures per kind (all entities and controls), for the window's ratios."""
    m = d.metrics()
    out: dict[str, float] = {}
    for name, key in (
        ("dprk_monitor_probes_total", "probes"),
        ("dprk_monitor_probe_failures_total", "failures"),
    ):
        for lb, v in m.values(name):
            for k in (f"{key}|{lb['kind']}", f"{key}|{lb['kind']}|{lb.get('reason', '')}"):
                out[k] = out.get(k, 0.0) + v
    return out


def wait_for(pred: Callable[[], bool], within: float, every: float = 0.5) -> bool:
    deadline = time.time() + within
    while not pred():
        if time.time() > deadline:
            return False
        time.sleep(every)
    return True


def sleep_until(t: float) -> None:
    while (rest := t - time.time()) > 0:
        time.sleep(min(rest, 1.0))


def worker(scenario: str, minutes: float) -> dict[str, Any]:
    import yaml

    from monitor.sim import scenarios
    from monitor.sim.daemonproc import DaemonProcess
    from monitor.sim.spec import dprk
    from monitor.sim.world import World

    out: dict[str, Any] = {"scenario": scenario, "minutes": minutes}
    with World.build(dprk(vantages=2), profile="realistic") as w:
        tmp = w.tmpdir / "peer"
        tmp.mkdir()
        text = w.daemon_config(
            vantage=0, state_dir=str(tmp / "var"), **scenarios.scaled_config(1.0)
        )
        cfg = tmp / "daemon.yaml"
        cfg.write_text(text, encoding="utf-8")
        doc = yaml.safe_load(text)
        entities = [e["name"] for e in doc["entities"]]
        d = DaemonProcess(w, cfg, vantage=0, log_path=tmp / "daemon.log")
        stack = peer_prom.PeerStack(w, doc, tmp / "stack", vantage=1)
        recs: list[peer_prom.Recorder] = []
        try:
            d.start()
            started = time.time()
            stack.start()
            rd = peer_prom.Recorder("daemon", lambda: daemon_sample(d))
            rp = peer_prom.Recorder("prometheus", stack.alert_states)
            recs += [rd, rp]
            for r in recs:
                r.start()

            def blackout_alert(entity: str) -> str:
                return rp.state(f"{BLACKOUT_ALERT}|{entity}||")

            # Warm: the daemon has probed every target twice and judges every entity up
            # (bench_detection's Runner.warm); Prometheus has scraped long enough for the
            # per-target alerts of addresses that never answer to be firing already.
            def calm() -> bool:
                return (
                    time.time() >= max(started + 60, stack.started_at + 100)
                    and all(rd.state(f"state|{e}") == "up" for e in entities)
                    and all(rd.state(f"active|{e}") == "0" for e in entities)
                    and all(blackout_alert(e) == "absent" for e in [*entities, CONTROLS])
                )

            if not wait_for(calm, 480):
                raise RuntimeError(
                    "not calm at start: "
                    + json.dumps(
                        {
                            k: v
                            for k, v in rd.snapshot().items()
                            if k.startswith(("state|", "active|"))
                        }
                    )
                    + f" alerts {rp.snapshot()}\n{d.log_tail(2000)}"
                )
            t0 = time.time()
            c0 = daemon_counts(d)
            out["t0"], out["started"] = t0, started

            if scenario in MODES:
                # The fault and the repair each at a random phase of Prometheus' 15 s scrape and
                # evaluation cycle: its start and the warm-up's end are tied to that cycle, and
                # HOLD_DOWN is a whole number of cycles after an evaluation.
                time.sleep(random.uniform(0, PHASE))
                fault = w.blackout(MODES[scenario])
                out["fault_at"] = fault.at

                def flagged(ents: Iterable[str]) -> Callable[[], bool]:
                    return lambda: all(
                        rd.state(f"active|{e}") == "1" and blackout_alert(e) == "firing"
                        for e in ents
                    )

                wait_for(flagged([HEADLINE]), WAIT_FLAG)
                wait_for(flagged(entities), 90)
                time.sleep(HOLD_DOWN + random.uniform(0, PHASE))
                rep = w.repair_blackout()
                out["repair_at"] = rep.at
                wait_for(
                    lambda: all(
                        rd.state(f"active|{e}") == "0" and blackout_alert(e) != "firing"
                        for e in entities
                    ),
                    WAIT_FLAG,
                )
                time.sleep(TAIL)
            elif scenario == "calm":
                span = minutes * 60
                links = [ln for ln in w.path_links if ln != "ctl"]
                phases = []
                for name, a, b in CALM_PHASES:
                    sleep_until(t0 + a * span)
                    at = time.time()
                    if name == "congestion":
                        for ln in links:
                            w.congestion(ln, duration=(b - a) * span, **CONGESTION)
                    elif name == "loss":
                        at = w.loss(LOSS).at
                    sleep_until(t0 + b * span)
                    if name == "loss":
                        w.clear_loss()
                    phases.append((name, at, time.time()))
                out["phases"] = phases
            else:
                raise ValueError(f"unknown scenario {scenario!r}")
            out["end"] = time.time()
            c1 = daemon_counts(d)
            out["daemon_counts"] = {k: c1.get(k, 0.0) - c0.get(k, 0.0) for k in c1}
            assert stack.prom is not None
            window = max(1, int(out["end"] - t0))
            # probes answered / asked per module over the window, for the paths' share of
            # failures as each tool saw them
            out["prom_probes"] = {}
            for fn in ("sum_over_time", "count_over_time"):
                for smp in stack.prom.query(f"sum by (module) ({fn}(probe_success[{window}s]))"):
                    mod = smp["metric"].get("module", "?")
                    out["prom_probes"].setdefault(mod, []).append(float(smp["value"][1]))
            out["prom_scrapes_failed"] = sum(
                float(s["value"][1])
                for s in stack.prom.query(
                    f'count_over_time((up{{job="blackbox"}} == 0)[{window}s:])'
                )
            )
            try:
                out["events"] = d.outages() or []
            except Exception as e:  # the figures come from the timelines; keep the run
                out["events"], out["events_error"] = [], f"{type(e).__name__}: {e}"[:500]
                out.setdefault("logs", {})["daemon"] = d.log_tail(3000)
        except BaseException:
            print(f"--- daemon log tail\n{d.log_tail(3000)}", file=sys.stderr)
            print(f"--- blackbox log tail\n{stack.log_tail('blackbox.log')}", file=sys.stderr)
            raise
        finally:
            for r in recs:
                r.stop()
            logs = {**out.get("logs", {}), "blackbox": stack.log_tail("blackbox.log", 600)}
            stack.stop()
            d.stop()
        out["daemon_tl"], out["prom_tl"] = recs[0].transitions, recs[1].transitions
        out["samples"] = {r.name: r.samples for r in recs}
        out["poll_errors"] = {r.name: r.errors[:5] for r in recs}
        out["entities"] = entities
        out["probes"] = stack.probes
        out["flaky"] = [f.address for f in w.spec.flaky]
        out["stale"] = sorted({a for v in w.stale.values() for a in v})
        out["host_log"] = w.host_log
        out["path_links"] = w.path_links
        out["logs"] = logs
        w.assert_no_leaks()
    return out


def run_one(scenario: str, minutes: float, index: int) -> dict[str, Any]:
    t0 = time.time()
    p = subprocess.run(
        [sys.executable, __file__, "--worker", scenario, "--minutes", str(minutes)],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if p.returncode != 0:
        return {"scenario": scenario, "run": index, "error": (p.stderr or p.stdout)[-3000:]}
    out: dict[str, Any] = json.loads(p.stdout.strip().splitlines()[-1])
    out["run"], out["wall"] = index, time.time() - t0
    return out


# -- analysis (pure: from the recorded transitions) ----------------------------------------


Tl = list[list[Any]]  # [[t, key, state], ...] (JSON turns the tuples into lists)


def first(tl: Tl, key: str, states: set[str], after: float, negate: bool = False) -> float | None:
    """The first time at or after `after` that `key` was seen in `states` (negated: out of
    them); `after` itself when the state it held then already qualifies."""

    def hit(v: str) -> bool:
        return (v in states) != negate

    held = "absent"
    for t, k, v in tl:
        if k != key:
            continue
        if t < after:
            held = v
            continue
        if hit(held):
            return after
        if hit(v):
            return float(t)
        held = v
    return after if hit(held) else None


def onsets(tl: Tl, prefix: str, to: str, a: float, b: float) -> list[tuple[float, str, float]]:
    """Every change of a key starting with `prefix` into state `to` within [a, b): (time, key,
    when it left its calm state: for an alert, when it became pending; for a daemon gauge, the
    same time)."""
    calm = {"absent", "0"}
    last: dict[str, str] = {}
    since: dict[str, float] = {}
    out: list[tuple[float, str, float]] = []
    for t, k, v in tl:
        if not k.startswith(prefix):
            continue
        prev = last.get(k, "absent")
        if prev in calm and v not in calm:
            since[k] = t
        if v == to and prev != to and a <= t < b:
            out.append((float(t), k, since.get(k, float(t))))
        last[k] = v
    return out


def state_at(tl: Tl, key: str, at: float) -> str:
    held = "absent"
    for t, k, v in tl:
        if k == key and t <= at:
            held = v
    return str(held)


def address_of(instance: str) -> str:
    if "://" in instance:
        return urllib.parse.urlsplit(instance).hostname or instance
    return instance.rsplit(":", 1)[0] if instance.count(":") == 1 else instance


def phase_of(r: dict[str, Any], t: float) -> str:
    for name, a, b in r.get("phases", []):
        if a <= t < b:
            return str(name)
    return "quiet"


def analyse(r: dict[str, Any]) -> dict[str, Any]:
    """Per run: flagged / cleared per tool and entity, false alerts of each kind."""
    dtl, ptl = r["daemon_tl"], r["prom_tl"]
    t0, end = r["t0"], r["end"]
    ents = r["entities"]
    res: dict[str, Any] = {"scenario": r["scenario"], "run": r["run"]}
    if "fault_at" in r:
        fault, repair = r["fault_at"], r["repair_at"]
        for tool, pattern, on, tl in (
            ("daemon", "active|{}", "1", dtl),
            ("prom", BLACKOUT_ALERT + "|{}||", "firing", ptl),
        ):
            flagged: dict[str, float | None] = {}
            cleared: dict[str, float | None] = {}
            false = 0
            for e in ents:
                key = pattern.format(e)
                f = first(tl, key, {on}, fault)
                flagged[e] = f - fault if f is not None and f < repair else None
                c = first(tl, key, {on}, repair, negate=True) if f is not None else None
                cleared[e] = c - repair if c is not None else None
                n = len(onsets(tl, key, on, t0, end))
                false += max(0, n - (1 if flagged[e] is not None else 0))
            if tool == "prom":  # the blackout rule on the controls: our own vantage
                false += len(onsets(tl, pattern.format(CONTROLS), on, t0, end))
            res[tool] = {"flagged": flagged, "cleared": cleared, "false": false}
        res["daemon_events"] = [f"{ev['entity']}:{ev['kind']}" for ev in r["events"]]
        return res
    hours = (end - t0) / 3600
    res["hours"] = hours
    flaky, stale = set(r["flaky"]), set(r["stale"])
    # the daemon: outage events (any entity, any kind)
    d_on = onsets(dtl, "active|", "1", t0, end)
    res["daemon_events"] = [(k.split("|")[1], phase_of(r, t)) for t, k, _ in d_on]
    res["daemon_api_events"] = [
        (ev["entity"], ev["kind"], ev["start"]) for ev in r["events"] if ev.get("entity")
    ]
    # the daemon's per-target view: target_up 1 -> 0 (not an alert; compared with the rule)
    flips: list[tuple[str, str]] = []
    last: dict[str, str] = {}
    for t, k, v in dtl:
        if k.startswith("up|"):
            if last.get(k) == "1" and v == "0" and t0 <= t < end:
                addr = address_of(k.split("|", 3)[3])
                cls = "flaky" if addr in flaky else "stale" if addr in stale else "other"
                flips.append((cls, phase_of(r, t)))
            last[k] = v
    res["daemon_flips"] = flips
    # the blackout rule: any firing is false here
    b_on = onsets(ptl, f"{BLACKOUT_ALERT}|", "firing", t0, end)
    res["prom_blackout"] = [(k.split("|")[1], phase_of(r, since)) for _, k, since in b_on]
    # the per-target rule: standing at t0, then each new firing by class and phase of its onset
    standing = [
        k
        for k in {k for _, k, _ in ptl if k.startswith(f"{TARGET_ALERT}|")}
        if state_at(ptl, k, t0) == "firing"
    ]
    res["prom_standing"] = sorted(standing)
    per: list[tuple[str, str, str]] = []
    for _, k, since in onsets(ptl, f"{TARGET_ALERT}|", "firing", t0, end):
        _, _, module, inst = k.split("|", 3)
        addr = address_of(inst)
        cls = "flaky" if addr in flaky else "stale" if addr in stale else "other"
        per.append((cls, phase_of(r, since), f"{module} {inst}"))
    res["prom_target"] = per
    return res


# -- report ---------------------------------------------------------------------------------


def sp(values: Iterable[float | None], fmt: str = ".1f", unit: str = " s") -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "-"
    return benchlib.spread(vals, fmt) + unit


def med(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def fail_shares(r: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Share of probes that failed per kind over the window, as each tool counted them (the
    daemon's re-probes included; the addresses that never answer included for both)."""
    daemon: dict[str, float] = {}
    dc = r.get("daemon_counts", {})
    for k, n in dc.items():
        if k.startswith("probes|") and k.count("|") == 1 and n:
            daemon[k[7:]] = dc.get(f"failures|{k[7:]}", 0.0) / n
    sums: dict[str, list[float]] = {}
    for module, (ok, count) in r.get("prom_probes", {}).items():
        got = sums.setdefault(module.split("_")[0], [0.0, 0.0])
        got[0], got[1] = got[0] + ok, got[1] + count
    prom = {k: 1 - ok / n for k, (ok, n) in sums.items() if n}
    return {"daemon": daemon, "prom": prom}


TOOLS = (("daemon", "dprk-monitor"), ("prom", "blackbox_exporter + Prometheus"))


def render(
    results: list[dict[str, Any]],
    args: argparse.Namespace,
    info: dict[str, str],
    meta: dict[str, Any],
) -> str:
    ok = [r for r in results if "error" not in r]
    by: dict[str, list[dict[str, Any]]] = {}
    for r in ok:
        by.setdefault(r["scenario"], []).append(analyse(r))
    runs_of = {s: sum(1 for r in results if r["scenario"] == s) for s in SCENARIOS}
    small = [e for e in (ok[0]["entities"] if ok else []) if e != HEADLINE]
    wrap = functools.partial(textwrap.fill, width=96, break_on_hyphens=False)
    intro = (
        "Measured by `bench/bench_peer.py` (as root, one command). Each run builds one world on "
        'realistic paths (`World.build(profile="realistic")`: China Unicom ~300 ms, '
        "TransTelecom ~400 ms, satellite ~650 ms RTT, 10-15 % jitter, 1.5-2.5 % loss per "
        "direction with bursts, stale and come-and-go hosts, slow web sites, a TLS 1.0-only "
        "HTTPS site) with two vantages that reach DPRK through the same delay lines. In "
        "vantage0 the real daemon runs at the default timings (interval 30 s, timeout 3 s, "
        "max_rate 20, detection defaults); in vantage1 what a user would build instead: "
        f"prometheus-blackbox-exporter {meta.get('blackbox', '?')} (Debian's) probing the same "
        f"{meta.get('probes', '?')} targets (icmp, tcp, http with pinned address, Host and SNI, "
        "dns; the modules of bench_footprint's `blackbox_setup`, plus `min_version: TLS10` on "
        "the HTTPS modules, since Go refuses TLS 1.0 by default and kcna.kp's stand-in speaks "
        f"nothing newer), scraped by a real Prometheus {meta.get('prometheus', '?')} every 15 s "
        "(`scrape_timeout: 10s`, `evaluation_interval: 15s`), each target labelled with its "
        '`entity` and `module` (the controls: `entity="controls"`). The alert state of both '
        "is read once a second: the daemon's `outage_active` from /metrics, Prometheus' "
        "/api/v1/alerts. Each fault is done once, in the kernel, for both."
    )
    lines = [
        HEADING,
        "",
        wrap(intro),
        "",
        "The alert rules, as a careful user writes them (`for: 1m`: one failed scrape is not "
        "an alert):",
        "",
        "```yaml",
        f"- alert: {BLACKOUT_ALERT}   # the blackout alert: every ICMP target of the entity fails",
        '  expr: max by (entity) (probe_success{module="icmp"}) == 0',
        "  for: 1m",
        f"- alert: {TARGET_ALERT}         # the usual per-target rule",
        "  expr: probe_success == 0",
        "  for: 1m",
        "```",
        "",
        f"- date: {meta['date']}; wall time {meta['wall'] / 60:.0f} min, up to "
        f"{args.parallel} worlds at a time",
        f"- daemon code: {meta.get('commit', '?')}",
        f"- machine: {info['cpu']}; kernel {info['kernel']}; Python {info['python']}; load "
        f"average {info['load']} at the start (the machine is shared with other benches)",
        "- command: `sudo .venv/bin/python bench/bench_peer.py"
        + (f" --runs {args.runs}" if args.runs != 3 else "")
        + (f" --minutes {args.minutes:g}" if args.minutes != 24 else "")
        + "`; raw results in bench/results/peer-*.json",
        "- median (min-max) over runs. *flagged*: fault -> `outage_active` 1 / the blackout "
        "alert firing; *cleared*: repair -> `outage_active` 0 / the alert resolved; *false*: "
        "alerts or events beyond the incident's own (a second firing, the blackout rule on the "
        f"controls, a relapse in the {TAIL:.0f} s watched after both cleared).",
        f"- *blackout_silent*: {WHAT['blackout_silent']}; *blackout_unreachable*: "
        f"{WHAT['blackout_unreachable']} (rate-limited); every DPRK entity goes dark. The "
        f"headline entity is {HEADLINE} (four /24s); {' and '.join(small)} are one /24 with "
        "three addresses each. The fault comes at a random point of Prometheus' 15 s cycle "
        f"after both tools are settled, the repair {HOLD_DOWN:.0f}-{HOLD_DOWN + PHASE:.0f} s "
        "after both flagged every entity.",
        "",
        f"| scenario | tool | runs ok | flagged {HEADLINE} | flagged {', '.join(small)} "
        f"| cleared {HEADLINE} | cleared {', '.join(small)} | false |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in ("blackout_silent", "blackout_unreachable"):
        rs = by.get(s, [])
        if not runs_of[s]:
            continue
        for tool, label in TOOLS:
            fl = [a[tool]["flagged"] for a in rs]
            cl = [a[tool]["cleared"] for a in rs]
            missed = sum(1 for f in fl for e in f if f[e] is None)
            lines.append(
                f"| {s} | {label} | {len(rs)}/{runs_of[s]} | "
                f"{sp(f[HEADLINE] for f in fl)} | {sp(f[e] for f in fl for e in small)} | "
                f"{sp(c[HEADLINE] for c in cl)} | {sp(c[e] for c in cl for e in small)} | "
                f"{sum(a[tool]['false'] for a in rs)}"
                + (f" ({missed} missed)" if missed else "")
                + " |"
            )
    calm = by.get("calm", [])
    calm_raw = [r for r in ok if r["scenario"] == "calm"]
    if runs_of["calm"]:
        hours = sum(a["hours"] for a in calm)
        mins = calm[0]["hours"] * 60 if calm else args.minutes
        spans = {
            name: (b - a) * mins for name, a, b in CALM_PHASES if name in ("congestion", "loss")
        }
        loss_spans = [f"{(b - a) * mins:.1f}" for name, a, b in CALM_PHASES if name == "loss"]
        lines += [
            "",
            wrap(
                f"Calm window ({len(calm)}/{runs_of['calm']} runs of {mins:.0f} min, "
                f"{hours:.1f} h in all): realistic paths, one congestion episode on every "
                f"upstream (RTT x{CONGESTION['rtt_factor']:g}, {CONGESTION['loss']:.0%} loss per "
                f"direction, 20 s ramps) for {spans['congestion']:.0f} min, and two phases of "
                f"{LOSS:.0%} random loss into every DPRK block ({' and '.join(loss_spans)} "
                "min), quiet stretches between. Nothing is down: every alert or event is "
                "false. *per hour*: median (min-max) of the runs' rates; the phase is where the "
                "alert's condition began (pending) or the event opened."
            ),
            "",
            "| tool: rule | false per hour | in all | quiet | congestion | 30 % loss |",
            "|---|---|---|---|---|---|",
        ]

        def row(label: str, items: Callable[[dict[str, Any]], list[str]]) -> str:
            rates = [len(items(a)) / a["hours"] for a in calm]
            phases = [p for a in calm for p in items(a)]
            counts = " | ".join(str(phases.count(p)) for p in ("quiet", "congestion", "loss"))
            return f"| {label} | {sp(rates, '.1f', '')} | {len(phases)} | {counts} |"

        lines += [
            row(
                "dprk-monitor: outage events (any entity, any kind)",
                lambda a: [p for _, p in a["daemon_events"]],
            ),
            row(
                f"blackbox + Prometheus: {BLACKOUT_ALERT} (any entity)",
                lambda a: [p for _, p in a["prom_blackout"]],
            ),
            row(
                f"blackbox + Prometheus: {TARGET_ALERT} (per target)",
                lambda a: [p for c, p, _ in a["prom_target"] if c == "other"],
            ),
            row(
                "(dprk-monitor: a `target_up` 1 -> 0, not an alert)",
                lambda a: [p for c, p in a["daemon_flips"] if c == "other"],
            ),
        ]
        standing = sorted({k.split("|", 3)[3] for a in calm for k in a["prom_standing"]})
        flaky_p = [
            sum(1 for c, _, _ in a["prom_target"] if c == "flaky") / a["hours"] for a in calm
        ]
        flaky_d = [sum(1 for c, _ in a["daemon_flips"] if c == "flaky") / a["hours"] for a in calm]
        kinds: dict[str, int] = {}
        for a in calm:
            for cls, _, what in a["prom_target"]:
                if cls == "other":
                    kind = what.split(" ", 1)[0].split("_")[0]
                    kinds[kind] = kinds.get(kind, 0) + 1
        shares = [fail_shares(r) for r in calm_raw]

        def share(tool: str, kind: str) -> str:
            return sp([100 * x[tool][kind] for x in shares if kind in x[tool]], ".1f", " %")

        lines += [
            "",
            wrap(
                f"Not counted above: {TARGET_ALERT} standing from the start on "
                f"{len(standing)} configured addresses that never answer "
                f"({', '.join(standing) or 'none'}), firing all along; and on the hosts that "
                f"really come and go ({', '.join(calm_raw[0]['flaky']) if calm_raw else '-'}): "
                f"{sp(flaky_p, '.1f', '')} firings per hour (the daemon: "
                f"{sp(flaky_d, '.1f', '')} `target_up` falls per hour there, no event). The "
                f"false {TARGET_ALERT} alerts by probe kind: "
                + (", ".join(f"{k} {n}" for k, n in sorted(kinds.items())) or "none")
                + ". Share of probes that failed over the window, daemon / blackbox_exporter "
                "(the daemon's re-probes and the never-answering addresses included): "
                + "; ".join(
                    f"{k} {share('daemon', k)} / {share('prom', k)}"
                    for k in ("icmp", "tcp", "http", "dns")
                )
                + ". The daemon's timeouts are learned per path (monitor/rto.py: between "
                "`min_timeout` 1 s and the 3 s timeout for one exchange; an HTTP fetch, about "
                "four exchanges, up to 10 s) and a TCP connect waits past 0.95 s only "
                "when its SYN resend gets a send of the rate budget (monitor/probes/tcp.py); the "
                "exporter always waits the 3 s with the kernel's resends unbudgeted. So a lost "
                "SYN or a handshake slower than the learned timeout (the Unicom path's ~750 ms "
                "RTT at x2.5, with jitter) is more often a failure for the daemon, which "
                "re-probes at once and counts each try here."
            ),
        ]
    lines += ["", *reading(by)]
    errors = [r for r in results if "error" in r]
    if errors:
        lines += ["", f"{len(errors)} run(s) failed:"]
        lines += [
            f"- {e['scenario']} run {e['run']}: `{e['error'].strip().splitlines()[-1][:200]}`"
            for e in errors
        ]
    return "\n".join(lines) + "\n"


def reading(by: dict[str, list[dict[str, Any]]]) -> list[str]:
    """The paragraphs under the tables, with this run's figures."""
    wrap = functools.partial(textwrap.fill, width=96, break_on_hyphens=False)
    out: list[str] = []
    seen = []
    for s in ("blackout_silent", "blackout_unreachable"):
        rs = by.get(s, [])
        d = med(a["daemon"]["flagged"][HEADLINE] for a in rs)
        p = med(a["prom"]["flagged"][HEADLINE] for a in rs)
        dc = med(a["daemon"]["cleared"][HEADLINE] for a in rs)
        pc = med(a["prom"]["cleared"][HEADLINE] for a in rs)
        if d and p and dc is not None and pc is not None:
            seen.append(
                f"{s.split('_')[1]}: flagged after {d:.1f} s against {p:.1f} s, cleared "
                f"after {dc:.1f} s against {pc:.1f} s"
            )
    small = sorted(
        {e for s in MODES for a in by.get(s, []) for e in a["daemon"]["flagged"]} - {HEADLINE}
    )
    small_d = [a["daemon"]["flagged"][e] for s in MODES for a in by.get(s, []) for e in small]
    if seen:
        text = (
            f"Reading it: on the same paths and faults, {HEADLINE} ({'; '.join(seen)}; medians, "
            "daemon first)."
        )
        if any(v is not None for v in small_d):
            text += (
                f" The daemon's small entities ({', '.join(small)}: one /24, three addresses, "
                f"probed once per interval each) were flagged after {sp(small_d)} over both "
                "blackouts: "
                "longer than the big entity, still within the exporter's floor of one minute."
            )
        out += [wrap(text), ""]
    out.append(
        wrap(
            "The Prometheus setup cannot flag a blackout sooner than the rule's `for: 1m` after "
            "its condition first holds, and the condition needs the latest scrape of every ICMP "
            "target of the entity to have failed: up to one scrape interval (15 s) plus the "
            "probe timeout (3 s) until the last target's failed probe, up to one evaluation "
            "interval (15 s) until the rule sees it, then 60 s: about 63-93 s whatever the paths. "
            "It clears at the first evaluation after one ICMP target's scrape succeeds again "
            "(0-30 s). A shorter `for:` would buy speed with false alerts (the per-target row "
            "of the calm window shows what `for: 1m` already lets through); a shorter scrape "
            "interval costs probes. The daemon does not wait for rounds: a missing answer sets "
            "off re-probes and a burst across the entity's blocks, so a blackout is flagged "
            "within about one probe timeout plus that burst."
        )
    )
    return out


def tool_versions() -> dict[str, str]:
    out: dict[str, str] = {}
    for key, argv in (
        ("blackbox", [peer_prom.BLACKBOX, "--version"]),
        ("prometheus", ["prometheus", "--version"]),
    ):
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            line = (p.stdout or p.stderr).splitlines()[0]
            out[key] = line.split("version ", 1)[1].split()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            out[key] = "?"
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--parallel", type=int, default=3, help="worlds at a time (at most 3)")
    ap.add_argument("--minutes", type=float, default=24.0, help="length of the calm window")
    ap.add_argument(
        "--only", default="", help=f"scenarios, comma-separated: {', '.join(SCENARIOS)}"
    )
    ap.add_argument("--no-write", action="store_true", help="print only; leave the docs alone")
    ap.add_argument("--from-raw", help="re-render the section from a saved bench/results file")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.minutes)))
        return 0
    if args.from_raw:
        saved = json.loads(Path(args.from_raw).read_text(encoding="utf-8"))
        for k in ("runs", "parallel", "minutes"):
            setattr(args, k, saved["args"][k])
        text = render(saved["results"], args, saved["machine"], saved["meta"])
        benchlib.publish(HEADING, text, not args.no_write)
        return 0
    if os.geteuid() != 0:
        print("bench_peer: run as root (it builds network namespaces)", file=sys.stderr)
        return 2
    for binary in (peer_prom.BLACKBOX, "prometheus"):
        if subprocess.run(["which", binary], capture_output=True).returncode != 0:
            print(f"bench_peer: {binary} missing (Debian package)", file=sys.stderr)
            return 2
    args.parallel = max(1, min(3, args.parallel))
    names = [s for s in SCENARIOS if not args.only or s in args.only.split(",")]
    # the long calm windows first, so the short blackout runs fill in beside them
    jobs = [(s, i) for s in sorted(names, key=lambda s: s != "calm") for i in range(args.runs)]
    info = benchlib.machine()
    meta: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": benchlib.commit(),
        **tool_versions(),
    }
    t0 = time.time()
    results: list[dict[str, Any]] = []
    with concurrent.futures.ThreadPoolExecutor(args.parallel) as pool:
        futs = [pool.submit(run_one, s, args.minutes, i) for s, i in jobs]
        for f in concurrent.futures.as_completed(futs):
            r = f.result()
            results.append(r)
            if "error" in r:
                state = "FAILED: " + r["error"].strip().splitlines()[-1][:300]
            else:
                a = analyse(r)
                meta["probes"] = len(r["probes"])
                if "daemon" in a:
                    state = (
                        f"daemon flagged {a['daemon']['flagged'][HEADLINE]} cleared "
                        f"{a['daemon']['cleared'][HEADLINE]}; prom flagged "
                        f"{a['prom']['flagged'][HEADLINE]} cleared {a['prom']['cleared'][HEADLINE]}"
                    )
                else:
                    state = (
                        f"daemon events {a['daemon_events']}; blackout alerts "
                        f"{a['prom_blackout']}; per-target firings {len(a['prom_target'])}"
                    )
            print(f"[{time.time() - t0:6.0f}s] {r['scenario']} run {r['run']}: {state}", flush=True)
    meta["wall"] = time.time() - t0
    (BENCH / "results").mkdir(exist_ok=True)
    raw = BENCH / "results" / f"peer-{int(t0)}.json"
    raw.write_text(
        json.dumps(
            {"args": vars(args), "machine": info, "meta": meta, "results": results},
            separators=(",", ":"),
        ),
        encoding="utf-8",
    )
    print(f"raw results: {raw}")
    text = render(results, args, info, meta)
    benchlib.publish(HEADING, text, not args.no_write)
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
