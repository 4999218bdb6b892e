"""Benchmark: summarise a history of 100,000 runs x 20 components.

    /tmp/venv/bin/python bench/history_bench.py [--runs 100000] [--db PATH] [--keep]

Builds a synthetic database (bulk insert in one transaction, no network),
then times `summarize` in a fresh child process so its peak RSS is its own,
and prints wall time and peak RSS of both phases. The states follow a small
Markov chain per component (long up stretches, outages of a few runs,
occasional unknown runs) and the group flips between its lines, so the
window functions see realistic incident and failover counts.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time

from netprobe.history import connect, recompute_flags, record_run, render_history, summarize

DEVICES = ["ce-hq", "dc-edge"]
LINES = ["leased-a", "broadband-b", "dc-link-1", "dc-link-2"]
ENDPOINTS = ["dc-app", "intra-dns", "web", "mail", "cloud-crm", "backup-web"]
SERVICES = ["dc-app/tcp/443", "dc-app/tcp/22", "intra-dns/dns", "web/tcp/443",
            "web/tcp/80", "mail/tcp/25", "cloud-crm/tcp/443", "backup-web/tcp/443"]
COMPONENTS = ([(n, "device") for n in DEVICES] + [(n, "line") for n in LINES]
              + [(n, "endpoint") for n in ENDPOINTS] + [(n, "service") for n in SERVICES])
GROUPS = {"dc-wan": ("leased-a", "broadband-b"), "dc-links": ("dc-link-1", "dc-link-2")}
INTERVAL_S = 60.0
T0 = 1_700_000_000.0

# next-state probabilities per current state
_MARKOV = {
    "up": (("up", 0.985), ("degraded", 0.006), ("down", 0.004), ("unknown", 0.005)),
    "degraded": (("up", 0.5), ("degraded", 0.45), ("down", 0.05)),
    "down": (("down", 0.7), ("up", 0.28), ("unknown", 0.02)),
    "unknown": (("up", 0.8), ("unknown", 0.15), ("down", 0.05)),
}


def _step(rng: random.Random, state: str) -> str:
    x = rng.random()
    for nxt, p in _MARKOV[state]:
        x -= p
        if x < 0:
            return nxt
    return state


def build(db_path: str, runs: int, seed: int = 7) -> dict[str, float]:
    rng = random.Random(seed)
    t_start = time.perf_counter()
    conn = connect(db_path)
    conn.execute("BEGIN IMMEDIATE")
    comp_ids = {}
    for name, kind in COMPONENTS:
        (cid,) = conn.execute("INSERT INTO components (vantage, name, kind) VALUES (?, ?, ?) "
                              "RETURNING id", ("bench", name, kind)).fetchone()
        comp_ids[name] = cid
    group_ids = {}
    for name in GROUPS:
        (gid,) = conn.execute("INSERT INTO groups (vantage, name) VALUES (?, ?) RETURNING id",
                              ("bench", name)).fetchone()
        group_ids[name] = gid
    state = {name: "up" for name, _ in COMPONENTS}
    run_rows, state_rows, group_rows, finding_rows = [], [], [], []
    for run_id in range(1, runs + 1):
        t = T0 + run_id * INTERVAL_S
        worst = 0
        for name, _kind in COMPONENTS:
            s = state[name] = _step(rng, state[name])
            state_rows.append((comp_ids[name], t, run_id, s))
            if s == "down":
                worst = 2
                finding_rows.append((run_id, "critical", f"{_kind}_down", json.dumps([name]),
                                     f"{name} is down"))
            elif s == "degraded":
                worst = max(worst, 1)
        for gname, (pref, standby) in GROUPS.items():
            if state[pref] == "down" and state[standby] == "down":
                verdict, active = "down", None
            elif state[pref] == "down":
                verdict, active = "failed_over", standby
            elif state[pref] == "unknown":
                verdict, active = "unknown", None
            elif state[standby] == "down":
                verdict, active = "redundancy_lost", pref
            else:
                verdict, active = "nominal", pref
            group_rows.append((group_ids[gname], t, run_id, verdict, active, pref))
        status = ("ok", "warning", "critical")[worst]
        run_rows.append((run_id, t, 1.5, status, worst, "bench", "site.yaml", 0))
    t_generated = time.perf_counter()
    conn.executemany("INSERT INTO runs (id, started_at, duration_s, status, exit_code, vantage, "
                     "config, interrupted) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", run_rows)
    conn.executemany("INSERT INTO component_states (component_id, started_at, run_id, state) "
                     "VALUES (?, ?, ?, ?)", state_rows)
    conn.executemany("INSERT INTO group_states (group_id, started_at, run_id, verdict, active, "
                     "preferred) VALUES (?, ?, ?, ?, ?, ?)", group_rows)
    conn.executemany("INSERT INTO findings (run_id, severity, kind, components, summary) "
                     "VALUES (?, ?, ?, ?, ?)", finding_rows)
    conn.execute("COMMIT")
    t_inserted = time.perf_counter()
    recompute_flags(conn)  # rows went in directly, not through record_run
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    t_done = time.perf_counter()
    return {"generate_s": t_generated - t_start, "insert_s": t_inserted - t_generated,
            "flags_s": t_done - t_inserted, "state_rows": len(state_rows),
            "findings": len(finding_rows)}


def peak_rss_mib() -> float:
    """VmHWM: this process's own peak (ru_maxrss would carry the parent's over exec)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _next_report(runs: int):
    """A report like the synthetic runs, one interval after the last of them."""
    from netprobe.diagnosis.model import ComponentState, Diagnosis, GroupVerdict, State, Verdict
    from netprobe.evidence import Evidence
    from netprobe.report.model import build_report

    components = tuple(ComponentState(n, k, State.UP, "bench") for n, k in COMPONENTS)
    groups = tuple(GroupVerdict(g, lines, lines[0], lines[0], Verdict.NOMINAL, "bench")
                   for g, lines in GROUPS.items())
    evidence = Evidence(results=(), started_at=T0 + (runs + 1) * INTERVAL_S, duration_s=1.0)
    return build_report("bench", "site.yaml", evidence, Diagnosis(components, groups, ()))


