"""Trace probe: which routers a packet to the target crosses, all TTLs at once.

Probe packets for every TTL (1..max_hops) leave in one burst, `queries` per
TTL (default 2, so one lost packet does not hide a hop); the routers' ICMP
time-exceeded messages and the destination's own answer are collected until
`timeout_s` after the last one left. The hop addresses tell the diagnosis
which line of a redundancy group carries the traffic.

Protocols (`task.params["protocol"]`):
  tcp   SYN to `task.port`; the destination answers SYN-ACK or RST
  udp   datagram to `task.port`; the destination answers port-unreachable
  icmp  echo request; the destination answers echo reply

Each packet carries its number (hence its TTL) where an ICMP error quotes it
back: the TCP/UDP source port (base + number) or the ICMP sequence number.
IPv6 works the same way (hop limit for TTL, ICMPv6 errors); an IPv6 raw
socket delivers packets without their IP header, so the source comes from
the socket address instead.
Sending and receiving use raw sockets on the asyncio loop (no blocking `sr`).
scapy, imported on first use, builds the packets in a worker thread (it takes
milliseconds a packet); answers are dissected by hand, because the receiving
sockets see every ICMP (and TCP) packet of the host and the event loop must
stay quick, and RTTs use the kernel's receive timestamps. The source address
comes from the kernel's own route lookup, so scapy's routing table (read at
import, maybe in another namespace) is never used. Raw sockets need
CAP_NET_RAW, which `preflight` checks without sending anything.

Routers rate-limit the ICMP errors they send (Linux: a burst of about 6, then
1 a second per destination), so a burst of traces can leave a router silent
that answers fine a second later. TTLs left unanswered (below the end of the
path, or a few past the last answer when the end is unknown) are retried,
one packet per TTL, after a back-off longer than such a refill, for at most
`retries` rounds (default 2): `detail["retried"]` lists the TTLs retried and
`detail["silent"]` those that stayed silent.

The result is one attempt (`sent=1`): `reached` says whether the destination
answered, `rtts_ms` holds its answer's RTT, and `detail["hops"]` lists every
TTL up to the destination (or the last router that answered), silent hops as
`{"address": None, "rtt_ms": None}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import itertools
import logging
import os
import random
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from netprobe.evidence import IcmpNotice, ProbeError, ProbeResult, not_measured
from netprobe.packets import describe_icmp
from netprobe.probes.interface import ProbeContext, ProbeTask

DEFAULT_PORTS = {"tcp": 80, "udp": 33434, "icmp": None}
DEFAULT_MAX_HOPS = 16
MAX_HOPS_LIMIT = 64
DEFAULT_QUERIES = 2  # packets per TTL
MAX_QUERIES = 3
SETTLE_S = 0.05  # after the timeout, for answers already on their way up the stack
# Retries of silent TTLs: after a back-off longer than a rate-limiting router's
# refill (Linux: one error a second), one packet per silent TTL a round, a few
# milliseconds apart, so no router gets a burst.
DEFAULT_RETRIES = 2
MAX_RETRIES = 3
RETRY_BACKOFF_S = 1.1
RETRY_PACE_S = 0.005
RETRY_TAIL = 2  # TTLs past the last answer worth retrying when the end is not known
# Source ports for TCP/UDP traces: above Linux's default ephemeral range
# (32768-60999), so they do not collide with the kernel's own connections.
PORT_FLOOR = 61000
SLOT_WIDTH = MAX_HOPS_LIMIT * (MAX_QUERIES + MAX_RETRIES)
PORT_SLOTS = (65535 - PORT_FLOOR) // SLOT_WIDTH
_slots = itertools.count(random.randrange(PORT_SLOTS))

ICMP_ECHO_REPLY, ICMP_UNREACHABLE, ICMP_TIME_EXCEEDED = 0, 3, 11
ICMP6_UNREACHABLE, ICMP6_TIME_EXCEEDED, ICMP6_ECHO_REPLY = 1, 3, 129
TCP_SYN, TCP_RST = 0x02, 0x04
PROTO_NUMBER = {"tcp": 6, "udp": 17, "icmp": 1}
# Kernel receive timestamps, so an RTT does not include the time the event loop
# took to get to the packet (the value of SO_TIMESTAMPNS on Linux).
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)

PERMISSION_MESSAGE = (
    "trace needs raw sockets (CAP_NET_RAW): run netprobe as root, or give the capability "
    "to a dedicated copy of the interpreter (never the system-wide one): "
    "cp \"$(readlink -f {python})\" {python}-netraw && setcap cap_net_raw+ep {python}-netraw, "
    "then run {python}-netraw -m netprobe; or skip traces with --no-trace")


def _scapy() -> Any:
    """scapy's IP layers (`.inet`, `.inet6`), imported on first use with its
    chatter silenced."""
    logging.getLogger("scapy").setLevel(logging.ERROR)
    from types import SimpleNamespace

    from scapy import config
    from scapy.layers import inet, inet6

    config.conf.verb = 0
    logging.getLogger("scapy").setLevel(logging.ERROR)
    return SimpleNamespace(inet=inet, inet6=inet6)


@dataclass
class _Answer:
    address: str
    rtt_ms: float
    icmp_type: int | None = None  # None: a TCP answer or an echo reply
    icmp_code: int | None = None


@dataclass
class _Session:
    """One trace in flight: what was sent, what came back."""

    target: str
    source: str
    protocol: str
    port: int | None
    max_hops: int
    queries: int
    port_base: int
    ident: int
    retries: int = 0  # rounds of retries of silent TTLs
    version: int = 4  # IP version of the target
    # packet number n (0-based) goes out with TTL n % max_hops + 1; numbers from
    # max_hops * queries on are the retries' (one per TTL and round)
    sent_at: dict[int, float] = field(default_factory=dict)  # number -> wall clock
    hops: dict[int, _Answer] = field(default_factory=dict)  # routers' answers
    arrivals: dict[int, _Answer] = field(default_factory=dict)  # the destination's answers
    unreachable_at: int | None = None  # lowest TTL a router said "unreachable" for
    done: asyncio.Event = field(default_factory=asyncio.Event)
    want: frozenset[int] = frozenset()  # the TTLs a retry round waits for
    retried: set[int] = field(default_factory=set)

    # -- building -----------------------------------------------------------
    @property
    def count(self) -> int:
        """Numbers a packet of this trace may carry (first burst and retries)."""
        return self.max_hops * (self.queries + self.retries)

    @property
    def first_burst(self) -> int:
        return self.max_hops * self.queries

    def retry_number(self, ttl: int, round_index: int) -> int:
        return self.max_hops * (self.queries + round_index) + ttl - 1

    def silent_ttls(self) -> list[int]:
        """TTLs worth asking again: unanswered ones before the end of the path
        (or up to a few past the last answer, when the end is not known)."""
        ends = [t for t in (self.destination_ttl, self.unreachable_at) if t is not None]
        last = (min(ends) - 1 if ends
                else min(self.max_hops, max(self.hops, default=0) + RETRY_TAIL))
        return [t for t in range(1, last + 1) if t not in self.hops]

    def ttl_of(self, number: int) -> int:
        return number % self.max_hops + 1

    def packet(self, layers: Any, number: int) -> bytes:
        inet = layers.inet
        if self.version == 6:
            ip = layers.inet6.IPv6(src=self.source, dst=self.target, hlim=self.ttl_of(number))
        else:
            ip = inet.IP(src=self.source, dst=self.target, ttl=self.ttl_of(number),
                         id=(self.ident + number) & 0xFFFF)
        if self.protocol == "icmp" and self.version == 6:
            l4 = layers.inet6.ICMPv6EchoRequest(id=self.ident, seq=number + 1,
                                                data=b"netprobe" + bytes(24))
        elif self.protocol == "tcp":
            l4 = inet.TCP(sport=self.port_base + number, dport=self.port, flags="S",
                          seq=random.getrandbits(32), window=64240, options=[("MSS", 1460)])
        elif self.protocol == "udp":
            l4 = inet.UDP(sport=self.port_base + number, dport=self.port) \
                / (b"netprobe" + bytes(24))
        else:
            l4 = inet.ICMP(type=8, id=self.ident, seq=number + 1) / (b"netprobe" + bytes(24))
        return bytes(ip / l4)

    # -- matching -----------------------------------------------------------
    def _number(self, value: int, base: int) -> int | None:
        number = value - base
        return number if 0 <= number < self.count else None

    def on_icmp(self, data: bytes, now: float, addr: Any = None) -> None:
        """An ICMP packet (IP header included); dissected by hand, because this
        socket sees every ICMP packet of the host and runs on the event loop."""
        if len(data) < 28:
            return
        ihl = (data[0] & 0x0F) * 4
        if len(data) < ihl + 8:
            return
        icmp_type = data[ihl]
        source = socket.inet_ntoa(data[12:16])
        if icmp_type == ICMP_ECHO_REPLY:
            self._echo_reply(data, ihl, source, now)
        elif icmp_type in (ICMP_UNREACHABLE, ICMP_TIME_EXCEEDED):
            inner = ihl + 8  # the quoted header of the packet that failed
            if len(data) < inner + 20:
                return
            l4 = inner + (data[inner] & 0x0F) * 4
            if socket.inet_ntoa(data[inner + 16:inner + 20]) != self.target:
                return
            self._error(data, l4, data[inner + 9], source, icmp_type == ICMP_UNREACHABLE,
                        icmp_type, data[ihl + 1], now)

    def on_icmp6(self, data: bytes, now: float, addr: Any = None) -> None:
        """An ICMPv6 message (no IP header: a raw IPv6 socket strips it); the
        sender is the socket address."""
        if len(data) < 8 or not addr:
            return
        source = _norm6(addr[0])
        icmp_type = data[0]
        if icmp_type == ICMP6_ECHO_REPLY:
            self._echo_reply(data, 0, source, now)
        elif icmp_type in (ICMP6_UNREACHABLE, ICMP6_TIME_EXCEEDED):
            inner = 8  # the quoted IPv6 header (no extension headers: we sent none)
            if len(data) < inner + 40:
                return
            if socket.inet_ntop(socket.AF_INET6, data[inner + 24:inner + 40]) != self.target:
                return
            self._error(data, inner + 40, data[inner + 6], source,
                        icmp_type == ICMP6_UNREACHABLE, icmp_type, data[1], now)

    def _echo_reply(self, data: bytes, off: int, source: str, now: float) -> None:
        if len(data) < off + 8:
            return
        ident, seq = struct.unpack_from("!HH", data, off + 4)
        number = self._number(seq, 1)
        if self.protocol == "icmp" and source == self.target and ident == self.ident \
                and number is not None:
            self._arrived(number, source, now)

    def _error(self, data: bytes, l4: int, inner_proto: int, source: str, unreachable: bool,
               icmp_type: int, icmp_code: int, now: float) -> None:
        """An ICMP error quoting one of our packets (its layer 4 header at `l4`)."""
        if len(data) < l4 + 8:
            return
        number: int | None = None
        if self.protocol in ("tcp", "udp") and inner_proto == PROTO_NUMBER[self.protocol]:
            sport, dport = struct.unpack_from("!HH", data, l4)
            if dport == self.port:
                number = self._number(sport, self.port_base)
        elif self.protocol == "icmp" and inner_proto == (58 if self.version == 6 else 1):
            ident, seq = struct.unpack_from("!HH", data, l4 + 4)
            if ident == self.ident:
                number = self._number(seq, 1)
        if number is None:
            return
        if unreachable and source == self.target:
            # the destination itself answered (a UDP trace's port unreachable)
            self._arrived(number, source, now, icmp_type, icmp_code)
            return
        ttl = self.ttl_of(number)
        rtt_ms = self._rtt_ms(number, now)
        known = self.hops.get(ttl)
        if known is None:
            self.hops[ttl] = _Answer(source, rtt_ms, icmp_type, icmp_code)
        elif known.address == source and rtt_ms < known.rtt_ms:
            known.rtt_ms = rtt_ms  # the best of the queries, as traceroute's min
        if unreachable and (self.unreachable_at is None or ttl < self.unreachable_at):
            self.unreachable_at = ttl
        self._check_done()

    def on_tcp(self, data: bytes, now: float, addr: Any = None) -> None:
        """A TCP segment (IPv4: IP header included; IPv6: not, the sender is the
        socket address): a SYN-ACK or RST from the target."""
        if self.version == 6:
            if not addr or _norm6(addr[0]) != self.target:
                return
            ihl = 0
        else:
            if len(data) < 40 or socket.inet_ntoa(data[12:16]) != self.target:
                return
            ihl = (data[0] & 0x0F) * 4
        if len(data) < ihl + 14:
            return
        sport, dport = struct.unpack_from("!HH", data, ihl)
        flags = data[ihl + 13]
        number = self._number(dport, self.port_base)
        if sport == self.port and number is not None and flags & (TCP_SYN | TCP_RST):
            self._arrived(number, self.target, now)

    def _rtt_ms(self, number: int, now: float) -> float:
        return max(0.0, (now - self.sent_at.get(number, now)) * 1000)

    def _arrived(self, number: int, address: str, now: float, icmp_type: int | None = None,
                 icmp_code: int | None = None) -> None:
        ttl = self.ttl_of(number)
        rtt_ms = self._rtt_ms(number, now)
        known = self.arrivals.get(ttl)
        if known is None:
            self.arrivals[ttl] = _Answer(address, rtt_ms, icmp_type, icmp_code)
            self._check_done()
        elif rtt_ms < known.rtt_ms:
            known.rtt_ms = rtt_ms

    def _check_done(self) -> None:
        """Stop early once nothing more can be learnt: the end of the path is known
        and every TTL before it has answered."""
        ends = [t for t in (self.destination_ttl, self.unreachable_at) if t is not None]
        path_complete = ends and all(t in self.hops for t in range(1, min(ends)))
        if path_complete or (self.want and all(t in self.hops for t in self.want)):
            self.done.set()

    # -- the outcome ----------------------------------------------------------
    @property
    def destination_ttl(self) -> int | None:
        return min(self.arrivals) if self.arrivals else None

    def hop_list(self) -> list[dict[str, Any]]:
        dest = self.destination_ttl
        if dest is not None:
            last = dest
        elif self.unreachable_at is not None:
            last = self.unreachable_at
        else:
            last = max(self.hops, default=0)
        hops = []
        for ttl in range(1, last + 1):
            answer = self.arrivals[ttl] if ttl == dest else self.hops.get(ttl)
            hop = {"ttl": ttl, "address": answer.address if answer else None,
                   "rtt_ms": round(answer.rtt_ms, 3) if answer else None}
            if ttl in self.retried:
                hop["retried"] = True
            hops.append(hop)
        return hops

    def notices(self) -> tuple[IcmpNotice, ...]:
        unreachable = ICMP6_UNREACHABLE if self.version == 6 else ICMP_UNREACHABLE
        family = socket.AF_INET6 if self.version == 6 else socket.AF_INET
        seen: dict[str, IcmpNotice] = {}
        for ttl in sorted(self.hops):
            a = self.hops[ttl]
            if a.icmp_type == unreachable and a.address not in seen:
                seen[a.address] = IcmpNotice(a.address, unreachable, a.icmp_code or 0,
                                             describe_icmp(family, unreachable, a.icmp_code or 0))
        return tuple(seen.values())


def _norm6(address: str) -> str:
    """An IPv6 address as inet_ntop writes it (no zone index)."""
    try:
        return socket.inet_ntop(socket.AF_INET6,
                                socket.inet_pton(socket.AF_INET6, address.split("%", 1)[0]))
    except OSError:
        return address


def _source_address(target: str, port: int | None, family: int = socket.AF_INET) -> str:
    """The address our stack would send from toward `target` (no packet sent)."""
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.connect((target, port or 9))
        return s.getsockname()[0]


class TraceProbe:
    kind = "trace"
    phase = 1  # after the measuring probes: see Probe.phase

    def packets(self, task: ProbeTask) -> int:
        """Packets one trace sends (the executor's pacing budget counts them),
        at most: its first burst and one packet per TTL per retry round."""
        max_hops = max(1, min(MAX_HOPS_LIMIT, int(task.params.get("max_hops", DEFAULT_MAX_HOPS))))
        return max_hops * (int(task.params.get("queries", DEFAULT_QUERIES)) + _retries(task))

    def extra_budget_s(self, task: ProbeTask) -> float:
        """Time the retry rounds may add to a trace (the executor's budget)."""
        return _retries(task) * (RETRY_BACKOFF_S + task.timeout_s + SETTLE_S
                                 + MAX_HOPS_LIMIT * RETRY_PACE_S)

    def preflight(self, tasks: list[ProbeTask]) -> str | None:
        try:
            socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW).close()
        except PermissionError:
            import sys

            return PERMISSION_MESSAGE.format(python=sys.executable)
        return None

    async def run(self, task: ProbeTask, ctx: ProbeContext) -> ProbeResult:
        started_at, t0 = time.time(), time.monotonic()
        protocol = str(task.params.get("protocol", "icmp"))
        port = task.port if task.port is not None else DEFAULT_PORTS.get(protocol)
        max_hops = max(1, min(MAX_HOPS_LIMIT, int(task.params.get("max_hops", DEFAULT_MAX_HOPS))))
        queries = max(1, min(MAX_QUERIES, int(task.params.get("queries", DEFAULT_QUERIES))))
        retries = _retries(task)
        detail: dict[str, Any] = {"protocol": protocol, "port": port, "max_hops": max_hops,
                                  "queries": queries, "hops": [], "destination_reached": False}

        def result(**kw: Any) -> ProbeResult:
            return ProbeResult(id=task.id, kind=self.kind, target=task.target,
                               address=task.address, detail=detail, started_at=started_at,
                               duration_s=time.monotonic() - t0, **kw)

        if task.address is None:
            return not_measured(task.id, self.kind, task.target, None, ProbeError.RESOLVE,
                                "no address to trace")
        if protocol not in DEFAULT_PORTS:
            return not_measured(task.id, self.kind, task.target, task.address,
                                ProbeError.INTERNAL, f"unknown trace protocol {protocol!r}")
        try:
            version = ipaddress.ip_address(task.address).version
        except ValueError:
            return not_measured(task.id, self.kind, task.target, task.address,
                                ProbeError.RESOLVE, f"{task.address!r} is not an IP address")
        family = socket.AF_INET6 if version == 6 else socket.AF_INET
        target = _norm6(task.address) if version == 6 else task.address
        detail["family"] = f"ipv{version}"
        try:
            source = _source_address(target, port, family)
        except OSError as exc:
            return result(sent=1, reached=False, error=ProbeError.NO_ROUTE,
                          message=f"no route to {task.address}: {exc.strerror}")
        layers = await asyncio.to_thread(_scapy)

        slot = next(_slots) % PORT_SLOTS
        session = _Session(target=target, source=source, protocol=protocol, port=port,
                           max_hops=max_hops, queries=queries,
                           port_base=PORT_FLOOR + slot * SLOT_WIDTH,
                           ident=random.getrandbits(16), retries=retries, version=version)
        loop = asyncio.get_running_loop()
        sockets: list[socket.socket] = []
        try:
            # IPPROTO_RAW: we write the IP header (IPv6 too: the kernel implies it)
            tx = socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_RAW)
            sockets.append(tx)
            listeners = ([(socket.IPPROTO_ICMPV6, session.on_icmp6)] if version == 6
                         else [(socket.IPPROTO_ICMP, session.on_icmp)])
            if protocol == "tcp":
                listeners.append((socket.IPPROTO_TCP, session.on_tcp))
            for proto, handler in listeners:
                rx = socket.socket(family, socket.SOCK_RAW, proto)
                rx.setblocking(False)
                rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
                sockets.append(rx)
                rx.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                loop.add_reader(rx.fileno(), _drain, rx, handler)
            # scapy is slow (milliseconds a packet): build off the event loop
            packets = await asyncio.to_thread(_build, session, layers,
                                              list(range(session.first_burst)))
            send_error: OSError | None = None
            for number, packet in packets:
                await ctx.rate.take(1)
                session.sent_at[number] = time.time()
                try:
                    tx.sendto(packet, (target, 0))
                except OSError as exc:  # a local refusal (no route, a firewall): data
                    send_error = exc
                    del session.sent_at[number]
                    break
            if session.sent_at:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(session.done.wait(), task.timeout_s + SETTLE_S)
            if send_error is None and session.sent_at:
                await _retry_silent(session, layers, tx, task, ctx)
        finally:
            for s in sockets:
                with contextlib.suppress(Exception):
                    loop.remove_reader(s.fileno())
                s.close()

        detail["hops"] = session.hop_list()
        detail["packets_sent"] = len(session.sent_at)
        if session.retried:
            detail["retried"] = sorted(session.retried)
            # retried and still unanswered (the end of the path, or a router
            # that never answers: the diagnosis tells them apart)
            detail["silent"] = [t for t in sorted(session.retried) if t not in session.hops]
        detail["source"] = source
        dest = session.destination_ttl
        notices = session.notices()
        if dest is not None:
            rtt = session.arrivals[dest].rtt_ms
            detail["destination_reached"] = True
            return result(sent=1, rtts_ms=(rtt,), reached=True, notices=notices,
                          message=f"destination reached at hop {dest} ({rtt:.2f} ms)")
        answered = [h for h in detail["hops"] if h["address"]]
        last = (f"last answer from {answered[-1]['address']} at hop {answered[-1]['ttl']}"
                if answered else "no router answered")
        if send_error is not None and not session.sent_at:
            code = send_error.errno
            error = ProbeError.NO_ROUTE if code in (errno.ENETUNREACH, errno.EHOSTUNREACH) \
                else ProbeError.UNREACHABLE
            return result(sent=1, reached=False, error=error,
                          message=f"could not send to {task.address}: {os.strerror(code or 0)}")
        if notices:
            n = notices[0]
            return result(sent=1, reached=False, error=ProbeError.UNREACHABLE, notices=notices,
                          message=f"{n.description} from {n.source}; {last}")
        return result(sent=1, reached=False, error=ProbeError.TIMEOUT,
                      message=f"no answer from {task.address} within {task.timeout_s:g} s; "
                      f"{last}")


