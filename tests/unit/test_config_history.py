"""The `history:` block: defaults, accepted values, and the exact error of each bad value."""

from __future__ import annotations

import pytest

from monitor import config
from monitor.config import ConfigError, HistoryConfig, HistoryRetention
from monitor.history import tiers

BASE = "entities: [{name: star-jv, icmp: [192.0.2.1]}]\n"


def parse(history: str) -> config.Config:
    return config.parse(BASE + history, "c.yaml")


def test_defaults_are_10s_1min_10min_kept_2d_30d_730d() -> None:
    """Without a `history:` block: on, 10 s kept 2 days, 1 min 30 days, 10 min 730 days."""
    h = config.parse(BASE, "c.yaml").history
    assert h == HistoryConfig() and h.enabled is True
    assert [(t.step, t.retention / 86400) for t in tiers(h)] == [(10, 2), (60, 30), (600, 730)]
    assert parse("history:\n").history == HistoryConfig()


def test_a_full_block_is_read() -> None:
    """Every key read: enabled, resolution, retention per tier (days, hours)."""
    h = parse(
        "history:\n  enabled: false\n  resolution: 5s\n"
        "  retention: {fine: 36h, medium: 14d, coarse: 3650d}\n"
    ).history
    assert h == HistoryConfig(False, 5, HistoryRetention(36 * 3600.0, 14 * 86400.0, 3650 * 86400.0))
    assert [t.step for t in tiers(h)] == [5, 30, 300]
    assert parse("history: {retention: {coarse: 60d}}").history.retention.coarse == 60 * 86400


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("history: 3", "c.yaml:2: history: expected a mapping, got int 3"),
        (
            "history: {keep: 1d}",
            "c.yaml:2: history.keep: unknown key (allowed: enabled, resolution, retention)",
        ),
        ("history: {enabled: 1}", "c.yaml:2: history.enabled: expected true or false, got int 1"),
        (
            "history: {resolution: 10}",
            "c.yaml:2: history.resolution: expected a duration like 500ms, 30s or 5m, got 10",
        ),
        (
            "history: {resolution: 1500ms}",
            "c.yaml:2: history.resolution: must be a whole number of seconds from 1s to 60s, "
            "got '1500ms'",
        ),
        (
            "history: {resolution: 2m}",
            "c.yaml:2: history.resolution: must be a whole number of seconds from 1s to 60s, "
            "got '2m'",
        ),
        (
            "history: {retention: 30d}",
            "c.yaml:2: history.retention: expected a mapping, got str '30d'",
        ),
        (
            "history: {retention: {hot: 1d}}",
            "c.yaml:2: history.retention.hot: unknown key (allowed: coarse, fine, medium)",
        ),
        (
            "history: {retention: {fine: 2 days}}",
            "c.yaml:2: history.retention.fine: expected a duration like 48h, 30d or 730d, "
            "got '2 days'",
        ),
        (
            "history: {retention: {fine: 30m}}",
            "c.yaml:2: history.retention.fine: must be at least 1h, got '30m'",
        ),
        (
            "history: {retention: {coarse: 3651d}}",
            "c.yaml:2: history.retention.coarse: must be at most 3650d, got '3651d'",
        ),
        (
            "history: {retention: {fine: 3d, medium: 2d}}",
            "c.yaml:2: history.retention.medium: must not be shorter than history.retention.fine",
        ),
        (
            "history:\n  retention:\n    medium: 60d\n    coarse: 40d\n",
            "c.yaml:5: history.retention.coarse: must not be shorter than history.retention.medium",
        ),
    ],
)
def test_bad_values_have_exact_errors(text: str, error: str) -> None:
    """Each bad `history:` value is refused with `PATH:LINE: key.path: reason`."""
    with pytest.raises(ConfigError) as e:
        parse(text)
    assert str(e.value) == error
