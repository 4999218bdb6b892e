"""The CE's failover controller: route tracking, as a real router does it.

Runs inside the CE namespace (`python -m netprobe.lab.controller ...`). It
pings the primary line's far end every `interval` (one ICMP echo per tick,
replies awaited up to `timeout`, so a slow line is not a dead one), declares
the primary down after `down_after` consecutive misses and up again after
`up_after` consecutive replies, and moves the default route accordingly:
to the secondary on failure, back to the primary on recovery (failback).

Two file flags in the state directory rehearse what goes wrong in practice:
  controller.frozen          no switching at all (a failover that does not happen)
  controller.failback-stuck  switches over, never back (failback that does not happen)
Both are read every tick; removing them resumes normal behaviour at once.

Every decision goes to `controller.log`, one JSON object a line:
  event      start | primary_down | primary_up | switch | hold | freeze | unfreeze
             | failback_stuck | failback_auto | error (a switch failed; retried) | stop
  mono_s     CLOCK_MONOTONIC seconds: shared by every process on the host (and
             every namespace), so other tools can line their observations up
  wall_s, wall   the same instant as epoch seconds and ISO 8601 UTC
  active     the line carrying traffic after the event
  message    e.g. "switch to broadband-b at 2024-05-01T10:00:00.123Z"
  switch:    from, to, reason, down_since_mono_s (send time of the first
             unanswered probe of the streak that caused it; null on failback)
  hold:      want (the line it would switch to), reason (frozen | failback stuck)
The current state goes to `controller.json` (atomically, on change and every
second).

The defaults (10 misses at 100 ms) tolerate the lab's 30 %-loss scenario: ten
losses in a row at 30 % happen about once in 170 000 probes, so a lossy line
does not flap, while a cut line is detected in about 1.4 s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from netprobe.packets import inet_checksum

FROZEN_FLAG = "controller.frozen"
FAILBACK_STUCK_FLAG = "controller.failback-stuck"
LOG_NAME = "controller.log"
STATE_NAME = "controller.json"

ICMP_ECHO_REQUEST = 8
ICMP_ECHO_REPLY = 0


@dataclass(frozen=True)
class Uplink:
    name: str  # the config's line name, e.g. leased-a
    dev: str  # the CE's interface on the line
    gateway: str  # the far end: next hop of the default route over this line


@dataclass(frozen=True)
class ControllerSettings:
    state_dir: Path
    primary: Uplink
    secondary: Uplink
    interval_s: float = 0.1
    timeout_s: float = 0.4
    down_after: int = 10
    up_after: int = 5
    max_seconds: float = 7200.0
    flush_conntrack: bool = True


def wall_iso(wall_s: float) -> str:
    return datetime.fromtimestamp(wall_s, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def echo_request(ident: int, seq: int) -> bytes:
    payload = b"netprobe-lab-controller"
    header = struct.pack("!BBHHH", ICMP_ECHO_REQUEST, 0, 0, ident, seq)
    csum = inet_checksum(header + payload)
    return struct.pack("!BBHHH", ICMP_ECHO_REQUEST, 0, csum, ident, seq) + payload


def parse_echo_reply(packet: bytes) -> tuple[str, int, int] | None:
    """(source, ident, seq) of an echo reply in a raw IPv4 packet, else None."""
    if len(packet) < 28:
        return None
    ihl = (packet[0] & 0x0F) * 4
    icmp = packet[ihl:ihl + 8]
    if len(icmp) < 8 or icmp[0] != ICMP_ECHO_REPLY:
        return None
    _, _, _, ident, seq = struct.unpack("!BBHHH", icmp)
    return socket.inet_ntoa(packet[12:16]), ident, seq


class Controller:
    def __init__(self, settings: ControllerSettings) -> None:
        self.s = settings
        self.state_dir = settings.state_dir
        self.active = settings.primary.name
        self.primary_up = True
        self.misses = 0
        self.successes = 0
        self.miss_streak_since_mono: float | None = None
        self.frozen = False
        self.failback_stuck = False
        self.held: str | None = None  # the switch we are holding back, logged once
        self.last_error: str | None = None  # the last failure to switch, logged once
        self.switches = 0
        self.probes_sent = 0
        self.replies = 0
        self.started_wall = time.time()
        self.since_wall = self.started_wall
        self.ident = os.getpid() & 0xFFFF
        self.seq = 0
        self.pending: dict[int, float] = {}  # seq -> monotonic send time
        self._last_state_write = 0.0
        self._stopping = False

    # -- records ----------------------------------------------------------
    def log(self, event: str, message: str, **fields: Any) -> None:
        mono, wall = time.monotonic(), time.time()
        record = {"event": event, "mono_s": round(mono, 6), "wall_s": round(wall, 6),
                  "wall": wall_iso(wall), "active": self.active, "message": message, **fields}
        with open(self.state_dir / LOG_NAME, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        self.write_state(force=True)

    def write_state(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_state_write < 1.0:
            return
        self._last_state_write = now
        state = {
            "pid": os.getpid(), "active": self.active, "primary": self.s.primary.name,
            "secondary": self.s.secondary.name,
            "primary_state": "up" if self.primary_up else "down",
            "frozen": self.frozen, "failback": "stuck" if self.failback_stuck else "auto",
            "since": wall_iso(self.since_wall), "switches": self.switches,
            "probes_sent": self.probes_sent, "replies": self.replies,
            "updated_wall_s": round(time.time(), 3), "updated": wall_iso(time.time()),
            "settings": {"interval_s": self.s.interval_s, "timeout_s": self.s.timeout_s,
                         "down_after": self.s.down_after, "up_after": self.s.up_after},
        }
        tmp = self.state_dir / (STATE_NAME + ".tmp")
        tmp.write_text(json.dumps(state, indent=1), encoding="utf-8")
        os.replace(tmp, self.state_dir / STATE_NAME)

    # -- actions ------------------------------------------------------------
    def set_route(self, uplink: Uplink) -> None:
        subprocess.run(["ip", "route", "replace", "default", "via", uplink.gateway,
                        "dev", uplink.dev], check=True, capture_output=True, timeout=5)
        if self.s.flush_conntrack:
            # NAT bindings made on the old line would keep replies on it.
            with contextlib.suppress(Exception):
                from pyroute2 import Conntrack  # imported at start: a switch stays quick

                with Conntrack() as ct:
                    ct.flush()

    def switch(self, to: Uplink, why: str) -> None:
        before = self.active
        try:
            self.set_route(to)
        except (OSError, subprocess.SubprocessError) as exc:
            # keep running: the next tick tries again; say so once per attempt
            detail = getattr(exc, "stderr", b"") or b""
            message = f"could not switch to {to.name}: {exc}" + (
                f" ({detail.decode(errors='replace').strip()})" if detail else "")
            if message != self.last_error:  # once, not every tick
                self.last_error = message
                self.log("error", message, want=to.name)
            return
        self.last_error = None
        self.active = to.name
        self.since_wall = time.time()
        self.switches += 1
        self.held = None
        self.log("switch", f"switch to {to.name} at {wall_iso(self.since_wall)}", to=to.name,
                 **{"from": before}, reason=why,
                 down_since_mono_s=self.miss_streak_since_mono)

    def read_flags(self) -> None:
        frozen = (self.state_dir / FROZEN_FLAG).exists()
        stuck = (self.state_dir / FAILBACK_STUCK_FLAG).exists()
        if frozen != self.frozen:
            self.frozen = frozen
            self.held = None
            self.log("freeze" if frozen else "unfreeze",
                     "frozen: no switching" if frozen else "unfrozen: switching resumes")
        if stuck != self.failback_stuck:
            self.failback_stuck = stuck
            self.held = None
            self.log("failback_stuck" if stuck else "failback_auto",
                     "failback disabled: will not return to the primary" if stuck
                     else "failback enabled")

    def on_outcome(self, ok: bool, mono: float) -> None:
        if ok:
            self.replies += 1
            self.successes += 1
            self.misses = 0
            self.miss_streak_since_mono = None
            if not self.primary_up and self.successes >= self.s.up_after:
                self.primary_up = True
                self.log("primary_up", f"{self.s.primary.name} up: {self.successes} replies "
                         f"in a row from {self.s.primary.gateway}")
        else:
            self.misses += 1
            self.successes = 0
            if self.miss_streak_since_mono is None:
                self.miss_streak_since_mono = round(mono, 6)
            if self.primary_up and self.misses >= self.s.down_after:
                self.primary_up = False
                self.log("primary_down", f"{self.s.primary.name} down: {self.misses} probes "
                         f"in a row to {self.s.primary.gateway} unanswered",
                         down_since_mono_s=self.miss_streak_since_mono)

    def decide(self) -> None:
        want = self.s.primary if self.primary_up else self.s.secondary
        if want.name == self.active:
            self.held = None
            return
        if self.frozen:
            why = "frozen"
        elif want is self.s.primary and self.failback_stuck:
            why = "failback stuck"
        else:
            reason = (f"{self.s.primary.name} down" if want is self.s.secondary
                      else f"{self.s.primary.name} back up (failback)")
            self.switch(want, reason)
            return
        if self.held != want.name:
            self.held = want.name
            self.log("hold", f"not switching to {want.name}: {why}", want=want.name, reason=why)

    # -- the loop -----------------------------------------------------------
    def run(self) -> int:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        # The far end is on the line's own subnet; pin the probe to the line anyway,
        # so it tests that line whatever the routing table says.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.s.primary.dev.encode())
        sock.setblocking(False)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._stop)
        if self.s.flush_conntrack:
            with contextlib.suppress(ImportError):
                from pyroute2 import Conntrack  # noqa: F401  (slow: not mid-switch)
        self.read_flags()
        self.set_route(self.s.primary)
        self.log("start", f"controller started, {self.s.primary.name} active",
                 pid=os.getpid(), settings={k: str(v) for k, v in asdict(self.s).items()})
        started = time.monotonic()
        next_send = started
        try:
            while not self._stopping:
                now = time.monotonic()
                if now - started >= self.s.max_seconds:
                    self.log("stop", f"stopping: lifetime of {self.s.max_seconds:.0f} s reached")
                    return 0
                if now >= next_send:
                    self._send(sock, now)
                    next_send += self.s.interval_s
                    if next_send < now:  # fell behind (suspended?): do not burst
                        next_send = now + self.s.interval_s
                wait_s = max(0.0, min(next_send, self._next_expiry()) - time.monotonic())
                readable, _, _ = select.select([sock], [], [], wait_s)
                if readable:
                    self._receive(sock)
                self._expire(time.monotonic())
                self.read_flags()
                self.decide()
                self.write_state()
            self.log("stop", "stopping: signal received")
            return 0
        finally:
            sock.close()

    def _stop(self, signum: int, frame: Any) -> None:
        self._stopping = True

    def _send(self, sock: socket.socket, now: float) -> None:
        self.seq = (self.seq + 1) & 0xFFFF
        self.pending[self.seq] = now
        self.probes_sent += 1
        # no neighbour, link gone: the timeout counts it as a miss
        with contextlib.suppress(OSError):
            sock.sendto(echo_request(self.ident, self.seq), (self.s.primary.gateway, 0))

    def _receive(self, sock: socket.socket) -> None:
        while True:
            try:
                packet = sock.recv(2048)
            except (BlockingIOError, InterruptedError):
                return
            now = time.monotonic()
            parsed = parse_echo_reply(packet)
            if parsed is None:
                continue
            source, ident, seq = parsed
            if ident != self.ident or source != self.s.primary.gateway:
                continue
            sent = self.pending.pop(seq, None)
            if sent is not None and now - sent <= self.s.timeout_s:
                self.on_outcome(True, now)

    def _next_expiry(self) -> float:
        if not self.pending:
            return float("inf")
        return min(self.pending.values()) + self.s.timeout_s

    def _expire(self, now: float) -> None:
        for seq, sent in sorted(self.pending.items(), key=lambda kv: kv[1]):
            if now - sent > self.s.timeout_s:
                del self.pending[seq]
                self.on_outcome(False, sent)


def parse_args(argv: list[str] | None = None) -> ControllerSettings:
    p = argparse.ArgumentParser(prog="python -m netprobe.lab.controller",
                                description="Failover controller of the netprobe lab's CE.")
    p.add_argument("--state-dir", required=True, type=Path)
    p.add_argument("--primary", required=True, metavar="NAME,DEV,GATEWAY")
    p.add_argument("--secondary", required=True, metavar="NAME,DEV,GATEWAY")
    p.add_argument("--interval-ms", type=float, default=100.0)
    p.add_argument("--timeout-ms", type=float, default=400.0)
    p.add_argument("--down-after", type=int, default=10, help="misses in a row")
    p.add_argument("--up-after", type=int, default=5, help="replies in a row")
    p.add_argument("--max-seconds", type=float, default=7200.0)
    a = p.parse_args(argv)

    def uplink(text: str) -> Uplink:
        parts = text.split(",")
        if len(parts) != 3:
            p.error(f"expected NAME,DEV,GATEWAY, got {text!r}")
        return Uplink(*parts)

    if not (0.01 <= a.interval_ms / 1000 <= 10 and a.down_after >= 1 and a.up_after >= 1):
        p.error("interval must be 10 ms to 10 s; --down-after and --up-after at least 1")
    return ControllerSettings(
        state_dir=a.state_dir, primary=uplink(a.primary), secondary=uplink(a.secondary),
        interval_s=a.interval_ms / 1000, timeout_s=a.timeout_ms / 1000,
        down_after=a.down_after, up_after=a.up_after, max_seconds=a.max_seconds)


def main(argv: list[str] | None = None) -> int:
    return Controller(parse_args(argv)).run()


if __name__ == "__main__":
    sys.exit(main())
