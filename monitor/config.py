"""The YAML configuration: parsed into typed, frozen dataclasses and validated.

Every error names the file, the line, the key path and the reason, on one line, e.g.
`config.yaml:12: probing.interval: expected a duration like 500ms, 30s or 5m, got '30'`.
Unknown keys are errors, so that a typo never silently falls back to a default.

What `check-config` accepts, `run` can run: numbers are finite and under sanity caps, strings
hold no control characters, DNS names and URLs are the ones the probers can send (validated with
the same libraries and calls), nesting is bounded, and so is the total number of targets.

Each section's allowed keys and defaults are its dataclass' fields; a converter table per section
names how each key is read, and `_check_table` refuses (at import) a field without a converter.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import unicodedata
from collections.abc import Callable, Collection, Iterator
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import yaml
from yarl import URL

from monitor.detect.params import DetectionParams, duration_fields
from monitor.discovery.params import MAX_CENSUS, DiscoveryConfig
from monitor.notify.params import NotifyReceiver
from monitor.probes.base import (
    TLS_VERSIONS,
    DnsTarget,
    HttpTarget,
    IcmpTarget,
    IPAddress,
    Target,
    TcpTarget,
)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_CONFIG = "config/dprk.yaml"
# The entity label of control probes (entity names cannot start with `_`); metrics.py re-exports it.
CONTROLS = "_controls"

# A CIDR or range in a target list expands to at most this many addresses: a typo like /8
# must not turn the monitor into a scanner.
MAX_EXPANSION = 65536
# All targets together (entities and controls). bench/bench_scale.py measured 100,000 targets at
# 169 MiB RSS and 23 % of a core; 2.6 M, accepted before this cap, took 493 MiB against the unit's
# MemoryMax=512M. Twice the measured scale keeps RSS near 300 MiB, inside the unit's limit.
MAX_TARGETS = 200_000

# Sanity caps. Beyond them a value is a typo (a unit forgotten, a digit too many), and some
# values past them hang or crash the daemon: an infinite interval made the scheduler spin,
# an infinite max_rate raised in the rate limiter.
# The ICMP engine measured 63,000 probes/s on one core (docs/BENCHMARKS.md): above 100,000/s the
# budget can never be the limit, and it is no longer a politeness budget.
MAX_RATE = 100_000.0
# A budget under one probe per 100 s is a typo; near zero the limiter's waits overflow to inf.
MIN_RATE = 0.01
# One round a day is the slowest watch that still means "monitoring".
MAX_INTERVAL = 86_400.0
# The probers' deadlines: a reply later than a minute is as good as lost.
MAX_TIMEOUT = 60.0
# HTTP bodies are counted, not kept, but a cap above 64 MiB per probe is a typo.
MAX_BODY = 64 * 1024 * 1024
# detection.* durations: the longest window any of them plausibly wants is a month.
MAX_DETECTION_DURATION = 30 * 86_400.0
# detection.* numbers (counts, factors, seconds of RTT): a million is beyond any sane setting.
MAX_DETECTION_NUMBER = 1_000_000
# YAML nesting: a configuration is 5 levels deep; PyYAML's composer recurses and 249 levels of
# `[` exhausted Python's stack.
MAX_DEPTH = 64
# Linux PATH_MAX (with its NUL) and NAME_MAX.
_PATH_MAX = 4095
_NAME_MAX = 255

# Characters no configuration string may hold: control characters (C0, DEL, C1: NUL breaks
# paths, a newline breaks names, labels and log lines), line and paragraph separators, and
# unpaired surrogates (unencodable).
_BAD_CATEGORIES = {
    "Cc": "the control character",
    "Zl": "the line break",
    "Zp": "the line break",
    "Cs": "the unpaired surrogate",
}
# What str.splitlines() splits on: kept out of every message so that an error is one line.
_LINE_BREAKS = str.maketrans({c: repr(c)[1:-1] for c in "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"})


class ConfigError(Exception):
    """A configuration problem, rendered as `PATH:LINE: key.path: reason` on one line."""

    def __init__(self, path: str, line: int, key: str, reason: str) -> None:
        self.path, self.line, self.key, self.reason = path, line, key, reason
        text = f"{path}:{line}: {key}: {reason}" if key else f"{path}:{line}: {reason}"
        super().__init__(text.translate(_LINE_BREAKS))


# --- typed configuration -------------------------------------------------------------------
# Field metadata: `key` renames a field in the YAML (None: not a key), `flatten` puts another
# dataclass' keys at this level. Everything else is read under the field's own name.


@dataclass(frozen=True, slots=True)
class ProbingConfig:
    interval: float = 30.0
    timeout: float = 3.0
    max_rate: float = 20.0
    # Immediate re-probes of a failed target, inside the same rate budget.
    reprobes: int = 2
    # Spread each target's probe over the interval (fixed per-target offset) instead of bursts.
    splay: bool = True
    # The shortest timeout a probe gets: each path's timeout is learned from its RTT between
    # this and `timeout` (monitor.rto); at or above `timeout`, every probe gets `timeout`.
    min_timeout: float = 1.0


@dataclass(frozen=True, slots=True)
class Targets:
    icmp: tuple[IcmpTarget, ...] = ()
    tcp: tuple[TcpTarget, ...] = ()
    http: tuple[HttpTarget, ...] = ()
    dns: tuple[DnsTarget, ...] = ()

    def all(self) -> Iterator[IcmpTarget | TcpTarget | HttpTarget | DnsTarget]:
        yield from self.icmp
        yield from self.tcp
        yield from self.http
        yield from self.dns

    def __len__(self) -> int:
        return len(self.icmp) + len(self.tcp) + len(self.http) + len(self.dns)


@dataclass(frozen=True, slots=True)
class EntityConfig:
    name: str
    asn: int | None = None
    prefixes: tuple[IPNetwork, ...] = ()
    # An entity lists `icmp:`, `tcp:`... directly, not under a `targets:` key.
    targets: Targets = field(default_factory=Targets, metadata={"flatten": Targets})
    # A census of the prefixes finds the answering addresses; their /24s are then sampled.
    discover: bool = False


@dataclass(frozen=True, slots=True)
class BgpConfig:
    ris_live_url: str = "wss://ris-live.ripe.net/v1/ws/"
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    """An `upstreams` entry: router addresses in `prefix` belong to `name` (AS `asn`); used to
    name the owner of each traceroute hop."""

    prefix: IPNetwork
    name: str
    asn: int | None = None


@dataclass(frozen=True, slots=True)
class HistoryRetention:
    """How long each tier of the embedded history keeps its points (seconds)."""

    fine: float = 2 * 86_400.0  # points of `resolution` (10 s)
    medium: float = 30 * 86_400.0  # points of 6 x resolution (1 min)
    coarse: float = 730 * 86_400.0  # points of 60 x resolution (10 min)


@dataclass(frozen=True, slots=True)
class HistoryConfig:
    """The embedded history (`monitor.history`): on by default, in `state_dir`."""

    enabled: bool = True
    resolution: int = 10  # seconds: the finest step; the coarser tiers are 6x and 60x
    retention: HistoryRetention = field(default_factory=HistoryRetention)


@dataclass(frozen=True, slots=True)
class ApiConfig:
    """`api:`: the HTTP API's options. Annotation writes over HTTP are off unless
    `annotation_token_file` names a file holding the bearer token (read at load and reload;
    never world-readable); `base_url` is where people reach the daemon (behind a proxy): the
    feeds' links use it, else the request's own host."""

    annotation_token_file: str | None = None
    base_url: str | None = None
    # The token read from the file; not a key, never shown.
    annotation_token: str | None = field(default=None, repr=False, metadata={"key": None})


@dataclass(frozen=True, slots=True)
class Config:
    # Both from one `listen: HOST:PORT` key.
    listen_host: str = field(default="127.0.0.1", metadata={"key": "listen"})
    listen_port: int = field(default=9474, metadata={"key": "listen"})
    state_dir: Path = Path("./var")
    log_level: str = "info"
    probing: ProbingConfig = field(default_factory=ProbingConfig)
    detection: DetectionParams = field(default_factory=DetectionParams)
    entities: tuple[EntityConfig, ...] = ()
    controls: Targets = field(default_factory=Targets)
    bgp: BgpConfig = field(default_factory=BgpConfig)
    discovery: DiscoveryConfig = field(default_factory=DiscoveryConfig)
    upstreams: tuple[UpstreamConfig, ...] = ()
    history: HistoryConfig = field(default_factory=HistoryConfig)
    # Grafana's base URL (http(s)): the event page links to the dashboards at the event's time.
    grafana_url: str | None = None
    api: ApiConfig = field(default_factory=ApiConfig)
    # Notification receivers (monitor/notify): Apprise URLs with filters.
    notify: tuple[NotifyReceiver, ...] = ()
    # Where the configuration was read from; not a key.
    source: str = field(default="<defaults>", metadata={"key": None})

    def entity(self, name: str) -> EntityConfig | None:
        return next((e for e in self.entities if e.name == name), None)


def _yaml_keys(cls: type[Any]) -> frozenset[str]:
    """The keys a section of dataclass `cls` allows: its init fields, as the metadata says."""
    keys: set[str] = set()
    for f in fields(cls):
        if not f.init:
            continue
        if "flatten" in f.metadata:
            keys |= _yaml_keys(f.metadata["flatten"])
            continue
        key = f.metadata.get("key", f.name)
        if key is not None:
            keys.add(key)
    return frozenset(keys)


def _required(cls: type[Any]) -> list[str]:
    """Fields without a default: their keys must be present."""
    return [
        f.name
        for f in fields(cls)
        if f.init and f.default is MISSING and f.default_factory is MISSING
    ]


def _check_table(cls: type[Any], table: Collection[str], extra: Collection[str] = ()) -> None:
    """Refuse a converter table that does not cover exactly `cls`' keys (plus `extra` aliases):
    a new field must get a converter here, it cannot silently keep its default."""
    keys = _yaml_keys(cls)
    missing, unknown = keys - set(table), set(table) - keys - set(extra)
    if missing or unknown:
        raise TypeError(
            f"{cls.__name__}: the validator's converters do not match its fields "
            f"(no converter for: {', '.join(sorted(missing)) or '-'}; "
            f"no field for: {', '.join(sorted(unknown)) or '-'})"
        )


# --- YAML with line numbers ----------------------------------------------------------------


class _Map(dict[str, Any]):
    """A mapping that remembers the line of each key (1-based) and its own line."""

    line: int = 0
    key_lines: dict[str, int]


class _Seq(list[Any]):
    line: int = 0
    item_lines: list[int]


class _Loader(yaml.SafeLoader):
    """SafeLoader with line numbers, a nesting limit, and no exception escaping but ConfigError
    and YAMLError."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        # PyYAML composes (and constructs) recursively: bound the depth before Python's stack.
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                line = self.peek_event().start_mark.line + 1  # type: ignore[no-untyped-call]
                raise ConfigError(self.name, line, "", f"nested deeper than {MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        # SafeLoader's constructors raise plain exceptions on some values (a 5,000-digit
        # integer, the timestamp 2020-13-45): name the value's line instead of a traceback.
        try:
            return super().construct_object(node, deep)
        except (ConfigError, yaml.YAMLError):
            raise
        except Exception as e:
            line = node.start_mark.line + 1
            if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:int":
                reason = "integer too large"
            else:
                reason = f"{type(e).__name__}: {e}"
            raise ConfigError(self.name, line, "", f"cannot read this value ({reason})") from None


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> _Map:
    m = _Map()
    m.line = node.start_mark.line + 1
    m.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str):
            raise ConfigError(
                loader.name, key_node.start_mark.line + 1, "", f"key {_show(key)} is not a string"
            )
        if key in m:
            raise ConfigError(
                loader.name, key_node.start_mark.line + 1, _safe_key(key), "duplicate key"
            )
        m[key] = loader.construct_object(value_node, deep=True)
        m.key_lines[key] = value_node.start_mark.line + 1
    return m


