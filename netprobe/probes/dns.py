"""DNS probe: does the server answer, with what rcode, and is the answer the expected one.

Each attempt is one query over UDP (from a fresh connected socket, so the
kernel reports an ICMP port-unreachable and drops datagrams from any other
source), retried over TCP when the answer comes back truncated. Attempts start
`interval_s` apart and overlap, like the TCP probe's connects; each is bounded
by `timeout_s`, TCP fallback included.

An attempt ends in one of:
  ok            NOERROR, and the answers match `expect` (when given)
  dns_error     the server answered NXDOMAIN, SERVFAIL, REFUSED, ... (host up)
  dns_mismatch  NOERROR, but not the expected records: a hijacked or stale record
  timeout       no answer in time
  refused       ICMP port unreachable: the host is up, no DNS server listens
  unreachable   an ICMP destination-unreachable from the path
  no_route      our own stack has no route
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import socket
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import dns.asyncbackend
import dns.asyncquery
import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from netprobe.evidence import IcmpNotice, ProbeError, ProbeResult, not_measured
from netprobe.packets import SO_TIMESTAMPNS, TIMESPEC, kernel_rx_time_s, late_text
from netprobe.probes.interface import ProbeContext, ProbeTask
from netprobe.probes.tcp import (
    CLOCK_RTT,
    KERNEL_RTT,
    LOCAL_REFUSAL_ERRNOS,
    LOCAL_RESOURCE_ERRNOS,
    NOT_SENT,
    enable_recverr,
    from_a_firewall,
    is_time_exceeded,
    not_sent_message,
    read_icmp_errors,
    same_address,
    sockaddr_for,
    split_sent,
)

OK = "ok"

_PRECEDENCE = (ProbeError.DNS_MISMATCH, ProbeError.DNS_ERROR, ProbeError.REFUSED,
               ProbeError.UNREACHABLE, ProbeError.TTL_EXCEEDED, ProbeError.NO_ROUTE,
               ProbeError.TIMEOUT)

_ERRNO_OUTCOMES: dict[int, ProbeError] = {
    errno.ECONNREFUSED: ProbeError.REFUSED,
    errno.ETIMEDOUT: ProbeError.TIMEOUT,
    errno.ENETUNREACH: ProbeError.UNREACHABLE,  # NO_ROUTE when connect() itself failed
    errno.EHOSTUNREACH: ProbeError.UNREACHABLE,
}


@dataclass(frozen=True)
class Attempt:
    """One query: how it ended, and what the server said if it said anything."""

    outcome: str  # OK or a ProbeError value
    rtt_ms: float | None = None  # query sent to answer read (both legs after a TCP fallback)
    rtt_source: str | None = None  # KERNEL_RTT (the answer's kernel receive stamp) or CLOCK_RTT
    rcode: str | None = None
    answers: tuple[str, ...] = ()
    tcp_fallback: bool = False
    errno_name: str | None = None
    why: str | None = None  # a one-line reason for unusual failures
    notices: tuple[IcmpNotice, ...] = ()  # ICMP errors, with the address that sent them
    late_errors: tuple[dict, ...] = ()  # ICMP errors after the timeout, with `after_ms`


# -- comparing answers with `expect` -------------------------------------------

def _normalize_text(rdtype: str, value: str) -> Any:
    """An expected value in a form comparable with `_normalize_rdata`."""
    text = value.strip()
    if rdtype in ("A", "AAAA"):
        try:
            return ipaddress.ip_address(text)
        except ValueError:
            return text.lower()
    if rdtype == "TXT":
        if not text.startswith('"'):
            return text
        try:
            rd = dns.rdata.from_text(dns.rdataclass.IN, rdtype, text)
        except Exception:
            return text
        return _normalize_rdata(rd)
    try:  # names and name-bearing records: case and the trailing dot do not matter
        rd = dns.rdata.from_text(dns.rdataclass.IN, rdtype, text, origin=dns.name.root,
                                 relativize=False)
    except Exception:
        return text.rstrip(".").lower() + "."
    return _normalize_rdata(rd)


def _normalize_rdata(rd: dns.rdata.Rdata) -> Any:
    rdtype = dns.rdatatype.to_text(rd.rdtype)
    if rdtype in ("A", "AAAA"):
        return ipaddress.ip_address(rd.address)  # type: ignore[attr-defined]
    if rdtype == "TXT":
        return b"".join(rd.strings).decode("utf-8", "replace")  # type: ignore[attr-defined]
    return rd.to_text(origin=None).lower()


def answers_match(rdtype: str, answers: list[dns.rdata.Rdata], expect: list[str]) -> bool:
    """Do the answers equal `expect` as a set (IPs parsed, names case-insensitive)?"""
    return {_normalize_rdata(rd) for rd in answers} == {_normalize_text(rdtype, e) for e in expect}


def _answer_rdatas(response: dns.message.Message, rdtype: int) -> list[dns.rdata.Rdata]:
    """Records of the asked type in the answer section (after any CNAME chain)."""
    return [rd for rrset in response.answer if rrset.rdtype == rdtype for rd in rrset]


# -- one attempt -------------------------------------------------------------

_ANCDATA_SIZE = socket.CMSG_SPACE(TIMESPEC.size)


def _wake(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)


class ConnectedUdp(dns.asyncbackend.DatagramSocket):
    """A connected UDP socket with IP_RECVERR, for dnspython's async `udp()`.

    Connected, so datagrams from any other address or port are dropped by the
    kernel; IP_RECVERR, so every ICMP error is reported (a plain UDP socket
    hears only "hard" ones like port-unreachable, not host-unreachable) and
    queued with the address of the router that sent it.
    """

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock.family, socket.SOCK_DGRAM)
        self.sock = sock
        # perf_counter stamps around the wire, so the RTT leaves out building
        # and parsing messages (our CPU, not the network).
        self.sent_at: float | None = None
        self.received_at: float | None = None
        # The same pair on the wall clock, the receive side from the kernel
        # (SO_TIMESTAMPNS): with thousands of queries in flight the event loop
        # notices an answer late, and only the kernel's stamp leaves that out.
        self.sent_wall: float | None = None
        self.received_kernel: float | None = None

    @classmethod
    def open(cls, server: str, port: int) -> ConnectedUdp:
        family, sockaddr = sockaddr_for(server, port)
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            enable_recverr(sock)
            with contextlib.suppress(OSError):  # not Linux: the clock stands in
                sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            sock.connect(sockaddr)  # no packet: only picks the route and source address
        except OSError:
            sock.close()
            raise
        return cls(sock)

    async def sendto(self, what: bytes, destination: Any, timeout: float | None) -> int:
        self.sent_at = time.perf_counter()
        self.sent_wall = time.time()
        await asyncio.get_running_loop().sock_sendall(self.sock, what)
        return len(what)

    async def recvfrom(self, size: int, timeout: float | None) -> tuple[bytes, Any]:
        try:
            async with asyncio.timeout(timeout):
                data, ancdata = await self._recvmsg(size)
        except TimeoutError:
            raise dns.exception.Timeout(timeout=timeout) from None
        self.received_at = time.perf_counter()
        self.received_kernel = kernel_rx_time_s(ancdata)
        return data, self.sock.getpeername()

    async def _recvmsg(self, size: int) -> tuple[bytes, list]:
        """One datagram and its ancillary data (asyncio has no sock_recvmsg)."""
        loop = asyncio.get_running_loop()
        fd = self.sock.fileno()
        while True:
            try:
                data, ancdata, _flags, _addr = self.sock.recvmsg(size, _ANCDATA_SIZE)
                return data, ancdata
            except (BlockingIOError, InterruptedError):
                pass
            ready: asyncio.Future[None] = loop.create_future()
            loop.add_reader(fd, _wake, ready)
            try:
                await ready
            finally:
                loop.remove_reader(fd)

    def rtt_ms(self) -> tuple[float, str] | None:
        """The UDP exchange's RTT and where it came from (`kernel` or `clock`)."""
        if self.sent_at is None or self.received_at is None:
            return None
        clock_ms = (self.received_at - self.sent_at) * 1000.0
        if self.received_kernel is not None and self.sent_wall is not None:
            kernel_ms = (self.received_kernel - self.sent_wall) * 1000.0
            if 0.0 <= kernel_ms <= clock_ms:  # a wall-clock step: keep the clock's
                return kernel_ms, KERNEL_RTT
        return clock_ms, CLOCK_RTT

    def icmp_errors(self) -> tuple[IcmpNotice, ...]:
        return read_icmp_errors(self.sock)

    async def close(self) -> None:
        self.sock.close()

    async def getpeername(self) -> Any:
        return self.sock.getpeername()

    async def getsockname(self) -> Any:
        return self.sock.getsockname()


