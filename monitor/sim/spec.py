"""The declarative description of a simulated Internet ("DPRK in a box").

One `WorldSpec` says everything the builder needs: how many vantage points, which upstreams carry
which blocks, which addresses answer, which web sites and name servers exist, which control hosts
stand for the public Internet. `DPRK` is the default, mapped from the facts file:

    real                      stand-in (benchmarking range 198.18.0.0/15 only)
    175.45.176.0/22           198.18.176.0/22      (same last two octets)
    210.52.109.0/24           198.19.109.0/24      (KPTC block inside China Unicom)
    77.94.35.0/24             198.19.35.0/24       (SatGate satellite block)
    1.1.1.1 / 8.8.8.8 / 9.9.9.9   198.19.1.1 / 198.19.8.8 / 198.19.9.9   (control hosts)

Nothing here may name an address outside 198.18.0.0/15: `WorldSpec.validate` refuses it.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from monitor.sim.netem import Burst, PathProfile

# The only addresses the simulation may ever use (RFC 2544 benchmarking range).
SIM_RANGE = ipaddress.IPv4Network("198.18.0.0/15")
LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")

# Real block -> stand-in block. Used to translate facts (zone files, configs) into the sim.
STAND_INS: dict[str, str] = {
    "175.45.176.0/22": "198.18.176.0/22",
    "210.52.109.0/24": "198.19.109.0/24",
    "77.94.35.0/24": "198.19.35.0/24",
    "1.1.1.1/32": "198.19.1.1/32",
    "8.8.8.8/32": "198.19.8.8/32",
    "9.9.9.9/32": "198.19.9.9/32",
}


def stand_in(address: str) -> str:
    """The sim address standing in for a real one (`175.45.176.71` -> `198.18.176.71`)."""
    addr = ipaddress.IPv4Address(address)
    for real, fake in STAND_INS.items():
        rnet, fnet = ipaddress.IPv4Network(real), ipaddress.IPv4Network(fake)
        if addr in rnet:
            return str(fnet.network_address + (int(addr) - int(rnet.network_address)))
    raise ValueError(f"{address} has no stand-in in the simulation")


def in_sim_range(address: str) -> bool:
    try:
        return ipaddress.IPv4Address(address) in SIM_RANGE
    except ValueError:
        return False


def expand(items: tuple[str, ...] | list[str]) -> list[str]:
    """Addresses, `a.b.c.d-e` / `a.b.c.d-a.b.c.e` ranges, CIDRs (every address) -> addresses."""
    out: list[str] = []
    for item in items:
        if "/" in item:
            out.extend(str(a) for a in ipaddress.IPv4Network(item))
        elif "-" in item:
            first_s, last_s = item.split("-", 1)
            if "." not in last_s:
                last_s = first_s.rsplit(".", 1)[0] + "." + last_s
            first, last = ipaddress.IPv4Address(first_s), ipaddress.IPv4Address(last_s)
            out.extend(str(first + i) for i in range(int(last) - int(first) + 1))
        else:
            out.append(str(ipaddress.IPv4Address(item)))
    return out


@dataclass(frozen=True)
class Block:
    """One routed prefix of a monitored network, carried by exactly one upstream."""

    prefix: str
    upstream: str  # key of the Upstream that carries it
    # Addresses that answer ICMP (ranges allowed); the rest is silent. A CIDR answers as a whole
    # (an AnyIP `local` route: cheap for benchmarks with many thousands of targets).
    answering: tuple[str, ...] = ()
    # Addresses listed in the daemon's config that never answer (stale entries, as real
    # configs have): silent like every non-answering address.
    stale: tuple[str, ...] = ()


@dataclass(frozen=True)
class Entity:
    """A monitored network as the daemon's config sees it (`entities:`)."""

    name: str
    blocks: tuple[Block, ...]
    asn: int | None = None
    prefixes: tuple[str, ...] = ()  # as announced / configured; defaults to the blocks


@dataclass(frozen=True)
class Upstream:
    """A transit router namespace between the core ("the Internet") and the monitored network."""

    key: str  # short name, also the interface name: <= 15 chars
    name: str
    asn: int | None


