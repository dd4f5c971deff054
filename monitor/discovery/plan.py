"""The census and sampling logic, pure: plain values in, plain values out, no I/O, no clock.

After Quan, Heidemann and Pradkin, "Trinocular" (SIGCOMM 2013), as IODA runs it, on a small
address space that we can afford to know completely:

- A census probes every address of an entity's IPv4 prefixes once (`census_order`: the /24s
  interleaved, so that no block gets a burst), plus one retry of each address that was in
  E(b) and stayed silent (one lost packet must not drop a host for a day).
- E(b), the ever-responsive set of a /24, is what answered in the latest census that could be
  trusted (`apply_census`). A census is not trusted for a block that was down, or while our
  vantage was blind: an outage would otherwise empty E(b) and make the block unmonitorable
  exactly when it matters. Then answers can only add addresses (joins), never remove them.
- A block that answers nothing although its E(b) was not empty left E(b) empty only when the
  census is trusted and other blocks of the entity answered in it (so it is not our vantage
  or the whole network), or after `EMPTY_CENSUSES_DOWN` silent censuses in a row whatever the
  reason (a block that stays dark for days while its siblings answer was renumbered away).
- A(E(b)), the block's availability: the mean, over E(b), of each address's share of census
  probes answered (`availability`).
- A block with fewer than `min_responsive` addresses in E(b), or availability under
  `MIN_AVAILABILITY` (IODA skips A < 0.1), is unmonitorable: reported, never judged.
- Trust is judged over the whole census, not at its end: a block is doubtful if the detector
  believed it down, uncertain or failing on several addresses at any moment of the census, if
  our vantage was blind, or if the census itself saw `silent_run_limit(A)` members of E(b) in a
  row stay silent and one of them answer its retry (`outage_runs`: an outage that came and went,
  also in a block the detector has no belief of yet). A doubtful block's census only adds
  addresses; the entity is censused again early (`recensus_delay`), and so is an entity after
  its first census (nothing could vouch for it: a blackout then hides hosts, not removes them).
- Census order (`census_priority`): entities blind without a census first, the smallest first;
  then the stalest stored census.
- Sampling: each round a block is probed at `base` addresses while its belief is certain and
  at `recovery_probes(A)` = ceil(log 0.2 / log(1 - A)) while uncertain or not yet known (the
  number of probes that all fail with at most 20 % chance while the block is up), never more
  than `cap` or |E(b)|; the addresses are drawn from E(b) weighted by availability, the least
  recently drawn first (`choose_sample`).
"""

from __future__ import annotations

import enum
import ipaddress
import math
import random
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

IPv4 = ipaddress.IPv4Address
IPv4Net = ipaddress.IPv4Network

# IODA's trinarkular does not probe blocks with A(E(b)) under this.
MIN_AVAILABILITY = 0.1
# A block silent in this many censuses in a row leaves E(b) whatever the detector thinks of it.
EMPTY_CENSUSES_DOWN = 3
# The confidence of recovery_probes: all of them fail with at most this chance while up.
RECOVERY_CONFIDENCE = 0.2
# A census's own evidence of an outage: this many members of E(b) silent in a row is a chance of
# at most SILENT_RUN_CONFIDENCE while the block is up (independent losses at A(E(b)) each) ...
SILENT_RUN_CONFIDENCE = 0.01
# ... and never fewer than this: two hosts lost in a row is ordinary on a lossy path.
MIN_SILENT_RUN = 3
# The first early re-census comes after this share of `discovery.interval` (an hour at the
# default day): most outages seen in DPRK last minutes to an hour or two, so the next census
# likely sees the network whole; each further doubtful census in a row doubles the delay (up to
# the interval), so that an outage of days costs a handful of extra censuses, not one an hour.
RECENSUS_FRACTION = 1 / 24
# Availability is clamped into [_A_LO, _A_HI] for the recovery count (1.0 would divide by zero).
_A_LO, _A_HI = 0.05, 0.95


class SampleState(enum.StrEnum):
    """What the detector believes of a block, as the sampler needs it."""

    CERTAIN = "certain"  # up or down with confidence: `base` probes a round
    UNCERTAIN = "uncertain"  # uncertain, in a failure run, or not yet known: more


@dataclass(frozen=True, slots=True)
class AddressStats:
    """What the census database keeps per address that ever answered."""

    address: IPv4
    last_answer: float | None = None  # started time of its latest census answer
    answers: int = 0  # census probes answered
    probes: int = 0  # census probes sent to it since it first answered
    responsive: bool = False  # in E(b) now

    @property
    def availability(self) -> float:
        return self.answers / self.probes if self.probes else 0.0


