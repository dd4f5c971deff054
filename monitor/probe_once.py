"""`dprk-monitor probe`: one round of every target under the same politeness budget, as a table."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace

from monitor.config import Config
from monitor.daemon import schedule_entries
from monitor.probes import build_probers
from monitor.probes.base import ProbeResult
from monitor.scheduler import RoundCollector, Scheduler


@dataclass(frozen=True, slots=True)
class Row:
    entity: str
    result: ProbeResult  # the last attempt of the target's round
    attempts: int


async def probe_once(cfg: Config) -> list[Row]:
    entries = list(schedule_entries(cfg))
    probers = build_probers()
    collector = RoundCollector(expected=len(entries))
    # One round, all at once, each probe with the full timeout (nothing is learned yet).
    p = replace(cfg.probing, splay=False, min_timeout=cfg.probing.timeout)
    sched = Scheduler(probers, collector, p)
    sched.set_targets(entries, p)
    task = asyncio.create_task(sched.run())
    try:
        # Worst case: every probe and re-probe at the rate cap, each taking the full timeout.
        budget = len(entries) * (p.reprobes + 1) / p.max_rate + (p.reprobes + 1) * p.timeout + 5
        await asyncio.wait_for(collector.done.wait(), budget)
    except TimeoutError:
        pass
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await sched.close()
        for prober in probers.values():
            await prober.close()
    last: dict[tuple[str, str], ProbeResult] = {}
    attempts: dict[tuple[str, str], int] = {}
    for entity, result in collector.results:
        key = (entity, f"{result.kind}/{result.target.key}")
        last[key] = result
        attempts[key] = attempts.get(key, 0) + 1
    order = {(e, f"{t.kind}/{t.key}"): i for i, (e, t, _) in enumerate(entries)}
    return [Row(k[0], last[k], attempts[k]) for k in sorted(last, key=lambda k: order.get(k, 0))]


def render_table(rows: list[Row]) -> str:
    header = ("ENTITY", "KIND", "TARGET", "RESULT", "RTT", "TRIES", "DETAIL")
    lines = [header]
    for r in rows:
        res = r.result
        rtt = f"{res.rtt * 1000:.1f}ms" if res.ok and res.rtt is not None else "-"
        outcome = "ok" if res.ok else (res.reason.value if res.reason else "failed")
        lines.append(
            (r.entity, res.kind.value, res.target.key, outcome, rtt, str(r.attempts), res.detail)
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    out = []
    for line in lines:
        cells = [c.ljust(w) for c, w in zip(line[:-1], widths, strict=True)]
        out.append("  ".join([*cells, line[-1]]).rstrip())
    ok = sum(1 for r in rows if r.result.ok)
    out.append(f"{ok}/{len(rows)} targets answered")
    return "\n".join(out) + "\n"
