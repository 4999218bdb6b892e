"""TCP connect probe: is the service accepting connections, and if not, who said no.

Each attempt is a non-blocking connect that is closed as soon as it is
established (no payload). Attempts start `interval_s` apart and overlap, so a
dead host costs about one timeout after the last attempt, not attempts x
timeout.

An attempt ends in one of:
  open         the handshake completed; its time is the RTT
  refused      a RST came back: the host is up, the service is not
  timeout      nothing came back in time
  unreachable  an ICMP destination-unreachable came back (EHOSTUNREACH & co.)
  no_route     our own stack has no route (ENETUNREACH raised by connect())

With IP_RECVERR set, the kernel also queues the ICMP error itself on the
socket, with the address of the router that sent it: that address is the
evidence to hand to a carrier, so it is kept as an `IcmpNotice`. An attempt
that timed out keeps its socket `task.late_grace_s` longer: an ICMP error that
comes then (a router that gave up resolving a dead next hop) is kept in
`detail["late_errors"]`; the attempt stays a timeout.

The RTT of an open attempt is the kernel's own timing of the handshake where
Linux gives it (TCP_INFO): a clock read when the event loop notices the
connect measures the loop's backlog too, which with thousands of connects in
flight is most of a second. Without a retransmission it is SYN sent ->
SYN-ACK received (`tcpi_rtt`, in µs). When the SYN was retransmitted, the wait
for the retransmission is part of connecting: it is `connect()` until the
kernel received the SYN-ACK (`tcpi_last_data_recv` / `tcpi_last_ack_recv`, ms
since then, read against the clock), so a busy loop still adds nothing. Whether an attempt was in time
is decided on the same figure, never on when the loop woke up. Elsewhere (not
Linux) it is the wall-clock time from `connect()` until the loop noticed.
`detail["rtt_source"]` says which: `kernel`, `clock`, or `mixed`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import ipaddress
import socket
import struct
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from netprobe.evidence import IcmpNotice, ProbeError, ProbeResult, not_measured
from netprobe.packets import describe_icmp, late_text
from netprobe.probes.interface import ProbeContext, ProbeTask

# Linux values; Python's socket module does not export IP_RECVERR.
_IP_RECVERR = getattr(socket, "IP_RECVERR", 11)
_IPV6_RECVERR = getattr(socket, "IPV6_RECVERR", 25)
_SO_EE_ORIGIN_ICMP = 2
_SO_EE_ORIGIN_ICMP6 = 3
# struct sock_extended_err: errno, origin, type, code, pad, info, data
_EXTENDED_ERR = struct.Struct("=IBBBBII")

OPEN = "open"

# struct tcp_info (linux/tcp.h) only grows at its end: tcpi_state is the u8 at
# offset 0, tcpi_last_data_recv and tcpi_last_ack_recv (ms since data, an ACK
# came in) the u32s at 52 and 56, tcpi_rtt (smoothed RTT, µs) the u32 at 68,
# tcpi_total_retrans the u32 at 100. After a handshake and nothing else,
# tcpi_rtt is its one sample, and both "last" times are the SYN-ACK's.
_TCP_INFO = getattr(socket, "TCP_INFO", 11) if sys.platform.startswith("linux") else None
_TCP_INFO_LEN = 104
_TCPI_LAST_RECV_OFFSET = 52  # last_data_recv, then last_ack_recv
_TCPI_LAST_RECV = struct.Struct("=II")
_TCPI_RTT_OFFSET = 68
_TCPI_TOTAL_RETRANS_OFFSET = 100
# tcpi_last_ack_recv counts whole jiffies (1-10 ms) down to ms: a SYN-ACK timed
# by it may seem up to a jiffy later than the clock that noticed it.
_JIFFY_SLACK_MS = 10.0
_TCP_CONNECTED_STATES = (1, 8)  # TCP_ESTABLISHED, TCP_CLOSE_WAIT (the peer closed already)
KERNEL_RTT = "kernel"
CLOCK_RTT = "clock"

# Errno of a failed connect -> the outcome it means. Anything not listed is an
# `unreachable` with the errno in the message: the network said no, somehow.
_ERRNO_OUTCOMES: dict[int, ProbeError] = {
    errno.ECONNREFUSED: ProbeError.REFUSED,
    errno.ETIMEDOUT: ProbeError.TIMEOUT,
    errno.ENETUNREACH: ProbeError.NO_ROUTE,  # becomes UNREACHABLE when a router sent it
    errno.EHOSTUNREACH: ProbeError.UNREACHABLE,
    errno.EHOSTDOWN: ProbeError.UNREACHABLE,
    errno.EACCES: ProbeError.UNREACHABLE,  # ICMPv6 admin-prohibited / reject-route
    errno.EPERM: ProbeError.UNREACHABLE,  # our own firewall dropped the SYN
}

# Our own host refusing to send at all (no IPv6 on this host, our own firewall):
# nothing left the machine, so, like ENETUNREACH from
# connect() itself, it is "could not measure", never evidence about the target.
LOCAL_REFUSAL_ERRNOS = frozenset({errno.EAFNOSUPPORT, errno.EPROTONOSUPPORT, errno.EPERM})

# Errors of our own host running out of something: the attempt was never sent,
# so it is no evidence about the network ("could not measure").
NOT_SENT = "not_sent"
LOCAL_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM,
                                   errno.EADDRNOTAVAIL})


def not_sent_message(errno_names: list[str]) -> str:
    names = ", ".join(sorted(set(errno_names)))
    return (f"could not send ({names}): this host ran out of sockets or local ports; "
            f"raise the open-file limit (ulimit -n) or lower the concurrency")


def split_sent(task: ProbeTask, attempts: list, started_at: float | None,
               duration_s: float | None) -> tuple[list, list, ProbeResult | None]:
    """(attempts that left this host, those that did not, and, when none left,
    the "not measured" result that says why: nothing was asked of the network)."""
    sent = [a for a in attempts if a.outcome != NOT_SENT]
    unsent = [a for a in attempts if a.outcome == NOT_SENT]
    if sent:
        return sent, unsent, None
    why = not_sent_message([a.errno_name or "?" for a in unsent])
    return [], unsent, dataclasses.replace(
        not_measured(task.id, task.kind, task.target, task.address, ProbeError.INTERNAL, why),
        started_at=started_at, duration_s=duration_s)


def is_time_exceeded(notice: IcmpNotice) -> bool:
    """ICMP time-exceeded (type 11) or ICMPv6 hop-limit-exceeded (type 3): a routing loop."""
    return notice.type == (3 if ":" in notice.source else 11)


# When attempts fail in different ways equally often, report the most telling.
_PRECEDENCE = (ProbeError.REFUSED, ProbeError.UNREACHABLE, ProbeError.TTL_EXCEEDED,
               ProbeError.NO_ROUTE, ProbeError.TIMEOUT)

@dataclass(frozen=True)
class Attempt:
    """One connect: its outcome, and what the network told us about it."""

    outcome: str  # OPEN or a ProbeError value
    rtt_ms: float | None = None
    rtt_source: str | None = None  # KERNEL_RTT or CLOCK_RTT, when open
    clock_ms: float | None = None  # connect() until the event loop noticed, when open
    errno_name: str | None = None
    notices: tuple[IcmpNotice, ...] = ()
    late_errors: tuple[dict, ...] = ()  # ICMP errors after the timeout, with `after_ms`


def enable_recverr(sock: socket.socket) -> bool:
    """Ask the kernel to queue ICMP errors (with their sender) on this socket."""
    level, option = ((socket.IPPROTO_IPV6, _IPV6_RECVERR) if sock.family == socket.AF_INET6
                     else (socket.IPPROTO_IP, _IP_RECVERR))
    try:
        sock.setsockopt(level, option, 1)
    except OSError:
        return False
    return True


def read_icmp_errors(sock: socket.socket, limit: int = 8) -> tuple[IcmpNotice, ...]:
    """Drain the socket's error queue into notices (ICMP-originated entries only)."""
    notices: list[IcmpNotice] = []
    for _ in range(limit):
        try:
            _, ancdata, _, _ = sock.recvmsg(256, 512, socket.MSG_ERRQUEUE)
        except OSError:  # EAGAIN: the queue is empty
            break
        for level, ctype, data in ancdata:
            if (level, ctype) in ((socket.IPPROTO_IP, _IP_RECVERR),
                                  (socket.IPPROTO_IPV6, _IPV6_RECVERR)):
                notice = parse_extended_err(data)
                if notice is not None:
                    notices.append(notice)
    return tuple(notices)


