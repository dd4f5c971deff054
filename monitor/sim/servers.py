"""Configuration text for the world's real servers: knot (DNS) and nginx (web). No I/O here
except reading the package's data files (the leaked 2016 `kp.` zone and the domain list)."""

from __future__ import annotations

import csv
import html
import io
import ipaddress
import re
from dataclasses import dataclass
from importlib import resources

from monitor.sim.spec import Site, WorldSpec, stand_in

ZONE_FILE = "kp_zone_axfr_ns2.kptc.kp_2016-09-19.txt"
DOMAINS_FILE = "kp_domains_2016_leak.csv"
KP_SERIAL = 2013083001


def _data(name: str) -> str:
    return resources.files("monitor.sim").joinpath("data", name).read_text(encoding="utf-8")


@dataclass(frozen=True)
class RR:
    name: str  # absolute, lower case, with the trailing dot
    ttl: int
    type: str
    rdata: str


def parse_axfr(text: str) -> list[RR]:
    """The records of a `dig AXFR` dump; the closing repeat of the SOA is dropped."""
    out: list[RR] = []
    soa_seen = False
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(";"):
            continue
        name, ttl, klass, rtype, rdata = line.split(None, 4)
        if klass != "IN":
            continue
        if rtype == "SOA":
            if soa_seen:
                continue
            soa_seen = True
        out.append(RR(name.lower(), int(ttl), rtype, rdata))
    return out


def _map_a(rr: RR) -> RR:
    if rr.type != "A":
        return rr
    return RR(rr.name, rr.ttl, rr.type, stand_in(rr.rdata))


def _render(origin: str, records: list[RR]) -> str:
    lines = [f"$ORIGIN {origin}", "$TTL 86400"]
    lines += [f"{r.name}\t{r.ttl}\tIN\t{r.type}\t{r.rdata}" for r in records]
    return "\n".join(lines) + "\n"


def _leak_a_records() -> dict[str, set[str]]:
    """name -> stand-in addresses, from the 2016 domain list (A records column)."""
    out: dict[str, set[str]] = {}
    for row in csv.DictReader(io.StringIO(_data(DOMAINS_FILE))):
        for a in row["A_records_2016-09-19"].split(";"):
            a = a.strip()
            if re.fullmatch(r"\d+\.\d+\.\d+\.\d+", a):
                out.setdefault(row["domain"].lower() + ".", set()).add(stand_in(a))
    return out


def kp_zones(spec: WorldSpec) -> dict[str, str]:
    """Zone name (no trailing dot) -> zone file text.

    `kp` is the leaked 2016 zone with 175.45.176-179.x mapped to 198.18.176-179.x, SOA serial
    kept. Each zone it delegates (com.kp, rep.kp, kcna.kp, ...) is generated with the NS and glue
    the parent lists, holding the A records of the 2016 domain list and of the world's sites.
    """
    kp = [_map_a(r) for r in parse_axfr(_data(ZONE_FILE))]
    zones = {"kp": _render("kp.", kp)}
    children = sorted({r.name for r in kp if r.type == "NS" and r.name != "kp."})
    glue = {r.name: r.rdata for r in kp if r.type == "A"}
    a_records = _leak_a_records()
    for site in spec.sites:
        for name in site.names:
            if name.endswith(".kp"):
                a_records.setdefault(name.lower() + ".", set()).update(site.addresses)
    for child in children:
        ns = [r.rdata.lower() for r in kp if r.type == "NS" and r.name == child]
        recs = [
            RR(child, 86400, "SOA", f"{ns[0]} root.kptc.kp. {KP_SERIAL} 28800 86400 1209600 86400"),
            *(RR(child, 86400, "NS", n) for n in ns),
            *(RR(n, 86400, "A", glue[n]) for n in ns if n in glue and n.endswith(child)),
        ]
        for name in sorted(a_records):
            # the most specific child zone holding the name
            owner = max(
                (c for c in children if name == c or name.endswith("." + c)), key=len, default=None
            )
            if owner == child:
                recs += [
                    RR(name, 86400, "A", a)
                    for a in sorted(a_records[name], key=ipaddress.IPv4Address)
                ]
        zones[child.rstrip(".")] = _render(child, recs)
    return zones


