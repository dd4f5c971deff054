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

import ipaddress
import re
from dataclasses import dataclass, field

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
