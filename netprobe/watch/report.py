"""The drill's report: timeline, events, per-group summary and status, as one
value that the JSON file, the picture and the terminal summary all render.
Pure: built from a `Timeline` alone, so a saved drill can be judged again.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from netprobe import __version__
from netprobe.diagnosis.model import Severity, Status
from netprobe.watch.summary import (
    DrillSummary,
    Outage,
    drill_status,
    lane_outages,
    summarize,
)
from netprobe.watch.timeline import Event, EventKind, Timeline, build_events

SCHEMA = "netprobe.drill/1"
DEFAULT_FAILOVER_WINDOW_S = 10.0
DEFAULT_FAILBACK_WINDOW_S = 60.0


@dataclass(frozen=True)
class DrillReport:
    config: str
    vantage: str
    timeline: Timeline
    summaries: tuple[DrillSummary, ...]
    events: tuple[Event, ...]
    outages: tuple[Outage, ...]
    status: Status
    reasons: tuple[str, ...]
    fail_on: Severity = Severity.WARNING
    failover_window_s: float = DEFAULT_FAILOVER_WINDOW_S
    failback_window_s: float = DEFAULT_FAILBACK_WINDOW_S

    @property
    def exit_code(self) -> int:
        return self.status.exit_code

    def summary(self, group: str) -> DrillSummary | None:
        return next((s for s in self.summaries if s.group == group), None)

    def to_json(self) -> dict[str, Any]:
        tl = self.timeline
        return {
            "schema": SCHEMA,
            "version": __version__,
            "config": self.config,
            "vantage": self.vantage,
            "started_at": datetime.fromtimestamp(tl.wall_t0).astimezone().isoformat(
                timespec="milliseconds"),
            "duration_s": round(tl.t_end_s, 3),
            "interval_s": tl.interval_s,
            "ended_by": tl.ended_by,
            "status": str(self.status),
            "exit_code": self.exit_code,
            "fail_on": str(self.fail_on),
            "reasons": list(self.reasons),
            "failover_window_s": self.failover_window_s,
            "failback_window_s": self.failback_window_s,
            "groups": [s.to_json() for s in self.summaries],
            "outages": [o.to_json() for o in self.outages],
            "events": [e.to_json() for e in self.events],
            "timeline": tl.to_json(),
        }


def marker_events(timeline: Timeline, summaries: list[DrillSummary]) -> list[Event]:
    """The switch-overs and failbacks each summary measured, as events."""
    out = []
    for s in summaries:
        for ep in s.episodes:
            if ep.switch_at_s is not None and not ep.already_off_preferred:
                took = ep.switch_over_s
                text = (f"{s.group}: switch-over to {ep.switched_to}"
                        + (f" took {took:.2f} s after the first lost probe on {s.preferred}"
                           if took is not None else ""))
                out.append(Event(ep.switch_at_s, timeline.wall_at(ep.switch_at_s),
                                 EventKind.SWITCH_OVER, s.group, text, s.group, took))
            if ep.failback_at_s is not None:
                took = ep.failback_s
                text = (f"{s.group}: failback to {s.preferred}"
                        + (f" {took:.2f} s after it answered again" if took is not None else ""))
                out.append(Event(ep.failback_at_s, timeline.wall_at(ep.failback_at_s),
                                 EventKind.FAILBACK, s.group, text, s.group, took))
    return out


def build_drill_report(timeline: Timeline, config: str, vantage: str,
                       fail_on: Severity = Severity.WARNING,
                       failover_window_s: float = DEFAULT_FAILOVER_WINDOW_S,
                       failback_window_s: float = DEFAULT_FAILBACK_WINDOW_S) -> DrillReport:
    summaries = summarize(timeline, failover_window_s, failback_window_s)
    events = build_events(timeline) + marker_events(timeline, summaries)
    events.sort(key=lambda e: e.t_s)  # stable: a cycle's own events keep their order
    status, reasons = drill_status(timeline, summaries, fail_on)
    return DrillReport(config, vantage, timeline, tuple(summaries), tuple(events),
                       tuple(lane_outages(timeline)), status, tuple(reasons), fail_on,
                       failover_window_s, failback_window_s)


def report_from_json(data: dict[str, Any]) -> DrillReport:
    """Judge a saved drill again (same windows and fail-on unless changed)."""
    return build_drill_report(Timeline.from_json(data["timeline"]), data.get("config", ""),
                              data.get("vantage", ""), Severity(data.get("fail_on", "warning")),
                              float(data.get("failover_window_s", DEFAULT_FAILOVER_WINDOW_S)),
                              float(data.get("failback_window_s", DEFAULT_FAILBACK_WINDOW_S)))


def _secs(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x * 1000:.0f} ms" if abs(x) < 1 else f"{x:.2f} s"


def summary_lines(report: DrillReport) -> list[str]:
    """The end-of-drill summary as plain lines (terminal and logs)."""
    tl = report.timeline
    lines = [f"drill: {_secs(tl.t_end_s)} at {_secs(tl.interval_s)} intervals, "
             f"{len(tl.cycles)} cycles, ended by {tl.ended_by}; "
             f"{str(report.status).upper()} (exit {report.exit_code})"]
    for s in report.summaries:
        policy = {True: "matches policy", False: "does NOT match policy",
                  None: "policy not judged yet"}[s.matches_policy]
        lines.append(f"{s.group}: {s.verdict} ({policy}, failback {s.failback_policy}) — "
                     f"{s.reason}")
        for i, ep in enumerate(s.episodes, 1):
            parts = [f"  episode {i}: {s.preferred} lost from {ep.first_loss_s:.2f} s"]
            if ep.switch_at_s is not None:
                parts.append(f"switch-over {_secs(ep.switch_over_s)} → {ep.switched_to}")
            if ep.preferred_back_s is not None:
                parts.append(f"{s.preferred} back at {ep.preferred_back_s:.2f} s")
            if ep.failback_at_s is not None:
                parts.append(f"failback {_secs(ep.failback_s)}")
            lines.append(", ".join(parts))
            for o in ep.outages:
                end = "still failing" if o.recovered_s is None else f"{_secs(o.outage_s)}"
                lines.append(f"    {o.lane}: outage {end}, {o.lost_probes} probes lost "
                             f"({o.first_failure_s:.2f} s to {o.last_failure_s:.2f} s)")
    for note in tl.notes:
        lines.append(f"note: {note}")
    for reason in report.reasons:
        lines.append(f"  {reason}")
    return lines


# -- files -----------------------------------------------------------------------------

OUTPUT_SUFFIXES = (".json", ".html", ".htm", ".svg")


def check_output_path(path: Path) -> str | None:
    """Why this output cannot be written, or None; checked before any packet."""
    if path.suffix.lower() not in OUTPUT_SUFFIXES:
        return (f"-o {path}: unknown extension {path.suffix or '(none)'}; "
                f"use {', '.join(OUTPUT_SUFFIXES)}")
    parent = path.resolve().parent
    if not parent.is_dir():
        return f"-o {path}: directory {parent} does not exist; create it first"
    if not os.access(parent, os.W_OK):
        return f"-o {path}: directory {parent} is not writable"
    return None


def render_output(report: DrillReport, path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".json":
        return json.dumps(report.to_json(), indent=1) + "\n"
    from netprobe.watch.render_html import render_html, render_svg

    return render_svg(report) if suffix == ".svg" else render_html(report)


def write_outputs(report: DrillReport, paths: list[Path]) -> None:
    """Each file whole or not at all: written beside its target, then renamed."""
    rendered = [(p, render_output(report, p)) for p in paths]
    for path, text in rendered:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.resolve().parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
