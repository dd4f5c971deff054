"""BGP message parsing: the real RIS Live samples, junk categories, normalisation, and the
RIPEstat snapshot shapes (monitor/bgp/parse.py, pure).

Prefixes are 198.18.0.0/15 stand-ins for DPRK's 175.45.176.0/22 and its four /24s.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.bgp import (
    MessageError,
    PeerState,
    Update,
    Visibility,
    normalise_host,
    parse_prefix,
    parse_ris_message,
    parse_snapshot,
)
from tests.unit.rislive_server import fixture_text

SLASH24 = [f"198.18.{n}.0/24" for n in (176, 177, 178, 179)]

_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
_json = st.recursive(
    _scalars,
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
    max_leaves=16,
)
_FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- parsing the real samples ---------------------------------------------------------------


def test_fixture_rrc10_announcement_parses() -> None:
    """The real rrc10 UPDATE: peer, string peer_asn, origin, prefixes deduped over next hops."""
    doc = json.loads(fixture_text("ris_live_update_announce_rrc10.json"))
    msg = parse_ris_message(doc["data"])
    assert isinstance(msg, Update)
    assert msg.peer == ("rrc10", "2001:7f8:b:100:1d1:a520:1333:74")
    assert msg.peer_asn == 201333
    assert msg.time == 1636245154.8
    assert msg.path == (201333, 6762, 174, 20473)
    assert msg.origin == 20473
    assert [str(p) for p in msg.announced] == [
        "2a0e:97c7::/48",
        "2a0e:97c6:fe::/48",
        "2a10:cc42:17b7::/48",
        "2a10:cc42:1feb::/48",
    ]
    assert msg.withdrawn == ()


def test_fixture_rrc20_announcement_parses() -> None:
    """The real rrc20 IPv6 UPDATE parses to one prefix with its origin AS."""
    doc = json.loads(fixture_text("ris_live_update_announce_rrc20_ipv6.json"))
    msg = parse_ris_message(doc["data"])
    assert isinstance(msg, Update)
    assert msg.peer == ("rrc20", "2001:7f8:24::82")
    assert [str(p) for p in msg.announced] == ["2602:fd9e:f00::/40"]
    assert msg.origin == 397666


def test_fixture_rrc25_withdrawal_parses() -> None:
    """The real rrc25 withdrawal: `rrc25.ripe.net` -> rrc25, expanded prefix normalised, no origin."""
    doc = json.loads(fixture_text("ris_live_update_withdraw_rrc25.json"))
    msg = parse_ris_message(doc["data"])
    assert isinstance(msg, Update)
    assert msg.peer == ("rrc25", "2606:6dc0:1301::1")
    assert [str(p) for p in msg.withdrawn] == ["2605:de00:bb::/48"]
    assert msg.announced == () and msg.path == () and msg.origin is None


def test_fixture_other_message_types_parse() -> None:
    """Manual samples: UPDATE applies, KEEPALIVE/OPEN/NOTIFICATION carry no state, peer state."""
    lines = fixture_text("ris_live_other_message_types.jsonl").splitlines()
    got = [parse_ris_message(json.loads(line)) for line in lines]
    upd, keepalive, open_, notification, state = got
    assert isinstance(upd, Update)
    assert upd.peer == ("rrc21", "192.0.2.0") and upd.origin == 4
    assert [str(p) for p in upd.announced] == ["192.0.3.0/24"]
    assert keepalive is None and open_ is None and notification is None
    assert state == PeerState(1568365292.84, ("rrc00", "192.0.2.1"), "connected")


def test_fixtures_drive_visibility() -> None:
    """Feeding the real samples into Visibility: the announcement is seen, the withdrawal is not."""
    vis = Visibility(["2a0e:97c7::/32", "2605:de00::/32"], recent=None)
    for name in ("ris_live_update_announce_rrc10.json", "ris_live_update_withdraw_rrc25.json"):
        msg = parse_ris_message(json.loads(fixture_text(name))["data"])
        assert msg is not None
        vis.apply(msg)
    assert vis.ratio("2a0e:97c7::/32", 1636245200.0) == 1.0
    assert vis.ratio("2605:de00::/32", 1740561900.0) == 0.0


def test_parse_rejects_unusable_data_with_category() -> None:
    """Missing or mistyped fields raise MessageError naming the junk category."""
    cases: list[tuple[Any, str]] = [
        (None, "missing_field"),
        ([], "bad_field"),
        ({"type": "UPDATE"}, "missing_field"),
        ({"type": "FOO"}, "unknown_type"),
        ({"type": "UPDATE", "timestamp": "x", "peer": "192.0.2.1", "host": "rrc00"}, "bad_field"),
        ({"type": "UPDATE", "timestamp": 1.0, "peer": "nope", "host": "rrc00"}, "bad_field"),
        ({"type": "UPDATE", "timestamp": 10**400, "peer": "192.0.2.1", "host": "r"}, "bad_field"),
        (
            {"type": "UPDATE", "timestamp": float("inf"), "peer": "192.0.2.1", "host": "r"},
            "bad_field",
        ),
        (
            {
                "type": "UPDATE",
                "timestamp": 1.0,
                "peer": "192.0.2.1",
                "host": "r",
                "withdrawals": 3,
            },
            "bad_field",
        ),
    ]
    for data, category in cases:
        with pytest.raises(MessageError) as exc:
            parse_ris_message(data)
        assert exc.value.category == category, data


def test_host_and_prefix_normalisation() -> None:
    """Collector names and prefixes are normalised the same way whatever the source."""
    assert normalise_host("rrc25.ripe.net") == "rrc25"
    assert normalise_host("RRC00") == "rrc00"
    assert normalise_host("0") == "rrc00"
    assert str(parse_prefix("2605:de00:bb:0:0:0:0:0/48")) == "2605:de00:bb::/48"


def test_parse_snapshot_bgp_state_and_looking_glass() -> None:
    """RIPEstat bgp-state (source_id) and looking-glass (rrcs/peers) shapes both parse."""
    bgp_state = {
        "data": {
            "bgp_state": [
                {
                    "target_prefix": SLASH24[0],
                    "path": [3333, 4837, 131279],
                    "source_id": "00-192.0.2.1",
                },
                {"target_prefix": "junk", "path": [1], "source_id": "00-192.0.2.2"},
                {"target_prefix": SLASH24[1], "path": [1, 131279], "source_id": "25-2001:db8::1"},
            ]
        }
    }
    got = parse_snapshot(bgp_state)
    assert [(r.peer, str(r.prefix), r.path[-1]) for r in got] == [
        (("rrc00", "192.0.2.1"), SLASH24[0], 131279),
        (("rrc25", "2001:db8::1"), SLASH24[1], 131279),
    ]
    lg = {
        "data": {
            "rrcs": [
                {
                    "rrc": "RRC06",
                    "peers": [
                        {"peer": "192.0.2.9", "prefix": SLASH24[2], "as_path": "2497 4837 131279"}
                    ],
                }
            ]
        }
    }
    assert [(r.peer, r.path) for r in parse_snapshot(lg)] == [
        (("rrc06", "192.0.2.9"), (2497, 4837, 131279))
    ]
    for junk in ("nonsense", {"data": None}, {"data": {"bgp_state": 5, "rrcs": "x"}}):
        assert parse_snapshot(junk) == []


@_FUZZ
@given(data=_json | st.fixed_dictionaries({"bgp_state": _json, "rrcs": _json}))
def test_snapshot_parser_never_raises(data: Any) -> None:
    """Any RIPEstat answer parses to a (possibly empty) list of routes, never an exception."""
    assert isinstance(parse_snapshot({"data": data}), list)