def _construct_seq(loader: _Loader, node: yaml.SequenceNode) -> _Seq:
    s = _Seq(loader.construct_object(n, deep=True) for n in node.value)
    s.line = node.start_mark.line + 1
    s.item_lines = [n.start_mark.line + 1 for n in node.value]
    return s


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_map)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_seq)
# YAML 1.1 reads `on`/`no`/`yes` as booleans (`no` is a country code!); keep only true/false.
_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:bool"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _load_yaml(text: str, path: str) -> Any:
    """The document, or a ConfigError: whatever PyYAML raises, never a traceback."""
    try:
        loader = _Loader(text)
        loader.name = path
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except ConfigError:
        raise
    except yaml.reader.ReaderError as e:
        # A raw control character in the file; PyYAML's own text spans two lines.
        line = text.count("\n", 0, e.position) + 1
        what = f"#x{e.character:04x}" if isinstance(e.character, int) else repr(e.character)
        raise ConfigError(
            path, line, "", f"YAML error: unacceptable character {what}: {e.reason}"
        ) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else 1
        problem = e.problem or e.context or type(e).__name__
        raise ConfigError(path, line, "", f"YAML syntax error: {problem}") from None
    except yaml.YAMLError as e:
        raise ConfigError(path, 1, "", f"YAML error: {' '.join(str(e).split())}") from None
    except Exception as e:
        # Anything else from the parser (RecursionError, MemoryError...) is still one line.
        raise ConfigError(path, 1, "", f"cannot parse this YAML ({type(e).__name__})") from None


