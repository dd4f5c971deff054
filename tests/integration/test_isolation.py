"""Proof that the simulated world cannot leak: no link to the host's namespace, no route outside
198.18.0.0/15, and nftables counters in every namespace showing that no packet outside the range
(nor any IPv6 or foreign ARP) was seen while real traffic - and a real daemon - ran.

The `world` fixture checks the counters after every integration test as well; here the traffic is
made on purpose and the counters themselves are shown to work (positive controls).
"""

from __future__ import annotations

import ipaddress
import json
import re
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from monitor.sim import audit, netns, servers, spec, tools
from monitor.sim.daemonproc import DaemonProcess
from monitor.sim.world import World

pytestmark = pytest.mark.netns

SIM = ipaddress.IPv4Network("198.18.0.0/15")
LOOP = ipaddress.IPv4Network("127.0.0.0/8")
DISABLE_V6 = Path("/proc/sys/net/ipv6/conf/all/disable_ipv6")


def _traffic(w: World) -> None:
    """Pings to every block and control, traceroutes, HTTP, HTTPS, DNS, and fault ICMP."""
    w.ping_many(0, [*w.hosts, *w.control_hosts, *w.silent["198.18.176.0/24"]], timeout=0.3)
    for dst in ("198.18.176.71", "198.18.177.1", "198.19.35.1", "198.19.109.1"):
        w.traceroute(0, dst, timeout=0.5)
    for url in ("http://kcna.kp/", "https://naenara.com.kp/", "https://control.example/"):
        assert w.http_get(0, url).status == 200
    w.http_get(0, "http://kcna.kp/", host="wrong.example")
    for server in [*w.dns_servers, *w.controls["dns"]]:
        w.dns_query(0, server, "kp", "SOA")
        w.dns_query(0, server, "kp", "SOA", tcp=True)
    w.blackout()
    w.ping(0, "198.18.176.1", count=2, timeout=0.2)  # ICMP unreachable from the core
    w.repair_blackout()
    w.cut_link("ttk", "dprk")
    w.traceroute(0, "198.18.177.1", timeout=0.3)
    w.repair_all()


def test_every_veth_peer_is_inside_the_world(world: World) -> None:
    """Each namespace has only lo and veths whose peers are namespaces of this same world."""
    ours = set(world.ns.values())
    for role, ns in world.ns.items():
        links = json.loads(world.exec(role, ["ip", "-j", "-d", "link", "show"], check=True).stdout)
        ids = json.loads(
            world.exec(role, ["ip", "-j", "netns", "list-id"], check=True).stdout or "[]"
        )
        names = {i["nsid"]: i.get("name") for i in ids}
        for link in links:
            if link["ifname"] == "lo":
                continue
            assert link.get("linkinfo", {}).get("info_kind") == "veth", (ns, link["ifname"])
            assert names.get(link["link_netnsid"]) in ours, (ns, link["ifname"])


def test_routes_cover_only_the_sim_range(world: World) -> None:
    """No default route anywhere; every route of every table is inside 198.18.0.0/15 (or lo)."""
    for role in world.roles:
        routes = json.loads(
            world.exec(role, ["ip", "-j", "route", "show", "table", "all"], check=True).stdout
        )
        for r in routes:
            dst = r["dst"]
            assert dst != "default", (role, r)
            net = ipaddress.IPv4Network(dst, strict=False)
            assert net.subnet_of(SIM) or net.subnet_of(LOOP), (role, r)


def test_route_lookup_outside_the_range_fails_everywhere(world: World) -> None:
    """A route lookup (no packet is sent) for documentation addresses fails in every namespace."""
    for role in world.roles:
        for dst in ("192.0.2.1", "203.0.113.7"):
            p = world.exec(role, ["ip", "route", "get", dst])
            assert p.returncode != 0 and "unreachable" in p.stderr, (role, dst, p.stdout)


def test_ipv6_is_disabled_everywhere(world: World) -> None:
    """IPv6 is off in every namespace: no IPv6 address exists, not even ::1."""
    for role in world.roles:
        assert world.exec(role, ["ip", "-6", "-j", "addr", "show"], check=True).stdout.strip() in (
            "",
            "[]",
        )
        flag = world.call_in(role, lambda: DISABLE_V6.read_text().strip())
        assert flag == "1", role


