"""Benchmark: what a hostile config costs `netprobe validate` (issue 14).

    python bench/config_hostile.py [--repeat 3]

Writes config files built to make a loader work (alias floods, 2 MB flow
lists, 100,000 invalid entries, a valid 10,000-endpoint config for scale) and
runs `netprobe validate FILE` on each as its own process: wall clock, and
peak RSS and CPU from os.wait4. The peer, in the same run: PyYAML's C loader
(`yaml.load(text, CSafeLoader)`) on the same file, in its own process, which
only parses (no positions, no validation). Goal: every file under 2 s and
200 MB, with at most 50 problems printed. No network is used.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MB = 1024 * 1024


def files() -> dict[str, str]:
    """name -> YAML text; each at most the loader's 2 MiB cap."""
    out: dict[str, str] = {}
    uses = "".join(f"  d{i}: *bad\n" for i in range(1500))
    out["aliases: 20 KB, 1,500 uses of a bad anchor"] = (
        "version: 1\ndevices:\n  d0: &bad {address: nope, path: [" + ", ".join(["1"] * 60)
        + "]}\n" + uses)
    n = (2 * MB - 100) // 2
    out["flow list: 2 MB, 1M items"] = ("version: 1\ndevices: {d: {address: 192.0.2.1, path: ["
                                        + ",".join(["1"] * n) + "]}}\n")
    out["flow list: 1.5 MB, 200k names"] = (
        "version: 1\ndevices: {d: {address: 192.0.2.1, path: ["
        + ",".join(f"x{i}" for i in range(200_000)) + "]}}\n")
    out["124k entries that are not mappings"] = (
        "version: 1\nendpoints: {" + ",".join(f"e{i}: 1" for i in range(124_000)) + "}\n")
    out["61k entries with a bad address"] = (
        "version: 1\nendpoints: {" + ",".join(f"e{i}: {{address: x}}" for i in range(61_000))
        + "}\n")
    out["40k endpoints, paths to nowhere"] = (
        "version: 1\nendpoints:\n" + "".join(
            f"  e{i}: {{address: 192.0.2.1, path: [n{i}]}}\n" for i in range(40_000)))
    out["valid: 10,000 endpoints x 2 probes"] = (
        "version: 1\nendpoints:\n" + "".join(
            f"  e{i:05d}: {{address: 198.18.{i // 250}.{i % 250 + 1}, probes: [icmp, tcp/8080]}}\n"
            for i in range(10_000)))
    return out


def run(cmd: list[str]) -> tuple[float, float, float, int, int]:
    """(wall s, cpu s, peak RSS MB, exit code, bytes on stderr) of one process."""
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        _pid, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0, os.SEEK_END)
        size = err.tell()
    return (wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, proc.returncode,
            size)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    netprobe = [sys.executable, "-m", "netprobe", "validate"]
    pyyaml = [sys.executable, "-c", "import sys, yaml; yaml.load(open(sys.argv[1]).read(), "
              "Loader=yaml.CSafeLoader)"]
    print(f"median of {max(1, args.repeat)} runs; goal: netprobe under 2 s and 200 MB\n")
    header = (f"{'file':<40} {'size':>7}  {'netprobe s':>10} {'RSS MB':>7} {'exit':>4} "
              f"{'stderr':>8}  {'PyYAML C s':>10} {'RSS MB':>7}  {'ratio':>6}")
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory(prefix="npb-hostile-") as tmp:
        for name, text in files().items():
            path = Path(tmp) / "hostile.yaml"
            path.write_text(text, encoding="utf-8")
            ours = [run([*netprobe, str(path)]) for _ in range(max(1, args.repeat))]
            peer = [run([*pyyaml, str(path)]) for _ in range(max(1, args.repeat))]
            wall = statistics.median(r[0] for r in ours)
            rss = statistics.median(r[2] for r in ours)
            peer_wall = statistics.median(r[0] for r in peer)
            peer_rss = statistics.median(r[2] for r in peer)
            print(f"{name:<40} {len(text) / MB:>6.2f}M  {wall:>10.2f} {rss:>7.0f} "
                  f"{ours[0][3]:>4} {ours[0][4]:>8,}  {peer_wall:>10.2f} {peer_rss:>7.0f}  "
                  f"{wall / peer_wall:>5.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