def _build(session: _Session, layers: Any, numbers: list[int]) -> list[tuple[int, bytes]]:
    return [(n, session.packet(layers, n)) for n in numbers]


def _retries(task: ProbeTask) -> int:
    return max(0, min(MAX_RETRIES, int(task.params.get("retries", DEFAULT_RETRIES))))


async def _retry_silent(session: _Session, layers: Any, tx: socket.socket, task: ProbeTask,
                        ctx: ProbeContext) -> None:
    """Ask the silent TTLs again, `session.retries` rounds at most, each after a
    back-off that lets a rate-limiting router's budget refill."""
    for round_index in range(session.retries):
        silent = session.silent_ttls()
        if not silent:
            return
        await asyncio.sleep(RETRY_BACKOFF_S)
        numbers = [session.retry_number(ttl, round_index) for ttl in silent]
        packets = await asyncio.to_thread(_build, session, layers, numbers)
        session.want = frozenset(silent)
        session.done.clear()
        for i, (number, packet) in enumerate(packets):
            if i:
                await asyncio.sleep(RETRY_PACE_S)
            await ctx.rate.take(1)
            session.sent_at[number] = time.time()
            session.retried.add(session.ttl_of(number))
            try:
                tx.sendto(packet, (session.target, 0))
            except OSError:  # the first burst went out: a refusal now is not news
                del session.sent_at[number]
                return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(session.done.wait(), task.timeout_s + SETTLE_S)


def _drain(sock: socket.socket, handler: Any) -> None:
    """Read everything queued on a raw socket and hand it to the session, each
    packet with the wall-clock time the kernel received it."""
    for _ in range(256):  # bounded: the loop has other work
        try:
            data, ancdata, _, addr = sock.recvmsg(65535, socket.CMSG_SPACE(16))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return
        received = time.time()
        for level, kind, value in ancdata:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= 16:
                sec, nsec = struct.unpack_from("@qq", value)
                received = sec + nsec / 1e9
        with contextlib.suppress(Exception):  # a malformed packet is not our bug to raise
            handler(data, received, addr)


PROBE = TraceProbe()