# --- the validator -------------------------------------------------------------------------

T = TypeVar("T")


class _Ctx:
    """Walks the document carrying the file name; errors point at the line of the key."""

    def __init__(self, path: str) -> None:
        self.path = path
        # Targets accepted so far, entities and controls together (MAX_TARGETS).
        self.targets = 0

    def fail(self, line: int, key: str, reason: str) -> ConfigError:
        return ConfigError(self.path, line, key, reason)

    def mapping(self, value: Any, line: int, key: str, allowed: Collection[str]) -> _Map:
        if not isinstance(value, _Map):
            raise self.fail(line, key, f"expected a mapping, got {_describe(value)}")
        for k in value:
            if k not in allowed:
                where = f"{key}.{k}" if key else k
                raise self.fail(
                    value.key_lines[k],
                    where,
                    f"unknown key (allowed: {', '.join(sorted(allowed))})",
                )
        return value

    def seq(self, value: Any, line: int, key: str) -> _Seq:
        if not isinstance(value, _Seq):
            raise self.fail(line, key, f"expected a list, got {_describe(value)}")
        return value

    def items(self, m: _Map, key: str, name: str) -> _Seq | None:
        if name not in m or m[name] is None:
            return None
        return self.seq(m[name], m.key_lines[name], _join(key, name))

    def field(self, m: _Map, key: str, name: str, conv: Callable[[Any], T], default: T) -> T:
        if name not in m:
            return default
        try:
            return conv(m[name])
        except ValueError as e:
            raise self.fail(m.key_lines[name], _join(key, name), str(e)) from None

    def section(
        self, m: _Map, key: str, cls: Callable[..., T], table: dict[str, Callable[[Any], Any]]
    ) -> T:
        """`cls` from the keys present in `m`, each read by its converter in `table`; absent
        keys keep the dataclass' defaults, and a key without one must be present."""
        for name in _required(cls):  # type: ignore[arg-type]
            if name not in m:
                raise self.fail(m.line, key, f"missing key {name!r}")
        kw = {
            name: self.field(m, key, name, conv, None) for name, conv in table.items() if name in m
        }
        return cls(**kw)

    def count(self, n: int, line: int, key: str, who: str) -> None:
        """Refuse the item at `key` if the list it belongs to (n targets so far) takes the total
        past MAX_TARGETS. Checked item by item, so that a huge config fails before it is built."""
        if self.targets + n > MAX_TARGETS:
            raise self.fail(
                line,
                key,
                f"{who} the total past {MAX_TARGETS} targets (entities and controls together)",
            )


def _join(key: str, name: str | int) -> str:
    if isinstance(name, int):
        return f"{key}[{name}]"
    return f"{key}.{name}" if key else name


def _safe_key(key: str) -> str:
    """A key as shown in a key path: as is, or quoted when it holds unprintable characters."""
    return key if key.isprintable() else repr(key)