def parse_extended_err(data: bytes) -> IcmpNotice | None:
    """A `sock_extended_err` followed by the offender's sockaddr -> a notice."""
    if len(data) < _EXTENDED_ERR.size:
        return None
    _, origin, icmp_type, code, _, _, _ = _EXTENDED_ERR.unpack_from(data)
    if origin not in (_SO_EE_ORIGIN_ICMP, _SO_EE_ORIGIN_ICMP6):
        return None  # a local error: no router to name
    offender = data[_EXTENDED_ERR.size:]
    source = _sockaddr_address(offender)
    if source is None:
        return None
    family = socket.AF_INET6 if origin == _SO_EE_ORIGIN_ICMP6 else socket.AF_INET
    return IcmpNotice(source=source, type=icmp_type, code=code,
                      description=describe_icmp(family, icmp_type, code))


def _sockaddr_address(raw: bytes) -> str | None:
    if len(raw) < 2:
        return None
    (family,) = struct.unpack_from("=H", raw)
    if family == socket.AF_INET and len(raw) >= 8:
        return socket.inet_ntop(socket.AF_INET, raw[4:8])
    if family == socket.AF_INET6 and len(raw) >= 24:
        return socket.inet_ntop(socket.AF_INET6, raw[8:24])
    return None


def _tcp_info(sock: socket.socket) -> bytes | None:
    """TCP_INFO of a connected socket; None when not Linux or not connected."""
    if _TCP_INFO is None:
        return None
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, _TCP_INFO_LEN)
    except OSError:
        return None
    if len(raw) < _TCP_INFO_LEN or raw[0] not in _TCP_CONNECTED_STATES:
        return None
    return raw


