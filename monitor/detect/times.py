"""Time in the event log and the API: epoch seconds inside, UTC ISO 8601 outside. No I/O."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

JSON = dict[str, Any]


def iso(t: float) -> str:
    """UTC ISO 8601 with a `Z`; milliseconds only when not zero (`2022-11-17T05:12:00.250Z`)."""
    ms_total = round(t * 1000)
    secs, ms = divmod(ms_total, 1000)
    base = datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{ms:03d}Z" if ms else f"{base}Z"


def iso_or_none(t: float | None) -> str | None:
    return None if t is None else iso(t)


def parse_time(value: str | float | datetime) -> float:
    """Epoch seconds from an ISO 8601 time (date only, `Z` or an offset; naive means UTC),
    a `datetime` or a number. Raises ValueError with the offending text."""
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"not a time: {value!r}")
        return float(value)
    else:
        text = value.strip()
        try:
            return float(text)
        except ValueError:
            pass
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"not an ISO 8601 time: {value!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()
