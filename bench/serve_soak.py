"""Soak `netprobe serve` beside blackbox_exporter: memory and CPU over time.

    sudo .venv/bin/python bench/serve_soak.py [--duration 3600] [--interval 1]
        [--endpoints 20] [--out soak.json]

Needs root (ICMP) and blackbox_exporter (`apt-get install
prometheus-blackbox-exporter`; without it netprobe runs alone). Loopback only:
every target is on 127.0.0.0/8 (ICMP, and TCP to a listener this script runs).

- netprobe: `netprobe serve` with a config of two lines (a redundancy group)
  and N endpoints with `icmp` and `tcp/PORT`, probing every `--interval`;
  this script scrapes its /metrics once per interval and /probe?group=wan
  every ten intervals, as Prometheus would.
- blackbox_exporter: the same targets, one /probe?module=icmp and one
  ?module=tcp_connect per target per interval (its probes run per scrape).

Every 10 s it reads each process's resident memory (VmRSS, MiB) and CPU time
(/proc/PID/stat). Reported: RSS after warm-up (the first 10 % of the run),
at the end, the peak, the least-squares slope of RSS over the rest of the run
(MiB per hour), CPU seconds, and netprobe/blackbox ratios. At the default 1 s
interval an hour of soak is ten hours of `serve` at its default 10 s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE_EVERY_S = 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def slope_mb_per_h(samples: list[tuple[float, float]]) -> float | None:
    if len(samples) < 3:
        return None
    n = len(samples)
    mt = sum(t for t, _ in samples) / n
    mr = sum(r for _, r in samples) / n
    var = sum((t - mt) ** 2 for t, _ in samples)
    if var == 0:
        return None
    return sum((t - mt) * (r - mr) for t, r in samples) / var * 3600


class Listener:
    """An accept-and-close TCP listener on 127.0.0.1 in a thread (the TCP target)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def _start(self) -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.close()

        self.server = await asyncio.start_server(handle, "127.0.0.1", self.port, backlog=512)

    def __enter__(self) -> Listener:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def targets(n: int) -> list[str]:
    return [f"127.0.{10 + i // 200}.{1 + i % 200}" for i in range(n)]


def netprobe_config(n: int, port: int) -> str:
    eps = "\n".join(f"  ep{i}: {{address: {a}, path: [gw, wan], probes: [icmp, tcp/{port}]}}"
                    for i, a in enumerate(targets(n)))
    return f"""version: 1
vantage: soak
defaults: {{timeout: 500ms, attempts: 3}}
devices:
  gw: {{address: 127.0.0.2}}
lines:
  line-a: {{device: gw, far_end: 127.0.1.1, carrier: carrier-a, group: wan, priority: 1}}
  line-b: {{device: gw, far_end: 127.0.1.2, carrier: carrier-b, group: wan, priority: 2}}
endpoints:
{eps}
"""


BLACKBOX_CONFIG = """modules:
  icmp: {prober: icmp, timeout: 500ms}
  tcp_connect: {prober: tcp, timeout: 500ms}
"""