def _handshake_ms(raw: bytes) -> float | None:
    """The handshake's one round trip in a TCP_INFO, in ms; None when there is no
    sample or the SYN was retransmitted (the connect took longer than that)."""
    (rtt_us,) = struct.unpack_from("=I", raw, _TCPI_RTT_OFFSET)
    (retransmits,) = struct.unpack_from("=I", raw, _TCPI_TOTAL_RETRANS_OFFSET)
    return rtt_us / 1000.0 if rtt_us and not retransmits else None


def kernel_rtt_ms(sock: socket.socket) -> float | None:
    """The connected handshake's round trip as the kernel timed it, in ms; None
    where there is none to trust: not Linux, not connected, no sample, or a
    retransmitted SYN (then the connect took longer than one round trip)."""
    raw = _tcp_info(sock)
    return None if raw is None else _handshake_ms(raw)


def kernel_connect_ms(sock: socket.socket, started: float) -> float | None:
    """How long the kernel took to connect, from `started` (perf_counter, just
    before `connect()`) to the SYN-ACK's arrival, in ms; None when not Linux or
    not connected. Any later wait for the event loop is left out.

    Without a retransmission it is the handshake's `tcpi_rtt` (µs). With one,
    the connect spans the retransmission timeout too: the SYN-ACK's arrival is
    `tcpi_last_data_recv` / `tcpi_last_ack_recv` ms before now (jiffies: a few
    ms coarse, against a second of retransmission timeout). Each moves on when
    the server sends more before we look (a FIN moves only the ACK's, a banner
    both): the earlier of the two is the SYN-ACK's, or as near as we can tell."""
    raw = _tcp_info(sock)
    if raw is None:
        return None
    elapsed_ms = (time.perf_counter() - started) * 1000.0
    handshake_ms = _handshake_ms(raw)
    if handshake_ms is not None:
        return handshake_ms
    # an event before the connect began is no part of it: not a time to trust
    since_ms = max((ms for ms in _TCPI_LAST_RECV.unpack_from(raw, _TCPI_LAST_RECV_OFFSET)
                    if ms <= elapsed_ms + _JIFFY_SLACK_MS), default=None)
    return None if since_ms is None else max(0.0, elapsed_ms - since_ms)


