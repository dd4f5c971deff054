"""BGP visibility: RIS Live parsing, the pure Visibility state, and the websocket client.

The client tests talk only to `RisLiveServer` on 127.0.0.1 (port 0), started by the test.
Prefixes are 198.18.0.0/15 stand-ins for DPRK's 175.45.176.0/22 and its four /24s.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.bgp import (
    MessageError,
    PeerState,
    RisLiveClient,
    SeedRoute,
    Update,
    Visibility,
    backoff_delay,
    client_url,
    normalise_host,
    parse_prefix,
    parse_ris_message,
    parse_snapshot,
)
from tests.unit.rislive_server import (
    RisLiveServer,
    fixture_text,
    peer_state,
    ris_error,
    update,
)

WATCHED = "198.18.176.0/22"
SLASH24 = [f"198.18.{n}.0/24" for n in (176, 177, 178, 179)]
PEERS = [f"192.0.2.{n}" for n in range(1, 11)]
T0 = 1_700_000_000.0
NOW = T0 + 100.0  # the client's clock in the websocket tests


def key(peer: str, host: str = "rrc00") -> tuple[str, str]:
    return (host, peer)


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until cond() holds, polling; fail the test after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


# --- parsing the real samples ---------------------------------------------------------------


def test_fixture_rrc10_announcement_parses() -> None:
    """The real rrc10 UPDATE: peer, string peer_asn, origin, prefixes deduped over next hops."""
    doc = json.loads(fixture_text("ris_live_update_announce_rrc10.json"))
    msg = parse_ris_message(doc["data"])
    assert isinstance(msg, Update)
    assert msg.peer == ("rrc10", "2001:7f8:b:100:1d1:a520:1333:74")
    assert msg.peer_asn == 201333
    assert msg.time == 1636245154.8
    assert msg.path == (201333, 6762, 174, 20473)
    assert msg.origin == 20473
    assert [str(p) for p in msg.announced] == [
        "2a0e:97c7::/48",
        "2a0e:97c6:fe::/48",
        "2a10:cc42:17b7::/48",
        "2a10:cc42:1feb::/48",
    ]
    assert msg.withdrawn == ()


def test_fixture_rrc20_announcement_parses() -> None:
    """The real rrc20 IPv6 UPDATE parses to one prefix with its origin AS."""
    doc = json.loads(fixture_text("ris_live_update_announce_rrc20_ipv6.json"))
    msg = parse_ris_message(doc["data"])
    assert isinstance(msg, Update)
    assert msg.peer == ("rrc20", "2001:7f8:24::82")
    assert [str(p) for p in msg.announced] == ["2602:fd9e:f00::/40"]
    assert msg.origin == 397666


def test_fixture_rrc25_withdrawal_parses() -> None:
    """The real rrc25 withdrawal: `rrc25.ripe.net` -> rrc25, expanded prefix normalised, no origin."""
    doc = json.loads(fixture_text("ris_live_update_withdraw_rrc25.json"))
    msg = parse_ris_message(doc["data"])
    assert isinstance(msg, Update)
    assert msg.peer == ("rrc25", "2606:6dc0:1301::1")
    assert [str(p) for p in msg.withdrawn] == ["2605:de00:bb::/48"]
    assert msg.announced == () and msg.path == () and msg.origin is None


def test_fixture_other_message_types_parse() -> None:
    """Manual samples: UPDATE applies, KEEPALIVE/OPEN/NOTIFICATION carry no state, peer state."""
    lines = fixture_text("ris_live_other_message_types.jsonl").splitlines()
    got = [parse_ris_message(json.loads(line)) for line in lines]
    upd, keepalive, open_, notification, state = got
    assert isinstance(upd, Update)
    assert upd.peer == ("rrc21", "192.0.2.0") and upd.origin == 4
    assert [str(p) for p in upd.announced] == ["192.0.3.0/24"]
    assert keepalive is None and open_ is None and notification is None
    assert state == PeerState(1568365292.84, ("rrc00", "192.0.2.1"), "connected")


def test_fixtures_drive_visibility() -> None:
    """Feeding the real samples into Visibility: the announcement is seen, the withdrawal is not."""
    vis = Visibility(["2a0e:97c7::/32", "2605:de00::/32"], recent=None)
    for name in ("ris_live_update_announce_rrc10.json", "ris_live_update_withdraw_rrc25.json"):
        msg = parse_ris_message(json.loads(fixture_text(name))["data"])
        assert msg is not None
        vis.apply(msg)
    assert vis.ratio("2a0e:97c7::/32", 1636245200.0) == 1.0
    assert vis.ratio("2605:de00::/32", 1740561900.0) == 0.0


def test_parse_rejects_unusable_data_with_category() -> None:
    """Missing or mistyped fields raise MessageError naming the junk category."""
    cases: list[tuple[Any, str]] = [
        (None, "missing_field"),
        ([], "bad_field"),
        ({"type": "UPDATE"}, "missing_field"),
        ({"type": "FOO"}, "unknown_type"),
        ({"type": "UPDATE", "timestamp": "x", "peer": "192.0.2.1", "host": "rrc00"}, "bad_field"),
        ({"type": "UPDATE", "timestamp": 1.0, "peer": "nope", "host": "rrc00"}, "bad_field"),
        ({"type": "UPDATE", "timestamp": 10**400, "peer": "192.0.2.1", "host": "r"}, "bad_field"),
        (
            {"type": "UPDATE", "timestamp": float("inf"), "peer": "192.0.2.1", "host": "r"},
            "bad_field",
        ),
        (
            {
                "type": "UPDATE",
                "timestamp": 1.0,
                "peer": "192.0.2.1",
                "host": "r",
                "withdrawals": 3,
            },
            "bad_field",
        ),
    ]
    for data, category in cases:
        with pytest.raises(MessageError) as exc:
            parse_ris_message(data)
        assert exc.value.category == category, data


def test_host_and_prefix_normalisation() -> None:
    """Collector names and prefixes are normalised the same way whatever the source."""
    assert normalise_host("rrc25.ripe.net") == "rrc25"
    assert normalise_host("RRC00") == "rrc00"
    assert normalise_host("0") == "rrc00"
    assert str(parse_prefix("2605:de00:bb:0:0:0:0:0/48")) == "2605:de00:bb::/48"


# --- Visibility (pure) ----------------------------------------------------------------------


def test_ratio_is_none_when_no_peer_known() -> None:
    """Before any route is heard of, the ratio is unknown (None), not 0."""
    vis = Visibility([WATCHED])
    assert vis.ratio(WATCHED, T0) is None
    assert vis.withdrawal_time(WATCHED) is None


def test_min_peers_keeps_ratio_unknown_on_thin_evidence() -> None:
    """With min_peers, one peer's withdrawal at start-up is unknown, not "withdrawn"."""
    vis = Visibility([WATCHED], min_peers=3)
    vis.withdraw(key(PEERS[0]), SLASH24[0], T0)
    assert vis.ratio(WATCHED, T0) is None and vis.withdrawal(WATCHED) is None
    vis.announce(key(PEERS[1]), SLASH24[0], T0 + 1)
    vis.announce(key(PEERS[2]), SLASH24[0], T0 + 2)
    assert vis.ratio(WATCHED, T0 + 3) == pytest.approx(2 / 3)


