"""The DNS probe against a real DNS server on loopback and in a routed namespace lab."""

from __future__ import annotations

import asyncio
import socket
import sys
import time

import dns.message
import dns.rdatatype
import dns.rrset
import pytest
from conftest import LOOPBACK, RoutedLab, free_port, ipv6_loopback_works

from netprobe.evidence import Outcome, ProbeError, ProbeResult
from netprobe.lab.dns_server import DnsServer
from netprobe.probes import get_probe
from netprobe.probes.dns import PROBE, Question, query_once
from netprobe.probes.interface import ProbeContext, ProbeTask, RateLimiter


def task(server: str, port: int | None, query: str = "www.intra.example", rdtype: str = "A",
         expect: list[str] | None = None, **kw) -> ProbeTask:
    kw.setdefault("attempts", 2)
    kw.setdefault("interval_s", 0.01)
    kw.setdefault("timeout_s", 1.0)
    return ProbeTask(id="intra-dns/dns", kind="dns", target="intra-dns/dns", address=server,
                     port=port, params={"query": query, "type": rdtype, "expect": expect}, **kw)


def run(t: ProbeTask, ctx: ProbeContext | None = None) -> ProbeResult:
    return asyncio.run(PROBE.run(t, ctx or ProbeContext()))


def test_registry_finds_the_dns_probe() -> None:
    assert get_probe("dns").kind == "dns"
    assert get_probe("dns").preflight([]) is None


def test_expected_answer_is_success_with_full_detail(dns_server: DnsServer) -> None:
    result = run(task(LOOPBACK, dns_server.port, expect=["203.0.113.10"]))
    assert result.outcome is Outcome.OK and result.reached is True
    assert (result.sent, result.received) == (2, 2)
    assert all(0 < rtt < 1000 for rtt in result.rtts_ms)
    assert result.detail == {
        "query": "www.intra.example", "type": "A", "rcode": "NOERROR",
        "answers": ["203.0.113.10"], "expect": ["203.0.113.10"], "tcp_fallback": False,
        "server": LOOPBACK, "port": dns_server.port, "outcomes": ["ok", "ok"],
        "rtt_source": "kernel" if sys.platform.startswith("linux") else "clock"}
    assert dns_server.queries_udp == 2 and dns_server.queries_tcp == 0


@pytest.mark.skipif(not sys.platform.startswith("linux"),
                    reason="kernel receive stamps (SO_TIMESTAMPNS) are read on Linux only")
def test_a_busy_event_loop_does_not_inflate_the_rtt(dns_server: DnsServer) -> None:
    """Five queries sent, then our event loop held for 0.3 s before it can read
    any answer (a loop busy with thousands of probes, as with --rate 0). The
    server answers from its own thread at once; the kernel's receive stamp says
    so, the clock read after the stall would not."""
    async def main() -> tuple[list, float]:
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        question = Question.make("www.intra.example", "A", ["203.0.113.10"])
        attempts = [asyncio.ensure_future(query_once(
            question, LOOPBACK, dns_server.port, 2.0, ProbeContext())) for _ in range(5)]
        loop.call_soon(time.sleep, 0.3)  # after each query went out, before any answer is read
        done = await asyncio.gather(*attempts)
        return list(done), time.perf_counter() - started

    attempts, elapsed_s = asyncio.run(main())
    assert elapsed_s >= 0.3  # the stall happened inside every exchange
    assert [a.outcome for a in attempts] == ["ok"] * 5, attempts
    assert all(a.rtt_source == "kernel" and a.rtt_ms < 50 for a in attempts), attempts


def test_no_expect_accepts_any_noerror_answer(dns_server: DnsServer) -> None:
    result = run(task(LOOPBACK, dns_server.port, query="pool.intra.example"))
    assert result.error is None
    assert sorted(result.detail["answers"]) == ["203.0.113.11", "203.0.113.12"]


