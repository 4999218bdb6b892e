"""ICMP echo probe: one shared socket per address family per run.

Why one socket: every raw ICMP socket receives a copy of every ICMP packet the
host gets, so one socket per target turns 10,000 targets into 10,000 x 10,000
packet copies and lost replies. Instead each run opens one socket per family
(kept in `ctx.resources["icmp"]`), sends every echo request with the run's
identifier and a sequence number of its own, and one reader registered with
the event loop drains the socket and hands each reply to the attempt that is
waiting for it, matched by (identifier, sequence, source address) and by a
token in the payload.

Privilege: a raw socket when permitted (root, CAP_NET_RAW), else Linux's
unprivileged datagram ICMP socket (allowed by `net.ipv4.ping_group_range`).
A datagram socket's identifier is its port, chosen by the kernel, and ICMP
errors reach it through the socket's error queue instead of as packets.

Late errors: a router whose next hop is gone (a device powered off) answers
"host unreachable" only when its address resolution gives up, about 3 s after
the packet arrived, long after the attempt's timeout. That message names the
router and says where the traffic died, so a probe that heard nothing keeps
its attempts registered for `task.late_grace_s` more and records what comes
back in `detail["late_errors"]`, without touching its RTT statistics.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import os
import random
import socket
import struct
import sys
import time
from collections import deque
from dataclasses import dataclass

import icmplib

from netprobe.evidence import IcmpNotice, ProbeError, ProbeResult, not_measured
from netprobe.packets import describe_icmp, late_text
from netprobe.probes.interface import ProbeContext, ProbeTask

KIND = "icmp"

# Linux socket options the socket module does not export (asm-generic values,
# the same on x86-64 and arm64).
_SO_RCVBUFFORCE = 33
_SO_TIMESTAMPNS = 35  # SCM_TIMESTAMPNS: kernel receive time, CLOCK_REALTIME
_SOL_RAW = 255
_ICMP_FILTER = 1  # SOL_RAW: bitmask of ICMPv4 types to *block*
_ICMP6_FILTER = 1  # IPPROTO_ICMPV6: 256-bit mask of ICMPv6 types to *block*
_IP_RECVERR = 11
_IPV6_RECVERR = 25
_SO_EE_ORIGIN_ICMP = 2
_SO_EE_ORIGIN_ICMP6 = 3

_RCVBUF_BYTES = 32 << 20  # ~40,000 queued replies: a 10,000-target burst fits
_SEQ_SPACE = 1 << 16
_RECV_BYTES = 2048
_ANC_BYTES = 512
_MAX_DRAIN = 100_000  # datagrams read per wakeup; bounds one callback's run time
_UNSTAMPED_DRAIN_NS = 2_000_000  # read at least this often during a burst, until stamps are seen
_SEND_STALL_S = 2.0  # give up on a send after the socket stayed unwritable this long
_BURST_MAX = 20000  # at most, first attempts sent between two turns of the reader
_FIRST_SENT = "icmp.first_sent"  # ctx.resources: task id -> (engine, probe, attempt, sent at, error)

# Errors from our own stack when sending: the host itself refuses to route the
# packet (no route, an `unreachable`/`prohibit`/`blackhole` route, a local
# firewall). Evidence about our side, not about the target.
_NO_ROUTE_ERRNOS = frozenset(
    {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EACCES, errno.EPERM, errno.EINVAL,
     errno.EADDRNOTAVAIL, errno.ENETDOWN, errno.EHOSTDOWN})

# type, code, checksum, identifier, sequence, then 56 data bytes (what ping sends):
# the run's nonce and the attempt's token, and zeros
_ECHO = struct.Struct("!BBHHHII48x")
_ID_SEQ_TOKEN = struct.Struct("!HHII")
_QUOTED = struct.Struct("!BBHHH")
_TOKEN = struct.Struct("!II")
_TIMESPEC = struct.Struct("=qq")
_EXT_ERR = struct.Struct("=IBBBBII")  # struct sock_extended_err


@dataclass(frozen=True)
class _Family:
    af: int
    label: str
    version: int  # icmplib's family number
    echo_request: int
    echo_reply: int
    unreachable: int
    time_exceeded: int
    socket_class: type
    recverr_level: int
    recverr_option: int
    ee_origin: int


_AF_INET = int(socket.AF_INET)  # a plain int: cheaper to pass on the hot path
_V4 = _Family(socket.AF_INET, "IPv4", 4, 8, 0, 3, 11, icmplib.ICMPv4Socket,
              socket.IPPROTO_IP, _IP_RECVERR, _SO_EE_ORIGIN_ICMP)
_V6 = _Family(socket.AF_INET6, "IPv6", 6, 128, 129, 1, 3, icmplib.ICMPv6Socket,
              socket.IPPROTO_IPV6, _IPV6_RECVERR, _SO_EE_ORIGIN_ICMP6)


class _NoPrivilege(Exception):
    """Neither a raw nor a datagram ICMP socket may be opened by this process."""


def permission_message() -> str:
    venv_bin = os.path.dirname(sys.executable)
    return (
        "ICMP probes need a raw socket or an unprivileged ICMP socket, and this process "
        "may open neither, so no ICMP probe was sent (their results are 'not measured', "
        "not 'down'). Fix one of: run netprobe as root; let unprivileged users ping with "
        "`sysctl -w net.ipv4.ping_group_range=\"0 2147483647\"` (as root; persist it in "
        "/etc/sysctl.d); or give CAP_NET_RAW to a dedicated copy of the interpreter, never "
        f"the system-wide one: `cp \"$(readlink -f {venv_bin}/python)\" {venv_bin}/python-netraw "
        f"&& setcap cap_net_raw+ep {venv_bin}/python-netraw` (as root), then run "
        f"`{venv_bin}/python-netraw -m netprobe`."
    )


def _open_socket(fam: _Family) -> tuple[icmplib.ICMPv4Socket | icmplib.ICMPv6Socket, bool]:
    """A raw socket when permitted, else a datagram one: (socket, is_raw)."""
    try:
        return fam.socket_class(privileged=True), True
    except icmplib.SocketPermissionError:
        pass
    try:
        return fam.socket_class(privileged=False), False
    except icmplib.SocketPermissionError:
        raise _NoPrivilege from None


@functools.lru_cache(maxsize=256)
def describe(version: int, icmp_type: int, icmp_code: int) -> str:
    """The shared wording for an ICMP error (e.g. 'ICMP host-unreachable')."""
    family = socket.AF_INET6 if version == 6 else socket.AF_INET
    return describe_icmp(family, icmp_type, icmp_code)


class _Probe:
    """The state of one `run`: what its attempts have seen so far."""

    __slots__ = ("rtts_ms", "notices", "error", "outstanding", "all_sent", "future",
                 "timeout_ns", "deadline", "late_errors")

    def __init__(self, future: asyncio.Future[None], timeout_ns: int) -> None:
        # lists only when something comes back: 10,000 probes, 20,000 fewer objects
        # for the garbage collector to walk
        self.rtts_ms: list[float] | None = None
        self.notices: list[IcmpNotice] | None = None
        self.error: ProbeError | None = None  # the latest ICMP error, if any
        self.outstanding = 0  # attempts sent and not yet answered or expired
        self.all_sent = False
        self.future = future
        self.timeout_ns = timeout_ns
        self.deadline = 0.0  # event-loop time at which it gives up waiting
        # None until the grace window opens: errors then are late, kept apart
        self.late_errors: list[dict] | None = None

    def settle(self) -> None:
        self.outstanding -= 1
        if self.outstanding <= 0 and self.all_sent and not self.future.done():
            self.future.set_result(None)


class _Attempt:
    """One echo request in flight."""

    __slots__ = ("probe", "seq", "token", "host", "dest_packed", "sent_wall_ns",
                 "sent_mono_ns")

    def __init__(self, probe: _Probe, seq: int, token: int, host: str, dest_packed: bytes) -> None:
        self.probe = probe
        self.seq = seq
        self.token = token
        self.host = host
        self.dest_packed = dest_packed
        self.sent_wall_ns = 0
        self.sent_mono_ns = 0


class _Engine:
    """One ICMP socket of one family, shared by every probe of a run."""

    def __init__(self, fam: _Family, loop: asyncio.AbstractEventLoop) -> None:
        self.fam = fam
        self.loop = loop
        self._icmp_socket, self.raw = _open_socket(fam)
        sock = self._icmp_socket.sock
        self.sock = sock
        sock.setblocking(False)
        self._set_receive_buffer()
        sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        if self.raw:
            self._install_filter()
            self.ident = random.getrandbits(16)
        else:
            # errors reach a datagram ICMP socket only through its error queue
            sock.setsockopt(fam.recverr_level, fam.recverr_option, 1)
            sock.bind(("::" if fam.af == socket.AF_INET6 else "0.0.0.0", 0))
            self.ident = sock.getsockname()[1]  # the kernel's identifier: our "port"
        self.nonce = random.getrandbits(32)
        self.pending: dict[int, _Attempt] = {}
        self.seq_space = _SEQ_SPACE
        self._next_seq = random.randrange(_SEQ_SPACE)
        self._next_token = 0
        # The checksum of everything in a request but sequence and token (raw IPv4
        # only: the kernel checksums IPv6 and datagram sockets).
        self._partial_sum = ((fam.echo_request << 8) + self.ident + (self.nonce >> 16)
                             + (self.nonce & 0xFFFF))
        self._checksum = self.raw and fam.af == socket.AF_INET
        self._ip_header = self.raw and fam.af == socket.AF_INET
        self._writable: asyncio.Future[None] | None = None
        # Deadlines, one queue per timeout value: appended in send order, so each
        # queue is sorted and one timer serves them all (10,000 timers in the
        # event loop's heap cost more than the probes themselves).
        self._deadlines: dict[int, deque[_Probe]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._last_drain_ns = time.perf_counter_ns()
        self._kernel_stamps = False  # seen a reply stamped on arrival, not on reading
        loop.add_reader(sock.fileno(), self._on_readable)
        self.closed = False

    # -- setup -----------------------------------------------------------------
    def _set_receive_buffer(self) -> None:
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, _RCVBUF_BYTES)
        except OSError:  # not root: the kernel caps SO_RCVBUF at net.core.rmem_max
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF_BYTES)
        # replies the buffer holds (the kernel reports twice what was granted, and a
        # queued reply costs it about 1 KiB): half of that between two reads
        granted = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        self.burst = max(64, min(_BURST_MAX, granted // 1024 // 2))

    def _install_filter(self) -> None:
        """Let the kernel drop the ICMP we never read (other hosts' echo requests,
        neighbour discovery), so a busy host does not fill our buffer."""
        fam = self.fam
        wanted = (fam.echo_reply, fam.unreachable, fam.time_exceeded)
        if fam.af == socket.AF_INET:
            blocked = 0xFFFFFFFF
            for t in wanted:
                blocked &= ~(1 << t)
            self.sock.setsockopt(_SOL_RAW, _ICMP_FILTER, struct.pack("=I", blocked))
        else:
            words = [0xFFFFFFFF] * 8
            for t in wanted:
                words[t >> 5] &= ~(1 << (t & 31))
            self.sock.setsockopt(socket.IPPROTO_ICMPV6, _ICMP6_FILTER, struct.pack("=8I", *words))

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
        for queue in self._deadlines.values():  # nobody is left to wait for
            for probe in queue:
                if not probe.future.done():
                    probe.future.set_result(None)
        self._deadlines.clear()
        self.loop.remove_reader(self.sock.fileno())
        if self._writable is not None:
            self.loop.remove_writer(self.sock.fileno())
            if not self._writable.done():
                self._writable.set_result(None)
        self._icmp_socket.close()

    # -- sending ---------------------------------------------------------------
    async def allocate(self, probe: _Probe, host: str, dest_packed: bytes) -> _Attempt:
        """An attempt with a sequence number no attempt in flight holds."""
        while len(self.pending) >= self.seq_space:
            await self._wait_for_free_sequence()
        return self.allocate_now(probe, host, dest_packed)

    def allocate_now(self, probe: _Probe, host: str, dest_packed: bytes) -> _Attempt | None:
        """`allocate` without waiting: None when every sequence number is in flight."""
        pending = self.pending
        space = self.seq_space
        if len(pending) >= space:
            return None
        seq = self._next_seq % space
        while seq in pending:
            seq = (seq + 1) % space
        self._next_seq = (seq + 1) % space
        self._next_token = token = (self._next_token + 1) & 0xFFFFFFFF
        attempt = _Attempt(probe, seq, token, host, dest_packed)
        pending[seq] = attempt
        return attempt

    async def _wait_for_free_sequence(self) -> None:
        """Every sequence number is in flight: expire the attempts whose timeout
        has passed (a reply to them would not count anyway), else wait a little."""
        now_ns = time.perf_counter_ns()
        expired = [a for a in self.pending.values()
                   if now_ns - a.sent_mono_ns > a.probe.timeout_ns and a.sent_mono_ns]
        for attempt in expired:
            self.forget(attempt)
            attempt.probe.settle()
        if not expired:
            await asyncio.sleep(0.005)

    def forget(self, attempt: _Attempt) -> None:
        if self.pending.get(attempt.seq) is attempt:
            del self.pending[attempt.seq]

    def _packet(self, attempt: _Attempt) -> bytes:
        seq, token = attempt.seq, attempt.token
        checksum = 0
        if self._checksum:
            s = self._partial_sum + seq + (token >> 16) + (token & 0xFFFF)
            s = (s & 0xFFFF) + (s >> 16)
            s = (s & 0xFFFF) + (s >> 16)
            checksum = ~s & 0xFFFF
        return _ECHO.pack(self.fam.echo_request, 0, checksum, self.ident, seq, self.nonce,
                          token)

    def send_now(self, attempt: _Attempt, sockaddr: tuple) -> int | None:
        """Send without waiting: 0, the errno our own stack answered with, or None
        when the socket cannot take the packet now (then `await send`)."""
        if not self._kernel_stamps and time.perf_counter_ns() - self._last_drain_ns > min(
                attempt.probe.timeout_ns >> 3, _UNSTAMPED_DRAIN_NS):
            # A burst of sends runs in one turn of the event loop, and the reader
            # waits for the next. Until the kernel is seen stamping arrivals
            # (it turns stamping on lazily), a reply's time is when we read it:
            # read what has arrived meanwhile, so none is judged late or slow
            # for having waited in our own queue. Once stamps are seen, replies
            # wait for the reader, after the burst.
            self._on_readable()
        attempt.sent_mono_ns = time.perf_counter_ns()
        attempt.sent_wall_ns = time.time_ns()
        try:
            self.sock.sendto(self._packet(attempt), sockaddr)
            return 0
        except BlockingIOError:
            return None
        except OSError as exc:
            if exc.errno == errno.ENOBUFS or not self.raw:
                return None  # full queue, or maybe a stale error: the slow path decides
            return exc.errno or errno.EIO

    async def send(self, attempt: _Attempt, sockaddr: tuple) -> int:
        """Send one echo request; 0, or the errno our own stack answered with."""
        packet = self._packet(attempt)
        sock = self.sock
        stall_deadline = None
        retried = False
        while True:
            attempt.sent_mono_ns = time.perf_counter_ns()
            attempt.sent_wall_ns = time.time_ns()
            try:
                sock.sendto(packet, sockaddr)
                return 0
            except BlockingIOError:
                pass  # the send buffer is full: wait until the kernel drains it
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    pass  # a device queue is full: the same, wait a moment
                elif not self.raw and not retried and exc.errno != errno.EAFNOSUPPORT:
                    # A datagram socket reports a pending ICMP error (one that came
                    # back for an earlier request) on the next call, this send:
                    # it is not ours, so try once more.
                    retried = True
                    continue
                else:
                    return exc.errno or errno.EIO
            now = self.loop.time()
            if stall_deadline is None:
                stall_deadline = now + _SEND_STALL_S
            elif now > stall_deadline:
                return errno.ENOBUFS
            await self._wait_writable()

    async def _wait_writable(self) -> None:
        if self.closed:
            raise ConnectionAbortedError("ICMP socket closed")
        if self._writable is None:
            self._writable = self.loop.create_future()
            self.loop.add_writer(self.sock.fileno(), self._on_writable)
            # ENOBUFS does not wake a writer: poll as well
            self.loop.call_later(0.002, self._on_writable)
        await asyncio.shield(self._writable)

    def _on_writable(self) -> None:
        waiter = self._writable
        if waiter is None:
            return
        self._writable = None
        self.loop.remove_writer(self.sock.fileno())
        if not waiter.done():
            waiter.set_result(None)

    # -- deadlines -------------------------------------------------------------
    def expire_at(self, probe: _Probe, deadline: float, key: int | None = None) -> None:
        """Finish `probe` at `deadline` (event-loop time) unless its replies come first.

        `key` names the queue (default: the probe's timeout); each queue must get
        its deadlines in order, so a grace window uses a queue of its own."""
        key = probe.timeout_ns if key is None else key
        queue = self._deadlines.get(key)
        if queue is None:
            queue = self._deadlines[key] = deque()
        probe.deadline = deadline
        queue.append(probe)
        if self._timer is None or deadline < self._timer_at:
            self._arm(deadline)

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = self.loop.call_at(when, self._on_deadline)

    def _on_deadline(self) -> None:
        self._timer = None
        now = self.loop.time()
        earliest = None
        for timeout_ns, queue in list(self._deadlines.items()):
            while queue and queue[0].deadline <= now:
                future = queue.popleft().future
                if not future.done():
                    future.set_result(None)
            if queue:
                if earliest is None or queue[0].deadline < earliest:
                    earliest = queue[0].deadline
            else:
                del self._deadlines[timeout_ns]
        if earliest is not None:
            # a millisecond of slack lets one wakeup serve a burst of deadlines
            self._arm(earliest + 0.001)

    # -- receiving -------------------------------------------------------------
    def _on_readable(self) -> None:
        self._last_drain_ns = time.perf_counter_ns()
        recvmsg = self.sock.recvmsg
        dispatch = self._dispatch
        for _ in range(_MAX_DRAIN):
            try:
                data, ancdata, _flags, addr = recvmsg(_RECV_BYTES, _ANC_BYTES)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                # a datagram socket reports a queued ICMP error once as a receive
                # error; the error itself is read from the error queue below
                if self.raw:
                    break
                continue
            mono_ns = time.perf_counter_ns()
            wall_ns = None
            for level, kind, value in ancdata:
                if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS:
                    sec, nsec = _TIMESPEC.unpack_from(value)
                    wall_ns = sec * 1_000_000_000 + nsec
                    if not self._kernel_stamps and time.time_ns() - wall_ns > 50_000:
                        self._kernel_stamps = True
            dispatch(data, addr[0], wall_ns, mono_ns)
        if not self.raw:
            self._drain_error_queue()

    def _dispatch(self, data: bytes, source: str, wall_ns: int | None, mono_ns: int) -> None:
        off = (data[0] & 0x0F) << 2 if self._ip_header else 0
        if len(data) < off + 8:
            return
        fam = self.fam
        icmp_type = data[off]
        if icmp_type == fam.echo_reply:
            if len(data) < off + 16:
                return
            ident, seq, nonce, token = _ID_SEQ_TOKEN.unpack_from(data, off + 4)
            attempt = self.pending.get(seq)
            if (attempt is None or ident != self.ident or nonce != self.nonce
                    or token != attempt.token or source != attempt.host):
                return  # not ours, a late or duplicate reply, or from another address
            del self.pending[seq]
            probe = attempt.probe
            rtt_ns = mono_ns - attempt.sent_mono_ns
            if wall_ns is not None:
                # the kernel's arrival time, unless the wall clock stepped meanwhile
                kernel_rtt_ns = wall_ns - attempt.sent_wall_ns
                if 0 <= kernel_rtt_ns <= rtt_ns:
                    rtt_ns = kernel_rtt_ns
            if rtt_ns <= probe.timeout_ns:
                if probe.rtts_ms is None:
                    probe.rtts_ms = [rtt_ns / 1e6]
                else:
                    probe.rtts_ms.append(rtt_ns / 1e6)
            probe.settle()
        elif icmp_type == fam.unreachable or icmp_type == fam.time_exceeded:
            self._dispatch_error(data, off, source)

    def _dispatch_error(self, data: bytes, off: int, source: str) -> None:
        """An ICMP error from a raw socket: find our request in its quote."""
        inner = off + 8
        if self.fam.af == socket.AF_INET:
            if len(data) < inner + 20 or data[inner + 9] != socket.IPPROTO_ICMP:
                return
            dest_packed = data[inner + 16:inner + 20]
            quote = inner + ((data[inner] & 0x0F) << 2)
        else:
            if len(data) < inner + 40 or data[inner + 6] != socket.IPPROTO_ICMPV6:
                return
            dest_packed = data[inner + 24:inner + 40]
            quote = inner + 40
        if len(data) < quote + 8:
            return
        quoted_type, _, _, ident, seq = _QUOTED.unpack_from(data, quote)
        if quoted_type != self.fam.echo_request or ident != self.ident:
            return
        self._error_for(seq, dest_packed, data[quote:], source, data[off], data[off + 1])

    def _drain_error_queue(self) -> None:
        fam = self.fam
        for _ in range(_MAX_DRAIN):
            try:
                data, ancdata, _flags, addr = self.sock.recvmsg(
                    _RECV_BYTES, _ANC_BYTES, socket.MSG_ERRQUEUE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            for level, kind, value in ancdata:
                if level != fam.recverr_level or kind != fam.recverr_option:
                    continue
                if len(value) < _EXT_ERR.size:
                    continue
                _errno, origin, icmp_type, icmp_code, _pad, _info, _data = \
                    _EXT_ERR.unpack_from(value)
                if origin != fam.ee_origin or len(data) < 8:
                    continue
                if fam.af == socket.AF_INET:
                    offender = value[_EXT_ERR.size + 4:_EXT_ERR.size + 8]
                else:
                    offender = value[_EXT_ERR.size + 8:_EXT_ERR.size + 24]
                if len(offender) != (4 if fam.af == socket.AF_INET else 16):
                    continue
                source = socket.inet_ntop(fam.af, offender)
                try:
                    dest_packed = socket.inet_pton(fam.af, addr[0])
                except (OSError, TypeError, IndexError):
                    continue
                quoted_type, _, _, _ident, seq = _QUOTED.unpack_from(data)
                if quoted_type != fam.echo_request:
                    continue
                self._error_for(seq, dest_packed, data, source, icmp_type, icmp_code)

    def _error_for(self, seq: int, dest_packed: bytes, quoted_icmp: bytes, source: str,
                   icmp_type: int, icmp_code: int) -> None:
        attempt = self.pending.get(seq)
        if attempt is None or attempt.dest_packed != dest_packed:
            return
        if len(quoted_icmp) >= 16:  # routers may quote only 8 bytes of our ICMP header
            nonce, token = _TOKEN.unpack_from(quoted_icmp, 8)
            if nonce != self.nonce or token != attempt.token:
                return
        fam = self.fam
        if icmp_type not in (fam.unreachable, fam.time_exceeded):
            return
        del self.pending[seq]
        probe = attempt.probe
        notice = IcmpNotice(source=source, type=icmp_type, code=icmp_code,
                            description=describe(fam.version, icmp_type, icmp_code))
        if probe.late_errors is not None:  # after the timeout: evidence, not a result
            probe.late_errors.append({
                **notice.to_json(), "seq": seq,
                "after_ms": round((time.perf_counter_ns() - attempt.sent_mono_ns) / 1e6, 1)})
            probe.settle()
            return
        if probe.notices is None:
            probe.notices = [notice]
        else:
            probe.notices.append(notice)
        probe.error = (ProbeError.UNREACHABLE if icmp_type == fam.unreachable
                       else ProbeError.TTL_EXCEEDED)
        probe.settle()


async def _late_window(engine: _Engine, probe: _Probe, attempts: list[_Attempt | None],
                       grace_s: float) -> None:
    """Keep the unanswered attempts registered for `grace_s` more, so an ICMP
    error that comes after the timeout is kept (as a late error); stop early
    once every one of them has been answered."""
    waiting = [a for a in attempts if a is not None and engine.pending.get(a.seq) is a]
    if not waiting or engine.closed:
        return
    probe.late_errors = []
    probe.outstanding = len(waiting)
    probe.future = engine.loop.create_future()
    grace_ns = int(grace_s * 1e9)
    engine.expire_at(probe, engine.loop.time() + grace_s, key=-1 - grace_ns)
    await probe.future


class _Engines:
    """The run's sockets, one per family, opened on first use."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.by_family: dict[int, _Engine | tuple[ProbeError, str]] = {}

    def get(self, fam: _Family) -> _Engine | tuple[ProbeError, str]:
        """The engine, or why there is none (not measured: error and message)."""
        engine = self.by_family.get(fam.af)
        if engine is None:
            try:
                engine = _Engine(fam, self.loop)
            except _NoPrivilege:
                engine = (ProbeError.PERMISSION, permission_message())
            except (icmplib.ICMPSocketError, OSError) as exc:
                engine = (ProbeError.INTERNAL, f"cannot open an {fam.label} ICMP socket: {exc}")
            self.by_family[fam.af] = engine
        return engine

    def close(self) -> None:
        for engine in self.by_family.values():
            if isinstance(engine, _Engine):
                engine.close()
        self.by_family.clear()


def _engines(ctx: ProbeContext) -> _Engines:
    engines = ctx.resources.get(KIND)
    if engines is None:
        engines = ctx.resources[KIND] = _Engines(asyncio.get_running_loop())
        ctx.on_close(engines.close)
    return engines


def _destination(address: str) -> tuple[_Family, str, bytes, tuple] | None:
    """(family, address as the kernel writes it, packed, sockaddr), or None when
    `address` is not a numeric address."""
    try:
        packed = socket.inet_pton(_AF_INET, address)
        # inet_pton takes only the canonical dotted quad: the kernel's spelling
        return _V4, address, packed, (address, 0)
    except OSError:
        pass
    try:
        infos = socket.getaddrinfo(address, None, socket.AF_INET6, socket.SOCK_RAW, 0,
                                   socket.AI_NUMERICHOST)
    except (OSError, UnicodeError):
        return None
    sockaddr = infos[0][4]
    packed = socket.inet_pton(socket.AF_INET6, sockaddr[0].split("%", 1)[0])
    return _V6, socket.inet_ntop(socket.AF_INET6, packed), packed, sockaddr


async def _resolve(task: ProbeTask) -> str | None:
    """The address to probe: the task's, else its host looked up now."""
    if task.address:
        return task.address
    if not task.host:
        return None
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(task.host, None,
                                                              type=socket.SOCK_RAW)
    except (OSError, UnicodeError):
        return None
    return infos[0][4][0] if infos else None


def _families(tasks: list[ProbeTask]) -> list[_Family]:
    # a numeric IPv6 address has a colon, an IPv4 one never; a host name
    # resolved later: assume IPv4 at least
    has_v6 = any(task.address and ":" in task.address for task in tasks)
    has_v4 = any(not (task.address and ":" in task.address) for task in tasks)
    return [fam for fam, wanted in ((_V4, has_v4), (_V6, has_v6)) if wanted]


def _timeout_of(task: ProbeTask) -> float:
    return task.timeout_s if task.timeout_s > 0 else 0.0


def _send_failure(code: int) -> tuple[ProbeError, str]:
    reason = os.strerror(code)
    if code in _NO_ROUTE_ERRNOS:
        return ProbeError.NO_ROUTE, f"our own host refused to send: {reason} ({errno.errorcode.get(code, code)})"
    if code == errno.EAFNOSUPPORT:
        return ProbeError.NO_ROUTE, "this host has no support for the address family"
    return ProbeError.INTERNAL, f"sending the echo request failed: {reason}"


class IcmpProbe:
    kind = KIND
    rtt_from_kernel = True  # SO_TIMESTAMPNS: see Probe.rtt_from_kernel
    holds_descriptor = False  # one socket per run: see Probe.holds_descriptor

    def preflight(self, tasks: list[ProbeTask]) -> str | None:
        """Open (and close) the sockets the tasks need; no packet is sent."""
        for fam in _families(tasks):
            try:
                icmp_socket, _raw = _open_socket(fam)
            except _NoPrivilege:
                return permission_message()
            except (icmplib.ICMPSocketError, OSError):
                continue  # e.g. no IPv6 on this host: each such probe says so itself
            icmp_socket.close()
        return None

    async def presend(self, tasks: list[ProbeTask], ctx: ProbeContext) -> None:
        """Send each task's first attempt now, one after another, before the
        executor starts a coroutine per task; `run` then carries on from there.

        Only the sends are in the burst: the tasks' coroutines are made while
        the replies are on their way, not between two sends, and the run ends
        that much sooner (the last timeout runs from the last send): at 10,000
        targets the last packet leaves ~0.1 s after the run starts, not ~0.155 s.
        The reader gets a turn every `_Engine.burst` sends (half what the receive
        buffer holds); replies wait in the socket meanwhile, stamped by the kernel
        on arrival. A task this cannot send without waiting (a host name, no free
        sequence number, a full socket) is left to `run`, as are the ones after it.
        """
        engines = ctx.resources.get(KIND) or _engines(ctx)
        first_sent = ctx.resources.setdefault(_FIRST_SENT, {})
        loop = engines.loop
        since_read = 0
        for task in tasks:
            dest = _destination(task.address) if task.address else None
            if dest is None:
                continue
            fam, host, packed, sockaddr = dest
            engine = engines.by_family.get(fam.af) or engines.get(fam)
            if engine.__class__ is not _Engine:
                continue  # run() reports why
            if since_read >= engine.burst:
                await asyncio.sleep(0)  # the reader's turn: the socket's queue is finite
                since_read = 0
            since_read += 1
            timeout_s = _timeout_of(task)
            probe = _Probe(loop.create_future(), int(timeout_s * 1e9))
            attempt = engine.allocate_now(probe, host, packed)
            if attempt is None:
                return
            first_send = loop.time()
            code = engine.send_now(attempt, sockaddr)
            if code is None:
                engine.forget(attempt)
                return
            if code:
                engine.forget(attempt)
                first_sent[task.id] = (engine, probe, attempt, first_send, _send_failure(code))
                continue
            probe.outstanding = 1
            if task.attempts <= 1:  # its timeout runs from its send, not from run()
                probe.all_sent = True
                engine.expire_at(probe, first_send + timeout_s)
            first_sent[task.id] = (engine, probe, attempt, first_send, None)

    async def run(self, task: ProbeTask, ctx: ProbeContext) -> ProbeResult:
        first_sent = ctx.resources.get(_FIRST_SENT)
        carried = first_sent.pop(task.id, None) if first_sent else None
        timeout_s = _timeout_of(task)
        if carried is None:
            started_at = time.time()
            t0 = time.perf_counter()
            address = task.address or await _resolve(task)
            dest = _destination(address) if address else None
            if dest is None:
                why = (f"{task.host!r} did not resolve to an address" if not address
                       else f"{address!r} is not an IP address")
                return not_measured(task.id, KIND, task.target, address, ProbeError.RESOLVE, why)
            fam, host, packed, sockaddr = dest
            del dest  # not kept alive in this frame: one object fewer per probe for the GC
            engines = ctx.resources.get(KIND) or _engines(ctx)
            engine = engines.by_family.get(fam.af) or engines.get(fam)
            if engine.__class__ is not _Engine:
                error, message = engine
                return not_measured(task.id, KIND, task.target, address, error, message)
            probe = _Probe(engine.loop.create_future(), int(timeout_s * 1e9))
            attempt = None
            sent = 0
            send_error: tuple[ProbeError, str] | None = None
            first_send = 0.0
            armed = False  # whether its deadline is set already
        else:  # `presend` sent the first attempt, and set a lone attempt's deadline
            engine, probe, attempt, first_send, send_error = carried
            del carried
            address = task.address
            # when it was sent, by the clocks run() reads itself (perf_counter_ns is
            # perf_counter's clock)
            started_at = attempt.sent_wall_ns / 1e9
            t0 = attempt.sent_mono_ns / 1e9
            sent = 1
            armed = task.attempts <= 1 and send_error is None
            if task.attempts > 1:  # the later attempts go where the first did
                _fam, host, packed, sockaddr = _destination(address)

        loop = engine.loop
        earlier: list[_Attempt] | None = None  # attempts before `attempt`, to forget at the end
        try:
            for i in range(sent, task.attempts if task.attempts > 1 else 1):
                if send_error is not None:
                    break  # our own host will refuse the next attempts just the same
                if i:
                    delay_s = first_send + i * task.interval_s - loop.time()
                    if delay_s > 0:
                        await asyncio.sleep(delay_s)
                if ctx.rate.rate_pps > 0:  # (unlimited: no coroutine per packet)
                    await ctx.rate.take()
                # the common case, without waiting: a free sequence number, room to send
                if attempt is not None:  # a list only for a second attempt: fewer objects
                    if earlier is None:
                        earlier = []
                    earlier.append(attempt)
                attempt = (engine.allocate_now(probe, host, packed)
                           or await engine.allocate(probe, host, packed))
                if i == 0:
                    first_send = loop.time()
                code = engine.send_now(attempt, sockaddr)
                if code is None:
                    code = await engine.send(attempt, sockaddr)
                sent += 1
                if code:
                    engine.forget(attempt)
                    send_error = _send_failure(code)
                    break
                probe.outstanding += 1
            probe.all_sent = True
            if probe.outstanding > 0:
                if not armed:
                    engine.expire_at(probe, loop.time() + timeout_s)
                await probe.future
                # only when nothing came back: an error in time already says where
                if not probe.rtts_ms and not probe.notices and task.late_grace_s > 0:
                    await _late_window(engine, probe, [*(earlier or ()), attempt],
                                       task.late_grace_s)
        finally:
            if attempt is not None:
                engine.forget(attempt)
            for each in earlier or ():
                engine.forget(each)

        return _result(task, address, sent, probe, send_error, timeout_s, started_at,
                       time.perf_counter() - t0)

    def silent_result(self, task: ProbeTask) -> ProbeResult:
        timeout_s = _timeout_of(task)
        silent = _Probe(None, 0)  # type: ignore[arg-type]  # the state of one that heard nothing
        return _result(task, task.address, max(1, task.attempts), silent, None, timeout_s,
                       None, None)


def _result(task: ProbeTask, address: str | None, sent: int, probe: _Probe,
            send_error: tuple[ProbeError, str] | None, timeout_s: float,
            started_at: float | None, duration_s: float | None) -> ProbeResult:
    """What the probe's attempts came to."""
    rtts_ms = tuple(probe.rtts_ms) if probe.rtts_ms else ()
    notices = tuple(probe.notices) if probe.notices else ()
    detail = {"late_errors": probe.late_errors} if probe.late_errors else {}
    if send_error is not None and not rtts_ms:
        error, message = send_error
    elif rtts_ms:
        error, message = None, None
    elif probe.error is not None and notices:
        last = notices[-1]
        error, message = probe.error, f"{last.description} (from {last.source})"
    else:
        error = ProbeError.TIMEOUT
        message = f"no reply to {sent} echo request(s) within {timeout_s:g}s each"
        if detail:
            message += "; later " + late_text(detail["late_errors"])
    return ProbeResult(
        id=task.id, kind=KIND, target=task.target, address=address, sent=sent,
        rtts_ms=rtts_ms, error=error, message=message, reached=bool(rtts_ms),
        notices=notices, detail=detail, started_at=started_at, duration_s=duration_s)


PROBE = IcmpProbe()

__all__ = ["KIND", "PROBE", "IcmpProbe", "describe", "permission_message"]
