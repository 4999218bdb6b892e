"""netprobe's side of the ICMP sweep benchmark: one process, one sweep.

    icmp_driver.py TARGETS_FILE TIMEOUT_MS [--executor] [--gc-freeze]

Sends one echo request to every address in TARGETS_FILE (one per line) with
netprobe's ICMP probe - `PROBE.run` for every task through one
`ProbeContext`, the same path a `netprobe check` takes, with the packet rate
unlimited - and prints the addresses that replied, one per line. With
`--executor` the tasks go through `netprobe.executor.run_plan` instead
(concurrency = number of targets, rate unlimited, no confirmation round). `--gc-freeze` calls
`gc.freeze()` once the tasks are built, as a long-lived CLI may do after
loading its plan, so the garbage collector stops walking the start-up objects.
`icmp_sweep.py` runs this inside the lab's source namespace and measures it as
a separate process.
"""

from __future__ import annotations

import asyncio
import gc
import sys

from netprobe.evidence import ProbeResult
from netprobe.probes.icmp import PROBE
from netprobe.probes.interface import ProbeContext, ProbeTask, RateLimiter


def make_tasks(addresses: list[str], timeout_s: float) -> list[ProbeTask]:
    return [ProbeTask(id=f"{a}/icmp", kind="icmp", target=a, address=a, attempts=1,
                      timeout_s=timeout_s, interval_s=0.0) for a in addresses]


async def sweep(tasks: list[ProbeTask]) -> list[ProbeResult]:
    message = PROBE.preflight(tasks)
    if message:
        raise SystemExit(message)
    ctx = ProbeContext(RateLimiter(0))
    try:
        return list(await asyncio.gather(*(PROBE.run(t, ctx) for t in tasks)))
    finally:
        await ctx.aclose()


def sweep_with_executor(tasks: list[ProbeTask]) -> list[ProbeResult]:
    from netprobe.executor import RunOptions, run

    # `netprobe check`'s own entry point (with its gc.freeze and Ctrl-C handling);
    # one attempt, like fping -r0: no second round for the silent targets
    options = RunOptions(concurrency=len(tasks), rate_pps=0, confirm_attempts=0)
    return list(run(tasks, options).results)


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[0]) as f:
        addresses = [line.strip() for line in f if line.strip()]
    tasks = make_tasks(addresses, float(argv[1]) / 1000)
    if "--gc-freeze" in argv[2:]:
        gc.freeze()
    via_executor = "--executor" in argv[2:]
    results = sweep_with_executor(tasks) if via_executor else asyncio.run(sweep(tasks))
    sys.stdout.write("".join(f"{r.address}\n" for r in results if r.received))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