def get(url: str, timeout_s: float = 5.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            resp.read()
            return resp.status == 200
    except OSError:
        return False


def wait_up(url: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if get(url, 1.0):
            return
        time.sleep(0.2)
    raise SystemExit(f"{url} did not come up in {timeout_s} s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=3600.0, help="seconds (default 3600)")
    ap.add_argument("--interval", type=float, default=1.0, help="probe/scrape interval, s")
    ap.add_argument("--endpoints", type=int, default=20)
    ap.add_argument("--out", type=Path, default=None, help="write the samples and summary here")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (ICMP for both tools)")
    if not 10 <= args.duration <= 4 * 3600 or not 0.1 <= args.interval <= 60:
        raise SystemExit("--duration 10..14400 s, --interval 0.1..60 s")
    blackbox = shutil.which("prometheus-blackbox-exporter") or shutil.which("blackbox_exporter")
    procs: dict[str, subprocess.Popen] = {}
    with tempfile.TemporaryDirectory(prefix="np-soak-") as tmp, Listener() as listener:
        cfg = Path(tmp) / "soak.yaml"
        cfg.write_text(netprobe_config(args.endpoints, listener.port))
        np_at = f"127.0.0.1:{free_port()}"
        try:
            procs["netprobe"] = subprocess.Popen(
                [sys.executable, "-m", "netprobe", "serve", str(cfg), "--listen", np_at,
                 "--interval", f"{args.interval}s"], stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, cwd=REPO)
            bb_at = None
            if blackbox:
                (Path(tmp) / "blackbox.yml").write_text(BLACKBOX_CONFIG)
                bb_at = f"127.0.0.1:{free_port()}"
                procs["blackbox"] = subprocess.Popen(
                    [blackbox, f"--config.file={tmp}/blackbox.yml",
                     f"--web.listen-address={bb_at}"], stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL)
                wait_up(f"http://{bb_at}/metrics")
            wait_up(f"http://{np_at}/report.json")
            samples: dict[str, list[tuple[float, float, float]]] = {k: [] for k in procs}
            failures = {k: 0 for k in procs}
            t0 = time.monotonic()
            next_sample = t0
            tick = 0
            while (now := time.monotonic()) - t0 < args.duration:  # bounded by --duration
                if now >= next_sample:
                    for name, p in procs.items():
                        if p.poll() is not None:
                            raise SystemExit(f"{name} exited ({p.returncode}) during the soak")
                        samples[name].append((now - t0, rss_mb(p.pid), cpu_s(p.pid)))
                    next_sample += SAMPLE_EVERY_S
                failures["netprobe"] += not get(f"http://{np_at}/metrics")
                if tick % 10 == 0:
                    failures["netprobe"] += not get(f"http://{np_at}/probe?group=wan")
                if bb_at:
                    ok = all([get(f"http://{bb_at}/probe?module=icmp&target={a}")
                              for a in targets(args.endpoints)]
                             + [get(f"http://{bb_at}/probe?module=tcp_connect&target="
                                    f"127.0.0.1:{listener.port}")
                                for _ in targets(args.endpoints)])
                    failures["blackbox"] += not ok
                tick += 1
                time.sleep(max(0.0, t0 + tick * args.interval - time.monotonic()))
        finally:
            for p in procs.values():
                if p.poll() is None:
                    p.terminate()
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        p.wait(10)
                if p.poll() is None:
                    p.kill()
                    p.wait(5)
        stopped_cleanly = procs["netprobe"].returncode == 0

    summary: dict[str, dict] = {}
    for name, rows in samples.items():
        warm = [r for r in rows if r[0] >= 0.1 * args.duration] or rows
        summary[name] = {
            "rss_after_warmup_mb": round(warm[0][1], 1), "rss_end_mb": round(rows[-1][1], 1),
            "rss_peak_mb": round(max(r[1] for r in rows), 1),
            "rss_slope_mb_per_h": None if (s := slope_mb_per_h([(t, r) for t, r, _ in warm]))
            is None else round(s, 2),
            "cpu_s": round(rows[-1][2], 1), "failed_scrapes": failures[name],
        }
    out = {"duration_s": args.duration, "interval_s": args.interval,
           "endpoints": args.endpoints, "cycles": tick, "netprobe_sigterm_exit_0": stopped_cleanly,
           "summary": summary, "samples": samples}
    if "blackbox" in summary:
        n, b = summary["netprobe"], summary["blackbox"]
        out["ratios"] = {"rss_end": round(n["rss_end_mb"] / b["rss_end_mb"], 2),
                         "cpu": round(n["cpu_s"] / b["cpu_s"], 2) if b["cpu_s"] else None}
    print(f"soak: {args.duration:.0f} s at {args.interval:g} s, {args.endpoints} endpoints "
          f"(icmp + tcp each, two lines), {tick} ticks")
    print(f"{'tool':<10} {'RSS warm MiB':>11} {'RSS end MiB':>10} {'peak MiB':>8} "
          f"{'MiB/h':>10} {'CPU s':>7} {'failed':>6}")
    for name, s in summary.items():
        slope = "-" if s["rss_slope_mb_per_h"] is None else f"{s['rss_slope_mb_per_h']:+.2f}"
        print(f"{name:<10} {s['rss_after_warmup_mb']:>11.1f} {s['rss_end_mb']:>10.1f} "
              f"{s['rss_peak_mb']:>8.1f} {slope:>10} {s['cpu_s']:>7.1f} "
              f"{s['failed_scrapes']:>6}")
    if "ratios" in out:
        print(f"netprobe / blackbox: RSS {out['ratios']['rss_end']}x, CPU {out['ratios']['cpu']}x")
    print(f"netprobe stopped by SIGTERM with exit 0: {stopped_cleanly}")
    if args.out:
        args.out.write_text(json.dumps(out, indent=1))
    return 0 if stopped_cleanly else 1


if __name__ == "__main__":
    sys.exit(main())
