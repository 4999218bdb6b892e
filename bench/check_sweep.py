"""Benchmark: the whole `netprobe check` process against fping, nmap and dnsperf in a lab.

    sudo .venv/bin/python bench/check_sweep.py [--n 1000 --n 10000] [--stages 1000
        --stages 10000 --stages 50000] [--mixed 1000] [--repeat 5] [--timeout-ms 1000]

The lab is `icmp_sweep.py`'s: two namespaces joined by a veth pair; the target
answers for all of 198.18.0.0/16 and 198.19.0.0/17, and drops every packet to
198.19.0.0/17, where the dead targets (10 %) are drawn from. Everything runs
inside the source namespace; the namespaces are deleted at the end, also on
error or Ctrl-C. No packet leaves them.

Four parts, each in the same run as its peer tools:

1. sweep: `netprobe check CONFIG -f json --confirm 0 --rate 0 --late-grace 0 --no-trace`
   (one endpoint per target, one attempt, the timeout) against
   `fping -i0 -r0 -t TIMEOUT`, each as its own process, alternating, `--repeat`
   times; wall clock, CPU, peak RSS, targets classified right, ratio to fping.
   `netprobe` has read the config before (the cron and CI case: its entry in the
   config cache is made by the warm-up); `np cold` never has (an empty cache each
   run: the first run after an edit).
2. start-up: `netprobe --help` and `netprobe validate CONFIG` as whole processes,
   validate with the config cache off (cold) and with its entry made (warm).
3. stages: `check_stages.py` times load, plan, probe, diagnose and render in one
   process at each `--stages` size (median of `--repeat`), to show each is linear;
   the config cache is off, so `load` is the YAML read.
4. mixed: N endpoints with icmp, tcp/443 and dns each (a TCP listener and a DNS
   server per address in the target namespace), with fping's settings and with
   the defaults (confirmation round, rate limit, late-error window), against fping, `nmap -sT -p443` and `dnsperf` over the
   same targets; errors on live targets counted for each tool.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from icmp_sweep import Sample, correct_ratio, lab, make_targets, measure  # noqa: E402

_SCRIPT = Path(sys.executable).with_name("netprobe")  # the installed command, as users run it
NETPROBE = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "netprobe"]
STAGES = ("load", "plan", "probe", "diagnose", "render")
# fping -i0 -r0's work: one try, no pacing, no second round, no listening for late
# ICMP errors after the timeout (netprobe's default --late-grace 3s), no traces
SAME_AS_FPING = ["--confirm", "0", "--rate", "0", "--late-grace", "0", "--no-trace"]
DNS_NAME, DNS_ANSWER = "www.bench.example", "198.18.0.1"


def write_config(path: Path, targets: list[str], timeout_ms: int, mixed: bool = False) -> None:
    """One endpoint per target; only the address when ICMP alone (the default probe),
    so 50,000 endpoints stay under the loader's 2 MiB cap."""
    lines = ["version: 1", "vantage: bench", f"defaults: {{timeout: {timeout_ms}ms, attempts: 1}}",
             "endpoints:"]
    probes = (f", probes: [icmp, tcp/443, dns: {{query: {DNS_NAME}, expect: [{DNS_ANSWER}]}}]"
              if mixed else "")
    lines += [f"  t{i:05d}: {{address: {a}{probes}}}" for i, a in enumerate(targets)]
    path.write_text("\n".join(lines) + "\n")


def netprobe_alive(output: str) -> set[str]:
    """Addresses whose ICMP probe got an answer, from the JSON report."""
    report = json.loads(output)
    return {p["address"] for p in report["probes"] if p["kind"] == "icmp" and p["received"]}


def wall_of(cmd: list[str], env: dict[str, str], repeat: int) -> list[float]:
    walls = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        # Pipes, not DEVNULL: with no pipe to read, subprocess waits for the exit by
        # polling with a timeout that backs off to 50 ms, and the walls came out
        # rounded up to the next 50 ms (0.215, 0.265, ... s); reading the pipes
        # wakes at the exit.
        subprocess.run(cmd, capture_output=True, env=env, timeout=600, check=False)
        walls.append(time.perf_counter() - t0)
    return walls


