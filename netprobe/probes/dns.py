"""DNS probe: does the server answer, with what rcode, and is the answer the expected one.

Each attempt is one query over UDP (from a fresh connected socket, so the
kernel reports an ICMP port-unreachable and drops datagrams from any other
source), retried over TCP (dnspython's) when the answer comes back truncated.
Attempts start `interval_s` apart and overlap, like the TCP probe's connects;
each is bounded by `timeout_s`, TCP fallback included.

The UDP leg is our own: the query's wire form is built once per probe (each
attempt sets its id), and the answer's RTT runs from the send to the kernel's
receive stamp (SO_TIMESTAMPNS), so an event loop busy with other probes (or
with the diagnosis made while they wait) adds nothing to it; whether an answer
came in time is judged on that stamp too. dnspython parses the answers, once
per distinct answer (1,000 servers of one zone answer alike). After a TCP
fallback the RTT is the clock's over both legs (`detail["rtt_source"]`).

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
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import dns.asyncbackend
import dns.asyncquery
import dns.entropy
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
    SOCK_NONBLOCK,
    enable_recverr,
    from_a_firewall,
    is_time_exceeded,
    not_sent_message,
    read_icmp_errors,
    same_address,
    sockaddr_for,
    split_sent,
    wake,
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
_MAX_UDP_ANSWER = 65535
# Verdicts on answers kept per run: 1,000 servers of one zone send the same
# bytes but for the id, and parsing them once is enough. Only answers up to
# the usual UDP size are kept (at most ~5 MB).
_VERDICTS_KEPT = 4096
_VERDICT_KEPT_BYTES = 1232


@dataclass(frozen=True)
class Question:
    """One probe's query, built once: its wire form (each attempt puts its own id
    in the first two bytes) and what judging an answer depends on."""

    message: dns.message.Message
    wire: bytes
    rdtype: int
    expect: tuple[str, ...] | None

    @classmethod
    def make(cls, name: str | dns.name.Name, rdtype: str | int,
             expect: list[str] | None = None) -> Question:
        message = dns.message.make_query(name, rdtype)
        return cls(message, message.to_wire(), message.question[0].rdtype,
                   None if expect is None else tuple(expect))

    def wire_with_id(self, query_id: int) -> bytes:
        return query_id.to_bytes(2, "big") + self.wire[2:]


@dataclass(frozen=True)
class Verdict:
    """What an answer to a `Question` says, whatever its id."""

    outcome: str  # OK, dns_error or dns_mismatch
    rcode: str | None = None
    answers: tuple[str, ...] = ()
    truncated: bool = False  # TC set: ask again over TCP


def _question(task: ProbeTask, ctx: ProbeContext) -> Question:
    """The task's question, built once per run for all probes that ask it."""
    expect = task.params.get("expect")
    key = (task.params["query"], str(task.params.get("type") or "A").upper(),
           None if expect is None else tuple(expect))
    questions = ctx.resources.setdefault("dns.questions", {})
    question = questions.get(key)
    if question is None:
        question = questions[key] = Question.make(*key)
    return question


def judge(question: Question, response: dns.message.Message) -> Verdict:
    """The outcome of a (complete) response to `question`."""
    rcode = dns.rcode.to_text(response.rcode())
    rdatas = _answer_rdatas(response, question.rdtype)
    answers = tuple(rd.to_text() for rd in rdatas)
    if response.rcode() != dns.rcode.NOERROR:
        return Verdict(ProbeError.DNS_ERROR.value, rcode, answers)
    if question.expect is not None and not answers_match(
            dns.rdatatype.to_text(question.rdtype), rdatas, list(question.expect)):
        return Verdict(ProbeError.DNS_MISMATCH.value, rcode, answers)
    return Verdict(OK, rcode, answers)


def judge_wire(question: Question, data: bytes, cache: dict) -> Verdict | None:
    """The verdict on a datagram whose id was checked already; None when it is
    not a usable response to `question` (garbage, another question): as
    dnspython's `ignore_errors`, the attempt keeps listening. Cached by the bytes
    after the id."""
    key = (question.wire[2:], question.expect, data[2:])
    try:
        return cache[key]
    except KeyError:
        pass
    truncated = False
    try:
        response = dns.message.from_wire(data, raise_on_truncation=True)
    except dns.message.Truncated as exc:
        response, truncated = exc.message(), True
    except Exception:
        response = None
    verdict = None
    if response is not None:
        response.id = question.message.id  # the id is the attempt's, checked by the caller
        if question.message.is_response(response):
            verdict = Verdict(OK, truncated=True) if truncated else judge(question, response)
    if len(data) <= _VERDICT_KEPT_BYTES:
        if len(cache) >= _VERDICTS_KEPT:
            cache.clear()
        cache[key] = verdict
    return verdict


