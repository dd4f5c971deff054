"""The simulated world itself ("DPRK in a box"): reachability, real servers, faults, cleanup.

These tests need no daemon: they probe the world from the vantage namespace with small clients
(raw-socket ping/traceroute, HTTP with pinned address, dnspython).
"""

from __future__ import annotations

import io
import ipaddress
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from monitor import config as config_mod
from monitor.probes.base import target_address
from monitor.sim import netns, tools
from monitor.sim.spec import Block, Entity, dprk
from monitor.sim.world import World

pytestmark = pytest.mark.netns

V = 0  # the vantage
ROOT = Path(__file__).resolve().parents[2]


def reachable(w: World, addr: str, vantage: int = V, timeout: float = 0.5) -> bool:
    return w.ping(vantage, addr, count=2, timeout=timeout).received > 0


def answering(w: World, addrs: list[str], vantage: int = V, timeout: float = 0.5) -> set[str]:
    """The subset of `addrs` that answers ping (all pinged at once)."""
    res = w.ping_many(vantage, addrs, count=2, timeout=timeout)
    return {a for a, r in res.items() if r.received}


# --- the healthy world --------------------------------------------------------------------------


def test_answering_hosts_and_controls_reply_to_ping(world: World) -> None:
    """Every answering host of every block, and every control host, answers ICMP echo."""
    addrs = [*world.hosts, *world.controls["icmp"]]
    assert len(addrs) > 40
    res = world.ping_many(V, addrs, count=1, timeout=1.0)
    assert [a for a, r in res.items() if r.received != 1] == []


def test_silent_addresses_drop_without_icmp_error(world: World) -> None:
    """Non-answering addresses of a block are silently dropped: no reply, no ICMP unreachable."""
    silent = [a for addrs in world.silent.values() for a in addrs]
    assert all(world.silent.values()) and len(silent) >= 12
    res = world.ping_many(V, silent, count=2, timeout=0.5)
    assert {a: (r.received, r.errors) for a, r in res.items()} == {a: (0, []) for a in silent}


def test_http_with_right_host_returns_the_site(world: World) -> None:
    """HTTP to a site's address with its Host name returns 200 and the site's page."""
    for url, title in [
        ("http://kcna.kp/", "KCNA"),
        ("http://www.kcna.kp/", "KCNA"),
        ("http://rodong.rep.kp/", "Rodong Sinmun"),
        ("http://friend.com.kp/", "shared host"),
    ]:
        r = world.http_get(V, url)
        assert r.status == 200, (url, r.error)
        assert f"<title>{title}</title>" in r.text


def test_http_with_wrong_or_missing_host_gets_no_answer(world: World) -> None:
    """Like the real servers, a request with a wrong, missing or bare-IP Host gets no answer."""
    for host in ("example.com", "", "198.18.176.71"):
        r = world.http_get(V, "http://kcna.kp/", host=host)
        assert (r.status, r.error) == (None, "no response"), host
    # HTTPS with the right SNI but a wrong or missing Host header: no answer either
    for host in ("kcna.kp", ""):
        r = world.http_get(V, "https://naenara.com.kp/", host=host)
        assert (r.status, r.error) == (None, "no response"), host
    # kcna's Host sent to rodong's address: that server does not know it either
    r = world.http_get(V, "http://kcna.kp/", address=world.sites["rodong.rep.kp"][0])
    assert r.status is None


def test_https_verifies_against_the_world_ca_with_sni(world: World) -> None:
    """HTTPS sites present a certificate for their name from world.ca_file, chosen by SNI."""
    for url in (
        "https://naenara.com.kp/",
        "https://mfa.gov.kp/",
        "https://pyongyangtimes.com.kp/",
        "https://control.example/",
    ):
        r = world.http_get(V, url)
        assert r.status == 200, (url, r.error)
    addr = world.sites["naenara.com.kp"][0]
    # no SNI: the default server refuses the handshake
    r = world.http_get(V, "https://naenara.com.kp/", sni="")
    assert r.status is None and r.error is not None and r.error.startswith("tls")
    # the system's CAs do not know the world's CA
    r = world.call_in(V, lambda: tools.http_get("https://naenara.com.kp/", addr, 2.0))
    assert r.status is None and r.error is not None and "CERTIFICATE_VERIFY_FAILED" in r.error


