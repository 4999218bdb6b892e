"""A wire that delays: moves Ethernet frames between two interfaces, late.

This kernel has no netem, so the lab's `primary-slow` scenario unplugs the
primary line's middle box (`wire-a`) from its kernel bridge and runs this
instead: AF_PACKET sockets on both ports, every frame forwarded to the other
port `delay` after it arrived (both directions, so a ping's round trip grows
by twice the delay). Transparent at layer 2: a trace does not see it.

Bounded: the queue holds at most `max_queue` frames per direction (more are
dropped, as a full router buffer would) and the process ends by itself after
`max_seconds`.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import select
import signal
import socket
import struct
import sys
import time
from typing import Any

from netprobe.packets import ones_complement_sum

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4  # a frame we (or the kernel) sent: not to be forwarded back
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1


def fix_l4_checksum(frame: bytes) -> bytes:
    """The frame with its IPv4 TCP/UDP checksum computed.

    A packet made on one of these hosts leaves with the checksum left to the
    "hardware" (veth offload): the kernel's own forwarding copes, but a copy
    taken with AF_PACKET and sent again would arrive corrupt. Recomputing a
    correct checksum gives the same value, so every such frame gets one.
    """
    if len(frame) < 34 or frame[12:14] != b"\x08\x00":
        return frame
    ip_start = 14
    ihl = (frame[ip_start] & 0x0F) * 4
    proto = frame[ip_start + 9]
    flags_frag = struct.unpack("!H", frame[ip_start + 6:ip_start + 8])[0]
    if proto not in (6, 17) or flags_frag & 0x3FFF:  # not TCP/UDP, or a fragment
        return frame
    total_len = struct.unpack("!H", frame[ip_start + 2:ip_start + 4])[0]
    l4_start, l4_end = ip_start + ihl, ip_start + total_len
    if l4_end > len(frame) or l4_end - l4_start < (20 if proto == 6 else 8):
        return frame
    csum_at = l4_start + (16 if proto == 6 else 6)
    segment = bytearray(frame[l4_start:l4_end])
    segment[csum_at - l4_start:csum_at - l4_start + 2] = b"\0\0"
    pseudo = frame[ip_start + 12:ip_start + 20] + struct.pack("!BBH", 0, proto, len(segment))
    csum = ~ones_complement_sum(pseudo + bytes(segment)) & 0xFFFF
    if proto == 17 and csum == 0:
        csum = 0xFFFF
    return frame[:csum_at] + struct.pack("!H", csum) + frame[csum_at + 2:]


def open_port(ifname: str) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((ifname, ETH_P_ALL))
    ifindex = socket.if_nametoindex(ifname)
    # struct packet_mreq {int ifindex; unsigned short type, alen; unsigned char addr[8];}
    mreq = ifindex.to_bytes(4, sys.byteorder) + PACKET_MR_PROMISC.to_bytes(2, sys.byteorder) \
        + bytes(10)
    sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.setblocking(False)
    return sock


def forward(a: str, b: str, delay_s: float, max_seconds: float, max_queue: int = 4096) -> int:
    ports = {a: open_port(a), b: open_port(b)}
    other = {a: b, b: a}
    queue: list[tuple[float, int, str, bytes]] = []  # (due, order, out port, frame)
    queued = {a: 0, b: 0}
    order = 0
    stopping = False

    def stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    end = time.monotonic() + max_seconds
    by_fd = {s.fileno(): name for name, s in ports.items()}
    while not stopping and time.monotonic() < end:
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, _, out, frame = heapq.heappop(queue)
            queued[out] -= 1
            # too big for the link, or the link went away: a lost frame
            with contextlib.suppress(OSError):
                ports[out].send(frame)
        wait_s = min(queue[0][0] - now if queue else 0.5, end - now)
        readable, _, _ = select.select(list(ports.values()), [], [], max(0.0, wait_s))
        for sock in readable:
            name = by_fd[sock.fileno()]
            while True:
                try:
                    frame, addr = sock.recvfrom(65535)
                except (BlockingIOError, InterruptedError):
                    break
                if addr[2] == PACKET_OUTGOING:
                    continue
                out = other[name]
                if queued[out] >= max_queue:
                    continue
                order += 1
                queued[out] += 1
                heapq.heappush(queue, (time.monotonic() + delay_s, order, out,
                                           fix_l4_checksum(frame)))
    for s in ports.values():
        s.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m netprobe.lab.delay",
                                description="Forward frames between two interfaces, delayed.")
    p.add_argument("--a", required=True, help="one interface")
    p.add_argument("--b", required=True, help="the other interface")
    p.add_argument("--delay-ms", type=float, default=100.0, help="each way")
    p.add_argument("--max-seconds", type=float, default=7200.0)
    args = p.parse_args(argv)
    if not 0 <= args.delay_ms <= 10_000:
        p.error("--delay-ms must be 0 to 10000")
    return forward(args.a, args.b, args.delay_ms / 1000, args.max_seconds)


if __name__ == "__main__":
    sys.exit(main())
