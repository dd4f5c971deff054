"""Which receiver is told what, and when: the pure half of notifications (no I/O, no clock:
every call carries `now`).

Rules (what users rely on):

- **Filters.** A receiver hears of an event while the event matches it: the entity is in
  `entities`, the kind in `kinds`, and the kind is at least `min_severity`
  (`params.NOTIFY_SEVERITY`: degraded < web = dns = routing < partial < blackout). The first
  time an event matches (when it opens, or when it escalates into the receiver's filters) is
  its `opened` for that receiver; a later escalation to a kind not yet told is `escalated`
  (so at most once per kind: kinds only rise); the end is `closed`, sent only for an event
  the receiver heard of. `transitions` picks among the three.
- **One pair per incident.** The detector keeps a flapping outage one event (relapses within
  `merge_gap` continue it, `EventClosed` comes once); new phases, recovery marks and
  re-openings of the same event are `EventUpdated` without escalation and say nothing.
- **Rate limit.** At most `rate_limit` opened/escalated/vantage notices per receiver per
  sliding hour; one over the limit is dropped (counted, reason `rate_limited`), and so is
  the closed message of an event whose opened was dropped. A closed message is never
  dropped otherwise: whoever was told it began is told it ended.
- **Vantage.** While the vantage is unhealthy the detector opens, closes and escalates
  nothing; should a change arrive anyway it is held and handled once the vantage is back
  (the truth known then). Receivers with `vantage: true` get `vantage offline` when it
  goes and `vantage back` when it returns.
- **Resume.** After a restart, `resume(open events)` re-derives who heard of what and
  re-offers each receiver the `opened` message of the events that match it (younger than
  its `max_age`): the outbox keeps one row per key, so one already queued or sent is not
  sent again, and one lost by a crash between the event log and the outbox is sent now.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from monitor.detect.model import (
    Change,
    EventClosed,
    EventOpened,
    EventRecord,
    EventUpdated,
    VantageChanged,
)
from monitor.notify import format as fmt
from monitor.notify.model import Notification, event_key
from monitor.notify.params import NOTIFY_SEVERITY, NotifyReceiver, Transition

HOUR = 3600.0
MAX_HELD = 1000  # changes held while blind (the detector sends none then: a bound, not a need)


@dataclass(slots=True)
class _Told:
    """What one receiver was told of one event."""

    matched: bool = False
    suppressed: bool = False  # its opened was rate-limited away
    kinds: set[str] = field(default_factory=set)
    last_kind: str | None = None


@dataclass(frozen=True, slots=True)
class Dropped:
    receiver: str
    key: str
    reason: str  # rate_limited


@dataclass(slots=True)
class Decisions:
    notifications: list[Notification] = field(default_factory=list)
    dropped: list[Dropped] = field(default_factory=list)

    def extend(self, other: Decisions) -> None:
        self.notifications += other.notifications
        self.dropped += other.dropped


def matches(r: NotifyReceiver, ev: EventRecord) -> bool:
    if r.entities is not None and ev.entity not in r.entities:
        return False
    if r.kinds is not None and ev.kind not in r.kinds:
        return False
    return NOTIFY_SEVERITY.get(ev.kind, 0) >= NOTIFY_SEVERITY[r.min_severity]


class Policy:
    def __init__(
        self, receivers: Sequence[NotifyReceiver], opts: fmt.FormatOptions | None = None
    ) -> None:
        self.receivers: tuple[NotifyReceiver, ...] = ()
        self.opts = opts or fmt.FormatOptions()
        self._told: dict[tuple[str, str], _Told] = {}
        self._sent_at: dict[str, collections.deque[float]] = {}
        self.vantage_healthy = True
        self._offline_at: float | None = None
        self._offline_told: set[str] = set()  # receivers told `vantage offline`
        self._held: list[Change] = []
        self.configure(receivers, self.opts)

    def configure(self, receivers: Sequence[NotifyReceiver], opts: fmt.FormatOptions) -> None:
        """A reload: receivers kept by name keep what they were told and their rate window."""
        self.receivers = tuple(receivers)
        self.opts = opts
        names = {r.name for r in receivers}
        self._told = {k: v for k, v in self._told.items() if k[0] in names}
        self._sent_at = {n: self._sent_at.get(n) or collections.deque() for n in names}
        self._offline_told &= names

    # --- the fan-out's changes ----------------------------------------------------------------

    def on_change(self, change: Change, now: float) -> Decisions:
        if isinstance(change, VantageChanged):
            return self._vantage(change, now)
        if not isinstance(change, EventOpened | EventUpdated | EventClosed):
            return Decisions()
        if not self.vantage_healthy:
            if len(self._held) < MAX_HELD:
                self._held.append(change)
            return Decisions()
        out = Decisions()
        for r in self.receivers:
            self._event(r, change, now, out)
        return out

    def resume(self, events: Iterable[EventRecord], now: float) -> Decisions:
        """Open events continued after a restart (see the module docstring)."""
        out = Decisions()
        for ev in events:
            if ev.end is not None and not ev.recovering:
                continue
            for r in self.receivers:
                if not matches(r, ev):
                    continue
                told = self._told.setdefault((r.name, ev.id), _Told())
                told.matched = True
                told.kinds.add(ev.kind.value)
                told.last_kind = ev.kind.value
                if Transition.OPENED in r.transitions and now - ev.start <= r.max_age:
                    out.notifications.append(self._make(r, ev, Transition.OPENED, now, None))
        return out

    # --- events -------------------------------------------------------------------------------

    def _event(
        self,
        r: NotifyReceiver,
        change: EventOpened | EventUpdated | EventClosed,
        now: float,
        out: Decisions,
    ) -> None:
        ev = change.event
        k = (r.name, ev.id)
        if isinstance(change, EventClosed):
            told = self._told.pop(k, None)
            heard = told.matched and not told.suppressed if told is not None else matches(r, ev)
            if heard and Transition.CLOSED in r.transitions:
                out.notifications.append(self._make(r, ev, Transition.CLOSED, now, None))
            return
        if isinstance(change, EventUpdated) and not change.escalated and k in self._told:
            return  # a phase, a recovery mark, a relapse: nothing new to say
        if not matches(r, ev):
            return
        told = self._told.setdefault(k, _Told())
        kind = ev.kind.value
        if not told.matched:
            told.matched = True
            told.kinds.add(kind)
            told.last_kind = kind
            if Transition.OPENED in r.transitions:
                n = self._make(r, ev, Transition.OPENED, now, None)
                if self._admit(r, now):
                    out.notifications.append(n)
                else:
                    told.suppressed = True
                    out.dropped.append(Dropped(r.name, n.key, "rate_limited"))
            return
        if kind in told.kinds or told.suppressed:
            return
        previous = told.last_kind
        told.kinds.add(kind)
        told.last_kind = kind
        if Transition.ESCALATED in r.transitions:
            n = self._make(r, ev, Transition.ESCALATED, now, previous)
            if self._admit(r, now):
                out.notifications.append(n)
            else:
                out.dropped.append(Dropped(r.name, n.key, "rate_limited"))

    def _make(
        self,
        r: NotifyReceiver,
        ev: EventRecord,
        transition: Transition,
        now: float,
        previous: str | None,
    ) -> Notification:
        key = event_key(ev.id, transition, ev.kind.value)
        title, body = fmt.render(ev, transition, r.message_format, self.opts, key, now, previous)
        return Notification(
            receiver=r.name,
            key=key,
            transition=transition,
            created=now,
            title=title,
            body=body,
            entity=ev.entity,
            kind=ev.kind.value,
            event_id=ev.id,
        )

    def _admit(self, r: NotifyReceiver, now: float) -> bool:
        """Count one opened/escalated/vantage notice against the receiver's hourly limit."""
        if r.rate_limit <= 0:
            return True
        window = self._sent_at.setdefault(r.name, collections.deque())
        while window and window[0] <= now - HOUR:
            window.popleft()
        if len(window) >= r.rate_limit:
            return False
        window.append(now)
        return True

    # --- the vantage --------------------------------------------------------------------------

    def _vantage(self, change: VantageChanged, now: float) -> Decisions:
        out = Decisions()
        if not change.healthy:
            if not self.vantage_healthy:
                return out
            self.vantage_healthy = False
            self._offline_at = change.at
            self._offline_told.clear()
            for r in self.receivers:
                if not r.vantage:
                    continue
                key = f"vantage/{change.at:.0f}/offline"
                if not self._admit(r, now):
                    out.dropped.append(Dropped(r.name, key, "rate_limited"))
                    continue
                self._offline_told.add(r.name)
                out.notifications.append(
                    self._vantage_note(r, Transition.VANTAGE_OFFLINE, change.at, now, key)
                )
            return out
        if self.vantage_healthy:
            return out
        self.vantage_healthy = True
        offline_at = self._offline_at if self._offline_at is not None else change.at
        for r in self.receivers:
            if r.name in self._offline_told:
                key = f"vantage/{offline_at:.0f}/back"
                out.notifications.append(
                    self._vantage_note(r, Transition.VANTAGE_BACK, offline_at, change.at, key)
                )
        self._offline_told.clear()
        self._offline_at = None
        held, self._held = self._held, []
        for c in held:
            out.extend(self.on_change(c, now))
        return out

    def _vantage_note(
        self, r: NotifyReceiver, transition: Transition, offline_at: float, now: float, key: str
    ) -> Notification:
        title, body = fmt.vantage_message(transition, offline_at, now, self.opts, key)
        return Notification(r.name, key, transition, now, title, body)

    # --- introspection (tests, status) --------------------------------------------------------

    def told(self, receiver: str, event_id: str) -> set[str]:
        t = self._told.get((receiver, event_id))
        return set() if t is None else set(t.kinds)
