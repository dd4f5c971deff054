"""The RIS Live websocket client: subscribe, parse, apply to `Visibility`, reconnect, seed
from a RIPEstat snapshot. Frame handling (`handle_frame`/`handle_text`) is synchronous and never
raises; the connection loop (`run`) never ends until `close()` or cancellation."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import random
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, Final
from urllib.parse import quote

import aiohttp
import structlog
from yarl import URL

from monitor.bgp.parse import (
    IPNetwork,
    MessageError,
    PeerState,
    Update,
    parse_ris_message,
    parse_snapshot,
)
from monitor.bgp.visibility import Visibility

log = structlog.get_logger("monitor.bgp")

DEFAULT_URL: Final = "wss://ris-live.ripe.net/v1/ws/"
CLIENT_NAME: Final = "dprk-outage-monitor"
# bgp-state lists routes per peer (source_id "rrc-peer") for the prefix and its more-specifics;
# looking-glass needs an exact prefix, which a /22 announced only as /24s is not.
RIPESTAT_SNAPSHOT_URL: Final = (
    "https://stat.ripe.net/data/bgp-state/data.json?resource={prefix}&sourceapp=" + CLIENT_NAME
)


def client_url(url: str, name: str = CLIENT_NAME) -> str:
    """RIS Live asks every client to identify itself with `?client=NAME`."""
    u = URL(url)
    return str(u if "client" in u.query else u.update_query(client=name))


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with jitter: uniform in [half, all] of min(cap, base * 2**attempt)."""
    ceiling = min(cap, base * 2.0 ** min(attempt, 62))
    return ceiling * rng.uniform(0.5, 1.0)


OnChange = Callable[[str, float | None], None]


