"""The simulated Internet: namespaces, links, static routes, real servers, and faults.

Topology (one namespace per box, veth pairs created directly between namespaces - none touches
the host's namespace; no namespace has a default route, only 198.18.0.0/15 routes):

    vantage0..N-1 ─┐
                   core ── ctl        control hosts 198.19.8.8/1.1/9.9, nginx, knot (example.)
                   core ── unicom  ── border ── dprk   hosts answering ICMP, nginx, knot (kp.)
                   core ── ttk     ── border
                   core ── satgate ── border

    mon ── vantage0..N-1   optional (`World.build(monitoring=True)`): one /30 per vantage from
                           198.18.254.0/24, for one Prometheus scraping every vantage's daemon

Static routing, as the description says: each block is carried by one upstream; the core routes
it to that upstream, the upstream to the border, the border to the dprk namespace. Silent
addresses are blackholed inside the dprk namespace (no ICMP from anywhere). Every router answers
TTL exceeded from the interface the probe came in on (`icmp_errors_use_inbound_ifaddr`), ICMP
rate limits are off.

The monitoring links are a management network, not a path into the simulated Internet: nothing
forwards across them (neither the vantages nor `mon` forward) and they carry only their own /30,
so cutting a vantage's uplink still cuts every probe of that vantage while Prometheus keeps
scraping it. A daemon listens on `world.monitoring_address(i)`; Prometheus runs in `mon`.

Withdrawn routes (blackout, lost upstream, per-vantage withdrawal) become `unreachable` routes by
default: the router answers ICMP destination unreachable (code 1, host unreachable: "!H" in a
traceroute), as a full-table router without the prefix would answer some unreachable.
Note the kernel rate-limits those answers per source (`net.ipv4.route.error_cost`, a host-wide
setting we do not touch): after a burst of ~5, about one per second; the rest vanish silently,
so probers see a mix of "unreachable" and timeouts, as on the real Internet. `blackout(mode=
"blackhole")` (or `WorldSpec.withdrawn="blackhole"`) is silent instead: the routes stay, every
upstream drops what it would forward into the blocks (after the TTL check, so a traceroute still
sees the upstream's hop), as an upstream keeping a default route and dropping does.

Realistic paths (`World.build(profile="realistic")`, `spec.realistic`): the core's links to the
upstreams and to ctl are TUN pairs through a user-space delay line (monitor.sim.netem: delay,
jitter, loss per direction, Gilbert-Elliott bursts, episodes), changed at run time with
`path_profile`, `episode`, `congestion`, `loss_ramp`, `clear_episodes` (`path_stats` reports);
routers rate-limit ICMP errors; stale configured addresses, hosts that come and go
(`schedule_host`, `host_down`/`host_up`), slow web sites and a TLS 1.0-only one; silent blackouts
by default. Ideal paths (plain veth pairs) stay the default.

Faults are kernel changes or real server stops, each returning a `FaultRecord` with the wall time
it took effect; all are undone by `repair_all()`.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import functools
import ipaddress
import itertools
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, TypeVar

import yaml

from monitor.sim import audit, netem, netns, servers, tools
from monitor.sim.netem import Episode, PathProfile
from monitor.sim.spec import PROFILES, Block, FlakyHost, Site, WorldSpec, dprk, expand, realistic

T = TypeVar("T")

REQUIRED_TOOLS = ("ip", "nft", "nginx", "knotd")
WITHDRAWN_MODES = {"unreachable": "unreachable", "blackhole": "blackhole", "silent": "blackhole"}
LOSS_TABLE = "dom_loss"
HOSTS_TABLE = "dom_hosts"  # in dprk: the set of hosts that are gone (come-and-go hosts)
SLOW_TABLE = "dom_slow"  # in dprk: drops nginx's connects to the never-connecting upstream
SILENT_TABLE = "dom_silent"  # in each upstream: the drop of a silent blackout
BORDER_NAME = ("Star JV border", 131279)
CORE_NAME = ("Internet core", None)

_counter = itertools.count()


def missing_tools() -> list[str]:
    return [t for t in REQUIRED_TOOLS if shutil.which(t) is None]


@dataclass
class FaultRecord:
    """One fault (or repair) as applied: `at` is the wall time (epoch) it took effect."""

    name: str
    params: dict[str, object]
    requested: float
    at: float

    @property
    def took(self) -> float:
        return self.at - self.requested


@dataclass(frozen=True)
class Link:
    a: str  # role on the Internet side
    a_if: str
    a_addr: str
    b: str
    b_if: str
    b_addr: str
    net: str


@dataclass
class _Faults:
    blackout: str | None = None  # route type while blacked out
    lost: set[str] = field(default_factory=set)
    blackholed: set[str] = field(default_factory=set)
    cut: set[frozenset[str]] = field(default_factory=set)
    vantage_cut: set[int] = field(default_factory=set)
    vantage_withdrawn: dict[int, tuple[str, ...]] = field(default_factory=dict)
    loss: dict[str, float] = field(default_factory=dict)
    hosts_gone: set[str] = field(default_factory=set)  # taken down by host_down()
    paths: set[str] = field(default_factory=set)  # links whose profile or episodes changed


def _wait_stopped(pid: int, timeout: float = 5.0) -> None:
    """Until every thread of `pid` is in state T (stopped), or `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
            states = []
            for tid in tasks:
                with open(f"/proc/{pid}/task/{tid}/stat") as f:
                    states.append(f.read().rsplit(")", 1)[1].split()[0])
        except OSError:
            return  # gone
        if all(st in ("T", "t") for st in states):
            return
        time.sleep(0.005)


class _Server:
    """A real server process in a namespace: start / stop (SIGTERM) / hang (SIGSTOP) / resume."""

    def __init__(
        self, world: World, name: str, role: str, argv: list[str], ready: Callable[[], bool]
    ) -> None:
        self.world, self.name, self.role, self.argv, self.ready = world, name, role, argv, ready
        self.log = world.tmpdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.state = "stopped"

    def start(self, timeout: float = 15.0) -> None:
        self.launch()
        self.wait_ready(timeout)

    def launch(self) -> None:
        if self.state == "hung":
            self.resume()
            return
        if self.state == "up" or self.proc is not None:
            return
        with open(self.log, "ab") as log:
            self.proc = self.world.popen(self.role, self.argv, stdout=log, stderr=log)

    def wait_ready(self, timeout: float = 15.0) -> None:
        if self.state == "up":
            return
        if self.proc is None:
            raise RuntimeError(f"{self.name} was not launched")
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited ({self.proc.returncode}) at start:\n"
                    + self.log.read_text(errors="replace")[-2000:]
                )
            if self.ready():
                break
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{self.name} not ready after {timeout}s:\n"
                    + self.log.read_text(errors="replace")[-2000:]
                )
            time.sleep(0.02)
        self.state = "up"

    def stop(self) -> None:
        if self.proc is not None:
            self.world.stop_process(self.proc)
            self.proc = None
        self.state = "stopped"

    def hang(self) -> None:
        if self.proc is None or self.state != "up":
            raise RuntimeError(f"{self.name} is not running")
        os.kill(self.proc.pid, signal.SIGSTOP)
        # SIGSTOP is delivered asynchronously: a query sent right after kill() may still be
        # answered. Wait until every thread of the server is really stopped.
        _wait_stopped(self.proc.pid)
        self.state = "hung"

    def resume(self) -> None:
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGCONT)
        self.state = "up"


class Flap:
    """A running flap: blackout / repair toggled from a thread."""

    def __init__(self, world: World, period: float, count: int, mode: str | None) -> None:
        self.world, self.period, self.count, self.mode = world, period, count, mode
        self.records: list[FaultRecord] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="sim-flap", daemon=True)

    def _run(self) -> None:
        for _ in range(self.count):
            self.records.append(self.world.blackout(self.mode))
            if self._stop.wait(self.period):
                break
            self.records.append(self.world.repair_blackout())
            if self._stop.wait(self.period):
                return
        if self.world._faults.blackout is not None:
            self.records.append(self.world.repair_blackout())

    def stop(self) -> None:
        self._stop.set()
        if threading.current_thread() is not self.thread:
            self.thread.join(10)

    def wait(self, timeout: float | None = None) -> bool:
        self.thread.join(timeout)
        return not self.thread.is_alive()


class _HostCycler:
    """Hosts that come and go on a fixed cycle (`FlakyHost`), toggled from a thread: gone means
    silently dropped on arrival in the dprk namespace. Hosts taken down by hand
    (`World.host_down`) are left alone until `host_up`."""

    def __init__(self, world: World, hosts: Sequence[FlakyHost]) -> None:
        self.world = world
        self.t0 = time.monotonic()
        self.hosts: dict[str, FlakyHost] = {h.address: h for h in hosts}
        self.present: dict[str, bool] = {h.address: True for h in hosts}  # all start there
        self._wake = threading.Event()
        self._stop = False
        self.thread = threading.Thread(target=self._run, name="sim-hosts", daemon=True)

    @staticmethod
    def state(h: FlakyHost, t: float) -> tuple[bool, float]:
        """(present, seconds until the next change) at `t` seconds into the schedule."""
        phase = (t + h.offset) % (h.up + h.down)
        return (True, h.up - phase) if phase < h.up else (False, h.up + h.down - phase)

    def start(self) -> None:
        self.thread.start()

    def add(self, h: FlakyHost) -> None:
        self.hosts[h.address] = h
        self.present.setdefault(h.address, True)
        self._wake.set()

    def remove(self, address: str) -> None:
        self.hosts.pop(address, None)
        self._wake.set()

    def _run(self) -> None:
        while not self._stop:
            t = time.monotonic() - self.t0
            wait = 60.0
            for addr, h in list(self.hosts.items()):
                want, left = self.state(h, t)
                wait = min(wait, left)
                if addr in self.world._faults.hosts_gone or self.present.get(addr) == want:
                    continue
                try:
                    with self.world._lock:
                        if self.world._torn:
                            return
                        self.world._set_host(addr, want)
                except Exception:  # the world is going away; nothing to keep up
                    return
                self.present[addr] = want
                self.world.host_log.append((time.time(), addr, want))
            self._wake.wait(max(0.01, wait))
            self._wake.clear()

    def stop(self) -> None:
        self._stop = True
        self._wake.set()
        if threading.current_thread() is not self.thread and self.thread.is_alive():
            self.thread.join(10)


class World:
    """A built world. Use `with World.build() as w:`; teardown is also done at exit/SIGTERM."""

    def __init__(self, spec: WorldSpec | None = None, *, audit: bool = True) -> None:
        self.spec = spec or dprk()
        self.spec.validate()
        self.pid = os.getpid()
        self.n = next(_counter)
        self.audit = audit
        self.roles: list[str] = (
            [f"vantage{i}" for i in range(self.spec.vantages)]
            + ["core", "ctl"]
            + [u.key for u in self.spec.upstreams]
            + ["border", "dprk"]
            + (["mon"] if self.spec.monitoring else [])
        )
        self.ns: dict[str, str] = {r: netns.ns_name(self.pid, self.n, r) for r in self.roles}
        self.vantages: list[str] = [self.ns[f"vantage{i}"] for i in range(self.spec.vantages)]
        self.tmpdir = Path("/nonexistent")
        self.ca_file = ""
        self.faults: list[FaultRecord] = []
        self._faults = _Faults()
        self._lock = threading.RLock()
        self._procs: list[subprocess.Popen[Any]] = []
        self._created: list[str] = []
        self._routes_applied: dict[str, dict[str, str]] = {}
        self._servers: dict[str, _Server] = {}
        self._flap: Flap | None = None
        self._netem: netem.DelayLines | None = None
        self._hosts: _HostCycler | None = None
        # (wall time, address, present) for every come-and-go toggle
        self.host_log: list[tuple[float, str, bool]] = []
        self._torn = False
        self.links = self._plan_links()
        self._index_addresses()

    # --- addressing ----------------------------------------------------------------------

    def _plan_links(self) -> dict[frozenset[str], Link]:
        pool = list(ipaddress.IPv4Network(self.spec.link_pool).subnets(new_prefix=30))
        pairs: list[tuple[int, str, str]] = [
            (i, "core", f"vantage{i}") for i in range(self.spec.vantages)
        ]
        pairs.append((8, "core", "ctl"))
        for k, u in enumerate(self.spec.upstreams):
            pairs.append((9 + k, "core", u.key))
            pairs.append((32 + k, u.key, "border"))
        pairs.append((63, "border", "dprk"))
        links: dict[frozenset[str], Link] = {}
        for idx, a, b in pairs:
            net = pool[idx]
            a_addr, b_addr = (str(h) for h in net.hosts())
            links[frozenset((a, b))] = Link(a, b, a_addr, b, a, b_addr, str(net))
        if self.spec.monitoring:
            mon_pool = list(ipaddress.IPv4Network(self.spec.monitoring_pool).subnets(new_prefix=30))
            for i in range(self.spec.vantages):
                net = mon_pool[i]
                a_addr, b_addr = (str(h) for h in net.hosts())
                v = f"vantage{i}"
                links[frozenset(("mon", v))] = Link("mon", v, a_addr, v, "mon", b_addr, str(net))
        return links

    def link(self, x: str, y: str) -> Link:
        if y == "dprk" and x in {u.key for u in self.spec.upstreams}:
            y = "border"
        try:
            return self.links[frozenset((x, y))]
        except KeyError:
            raise KeyError(f"no link between {x} and {y}") from None

    def _index_addresses(self) -> None:
        spec = self.spec
        self.blocks: dict[str, tuple[str, str]] = {
            b.prefix: (e.name, b.upstream) for e in spec.entities for b in e.blocks
        }
        served = {a for s in spec.sites for a in s.addresses} | {
            ns.address for ns in spec.name_servers
        }
        self.hosts: dict[str, str] = {}
        for b in spec.blocks:
            net = ipaddress.IPv4Network(b.prefix)
            for a in sorted(
                {*expand(b.answering), *(x for x in served if ipaddress.IPv4Address(x) in net)},
                key=ipaddress.IPv4Address,
            ):
                self.hosts[a] = b.prefix
        # configured addresses that never answer (realistic profile)
        self.stale: dict[str, list[str]] = {b.prefix: expand(b.stale) for b in spec.blocks}
        # a few addresses of each block that never answer
        self.silent: dict[str, list[str]] = {}
        for b in spec.blocks:
            net = ipaddress.IPv4Network(b.prefix)
            cands = [str(net.network_address + i) for i in (2, 3, 100, 200, 250)]
            self.silent[b.prefix] = [a for a in cands if a not in self.hosts][:3]
        self.sites: dict[str, tuple[str, bool]] = {}
        for s in (*spec.sites, *spec.controls.sites):
            for name in s.names:
                self.sites[name] = (s.addresses[0], s.https)
        self.dns_servers: dict[str, str] = {n.address: n.name for n in spec.name_servers}
        ctl_addrs = sorted(
            {
                *spec.controls.icmp,
                *spec.controls.dns_servers,
                *(a for s in spec.controls.sites for a in s.addresses),
            },
            key=ipaddress.IPv4Address,
        )
        self.control_hosts: list[str] = ctl_addrs
        self.controls: dict[str, Any] = {
            "icmp": list(spec.controls.icmp),
            "dns": list(spec.controls.dns_servers),
            "http": {n: (s.addresses[0], s.https) for s in spec.controls.sites for n in s.names},
        }
        self.routers: dict[str, tuple[str, str, int | None]] = {}
        names: dict[str, tuple[str, int | None]] = {"core": CORE_NAME, "border": BORDER_NAME}
        for u in spec.upstreams:
            names[u.key] = (u.name, u.asn)
        for ln in self.links.values():
            for role, addr in ((ln.a, ln.a_addr), (ln.b, ln.b_addr)):
                if role in names:
                    self.routers[addr] = (role, *names[role])
        self.upstream_routers: dict[str, tuple[str, int | None]] = {
            a: (n, asn)
            for a, (role, n, asn) in self.routers.items()
            if role in {u.key for u in spec.upstreams}
        }
        self.vantage_addresses = [
            self.link("core", f"vantage{i}").b_addr for i in range(spec.vantages)
        ]

    def monitoring_address(self, vantage: int = 0) -> str:
        """The vantage's address on its monitoring link: where its daemon listens so that
        Prometheus in `mon` can scrape it (e.g. `listen: f"{addr}:9474"`)."""
        if not self.spec.monitoring:
            raise RuntimeError("no monitoring network: build with World.build(monitoring=True)")
        if not 0 <= vantage < self.spec.vantages:
            raise IndexError(f"no vantage {vantage}")
        return self.link("mon", f"vantage{vantage}").b_addr

    def expected_path(self, dst: str, vantage: int = 0) -> list[str]:
        """The hop addresses a traceroute from `vantage` to `dst` (a DPRK host) should show."""
        up = self.blocks[self._block_of(dst)][1]
        return [
            self.link("core", f"vantage{vantage}").a_addr,
            self.link("core", up).b_addr,
            self.link(up, "border").b_addr,
            dst,
        ]

    def _block_of(self, address: str) -> str:
        a = ipaddress.IPv4Address(address)
        for prefix in self.blocks:
            if a in ipaddress.IPv4Network(prefix):
                return prefix
        raise KeyError(f"{address} is in no block")

    # --- build / teardown ----------------------------------------------------------------

    @classmethod
    def build(
        cls,
        spec: WorldSpec | None = None,
        *,
        vantages: int | None = None,
        audit: bool = True,
        monitoring: bool = False,
        profile: str | None = None,
    ) -> World:
        """Sweep leftovers, then build and start everything; on failure nothing is left.
        `monitoring=True` adds the `mon` namespace linked to every vantage (see the module doc).
        `profile="realistic"` puts the world (default: `dprk()`) on realistic paths with
        realistic hosts (`spec.realistic`); "ideal" (the default) leaves the spec as it is."""
        if spec is None:
            spec = dprk(vantages=vantages or 1)
        if profile not in (None, *PROFILES):
            raise ValueError(f"profile must be one of {', '.join(PROFILES)}")
        if profile == "realistic" and spec.profile != "realistic":
            spec = realistic(spec)
        if monitoring and not spec.monitoring:
            spec = dataclasses.replace(spec, monitoring=True)
        w = cls(spec, audit=audit)
        try:
            w._build()
        except BaseException:
            w.teardown()
            raise
        return w

    def __enter__(self) -> World:
        if not self._created:
            try:
                self._build()
            except BaseException:
                self.teardown()
                raise
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.teardown()

    def _build(self) -> None:
        missing = missing_tools()
        if missing:
            raise RuntimeError(f"missing tools: {', '.join(missing)}")
        netns.sweep()
        self.tmpdir = Path(tempfile.mkdtemp(prefix=f"{netns.PREFIX}{self.pid}-{self.n}-"))
        _register(self)
        for role in self.roles:
            netns.run(["ip", "netns", "add", self.ns[role]])
            self._created.append(self.ns[role])
        for role in self.roles:
            self._sysctls(role)
        self._links_and_addresses()
        self._sync_routes()
        if self.audit:
            for role in self.roles:
                self.nft(role, audit.rules())
        self._hosts_table()
        self._start_servers()
        if self.spec.flaky:
            self._hosts = _HostCycler(self, self.spec.flaky)
            self._hosts.start()

    def _sysctls(self, role: str) -> None:
        router = role in ("core", "border") or role in {u.key for u in self.spec.upstreams}
        values = {
            "ipv6/conf/all/disable_ipv6": 1,
            "ipv6/conf/default/disable_ipv6": 1,
            "ipv6/conf/lo/disable_ipv6": 1,
            "ipv4/ip_forward": 1 if router else 0,
            "ipv4/conf/all/rp_filter": 0,
            "ipv4/conf/default/rp_filter": 0,
            "ipv4/icmp_ratelimit": 0,
            "ipv4/icmp_msgs_per_sec": 100000,
            "ipv4/icmp_msgs_burst": 100000,
            "ipv4/icmp_errors_use_inbound_ifaddr": 1,
        }
        if router and self.spec.icmp_ratelimit:
            # as real routers: ICMP errors (unreachable, time exceeded) rate-limited per
            # destination (a burst of 6, then one per icmp_ratelimit ms) and overall
            values["ipv4/icmp_ratelimit"] = self.spec.icmp_ratelimit
            values["ipv4/icmp_msgs_per_sec"] = 1000
            values["ipv4/icmp_msgs_burst"] = 50

        def write() -> None:
            for key, v in values.items():
                with open(f"/proc/sys/net/{key}", "w", encoding="ascii") as f:
                    f.write(f"{v}\n")

        netns.call_in(self.ns[role], write, timeout=10)

    def _links_and_addresses(self) -> None:
        create: dict[str, list[str]] = {r: [] for r in self.roles}
        conf: dict[str, list[str]] = {r: ["link set lo up"] for r in self.roles}
        delayed: dict[str, Link] = {}
        for ln in self.links.values():
            key = self._path_key(ln)
            if key is not None:
                delayed[key] = ln  # a TUN pair through the delay line instead of a veth pair
            else:
                create[ln.a].append(
                    f"link add {ln.a_if} type veth peer name {ln.b_if} netns {self.ns[ln.b]}"
                )
            plen = ipaddress.IPv4Network(ln.net).prefixlen
            conf[ln.a] += [f"addr add {ln.a_addr}/{plen} dev {ln.a_if}", f"link set {ln.a_if} up"]
            conf[ln.b] += [f"addr add {ln.b_addr}/{plen} dev {ln.b_if}", f"link set {ln.b_if} up"]
        # host addresses live on lo (the dummy driver may be missing in the kernel)
        anyip = [c for b in self.spec.blocks for c in b.answering if "/" in c]
        covered = {a for c in anyip for a in expand([c])}
        served = {*(a for s in self.spec.sites for a in s.addresses)}
        served |= {n.address for n in self.spec.name_servers}
        conf["dprk"] += [f"route add local {c} dev lo table local" for c in anyip]
        conf["dprk"] += [
            f"addr add {a}/32 dev lo" for a in self.hosts if a not in covered or a in served
        ]
        conf["ctl"] += [f"addr add {a}/32 dev lo" for a in self.control_hosts]
        # policy: each vantage may get its own view at the core (per-vantage withdrawals);
        # the border sends a block's traffic back through the upstream carrying it.
        for i in range(self.spec.vantages):
            conf["core"].append(
                f"rule add from {self.link('core', f'vantage{i}').net} lookup {100 + i} "
                f"priority {100 + i}"
            )
        up_index = {u.key: k for k, u in enumerate(self.spec.upstreams)}
        for b in self.spec.blocks:
            conf["border"].append(
                f"rule add from {b.prefix} lookup {10 + up_index[b.upstream]} priority 1000"
            )
        for role in self.roles:
            netns.ip_batch(self.ns[role], create[role])
        if delayed:
            self._start_delay_lines(delayed)
        for role in self.roles:
            netns.ip_batch(self.ns[role], conf[role])

    def _path_key(self, ln: Link) -> str | None:
        """The `spec.paths` key of a link that goes through the delay line, else None."""
        if ln.a == "core" and ln.b in self.spec.paths:
            return ln.b
        return None

    def _start_delay_lines(self, delayed: Mapping[str, Link]) -> None:
        """Open a TUN device at each end of every delayed link (each inside its namespace) and
        hand them to one forwarder process (monitor.sim.netem); the world keeps no copy."""
        fds: dict[str, tuple[int, int]] = {}
        try:
            for key, ln in delayed.items():
                fa = self.call_in(ln.a, functools.partial(netem.open_tun, ln.a_if), timeout=10)
                try:
                    fb = self.call_in(ln.b, functools.partial(netem.open_tun, ln.b_if), timeout=10)
                except BaseException:
                    os.close(fa)
                    raise
                fds[key] = (fa, fb)
            self._netem = netem.DelayLines(
                lambda argv, **kw: self.popen("core", argv, **kw),
                fds,
                {k: self.spec.paths[k] for k in fds},
                seed=self.spec.seed,
                log=str(self.tmpdir / "netem.log"),
            )
        finally:
            for pair in fds.values():
                for fd in pair:
                    os.close(fd)

    def _start_servers(self) -> None:
        import trustme  # test dependency: only needed when a world is built

        ca = trustme.CA(organization_name="dprk-outage-monitor test world")
        self.ca_file = str(self.tmpdir / "ca.pem")
        ca.cert_pem.write_to_path(self.ca_file)
        for where, sites in (("dprk", self.spec.sites), ("ctl", self.spec.controls.sites)):
            certs: dict[str, tuple[str, str]] = {}
            docroots: dict[str, str] = {}
            prefix = self.tmpdir / f"nginx-{where}"
            (prefix / "tmp").mkdir(parents=True)
            for s in sites:
                root = prefix / "www" / s.names[0]
                root.mkdir(parents=True)
                (root / "index.html").write_text(servers.site_page(s), encoding="utf-8")
                docroots[s.names[0]] = str(root)
                if s.https:
                    # TLS 1.0's RSA key exchange needs an RSA key
                    kt = trustme.KeyType.RSA if s.tls == "legacy" else trustme.KeyType.ECDSA
                    cert = ca.issue_cert(*s.names, key_type=kt)
                    cpath, kpath = prefix / f"{s.names[0]}.crt", prefix / f"{s.names[0]}.key"
                    cert.cert_chain_pems[0].write_to_path(str(cpath))
                    for extra in cert.cert_chain_pems[1:]:
                        extra.write_to_path(str(cpath), append=True)
                    cert.private_key_pem.write_to_path(str(kpath))
                    certs[s.names[0]] = (str(cpath), str(kpath))
            conf = prefix / "nginx.conf"
            conf.write_text(
                servers.nginx_conf(str(prefix), list(sites), certs, docroots), encoding="utf-8"
            )
            if any(s.delay > 0 for s in sites):
                self.nft(where, servers.slow_rules(SLOW_TABLE))
            self._servers[f"web-{where}"] = _Server(
                self,
                f"nginx-{where}",
                where,
                ["nginx", "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")],
                self._web_ready(where, list(sites)),
            )
        for where, zones, listen, probe in (
            (
                "dprk",
                servers.kp_zones(self.spec),
                [n.address for n in self.spec.name_servers],
                "kp",
            ),
            (
                "ctl",
                servers.control_zone(self.spec),
                list(self.spec.controls.dns_servers),
                self.spec.controls.dns_zone,
            ),
        ):
            rundir = self.tmpdir / f"knot-{where}"
            (rundir / "zones").mkdir(parents=True)
            (rundir / "db").mkdir()
            for z, text in zones.items():
                (rundir / "zones" / f"{z}.zone").write_text(text, encoding="utf-8")
            conf = rundir / "knot.conf"
            conf.write_text(servers.knot_conf(str(rundir), listen, list(zones)), encoding="utf-8")
            self._servers[f"dns-{where}"] = _Server(
                self,
                f"knot-{where}",
                where,
                ["knotd", "-c", str(conf)],
                self._dns_ready(where, listen, probe),
            )
        for srv in self._servers.values():
            srv.launch()
        for srv in self._servers.values():
            srv.wait_ready()

    def _hosts_table(self) -> None:
        """The set of DPRK hosts that are gone (silently dropped on arrival)."""
        self.nft(
            "dprk",
            f"table ip {HOSTS_TABLE}\ndelete table ip {HOSTS_TABLE}\n"
            f"table ip {HOSTS_TABLE} {{\n  set gone {{ type ipv4_addr; }}\n"
            "  chain pre {\n    type filter hook prerouting priority -5; policy accept;\n"
            "    ip daddr @gone drop\n  }\n}\n",
        )

    def _set_host(self, address: str, present: bool) -> None:
        verb = "delete" if present else "add"
        p = self.exec(
            "dprk",
            ["nft", verb, "element", "ip", HOSTS_TABLE, "gone", f"{{ {address} }}"],
            timeout=10,
        )
        # deleting an absent element is fine: the host is there
        if p.returncode != 0 and not (present and "No such file" in p.stderr):
            raise netns.NetnsError(f"nft {verb} element {address}: {p.stderr.strip()}")

    def _web_ready(self, role: str, sites: list[Site]) -> Callable[[], bool]:
        endpoints = sorted({(a, 443 if s.https else 80) for s in sites for a in s.addresses})

        def check() -> bool:
            return all(tools.tcp_connect(a, p, 0.2) is None for a, p in endpoints)

        return lambda: self.call_in(role, check)

    def _dns_ready(self, role: str, listen: list[str], zone: str) -> Callable[[], bool]:
        def check() -> bool:
            return all(
                tools.dns_query(a, zone, "SOA", timeout=0.2).rcode == "NOERROR" for a in listen
            )

        return lambda: self.call_in(role, check)

    def teardown(self) -> None:
        """Stop every process, delete every namespace and the scratch dir. Idempotent."""
        if self._torn:
            return
        if os.getpid() != self.pid:
            return  # a forked child (inherited atexit/handlers): the world is its parent's
        self._torn = True
        if self._flap is not None:
            self._flap.stop()
        if self._hosts is not None:
            self._hosts.stop()
        if self._netem is not None:
            with contextlib.suppress(Exception):
                self._netem.close()
        procs, self._procs = self._procs, []
        for p in procs:
            self._signal(p, signal.SIGCONT)
            self._signal(p, signal.SIGTERM)
        deadline = time.monotonic() + 3.0
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(max(0.0, deadline - time.monotonic()))
            if p.poll() is None:
                self._signal(p, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(2)
        for ns in self._created:
            netns.delete_namespace(ns)
        self._created = []
        if self.tmpdir.name.startswith(f"{netns.PREFIX}{self.pid}-") and not os.environ.get(
            "DOM_KEEP_TMP"
        ):
            shutil.rmtree(self.tmpdir, ignore_errors=True)
        _unregister(self)

    @property
    def alive(self) -> bool:
        return bool(self._created) and not self._torn

    # --- processes ------------------------------------------------------------------------

    def _name(self, where: str | int) -> str:
        if isinstance(where, int):
            return self.vantages[where]
        if where in self.ns:
            return self.ns[where]
        if where in self.ns.values():
            return where
        raise KeyError(f"no namespace {where!r} in this world (roles: {', '.join(self.roles)})")

    def popen(self, ns: str | int, argv: Sequence[str], **popen_kw: Any) -> subprocess.Popen[Any]:
        """Start `argv` inside a namespace (role, index of a vantage, or full name). The
        process is tracked and killed at teardown; it runs in its own session."""
        if self._torn:
            raise RuntimeError("the world is torn down")
        popen_kw.setdefault("stdin", subprocess.DEVNULL)
        popen_kw.setdefault("start_new_session", True)
        p: subprocess.Popen[Any] = subprocess.Popen(
            ["ip", "netns", "exec", self._name(ns), *argv], **popen_kw
        )
        self._procs.append(p)
        return p

    def exec(
        self,
        ns: str | int,
        argv: Sequence[str],
        *,
        timeout: float = 30.0,
        check: bool = False,
        input: str | None = None,
        **popen_kw: Any,
    ) -> subprocess.CompletedProcess[str]:
        """Run `argv` inside a namespace to completion; output captured as text."""
        popen_kw.setdefault("stdout", subprocess.PIPE)
        popen_kw.setdefault("stderr", subprocess.PIPE)
        if input is not None:
            popen_kw["stdin"] = subprocess.PIPE
        p = self.popen(ns, argv, text=True, **popen_kw)
        try:
            out, err = p.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop_process(p, grace=0.5)
            raise
        finally:
            with contextlib.suppress(ValueError):
                self._procs.remove(p)
        cp = subprocess.CompletedProcess(list(argv), p.returncode, out, err)
        if check:
            cp.check_returncode()
        return cp

    def stop_process(self, p: subprocess.Popen[Any], grace: float = 3.0) -> int | None:
        """SIGTERM (SIGCONT first), then SIGKILL after `grace`; returns the exit code."""
        self._signal(p, signal.SIGCONT)
        self._signal(p, signal.SIGTERM)
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            self._signal(p, signal.SIGKILL)
            p.wait(5)
        with contextlib.suppress(ValueError):
            self._procs.remove(p)
        return p.returncode

    @staticmethod
    def _signal(p: subprocess.Popen[Any], sig: int) -> None:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, sig)

    def call_in(self, ns: str | int, fn: Callable[[], T], timeout: float | None = 60.0) -> T:
        """Run `fn()` in a thread inside the namespace; return its result."""
        return netns.call_in(self._name(ns), fn, timeout)

    def nft(self, ns: str | int, script: str) -> None:
        p = self.exec(ns, ["nft", "-f", "-"], input=script, timeout=10)
        if p.returncode != 0:
            raise netns.NetnsError(
                f"nft in {self._name(ns)} failed: {p.stderr.strip()}\n--- script ---\n{script}"
            )

    # --- clients from inside a namespace ----------------------------------------------------

    def ping(
        self, ns: str | int, dst: str, count: int = 3, interval: float = 0.01, timeout: float = 1.0
    ) -> tools.PingResult:
        return self.call_in(ns, lambda: tools.ping(dst, count, interval, timeout))

    def ping_many(
        self,
        ns: str | int,
        dsts: Sequence[str],
        count: int = 1,
        interval: float = 0.01,
        timeout: float = 1.0,
    ) -> dict[str, tools.PingResult]:
        return self.call_in(ns, lambda: tools.ping_many(list(dsts), count, interval, timeout))

    def traceroute(
        self, ns: str | int, dst: str, max_hops: int = 12, timeout: float = 1.0
    ) -> list[tools.Hop]:
        return self.call_in(ns, lambda: tools.traceroute(dst, max_hops, timeout))

    def tcp_connect(
        self, ns: str | int, address: str, port: int, timeout: float = 1.0
    ) -> str | None:
        return self.call_in(ns, lambda: tools.tcp_connect(address, port, timeout))

    def dns_query(
        self,
        ns: str | int,
        server: str,
        name: str,
        rdtype: str = "SOA",
        port: int = 53,
        timeout: float = 1.0,
        tcp: bool = False,
    ) -> tools.DnsResult:
        return self.call_in(ns, lambda: tools.dns_query(server, name, rdtype, port, timeout, tcp))

    def http_get(
        self,
        ns: str | int,
        url: str,
        timeout: float = 2.0,
        *,
        address: str | None = None,
        host: str | None = None,
        ca_file: str | None = None,
        sni: str | None = None,
    ) -> tools.HttpResult:
        """GET from inside a namespace. The address defaults to the site's stand-in address
        (or the URL's host when it is an IP); HTTPS verifies against `world.ca_file`."""
        from urllib.parse import urlsplit

        hostname = urlsplit(url).hostname or ""
        if address is None:
            address = self.sites[hostname][0] if hostname in self.sites else hostname
        ca = ca_file or self.ca_file or None
        return self.call_in(
            ns,
            lambda: tools.http_get(url, address, timeout, host, ca, sni),
            timeout=timeout * 3 + 5,
        )

    # --- routes ------------------------------------------------------------------------------

    def _withdrawn(self) -> str:
        return self._faults.blackout or self.spec.withdrawn

    def _desired_routes(self) -> dict[str, dict[str, str]]:
        """role -> {`ip route del` args: `ip route replace` args} for the current faults."""
        f = self._faults
        out: dict[str, dict[str, str]] = {r: {} for r in self.roles}
        sim = "198.18.0.0/15"

        def up(x: str, y: str) -> bool:
            return frozenset((x, y)) not in f.cut

        def via(role: str, prefix: str, peer: str, table: int = 0, metric: int = 0) -> None:
            ln = self.link(role, peer)
            gw = ln.b_addr if ln.a == role else ln.a_addr
            dev = ln.a_if if ln.a == role else ln.b_if
            key = f"{prefix} table {table or 'main'} metric {metric}"
            out[role][key] = f"{prefix} via {gw} dev {dev} table {table or 'main'} metric {metric}"

        def kind(role: str, how: str, prefix: str, table: int = 0) -> None:
            key = f"{prefix} table {table or 'main'} metric 0"
            out[role][key] = f"{how} {prefix} table {table or 'main'} metric 0"

        for i in range(self.spec.vantages):
            via(f"vantage{i}", sim, "core")
            for prefix in f.vantage_withdrawn.get(i, ()):
                kind("core", self.spec.withdrawn, prefix, table=100 + i)
        via("ctl", sim, "core")
        for a in self.control_hosts:
            via("core", f"{a}/32", "ctl")
        for k, u in enumerate(self.spec.upstreams):
            if up("core", u.key):
                via(u.key, sim, "core")
                via("core", self.link(u.key, "border").net, u.key)
            if up(u.key, "border"):
                via("border", sim, u.key, metric=100 * (k + 1))
                via("border", sim, u.key, table=10 + k)
        for b in self.spec.blocks:
            carrier = b.upstream
            # A silent blackout changes no route: the upstreams drop (see `_silent_drop`).
            blackout = f.blackout if f.blackout != "blackhole" else None
            if blackout or carrier in f.lost or not up("core", carrier):
                kind("core", self._withdrawn(), b.prefix)
            else:
                via("core", b.prefix, carrier)
            if blackout or carrier in f.lost or not up(carrier, "border"):
                kind(carrier, self._withdrawn(), b.prefix)
            else:
                via(carrier, b.prefix, "border")
            if b.prefix in f.blackholed:
                kind("border", "blackhole", b.prefix)
            else:
                via("border", b.prefix, "dprk")
            kind("dprk", "blackhole", b.prefix)
        via("dprk", sim, "border")
        return out

    def _silent_drop(self, on: bool) -> None:
        """Every upstream drops what it would forward into the blocks, after the TTL check
        (the forward hook): as an upstream that keeps a default route and drops, it still
        answers a traceroute's probe that expires there, then nothing."""
        blocks = ", ".join(self.blocks)
        for u in self.spec.upstreams:
            script = f"table ip {SILENT_TABLE}\ndelete table ip {SILENT_TABLE}\n"
            if on:
                script += (
                    f"table ip {SILENT_TABLE} {{\n  chain drops {{\n"
                    "    type filter hook forward priority -10; policy accept;\n"
                    f"    ip daddr {{ {blocks} }} drop\n  }}\n}}\n"
                )
            self.nft(u.key, script)

    def _sync_routes(self) -> None:
        desired = self._desired_routes()
        for role in self.roles:
            want, had = desired[role], self._routes_applied.get(role, {})
            replace = [
                f"route replace {spec}" for key, spec in want.items() if had.get(key) != spec
            ]
            delete = [f"route del {key}" for key in had if key not in want]
            if delete:
                netns.ip_batch(self.ns[role], delete, force=True)
            if replace:
                netns.ip_batch(self.ns[role], replace)
            self._routes_applied[role] = want

    def routes(self, ns: str | int) -> str:
        return self.exec(ns, ["ip", "route", "show", "table", "all"], check=True).stdout

    # --- faults ------------------------------------------------------------------------------

    def _fault(
        self, name: str, params: dict[str, object], apply: Callable[[], None]
    ) -> FaultRecord:
        requested = time.time()
        with self._lock:
            if self._torn:
                raise RuntimeError("the world is torn down")
            apply()
            rec = FaultRecord(name, params, requested, time.time())
            self.faults.append(rec)
        return rec

    def last_fault(self, name: str) -> FaultRecord | None:
        return next((r for r in reversed(self.faults) if r.name == name), None)

    def blackout(self, mode: str | None = None) -> FaultRecord:
        """All blocks withdrawn (default `spec.withdrawn`). "unreachable": at the core and every
        upstream, the core answers ICMP host unreachable (rate-limited). "blackhole" (or
        "silent"): the core still forwards to the upstreams, which drop silently (as an
        upstream keeping a default route does): a traceroute ends after the upstream's hop."""
        how = WITHDRAWN_MODES[mode or self.spec.withdrawn]

        def apply() -> None:
            if (self._faults.blackout == "blackhole") != (how == "blackhole"):
                self._silent_drop(how == "blackhole")
            self._faults.blackout = how
            self._sync_routes()

        return self._fault("blackout", {"mode": how}, apply)

    def repair_blackout(self) -> FaultRecord:
        def apply() -> None:
            if self._faults.blackout == "blackhole":
                self._silent_drop(False)
            self._faults.blackout = None
            self._sync_routes()

        return self._fault("repair_blackout", {}, apply)

    def lose_upstream(self, upstream: str) -> FaultRecord:
        """The upstream's session with DPRK is gone: the blocks it carries are withdrawn at
        the upstream and the core (traceroute ends at the core); other blocks are unaffected."""
        self.spec.upstream(upstream)

        def apply() -> None:
            self._faults.lost.add(upstream)
            self._sync_routes()

        return self._fault("lose_upstream", {"upstream": upstream}, apply)

    def restore_upstream(self, upstream: str) -> FaultRecord:
        def apply() -> None:
            self._faults.lost.discard(upstream)
            self._sync_routes()

        return self._fault("restore_upstream", {"upstream": upstream}, apply)

    def blackhole_block(self, prefix: str) -> FaultRecord:
        """Partial outage: the border silently drops one block; routes stay announced."""
        if prefix not in self.blocks:
            raise KeyError(f"{prefix} is not a block (have: {', '.join(self.blocks)})")

        def apply() -> None:
            self._faults.blackholed.add(prefix)
            self._sync_routes()

        return self._fault("blackhole_block", {"prefix": prefix}, apply)

    def restore_block(self, prefix: str) -> FaultRecord:
        def apply() -> None:
            self._faults.blackholed.discard(prefix)
            self._sync_routes()

        return self._fault("restore_block", {"prefix": prefix}, apply)

    def stop_web(self) -> FaultRecord:
        """nginx in the DPRK namespace stopped (SIGTERM): connections refused."""
        return self._fault("stop_web", {}, self._servers["web-dprk"].stop)

    def hang_web(self) -> FaultRecord:
        """nginx frozen (SIGSTOP): TCP connects (kernel backlog), nothing answers."""
        return self._fault("hang_web", {}, self._servers["web-dprk"].hang)

    def start_web(self) -> FaultRecord:
        return self._fault("start_web", {}, self._servers["web-dprk"].start)

    def stop_dns(self) -> FaultRecord:
        """knotd in the DPRK namespace stopped (SIGTERM): queries get ICMP port unreachable."""
        return self._fault("stop_dns", {}, self._servers["dns-dprk"].stop)

    def hang_dns(self) -> FaultRecord:
        """knotd frozen (SIGSTOP): queries time out."""
        return self._fault("hang_dns", {}, self._servers["dns-dprk"].hang)

    def start_dns(self) -> FaultRecord:
        return self._fault("start_dns", {}, self._servers["dns-dprk"].start)

    def server_state(self, name: str) -> str:
        """`web-dprk`, `dns-dprk`, `web-ctl`, `dns-ctl` -> up / stopped / hung."""
        return self._servers[name].state

    def _loss_ifaces(self, where: str) -> list[str]:
        if where in ("border", "dprk"):
            return [u.key for u in self.spec.upstreams]
        self.spec.upstream(where)
        return ["core"]

    def loss(self, rate: float, where: str = "border") -> FaultRecord:
        """Random drop (nftables numgen) of `rate` of the packets entering `where` from the
        Internet side: "border" (into DPRK, from every upstream) or an upstream key."""
        if not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be between 0 and 1")
        role = "border" if where == "dprk" else where
        ifaces = ", ".join(f'"{i}"' for i in self._loss_ifaces(role))
        threshold = round(rate * 10000)
        verdict = "drop" if threshold >= 10000 else f"numgen random mod 10000 < {threshold} drop"
        script = (
            f"table ip {LOSS_TABLE}\ndelete table ip {LOSS_TABLE}\n"
            f"table ip {LOSS_TABLE} {{\n  chain lossy {{\n"
            "    type filter hook forward priority -10; policy accept;\n"
            f"    iifname {{ {ifaces} }} {verdict}\n"
            "  }\n}\n"
        )

        def apply() -> None:
            self.nft(role, script)
            self._faults.loss[role] = rate

        return self._fault("loss", {"rate": rate, "where": role}, apply)

    def clear_loss(self, where: str | None = None) -> FaultRecord:
        def apply() -> None:
            roles = (
                list(self._faults.loss)
                if where is None
                else ["border" if where == "dprk" else where]
            )
            for role in roles:
                self.nft(role, f"table ip {LOSS_TABLE}\ndelete table ip {LOSS_TABLE}\n")
                self._faults.loss.pop(role, None)

        return self._fault("clear_loss", {"where": where}, apply)

    # --- realistic paths: profiles and episodes on the delay lines -------------------------------

    def _lines(self, link: str) -> netem.DelayLines:
        if self._netem is None or link not in self._netem.names:
            have = ", ".join(self._netem.names) if self._netem else "none"
            raise KeyError(
                f"link {link!r} has no delay line (have: {have}); build with "
                "profile='realistic' or a spec whose `paths` names it"
            )
        return self._netem

    @property
    def path_links(self) -> list[str]:
        """The links with a delay line: upstream keys and/or "ctl"."""
        return list(self._netem.names) if self._netem else []

    def path_profile(
        self, link: str, profile: PathProfile | None = None, **changes: Any
    ) -> PathProfile:
        """The link's current profile; with `profile` and/or field `changes` (e.g.
        `loss=0.05`), replace it at once (packets already queued keep their times)."""
        lines = self._lines(link)
        if profile is None and not changes:
            return lines.profile(link)
        new = dataclasses.replace(profile or lines.profile(link), **changes)
        new.validate()

        def apply() -> None:
            lines.set_profile(link, new)
            self._faults.paths.add(link)

        self._fault("path_profile", {"link": link, **new.to_json()}, apply)
        return new

    def episode(
        self,
        link: str,
        duration: float,
        *,
        rtt_factor: float = 1.0,
        loss: float = 0.0,
        ramp_up: float = 0.0,
        ramp_down: float = 0.0,
        start: float = 0.0,
        label: str = "scheduled",
    ) -> FaultRecord:
        """An episode on `link` starting `start` s from now: RTT scaled by up to `rtt_factor`
        and up to `loss` added per direction, ramping up over `ramp_up` s and down over the last
        `ramp_down` s of `duration`. Episodes overlap freely (factors multiply)."""
        ep = Episode(duration, rtt_factor, loss, ramp_up, ramp_down, start)
        ep.validate()
        lines = self._lines(link)

        def apply() -> None:
            lines.add_episode(link, ep, label)
            self._faults.paths.add(link)

        return self._fault(
            "episode", {"link": link, "label": label, **dataclasses.asdict(ep)}, apply
        )

    def congestion(
        self,
        link: str,
        duration: float = 180.0,
        rtt_factor: float = 2.5,
        loss: float = 0.08,
        ramp: float = 20.0,
        start: float = 0.0,
    ) -> FaultRecord:
        """A congestion episode (defaults: 3 minutes, RTT x2.5, 8 % loss, 20 s ramps)."""
        ramp = min(ramp, duration / 2)
        return self.episode(
            link,
            duration,
            rtt_factor=rtt_factor,
            loss=loss,
            ramp_up=ramp,
            ramp_down=ramp,
            start=start,
            label="congestion",
        )

    def loss_ramp(self, link: str, to: float, duration: float, hold: float = 0.0) -> FaultRecord:
        """Loss rising linearly to `to` over `duration` s, held `hold` s, then gone."""
        return self.episode(link, duration + hold, loss=to, ramp_up=duration, label="loss_ramp")

    def clear_episodes(self, link: str | None = None) -> FaultRecord:
        """End every episode on `link` (default: every link) at once."""
        links = [link] if link is not None else self.path_links

        def apply() -> None:
            for ln in links:
                self._lines(ln).clear_episodes(ln)

        return self._fault("clear_episodes", {"link": link}, apply)

    def path_stats(self) -> dict[str, Any]:
        """Per link: profile, conditions now, per-direction counters (packets, dropped, sent,
        scheduling error `late` in seconds), episodes begun (wall times), the forwarder's CPU."""
        return self._netem.stats() if self._netem else {}

    @property
    def delay_line_pid(self) -> int | None:
        return self._netem.pid if self._netem else None

    # --- realistic hosts: hosts that come and go ---------------------------------------------

    def host_down(self, address: str) -> FaultRecord:
        """An answering DPRK host goes away (silent: packets to it are dropped on arrival)."""
        if address not in self.hosts:
            raise KeyError(f"{address} is not an answering host")

        def apply() -> None:
            self._set_host(address, False)
            self._faults.hosts_gone.add(address)

        return self._fault("host_down", {"address": address}, apply)

    def host_up(self, address: str) -> FaultRecord:
        def apply() -> None:
            self._faults.hosts_gone.discard(address)
            present = True
            if self._hosts is not None and address in self._hosts.hosts:
                h = self._hosts.hosts[address]
                present = _HostCycler.state(h, time.monotonic() - self._hosts.t0)[0]
                self._hosts.present[address] = present
            self._set_host(address, present)

        return self._fault("host_up", {"address": address}, apply)

    def move_host(self, old: str, new: str) -> FaultRecord:
        """A host renumbered inside its block: `old` goes silent (as `host_down`) and `new`,
        an address of the same block that did not answer, answers ICMP from now on (for
        discovery: a census finds it with no change to the daemon's config)."""
        if old not in self.hosts:
            raise KeyError(f"{old} is not an answering host")
        if new in self.hosts or self._block_of(new) != self._block_of(old):
            raise ValueError(f"{new} must be a silent address of {old}'s block")

        def apply() -> None:
            self._set_host(old, False)
            self._faults.hosts_gone.add(old)
            netns.ip_batch(self.ns["dprk"], [f"addr add {new}/32 dev lo"])
            self.hosts[new] = self.hosts[old]

        return self._fault("move_host", {"old": old, "new": new}, apply)

    def schedule_host(
        self, address: str, up: float, down: float, offset: float = 0.0
    ) -> FaultRecord:
        """The host comes and goes from now on: present `up` s, gone `down` s (cycle starting
        `offset` s in). `unschedule_host` stops it (and brings it back)."""
        if address not in self.hosts:
            raise KeyError(f"{address} is not an answering host")
        if up <= 0 or down <= 0 or offset < 0:
            raise ValueError("up and down must be > 0, offset >= 0")

        def apply() -> None:
            if self._hosts is None:
                self._hosts = _HostCycler(self, [])
                self._hosts.start()
            # the cycle is counted from the cycler's start: shift so it begins now
            t = time.monotonic() - self._hosts.t0
            shift = (offset - t) % (up + down)
            self._hosts.add(FlakyHost(address, up, down, shift))

        return self._fault(
            "schedule_host", {"address": address, "up": up, "down": down, "offset": offset}, apply
        )

    def unschedule_host(self, address: str) -> FaultRecord:
        def apply() -> None:
            if self._hosts is not None:
                self._hosts.remove(address)
                self._hosts.present.pop(address, None)
            if address not in self._faults.hosts_gone:
                self._set_host(address, True)

        return self._fault("unschedule_host", {"address": address}, apply)

    def cut_vantage_uplink(self, vantage: int = 0) -> FaultRecord:
        """The vantage's provider goes away: the core's end of its link is set down, so the
        vantage keeps its route but every packet vanishes (probes time out)."""
        ln = self.link("core", f"vantage{vantage}")

        def apply() -> None:
            netns.ip_batch(self.ns["core"], [f"link set {ln.a_if} down"])
            self._faults.vantage_cut.add(vantage)

        return self._fault("cut_vantage_uplink", {"vantage": vantage}, apply)

    def restore_vantage_uplink(self, vantage: int = 0) -> FaultRecord:
        ln = self.link("core", f"vantage{vantage}")

        def apply() -> None:
            netns.ip_batch(self.ns["core"], [f"link set {ln.a_if} up"])
            # forget the failed ARP state, or the vantage waits for its retransmit timer
            netns.ip_batch(self.ns[ln.b], [f"neigh flush dev {ln.b_if}"], force=True)
            self._faults.vantage_cut.discard(vantage)

        return self._fault("restore_vantage_uplink", {"vantage": vantage}, apply)

    def cut_link(self, a: str, b: str = "dprk") -> FaultRecord:
        """Both ends of a router link set down, routes still pointing at it: with
        `cut_link("unicom", "dprk")` a traceroute to .176 ends at Unicom ("!H")."""
        ln = self.link(a, b)
        if {ln.a, ln.b} & {f"vantage{i}" for i in range(self.spec.vantages)}:
            raise ValueError("use cut_vantage_uplink for a vantage's link")

        def apply() -> None:
            netns.ip_batch(self.ns[ln.a], [f"link set {ln.a_if} down"])
            netns.ip_batch(self.ns[ln.b], [f"link set {ln.b_if} down"])
            self._faults.cut.add(frozenset((ln.a, ln.b)))
            self._sync_routes()

        return self._fault("cut_link", {"a": ln.a, "b": ln.b}, apply)

    def restore_link(self, a: str, b: str = "dprk") -> FaultRecord:
        ln = self.link(a, b)

        def apply() -> None:
            netns.ip_batch(self.ns[ln.a], [f"link set {ln.a_if} up"])
            netns.ip_batch(self.ns[ln.b], [f"link set {ln.b_if} up"])
            self._faults.cut.discard(frozenset((ln.a, ln.b)))
            self._sync_routes()

        return self._fault("restore_link", {"a": ln.a, "b": ln.b}, apply)

    def withdraw_for_vantage(
        self, vantage: int, blocks: Sequence[str] | None = None
    ) -> FaultRecord:
        """Partial visibility (e.g. the 2025 RPKI-invalid ROA): only this vantage's path has
        lost the blocks (default: all); other vantages still reach them."""
        chosen = tuple(blocks) if blocks is not None else tuple(self.blocks)
        for p in chosen:
            if p not in self.blocks:
                raise KeyError(f"{p} is not a block")
        if not 0 <= vantage < self.spec.vantages:
            raise IndexError(f"no vantage {vantage}")

        def apply() -> None:
            self._faults.vantage_withdrawn[vantage] = chosen
            self._sync_routes()

        return self._fault("withdraw_for_vantage", {"vantage": vantage, "blocks": chosen}, apply)

    def restore_for_vantage(self, vantage: int) -> FaultRecord:
        def apply() -> None:
            self._faults.vantage_withdrawn.pop(vantage, None)
            self._sync_routes()

        return self._fault("restore_for_vantage", {"vantage": vantage}, apply)

    def flap(self, period: float, count: int, mode: str | None = None) -> Flap:
        """Toggle blackout `count` times (down `period` s, up `period` s) from a thread; returns
        at once. `Flap.records` holds each toggle's FaultRecord; `Flap.wait()` joins."""
        if self._flap is not None and self._flap.thread.is_alive():
            raise RuntimeError("a flap is already running")
        self._flap = Flap(self, period, count, mode)
        self._flap.thread.start()
        return self._flap

    def repair_all(self) -> FaultRecord:
        """Undo every fault: links up, routes restored, loss removed, servers running."""
        if self._flap is not None:
            self._flap.stop()

        def apply() -> None:
            f = self._faults
            for pair in list(f.cut):
                a, b = sorted(pair)
                ln = self.link(a, b)
                netns.ip_batch(self.ns[ln.a], [f"link set {ln.a_if} up"])
                netns.ip_batch(self.ns[ln.b], [f"link set {ln.b_if} up"])
            for v in list(f.vantage_cut):
                netns.ip_batch(self.ns["core"], [f"link set vantage{v} up"])
                netns.ip_batch(self.ns[f"vantage{v}"], ["neigh flush dev core"], force=True)
            for role in list(f.loss):
                self.nft(role, f"table ip {LOSS_TABLE}\ndelete table ip {LOSS_TABLE}\n")
            if f.blackout == "blackhole":
                self._silent_drop(False)
            for addr in list(f.hosts_gone):
                f.hosts_gone.discard(addr)
                cyc = self._hosts
                if cyc is not None and addr in cyc.hosts:
                    present = _HostCycler.state(cyc.hosts[addr], time.monotonic() - cyc.t0)[0]
                    cyc.present[addr] = present
                    self._set_host(addr, present)
                else:
                    self._set_host(addr, True)
            if self._netem is not None:
                for link in f.paths:
                    self._netem.clear_episodes(link)
                    self._netem.set_profile(link, self.spec.paths[link])
            self._faults = _Faults()
            self._sync_routes()
            for s in self._servers.values():
                s.start()

        return self._fault("repair_all", {}, apply)

    # --- audit ---------------------------------------------------------------------------------

    def audit_counters(self) -> dict[str, audit.Counters]:
        """role -> packet counters of the audit tables (see monitor.sim.audit)."""
        out: dict[str, audit.Counters] = {}
        for role in self.roles:
            p = self.exec(role, ["nft", "-j", "list", "counters"], check=True, timeout=10)
            out[role] = audit.parse(p.stdout)
        return out

    def assert_no_leaks(self) -> dict[str, audit.Counters]:
        counters = self.audit_counters()
        bad = {r: c for r, c in counters.items() if c.leaks}
        if bad:
            raise AssertionError(f"packets outside 198.18.0.0/15 (or IPv6/ARP) seen: {bad}")
        return counters

    # --- the daemon's configuration -----------------------------------------------------------

    def daemon_config(
        self,
        vantage: int = 0,
        interval: str = "2s",
        timeout: str = "1s",
        max_rate: float = 200,
        state_dir: str | None = None,
        listen: str = "127.0.0.1:9474",
        down_after: int = 2,
        up_after: int = 2,
        log_level: str | None = None,
        detection: Mapping[str, Any] | None = None,
        bgp: Mapping[str, Any] | None = None,
    ) -> str:
        """The daemon's YAML configuration for this world (public contract format)."""
        if not 0 <= vantage < self.spec.vantages:
            raise IndexError(f"no vantage {vantage}")
        spec = self.spec
        entities: list[dict[str, Any]] = []
        for e in spec.entities:
            nets = [ipaddress.IPv4Network(b.prefix) for b in e.blocks]

            def inside(a: str, nets: list[ipaddress.IPv4Network] = nets) -> bool:
                return any(ipaddress.IPv4Address(a) in n for n in nets)

            ent: dict[str, Any] = {"name": e.name}
            if e.asn is not None:
                ent["asn"] = e.asn
            ent["prefixes"] = list(e.prefixes or [b.prefix for b in e.blocks])
            cidrs = [c for b in e.blocks for c in b.answering if "/" in c]
            covered = {a for c in cidrs for a in expand([c])}
            ent["icmp"] = cidrs + [a for a in self.hosts if inside(a) and a not in covered]
            # stale entries: in the config, never answering
            ent["icmp"] += [a for b in e.blocks for a in expand(b.stale)]
            sites = [s for s in spec.sites if inside(s.addresses[0])]
            nss = [n for n in spec.name_servers if inside(n.address)]
            tcp = [f"{n.address}:53" for n in nss]
            tcp += [f"{s.addresses[0]}:{443 if s.https else 80}" for s in sites]
            if tcp:
                ent["tcp"] = tcp
            if sites:
                ent["http"] = [self._http_item(s) for s in sites]
            if nss:
                ent["dns"] = [
                    {"server": n.address, "name": _zone_of(n.name), "type": "SOA"} for n in nss
                ]
            entities.append(ent)
        c = spec.controls
        controls: dict[str, Any] = {"icmp": list(c.icmp)}
        controls["tcp"] = [f"{s.addresses[0]}:80" for s in c.sites]
        controls["http"] = [self._http_item(s, https=False) for s in c.sites]
        controls["http"] += [self._http_item(s) for s in c.sites if s.https]
        controls["dns"] = [{"server": a, "name": c.dns_zone, "type": "SOA"} for a in c.dns_servers]
        doc: dict[str, Any] = {
            "listen": listen,
            "state_dir": state_dir or str(self.tmpdir / f"var-vantage{vantage}"),
        }
        if log_level:
            doc["log_level"] = log_level
        doc["probing"] = {"interval": interval, "timeout": timeout, "max_rate": max_rate}
        doc["detection"] = {"down_after": down_after, "up_after": up_after, **(detection or {})}
        doc["entities"] = entities
        doc["controls"] = controls
        doc["bgp"] = dict(bgp) if bgp else {"enabled": False}
        # Who owns each upstream router address (names the last hop of a traceroute).
        doc["upstreams"] = [
            {"address": a, "name": n, **({"asn": asn} if asn is not None else {})}
            for a, (n, asn) in self.upstream_routers.items()
        ]
        header = (
            f"# dprk-outage-monitor config for sim world {self.ns['core'].rsplit('-', 1)[0]}"
            f", vantage {vantage} ({self.vantages[vantage]})\n"
        )
        return header + yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=100)

    def _http_item(self, s: Site, https: bool | None = None) -> dict[str, Any]:
        """A config http item; plain http to an HTTPS site redirects on-site to https, so it
        carries the CA too."""
        tls = s.https if https is None else https
        item: dict[str, Any] = {
            "url": f"{'https' if tls else 'http'}://{s.names[0]}/",
            "address": s.addresses[0],
            "expect_status": [200],
        }
        if s.https:
            item["ca_file"] = self.ca_file
        return item

    def describe(self, verbose: bool = True) -> str:
        """A readable summary: namespaces, blocks, sites (all names when `verbose`), servers."""
        lines = [f"world {self.ns['core'].rsplit('-', 1)[0]} (scratch {self.tmpdir})"]
        for role in self.roles:
            lines.append(f"  {role:<9} {self.ns[role]}")
        lines.append(f"  vantage addresses: {', '.join(self.vantage_addresses)}")
        if self.spec.monitoring:
            mon = [self.monitoring_address(i) for i in range(self.spec.vantages)]
            lines.append(f"  monitoring addresses (scraped from mon): {', '.join(mon)}")
        for prefix, (ent, up) in self.blocks.items():
            n = sum(1 for b in self.hosts.values() if b == prefix)
            stale = f", {len(self.stale[prefix])} stale" if self.stale.get(prefix) else ""
            lines.append(f"  {prefix:<18} {ent:<12} via {up:<8} {n} answering hosts{stale}")
        lines.append(f"  profile: {self.spec.profile}")
        for link, p in self.spec.paths.items():
            burst = (
                f", bursts {p.burst.length:g}s of {p.burst.loss:.0%} every ~{p.burst.every:g}s"
                if p.burst
                else ""
            )
            lines.append(
                f"  path core-{link}: RTT +{p.rtt * 1000:g} ms, jitter {p.jitter:.0%}, loss "
                f"{p.loss:.1%}/direction{burst}"
            )
        for fh in self.spec.flaky:
            lines.append(f"  comes and goes: {fh.address} (up {fh.up:g}s, gone {fh.down:g}s)")
        for site in (*self.spec.sites, *self.spec.controls.sites):
            scheme = "https" if site.https else "http"
            names = site.names if verbose else site.names[:1]
            more = "" if verbose or len(site.names) == 1 else f" (+{len(site.names) - 1} names)"
            more += " (TLS 1.0 only)" if site.tls == "legacy" else ""
            more += f" (answers after {site.delay:g}s)" if site.delay else ""
            lines.append(f"  {scheme}://{' '.join(names)}{more} at {' '.join(site.addresses)}")
        lines.append(f"  name servers: {self.dns_servers}")
        lines.append(f"  controls: {self.controls}")
        lines.append(f"  CA: {self.ca_file}")
        return "\n".join(lines)


def _zone_of(ns_name: str) -> str:
    """ns1.kptc.kp -> kp (the kp. servers); ns1.kcna.kp -> kcna.kp."""
    parts = ns_name.split(".")
    if parts[1:] == ["kptc", "kp"]:
        return "kp"
    return ".".join(parts[1:])


# --- guaranteed cleanup: atexit and SIGTERM/SIGHUP ------------------------------------------

_live: dict[int, World] = {}
_previous: dict[int, Any] = {}
_reg_lock = threading.Lock()


def _register(w: World) -> None:
    with _reg_lock:
        _live[id(w)] = w
        if _previous or threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGHUP):
            _previous[sig] = signal.getsignal(sig)
            signal.signal(sig, _on_signal)


def _unregister(w: World) -> None:
    with _reg_lock:
        _live.pop(id(w), None)


def teardown_all() -> None:
    for w in list(_live.values()):
        with contextlib.suppress(Exception):
            w.teardown()


def _on_signal(sig: int, frame: FrameType | None) -> None:
    teardown_all()
    prev = _previous.get(sig, signal.SIG_DFL)
    if callable(prev):
        prev(sig, frame)
    elif prev == signal.SIG_DFL:
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)


atexit.register(teardown_all)


@contextlib.contextmanager
def world(spec: WorldSpec | None = None, **kw: Any) -> Iterator[World]:
    w = World.build(spec, **kw)
    try:
        yield w
    finally:
        w.teardown()


__all__ = ["Block", "FaultRecord", "Flap", "World", "missing_tools", "world"]