@dataclass(frozen=True, slots=True)
class BlockCensus:
    """One /24 after a census: E(b), A(E(b)), what changed."""

    block: IPv4Net
    responsive: tuple[IPv4, ...]  # E(b), sorted
    availability: float
    answered: int  # addresses that answered in this census
    joined: tuple[IPv4, ...]
    left: tuple[IPv4, ...]
    trusted: bool  # the census could remove addresses from E(b)
    empty_streak: int  # censuses in a row in which the block answered nothing
    monitorable: bool

    @property
    def size(self) -> int:
        return len(self.responsive)


def block_of(addr: IPv4) -> IPv4Net:
    return IPv4Net((int(addr) >> 8 << 8, 24))


def census_blocks(
    prefixes: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network],
) -> list[IPv4Net]:
    """The /24s a census covers: every /24 of the IPv4 prefixes (a longer prefix gives its
    own /24's part only, see census_order), in address order, each once."""
    out: dict[IPv4Net, None] = {}
    for p in prefixes:
        if isinstance(p, IPv4Net):
            if p.prefixlen >= 24:
                out[block_of(p.network_address)] = None
            else:
                out.update(dict.fromkeys(p.subnets(new_prefix=24)))
    return sorted(out)


def census_size(prefixes: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> int:
    """How many addresses a census of `prefixes` probes (before retries)."""
    return len(census_addresses(prefixes))


def census_addresses(
    prefixes: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network],
) -> list[IPv4]:
    """Every IPv4 address of `prefixes` once, in address order (IPv6 is never censused)."""
    seen: dict[int, None] = {}
    for p in prefixes:
        if isinstance(p, IPv4Net):
            first = int(p.network_address)
            seen.update(dict.fromkeys(range(first, first + p.num_addresses)))
    return [IPv4(a) for a in sorted(seen)]


