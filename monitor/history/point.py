"""One history point: what the daemon knew of one entity over one step. Pure data, no I/O.

`HistoryPoint` has one codec, `to_json`/`from_json` (the API's point is `to_api`, the same
fields with `t` as UTC ISO 8601 and without the entity and step, which the answer names once).
The store keeps the fields in a compact row form (`monitor.history.store`), built from and
read back into this record only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from monitor.detect.model import State
from monitor.detect.times import JSON, iso

# Severity of a state for aggregation ("the worst state held during the step"): an outage is
# never hidden by zooming out, and a blind vantage (unknown) shows over a healthy up.
STATE_RANK: Mapping[State, int] = {
    State.UP: 0,
    State.UNKNOWN: 1,
    State.DEGRADED: 2,
    State.PARTIAL: 3,
    State.DOWN: 4,
}
# A point names at most this many blocks and prefixes (sorted, the first kept): the size of a
# point, hence of the database, is bounded whatever the configuration (docs in __init__).
MAX_BLOCKS = 1024
MAX_PREFIXES = 256


def worst(states: list[State]) -> State:
    """The most severe of `states` (UNKNOWN when none is given)."""
    return max(states, key=STATE_RANK.__getitem__, default=State.UNKNOWN)


@dataclass(frozen=True, slots=True)
class HistoryPoint:
    """Entity `entity` over [t, t + step): `state` the worst it held; per kind the targets
    configured, up (after hysteresis, at the step's end), answered (at least once in the step);
    `loss` the share of probes of responsive targets left unanswered (None: none was sent);
    `rtt_median` the median ICMP round trip of the step, seconds (None: no answer); `blocks`
    /24 -> belief at the step's end; `bgp` prefix -> visibility ratio; `vantage_healthy`
    False if the vantage was unhealthy at any time in the step."""

    entity: str
    t: float
    step: int
    state: State
    targets: Mapping[str, int] = field(default_factory=dict)
    up: Mapping[str, int] = field(default_factory=dict)
    answered: Mapping[str, int] = field(default_factory=dict)
    loss: float | None = None
    rtt_median: float | None = None
    blocks: Mapping[str, float] = field(default_factory=dict)
    bgp: Mapping[str, float] = field(default_factory=dict)
    vantage_healthy: bool = True

    def to_json(self) -> JSON:
        return {
            "entity": self.entity,
            "t": self.t,
            "step": self.step,
            **self._fields(),
        }

    def to_api(self) -> JSON:
        """A point of `GET /api/v1/history`: `t` as UTC ISO 8601, no entity or step."""
        return {"t": iso(self.t), **self._fields()}

    def _fields(self) -> JSON:
        return {
            "state": self.state.value,
            "targets": dict(self.targets),
            "up": dict(self.up),
            "answered": dict(self.answered),
            "loss": self.loss,
            "rtt_median": self.rtt_median,
            "blocks": dict(self.blocks),
            "bgp": dict(self.bgp),
            "vantage_healthy": self.vantage_healthy,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> HistoryPoint:
        """The inverse of `to_json`; ValueError names the field that is wrong."""
        entity = doc.get("entity")
        if not isinstance(entity, str) or not entity:
            raise ValueError(f"entity: not a non-empty string: {entity!r}")
        step = doc.get("step")
        if isinstance(step, bool) or not isinstance(step, int) or step <= 0:
            raise ValueError(f"step: not a positive integer: {step!r}")
        raw = doc.get("state")
        if not isinstance(raw, str) or raw not in State.__members__.values():
            raise ValueError(f"state: unknown {raw!r}")
        state = State(raw)
        vh = doc.get("vantage_healthy", True)
        if not isinstance(vh, bool):
            raise ValueError(f"vantage_healthy: not a boolean: {vh!r}")
        return cls(
            entity=entity,
            t=_number("t", doc.get("t"), 0.0, None),
            step=step,
            state=state,
            targets=_counts("targets", doc.get("targets", {})),
            up=_counts("up", doc.get("up", {})),
            answered=_counts("answered", doc.get("answered", {})),
            loss=_optional("loss", doc.get("loss"), 0.0, 1.0),
            rtt_median=_optional("rtt_median", doc.get("rtt_median"), 0.0, None),
            blocks=_ratios("blocks", doc.get("blocks", {})),
            bgp=_ratios("bgp", doc.get("bgp", {})),
            vantage_healthy=vh,
        )


def _number(name: str, v: object, lo: float, hi: float | None) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise ValueError(f"{name}: not a finite number: {v!r}")
    if v < lo or (hi is not None and v > hi):
        raise ValueError(f"{name}: out of range: {v!r}")
    return float(v)


def _optional(name: str, v: object, lo: float, hi: float | None) -> float | None:
    return None if v is None else _number(name, v, lo, hi)


def _counts(name: str, v: object) -> dict[str, int]:
    if not isinstance(v, dict):
        raise ValueError(f"{name}: not an object")
    out = {}
    for k, n in v.items():
        if not isinstance(k, str) or isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"{name}: not a count: {k!r}: {n!r}")
        out[k] = n
    return out


def _ratios(name: str, v: object) -> dict[str, float]:
    if not isinstance(v, dict):
        raise ValueError(f"{name}: not an object")
    return {str(k): _number(f"{name}.{k}", r, 0.0, 1.0) for k, r in v.items()}