def test_https_site_redirects_plain_http(world: World) -> None:
    """An HTTPS site's port 80 redirects to https:// (with the right Host)."""
    r = world.http_get(V, "http://naenara.com.kp/")
    assert r.status == 301
    assert r.headers["location"] == "https://naenara.com.kp/"


def test_knot_serves_the_leaked_kp_zone_mapped_to_stand_ins(world: World) -> None:
    """ns1/ns2.kptc.kp stand-ins answer SOA kp. from the 2016 leak, addresses mapped."""
    for server in ("198.18.176.15", "198.18.176.16"):
        r = world.dns_query(V, server, "kp", "SOA")
        assert r.rcode == "NOERROR" and r.authoritative
        assert r.answers == ["ns1.kptc.kp. root.kptc.kp. 2013083001 28800 86400 1209600 86400"]
    ns = world.dns_query(V, "198.18.176.15", "kp", "NS")
    assert sorted(ns.answers) == ["ns1.kptc.kp.", "ns2.kptc.kp.", "ns3.kptc.kp."]
    assert world.dns_query(V, "198.18.176.16", "ns1.kptc.kp", "A").answers == ["198.18.176.15"]
    kcna = world.dns_query(V, "198.18.176.8", "kcna.kp", "A")
    assert sorted(kcna.answers) == ["198.18.176.71", "198.18.176.74"]
    tcp = world.dns_query(V, "198.18.176.15", "rodong.rep.kp", "A", tcp=True)
    assert sorted(tcp.answers) == ["198.18.176.68", "198.18.176.78"]


def test_control_dns_answers(world: World) -> None:
    """The control resolvers' stand-ins answer SOA for the control zone."""
    for server in world.controls["dns"]:
        r = world.dns_query(V, server, "example", "SOA")
        assert r.rcode == "NOERROR" and len(r.answers) == 1


def test_traceroute_shows_core_upstream_and_border_hops(world: World) -> None:
    """Traceroute to .176 goes core -> China Unicom -> border; to .177 via TransTelecom."""
    for dst, owner in (
        ("198.18.176.71", ("China Unicom", 4837)),
        ("198.18.177.1", ("TransTelecom", 20485)),
    ):
        hops = world.traceroute(V, dst)
        assert [h.address for h in hops] == world.expected_path(dst), hops
        assert world.upstream_routers[hops[1].address or ""] == owner
        assert world.routers[hops[0].address or ""][0] == "core"
        assert world.routers[hops[2].address or ""][0] == "border"


def test_daemon_config_is_accepted_by_the_config_loader(world: World, tmp_path: Path) -> None:
    """world.daemon_config() is a valid config: entities, sim-only targets, the world's CA."""
    path = tmp_path / "c.yaml"
    path.write_text(world.daemon_config(state_dir=str(tmp_path / "var")), encoding="utf-8")
    cfg = config_mod.load(path)
    assert [e.name for e in cfg.entities] == ["star-jv", "kptc-unicom", "satgate"]
    star = cfg.entity("star-jv")
    assert star is not None and star.asn == 131279
    assert {str(t.address) for t in star.targets.icmp} >= {"198.18.176.1", "198.18.176.15"}
    assert any(t.ca_file == world.ca_file for t in star.targets.http)
    assert cfg.probing.interval == 2.0 and cfg.bgp.enabled is False
    targets = [*cfg.controls.all(), *(t for e in cfg.entities for t in e.targets.all())]
    for t in targets:
        tools.check_destination(str(target_address(t)))  # raises outside 198.18.0.0/15


def test_cidr_answering_block_answers_as_a_whole(world_factory: Callable[..., World]) -> None:
    """A block whose `answering` is a CIDR answers on every address (AnyIP), at scale."""
    d = dprk()
    big = Block("198.18.180.0/22", "ttk", ("198.18.180.0/22",))
    w = world_factory(spec=replace(d, entities=(*d.entities, Entity("bench", (big,)))))
    addrs = [str(a) for a in ipaddress.IPv4Network("198.18.180.0/22")]
    res = w.ping_many(V, addrs, timeout=1.0)
    assert sum(r.received for r in res.values()) == len(addrs)
    assert "icmp: [198.18.180.0/22]" in w.daemon_config()
    assert w.http_get(V, "http://kcna.kp/").status == 200


