"""A user-space delay line ("netem") for the simulated world's long-haul links.

The kernel here has no `sch_netem`, so a link that should be slow and lossy is built from two TUN
devices instead of a veth pair: one in each namespace, carrying the same interface names and
addresses the veth would have had. One forwarder process per world (this file, run as a script:
stdlib only, no package import) reads every packet the kernel routes into either TUN device,
decides its fate with the link's model, and writes it out of the other device when it is due:

    core ── [tun "unicom"] ⇄ forwarder ⇄ [tun "core"] ── unicom router

The model, per link and per direction ("down": from the Internet side into DPRK, "up": back):
- one-way delay = rtt / 2, times the active episodes' RTT factor;
- jitter: the delay varies around that by `jitter` x delay (standard deviation), as a
  mean-reverting (Ornstein-Uhlenbeck) process with correlation time `jitter_tau`: packets close
  in time see similar queues, as on a real path, and the sample distribution over minutes has the
  configured spread. Order is kept (no reordering): a packet never leaves before the previous
  one of its direction, which makes rare sharp drops in delay queue up behind the slower packets;
- loss: independent per packet and per direction (`loss`, `loss_up`), plus bursts from a
  Gilbert-Elliott two-state chain in continuous time (good for `burst.every` s on average, bad for
  `burst.length` s, `burst.loss` in the bad state), one chain per direction;
- episodes: scheduled congestion or loss ramps, each a trapezoid in time (ramp up, hold, ramp
  down) scaling the RTT by up to `rtt_factor` and adding up to `loss` per direction; random ones
  (`episodes_per_hour`, shaped like `PathProfile.congestion`) for long soaks.

Scheduling: packets wait in one heap ordered by departure time; a timerfd armed at the head's
absolute CLOCK_MONOTONIC time (timer slack set to 1 us) wakes the epoll loop, so the error is the
wake-up latency, not epoll's millisecond timeout. `stats` reports the error's distribution.

Only IPv4 packets with both addresses inside 198.18.0.0/15 are forwarded; anything else is
dropped and counted (`refused`). The forwarder exits when its control pipe (stdin) closes: the TUN
devices vanish with it. Control is one JSON object per line on stdin, one JSON answer per line on
stdout (see `Forwarder.command`); `DelayLines` is the World's side of that pipe.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import gc
import heapq
import json
import math
import os
import random
import select
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

# --- the model (pure: no I/O) ----------------------------------------------------------------


@dataclass(frozen=True)
class Burst:
    """Gilbert-Elliott bursty loss in continuous time (seconds, not packets: a burst hits every
    packet crossing the link while it lasts, whatever the packet rate)."""

    every: float = 60.0  # mean time in the good state
    length: float = 0.5  # mean time in the bad state
    loss: float = 0.8  # loss probability in the bad state

    def validate(self) -> None:
        if self.every <= 0 or self.length <= 0:
            raise ValueError("burst every and length must be > 0 seconds")
        if not 0.0 <= self.loss <= 1.0:
            raise ValueError("burst loss must be between 0 and 1")

    @property
    def mean_loss(self) -> float:
        """The long-run loss the bursts add (stationary share of the bad state x its loss)."""
        return self.loss * self.length / (self.every + self.length)


@dataclass(frozen=True)
class Episode:
    """A trapezoid in time: from `start` (seconds after it is added), ramp up over `ramp_up`,
    hold, ramp down over the last `ramp_down` of `duration`. At the peak the RTT is multiplied by
    `rtt_factor` and `loss` is added per direction. A loss ramp: `Episode(d, loss=x, ramp_up=d)`."""

    duration: float
    rtt_factor: float = 1.0
    loss: float = 0.0
    ramp_up: float = 0.0
    ramp_down: float = 0.0
    start: float = 0.0

    def validate(self) -> None:
        if self.duration <= 0 or self.start < 0:
            raise ValueError("episode duration must be > 0 and start >= 0")
        if self.rtt_factor < 1.0:
            raise ValueError("rtt_factor must be >= 1")
        if not 0.0 <= self.loss <= 1.0:
            raise ValueError("episode loss must be between 0 and 1")
        if self.ramp_up < 0 or self.ramp_down < 0 or self.ramp_up + self.ramp_down > self.duration:
            raise ValueError("ramps must be >= 0 and fit inside the duration")

    def weight(self, t: float) -> float:
        """0..1: how much of the episode is in force `t` seconds after it began."""
        if t < 0 or t >= self.duration:
            return 0.0
        if t < self.ramp_up:
            return t / self.ramp_up
        left = self.duration - t
        if left < self.ramp_down:
            return left / self.ramp_down
        return 1.0


CONGESTION = Episode(180.0, rtt_factor=2.5, loss=0.08, ramp_up=20.0, ramp_down=20.0)


@dataclass(frozen=True)
class PathProfile:
    """What one link does to the packets crossing it (both directions)."""

    rtt: float = 0.0  # seconds added to a round trip through the link (half each way)
    jitter: float = 0.0  # standard deviation of the one-way delay, as a fraction of it
    jitter_tau: float = 0.5  # correlation time of the delay variation (0: independent)
    loss: float = 0.0  # per packet, toward DPRK ("down")
    loss_up: float | None = None  # per packet, back out ("up"); None: same as `loss`
    burst: Burst | None = None
    episodes_per_hour: float = 0.0  # random episodes shaped like `congestion`
    congestion: Episode = CONGESTION

    def validate(self) -> None:
        if self.rtt < 0 or self.rtt > 10:
            raise ValueError("rtt must be between 0 and 10 seconds")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError("jitter is a fraction of the delay: between 0 and 1")
        if self.jitter_tau < 0:
            raise ValueError("jitter_tau must be >= 0")
        for p in (self.loss, self.loss if self.loss_up is None else self.loss_up):
            if not 0.0 <= p <= 1.0:
                raise ValueError("loss must be between 0 and 1")
        if self.burst is not None:
            self.burst.validate()
        if self.episodes_per_hour < 0:
            raise ValueError("episodes_per_hour must be >= 0")
        self.congestion.validate()

    def mean_loss(self, direction: str = "down") -> float:
        """Long-run loss of one direction without episodes."""
        p = self.loss if direction == "down" or self.loss_up is None else self.loss_up
        b = self.burst.mean_loss if self.burst else 0.0
        return 1.0 - (1.0 - p) * (1.0 - b)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> PathProfile:
        d = dict(d)
        if d.get("burst") is not None:
            d["burst"] = Burst(**d["burst"])
        if d.get("congestion") is not None:
            d["congestion"] = Episode(**d["congestion"])
        else:
            d.pop("congestion", None)
        return cls(**d)


IDEAL = PathProfile()


@dataclass
class _Active:
    episode: Episode
    begins: float  # monotonic
    label: str


class _Chain:
    """One direction's Gilbert-Elliott state, advanced lazily to each packet's time."""

    def __init__(self, burst: Burst, rng: random.Random, now: float) -> None:
        self.burst, self.rng = burst, rng
        self.bad = False
        self.switch = now + rng.expovariate(1.0 / burst.every)

    def bad_at(self, now: float) -> bool:
        while now >= self.switch:
            self.bad = not self.bad
            mean = self.burst.length if self.bad else self.burst.every
            self.switch += self.rng.expovariate(1.0 / mean)
        return self.bad


@dataclass
class DirStats:
    packets: int = 0  # read from the ingress device
    dropped: int = 0  # by the model (loss, bursts, episodes)
    refused: int = 0  # not IPv4 inside 198.18.0.0/15
    sent: int = 0
    write_errors: int = 0  # e.g. the egress device is down (a cut link)
    late: deque[float] = field(default_factory=lambda: deque(maxlen=50000))

    def to_json(self) -> dict[str, Any]:
        late = sorted(self.late)

        def q(p: float) -> float:
            return late[min(len(late) - 1, int(p * len(late)))] if late else 0.0

        return {
            "packets": self.packets,
            "dropped": self.dropped,
            "refused": self.refused,
            "sent": self.sent,
            "write_errors": self.write_errors,
            # scheduling error (s): how long after its due time each packet was written
            "late": {
                "n": len(late),
                "mean": sum(late) / len(late) if late else 0.0,
                "p50": q(0.5),
                "p99": q(0.99),
                "max": late[-1] if late else 0.0,
            },
        }


class Direction:
    """One direction of a link: decides drop or departure time for each packet."""

    def __init__(self, name: str, rng: random.Random) -> None:
        self.name, self.rng = name, rng
        self.z = 0.0  # standardized delay deviation (OU state)
        self.last_t: float | None = None
        self.last_departure = 0.0
        self.chain: _Chain | None = None
        self.stats = DirStats()

    def reset_burst(self, burst: Burst | None, now: float) -> None:
        self.chain = _Chain(burst, self.rng, now) if burst is not None else None

    def admit(
        self, now: float, delay: float, sd_frac: float, tau: float, loss: float
    ) -> float | None:
        """Departure time (monotonic) of a packet arriving `now`, or None when it is lost."""
        if self.chain is not None and self.chain.bad_at(now):
            loss = 1.0 - (1.0 - loss) * (1.0 - self.chain.burst.loss)
        if loss > 0.0 and self.rng.random() < loss:
            return None
        if sd_frac > 0.0 and delay > 0.0:
            g = self.rng.gauss(0.0, 1.0)
            if tau > 0.0 and self.last_t is not None:
                rho = math.exp(-(now - self.last_t) / tau)
                self.z = rho * self.z + math.sqrt(1.0 - rho * rho) * g
            else:
                self.z = g
            self.last_t = now
            # clipped at 3 sigma: no negative or absurd delays from the tails
            delay *= 1.0 + sd_frac * max(-3.0, min(3.0, self.z))
        departure = max(now + max(0.0, delay), self.last_departure)
        self.last_departure = departure
        return departure


class LinkModel:
    """A link's profile, its episodes, and its two directions."""

    def __init__(self, name: str, profile: PathProfile, rng: random.Random, now: float) -> None:
        self.name, self.rng = name, rng
        self.down = Direction("down", rng)
        self.up = Direction("up", rng)
        self.active: list[_Active] = []
        self.history: list[dict[str, Any]] = []  # episodes begun (for reports)
        self.profile = IDEAL
        self.next_random = math.inf
        self.set_profile(profile, now)

    def set_profile(self, profile: PathProfile, now: float) -> None:
        profile.validate()
        old, self.profile = self.profile, profile
        if profile.burst != old.burst or self.down.chain is None:
            self.down.reset_burst(profile.burst, now)
            self.up.reset_burst(profile.burst, now)
        if profile.episodes_per_hour != old.episodes_per_hour or math.isinf(self.next_random):
            self.next_random = self._draw_next(now)

    def _draw_next(self, now: float) -> float:
        rate = self.profile.episodes_per_hour
        return now + self.rng.expovariate(rate / 3600.0) if rate > 0 else math.inf

    def add_episode(self, ep: Episode, now: float, label: str = "scheduled") -> None:
        ep.validate()
        self.active.append(_Active(ep, now + ep.start, label))
        self.history.append({"label": label, "begins": now + ep.start, **asdict(ep)})

    def clear_episodes(self) -> None:
        self.active.clear()

    def conditions(self, now: float) -> tuple[float, float]:
        """(RTT factor, added loss) of the episodes in force at `now`; forgets ended ones."""
        if now >= self.next_random:
            self.add_episode(self.profile.congestion, self.next_random, "random")
            self.next_random = self._draw_next(now)
        if not self.active:
            return 1.0, 0.0
        factor, keep = 1.0, 1.0
        alive: list[_Active] = []
        for a in self.active:
            t = now - a.begins
            if t < a.episode.duration:
                alive.append(a)
            w = a.episode.weight(t)
            factor *= 1.0 + (a.episode.rtt_factor - 1.0) * w
            keep *= 1.0 - a.episode.loss * w
        self.active = alive
        return factor, 1.0 - keep

    def admit(self, direction: str, now: float) -> float | None:
        p = self.profile
        factor, extra = self.conditions(now)
        d = self.down if direction == "down" else self.up
        base = p.loss if direction == "down" or p.loss_up is None else p.loss_up
        loss = 1.0 - (1.0 - base) * (1.0 - extra)
        return d.admit(now, p.rtt / 2.0 * factor, p.jitter, p.jitter_tau, loss)