def test_announcements_and_withdrawals_in_one_update() -> None:
    """One UPDATE withdrawing one /24 and announcing another applies both."""
    vis = Visibility([WATCHED])
    p = key(PEERS[0])
    vis.announce(p, SLASH24[0], T0)
    msg = parse_ris_message(
        update(PEERS[0], announce=[SLASH24[1]], withdraw=[SLASH24[0]], ts=T0 + 1)["data"]
    )
    assert isinstance(msg, Update)
    vis.apply(msg)
    route0, route1 = vis.route(p, SLASH24[0]), vis.route(p, SLASH24[1])
    assert route0 is not None and not route0.announced and route0.since == T0 + 1
    assert route1 is not None and route1.announced
    assert vis.ratio(WATCHED, T0 + 2) == 1.0  # the peer still has a route into the /22


def test_as_set_origin_recorded_as_set() -> None:
    """A path ending in an AS-set (nested list) records the set as the origin."""
    vis = Visibility([WATCHED])
    msg = parse_ris_message(
        update(PEERS[0], announce=[SLASH24[0]], path=[64500, 4837, [131279, 64496]])["data"]
    )
    assert isinstance(msg, Update) and msg.origin == frozenset({131279, 64496})
    vis.apply(msg)
    assert vis.origins(WATCHED) == {frozenset({131279, 64496}): 1}


