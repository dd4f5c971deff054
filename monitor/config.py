"""The YAML configuration: parsed into typed, frozen dataclasses and validated.

Every error names the file, the line, the key path and the reason, e.g.
`config.yaml:12: probing.interval: expected a duration like 500ms, 30s or 5m, got '30'`.
Unknown keys are errors, so that a typo never silently falls back to a default.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import dns.rcode
import dns.rdatatype
import yaml

from monitor.detect.params import DetectionParams
from monitor.probes.base import DnsTarget, HttpTarget, IcmpTarget, IPAddress, TcpTarget

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_CONFIG = "config/dprk.yaml"
# A CIDR or range in a target list expands to at most this many addresses: a typo like /8
# must not turn the monitor into a scanner.
MAX_EXPANSION = 65536


class ConfigError(Exception):
    """A configuration problem, rendered as `PATH:LINE: key.path: reason`."""

    def __init__(self, path: str, line: int, key: str, reason: str) -> None:
        self.path, self.line, self.key, self.reason = path, line, key, reason
        super().__init__(f"{path}:{line}: {key}: {reason}" if key else f"{path}:{line}: {reason}")


# --- typed configuration -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProbingConfig:
    interval: float = 30.0
    timeout: float = 3.0
    max_rate: float = 20.0
    # Immediate re-probes of a failed target, inside the same rate budget.
    reprobes: int = 2
    # Spread each target's probe over the interval (fixed per-target offset) instead of bursts.
    splay: bool = True


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
    targets: Targets = field(default_factory=Targets)


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
class Config:
    listen_host: str = "127.0.0.1"
    listen_port: int = 9474
    state_dir: Path = Path("./var")
    log_level: str = "info"
    probing: ProbingConfig = field(default_factory=ProbingConfig)
    detection: DetectionParams = field(default_factory=DetectionParams)
    entities: tuple[EntityConfig, ...] = ()
    controls: Targets = field(default_factory=Targets)
    bgp: BgpConfig = field(default_factory=BgpConfig)
    upstreams: tuple[UpstreamConfig, ...] = ()
    source: str = "<defaults>"

    def entity(self, name: str) -> EntityConfig | None:
        return next((e for e in self.entities if e.name == name), None)


# --- YAML with line numbers ----------------------------------------------------------------


class _Map(dict[str, Any]):
    """A mapping that remembers the line of each key (1-based) and its own line."""

    line: int = 0
    key_lines: dict[str, int]


class _Seq(list[Any]):
    line: int = 0
    item_lines: list[int]


class _Loader(yaml.SafeLoader):
    pass


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> _Map:
    m = _Map()
    m.line = node.start_mark.line + 1
    m.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str):
            raise ConfigError(
                loader.name, key_node.start_mark.line + 1, "", f"key {key!r} is not a string"
            )
        if key in m:
            raise ConfigError(loader.name, key_node.start_mark.line + 1, key, "duplicate key")
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


# --- the validator -------------------------------------------------------------------------

T = TypeVar("T")


class _Ctx:
    """Walks the document carrying the file name; errors point at the line of the key."""

    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, line: int, key: str, reason: str) -> ConfigError:
        return ConfigError(self.path, line, key, reason)

    def mapping(self, value: Any, line: int, key: str, allowed: set[str]) -> _Map:
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


def _join(key: str, name: str | int) -> str:
    if isinstance(name, int):
        return f"{key}[{name}]"
    return f"{key}.{name}" if key else name


def _describe(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, _Map):
        return "a mapping"
    if isinstance(value, _Seq):
        return "a list"
    return f"{type(value).__name__} {value!r}"


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: Any) -> float:
    """`500ms`, `30s`, `5m`, `1h` -> seconds. A bare number is refused: its unit is ambiguous."""
    m = _DURATION.match(value.strip()) if isinstance(value, str) else None
    if not m:
        raise ValueError(f"expected a duration like 500ms, 30s or 5m, got {value!r}")
    seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if seconds <= 0:
        raise ValueError(f"must be positive, got {value!r}")
    return seconds


def _int_in(lo: int, hi: int) -> Callable[[Any], int]:
    def conv(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {_describe(value)}")
        if not lo <= value <= hi:
            raise ValueError(f"must be between {lo} and {hi}, got {value}")
        return value

    return conv


def _positive_number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number, got {_describe(value)}")
    if value <= 0:
        raise ValueError(f"must be positive, got {value}")
    return float(value)


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {_describe(value)}")
    return value


def _str(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a non-empty string, got {_describe(value)}")
    return value


def parse_address(value: Any) -> IPAddress:
    if not isinstance(value, str):
        raise ValueError(f"expected an IP address, got {_describe(value)}")
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        raise ValueError(f"not an IP address: {value!r}") from None


def parse_network(value: Any) -> IPNetwork:
    if not isinstance(value, str):
        raise ValueError(f"expected a CIDR prefix, got {_describe(value)}")
    try:
        return ipaddress.ip_network(value.strip(), strict=True)
    except ValueError as e:
        if "host bits set" in str(e):
            raise ValueError(f"{value!r} has host bits set") from None
        raise ValueError(f"not a CIDR prefix: {value!r}") from None


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
            raise ValueError(f"range {text!r} mixes IPv4 and IPv6")
        count = int(last) - int(first) + 1
        if count < 1:
            raise ValueError(f"range {text!r} ends before it starts")
        if count > MAX_EXPANSION:
            raise ValueError(f"range {text!r} expands to more than {MAX_EXPANSION} addresses")
        return [first + i for i in range(count)]
    return [parse_address(text)]


def parse_hostport(value: Any) -> tuple[IPAddress, int]:
    """`198.18.176.71:80` or `[2001:db8::1]:443`."""
    if not isinstance(value, str):
        raise ValueError(f"expected ADDRESS:PORT, got {_describe(value)}")
    m = re.match(r"^\[([0-9a-fA-F:.]+)\]:(\d+)$", value.strip()) or re.match(
        r"^([0-9.]+):(\d+)$", value.strip()
    )
    if not m:
        raise ValueError(f"expected ADDRESS:PORT (IPv6 as [ADDR]:PORT), got {value!r}")
    port = int(m.group(2))
    if not 1 <= port <= 65535:
        raise ValueError(f"port must be between 1 and 65535, got {port}")
    return parse_address(m.group(1)), port


def parse_listen(value: Any) -> tuple[str, int]:
    if not isinstance(value, str):
        raise ValueError(f"expected HOST:PORT, got {_describe(value)}")
    m = re.match(r"^\[([^\]]+)\]:(\d+)$", value.strip()) or re.match(
        r"^([^:\[\]]*):(\d+)$", value.strip()
    )
    if not m:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    port = int(m.group(2))
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be between 0 and 65535, got {port}")
    return m.group(1) or "0.0.0.0", port


def parse_url(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a URL, got {_describe(value)}")
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"URL scheme must be http or https, got {value!r}")
    if not parts.hostname:
        raise ValueError(f"URL has no host: {value!r}")
    try:
        _ = parts.port
    except ValueError:
        raise ValueError(f"URL has a bad port: {value!r}") from None
    return value.strip()


def parse_size(value: Any) -> int:
    """Bytes: an integer, or `64KiB`, `1MiB`, `100kB`."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value <= 0:
            raise ValueError(f"must be positive, got {value}")
        return value
    m = re.match(r"^(\d+)\s*(B|kB|KiB|MB|MiB)$", value.strip()) if isinstance(value, str) else None
    if not m:
        raise ValueError(f"expected a size like 65536, 64KiB or 1MiB, got {value!r}")
    mult = {"B": 1, "kB": 1000, "KiB": 1024, "MB": 1000**2, "MiB": 1024**2}[m.group(2)]
    return int(m.group(1)) * mult


