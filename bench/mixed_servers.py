"""The services of `check_sweep.py --mixed`, run inside the lab's target namespace.

    mixed_servers.py ADDRESSES_FILE TCP_PORT QUERY_NAME ANSWER MAX_SECONDS

A TCP listener on 0.0.0.0:TCP_PORT (a TCP reply leaves from the address the
SYN was sent to), and netprobe's lab DNS server on every address in the file:
an unconnected UDP socket on 0.0.0.0 would answer from the veth's address,
not the one asked, and a client rightly ignores such a reply. Prints `ready`
once everything listens; ends on SIGTERM or after MAX_SECONDS.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import signal
import sys

from netprobe.lab.dns_server import DnsServer
from netprobe.lab.listeners import TcpListener


async def serve(addresses: list[str], tcp_port: int, name: str, answer: str,
                max_seconds: float) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    zone = {name: [("A", answer)]}
    listener = await TcpListener("0.0.0.0", tcp_port, backlog=4096).start()
    servers = [await DnsServer(zone, address, 53).start() for address in addresses]
    print("ready", flush=True)
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max_seconds)
    finally:
        for server in servers:
            await server.stop()
        await listener.stop()
        print(f"accepted {listener.accepted} tcp, "
              f"answered {sum(s.queries_udp + s.queries_tcp for s in servers)} dns", flush=True)


def main(argv: list[str]) -> int:
    path, tcp_port, name, answer, max_seconds = argv
    with open(path) as f:
        addresses = [line.strip() for line in f if line.strip()]
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # two sockets per address
    asyncio.run(serve(addresses, int(tcp_port), name, answer, float(max_seconds)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