# --- I/O: TUN devices, a precise timer -------------------------------------------------------

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
CLOCK_MONOTONIC = 1
TFD_TIMER_ABSTIME = 1
PR_SET_TIMERSLACK = 29


def open_tun(name: str) -> int:
    """A TUN device named `name` in the calling thread's network namespace; returns its fd
    (the device lives while an fd is open). Call inside the namespace (netns.call_in)."""
    if not 1 <= len(name) <= 15:
        raise ValueError(f"bad interface name {name!r}")
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    except BaseException:
        os.close(fd)
        raise
    return fd


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


class TimerFd:
    """A CLOCK_MONOTONIC timerfd armed at absolute times (Python 3.11 has no os.timerfd_*)."""

    def __init__(self) -> None:
        self.libc = ctypes.CDLL(None, use_errno=True)
        fd = self.libc.timerfd_create(CLOCK_MONOTONIC, os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), "timerfd_create")
        self.fd: int = fd
        # wake-ups within 1 us of the deadline instead of the default 50 us slack
        self.libc.prctl(PR_SET_TIMERSLACK, 1000, 0, 0, 0)
        # one spec reused, the call's types declared once: arming is on every packet's path
        self._spec = _Itimerspec()
        self._ref = ctypes.byref(self._spec)
        self._settime = self.libc.timerfd_settime
        self._settime.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]

    def arm(self, at: float) -> None:
        at = max(at, 1e-9)  # 0 would disarm
        sec = int(at)
        value = self._spec.it_value
        value.tv_sec, value.tv_nsec = sec, int((at - sec) * 1e9)
        if self._settime(self.fd, TFD_TIMER_ABSTIME, self._ref, None) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), "timerfd_settime")

    def drain(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self.fd, 8)


