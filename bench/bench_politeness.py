"""Politeness cap, measured where the packets arrive: the real daemon against a counting receiver.

Run as root: `python bench/bench_politeness.py`. Two fresh network namespaces, joined by a veth
pair and nothing else:

- the *vantage* (this process, unshared at start-up) runs the real daemon, `python -m monitor run
  --config <generated yaml>`, with a route to 198.18.176.0/24 over the veth;
- the *monitored network* (a child process of this script, `--receiver`, unshared too) owns
  198.18.176.1-100 (kernel answers ICMP; TCP :22 accepts, :23 is closed, :80 serves HTTP 200) and
  blackholes the rest of the /24 silently (forwarding on + a blackhole route: no ICMP error), so
  half the addresses never answer and cost `1 + reprobes` probes every round.

On its side of the veth the receiver counts every probe packet that arrives with an AF_PACKET
socket and the kernel's receive timestamps (SO_TIMESTAMPNS): ICMP echo requests, TCP SYNs (HTTP on
:80 counted apart; a SYN with the same 4-tuple and sequence number as an earlier one is a kernel
retransmission and is counted apart too) and UDP DNS queries. Controls and BGP are left out of the
config, so every packet counted is under `max_rate`.

For each max_rate (5, 20, 100 by default) and run: start the daemon, let it probe for `--duration`
seconds after /readyz, SIGTERM it, collect the packets of its whole life and compute the largest
count in any one-second sliding window ([t, t+1) at every packet), the largest count in a calendar
second, and the average rate over the measured span. One more run at max_rate 20 with the
daemon's default `timeout: 3s` (`--default-timeout-run`, 0 skips it) shows what the kernel's SYN
retransmissions do to the cap when silent TCP targets outlive the initial 1 s RTO.
It prints a table and rewrites the
"Politeness cap" section of docs/BENCHMARKS.md (other sections are left alone); `--no-write` only
prints. Defaults take about 10 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import ctypes
import datetime as dt
import json
import os
import platform
import re
import select
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import benchlib  # noqa: E402

from tests.netns_util import enter_new_netns, ip, sysctl  # noqa: E402

DOC = ROOT / "docs" / "BENCHMARKS.md"
HEADING = "## Politeness cap"

VANTAGE_IF, MONITORED_IF = "pol0", "pol1"
VANTAGE_ADDR, MONITORED_ADDR = "198.18.0.1", "198.18.0.2"
NET = "198.18.176."
LISTEN = "127.0.0.1:9474"  # the daemon's web port, on the vantage namespace's own lo
INTERVAL, TIMEOUT, REPROBES = 5.0, 1.0, 2

# The monitored network: which addresses answer, which never do.
ANSWERING = range(1, 101)  # 198.18.176.1-100 are owned by the receiver
SILENT = range(101, 255)  # the rest of the /24 is blackholed
OPEN_TCP, CLOSED_TCP, HTTP_PORT, DNS_PORT = 22, 23, 80, 53

ETH_P_IP = 0x0800
SO_TIMESTAMPNS = 35  # asm-generic; SCM_TIMESTAMPNS has the same value
PACKET_STATISTICS = 6
SOL_PACKET = 263
PACKET_OUTGOING = 4

DNS_PORT_BYTES = DNS_PORT.to_bytes(2, "big")
KINDS = ("icmp", "tcp", "http", "dns")


# -- the generated configuration ----------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """The targets, and how many probes one round of them costs when nothing changes."""

    yaml: str
    targets: dict[str, int]
    failing: dict[str, int]

    def demand(self, reprobes: int, interval: float) -> float:
        per_round = sum(self.targets.values()) + reprobes * sum(self.failing.values())
        return per_round / interval


def make_plan(max_rate: float, state_dir: Path, timeout: float = TIMEOUT) -> Plan:
    """200 ICMP (half silent), 250 TCP (open / refused / silent), 2 HTTP, 2 DNS, two entities."""
    tcp = (
        [f"{NET}{i}:{OPEN_TCP}" for i in range(1, 101)]
        + [f"{NET}{i}:{CLOSED_TCP}" for i in range(1, 101)]  # RST: refused, re-probed
        + [f"{NET}{i}:443" for i in range(201, 251)]  # blackholed: timeout, re-probed
    )
    lines = [
        f"listen: {LISTEN}",
        f"state_dir: {state_dir}",
        "log_level: info",
        "probing:",
        f"  interval: {INTERVAL:g}s",
        f"  timeout: {timeout:g}s",
        f"  max_rate: {max_rate:g}",
        f"  reprobes: {REPROBES}",
        "bgp:",
        "  enabled: false",
        "entities:",
        "  - name: bench-net",
        "    prefixes: [198.18.176.0/24]",
        "    icmp:",
        f"      - {NET}1-200",
        "    tcp:",
        *(f'      - "{t}"' for t in tcp),
        "  - name: bench-web",
        "    http:",
        f"      - url: http://www.kcna.kp/\n        address: {NET}71\n        expect_status: [200]",
        f"      - url: http://naenara.com.kp/\n        address: {NET}230\n"
        "        expect_status: [200]",
        "    dns:",
        f"      - server: {NET}240",  # blackholed: timeout
        "        name: kp",
        "        type: SOA",
        f"      - server: {NET}15",  # owned, nothing on :53: port unreachable, refused
        "        name: kp",
        "        type: SOA",
    ]
    return Plan(
        yaml="\n".join(lines) + "\n",
        targets={"icmp": 200, "tcp": len(tcp), "http": 2, "dns": 2},
        failing={"icmp": 100, "tcp": 150, "http": 1, "dns": 2},
    )


# -- the receiver (monitored network) -----------------------------------------------------


class Capture:
    """Kernel-timestamped arrivals of probe packets on one interface, in a thread."""

    def __init__(self, ifname: str) -> None:
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.bind((ifname, ETH_P_IP))
        self.lock = threading.Lock()
        # (kernel time ns, kind, ns since the first copy of this SYN; 0: not a retransmission)
        self.packets: list[tuple[int, str, int]] = []
        self.seen_syn: dict[tuple[bytes, int, bytes, int, int], int] = {}
        self.other = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        cmsg_size = socket.CMSG_SPACE(16)
        while not self.stop.is_set():
            ready, _, _ = select.select([self.sock], [], [], 0.2)
            if not ready:
                continue
            data, ancdata, _flags, addr = self.sock.recvmsg(2048, cmsg_size)
            if addr[2] == PACKET_OUTGOING:
                continue
            ts = 0
            for level, kind, cdata in ancdata:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = struct.unpack("qq", cdata[:16])
                    ts = sec * 1_000_000_000 + nsec
            if not ts:
                ts = time.time_ns()
            self._classify(ts, data)

    def _classify(self, ts: int, pkt: bytes) -> None:
        """Ethernet + IPv4 from the vantage to the monitored /24; note what kind of probe."""
        if len(pkt) < 34 or pkt[12:14] != b"\x08\x00":
            return
        ihl = (pkt[14] & 0x0F) * 4
        proto, src, dst = pkt[23], pkt[26:30], pkt[30:34]
        if socket.inet_ntoa(src) != VANTAGE_ADDR or not socket.inet_ntoa(dst).startswith(NET):
            return
        l4 = 14 + ihl
        kind: str | None = None
        rtx = 0
        if proto == 1 and len(pkt) > l4 and pkt[l4] == 8:
            kind = "icmp"
        elif proto == 6 and len(pkt) >= l4 + 14:
            sport, dport, seq = struct.unpack_from("!HHI", pkt, l4)
            flags = pkt[l4 + 13]
            if flags & 0x02 and not flags & 0x10:  # SYN without ACK: a connection attempt
                kind = "http" if dport == HTTP_PORT else "tcp"
                key = (src, sport, dst, dport, seq)
                first = self.seen_syn.setdefault(key, ts)
                rtx = ts - first
        elif proto == 17 and len(pkt) >= l4 + 8 and pkt[l4 + 2 : l4 + 4] == DNS_PORT_BYTES:
            kind = "dns"
        if kind is None:
            self.other += 1
            return
        with self.lock:
            self.packets.append((ts, kind, rtx))

    def take(self) -> list[tuple[int, str, int]]:
        with self.lock:
            out, self.packets = self.packets, []
        horizon = time.time_ns() - 30_000_000_000
        self.seen_syn = {k: v for k, v in self.seen_syn.items() if v > horizon}
        return out

    def drops(self) -> int:
        raw = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
        _packets, dropped = struct.unpack("II", raw)
        return int(dropped)


async def _serve_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        async with asyncio.timeout(5):
            await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n"
            b"Connection: close\r\n\r\nok\n"
        )
        await writer.drain()
    writer.close()


async def _serve_close(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


def setup_monitored() -> None:
    """In the receiver's namespace, once the veth end has arrived: addresses, routes."""
    ip("addr", "add", f"{MONITORED_ADDR}/30", "dev", MONITORED_IF)
    ip("link", "set", MONITORED_IF, "up")
    batch = "".join(f"addr add {NET}{i}/32 dev lo\n" for i in ANSWERING)
    subprocess.run(["ip", "-batch", "-"], input=batch, text=True, check=True)
    # Forwarding on + blackhole: the rest of the /24 is dropped without any ICMP error (with
    # forwarding off the kernel would answer "host unreachable" and nothing would time out).
    sysctl("net.ipv4.ip_forward", "1")
    ip("route", "add", "blackhole", f"{NET}0/24")