# --- faults and repairs ---------------------------------------------------------------------


def test_blackout_withdraws_every_block_and_repair_restores(world: World) -> None:
    """blackout(): no DPRK block answers (the core answers unreachable), controls still do."""
    sample = [
        "198.18.176.1",
        "198.18.177.1",
        "198.18.178.1",
        "198.18.179.1",
        "198.19.109.1",
        "198.19.35.1",
    ]
    rec = world.blackout()
    assert rec.name == "blackout" and 0 <= rec.took < 2 and abs(rec.at - time.time()) < 5
    r = world.ping(V, "198.18.176.15", count=1, timeout=0.3)
    assert r.errors and r.errors[0].source == world.expected_path("198.18.176.15")[0]
    assert answering(world, [*sample, "198.19.8.8"]) == {"198.19.8.8"}
    world.repair_blackout()
    assert answering(world, sample) == set(sample)


def test_silent_blackout_sends_no_icmp(world: World) -> None:
    """blackout(mode="blackhole"): withdrawn blocks vanish without any ICMP error."""
    world.blackout("blackhole")
    r = world.ping(V, "198.18.176.1", count=3, timeout=0.3)
    assert (r.received, r.errors) == (0, [])
    world.repair_blackout()
    assert reachable(world, "198.18.176.1")


def test_lose_upstream_unicom_takes_only_its_blocks(world: World) -> None:
    """lose_upstream("unicom"): .176/.179 and the KPTC block are gone, .177/.178 still answer."""
    world.lose_upstream("unicom")
    # first, before the kernel's per-source limit on "unreachable" answers kicks in
    hops = world.traceroute(V, "198.18.176.1", timeout=0.5)
    assert [(h.address, h.note) for h in hops] == [(world.expected_path("198.18.176.1")[0], "!H")]
    sample = [
        "198.18.176.1",
        "198.18.179.1",
        "198.19.109.1",
        "198.18.177.1",
        "198.18.178.1",
        "198.19.35.1",
    ]
    assert answering(world, sample) == {"198.18.177.1", "198.18.178.1", "198.19.35.1"}
    world.restore_upstream("unicom")
    assert reachable(world, "198.18.176.1")


def test_cut_link_makes_traceroute_end_at_the_upstream(world: World) -> None:
    """cut_link("unicom", "dprk"): traceroute to .176 stops at Unicom; .177 is unaffected."""
    world.cut_link("unicom", "dprk")
    hops = world.traceroute(V, "198.18.176.71", timeout=0.5)
    answered = [h for h in hops if h.address]
    assert answered[-1].address in world.upstream_routers
    assert world.upstream_routers[answered[-1].address or ""][0] == "China Unicom"
    assert not reachable(world, "198.18.176.71")
    assert reachable(world, "198.18.177.1")
    world.restore_link("unicom", "dprk")
    assert [h.address for h in world.traceroute(V, "198.18.176.71")] == world.expected_path(
        "198.18.176.71"
    )


def test_blackhole_block_is_a_silent_partial_outage(world: World) -> None:
    """blackhole_block(.177): that block is silent (no ICMP), the others answer."""
    world.blackhole_block("198.18.177.0/24")
    r = world.ping(V, "198.18.177.1", count=2, timeout=0.3)
    assert (r.received, r.errors) == (0, [])
    assert reachable(world, "198.18.176.1") and reachable(world, "198.18.178.1")
    world.restore_block("198.18.177.0/24")
    assert reachable(world, "198.18.177.1")


def test_hang_web_accepts_connections_but_never_answers(world: World) -> None:
    """hang_web(): TCP connects (kernel backlog) but HTTP times out; start_web() resumes."""
    world.hang_web()
    assert world.server_state("web-dprk") == "hung"
    assert world.tcp_connect(V, "198.18.176.71", 80) is None
    assert world.http_get(V, "http://kcna.kp/", timeout=0.5).error == "timeout"
    assert reachable(world, "198.18.176.71")
    world.start_web()
    assert world.http_get(V, "http://kcna.kp/").status == 200