def sweep(src: str, tmp: Path, env: dict[str, str], sizes: list[int], args: argparse.Namespace) -> None:
    print(f"\n## whole process vs fping: timeout {args.timeout_ms} ms, {args.dead_fraction:.0%} dead, "
          f"median of {args.repeat} (min in brackets)\n")
    print(f"{'N':>6}  {'tool':<9} {'wall s':>14} {'cpu s':>6} {'RSS MB':>7} {'correct':>8} "
          f"{'/ fping':>15}  runs")
    for n in sizes:
        targets, live = make_targets(n, args.dead_fraction)
        cfg, targets_file = tmp / f"sweep-{n}.yaml", tmp / f"targets-{n}.txt"
        write_config(cfg, targets, args.timeout_ms)
        targets_file.write_text("".join(f"{t}\n" for t in targets))
        check = [*NETPROBE, "check", str(cfg), "-f", "json", *SAME_AS_FPING, *args.netprobe_arg]
        tools = {
            # the config read before (its cache entry made by the warm-up): cron, CI
            "netprobe": (check, netprobe_alive, (0, 1, 2, 3)),
            # a config never read before (an empty cache each run): the first run of an edit
            "np cold": (check, netprobe_alive, (0, 1, 2, 3)),
            "fping": (["fping", "-i0", "-r0", f"-t{args.timeout_ms}", "-f", str(targets_file)],
                      None, (0, 1)),
        }

        def env_of(tool: str, run: str, n: int = n) -> dict[str, str]:
            if tool != "np cold":
                return env
            return {**env, "NETPROBE_CACHE_DIR": str(tmp / f"configcache-cold-{n}-{run}")}

        for tool, (cmd, parse, ok) in tools.items():  # warm-up: page cache, bytecode
            measure(src, cmd, tmp / f"{tool.replace(' ', '-')}-warm.out", env_of(tool, "warm"), **_parse_args(parse, ok))
        samples: dict[str, list[Sample]] = {tool: [] for tool in tools}
        for i in range(args.repeat):
            order = list(tools.items())
            if i % 2:
                order.reverse()
            for tool, (cmd, parse, ok) in order:
                samples[tool].append(measure(src, cmd, tmp / f"{tool.replace(' ', '-')}-{n}-{i}.out",
                                             env_of(tool, str(i)), **_parse_args(parse, ok)))
        fping_walls = [s.wall_s for s in samples["fping"]]
        for tool, runs in samples.items():
            walls = [s.wall_s for s in runs]
            # ratio per pair of adjacent runs, so a loaded moment hits both tools
            ratios = [w / f for w, f in zip(walls, fping_walls, strict=True)]
            print(f"{n:>6}  {tool:<9} {statistics.median(walls):>7.3f} ({min(walls):.3f})"
                  f" {statistics.median(s.cpu_s for s in runs):>6.2f}"
                  f" {max(s.peak_rss_mb for s in runs):>7.1f}"
                  f" {min(correct_ratio(s, targets, live) for s in runs):>8.2%}"
                  f" {statistics.median(ratios):>7.3f}x ({min(ratios):.3f}x)"
                  f"  {[round(w, 3) for w in walls]}")


def _parse_args(parse, ok) -> dict:
    return {"ok_codes": ok, **({"alive_of": parse} if parse else {})}


def startup(tmp: Path, env: dict[str, str], sizes: list[int], args: argparse.Namespace) -> None:
    print(f"\n## start-up, whole process, median of {args.repeat} (min)\n")
    walls = wall_of([*NETPROBE, "--help"], env, args.repeat)
    print(f"netprobe --help                        {statistics.median(walls):.3f} s ({min(walls):.3f})")
    for n in sizes:
        targets, _ = make_targets(n, args.dead_fraction)
        for mixed in (False, True):
            cfg = tmp / f"validate-{n}-{mixed}.yaml"
            write_config(cfg, targets, args.timeout_ms, mixed=mixed)
            if cfg.stat().st_size > 2 * 1024 * 1024:
                continue
            what = "icmp+tcp+dns" if mixed else "icmp"
            # read from its text (the cache off), then again with its cache entry made
            for how, cache in (("cold", ""), ("warm", str(tmp / "configcache-validate"))):
                walls = wall_of([*NETPROBE, "validate", str(cfg)],
                                {**env, "NETPROBE_CACHE_DIR": cache}, args.repeat)
                print(f"netprobe validate {n:>6} endpoints {what:<12} {how} "
                      f"{statistics.median(walls):.3f} s ({min(walls):.3f})  "
                      f"{cfg.stat().st_size / 1e6:.2f} MB")


