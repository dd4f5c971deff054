"""An outage event's evidence as typed records, with one codec (`to_json` / `from_json`).

The detector builds an `Evidence` for every version of an event; the event log stores its JSON
form; the API, the pages and the exports show that JSON form; `from_json` reads it back (the
store at a restart, an import). Nothing else reads evidence as a dict with string keys.

`from_json` is lenient by design: a stored row may come from an older or newer version, or
from a hand-edited export. Malformed parts are dropped (a field that is not what it should
be reads as absent), and top-level keys it does not know are kept verbatim in `other` so that
writing the event back loses nothing.

Times are epoch seconds here and UTC ISO 8601 strings in the JSON form.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from monitor.detect.times import JSON, iso, iso_or_none, parse_time

# Blind intervals and restarts listed per event: an event that lives for months with a flaky
# vantage or a crash loop must not grow without bound. The first entries (how it began) and
# the latest are kept; the rest are counted in `*_dropped`.
MAX_BLIND = 32
MAX_RESUMED = 32


def time_or_none(value: object) -> float | None:
    """A stored time (ISO 8601 or epoch) read back, or None when it is not one."""
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        return None
    try:
        return parse_time(value)
    except (ValueError, OverflowError, OSError):
        return None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: object, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _num(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _dict(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def bounded_append(items: list[Any], item: Any, limit: int) -> int:
    """Append, keeping the first entry and the latest `limit - 1`; returns how many entries
    were dropped (0 or 1)."""
    items.append(item)
    if len(items) > limit:
        del items[1]
        return 1
    return 0


# --- per kind: the last good and first failed probe -----------------------------------------


@dataclass(frozen=True, slots=True)
class Seen:
    """A probe at a time: the last one that answered before the trouble."""

    target: str
    time: float

    def to_json(self) -> JSON:
        return {"target": self.target, "time": iso(self.time)}

    @classmethod
    def from_json(cls, doc: object) -> Seen | None:
        d = _dict(doc)
        t = time_or_none(d.get("time"))
        return None if t is None else cls(str(d.get("target")), t)


@dataclass(frozen=True, slots=True)
class Failure:
    """The first failed probe of a kind, with its reason (a `Reason` value) and detail."""

    target: str
    time: float
    reason: str
    detail: str

    def to_json(self) -> JSON:
        return {
            "target": self.target,
            "time": iso(self.time),
            "reason": self.reason,
            "detail": self.detail,
        }

    @classmethod
    def from_json(cls, doc: object) -> Failure | None:
        d = _dict(doc)
        t = time_or_none(d.get("time"))
        if t is None:
            return None
        return cls(str(d.get("target")), t, str(d.get("reason")), str(d.get("detail")))


@dataclass(frozen=True, slots=True)
class KindEvidence:
    last_good: Seen | None = None
    first_failed: Failure | None = None

    def to_json(self) -> JSON:
        return {
            "last_good": None if self.last_good is None else self.last_good.to_json(),
            "first_failed": None if self.first_failed is None else self.first_failed.to_json(),
        }

    @classmethod
    def from_json(cls, doc: object) -> KindEvidence:
        d = _dict(doc)
        return cls(Seen.from_json(d.get("last_good")), Failure.from_json(d.get("first_failed")))


# --- blocks, blind intervals ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BlockEvidence:
    """A /24 (/48) that went down during the event: its first failure and the answer that
    brought it back (None while still down)."""

    block: str
    first_failed: float | None
    recovered: float | None

    def to_json(self) -> JSON:
        return {
            "block": self.block,
            "first_failed": iso_or_none(self.first_failed),
            "recovered": iso_or_none(self.recovered),
        }

    @classmethod
    def from_json(cls, doc: object) -> BlockEvidence | None:
        d = _dict(doc)
        block = _str(d.get("block"))
        if block is None:
            return None
        return cls(block, time_or_none(d.get("first_failed")), time_or_none(d.get("recovered")))


@dataclass(frozen=True, slots=True)
class Interval:
    """A span of time; `end` None while it lasts (a blind interval of the vantage)."""

    start: float | None
    end: float | None

    def to_json(self) -> JSON:
        return {"start": iso_or_none(self.start), "end": iso_or_none(self.end)}

    @classmethod
    def from_json(cls, doc: object) -> Interval | None:
        d = _dict(doc)
        if not d:
            return None
        return cls(time_or_none(d.get("start")), time_or_none(d.get("end")))


# --- BGP ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BgpWithdrawal:
    """The withdrawal episode of a prefix: first withdrawal of the storm, when the ratio fell
    below the threshold, how many peers withdrew, the ratio then."""

    first: float | None
    confirmed: float | None
    peers_withdrawn: int
    ratio: float | None

    def to_json(self) -> JSON:
        return {
            "first": iso_or_none(self.first),
            "confirmed": iso_or_none(self.confirmed),
            "peers_withdrawn": self.peers_withdrawn,
            "ratio": self.ratio,
        }

    @classmethod
    def from_json(cls, doc: object) -> BgpWithdrawal | None:
        d = _dict(doc)
        if not d:
            return None
        return cls(
            time_or_none(d.get("first")),
            time_or_none(d.get("confirmed")),
            _int(d.get("peers_withdrawn")),
            _num(d.get("ratio")),
        )


@dataclass(frozen=True, slots=True)
class SpecificVisibility:
    visibility_ratio: float | None
    peers_seeing: int

    def to_json(self) -> JSON:
        return {"visibility_ratio": self.visibility_ratio, "peers_seeing": self.peers_seeing}


@dataclass(frozen=True, slots=True)
class PrefixRouting:
    """The routing picture of one watched prefix when the event opened or escalated."""

    visibility_ratio: float | None
    peers_seeing: int
    peers_recent: int
    more_specifics_missing: Mapping[str, SpecificVisibility] = field(default_factory=dict)
    withdrawal: BgpWithdrawal | None = None

    def to_json(self) -> JSON:
        return {
            "visibility_ratio": self.visibility_ratio,
            "peers_seeing": self.peers_seeing,
            "peers_recent": self.peers_recent,
            "more_specifics_missing": {
                p: v.to_json() for p, v in self.more_specifics_missing.items()
            },
            "withdrawal": None if self.withdrawal is None else self.withdrawal.to_json(),
        }

    @classmethod
    def from_json(cls, doc: object) -> PrefixRouting:
        d = _dict(doc)
        missing = {
            str(p): SpecificVisibility(
                _num(_dict(v).get("visibility_ratio")), _int(_dict(v).get("peers_seeing"))
            )
            for p, v in _dict(d.get("more_specifics_missing")).items()
        }
        return cls(
            _num(d.get("visibility_ratio")),
            _int(d.get("peers_seeing")),
            _int(d.get("peers_recent")),
            missing,
            BgpWithdrawal.from_json(d.get("withdrawal")),
        )


# --- path -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OwnerRef:
    """Who a router address belongs to (an `upstreams` entry or a watched entity)."""

    name: str
    asn: int | None
    prefix: str

    @property
    def label(self) -> str:
        return self.name if self.asn is None else f"{self.name} AS{self.asn}"

    def to_json(self) -> JSON:
        return {"name": self.name, "asn": self.asn, "prefix": self.prefix}

    @classmethod
    def from_json(cls, doc: object) -> OwnerRef | None:
        d = _dict(doc)
        name = _str(d.get("name"))
        if name is None:
            return None
        asn = d.get("asn")
        return cls(name, asn if isinstance(asn, int) else None, str(d.get("prefix")))


@dataclass(frozen=True, slots=True)
class HopEvidence:
    """One hop of the path. A silent hop has only `ttl`; the last answer of the path also
    says where it was learnt (`source`: traceroute or probes, whose `ttl` is None)."""

    ttl: int | None
    address: str | None = None
    rtt_ms: float | None = None
    answer: str | None = None  # time_exceeded, unreachable, reply
    note: str = ""  # "!H", "!N", ... for unreachable answers
    owner: OwnerRef | None = None
    source: str | None = None

    def to_json(self) -> JSON:
        d: JSON = {"ttl": self.ttl, "address": self.address}
        if self.address is not None:
            if self.source != "probes":
                d["rtt_ms"] = self.rtt_ms
            d["answer"] = self.answer
            if self.note or self.source == "probes":
                d["note"] = self.note
            d["owner"] = None if self.owner is None else self.owner.to_json()
        if self.source is not None:
            d["source"] = self.source
        return d

    @classmethod
    def from_json(cls, doc: object) -> HopEvidence | None:
        d = _dict(doc)
        if not d:
            return None
        ttl = d.get("ttl")
        return cls(
            ttl if isinstance(ttl, int) and not isinstance(ttl, bool) else None,
            _str(d.get("address")),
            _num(d.get("rtt_ms")),
            _str(d.get("answer")),
            _str(d.get("note")) or "",
            OwnerRef.from_json(d.get("owner")),
            _str(d.get("source")),
        )


@dataclass(frozen=True, slots=True)
class UnreachableSighting:
    """A router that answered "destination unreachable" to ordinary probes of a block."""

    address: str
    block: str
    answers: int
    first: float
    last: float
    note: str
    owner: OwnerRef | None = None

    def to_json(self) -> JSON:
        return {
            "address": self.address,
            "block": self.block,
            "answers": self.answers,
            "first": iso(self.first),
            "last": iso(self.last),
            "note": self.note,
            "owner": None if self.owner is None else self.owner.to_json(),
        }

    @classmethod
    def from_json(cls, doc: object) -> UnreachableSighting | None:
        d = _dict(doc)
        first, last = time_or_none(d.get("first")), time_or_none(d.get("last"))
        address = _str(d.get("address"))
        if first is None or last is None or address is None:
            return None
        return cls(
            address,
            str(d.get("block")),
            _int(d.get("answers")),
            first,
            last,
            _str(d.get("note")) or "",
            OwnerRef.from_json(d.get("owner")),
        )


@dataclass(frozen=True, slots=True)
class PathEvidence:
    """Where the path toward an affected address ends: a traceroute, the routers that
    answered unreachable to the ordinary probes, the last answering hop and a sentence."""

    target: str
    started: float
    duration_seconds: float
    reached: bool
    hops: tuple[HopEvidence, ...]
    silent_after: int
    max_hops: int
    error: str | None
    unreachable_from: tuple[UnreachableSighting, ...]
    last_answer: HopEvidence | None
    summary: str
    trigger: str | None = None

    def to_json(self) -> JSON:
        d: JSON = {
            "target": self.target,
            "started": iso(self.started),
            "duration_seconds": self.duration_seconds,
            "reached": self.reached,
            "hops": [h.to_json() for h in self.hops],
            "silent_after": self.silent_after,
            "max_hops": self.max_hops,
            "error": self.error,
            "unreachable_from": [s.to_json() for s in self.unreachable_from],
            "last_answer": None if self.last_answer is None else self.last_answer.to_json(),
            "summary": self.summary,
        }
        if self.trigger is not None:
            d["trigger"] = self.trigger
        return d

    @classmethod
    def from_json(cls, doc: object) -> PathEvidence | None:
        d = _dict(doc)
        started = time_or_none(d.get("started"))
        if started is None:
            return None
        return cls(
            str(d.get("target")),
            started,
            _num(d.get("duration_seconds")) or 0.0,
            d.get("reached") is True,
            tuple(h for h in map(HopEvidence.from_json, _list(d.get("hops"))) if h is not None),
            _int(d.get("silent_after")),
            _int(d.get("max_hops")),
            _str(d.get("error")),
            tuple(
                s
                for s in map(UnreachableSighting.from_json, _list(d.get("unreachable_from")))
                if s is not None
            ),
            HopEvidence.from_json(d.get("last_answer")),
            str(d.get("summary") or ""),
            _str(d.get("trigger")),
        )


# --- the whole ------------------------------------------------------------------------------

_KNOWN = frozenset(
    {
        "kinds",
        "failure_order",
        "blocks",
        "targets_down",
        "vantage_blind",
        "vantage_blind_dropped",
        "resumed_at",
        "resumed_dropped",
        "bgp",
        "path",
    }
)


@dataclass(frozen=True, slots=True)
class Evidence:
    """What an event's evidence says: per kind the last good and first failed probe, the
    order in which kinds failed, the blocks lost and back, the web/DNS targets down, the
    vantage's blind intervals, the restarts it survived, the routing picture and the path."""

    kinds: Mapping[str, KindEvidence] = field(default_factory=dict)
    failure_order: tuple[str, ...] = ()
    blocks: tuple[BlockEvidence, ...] = ()
    targets_down: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    vantage_blind: tuple[Interval, ...] = ()
    vantage_blind_dropped: int = 0
    resumed_at: tuple[float, ...] = ()
    resumed_dropped: int = 0
    bgp: Mapping[str, PrefixRouting] | None = None
    path: PathEvidence | None = None
    # Keys this version does not know (written by a newer one): kept verbatim.
    other: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> JSON:
        d: JSON = dict(self.other)
        d.update(
            {
                "kinds": {k: v.to_json() for k, v in self.kinds.items()},
                "failure_order": list(self.failure_order),
                "blocks": [b.to_json() for b in self.blocks],
                "targets_down": {k: list(v) for k, v in self.targets_down.items()},
                "vantage_blind": [i.to_json() for i in self.vantage_blind],
                "resumed_at": [iso(t) for t in self.resumed_at],
            }
        )
        if self.vantage_blind_dropped:
            d["vantage_blind_dropped"] = self.vantage_blind_dropped
        if self.resumed_dropped:
            d["resumed_dropped"] = self.resumed_dropped
        if self.bgp is not None:
            d["bgp"] = {p: r.to_json() for p, r in self.bgp.items()}
        if self.path is not None:
            d["path"] = self.path.to_json()
        return d

    @classmethod
    def from_json(cls, doc: object) -> Evidence:
        """Read the JSON form back; never raises (see the module's docstring)."""
        d = _dict(doc)
        blocks = tuple(
            b for b in map(BlockEvidence.from_json, _list(d.get("blocks"))) if b is not None
        )
        blind = tuple(
            i for i in map(Interval.from_json, _list(d.get("vantage_blind"))) if i is not None
        )
        resumed = tuple(t for t in map(time_or_none, _list(d.get("resumed_at"))) if t is not None)
        targets = {
            str(k): tuple(str(x) for x in v)
            for k, v in _dict(d.get("targets_down")).items()
            if isinstance(v, list)
        }
        bgp_doc = d.get("bgp")
        return cls(
            kinds={str(k): KindEvidence.from_json(v) for k, v in _dict(d.get("kinds")).items()},
            failure_order=tuple(str(k) for k in _list(d.get("failure_order"))),
            blocks=blocks,
            targets_down=targets,
            vantage_blind=blind,
            vantage_blind_dropped=_int(d.get("vantage_blind_dropped")),
            resumed_at=resumed,
            resumed_dropped=_int(d.get("resumed_dropped")),
            bgp=None
            if not isinstance(bgp_doc, dict)
            else {str(p): PrefixRouting.from_json(r) for p, r in bgp_doc.items()},
            path=PathEvidence.from_json(d.get("path")),
            other={k: v for k, v in d.items() if k not in _KNOWN},
        )