@pytest.mark.parametrize(("query", "rdtype", "expect"), [
    ("pool.intra.example", "A", ["203.0.113.12", "203.0.113.11"]),  # a set: order is free
    ("www.intra.example", "AAAA", ["2001:DB8:0:0::10"]),  # compared as parsed IPs
    ("alias.intra.example", "CNAME", ["WWW.Intra.Example"]),  # case and trailing dot free
    ("alias.intra.example", "A", ["203.0.113.10"]),  # the records at the end of a CNAME
    ("intra.example", "MX", ["10 Mail.intra.example."]),
    ("txt.intra.example", "TXT", ["v=spf1 -all"]),
])
def test_expect_is_compared_by_meaning_not_text(dns_server, query, rdtype, expect) -> None:
    result = run(task(LOOPBACK, dns_server.port, query=query, rdtype=rdtype, expect=expect))
    assert result.error is None, result.message


@pytest.mark.parametrize("expect", [
    ["198.51.100.7"],  # a different record: hijacked or stale
    ["203.0.113.11"],  # one of two records missing
    ["203.0.113.11", "203.0.113.12", "203.0.113.13"],  # one more expected than served
])
def test_answers_other_than_expected_are_a_mismatch(dns_server, expect) -> None:
    result = run(task(LOOPBACK, dns_server.port, query="pool.intra.example", expect=expect))
    assert result.error is ProbeError.DNS_MISMATCH and result.reached is True
    assert result.received == 0 and result.outcome is Outcome.FAILED
    assert result.detail["rcode"] == "NOERROR"
    assert "expected" in result.message and "203.0.113.11" in result.message


def test_one_answer_is_judged_against_each_probes_own_expectation(dns_server) -> None:
    """Probes of one run share their parsed answers: the same bytes must still
    be a match for one expectation and a mismatch for another."""
    async def main() -> list[ProbeResult]:
        ctx = ProbeContext()
        expects = (["203.0.113.10"], ["198.51.100.1"], None, ["203.0.113.10"])
        return list(await asyncio.gather(*(
            PROBE.run(task(LOOPBACK, dns_server.port, expect=e), ctx) for e in expects)))

    ok, mismatch, unchecked, ok_again = asyncio.run(main())
    assert ok.error is None and ok_again.error is None and unchecked.error is None
    assert mismatch.error is ProbeError.DNS_MISMATCH
    assert ok.detail["answers"] == mismatch.detail["answers"] == ["203.0.113.10"]


def test_nxdomain_is_a_dns_error_from_a_live_server(dns_server: DnsServer) -> None:
    result = run(task(LOOPBACK, dns_server.port, query="nope.intra.example"))
    assert result.error is ProbeError.DNS_ERROR and result.reached is True
    assert result.detail["rcode"] == "NXDOMAIN" and result.detail["answers"] == []
    assert "NXDOMAIN" in result.message


def test_servfail_is_a_dns_error(dns_server: DnsServer) -> None:
    dns_server.servfail = True
    result = run(task(LOOPBACK, dns_server.port, expect=["203.0.113.10"]))
    assert result.error is ProbeError.DNS_ERROR and result.reached is True
    assert result.detail["rcode"] == "SERVFAIL"
    assert result.detail["outcomes"] == ["dns_error", "dns_error"]


def test_truncated_udp_answer_is_retried_over_tcp(dns_server: DnsServer) -> None:
    dns_server.truncate_udp = True
    result = run(task(LOOPBACK, dns_server.port, expect=["203.0.113.10"]))
    assert result.error is None and result.received == 2
    assert result.detail["tcp_fallback"] is True
    assert dns_server.queries_udp == 2 and dns_server.queries_tcp == 2


def test_an_answer_too_big_for_udp_falls_back_to_tcp(lab_loop) -> None:
    # 60 A records do not fit in 512 bytes: the server truncates by itself.
    many = [f"198.51.100.{i}" for i in range(1, 61)]
    server = lab_loop.run(DnsServer({"big.intra.example": [("A", a) for a in many]}).start())
    try:
        result = run(task(LOOPBACK, server.port, query="big.intra.example", expect=many,
                          attempts=1))
    finally:
        lab_loop.run(server.stop())
    assert result.error is None, result.message
    assert result.detail["tcp_fallback"] is True and len(result.detail["answers"]) == 60


