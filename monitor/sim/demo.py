"""`dprk-monitor demo`: replay a compressed June 2025 blackout in a simulated DPRK and print what
the daemon saw.

Builds the test world (network namespaces, 198.18.0.0/15 only, so it needs root), starts the real
daemon in the vantage namespace with a short interval, then plays the outage as reported on
2025-06-06/07: DNS first, then the web sites, then every route via China Unicom and TransTelecom
withdrawn, then the routes come back and the servers with them. A timeline of the faults and of
the daemon's metrics (`target_up`, `entity_state`, `outage_active`, `vantage_healthy`) is printed
as it happens; at the end the daemon's outage log, when its API has one, and the address of the
event's page. With `--keep SECONDS` the world and the daemon stay up that long afterwards and the
daemon's pages are served on the host's loopback (`--port`, default 9475) by a small forwarder
into the vantage namespace, so a browser on this machine can open the status and event pages.
Everything is torn down on exit, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import socket
import sys
import threading
import time
from collections.abc import Sequence
from typing import TextIO

from monitor.config import parse_duration
from monitor.sim.scenarios import DEFAULT_INTERVAL, scaled_config

CONTROLS = "_controls"

# (real time of the event as reported, what happened, the World method replaying it)
SCRIPT: list[tuple[str, str, str]] = [
    ("2025-06-06 ~17:00 UTC", "DNS servers ns1/ns2.kptc.kp stop answering", "stop_dns"),
    ("2025-06-06 ~17:20 UTC", "web sites go dark: KCNA, Rodong Sinmun, MFA, Air Koryo", "stop_web"),
    ("2025-06-06 ~18:00 UTC", "routes via China Unicom and TransTelecom withdrawn", "blackout"),
    ("2025-06-07 ~02:30 UTC", "routes are announced again", "repair_blackout"),
    ("2025-06-07 ~02:35 UTC", "name servers answer again", "start_dns"),
    ("2025-06-07 ~02:40 UTC", "web sites come back", "start_web"),
]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of `dprk-monitor demo` (cli.py may call this on its sub-parser)."""
    p.add_argument(
        "--interval",
        default=None,
        help="the daemon's probing interval (default 2s; 6s with --realistic)",
    )
    p.add_argument(
        "--phase",
        type=float,
        default=None,
        help="seconds between two steps of the replay (default: 6 intervals)",
    )
    p.add_argument(
        "--keep",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="after the replay, keep the world up this long and serve the daemon's pages on "
        "the host's loopback (see --port); Ctrl-C ends it",
    )
    p.add_argument(
        "--port",
        type=int,
        default=9475,
        help="host loopback port for --keep (default 9475)",
    )
    p.add_argument(
        "--realistic",
        action="store_true",
        help="realistic paths and hosts: ~300-650 ms RTT, jitter, 1-3 %% loss per direction, "
        "stale and come-and-go hosts, slow and TLS 1.0-only web sites, silent blackouts",
    )


class Timeline:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.t0 = time.monotonic()
        self.last: dict[str, str] = {}

    def line(self, tag: str, text: str) -> None:
        print(f"+{time.monotonic() - self.t0:6.1f}s  {tag:<6} {text}", file=self.out, flush=True)

    def observe(self, summary: dict[str, str]) -> None:
        for key, value in summary.items():
            if self.last.get(key) != value:
                self.line("seen", f"{key:<12} {value}")
        self.last = summary