def test_tools_refuse_destinations_outside_the_range(world: World) -> None:
    """The world's clients refuse real addresses before any socket is opened."""
    for dst in ("175.45.176.71", "8.8.8.8", "10.0.0.1", "192.168.1.1", "::1"):
        with pytest.raises(tools.OutsideSimRange):
            tools.check_destination(dst)
        with pytest.raises(tools.OutsideSimRange):
            world.ping(0, dst)
    with pytest.raises(tools.OutsideSimRange):
        world.http_get(0, "http://kcna.kp/", address="175.45.176.71")
    with pytest.raises(netns.NetnsError):
        netns.call_in("not-ours", lambda: None)


def test_traffic_and_faults_stay_inside_the_range(world: World) -> None:
    """During pings, traceroutes, HTTP(S), DNS and faults no namespace sees an outside packet,
    while every namespace did count in-range traffic (the hooks see it)."""
    _traffic(world)
    counters = world.assert_no_leaks()
    assert all(c.in_range > 0 for c in counters.values()), counters


def test_audit_counters_count_packets_outside_the_allowed_range(world: World) -> None:
    """Positive control: the same rules with a narrower allowed range (198.18.0.0/16) count the
    pings to the controls in 198.19.0.0/16 - so a leak would be counted too."""
    world.nft(0, audit.rules("198.18.0.0/16", table="dom_audit_ctl"))
    world.ping(0, "198.19.8.8", count=5)

    def read() -> audit.Counters:
        out = world.exec(0, ["nft", "-j", "list", "counters"], check=True).stdout
        return audit.parse(out, table="dom_audit_ctl")

    narrow = read()
    assert narrow.out_of_range == 10  # 5 requests out, 5 replies in
    world.ping(0, "198.18.176.1", count=5)
    assert read().out_of_range == 10  # in-range traffic is not counted as out of range
    world.exec(0, ["nft", "delete", "table", "inet", "dom_audit_ctl"], check=True)
    world.exec(0, ["nft", "delete", "table", "arp", "dom_audit_ctl"], check=True)
    assert world.audit_counters()["vantage0"].leaks == 0


def test_daemon_run_stays_inside_the_range(
    world: World, daemon: Callable[..., DaemonProcess]
) -> None:
    """A real daemon probing the world (through a blackout and a stopped web server) sends and
    receives nothing outside 198.18.0.0/15 in any namespace."""
    d = daemon(interval="1s", timeout="500ms")
    d.wait_for(lambda m: m.total("dprk_monitor_probes_total") > 50, timeout=20)
    world.blackout()
    world.stop_web()
    time.sleep(2.5)
    world.repair_all()
    d.wait_for(lambda m: m.total("dprk_monitor_probes_total") > 150, timeout=20)
    d.stop()
    counters = world.assert_no_leaks()
    assert counters["dprk"].in_range > 100


# --- the description itself (no root needed) ----------------------------------------------------


def test_world_description_refuses_addresses_outside_the_range() -> None:
    """WorldSpec.validate refuses a real address anywhere: block, host, site, control, links."""
    base = spec.dprk()
    base.validate()
    real_block = spec.Block("175.45.176.0/24", "unicom", ("175.45.176.1",))
    bad = [
        replace(base, entities=(spec.Entity("x", (real_block,)),)),
        replace(base, controls=replace(base.controls, icmp=("8.8.8.8",))),
        replace(base, controls=replace(base.controls, dns_servers=("1.1.1.1",))),
        replace(base, link_pool="10.0.0.0/24"),
        replace(base, name_servers=(spec.NameServer("175.45.176.15", "ns1.kptc.kp"),)),
        replace(base, sites=(spec.Site(("kcna.kp",), ("175.45.176.71",)),)),
    ]
    for s in bad:
        with pytest.raises(ValueError):
            s.validate()


def test_generated_zones_and_configs_hold_only_stand_ins() -> None:
    """The kp. zones built from the 2016 leak, the control zone and nginx's config name no
    address outside 198.18.0.0/15."""
    d = spec.dprk()
    texts = [*servers.kp_zones(d).values(), *servers.control_zone(d).values()]
    certs = {s.names[0]: ("c", "k") for s in d.sites}
    texts.append(servers.nginx_conf("/p", list(d.sites), certs, dict.fromkeys(certs, "/r")))
    addrs = {a for t in texts for a in re.findall(r"\b\d+\.\d+\.\d+\.\d+\b", t)}
    assert addrs and all(spec.in_sim_range(a) for a in addrs), sorted(addrs)
    kp = servers.kp_zones(d)["kp"]
    assert "2013083001" in kp and "175.45" not in kp