def in_sim_range(packet: bytes) -> bool:
    """IPv4 with source and destination inside 198.18.0.0/15."""
    return (
        len(packet) >= 20
        and packet[0] >> 4 == 4
        and packet[12] == 198
        and packet[13] & 0xFE == 18
        and packet[16] == 198
        and packet[17] & 0xFE == 18
    )


@dataclass
class _LinkIO:
    model: LinkModel
    fd_a: int  # the Internet-side device ("down" traffic is read here)
    fd_b: int  # the DPRK-side device


class Forwarder:
    """The event loop: epoll over the TUN fds, the control pipe and the timer."""

    def __init__(self, links: Sequence[_LinkIO], ctl_in: int, ctl_out: int) -> None:
        self.links = {lk.model.name: lk for lk in links}
        self.ctl_in, self.ctl_out = ctl_in, ctl_out
        self.timer = TimerFd()
        self.heap: list[tuple[float, int, int, bytes, DirStats]] = []
        self.seq = 0
        self.armed = math.inf
        self.wakeups = 0
        self.started = time.monotonic()
        self.wall0 = time.time()
        self.buf = b""
        self.route: dict[int, tuple[LinkModel, str, int]] = {}
        for lk in links:
            self.route[lk.fd_a] = (lk.model, "down", lk.fd_b)
            self.route[lk.fd_b] = (lk.model, "up", lk.fd_a)
            for fd in (lk.fd_a, lk.fd_b):
                os.set_blocking(fd, False)
        os.set_blocking(ctl_in, False)

    def wall(self, mono: float) -> float:
        return self.wall0 + (mono - self.started)

    def run(self) -> None:
        ep = select.epoll()
        for fd in self.route:
            ep.register(fd, select.EPOLLIN)
        ep.register(self.ctl_in, select.EPOLLIN)
        ep.register(self.timer.fd, select.EPOLLIN)
        self.reply({"ready": True, "pid": os.getpid()})
        heap, route, mono = self.heap, self.route, time.monotonic
        while True:
            self.wakeups += 1
            for fd, events in ep.poll():
                if fd in route and events & (select.EPOLLERR | select.EPOLLHUP):
                    # a device gone with its namespace: never poll it again (an error
                    # condition would wake epoll forever)
                    ep.unregister(fd)
                    continue
                if fd in route:
                    model, direction, out = route[fd]
                    d = model.down if direction == "down" else model.up
                    while True:
                        try:
                            pkt = os.read(fd, 65535)
                        except BlockingIOError:
                            break
                        except OSError:
                            break  # EIO/EBADFD while a device is down
                        d.stats.packets += 1
                        if not in_sim_range(pkt):
                            d.stats.refused += 1
                            continue
                        due = model.admit(direction, mono())
                        if due is None:
                            d.stats.dropped += 1
                            continue
                        self.seq += 1
                        heapq.heappush(heap, (due, self.seq, out, pkt, d.stats))
                elif fd == self.timer.fd:
                    self.timer.drain()
                elif fd == self.ctl_in and not self.control():
                    return
            now = mono()
            while heap and heap[0][0] <= now:
                due, _, out, pkt, st = heapq.heappop(heap)
                st.late.append(now - due)
                try:
                    os.write(out, pkt)
                    st.sent += 1
                except OSError:
                    st.write_errors += 1
                now = mono()
            if heap and heap[0][0] != self.armed:
                self.armed = heap[0][0]
                self.timer.arm(self.armed)

    def control(self) -> bool:
        """Handle the complete command lines on stdin; False when it closed."""
        try:
            chunk = os.read(self.ctl_in, 65536)
        except BlockingIOError:
            return True
        if not chunk:
            return False
        self.buf += chunk
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            if line.strip():
                try:
                    self.reply({"ok": True, **self.command(json.loads(line))})
                except (ValueError, KeyError, TypeError) as e:
                    self.reply({"ok": False, "error": f"{type(e).__name__}: {e}"})
        return True

    def command(self, cmd: Mapping[str, Any]) -> dict[str, Any]:
        """`{"op": "profile", "link": L, "profile": {...}}`, `{"op": "episode", "link": L,
        "episode": {...}, "label": s}`, `{"op": "clear", "link": L}`, `{"op": "stats"}`,
        `{"op": "get", "link": L}`."""
        op, now = cmd["op"], time.monotonic()
        if op == "stats":
            return {"links": {n: self.link_stats(lk.model) for n, lk in self.links.items()}}
        model = self.links[cmd["link"]].model
        if op == "profile":
            model.set_profile(PathProfile.from_json(cmd["profile"]), now)
        elif op == "episode":
            model.add_episode(Episode(**cmd["episode"]), now, str(cmd.get("label", "scheduled")))
        elif op == "clear":
            model.clear_episodes()
        elif op != "get":
            raise ValueError(f"unknown op {op!r}")
        return {"profile": model.profile.to_json()}

    def link_stats(self, m: LinkModel) -> dict[str, Any]:
        now = time.monotonic()
        factor, extra = m.conditions(now)
        return {
            "profile": m.profile.to_json(),
            "now": {"rtt_factor": factor, "added_loss": extra},
            "down": m.down.stats.to_json(),
            "up": m.up.stats.to_json(),
            "queued": sum(1 for x in self.heap if x[4] is m.down.stats or x[4] is m.up.stats),
            "episodes": [
                {
                    **h,
                    "begins": self.wall(h["begins"]),
                    "ends": self.wall(h["begins"] + h["duration"]),
                }
                for h in m.history
            ],
            "cpu_seconds": sum(os.times()[:2]),
            "cpu_user_seconds": os.times()[0],
            "wakeups": self.wakeups,
        }

    def reply(self, doc: Mapping[str, Any]) -> None:
        data = (json.dumps(doc) + "\n").encode()
        while data:
            try:
                n = os.write(self.ctl_out, data)
            except BlockingIOError:
                select.select([], [self.ctl_out], [], 1.0)
                continue
            data = data[n:]


