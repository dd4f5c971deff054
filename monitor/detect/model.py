"""The vocabulary of detection: entity states, event kinds, outage events and the changes the
detector reports to the daemon. Pure data and time formatting, no I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from monitor.annotations import Annotations
from monitor.detect.evidence import Evidence
from monitor.detect.times import JSON, iso, iso_or_none, parse_time
from monitor.probes.base import Target

__all__ = [
    "JSON",
    "SEVERITY",
    "Change",
    "EventClosed",
    "EventKind",
    "EventOpened",
    "EventRecord",
    "EventUpdated",
    "Evidence",
    "State",
    "StateChanged",
    "TargetChanged",
    "VantageChanged",
    "iso",
    "iso_or_none",
    "parse_time",
]


class State(enum.StrEnum):
    """An entity's state (the `state` label of `entity_state`)."""

    UP = "up"
    DEGRADED = "degraded"
    PARTIAL = "partial"
    DOWN = "down"
    UNKNOWN = "unknown"


class EventKind(enum.StrEnum):
    """The kinds of outage event (the `kind` label of `outages_total`)."""

    BLACKOUT = "blackout"
    PARTIAL = "partial"
    WEB = "web"
    DNS = "dns"
    DEGRADED = "degraded"
    ROUTING = "routing"


# An event's kind is the most severe of the issues seen during it (it escalates, never lowers).
SEVERITY: Mapping[EventKind, int] = {
    EventKind.DEGRADED: 1,
    EventKind.WEB: 2,
    EventKind.DNS: 3,
    EventKind.PARTIAL: 4,
    EventKind.ROUTING: 5,
    EventKind.BLACKOUT: 6,
}


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One outage event as stored and served. Times are epoch seconds (UTC); `end` is None
    while the event is open. `signals` is JSON-ready (times as ISO strings); `evidence` is a
    typed record whose `to_json()` is what the API and the event log hold."""

    id: str
    entity: str
    kind: EventKind
    start: float
    end: float | None
    signals: JSON = field(default_factory=dict)
    evidence: Evidence = field(default_factory=Evidence)
    # What people added (monitor/annotations.py); stored apart, the detector never sets it.
    annotations: Annotations | None = None

    @property
    def open(self) -> bool:
        return self.end is None

    @property
    def recovering(self) -> bool:
        """Back up, but within `merge_gap` of its end: the end shown is provisional and a
        relapse continues this event (the detector's last phase is then `recovered`)."""
        if self.end is None:
            return False
        phases = self.signals.get("phases")
        last = phases[-1] if isinstance(phases, list) and phases else None
        return isinstance(last, dict) and last.get("kind") == "recovered"

    def duration(self, now: float | None = None) -> float | None:
        """Seconds from start to end (or to `now` while open; None if open and no `now`)."""
        end = self.end if self.end is not None else now
        return None if end is None else round(max(0.0, end - self.start), 3)

    def to_api(self, now: float | None = None) -> JSON:
        """The `/api/v1/outages` shape; `duration_seconds` of an open event runs to `now`."""
        doc: JSON = {
            "id": self.id,
            "entity": self.entity,
            "kind": self.kind.value,
            "start": iso(self.start),
            "end": None if self.end is None else iso(self.end),
            "duration_seconds": self.duration(now),
            "signals": self.signals,
            "evidence": self.evidence.to_json(),
        }
        if self.annotations is not None:  # absent until someone annotates the event
            doc["annotations"] = self.annotations.to_json()
        return doc


# --- changes reported by the detector -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StateChanged:
    """An entity's state changed (set `entity_state`, log at INFO). `at` is when it was decided,
    `since` the time of the evidence (first failure of the issue, or the recovering answer)."""

    entity: str
    old: State
    new: State
    at: float
    since: float
    signals: JSON


@dataclass(frozen=True, slots=True)
class EventOpened:
    """A new outage event (store it, `outages_total{kind}` += 1, `outage_active` = 1)."""

    event: EventRecord


@dataclass(frozen=True, slots=True)
class EventUpdated:
    """An open event changed: its kind escalated (`previous_kind` differs from `event.kind`),
    a new phase began, or recovery started (`signals.recovered_at`). Store it."""

    event: EventRecord
    previous_kind: EventKind

    @property
    def escalated(self) -> bool:
        return self.previous_kind != self.event.kind


@dataclass(frozen=True, slots=True)
class EventClosed:
    """The event ended (store it, `outage_active` = 0)."""

    event: EventRecord


@dataclass(frozen=True, slots=True)
class VantageChanged:
    """The controls answer again (healthy) or not (set `vantage_healthy`)."""

    healthy: bool
    at: float


@dataclass(frozen=True, slots=True)
class TargetChanged:
    """A target's up/down after hysteresis flipped (set `target_up`). `first`: the target's
    first answer since the daemon started or it was added (it was never answered, not down:
    no recovery, and logged at DEBUG only, so that a start makes no wave of log lines)."""

    entity: str
    target: Target
    up: bool
    at: float
    first: bool = False


@dataclass(frozen=True, slots=True)
class FirstRoundDone:
    """Every target of an entity has had its first round (since the start, or since a reload
    added targets): the one log line that names how many never answered, instead of a line
    per silent target. `never_answered`: count per kind; `examples`: a few of their keys."""

    entity: str
    never_answered: Mapping[str, int]
    examples: tuple[str, ...]
    at: float


Change = (
    StateChanged
    | EventOpened
    | EventUpdated
    | EventClosed
    | VantageChanged
    | TargetChanged
    | FirstRoundDone
)
