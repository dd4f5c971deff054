"""RIS Live client -> per-prefix BGP visibility.

Three modules, all re-exported here (`from monitor.bgp import X`):

- `parse` (pure): RIS Live messages and RIPEstat snapshots into typed records.
- `visibility` (pure, no I/O): `Visibility` tracks, for every watched prefix (an entity's
  configured prefixes) and per route-collector peer `(collector, peer address)`, whether that
  peer currently announces the prefix or one of its more-specifics, when that last changed, and
  the origin AS. `ratio(prefix, now)` is the share of recently-seen peers that see it now.
- `client`: `RisLiveClient` feeds it from the RIS Live websocket (subscribe, parse, reconnect)
  and calls `on_change(prefix, ratio)` when a watched prefix's ratio changes.

Semantics (documented here because detection and the dashboards depend on them):

- A peer *sees* a watched prefix W while it announces W or any more-specific of W (DPRK
  announces 175.45.176.0/22 as four /24s, so "sees the /22" means "has a route into it").
  Per more-specific numbers are in `detail()`, for partial outages (one /24 gone).
- The denominator is the peers that saw W *recently*: those that see it now plus those whose
  last route into W went away less than `recent` seconds ago (`recent=None`: since start).
  A withdrawal counts even if we never saw the announcement: the peer had the route until then.
  If every known peer withdrew longer ago than `recent`, the ratio is 0.0, not unknown.
  `ratio()` is None only when no peer has ever been seen for W (or fewer than `min_peers`).
- RIS_PEER_STATE "down" means a collector's BGP session went down: that says nothing about
  DPRK, so the peer is forgotten (removed from numerator *and* denominator) instead of being
  counted as a withdrawal. It comes back with its next announcements (its table is re-sent).
- A withdrawal episode starts when the ratio first falls below `threshold`; `withdrawal()`
  gives that time (BGP message time), the earliest withdrawal of the storm (within
  `storm_window` before it) and the number of peers that withdrew. It ends when the ratio is
  back at or above the threshold.
- Memory stays bounded over months (`Visibility.refresh`, run every ping interval): a route
  withdrawn longer ago than `recent` keeps only its withdrawal time (ratios, `known` and
  repeated withdrawals are unchanged), and a peer whose last route went away longer ago than
  `forget_after` (default 2 x `recent`) is forgotten, except the `max(1, min_peers)` most recent
  per prefix, so a long total outage stays 0.0. Announcing peers are never evicted for silence.
- While the websocket is down nothing is learned; the state is kept as it was (RIS Live does
  not replay the gap). `RisLiveClient.connected` / `last_message_time` say how fresh it is.
"""

from monitor.bgp.client import (
    CLIENT_NAME,
    DEFAULT_URL,
    RIPESTAT_SNAPSHOT_URL,
    OnChange,
    RisLiveClient,
    backoff_delay,
    client_url,
)
from monitor.bgp.parse import (
    IPNetwork,
    MessageError,
    Origin,
    PathElem,
    PeerKey,
    PeerState,
    SeedRoute,
    Update,
    normalise_host,
    normalise_peer,
    origin_of,
    parse_path,
    parse_prefix,
    parse_ris_message,
    parse_snapshot,
)
from monitor.bgp.visibility import (
    PrefixStatus,
    Route,
    SpecificView,
    Visibility,
    Withdrawal,
)

__all__ = [
    "CLIENT_NAME",
    "DEFAULT_URL",
    "RIPESTAT_SNAPSHOT_URL",
    "IPNetwork",
    "MessageError",
    "OnChange",
    "Origin",
    "PathElem",
    "PeerKey",
    "PeerState",
    "PrefixStatus",
    "RisLiveClient",
    "Route",
    "SeedRoute",
    "SpecificView",
    "Update",
    "Visibility",
    "Withdrawal",
    "backoff_delay",
    "client_url",
    "normalise_host",
    "normalise_peer",
    "origin_of",
    "parse_path",
    "parse_prefix",
    "parse_ris_message",
    "parse_snapshot",
]
