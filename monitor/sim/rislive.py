"""A RIS Live look-alike for the simulated world: BGP announcements and withdrawals on demand.

The listening socket is created inside a namespace of the world (the vantage where the daemon
runs), so the daemon reaches `ws://127.0.0.1:PORT/v1/ws/` there exactly as it reaches the real
RIS Live; the server itself runs on an asyncio loop in a thread of the calling process, and the
test (or the demo) drives it with plain calls: `announce`, `withdraw`, `peer_down`. Without a
world it listens on the caller's own loopback (unit tests). Loopback only: nothing else is
contacted, and the peer addresses in the messages (198.19.250.0/24) are labels, never used.

The protocol is the subset of RIS Live (https://ris-live.ripe.net/manual/) the client uses:
`ris_subscribe` (prefix, moreSpecific (default true), lessSpecific, type, socketOptions.
acknowledge) answered with `ris_subscribe_ok`, `ris_unsubscribe`, `ping` -> `pong`, and
`ris_message` frames (UPDATE, RIS_PEER_STATE) sent only to the connections whose subscriptions
match them, as RIS Live filters. Like RIS Live it keeps no table: a client that connects later
sees only what is sent after it subscribed (`wait_subscribed` first).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import socket
import threading
import time
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import WSMsgType, web

if TYPE_CHECKING:
    from monitor.sim.world import World

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
T = TypeVar("T")

PEER_POOL = ipaddress.IPv4Network("198.19.250.0/24")  # labels in messages, never addressed
DOC_ASN = 64511  # origin of a block whose network has no AS of its own (RFC 5398 range)


@dataclass(frozen=True, slots=True)
class Peer:
    """A route-collector peer: the collector that hears it, its address and AS."""

    collector: str
    address: str
    asn: int


def make_peers(n: int, collectors: int = 3) -> list[Peer]:
    """`n` peers spread over `collectors` collectors (rrc00, rrc01, ...)."""
    if not 1 <= n <= 250:
        raise ValueError("between 1 and 250 peers")
    return [
        Peer(f"rrc{i % collectors:02d}", str(PEER_POOL.network_address + 1 + i), 64600 + i)
        for i in range(n)
    ]


def world_routes(world: World) -> dict[str, tuple[int, ...]]:
    """Every block of the world with the AS path behind a peer: its upstream's AS, then the
    origin (Star JV's /24s: `4837 131279` or `20485 131279`; KPTC's block: `4837`)."""
    spec = world.spec
    routes: dict[str, tuple[int, ...]] = {}
    for e in spec.entities:
        origin = e.asn if e.asn is not None else DOC_ASN
        for b in e.blocks:
            up = spec.upstream(b.upstream).asn
            routes[b.prefix] = (origin,) if up is None or up == origin else (up, origin)
    return routes


def update(
    peer: Peer,
    *,
    announce: Sequence[str] = (),
    withdraw: Sequence[str] = (),
    path: Sequence[int] = (),
    ts: float | None = None,
) -> dict[str, Any]:
    """A `ris_message` UPDATE in RIS Live's shape."""
    t = time.time() if ts is None else ts
    data: dict[str, Any] = {
        "timestamp": round(t, 2),
        "peer": peer.address,
        "peer_asn": str(peer.asn),
        "id": f"{peer.collector}-{peer.address}-{t:.6f}",
        "host": f"{peer.collector}.ripe.net",
        "type": "UPDATE",
        "path": [peer.asn, *path] if announce else [],
        "announcements": (
            [{"next_hop": peer.address, "prefixes": list(announce)}] if announce else []
        ),
        "withdrawals": list(withdraw),
    }
    if announce:
        data["origin"] = "IGP"
        data["community"] = []
    return {"type": "ris_message", "data": data}


