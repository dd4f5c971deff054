"""BGP visibility into detection (a consumer of the daemon's fan-out): runs the RIS Live
client for the watched prefixes, feeds visibility changes to the detector and the metrics, and
puts the routing picture (withdrawal time, peers, missing more-specifics) into an entity's
event when it opens or escalates, or when a withdrawal is seen during it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from monitor.bgp import DEFAULT_URL, RIPESTAT_SNAPSHOT_URL, RisLiveClient, Visibility
from monitor.config import Config
from monitor.detect.detector import Detector
from monitor.detect.evidence import BgpWithdrawal, PrefixRouting, SpecificVisibility
from monitor.detect.model import Change, EventOpened, EventUpdated
from monitor.metrics import Metrics

# With fewer collector peers than this, a ratio means little (one peer's message at start-up).
BGP_MIN_PEERS = 3
BGP_MAX_LISTED = 32  # more-specifics listed per prefix in the `bgp` evidence

Spawn = Callable[[Coroutine[Any, Any, None], str], "asyncio.Task[None]"]


def prefix_owners(cfg: Config) -> dict[str, list[str]]:
    """Watched prefix -> the entities announcing it."""
    owners: dict[str, list[str]] = {}
    for e in cfg.entities:
        for p in e.prefixes:
            owners.setdefault(str(p), []).append(e.name)
    return owners


class RoutingWatch:
    def __init__(
        self,
        metrics: Metrics,
        detector: Detector,
        publish: Callable[[Iterable[Change]], None],
        spawn: Spawn,
    ) -> None:
        self._metrics = metrics
        self._detector = detector
        self._publish = publish
        self._spawn = spawn
        self.client: RisLiveClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._owners: dict[str, list[str]] = {}
        self._key: object = None  # what the running client was built from

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self, cfg: Config) -> None:
        owners = prefix_owners(cfg)
        self._key = (cfg.bgp, owners)
        if not cfg.bgp.enabled or not owners:
            return
        self._owners = owners
        vis = Visibility(owners, min_peers=BGP_MIN_PEERS, threshold=cfg.detection.bgp_lost_ratio)
        # The RIPEstat snapshot only makes sense next to the real RIS Live.
        snapshot = RIPESTAT_SNAPSHOT_URL if cfg.bgp.ris_live_url == DEFAULT_URL else None
        self.client = RisLiveClient(
            vis, cfg.bgp.ris_live_url, on_change=self._on_visibility, snapshot_url=snapshot
        )
        self._task = self._spawn(self.client.run(), "ris-live")
        self._metrics.bind_bgp(self.client)

    async def stop(self) -> None:
        client, task = self.client, self._task
        # Forget the task first: its end is ours, not a failure for the supervisor.
        self.client, self._task = None, None
        if client is not None:
            await client.close()
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._metrics.bind_bgp(None)

    def owns(self, task: asyncio.Task[Any]) -> bool:
        return task is self._task

    def needs_restart(self, cfg: Config) -> bool:
        return (cfg.bgp, prefix_owners(cfg)) != self._key

    async def restart(self, cfg: Config) -> None:
        await self.stop()
        await self.start(cfg)

    # --- visibility in ------------------------------------------------------------------------

    def _on_visibility(self, prefix: str, ratio: float | None) -> None:
        client, det = self.client, self._detector
        if client is None:
            return
        now = time.time()
        episode = client.visibility.withdrawal(prefix)
        since = episode.first if episode is not None else None
        for entity in self._owners.get(prefix, []):
            if ratio is None:
                self._metrics.remove_bgp_visibility(entity, prefix)
            else:
                self._metrics.bgp_visibility.labels(entity, prefix).set(ratio)
            self._publish(det.observe_bgp(entity, prefix, ratio, now, since=since))
            if episode is not None:
                self.annotate(entity)

    # --- evidence out -------------------------------------------------------------------------

    def on_change(self, c: Change) -> None:
        if isinstance(c, EventOpened) or (isinstance(c, EventUpdated) and c.escalated):
            self.annotate(c.event.entity)

    def annotate(self, entity: str) -> None:
        """Put the routing picture (withdrawal time, peers) into the entity's open event."""
        client = self.client
        if client is None:
            return
        now = time.time()
        routing: dict[str, PrefixRouting] = {}
        for prefix, owners in self._owners.items():
            if entity not in owners:
                continue
            st = client.visibility.status(prefix, now)
            w = st.withdrawal
            # A peer "sees" the prefix while it has a route into it: the announced parts that
            # not every recent peer sees (one upstream's /24s) are listed on their own.
            missing = [
                v
                for v in st.detail.values()
                if v.prefix != prefix and v.ratio is not None and v.ratio < 1.0
            ]
            routing[prefix] = PrefixRouting(
                visibility_ratio=st.ratio,
                peers_seeing=st.seeing,
                peers_recent=st.recent,
                more_specifics_missing={
                    v.prefix: SpecificVisibility(v.ratio, v.seeing)
                    for v in missing[:BGP_MAX_LISTED]
                },
                withdrawal=None if w is None else BgpWithdrawal(w.first, w.time, w.peers, w.ratio),
            )
        if routing:
            self._publish(self._detector.annotate(entity, bgp=routing))

    # --- status -------------------------------------------------------------------------------

    def visibility(self, entity: str, now: float) -> dict[str, float | None]:
        """Prefix -> visibility ratio, for the entity's prefixes (empty when BGP is off)."""
        client = self.client
        if client is None:
            return {}
        return {
            prefix: client.visibility.ratio(prefix, now)
            for prefix, owners in self._owners.items()
            if entity in owners
        }

    def health(self) -> dict[str, object] | None:
        client = self.client
        if client is None:
            return None
        return {"connected": client.connected, "messages": client.messages}