@dataclass(frozen=True)
class Site:
    """A web site served by nginx by Host name (and SNI for HTTPS)."""

    names: tuple[str, ...]  # first is the canonical host; all are accepted
    addresses: tuple[str, ...]
    https: bool = False
    title: str = ""
    where: str = "dprk"  # "dprk" or "ctl"
    # Seconds before the answer's first byte (nginx waits on an upstream that never connects).
    delay: float = 0.0
    # "modern", or "legacy": TLS 1.0 only with old RSA ciphers (as kcna.kp is reported to do).
    tls: str = "modern"


@dataclass(frozen=True)
class FlakyHost:
    """An answering host that comes and goes: present for `up` s, gone (silent) for `down` s,
    starting `offset` s into its cycle when the world is built."""

    address: str
    up: float
    down: float
    offset: float = 0.0


@dataclass(frozen=True)
class NameServer:
    address: str
    name: str


@dataclass(frozen=True)
class Controls:
    """Hosts outside the monitored network: is the vantage itself online?"""

    icmp: tuple[str, ...] = ("198.19.8.8", "198.19.1.1", "198.19.9.9")
    dns_servers: tuple[str, ...] = ("198.19.8.8", "198.19.1.1")
    dns_zone: str = "example"
    sites: tuple[Site, ...] = (
        Site(("control.example",), ("198.19.1.1",), https=True, title="control", where="ctl"),
    )