def test_stop_web_refuses_connections_network_up(world: World) -> None:
    """stop_web(): nginx is gone (connection refused) while ping and DNS still work."""
    world.stop_web()
    assert world.tcp_connect(V, "198.18.176.71", 80) == "refused"
    assert world.http_get(V, "https://naenara.com.kp/").error == "refused"
    assert reachable(world, "198.18.176.71")
    assert world.dns_query(V, "198.18.176.15", "kp").rcode == "NOERROR"
    world.start_web()
    assert world.http_get(V, "http://kcna.kp/").status == 200


def test_stop_and_hang_dns(world: World) -> None:
    """stop_dns()/hang_dns(): kp. queries fail while web and ping work; start_dns() restores."""
    world.stop_dns()
    assert world.dns_query(V, "198.18.176.15", "kp", timeout=0.5).rcode is None
    assert world.tcp_connect(V, "198.18.176.15", 53) == "refused"
    assert world.http_get(V, "http://kcna.kp/").status == 200
    world.start_dns()
    assert world.dns_query(V, "198.18.176.15", "kp").rcode == "NOERROR"
    world.hang_dns()
    assert world.dns_query(V, "198.18.176.16", "kp", timeout=0.5).error == "timeout"
    world.start_dns()
    assert world.dns_query(V, "198.18.176.16", "kp").rcode == "NOERROR"


def test_loss_drops_about_the_requested_share(world: World) -> None:
    """loss(0.3) at the border: about 30% of 200 pings are lost; clear_loss() ends it."""
    world.loss(0.3)
    r = world.ping(V, "198.18.176.1", count=200, interval=0.002, timeout=0.5)
    assert 0.18 <= r.loss <= 0.42, r.loss
    assert world.ping(V, "198.19.8.8", count=20, interval=0.002).loss == 0  # controls unaffected
    world.clear_loss()
    assert world.ping(V, "198.18.176.1", count=50, interval=0.002).loss == 0


def test_loss_at_one_upstream_hits_only_its_blocks(world: World) -> None:
    """loss(1.0, where="ttk"): .177 is dark, .176 (via Unicom) is not."""
    world.loss(1.0, where="ttk")
    assert not reachable(world, "198.18.177.1")
    assert reachable(world, "198.18.176.1")
    world.clear_loss("ttk")
    assert reachable(world, "198.18.177.1")


def test_cut_vantage_uplink_makes_controls_unreachable_too(world: World) -> None:
    """cut_vantage_uplink(): from the vantage nothing answers, controls included; restore."""
    world.cut_vantage_uplink()
    assert answering(world, ["198.19.8.8", "198.19.1.1", "198.18.176.1"], timeout=0.3) == set()
    assert world.dns_query(V, "198.19.8.8", "example", timeout=0.3).rcode is None
    world.restore_vantage_uplink()
    assert reachable(world, "198.19.8.8") and reachable(world, "198.18.176.1")


def test_vantages_have_independent_uplinks_and_views(world_factory: Callable[..., World]) -> None:
    """With 2 vantages: one's uplink cut or per-vantage withdrawal leaves the other untouched."""
    w = world_factory(vantages=2)
    assert len(w.vantages) == 2 and len(set(w.vantage_addresses)) == 2
    w.cut_vantage_uplink(1)
    assert not reachable(w, "198.19.8.8", vantage=1, timeout=0.3)
    assert reachable(w, "198.19.8.8", vantage=0)
    w.restore_vantage_uplink(1)
    w.withdraw_for_vantage(1, ["198.18.176.0/24"])
    assert not reachable(w, "198.18.176.1", vantage=1)
    assert reachable(w, "198.18.177.1", vantage=1)
    assert reachable(w, "198.18.176.1", vantage=0)
    w.restore_for_vantage(1)
    assert reachable(w, "198.18.176.1", vantage=1)