def control_zone(spec: WorldSpec) -> dict[str, str]:
    z = spec.controls.dns_zone.rstrip(".") + "."
    recs = [
        RR(z, 3600, "SOA", f"ns1.{z} hostmaster.{z} 2025060601 3600 600 86400 300"),
        *(RR(z, 3600, "NS", f"ns{i + 1}.{z}") for i in range(len(spec.controls.dns_servers))),
        *(RR(f"ns{i + 1}.{z}", 3600, "A", a) for i, a in enumerate(spec.controls.dns_servers)),
    ]
    for site in spec.controls.sites:
        for name in site.names:
            recs += [RR(name.lower() + ".", 3600, "A", a) for a in site.addresses]
    return {z.rstrip("."): _render(z, recs)}


def knot_conf(rundir: str, listen: list[str], zones: list[str]) -> str:
    """A knotd config rooted at `rundir` (zone files `<zone>.zone` in `rundir`/zones)."""
    lines = [
        "server:",
        f'    rundir: "{rundir}"',
        f'    pidfile: "{rundir}/knot.pid"',
        "    udp-workers: 1",
        "    tcp-workers: 1",
        "    background-workers: 1",
        "    listen: [ " + ", ".join(f"{a}@53" for a in listen) + " ]",
        "log:",
        "  - target: stderr",
        "    any: warning",
        "database:",
        f'    storage: "{rundir}/db"',
        "    journal-db-max-size: 16M",
        "    kasp-db-max-size: 8M",
        "    timer-db-max-size: 8M",
        "    catalog-db-max-size: 8M",
        "control:",
        f'    listen: "{rundir}/knot.sock"',
        "template:",
        "  - id: default",
        f'    storage: "{rundir}/zones"',
        '    file: "%s.zone"',
        "    zonefile-sync: -1",
        "    zonefile-load: whole",
        "    journal-content: none",
        "zone:",
    ]
    lines += [f"  - domain: {z}." for z in zones]
    return "\n".join(lines) + "\n"


def site_page(site: Site) -> str:
    name = site.names[0]
    title = html.escape(site.title or name)
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{title}</title></head>\n"
        f"<body><h1>{title}</h1><p>{html.escape(name)}: stand-in served by the dprk-outage-monitor "
        "test world.</p></body></html>\n"
    )


# A request nginx finds malformed (e.g. HTTP/1.1 without Host) also gets no answer at all.
DROP_400 = "error_page 400 =444 @drop; location @drop { return 444; }"
# Slow sites: nginx proxies to this upstream, whose SYNs an nftables rule drops (`slow_rules`),
# so the answer comes after `proxy_connect_timeout` (the site's delay) from the error page: a
# server that takes that long to answer, with no process of our own in the way.
SLOW_UPSTREAM = ("127.0.0.1", 9)
# TLS 1.0 only, RSA key exchange or ECDHE-RSA with AES-CBC/SHA-1; security level 0 lets
# OpenSSL 3 use TLS 1.0's MD5+SHA-1 signatures at all.
LEGACY_TLS = (
    "ssl_protocols TLSv1; ssl_ciphers AES128-SHA:AES256-SHA:ECDHE-RSA-AES128-SHA:@SECLEVEL=0;"
)


def slow_rules(table: str) -> str:
    """The nft script making `SLOW_UPSTREAM` silently unreachable (loopback: never audited)."""
    host, port = SLOW_UPSTREAM
    return (
        f"table ip {table}\ndelete table ip {table}\ntable ip {table} {{\n"
        "  chain out {\n    type filter hook output priority 0; policy accept;\n"
        f"    ip daddr {host} tcp dport {port} drop\n  }}\n}}\n"
    )