@dataclass(frozen=True)
class WorldSpec:
    entities: tuple[Entity, ...]
    upstreams: tuple[Upstream, ...]
    sites: tuple[Site, ...]
    name_servers: tuple[NameServer, ...]
    controls: Controls = field(default_factory=Controls)
    vantages: int = 1
    # Point-to-point links (/30 each) are cut from this pool.
    link_pool: str = "198.18.0.0/24"
    # What a router does with a withdrawn prefix: "unreachable" (an `unreachable` route: ICMP
    # host unreachable, "!H" in traceroute, rate-limited by the kernel) or "blackhole" (silent).
    withdrawn: str = "unreachable"
    # The real kp. zone, mapped to stand-ins; served by knot on the name servers.
    serve_kp_zone: bool = True
    # A "mon" namespace (one Prometheus for every vantage) linked to each vantage by its own
    # point-to-point /30 from this pool: a management network, not a path into the Internet
    # (nothing forwards across it; the vantage's probes still leave only through its uplink).
    monitoring: bool = False
    monitoring_pool: str = "198.18.254.0/24"
    # Links through the user-space delay line (monitor.sim.netem), by the far end of the core's
    # link: an upstream key or "ctl". Empty: ideal paths (plain veth, no delay, no loss).
    paths: Mapping[str, PathProfile] = field(default_factory=dict)
    flaky: tuple[FlakyHost, ...] = ()
    # Routers' ICMP error rate limit (net.ipv4.icmp_ratelimit, ms per destination); 0: off.
    icmp_ratelimit: int = 0
    profile: str = "ideal"  # a label: "ideal" or "realistic"
    seed: int | None = None  # the delay line's random numbers (None: fresh each run)

    @property
    def blocks(self) -> tuple[Block, ...]:
        return tuple(b for e in self.entities for b in e.blocks)

    def upstream(self, key: str) -> Upstream:
        for u in self.upstreams:
            if u.key == key:
                return u
        raise KeyError(f"no upstream {key!r} (have: {', '.join(u.key for u in self.upstreams)})")

    def validate(self) -> None:
        """Refuse any description that could make the world touch a real address."""
        if not 1 <= self.vantages <= 8:
            raise ValueError("vantages must be between 1 and 8")
        if self.withdrawn not in ("unreachable", "blackhole"):
            raise ValueError("withdrawn must be 'unreachable' or 'blackhole'")
        pool = ipaddress.IPv4Network(self.link_pool)
        if not pool.subnet_of(SIM_RANGE):
            raise ValueError(f"link pool {pool} is outside {SIM_RANGE}")
        mon_pool = ipaddress.IPv4Network(self.monitoring_pool)
        if not mon_pool.subnet_of(SIM_RANGE):
            raise ValueError(f"monitoring pool {mon_pool} is outside {SIM_RANGE}")
        if mon_pool.prefixlen > 27 or mon_pool.overlaps(pool):
            raise ValueError(f"monitoring pool {mon_pool}: need a /27 or more, apart from {pool}")
        nets: list[str] = [b.prefix for b in self.blocks]
        nets += [p for e in self.entities for p in e.prefixes]
        for n in nets:
            if not ipaddress.IPv4Network(n).subnet_of(SIM_RANGE):
                raise ValueError(f"prefix {n} is outside {SIM_RANGE}")
            if self.monitoring and ipaddress.IPv4Network(n).overlaps(mon_pool):
                raise ValueError(f"prefix {n} overlaps the monitoring pool {mon_pool}")
        addrs: list[str] = [a for b in self.blocks for a in expand(b.answering)]
        addrs += [a for s in (*self.sites, *self.controls.sites) for a in s.addresses]
        addrs += [ns.address for ns in self.name_servers]
        addrs += list(self.controls.icmp) + list(self.controls.dns_servers)
        for a in addrs:
            if not in_sim_range(a):
                raise ValueError(f"address {a} is outside {SIM_RANGE}")
            if self.monitoring and ipaddress.IPv4Address(a) in mon_pool:
                raise ValueError(f"address {a} lies in the monitoring pool {mon_pool}")
        keys = {u.key for u in self.upstreams}
        for link, prof in self.paths.items():
            if link not in keys and link != "ctl":
                raise ValueError(f"path profile for {link!r}: not an upstream key nor 'ctl'")
            prof.validate()
        if not 0 <= self.icmp_ratelimit <= 60000:
            raise ValueError("icmp_ratelimit is in ms: between 0 and 60000")
        answering = {a for b in self.blocks for a in expand(b.answering)}
        answering |= {a for s in self.sites for a in s.addresses}
        answering |= {n.address for n in self.name_servers}
        for b in self.blocks:
            for a in expand(b.stale):
                if not in_sim_range(a) or ipaddress.IPv4Address(a) not in ipaddress.IPv4Network(
                    b.prefix
                ):
                    raise ValueError(f"stale address {a} is not inside its block {b.prefix}")
                if a in answering:
                    raise ValueError(f"stale address {a} also answers")
        for fh in self.flaky:
            if fh.address not in answering:
                raise ValueError(f"flaky host {fh.address} is not an answering address")
            if fh.up <= 0 or fh.down <= 0 or fh.offset < 0:
                raise ValueError(f"flaky host {fh.address}: up and down must be > 0")
        for s in (*self.sites, *self.controls.sites):
            if s.tls not in ("modern", "legacy") or (s.tls == "legacy" and not s.https):
                raise ValueError(f"site {s.names[0]}: tls must be 'modern' or 'legacy' (https)")
            if not 0.0 <= s.delay <= 30.0:
                raise ValueError(f"site {s.names[0]}: delay must be between 0 and 30 s")
        for u in self.upstreams:
            if not re.fullmatch(r"[a-z][a-z0-9]{1,10}", u.key) or u.key in (
                "core",
                "ctl",
                "dprk",
                "mon",
            ):
                raise ValueError(f"bad upstream key {u.key!r}")
        for b in self.blocks:
            if b.upstream not in keys:
                raise ValueError(f"block {b.prefix} names unknown upstream {b.upstream!r}")
            net = ipaddress.IPv4Network(b.prefix)
            for a in expand(b.answering):
                if ipaddress.IPv4Address(a) not in net:
                    raise ValueError(f"{a} is not inside its block {b.prefix}")
        for s in self.sites:
            for a in s.addresses:
                if not any(
                    ipaddress.IPv4Address(a) in ipaddress.IPv4Network(b.prefix) for b in self.blocks
                ):
                    raise ValueError(f"site {s.names[0]} address {a} is in no block")
        for c in (*self.controls.icmp, *self.controls.dns_servers):
            if any(
                ipaddress.IPv4Address(c) in ipaddress.IPv4Network(b.prefix) for b in self.blocks
            ):
                raise ValueError(f"control {c} lies inside a monitored block")


# --- the default: North Korea -----------------------------------------------------------------

