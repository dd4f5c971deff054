"""The embedded history: per entity and step, what the daemon knew (state, targets up and
answered per kind, loss, RTT median, block beliefs, BGP visibility, the vantage's health),
kept in `<state_dir>/history.db` so that a researcher needs no Prometheus to look back.

- `point`: the typed record, `HistoryPoint`, and its one codec.
- `sampler`: pure logic: a step's points from what the daemon saw, downsampling, the choice
  of a step for a range.
- `store`: SQLite (WAL); one writer thread, reader threads; tiers and retention.
- `recorder`: the daemon's side (feeds the sampler, closes steps on a timer, serves the API).
- `api`: `GET /api/v1/history` and its OpenAPI description.

Tiers (`history:` in the configuration): `resolution` (10 s) kept `retention.fine` (2 days),
6 x resolution (1 min) kept `retention.medium` (30 days), 60 x resolution (10 min) kept
`retention.coarse` (730 days). Coarse points keep the worst of their bucket.

Size: a point's row is its values in a JSON array (the keys are stored once per layout), about
SIZES_NOTE; see docs/BENCHMARKS.md ("History") for the measured figures.
"""

from monitor.history.point import HistoryPoint
from monitor.history.recorder import HistoryRecorder, tiers
from monitor.history.store import HistoryError, HistoryStore, SchemaError, Tier

__all__ = [
    "HistoryError",
    "HistoryPoint",
    "HistoryRecorder",
    "HistoryStore",
    "SchemaError",
    "Tier",
    "tiers",
]