def _show(value: Any) -> str:
    """A value in a message: its repr, shortened when long (a 400-digit duration...)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**15:
        if value.bit_length() > 14_000:  # str() of an int past 4,300 digits raises
            return "a huge integer"
        return f"a {len(str(abs(value)))}-digit integer"
    r = repr(value)
    return r if len(r) <= 64 else r[:40] + "..." + r[-12:]


def _describe(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, _Map):
        return "a mapping"
    if isinstance(value, _Seq):
        return "a list"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**15:
        return _show(value)
    return f"{type(value).__name__} {_show(value)}"


def _bad_char(text: str) -> str | None:
    """Why `text` cannot be in a configuration, or None."""
    for c in text:
        if c.isprintable() or c == " ":
            continue
        what = _BAD_CATEGORIES.get(unicodedata.category(c))
        if what is not None:
            return f"contains {what} {c!r}"
    return None


def _check_strings(ctx: _Ctx, value: Any, key: str, line: int, seen: set[int]) -> None:
    """Refuse control characters (NUL, newline...) in every string of the document, keys too.
    `seen`: YAML aliases share objects, and a nest of them must not be walked exponentially."""
    if isinstance(value, str):
        bad = _bad_char(value)
        if bad is not None:
            raise ctx.fail(line, key, bad)
    elif isinstance(value, _Map | _Seq):
        if id(value) in seen:
            return
        seen.add(id(value))
        if isinstance(value, _Map):
            for k, v in value.items():
                bad = _bad_char(k)
                if bad is not None:
                    raise ctx.fail(value.key_lines[k], key, f"key {k!r} {bad}")
                _check_strings(ctx, v, _join(key, k), value.key_lines[k], seen)
        else:
            for i, v in enumerate(value):
                _check_strings(ctx, v, _join(key, i), value.item_lines[i], seen)


# --- numbers, durations, sizes -------------------------------------------------------------

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def _seconds(value: Any) -> float:
    m = _DURATION.fullmatch(value.strip()) if isinstance(value, str) else None
    if not m:
        raise ValueError(f"expected a duration like 500ms, 30s or 5m, got {_show(value)}")
    # Digits only: the float is >= 0, and inf when the number is too long (never nan).
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_duration(value: Any) -> float:
    """`500ms`, `30s`, `5m`, `1h` -> seconds. A bare number is refused: its unit is ambiguous."""
    seconds = _seconds(value)
    if not math.isfinite(seconds):
        raise ValueError(f"too large, got {_show(value)}")
    if seconds <= 0:
        raise ValueError(f"must be positive, got {value!r}")
    return seconds


def _duration_in(hi: float, hi_text: str, zero: bool = False) -> Callable[[Any], float]:
    """A duration up to `hi` seconds (written `hi_text`); with `zero`, 0 (off) too."""

    def conv(value: Any) -> float:
        if zero and not isinstance(value, bool) and value in (0, "0", "0s"):
            return 0.0
        seconds = _seconds(value)
        if seconds > hi:  # inf included
            raise ValueError(f"must be at most {hi_text}, got {_show(value)}")
        if seconds <= 0:
            raise ValueError(f"must be positive, got {value!r}")
        return seconds

    return conv


def _int_in(lo: int, hi: int) -> Callable[[Any], int]:
    def conv(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {_describe(value)}")
        if not lo <= value <= hi:
            raise ValueError(f"must be between {lo} and {hi}, got {_show(value)}")
        return value

    return conv


def _finite_number(value: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number, got {_describe(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"must be a finite number, got {value}")
    return value


def _rate(value: Any) -> float:
    v = _finite_number(value)
    if v <= 0:
        raise ValueError(f"must be positive, got {_show(v)}")
    if v > MAX_RATE:
        raise ValueError(f"must be at most {MAX_RATE:g} probes/s, got {_show(v)}")
    if v < MIN_RATE:
        raise ValueError(f"must be at least {MIN_RATE:g} probes/s, got {_show(v)}")
    return float(v)


def _detection_number(value: Any) -> float:
    v = _finite_number(value)
    if v < 0:
        raise ValueError(f"must not be negative, got {_show(v)}")
    if v > MAX_DETECTION_NUMBER:
        raise ValueError(f"must be at most {MAX_DETECTION_NUMBER}, got {_show(v)}")
    return float(v)


_SIZE_UNITS = {"B": 1, "kB": 1000, "KiB": 1024, "MB": 1000**2, "MiB": 1024**2}


def parse_size(value: Any) -> int:
    """Bytes, at most MAX_BODY: an integer, or `64KiB`, `1MiB`, `100kB`."""
    if isinstance(value, int) and not isinstance(value, bool):
        n = value
    else:
        m = (
            re.fullmatch(r"(\d{1,30})\s*(B|kB|KiB|MB|MiB)", value.strip())
            if isinstance(value, str)
            else None
        )
        if not m:
            raise ValueError(f"expected a size like 65536, 64KiB or 1MiB, got {_show(value)}")
        n = int(m.group(1)) * _SIZE_UNITS[m.group(2)]
    if n <= 0:
        raise ValueError(f"must be positive, got {_show(value)}")
    if n > MAX_BODY:
        raise ValueError(f"must be at most {MAX_BODY // 1024**2}MiB, got {_show(value)}")
    return n


# --- strings, addresses, names -------------------------------------------------------------


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {_describe(value)}")
    return value


def _str(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a non-empty string, got {_describe(value)}")
    return value


def _text(value: Any) -> str:
    """A non-empty string without surrounding whitespace (control characters are refused for
    every string, before validation)."""
    text = _str(value)
    if text != text.strip():
        raise ValueError(f"leading or trailing whitespace in {_show(text)}")
    return text


def _path(value: Any) -> str:
    """A plausible file system path: encodable, under PATH_MAX, components under NAME_MAX."""
    text = _text(value)
    try:
        raw = os.fsencode(text)
    except UnicodeError:
        raise ValueError(f"cannot be encoded as a file name: {_show(text)}") from None
    if len(raw) > _PATH_MAX:
        raise ValueError(f"longer than {_PATH_MAX} bytes")
    if any(len(part) > _NAME_MAX for part in raw.split(b"/")):
        raise ValueError(f"a path component is longer than {_NAME_MAX} bytes")
    return text


def parse_address(value: Any) -> IPAddress:
    if not isinstance(value, str):
        raise ValueError(f"expected an IP address, got {_describe(value)}")
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        raise ValueError(f"not an IP address: {_show(value)}") from None


def parse_network(value: Any) -> IPNetwork:
    if not isinstance(value, str):
        raise ValueError(f"expected a CIDR prefix, got {_describe(value)}")
    try:
        return ipaddress.ip_network(value.strip(), strict=True)
    except ValueError as e:
        if "host bits set" in str(e):
            raise ValueError(f"{_show(value)} has host bits set") from None
        raise ValueError(f"not a CIDR prefix: {_show(value)}") from None


def expand_addresses(value: Any) -> list[IPAddress]:
    """One address, a CIDR (`198.18.176.0/28`: every host address) or a range (`a-b`)."""
    if not isinstance(value, str):
        raise ValueError(f"expected an address, CIDR or range, got {_describe(value)}")
    text = value.strip()
    if "/" in text:
        net = parse_network(text)
        if net.num_addresses > MAX_EXPANSION:
            raise ValueError(f"{text} expands to more than {MAX_EXPANSION} addresses")
        hosts: list[IPAddress] = list(net.hosts())
        return hosts or [net.network_address]
    if "-" in text:
        first_s, last_s = (p.strip() for p in text.split("-", 1))
        first = parse_address(first_s)
        if "." not in last_s and ":" not in last_s and first.version == 4:
            # Short form 198.18.176.1-20: the last octet.
            last_s = first_s.rsplit(".", 1)[0] + "." + last_s
        last = parse_address(last_s)
        if first.version != last.version:
            raise ValueError(f"range {_show(text)} mixes IPv4 and IPv6")
        count = int(last) - int(first) + 1
        if count < 1:
            raise ValueError(f"range {_show(text)} ends before it starts")
        if count > MAX_EXPANSION:
            raise ValueError(f"range {_show(text)} expands to more than {MAX_EXPANSION} addresses")
        return [first + i for i in range(count)]
    return [parse_address(text)]


def parse_hostport(value: Any) -> tuple[IPAddress, int]:
    """`198.18.176.71:80` or `[2001:db8::1]:443`."""
    if not isinstance(value, str):
        raise ValueError(f"expected ADDRESS:PORT, got {_describe(value)}")
    text = value.strip()
    m = re.fullmatch(r"\[([0-9a-fA-F:.]+)\]:(\d{1,9})", text) or re.fullmatch(
        r"([0-9.]+):(\d{1,9})", text
    )
    if not m:
        raise ValueError(f"expected ADDRESS:PORT (IPv6 as [ADDR]:PORT), got {_show(value)}")
    port = int(m.group(2))
    if not 1 <= port <= 65535:
        raise ValueError(f"port must be between 1 and 65535, got {port}")
    return parse_address(m.group(1)), port


# A host name to listen on (`localhost`, `mon.example.org`): letters, digits, inner hyphens.
_HOSTNAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(?:\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")


def parse_listen(value: Any) -> tuple[str, int]:
    if not isinstance(value, str):
        raise ValueError(f"expected HOST:PORT, got {_describe(value)}")
    text = value.strip()
    bracketed = re.fullmatch(r"\[([^\]]*)\]:(\d{1,5})", text)
    m = bracketed or re.fullmatch(r"([^:\[\]]*):(\d{1,5})", text)
    if not m:
        raise ValueError(f"expected HOST:PORT, got {_show(value)}")
    host, port = m.group(1), int(m.group(2))
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be between 0 and 65535, got {port}")
    if not host:
        # `:9474` used to mean every interface: too easy to publish the API by accident.
        raise ValueError(
            f"no host: write 0.0.0.0:{port} or [::]:{port} to listen on every interface, "
            f"or 127.0.0.1:{port} for this machine only"
        )
    if bracketed:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"not an IPv6 address: {_show(host)}") from None
    elif not _HOSTNAME.fullmatch(host):
        raise ValueError(f"not an IP address or host name: {_show(host)}")
    return host, port


def _dns_name(text: str) -> dns.name.Name:
    """`text` as the DNS prober turns it into a name (`dns.name.from_text`), or a ValueError
    saying why dnspython refuses it."""
    try:
        return dns.name.from_text(text)
    except dns.name.BadEscape:
        why = "bad escape"
    except dns.name.EmptyLabel:
        why = "empty label"
    except dns.name.LabelTooLong:
        why = "a label is longer than 63 octets"
    except dns.name.NameTooLong:
        why = "longer than 255 octets"
    except dns.name.IDNAException:
        why = "not valid IDNA"
    except Exception as e:  # whatever else dnspython raises on a name: refused all the same
        why = type(e).__name__
    raise ValueError(why)


_URL_HOST = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?")


def _ip_or_none(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def parse_url(value: Any) -> str:
    """An http(s) URL as the HTTP prober reads it (yarl): a host that is an IP address or a
    DNS name dnspython accepts."""
    if not isinstance(value, str):
        raise ValueError(f"expected a URL, got {_describe(value)}")
    if any(c.isspace() for c in value):
        raise ValueError(f"URL contains whitespace: {_show(value)}")
    try:
        parts = urlsplit(value)
    except ValueError:
        raise ValueError(f"not a valid URL: {_show(value)}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"URL scheme must be http or https, got {_show(value)}")
    if not parts.hostname:
        raise ValueError(f"URL has no host: {_show(value)}")
    try:
        _ = parts.port
    except ValueError:
        raise ValueError(f"URL has a bad port: {_show(value)}") from None
    try:
        host = URL(value).raw_host  # IDNA-encoded, as the prober will look it up
    except ValueError:  # UnicodeError (IDNA) included
        raise ValueError(f"not a valid URL: {_show(value)}") from None
    if not host:
        raise ValueError(f"URL has no host: {_show(value)}")
    if _ip_or_none(host) is None:
        try:
            _dns_name(host)
            if not _URL_HOST.fullmatch(host):
                raise ValueError("bad character")
        except ValueError as e:
            raise ValueError(f"URL host is not a DNS name: {_show(host)} ({e})") from None
    return value


def _optional_url(value: Any) -> str | None:
    """`grafana_url`: an http(s) URL, or null for none."""
    return None if value is None else parse_url(value)


def _url_ip(url: str) -> IPAddress | None:
    """The URL's host when it is an IP literal (the URL was validated by parse_url)."""
    host = URL(url).raw_host
    return _ip_or_none(host) if host else None