def test_flap_toggles_blackout_in_the_background(world: World) -> None:
    """flap(period, count) returns at once and alternates blackout/repair, ending repaired."""
    t0 = time.monotonic()
    flap = world.flap(period=0.4, count=2)
    assert time.monotonic() - t0 < 0.3
    time.sleep(0.15)
    assert not reachable(world, "198.18.176.1", timeout=0.1)
    assert flap.wait(10)
    assert [r.name for r in flap.records] == ["blackout", "repair_blackout"] * 2
    gaps = [b.at - a.at for a, b in zip(flap.records, flap.records[1:], strict=False)]
    assert all(0.3 < g < 1.5 for g in gaps), gaps
    assert reachable(world, "198.18.176.1")


def test_repair_all_undoes_every_fault(world: World) -> None:
    """repair_all() after many faults: everything answers again and the servers run."""
    world.blackout()
    world.cut_link("ttk", "dprk")
    world.blackhole_block("198.18.179.0/24")
    world.loss(0.5)
    world.stop_web()
    world.hang_dns()
    world.cut_vantage_uplink()
    world.repair_all()
    res = world.ping_many(
        V, ["198.18.176.1", "198.18.177.1", "198.18.179.1", "198.19.8.8"], count=20, interval=0.002
    )
    assert {a: r.loss for a, r in res.items()} == dict.fromkeys(res, 0.0)
    assert world.http_get(V, "http://kcna.kp/").status == 200
    assert world.dns_query(V, "198.18.176.15", "kp").rcode == "NOERROR"
    assert [h.address for h in world.traceroute(V, "198.18.177.1")] == world.expected_path(
        "198.18.177.1"
    )


# --- cleanup -----------------------------------------------------------------------------------


def _server_pids(w: World) -> list[int]:
    return [p.pid for p in w._procs]


def test_teardown_leaves_no_namespace_process_or_directory(
    world_factory: Callable[..., World],
) -> None:
    """After teardown none of the world's namespaces, servers or scratch files remain."""
    w = world_factory()
    names, pids, tmp = list(w.ns.values()), _server_pids(w), w.tmpdir
    assert len(pids) == 4 and all(n in netns.list_namespaces() for n in names)
    w.teardown()
    assert not set(names) & set(netns.list_namespaces())
    assert not any(netns._running(p) for p in pids)
    assert not tmp.exists()


BUILDER = textwrap.dedent("""
    import sys, time
    from monitor.sim import World
    w = World.build()
    print(" ".join(w.ns.values()), flush=True)
    print(" ".join(str(p.pid) for p in w._procs), flush=True)
    print(w.tmpdir, flush=True)
    time.sleep(60)
""")


def _spawn_builder() -> tuple[subprocess.Popen[str], list[str], list[int], Path]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.Popen(
        [sys.executable, "-c", BUILDER], stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT
    )
    assert p.stdout is not None
    names = p.stdout.readline().split()
    pids = [int(x) for x in p.stdout.readline().split()]
    tmp = Path(p.stdout.readline().strip())
    p.stdout.close()  # nothing more is read (an open pipe left to the gc is a ResourceWarning)
    assert names and pids, "builder failed"
    return p, names, pids, tmp