def main(argv: Sequence[str]) -> int:
    """`netem.py CONFIG_JSON`: {"seed": int, "links": [{"name", "fd_a", "fd_b", "profile"}]}."""
    cfg = json.loads(argv[1])
    rng = random.Random(cfg.get("seed"))
    now = time.monotonic()
    links = [
        _LinkIO(
            LinkModel(x["name"], PathProfile.from_json(x["profile"]), rng, now),
            int(x["fd_a"]),
            int(x["fd_b"]),
        )
        for x in cfg["links"]
    ]
    # The loop allocates no cycles: no collector pauses in the middle of a schedule.
    gc.disable()
    # Real-time priority (low, FIFO) so that other busy processes on the machine do not delay
    # the wake-ups; the loop only runs when a packet or a deadline is there. Best effort.
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
    Forwarder(links, sys.stdin.fileno(), sys.stdout.fileno()).run()
    return 0


# --- the World's side: spawn the forwarder, talk to it ---------------------------------------


class NetemError(RuntimeError):
    pass


class DelayLines:
    """The running forwarder of one world. `spawn` gets a function starting the process (the
    World's popen, so it is tracked and killed at teardown) and the fds of every link."""

    def __init__(
        self,
        spawn: Callable[..., subprocess.Popen[bytes]],
        fds: Mapping[str, tuple[int, int]],
        profiles: Mapping[str, PathProfile],
        seed: int | None = None,
        log: str | None = None,
    ) -> None:
        cfg = {
            "seed": seed,
            "links": [
                {"name": n, "fd_a": a, "fd_b": b, "profile": profiles[n].to_json()}
                for n, (a, b) in fds.items()
            ],
        }
        self.names = list(fds)
        self._lock = threading.Lock()
        all_fds = tuple(fd for pair in fds.values() for fd in pair)
        stderr: Any = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
        try:
            self.proc = spawn(
                [sys.executable, "-I", os.path.abspath(__file__), json.dumps(cfg)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                pass_fds=all_fds,
            )
        finally:
            if log:
                stderr.close()
        hello = self._read(10.0)
        if not hello.get("ready"):
            raise NetemError(f"the delay line did not start: {hello}")
        self.pid = int(hello["pid"])

    def _read(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        r, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if r else b""
        if not line:
            raise NetemError(f"no answer from the delay line (exit code {self.proc.poll()})")
        doc: dict[str, Any] = json.loads(line)
        return doc

    def request(self, cmd: Mapping[str, Any], timeout: float = 5.0) -> dict[str, Any]:
        with self._lock:
            if self.proc.poll() is not None or self.proc.stdin is None:
                raise NetemError(f"the delay line exited ({self.proc.returncode})")
            self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
            self.proc.stdin.flush()
            doc = self._read(timeout)
        if not doc.get("ok"):
            raise NetemError(str(doc.get("error")))
        return doc

    def set_profile(self, link: str, profile: PathProfile) -> None:
        profile.validate()
        self.request({"op": "profile", "link": link, "profile": profile.to_json()})

    def profile(self, link: str) -> PathProfile:
        return PathProfile.from_json(self.request({"op": "get", "link": link})["profile"])

    def add_episode(self, link: str, episode: Episode, label: str = "scheduled") -> None:
        episode.validate()
        self.request({"op": "episode", "link": link, "episode": asdict(episode), "label": label})

    def clear_episodes(self, link: str) -> None:
        self.request({"op": "clear", "link": link})

    def stats(self) -> dict[str, Any]:
        links: dict[str, Any] = self.request({"op": "stats"})["links"]
        return links

    def close(self) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(3)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(3)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
