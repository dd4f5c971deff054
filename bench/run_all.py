"""Run every benchmark in bench/ (`bench_*.py`, in name order), one after another, as root.

`sudo .venv/bin/python bench/run_all.py` (or `make bench`). Each script runs with the project's
.venv interpreter (else this one), from the project root, in a process group of its own; the
first one that fails (or outlives `--timeout`) stops the lot with a non-zero exit. Every bench
writes its own section of docs/BENCHMARKS.md; at the end this prints which sections changed.

- `--only NAME` (repeatable): just these, e.g. `--only politeness` or `--only bench_icmp.py`;
- `--list`: print the scripts that would run and exit;
- `--no-write`: passed on to every bench (each must accept it): print only, leave the docs.
- `--soak`: also run the long benches (LONG: bench_soak.py and bench_realsoak.py, two hours each), skipped otherwise
  (naming one with `--only` runs it too); they run without `--timeout`, their length bounds them.

A new bench only has to be named `bench/bench_*.py`, run as root, accept `--no-write`, exit
non-zero on failure and stop on SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
DOC = ROOT / "docs" / "BENCHMARKS.md"
# The project's venv when there is one (`sudo python3 bench/run_all.py` still works), else us.
VENV_PY = ROOT / ".venv" / "bin" / "python"
# Benches of hours: run only with --soak or when named by --only.
LONG = {"bench_soak.py", "bench_realsoak.py"}
PYTHON = str(VENV_PY) if VENV_PY.exists() else sys.executable


def discover(only: list[str], long: bool = False) -> list[Path]:
    """bench/bench_*.py in name order (the LONG ones only if `long`), or just those named by
    `only` (with or without the `bench_` prefix and `.py` suffix)."""
    scripts = sorted(BENCH.glob("bench_*.py"))
    if not only:
        return [p for p in scripts if long or p.name not in LONG]
    wanted = {re.sub(r"^bench_|\.py$", "", n) for n in only}
    picked = [p for p in scripts if re.sub(r"^bench_|\.py$", "", p.name) in wanted]
    missing = wanted - {re.sub(r"^bench_|\.py$", "", p.name) for p in picked}
    if missing:
        raise SystemExit(f"run_all: no bench named {', '.join(sorted(missing))}")
    return picked


def sections(text: str) -> dict[str, str]:
    """`## ` heading -> its body, for comparing docs/BENCHMARKS.md before and after."""
    out: dict[str, str] = {}
    for m in re.finditer(r"^(## [^\n]+)\n(.*?)(?=^## |\Z)", text, re.S | re.M):
        out[m.group(1)] = m.group(2).strip()
    return out


def read_doc() -> str:
    try:
        return DOC.read_text()
    except OSError:
        return ""


def run_one(script: Path, extra: list[str], timeout: float) -> int:
    """Run one bench in its own process group; on timeout or Ctrl-C stop that group."""
    cmd = [PYTHON, str(script), *extra]
    print(f"==> {' '.join([PYTHON, str(script.relative_to(ROOT)), *extra])}", flush=True)
    proc = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True)
    try:
        return proc.wait(timeout=timeout if timeout > 0 else None)
    except (subprocess.TimeoutExpired, KeyboardInterrupt) as exc:
        # The bench unwinds on SIGTERM (it stops what it started); SIGKILL if it does not.
        with_timeout = isinstance(exc, subprocess.TimeoutExpired)
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if with_timeout:
            print(f"run_all: {script.name} still running after {timeout:g} s: stopped", flush=True)
            return 124
        raise


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--only", action="append", default=[], metavar="NAME", help="run just these")
    ap.add_argument("--list", action="store_true", help="list the benches and exit")
    ap.add_argument("--no-write", action="store_true", help="passed on: leave the docs alone")
    ap.add_argument("--soak", action="store_true", help="also the long benches (hours)")
    ap.add_argument(
        "--timeout",
        type=float,
        default=1200,
        help="seconds per bench before it is stopped (0: none)",
    )
    args = ap.parse_args(argv)
    scripts = discover(args.only, args.soak)
    if args.list:
        for s in scripts:
            print(s.relative_to(ROOT))
        return 0
    if os.geteuid() != 0:
        print("run_all: run as root (the benches create network namespaces)", file=sys.stderr)
        return 2
    extra = ["--no-write"] if args.no_write else []
    before = read_doc()
    started = time.monotonic()
    for script in scripts:
        t0 = time.monotonic()
        rc = run_one(script, extra, 0 if script.name in LONG else args.timeout)
        took = time.monotonic() - t0
        if rc != 0:
            print(
                f"run_all: {script.name} failed (exit {rc}) after {took:.0f} s; stopping",
                flush=True,
            )
            return rc if 0 < rc < 256 else 1
        print(f"<== {script.name}: ok in {took:.0f} s", flush=True)
    total = time.monotonic() - started
    print(f"\nall {len(scripts)} benches passed in {total / 60:.1f} min")
    skipped = sorted(LONG - {s.name for s in scripts})
    if skipped and not args.only:
        print(f"skipped (long; --soak runs them): {', '.join(skipped)}")
    if args.no_write:
        print("results printed above only (--no-write)")
        return 0
    old, new = sections(before), sections(read_doc())
    changed = [h for h in new if new[h] != old.get(h)]
    where = DOC.relative_to(ROOT)
    if changed:
        print(f"results written to {where}:")
        for h in changed:
            print(f"  {h[3:]}")
    else:
        print(f"{where}: no section changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
