"""Every metric of the daemon, defined here and nowhere else, and the recorder of probe results.

Labelled series are created when the configuration is loaded (so dashboards see a 0, not a gap)
and removed when a target or entity leaves the configuration, as smokeping_prober does.
Rendering never stalls the event loop: web.py calls `render_rest` (the small families) in an
executor, then streams `render_parts` from the loop.

`target_up`, the one family with a series per target, is not a prometheus_client Gauge: a Gauge
child costs ~800 bytes and rendering it allocates a dict and a tuple per series, so at 100,000
targets the Gauge took ~80 MB, a scrape ~0.7 s of CPU in the render thread, and the garbage set
off full collections that held the GIL, stalling the loop for up to 0.8 s (bench/bench_scale.py).
`_TargetUp` keeps every series' line in one buffer and rewrites values in place; a scrape
streams slices of that buffer and creates nothing per series.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import chain
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from monitor import __version__
from monitor.config import CONTROLS as CONTROLS  # re-exported: the controls' entity label
from monitor.config import Config, configured_targets
from monitor.detect.hysteresis import TargetState
from monitor.detect.model import (
    Change,
    EventClosed,
    EventOpened,
    EventUpdated,
    StateChanged,
    TargetChanged,
    VantageChanged,
)
from monitor.probes.base import Kind, ProbeResult, Reason, Target

PREFIX = "dprk_monitor_"
STATES = ("up", "degraded", "partial", "down", "unknown")
EVENT_KINDS = ("blackout", "partial", "web", "dns", "degraded", "routing")
RTT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True, slots=True)
class _TargetKey:
    entity: str
    kind: str
    target: str

    def labels_text(self) -> str:
        """The series' labels as exposed: `entity="...",kind="...",target="..."` (escaped)."""
        return (
            f'entity="{_escape(self.entity)}",kind="{_escape(self.kind)}",'
            f'target="{_escape(self.target)}"'
        )


