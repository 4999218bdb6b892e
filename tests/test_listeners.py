"""The accept-and-close TCP listener, in process and as the lab's command."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys

from conftest import LOOPBACK, stop_process

from netprobe.lab.listeners import BackgroundLoop, TcpListener, start_tcp_listener


def _connect_and_read(host: str, port: int) -> bytes:
    with socket.create_connection((host, port), timeout=2.0) as s:
        s.settimeout(2.0)
        return s.recv(16)  # b"" once the listener has closed its side


def test_listener_accepts_closes_and_counts() -> None:
    async def main() -> tuple[int, list[bytes]]:
        listener = await start_tcp_listener(LOOPBACK, 0)
        try:
            reads = await asyncio.gather(*(asyncio.to_thread(_connect_and_read, LOOPBACK,
                                                             listener.port) for _ in range(5)))
            return listener.accepted, reads
        finally:
            await listener.stop()

    accepted, reads = asyncio.run(main())
    assert accepted == 5
    assert reads == [b""] * 5  # closed at once, nothing sent


def test_stopped_listener_refuses() -> None:
    with BackgroundLoop() as bg:
        listener = bg.run(TcpListener(LOOPBACK, 0).start())
        port = listener.port
        assert _connect_and_read(LOOPBACK, port) == b""
        bg.run(listener.stop())
    with socket.socket() as s:
        assert s.connect_ex((LOOPBACK, port)) != 0


def test_cli_listens_on_every_port_until_sigterm() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "netprobe.lab.listeners", "--listen",
                             LOOPBACK, "--port", "0", "--port", "0", "--max-seconds", "30"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert "listening on" in line, proc.stderr.read()
        ports = [int(p) for p in line.split(" port ")[1].split(" (")[0].split()]
        assert len(ports) == 2
        for port in ports:
            assert _connect_and_read(LOOPBACK, port) == b""
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 0
    finally:
        stop_process(proc)


def test_cli_ends_by_itself_after_max_seconds() -> None:
    done = subprocess.run([sys.executable, "-m", "netprobe.lab.listeners", "--listen", LOOPBACK,
                           "--port", "0", "--max-seconds", "0.3"], capture_output=True,
                          text=True, timeout=10)
    assert done.returncode == 0 and "listening on" in done.stdout