def stages(src: str, tmp: Path, env: dict[str, str], sizes: list[int], args: argparse.Namespace) -> None:
    print(f"\n## time per stage in one process, seconds, median of {args.repeat}; "
          "`probe` includes the one timeout, and the diagnosis when made during the wait "
          "(`diagnose` is its own time wherever it ran; `total` counts it once)\n")
    print(f"{'N':>6} " + " ".join(f"{s:>9}" for s in ("import", *STAGES)) +
          f" {'total':>7} {'RSS MB':>7} {'µs/endpoint (load+plan+diagnose+render)':>40}")
    for n in sizes:
        targets, _ = make_targets(n, args.dead_fraction)
        cfg = tmp / f"stages-{n}.yaml"
        write_config(cfg, targets, args.timeout_ms)
        runs = []
        for _ in range(args.repeat):  # the config read from its text each time (cache off)
            out = subprocess.run(["ip", "netns", "exec", src, sys.executable,
                                  str(HERE / "check_stages.py"), str(cfg), "--concurrency", str(n)],
                                 capture_output=True, text=True,
                                 env={**env, "NETPROBE_CACHE_DIR": ""}, timeout=600, check=True)
            runs.append(json.loads(out.stdout))
        med = {s: statistics.median(r["stages_s"][s] for r in runs) for s in ("import", *STAGES)}
        cpu_part = sum(med[s] for s in STAGES if s != "probe")
        foreseen = sum(bool(r.get("foreseen")) for r in runs)
        print(f"{n:>6} " + " ".join(f"{med[s]:>9.3f}" for s in ("import", *STAGES)) +
              f" {statistics.median(r['total_s'] for r in runs):>7.3f}"
              f" {max(r['peak_rss_mb'] for r in runs):>7.1f}"
              f" {cpu_part / n * 1e6:>40.1f}  diagnosed during the wait: {foreseen}/{len(runs)}")


