"""Fixtures for the integration tests: the simulated world ("DPRK in a box") and the real daemon
running inside it.

- `world`: a freshly built world per test (torn down after it). After the test, the packet audit
  of every namespace must show no packet outside 198.18.0.0/15, no IPv6, no foreign ARP.
- `world_factory`: build worlds with options, e.g. `world_factory(vantages=2)`.
- `daemon`: a factory starting `python -m monitor run --config <generated>` in a vantage namespace
  and waiting for /readyz; returns a `DaemonProcess` (`metrics()`, `status()`, `stop()`,
  `kill9()`, `restart()`, `reload()`, `wait_for()`).

Without root or the tools (ip, nft, nginx, knotd) the tests are skipped - unless REQUIRE_NETNS=1,
where they fail instead (CI must never skip them silently).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from monitor.sim.daemonproc import DaemonProcess
from monitor.sim.world import World, missing_tools

REQUIRE_NETNS = os.environ.get("REQUIRE_NETNS") == "1"
DAEMON_MODULES = (
    "monitor.cli",
    "monitor.daemon",
    "monitor.probes.icmp",
    "monitor.probes.tcp",
    "monitor.probes.http",
    "monitor.probes.dns",
)


def world_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    missing = missing_tools()
    if missing:
        return f"missing tools: {', '.join(missing)}"
    if importlib.util.find_spec("trustme") is None:
        return "trustme is not installed"
    return None


def daemon_unavailable() -> str | None:
    for mod in DAEMON_MODULES:
        try:
            if importlib.util.find_spec(mod) is None:
                return f"the daemon is not complete yet ({mod} missing)"
        except ModuleNotFoundError:
            return f"the daemon is not complete yet ({mod} missing)"
    return None


def skip_or_fail(reason: str) -> None:
    if REQUIRE_NETNS:
        pytest.fail(f"REQUIRE_NETNS=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def _finish(w: World) -> None:
    """Tear down; fail the test if any namespace saw a packet outside the range."""
    try:
        counters = w.audit_counters() if w.alive and w.audit else {}
    finally:
        w.teardown()
    leaks = {role: c for role, c in counters.items() if c.leaks}
    if leaks:
        pytest.fail(f"packets outside 198.18.0.0/15 (or IPv6/ARP) were seen: {leaks}")


@pytest.fixture
def netns_ok() -> None:
    """Skip (or fail under REQUIRE_NETNS=1) when worlds cannot be built here."""
    reason = world_unavailable()
    if reason:
        skip_or_fail(reason)


@pytest.fixture
def world_factory(netns_ok: None) -> Iterator[Callable[..., World]]:
    built: list[World] = []

    def make(**kw: Any) -> World:
        w = World.build(**kw)
        built.append(w)
        return w

    yield make
    for w in built:
        _finish(w)


@pytest.fixture
def world(world_factory: Callable[..., World]) -> World:
    return world_factory()


@pytest.fixture
def daemon_ok(netns_ok: None) -> None:
    """Skip (or fail under REQUIRE_NETNS=1) while the daemon's modules are not all there."""
    reason = daemon_unavailable()
    if reason:
        skip_or_fail(reason)


@pytest.fixture
def daemon(daemon_ok: None, world: World, tmp_path: Path) -> Iterator[Callable[..., DaemonProcess]]:
    """`daemon(vantage=0, *, world=None, config=None, start=True, **daemon_config_kw)`.

    Starts the daemon in `vantage` of the test's world (or of `world`, e.g. one made by
    `world_factory(vantages=2)`), with `world.daemon_config(**daemon_config_kw)` unless a config
    text is given, and waits for /readyz. Every daemon is stopped after the test.
    """
    default_world = world
    procs: list[DaemonProcess] = []

    def start(
        vantage: int = 0,
        *,
        world: World | None = None,
        config: str | None = None,
        start: bool = True,
        **config_kw: Any,
    ) -> DaemonProcess:
        w = world or default_world
        n = len(procs)
        config_kw.setdefault("state_dir", str(tmp_path / f"var-{n}-vantage{vantage}"))
        text = config if config is not None else w.daemon_config(vantage=vantage, **config_kw)
        path = tmp_path / f"config-{n}-vantage{vantage}.yaml"
        path.write_text(text, encoding="utf-8")
        d = DaemonProcess(
            w,
            path,
            vantage=vantage,
            listen=config_kw.get("listen", "127.0.0.1:9474"),
            log_path=tmp_path / f"daemon-{n}-vantage{vantage}.log",
        )
        procs.append(d)
        if start:
            d.start()
        return d

    yield start
    for d in procs:
        d.stop()
        # shown by pytest only when the test failed
        print(f"--- daemon log ({d.log_path}) ---\n{d.log_tail()}")
