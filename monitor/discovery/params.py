"""The `discovery:` configuration block, one field per key (validated in monitor/config.py)."""

from __future__ import annotations

from dataclasses import dataclass

# A census probes at most this many addresses of one entity (a /16): a typo like /8 must not
# turn a census into a scan of 16 M addresses.
MAX_CENSUS = 65536


@dataclass(frozen=True, slots=True)
class DiscoveryConfig:
    # A census of each entity with `discover: true` at start when none is stored or the stored
    # one is older than this, then every `interval`.
    interval: float = 86400.0
    # The share of probing.max_rate a census may take (the rest stays for ordinary probing
    # and re-probes): at 20 probes/s and 0.25, five census probes a second.
    share: float = 0.25
    # Ports probed with a TCP connect (SYN) at addresses silent to ICMP; none by default.
    tcp_ports: tuple[int, ...] = ()
    # Addresses of E(b) probed per round while the block's belief is certain ...
    sample: int = 1
    # ... and at most this many while it is uncertain (ceil(log 0.2 / log(1 - A)) wanted).
    sample_max: int = 15
    # A block with fewer responsive addresses is unmonitorable: reported, not judged.
    min_responsive: int = 2
