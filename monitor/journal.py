"""The log lines of the detector's changes (a consumer of the daemon's fan-out): state changes
at INFO, outages and the vantage at WARNING, as structlog JSON for journald."""

from __future__ import annotations

import structlog

from monitor.detect.model import (
    Change,
    EventClosed,
    EventOpened,
    EventUpdated,
    FirstRoundDone,
    StateChanged,
    TargetChanged,
    VantageChanged,
    iso_or_none,
)

log = structlog.get_logger("monitor.daemon")


def log_change(c: Change) -> None:
    if isinstance(c, TargetChanged):
        # A first answer is no change anyone acts on (the target was never answered, not
        # down): at DEBUG, or a start would log one line per answering target.
        (log.debug if c.first else log.info)(
            "target answered" if c.first else "target up" if c.up else "target down",
            entity=c.entity,
            kind=c.target.kind.value,
            target=c.target.key,
        )
    elif isinstance(c, FirstRoundDone):
        # One line per entity after its first round instead of one per silent target.
        if c.never_answered:
            log.info(
                "targets never answered",
                entity=c.entity,
                count=sum(c.never_answered.values()),
                kinds=dict(c.never_answered),
                examples=list(c.examples),
            )
        else:
            log.debug("every target answered", entity=c.entity)
    elif isinstance(c, StateChanged):
        log.info(
            "entity state",
            entity=c.entity,
            old=c.old.value,
            new=c.new.value,
            since=iso_or_none(c.since),
        )
    elif isinstance(c, VantageChanged):
        log.warning("vantage healthy" if c.healthy else "vantage offline: controls fail")
    elif isinstance(c, EventOpened):
        ev = c.event
        log.warning(
            "outage opened",
            entity=ev.entity,
            kind=ev.kind.value,
            id=ev.id,
            start=iso_or_none(ev.start),
        )
    elif isinstance(c, EventUpdated) and c.escalated:
        ev = c.event
        log.warning(
            "outage escalated",
            entity=ev.entity,
            kind=ev.kind.value,
            previous=c.previous_kind.value,
            id=ev.id,
        )
    elif isinstance(c, EventClosed):
        ev = c.event
        log.info(
            "outage closed",
            entity=ev.entity,
            kind=ev.kind.value,
            id=ev.id,
            start=iso_or_none(ev.start),
            end=iso_or_none(ev.end),
        )