def _parse_status(value: Any) -> frozenset[int]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"expected a non-empty list of HTTP status codes, got {_describe(value)}")
    for code in value:
        if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 599:
            raise ValueError(f"not an HTTP status code: {_show(code)}")
    return frozenset(value)


def _parse_ca_file(value: Any) -> str:
    path = _path(value)
    if not os.access(path, os.R_OK):
        raise ValueError(f"cannot read {_show(path)}")
    return path


def _parse_tls_version(value: Any) -> str:
    # YAML reads an unquoted 1.2 as a float; str() gives back the text the user wrote.
    text = str(value) if isinstance(value, float) else value
    if not isinstance(text, str) or text not in TLS_VERSIONS:
        raise ValueError(
            f"expected a TLS version, one of {', '.join(TLS_VERSIONS)}, got {_show(value)}"
        )
    return text


def _parse_rdtype(value: Any) -> str:
    text = _str(value).upper()
    try:
        dns.rdatatype.from_text(text)
    except (dns.rdatatype.UnknownRdatatype, ValueError):
        raise ValueError(f"unknown DNS record type {_show(value)}") from None
    return text


def _parse_rcode(value: Any) -> str:
    text = _str(value).upper()
    try:
        dns.rcode.from_text(text)
    except (dns.rcode.UnknownRcode, ValueError):
        raise ValueError(f"unknown DNS rcode {_show(value)}") from None
    return text


def _parse_dns_name(value: Any) -> str:
    text = _str(value)
    if any(c.isspace() for c in text):
        raise ValueError(f"not a DNS name: {_show(text)} (contains whitespace)")
    try:
        _dns_name(text)
    except ValueError as e:
        raise ValueError(f"not a DNS name: {_show(text)} ({e})") from None
    return text


_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")


def _parse_name(value: Any) -> str:
    # fullmatch: `$` would also match before a trailing newline.
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ValueError(
            f"expected a name of lower-case letters, digits, '.', '_' or '-', got {_show(value)}"
        )
    return value


_LOG_LEVELS = ("debug", "info", "warning", "error")


def _parse_log_level(value: Any) -> str:
    if not isinstance(value, str) or value not in _LOG_LEVELS:
        raise ValueError(f"expected one of {', '.join(_LOG_LEVELS)}, got {_show(value)}")
    return value


def _parse_ws_url(value: Any) -> str:
    text = _text(value)
    try:
        parts = urlsplit(text)
        ok = parts.scheme in ("ws", "wss") and bool(parts.hostname) and URL(text).raw_host
    except ValueError:
        ok = False
    if not ok or any(c.isspace() for c in text):
        raise ValueError(f"expected a ws:// or wss:// URL, got {_show(value)}")
    return text


# --- sections: one converter per dataclass field ------------------------------------------

_PROBING: dict[str, Callable[[Any], Any]] = {
    "interval": _duration_in(MAX_INTERVAL, "24h"),
    "timeout": _duration_in(MAX_TIMEOUT, "60s"),
    "max_rate": _rate,
    "reprobes": _int_in(0, 10),
    "splay": _bool,
    "min_timeout": _duration_in(MAX_TIMEOUT, "60s"),
}
_check_table(ProbingConfig, _PROBING)