def _parse_icmp(ctx: _Ctx, items: _Seq, key: str) -> list[IcmpTarget]:
    out: list[IcmpTarget] = []
    for i, item in enumerate(items):
        try:
            out.extend(IcmpTarget(a) for a in expand_addresses(item))
        except ValueError as e:
            raise ctx.fail(items.item_lines[i], _join(key, i), str(e)) from None
    return out


def _parse_tcp(ctx: _Ctx, items: _Seq, key: str) -> list[TcpTarget]:
    out: list[TcpTarget] = []
    for i, item in enumerate(items):
        try:
            address, port = parse_hostport(item)
        except ValueError as e:
            raise ctx.fail(items.item_lines[i], _join(key, i), str(e)) from None
        out.append(TcpTarget(address, port))
    return out


_HTTP_KEYS = {"url", "address", "expect_status", "max_body", "tls_verify", "ca_file"}


def _parse_status(value: Any) -> frozenset[int]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"expected a non-empty list of HTTP status codes, got {_describe(value)}")
    for code in value:
        if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 599:
            raise ValueError(f"not an HTTP status code: {code!r}")
    return frozenset(value)


def _parse_ca_file(value: Any) -> str:
    path = _str(value)
    if not os.access(path, os.R_OK):
        raise ValueError(f"cannot read {path!r}")
    return path


