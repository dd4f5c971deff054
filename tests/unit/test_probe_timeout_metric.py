"""The learned probe timeouts reach /metrics as one gauge per kind (probe_timeout_seconds)."""

from __future__ import annotations

import ipaddress

from prometheus_client import CollectorRegistry

from monitor.metrics import Metrics
from monitor.probes.base import IcmpTarget, ProbeResult
from monitor.rto import Timeouts


def test_probe_timeout_gauge_per_kind_from_the_scheduler() -> None:
    """Bound to the scheduler's Timeouts, the gauge shows each kind's mean recent timeout."""
    registry = CollectorRegistry()
    m = Metrics(registry)
    tt = Timeouts(3.0, 1.0)
    m.bind_probe_timeouts(lambda: {str(k): v for k, v in tt.given().items()})
    name = "dprk_monitor_probe_timeout_seconds"
    assert registry.get_sample_value(name, {"kind": "icmp"}) is None
    t = IcmpTarget(ipaddress.ip_address("198.18.176.1"))
    tt.timeout(t)
    assert registry.get_sample_value(name, {"kind": "icmp"}) == 3.0
    for _ in range(30):
        tt.observe(ProbeResult.success(t, 0.0, 0.4))
    for _ in range(2000):
        tt.timeout(t)
    value = registry.get_sample_value(name, {"kind": "icmp"})
    assert value is not None and abs(value - 1.2) < 0.01
    assert name.encode() in m.render()
