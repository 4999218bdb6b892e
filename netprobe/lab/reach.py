"""Tiny reachability helpers run from inside a lab namespace (root).

Used by the lab to know it is ready and by the lab tests to check what a
scenario did. Each returns data: a lost packet is None, a closed port False.
"""

from __future__ import annotations

import contextlib
import socket
import time

from netprobe.lab.system import run_in_netns


def ping_rtts_ms(netns: str, address: str, count: int = 3, interval_s: float = 0.05,
                 timeout_s: float = 1.0) -> list[float | None]:
    """One entry per echo request: its RTT in ms, or None when nothing came back."""
    from icmplib import ICMPRequest, ICMPv4Socket
    from icmplib.exceptions import ICMPError, TimeoutExceeded

    def pings() -> list[float | None]:
        rtts: list[float | None] = []
        ident = (id(rtts) ^ int(time.monotonic() * 1000)) & 0xFFFF
        with ICMPv4Socket(privileged=True) as sock:
            for seq in range(count):
                request = ICMPRequest(address, id=ident, sequence=seq)
                try:
                    sock.send(request)
                    reply = sock.receive(request, timeout_s)
                    reply.raise_for_status()
                    rtts.append((reply.time - request.time) * 1000)
                except (TimeoutExceeded, ICMPError, OSError):
                    rtts.append(None)
                if seq + 1 < count:
                    time.sleep(interval_s)
        return rtts

    return run_in_netns(netns, pings, timeout_s=count * (timeout_s + interval_s) + 5)


def ping_ok(netns: str, address: str, timeout_s: float = 1.0) -> bool:
    return ping_rtts_ms(netns, address, count=1, timeout_s=timeout_s)[0] is not None


def tcp_connect(netns: str, address: str, port: int, timeout_s: float = 1.0) -> bool | None:
    """True: connected; False: refused (the host is up, the port closed); None: no answer."""

    def connect() -> bool | None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(timeout_s)
            try:
                s.connect((address, port))
                return True
            except ConnectionRefusedError:
                return False
            except OSError:
                return None

    return run_in_netns(netns, connect, timeout_s=timeout_s + 5)


def dns_answers(netns: str, server: str, name: str, timeout_s: float = 1.0) -> list[str] | None:
    """A records for `name` from `server`, or None when the server did not answer."""
    import dns.exception
    import dns.message
    import dns.query

    def query() -> list[str] | None:
        q = dns.message.make_query(name, "A")
        try:
            answer = dns.query.udp(q, server, timeout=timeout_s)
        except (dns.exception.DNSException, OSError):
            return None
        return sorted(rr.address for rrset in answer.answer for rr in rrset
                      if hasattr(rr, "address"))

    return run_in_netns(netns, query, timeout_s=timeout_s + 5)


def wait_until(predicate, timeout_s: float, interval_s: float = 0.1) -> bool:
    """Poll `predicate` until it is true or `timeout_s` passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)


def ping_burst(netns: str, address: str, count: int = 200, interval_s: float = 0.002,
               wait_s: float = 0.5) -> list[float | None]:
    """`count` echo requests `interval_s` apart, answers collected until `wait_s`
    after the last: one RTT (ms) or None per request. For loss statistics."""
    import os
    import select

    from netprobe.lab.controller import echo_request, parse_echo_reply

    def burst() -> list[float | None]:
        ident = (os.getpid() ^ int(time.monotonic() * 1e6)) & 0xFFFF
        sent: dict[int, float] = {}
        rtts: dict[int, float] = {}
        with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as s:
            s.setblocking(False)

            def collect(until: float) -> None:
                while True:
                    left = until - time.monotonic()
                    if left <= 0:
                        return
                    if not select.select([s], [], [], left)[0]:
                        return
                    while True:
                        try:
                            packet = s.recv(2048)
                        except BlockingIOError:
                            break
                        parsed = parse_echo_reply(packet)
                        if parsed and parsed[0] == address and parsed[1] == ident \
                                and parsed[2] in sent and parsed[2] not in rtts:
                            rtts[parsed[2]] = (time.monotonic() - sent[parsed[2]]) * 1000

            for seq in range(count):
                sent[seq] = time.monotonic()
                with contextlib.suppress(OSError):  # a failed send counts as lost
                    s.sendto(echo_request(ident, seq), (address, 0))
                collect(time.monotonic() + interval_s)
            collect(time.monotonic() + wait_s)
        return [rtts.get(seq) for seq in range(count)]

    return run_in_netns(netns, burst, timeout_s=count * interval_s * 3 + wait_s + 10)