def peer_state(peer: Peer, state: str, ts: float | None = None) -> dict[str, Any]:
    """A `ris_message` RIS_PEER_STATE (`connected` / `down`)."""
    t = time.time() if ts is None else ts
    return {
        "type": "ris_message",
        "data": {
            "timestamp": round(t, 2),
            "peer": peer.address,
            "peer_asn": str(peer.asn),
            "id": f"{peer.collector}-{peer.address}-{t:.6f}-state",
            "host": f"{peer.collector}.ripe.net",
            "type": "RIS_PEER_STATE",
            "state": state,
        },
    }


@dataclass(frozen=True, slots=True)
class Subscription:
    prefix: IPNetwork | None = None
    more_specific: bool = True
    less_specific: bool = False
    type: str | None = None

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Subscription:
        """Raises ValueError for what RIS Live would refuse (a bad prefix)."""
        raw = data.get("prefix")
        prefix = ipaddress.ip_network(str(raw), strict=False) if raw else None
        kind = data.get("type")
        return cls(
            prefix,
            bool(data.get("moreSpecific", True)),
            bool(data.get("lessSpecific", False)),
            str(kind) if kind else None,
        )

    def matches(self, data: Mapping[str, Any]) -> bool:
        """Whether a `ris_message` `data` is sent to this subscription."""
        if self.type is not None and data.get("type") != self.type:
            return False
        if self.prefix is None:
            return True
        prefixes = [p for a in data.get("announcements") or () for p in a.get("prefixes", ())]
        prefixes += list(data.get("withdrawals") or ())
        for text in prefixes:
            p = ipaddress.ip_network(text, strict=False)
            if p.version != self.prefix.version:
                continue
            if p == self.prefix:
                return True
            if self.more_specific and p.subnet_of(self.prefix):  # type: ignore[arg-type]
                return True
            if self.less_specific and self.prefix.subnet_of(p):  # type: ignore[arg-type]
                return True
        return False


@dataclass(slots=True)
class _Client:
    ws: web.WebSocketResponse
    query: dict[str, str]
    subs: list[Subscription] = field(default_factory=list)


