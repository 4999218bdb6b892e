"""Benchmark: netprobe's ICMP probe against fping, sweeping N targets in a lab.

    sudo python bench/icmp_sweep.py --n 1000 --n 10000 [--repeat 3]

Builds two network namespaces joined by a veth pair:

    npb-b<pid>-src 198.19.255.1/30 ── 198.19.255.2/30 npb-b<pid>-tgt

The target answers for every address of 198.18.0.0/16 and 198.19.0.0/17 (AnyIP
`local` routes on lo); nftables in the target drops every packet to
198.19.0.0/17, so targets drawn from there are dead and time out. For each N, the live and
dead targets are interleaved in a fixed pseudo-random order. Then, inside the
source namespace and in the same run, it sweeps them with

  (a) netprobe: `bench/icmp_driver.py` (PROBE.run per target through one
      ProbeContext, 1 attempt, rate unlimited), and
  (b) `fping -i0 -r0 -t TIMEOUT_MS`,

each measured as a separate process (wall clock; user+sys CPU and peak RSS
from os.wait4), alternating, `--repeat` times, and prints the medians with the
share of targets each tool classified correctly and netprobe/fping ratios.
Packets go only to addresses inside the two namespaces, which are deleted at
the end, even on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "icmp_driver.py"
TIME = "/usr/bin/time"  # GNU time (Debian package `time`)

LIVE_NET = ipaddress.ip_network("198.18.0.0/16")  # room for 50,000 live targets
DEAD_NET = ipaddress.ip_network("198.19.0.0/17")  # the veth pair is outside it
SRC_MAC, TGT_MAC = "02:4e:50:00:01:01", "02:4e:50:00:01:02"

NFT_TGT = f"""
table inet npb {{
  chain input {{
    type filter hook input priority 0;
    ip daddr {DEAD_NET} drop
  }}
}}
"""


def sh(*args: str, input: str | None = None) -> str:
    out = subprocess.run(list(args), capture_output=True, text=True, input=input, timeout=60)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {out.stderr.strip()}")
    return out.stdout


@contextmanager
def lab() -> Iterator[str]:
    """The two namespaces; yields the source namespace's name."""
    src, tgt = f"npb-b{os.getpid()}-src", f"npb-b{os.getpid()}-tgt"
    try:
        for ns in (src, tgt):
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "link", "add", "s0", "address", SRC_MAC, "netns", src, "type", "veth",
           "peer", "t0", "address", TGT_MAC, "netns", tgt)
        sh("ip", "-n", src, "addr", "add", "198.19.255.1/30", "dev", "s0")
        sh("ip", "-n", tgt, "addr", "add", "198.19.255.2/30", "dev", "t0")
        sh("ip", "-n", src, "link", "set", "s0", "up")
        sh("ip", "-n", tgt, "link", "set", "t0", "up")
        # static neighbours: a 10,000-packet burst must not queue behind ARP
        sh("ip", "-n", src, "neigh", "replace", "198.19.255.2", "lladdr", TGT_MAC, "dev", "s0",
           "nud", "permanent")
        sh("ip", "-n", tgt, "neigh", "replace", "198.19.255.1", "lladdr", SRC_MAC, "dev", "t0",
           "nud", "permanent")
        for net in (LIVE_NET, DEAD_NET):
            sh("ip", "-n", src, "route", "add", str(net), "via", "198.19.255.2")
            sh("ip", "-n", tgt, "route", "add", "local", str(net), "dev", "lo")
        sh("ip", "netns", "exec", tgt, "nft", "-f", "-", input=NFT_TGT)
        yield src
    finally:
        for ns in (src, tgt):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=60)


def make_targets(n: int, dead_fraction: float) -> tuple[list[str], set[str]]:
    """N addresses, a fraction of them dead, interleaved; and the live set."""
    rng = random.Random(n)
    n_dead = round(n * dead_fraction)
    kinds = [True] * (n - n_dead) + [False] * n_dead
    rng.shuffle(kinds)
    live_base, dead_base = int(LIVE_NET.network_address) + 1, int(DEAD_NET.network_address) + 1
    targets, live = [], set()
    i_live = i_dead = 0
    for is_live in kinds:
        if is_live:
            addr = str(ipaddress.IPv4Address(live_base + i_live))
            i_live += 1
            live.add(addr)
        else:
            addr = str(ipaddress.IPv4Address(dead_base + i_dead))
            i_dead += 1
        targets.append(addr)
    return targets, live


@dataclass(frozen=True)
class Sample:
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    alive: frozenset[str]


def fping_alive(output: str) -> set[str]:
    """The addresses fping (or the driver, one address a line) reports alive."""
    alive = set()
    for line in output.splitlines():
        parts = line.split()
        if parts and (len(parts) == 1 or parts[1:3] == ["is", "alive"]):
            alive.add(parts[0])
    return alive