async def receiver_main() -> None:
    """The monitored network: answer, count, and report on stdin commands (JSON lines)."""
    out = sys.stdout
    enter_new_netns()
    with contextlib.suppress(OSError):
        sysctl("net.ipv6.conf.all.disable_ipv6", "1")
        sysctl("net.ipv6.conf.default.disable_ipv6", "1")
    print(json.dumps({"pid": os.getpid()}), file=out, flush=True)
    loop = asyncio.get_running_loop()
    line = await loop.run_in_executor(None, sys.stdin.readline)  # "go": the veth end is here
    if line.strip() != "go":
        return
    setup_monitored()
    servers = [
        await asyncio.start_server(_serve_http, "0.0.0.0", HTTP_PORT, backlog=1024),
        await asyncio.start_server(_serve_close, "0.0.0.0", OPEN_TCP, backlog=1024),
    ]
    cap = Capture(MONITORED_IF)
    print(json.dumps({"ready": True}), file=out, flush=True)
    try:
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            cmd = line.strip()
            if cmd == "take":
                pkts = cap.take()
                reply = {"packets": pkts, "drops": cap.drops(), "other": cap.other}
                print(json.dumps(reply), file=out, flush=True)
            else:  # "quit" or EOF
                break
    finally:
        cap.stop.set()
        for s in servers:
            s.close()