def test_prefix_maps_to_every_containing_watched_prefix() -> None:
    """A /24 counts for the watched /22 and a watched /24 alike; outside prefixes are ignored."""
    vis = Visibility([WATCHED, SLASH24[2]])
    touched = vis.announce(key(PEERS[0]), SLASH24[2], T0)
    assert {str(w) for w in touched} == {WATCHED, SLASH24[2]}
    assert {str(w) for w in vis.announce(key(PEERS[1]), SLASH24[0], T0)} == {WATCHED}
    assert vis.announce(key(PEERS[2]), "203.0.113.0/24", T0) == set()
    assert vis.ratio(SLASH24[2], T0) == 1.0
    assert vis.counts(WATCHED, T0) == (2, 2, 2)
    assert [str(s) for s in vis.subscriptions()] == [WATCHED]


def test_recent_window_ages_out_old_withdrawals() -> None:
    """Peers that withdrew longer than `recent` ago leave the denominator; all gone -> 0.0."""
    vis = Visibility([WATCHED], recent=3600.0)
    vis.announce(key(PEERS[0]), SLASH24[0], T0)
    vis.announce(key(PEERS[1]), SLASH24[0], T0)
    vis.withdraw(key(PEERS[1]), SLASH24[0], T0 + 10)
    assert vis.ratio(WATCHED, T0 + 20) == 0.5
    assert vis.ratio(WATCHED, T0 + 4000) == 1.0  # PEERS[1] aged out
    vis.withdraw(key(PEERS[0]), SLASH24[0], T0 + 4000)
    assert vis.ratio(WATCHED, T0 + 9000) == 0.0  # known peers, none recent: still "down"


def test_peer_session_down_removes_peer_from_both_counts() -> None:
    """RIS_PEER_STATE down forgets the peer: not a withdrawal, out of numerator and denominator."""
    vis = Visibility([WATCHED])
    for p in PEERS[:3]:
        vis.announce(key(p), SLASH24[0], T0)
    vis.withdraw(key(PEERS[1]), SLASH24[0], T0 + 1)
    assert vis.counts(WATCHED, T0 + 2) == (2, 3, 3)
    vis.apply(PeerState(T0 + 3, key(PEERS[0]), "down"))
    assert vis.counts(WATCHED, T0 + 4) == (1, 2, 2)
    vis.apply(PeerState(T0 + 5, key(PEERS[2]), "connected"))  # not down: no change
    assert vis.ratio(WATCHED, T0 + 6) == 0.5
    assert vis.route(key(PEERS[0]), SLASH24[0]) is None


def test_withdrawal_storm_sets_time_and_peer_count() -> None:
    """All peers withdraw within seconds: ratio 0, episode starts at the threshold crossing."""
    vis = Visibility([WATCHED], threshold=0.5)
    for p in PEERS:
        vis.apply(
            Update(
                T0, key(p), 64500, (64500, 131279), 131279, tuple(map(parse_prefix, SLASH24)), ()
            )
        )
    assert vis.ratio(WATCHED, T0) == 1.0
    for i, p in enumerate(PEERS):
        vis.apply(
            Update(
                T0 + 10 + i * 0.5, key(p), 64500, (), None, (), tuple(map(parse_prefix, SLASH24))
            )
        )
    assert vis.ratio(WATCHED, T0 + 20) == 0.0
    ep = vis.withdrawal(WATCHED)
    assert ep is not None
    assert ep.time == T0 + 10 + 5 * 0.5  # the 6th of 10 withdrawals takes it below 0.5
    assert ep.first == T0 + 10
    assert ep.peers == 10
    assert vis.withdrawal_time(WATCHED) == (T0 + 12.5, 10)
    for p in PEERS[:6]:  # routes come back: the episode closes
        vis.announce(key(p), SLASH24[0], T0 + 100)
    assert vis.withdrawal_time(WATCHED) is None


