"""sd_notify without libsystemd: READY=1, RELOADING=1, STOPPING=1 and WATCHDOG=1 datagrams."""

from __future__ import annotations

import os
import socket


def notify(message: str) -> bool:
    """Send one notification to $NOTIFY_SOCKET; False when not under systemd or on error."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    if path.startswith("@"):
        path = "\0" + path[1:]  # abstract namespace socket
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(path)
            s.sendall(message.encode())
        return True
    except OSError:
        return False


def watchdog_interval() -> float | None:
    """Half of $WATCHDOG_USEC in seconds (how often to ping), when the watchdog is on for us."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 2e6
    except ValueError:
        return None
