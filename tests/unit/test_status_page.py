"""The status page (web.status_page): never-answered targets are shown apart from down ones."""

from __future__ import annotations

import ipaddress
import re

from monitor.detect.detector import DetectionParams, Detector, EntitySpec
from monitor.probes.base import IcmpTarget, ProbeResult, Reason, TcpTarget
from monitor.web import status_page

T0 = 1_700_000_000.0


def test_status_page_counts_never_answered_apart_from_down() -> None:
    """Per entity: targets up, down and never answered, from the detector's own status; a
    silent address is 'never answered', a target that answered then failed is 'down'."""
    a, b, silent = (IcmpTarget(ipaddress.IPv4Address(f"198.18.180.{i}")) for i in (1, 2, 3))
    web = TcpTarget(ipaddress.IPv4Address("198.18.180.1"), 80)
    spec = EntitySpec("box", (ipaddress.IPv4Network("198.18.180.0/24"),), (a, b, silent, web))
    det = Detector(DetectionParams(), [spec], [], now=T0)
    for t in (a, b, web):
        det.observe("box", ProbeResult.success(t, T0, 0.05), T0)
        det.observe_round("box", t, True, T0)
    for k in (1, 2):  # the web port answered once, then two failed rounds: down
        det.observe("box", ProbeResult.failure(web, T0 + 30 * k, Reason.REFUSED), T0 + 30 * k)
        det.observe_round("box", web, False, T0 + 30 * k)
    page = status_page(det.status(now=T0 + 61), [])
    assert "<th>targets up</th><th>down</th><th>never answered</th>" in page
    row = re.search(r"<tr><td>box</td>.*?</tr>", page)
    assert row is not None
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", row.group(0))
    assert cells[3:] == ["2", "1", "1"], cells
    assert 'title="icmp 1, tcp 0">1</td></tr>' in row.group(0), "never answered: per kind"