def census_order(prefixes: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> list[IPv4]:
    """Every IPv4 address of `prefixes` once (IPv6 is never censused), the /24s interleaved:
    the first address of each block, then the second..., so that at any moment of the census
    each block receives at most its share of the probes."""
    by_block: dict[IPv4Net, list[IPv4]] = {}
    for a in census_addresses(prefixes):
        by_block.setdefault(block_of(a), []).append(a)
    lists = [by_block[b] for b in sorted(by_block)]
    out: list[IPv4] = []
    for i in range(max((len(x) for x in lists), default=0)):
        out.extend(x[i] for x in lists if i < len(x))
    return out


def retry_order(
    probed: Iterable[IPv4], answered: Collection[IPv4], previous: Mapping[IPv4, AddressStats]
) -> list[IPv4]:
    """Addresses that were in E(b), were probed and stayed silent: each gets one more probe."""
    return [a for a in probed if a not in answered and (s := previous.get(a)) and s.responsive]


def availability(stats: Iterable[AddressStats]) -> float:
    """A(E(b)): the mean answer share of the responsive addresses (0.0 for an empty set)."""
    shares = [s.availability for s in stats if s.responsive]
    return sum(shares) / len(shares) if shares else 0.0


def apply_census(
    block: IPv4Net,
    previous: Mapping[IPv4, AddressStats],
    probes: Mapping[IPv4, int],
    answered: Mapping[IPv4, float],
    *,
    trusted: bool,
    siblings_answered: bool,
    empty_streak: int,
    min_responsive: int,
) -> tuple[BlockCensus, dict[IPv4, AddressStats]]:
    """Fold one census of `block` into its address statistics.

    `previous`: the block's stored addresses; `probes`: census probes sent per address of the
    block (retries included); `answered`: started time of the answer per answering address;
    `trusted`: the block was not down and our vantage not blind during the census;
    `siblings_answered`: other blocks of the entity answered in this census.
    Returns the block's summary and its new statistics (addresses that answered, now or before)."""
    stats: dict[IPv4, AddressStats] = {}
    for a, s in previous.items():
        if a in block:
            stats[a] = s
    for a, t in answered.items():
        if a not in block:
            continue
        s = stats.get(a) or AddressStats(a)
        last = t if s.last_answer is None else max(s.last_answer, t)
        stats[a] = replace(s, last_answer=last, answers=s.answers + 1)
    for a, n in probes.items():
        seen = stats.get(a)
        if seen is not None and a in block:
            stats[a] = replace(seen, probes=seen.probes + n)

    before = {a for a, s in stats.items() if s.responsive}
    now_answering = {a for a in answered if a in block}
    streak = 0 if now_answering else empty_streak + 1
    if now_answering:
        after = now_answering if trusted else before | now_answering
    elif not before:
        after = set()
    elif (trusted and siblings_answered) or streak >= EMPTY_CENSUSES_DOWN:
        after = set()  # the hosts left: nothing answers where the rest of the network does
    else:
        after = before  # an outage, or our vantage: keep E(b) for when it answers again
    for a, s in stats.items():
        if s.responsive != (a in after):
            stats[a] = replace(s, responsive=a in after)
    a_eb = availability(stats.values())
    summary = BlockCensus(
        block=block,
        responsive=tuple(sorted(after)),
        availability=a_eb,
        answered=len(now_answering),
        joined=tuple(sorted(after - before)),
        left=tuple(sorted(before - after)),
        trusted=trusted,
        empty_streak=streak,
        monitorable=monitorable(len(after), a_eb, min_responsive),
    )
    return summary, stats


def monitorable(size: int, avail: float, min_responsive: int) -> bool:
    """Enough responsive addresses, answering often enough, to judge the block on them."""
    return size >= max(1, min_responsive) and avail >= MIN_AVAILABILITY


def recovery_probes(avail: float, confidence: float = RECOVERY_CONFIDENCE) -> int:
    """ceil(log c / log(1 - A)): probes that all fail with chance at most `c` if the block is
    up (IODA's recovery probes)."""
    a = min(_A_HI, max(_A_LO, avail))
    return max(1, math.ceil(math.log(confidence) / math.log(1.0 - a) - 1e-9))


def probes_per_round(avail: float, state: SampleState, size: int, base: int, cap: int) -> int:
    """How many addresses of a block to probe this round."""
    if size <= 0:
        return 0
    k = base if state is SampleState.CERTAIN else max(base, recovery_probes(avail))
    return max(0, min(k, cap, size))


def choose_sample(
    candidates: Sequence[tuple[IPv4, float]],
    k: int,
    last_drawn: Mapping[IPv4, int],
    round_no: int,
    rng: random.Random,
) -> list[IPv4]:
    """`k` distinct addresses from `candidates` ((address, availability) of E(b)), weighted by
    availability and by the rounds since each was last drawn, so that every address of E(b) is
    probed now and then and a host that answers more often is probed more often.
    Weighted sampling without replacement (Efraimidis-Spirakis: the k largest u^(1/w))."""
    if k <= 0 or not candidates:
        return []
    keyed: list[tuple[float, int, IPv4]] = []
    for addr, avail in candidates:
        age = round_no - last_drawn.get(addr, round_no - len(candidates))
        w = max(avail, MIN_AVAILABILITY) * (1 + max(0, age))
        u = rng.random() or 1e-12
        keyed.append((u ** (1.0 / w), int(addr), addr))
    keyed.sort(reverse=True)
    return [a for _, _, a in keyed[:k]]


def silent_run_limit(avail: float, confidence: float = SILENT_RUN_CONFIDENCE) -> int:
    """Members of E(b) silent in a row that a census takes as an outage of the block:
    ceil(log c / log(1 - A)), at least MIN_SILENT_RUN."""
    return max(MIN_SILENT_RUN, recovery_probes(avail, confidence))


def outage_runs(
    trail: Iterable[tuple[IPv4, bool]], members: Collection[IPv4], answered: Collection[IPv4]
) -> dict[IPv4Net, int]:
    """Per block, the longest run of members of E(b) (as before the census) silent in a row at
    their first census probe (`trail`: address, answered, in the order sent; retries and
    other addresses neither extend nor break a run), counting only runs of which at least one
    address answered later in the census (`answered`: its retry did). Such a run is an outage
    that came and went during the census; hosts that left never answer again, so a batch of
    hosts renumbered away is never taken for one."""
    seen: set[IPv4] = set()
    current: dict[IPv4Net, list[IPv4]] = {}
    longest: dict[IPv4Net, int] = {}

    def close(b: IPv4Net) -> None:
        run = current.pop(b, [])
        if any(a in answered for a in run):
            longest[b] = max(longest.get(b, 0), len(run))

    for addr, ok in trail:
        if addr in seen or addr not in members:
            continue
        seen.add(addr)
        b = block_of(addr)
        if ok:
            close(b)
        else:
            current.setdefault(b, []).append(addr)
    for b in list(current):
        close(b)
    return longest


def recensus_delay(interval: float, doubtful_streak: int) -> float:
    """When the next census is due after the latest one: `interval`, or sooner after a census
    that could not be trusted (`doubtful_streak` such censuses in a row, see RECENSUS_FRACTION)."""
    if doubtful_streak <= 0:
        return interval
    return min(interval, interval * RECENSUS_FRACTION * 2.0 ** min(doubtful_streak - 1, 30))


def census_priority(
    stored: bool, judged_otherwise: bool, size: int, due: float
) -> tuple[int, float]:
    """Sort key among the entities whose census is due (smallest first).

    An entity with no stored census and no configured target is blind until its census: it
    goes first. Among those, and then among the never-censused ones that listed targets already
    judge, the smallest census first: at the census rate every /24 costs the same time, so for
    the blocks as a whole the order is a wash (biggest first gets no more blocks judged sooner),
    but shortest first gets the most entities judged soonest (a /24 entity would wait 3.5 min
    behind a /22 at the default rate). Then the stored censuses, the most overdue first: the
    stalest E(b), or the re-check of a doubtful census."""
    if not stored:
        return (0 if not judged_otherwise else 1, float(size))
    return (2, due)