def test_partial_withdrawal_ratio_between_zero_and_one() -> None:
    """Some peers drop the /24s (RPKI-style), others keep them: ratio strictly between 0 and 1."""
    vis = Visibility([WATCHED])
    for p in PEERS:
        for s in SLASH24:
            vis.announce(key(p), s, T0)
    for p in PEERS[:7]:
        vis.withdraw(key(p), SLASH24[1], T0 + 5)
        vis.withdraw(key(p), SLASH24[2], T0 + 5)
    assert vis.ratio(WATCHED, T0 + 10) == 1.0  # everyone still has .176 and .179
    detail = vis.detail(WATCHED, T0 + 10)
    assert [(d.prefix, d.seeing, d.recent) for d in detail.values()] == [
        (SLASH24[0], 10, 10),
        (SLASH24[1], 3, 10),
        (SLASH24[2], 3, 10),
        (SLASH24[3], 10, 10),
    ]
    for p in PEERS[:7]:
        for s in (SLASH24[0], SLASH24[3]):
            vis.withdraw(key(p), s, T0 + 6)
    r = vis.ratio(WATCHED, T0 + 10)
    assert r is not None and 0.0 < r < 1.0 and r == pytest.approx(0.3)
    ep = vis.withdrawal(WATCHED)
    assert ep is not None and ep.peers == 7 and ep.ratio == pytest.approx(0.3)


def test_seed_never_overrides_live_state() -> None:
    """A snapshot only fills in peers the live feed has not spoken about."""
    vis = Visibility([WATCHED])
    vis.withdraw(key(PEERS[0]), SLASH24[0], T0)
    net = parse_prefix(SLASH24[0])
    vis.seed(
        [SeedRoute(key(PEERS[0]), net, (1, 131279)), SeedRoute(key(PEERS[1]), net, (2, 131279))],
        T0 + 1,
    )
    assert vis.counts(WATCHED, T0 + 2) == (1, 2, 2)
    assert vis.origins(WATCHED) == {131279: 1}


def test_parse_snapshot_bgp_state_and_looking_glass() -> None:
    """RIPEstat bgp-state (source_id) and looking-glass (rrcs/peers) shapes both parse."""
    bgp_state = {
        "data": {
            "bgp_state": [
                {
                    "target_prefix": SLASH24[0],
                    "path": [3333, 4837, 131279],
                    "source_id": "00-192.0.2.1",
                },
                {"target_prefix": "junk", "path": [1], "source_id": "00-192.0.2.2"},
                {"target_prefix": SLASH24[1], "path": [1, 131279], "source_id": "25-2001:db8::1"},
            ]
        }
    }
    got = parse_snapshot(bgp_state)
    assert [(r.peer, str(r.prefix), r.path[-1]) for r in got] == [
        (("rrc00", "192.0.2.1"), SLASH24[0], 131279),
        (("rrc25", "2001:db8::1"), SLASH24[1], 131279),
    ]
    lg = {
        "data": {
            "rrcs": [
                {
                    "rrc": "RRC06",
                    "peers": [
                        {"peer": "192.0.2.9", "prefix": SLASH24[2], "as_path": "2497 4837 131279"}
                    ],
                }
            ]
        }
    }
    assert [(r.peer, r.path) for r in parse_snapshot(lg)] == [
        (("rrc06", "192.0.2.9"), (2497, 4837, 131279))
    ]
    for junk in ("nonsense", {"data": None}, {"data": {"bgp_state": 5, "rrcs": "x"}}):
        assert parse_snapshot(junk) == []


def test_client_url_adds_client_name_once() -> None:
    """`?client=dprk-outage-monitor` is added unless the URL already names a client."""
    assert client_url("wss://ris-live.ripe.net/v1/ws/") == (
        "wss://ris-live.ripe.net/v1/ws/?client=dprk-outage-monitor"
    )
    assert client_url("wss://x/v1/ws/?client=me") == "wss://x/v1/ws/?client=me"


