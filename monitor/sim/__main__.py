"""`python -m monitor.sim cleanup [--stale]` removes the simulation's namespaces, processes and
scratch dirs; `python -m monitor.sim up [--vantages N] [--config-out PATH]` builds a world and keeps
it until Ctrl-C (for poking at it by hand with `ip netns exec <ns> ...`)."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m monitor.sim")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("cleanup", help="remove every namespace/process/dir of the simulation")
    p.add_argument(
        "--stale",
        action="store_true",
        help="only leftovers of dead processes (what every world build does)",
    )
    p = sub.add_parser("up", help="build a world and keep it until Ctrl-C")
    p.add_argument("--vantages", type=int, default=1)
    p.add_argument("--config-out", help="write the daemon config for vantage 0 here")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("monitor.sim: needs root (network namespaces)", file=sys.stderr)
        return 2
    from monitor.sim import netns

    if args.command == "cleanup":
        gone = netns.sweep(everything=not args.stale)
        for ns in gone:
            print(f"deleted {ns}")
        print(f"{len(gone)} namespace(s) removed")
        return 0
    from monitor.sim.world import World

    with World.build(vantages=args.vantages) as w:
        print(w.describe())
        if args.config_out:
            with open(args.config_out, "w", encoding="utf-8") as f:
                f.write(w.daemon_config())
            print(f"daemon config written to {args.config_out}")
        print("ready; Ctrl-C to tear down", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
    return 0


if __name__ == "__main__":
    sys.exit(main())
