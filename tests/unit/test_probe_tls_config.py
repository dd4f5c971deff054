"""The `min_tls_version` key of an http target: default, accepted spellings, clear refusals."""

from __future__ import annotations

import pytest

from monitor import config
from monitor.probes.base import HttpTarget

DOC = """\
entities:
  - name: kcna
    http:
      - {{url: "https://kcna.kp/", address: 198.18.176.80{extra}}}
"""


def http_target(extra: str = "") -> HttpTarget:
    return config.parse(DOC.format(extra=extra), "c.yaml").entities[0].targets.http[0]


def test_default_accepts_tls_1_0() -> None:
    """Without the key a target accepts every TLS version down to 1.0."""
    assert http_target().min_tls_version == "1.0"


@pytest.mark.parametrize(
    ("value", "parsed"),
    [('"1.2"', "1.2"), ("1.2", "1.2"), ("1.0", "1.0"), ('"1.1"', "1.1"), ("1.3", "1.3")],
)
def test_versions_quoted_or_not(value: str, parsed: str) -> None:
    """Quoted or not (YAML reads 1.2 as a number), the version is kept as its text."""
    assert http_target(f", min_tls_version: {value}").min_tls_version == parsed


@pytest.mark.parametrize("value", ['"1.4"', '"TLSv1.2"', "1", "true", '"SSLv3"'])
def test_other_values_are_refused_by_name(value: str) -> None:
    """Anything but 1.0 to 1.3 is refused with the key, the line and the allowed versions."""
    with pytest.raises(config.ConfigError) as info:
        http_target(f", min_tls_version: {value}")
    assert str(info.value).startswith(
        "c.yaml:4: entities[0].http[0].min_tls_version: expected a TLS version, one of "
        "1.0, 1.1, 1.2, 1.3, got "
    )