def test_sigkilled_builder_is_swept_by_the_next_start(world_factory: Callable[..., World]) -> None:
    """A world whose process died by SIGKILL is removed (namespaces, servers, dir) by a sweep."""
    p, names, pids, tmp = _spawn_builder()
    p.send_signal(signal.SIGKILL)
    p.wait(5)
    # The orphans are left behind (unless a concurrent test run's sweep was even faster).
    if set(names) <= set(netns.list_namespaces()):
        assert any(netns._running(x) for x in pids)
    w = world_factory()  # building a world sweeps first
    assert not set(names) & set(netns.list_namespaces())
    deadline = time.monotonic() + 3
    while any(netns._running(x) for x in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(netns._running(x) for x in pids)
    assert not tmp.exists()
    assert reachable(w, "198.18.176.1")


def test_sigterm_tears_the_world_down(netns_ok: None) -> None:
    """SIGTERM to a process holding a world runs the teardown before it dies."""
    p, names, pids, tmp = _spawn_builder()
    p.send_signal(signal.SIGTERM)
    assert p.wait(15) == -signal.SIGTERM
    assert not set(names) & set(netns.list_namespaces())
    assert not any(netns._running(x) for x in pids)
    assert not tmp.exists()


def test_cleanup_command_removes_stale_worlds(world_factory: Callable[..., World]) -> None:
    """`python -m monitor.sim cleanup --stale` removes a dead process's world, not live ones."""
    w = world_factory()
    # Another worker building a world sweeps too, and may take the dead world between the look
    # and the command (seen in CI under load): then the command cannot report it. A few tries;
    # a command that deletes nothing fails them all.
    reported = False
    for _ in range(3):
        p, names, _, _ = _spawn_builder()
        p.send_signal(signal.SIGKILL)
        p.wait(5)
        present = set(names) & set(netns.list_namespaces())
        out = subprocess.run(
            [sys.executable, "-m", "monitor.sim", "cleanup", "--stale"],
            capture_output=True,
            text=True,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
            cwd=ROOT,
            timeout=60,
            check=True,
        ).stdout
        assert not set(names) & set(netns.list_namespaces())
        assert set(w.ns.values()) <= set(netns.list_namespaces())  # the live world stays
        if present and all(f"deleted {n}" in out for n in present):
            reported = True
            break
    assert reported, "cleanup --stale never reported the dead world's namespaces as deleted"


# --- the demo ----------------------------------------------------------------------------------


def test_demo_replays_the_june_2025_blackout_and_cleans_up(daemon_ok: None) -> None:
    """`dprk-monitor demo` plays every step against the real daemon, shows it seeing the
    blackout, prints the outage log (DNS first, then blackout), and leaves no namespace behind."""
    from monitor.sim.demo import SCRIPT, run_demo

    out = io.StringIO()
    assert run_demo(["--interval", "1s", "--phase", "4"], out=out) == 0
    text = out.getvalue()
    for _when, what, _method in SCRIPT:
        assert what in text
    after_blackout = text.split("routes via China Unicom and TransTelecom withdrawn", 1)[1]
    assert re.search(r"star-jv .*icmp 0/\d+", after_blackout), text
    # The outage log tells the June 2025 story: one event, DNS first, escalating to a blackout.
    assert re.search(r"star-jv blackout: dns at [\d:]+ ->.* blackout at", text), text
    assert "failed first: dns" in text
    # Its own world is gone (other tests' worlds may come and go meanwhile).
    m = re.search(r"^world (dom\d+-\d+) ", text, re.M)
    assert m, text
    assert not [n for n in netns.ours() if n.startswith(m.group(1) + "-")]


def test_demo_keep_serves_the_event_page_on_the_host_loopback(daemon_ok: None) -> None:
    """`demo --keep` ends with the event page's address and serves the daemon's pages on the
    host's 127.0.0.1 (a forwarder into the vantage namespace) until the time is up."""
    import threading
    import urllib.request

    from monitor.sim.demo import run_demo

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = io.StringIO()
    rc: list[int] = []
    t = threading.Thread(
        target=lambda: rc.append(
            run_demo(
                ["--interval", "1s", "--phase", "4", "--keep", "30", "--port", str(port)], out=out
            )
        ),
        daemon=True,
    )
    t.start()
    deadline = time.monotonic() + 180
    url = None
    while time.monotonic() < deadline and url is None and t.is_alive():
        m = re.search(
            r"^event page:\s+(http://127\.0\.0\.1:\d+/outages/\S+)$", out.getvalue(), re.M
        )
        url = m.group(1) if m else None
        time.sleep(0.5)
    assert url is not None and url.startswith(f"http://127.0.0.1:{port}/outages/"), out.getvalue()
    with urllib.request.urlopen(url, timeout=10) as resp:
        page = resp.read().decode()
        assert resp.status == 200 and "text/html" in resp.headers["Content-Type"]
    event_id = url.rsplit("/", 1)[1]
    assert event_id in page and "blackout" in page
    with urllib.request.urlopen(
        f"http://127.0.0.1:{port}/api/v1/outages/{event_id}", timeout=10
    ) as r:
        assert json.loads(r.read())["id"] == event_id
    t.join(60)
    assert rc == [0] and not t.is_alive()