def test_backoff_is_exponential_capped_and_jittered() -> None:
    """Delays double per attempt, never exceed the cap, and lie in [half, all] of the step."""
    rng = random.Random(1)
    for attempt in range(70):
        ceiling = min(60.0, 1.0 * 2**attempt)
        d = backoff_delay(attempt, 1.0, 60.0, rng)
        assert ceiling / 2 <= d <= ceiling
    assert len({backoff_delay(3, 1.0, 60.0, rng) for _ in range(20)}) > 1  # jitter


# --- the client against the local RIS Live server -------------------------------------------

Start = Callable[..., Awaitable[RisLiveClient]]


@pytest.fixture
async def server() -> AsyncIterator[RisLiveServer]:
    """A RIS Live look-alike on 127.0.0.1, port 0."""
    async with RisLiveServer() as srv:
        yield srv


@pytest.fixture
async def start(server: RisLiveServer) -> AsyncIterator[Start]:
    """Start a RisLiveClient against `server` with fast timers; closed at teardown."""
    running: list[tuple[RisLiveClient, asyncio.Task[None]]] = []

    async def _start(*, watched: tuple[str, ...] = (WATCHED,), **kw: Any) -> RisLiveClient:
        params: dict[str, Any] = {
            "heartbeat": 5.0,
            "ping_interval": 5.0,
            "receive_timeout": 10.0,
            "connect_timeout": 2.0,
            "backoff_base": 0.01,
            "backoff_cap": 0.05,
            "healthy_after": 5.0,
            "clock": lambda: NOW,
            "rng": random.Random(7),
        }
        params.update(kw)
        client = RisLiveClient(Visibility(watched), server.url, **params)
        running.append((client, asyncio.create_task(client.run())))
        return client

    yield _start
    for client, task in running:
        await client.close()
        await asyncio.wait_for(task, 5.0)


async def connected(client: RisLiveClient, server: RisLiveServer, subs: int = 2) -> None:
    """Wait until the client is connected and the server has its subscriptions."""
    await until(lambda: client.connected and len(server.subscriptions) >= subs)


async def test_subscribes_and_sees_announcements_from_several_peers(
    server: RisLiveServer, start: Start
) -> None:
    """Several peers announcing the /24s give ratio 1 and one on_change call with it."""
    changes: list[tuple[str, float | None]] = []
    client = await start(on_change=lambda p, r: changes.append((p, r)))
    await connected(client, server)
    assert server.queries[0].get("client") == "dprk-outage-monitor"
    prefix_sub, state_sub = server.subscriptions
    assert prefix_sub["prefix"] == WATCHED and prefix_sub["moreSpecific"] is True
    assert prefix_sub["type"] == "UPDATE"
    assert state_sub["type"] == "RIS_PEER_STATE" and "prefix" not in state_sub
    await until(lambda: client.subscribed == {WATCHED, "RIS_PEER_STATE"})

    for i, p in enumerate(PEERS[:5]):
        await server.send(update(p, host="rrc25.ripe.net", announce=SLASH24, ts=T0 + i))
    await until(lambda: client.updates == 5)
    assert client.visibility.ratio(WATCHED, NOW) == 1.0
    assert client.visibility.counts(WATCHED, NOW) == (5, 5, 5)
    assert changes == [(WATCHED, 1.0)]
    assert client.messages >= 7 and client.last_message_time == NOW and not client.junk


async def test_withdrawal_storm_over_websocket(server: RisLiveServer, start: Start) -> None:
    """Every peer withdraws within seconds: ratio 0, withdrawal time and peer count reported."""
    changes: list[tuple[str, float | None]] = []
    client = await start(on_change=lambda p, r: changes.append((p, r)))
    await connected(client, server)
    for p in PEERS:
        await server.send(update(p, announce=SLASH24, ts=T0))
    for i, p in enumerate(PEERS):
        await server.send(update(p, withdraw=SLASH24, ts=T0 + 30 + i * 0.2))
    await until(lambda: client.updates == 2 * len(PEERS))
    assert client.visibility.ratio(WATCHED, NOW) == 0.0
    wt = client.visibility.withdrawal_time(WATCHED)
    assert wt is not None and wt[0] == pytest.approx(T0 + 31.0) and wt[1] == 10
    assert changes[0] == (WATCHED, 1.0) and changes[-1] == (WATCHED, 0.0)