_BGP: dict[str, Callable[[Any], Any]] = {"ris_live_url": _parse_ws_url, "enabled": _bool}
_check_table(BgpConfig, _BGP)


def _share(value: Any) -> float:
    v = _finite_number(value)
    if not 0 < v < 1:
        raise ValueError(f"must be above 0 and below 1 (a share of max_rate), got {_show(v)}")
    return float(v)


def _ports(value: Any) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise ValueError(f"expected a list of ports, got {_describe(value)}")
    if len(value) > 4:
        raise ValueError(f"at most 4 ports, got {len(value)}")
    ports = tuple(_int_in(1, 65535)(v) for v in value)
    if len(set(ports)) != len(ports):
        raise ValueError("a port is listed twice")
    return ports


_DISCOVERY: dict[str, Callable[[Any], Any]] = {
    "interval": _duration_in(30 * 86_400.0, "720h"),
    "share": _share,
    "tcp_ports": _ports,
    "sample": _int_in(1, 256),
    "sample_max": _int_in(1, 256),
    "min_responsive": _int_in(1, 256),
}
_check_table(DiscoveryConfig, _DISCOVERY)


def _parse_discovery(ctx: _Ctx, value: Any, line: int) -> DiscoveryConfig:
    dm = ctx.mapping(value, line, "discovery", _DISCOVERY.keys())
    d: DiscoveryConfig = ctx.section(dm, "discovery", DiscoveryConfig, _DISCOVERY)
    if d.sample > d.sample_max:
        raise ctx.fail(
            dm.key_lines.get("sample", dm.line), "discovery.sample", "must not exceed sample_max"
        )
    return d


def _check_discover(ctx: _Ctx, m: _Map, key: str, prefixes: list[IPNetwork]) -> bool:
    """`entities[].discover`: a census needs IPv4 prefixes, and no more than MAX_CENSUS
    addresses of them."""
    discover = ctx.field(m, key, "discover", _bool, False)
    if not discover:
        return False
    v4 = [p for p in prefixes if p.version == 4]
    if not v4:
        raise ctx.fail(
            m.key_lines["discover"],
            _join(key, "discover"),
            "a census needs at least one IPv4 prefix in 'prefixes'",
        )
    from monitor.discovery.plan import census_size

    n = census_size(v4)
    if n > MAX_CENSUS:
        raise ctx.fail(
            m.key_lines["discover"],
            _join(key, "discover"),
            f"a census of these prefixes would probe {n} addresses (at most {MAX_CENSUS})",
        )
    return True


# history.retention: durations up to ten years, days allowed (`30d`).
_RETENTION_DURATION = re.compile(r"(\d+(?:\.\d+)?)(s|m|h|d)")
MAX_RETENTION = 3650 * 86_400.0


def _retention(value: Any) -> float:
    m = _RETENTION_DURATION.fullmatch(value.strip()) if isinstance(value, str) else None
    if not m:
        raise ValueError(f"expected a duration like 48h, 30d or 730d, got {_show(value)}")
    seconds = float(m.group(1)) * {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0}[m.group(2)]
    if seconds < 3600:
        raise ValueError(f"must be at least 1h, got {_show(value)}")
    if seconds > MAX_RETENTION:  # inf included
        raise ValueError(f"must be at most 3650d, got {_show(value)}")
    return seconds


def _resolution(value: Any) -> int:
    seconds = _seconds(value)
    if not (1 <= seconds <= 60 and seconds == int(seconds)):
        raise ValueError(f"must be a whole number of seconds from 1s to 60s, got {_show(value)}")
    return int(seconds)


_RETENTION: dict[str, Callable[[Any], Any]] = {
    "fine": _retention,
    "medium": _retention,
    "coarse": _retention,
}
_check_table(HistoryRetention, _RETENTION)


def _parse_history(ctx: _Ctx, value: Any, line: int) -> HistoryConfig:
    hm = ctx.mapping(value, line, "history", _yaml_keys(HistoryConfig))
    retention = HistoryRetention()
    if "retention" in hm:
        rm = ctx.mapping(
            hm["retention"], hm.key_lines["retention"], "history.retention", _RETENTION
        )
        retention = ctx.section(rm, "history.retention", HistoryRetention, _RETENTION)
        # Each tier is made from the finer one: it cannot be kept for less time.
        for finer, coarser in (("fine", "medium"), ("medium", "coarse")):
            if getattr(retention, coarser) < getattr(retention, finer):
                raise ctx.fail(
                    rm.key_lines.get(coarser, rm.line),
                    f"history.retention.{coarser}",
                    f"must not be shorter than history.retention.{finer}",
                )
    return HistoryConfig(
        enabled=ctx.field(hm, "history", "enabled", _bool, True),
        resolution=ctx.field(hm, "history", "resolution", _resolution, 10),
        retention=retention,
    )


def _base_url(value: Any) -> str:
    """`api.base_url`: an http(s) URL without query or fragment; a trailing / dropped."""
    url = parse_url(value)
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        raise ValueError(f"a base URL has no query or fragment: {_show(url)}")
    return url.rstrip("/")


_API: dict[str, Callable[[Any], Any]] = {
    "annotation_token_file": _path,
    "base_url": _base_url,
}
_check_table(ApiConfig, _API)


def _parse_api(ctx: _Ctx, value: Any, line: int) -> ApiConfig:
    from monitor.annotations import read_token_file

    am = ctx.mapping(value, line, "api", _API.keys())
    api: ApiConfig = ctx.section(am, "api", ApiConfig, _API)
    if api.annotation_token_file is None:
        return api
    try:
        token = read_token_file(api.annotation_token_file)
    except ValueError as e:
        line = am.key_lines["annotation_token_file"]
        raise ctx.fail(line, "api.annotation_token_file", str(e)) from None
    return ApiConfig(api.annotation_token_file, api.base_url, token)


_HTTP: dict[str, Callable[[Any], Any]] = {
    "url": parse_url,
    "address": parse_address,
    "expect_status": _parse_status,
    "max_body": parse_size,
    "tls_verify": _bool,
    "ca_file": _parse_ca_file,
    "min_tls_version": _parse_tls_version,
}
_check_table(HttpTarget, _HTTP)

