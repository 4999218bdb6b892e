"""TCP listeners that accept and close: a service that is "up" for a TCP probe.

Used by the tests, the localhost demo and the namespace lab:

    python -m netprobe.lab.listeners --listen 203.0.113.10 --port 443 --port 22 --max-seconds 600

`BackgroundLoop` runs servers on an event loop in a thread, so synchronous
code (pytest fixtures, the demo) can host them while it runs probes on its own
loop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import sys
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_ACCEPTS_PER_WAKEUP = 64  # bound the work done per readiness event


class TcpListener:
    """Accepts every connection and closes it at once; counts what it accepted."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, backlog: int = 512) -> None:
        self.host = host
        self.port = port
        self.backlog = backlog
        self.accepted = 0
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> TcpListener:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((self.host, self.port))
            sock.listen(self.backlog)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        self._sock = sock
        self._loop = asyncio.get_running_loop()
        # A reader callback instead of asyncio streams: nothing is read, and a
        # benchmark may open thousands of connections.
        self._loop.add_reader(sock.fileno(), self._accept_ready)
        return self

    def _accept_ready(self) -> None:
        assert self._sock is not None
        for _ in range(_ACCEPTS_PER_WAKEUP):
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # out of descriptors, aborted handshake: try again later
                return
            self.accepted += 1
            conn.close()

    async def stop(self) -> None:
        if self._sock is not None and self._loop is not None:
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None

    async def __aenter__(self) -> TcpListener:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def start_tcp_listener(host: str = "127.0.0.1", port: int = 0) -> TcpListener:
    """A running accept-and-close listener; `port=0` picks a free port (see `.port`)."""
    return await TcpListener(host, port).start()


class BackgroundLoop:
    """An asyncio loop in a daemon thread, for hosting servers from synchronous code.

    with BackgroundLoop() as bg:
        listener = bg.run(start_tcp_listener("127.0.0.1"))
        ...
        bg.run(listener.stop())
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="netprobe-lab-loop",
                                        daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float = 10.0) -> T:
        """Run a coroutine on the background loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def close(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5.0)
        if not self._thread.is_alive():
            self.loop.close()

    def __enter__(self) -> BackgroundLoop:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- command line ----------------------------------------------------------------

async def serve(host: str, ports: list[int], max_seconds: float | None) -> None:
    """Listen on every port until SIGTERM/SIGINT or `max_seconds`."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    listeners: list[TcpListener] = []
    try:
        for port in ports:
            listeners.append(await start_tcp_listener(host, port))
        bound = " ".join(str(listener.port) for listener in listeners)
        print(f"listeners listening on {host} port {bound} (tcp)", flush=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max_seconds)
    finally:
        for listener in listeners:
            await listener.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m netprobe.lab.listeners",
                                description="TCP listeners that accept and close.")
    p.add_argument("--listen", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, action="append", required=True,
                   help="port to listen on (repeatable); 0 picks a free one")
    p.add_argument("--max-seconds", type=float, default=None,
                   help="exit after this many seconds even without a signal")
    args = p.parse_args(argv)
    try:
        asyncio.run(serve(args.listen, args.port, args.max_seconds))
    except OSError as exc:
        print(f"listeners: cannot listen on {args.listen}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
