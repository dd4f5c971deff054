"""BGP storm: the cost, in event-loop time, of a RIS Live withdrawal storm, old code vs new.

    .venv/bin/python bench/bench_bgp.py [--runs 5] [--peers 1200] [--baseline REV] [--no-write]

No root, no network: frames are handed to `RisLiveClient.handle_text` directly, which is what the
websocket loop calls for every text frame (parse, apply to `Visibility`, re-evaluate the watched
prefixes it touched, call `on_change` for each whose ratio moved). Two `on_change` callbacks:
"bare" only records the change; "daemon" does what the daemon's routing consumer does: ask for
the withdrawal episode and, while one is open, the full `status()` (counts, origins, per-/24
detail) for the event's evidence.

The storm: one watched /22 (a 198.18.0.0/15 stand-in for 175.45.176.0/22), `--peers` collector
peers (default 1,200, spread over 25 collectors) each announcing its four /24s in one UPDATE, then
every peer withdrawing all four, one UPDATE per peer, within a minute of BGP time. Reported per
phase: total CPU time of the thread spent in handle_text and the worst single message, plus one `refresh()` (what
the client's ping loop runs every 30 s) at the end; median (min-max) of `--runs` runs.

"old" is `monitor/bgp.py` as of `--baseline` (default: the last commit before the split into
monitor/bgp/, where every message re-tallied every route of the watched prefix), loaded from git
into a temporary module; "new" is the working tree's `monitor.bgp`. Each run builds a fresh
client; old and new runs alternate. The section "## BGP storm" of docs/BENCHMARKS.md is
rewritten unless `--no-write`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

import benchlib  # noqa: E402
import structlog  # noqa: E402

SECTION = "## BGP storm"
BASELINE = "0d1b58c"  # last commit with the single-file monitor/bgp.py
WATCHED = "198.18.176.0/22"
SLASH24 = [f"198.18.{n}.0/24" for n in (176, 177, 178, 179)]
T0 = 1_700_000_000.0


def load_baseline(rev: str) -> ModuleType:
    """`monitor/bgp.py` at `rev`, imported as a standalone module (it only needs third-party
    imports)."""
    src = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{rev}:monitor/bgp.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    tmp = Path(tempfile.mkdtemp(prefix="bench_bgp_")) / "bgp_baseline.py"
    tmp.write_text(src, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("bgp_baseline", tmp)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bgp_baseline"] = mod  # dataclasses look their module up while being built
    spec.loader.exec_module(mod)
    return mod


def peers(n: int) -> list[tuple[str, str]]:
    """(collector, address) for n peers; the addresses are only strings here."""
    return [(f"rrc{i % 25:02d}", f"198.19.{200 + i // 250}.{i % 250 + 1}") for i in range(n)]


def frame(
    host: str, peer: str, ts: float, announce: Sequence[str] = (), withdraw: Sequence[str] = ()
) -> str:
    """One RIS Live `ris_message` UPDATE, as text on the wire."""
    data: dict[str, Any] = {
        "timestamp": ts,
        "peer": peer,
        "peer_asn": "64500",
        "id": f"{host}-{peer}-{ts}",
        "host": host,
        "type": "UPDATE",
        "path": [64500, 4837, 131279] if announce else [],
        "announcements": [{"next_hop": peer, "prefixes": list(announce)}] if announce else [],
        "withdrawals": list(withdraw),
    }
    return json.dumps({"type": "ris_message", "data": data})


@dataclass
class Phase:
    total: float = 0.0
    worst: float = 0.0
    messages: int = 0

    def feed(
        self, handle: Callable[[str], None], frames: list[tuple[float, str]], clock: list[float]
    ) -> None:
        for ts, text in frames:
            clock[0] = ts + 1.0  # the wall clock runs a second behind BGP time
            # CPU time of this thread, not wall time: on a shared machine a preemption in the
            # middle of a message would otherwise count as the message's cost.
            t = time.thread_time_ns()
            handle(text)
            dt = (time.thread_time_ns() - t) / 1e9
            self.total += dt
            self.worst = max(self.worst, dt)
            self.messages += 1


@dataclass
class Run:
    announce: Phase = field(default_factory=Phase)
    withdraw: Phase = field(default_factory=Phase)
    refresh: float = 0.0
    changes: int = 0
    final_ratio: float | None = None


def one_run(mod: ModuleType, n_peers: int, callback: str) -> Run:
    clock = [T0]
    vis = mod.Visibility([WATCHED], min_peers=3, threshold=0.5)
    run = Run()

    def on_change(prefix: str, ratio: float | None) -> None:
        run.changes += 1
        # What the daemon's routing consumer does with every change.
        if callback == "daemon" and vis.withdrawal(prefix) is not None:
            vis.status(prefix, clock[0])

    client = mod.RisLiveClient(
        vis, "ws://127.0.0.1:9/", on_change=on_change, clock=lambda: clock[0]
    )
    ps = peers(n_peers)
    announce = [
        (T0 + i * 0.01, frame(h, a, T0 + i * 0.01, announce=SLASH24)) for i, (h, a) in enumerate(ps)
    ]
    t_w = T0 + 600.0
    withdraw = [
        (t_w + i * 0.05, frame(h, a, t_w + i * 0.05, withdraw=SLASH24))
        for i, (h, a) in enumerate(ps)
    ]
    run.announce.feed(client.handle_text, announce, clock)
    run.withdraw.feed(client.handle_text, withdraw, clock)
    t = time.thread_time_ns()
    client.refresh()
    run.refresh = (time.thread_time_ns() - t) / 1e9
    run.final_ratio = vis.ratio(WATCHED, clock[0])
    assert not client.junk, client.junk
    assert client.updates == 2 * n_peers
    return run


def ms(values: list[float]) -> str:
    return benchlib.spread([v * 1000 for v in values], ".2f")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--peers", type=int, default=1200)
    ap.add_argument("--baseline", default=BASELINE, help="git revision of the old monitor/bgp.py")
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/BENCHMARKS.md")
    args = ap.parse_args(argv)

    # Log lines (bgp_withdrawal, ...) would go to the console: keep them out of the timing.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    import monitor.bgp as new

    mods = {"old": load_baseline(args.baseline), "new": new}
    variants = [(code, cb) for cb in ("bare", "daemon") for code in mods]
    results: dict[tuple[str, str], list[Run]] = {k: [] for k in variants}
    for i in range(args.runs):
        for code, cb in variants:
            r = one_run(mods[code], args.peers, cb)
            results[(code, cb)].append(r)
            print(
                f"run {i + 1} {code}/{cb}: announce {r.announce.total * 1000:.1f} ms "
                f"(worst {r.announce.worst * 1000:.2f}), withdraw {r.withdraw.total * 1000:.1f} ms "
                f"(worst {r.withdraw.worst * 1000:.2f}), refresh {r.refresh * 1000:.2f} ms, "
                f"on_change {r.changes}, final ratio {r.final_ratio}",
                flush=True,
            )
    # Same inputs, same answers: the rewrite must not change what is reported.
    for cb in ("bare", "daemon"):
        old0, new0 = results[("old", cb)][0], results[("new", cb)][0]
        assert (old0.changes, old0.final_ratio) == (new0.changes, new0.final_ratio), (old0, new0)

    m = benchlib.machine()
    n = args.peers
    rows = []
    for (code, cb), runs in results.items():
        label = f"old ({args.baseline})" if code == "old" else "new"
        rows.append(
            f"| {label} | {cb} | {ms([r.announce.total for r in runs])} "
            f"| {ms([r.announce.worst for r in runs])} | {ms([r.withdraw.total for r in runs])} "
            f"| {ms([r.withdraw.worst for r in runs])} | {ms([r.refresh for r in runs])} |"
        )
    text = "\n".join(
        [
            SECTION,
            "",
            f"`bench/bench_bgp.py`: {n:,} RIS Live peers announce the four /24s of a watched /22 "
            f"({n:,} UPDATEs), then all withdraw them, one UPDATE per peer ({n:,} UPDATEs), each fed "
            "through `RisLiveClient.handle_text`; `on_change` either only records the change "
            "(bare) or does what the daemon does (episode, and `status()` while one is open). "
            "Event-loop thread CPU time (so preemption by other work on the machine is not "
            f"counted) in ms, median (min-max) of {args.runs} runs; `refresh` is one periodic "
            "re-evaluation at the end (the client's ping loop runs it every 30 s). No network, "
            "no root.",
            "",
            "| code | on_change | announce total | announce worst msg | withdraw total "
            "| withdraw worst msg | refresh |",
            "|---|---|---|---|---|---|---|",
            *rows,
            "",
            f"Old and new report the same {new0.changes} ratio changes and final ratio "
            f"{new0.final_ratio}. Machine: {m['cpu']}, Linux {m['kernel']}, Python {m['python']}, "
            f"load {m['load']} (shared with other work), {time.strftime('%Y-%m-%d')}.",
        ]
    )
    benchlib.publish(SECTION, text, not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