async def test_partial_withdrawal_over_websocket(server: RisLiveServer, start: Start) -> None:
    """Some peers keep the routes: the ratio stays strictly between 0 and 1."""
    client = await start()
    await connected(client, server)
    for p in PEERS:
        await server.send(update(p, announce=SLASH24, ts=T0))
    for p in PEERS[:6]:
        await server.send(update(p, withdraw=SLASH24, ts=T0 + 30))
    await until(lambda: client.updates == 16)
    r = client.visibility.ratio(WATCHED, NOW)
    assert r is not None and 0.0 < r < 1.0 and r == pytest.approx(0.4)


async def test_junk_frames_counted_and_skipped(server: RisLiveServer, start: Start) -> None:
    """Garbage, binary, unknown types and broken ris_messages are counted; the feed goes on."""
    client = await start()
    await connected(client, server)
    broken = update(PEERS[1], announce=SLASH24)
    del broken["data"]["timestamp"]
    await server.send(
        "this is not json {",
        b"\x00\x01binary",
        {"type": "bogus"},
        {"type": "ris_message"},
        [1, 2, 3],
        {"data": {}},
        broken,
        {
            "type": "ris_message",
            "data": {"type": "UPDATE", "timestamp": "soon", "peer": "x", "host": 1},
        },
    )
    await server.send(update(PEERS[0], announce=[*SLASH24, "not-a-prefix"], ts=T0))
    await until(lambda: client.updates == 1)
    assert client.junk == {
        "not_json": 1,
        "binary": 1,
        "unknown_type": 1,
        "missing_field": 3,
        "not_object": 1,
        "bad_field": 1,
        "bad_prefix": 1,
    }
    assert client.connected and client.visibility.ratio(WATCHED, NOW) == 1.0


async def test_reconnects_with_backoff_and_resubscribes(
    server: RisLiveServer, start: Start
) -> None:
    """A dropped connection is re-established and every subscription sent again."""
    client = await start()
    await connected(client, server)
    await server.send(update(PEERS[0], announce=SLASH24, ts=T0))
    await until(lambda: client.updates == 1)
    await server.drop()
    await until(lambda: server.connections == 2 and len(server.subscriptions) == 4)
    await until(lambda: client.connected and client.connects == 2)
    assert server.subscriptions[2:] == server.subscriptions[:2]
    assert all(q.get("client") == "dprk-outage-monitor" for q in server.queries)
    await server.send(update(PEERS[0], withdraw=SLASH24, ts=T0 + 5))
    await until(lambda: client.updates == 2)
    assert client.visibility.ratio(WATCHED, NOW) == 0.0  # state survived the reconnect


async def test_retries_while_server_unreachable(closed_tcp_port: int) -> None:
    """Refused connections are retried with backoff, never raised out of run()."""
    client = RisLiveClient(
        Visibility([WATCHED]),
        f"ws://127.0.0.1:{closed_tcp_port}/v1/ws/",
        backoff_base=0.01,
        backoff_cap=0.02,
        connect_timeout=1.0,
    )
    task = asyncio.create_task(client.run())
    await until(lambda: client.connect_failures >= 3)
    assert not task.done() and not client.connected
    await client.close()
    await asyncio.wait_for(task, 5.0)


async def test_stalled_stream_times_out_and_reconnects(server: RisLiveServer, start: Start) -> None:
    """No frame for receive_timeout (no pongs either) means a stall: reconnect."""
    client = await start(receive_timeout=0.2, ping_interval=30.0)
    await until(lambda: server.connections >= 2, timeout=5.0)
    assert client.connect_failures >= 1


async def test_application_ping_gets_pong(server: RisLiveServer, start: Start) -> None:
    """The client pings every ping_interval; the pong keeps a quiet feed alive."""
    client = await start(ping_interval=0.05, receive_timeout=0.5)
    await until(lambda: client.last_pong is not None and server.pings >= 3)
    assert server.connections == 1


