"""Tiny reachability helpers run from inside a lab namespace (root).

Used by the lab to know it is ready and by the lab tests to check what a
scenario did. Each returns data: a lost packet is None, a closed port False.
"""

from __future__ import annotations

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