UNICOM = Upstream("unicom", "China Unicom", 4837)
TTK = Upstream("ttk", "TransTelecom", 20485)
# The SatGate block's path is not documented; it gets its own transit with no ASN claimed.
SATGATE = Upstream("satgate", "SatGate (satellite)", None)

# Answering hosts: the 2016 zone's and later scans' addresses (facts file), mapped to stand-ins.
STAR_176 = Block(
    "198.18.176.0/24",
    "unicom",
    (
        "198.18.176.1",
        "198.18.176.8",
        "198.18.176.9",
        "198.18.176.15",
        "198.18.176.16",
        "198.18.176.61",
        "198.18.176.67-85",
    ),
)
STAR_177 = Block("198.18.177.0/24", "ttk", ("198.18.177.1", "198.18.177.10", "198.18.177.20"))
STAR_178 = Block(
    "198.18.178.0/24",
    "ttk",
    ("198.18.178.1", "198.18.178.55", "198.18.178.60", "198.18.178.170"),
)
STAR_179 = Block("198.18.179.0/24", "unicom", ("198.18.179.1", "198.18.179.69", "198.18.179.76"))
KPTC_UNICOM = Block("198.19.109.0/24", "unicom", ("198.19.109.1", "198.19.109.2", "198.19.109.10"))
SATGATE_BLOCK = Block("198.19.35.0/24", "satgate", ("198.19.35.1", "198.19.35.2", "198.19.35.10"))

DPRK_SITES: tuple[Site, ...] = (
    Site(("kcna.kp", "www.kcna.kp"), ("198.18.176.71", "198.18.176.74"), title="KCNA"),
    Site(
        ("rodong.rep.kp", "www.rodong.rep.kp"),
        ("198.18.176.68", "198.18.176.78"),
        title="Rodong Sinmun",
    ),
    Site(
        ("naenara.com.kp", "www.naenara.com.kp"),
        ("198.18.176.67", "198.18.176.77"),
        https=True,
        title="Naenara",
    ),
    Site(("vok.rep.kp",), ("198.18.176.75", "198.18.176.85"), title="Voice of Korea"),
    Site(("airkoryo.com.kp", "www.airkoryo.com.kp"), ("198.18.176.69",), title="Air Koryo"),
    # mfa.gov.kp and pyongyangtimes.com.kp are HTTPS per the facts file; their addresses are
    # not documented there, so these two are placeholders inside the web host range.
    Site(
        ("mfa.gov.kp", "www.mfa.gov.kp"),
        ("198.18.176.80",),
        https=True,
        title="Ministry of Foreign Affairs",
    ),
    Site(
        ("pyongyangtimes.com.kp", "www.pyongyangtimes.com.kp"),
        ("198.18.176.82",),
        https=True,
        title="The Pyongyang Times",
    ),
    # The shared host .81 serving about ten small sites.
    Site(
        (
            "friend.com.kp",
            "cooks.org.kp",
            "kass.org.kp",
            "kiyctc.com.kp",
            "knic.com.kp",
            "koredufund.org.kp",
            "korelcfund.org.kp",
            "korfilm.com.kp",
            "nta.gov.kp",
            "sdprk.org.kp",
        ),
        ("198.18.176.81",),
        title="shared host",
    ),
)

DPRK_NAME_SERVERS: tuple[NameServer, ...] = (
    NameServer("198.18.176.15", "ns1.kptc.kp"),
    NameServer("198.18.176.16", "ns2.kptc.kp"),
    NameServer("198.18.176.8", "ns1.kcna.kp"),
    NameServer("198.18.176.9", "ns2.kcna.kp"),
)


def dprk(vantages: int = 1, withdrawn: str = "unreachable") -> WorldSpec:
    """The default world: North Korea behind China Unicom, TransTelecom and SatGate."""
    return WorldSpec(
        entities=(
            Entity(
                "star-jv",
                (STAR_176, STAR_177, STAR_178, STAR_179),
                asn=131279,
                prefixes=("198.18.176.0/22",),
            ),
            Entity("kptc-unicom", (KPTC_UNICOM,), asn=4837),
            Entity("satgate", (SATGATE_BLOCK,)),
        ),
        upstreams=(UNICOM, TTK, SATGATE),
        sites=DPRK_SITES,
        name_servers=DPRK_NAME_SERVERS,
        vantages=vantages,
        withdrawn=withdrawn,
    )