_DNS: dict[str, Callable[[Any], Any]] = {
    "server": parse_address,
    "name": _parse_dns_name,
    "type": _parse_rdtype,
    "port": _int_in(1, 65535),
    "expect_rcode": _parse_rcode,
    "expect_answer": _bool,
}
_check_table(DnsTarget, _DNS)

# An upstream gives `prefix`, or `address` for a single router (a /32 or /128).
_UPSTREAM_KEYS = _yaml_keys(UpstreamConfig) | {"address"}
_ENTITY_KEYS = _yaml_keys(EntityConfig)
_TARGET_KEYS = _yaml_keys(Targets)
_TOP_KEYS = _yaml_keys(Config)


def _detection_table() -> dict[str, Callable[[Any], Any]]:
    """detection.* keys are DetectionParams' fields: durations as marked there, counts as
    integers, the rest as finite numbers."""
    defaults = DetectionParams()
    durations = duration_fields()
    table: dict[str, Callable[[Any], Any]] = {}
    for f in fields(DetectionParams):
        if f.name in durations:
            table[f.name] = _duration_in(MAX_DETECTION_DURATION, "720h", zero=True)
        elif isinstance(getattr(defaults, f.name), int):
            hysteresis = f.name in ("down_after", "up_after")
            table[f.name] = _int_in(1, 100) if hysteresis else _int_in(0, MAX_DETECTION_NUMBER)
        else:
            table[f.name] = _detection_number
    return table


_DETECTION = _detection_table()


# --- targets -------------------------------------------------------------------------------


def _parse_icmp(ctx: _Ctx, items: _Seq, key: str, who: str) -> tuple[IcmpTarget, ...]:
    out: dict[IcmpTarget, None] = {}  # a dict: duplicates folded, order kept
    for i, item in enumerate(items):
        try:
            addresses = expand_addresses(item)
        except ValueError as e:
            raise ctx.fail(items.item_lines[i], _join(key, i), str(e)) from None
        out.update(dict.fromkeys(IcmpTarget(a) for a in addresses))
        ctx.count(len(out), items.item_lines[i], _join(key, i), who)
    return tuple(out)


def _parse_tcp(ctx: _Ctx, items: _Seq, key: str, who: str) -> tuple[TcpTarget, ...]:
    out: dict[TcpTarget, None] = {}
    for i, item in enumerate(items):
        try:
            address, port = parse_hostport(item)
        except ValueError as e:
            raise ctx.fail(items.item_lines[i], _join(key, i), str(e)) from None
        out[TcpTarget(address, port)] = None
        ctx.count(len(out), items.item_lines[i], _join(key, i), who)
    return tuple(out)


def _parse_http(ctx: _Ctx, items: _Seq, key: str, who: str) -> tuple[HttpTarget, ...]:
    out: dict[HttpTarget, None] = {}
    for i, item in enumerate(items):
        k = _join(key, i)
        if isinstance(item, str):
            try:
                target = HttpTarget(parse_url(item))
            except ValueError as e:
                raise ctx.fail(items.item_lines[i], k, str(e)) from None
        else:
            m = ctx.mapping(item, items.item_lines[i], k, _HTTP.keys())
            target = ctx.section(m, k, HttpTarget, _HTTP)
            literal = _url_ip(target.url)
            if literal is not None and target.address is not None and literal != target.address:
                # The prober would connect to one and be configured for the other.
                raise ctx.fail(
                    m.key_lines["address"],
                    _join(k, "address"),
                    f"{target.address} differs from the URL's host {literal}; with an IP "
                    "address in the URL, drop 'address' or make them equal",
                )
        out[target] = None
        ctx.count(len(out), items.item_lines[i], k, who)
    return tuple(out)


def _parse_dns(ctx: _Ctx, items: _Seq, key: str, who: str) -> tuple[DnsTarget, ...]:
    out: dict[DnsTarget, None] = {}
    for i, item in enumerate(items):
        k = _join(key, i)
        m = ctx.mapping(item, items.item_lines[i], k, _DNS.keys())
        target = ctx.section(m, k, DnsTarget, _DNS)
        try:
            # The DNS prober's first step, exactly: what is accepted here can be sent.
            dns.message.make_query(dns.name.from_text(target.name), target.type).to_wire()
        except Exception as e:
            raise ctx.fail(
                m.line, k, f"the DNS prober cannot build this query ({type(e).__name__})"
            ) from None
        out[target] = None
        ctx.count(len(out), items.item_lines[i], k, who)
    return tuple(out)


def _parse_targets(ctx: _Ctx, m: _Map, key: str, who: str) -> Targets:
    """The target lists of an entity or of `controls`; `who` says which, for the total cap."""
    parsed: dict[str, tuple[Any, ...]] = {}
    parsers = {"icmp": _parse_icmp, "tcp": _parse_tcp, "http": _parse_http, "dns": _parse_dns}
    for name, parser in parsers.items():
        items = ctx.items(m, key, name)
        if items:
            parsed[name] = parser(ctx, items, _join(key, name), who)
            ctx.targets += len(parsed[name])
    return Targets(**parsed)


def _parse_entities(ctx: _Ctx, items: _Seq) -> tuple[EntityConfig, ...]:
    out: list[EntityConfig] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        k = _join("entities", i)
        m = ctx.mapping(item, items.item_lines[i], k, _ENTITY_KEYS)
        if "name" not in m:
            raise ctx.fail(m.line, k, "missing key 'name'")
        name = ctx.field(m, k, "name", _parse_name, "")
        if name in seen:
            raise ctx.fail(m.key_lines["name"], _join(k, "name"), f"duplicate entity {name!r}")
        seen.add(name)
        prefixes: list[IPNetwork] = []
        pitems = ctx.items(m, k, "prefixes") or _Seq()
        for j, p in enumerate(pitems):
            try:
                prefixes.append(parse_network(p))
            except ValueError as e:
                pk = _join(_join(k, "prefixes"), j)
                raise ctx.fail(pitems.item_lines[j], pk, str(e)) from None
        targets = _parse_targets(ctx, m, k, f"entity {name!r} brings")
        if not targets and not prefixes:
            raise ctx.fail(m.line, k, "an entity needs at least one target or prefix")
        out.append(
            EntityConfig(
                name=name,
                asn=ctx.field(m, k, "asn", _int_in(1, 4294967295), None),
                prefixes=tuple(prefixes),
                targets=targets,
                discover=_check_discover(ctx, m, k, prefixes),
            )
        )
    return tuple(out)