def _parse_http(ctx: _Ctx, items: _Seq, key: str) -> list[HttpTarget]:
    out: list[HttpTarget] = []
    for i, item in enumerate(items):
        k = _join(key, i)
        if isinstance(item, str):
            try:
                out.append(HttpTarget(parse_url(item)))
            except ValueError as e:
                raise ctx.fail(items.item_lines[i], k, str(e)) from None
            continue
        m = ctx.mapping(item, items.item_lines[i], k, _HTTP_KEYS)
        if "url" not in m:
            raise ctx.fail(m.line, k, "missing key 'url'")
        dflt = HttpTarget("http://x/")
        out.append(
            HttpTarget(
                url=ctx.field(m, k, "url", parse_url, ""),
                address=ctx.field(m, k, "address", parse_address, None),
                expect_status=ctx.field(m, k, "expect_status", _parse_status, dflt.expect_status),
                max_body=ctx.field(m, k, "max_body", parse_size, dflt.max_body),
                tls_verify=ctx.field(m, k, "tls_verify", _bool, True),
                ca_file=ctx.field(m, k, "ca_file", _parse_ca_file, None),
            )
        )
    return out


_DNS_KEYS = {"server", "name", "type", "port", "expect_rcode", "expect_answer"}


def _parse_rdtype(value: Any) -> str:
    text = _str(value).upper()
    try:
        dns.rdatatype.from_text(text)
    except dns.rdatatype.UnknownRdatatype:
        raise ValueError(f"unknown DNS record type {value!r}") from None
    return text


def _parse_rcode(value: Any) -> str:
    text = _str(value).upper()
    try:
        dns.rcode.from_text(text)
    except dns.rcode.UnknownRcode:
        raise ValueError(f"unknown DNS rcode {value!r}") from None
    return text


def _parse_dns_name(value: Any) -> str:
    text = _str(value)
    labels = text.rstrip(".").split(".")
    if text != "." and (len(text) > 253 or any(not 0 < len(x) < 64 for x in labels)):
        raise ValueError(f"not a DNS name: {value!r}")
    return text


def _parse_dns(ctx: _Ctx, items: _Seq, key: str) -> list[DnsTarget]:
    out: list[DnsTarget] = []
    for i, item in enumerate(items):
        k = _join(key, i)
        m = ctx.mapping(item, items.item_lines[i], k, _DNS_KEYS)
        for required in ("server", "name"):
            if required not in m:
                raise ctx.fail(m.line, k, f"missing key {required!r}")
        out.append(
            DnsTarget(
                server=ctx.field(m, k, "server", parse_address, ipaddress.ip_address("0.0.0.0")),
                name=ctx.field(m, k, "name", _parse_dns_name, ""),
                type=ctx.field(m, k, "type", _parse_rdtype, "SOA"),
                port=ctx.field(m, k, "port", _int_in(1, 65535), 53),
                expect_rcode=ctx.field(m, k, "expect_rcode", _parse_rcode, "NOERROR"),
                expect_answer=ctx.field(m, k, "expect_answer", _bool, True),
            )
        )
    return out