def test_silent_server_times_out_within_bounds(dns_server: DnsServer) -> None:
    dns_server.drop = True
    started = time.monotonic()
    result = run(task(LOOPBACK, dns_server.port, attempts=4, interval_s=0.05, timeout_s=0.3))
    elapsed = time.monotonic() - started
    assert result.error is ProbeError.TIMEOUT and result.reached is False
    assert (result.sent, result.received) == (4, 0)
    assert result.detail["rcode"] is None
    assert 0.3 <= elapsed < 0.9  # overlapping tries (~0.45 s), not 4 x 0.3 s


def test_no_server_on_the_port_is_refused() -> None:
    port = free_port(LOOPBACK, socket.SOCK_DGRAM)
    started = time.monotonic()
    result = run(task(LOOPBACK, port, timeout_s=2.0))
    assert result.error is ProbeError.REFUSED and result.reached is True
    assert time.monotonic() - started < 1.0  # the ICMP error ends it, not the timeout
    assert "no DNS server" in result.message


def test_each_query_takes_a_rate_token(dns_server: DnsServer) -> None:
    started = time.monotonic()
    result = run(task(LOOPBACK, dns_server.port, attempts=4, interval_s=0.0),
                 ProbeContext(RateLimiter(5)))
    assert result.received == 4
    assert time.monotonic() - started >= 0.55


@pytest.mark.skipif(not ipv6_loopback_works(), reason="needs IPv6 on loopback (::1)")
def test_ipv6_server(lab_loop) -> None:
    server = lab_loop.run(DnsServer({"v6.intra.example": [("AAAA", "2001:db8::53")]},
                                    "::1").start())
    try:
        result = run(task("::1", server.port, query="v6.intra.example", rdtype="AAAA",
                          expect=["2001:db8::53"]))
    finally:
        lab_loop.run(server.stop())
    assert result.error is None and result.detail["server"] == "::1"


class _Forger(asyncio.DatagramProtocol):
    """Answers each query with a forged record from a socket other than the one asked."""

    def __init__(self, reply_from: socket.socket, real_answer_delay_s: float | None) -> None:
        self.reply_from = reply_from
        self.delay_s = real_answer_delay_s
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        query = dns.message.from_wire(data)
        forged = dns.message.make_response(query)
        forged.answer.append(dns.rrset.from_text(query.question[0].name, 60, "IN", "A",
                                                 "198.51.100.66"))
        self.reply_from.sendto(forged.to_wire(), addr)
        if self.delay_s is not None:
            real = dns.message.make_response(query)
            real.answer.append(dns.rrset.from_text(query.question[0].name, 60, "IN", "A",
                                                   "203.0.113.10"))
            asyncio.get_running_loop().call_later(
                self.delay_s, lambda: self.transport.sendto(real.to_wire(), addr))


@pytest.mark.parametrize("forge_from", ["127.0.0.2", "same-address-other-port"])
@pytest.mark.parametrize("real_answer", [True, False])
def test_answers_from_an_unexpected_source_are_ignored(forge_from, real_answer) -> None:
    async def main() -> ProbeResult:
        loop = asyncio.get_running_loop()
        host = LOOPBACK if forge_from == "same-address-other-port" else forge_from
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as forger_sock:
            forger_sock.bind((host, 0))
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Forger(forger_sock, 0.1 if real_answer else None),
                local_addr=(LOOPBACK, 0))
            port = transport.get_extra_info("sockname")[1]
            try:
                return await PROBE.run(task(LOOPBACK, port, attempts=1, timeout_s=0.6),
                                       ProbeContext())
            finally:
                transport.close()

    result = asyncio.run(main())
    if real_answer:
        assert result.error is None
        assert result.detail["answers"] == ["203.0.113.10"]
    else:
        assert result.error is ProbeError.TIMEOUT  # the forged answer never counted


def test_bad_settings_are_not_measured() -> None:
    result = run(ProbeTask(id="x/dns", kind="dns", target="x/dns", address=LOOPBACK, port=53,
                           params={}))
    assert result.outcome is Outcome.NOT_MEASURED and result.error is ProbeError.INTERNAL
    unresolved = run(task(None, 53))
    assert unresolved.error is ProbeError.RESOLVE and unresolved.sent == 0