def _parse_host_network(value: Any) -> IPNetwork:
    """One address as a /32 (/128)."""
    addr = parse_address(value)
    return ipaddress.ip_network(addr)


def _parse_upstreams(ctx: _Ctx, items: _Seq) -> tuple[UpstreamConfig, ...]:
    out: list[UpstreamConfig] = []
    seen: dict[IPNetwork, str] = {}
    for i, item in enumerate(items):
        k = _join("upstreams", i)
        m = ctx.mapping(item, items.item_lines[i], k, _UPSTREAM_KEYS)
        if "prefix" in m and "address" in m:
            raise ctx.fail(m.line, k, "give either 'prefix' or 'address', not both")
        if "prefix" not in m and "address" not in m:
            raise ctx.fail(m.line, k, "missing key 'prefix' (or 'address')")
        if "name" not in m:
            raise ctx.fail(m.line, k, "missing key 'name'")
        key = "prefix" if "prefix" in m else "address"
        conv = parse_network if key == "prefix" else _parse_host_network
        net = ctx.field(m, k, key, conv, ipaddress.ip_network("0.0.0.0/32"))
        if net in seen:
            raise ctx.fail(m.key_lines[key], _join(k, key), f"{net} is already in {seen[net]}")
        seen[net] = k
        out.append(
            UpstreamConfig(
                prefix=net,
                name=ctx.field(m, k, "name", _text, ""),
                asn=ctx.field(m, k, "asn", _int_in(1, 4294967295), None),
            )
        )
    return tuple(out)


def _parse_detection(ctx: _Ctx, value: Any, line: int) -> DetectionParams:
    dm = ctx.mapping(value, line, "detection", _DETECTION.keys())
    try:
        return ctx.section(dm, "detection", DetectionParams, _DETECTION)
    except ValueError as e:
        # DetectionParams names the field(s) first: "field: reason" or "a/b: reason".
        names_part, _, reason = str(e).partition(": ")
        key = next((n for n in names_part.split("/") if n in dm), names_part)
        raise ctx.fail(dm.key_lines.get(key, dm.line), _join("detection", key), reason) from None


def parse(text: str, path: str = "<string>") -> Config:
    """Parse and validate a configuration document; raise ConfigError on the first problem."""
    doc = _load_yaml(text, path)
    if doc is None:
        raise ConfigError(path, 1, "", "the file is empty")
    ctx = _Ctx(path)
    _check_strings(ctx, doc, "", 1, set())
    top = ctx.mapping(doc, 1, "", _TOP_KEYS)
    defaults = Config()
    host, port = ctx.field(
        top, "", "listen", parse_listen, (defaults.listen_host, defaults.listen_port)
    )

    probing = defaults.probing
    if "probing" in top:
        pm = ctx.mapping(top["probing"], top.key_lines["probing"], "probing", _PROBING.keys())
        probing = ctx.section(pm, "probing", ProbingConfig, _PROBING)
        if probing.timeout >= probing.interval:
            line = pm.key_lines.get("timeout", pm.line)
            raise ctx.fail(line, "probing.timeout", "must be shorter than probing.interval")

    detection = defaults.detection
    if "detection" in top:
        detection = _parse_detection(ctx, top["detection"], top.key_lines["detection"])

    entities: tuple[EntityConfig, ...] = ()
    if "entities" in top:
        entities = _parse_entities(
            ctx, ctx.seq(top["entities"], top.key_lines["entities"], "entities")
        )
    if not entities:
        raise ctx.fail(
            top.key_lines.get("entities", 1), "entities", "at least one entity is needed"
        )

    controls = defaults.controls
    if "controls" in top and top["controls"] is not None:
        cm = ctx.mapping(top["controls"], top.key_lines["controls"], "controls", _TARGET_KEYS)
        controls = _parse_targets(ctx, cm, "controls", "controls bring")

    discovery = defaults.discovery
    if top.get("discovery") is not None:
        discovery = _parse_discovery(ctx, top["discovery"], top.key_lines["discovery"])

    bgp = defaults.bgp
    if "bgp" in top:
        bm = ctx.mapping(top["bgp"], top.key_lines["bgp"], "bgp", _BGP.keys())
        bgp = ctx.section(bm, "bgp", BgpConfig, _BGP)

    upstreams: tuple[UpstreamConfig, ...] = ()
    if top.get("upstreams") is not None:
        upstreams = _parse_upstreams(
            ctx, ctx.seq(top["upstreams"], top.key_lines["upstreams"], "upstreams")
        )

    history = defaults.history
    if top.get("history") is not None:
        history = _parse_history(ctx, top["history"], top.key_lines["history"])

    api = defaults.api
    if top.get("api") is not None:
        api = _parse_api(ctx, top["api"], top.key_lines["api"])

    notify: tuple[NotifyReceiver, ...] = ()
    if top.get("notify") is not None:
        from monitor.notify.config import parse_notify

        names = [e.name for e in entities]
        notify = parse_notify(ctx, top["notify"], top.key_lines["notify"], names)

    # Under systemd's StateDirectory=, $STATE_DIRECTORY is the default.
    state_dir = os.environ.get("STATE_DIRECTORY") or str(defaults.state_dir)
    return Config(
        listen_host=host,
        listen_port=port,
        state_dir=Path(ctx.field(top, "", "state_dir", _path, state_dir)),
        log_level=ctx.field(top, "", "log_level", _parse_log_level, defaults.log_level),
        probing=probing,
        detection=detection,
        entities=entities,
        controls=controls,
        bgp=bgp,
        discovery=discovery,
        upstreams=upstreams,
        history=history,
        grafana_url=ctx.field(top, "", "grafana_url", _optional_url, None),
        api=api,
        notify=notify,
        source=path,
    )


def load(path: str | os.PathLike[str]) -> Config:
    """Read and parse a configuration file; unreadable files are ConfigErrors too."""
    p = os.fspath(path)
    try:
        with open(p, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(p, 0, "", f"cannot read: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(p, 0, "", "not UTF-8 text") from None
    except ValueError as e:  # a NUL in the path itself
        raise ConfigError(repr(p), 0, "", f"cannot read: {e}") from None
    return parse(text, p)


def configured_targets(cfg: Config) -> Iterator[tuple[str, Target]]:
    """(entity label, target) for every configured target, controls (as CONTROLS) last."""
    for entity in cfg.entities:
        for t in entity.targets.all():
            yield entity.name, t
    for t in cfg.controls.all():
        yield CONTROLS, t