def _dedupe(targets: list[T]) -> tuple[T, ...]:
    return tuple(dict.fromkeys(targets))


def _parse_targets(ctx: _Ctx, m: _Map, key: str) -> Targets:
    icmp = ctx.items(m, key, "icmp")
    tcp = ctx.items(m, key, "tcp")
    http = ctx.items(m, key, "http")
    dnsl = ctx.items(m, key, "dns")
    return Targets(
        icmp=_dedupe(_parse_icmp(ctx, icmp, _join(key, "icmp"))) if icmp else (),
        tcp=_dedupe(_parse_tcp(ctx, tcp, _join(key, "tcp"))) if tcp else (),
        http=_dedupe(_parse_http(ctx, http, _join(key, "http"))) if http else (),
        dns=_dedupe(_parse_dns(ctx, dnsl, _join(key, "dns"))) if dnsl else (),
    )


_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


def _parse_name(value: Any) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ValueError(
            f"expected a name of lower-case letters, digits, '.', '_' or '-', got {value!r}"
        )
    return value


def _parse_entities(ctx: _Ctx, items: _Seq) -> tuple[EntityConfig, ...]:
    out: list[EntityConfig] = []
    seen: set[str] = set()
    allowed = {"name", "asn", "prefixes", "icmp", "tcp", "http", "dns"}
    for i, item in enumerate(items):
        k = _join("entities", i)
        m = ctx.mapping(item, items.item_lines[i], k, allowed)
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
        targets = _parse_targets(ctx, m, k)
        if not targets and not prefixes:
            raise ctx.fail(m.line, k, "an entity needs at least one target or prefix")
        out.append(
            EntityConfig(
                name=name,
                asn=ctx.field(m, k, "asn", _int_in(1, 4294967295), None),
                prefixes=tuple(prefixes),
                targets=targets,
            )
        )
    return tuple(out)


_UPSTREAM_KEYS = {"prefix", "address", "asn", "name"}


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
                name=ctx.field(m, k, "name", _str, ""),
                asn=ctx.field(m, k, "asn", _int_in(1, 4294967295), None),
            )
        )
    return tuple(out)


_LOG_LEVELS = ("debug", "info", "warning", "error")


def _parse_log_level(value: Any) -> str:
    if value not in _LOG_LEVELS:
        raise ValueError(f"expected one of {', '.join(_LOG_LEVELS)}, got {value!r}")
    return str(value)


def _parse_ws_url(value: Any) -> str:
    text = _str(value)
    if urlsplit(text).scheme not in ("ws", "wss") or not urlsplit(text).hostname:
        raise ValueError(f"expected a ws:// or wss:// URL, got {value!r}")
    return text


# detection.* keys are DetectionParams' fields; these take durations, the rest numbers.
_DETECTION_DURATIONS = {
    "negative_spacing",
    "responsive_ttl",
    "partial_after",
    "routing_after",
    "degraded_window",
    "degraded_after",
    "normal_tau",
    "vantage_window",
    "merge_gap",
}


def _parse_zero_or_duration(value: Any) -> float:
    return 0.0 if value in (0, "0", "0s") else parse_duration(value)


def _non_negative_number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number, got {_describe(value)}")
    if value < 0:
        raise ValueError(f"must not be negative, got {value}")
    return float(value)