async def test_ris_error_is_logged_and_counted_not_fatal() -> None:
    """A rejected subscription's ris_error is counted; the connection and other feeds go on."""
    async with RisLiveServer(reject={"198.19.0.0/24"}) as srv:
        client = RisLiveClient(
            Visibility([WATCHED, "198.19.0.0/24"]), srv.url, clock=lambda: NOW, backoff_base=0.01
        )
        task = asyncio.create_task(client.run())
        try:
            await connected(client, srv, subs=3)
            await until(lambda: client.errors == 1)
            assert client.last_error == "Invalid prefix: 198.19.0.0/24"
            await srv.send(ris_error("something else"))
            await srv.send(update(PEERS[0], announce=SLASH24, ts=T0))
            await until(lambda: client.updates == 1)
            assert client.errors == 2 and client.connected and srv.connections == 1
            assert client.visibility.ratio(WATCHED, NOW) == 1.0
        finally:
            await client.close()
            await asyncio.wait_for(task, 5.0)


async def test_peer_state_down_removes_peer(server: RisLiveServer, start: Start) -> None:
    """RIS_PEER_STATE down over the wire removes that peer from the ratio entirely."""
    client = await start()
    await connected(client, server)
    for p in PEERS[:4]:
        await server.send(update(p, announce=SLASH24, ts=T0))
    await server.send(update(PEERS[3], withdraw=SLASH24, ts=T0 + 1))
    await until(lambda: client.updates == 5)
    assert client.visibility.ratio(WATCHED, NOW) == 0.75
    await server.send(peer_state(PEERS[3], "down", ts=T0 + 2))
    await server.send(peer_state(PEERS[0], "down", ts=T0 + 2))
    await until(lambda: client.updates == 7)
    assert client.visibility.counts(WATCHED, NOW) == (2, 2, 2)
    assert client.visibility.ratio(WATCHED, NOW) == 1.0


async def test_snapshot_seeds_visibility_before_updates(
    server: RisLiveServer, start: Start
) -> None:
    """With a snapshot URL, RIPEstat-shaped routes make the ratio meaningful before any update."""
    server.snapshot = {
        "data": {
            "bgp_state": [
                {"target_prefix": s, "path": [3333, 4837, 131279], "source_id": f"0{i}-192.0.2.{i}"}
                for i, s in enumerate(SLASH24, start=1)
            ]
        }
    }
    changes: list[tuple[str, float | None]] = []
    client = await start(
        snapshot_url=server.http_base + "/data/bgp-state/data.json?resource={prefix}",
        on_change=lambda p, r: changes.append((p, r)),
    )
    await until(lambda: client.snapshot_routes == 4)
    assert server.snapshot_requests == [WATCHED]
    assert client.visibility.counts(WATCHED, NOW) == (4, 4, 4)
    assert changes == [(WATCHED, 1.0)]
    assert client.visibility.origins(WATCHED) == {131279: 4}
    await server.drop()  # a reconnect within snapshot_interval does not fetch again
    await until(lambda: client.connects == 2)
    assert server.snapshot_requests == [WATCHED]


async def test_snapshot_failure_only_logs(server: RisLiveServer, start: Start) -> None:
    """A failing snapshot fetch is counted and logged; the live feed still works."""
    server.snapshot_status = 503
    client = await start(
        snapshot_url=server.http_base + "/data/bgp-state/data.json?resource={prefix}"
    )
    await until(lambda: client.snapshot_failures == 1)
    assert client.visibility.ratio(WATCHED, NOW) is None
    await server.send(update(PEERS[0], announce=SLASH24, ts=T0))
    await until(lambda: client.updates == 1)
    assert client.connected


async def test_on_change_exception_does_not_break_feed(server: RisLiveServer, start: Start) -> None:
    """A failing on_change callback is logged; messages keep being applied."""

    def boom(prefix: str, ratio: float | None) -> None:
        raise RuntimeError("callback bug")

    client = await start(on_change=boom)
    await connected(client, server)
    await server.send(update(PEERS[0], announce=SLASH24, ts=T0))
    await server.send(update(PEERS[0], withdraw=SLASH24, ts=T0 + 1))
    await until(lambda: client.updates == 2)
    assert client.visibility.ratio(WATCHED, NOW) == 0.0 and client.connected