def measure(netns: str, cmd: list[str], out_path: Path, env: dict[str, str],
            alive_of: Callable[[str], set[str]] = fping_alive,
            ok_codes: tuple[int, ...] = (0, 1)) -> Sample:
    """Run `cmd` inside `netns` and measure it alone.

    GNU time forks the tool from its own small process, so the peak RSS and the
    CPU time it reports are the tool's, not those of `ip netns exec` or of this
    script; the wall clock is ours, around the whole command (the few
    milliseconds of `ip` and `time` are the same for both tools).
    """
    usage_path = out_path.with_suffix(".usage")
    full = ["ip", "netns", "exec", netns, TIME, "-f", "%U %S %M", "-o", str(usage_path), *cmd]
    with open(out_path, "w") as out:
        t0 = time.perf_counter()
        proc = subprocess.run(full, stdout=out, stderr=subprocess.PIPE, env=env, timeout=600)
        wall_s = time.perf_counter() - t0
    # fping exits 1 when some targets are unreachable: that is the expected result
    if proc.returncode not in ok_codes:
        raise RuntimeError(f"{' '.join(cmd[:3])}... exited {proc.returncode}: "
                           f"{proc.stderr.decode(errors='replace')[-2000:]}")
    user_s, sys_s, rss_kb = usage_path.read_text().split()[-3:]
    alive = alive_of(out_path.read_text())
    return Sample(wall_s=wall_s, cpu_s=float(user_s) + float(sys_s),
                  peak_rss_mb=int(rss_kb) / 1024, alive=frozenset(alive))


def correct_ratio(sample: Sample, targets: list[str], live: set[str]) -> float:
    right = sum(1 for t in targets if (t in sample.alive) == (t in live))
    return right / len(targets)


def check_tools() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, raw sockets): run with sudo"
    missing = [t for t in ("ip", "nft", "fping", TIME) if shutil.which(t) is None]
    if missing:
        pkgs = {"ip": "iproute2", "nft": "nftables", "fping": "fping", TIME: "time"}
        return (f"missing {', '.join(missing)}: "
                f"apt-get install -y {' '.join(pkgs[m] for m in missing)}")
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, action="append", help="targets per sweep (repeatable)")
    parser.add_argument("--dead-fraction", type=float, default=0.1)
    parser.add_argument("--timeout-ms", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--executor", action="store_true",
                        help="drive netprobe through executor.run_plan instead of PROBE.run")
    parser.add_argument("--also-gc-freeze", action="store_true",
                        help="also time netprobe with gc.freeze() after building the tasks")
    args = parser.parse_args(argv)
    sizes = args.n or [1000, 10000]
    if problem := check_tools():
        print(problem, file=sys.stderr)
        return 2
    if max(sizes) > LIVE_NET.num_addresses - 2 or args.repeat < 1:
        print("--n must be below 65,000 and --repeat at least 1", file=sys.stderr)
        return 2

    rows = []
    with tempfile.TemporaryDirectory(prefix="npb-bench-") as tmp, lab() as src:
        tmp_path = Path(tmp)
        # An installed netprobe runs from compiled bytecode: let the driver cache
        # it (outside the source tree) even where PYTHONDONTWRITEBYTECODE is set.
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = str(tmp_path / "pycache")
        for n in sizes:
            targets, live = make_targets(n, args.dead_fraction)
            targets_file = tmp_path / f"targets-{n}.txt"
            targets_file.write_text("".join(f"{t}\n" for t in targets))
            netprobe_cmd = [sys.executable, str(DRIVER), str(targets_file), str(args.timeout_ms)]
            if args.executor:
                netprobe_cmd.append("--executor")
            fping_cmd = ["fping", "-i0", "-r0", f"-t{args.timeout_ms}", "-f", str(targets_file)]
            tools = {"netprobe": netprobe_cmd, "fping": fping_cmd}
            if args.also_gc_freeze:
                tools["netprobe+gc"] = [*netprobe_cmd, "--gc-freeze"]
            # one unmeasured warm-up each: page cache, and netprobe's bytecode
            for tool, cmd in tools.items():
                measure(src, cmd, tmp_path / f"{tool}-{n}-warmup.out", env)
            samples: dict[str, list[Sample]] = {tool: [] for tool in tools}
            for i in range(args.repeat):
                order = list(tools.items())
                if i % 2:
                    order.reverse()
                for tool, cmd in order:
                    samples[tool].append(measure(src, cmd, tmp_path / f"{tool}-{n}-{i}.out", env))
            med = {}
            for tool, runs in samples.items():
                med[tool] = (
                    statistics.median(s.wall_s for s in runs),
                    statistics.median(s.cpu_s for s in runs),
                    statistics.median(s.peak_rss_mb for s in runs),
                    min(correct_ratio(s, targets, live) for s in runs),
                    [round(s.wall_s, 3) for s in runs],
                )
            for tool in tools:
                wall, cpu, rss, ok, walls = med[tool]
                ratio = wall / med["fping"][0]
                rows.append((n, tool, wall, cpu, rss, ok, ratio, walls))

    print(f"\ntimeout {args.timeout_ms} ms, {args.dead_fraction:.0%} dead, median of "
          f"{args.repeat} runs{' (netprobe via executor.run_plan)' if args.executor else ''}\n")
    header = (f"{'N':>6}  {'tool':<11} {'wall s':>7} {'cpu s':>6} {'peak RSS MB':>11} "
              f"{'correct':>8} {'wall / fping':>12}  runs (wall s)")
    print(header)
    print("-" * len(header))
    for n, tool, wall, cpu, rss, ok, ratio, walls in rows:
        print(f"{n:>6}  {tool:<11} {wall:>7.3f} {cpu:>6.3f} {rss:>11.1f} {ok:>8.2%} "
              f"{ratio:>11.3f}x  {walls}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