async def late_icmp_errors(udp: ConnectedUdp, started: float, grace_s: float
                           ) -> tuple[dict, ...]:
    """After a timeout: wait up to `grace_s` for an ICMP error on the socket (a
    router that gave up on a dead next hop answers seconds late)."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()
    fd = udp.sock.fileno()
    loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))  # an error wakes it
    try:
        async with asyncio.timeout(grace_s):
            await ready
    except TimeoutError:
        return ()
    finally:
        loop.remove_reader(fd)
    after_ms = round((time.perf_counter() - started) * 1000.0, 1)
    return tuple({**n.to_json(), "after_ms": after_ms} for n in udp.icmp_errors())


async def query_once(query: dns.message.Message, server: str, port: int, timeout_s: float,
                     rdtype: int, expect: list[str] | None, ctx: ProbeContext,
                     late_grace_s: float = 0.0) -> Attempt:
    """One query over UDP, then TCP if the answer was truncated."""
    started = time.perf_counter()
    deadline = started + timeout_s
    tcp_fallback = False
    try:
        udp = ConnectedUdp.open(server, port)
    except OSError as exc:  # connect() failed before sending: a local fault
        return _failed(exc, local=True)
    try:
        async with udp:
            try:
                response = await dns.asyncquery.udp(
                    query, server, timeout=timeout_s, port=port, sock=udp,
                    ignore_unexpected=True, ignore_errors=True, raise_on_truncation=True)
            except dns.message.Truncated:
                tcp_fallback = True
                await ctx.rate.take()
                response = await dns.asyncquery.tcp(
                    query, server, timeout=max(0.001, deadline - time.perf_counter()),
                    port=port, backend=dns.asyncbackend.get_backend("asyncio"))
            except OSError as exc:  # the error queue says who sent the ICMP error
                return _failed(exc, local=False, notices=udp.icmp_errors())
            except dns.exception.Timeout:  # UDP only: the TCP leg's timeout is caught below
                late = await late_icmp_errors(udp, started, late_grace_s) \
                    if late_grace_s > 0 else ()
                return Attempt(outcome=ProbeError.TIMEOUT.value, late_errors=late)
    except dns.exception.Timeout:
        return Attempt(outcome=ProbeError.TIMEOUT.value, tcp_fallback=tcp_fallback)
    except OSError as exc:
        return _failed(exc, local=False, tcp_fallback=tcp_fallback)
    except (EOFError, dns.exception.DNSException) as exc:
        # The server spoke but not DNS we can use (closed the TCP leg, garbage).
        return Attempt(outcome=ProbeError.DNS_ERROR.value, tcp_fallback=tcp_fallback,
                       why=f"unusable answer: {type(exc).__name__} {exc}".strip())
    measured = None if tcp_fallback else udp.rtt_ms()
    if measured is None:
        rtt_ms, rtt_source = (time.perf_counter() - (udp.sent_at or started)) * 1000.0, CLOCK_RTT
    else:
        rtt_ms, rtt_source = measured
    rcode = dns.rcode.to_text(response.rcode())
    rdatas = _answer_rdatas(response, rdtype)
    answers = tuple(rd.to_text() for rd in rdatas)
    common = dict(rcode=rcode, answers=answers, tcp_fallback=tcp_fallback)
    if response.rcode() != dns.rcode.NOERROR:
        return Attempt(outcome=ProbeError.DNS_ERROR.value, **common)
    if expect is not None and not answers_match(dns.rdatatype.to_text(rdtype), rdatas, expect):
        return Attempt(outcome=ProbeError.DNS_MISMATCH.value, **common)
    return Attempt(outcome=OK, rtt_ms=rtt_ms, rtt_source=rtt_source, **common)


def _failed(exc: OSError, *, local: bool, tcp_fallback: bool = False,
            notices: tuple[IcmpNotice, ...] = ()) -> Attempt:
    err = exc.errno or errno.EIO
    if local and err in LOCAL_RESOURCE_ERRNOS:
        return Attempt(outcome=NOT_SENT, errno_name=errno.errorcode.get(err, str(err)))
    outcome = _ERRNO_OUTCOMES.get(err, ProbeError.UNREACHABLE)
    if local and (err == errno.ENETUNREACH or err in LOCAL_REFUSAL_ERRNOS):
        outcome = ProbeError.NO_ROUTE  # nothing left this host: not measured
    if notices and all(is_time_exceeded(n) for n in notices):
        outcome = ProbeError.TTL_EXCEEDED  # the kernel says EHOSTUNREACH; the ICMP says loop
    return Attempt(outcome=outcome.value, tcp_fallback=tcp_fallback,
                   errno_name=errno.errorcode.get(err, str(err)), notices=notices)


# -- the probe ---------------------------------------------------------------

def summarize(task: ProbeTask, server: str, port: int, attempts: list[Attempt],
              started_at: float | None, duration_s: float | None) -> ProbeResult:
    """Fold the attempts into one result; the dominant failure when none succeeded.

    Attempts our own host could not send are left out of `sent`; when none
    was sent the result is "not measured", never "down".
    """
    attempts, unsent, nothing_sent = split_sent(task, attempts, started_at, duration_s)
    if nothing_sent is not None:
        return nothing_sent
    attempts = [from_a_firewall(a, server) for a in attempts]
    notices = tuple(dict.fromkeys(n for a in attempts for n in a.notices))
    rtts = tuple(a.rtt_ms for a in attempts if a.outcome == OK and a.rtt_ms is not None)
    failures = Counter(a.outcome for a in attempts if a.outcome != OK)
    error: ProbeError | None = None
    if not rtts and failures:
        error = ProbeError(max(failures, key=lambda o: (
            failures[o], -_PRECEDENCE.index(ProbeError(o)))))
    shown = next((a for a in attempts if a.outcome == (error.value if error else OK)),
                 attempts[0])
    params = task.params
    qtype = str(params.get("type") or "A").upper()
    expect = params.get("expect")
    detail: dict[str, Any] = {
        "query": params.get("query"),
        "type": qtype,
        "rcode": shown.rcode,
        "answers": list(shown.answers),
        "expect": list(expect) if expect is not None else None,
        "tcp_fallback": any(a.tcp_fallback for a in attempts),
        "server": server,
        "port": port,
        "outcomes": [a.outcome for a in attempts],
    }
    errnos = [a.errno_name for a in attempts]
    if any(errnos):
        detail["errnos"] = errnos
    if unsent:
        detail["not_sent"] = len(unsent)
    sources = {a.rtt_source for a in attempts if a.outcome == OK and a.rtt_source}
    if sources:
        detail["rtt_source"] = sources.pop() if len(sources) == 1 else "mixed"
    late = [e for a in attempts for e in a.late_errors]
    if late and not rtts:
        detail["late_errors"] = late
    reached = (any(a.outcome in (OK, ProbeError.DNS_ERROR.value, ProbeError.DNS_MISMATCH.value,
                                 ProbeError.REFUSED.value) for a in attempts)
               or any(same_address(n.source, server) for n in notices))
    message = None
    if error is not None:
        message = _message(error, task, server, port, shown, failures[error], len(attempts))
        if late and not rtts:
            message = f"{message}; later {late_text(late)}"
    elif failures:
        message = f"{len(attempts) - len(rtts)}/{len(attempts)} queries failed (" + ", ".join(
            f"{n} {o}" for o, n in failures.most_common()) + ")"
    if unsent:
        total = len(attempts) + len(unsent)
        message = f"{message + '; ' if message else ''}{len(unsent)} of {total} attempts " + \
            not_sent_message([a.errno_name or "?" for a in unsent])
    return ProbeResult(id=task.id, kind=task.kind, target=task.target, address=task.address,
                       sent=len(attempts), rtts_ms=rtts, error=error, message=message,
                       reached=reached, notices=notices, detail=detail, started_at=started_at,
                       duration_s=duration_s)


def _message(error: ProbeError, task: ProbeTask, server: str, port: int, shown: Attempt,
             count: int, total: int) -> str:
    question = f"{task.params.get('query')} {str(task.params.get('type') or 'A').upper()}"
    share = f"{count}/{total} attempts"
    where = f"{server} port {port}"
    if error is ProbeError.DNS_ERROR:
        said = shown.rcode or shown.why or "an error"
        return f"{where} answered {said} for {question} ({share})"
    if error is ProbeError.DNS_MISMATCH:
        got = ", ".join(shown.answers) or "no records"
        want = ", ".join(task.params.get("expect") or [])
        return f"{where} answered {question} with [{got}], expected [{want}] ({share})"
    if error is ProbeError.TIMEOUT:
        return f"no DNS answer from {where} within {task.timeout_s:g} s ({share})"
    if error is ProbeError.REFUSED:
        return (f"{where} refused the query (ICMP port unreachable): the host is up, "
                f"no DNS server listens ({share})")
    if error is ProbeError.NO_ROUTE:
        return f"no route to {server} from this host ({share})"
    if error is ProbeError.TTL_EXCEEDED:
        senders = ", ".join(sorted({n.source for n in shown.notices}))
        return f"{where} not reached: the packets expired in transit (a routing loop?), " \
               f"time-exceeded from {senders} ({share})"
    if shown.notices:
        senders = ", ".join(f"{n.description} from {n.source}" for n in shown.notices)
        return f"{where} unreachable: {senders} ({share})"
    return f"{where} unreachable ({shown.errno_name or 'no detail'}; {share})"


class DnsProbe:
    kind = "dns"

    def preflight(self, tasks: list[ProbeTask]) -> str | None:
        return None  # ordinary UDP and TCP sockets

    async def run(self, task: ProbeTask, ctx: ProbeContext) -> ProbeResult:
        server = task.address
        if not server:
            return not_measured(task.id, task.kind, task.target, None, ProbeError.RESOLVE,
                                f"no address for the DNS server of {task.target!r}")
        port = task.port or 53
        try:
            sockaddr_for(server, port)
        except ValueError as exc:
            return not_measured(task.id, task.kind, task.target, task.address,
                                ProbeError.RESOLVE, f"DNS server: {exc}")
        try:
            server = str(ipaddress.ip_address(server))
            query = dns.message.make_query(task.params["query"],
                                           str(task.params.get("type") or "A").upper())
        except (KeyError, ValueError, dns.exception.DNSException) as exc:
            return not_measured(task.id, task.kind, task.target, task.address,
                                ProbeError.INTERNAL, f"bad dns probe settings: {exc!r}")
        rdtype = query.question[0].rdtype
        expect = task.params.get("expect")
        started_at = time.time()
        t0 = time.monotonic()

        async def attempt(i: int) -> Attempt:
            await asyncio.sleep(max(0.0, t0 + i * task.interval_s - time.monotonic()))
            await ctx.rate.take()
            # a fresh id each try; the first uses the query built above (one fewer at 1,000s)
            q = query if i == 0 else dns.message.make_query(query.question[0].name, rdtype)
            return await query_once(q, server, port, task.timeout_s, rdtype, expect, ctx,
                                    task.late_grace_s)

        attempts = await asyncio.gather(*(attempt(i) for i in range(max(1, task.attempts))))
        return summarize(task, server, port, list(attempts), started_at, time.monotonic() - t0)

    def silent_result(self, task: ProbeTask) -> ProbeResult | None:
        try:
            server = str(ipaddress.ip_address(task.address or ""))
        except ValueError:
            return None
        timed_out = Attempt(outcome=ProbeError.TIMEOUT.value)
        return summarize(task, server, task.port or 53, [timed_out] * max(1, task.attempts),
                         None, None)


PROBE = DnsProbe()
