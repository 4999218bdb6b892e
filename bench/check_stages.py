"""Time each stage of `netprobe check` in one process: load, plan, probe, diagnose, render.

    check_stages.py CONFIG [--confirm N] [--rate PPS] [--concurrency N] [--late-grace S]

Calls the same pipeline functions as `netprobe check CONFIG -f json --no-trace`
(the CLI is only the glue between them), by default with fping's work
(`--confirm 0 --rate 0 --late-grace 0`), and prints one JSON object with the
seconds each stage took, the process's peak RSS and the number of probes. The
static audit and the topology's JSON are made while the probes wait, and so
is the diagnosis when the silent probes' guess holds (`Foresight`): they then
count in `probe`. `diagnose` is the diagnosis's own time, wherever it ran, and
`foreseen` says whether it ran during the wait. `check_sweep.py` runs it inside its lab's source namespace,
so the probes reach only the lab's addresses.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("--confirm", type=int, default=0)
    parser.add_argument("--rate", type=float, default=0.0)
    parser.add_argument("--concurrency", type=int, default=1000)
    parser.add_argument("--late-grace", type=float, default=0.0)
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    from netprobe.cli import collect_less, keep_until_exit
    from netprobe.config import load_topology
    from netprobe.diagnosis import diagnose, static_audit
    from netprobe.diagnosis.model import Severity
    from netprobe.executor import Foresight, RunOptions, run
    from netprobe.plan import PlanOptions, build_plan
    from netprobe.report import Format, render
    from netprobe.report.model import build_report

    stages: dict[str, float] = {"import": time.perf_counter() - t0}
    collect_less()  # as `netprobe check` does

    def timed(name: str, start: float) -> float:
        now = time.perf_counter()
        stages[name] = now - start
        return now

    t = time.perf_counter()
    topology = load_topology(args.config, keep=True)  # as `netprobe check` does
    t = timed("load", t)
    tasks = build_plan(topology, PlanOptions(traces=False, late_grace_s=args.late_grace))
    keep_until_exit()  # as `netprobe check` does between its stages
    t = timed("plan", t)
    prepared = {}

    def prepare() -> None:  # as `netprobe check` does, while the probes wait for replies
        prepared["static"] = static_audit(topology)
        prepared["topology"] = topology.to_json()

    def foresee(likely):  # as `netprobe check` does; timed wherever it runs
        start = time.perf_counter()
        made = diagnose(topology, likely, prepared["static"])
        stages["diagnose_s_during_wait"] = time.perf_counter() - start
        return made

    foresight = Foresight(foresee)
    evidence = run(tasks, RunOptions(concurrency=args.concurrency, rate_pps=args.rate,
                                     confirm_attempts=args.confirm), while_waiting=prepare,
                   foresight=foresight)
    keep_until_exit()
    t = timed("probe", t)
    diagnosis = foresight.value if foresight.held else diagnose(topology, evidence, prepared["static"])
    keep_until_exit()
    t = timed("diagnose", t)
    if foresight.held:  # the diagnosis ran during the wait: its own time, for linearity
        stages["diagnose"] = stages.pop("diagnose_s_during_wait")
    stages.pop("diagnose_s_during_wait", None)
    report = build_report(topology.vantage, args.config, evidence, diagnosis, Severity.WARNING,
                          thresholds=topology.thresholds, topology=prepared["topology"])
    text = render(report, Format.JSON)
    timed("render", t)
    total_s = time.perf_counter() - t0  # the diagnosis counted once, wherever it ran
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"stages_s": stages, "total_s": total_s, "probes": len(tasks), "bytes": len(text),
                      "foreseen": foresight.held,
                      "peak_rss_mb": round(peak_mb, 1),
                      "received": sum(1 for r in evidence.results if r.received)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