# --- the realistic profile ----------------------------------------------------------------------

# Per link: RTT through it, jitter (sd of each one-way delay as a fraction of it), independent
# loss per direction, and Gilbert-Elliott bursts (a second of heavy loss every minute or two).
REALISTIC_PATHS: dict[str, PathProfile] = {
    # China Unicom ~250-350 ms RTT
    "unicom": PathProfile(
        rtt=0.300, jitter=0.15, loss=0.015, burst=Burst(every=60.0, length=0.4, loss=0.8)
    ),
    # TransTelecom ~350-450 ms
    "ttk": PathProfile(
        rtt=0.400, jitter=0.12, loss=0.02, burst=Burst(every=60.0, length=0.4, loss=0.8)
    ),
    # the satellite block ~600-700 ms
    "satgate": PathProfile(
        rtt=0.650, jitter=0.10, loss=0.025, burst=Burst(every=120.0, length=1.0, loss=0.9)
    ),
    # the control hosts stand for big anycast services near the vantage
    "ctl": PathProfile(rtt=0.020, jitter=0.10),
}
# Unknown upstreams of a custom world get this one.
REALISTIC_DEFAULT = PathProfile(
    rtt=0.350, jitter=0.12, loss=0.02, burst=Burst(every=60.0, length=0.4, loss=0.8)
)
REALISTIC_STALE: dict[str, tuple[str, ...]] = {
    "198.18.176.0/24": ("198.18.176.10", "198.18.176.62"),
    "198.18.178.0/24": ("198.18.178.30",),
}
REALISTIC_FLAKY: tuple[FlakyHost, ...] = (
    FlakyHost("198.18.176.61", up=240.0, down=90.0),
    FlakyHost("198.18.178.170", up=420.0, down=180.0),
)
# site (first name) -> changes
REALISTIC_SITES: dict[str, dict[str, object]] = {
    "kcna.kp": {"https": True, "tls": "legacy"},
    "rodong.rep.kp": {"delay": 1.5},
    "vok.rep.kp": {"delay": 1.2},
}


def realistic(spec: WorldSpec | None = None, *, episodes_per_hour: float = 0.0) -> WorldSpec:
    """`spec` (default: `dprk()`) on realistic paths with realistic hosts: delay lines on every
    upstream and the controls (REALISTIC_PATHS), routers rate-limiting ICMP errors like the
    kernel's defaults, withdrawn routes dropped silently, stale addresses in the config, hosts
    coming and going, slow web sites and a TLS 1.0-only one (those three where the spec has the
    blocks, hosts and sites named above). `episodes_per_hour` adds random congestion episodes
    (for soaks; scheduled ones come from `World.episode`)."""
    spec = spec or dprk()
    keys = [u.key for u in spec.upstreams] + ["ctl"]
    paths = {
        k: dataclasses.replace(
            spec.paths.get(k) or REALISTIC_PATHS.get(k, REALISTIC_DEFAULT),
            episodes_per_hour=0.0 if k == "ctl" else episodes_per_hour,
        )
        for k in keys
    }
    answering = {a for b in spec.blocks for a in expand(b.answering)}
    answering |= {a for s in spec.sites for a in s.addresses}
    answering |= {n.address for n in spec.name_servers}
    entities = tuple(
        dataclasses.replace(
            e,
            blocks=tuple(
                dataclasses.replace(
                    b,
                    stale=b.stale
                    + tuple(a for a in REALISTIC_STALE.get(b.prefix, ()) if a not in answering),
                )
                for b in e.blocks
            ),
        )
        for e in spec.entities
    )
    sites = tuple(
        dataclasses.replace(s, **REALISTIC_SITES.get(s.names[0], {}))  # type: ignore[arg-type]
        for s in spec.sites
    )
    flaky = spec.flaky + tuple(f for f in REALISTIC_FLAKY if f.address in answering)
    return dataclasses.replace(
        spec,
        entities=entities,
        sites=sites,
        paths=paths,
        flaky=flaky,
        icmp_ratelimit=1000,
        withdrawn="blackhole",
        profile="realistic",
    )


PROFILES = ("ideal", "realistic")