# -- through a router, in namespaces -----------------------------------------------

@pytest.mark.root
def test_routed_dns_outcomes(routed_lab: RoutedLab) -> None:
    L = routed_lab
    ok4, ok6, refused, dropped, no_route = L.run([
        task(L.SERVER4, 53, expect=["203.0.113.10"]),
        task(L.SERVER6, 53, expect=["203.0.113.10"]),
        task(L.SERVER4, 5353),  # the host is up, nothing listens there
        task(L.DROPPED4, 53, attempts=3, interval_s=0.05, timeout_s=0.4),
        task(L.NO_ROUTE4, 53),
    ])
    assert ok4.error is None and ok4.received == 2
    assert ok6.error is None and ok6.detail["server"] == L.SERVER6
    assert refused.error is ProbeError.REFUSED and refused.reached is True
    assert refused.notices[0].source == L.SERVER4  # the host itself said "port unreachable"
    assert dropped.error is ProbeError.TIMEOUT and dropped.reached is False
    assert dropped.duration_s < 0.9  # overlapping tries (~0.5 s), not 3 x 0.4 s
    assert no_route.error is ProbeError.NO_ROUTE and no_route.notices == ()


@pytest.mark.root
def test_routed_dns_late_unreachable_is_kept_and_stays_a_timeout(routed_lab: RoutedLab) -> None:
    """The router's next hop is gone: its host-unreachable comes ~3 s late."""
    L = routed_lab
    quick, patient = L.run([
        task(L.DEAD_NEXT_HOP4, 53, timeout_s=0.5),
        task(L.DEAD_NEXT_HOP4, 53, timeout_s=0.5, late_grace_s=4.5),
    ])
    assert quick.error is ProbeError.TIMEOUT and "late_errors" not in quick.detail
    assert patient.error is ProbeError.TIMEOUT and patient.rtts_ms == ()
    late = patient.detail["late_errors"]
    assert {(e["source"], e["type"], e["code"]) for e in late} == {(L.ROUTER4, 3, 1)}
    # after the 0.5 s timeout (ARP gives up at ~3 s from the first packet to that
    # next hop, which a concurrent probe may have sent earlier)
    assert all(500 < e["after_ms"] < 5000 for e in late), late
    assert f"later ICMP host-unreachable from {L.ROUTER4}" in patient.message
    assert patient.duration_s < 0.5 + 4.0  # each attempt ended at its error


@pytest.mark.root
def test_routed_dns_unreachable_names_the_router(routed_lab: RoutedLab) -> None:
    L = routed_lab
    host4, prohibited6, forged, looping = L.run([
        task(L.HOST_UNREACH4, 53),  # a soft ICMP error: only IP_RECVERR hears it on UDP
        task(L.PROHIBITED6, 53),
        task(L.FAKE_CLOSED4, 53),  # the router forges port-unreachable for the server
        task(L.LOOPING4, 53),
    ])
    assert looping.error is ProbeError.TTL_EXCEEDED and looping.notices[0].type == 11
    for result in (host4, prohibited6, forged):
        assert result.error is ProbeError.UNREACHABLE, result.message
        assert result.reached is False
        assert result.duration_s < 0.5  # the ICMP error ends each try, not the timeout
    assert [(n.source, n.type, n.code) for n in host4.notices] == [(L.ROUTER4, 3, 1)]
    assert [(n.source, n.type, n.code) for n in prohibited6.notices] == [(L.ROUTER6, 1, 1)]
    assert forged.notices[0].source == L.ROUTER4
    assert forged.detail["errnos"] == ["ECONNREFUSED", "ECONNREFUSED"]  # what the kernel said
    assert L.ROUTER4 in host4.message


def test_no_free_descriptor_is_not_measured_not_down(dns_server: DnsServer) -> None:
    from test_probe_tcp import run_without_file_descriptors

    result = run_without_file_descriptors("dns", dns_server.port)
    assert result.outcome is Outcome.NOT_MEASURED and result.error is ProbeError.INTERNAL
    assert result.sent == 0 and "EMFILE" in result.message
    assert dns_server.queries_udp == 0