def summarize(metrics: object) -> dict[str, str]:
    """Per entity: `icmp 34/34 tcp 12/12 ...  state=up`; plus the vantage's health."""
    from monitor.sim.daemonproc import Metrics

    assert isinstance(metrics, Metrics)
    out: dict[str, str] = {}
    counts: dict[str, dict[str, list[int]]] = {}
    for labels, value in metrics.values("dprk_monitor_target_up"):
        ent, kind = labels.get("entity", "?"), labels.get("kind", "?")
        c = counts.setdefault(ent, {}).setdefault(kind, [0, 0])
        c[0] += int(value == 1)
        c[1] += 1
    for ent in sorted(counts, key=lambda e: (e == CONTROLS, e)):
        kinds = "  ".join(f"{k} {up}/{n}" for k, (up, n) in sorted(counts[ent].items()))
        extra = ""
        if ent != CONTROLS:
            state = metrics.one_hot("dprk_monitor_entity_state", "state", entity=ent)
            if state:
                extra += f"  state={state}"
            if metrics.value("dprk_monitor_outage_active", entity=ent) == 1:
                extra += "  OUTAGE OPEN"
        out["controls" if ent == CONTROLS else ent] = kinds + extra
    healthy = metrics.value("dprk_monitor_vantage_healthy")
    if healthy is not None:
        out["vantage"] = "healthy" if healthy == 1 else "NOT healthy (own uplink?)"
    return out


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return (
            "dprk-monitor demo needs root: it builds a simulated Internet out of network "
            "namespaces (run it with sudo)"
        )
    from monitor.sim.world import missing_tools

    missing = missing_tools()
    if missing:
        return (
            f"dprk-monitor demo needs {', '.join(missing)} "
            "(Debian packages: iproute2 nftables nginx-light knot)"
        )
    if importlib.util.find_spec("trustme") is None:
        return (
            "dprk-monitor demo needs the simulator's extra: pip install 'dprk-outage-monitor[sim]'"
            " (trustme; `make venv` installs it)"
        )
    return None


def run_demo(
    args: argparse.Namespace | Sequence[str] | None = None, out: TextIO = sys.stdout
) -> int:
    if not isinstance(args, argparse.Namespace):
        p = argparse.ArgumentParser(prog="dprk-monitor demo")
        add_arguments(p)
        args = p.parse_args(list(args or []))
    why = _why_not()
    if why:
        print(why, file=sys.stderr)
        return 2
    realistic = bool(getattr(args, "realistic", False))
    # realistic RTTs (up to ~0.7 s) and slow sites (1.5 s) need a timeout of seconds
    interval_text = str(getattr(args, "interval", None) or ("6s" if realistic else "2s"))
    try:
        interval = parse_duration(interval_text)
    except ValueError as e:
        print(f"dprk-monitor demo: --interval: {e}", file=sys.stderr)
        return 2
    phase = getattr(args, "phase", None) or 6 * interval
    timeout = f"{max(0.2, interval / 2):g}s"

    from monitor.sim.daemonproc import DaemonError, DaemonProcess
    from monitor.sim.world import World

    print("building the simulated Internet (network namespaces, 198.18.0.0/15 only)...", file=out)
    try:
        with World.build(profile="realistic" if realistic else None) as world:
            cfg = world.tmpdir / "demo.yaml"
            # Every detection duration shrinks with the interval (scenarios.scaled_config), so
            # the compressed replay is judged as the real one would be at the defaults.
            kw = scaled_config(interval / DEFAULT_INTERVAL)
            kw["timeout"] = timeout
            cfg.write_text(world.daemon_config(**kw))
            print(world.describe(verbose=False), file=out)
            print(f"daemon config: {cfg}\nstarting the daemon in {world.vantages[0]}...", file=out)
            daemon = DaemonProcess(world, cfg)
            try:
                daemon.start()
            except DaemonError as e:
                print(f"dprk-monitor demo: the daemon did not start: {e}", file=sys.stderr)
                return 1
            tl = Timeline(out)
            tl.line("start", f"daemon running (pid {daemon.pid}), probing every {interval_text}")
            try:
                _watch(daemon, tl, 3 * interval + 1)
                for when, what, method in SCRIPT:
                    getattr(world, method)()
                    tl.line(
                        "FAULT" if method in ("stop_dns", "stop_web", "blackout") else "repair",
                        f"[{when}] {what}",
                    )
                    _watch(daemon, tl, phase)
                ids = _report(daemon, out)
                keep = float(getattr(args, "keep", 0.0) or 0.0)
                port = int(getattr(args, "port", 9475))
                if keep > 0:
                    _serve_pages(world.vantages[0], daemon.listen, port, keep, ids, out)
                elif ids:
                    print(
                        f"event page: http://{daemon.listen}/outages/{ids[0]} inside "
                        f"{world.vantages[0]} (run with --keep 600 to open it from this host)",
                        file=out,
                    )
            finally:
                daemon.stop()
                print("tearing the world down", file=out)
    except KeyboardInterrupt:
        print("interrupted; world torn down", file=sys.stderr)
        return 130
    return 0


