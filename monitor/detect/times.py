"""Time in the event log and the API: epoch seconds inside, UTC ISO 8601 outside. No I/O."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

JSON = dict[str, Any]

# The times an event can have: from the epoch to the last second ISO 8601 (and `datetime`) can
# write. A number outside (1e300, nan, inf: a corrupt row, a typo in `since=`) is not a time.
MIN_TIME = 0.0
MAX_TIME = 253402300799.0  # 9999-12-31T23:59:59Z


def iso(t: float) -> str:
    """UTC ISO 8601 with a `Z`; milliseconds only when not zero (`2022-11-17T05:12:00.250Z`)."""
    ms_total = round(t * 1000)
    secs, ms = divmod(ms_total, 1000)
    base = datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{ms:03d}Z" if ms else f"{base}Z"


def iso_or_none(t: float | None) -> str | None:
    return None if t is None else iso(t)


def valid_time(t: float) -> bool:
    return math.isfinite(t) and MIN_TIME <= t <= MAX_TIME


def parse_time(value: str | float | datetime) -> float:
    """Epoch seconds from an ISO 8601 time (date only, `Z` or an offset; naive means UTC),
    a `datetime` or a number, between 1970 and 9999. Raises ValueError with the offending
    text (also for `nan`, `inf` and numbers out of that range)."""
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, int | float):
        t = float(value)
        if not valid_time(t):
            raise ValueError(f"not a time: {value!r}")
        return t
    else:
        text = value.strip()
        try:
            t = float(text)
        except ValueError:
            pass
        else:
            if not valid_time(t):
                raise ValueError(f"not a time: {value!r}")
            return t
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"not an ISO 8601 time: {value!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    t = dt.timestamp()
    if not valid_time(t):
        raise ValueError(f"time out of range (1970 to 9999): {value!r}")
    return t
