"""How faithful are the realistic paths? `python -m monitor.sim.pathcheck [--seconds S] [--rate R]`

Builds a realistic world (root: network namespaces, 198.18.0.0/15 only), pings one host behind
every delay line from the vantage at `rate` echo requests per second per link for `seconds`, and
prints per link: configured vs measured RTT (mean, standard deviation, percentiles) and
round-trip loss (with a 95 % interval), then the forwarder's own figures: scheduling error (how
late each packet left compared with its due time) and CPU per packet. `--no-bursts` measures
the independent loss alone; `--json` prints the raw figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import sys
import time
from typing import Any

from monitor.sim import spec as specmod
from monitor.sim import tools
from monitor.sim.netem import PathProfile

# one answering host behind each link
TARGETS = {
    "unicom": "198.18.176.1",
    "ttk": "198.18.177.1",
    "satgate": "198.19.35.1",
    "ctl": "198.19.8.8",
}


def expected(p: PathProfile) -> dict[str, float]:
    """What the profile promises for a round trip (no episodes): mean, sd, loss."""
    one = p.rtt / 2
    return {
        "rtt_mean": p.rtt,
        # two independent one-way delays, each with sd jitter x delay
        "rtt_sd": math.sqrt(2) * p.jitter * one,
        "loss": 1.0 - (1.0 - p.mean_loss("down")) * (1.0 - p.mean_loss("up")),
    }


def _steal() -> float:
    """Seconds of CPU time the hypervisor took from this VM so far (all CPUs)."""
    with open("/proc/stat", encoding="ascii") as f:
        fields = f.readline().split()
    return int(fields[8]) / 100.0 if len(fields) > 8 else 0.0


def measure(seconds: float, rate: float, bursts: bool = True) -> dict[str, Any]:
    from monitor.sim.world import World

    spec = specmod.realistic()
    if not bursts:
        spec = dataclasses.replace(
            spec, paths={k: dataclasses.replace(p, burst=None) for k, p in spec.paths.items()}
        )
    out: dict[str, Any] = {"seconds": seconds, "rate": rate, "links": {}}
    with World.build(spec) as w:
        # hosts that come and go must not count as loss here
        for fh in spec.flaky:
            w.unschedule_host(fh.address)
        before = w.path_stats()
        steal0 = _steal()
        count = max(1, int(seconds * rate))
        dsts = list(TARGETS.values())
        res = w.call_in(
            0,
            lambda: tools.ping_many(dsts, count=count, interval=1.0 / rate, timeout=3.0),
            timeout=seconds + 60,
        )
        steal = _steal() - steal0
        after = w.path_stats()
        packets = sum(
            after[k][d]["packets"] - before[k][d]["packets"] for k in after for d in ("down", "up")
        )
        link0 = next(iter(after))
        cpu = after[link0]["cpu_seconds"] - before[link0]["cpu_seconds"]
        user = after[link0]["cpu_user_seconds"] - before[link0]["cpu_user_seconds"]
        out["forwarder"] = {
            "packets": packets,
            "cpu_seconds": cpu,
            "cpu_user_seconds": user,
            "cpu_per_packet_us": cpu / packets * 1e6 if packets else 0.0,
            "cpu_share": cpu / seconds,
            "vm_steal_seconds": steal,
        }
        for link, dst in TARGETS.items():
            r = res[dst]
            rtts = sorted(r.rtts)
            st = after[link]
            qs = statistics.quantiles(rtts, n=20) if len(rtts) >= 20 else [math.nan] * 19
            loss = r.loss
            ci = 1.96 * math.sqrt(max(loss * (1 - loss), 1e-12) / max(1, r.sent))
            out["links"][link] = {
                "target": dst,
                "expected": expected(spec.paths[link]),
                "sent": r.sent,
                "received": r.received,
                "loss": loss,
                "loss_ci95": ci,
                "rtt_mean": statistics.fmean(rtts) if rtts else math.nan,
                "rtt_sd": statistics.stdev(rtts) if len(rtts) > 1 else math.nan,
                "rtt_p5": qs[0],
                "rtt_p50": qs[9],
                "rtt_p95": qs[18],
                "late": {d: st[d]["late"] for d in ("down", "up")},
            }
    return out


def render(doc: dict[str, Any]) -> str:
    ms = 1000.0
    lines = [
        f"realistic paths: {doc['rate']:g} pings/s per link for {doc['seconds']:g} s",
        f"{'link':<8} {'RTT set':>8} {'mean':>7} {'sd set':>7} {'sd':>6} {'p5':>7} {'p50':>7} "
        f"{'p95':>7}   {'loss set':>8} {'loss':>14}   {'late p50':>8} {'p99':>6} {'max':>6}",
    ]
    for link, x in doc["links"].items():
        e = x["expected"]
        late = [x["late"]["down"], x["late"]["up"]]
        lines.append(
            f"{link:<8} {e['rtt_mean'] * ms:7.1f}m {x['rtt_mean'] * ms:7.1f} "
            f"{e['rtt_sd'] * ms:7.1f} {x['rtt_sd'] * ms:6.1f} {x['rtt_p5'] * ms:7.1f} "
            f"{x['rtt_p50'] * ms:7.1f} {x['rtt_p95'] * ms:7.1f}   {e['loss']:8.2%} "
            f"{x['loss']:6.2%}±{x['loss_ci95']:5.2%}   "
            f"{max(a['p50'] for a in late) * 1e6:6.0f}us {max(a['p99'] for a in late) * ms:5.2f}m "
            f"{max(a['max'] for a in late) * ms:5.1f}m"
        )
    f = doc["forwarder"]
    lines.append(
        f"forwarder: {f['packets']} packets, {f['cpu_seconds']:.2f} s CPU "
        f"({f['cpu_user_seconds']:.2f} s in Python, the rest in the kernel) "
        f"({f['cpu_per_packet_us']:.0f} us/packet, {f['cpu_share']:.1%} of a core); "
        f"VM steal during the run: {f['vm_steal_seconds']:.2f} s"
    )
    lines.append("(RTT in ms; late = forwarder's write time minus due time, per direction)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m monitor.sim.pathcheck")
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--rate", type=float, default=50.0, help="pings per second per link")
    p.add_argument("--no-bursts", action="store_true", help="independent loss only")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    t0 = time.monotonic()
    doc = measure(a.seconds, a.rate, bursts=not a.no_bursts)
    doc["wall_seconds"] = time.monotonic() - t0
    print(json.dumps(doc, indent=2) if a.json else render(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