def _opened(sock: socket.socket, started: float, clock_ms: float, timeout_s: float) -> Attempt:
    """An established connect: open, with the kernel's timing where there is one;
    a timeout when that timing says the handshake finished after `timeout_s`
    (the loop noticed it late)."""
    kernel_ms = kernel_connect_ms(sock, started)
    if kernel_ms is None:
        return Attempt(outcome=OPEN, rtt_ms=clock_ms, rtt_source=CLOCK_RTT, clock_ms=clock_ms)
    if kernel_ms > timeout_s * 1000.0:
        return Attempt(outcome=ProbeError.TIMEOUT.value)
    if kernel_ms > clock_ms + _JIFFY_SLACK_MS:  # more than the clock around it: not this handshake
        return Attempt(outcome=OPEN, rtt_ms=clock_ms, rtt_source=CLOCK_RTT, clock_ms=clock_ms)
    return Attempt(outcome=OPEN, rtt_ms=min(kernel_ms, clock_ms), rtt_source=KERNEL_RTT,
                   clock_ms=clock_ms)


# Linux: a socket created non-blocking, one system call fewer per connect
SOCK_NONBLOCK = getattr(socket, "SOCK_NONBLOCK", 0)


def wake(waiter: asyncio.Future) -> None:
    """End a wait with None (a timer's callback), unless it ended already."""
    if not waiter.done():
        waiter.set_result(None)


async def _writable(fd: int, timeout_s: float) -> float | None:
    """When `fd` became writable (perf_counter, stamped in the callback: the loop
    may run the waiter later), or None after `timeout_s`. One timer handle, not
    asyncio.timeout's context and task bookkeeping: thousands run at once."""
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[float | None] = loop.create_future()

    def on_writable() -> None:
        if not waiter.done():
            waiter.set_result(time.perf_counter())

    loop.add_writer(fd, on_writable)
    timer = loop.call_later(timeout_s, wake, waiter)
    try:
        return await waiter
    finally:
        timer.cancel()
        loop.remove_writer(fd)


async def connect_once(family: int, sockaddr: tuple, timeout_s: float,
                       late_grace_s: float = 0.0) -> Attempt:
    """One non-blocking connect, closed as soon as it is established."""
    try:
        sock = socket.socket(family, socket.SOCK_STREAM | SOCK_NONBLOCK)
    except OSError as exc:  # no IPv6 on this host, out of descriptors
        return _failed(exc.errno, local=True)
    try:
        if not SOCK_NONBLOCK:
            sock.setblocking(False)
        enable_recverr(sock)
        started = time.perf_counter()
        err = sock.connect_ex(sockaddr)
        if err not in (0, errno.EINPROGRESS):
            # Failed before any packet left (no route) or on loopback at once (refused).
            return _failed(err, local=True, notices=read_icmp_errors(sock))
        if err == errno.EINPROGRESS:
            finished = await _writable(sock.fileno(), timeout_s)
            if finished is None:
                # A busy loop can notice a connect only after its timeout: the
                # kernel's handshake time says whether it was in time.
                if kernel_connect_ms(sock, started) is not None:
                    return _opened(sock, started, (time.perf_counter() - started) * 1000.0,
                                   timeout_s)
                notices = read_icmp_errors(sock)
                late = await _late_errors(sock, started, late_grace_s) \
                    if late_grace_s > 0 and not notices else ()
                return Attempt(outcome=ProbeError.TIMEOUT.value, notices=notices,
                               late_errors=late)
        else:
            finished = time.perf_counter()
        # SO_ERROR first: reading the error queue clears the pending socket error.
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err == 0:
            return _opened(sock, started, (finished - started) * 1000.0, timeout_s)
        return _failed(err, local=False, notices=read_icmp_errors(sock))
    finally:
        sock.close()


async def _late_errors(sock: socket.socket, started: float, grace_s: float) -> tuple[dict, ...]:
    """Wait up to `grace_s` more for the connect to fail; the ICMP errors then."""
    if await _writable(sock.fileno(), grace_s) is None:
        return ()
    if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
        return ()  # it connected after all, too late to count
    after_ms = round((time.perf_counter() - started) * 1000.0, 1)
    return tuple({**n.to_json(), "after_ms": after_ms} for n in read_icmp_errors(sock))


