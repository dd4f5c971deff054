"""Detection parameters: one flat dataclass, one field per `detection.*` configuration key.

Durations are seconds (declared with `_seconds`, so that the configuration reads them as `30s`,
`2m`...), ratios 0..1. `__post_init__` rejects nonsense (negative or non-finite values...) with a
ValueError that names the field, so the configuration loader can report it at the key's line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

from monitor.detect.belief import BeliefParams

_B = BeliefParams()  # one place for the belief's defaults


def _seconds(default: float) -> Any:
    """A duration field: `detection.<name>` takes `500ms`, `30s`, `5m` (or 0) in the YAML."""
    return field(default=default, metadata={"duration": True})


def duration_fields() -> frozenset[str]:
    """The names of DetectionParams' duration fields (the config reads these as durations)."""
    return frozenset(f.name for f in fields(DetectionParams) if f.metadata.get("duration"))


@dataclass(frozen=True, slots=True)
class DetectionParams:
    # Per-target hysteresis: failed (successful) rounds, after re-probes, to go down (up).
    down_after: int = 2
    up_after: int = 2

    # /24 block belief (see belief.py, whose defaults these are).
    belief_up: float = _B.up_threshold
    belief_down: float = _B.down_threshold
    belief_min: float = _B.belief_min
    belief_max: float = _B.belief_max
    belief_noise: float = _B.noise
    availability_initial: float = _B.availability_initial
    availability_min: float = _B.availability_min
    availability_max: float = _B.availability_max
    availability_alpha: float = _B.availability_alpha
    # A negative of an address counts again only this long after its last counted one ...
    negative_spacing: float = _seconds(_B.negative_spacing)
    # ... or this long once the block's failure run spans several addresses.
    repeat_spacing: float = _seconds(_B.repeat_spacing)
    # An address leaves E(b) after this long without answering while its block answers.
    responsive_ttl: float = _seconds(_B.responsive_ttl)
    # At most this many extra probes outstanding per uncertain block.
    extra_per_block: int = 2
    # At most this many extra probes asked for per call of `wanted_probes`.
    extra_max: int = 50
    # A block in a failure run gets confirmation probes of up to this many of its addresses
    # (all of a small block's) each `repeat_spacing`, without waiting for the earlier ones to
    # time out, until it answers or is down: a block of three addresses is judged about one
    # timeout after its first failure is known (it waited a timeout per address). 0: off.
    confirm_probes: int = 3
    # A network suspected to be failing (see suspect_*) gets a burst of this many extra probes,
    # spread over its blocks, so that one probe timeout later its fate is known.
    burst_probes: int = 20
    # Suspected failing: no answer from an entity for `suspect_after` times the usual gap
    # between its answers (learned), and at least `suspect_min` seconds. Suspicion only sends
    # probes; nothing is concluded before a probe times out (`probing.timeout`).
    suspect_after: float = 3.0
    suspect_min: float = _seconds(1.0)
    # Belief that a block is up when a sibling block of its network has just gone down (its
    # run began within 2 x negative_spacing of this block's): a blackout of the whole network
    # is then likely, so fewer failures of the remaining blocks confirm it (6 instead of 12
    # at the defaults; see Detector._joint_down).
    joint_prior: float = 0.99

    # Fusion into an entity state.
    # A block down this long (others up) makes a partial outage.
    partial_after: float = _seconds(60.0)
    routing_after: float = _seconds(30.0)  # BGP visibility lost this long counts
    bgp_lost_ratio: float = 0.5  # a prefix seen by fewer peers than this is lost
    bgp_withdrawn_ratio: float = 0.1  # ... by fewer than this, withdrawn
    degraded_window: float = _seconds(120.0)  # loss and latency are measured over this window
    degraded_after: float = _seconds(60.0)  # ... and must stay high this long
    degraded_loss: float = 0.7  # loss at least this ...
    degraded_loss_margin: float = 0.3  # ... and this much above the learned normal
    degraded_rtt_factor: float = 3.0  # median ICMP RTT at least this times normal ...
    degraded_rtt_increase: float = 0.2  # ... and this many seconds above it
    degraded_min_samples: int = 20
    degraded_max_control_loss: float = 0.2  # not degraded when our controls lose this much
    normal_tau: float = _seconds(3600.0)  # time constant of the learned normal loss and RTT

    # Vantage self-check from the control targets.
    vantage_min_failures: int = 3  # distinct controls failing since the last control answer
    vantage_window: float = _seconds(120.0)  # majority rule over controls probed within this window

    # Events.
    merge_gap: float = _seconds(120.0)  # an event closes only after this long without issues

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            # inf or nan would pass every comparison below, then stall or blind the detector.
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{f.name}: must be a finite number")
            if isinstance(value, int | float) and value < 0:
                raise ValueError(f"{f.name}: must not be negative")
        if self.down_after < 1 or self.up_after < 1:
            raise ValueError("down_after/up_after: must be at least 1")
        if self.vantage_min_failures < 1:
            raise ValueError("vantage_min_failures: must be at least 1")
        if not 0 <= self.bgp_withdrawn_ratio <= self.bgp_lost_ratio <= 1:
            raise ValueError(
                "bgp_withdrawn_ratio: need 0 <= bgp_withdrawn_ratio <= bgp_lost_ratio <= 1"
            )
        for name in ("degraded_loss", "degraded_max_control_loss"):
            if getattr(self, name) > 1:
                raise ValueError(f"{name}: must be at most 1")
        if not 0 < self.joint_prior < 1:
            raise ValueError("joint_prior: must be between 0 and 1 (exclusive)")
        if self.degraded_window <= 0 or self.normal_tau <= 0:
            raise ValueError("degraded_window/normal_tau: must be positive")
        try:
            self.belief()
        except ValueError as e:
            raise ValueError(f"belief: {e}") from None

    def belief(self) -> BeliefParams:
        return BeliefParams(
            up_threshold=self.belief_up,
            down_threshold=self.belief_down,
            belief_min=self.belief_min,
            belief_max=self.belief_max,
            noise=self.belief_noise,
            availability_initial=self.availability_initial,
            availability_min=self.availability_min,
            availability_max=self.availability_max,
            availability_alpha=self.availability_alpha,
            negative_spacing=self.negative_spacing,
            repeat_spacing=self.repeat_spacing,
            responsive_ttl=self.responsive_ttl,
        )