def _parse_detection(ctx: _Ctx, value: Any, line: int) -> DetectionParams:
    defaults = DetectionParams()
    names = {f.name for f in fields(DetectionParams)}
    dm = ctx.mapping(value, line, "detection", names)
    kw: dict[str, Any] = {}
    for name in dm:
        default = getattr(defaults, name)
        conv: Callable[[Any], Any]
        if name in _DETECTION_DURATIONS:
            conv = _parse_zero_or_duration
        elif isinstance(default, int):
            hysteresis = name in ("down_after", "up_after")
            conv = _int_in(1, 100) if hysteresis else _int_in(0, 1_000_000)
        else:
            conv = _non_negative_number
        kw[name] = ctx.field(dm, "detection", name, conv, default)
    try:
        return DetectionParams(**kw)
    except ValueError as e:
        # DetectionParams names the field(s) first: "field: reason" or "a/b: reason".
        names_part, _, reason = str(e).partition(": ")
        key = next((n for n in names_part.split("/") if n in dm), names_part)
        raise ctx.fail(dm.key_lines.get(key, dm.line), _join("detection", key), reason) from None


def parse(text: str, path: str = "<string>") -> Config:
    """Parse and validate a configuration document; raise ConfigError on the first problem."""
    ctx = _Ctx(path)
    try:
        loader = _Loader(text)
        loader.name = path
        try:
            doc = loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else 1
        raise ConfigError(path, line, "", f"YAML syntax error: {e.problem or e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(path, 1, "", f"YAML error: {e}") from None
    if doc is None:
        raise ConfigError(path, 1, "", "the file is empty")
    top = ctx.mapping(
        doc,
        1,
        "",
        {
            "listen",
            "state_dir",
            "log_level",
            "probing",
            "detection",
            "entities",
            "controls",
            "bgp",
            "upstreams",
        },
    )
    host, port = ctx.field(top, "", "listen", parse_listen, ("127.0.0.1", 9474))

    probing = ProbingConfig()
    if "probing" in top:
        pm = ctx.mapping(
            top["probing"],
            top.key_lines["probing"],
            "probing",
            {"interval", "timeout", "max_rate", "reprobes", "splay"},
        )
        probing = ProbingConfig(
            interval=ctx.field(pm, "probing", "interval", parse_duration, probing.interval),
            timeout=ctx.field(pm, "probing", "timeout", parse_duration, probing.timeout),
            max_rate=ctx.field(pm, "probing", "max_rate", _positive_number, probing.max_rate),
            reprobes=ctx.field(pm, "probing", "reprobes", _int_in(0, 10), probing.reprobes),
            splay=ctx.field(pm, "probing", "splay", _bool, probing.splay),
        )
        if probing.timeout >= probing.interval:
            line = pm.key_lines.get("timeout", pm.line)
            raise ctx.fail(line, "probing.timeout", "must be shorter than probing.interval")

    detection = DetectionParams()
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

    controls = Targets()
    if "controls" in top and top["controls"] is not None:
        cm = ctx.mapping(
            top["controls"], top.key_lines["controls"], "controls", {"icmp", "tcp", "http", "dns"}
        )
        controls = _parse_targets(ctx, cm, "controls")

    bgp = BgpConfig()
    if "bgp" in top:
        bm = ctx.mapping(top["bgp"], top.key_lines["bgp"], "bgp", {"ris_live_url", "enabled"})
        bgp = BgpConfig(
            ris_live_url=ctx.field(bm, "bgp", "ris_live_url", _parse_ws_url, bgp.ris_live_url),
            enabled=ctx.field(bm, "bgp", "enabled", _bool, bgp.enabled),
        )

    upstreams: tuple[UpstreamConfig, ...] = ()
    if top.get("upstreams") is not None:
        upstreams = _parse_upstreams(
            ctx, ctx.seq(top["upstreams"], top.key_lines["upstreams"], "upstreams")
        )

    return Config(
        listen_host=host,
        listen_port=port,
        # Under systemd's StateDirectory=, $STATE_DIRECTORY is the default.
        state_dir=Path(
            ctx.field(top, "", "state_dir", _str, os.environ.get("STATE_DIRECTORY") or "./var")
        ),
        log_level=ctx.field(top, "", "log_level", _parse_log_level, "info"),
        probing=probing,
        detection=detection,
        entities=entities,
        controls=controls,
        bgp=bgp,
        upstreams=upstreams,
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
    return parse(text, p)
