"""A small authoritative DNS server: dnspython messages over asyncio, UDP and TCP on one port.

Used by the tests, the localhost demo and the namespace lab. It answers from a
zone given as `{name: [(type, value), ...]}`; unknown names get NXDOMAIN.
Switches make it misbehave on purpose: `servfail` (every answer SERVFAIL),
`truncate_udp` (UDP answers carry TC and no records, so clients must retry
over TCP) and `drop` (queries are silently ignored).

    python -m netprobe.lab.dns_server --listen 203.0.113.53 --port 53 \
        --record www.intra.example=A:203.0.113.10 --max-seconds 600

runs until SIGTERM/SIGINT or `--max-seconds`, whichever comes first.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import signal
import socket
import sys
from collections.abc import Iterable, Mapping, Sequence

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

Zone = Mapping[str, Sequence[tuple[str, str]]]

_CNAME_CHAIN_MAX = 8
_TCP_IDLE_S = 10.0  # a TCP client that sends nothing this long is dropped
_UDP_PLAIN_MAX = 512  # RFC 1035 limit without EDNS


def parse_record(text: str) -> tuple[str, str, str]:
    """'www.intra.example=A:203.0.113.10' -> (name, type, value).

    The value may contain ':' (AAAA) and spaces (MX '10 mail.example').
    """
    name, sep, rest = text.partition("=")
    rdtype, sep2, value = rest.partition(":")
    if not sep or not sep2 or not name.strip() or not rdtype.strip() or not value.strip():
        raise ValueError(f"bad record {text!r}: use NAME=TYPE:VALUE, "
                         f"e.g. www.intra.example=A:203.0.113.10")
    return name.strip(), rdtype.strip().upper(), value.strip()


def build_zone(zone: Zone, ttl_s: int = 60) -> dict[dns.name.Name, list[dns.rrset.RRset]]:
    """Check and compile a zone; a bad record raises ValueError naming it."""
    compiled: dict[dns.name.Name, dict[int, dns.rrset.RRset]] = {}
    for raw_name, records in zone.items():
        try:
            name = dns.name.from_text(raw_name).canonicalize()
        except dns.exception.DNSException as exc:
            raise ValueError(f"bad name {raw_name!r}: {exc}") from None
        for rdtype_text, value in records:
            rdtype_text = rdtype_text.upper()
            if rdtype_text == "TXT" and not value.startswith('"'):
                value = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
            try:
                rdtype = dns.rdatatype.from_text(rdtype_text)
                rd = dns.rdata.from_text(dns.rdataclass.IN, rdtype, value,
                                         origin=dns.name.root, relativize=False)
            except (dns.exception.DNSException, ValueError) as exc:
                raise ValueError(f"bad record {raw_name} {rdtype_text} {value!r}: {exc}") from None
            by_type = compiled.setdefault(name, {})
            rrset = by_type.get(rdtype)
            if rrset is None:
                rrset = by_type[rdtype] = dns.rrset.RRset(name, dns.rdataclass.IN, rdtype)
            rrset.add(rd, ttl_s)
    return {name: list(by_type.values()) for name, by_type in compiled.items()}


class DnsServer:
    """Authoritative answers from a fixed zone on one address and port (UDP + TCP).

    `port=0` picks a free port (the same number for UDP and TCP); read `port`
    after `start()`. The switches and the zone may be changed while running.
    """

    def __init__(self, zone: Zone | None = None, host: str = "127.0.0.1", port: int = 0, *,
                 ttl_s: int = 60, servfail: bool = False, truncate_udp: bool = False,
                 drop: bool = False) -> None:
        self.host = host
        self.port = port
        self.ttl_s = ttl_s
        self.servfail = servfail
        self.truncate_udp = truncate_udp
        self.drop = drop
        self.queries_udp = 0  # counters let tests see which transport was used
        self.queries_tcp = 0
        self._zone = build_zone(zone or {}, ttl_s)
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.AbstractServer | None = None
        self._tcp_tasks: set[asyncio.Task] = set()

    # -- lifecycle ------------------------------------------------------------
    async def start(self) -> DnsServer:
        loop = asyncio.get_running_loop()
        udp_sock, tcp_sock = _bind_pair(self.host, self.port)
        self.port = udp_sock.getsockname()[1]
        self._udp, _ = await loop.create_datagram_endpoint(
            lambda: _UdpProtocol(self), sock=udp_sock)
        self._tcp = await asyncio.start_server(self._serve_tcp, sock=tcp_sock)
        return self

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
            for task in list(self._tcp_tasks):
                task.cancel()
            await asyncio.gather(*self._tcp_tasks, return_exceptions=True)
            await self._tcp.wait_closed()
            self._tcp = None

    async def __aenter__(self) -> DnsServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def set_zone(self, zone: Zone) -> None:
        self._zone = build_zone(zone, self.ttl_s)

    # -- answering ------------------------------------------------------------
    def respond(self, wire: bytes, *, over_udp: bool, max_udp_size: int | None = None) -> bytes | None:
        """The answer to one query in wire form, or None to stay silent."""
        if self.drop:
            return None
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return _formerr(wire)
        if query.flags & dns.flags.QR:
            return None  # a response sent to us: never answer those (no loops)
        try:
            return self._render(query, over_udp, max_udp_size)
        except Exception:  # a bug here must not look like a dropped query to the client
            response = dns.message.make_response(query)
            response.set_rcode(dns.rcode.SERVFAIL)
            return response.to_wire()

    def _render(self, query: dns.message.Message, over_udp: bool,
                max_udp_size: int | None) -> bytes:
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        self._fill(response, query)
        if not over_udp:
            return response.to_wire()
        if self.truncate_udp:
            return _truncated(response)
        limit = max_udp_size or (max(_UDP_PLAIN_MAX, query.payload) if query.edns >= 0
                                 else _UDP_PLAIN_MAX)
        try:
            return response.to_wire(max_size=limit)
        except dns.exception.TooBig:
            return _truncated(response)

    def _fill(self, response: dns.message.Message, query: dns.message.Message) -> None:
        if query.opcode() != dns.opcode.QUERY:
            response.set_rcode(dns.rcode.NOTIMP)
        elif len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
        elif self.servfail:
            response.set_rcode(dns.rcode.SERVFAIL)
        elif query.question[0].rdclass != dns.rdataclass.IN:
            response.set_rcode(dns.rcode.REFUSED)
        else:
            self._answer(response, query.question[0].name, query.question[0].rdtype)

    def _answer(self, response: dns.message.Message, qname: dns.name.Name, rdtype: int) -> None:
        name = qname.canonicalize()
        for _ in range(_CNAME_CHAIN_MAX):
            rrsets = self._zone.get(name)
            if rrsets is None:
                if name == qname.canonicalize() and not self._has_descendant(name):
                    response.set_rcode(dns.rcode.NXDOMAIN)
                return  # an empty non-terminal, or a CNAME leaving the zone: NOERROR
            wanted = [r for r in rrsets if rdtype in (r.rdtype, dns.rdatatype.ANY)]
            if wanted:
                response.answer.extend(wanted)
                return
            cname = next((r for r in rrsets if r.rdtype == dns.rdatatype.CNAME), None)
            if cname is None:
                return  # the name exists, not this type: NODATA
            response.answer.append(cname)
            name = cname[0].target.canonicalize()  # type: ignore[attr-defined]

    def _has_descendant(self, name: dns.name.Name) -> bool:
        return any(n.is_subdomain(name) for n in self._zone)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tcp_tasks.add(task)
        try:
            while True:
                async with asyncio.timeout(_TCP_IDLE_S):
                    length = int.from_bytes(await reader.readexactly(2), "big")
                    wire = await reader.readexactly(length)
                self.queries_tcp += 1
                answer = self.respond(wire, over_udp=False)
                if answer is None:
                    continue
                writer.write(len(answer).to_bytes(2, "big") + answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            pass
        finally:
            if task is not None:
                self._tcp_tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self.server.queries_udp += 1
        answer = self.server.respond(data, over_udp=True)
        if answer is not None and self.transport is not None:
            self.transport.sendto(answer, addr)

    def error_received(self, exc: Exception) -> None:
        pass  # an ICMP error about an earlier answer: nothing to do


def _truncated(response: dns.message.Message) -> bytes:
    response.answer.clear()
    response.authority.clear()
    response.additional.clear()
    response.flags |= dns.flags.TC
    return response.to_wire()


def _formerr(wire: bytes) -> bytes | None:
    if len(wire) < 12 or wire[2] & 0x80:  # too short for a header, or itself a response
        return None
    response = dns.message.Message(id=int.from_bytes(wire[:2], "big"))
    response.flags = dns.flags.QR
    response.set_rcode(dns.rcode.FORMERR)
    return response.to_wire()


_UDP_RCVBUF_BYTES = 4 << 20  # a burst of thousands of queries waits instead of being dropped
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)


def _grow_receive_buffer(sock: socket.socket) -> None:
    """Best effort: past rmem_max only with CAP_NET_ADMIN (SO_RCVBUFFORCE)."""
    for option in (_SO_RCVBUFFORCE, socket.SO_RCVBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, _UDP_RCVBUF_BYTES)
            return
        except OSError:
            continue


def _bind_pair(host: str, port: int, tries: int = 20) -> tuple[socket.socket, socket.socket]:
    """A UDP and a TCP socket bound to the same address and port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    last: OSError | None = None
    for _ in range(tries if port == 0 else 1):
        udp = socket.socket(family, socket.SOCK_DGRAM)
        tcp = socket.socket(family, socket.SOCK_STREAM)
        try:
            for s in (udp, tcp):
                if family == socket.AF_INET6:
                    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            _grow_receive_buffer(udp)
            udp.bind((host, port))
            tcp.bind((host, udp.getsockname()[1]))
            tcp.listen(64)
            udp.setblocking(False)
            tcp.setblocking(False)
            return udp, tcp
        except OSError as exc:
            udp.close()
            tcp.close()
            last = exc
            if exc.errno != errno.EADDRINUSE:
                break
    assert last is not None
    raise last


