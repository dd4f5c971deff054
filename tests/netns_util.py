"""Run code in a throw-away network namespace, so that no packet can leave the machine.

`run_in_netns(fn)` forks a child that unshares CLONE_NEWNET (a fresh namespace with only a `lo`
interface, brought up here), optionally runs a setup function, then runs `fn` (a plain or async
function). The child's return value comes back pickled; an exception comes back as its formatted
traceback and is raised in the parent as `NetnsChildError`, an AssertionError, so pytest shows the
child's assertion text. The namespace dies with the child. Benchmarks that want the whole process
in a namespace call `enter_new_netns()` once at start-up instead.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import fcntl
import inspect
import os
import pickle
import select
import signal
import socket
import struct
import subprocess
import time
import traceback
from collections.abc import Callable
from typing import Any

CLONE_NEWNET = 0x40000000
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1


class NetnsChildError(AssertionError):
    """The function failed inside the namespace; the message is the child's traceback."""


def netns_unavailable() -> str | None:
    """Why network namespaces cannot be used here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root (CAP_SYS_ADMIN) for network namespaces"
    if not os.path.exists("/proc/self/ns/net"):
        return "kernel without network namespaces"
    return None


def enter_new_netns() -> None:
    """Move the calling process (all its threads must be this one) into a new netns; lo up."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare(CLONE_NEWNET): {os.strerror(err)}")
    set_link_up("lo")


def set_link_up(name: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifreq = struct.pack("16sH14x", name.encode(), 0)
        flags = struct.unpack_from("16sH", fcntl.ioctl(s, _SIOCGIFFLAGS, ifreq))[1]
        fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack("16sH14x", name.encode(), flags | _IFF_UP))


def sysctl(name: str, value: str) -> None:
    """Set a sysctl of the current network namespace, e.g. sysctl("net.ipv4.ping_group_range", "0 0")."""
    with open("/proc/sys/" + name.replace(".", "/"), "w") as f:
        f.write(value)


def ip(*args: str) -> None:
    """Run `ip ARGS` (in the current namespace); raise with its stderr on failure."""
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip()}")


def run_in_netns(
    fn: Callable[..., Any],
    *args: Any,
    setup: Callable[[], None] | None = None,
    timeout: float = 60.0,
) -> Any:
    """Run fn(*args) (awaited if async) in a forked child inside a fresh netns; return its result."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into the caller's stack (pytest, ...)
        status = 0
        try:
            os.close(rfd)
            try:
                enter_new_netns()
                if setup is not None:
                    setup()
                result = fn(*args)
                if inspect.isawaitable(result):
                    result = asyncio.run(_await(result))
                payload = pickle.dumps(("ok", result))
            except BaseException:
                payload = pickle.dumps(("err", traceback.format_exc()))
            with os.fdopen(wfd, "wb") as w:
                w.write(payload)
        except BaseException:
            status = 1
        finally:
            os._exit(status)
    os.close(wfd)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                os.kill(pid, signal.SIGKILL)
                raise NetnsChildError(f"netns child timed out after {timeout:g}s")
            ready, _, _ = select.select([rfd], [], [], left)
            if not ready:
                continue
            chunk = os.read(rfd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(rfd)
        while True:
            try:
                os.waitpid(pid, 0)
                break
            except ChildProcessError:
                break
            except OSError as exc:
                if exc.errno != errno.EINTR:
                    raise
    if not chunks:
        raise NetnsChildError("netns child died without a result")
    status, value = pickle.loads(b"".join(chunks))
    if status == "err":
        raise NetnsChildError("in the network namespace:\n" + value)
    return value


async def _await(aw: Any) -> Any:
    return await aw
