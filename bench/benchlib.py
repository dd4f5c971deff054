"""Helpers shared by the footprint and scale benchmarks (not a benchmark itself: run_all only
runs `bench_*.py`).

- reading a process's CPU time and memory from /proc (what `ps` and `top` read);
- plain HTTP/1.0 requests from this process into another network namespace: a short-lived
  thread enters the namespace (setns), creates and connects the socket, and dies; the socket
  stays in that namespace, and the calling thread never changes namespace;
- the machine description, the commit measured, "median (min-max)" and rewriting one section of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import ctypes
import os
import platform
import re
import socket
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "BENCHMARKS.md"
CLONE_NEWNET = 0x40000000
CLK_TCK = os.sysconf("SC_CLK_TCK")
_libc = ctypes.CDLL(None, use_errno=True)


# -- /proc ----------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS (resident now) and VmHWM (peak resident) in MiB."""
    out: dict[str, float] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":", 1)
                out[key] = int(value.split()[0]) / 1024
    return out


@dataclass
class CpuMeter:
    """CPU share of one core between `start()` and `share()`."""

    pid: int
    cpu0: float = 0.0
    wall0: float = 0.0

    def start(self) -> CpuMeter:
        self.cpu0, self.wall0 = cpu_seconds(self.pid), time.monotonic()
        return self

    def used(self) -> tuple[float, float]:
        """(CPU seconds, wall seconds) since start()."""
        return cpu_seconds(self.pid) - self.cpu0, time.monotonic() - self.wall0

    def share(self) -> float:
        cpu, wall = self.used()
        return cpu / wall


# -- talking into a network namespace ------------------------------------------------------


def ns_path(name_or_path: str) -> str:
    """`/run/netns/NAME` for an `ip netns` name; paths (e.g. /proc/PID/ns/net) as given."""
    return name_or_path if name_or_path.startswith("/") else f"/run/netns/{name_or_path}"


def ns_connect(ns: str, host: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection made from inside network namespace `ns` (name or path)."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            fd = os.open(ns_path(ns), os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, os.strerror(err), ns_path(ns))
            finally:
                os.close(fd)
            box["sock"] = socket.create_connection((host, port), timeout=timeout)
        except BaseException as e:  # handed back to the caller
            box["error"] = e

    t = threading.Thread(target=run, name="ns-connect", daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["sock"]  # type: ignore[return-value]


def http_get(ns: str, host: str, port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """GET with HTTP/1.0 (the server closes); (status, body). Raises OSError on failure."""
    with ns_connect(ns, host, port, timeout) as s:
        s.settimeout(timeout)
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        chunks = []
        while True:
            data = s.recv(1 << 16)
            if not data:
                break
            chunks.append(data)
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    try:
        status = int(head.split(b" ", 2)[1])
    except (IndexError, ValueError):
        raise OSError(f"bad HTTP response from {host}:{port}{path}: {head[:80]!r}") from None
    return status, body


def wait_http_200(
    ns: str, host: str, port: int, path: str, deadline: float, alive: object = None
) -> float:
    """Poll GET `path` every 10 ms until 200; return time.monotonic() at that answer.
    `alive` (a callable) is checked between polls: False means the process died."""
    while True:
        try:
            status, _ = http_get(ns, host, port, path, timeout=1.0)
            if status == 200:
                return time.monotonic()
        except OSError:
            pass
        if callable(alive) and not alive():
            raise RuntimeError(f"process exited before {path} answered 200")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{host}:{port}{path} not 200 in time")
        time.sleep(0.01)


def metric_sum(text: str, name: str) -> float:
    """Sum of every sample of `name` (any labels) in a Prometheus text exposition."""
    total = 0.0
    for m in re.finditer(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.M):
        total += float(m.group(1))
    return total


# -- reporting ------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    model = "unknown CPU"
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = os.getloadavg()[0]
    return {
        "load": f"{load:.2f}",
        "cpu": f"{model}, {os.cpu_count()} logical CPUs, {mem_gib:.0f} GiB",
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def commit() -> str:
    """The commit the benchmarked code comes from. Run a bench from a snapshot (`git archive`
    into a directory, with the short hash written to its `.commit`) when others edit the
    checkout or the bench outlives the next commit; `BENCH_COMMIT` in the environment names it
    too. In a checkout: HEAD, noting uncommitted changes to the package."""
    mark = ROOT / ".commit"
    if os.environ.get("BENCH_COMMIT"):
        return os.environ["BENCH_COMMIT"] + " (exported snapshot)"
    if mark.exists():
        return mark.read_text(encoding="utf-8").strip() + " (exported snapshot)"
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "monitor"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" + uncommitted changes in monitor/" if dirty else "")


def spread(values: list[float], fmt: str) -> str:
    """`median (min-max)`, or just the value for one run."""
    if not values:
        return "-"
    med = statistics.median(values)
    if len(values) == 1 or min(values) == max(values):
        return format(med, fmt)
    return f"{format(med, fmt)} ({format(min(values), fmt)}-{format(max(values), fmt)})"


def write_section(heading: str, text: str) -> None:
    """Replace the section `heading` (up to the next `## `) of docs/BENCHMARKS.md, or append it;
    the other sections are left alone."""
    old = DOC.read_text(encoding="utf-8") if DOC.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(old):
        new = pattern.sub(lambda _m: text.rstrip("\n") + "\n\n", old, count=1)
    else:
        new = old.rstrip("\n") + "\n\n" + text
    DOC.write_text(new.rstrip("\n") + "\n", encoding="utf-8")


def publish(heading: str, text: str, write: bool) -> None:
    """Print a bench's section and, unless told not to, put it into docs/BENCHMARKS.md."""
    print()
    print(text)
    if write:
        write_section(heading, text)
        print(f"updated {DOC.relative_to(DOC.parent.parent)}")