class RisLiveClient:
    """Subscribes to the watched prefixes on RIS Live and keeps `visibility` current.

    Stop it with `await client.close()`, then await the `run()` task (cancelling the task also
    stops it, but only close() releases a session the client created).

    `run()` loops until cancelled or `close()`d: connect, subscribe, read, and on any failure
    reconnect with exponential backoff and jitter (reset once a connection stayed up
    `healthy_after` seconds). Junk frames are counted in `junk` by category and skipped.
    """

    def __init__(
        self,
        visibility: Visibility,
        url: str = DEFAULT_URL,
        *,
        on_change: OnChange | None = None,
        peer_state: bool = True,
        heartbeat: float = 30.0,
        ping_interval: float = 30.0,
        receive_timeout: float | None = 120.0,  # None: rely on heartbeat alone
        connect_timeout: float = 30.0,
        backoff_base: float = 1.0,
        backoff_cap: float = 60.0,
        healthy_after: float = 60.0,
        snapshot_url: str | None = None,
        snapshot_timeout: float = 30.0,
        snapshot_interval: float = 3600.0,
        session: aiohttp.ClientSession | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.visibility = visibility
        self.url = client_url(url)
        self.on_change = on_change
        self.peer_state = peer_state
        self.heartbeat = heartbeat
        self.ping_interval = ping_interval
        self.receive_timeout = receive_timeout
        self.connect_timeout = connect_timeout
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.healthy_after = healthy_after
        self.snapshot_url = snapshot_url
        self.snapshot_timeout = snapshot_timeout
        self.snapshot_interval = snapshot_interval
        self._last_snapshot: float | None = None  # monotonic start of the last fetch
        self._clock = clock
        self._rng = rng or random.Random()
        self._session = session
        self._own_session = session is None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._closing = asyncio.Event()
        self._reported: dict[IPNetwork, float | None] = {}
        self._tasks: set[asyncio.Task[object]] = set()

        self.connected = False
        self.connects = 0  # websocket sessions established
        self.connect_failures = 0  # attempts that failed or sessions that ended in an error
        self.messages = 0  # well-formed server messages handled
        self.updates = 0  # ris_message UPDATE / RIS_PEER_STATE applied
        self.last_message_time: float | None = None  # wall clock of the last frame received
        self.last_bgp_time: float | None = None  # BGP timestamp of the last message applied
        self.junk: collections.Counter[str] = collections.Counter()
        self.errors = 0  # ris_error messages
        self.last_error: str | None = None
        self.subscribed: set[str] = set()  # acknowledged subscriptions ("prefix" or type)
        self.rrcs: tuple[str, ...] = ()
        self.last_pong: float | None = None
        self.snapshot_routes = 0
        self.snapshot_failures = 0

    # frames (sync, never raise)

    def subscribe_messages(self) -> list[dict[str, Any]]:
        """The ris_subscribe messages sent on every (re)connection."""
        opts = {"acknowledge": True, "includeRaw": False}
        subs: list[dict[str, Any]] = [
            {
                "type": "ris_subscribe",
                "data": {
                    "prefix": str(p),
                    "moreSpecific": True,
                    "type": "UPDATE",
                    "socketOptions": opts,
                },
            }
            for p in self.visibility.subscriptions()
        ]
        if self.peer_state:
            # Peer-state messages carry no prefix, so a prefix filter would drop them: ask for
            # them separately (all peers; they are rare).
            subs.append(
                {"type": "ris_subscribe", "data": {"type": "RIS_PEER_STATE", "socketOptions": opts}}
            )
        return subs

    def handle_frame(self, frame: str | bytes) -> None:
        """One websocket frame's payload: text is parsed, binary is junk."""
        self.last_message_time = self._clock()
        if isinstance(frame, str):
            self.handle_text(frame)
        else:
            self.junk["binary"] += 1

    def handle_text(self, text: str) -> None:
        """Handle one text frame. Junk is counted in `junk` and skipped; this never raises."""
        try:
            self._handle(text)
        except MessageError as e:
            self.junk[e.category] += 1
            log.debug("ris_junk", category=e.category, error=str(e), frame=text[:200])
        except Exception:  # a bug must not kill the feed; it is visible in the log and count
            self.junk["internal_error"] += 1
            log.exception("ris_frame_failed", frame=text[:200])

    def _handle(self, text: str) -> None:
        try:
            doc = json.loads(text)
        except (ValueError, RecursionError):
            raise MessageError("not_json", "frame is not JSON") from None
        if not isinstance(doc, dict):
            raise MessageError("not_object", "frame is not a JSON object")
        kind = doc.get("type")
        if not isinstance(kind, str):
            raise MessageError("missing_field" if kind is None else "bad_field", "type")
        data = doc.get("data")
        if kind == "ris_message":
            msg = parse_ris_message(data)
            self.messages += 1
            if msg is None:
                return
            if isinstance(msg, Update) and msg.bad_prefixes:
                self.junk["bad_prefix"] += msg.bad_prefixes
            self.updates += 1
            self.last_bgp_time = msg.time
            if isinstance(msg, PeerState):
                log.info("ris_peer_state", collector=msg.peer[0], peer=msg.peer[1], state=msg.state)
            self._notify(self.visibility.apply(msg))
        elif kind == "ris_error":
            text_ = data.get("message") if isinstance(data, dict) else data
            self.messages += 1
            self.errors += 1
            self.last_error = str(text_)[:500]
            # Usually a rejected subscription or "too slow"; the server closes if it is fatal.
            log.warning("ris_error", message=self.last_error)
        elif kind == "ris_subscribe_ok":
            self.messages += 1
            sub = data.get("subscription", data) if isinstance(data, dict) else None
            if isinstance(sub, dict):
                self.subscribed.add(str(sub.get("prefix") or sub.get("type") or "all"))
        elif kind == "pong":
            self.messages += 1
            self.last_pong = self._clock()
        elif kind == "ris_rrc_list":
            self.messages += 1
            if isinstance(data, list):
                self.rrcs = tuple(str(x) for x in data)
        else:
            raise MessageError("unknown_type", kind[:40])

    def _notify(self, touched: Iterable[IPNetwork]) -> None:
        if not touched:
            return
        now = self._clock()
        for w in touched:
            r = self.visibility.ratio(w, now)
            if w in self._reported and self._reported[w] == r:
                continue
            self._reported[w] = r
            if self.on_change is not None:
                try:
                    self.on_change(str(w), r)
                except Exception:
                    log.exception("bgp_on_change_failed", prefix=str(w))

    def refresh(self) -> None:
        """Re-check every watched prefix (the `recent` window moves with time)."""
        now = self._clock()
        self.visibility.refresh(now)
        self._notify(self.visibility.watched)

    # connection

    async def run(self) -> None:
        """Connect, read and reconnect forever, until cancelled or `close()`d."""
        if self._closing.is_set():
            return
        if self._session is None:
            self._session = aiohttp.ClientSession()
        attempt = 0
        while not self._closing.is_set():
            started = time.monotonic()
            try:
                await self._connect_once(self._session)
            except asyncio.CancelledError:
                raise
            except (aiohttp.ClientError, OSError, TimeoutError) as e:
                self.connect_failures += 1
                log.warning("ris_live_connection_failed", error=repr(e), attempt=attempt)
            except Exception:
                self.connect_failures += 1
                log.exception("ris_live_client_error", attempt=attempt)
            finally:
                self.connected = False
                self._ws = None
            if self._closing.is_set():
                break
            if time.monotonic() - started >= self.healthy_after:
                attempt = 0
            delay = backoff_delay(attempt, self.backoff_base, self.backoff_cap, self._rng)
            attempt += 1
            log.info("ris_live_reconnect_in", seconds=round(delay, 3), attempt=attempt)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), delay)

    async def _connect_once(self, session: aiohttp.ClientSession) -> None:
        async with asyncio.timeout(self.connect_timeout):
            ws = await session.ws_connect(
                self.url,
                heartbeat=self.heartbeat,
                timeout=aiohttp.ClientWSTimeout(ws_receive=self.receive_timeout, ws_close=5.0),
                max_msg_size=16 * 2**20,
            )
        self._ws = ws
        pinger: asyncio.Task[None] | None = None
        try:
            for sub in self.subscribe_messages():
                await ws.send_json(sub)
            self.connected = True
            self.connects += 1
            log.info("ris_live_connected", url=self.url, subscriptions=len(self.subscriptions))
            pinger = asyncio.create_task(self._ping_loop(ws))
            if self._snapshot_due():
                self._spawn(self.fetch_snapshot())
            while not self._closing.is_set():
                msg = await ws.receive()  # raises TimeoutError after receive_timeout of silence
                if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    self.handle_frame(msg.data)
                else:  # CLOSE, CLOSING, CLOSED, ERROR
                    if not self._closing.is_set():
                        log.warning("ris_live_closed", type=msg.type.name, extra=str(msg.extra))
                    return
        finally:
            if pinger is not None:
                pinger.cancel()
                await asyncio.wait({pinger})  # unlike `await pinger`, keeps our own cancellation
            await ws.close()

    @property
    def subscriptions(self) -> tuple[str, ...]:
        return tuple(str(p) for p in self.visibility.subscriptions())

    async def _ping_loop(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        # An application ping gets a `pong`, so a quiet prefix (DPRK's rarely changes) still
        # produces traffic and receive_timeout only fires when the stream is really stalled.
        while True:
            await asyncio.sleep(self.ping_interval)
            self.refresh()
            try:
                await ws.send_json({"type": "ping"})
            except (aiohttp.ClientError, ConnectionError, RuntimeError):
                return

    def _snapshot_due(self) -> bool:
        # On every reconnect would be impolite to RIPEstat when the websocket flaps: at most
        # once per snapshot_interval (the live feed is authoritative anyway).
        if not self.snapshot_url:
            return False
        last = self._last_snapshot
        return last is None or time.monotonic() - last >= self.snapshot_interval

    def _spawn(self, coro: Coroutine[Any, Any, object]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def fetch_snapshot(self) -> int:
        """Seed visibility from RIPEstat; returns routes seeded. Failures only log."""
        if not self.snapshot_url or self._session is None:
            return 0
        self._last_snapshot = time.monotonic()
        seeded = 0
        for prefix in self.subscriptions:
            try:
                url = self.snapshot_url.format(prefix=quote(prefix, safe="/:"))
                async with asyncio.timeout(self.snapshot_timeout):
                    async with self._session.get(url) as resp:
                        resp.raise_for_status()
                        routes = parse_snapshot(await resp.json(content_type=None))
            except asyncio.CancelledError:
                raise
            except Exception as e:  # any failure: the live feed still works without it
                self.snapshot_failures += 1
                log.warning("bgp_snapshot_failed", prefix=prefix, error=repr(e))
                continue
            touched = self.visibility.seed(routes, self._clock())
            seeded += len(routes)
            self._notify(touched)
            log.info("bgp_snapshot", prefix=prefix, routes=len(routes))
        self.snapshot_routes += seeded
        return seeded

    async def close(self) -> None:
        """Stop `run()` and release the connection (and the session if we created it)."""
        self._closing.set()
        if self._ws is not None:
            await self._ws.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None
