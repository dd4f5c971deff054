"""The simulated world's RIS Live look-alike (monitor/sim/rislive.py), on loopback: its frames
are what the real client parses, it filters by subscription like RIS Live, and the real
`RisLiveClient` follows announcements and withdrawals through it."""

from __future__ import annotations

import asyncio
import ipaddress

from monitor.bgp import RisLiveClient, Update, Visibility, parse_ris_message
from monitor.sim.rislive import (
    RisLiveSim,
    Subscription,
    make_peers,
    peer_state,
    update,
    world_routes,
)
from monitor.sim.world import World

STAR = ["198.18.176.0/24", "198.18.177.0/24", "198.18.178.0/24", "198.18.179.0/24"]


def test_frames_parse_as_ris_live_messages() -> None:
    """UPDATE and RIS_PEER_STATE frames have RIS Live's shape: the client parses them."""
    peer = make_peers(1)[0]
    msg = parse_ris_message(
        update(peer, announce=STAR[:2], withdraw=STAR[3:], path=[4837, 131279], ts=1000.0)["data"]
    )
    assert isinstance(msg, Update)
    assert msg.peer == ("rrc00", "198.19.250.1") and msg.peer_asn == 64600
    assert msg.path == (64600, 4837, 131279) and msg.origin == 131279
    assert [str(p) for p in msg.announced] == STAR[:2]
    assert [str(p) for p in msg.withdrawn] == STAR[3:]
    state = parse_ris_message(peer_state(peer, "down", 1001.0)["data"])
    assert state is not None and not isinstance(state, Update) and state.state == "down"


def test_subscriptions_filter_like_ris_live() -> None:
    """Subscriptions filter like RIS Live: more-specifics by default, types by type."""
    peer = make_peers(1)[0]
    slash24 = update(peer, announce=["198.18.177.0/24"])["data"]
    other = update(peer, withdraw=["198.19.35.0/24"])["data"]
    down = peer_state(peer, "down")["data"]
    s22 = Subscription(ipaddress.ip_network("198.18.176.0/22"))
    assert s22.matches(slash24) and not s22.matches(other) and not s22.matches(down)
    exact = Subscription(ipaddress.ip_network("198.18.176.0/22"), more_specific=False)
    assert not exact.matches(slash24)
    less = Subscription(ipaddress.ip_network("198.18.177.128/25"), less_specific=True)
    assert less.matches(slash24)
    states = Subscription(type="RIS_PEER_STATE")
    assert states.matches(down) and not states.matches(slash24)
    assert Subscription().matches(other)


def test_world_routes_follow_the_upstreams() -> None:
    """Each block is announced behind its upstream's AS with its entity's origin."""
    routes = world_routes(World())
    assert routes["198.18.176.0/24"] == (4837, 131279)
    assert routes["198.18.177.0/24"] == (20485, 131279)
    assert routes["198.19.109.0/24"] == (4837,)  # KPTC's block is China Unicom's own
    assert routes["198.19.35.0/24"][-1] == 64511  # SatGate: no AS of its own


async def test_real_client_follows_announcements_and_withdrawals() -> None:
    """The real client follows announcements, a partial withdrawal and a storm via the sim."""
    vis = Visibility(["198.18.176.0/22"], min_peers=3)
    changes: list[tuple[str, float | None]] = []
    changed = asyncio.Event()

    def on_change(prefix: str, r: float | None) -> None:
        changes.append((prefix, r))
        changed.set()

    srv = await asyncio.to_thread(lambda: RisLiveSim().start())
    client = RisLiveClient(vis, srv.url, on_change=on_change)
    task = asyncio.create_task(client.run())
    try:
        await asyncio.to_thread(srv.wait_subscribed, "198.18.176.0/22")
        assert srv.queries[0]["client"] == "dprk-outage-monitor"
        peers = make_peers(5)
        routes = {p: (4837, 131279) for p in STAR} | {"198.19.35.0/24": (64511,)}
        delivered = await asyncio.to_thread(srv.announce, routes, peers)
        assert delivered == 5 * 4, "the unsubscribed prefix is not sent"

        async def ratio(want: float) -> None:
            async with asyncio.timeout(5):
                while not changes or changes[-1][1] != want:
                    changed.clear()
                    await changed.wait()

        await ratio(1.0)
        await asyncio.to_thread(srv.withdraw, STAR, peers[:3])
        await ratio(0.4)
        await asyncio.to_thread(srv.withdraw, STAR, peers[3:])
        await ratio(0.0)
        ep = vis.withdrawal("198.18.176.0/22")
        assert ep is not None and ep.peers == 5
        assert client.connected and client.messages >= 20 + 5
    finally:
        await client.close()
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.to_thread(srv.stop)
