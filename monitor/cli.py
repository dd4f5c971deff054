"""Command line: run, check-config, probe, outages, demo."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from monitor import __version__
from monitor import config as config_mod


def _load(path: str) -> config_mod.Config | None:
    """The configuration, or None after printing why not as one line (callers exit 1, or 78)."""
    try:
        return config_mod.load(path)
    except config_mod.ConfigError as e:
        print(e, file=sys.stderr)
        return None
    except Exception as e:
        # A validator bug must still give one line and a config exit status, not a traceback.
        detail = " ".join(f"{type(e).__name__}: {e}".split())
        print(f"{path}:0: cannot validate ({detail}); please report this", file=sys.stderr)
        return None


# sysexits.h EX_CONFIG: lets systemd's RestartPreventExitStatus tell a bad config from a crash.
EX_CONFIG = 78
# sysexits.h EX_SOFTWARE: one of the daemon's tasks died; systemd's Restart=on-failure restarts.
EX_SOFTWARE = 70


def cmd_run(args: argparse.Namespace) -> int:
    from monitor import logs
    from monitor.daemon import Daemon, DaemonFailed
    from monitor.events import StoreError
    from monitor.sqlitefile import NewerSchema

    cfg = _load(args.config)
    if cfg is None:
        return EX_CONFIG
    logs.configure(cfg.log_level)
    daemon = Daemon(cfg, config_path=args.config)
    try:
        asyncio.run(daemon.run())
    except OSError as e:  # e.g. the listen address is taken
        print(f"dprk-monitor: cannot start: {e}", file=sys.stderr)
        return 1
    except DaemonFailed as e:
        print(f"dprk-monitor: stopped: {e}", file=sys.stderr)
        return EX_SOFTWARE
    except (StoreError, NewerSchema) as e:
        # An event log, history, census or notification outbox this version cannot use
        # (written by a newer one): restarting cannot help, so the exit status is the one
        # systemd does not restart on.
        print(f"dprk-monitor: cannot start: {e}", file=sys.stderr)
        return EX_CONFIG
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    cfg = _load(args.path)
    if cfg is None:
        return 1
    n = sum(len(e.targets) for e in cfg.entities)
    print(
        f"{args.path}: OK ({len(cfg.entities)} entities, {n} targets, {len(cfg.controls)} controls)"
    )
    rate = n / cfg.probing.interval
    if rate > cfg.probing.max_rate:
        print(
            f"warning: {n} targets every {cfg.probing.interval:g}s need {rate:.1f} probes/s, "
            f"above probing.max_rate {cfg.probing.max_rate:g}: rounds will run late",
            file=sys.stderr,
        )
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    from monitor.probe_once import probe_once, render_table

    cfg = _load(args.config)
    if cfg is None:
        return 1
    rows = asyncio.run(probe_once(cfg))
    sys.stdout.write(render_table(rows))
    return 0


def cmd_discover(args: argparse.Namespace) -> int:
    """`discover`: one census now (monitor/discovery/oneshot.py)."""
    from monitor.discovery.oneshot import discover_once, pick_entities, render
    from monitor.discovery.store import FILENAME

    cfg = _load(args.config)
    if cfg is None:
        return 1
    try:
        entities = pick_entities(cfg, args.entity)
    except ValueError as e:
        print(f"dprk-monitor: {e}", file=sys.stderr)
        return 1
    results = asyncio.run(discover_once(cfg, entities))
    sys.stdout.write(render(results, str(cfg.state_dir / FILENAME)))
    return 0


def cmd_outages(args: argparse.Namespace) -> int:
    from monitor.events import EventStore, StoreError, render_csv, render_json, render_table

    cfg = _load(args.config)
    if cfg is None:
        return 1
    if args.import_file is not None:
        return _import_outages(cfg, args)
    try:
        store = EventStore(cfg.state_dir, readonly=True)
        try:
            events = store.query(since=args.since, until=args.until, entity=args.entity)
        finally:
            store.close()
    except (ValueError, StoreError) as e:
        print(f"dprk-monitor: {e}", file=sys.stderr)
        return 1
    if args.format == "json":
        sys.stdout.write(render_json(events))
    elif args.format == "csv":
        sys.stdout.write(render_csv(events))
    else:
        sys.stdout.write(render_table(events))
    return 0


def _import_outages(cfg: config_mod.Config, args: argparse.Namespace) -> int:
    """`outages --import FILE`: every entry checked first (nothing is written if one is bad),
    then upserted by id; safe while the daemon runs, and to repeat."""
    from monitor.events import EventStore, StoreError, parse_export

    if args.since or args.until or args.entity or args.format != "table":
        print("dprk-monitor: --import takes no --since/--until/--entity/--format", file=sys.stderr)
        return 1
    name = args.import_file
    try:
        if name == "-":
            text = sys.stdin.read()
        else:
            with open(name, encoding="utf-8") as f:
                text = f.read()
        events = parse_export(text, name)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        print(f"dprk-monitor: {e}", file=sys.stderr)
        return 1
    try:
        store = EventStore(cfg.state_dir)
    except StoreError as e:
        print(f"dprk-monitor: {e}", file=sys.stderr)
        return 1
    try:
        result = store.import_events(events)
    except StoreError as e:
        print(f"dprk-monitor: {e}", file=sys.stderr)
        return 1
    finally:
        store.close()
    print(f"{name}: {len(events)} events: {result}")
    return 0


def cmd_annotate(args: argparse.Namespace) -> int:
    """`annotate ID ...`: the logic is monitor/annotations.py's."""
    from monitor.annotations import run_cli

    cfg = _load(args.config)
    if cfg is None:
        return 1
    return run_cli(cfg.state_dir, args)


