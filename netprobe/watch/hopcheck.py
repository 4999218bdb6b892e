"""The cheap active-line check: TTL-limited ICMP echo requests.

A packet toward an endpoint with the TTL of the line hop expires at the
carrier's router, which answers time-exceeded from its own address; that
address is in exactly one line's `hops`, so one packet per endpoint per cycle
tells which line of a group carries the traffic. A full trace would cost a
round of packets per hop and arrive seconds late.

One socket per address family serves the whole drill. As root it is a raw
ICMP socket; otherwise an unprivileged ICMP datagram socket whose ICMP
errors arrive on the error queue (IP_RECVERR), where the kernel allows it
(net.ipv4.ping_group_range).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import random
import socket
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass

from netprobe.packets import inet_checksum

# Linux socket options not named in the socket module.
IP_RECVERR = 11
IPV6_RECVERR = 25
SO_EE_ORIGIN_ICMP = 2
SO_EE_ORIGIN_ICMP6 = 3
MSG_ERRQUEUE = 0x2000

ICMP4 = {"echo": 8, "reply": 0, "exceeded": 11, "unreachable": 3}
ICMP6 = {"echo": 128, "reply": 129, "exceeded": 3, "unreachable": 1}
_PAYLOAD = b"netprobe-watch"
_DRAIN_MAX = 512  # datagrams read per wake-up, so a flood cannot starve the loop


@dataclass(frozen=True)
class HopAnswer:
    ttl: int
    kind: str  # time_exceeded | echo_reply | unreachable | none | send_error
    source: str | None = None
    rtt_ms: float | None = None


def echo_request(v6: bool, ident: int, seq: int) -> bytes:
    kind = ICMP6["echo"] if v6 else ICMP4["echo"]
    header = struct.pack("!BBHHH", kind, 0, 0, ident, seq)
    if v6:  # the kernel fills in the ICMPv6 checksum (it needs the pseudo-header)
        return header + _PAYLOAD
    return struct.pack("!BBHHH", kind, 0, inet_checksum(header + _PAYLOAD), ident, seq) + _PAYLOAD


def parse_icmp(v6: bool, icmp: bytes) -> tuple[str, int, int] | None:
    """An ICMP message (no outer IP header) -> (kind, ident, seq) of our echo it
    answers, or None when it is not about an echo request."""
    if len(icmp) < 8:
        return None
    table = ICMP6 if v6 else ICMP4
    icmp_type = icmp[0]
    if icmp_type == table["reply"]:
        ident, seq = struct.unpack("!HH", icmp[4:8])
        return "echo_reply", ident, seq
    if icmp_type in (table["exceeded"], table["unreachable"]):
        inner = icmp[8:]
        if v6:
            inner_icmp = inner[40:48]
        else:
            if not inner:
                return None
            inner_icmp = inner[(inner[0] & 0x0F) * 4:][:8]
        if len(inner_icmp) < 8 or inner_icmp[0] != table["echo"]:
            return None
        ident, seq = struct.unpack("!HH", inner_icmp[4:8])
        kind = "time_exceeded" if icmp_type == table["exceeded"] else "unreachable"
        return kind, ident, seq
    return None


class _Family:
    """One socket for one address family, and the echo requests in flight on it."""

    def __init__(self, v6: bool, raw: bool) -> None:
        self.v6, self.raw = v6, raw
        family = socket.AF_INET6 if v6 else socket.AF_INET
        proto = socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP
        self.sock = socket.socket(family, socket.SOCK_RAW if raw else socket.SOCK_DGRAM, proto)
        self.sock.setblocking(False)
        if not raw:
            if v6:
                self.sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 1)
            else:
                self.sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
        # Raw sockets see every ICMP message on the host; our identifier picks
        # ours out. A datagram socket's identifier is set by the kernel.
        self.ident = random.randrange(1, 0xFFFF)
        self.seq = random.randrange(0, 0xFFFF)
        self.pending: dict[int, tuple[asyncio.Future[HopAnswer], int, float]] = {}
        self._reading = False

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._reading:
            # An error-queue entry wakes the socket with POLLERR, which the
            # selector reports as readable: one reader serves both queues.
            loop.add_reader(self.sock.fileno(), self._on_readable)
            self._reading = True

    def stop(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._reading:
            loop.remove_reader(self.sock.fileno())
            self._reading = False
        self.sock.close()

    def send(self, address: str, ttl: int) -> asyncio.Future[HopAnswer]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[HopAnswer] = loop.create_future()
        self.seq = (self.seq + 1) & 0xFFFF
        seq = self.seq
        if self.v6:
            self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, ttl)
        else:
            self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
        if not self.raw:
            # An ICMP error for an earlier probe leaves a pending socket error that
            # would fail this send instead; reading SO_ERROR clears it (the details
            # stay on the error queue).
            self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        try:  # no await between setting the TTL and sending: nothing else can interleave
            self.sock.sendto(echo_request(self.v6, self.ident, seq), (address, 0))
        except OSError:  # no route from here: our own stack said no
            fut.set_result(HopAnswer(ttl, "send_error"))
            return fut
        self.pending[seq] = (fut, ttl, time.monotonic())
        return fut

    def _settle(self, seq: int, kind: str, source: str | None) -> None:
        entry = self.pending.pop(seq, None)
        if entry is None:
            return
        fut, ttl, sent = entry
        if not fut.done():
            fut.set_result(HopAnswer(ttl, kind, source, (time.monotonic() - sent) * 1000))

    def _on_readable(self) -> None:
        for _ in range(_DRAIN_MAX):
            try:
                data, addr = self.sock.recvfrom(65535)
            except BlockingIOError:
                break
            except OSError:
                # A datagram socket reports a pending ICMP error here once;
                # the details are on the error queue, read below.
                continue
            icmp = data if (self.v6 or not self.raw) else data[(data[0] & 0x0F) * 4:]
            parsed = parse_icmp(self.v6, icmp)
            if parsed is None:
                continue
            kind, ident, seq = parsed
            if self.raw and ident != self.ident:
                continue  # another program's echo
            self._settle(seq, kind, addr[0])
        if not self.raw:
            self._drain_errors()

    def _drain_errors(self) -> None:
        level = socket.IPPROTO_IPV6 if self.v6 else socket.IPPROTO_IP
        option = IPV6_RECVERR if self.v6 else IP_RECVERR
        for _ in range(_DRAIN_MAX):
            try:
                data, ancdata, _flags, _addr = self.sock.recvmsg(512, 512, MSG_ERRQUEUE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if len(data) < 8:
                continue
            seq = struct.unpack("!H", data[6:8])[0]  # our echo request, as sent
            for cmsg_level, cmsg_type, cmsg in ancdata:
                if cmsg_level != level or cmsg_type != option or len(cmsg) < 16:
                    continue
                _errno, origin, ee_type, _code, _pad, _info, _data = struct.unpack(
                    "=IBBBBII", cmsg[:16])
                if origin not in (SO_EE_ORIGIN_ICMP, SO_EE_ORIGIN_ICMP6):
                    continue
                source = _offender(cmsg[16:], self.v6)
                table = ICMP6 if self.v6 else ICMP4
                kind = ("time_exceeded" if ee_type == table["exceeded"] else
                        "unreachable" if ee_type == table["unreachable"] else None)
                if kind:
                    self._settle(seq, kind, source)


def _offender(raw: bytes, v6: bool) -> str | None:
    """The address in the sockaddr that follows a sock_extended_err."""
    with contextlib.suppress(ValueError, OSError):
        if v6 and len(raw) >= 24:
            return socket.inet_ntop(socket.AF_INET6, raw[8:24])
        if not v6 and len(raw) >= 8:
            return socket.inet_ntop(socket.AF_INET, raw[4:8])
    return None


class HopChecker:
    """TTL-limited echo requests for the whole drill (open once, probe each cycle)."""

    def __init__(self, raw: bool | None = None) -> None:
        self.raw = os.geteuid() == 0 if raw is None else raw
        self._families: dict[bool, _Family] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def preflight(self, v6_too: bool = False) -> str | None:
        """Why hop checks cannot run here, or None. Opens the sockets it needs."""
        for v6 in ([False, True] if v6_too else [False]):
            try:
                self._family(v6)
            except PermissionError:
                return ("the hop check needs a raw ICMP socket (run as root or grant "
                        "CAP_NET_RAW) or unprivileged ICMP (sysctl net.ipv4.ping_group_range "
                        "must include your group); the active line of each group stays unknown")
            except OSError as exc:
                if v6 and exc.errno in (97, 93):  # EAFNOSUPPORT, EPROTONOSUPPORT
                    continue
                return f"the hop check cannot open an ICMP socket: {exc.strerror}"
        return None

    def _family(self, v6: bool) -> _Family:
        fam = self._families.get(v6)
        if fam is None:
            fam = self._families[v6] = _Family(v6, self.raw)
        return fam

    async def probe(self, address: str, ttls: Iterable[int], timeout_s: float
                    ) -> list[HopAnswer]:
        """Send one echo request per TTL at once; every TTL gets an answer (maybe `none`)."""
        ttls = list(ttls)
        v6 = ipaddress.ip_address(address).version == 6
        try:
            fam = self._family(v6)
        except OSError:
            return [HopAnswer(t, "send_error") for t in ttls]
        loop = asyncio.get_running_loop()
        self._loop = loop
        fam.start(loop)
        futs = [fam.send(address, ttl) for ttl in ttls]
        if futs:
            await asyncio.wait(futs, timeout=timeout_s)
        answers = []
        for fut, ttl in zip(futs, ttls, strict=True):
            if fut.done() and not fut.cancelled():
                answers.append(fut.result())
            else:
                fut.cancel()
                answers.append(HopAnswer(ttl, "none"))
        mine = {id(f) for f in futs}  # forget what never came back: late answers are dropped
        for seq in [s for s, (f, _, _) in fam.pending.items() if id(f) in mine]:
            fam.pending.pop(seq, None)
        return answers

    def close(self) -> None:
        for fam in self._families.values():
            if self._loop is not None and not self._loop.is_closed():
                fam.stop(self._loop)
            else:
                fam.sock.close()
        self._families.clear()


def pick_line(answers: Iterable[HopAnswer], line_hops: dict[str, Iterable[str]]
              ) -> tuple[str | None, HopAnswer | None]:
    """The line whose hop answered (lowest TTL first), with the answer that shows it."""
    owner = {}
    for line, hops in line_hops.items():
        for hop in hops:
            owner[str(ipaddress.ip_address(hop))] = line
    for answer in sorted(answers, key=lambda a: a.ttl):
        if answer.source is None:
            continue
        with contextlib.suppress(ValueError):
            line = owner.get(str(ipaddress.ip_address(answer.source)))
            if line is not None:
                return line, answer
    return None, None