def _content(s: Site, root: str) -> list[str]:
    """The locations serving a site's page, right away or after `s.delay` seconds."""
    if s.delay <= 0:
        return [f"        root {root};", "        location / { try_files $uri /index.html; }"]
    host, port = SLOW_UPSTREAM
    ms = max(1, round(s.delay * 1000))
    return [
        f"        root {root};",
        "        location / {",
        f"            proxy_pass http://{host}:{port};",
        f"            proxy_connect_timeout {ms}ms;",
        "            error_page 502 504 =200 /index.html;",
        # the upstream's timeout is the point, not an error worth a log line per request
        "            error_log /dev/null crit;",
        "        }",
        "        location = /index.html { internal; }",
    ]


def nginx_conf(
    prefix: str, sites: list[Site], certs: dict[str, tuple[str, str]], docroots: dict[str, str]
) -> str:
    """One nginx (single process: `master_process off`, so SIGSTOP freezes all of it).

    Every (address, port) gets a default server that answers nothing: `return 444` for HTTP,
    `ssl_reject_handshake` for HTTPS without a known SNI - like the real servers, a request
    without the right Host gets no answer. HTTPS sites redirect their port 80 to https.
    A site with a `delay` answers after it (see SLOW_UPSTREAM; the caller installs
    `slow_rules`); a `legacy` TLS site speaks only TLS 1.0 with old ciphers (LEGACY_TLS).
    """
    out = [
        "daemon off;",
        "master_process off;",
        f"pid {prefix}/nginx.pid;",
        f"error_log {prefix}/error.log warn;",
        "events { worker_connections 512; }",
        "http {",
        f"    access_log {prefix}/access.log;",
        f"    client_body_temp_path {prefix}/tmp/body;",
        f"    proxy_temp_path {prefix}/tmp/proxy;",
        f"    fastcgi_temp_path {prefix}/tmp/fastcgi;",
        f"    uwsgi_temp_path {prefix}/tmp/uwsgi;",
        f"    scgi_temp_path {prefix}/tmp/scgi;",
        "    default_type text/html;",
        "    server_tokens off;",
        "    keepalive_timeout 5s;",
    ]
    endpoints: set[tuple[str, int, bool]] = set()
    legacy = {a for s in sites if s.tls == "legacy" for a in s.addresses}
    for s in sites:
        for a in s.addresses:
            endpoints.add((a, 80, False))
            if s.https:
                endpoints.add((a, 443, True))
    for a, port, tls in sorted(endpoints):
        if tls:
            out += [
                "    server {",
                f"        listen {a}:{port} ssl default_server;",
                "        ssl_reject_handshake on;",
            ]
            # the handshake's versions come from the default server of the address: a legacy
            # site's addresses speak nothing newer, whatever the SNI
            out += [f"        {LEGACY_TLS}"] if a in legacy else []
            out += [f"        return 444; {DROP_400}", "    }"]
        else:
            out += [f"    server {{ listen {a}:{port} default_server; return 444; {DROP_400} }}"]
    for s in sites:
        names = " ".join(s.names)
        root = docroots[s.names[0]]
        if s.https:
            cert, key = certs[s.names[0]]
            out += ["    server {"]
            out += [f"        listen {a}:443 ssl;" for a in s.addresses]
            out += [
                f"        server_name {names};",
                f"        ssl_certificate {cert};",
                f"        ssl_certificate_key {key};",
            ]
            out += [f"        {LEGACY_TLS}"] if s.tls == "legacy" else []
            out += [*_content(s, root), f"        {DROP_400}", "    }", "    server {"]
            out += [f"        listen {a}:80;" for a in s.addresses]
            out += [
                f"        server_name {names};",
                "        return 301 https://$host$request_uri;",
                f"        {DROP_400}",
                "    }",
            ]
        else:
            out += ["    server {"]
            out += [f"        listen {a}:80;" for a in s.addresses]
            out += [
                f"        server_name {names};",
                *_content(s, root),
                f"        {DROP_400}",
                "    }",
            ]
    out.append("}")
    return "\n".join(out) + "\n"
