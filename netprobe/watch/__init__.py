"""`netprobe watch CONFIG`: time a failover drill.

Probe continuously (far ends, devices, endpoints, services, and each group's
active line), show it live, and at the end summarise per group: switch-over
time, outage per endpoint and service, failback time, and whether it matches
the group's policy. Exit codes as for `check`.

`watch_command` is the whole command; the CLI only parses options into it.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from netprobe.errors import NetprobeError
from netprobe.signals import loop_stops_on_signals
from netprobe.watch.engine import DrillRunner, NullObserver, Observer, WatchOptions
from netprobe.watch.report import (
    DEFAULT_FAILBACK_WINDOW_S,
    DEFAULT_FAILOVER_WINDOW_S,
    DrillReport,
    build_drill_report,
    check_output_path,
    summary_lines,
    write_outputs,
)
from netprobe.watch.timeline import Timeline

MAX_INTERVAL_S = 60.0
MIN_INTERVAL_S = 0.05


def _severity(fail_on: str):
    from netprobe.diagnosis.model import Severity

    if fail_on not in ("warning", "critical"):
        raise NetprobeError(f"--fail-on {fail_on}: use warning or critical")
    return Severity(fail_on)


def check_watch_options(interval_s: float, duration_s: float, settle_s: float | None) -> None:
    if not MIN_INTERVAL_S <= interval_s <= MAX_INTERVAL_S:
        raise NetprobeError(f"--interval {interval_s:g}s: use {MIN_INTERVAL_S * 1000:.0f} ms to "
                            f"{MAX_INTERVAL_S:.0f} s")
    if duration_s < interval_s:
        raise NetprobeError(f"--duration {duration_s:g}s: must be at least one interval "
                            f"({interval_s:g} s)")
    if settle_s is not None and settle_s < interval_s:
        raise NetprobeError(f"--settle {settle_s:g}s: must be at least one interval")


async def run_watch(topology, options: WatchOptions, observer: Observer | None = None,
                    stop: asyncio.Event | None = None) -> Timeline:
    return await DrillRunner(topology, options, observer or NullObserver(), stop).run()


def watch_command(config_path: str | Path, interval_s: float = 0.2, duration_s: float = 300.0,
                  until_stable: bool = False, outputs: Sequence[str | Path] = (),
                  netns: str | None = None, fail_on: str = "warning",
                  settle_s: float | None = None,
                  failover_window_s: float = DEFAULT_FAILOVER_WINDOW_S,
                  failback_window_s: float = DEFAULT_FAILBACK_WINDOW_S,
                  rate_pps: float = 2000.0, hop_check: bool = True, quiet: bool = False,
                  live: bool | None = None) -> int:
    """Run a drill and report it; returns the exit code (0 OK .. 3 UNKNOWN).

    Bad input raises NetprobeError (exit 3) before any packet is sent.
    `live`: None picks the rich live view when stdout is a terminal.
    """
    from netprobe.config import load_topology
    from netprobe.ui import stdout_console

    severity = _severity(fail_on)
    check_watch_options(interval_s, duration_s, settle_s)
    paths = [Path(p) for p in outputs]
    for p in paths:
        why = check_output_path(p)
        if why:
            raise NetprobeError(why)
    if netns:
        from netprobe.lab.netns import enter_netns

        enter_netns(netns)
    topology = load_topology(str(config_path))
    options = WatchOptions(interval_s=interval_s, duration_s=duration_s,
                           until_stable=until_stable, settle_s=settle_s, rate_pps=rate_pps,
                           hop_check=hop_check)
    console = stdout_console()
    observer: Observer
    if quiet:
        observer = NullObserver()
    elif live if live is not None else console.is_terminal:
        from netprobe.watch.view import LiveView

        observer = LiveView(console, duration_s)
    else:
        from netprobe.watch.view import PlainView

        observer = PlainView(console)

    async def main() -> Timeline:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        # Ctrl-C, systemd's SIGTERM and a dropped session's SIGHUP all end the
        # drill the same way: the summary is still written.
        with loop_stops_on_signals(loop, stop.set):
            return await run_watch(topology, options, observer, stop)

    timeline = asyncio.run(main())
    report = build_drill_report(timeline, str(config_path), topology.vantage, severity,
                                failover_window_s, failback_window_s)
    if paths:
        write_outputs(report, paths)
    if not quiet:
        for line in summary_lines(report):
            console.print(line, markup=False, highlight=False, soft_wrap=True)
        sys.stdout.flush()
    return report.exit_code


__all__ = ["DrillReport", "WatchOptions", "build_drill_report", "run_watch", "watch_command"]
