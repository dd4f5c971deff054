"""Network namespace plumbing: names, `ip` calls, running code inside a namespace, the sweep.

Every namespace of the simulation is named `dom<pid>-<n>-<role>` (pid of the building process,
n a per-process world counter), its scratch directory `<tmp>/dom<pid>-<n>-*`. A namespace whose
pid is dead is a leftover: `sweep()` kills its processes and deletes it.

Code runs inside a namespace in a *fresh thread* that calls setns(2) and then dies; the calling
thread never changes namespace, so nothing in the test process can leak into the host's network.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

PREFIX = "dom"
NAME_RE = re.compile(rf"^{PREFIX}(\d+)-(\d+)-([a-z0-9]+)$")
DIR_RE = re.compile(rf"^{PREFIX}(\d+)-(\d+)-")
NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000

T = TypeVar("T")

_libc = ctypes.CDLL(None, use_errno=True)


class NetnsError(RuntimeError):
    pass


def ns_name(pid: int, n: int, role: str) -> str:
    return f"{PREFIX}{pid}-{n}-{role}"


def run(
    argv: list[str], *, input: str | None = None, check: bool = True, timeout: float = 30.0
) -> subprocess.CompletedProcess[str]:
    """Run a command in the caller's namespace (used for `ip -n NS ...`, `ip netns ...`)."""
    p = subprocess.run(
        argv, input=input, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and p.returncode != 0:
        raise NetnsError(
            f"{' '.join(argv)} failed ({p.returncode}): {p.stderr.strip()}"
            + (f"\n--- input ---\n{input}" if input else "")
        )
    return p


def ip_batch(ns: str, commands: Iterable[str], *, force: bool = False) -> None:
    """Run many `ip` commands inside `ns` in one process."""
    text = "\n".join(commands)
    if not text:
        return
    argv = ["ip", "-n", ns] + (["-force"] if force else []) + ["-batch", "-"]
    run(argv, input=text + "\n", check=not force)


def list_namespaces() -> list[str]:
    try:
        return sorted(p.name for p in NETNS_DIR.iterdir())
    except FileNotFoundError:
        return []


def ours() -> list[str]:
    """Every namespace of the simulation, live or not."""
    return [n for n in list_namespaces() if NAME_RE.match(n)]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def ns_pids(ns: str) -> list[int]:
    p = run(["ip", "netns", "pids", ns], check=False)
    return [int(x) for x in p.stdout.split() if x.isdigit()]


def kill_ns_processes(ns: str, grace: float = 1.0) -> None:
    """SIGTERM (after SIGCONT: stopped ones too), then SIGKILL, every process in `ns`."""
    pids = ns_pids(ns)
    for sig in (signal.SIGCONT, signal.SIGTERM):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if _running(p)]
        if pids:
            time.sleep(0.02)
    for pid in ns_pids(ns):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _running(pid: int) -> bool:
    """Alive and not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def delete_namespace(ns: str) -> None:
    kill_ns_processes(ns)
    run(["ip", "netns", "del", ns], check=False)


def sweep(*, everything: bool = False) -> list[str]:
    """Delete leftovers: namespaces (and their processes, scratch dirs) of dead pids.

    With `everything`, delete all of the simulation's namespaces, live owners included.
    Returns the names deleted.
    """
    gone: list[str] = []
    for ns in ours():
        m = NAME_RE.match(ns)
        assert m is not None
        if everything or not pid_alive(int(m.group(1))):
            delete_namespace(ns)
            gone.append(ns)
    tmp = Path(tempfile.gettempdir())
    for d in tmp.iterdir():
        m = DIR_RE.match(d.name)
        if m and d.is_dir() and (everything or not pid_alive(int(m.group(1)))):
            shutil.rmtree(d, ignore_errors=True)
    return gone


# --- running Python code inside a namespace ------------------------------------------------


def _setns(ns: str) -> None:
    fd = os.open(NETNS_DIR / ns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), str(NETNS_DIR / ns))
    finally:
        os.close(fd)


def call_in(ns: str, fn: Callable[[], T], timeout: float | None = None) -> T:
    """Run `fn()` in a new thread that has entered network namespace `ns`; return its result.

    Only namespaces of the simulation are accepted: code never runs in the host's namespace
    through this path.
    """
    if not NAME_RE.match(ns):
        raise NetnsError(f"refusing to enter {ns!r}: not a namespace of the simulation")
    box: dict[str, object] = {}

    def target() -> None:
        try:
            _setns(ns)
            box["result"] = fn()
        except BaseException as e:  # handed back to the caller
            box["error"] = e

    t = threading.Thread(target=target, name=f"in-{ns}", daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise TimeoutError(f"code in {ns} still running after {timeout}s")
    if "error" in box:
        err = box["error"]
        assert isinstance(err, BaseException)
        raise err
    return box["result"]  # type: ignore[return-value]