class RisLiveSim:
    """`with RisLiveSim(world).start() as srv:` then `announce`/`withdraw`/`peer_down`."""

    def __init__(
        self, world: World | None = None, where: str | int = 0, host: str = "127.0.0.1"
    ) -> None:
        self.world, self.where, self.host = world, where, host
        self.port = 0
        self.connections = 0
        self.queries: list[dict[str, str]] = []
        self.subscriptions: list[dict[str, Any]] = []  # every ris_subscribe `data`
        self.sent = 0  # ris_message frames delivered (one per connection)
        self._clients: list[_Client] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._changed = threading.Condition()

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}/v1/ws/"

    # lifecycle

    def start(self) -> RisLiveSim:
        def listen() -> socket.socket:
            return socket.create_server((self.host, 0))

        sock = listen() if self.world is None else self.world.call_in(self.where, listen)
        self.port = sock.getsockname()[1]
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="rislive-sim", daemon=True)
        self._thread.start()
        try:
            self._call(self._serve(sock))
        except BaseException:
            self.stop()
            raise
        return self

    async def _serve(self, sock: socket.socket) -> None:
        app = web.Application()
        app.router.add_get("/v1/ws/", self._ws)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()

    def stop(self) -> None:
        """Close every connection and the listener; idempotent."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if self._runner is not None and loop.is_running():
            with contextlib.suppress(Exception):
                self._call(self._shutdown())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        self._loop = self._thread = None

    async def _shutdown(self) -> None:
        for c in list(self._clients):
            await c.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def __enter__(self) -> RisLiveSim:
        return self if self._loop is not None else self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        if self._loop is None:
            coro.close()
            raise RuntimeError("the RIS Live sim is not running")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    # the websocket

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        client = _Client(ws, dict(request.query))
        self._clients.append(client)
        with self._changed:
            self.connections += 1
            self.queries.append(client.query)
            self._changed.notify_all()
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await self._answer(client, msg.data)
        finally:
            self._clients.remove(client)
            with self._changed:
                self._changed.notify_all()
        return ws

    async def _answer(self, client: _Client, text: str) -> None:
        try:
            frame = json.loads(text)
        except ValueError:
            await client.ws.send_json({"type": "ris_error", "data": {"message": "not JSON"}})
            return
        kind = frame.get("type") if isinstance(frame, dict) else None
        data = frame.get("data") if isinstance(frame, dict) else None
        data = data if isinstance(data, dict) else {}
        if kind == "ping":
            await client.ws.send_json({"type": "pong", "data": {}})
        elif kind == "ris_subscribe":
            try:
                sub = Subscription.from_data(data)
            except ValueError:
                msg = f"Invalid prefix: {data.get('prefix')}"
                await client.ws.send_json({"type": "ris_error", "data": {"message": msg}})
                return
            with self._changed:
                client.subs.append(sub)
                self.subscriptions.append(data)
                self._changed.notify_all()
            opts = data.get("socketOptions") or {}
            if opts.get("acknowledge"):
                ok = {"subscription": data, "socketOptions": opts}
                await client.ws.send_json({"type": "ris_subscribe_ok", "data": ok})
        elif kind == "ris_unsubscribe":
            with contextlib.suppress(ValueError):
                client.subs.remove(Subscription.from_data(data))
        else:
            await client.ws.send_json(
                {"type": "ris_error", "data": {"message": f"Unknown message type: {kind}"}}
            )

    async def _publish(self, frames: Sequence[dict[str, Any]]) -> int:
        n = 0
        for c in list(self._clients):
            for f in frames:
                if any(s.matches(f["data"]) for s in c.subs):
                    await c.ws.send_str(json.dumps(f))
                    n += 1
        self.sent += n
        return n

    # driving it (from any thread but the server's)

    @property
    def clients(self) -> int:
        """Connections open now."""
        return len(self._clients)

    def wait_subscribed(self, prefix: str | None = None, timeout: float = 15.0) -> None:
        """Until an open connection has a prefix subscription (covering `prefix` if given)."""
        want = ipaddress.ip_network(prefix) if prefix else None

        def ready() -> bool:
            for c in list(self._clients):
                for s in c.subs:
                    if s.prefix is None or s.type not in (None, "UPDATE"):
                        continue
                    if want is None or (
                        want.version == s.prefix.version and want.subnet_of(s.prefix)  # type: ignore[arg-type]
                    ):
                        return True
            return False

        with self._changed:
            if not self._changed.wait_for(ready, timeout):
                raise TimeoutError(f"no client subscribed within {timeout}s")

    def publish(self, frames: Iterable[dict[str, Any]]) -> int:
        """Send `ris_message` frames to every connection subscribed to them; returns frames
        delivered."""
        return self._call(self._publish(list(frames)))

    def announce(
        self,
        routes: Mapping[str, Sequence[int]],
        peers: Iterable[Peer],
        ts: float | None = None,
    ) -> int:
        """Each peer announces each prefix with AS path `peer.asn + routes[prefix]`."""
        t = time.time() if ts is None else ts
        frames = [
            update(p, announce=[prefix], path=tail, ts=t)
            for p in peers
            for prefix, tail in routes.items()
        ]
        return self.publish(frames)

    def withdraw(
        self, prefixes: Iterable[str], peers: Iterable[Peer], ts: float | None = None
    ) -> int:
        """Each peer withdraws the prefixes (one UPDATE per peer)."""
        t = time.time() if ts is None else ts
        wd = list(prefixes)
        return self.publish([update(p, withdraw=wd, ts=t) for p in peers])

    def peer_down(self, peers: Iterable[Peer], ts: float | None = None) -> int:
        """The collectors' sessions with these peers went down (not a DPRK withdrawal)."""
        return self.publish([peer_state(p, "down", ts) for p in peers])


__all__ = [
    "Peer",
    "RisLiveSim",
    "Subscription",
    "make_peers",
    "peer_state",
    "update",
    "world_routes",
]
