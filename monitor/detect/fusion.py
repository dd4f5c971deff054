"""Fusion: the signals of one entity -> one state and the issues behind it. Pure.

Inputs (built by the detector): the /24 block beliefs, per-kind target states after hysteresis,
short-term loss and latency against their learned normal, BGP visibility per prefix (optional)
and whether our own vantage is healthy. Rules, in order:

- vantage unhealthy -> `unknown`, no issue (nothing can be concluded about the entity);
- every known block down (or, without any known block, every target that ever answered down
  after hysteresis) -> `down`, issue `blackout` (started at the earliest first failure of the
  blocks, or the withdrawal if routes were withdrawn first);
- every prefix withdrawn from BGP for `routing_after` while the data plane is not all down ->
  issue `routing`: state `down` if no block answers, `partial` if some still do;
- some blocks down while others answer, both for `partial_after`, or some prefixes lost
  (visibility under `bgp_lost_ratio` for `routing_after`) -> `partial`, issue `partial`;
- network up and every web (http) target down, each having failed since the network answered
  (not merely still down after a blackout) -> `partial`, issue `web`;
- network up and every name server (dns) target down, likewise -> `partial`, issue `dns`;
- loss or median ICMP RTT far above the learned normal for `degraded_after` (and our controls
  not lossy themselves) -> `degraded`, issue `degraded`;
- no issue -> `up` (or `unknown` if nothing of the entity ever answered).

Several issues can hold at once; the state is that of the most severe, the event kind too.
Uncertain blocks change nothing: they are being re-probed and will settle within seconds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from monitor.detect.belief import BlockState
from monitor.detect.model import JSON, SEVERITY, EventKind, State
from monitor.detect.params import DetectionParams
from monitor.probes.base import Kind

# How many not-up blocks the signals list by name.
MAX_LISTED_BLOCKS = 32


@dataclass(frozen=True, slots=True)
class BlockView:
    name: str
    state: BlockState
    belief: float
    state_since: float  # started time of the probe that brought the state
    fail_start: float | None  # first failed probe since the block's latest answer
    last_answer: float = -math.inf  # started time of the block's latest answer
    fails: tuple[float, ...] = ()  # started times of the first failed probes since then


@dataclass(frozen=True, slots=True)
class KindView:
    """Targets of one kind: `answered` of the `configured` ever answered; `down` of those are
    down after hysteresis, `down_fresh` of those failed a probe sent while the network answered
    (so they are down now, not still recovering from a blackout), `unsettled` of those were not
    probed since; `fail_start` is the earliest first failure among those down."""

    configured: int
    answered: int
    down: int
    fail_start: float | None = None
    down_fresh: int | None = None  # None: same as `down`
    unsettled: int = 0  # of those down, not probed at all since the network answered


@dataclass(frozen=True, slots=True)
class LossView:
    samples: int
    loss: float | None
    rtt: float | None  # median ICMP RTT over the window
    loss_normal: float | None
    rtt_normal: float | None
    control_loss: float | None
    high_since: float | None = None  # loss_is_high has held since (for degraded_after)
    high_start: float | None = None  # the first lost probe of the window that made it high


@dataclass(frozen=True, slots=True)
class PrefixView:
    ratio: float
    lost_since: float | None = None  # under bgp_lost_ratio since
    withdrawn_since: float | None = None  # under bgp_withdrawn_ratio since


@dataclass(frozen=True, slots=True)
class FusionInputs:
    now: float
    vantage_healthy: bool
    blocks: Sequence[BlockView] = ()
    kinds: Mapping[Kind, KindView] = field(default_factory=dict)
    loss: LossView | None = None
    bgp: Mapping[str, PrefixView] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FusionResult:
    state: State
    issues: Mapping[EventKind, float]  # issue -> time of the first failure that led to it
    signals: JSON
    # Web or DNS targets are all still down from before the network came back and not yet
    # re-probed: whether they are up is not known yet (within about one round).
    settling: bool = False


def loss_is_high(view: LossView, params: DetectionParams) -> bool:
    """Loss or latency far above normal, measured on enough samples, our controls clean."""
    if view.samples < params.degraded_min_samples:
        return False
    if view.control_loss is not None and view.control_loss > params.degraded_max_control_loss:
        return False
    if view.loss is not None:
        normal = view.loss_normal or 0.0
        if view.loss >= max(params.degraded_loss, normal + params.degraded_loss_margin):
            return True
    if view.rtt is not None and view.rtt_normal is not None:
        limit = max(
            view.rtt_normal * params.degraded_rtt_factor,
            view.rtt_normal + params.degraded_rtt_increase,
        )
        if view.rtt >= limit:
            return True
    return False


def state_of(issues: Mapping[EventKind, float], network_answers: bool) -> State:
    """The entity state that a set of issues means."""
    if not issues:
        return State.UP
    top = max(issues, key=SEVERITY.__getitem__)
    if top is EventKind.BLACKOUT:
        return State.DOWN
    if top is EventKind.ROUTING:
        return State.PARTIAL if network_answers else State.DOWN
    if top is EventKind.DEGRADED:
        return State.DEGRADED
    return State.PARTIAL


def _r(x: float | None, nd: int = 4) -> float | None:
    return None if x is None else round(x, nd)


def fuse(inp: FusionInputs, params: DetectionParams) -> FusionResult:
    now = inp.now
    known = [b for b in inp.blocks if b.state is not BlockState.UNKNOWN]
    counts = {s.value: 0 for s in BlockState}
    for b in inp.blocks:
        counts[b.state.value] += 1
    answered = sum(k.answered for k in inp.kinds.values())
    signals: JSON = {
        "vantage_healthy": inp.vantage_healthy,
        "blocks": counts,
        "targets": {
            k.value: {
                "up": v.answered - v.down,
                "down": v.down,
                "never_answered": v.configured - v.answered,
            }
            for k, v in sorted(inp.kinds.items())
        },
    }
    not_up = [b for b in known if b.state is not BlockState.UP][:MAX_LISTED_BLOCKS]
    if not_up:
        signals["blocks_not_up"] = {
            b.name: {"state": b.state.value, "belief": round(b.belief, 4)} for b in not_up
        }
    if inp.loss is not None:
        signals["loss"] = _r(inp.loss.loss)
        signals["loss_normal"] = _r(inp.loss.loss_normal)
        signals["rtt_median"] = _r(inp.loss.rtt)
        signals["rtt_normal"] = _r(inp.loss.rtt_normal)
    if inp.bgp:
        signals["bgp_visibility"] = {p: round(v.ratio, 4) for p, v in sorted(inp.bgp.items())}

    settling = False

    def done(state: State, issues: dict[EventKind, float]) -> FusionResult:
        signals["issues"] = sorted((k.value for k in issues), key=lambda k: -SEVERITY[EventKind(k)])
        return FusionResult(state, issues, signals, settling)

    if not inp.vantage_healthy:
        return done(State.UNKNOWN, {})

    if known:
        all_down = all(b.state is BlockState.DOWN for b in known)
        # Uncertain blocks are being re-probed: until they settle, count them as answering
        # (for judging web and DNS), but only blocks up show that the data plane works.
        network_answers = any(b.state is not BlockState.DOWN for b in known)
        some_up = any(b.state is BlockState.UP for b in known)
    else:
        down = sum(k.down for k in inp.kinds.values())
        all_down = answered > 0 and down == answered
        network_answers = some_up = answered > down

    issues: dict[EventKind, float] = {}
    withdrawn_at: float | None = None
    withdrawn_first: float | None = None  # every prefix withdrawn, the first since then
    if inp.bgp and all(p.withdrawn_since is not None for p in inp.bgp.values()):
        since = max(p.withdrawn_since for p in inp.bgp.values() if p.withdrawn_since is not None)
        withdrawn_first = min(
            p.withdrawn_since for p in inp.bgp.values() if p.withdrawn_since is not None
        )
        if now - since >= params.routing_after:
            withdrawn_at = withdrawn_first

    if all_down:
        # A block whose run began with a lost probe before another block's latest answer did
        # not fail with the network: the outage began after that answer, with the block's
        # first failure since (or, not known, another block's).
        last = max((b.last_answer for b in known), default=-math.inf)
        starts = []
        for b in known:
            start = b.fail_start if b.fail_start is not None else b.state_since
            if start < last:
                start = min((t for t in b.fails if t >= last), default=start)
            starts.append(start)
        starts = [t for t in starts if t >= last] or starts
        if not known:
            starts = [k.fail_start for k in inp.kinds.values() if k.fail_start is not None]
        if withdrawn_first is not None:
            # The data plane confirms the withdrawal: the outage began with it, even when the
            # blackout is seen before `routing_after` has passed.
            starts.append(withdrawn_first)
        issues[EventKind.BLACKOUT] = min(starts) if starts else now
    else:
        if withdrawn_at is not None:
            issues[EventKind.ROUTING] = withdrawn_at
        # Since when some block has answered: a block down only counts as partial once it has
        # been down that long while others answered (not while the blocks come back one by one).
        answering = min((b.state_since for b in known if b.state is BlockState.UP), default=now)
        partial_starts = [
            b.fail_start if b.fail_start is not None else b.state_since
            for b in known
            if b.state is BlockState.DOWN
            and now - max(b.state_since, answering) >= params.partial_after
        ]
        if withdrawn_at is None:
            partial_starts += [
                p.lost_since
                for p in inp.bgp.values()
                if p.lost_since is not None and now - p.lost_since >= params.routing_after
            ]
        if partial_starts:
            issues[EventKind.PARTIAL] = min(partial_starts)
        if network_answers:
            for kind, issue in ((Kind.HTTP, EventKind.WEB), (Kind.DNS, EventKind.DNS)):
                kv = inp.kinds.get(kind)
                if kv is None or kv.answered == 0:
                    continue
                fresh = kv.down if kv.down_fresh is None else kv.down_fresh
                if kv.down == kv.answered == fresh:
                    issues[issue] = kv.fail_start if kv.fail_start is not None else now
                elif kv.down == kv.answered and kv.unsettled and fresh + kv.unsettled == kv.down:
                    settling = True
        lv = inp.loss
        if (
            lv is not None
            and lv.high_since is not None
            and now - lv.high_since >= params.degraded_after
        ):
            issues[EventKind.DEGRADED] = (
                lv.high_start if lv.high_start is not None else lv.high_since
            )

    if not issues and not known and answered == 0:
        return done(State.UNKNOWN, issues)
    return done(state_of(issues, some_up), issues)
