"""The lab DNS server answers real clients: dig when installed, and dnspython's sync API."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
from conftest import LOOPBACK, stop_process

from netprobe.lab.dns_server import DnsServer, build_zone, parse_record


def ask(server: DnsServer, name: str, rdtype: str = "A", *, tcp: bool = False,
        timeout_s: float = 1.0) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    send = dns.query.tcp if tcp else dns.query.udp
    return send(query, server.host, timeout=timeout_s, port=server.port)


def texts(response: dns.message.Message, rdtype: str) -> list[str]:
    wanted = dns.rdatatype.from_text(rdtype)
    return sorted(rd.to_text() for rrset in response.answer if rrset.rdtype == wanted
                  for rd in rrset)


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_answers_the_zone_on_both_transports(dns_server: DnsServer, tcp: bool) -> None:
    response = ask(dns_server, "www.intra.example", tcp=tcp)
    assert response.rcode() == dns.rcode.NOERROR
    assert response.flags & dns.flags.AA
    assert texts(response, "A") == ["203.0.113.10"]
    assert texts(ask(dns_server, "pool.intra.example", tcp=tcp), "A") == [
        "203.0.113.11", "203.0.113.12"]
    assert (dns_server.queries_tcp > 0) is tcp


def test_record_types_and_cname_chase(dns_server: DnsServer) -> None:
    assert texts(ask(dns_server, "www.intra.example", "AAAA"), "AAAA") == ["2001:db8::10"]
    assert texts(ask(dns_server, "intra.example", "MX"), "MX") == ["10 mail.intra.example."]
    assert texts(ask(dns_server, "txt.intra.example", "TXT"), "TXT") == ['"v=spf1 -all"']
    chased = ask(dns_server, "alias.intra.example", "A")
    assert texts(chased, "CNAME") == ["www.intra.example."]
    assert texts(chased, "A") == ["203.0.113.10"]


def test_unknown_names_nxdomain_and_nodata(dns_server: DnsServer) -> None:
    assert ask(dns_server, "nope.intra.example").rcode() == dns.rcode.NXDOMAIN
    assert ask(dns_server, "NOPE.example").rcode() == dns.rcode.NXDOMAIN
    # The name exists, the type does not: NOERROR with no answer (NODATA).
    nodata = ask(dns_server, "txt.intra.example", "A")
    assert nodata.rcode() == dns.rcode.NOERROR and nodata.answer == []
    # Names are case-insensitive.
    assert texts(ask(dns_server, "WWW.Intra.EXAMPLE"), "A") == ["203.0.113.10"]


def test_servfail_switch(dns_server: DnsServer) -> None:
    dns_server.servfail = True
    assert ask(dns_server, "www.intra.example").rcode() == dns.rcode.SERVFAIL
    assert ask(dns_server, "www.intra.example", tcp=True).rcode() == dns.rcode.SERVFAIL
    dns_server.servfail = False
    assert ask(dns_server, "www.intra.example").rcode() == dns.rcode.NOERROR


def test_truncate_udp_switch_forces_tcp(dns_server: DnsServer) -> None:
    dns_server.truncate_udp = True
    udp = ask(dns_server, "www.intra.example")
    assert udp.flags & dns.flags.TC and udp.answer == []
    tcp = ask(dns_server, "www.intra.example", tcp=True)
    assert not tcp.flags & dns.flags.TC and texts(tcp, "A") == ["203.0.113.10"]
    response, used_tcp = dns.query.udp_with_fallback(
        dns.message.make_query("www.intra.example", "A"), LOOPBACK, timeout=1.0,
        port=dns_server.port)
    assert used_tcp and texts(response, "A") == ["203.0.113.10"]


def test_drop_switch_is_silent_on_both_transports(dns_server: DnsServer) -> None:
    dns_server.drop = True
    for tcp in (False, True):
        started = time.monotonic()
        with pytest.raises(dns.exception.Timeout):
            ask(dns_server, "www.intra.example", tcp=tcp, timeout_s=0.3)
        assert time.monotonic() - started < 1.0
    assert dns_server.queries_udp == 1 and dns_server.queries_tcp == 1


def test_oversized_udp_answer_is_truncated_unless_edns_allows_it(lab_loop) -> None:
    many = [f"198.51.100.{i}" for i in range(1, 61)]
    server = lab_loop.run(DnsServer({"big.intra.example": [("A", a) for a in many]}).start())
    try:
        plain = dns.query.udp(dns.message.make_query("big.intra.example", "A"), LOOPBACK,
                              timeout=1.0, port=server.port)
        assert plain.flags & dns.flags.TC and plain.answer == []
        edns = dns.query.udp(dns.message.make_query("big.intra.example", "A", use_edns=0,
                                                    payload=4096),
                             LOOPBACK, timeout=1.0, port=server.port)
        assert not edns.flags & dns.flags.TC and len(texts(edns, "A")) == 60
    finally:
        lab_loop.run(server.stop())


def test_zone_can_change_while_running(dns_server: DnsServer) -> None:
    dns_server.set_zone({"www.intra.example": [("A", "198.51.100.99")]})
    assert texts(ask(dns_server, "www.intra.example"), "A") == ["198.51.100.99"]
    assert ask(dns_server, "pool.intra.example").rcode() == dns.rcode.NXDOMAIN


def test_garbage_gets_formerr_and_responses_get_nothing(dns_server: DnsServer) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(1.0)
        s.sendto(b"\x12\x34" + b"\x01\x00" + b"\x00\x05" + b"\xff" * 8, (LOOPBACK, dns_server.port))
        reply = dns.message.from_wire(s.recv(4096))
        assert reply.id == 0x1234 and reply.rcode() == dns.rcode.FORMERR
        # A message with QR set is a response: answering it could loop two servers.
        response = dns.message.make_response(dns.message.make_query("www.intra.example", "A"))
        s.sendto(response.to_wire(), (LOOPBACK, dns_server.port))
        s.settimeout(0.2)
        with pytest.raises(TimeoutError):
            s.recv(4096)


def test_parse_record_and_bad_zones() -> None:
    assert parse_record("www.intra.example=A:203.0.113.10") == (
        "www.intra.example", "A", "203.0.113.10")
    assert parse_record("v6.intra.example=aaaa:2001:db8::1") == (
        "v6.intra.example", "AAAA", "2001:db8::1")
    assert parse_record("intra.example=MX:10 mail.intra.example") == (
        "intra.example", "MX", "10 mail.intra.example")
    for bad in ("www.intra.example", "www.intra.example=A", "=A:192.0.2.4"):
        with pytest.raises(ValueError, match="NAME=TYPE:VALUE"):
            parse_record(bad)
    with pytest.raises(ValueError, match="www.intra.example A '999.1.1.1'"):
        build_zone({"www.intra.example": [("A", "999.1.1.1")]})
    with pytest.raises(ValueError, match="bad record"):
        build_zone({"www.intra.example": [("NOTATYPE", "x")]})


# -- a real third-party client ------------------------------------------------

@pytest.mark.skipif(shutil.which("dig") is None,
                    reason="needs dig (apt package bind9-dnsutils)")
@pytest.mark.parametrize(("args", "status", "answer"), [
    (["www.intra.example", "A"], "NOERROR", "203.0.113.10"),
    (["alias.intra.example", "A"], "NOERROR", "www.intra.example."),
    (["www.intra.example", "AAAA", "+tcp"], "NOERROR", "2001:db8::10"),
    (["nope.intra.example", "A"], "NXDOMAIN", None),
])
def test_dig_gets_answers(dns_server: DnsServer, args, status, answer) -> None:
    out = subprocess.run(["dig", "+tries=1", "+time=1", "-p", str(dns_server.port),
                          f"@{LOOPBACK}", *args], capture_output=True, text=True,
                         timeout=10).stdout
    assert f"status: {status}" in out
    assert "flags: qr aa" in out
    if answer:
        assert answer in out


# -- the command line ---------------------------------------------------------

def _start(*args: str) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, "-m", "netprobe.lab.dns_server", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert "listening on" in line, proc.stderr.read()
    return proc, int(line.split(" port ")[1].split()[0])


def test_cli_serves_until_sigterm() -> None:
    proc, port = _start("--listen", LOOPBACK, "--port", "0", "--max-seconds", "30",
                        "--record", "www.intra.example=A:203.0.113.10",
                        "--record", "www.intra.example=A:203.0.113.20")
    try:
        response = dns.query.udp(dns.message.make_query("www.intra.example", "A"), LOOPBACK,
                                 timeout=2.0, port=port)
        assert texts(response, "A") == ["203.0.113.10", "203.0.113.20"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 0
    finally:
        stop_process(proc)


def test_cli_switches_and_max_seconds_bound() -> None:
    proc, port = _start("--listen", LOOPBACK, "--port", "0", "--servfail", "--max-seconds", "0.5",
                        "--record", "www.intra.example=A:203.0.113.10")
    try:
        response = dns.query.udp(dns.message.make_query("www.intra.example", "A"), LOOPBACK,
                                 timeout=2.0, port=port)
        assert response.rcode() == dns.rcode.SERVFAIL
        assert proc.wait(5) == 0  # ends by itself: a lab daemon never outlives its bound
    finally:
        stop_process(proc)


def test_cli_rejects_bad_records_and_busy_ports() -> None:
    bad = subprocess.run([sys.executable, "-m", "netprobe.lab.dns_server", "--port", "0",
                          "--record", "www.intra.example=A"], capture_output=True, text=True,
                         timeout=10)
    assert bad.returncode == 2 and "NAME=TYPE:VALUE" in bad.stderr
    assert "Traceback" not in bad.stderr
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind((LOOPBACK, 0))
        busy = subprocess.run([sys.executable, "-m", "netprobe.lab.dns_server", "--listen",
                               LOOPBACK, "--port", str(holder.getsockname()[1]),
                               "--max-seconds", "1"], capture_output=True, text=True, timeout=10)
    assert busy.returncode == 2 and "cannot listen" in busy.stderr
    assert "Traceback" not in busy.stderr


def test_ephemeral_port_is_the_same_for_udp_and_tcp(lab_loop) -> None:
    server = lab_loop.run(DnsServer({"a.example": [("A", "192.0.2.1")]}).start())
    try:
        assert server.port == server._udp.get_extra_info("sockname")[1]
        assert ask(server, "a.example", tcp=True).rcode() == dns.rcode.NOERROR
    finally:
        lab_loop.run(server.stop())