def open_udp(server: str, port: int, family_sockaddr: tuple[int, tuple] | None = None
             ) -> socket.socket:
    """A connected, non-blocking UDP socket with IP_RECVERR and receive stamps.

    Connected, so datagrams from any other address or port are dropped by the
    kernel; IP_RECVERR, so every ICMP error is reported (a plain UDP socket
    hears only "hard" ones like port-unreachable, not host-unreachable) and
    queued with the address of the router that sent it; SO_TIMESTAMPNS, so an
    answer's time is the kernel's, not when a busy event loop read it.
    """
    family, sockaddr = family_sockaddr or sockaddr_for(server, port)
    sock = socket.socket(family, socket.SOCK_DGRAM | SOCK_NONBLOCK)
    try:
        if not SOCK_NONBLOCK:
            sock.setblocking(False)
        enable_recverr(sock)
        with contextlib.suppress(OSError):  # not Linux: the clock stands in
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.connect(sockaddr)  # no packet: only picks the route and source address
    except OSError:
        sock.close()
        raise
    return sock


async def wait_readable(sock: socket.socket, timeout_s: float) -> None:
    """Until `sock` has a datagram or an error queued, or `timeout_s` passed."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()
    fd = sock.fileno()
    loop.add_reader(fd, wake, ready)  # an ICMP error (EPOLLERR) wakes it too
    timer = loop.call_later(timeout_s, wake, ready)
    try:
        await ready
    finally:
        timer.cancel()
        loop.remove_reader(fd)


async def late_icmp_errors(sock: socket.socket, started: float, grace_s: float
                           ) -> tuple[dict, ...]:
    """After a timeout: wait up to `grace_s` for an ICMP error on the socket (a
    router that gave up on a dead next hop answers seconds late)."""
    await wait_readable(sock, grace_s)
    notices = read_icmp_errors(sock)
    if not notices:
        return ()
    after_ms = round((time.perf_counter() - started) * 1000.0, 1)
    return tuple({**n.to_json(), "after_ms": after_ms} for n in notices)


async def query_once(question: Question, server: str, port: int, timeout_s: float,
                     ctx: ProbeContext, late_grace_s: float = 0.0, *,
                     family_sockaddr: tuple[int, tuple] | None = None) -> Attempt:
    """One query over UDP, then over TCP (dnspython's) if the answer was truncated.

    The UDP answer's RTT runs from the send to the kernel's receive stamp, and
    whether it came in time is judged on that stamp too: an answer the loop
    reads after the timeout, but which arrived within it, counts."""
    started = time.perf_counter()
    deadline = started + timeout_s
    try:
        sock = open_udp(server, port, family_sockaddr)
    except OSError as exc:  # connect() failed before sending: a local fault
        return _failed(exc, local=True)
    query_id = dns.entropy.random_16()
    id_bytes = query_id.to_bytes(2, "big")
    cache = ctx.resources.setdefault("dns.verdicts", {})
    try:
        sent_wall = time.time()
        sent_at = time.perf_counter()
        answered_late = False
        try:
            try:
                sock.send(question.wire_with_id(query_id))
            except BlockingIOError:  # a full send buffer: wait for room
                await asyncio.get_running_loop().sock_sendall(sock, question.wire_with_id(query_id))
            await wait_readable(sock, deadline - time.perf_counter())  # nothing to read yet
            while True:
                try:
                    data, ancdata, _flags, _addr = sock.recvmsg(_MAX_UDP_ANSWER, _ANCDATA_SIZE)
                except (BlockingIOError, InterruptedError):
                    left_s = deadline - time.perf_counter()
                    if left_s <= 0:
                        break  # and nothing queued: a timeout
                    await wait_readable(sock, left_s)
                    continue
                received_at = time.perf_counter()
                verdict = judge_wire(question, data, cache) if data[:2] == id_bytes else None
                if verdict is None:
                    continue  # not an answer to this query
                clock_ms = (received_at - sent_at) * 1000.0
                kernel_at = kernel_rx_time_s(ancdata)
                kernel_ms = None if kernel_at is None else (kernel_at - sent_wall) * 1000.0
                if kernel_ms is not None and kernel_ms > timeout_s * 1000.0:
                    answered_late = True  # after the timeout; the loop was only slow to read it
                    break
                if verdict.truncated:
                    return await _over_tcp(question, server, port, deadline, sent_at, ctx)
                if kernel_ms is not None and 0.0 <= kernel_ms <= clock_ms:
                    rtt_ms, rtt_source = kernel_ms, KERNEL_RTT
                else:  # no stamp, or a wall-clock step: the clock's
                    rtt_ms, rtt_source = clock_ms, CLOCK_RTT
                return Attempt(outcome=verdict.outcome, rcode=verdict.rcode,
                               answers=verdict.answers,
                               rtt_ms=rtt_ms if verdict.outcome == OK else None,
                               rtt_source=rtt_source if verdict.outcome == OK else None)
        except OSError as exc:  # the error queue says who sent the ICMP error
            return _failed(exc, local=False, notices=read_icmp_errors(sock))
        # (a server that answered late sends no ICMP error to wait for)
        late = await late_icmp_errors(sock, started, late_grace_s) \
            if late_grace_s > 0 and not answered_late else ()
        return Attempt(outcome=ProbeError.TIMEOUT.value, late_errors=late)
    finally:
        sock.close()


async def _over_tcp(question: Question, server: str, port: int, deadline: float,
                    sent_at: float, ctx: ProbeContext) -> Attempt:
    """The truncated query again over TCP, within what is left of the attempt's
    timeout; the RTT is the clock's over both legs."""
    await ctx.rate.take()
    try:
        response = await dns.asyncquery.tcp(
            question.message, server, timeout=max(0.001, deadline - time.perf_counter()),
            port=port, backend=dns.asyncbackend.get_backend("asyncio"))
    except dns.exception.Timeout:
        return Attempt(outcome=ProbeError.TIMEOUT.value, tcp_fallback=True)
    except OSError as exc:
        return _failed(exc, local=False, tcp_fallback=True)
    except (EOFError, dns.exception.DNSException) as exc:
        # The server spoke but not DNS we can use (closed the TCP leg, garbage).
        return Attempt(outcome=ProbeError.DNS_ERROR.value, tcp_fallback=True,
                       why=f"unusable answer: {type(exc).__name__} {exc}".strip())
    verdict = judge(question, response)
    ok = verdict.outcome == OK
    return Attempt(outcome=verdict.outcome, rcode=verdict.rcode, answers=verdict.answers,
                   tcp_fallback=True,
                   rtt_ms=(time.perf_counter() - sent_at) * 1000.0 if ok else None,
                   rtt_source=CLOCK_RTT if ok else None)


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
    # SO_TIMESTAMPNS: see Probe.rtt_from_kernel (after a TCP fallback, the clock's)
    rtt_from_kernel = sys.platform.startswith("linux")

    def preflight(self, tasks: list[ProbeTask]) -> str | None:
        return None  # ordinary UDP and TCP sockets

    async def run(self, task: ProbeTask, ctx: ProbeContext) -> ProbeResult:
        server = task.address
        if not server:
            return not_measured(task.id, task.kind, task.target, None, ProbeError.RESOLVE,
                                f"no address for the DNS server of {task.target!r}")
        port = task.port or 53
        try:
            family_sockaddr = sockaddr_for(server, port)
        except ValueError as exc:
            return not_measured(task.id, task.kind, task.target, task.address,
                                ProbeError.RESOLVE, f"DNS server: {exc}")
        try:
            server = str(ipaddress.ip_address(server))
            question = _question(task, ctx)
        except (KeyError, ValueError, dns.exception.DNSException) as exc:
            return not_measured(task.id, task.kind, task.target, task.address,
                                ProbeError.INTERNAL, f"bad dns probe settings: {exc!r}")
        started_at = time.time()
        t0 = time.monotonic()

        async def attempt(i: int) -> Attempt:
            if i:
                await asyncio.sleep(max(0.0, t0 + i * task.interval_s - time.monotonic()))
            if ctx.rate.rate_pps > 0:
                await ctx.rate.take()
            return await query_once(question, server, port, task.timeout_s, ctx,
                                    task.late_grace_s, family_sockaddr=family_sockaddr)

        if task.attempts <= 1:  # no task of its own to overlap with (1,000s of them: --attempts 1)
            attempts = [await attempt(0)]
        else:
            attempts = list(await asyncio.gather(*(attempt(i) for i in range(task.attempts))))
        return summarize(task, server, port, attempts, started_at, time.monotonic() - t0)

    def silent_result(self, task: ProbeTask) -> ProbeResult | None:
        try:
            server = str(ipaddress.ip_address(task.address or ""))
        except ValueError:
            return None
        timed_out = Attempt(outcome=ProbeError.TIMEOUT.value)
        return summarize(task, server, task.port or 53, [timed_out] * max(1, task.attempts),
                         None, None)


PROBE = DnsProbe()