def _summarize_child(db_path: str, since_s: float | None) -> None:
    t = time.perf_counter()
    summary = summarize(db_path, since_s=since_s, until=T0 + 10**9 if since_s else None)
    wall_s = time.perf_counter() - t
    print(json.dumps({"wall_s": wall_s, "peak_rss_mib": peak_rss_mib(),
                      "components": len(summary.components), "groups": len(summary.groups),
                      "incidents": sum(c.incidents for c in summary.components),
                      "failovers": sum(g.failovers for g in summary.groups)}))
    if os.environ.get("BENCH_SHOW"):
        print(render_history(summary, "table"), file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=100_000)
    ap.add_argument("--db", help="database file (default: a temp file, removed after)")
    ap.add_argument("--keep", action="store_true", help="keep the database")
    ap.add_argument("--summarize-only", metavar="DB", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.summarize_only:
        _summarize_child(args.summarize_only, None)
        return

    tmpdir = None
    if args.db:
        db_path = args.db
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(db_path + suffix):
                os.unlink(db_path + suffix)
    else:
        tmpdir = tempfile.TemporaryDirectory(prefix="netprobe-bench-")
        db_path = os.path.join(tmpdir.name, "history.db")
    try:
        built = build(db_path, args.runs)
        size_mib = os.path.getsize(db_path) / 2**20
        print(f"built {args.runs} runs x {len(COMPONENTS)} components "
              f"({built['state_rows']} state rows, {built['findings']} findings) in "
              f"{built['generate_s']:.1f} s generate + {built['insert_s']:.1f} s insert + "
              f"{built['flags_s']:.1f} s recompute_flags; {size_mib:.0f} MiB on disk; "
              f"builder peak RSS {peak_rss_mib():.0f} MiB")
        child = subprocess.run([sys.executable, __file__, "--summarize-only", db_path],
                               capture_output=True, text=True, check=True, timeout=600)
        result = json.loads(child.stdout.splitlines()[0])
        print(f"summarize: {result['wall_s']:.2f} s wall, peak RSS "
              f"{result['peak_rss_mib']:.0f} MiB (whole child process); "
              f"{result['components']} components, {result['groups']} groups, "
              f"{result['incidents']} incidents, {result['failovers']} failovers")
        times_ms = []
        for i in range(5):
            t = time.perf_counter()
            record_run(db_path, _next_report(args.runs + i))
            times_ms.append((time.perf_counter() - t) * 1000)
        print("record_run on the full database (open, insert, commit, close): "
              + ", ".join(f"{x:.0f}" for x in times_ms) + " ms")
        if child.stderr:
            print(child.stderr, file=sys.stderr)
    finally:
        if tmpdir is not None and not args.keep:
            tmpdir.cleanup()
        elif args.keep or args.db:
            print(f"database kept: {db_path}")


if __name__ == "__main__":
    main()
