"""Packet audit: nftables counters, in every namespace, of packets that are not sim traffic.

Each namespace gets `table inet <name>` (and `table arp <name>`) with named counters:
  out_of_range  IPv4 packets whose source or destination is outside the allowed range
  ipv6          any IPv6 packet (IPv6 is disabled in the world; there should be none)
  in_range      IPv4 packets inside the range (shows the hooks see the traffic)
  arp_out       ARP naming an address outside the range
Loopback (`lo`) is not counted. Hooks: prerouting (every packet arriving on any interface) and
postrouting (every packet leaving, locally generated or forwarded).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

TABLE = "dom_audit"
COUNTERS = ("out_of_range", "ipv6", "in_range", "arp_out")


def rules(allowed: str = "198.18.0.0/15", table: str = TABLE) -> str:
    """An `nft -f` script creating (or re-creating) the audit tables."""
    return f"""\
table inet {table}
delete table inet {table}
table inet {table} {{
    counter out_of_range {{ }}
    counter ipv6 {{ }}
    counter in_range {{ }}
    chain pre {{
        type filter hook prerouting priority -400; policy accept;
        iifname "lo" accept
        meta nfproto ipv6 counter name "ipv6" accept
        ip saddr != {allowed} counter name "out_of_range" accept
        ip daddr != {allowed} counter name "out_of_range" accept
        meta nfproto ipv4 counter name "in_range"
    }}
    chain post {{
        type filter hook postrouting priority 400; policy accept;
        oifname "lo" accept
        meta nfproto ipv6 counter name "ipv6" accept
        ip saddr != {allowed} counter name "out_of_range" accept
        ip daddr != {allowed} counter name "out_of_range" accept
        meta nfproto ipv4 counter name "in_range"
    }}
}}
table arp {table}
delete table arp {table}
table arp {table} {{
    counter arp_out {{ }}
    chain in {{
        type filter hook input priority 0; policy accept;
        arp saddr ip != {allowed} counter name "arp_out"
        arp daddr ip != {allowed} counter name "arp_out"
    }}
    chain out {{
        type filter hook output priority 0; policy accept;
        arp saddr ip != {allowed} counter name "arp_out"
        arp daddr ip != {allowed} counter name "arp_out"
    }}
}}
"""


@dataclass(frozen=True)
class Counters:
    out_of_range: int = 0
    ipv6: int = 0
    in_range: int = 0
    arp_out: int = 0

    @property
    def leaks(self) -> int:
        return self.out_of_range + self.ipv6 + self.arp_out


def parse(nft_json: str, table: str = TABLE) -> Counters:
    """Counters from `nft -j list counters`."""
    values: dict[str, int] = {}
    for item in json.loads(nft_json).get("nftables", []):
        c = item.get("counter")
        if isinstance(c, dict) and c.get("table") == table and c.get("name") in COUNTERS:
            values[c["name"]] = values.get(c["name"], 0) + int(c.get("packets", 0))
    return Counters(**values)