def _failed(err: int | None, *, local: bool,
            notices: tuple[IcmpNotice, ...] = ()) -> Attempt:
    err = err or errno.EIO
    name = errno.errorcode.get(err, str(err))
    if local and err in LOCAL_RESOURCE_ERRNOS:
        return Attempt(outcome=NOT_SENT, errno_name=name)
    outcome = _ERRNO_OUTCOMES.get(err, ProbeError.UNREACHABLE)
    if local and err in LOCAL_REFUSAL_ERRNOS:
        outcome = ProbeError.NO_ROUTE  # our own host would not send it: not measured
    if outcome is ProbeError.NO_ROUTE and (notices or not local):
        outcome = ProbeError.UNREACHABLE  # a router's net-unreachable, not our table
    if notices and all(is_time_exceeded(n) for n in notices):
        outcome = ProbeError.TTL_EXCEEDED  # the kernel says EHOSTUNREACH; the ICMP says loop
    return Attempt(outcome=outcome.value, errno_name=name, notices=notices)


def sockaddr_for(address: str, port: int) -> tuple[int, tuple]:
    """(family, sockaddr) for a literal IP address; ValueError when it is not one."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise ValueError(f"not an IP address: {address!r}") from None
    if ip.version == 4:
        return socket.AF_INET, (str(ip), port)
    scope = ip.scope_id  # fe80::1%eth0: the interface decides where it goes
    if not scope:
        return socket.AF_INET6, (str(ip), port, 0, 0)
    try:
        index = int(scope) if scope.isdigit() else socket.if_nametoindex(scope)
    except OSError:
        raise ValueError(f"unknown interface in {address!r}") from None
    return socket.AF_INET6, (str(ip).split("%")[0], port, 0, index)


def same_address(a: str, b: str) -> bool:
    """Are two textual IP addresses the same address ('2001:db8::1' == '2001:DB8:0::1')?"""
    try:
        return ipaddress.ip_address(a.split("%")[0]) == ipaddress.ip_address(b.split("%")[0])
    except ValueError:
        return a == b


def from_a_firewall(attempt: Any, target: str) -> Any:
    """An ICMP port-unreachable sent by some firewall on the way, not by the target,
    is no proof the target is up: the attempt becomes `unreachable` (its errno
    stays ECONNREFUSED). Works on any attempt type with `outcome` and `notices`."""
    if (attempt.outcome == ProbeError.REFUSED.value and attempt.notices
            and not any(same_address(n.source, target) for n in attempt.notices)):
        return dataclasses.replace(attempt, outcome=ProbeError.UNREACHABLE.value)
    return attempt


def summarize(task: ProbeTask, attempts: list[Attempt], started_at: float | None,
              duration_s: float | None) -> ProbeResult:
    """Fold the attempts into one result; the dominant failure when none opened.

    Attempts our own host could not send are left out of `sent`; when none
    was sent the result is "not measured", never "down".
    """
    address = task.address or ""
    attempts, unsent, nothing_sent = split_sent(task, attempts, started_at, duration_s)
    if nothing_sent is not None:
        return nothing_sent
    attempts = [from_a_firewall(a, address) for a in attempts]
    rtts = tuple(a.rtt_ms for a in attempts if a.rtt_ms is not None)
    notices = tuple(dict.fromkeys(n for a in attempts for n in a.notices))
    outcomes = [a.outcome for a in attempts]
    host_spoke = (any(o in (OPEN, ProbeError.REFUSED.value) for o in outcomes)
                  or any(same_address(n.source, address) for n in notices))
    failures = Counter(o for o in outcomes if o != OPEN)
    error: ProbeError | None = None
    message: str | None = None
    if rtts:
        if failures:
            message = f"{len(attempts) - len(rtts)}/{len(attempts)} connects failed (" + ", ".join(
                f"{n} {o}" for o, n in failures.most_common()) + ")"
    elif failures:
        error = ProbeError(max(failures, key=lambda o: (
            failures[o], -_PRECEDENCE.index(ProbeError(o)))))
        message = _message(error, task, failures[error], len(attempts), notices, attempts)
    detail: dict = {"port": task.port, "outcomes": outcomes}
    sources = {a.rtt_source for a in attempts if a.rtt_source}
    if sources:
        detail["rtt_source"] = sources.pop() if len(sources) == 1 else "mixed"
    late = [e for a in attempts for e in a.late_errors]
    if late and not rtts:
        detail["late_errors"] = late
        message = f"{message}; later {late_text(late)}"
    errnos = [a.errno_name for a in attempts]
    if any(errnos):
        detail["errnos"] = errnos
    if unsent:
        detail["not_sent"] = len(unsent)
        total = len(attempts) + len(unsent)
        message = f"{message + '; ' if message else ''}{len(unsent)} of {total} attempts " + \
            not_sent_message([a.errno_name or "?" for a in unsent])
    return ProbeResult(id=task.id, kind=task.kind, target=task.target, address=task.address,
                       sent=len(attempts), rtts_ms=rtts, error=error, message=message,
                       reached=host_spoke, notices=notices, detail=detail,
                       started_at=started_at, duration_s=duration_s)


def _message(error: ProbeError, task: ProbeTask, count: int, total: int,
             notices: tuple[IcmpNotice, ...], attempts: list[Attempt]) -> str:
    where = f"{task.address} port {task.port}"
    share = f"{count}/{total} attempts"
    if error is ProbeError.REFUSED:
        return f"connection refused by {where} ({share}): the host is up, the service is not"
    if error is ProbeError.TIMEOUT:
        return f"no answer from {where} within {task.timeout_s:g} s ({share})"
    if error is ProbeError.NO_ROUTE:
        return f"no route to {task.address} from this host ({share})"
    if error is ProbeError.TTL_EXCEEDED:
        senders = ", ".join(sorted({n.source for n in notices}))
        return f"{where} not reached: the packets expired in transit (a routing loop?), " \
               f"time-exceeded from {senders} ({share})"
    if notices:
        senders = ", ".join(f"{n.description} from {n.source}" for n in notices)
        return f"{where} unreachable: {senders} ({share})"
    names = sorted({a.errno_name for a in attempts if a.errno_name})
    return f"{where} unreachable ({', '.join(names) or 'no detail'}; {share})"


class TcpProbe:
    kind = "tcp"
    # TCP_INFO: see Probe.rtt_from_kernel (elsewhere the RTT is the clock's)
    rtt_from_kernel = _TCP_INFO is not None

    def preflight(self, tasks: list[ProbeTask]) -> str | None:
        return None  # an ordinary connect needs no privilege

    async def run(self, task: ProbeTask, ctx: ProbeContext) -> ProbeResult:
        if not task.address:
            return not_measured(task.id, task.kind, task.target, None, ProbeError.RESOLVE,
                                f"no address for {task.host or task.target!r}")
        if not task.port:
            return not_measured(task.id, task.kind, task.target, task.address,
                                ProbeError.INTERNAL, "a tcp probe needs a port")
        try:
            family, sockaddr = sockaddr_for(task.address, task.port)
        except ValueError as exc:
            return not_measured(task.id, task.kind, task.target, task.address,
                                ProbeError.RESOLVE, str(exc))
        started_at = time.time()
        t0 = time.monotonic()
        attempts_n = max(1, task.attempts)

        async def attempt(i: int) -> Attempt:
            if i:
                await asyncio.sleep(max(0.0, t0 + i * task.interval_s - time.monotonic()))
            if ctx.rate.rate_pps > 0:
                await ctx.rate.take()
            return await connect_once(family, sockaddr, task.timeout_s, task.late_grace_s)

        if attempts_n == 1:  # no task of its own to overlap with (1,000s of them: --attempts 1)
            attempts = [await attempt(0)]
        else:
            attempts = list(await asyncio.gather(*(attempt(i) for i in range(attempts_n))))
        return summarize(task, attempts, started_at, time.monotonic() - t0)

    def silent_result(self, task: ProbeTask) -> ProbeResult | None:
        if not task.address or not task.port:
            return None
        timed_out = Attempt(outcome=ProbeError.TIMEOUT.value)
        return summarize(task, [timed_out] * max(1, task.attempts), None, None)


PROBE = TcpProbe()
