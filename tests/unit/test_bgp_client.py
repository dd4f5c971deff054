"""The RIS Live websocket client (monitor/bgp/client.py) against `RisLiveServer` on 127.0.0.1
(port 0), started by the test: subscriptions, storms, junk, reconnects, pings, snapshots, and a
frame handler that never raises.

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
    RisLiveClient,
    Visibility,
    backoff_delay,
    client_url,
)
from tests.unit.rislive_server import (
    RisLiveServer,
    peer_state,
    ris_error,
    update,
)
from tests.virtual_time import loop_clock, virtual_test

WATCHED = "198.18.176.0/22"
SLASH24 = [f"198.18.{n}.0/24" for n in (176, 177, 178, 179)]
PEERS = [f"192.0.2.{n}" for n in range(1, 11)]
T0 = 1_700_000_000.0
NOW = T0 + 100.0  # the client's clock in the websocket tests


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until cond() holds, polling; fail the test after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


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


# The two timer tests below run on a virtual-time loop (tests/virtual_time.py): the client and
# the server share it, so seconds of silence take none and a loaded machine cannot stretch a
# gap between frames into a timeout. Heartbeats are off (60 s): only what is tested keeps the
# stream alive.


def _quiet_client(url: str, **kw: Any) -> RisLiveClient:
    params: dict[str, Any] = {"heartbeat": 60.0, "ping_interval": 60.0, "rng": random.Random(7)}
    params.update(kw)
    return RisLiveClient(Visibility([WATCHED]), url, backoff_base=1.0, backoff_cap=4.0, **params)


@virtual_test
async def test_stalled_stream_times_out_and_reconnects() -> None:
    """No frame for receive_timeout (no pongs either) means a stall: reconnect, after the
    timeout (12 s) and the first backoff (at most 1 s), not before."""
    async with RisLiveServer() as server:
        client = _quiet_client(server.url, receive_timeout=12.0)
        task = asyncio.create_task(client.run())
        try:
            await until(lambda: server.connections >= 2, timeout=600.0)
            assert 12.0 <= loop_clock() <= 13.5
            assert client.connect_failures >= 1
        finally:
            await client.close()
            await asyncio.wait_for(task, 5.0)


@virtual_test
async def test_application_ping_gets_pong() -> None:
    """The client pings every ping_interval; the pong keeps a quiet feed alive well past
    receive_timeout (8 pings of 5 s against 12 s of silence allowed)."""
    async with RisLiveServer() as server:
        client = _quiet_client(server.url, ping_interval=5.0, receive_timeout=12.0)
        task = asyncio.create_task(client.run())
        try:
            await until(lambda: server.pings >= 8, timeout=600.0)
            assert loop_clock() > 12.0 * 3 and client.last_pong is not None
            assert server.connections == 1
        finally:
            await client.close()
            await asyncio.wait_for(task, 5.0)


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