async def test_close_stops_run(server: RisLiveServer) -> None:
    """close() ends run() promptly and closes the connection."""
    client = RisLiveClient(Visibility([WATCHED]), server.url)
    task = asyncio.create_task(client.run())
    await until(lambda: client.connected)
    await client.close()
    await asyncio.wait_for(task, 2.0)
    assert not client.connected
    await until(lambda: server.clients == 0)


# --- the handler never raises -----------------------------------------------------------------

_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
_json = st.recursive(
    _scalars,
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
    max_leaves=16,
)
_prefixish = st.sampled_from(
    ["198.18.176.0/24", WATCHED, "::/0", "2001:db8::/129", "300.1.1.1/24", "x", "0.0.0.0/0"]
) | st.text(max_size=20)
_ris_data = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["UPDATE", "RIS_PEER_STATE", "KEEPALIVE", "OPEN", "X"]) | _json,
        "timestamp": st.floats() | st.integers() | st.sampled_from([10**400, -1, 0]) | _json,
        "peer": st.sampled_from(["192.0.2.1", "2001:db8::1", "999.1.1.1", ""]) | _json,
        "host": st.sampled_from(["rrc00", "rrc25.ripe.net", "", ".", "²"]) | _json,
        "peer_asn": st.sampled_from(["64500", "AS1", "²", "-1"]) | _json,
        "path": st.lists(st.integers() | st.lists(st.integers(), max_size=3), max_size=5) | _json,
        "announcements": st.lists(
            st.fixed_dictionaries({"next_hop": _json, "prefixes": st.lists(_prefixish, max_size=3)})
            | _json,
            max_size=3,
        )
        | _json,
        "withdrawals": st.lists(_prefixish | _json, max_size=3) | _json,
        "state": st.sampled_from(["down", "up", "connected"]) | _json,
    },
)
_frames = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(
            ["ris_message", "ris_error", "ris_subscribe_ok", "pong", "ris_rrc_list", "bogus"]
        )
        | _json,
        "data": _ris_data | _json,
    },
)


def _client() -> RisLiveClient:
    return RisLiveClient(
        Visibility(["0.0.0.0/0", "::/0", WATCHED]), "ws://127.0.0.1:9/", clock=lambda: NOW
    )


_FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_FUZZ
@given(frame=_frames)
def test_handler_never_raises_on_ris_like_frames(frame: dict[str, Any]) -> None:
    """Random RIS-shaped frames (any field of any type) are handled or counted, never raised."""
    client = _client()
    client.handle_frame(json.dumps(frame))
    assert client.junk["internal_error"] == 0


@_FUZZ
@given(value=_json)
def test_handler_never_raises_on_arbitrary_json(value: Any) -> None:
    """Any JSON value as a frame is handled or counted as junk."""
    client = _client()
    client.handle_frame(json.dumps(value))
    assert client.junk["internal_error"] == 0


@_FUZZ
@given(payload=st.binary(max_size=64) | st.text(max_size=64))
def test_handler_never_raises_on_arbitrary_bytes_or_text(payload: bytes | str) -> None:
    """Arbitrary binary or text frames never raise."""
    client = _client()
    client.handle_frame(payload)
    assert client.junk["internal_error"] == 0
    assert sum(client.junk.values()) + client.messages >= 1


@_FUZZ
@given(data=_json | st.fixed_dictionaries({"bgp_state": _json, "rrcs": _json}))
def test_snapshot_parser_never_raises(data: Any) -> None:
    """Any RIPEstat answer parses to a (possibly empty) list of routes, never an exception."""
    assert isinstance(parse_snapshot({"data": data}), list)


def test_handler_survives_deep_nesting() -> None:
    """JSON nested too deep for the parser is junk, not a crash."""
    client = _client()
    client.handle_text("[" * 100_000 + "]" * 100_000)
    assert client.junk == {"not_json": 1}


async def test_cancelling_run_stops_it(server: RisLiveServer) -> None:
    """Cancelling the run() task ends it (connected or in backoff); close() then cleans up."""
    client = RisLiveClient(Visibility([WATCHED]), server.url)
    task = asyncio.create_task(client.run())
    await until(lambda: client.connected)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 2.0)
    assert not client.connected
    await client.close()