def cmd_notify_test(args: argparse.Namespace) -> int:
    """`notify-test`: a test message to each receiver (monitor/notify/cli.py)."""
    from monitor.notify.cli import run

    cfg = _load(args.config)
    if cfg is None:
        return 1
    return run(cfg)


def cmd_demo(args: argparse.Namespace) -> int:
    # The simulator is imported only here: the daemon and the other commands never load it.
    from monitor.sim.demo import add_arguments, run_demo

    parser = argparse.ArgumentParser(prog="dprk-monitor demo", description=DEMO_HELP)
    add_arguments(parser)
    return run_demo(parser.parse_args(args.demo_args))


DEMO_HELP = "replay the June 2025 blackout in a simulated DPRK (root)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dprk-monitor",
        description="Watch North Korea's external Internet and report outages.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run the daemon")
    p.add_argument("--config", default=config_mod.DEFAULT_CONFIG)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("check-config", help="validate a configuration file")
    p.add_argument("path")
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("probe", help="probe every target once and print a table")
    p.add_argument("--config", default=config_mod.DEFAULT_CONFIG)
    p.set_defaults(func=cmd_probe)

    p = sub.add_parser(
        "discover",
        help="census the entities' prefixes now (inside max_rate), print each /24, store it",
    )
    p.add_argument("--config", default=config_mod.DEFAULT_CONFIG)
    p.add_argument("--entity", help="census this entity (default: every one with discover: true)")
    p.set_defaults(func=cmd_discover)

    p = sub.add_parser("outages", help="list the outage event log")
    p.add_argument("--config", default=config_mod.DEFAULT_CONFIG)
    p.add_argument("--since", help="ISO 8601 time")
    p.add_argument("--until", help="ISO 8601 time")
    p.add_argument("--entity")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table")
    p.add_argument(
        "--import",
        dest="import_file",
        metavar="FILE",
        help="re-import a JSON export (the --format json output or GET /api/v1/outages; - for "
        "stdin) into the log, idempotent by event id; safe while the daemon runs",
    )
    p.set_defaults(func=cmd_outages)

    p = sub.add_parser(
        "annotate",
        help="add a cause, a note, links or the maintenance mark to an outage event (safe while "
        "the daemon runs)",
    )
    p.add_argument("--config", default=config_mod.DEFAULT_CONFIG)
    from monitor.annotations import add_arguments as add_annotate_arguments

    add_annotate_arguments(p)
    p.set_defaults(func=cmd_annotate)

    p = sub.add_parser(
        "notify-test", help="send a test message to each notify: receiver and print the outcome"
    )
    p.add_argument("--config", default=config_mod.DEFAULT_CONFIG)
    p.set_defaults(func=cmd_notify_test)

    # The demo's own options (and --help) are parsed by cmd_demo, so that building this parser
    # does not import the simulator.
    p = sub.add_parser("demo", help=DEMO_HELP, add_help=False)
    p.add_argument("demo_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.func is cmd_demo:
        args.demo_args = extra + args.demo_args  # options such as --help reach the demo's parser
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    rc: int = args.func(args)
    return rc
