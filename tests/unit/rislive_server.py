"""A RIS Live look-alike for the tests: an aiohttp websocket server on 127.0.0.1, port 0.

It records every client connection (with its query string) and subscription, answers `ping`
with `pong` and `ris_subscribe` with `ris_subscribe_ok` (or `ris_error` for prefixes listed in
`reject`), and sends whatever frames a test scripts with `send()`. `drop()` cuts the TCP
connections without a websocket close, like a network failure. It also serves a RIPEstat
`bgp-state`-shaped snapshot on /data/bgp-state/data.json. Loopback only: nothing leaves the host.

Frame builders make real-format RIS Live messages from the shapes in tests/data/ris-live.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

DATA = Path(__file__).resolve().parent.parent / "data" / "ris-live"


def fixture_text(name: str) -> str:
    """The text of one sample in tests/data/ris-live."""
    return (DATA / name).read_text()


def _template() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(fixture_text("ris_live_update_announce_rrc10.json"))
    doc["data"].pop("raw")  # the raw bytes would no longer match the edited fields
    return doc


_UPDATE = _template()
_PEER_STATE: dict[str, Any] = next(
    json.loads(line)
    for line in fixture_text("ris_live_other_message_types.jsonl").splitlines()
    if '"RIS_PEER_STATE"' in line
)


def update(
    peer: str,
    *,
    host: str = "rrc00",
    announce: Iterable[str] = (),
    withdraw: Iterable[str] = (),
    path: Sequence[int | list[int]] = (64500, 64510, 131279),
    ts: float = 1_700_000_000.0,
    peer_asn: str = "64500",
) -> dict[str, Any]:
    """A ris_message UPDATE in RIS Live's shape (announcements and withdrawals may mix)."""
    doc = copy.deepcopy(_UPDATE)
    data = doc["data"]
    ann = list(announce)
    data.update(
        timestamp=ts,
        peer=peer,
        peer_asn=peer_asn,
        host=host,
        id=f"{host}-{peer}-{ts}",
        path=list(path) if ann else [],
        announcements=[{"next_hop": peer, "prefixes": ann}] if ann else [],
    )
    if not ann:
        data.pop("community", None)
        data.pop("origin", None)
    wd = list(withdraw)
    if wd:
        data["withdrawals"] = wd
    return doc


def peer_state(
    peer: str, state: str, *, host: str = "rrc00", ts: float = 1_700_000_000.0
) -> dict[str, Any]:
    """A ris_message RIS_PEER_STATE in the manual's shape."""
    data = dict(_PEER_STATE, peer=peer, host=host, state=state, timestamp=ts)
    return {"type": "ris_message", "data": data}


def ris_error(message: str) -> dict[str, Any]:
    return {"type": "ris_error", "data": {"message": message}}


class RisLiveServer:
    """Scripted RIS Live server. Use `async with RisLiveServer() as srv:` or start()/stop()."""

    def __init__(self, *, reject: Iterable[str] = ()) -> None:
        self.reject = set(reject)
        self.connections = 0
        self.queries: list[dict[str, str]] = []  # query string of each connection
        self.subscriptions: list[dict[str, Any]] = []  # every ris_subscribe `data`, in order
        self.received: list[Any] = []  # every client frame, parsed
        self.pings = 0
        self.snapshot: Any = {"data": {"bgp_state": []}}
        self.snapshot_status = 200
        self.snapshot_requests: list[str] = []
        self._active: set[web.WebSocketResponse] = set()
        self._transports: dict[web.WebSocketResponse, asyncio.BaseTransport] = {}
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/ws/"

    @property
    def http_base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> RisLiveServer:
        app = web.Application()
        app.router.add_get("/v1/ws/", self._ws)
        app.router.add_get("/data/bgp-state/data.json", self._snapshot)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.base_events.Server)
        self.port = server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        for ws in list(self._active):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> RisLiveServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _snapshot(self, request: web.Request) -> web.Response:
        self.snapshot_requests.append(request.query.get("resource", ""))
        if self.snapshot_status != 200:
            return web.Response(status=self.snapshot_status, text="unavailable")
        return web.json_response(self.snapshot)

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.connections += 1
        self.queries.append(dict(request.query))
        self._active.add(ws)
        if request.transport is not None:
            self._transports[ws] = request.transport
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                frame = json.loads(msg.data)
                self.received.append(frame)
                await self._answer(ws, frame)
        finally:
            self._active.discard(ws)
            self._transports.pop(ws, None)
        return ws

    async def _answer(self, ws: web.WebSocketResponse, frame: Any) -> None:
        kind = frame.get("type") if isinstance(frame, dict) else None
        if kind == "ping":
            self.pings += 1
            await ws.send_json({"type": "pong", "data": {}})
        elif kind == "ris_subscribe":
            data = frame.get("data") or {}
            self.subscriptions.append(data)
            if data.get("prefix") in self.reject:
                await ws.send_json(ris_error(f"Invalid prefix: {data['prefix']}"))
            elif (data.get("socketOptions") or {}).get("acknowledge"):
                await ws.send_json(
                    {
                        "type": "ris_subscribe_ok",
                        "data": {"subscription": data, "socketOptions": data["socketOptions"]},
                    }
                )

    @property
    def clients(self) -> int:
        """Connections open now."""
        return len(self._active)

    async def send(self, *frames: Any) -> None:
        """Send frames to every open connection: dicts as JSON, str as text, bytes as binary."""
        for ws in list(self._active):
            for f in frames:
                if isinstance(f, bytes):
                    await ws.send_bytes(f)
                elif isinstance(f, str):
                    await ws.send_str(f)
                else:
                    await ws.send_str(json.dumps(f))

    async def drop(self) -> None:
        """Cut every connection at the TCP level (no close frame), like a network failure."""
        for ws in list(self._active):
            transport = self._transports.get(ws)
            if transport is not None:
                transport.abort()  # type: ignore[attr-defined]