_ESCAPES = str.maketrans({"\\": r"\\", "\n": r"\n", '"': r"\""})
_UNESCAPE = re.compile(r"\\(.)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
# Render-time flag (per thread): `Metrics.render_parts` writes target_up itself, so the collector
# yields nothing to generate_latest there; any other collect() (tests, tools) gets the samples.
_rendering = threading.local()


def _escape(value: str) -> str:
    """A label value escaped as the text exposition format wants (as prometheus_client does)."""
    return value.translate(_ESCAPES)


# Every target_up value is 1 or 0, which prometheus_client writes as "1.0" / "0.0": 3 bytes each,
# so a value can be rewritten in place.
_VALUE_TEXT = {1.0: b"1.0", 0.0: b"0.0"}
_hash = hash  # (a test makes every prefix collide)


def _value_text(value: float) -> bytes:
    text = _VALUE_TEXT.get(value)
    if text is None:
        raise ValueError(f"target_up is 1 or 0, not {value!r}")
    return text


class _TargetUp(Collector):
    """`target_up`: one series per configured target, all kept in one bytearray of exposition
    lines (`name{labels} 1.0\n`), found through a dict from the hash of each line's prefix to
    its value's offset (the prefix itself is read back from the buffer to confirm a match, so
    a hash shared by two prefixes only sends the second to a small dict keyed by the prefix).

    Setting a value rewrites 3 bytes; a scrape streams slices of the live buffer from the loop,
    so it makes no object per series, copies nothing whole and never holds the GIL for long.
    (A list of 200,000 bytes objects joined in chunks, the design before, took ~45 ms of a
    worker thread's CPU per scrape at 100,000 targets and stalled the loop for up to 80 ms in
    bench/bench_scale.py; keying by the prefixes themselves cost ~10 MB more.) Lines of removed
    series are dropped in one rebuild by `compact()`; adding or dropping lines bumps `layout`,
    which a scrape in progress checks."""

    LABELS = ("entity", "kind", "target")

    def __init__(self, name: str, doc: str) -> None:
        self.name, self.doc = name, doc
        self._buf = bytearray()
        self._at: dict[int, int] = {}  # hash of a line's prefix -> offset of its value in _buf
        self._clash: dict[bytes, int] = {}  # prefixes whose hash another prefix holds
        self._stale = False  # lines of removed series are still in _buf
        self.layout = 0  # bumped whenever lines move (not when a value is rewritten)
        help_text = doc.replace("\\", "\\\\").replace("\n", "\\n")
        self._head = f"# HELP {name} {help_text}\n# TYPE {name} gauge\n".encode()

    def _prefix(self, labels: str) -> bytes:
        return f"{self.name}{{{labels}}} ".encode()

    def _prefix_at(self, at: int) -> bytes:
        """The prefix of the line whose value is at `at`."""
        return bytes(self._buf[self._buf.rfind(b"\n", 0, at) + 1 : at])

    def _find(self, prefix: bytes) -> int | None:
        if self._clash:
            at = self._clash.get(prefix)
            if at is not None:
                return at
        at = self._at.get(_hash(prefix))
        return at if at is not None and self._prefix_at(at) == prefix else None

    def _live(self) -> list[int]:
        """Offsets of every series' value, in buffer order."""
        return sorted([*self._at.values(), *self._clash.values()])

    def __contains__(self, labels: str) -> bool:
        return self._find(self._prefix(labels)) is not None

    def __len__(self) -> int:
        return len(self._at) + len(self._clash)

    def keys(self) -> set[str]:
        """The labels texts of every series."""
        cut = len(self.name) + 1
        return {self._prefix_at(at)[cut:-2].decode() for at in self._live()}

    def set(self, labels: str, value: float) -> None:
        """Set (or add) a series; the value must be 1 or 0."""
        self.add_all((labels,), value)

    def update(self, labels: str, value: float) -> bool:
        """Set a series only if it exists (a probe of a target a reload removed is not one);
        returns whether it did."""
        at = self._find(self._prefix(labels))
        if at is None:
            return False
        self._buf[at : at + 3] = _value_text(value)
        return True

    def add_all(self, labels: Iterable[str], value: float) -> None:
        """Set many series at once, new ones appended in one piece: one reallocation instead of
        one per line (which left ~10 MB of holes in the heap at 100,000 targets)."""
        text = _value_text(value)
        new: list[bytes] = []
        for lab in labels:
            prefix = self._prefix(lab)
            at = self._find(prefix)
            if at is not None:
                self._buf[at : at + 3] = text
            else:
                new.append(prefix)
        if not new:
            return
        at = len(self._buf)
        tail = text + b"\n"
        self._buf += b"".join(chain.from_iterable((p, tail) for p in new))
        for prefix in new:
            at += len(prefix)
            h = _hash(prefix)
            if h in self._at:
                self._clash[prefix] = at
            else:
                self._at[h] = at
            at += 4
        self.layout += 1

    def remove(self, labels: str) -> None:
        """Forget a series; its line stays in the exposition until `compact()`."""
        prefix = self._prefix(labels)
        at = self._find(prefix)
        if at is None:
            return
        if self._clash.get(prefix) == at:
            del self._clash[prefix]
        else:
            del self._at[_hash(prefix)]
        self._stale = True

    def compact(self) -> None:
        """Rebuild the buffer without the lines of removed series (O(series), on reloads)."""
        if not self._stale:
            return
        new = bytearray()
        at_of: dict[int, int] = {}  # old offset -> new offset
        for at in self._live():
            new += self._prefix_at(at)
            at_of[at] = len(new)
            new += self._buf[at : at + 4]
        self._at = {h: at_of[at] for h, at in self._at.items()}
        self._clash = {p: at_of[at] for p, at in self._clash.items()}
        self._buf, self._stale = new, False
        self.layout += 1

    def describe(self) -> Iterable[GaugeMetricFamily]:
        yield GaugeMetricFamily(self.name, self.doc, labels=self.LABELS)

    def collect(self) -> Iterable[GaugeMetricFamily]:
        if getattr(_rendering, "active", False):
            return
        family = GaugeMetricFamily(self.name, self.doc, labels=self.LABELS)
        cut = len(self.name) + 1
        for at in self._live():
            labels = _parse_labels(self._prefix_at(at)[cut:-2].decode())
            family.add_metric(list(labels), float(self._buf[at : at + 3]))
        yield family

    def size(self) -> int:
        """Bytes of the exposition `text_parts` streams now (HELP and TYPE included)."""
        if self._stale:
            return len(self._snapshot())
        return len(self._head) + len(self._buf)

    def text_parts(self, chunk: int) -> Iterator[bytes]:
        """The exposition in slices of `chunk` bytes, each copied from the live buffer when it
        is asked for (on the loop: microseconds). A value rewritten meanwhile shows its new
        value, as a Gauge would; lines added or dropped meanwhile (a reload) would tear the
        body and break its announced length, so that ends the stream with RuntimeError."""
        if self._stale:
            data = self._snapshot()
            for i in range(0, len(data), chunk):
                yield data[i : i + chunk]
            return
        layout = self.layout
        yield self._head
        for i in range(0, len(self._buf), chunk):
            if self.layout != layout:
                raise RuntimeError("target_up series were added or removed during a scrape")
            with memoryview(self._buf) as view:
                part = view[i : i + chunk].tobytes()
            yield part  # (never inside the view: it would pin the buffer's size)

    def _snapshot(self) -> bytes:
        """The live lines while removed ones still wait for `compact()` (a slow path)."""
        lines: list[bytes | bytearray] = []
        for at in self._live():
            lines.append(self._prefix_at(at))
            lines.append(self._buf[at : at + 4])
        return self._head + b"".join(lines)


def _parse_labels(labels: str) -> tuple[str, str, str]:
    """(entity, kind, target) back from a labels text of target_up."""
    values = {k: _UNESCAPE.sub(_unescape_one, v) for k, v in _LABEL.findall(labels)}
    return values["entity"], values["kind"], values["target"]


def _unescape_one(m: re.Match[str]) -> str:
    return "\n" if m.group(1) == "n" else m.group(1)


class _CountersCollector(Collector):
    """Exports counters kept by a component (e.g. the ICMP engine's ignored replies) at scrape."""

    def __init__(self, name: str, doc: str, label: str, source: Callable[[], Mapping[str, int]]):
        self._name, self._doc, self._label, self._source = name, doc, label, source

    def collect(self) -> Iterable[CounterMetricFamily]:
        family = CounterMetricFamily(self._name, self._doc, labels=[self._label])
        for value, count in sorted(self._source().items()):
            family.add_metric([value], count)
        yield family


class _ValueCollector(Collector):
    """One counter read from a component at scrape time; absent while the source says None."""

    def __init__(self, name: str, doc: str, source: Callable[[], int | None]):
        self._name, self._doc, self._source = name, doc, source

    def collect(self) -> Iterable[CounterMetricFamily]:
        value = self._source()
        family = CounterMetricFamily(self._name, self._doc)
        if value is not None:
            family.add_metric([], value)
        yield family


class _GaugesCollector(Collector):
    """Gauges kept by a component, one per label value, read at scrape time."""

    def __init__(self, name: str, doc: str, label: str, source: Callable[[], Mapping[str, float]]):
        self._name, self._doc, self._label, self._source = name, doc, label, source

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(self._name, self._doc, labels=[self._label])
        for value, gauge in sorted(self._source().items()):
            family.add_metric([value], gauge)
        yield family


class Metrics:
    """The daemon's metrics on one registry (tests use a fresh registry each)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        p = PREFIX
        self.probes = Counter(
            p + "probes", "Probes sent (re-probes included)", ["entity", "kind"], registry=r
        )
        self.failures = Counter(
            p + "probe_failures",
            "Probes that failed, by reason",
            ["entity", "kind", "reason"],
            registry=r,
        )
        self.rtt = Histogram(
            p + "probe_rtt_seconds",
            "Round-trip / response time of successful probes",
            ["entity", "kind"],
            buckets=RTT_BUCKETS,
            registry=r,
        )
        # The declaration of target_up (name, help, label names) for whoever inspects the
        # metric objects; its series live in `self.target_up` (see _TargetUp), not here.
        target_up_help = (
            "1 when the target answers, after down_after/up_after hysteresis; 0 when down or "
            "never answered (targets{state=never_answered} tells them apart)"
        )
        self._target_up_declared = Gauge(
            p + "target_up", target_up_help, _TargetUp.LABELS, registry=None
        )
        self.target_up = _TargetUp(p + "target_up", target_up_help)
        r.register(self.target_up)
        # Never answered vs down, counted per entity and kind rather than per target: a second
        # per-target family would double target_up's memory and scrape (~10 MB and 7.9 MB per
        # scrape at 100,000 targets, the case where most addresses never answer), while these
        # are 3 series per entity and kind; the API's status lists which targets never answered.
        self.targets = Gauge(
            p + "targets",
            "Configured targets by state after hysteresis: up, down (answered before, not now), "
            "never_answered (no answer since the daemon started or the target was added)",
            ["entity", "kind", "state"],
            registry=r,
        )
        self._target_counts: dict[tuple[str, str, str], float] = {}
        self.block_belief = Gauge(
            p + "block_belief",
            "Belief (0..1) that the /24 block is up",
            ["entity", "block"],
            registry=r,
        )
        self.entity_state = Gauge(
            p + "entity_state",
            "One-hot state of the entity: up, degraded, partial, down, unknown",
            ["entity", "state"],
            registry=r,
        )
        self.outage_active = Gauge(
            p + "outage_active",
            "1 while an outage event of the entity is open",
            ["entity"],
            registry=r,
        )
        self.outages = Counter(
            p + "outages", "Outage events opened", ["entity", "kind"], registry=r
        )
        self.vantage_healthy = Gauge(
            p + "vantage_healthy",
            "1 when the controls answer; 0 means our own uplink is the problem",
            registry=r,
        )
        self.bgp_visibility = Gauge(
            p + "bgp_prefix_visibility_ratio",
            "Share of route-collector peers that see the prefix",
            ["entity", "prefix"],
            registry=r,
        )
        self.config_reload_ok = Gauge(
            p + "config_last_reload_successful",
            "1 when the last configuration load or reload succeeded",
            registry=r,
        )
        self.config_reload_time = Gauge(
            p + "config_last_reload_success_timestamp_seconds",
            "When the configuration was last loaded successfully",
            registry=r,
        )
        self.build_info = Gauge(
            p + "build_info", "Always 1; the version in a label", ["version"], registry=r
        )
        self.build_info.labels(__version__).set(1)
        self.tls_not_after = Gauge(
            p + "tls_cert_not_after_timestamp_seconds",
            "Expiry of the TLS certificate last seen on an HTTPS target",
            ["entity", "target"],
            registry=r,
        )
        self.tls_version_info = Gauge(
            p + "tls_version_info",
            "Always 1; the TLS version (TLSv1 ... TLSv1.3) and cipher last negotiated with an "
            "HTTPS target in labels",
            ["entity", "target", "version", "cipher"],
            registry=r,
        )
        # (entity, target) -> (version, cipher) of its one tls_version_info series, so that a
        # change of version replaces the series instead of adding a second one.
        self._tls_seen: dict[tuple[str, str], tuple[str, str]] = {}
        self.dns_soa_serial = Gauge(
            p + "dns_soa_serial",
            "SOA serial last answered by a DNS target",
            ["entity", "target"],
            registry=r,
        )
        # Discovery (monitor/discovery): census probes are counted in probes_total under
        # kind="census" (their failures are the silent addresses of a census: not counted).
        self.block_responsive = Gauge(
            p + "block_responsive_addresses",
            "Addresses of the /24 block in its ever-responsive set E(b) after the last census",
            ["entity", "block"],
            registry=r,
        )
        self.block_availability = Gauge(
            p + "block_availability",
            "A(E(b)): mean share of census probes answered by the block's responsive addresses",
            ["entity", "block"],
            registry=r,
        )
        self.block_monitorable = Gauge(
            p + "block_monitorable",
            "1 when the block has enough responsive addresses to be judged by sampling; 0: "
            "unmonitorable (reported, not judged)",
            ["entity", "block"],
            registry=r,
        )
        self.census_last = Gauge(
            p + "census_last_timestamp_seconds",
            "When the entity's last census of its prefixes finished (absent: none yet)",
            ["entity"],
            registry=r,
        )
        self._discovery_blocks: dict[str, set[str]] = {}
        self.probes_skipped = Counter(
            p + "probes_skipped",
            "Scheduled probes skipped because the previous one was still running (over budget)",
            ["entity", "kind"],
            registry=r,
        )
        self.probes_late = Counter(
            p + "probes_late",
            "Scheduled probes sent more than one second after their slot (rate budget too low)",
            ["entity", "kind"],
            registry=r,
        )
        self.event_store_healthy = Gauge(
            p + "event_store_healthy",
            "1 while the event log accepts writes; 0 on a full or read-only disk",
            registry=r,
        )
        # Filled by the ICMP engine's own counters at scrape time (see bind_icmp_ignored).
        self._icmp_ignored: Callable[[], Mapping[str, int]] = dict
        r.register(
            _CountersCollector(
                p + "icmp_replies_ignored",
                "ICMP packets ignored by the engine: stray, spoofed, mismatched, malformed",
                "reason",
                lambda: self._icmp_ignored(),
            )
        )
        # The scheduler's learned probe timeouts, read at scrape time (see bind_probe_timeouts).
        self._probe_timeouts: Callable[[], Mapping[str, float]] = dict
        r.register(
            _GaugesCollector(
                p + "probe_timeout_seconds",
                "Mean timeout of recent probes per kind, learned per path from the RTT between "
                "probing.min_timeout and probing.timeout",
                "kind",
                lambda: self._probe_timeouts(),
            )
        )
        # RIS Live client health, read from the client at scrape time (see bind_bgp).
        self._bgp: Any = None
        self.bgp_connected = Gauge(
            p + "ris_live_connected", "1 while the RIS Live websocket is connected", registry=r
        )
        self.bgp_connected.set_function(lambda: 1 if self._bgp and self._bgp.connected else 0)
        r.register(
            _CountersCollector(
                p + "ris_live_junk_frames",
                "RIS Live frames skipped: not JSON, unknown type, bad fields",
                "reason",
                lambda: dict(self._bgp.junk) if self._bgp else {},
            )
        )
        r.register(
            _ValueCollector(
                p + "ris_live_messages",
                "RIS Live messages handled",
                lambda: self._bgp.messages if self._bgp else None,
            )
        )
        self.consumer_errors = Counter(
            p + "change_consumer_errors",
            "Detector changes a consumer (metrics, event log, tracer, ...) failed to handle",
            ["consumer"],
            registry=r,
        )
        self.event_log_corrupt_rows = Gauge(
            p + "event_log_corrupt_rows",
            "Rows of the event log skipped because they could not be read",
            registry=r,
        )
        self.event_log_pending = Gauge(
            p + "event_log_pending",
            "Events accepted but not yet on disk (full or failing disk)",
            registry=r,
        )
        # Notifications (monitor/notify): per receiver *name*, never its URL (a secret).
        self.notifications_sent = Counter(
            p + "notifications_sent", "Notifications delivered", ["receiver"], registry=r
        )
        self.notifications_failed = Counter(
            p + "notifications_failed",
            "Notification delivery attempts that failed (retried with backoff)",
            ["receiver"],
            registry=r,
        )
        self.notifications_dropped = Counter(
            p + "notifications_dropped",
            "Notifications not sent: rate_limited, or expired (retried past max_age)",
            ["receiver", "reason"],
            registry=r,
        )
        self.notifications_queued = Gauge(
            p + "notifications_queued",
            "Notifications in the outbox waiting to be delivered",
            ["receiver"],
            registry=r,
        )
        self.notify_outbox_healthy = Gauge(
            p + "notify_outbox_healthy",
            "1 while the notification outbox accepts writes; 0 on a full or read-only disk",
            registry=r,
        )
        self.notify_outbox_write_errors = Counter(
            p + "notify_outbox_write_errors",
            "Failed writes to the notification outbox (notifications kept in memory meanwhile)",
            registry=r,
        )
        # The embedded history's counters, read from its store at scrape (see bind_history).
        self._history: Any = None
        r.register(
            _ValueCollector(
                p + "history_points_written",
                "History points (finest step) written to history.db",
                lambda: self._history.written if self._history else None,
            )
        )
        r.register(
            _CountersCollector(
                p + "history_points_dropped",
                "History points not written: disk (full, failing), queue (writer behind), error",
                "reason",
                lambda: dict(self._history.dropped) if self._history else {},
            )
        )
        r.register(
            _ValueCollector(
                p + "history_corrupt_rows",
                "Rows of history.db skipped because they could not be read",
                lambda: self._history.corrupt_rows if self._history else None,
            )
        )
        # (entity, block) -> (its child, the value last set): a tick touches changed ones only.
        self._blocks: dict[tuple[str, str], tuple[Gauge, float]] = {}
        self.vantage_healthy.set(1)
        self.event_store_healthy.set(1)
        self.notify_outbox_healthy.set(1)
        self._entities: set[str] = set()
        # Hot-path caches of labelled children, keyed by (entity, kind).
        self._probe_child: dict[tuple[str, str], Counter] = {}
        self._rtt_child: dict[tuple[str, str], Histogram] = {}

    def bind_history(self, store: Any) -> None:
        """The history store whose counters are exported (None: history off)."""
        self._history = store

    def bind_bgp(self, client: Any) -> None:
        """The RIS Live client whose health is exported (None when BGP is off)."""
        self._bgp = client

    def remove_bgp_visibility(self, entity: str, prefix: str) -> None:
        _remove(self.bgp_visibility, entity, prefix)

    def record_census(self, entity: str, result: ProbeResult) -> None:
        """One census probe: counted in probes_total under kind `census`."""
        self.probes.labels(entity, "census").inc()

    def set_discovery(
        self,
        entity: str,
        blocks: Iterable[tuple[str, int, float, bool]],
        last_census: float | None,
    ) -> None:
        """The entity's censused blocks (block, |E(b)|, A(E(b)), monitorable) and the time of
        its last census; blocks (or entities) no longer censused lose their series."""
        seen: set[str] = set()
        for block, size, avail, ok in blocks:
            seen.add(block)
            self.block_responsive.labels(entity, block).set(size)
            self.block_availability.labels(entity, block).set(avail)
            self.block_monitorable.labels(entity, block).set(1 if ok else 0)
        for gone in self._discovery_blocks.get(entity, set()) - seen:
            for m in (self.block_responsive, self.block_availability, self.block_monitorable):
                _remove(m, entity, gone)
        self._discovery_blocks[entity] = seen
        if last_census is None:
            _remove(self.census_last, entity)
        else:
            self.census_last.labels(entity).set(last_census)
        if not seen:
            self._discovery_blocks.pop(entity, None)

    def set_block_beliefs(self, beliefs: Iterable[tuple[str, str, float]]) -> None:
        """Snapshot of every /24 block's belief; blocks no longer judged lose their series."""
        had, now = self._blocks, {}
        for entity, block, belief in beliefs:
            key = (entity, block)
            known = had.get(key)
            if known is None:
                known = (self.block_belief.labels(entity, block), float("nan"))
            if known[1] != belief:
                known[0].set(belief)
                known = (known[0], belief)
            now[key] = known
        for gone in had.keys() - now.keys():
            _remove(self.block_belief, *gone)
        self._blocks = now

    def bind_probe_timeouts(self, source: Callable[[], Mapping[str, float]]) -> None:
        """Read `probe_timeout_seconds` from the scheduler at each scrape (kind -> seconds)."""
        self._probe_timeouts = source

    def bind_icmp_ignored(self, source: Callable[[], Mapping[str, int]]) -> None:
        """Read `icmp_replies_ignored_total` from the ICMP engine's counters at each scrape."""
        self._icmp_ignored = source

    def apply_config(self, config: Config) -> None:
        """Create the series of every configured target and entity; remove those that went."""
        wanted: dict[str, tuple[str, str]] = {}  # labels text of target_up -> (entity, kind)
        for name, t in configured_targets(config):
            wanted[_TargetKey(name, t.kind.value, t.key).labels_text()] = (name, t.kind.value)
        had = self.target_up.keys()
        for labels in had - wanted.keys():
            self.target_up.remove(labels)
            entity, kind, target = _parse_labels(labels)
            if kind == Kind.HTTP:
                _remove(self.tls_not_after, entity, target)
                if (tls := self._tls_seen.pop((entity, target), None)) is not None:
                    _remove(self.tls_version_info, entity, target, *tls)
            if kind == Kind.DNS:
                _remove(self.dns_soa_serial, entity, target)
        self.target_up.compact()
        # 0, not 1: a target is not up before it answered (the detector's hysteresis starts
        # "never answered" and makes it up at its first answer).
        self.target_up.add_all((lab for lab in wanted if lab not in had), 0)
        self._apply_target_counts(config, had, wanted)

        entities = {e.name for e in config.entities}
        pairs = set(wanted.values())
        # Discovering entities: sampled probes (icmp) and census probes, targets or not.
        pairs |= {(e.name, k) for e in config.entities if e.discover for k in ("icmp", "census")}
        for name in self._entities - entities:
            for state in STATES:
                _remove(self.entity_state, name, state)
            _remove(self.outage_active, name)
            for kind in EVENT_KINDS:
                _remove(self.outages, name, kind)
        for e in config.entities:
            if e.name not in self._entities:
                for state in STATES:
                    self.entity_state.labels(e.name, state).set(1 if state == "unknown" else 0)
                self.outage_active.labels(e.name).set(0)
                for kind in EVENT_KINDS:
                    self.outages.labels(e.name, kind)
        self._entities = entities
        for entity, kind in list(self._probe_child):
            if (entity, kind) not in pairs:
                del self._probe_child[(entity, kind)]
                del self._rtt_child[(entity, kind)]
                for m in (self.probes, self.rtt, self.probes_skipped, self.probes_late):
                    _remove(m, entity, kind)
                for reason in Reason:
                    _remove(self.failures, entity, kind, reason.value)
        for entity, kind in pairs:
            if (entity, kind) not in self._probe_child:
                self._probe_child[(entity, kind)] = self.probes.labels(entity, kind)
                self._rtt_child[(entity, kind)] = self.rtt.labels(entity, kind)
                self.probes_skipped.labels(entity, kind)
                self.probes_late.labels(entity, kind)
                for reason in Reason:
                    self.failures.labels(entity, kind, reason.value)

    def _apply_target_counts(
        self, config: Config, had: set[str], wanted: Mapping[str, tuple[str, str]]
    ) -> None:
        """`targets` at load: the series of every (entity, kind), new targets counted as never
        answered (the next `set_target_counts`, at the daemon's tick, brings the truth for
        targets a reload kept); pairs that went lose their series."""
        added: dict[tuple[str, str], int] = {}
        for lab, pair in wanted.items():
            if lab not in had:
                added[pair] = added.get(pair, 0) + 1
        pairs = set(wanted.values())
        counts: dict[tuple[str, str, str], float] = {}
        for entity, kind in pairs:
            for state in TargetState:
                key = (entity, kind, state.value)
                counts[key] = self._target_counts.get(key, 0)
            never = (entity, kind, TargetState.NEVER_ANSWERED.value)
            counts[never] += added.get((entity, kind), 0)
        self._replace_target_counts(counts)

    def set_target_counts(
        self, counts: Iterable[tuple[str, str, Mapping[TargetState, int]]]
    ) -> None:
        """Snapshot of the targets per state of every (entity, kind) (the detector's, and the
        controls' under entity `_controls`); pairs not given lose their series."""
        now: dict[tuple[str, str, str], float] = {}
        for entity, kind, by_state in counts:
            for state in TargetState:
                now[(entity, str(kind), state.value)] = by_state.get(state, 0)
        self._replace_target_counts(now)

    def _replace_target_counts(self, counts: dict[tuple[str, str, str], float]) -> None:
        had = self._target_counts
        for key, n in counts.items():
            if had.get(key) != n:
                self.targets.labels(*key).set(n)
        for gone in had.keys() - counts.keys():
            _remove(self.targets, *gone)
        self._target_counts = counts

    def record(self, entity: str, result: ProbeResult) -> None:
        """Count one probe result (hot path: cached children, no label lookups on success)."""
        kind = result.target.kind.value
        key = (entity, kind)
        child = self._probe_child.get(key)
        if child is None:  # a probe of a target removed by a reload while in flight
            return
        child.inc()
        if result.ok:
            if result.rtt is not None:
                self._rtt_child[key].observe(result.rtt)
            extra = result.extra
            if extra:
                not_after = extra.get("tls_not_after")
                if isinstance(not_after, int | float):
                    self.tls_not_after.labels(entity, result.target.key).set(not_after)
                version = extra.get("tls_version")
                if isinstance(version, str):
                    self._set_tls_version(entity, result.target.key, version, extra)
                serial = extra.get("soa_serial")
                if isinstance(serial, int):
                    self.dns_soa_serial.labels(entity, result.target.key).set(serial)
        else:
            reason = result.reason or Reason.OTHER
            self.failures.labels(entity, kind, reason.value).inc()

    def _set_tls_version(
        self, entity: str, target: str, version: str, extra: Mapping[str, object]
    ) -> None:
        cipher = extra.get("tls_cipher")
        now = (version, cipher if isinstance(cipher, str) else "")
        had = self._tls_seen.get((entity, target))
        if had == now:
            return
        if had is not None:
            _remove(self.tls_version_info, entity, target, *had)
        self.tls_version_info.labels(entity, target, *now).set(1)
        self._tls_seen[(entity, target)] = now

    def set_target_up(self, entity: str, target: Target, up: bool) -> None:
        labels = _TargetKey(entity, target.kind.value, target.key).labels_text()
        self.target_up.update(labels, 1 if up else 0)

    def on_change(self, c: Change) -> None:
        """The metrics of one detector change (a subscriber of the daemon's fan-out)."""
        if isinstance(c, TargetChanged):
            self.set_target_up(c.entity, c.target, c.up)
        elif isinstance(c, StateChanged):
            self.set_entity_state(c.entity, c.new.value)
        elif isinstance(c, VantageChanged):
            self.vantage_healthy.set(1 if c.healthy else 0)
        elif isinstance(c, EventOpened | EventUpdated | EventClosed):
            ev = c.event
            # An escalation is a new kind of outage (dns -> blackout): counted like an opening.
            if isinstance(c, EventOpened) or (isinstance(c, EventUpdated) and c.escalated):
                self.outages.labels(ev.entity, ev.kind.value).inc()
            self.outage_active.labels(ev.entity).set(1 if ev.open else 0)

    def set_entity_state(self, entity: str, state: str) -> None:
        if entity not in self._entities:
            return
        for s in STATES:
            self.entity_state.labels(entity, s).set(1 if s == state else 0)

    def render(self) -> bytes:
        """The text exposition; blocking, call it off the event loop."""
        _, parts = self.render_parts()
        return b"".join(parts)

    def render_rest(self) -> bytes:
        """Every family but target_up, as text (blocking: call this off the event loop)."""
        _rendering.active = True
        try:
            return generate_latest(self.registry)
        finally:
            _rendering.active = False

    def render_parts(
        self, rest: bytes | None = None, chunk: int = 1 << 18
    ) -> tuple[int, Iterator[bytes]]:
        """The text exposition as (its length in bytes, its parts in order), for streaming:
        `rest` (from `render_rest`, rendered here when not given), then target_up's lines in
        slices of `chunk` bytes, to be consumed on the loop, where target_up changes. 100,000
        targets: ~30 slices of microseconds each."""
        if rest is None:
            rest = self.render_rest()
        up = self.target_up
        return len(rest) + up.size(), chain((rest,), up.text_parts(chunk))


def _remove(metric: Counter | Gauge | Histogram, *labels: str) -> None:
    with contextlib.suppress(KeyError):
        metric.remove(*labels)
