"""Where the path toward an affected address ends: pure logic over traceroutes and the ICMP
errors the ordinary probes got. No I/O (the traceroute itself is `monitor.probes.traceroute`).

Routers rate-limit their unreachable answers (Linux: about one per second per source address,
`net.ipv4.route.error_cost`), and during an outage the monitor's ordinary probes toward the
dead block compete for them: the traceroute then sees the hops before the broken router and
silence from it on. Those ordinary probes do get the router's answers, though, so
`UnreachableRouters` records, per entity and block, which routers answered "destination
unreachable" to them (a passive traceroute), and `path_evidence` merges both: when the trace
ends in silence and a router beyond its last answering hop answered unreachable for the
affected blocks, that router is where the path ends.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterable, Sequence
from dataclasses import replace

from monitor.detect.belief import IPNetwork, block_of
from monitor.detect.evidence import HopEvidence, OwnerRef, PathEvidence, UnreachableSighting
from monitor.probes.base import IPAddress, ProbeResult, target_address
from monitor.probes.traceroute import (
    REPLY,
    UNREACHABLE,
    Hop,
    Trace,
    unreachable_note,
    unreachable_reason,
)

__all__ = ["OwnerMap", "Sighting", "UnreachableRouters", "hop_evidence", "path_evidence"]


class OwnerMap:
    """Hop address -> owner, by longest prefix match (on equal length, the first entry wins)."""

    def __init__(self, entries: Iterable[tuple[IPNetwork, str, int | None]] = ()) -> None:
        ordered = sorted(enumerate(entries), key=lambda x: (-x[1][0].prefixlen, x[0]))
        self._entries: list[tuple[IPNetwork, OwnerRef]] = [
            (net, OwnerRef(name, asn, str(net))) for _, (net, name, asn) in ordered
        ]

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, address: str | IPAddress | None) -> OwnerRef | None:
        if address is None:
            return None
        try:
            addr = ipaddress.ip_address(address) if isinstance(address, str) else address
        except ValueError:
            return None
        for net, owner in self._entries:
            if addr.version == net.version and addr in net:
                return owner
        return None


def hop_evidence(h: Hop, owners: OwnerMap | None, source: str | None = None) -> HopEvidence:
    if h.address is None:
        return HopEvidence(h.ttl, source=source)
    return HopEvidence(
        h.ttl,
        h.address,
        None if h.rtt is None else round(h.rtt * 1000, 3),
        h.kind,
        h.note,
        owners.lookup(h.address) if owners is not None else None,
        source,
    )


def _who(address: str, owners: OwnerMap | None) -> str:
    owner = owners.lookup(address) if owners is not None else None
    return f"{owner.label} router {address}" if owner else f"{address} (owner unknown)"


# A router that answered "destination unreachable" to ordinary probes of a block; `owner` is
# filled in when it goes into an event's evidence.
Sighting = UnreachableSighting


def path_evidence(
    trace: Trace,
    owners: OwnerMap | None = None,
    seen: Sequence[Sighting] = (),
    trigger: str | None = None,
) -> PathEvidence:
    """The `path` evidence of an event: the trace (hops up to the last answer, the silent rest
    folded into a count), the routers that answered unreachable to the ordinary probes
    (`seen`, most recent first), the last answering hop and its owner, and a sentence, e.g.
    `last answer: China Unicom AS4837 router 198.18.0.38 (hop 2, host unreachable)`."""
    last = trace.last_answer
    shown = trace.hops[: last.ttl] if last is not None else ()
    traced = {h.address for h in trace.hops if h.address is not None}
    beyond = [x for x in seen if x.address not in traced]
    last_hop: HopEvidence | None = None
    if last is not None and (last.ends_path or not beyond):
        last_hop = hop_evidence(last, owners, source="traceroute")
        if last.kind == REPLY:
            summary = f"reached {trace.target} at hop {last.ttl}"
        else:
            why = unreachable_reason(last.note) if last.kind == UNREACHABLE else "time exceeded"
            silent = len(trace.hops) - last.ttl
            tail = f"; {silent} hop{'s' if silent != 1 else ''} after it silent" if silent else ""
            summary = (
                f"last answer: {_who(last.address or '', owners)} (hop {last.ttl}, {why}{tail})"
            )
    elif beyond:
        x = beyond[0]
        last_hop = HopEvidence(
            None,
            x.address,
            None,
            UNREACHABLE,
            x.note,
            owners.lookup(x.address) if owners is not None else None,
            "probes",
        )
        traced_part = (
            f"traceroute: hop {last.ttl} {last.address} answered, then silence"
            if last is not None
            else "traceroute: no hop answered"
        )
        summary = (
            f"last answer: {_who(x.address, owners)} ({unreachable_reason(x.note)} to "
            f"{x.answers} probe{'s' if x.answers != 1 else ''} toward {x.block}; {traced_part})"
        )
    elif trace.error is not None:
        summary = f"no answer: {trace.error}"
    else:
        summary = f"no hop answered (TTL 1-{len(trace.hops)} silent)"
    return PathEvidence(
        target=str(trace.target),
        started=trace.started,
        duration_seconds=round(trace.duration, 3),
        reached=trace.reached,
        hops=tuple(hop_evidence(h, owners) for h in shown),
        silent_after=len(trace.hops) - len(shown),
        max_hops=trace.max_hops,
        error=trace.error,
        unreachable_from=tuple(
            replace(x, owner=owners.lookup(x.address) if owners is not None else None) for x in seen
        ),
        last_answer=last_hop,
        summary=summary,
        trigger=trigger,
    )


class UnreachableRouters:
    """Per entity, (router, block) -> the destination-unreachable answers ordinary ICMP probes
    got: the passive half of path localisation. Bounded: `per_entity` entries each, the
    least recently seen dropped first."""

    def __init__(self, per_entity: int = 64) -> None:
        self.per_entity = per_entity
        self._seen: dict[str, dict[tuple[str, str], Sighting]] = {}

    def observe(self, entity: str, result: ProbeResult) -> None:
        """A probe result (cheap for everything but ICMP errors)."""
        extra = result.extra
        if result.ok or "from" not in extra:
            return
        offender, icmp_type = extra.get("from"), extra.get("icmp_type")
        addr = target_address(result.target)
        if not isinstance(offender, str) or not isinstance(icmp_type, int) or addr is None:
            return
        v6 = addr.version == 6
        if icmp_type != (1 if v6 else 3):
            return  # only "destination unreachable" says where the path ends
        code = extra.get("icmp_code")
        code = code if isinstance(code, int) else -1
        block = str(block_of(addr))
        per = self._seen.setdefault(entity, {})
        t = result.started
        x = per.get((offender, block))
        if x is None:
            if len(per) >= self.per_entity:
                del per[min(per, key=lambda k: per[k].last)]
            per[(offender, block)] = Sighting(offender, block, 1, t, t, unreachable_note(code, v6))
        else:
            # Immutable records: a new one per answer (ICMP errors are few, even in an outage).
            per[(offender, block)] = replace(
                x, answers=x.answers + 1, first=min(x.first, t), last=max(x.last, t)
            )

    def sightings(
        self, entity: str, nets: Iterable[IPNetwork], since: float = -math.inf
    ) -> list[Sighting]:
        """Routers that answered unreachable for blocks inside `nets` since `since`, most
        recently seen first."""
        wanted = list(nets)
        out = [
            x
            for x in self._seen.get(entity, {}).values()
            if x.last >= since and _inside(x.block, wanted)
        ]
        return sorted(out, key=lambda x: -x.last)

    def retain(self, entities: Iterable[str]) -> None:
        """Forget entities no longer configured."""
        keep = set(entities)
        for name in [n for n in self._seen if n not in keep]:
            del self._seen[name]


def _inside(block: str, nets: Sequence[IPNetwork]) -> bool:
    net = ipaddress.ip_network(block)
    return any(net.version == n.version and net.network_address in n for n in nets)