# -- command line ----------------------------------------------------------------

def _records_to_zone(records: Iterable[str]) -> dict[str, list[tuple[str, str]]]:
    zone: dict[str, list[tuple[str, str]]] = {}
    for text in records:
        name, rdtype, value = parse_record(text)
        zone.setdefault(name, []).append((rdtype, value))
    return zone


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m netprobe.lab.dns_server",
                                description="A small authoritative DNS server for tests and labs.")
    p.add_argument("--listen", default="127.0.0.1", help="address to listen on (UDP and TCP)")
    p.add_argument("--port", type=int, default=53, help="port; 0 picks a free one")
    p.add_argument("--record", action="append", default=[], metavar="NAME=TYPE:VALUE",
                   help="a record, e.g. www.intra.example=A:203.0.113.10 (repeatable)")
    p.add_argument("--ttl", type=int, default=60, help="TTL of every record, seconds")
    p.add_argument("--servfail", action="store_true", help="answer every query SERVFAIL")
    p.add_argument("--truncate-udp", action="store_true",
                   help="answer UDP with TC set and no records (clients retry over TCP)")
    p.add_argument("--drop", action="store_true", help="silently ignore every query")
    p.add_argument("--max-seconds", type=float, default=None,
                   help="exit after this many seconds even without a signal")
    return p


async def serve(server: DnsServer, max_seconds: float | None) -> None:
    """Run `server` until SIGTERM/SIGINT or `max_seconds`."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        print(f"dns_server listening on {server.host} port {server.port} (udp+tcp)", flush=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max_seconds)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        server = DnsServer(_records_to_zone(args.record), args.listen, args.port,
                           ttl_s=args.ttl, servfail=args.servfail,
                           truncate_udp=args.truncate_udp, drop=args.drop)
    except ValueError as exc:
        print(f"dns_server: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(server, args.max_seconds))
    except OSError as exc:
        print(f"dns_server: cannot listen on {args.listen} port {args.port}: {exc.strerror}",
              file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