def _die_with_parent() -> None:
    """preexec_fn: SIGTERM the child when this process dies, however it dies."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Receiver:
    """The receiver child process, seen from the vantage."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--receiver"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=_die_with_parent,
        )
        self.pid = int(self._read()["pid"])

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"receiver exited ({self.proc.wait()})")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def _send(self, cmd: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()

    def go(self) -> None:
        self._send("go")
        self._read()

    def take(self) -> dict[str, Any]:
        self._send("take")
        return self._read()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._send("quit")
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def setup_vantage() -> Receiver:
    """This process into a fresh namespace; the receiver in another; a veth between them."""
    enter_new_netns()
    with contextlib.suppress(OSError):
        sysctl("net.ipv6.conf.all.disable_ipv6", "1")
        sysctl("net.ipv6.conf.default.disable_ipv6", "1")
    rx = Receiver()
    try:
        ip(
            "link",
            "add",
            VANTAGE_IF,
            "type",
            "veth",
            "peer",
            "name",
            MONITORED_IF,
            "netns",
            str(rx.pid),
        )
        ip("addr", "add", f"{VANTAGE_ADDR}/30", "dev", VANTAGE_IF)
        ip("link", "set", VANTAGE_IF, "up")
        rx.go()
        ip("route", "add", f"{NET}0/24", "via", MONITORED_ADDR)
    except BaseException:
        rx.close()
        raise
    return rx


# -- one run ------------------------------------------------------------------------------


@dataclass
class Run:
    max_rate: float
    duration: float
    packets: list[tuple[float, str, bool]]  # (arrival time s, kind, SYN retransmission)
    rtx_delays: list[float]  # of each SYN retransmission: seconds after the first copy
    span: tuple[float, float]  # the measured span (after /readyz) in the same clock
    launched: float  # when the daemon was started
    timeout: float
    daemon_probes: float
    daemon_late: float
    failures: dict[str, float]  # the daemon's probe_failures_total by kind/reason
    drops: int

    @property
    def times(self) -> list[float]:
        """Arrival times of every probe packet, kernel SYN retransmissions included."""
        return [t for t, _, _ in self.packets]

    @property
    def first(self) -> list[float]:
        """Arrival times without the kernel's SYN retransmissions."""
        return [t for t, _, rtx in self.packets if not rtx]

    @property
    def retransmits(self) -> int:
        return sum(1 for _, _, rtx in self.packets if rtx)

    @property
    def by_kind(self) -> dict[str, int]:
        c = collections.Counter(k for _, k, rtx in self.packets if not rtx)
        return {k: c.get(k, 0) for k in KINDS}

    @property
    def sliding(self) -> int:
        return max_sliding(self.times)

    @property
    def sliding_first(self) -> int:
        return max_sliding(self.first)

    @property
    def calendar(self) -> int:
        return max_calendar(self.times)

    @property
    def average(self) -> float:
        a, b = self.span
        return sum(1 for t in self.times if a <= t < b) / (b - a)


def max_sliding(times: list[float], width: float = 1.0) -> int:
    """Largest number of arrivals in any half-open window [t, t + width)."""
    ts = sorted(times)
    best = j = 0
    for i, t in enumerate(ts):
        while j < len(ts) and ts[j] < t + width:
            j += 1
        best = max(best, j - i)
    return best


def worst_window(times: list[float], width: float = 1.0) -> tuple[float, int]:
    """Start and count of the first fullest window (for evidence)."""
    ts = sorted(times)
    best, at, j = 0, 0.0, 0
    for i, t in enumerate(ts):
        while j < len(ts) and ts[j] < t + width:
            j += 1
        if j - i > best:
            best, at = j - i, t
    return at, best


def max_calendar(times: list[float]) -> int:
    counts = collections.Counter(int(t) for t in times)
    return max(counts.values(), default=0)


def _get(path: str, timeout: float = 2.0) -> str:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://{LISTEN}{path}", timeout=timeout) as resp:
        body: bytes = resp.read()
    return body.decode()


def _metric_sum(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _failures(text: str) -> dict[str, float]:
    """probe_failures_total summed by kind/reason (a check that silent targets time out)."""
    out: dict[str, float] = collections.defaultdict(float)
    pat = re.compile(r"^dprk_monitor_probe_failures_total\{(.*)\} (\S+)$")
    for line in text.splitlines():
        m = pat.match(line)
        if m:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
            if float(m.group(2)):
                out[f"{labels.get('kind')}/{labels.get('reason')}"] += float(m.group(2))
    return dict(out)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def one_run(
    rx: Receiver, max_rate: float, timeout: float, duration: float, workdir: Path, tag: str
) -> Run:
    state = workdir / f"state-{tag}"
    state.mkdir()
    plan = make_plan(max_rate, state, timeout)
    cfg = workdir / f"config-{tag}.yaml"
    cfg.write_text(plan.yaml)
    log_path = workdir / f"daemon-{tag}.log"
    rx.take()  # forget anything before this run
    launched = time.time()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", "run", "--config", str(cfg)],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"daemon exited {proc.returncode}:\n{_tail(log_path)}")
            with contextlib.suppress(OSError, urllib.error.URLError):
                _get("/readyz", 0.5)
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"daemon not ready in 30 s:\n{_tail(log_path)}")
            time.sleep(0.05)
        t0 = time.time()
        time.sleep(duration)
        t1 = time.time()
        metrics = _get("/metrics", 10)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    time.sleep(1.5)  # late arrivals and kernel retransmissions of the last probes
    got = rx.take()
    pkts: list[list[Any]] = got["packets"]
    return Run(
        max_rate=max_rate,
        duration=duration,
        packets=sorted((int(p[0]) / 1e9, str(p[1]), int(p[2]) > 0) for p in pkts),
        rtx_delays=[int(p[2]) / 1e9 for p in pkts if int(p[2]) > 0],
        span=(t0, t1),
        launched=launched,
        timeout=timeout,
        daemon_probes=_metric_sum(metrics, "dprk_monitor_probes_total"),
        daemon_late=_metric_sum(metrics, "dprk_monitor_probes_late_total"),
        failures=_failures(metrics),
        drops=int(got["drops"]),
    )


# -- report -------------------------------------------------------------------------------


@dataclass
class Row:
    max_rate: float
    timeout: float
    demand: float
    runs: list[Run] = field(default_factory=list)


def med_max(values: list[float], fmt: str) -> str:
    return f"{format(statistics.median(values), fmt)} / {format(max(values), fmt)}"


def machine() -> dict[str, str]:
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": f"{model}, {os.cpu_count()} logical CPUs",
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def violations(rows: list[Row]) -> list[str]:
    """Every run whose fullest one-second window holds more than max_rate, with its contents."""
    out = []
    for row in rows:
        for i, r in enumerate(row.runs, 1):
            for label, first_only in (("probe packets", False), ("first transmissions", True)):
                at, n = worst_window(r.first if first_only else r.times)
                if n > row.max_rate:
                    when = dt.datetime.fromtimestamp(at, dt.UTC).strftime("%H:%M:%S.%f")
                    since = at - r.span[0]
                    kinds = collections.Counter(
                        k + (" rtx" if rtx else "")
                        for t, k, rtx in r.packets
                        if at <= t < at + 1.0 and not (first_only and rtx)
                    )
                    out.append(
                        f"max_rate {row.max_rate:g}, timeout {row.timeout:g}s, run {i}: {n} "
                        f"{label} in [{when}, +1 s) UTC ({since:+.2f} s after /readyz): "
                        + ", ".join(f"{v} {k}" for k, v in sorted(kinds.items()))
                    )
    return out


def render(rows: list[Row], info: dict[str, str], date: str, bad: list[str]) -> str:
    lines = [
        HEADING,
        "",
        "Measured by `bench/bench_politeness.py` (as root), at the receiver. The real daemon",
        "(`python -m monitor run --config <generated>`) runs in a fresh network namespace whose",
        "only way out is a veth to a second fresh namespace playing the monitored network",
        "198.18.176.0/24: it owns .1-.100 (the kernel answers ICMP; TCP :22 accepts, :23 is",
        "closed, :80 serves HTTP 200) and silently blackholes the rest (no ICMP errors). Config:",
        f"`probing: {{interval: {INTERVAL:g}s, timeout: 1s, max_rate: N, reprobes: {REPROBES}}}`, no",
        "controls, BGP off; 456 targets in two entities: 200 ICMP (half silent), 250 TCP (100",
        "open, 100 refused, 50 silent), 2 HTTP (one pinned to a silent address), 2 DNS (one",
        "silent, one refused). Each failure costs `1 + reprobes` probes, so one round asks for",
        f"{rows[0].demand:.0f} probes/s: every cap below is saturated for the whole run.",
        "",
        "On the receiver's end of the veth an AF_PACKET socket records every probe packet that",
        "arrives (ICMP echo requests, TCP SYNs, those of HTTP included, UDP to :53) with the",
        "kernel's receive timestamp (SO_TIMESTAMPNS), over the daemon's whole life (start to",
        "SIGTERM). *Any 1 s window*: the largest count in [t, t + 1 s) over every arrival t;",
        "*calendar second*: the largest count in one UTC second; both count every packet, and",
        "*first tx only* leaves out the kernel's SYN retransmissions (a SYN with the same",
        "4-tuple and sequence number as an earlier one), i.e. what the daemon itself sent.",
        "*Average*: packets / s over the measured span after /readyz. *Sent / arrived*: the",
        "daemon's `probes_total` at the last scrape / first transmissions that had arrived by",
        "then (the daemon counts a probe when it completes, so probes in flight make up the",
        "difference). Figures are median / max over the runs; average is median (min-max).",
        "",
        f"- date: {date}",
        f"- CPU: {info['cpu']}",
        f"- kernel {info['kernel']}, Python {info['python']}",
        "",
        "| max_rate | timeout | runs x s | any 1 s window | first tx only | calendar second"
        " | average /s | SYN rtx | first tx icmp/tcp/http/dns (median run) | sent / arrived"
        " | capture drops | cap held at receiver |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        runs = row.runs
        k = sorted(runs, key=lambda r: r.sliding)[len(runs) // 2].by_kind
        held = all(r.sliding <= row.max_rate and r.calendar <= row.max_rate for r in runs)
        sent = sum(r.daemon_probes for r in runs)
        arrived = sum(sum(1 for t in r.first if t < r.span[1]) for r in runs)
        avg = [r.average for r in runs]
        avg_s = f"{statistics.median(avg):.2f}"
        if len(runs) > 1:
            avg_s += f" ({min(avg):.2f}-{max(avg):.2f})"
        avg_s += f", {statistics.median(avg) / row.max_rate:.0%} of cap"
        lines.append(
            f"| {row.max_rate:g} | {row.timeout:g} s | {len(runs)} x {runs[0].duration:.0f} "
            f"| {med_max([float(r.sliding) for r in runs], '.0f')} "
            f"| {med_max([float(r.sliding_first) for r in runs], '.0f')} "
            f"| {med_max([float(r.calendar) for r in runs], '.0f')} "
            f"| {avg_s} "
            f"| {sum(r.retransmits for r in runs)} "
            f"| {k['icmp']}/{k['tcp']}/{k['http']}/{k['dns']} "
            f"| {sent:,.0f} / {arrived:,} "
            f"| {sum(r.drops for r in runs)} "
            f"| {'yes' if held else '**no**'} |"
        )
    lines.append("")
    if bad:
        lines += [
            "**Cap exceeded at the receiver.** The fullest window of each run that broke it:",
            "",
        ]
        lines += [f"- {b}" for b in bad]
        lines += [
            "",
            "The daemon's own sends (*first tx only*) stay within `max_rate`; the excess is the",
            "kernel retransmitting the SYN of a TCP or HTTP probe to a silent address (initial",
            "RTO 1 s, then more), which the rate limiter does not see. With `timeout: 1s` it is",
            "a race between the kernel's first retransmission and the probe closing its socket;",
            "with a longer timeout every silent TCP/HTTP probe costs several SYNs. Where the cap",
            "held in spite of retransmissions, the daemon's own rate stayed far enough below it",
            "(see *first tx only* and *average*). When each retransmission arrived, after the",
            "first copy of its SYN:",
            "",
        ]
        for row in rows:
            delays = [d for r in row.runs for d in r.rtx_delays]
            if delays:
                hist = collections.Counter(round(d, 1) for d in delays)
                lines.append(
                    f"- max_rate {row.max_rate:g}, timeout {row.timeout:g} s: {len(delays)}, "
                    + ", ".join(f"{n} at +{d:.1f} s" for d, n in sorted(hist.items()))
                    + f" (min +{min(delays):.3f} s, max +{max(delays):.3f} s)"
                )
    else:
        lines.append(
            "No one-second window, sliding or calendar, ever held more probe packets than"
            " `max_rate`, in any run."
        )
    lines.append("")
    return "\n".join(lines)


# -- main ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--rates", default="5,20,100", help="max_rate values, comma-separated")
    ap.add_argument("--runs", type=int, default=3, help="runs per max_rate")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of probing per run")
    ap.add_argument("--timeout", type=float, default=TIMEOUT, help="probing.timeout, seconds")
    ap.add_argument(
        "--default-timeout-run",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="plus one run this long at max_rate 20 with the default timeout (3 s); 0: skip",
    )
    ap.add_argument("--no-write", action="store_true", help="print only; leave the docs alone")
    ap.add_argument("--receiver", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.receiver:
        asyncio.run(receiver_main())
        return 0
    if os.geteuid() != 0:
        print("bench_politeness: run as root (it creates network namespaces)", file=sys.stderr)
        return 2
    # SIGTERM (and SIGINT, even when started in the background) unwind through the finally
    # blocks, which stop the daemon and the receiver.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    # (max_rate, timeout, runs, seconds)
    cases = [(float(x), args.timeout, args.runs, args.duration) for x in args.rates.split(",")]
    if args.default_timeout_run > 0:
        cases.append((20.0, 3.0, 1, args.default_timeout_run))
    info = machine()
    date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    rx = setup_vantage()
    rows: list[Row] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-politeness-") as tmp:
            work = Path(tmp)
            for rate, timeout, runs, seconds in cases:
                row = Row(rate, timeout, make_plan(rate, work).demand(REPROBES, INTERVAL))
                for i in range(runs):
                    tag = f"{rate:g}-{timeout:g}-{i}"
                    r = one_run(rx, rate, timeout, seconds, work, tag)
                    row.runs.append(r)
                    _print_run(r, i)
                rows.append(row)
    finally:
        rx.close()
    bad = violations(rows)
    text = render(rows, info, date, bad)
    print()
    print(text)
    if not args.no_write:
        benchlib.write_section(HEADING, text)
        print(f"updated {DOC.relative_to(ROOT)}")
    return 0


def _print_run(r: Run, i: int, out: IO[str] = sys.stdout) -> None:
    print(
        f"max_rate {r.max_rate:>5g} timeout {r.timeout:g}s run {i + 1}: any-1s max {r.sliding:4d} "
        f"(first tx {r.sliding_first:4d}), calendar max {r.calendar:4d}, "
        f"avg {r.average:7.2f}/s, arrived {len(r.times):6d} (rtx {r.retransmits}), "
        f"daemon probes_total {r.daemon_probes:,.0f}, late {r.daemon_late:,.0f}, "
        f"drops {r.drops}\n    ready after {r.span[0] - r.launched:.2f} s, packets from "
        f"{r.times[0] - r.launched if r.times else 0:+.2f} s to "
        f"{r.times[-1] - r.span[1] if r.times else 0:+.2f} s after the scrape; "
        f"failures {r.failures}",
        file=out,
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
