"""Packet-level helpers shared by the probes and the lab: the Internet checksum
(RFC 1071) and one wording for ICMP errors, so every report names them alike."""

from __future__ import annotations

import socket
import struct

# SO_TIMESTAMPNS (== SCM_TIMESTAMPNS): the kernel stamps each datagram with its
# receive time (CLOCK_REALTIME, a struct timespec), so an RTT leaves out how
# long a busy event loop took to notice the datagram.
SO_TIMESTAMPNS = 35
TIMESPEC = struct.Struct("=qq")


def kernel_rx_time_s(ancdata: list[tuple[int, int, bytes]]) -> float | None:
    """The receive time (seconds, CLOCK_REALTIME) in a recvmsg's ancillary data."""
    for level, kind, value in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= TIMESPEC.size:
            sec, nsec = TIMESPEC.unpack_from(value)
            return sec + nsec / 1e9
    return None


def ones_complement_sum(data: bytes) -> int:
    """16-bit one's-complement sum of `data` (padded to an even length)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def inet_checksum(data: bytes) -> int:
    """The checksum field's value for a header whose checksum field is zero in `data`."""
    return ~ones_complement_sum(data) & 0xFFFF


_ICMP4_UNREACH = ("net-unreachable", "host-unreachable", "protocol-unreachable",
                  "port-unreachable", "fragmentation-needed", "source-route-failed",
                  "net-unknown", "host-unknown", "host-isolated", "net-prohibited",
                  "host-prohibited", "net-unreachable-for-tos", "host-unreachable-for-tos",
                  "admin-prohibited", "host-precedence-violation", "precedence-cutoff")
_ICMP6_UNREACH = ("no-route", "admin-prohibited", "beyond-scope", "address-unreachable",
                  "port-unreachable", "source-policy-failed", "reject-route")


def describe_icmp(family: int, icmp_type: int, code: int) -> str:
    """'ICMP host-unreachable', 'ICMPv6 admin-prohibited', ... for a notice."""
    if family == socket.AF_INET6:
        names = {1: _ICMP6_UNREACH, 3: ("hop-limit-exceeded", "reassembly-time-exceeded")}
        prefix, generic = "ICMPv6", {1: "destination-unreachable", 3: "time-exceeded"}
    else:
        names = {3: _ICMP4_UNREACH, 11: ("ttl-exceeded", "reassembly-time-exceeded")}
        prefix, generic = "ICMP", {3: "destination-unreachable", 11: "time-exceeded"}
    table = names.get(icmp_type, ())
    if code < len(table):
        return f"{prefix} {table[code]}"
    return f"{prefix} {generic.get(icmp_type, f'type {icmp_type}')} code {code}"


def late_text(late_errors: list[dict]) -> str:
    """'ICMP host-unreachable from 198.51.100.1 after 3012 ms' (the first, and a count)."""
    first = late_errors[0]
    more = f" (and {len(late_errors) - 1} more)" if len(late_errors) > 1 else ""
    return (f"{first.get('description') or 'an ICMP error'} from {first.get('source')} "
            f"after {first.get('after_ms', 0):.0f} ms{more}")