def _watch(daemon: object, tl: Timeline, seconds: float) -> None:
    from monitor.sim.daemonproc import DaemonError, DaemonProcess

    assert isinstance(daemon, DaemonProcess)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if not daemon.running:
            raise DaemonError("the daemon exited:\n" + daemon.log_tail())
        try:
            tl.observe(summarize(daemon.metrics()))
        except DaemonError as e:
            tl.line("warn", str(e))
        time.sleep(0.5)


def _report(daemon: object, out: TextIO) -> list[str]:
    """The outage log as the daemon recorded it: a table, then each event's story. Returns the
    ids of the events, the longest first (the one worth opening)."""
    from monitor.events import render_table
    from monitor.sim.daemonproc import DaemonError, DaemonProcess

    assert isinstance(daemon, DaemonProcess)
    try:
        events = daemon.outages()
    except (DaemonError, ValueError) as e:
        print(f"outage log: unavailable ({e})", file=out)
        return []
    if events is None:
        print("outage log: not provided by this daemon version", file=out)
        return []
    print("--- outage log (GET /api/v1/outages, also `dprk-monitor outages`) ---", file=out)
    out.write(render_table(events))
    for ev in events:
        phases = " -> ".join(
            f"{p['kind']} at {p['start'][11:19]}" for p in ev["signals"].get("phases", [])
        )
        order = ", ".join(ev["evidence"].get("failure_order", []))
        print(f"{ev['entity']} {ev['kind']}: {phases}; failed first: {order or '-'}", file=out)
    print("full JSON with evidence: /api/v1/outages", file=out)
    longest = sorted(events, key=lambda e: -float(e.get("duration_seconds") or 0.0))
    return [str(e["id"]) for e in longest]


def _serve_pages(
    ns: str, listen: str, port: int, seconds: float, ids: list[str], out: TextIO
) -> None:
    """Forward 127.0.0.1:`port` on the host to the daemon's `listen` inside `ns` for `seconds`.
    Loopback to loopback: nothing leaves the machine, and the world stays isolated (each
    connection is made from a thread that entered the namespace)."""
    from monitor.sim import netns

    host, _, dport = listen.rpartition(":")
    srv = socket.create_server(("127.0.0.1", port))
    srv.settimeout(0.5)

    def pump(a: socket.socket, b: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := a.recv(65536):
                b.sendall(data)
        with contextlib.suppress(OSError):
            b.shutdown(socket.SHUT_WR)

    def handle(client: socket.socket) -> None:
        try:
            upstream = netns.call_in(
                ns, lambda: socket.create_connection((host, int(dport)), timeout=5), timeout=10
            )
        except (OSError, TimeoutError):
            client.close()
            return
        upstream.settimeout(None)
        t = threading.Thread(target=pump, args=(upstream, client), daemon=True)
        t.start()
        pump(client, upstream)
        t.join(30)
        client.close()
        upstream.close()

    base = f"http://127.0.0.1:{port}"
    print(f"status page: {base}/", file=out)
    if ids:
        print(f"event page:  {base}/outages/{ids[0]}", file=out)
    print(f"serving for {seconds:g} s (Ctrl-C to end)", file=out, flush=True)
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            try:
                client, _ = srv.accept()
            except TimeoutError:
                continue
            threading.Thread(target=handle, args=(client,), daemon=True).start()
    finally:
        srv.close()