def mixed(src: str, tgt: str, tmp: Path, env: dict[str, str], n: int, args: argparse.Namespace) -> None:
    targets, live = make_targets(n, args.dead_fraction)
    cfg, targets_file = tmp / f"mixed-{n}.yaml", tmp / f"mixed-{n}.txt"
    write_config(cfg, targets, args.timeout_ms, mixed=True)
    targets_file.write_text("".join(f"{t}\n" for t in targets))
    live_file = tmp / f"mixed-{n}-live.txt"
    live_file.write_text("".join(f"{t}\n" for t in targets if t in live))
    queries = tmp / f"mixed-{n}-queries.txt"
    queries.write_text(f"{DNS_NAME} A\n" * len(live))
    servers = subprocess.Popen(["ip", "netns", "exec", tgt, sys.executable, str(HERE / "mixed_servers.py"),
                                str(live_file), "443", DNS_NAME, DNS_ANSWER, "900"],
                               stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert servers.stdout is not None
        if servers.stdout.readline().strip() != "ready":
            raise RuntimeError("the lab's services did not start")
        print(f"\n## {n} endpoints x (icmp, tcp/443, dns), {args.dead_fraction:.0%} dead, timeout "
              f"{args.timeout_ms} ms, median of {args.repeat} (min)\n")
        runs: dict[str, list[tuple[float, str]]] = {}
        cmds = {
            "netprobe (fping work)": [*NETPROBE, "check", str(cfg), "-f", "json", *SAME_AS_FPING,
                                     *args.netprobe_arg],
            "netprobe (defaults)": [*NETPROBE, "check", str(cfg), "-f", "json"],
            "fping (icmp)": ["fping", "-i0", "-r0", f"-t{args.timeout_ms}", "-f", str(targets_file)],
            "nmap -sT (tcp/443)": ["nmap", "-n", "-Pn", "-sT", "-p443", "--max-retries", "0",
                                   "--min-rate", "100000", "--max-rtt-timeout",
                                   f"{args.timeout_ms}ms", "-oG", "-", "-iL", str(targets_file)],
            # dnsperf asks one server; netprobe asks each endpoint: the same number of queries
            "dnsperf (dns)": ["dnsperf", "-s", DNS_ANSWER, "-d", str(queries), "-t",
                              str(args.timeout_ms / 1000), "-q", str(len(live)), "-n", "1"],
        }
        for i in range(args.repeat + 1):  # the first round warms up and is not counted
            for name, cmd in cmds.items():
                t0 = time.perf_counter()
                out = subprocess.run(["ip", "netns", "exec", src, *cmd], capture_output=True, text=True,
                                     env=env, timeout=600, check=False)
                wall = time.perf_counter() - t0
                if i:
                    runs.setdefault(name, []).append((wall, out.stdout))
        for name, samples in runs.items():
            walls = [w for w, _ in samples]
            print(f"{name:<22} {statistics.median(walls):>7.3f} s ({min(walls):.3f})  "
                  f"{_errors(name, samples[-1][1], live)}")
    finally:
        servers.terminate()
        try:
            tail = servers.communicate(timeout=30)[0].strip()
        except subprocess.TimeoutExpired:
            servers.kill()
            tail = ""
        if tail:
            print(f"(target side: {tail})")


def _errors(tool: str, output: str, live: set[str]) -> str:
    """What went wrong on live targets, in each tool's own words."""
    if tool.startswith("netprobe"):
        report = json.loads(output)
        bad: dict[str, int] = {}
        for p in report["probes"]:
            if p["address"] in live and (p["error"] or not p["received"]):
                bad[p["kind"]] = bad.get(p["kind"], 0) + 1
        n = len(report["probes"])
        return f"{n} probes; failed on live targets: {bad or 'none'}"
    if tool.startswith("fping"):
        alive = {line.split()[0] for line in output.splitlines() if "is alive" in line}
        return f"{len(alive)} of {len(live)} live answered"
    if tool.startswith("nmap"):
        open_ = sum(1 for line in output.splitlines() if "443/open" in line)
        return f"{open_} of {len(live)} live open"
    for line in output.splitlines():
        if "Queries completed" in line or "Queries lost" in line:
            return " ".join(line.split())
    return output.strip()[-200:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, action="append", help="sweep sizes (default 1000, 10000)")
    parser.add_argument("--stages", type=int, action="append",
                        help="stage-table sizes (default 1000, 10000, 50000)")
    parser.add_argument("--mixed", type=int, default=1000, help="endpoints of the mixed check; 0 skips")
    parser.add_argument("--dead-fraction", type=float, default=0.1)
    parser.add_argument("--timeout-ms", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--parts", default="sweep,startup,stages,mixed",
                        help="which parts to run, comma-separated")
    parser.add_argument("--netprobe-arg", action="append", default=[],
                        help="an extra argument for netprobe check (repeatable)")
    args = parser.parse_args(argv)
    sizes, stage_sizes = args.n or [1000, 10000], args.stages or [1000, 10000, 50000]
    if os.geteuid() != 0:
        print("needs root (network namespaces, raw sockets): run with sudo", file=sys.stderr)
        return 2
    need = ["ip", "nft", "fping", "/usr/bin/time"] + (["nmap", "dnsperf"] if args.mixed else [])
    missing = [t for t in need if shutil.which(t) is None]
    if missing:
        print(f"missing {', '.join(missing)}: apt-get install -y iproute2 nftables fping time"
              f"{' nmap dnsperf' if args.mixed else ''}", file=sys.stderr)
        return 2
    if max(sizes + stage_sizes) > 60_000 or args.repeat < 1:
        print("sizes must be at most 60,000 and --repeat at least 1", file=sys.stderr)
        return 2
    load = os.getloadavg()
    print(f"# check_sweep {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, "
          f"{os.cpu_count()} CPUs, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    with tempfile.TemporaryDirectory(prefix="npb-check-") as tmp_name, lab() as src:
        tmp = Path(tmp_name)
        # an installed netprobe runs from compiled bytecode: let it be cached
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
        # configs already read are kept here (netprobe.configcache), not in root's home
        env["NETPROBE_CACHE_DIR"] = str(tmp / "configcache")
        parts = set(args.parts.split(","))
        if "sweep" in parts:
            sweep(src, tmp, env, sizes, args)
        if "startup" in parts:
            startup(tmp, env, sorted(set(sizes)), args)
        if "stages" in parts:
            stages(src, tmp, env, stage_sizes, args)
        if "mixed" in parts and args.mixed:
            mixed(src, src.replace("-src", "-tgt"), tmp, env, args.mixed, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
