"""The drill as a picture: hand-written SVG (no script), and an HTML page
around it with the summary and the event log — what an operator attaches to
the drill report.

One lane per line (its far end), device, endpoint and service, coloured by
state over time; above each group's lines, a lane showing which line carried
the traffic; a dashed marker at each switch-over and failback with its
measured time; an axis in seconds since the drill began.
"""

from __future__ import annotations

import math
from datetime import datetime
from html import escape

from netprobe.diagnosis.model import State
from netprobe.watch.report import DrillReport
from netprobe.watch.timeline import LaneKind, Timeline

STATE_COLOURS = {State.UP: "#2e9d4a", State.DEGRADED: "#f0a020", State.DOWN: "#d43a2f",
                 State.UNKNOWN: "#b4b4b4"}
LINE_COLOURS = ("#2f6fd6", "#8a4fc9", "#0f9aa3", "#c2569b", "#6b7f1a")
PATH_UNKNOWN = "#e4e4e4"
MARK_COLOURS = {"switch_over": "#b0200f", "failback": "#1d5fb8"}

WIDTH = 1100
LABEL_W = 210
RIGHT_PAD = 30
LANE_H = 20
LANE_GAP = 6
GROUP_GAP = 14
HEAD_H = 64
MARK_H = 40
AXIS_H = 34
FONT = "font-family='DejaVu Sans, Verdana, sans-serif'"


def nice_step(span_s: float, max_ticks: int = 12) -> float:
    """A 1-2-5 step that puts at most `max_ticks` ticks on the axis."""
    if span_s <= 0:
        return 1.0
    raw = span_s / max_ticks
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if m * mag >= raw:
            return m * mag
    return 10 * mag


def _bands(times: list[float], values: list[object], end_s: float
           ) -> list[tuple[float, float, object]]:
    """Merge consecutive equal values into (start, end, value) spans; each sample
    holds until the next one (or the end of the drill)."""
    out: list[tuple[float, float, object]] = []
    for i, (t, v) in enumerate(zip(times, values, strict=True)):
        t_next = times[i + 1] if i + 1 < len(times) else end_s
        if out and out[-1][2] == v and abs(out[-1][1] - t) < 1e-9:
            out[-1] = (out[-1][0], t_next, v)
        else:
            out.append((t, t_next, v))
    return out


def _secs(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x * 1000:.0f} ms" if abs(x) < 1 else f"{x:.2f} s"


def _lane_rows(tl: Timeline) -> list[tuple[str, str, str | None]]:
    """(kind, name, group) rows in drawing order: per group its active-line lane
    and its lines; then ungrouped lines, devices, endpoints, services."""
    rows: list[tuple[str, str, str | None]] = []
    lane_names = {lane.name for lane in tl.lanes}
    grouped: set[str] = set()
    for g in tl.groups:
        rows.append(("active", g.name, g.name))
        for line in g.lines:
            if line in lane_names:
                rows.append(("lane", line, g.name))
                grouped.add(line)
    order = [LaneKind.LINE, LaneKind.DEVICE, LaneKind.ENDPOINT, LaneKind.SERVICE]
    for kind in order:
        for lane in tl.lanes:
            if lane.kind == kind and lane.name not in grouped:
                rows.append(("lane", lane.name, None))
    return rows


def render_svg(report: DrillReport) -> str:
    tl = report.timeline
    end_s = max(tl.t_end_s, tl.interval_s)
    plot_x0, plot_x1 = LABEL_W, WIDTH - RIGHT_PAD
    scale = (plot_x1 - plot_x0) / end_s

    def x(t: float) -> float:
        return round(plot_x0 + max(0.0, min(t, end_s)) * scale, 2)

    rows = _lane_rows(tl)
    y = HEAD_H + MARK_H
    row_y: list[tuple[tuple[str, str, str | None], float]] = []
    last_group: object = object()
    for row in rows:
        if row[2] != last_group and row_y:
            y += GROUP_GAP
        last_group = row[2]
        row_y.append((row, y))
        y += LANE_H + LANE_GAP
    lanes_bottom = y - LANE_GAP
    legend_y = lanes_bottom + AXIS_H + 8
    text_lines = _caption_lines(report)
    height = int(legend_y + 26 + 17 * len(text_lines) + 12)

    out: list[str] = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{height}' "
        f"viewBox='0 0 {WIDTH} {height}' {FONT} font-size='12'>",
        f"<rect width='{WIDTH}' height='{height}' fill='#ffffff'/>",
    ]
    started = datetime.fromtimestamp(tl.wall_t0).strftime("%Y-%m-%d %H:%M:%S")
    title = f"netprobe watch — {report.vantage} — {report.config}"
    out.append(f"<text x='12' y='24' font-size='16' font-weight='bold'>{escape(title)}</text>")
    status_colour = {"ok": "#2e9d4a", "warning": "#c27c00", "critical": "#d43a2f"}.get(
        str(report.status), "#666666")
    sub = (f"started {started}, {_secs(tl.t_end_s)} at {_secs(tl.interval_s)} intervals, "
           f"{len(tl.cycles)} cycles, ended by {tl.ended_by}")
    out.append(f"<text x='12' y='44' fill='#444'>{escape(sub)}</text>")
    out.append(f"<text x='{WIDTH - RIGHT_PAD}' y='24' text-anchor='end' font-size='15' "
               f"font-weight='bold' fill='{status_colour}'>{str(report.status).upper()} "
               f"(exit {report.exit_code})</text>")

    # Time grid and axis first, so the bands sit on top of the grid lines.
    step = nice_step(end_s)
    ticks = [i * step for i in range(int(end_s / step + 1e-9) + 1)]
    grid_top = HEAD_H + MARK_H - 6
    for t in ticks:
        out.append(f"<line x1='{x(t)}' y1='{grid_top}' x2='{x(t)}' y2='{lanes_bottom + 4}' "
                   "stroke='#e8e8e8'/>")
        label = f"{t:g} s"
        out.append(f"<text x='{x(t)}' y='{lanes_bottom + 20}' text-anchor='middle' "
                   f"fill='#333'>{label}</text>")
    out.append(f"<line x1='{plot_x0}' y1='{lanes_bottom + 5}' x2='{plot_x1}' "
               f"y2='{lanes_bottom + 5}' stroke='#555'/>")

    # Lanes.
    line_colour = {}
    for g in tl.groups:
        for i, line in enumerate(g.lines):
            line_colour[line] = LINE_COLOURS[i % len(LINE_COLOURS)]
    times = [c.t_s for c in tl.cycles]
    for (kind, name, group), ly in row_y:
        if kind == "active":
            label = f"{name}: active line"
            values: list[object] = [c.active_line(name) for c in tl.cycles]
            out.append(f"<text x='{LABEL_W - 8}' y='{ly + 14}' text-anchor='end' "
                       f"font-weight='bold'>{escape(label)}</text>")
            for t_a, t_b, v in _bands(times, values, end_s):
                fill = line_colour.get(str(v), PATH_UNKNOWN) if v else PATH_UNKNOWN
                w = max(0.5, x(t_b) - x(t_a))
                out.append(f"<rect x='{x(t_a)}' y='{ly}' width='{w:.2f}' height='{LANE_H}' "
                           f"fill='{fill}'><title>{escape(str(v or 'unknown'))} "
                           f"{t_a:.2f}–{t_b:.2f} s</title></rect>")
                if v and w > 8 * len(str(v)):
                    out.append(f"<text x='{x(t_a) + 4}' y='{ly + 14}' fill='#fff' "
                               f"font-size='11'>{escape(str(v))}</text>")
            continue
        lane = tl.lane(name)
        label = lane.label if lane else name
        indent = 12 if group else 0
        out.append(f"<text x='{LABEL_W - 8}' y='{ly + 14}' text-anchor='end' "
                   f"fill='{line_colour.get(name, '#222')}'>{escape(label)}</text>")
        if indent:
            out.append(f"<rect x='{LABEL_W - 4}' y='{ly}' width='3' height='{LANE_H}' "
                       f"fill='{line_colour.get(name, '#888')}'/>")
        series = tl.series(name)
        for t_a, t_b, v in _bands([t for t, _ in series], [s.state for _, s in series], end_s):
            fill = STATE_COLOURS[State(str(v))]
            w = max(0.5, x(t_b) - x(t_a))
            out.append(f"<rect x='{x(t_a)}' y='{ly}' width='{w:.2f}' height='{LANE_H}' "
                       f"fill='{fill}'><title>{escape(label)}: {v} "
                       f"{t_a:.2f}–{t_b:.2f} s</title></rect>")

    # Slow cycles: a small tick under the axis line where a slot was skipped.
    for c in tl.cycles:
        if c.skipped_slots:
            out.append(f"<path d='M{x(c.t_s)} {lanes_bottom + 5} l-4 7 h8 z' fill='#c27c00'>"
                       f"<title>slow cycle {_secs(c.duration_s)}, {c.skipped_slots} slot(s) "
                       "skipped</title></path>")

    # Switch-over and failback markers: the measured span shaded, a dashed line
    # where the new path was first seen, the measured time on top.
    marks = []
    for s in report.summaries:
        for ep in s.episodes:
            if ep.switch_at_s is not None and ep.switch_over_s is not None:
                marks.append(("switch_over", ep.first_loss_s, ep.switch_at_s,
                              f"{s.group}: switch-over {_secs(ep.switch_over_s)}"))
            if ep.failback_at_s is not None and ep.preferred_back_s is not None:
                marks.append(("failback", ep.preferred_back_s, ep.failback_at_s,
                              f"{s.group}: failback {_secs(ep.failback_s)}"))
            if ep.switch_at_s is None and ep.verdict == "failover_failed":
                marks.append(("switch_over", ep.first_loss_s, None,
                              f"{s.group}: failover FAILED — {s.preferred} down "
                              f"{_secs(ep.preferred_down_s)}, traffic never moved"))
    marks.sort(key=lambda m: m[2] if m[2] is not None else m[1])
    last_label_x = [-1e9, -1e9]
    for i, (kind, t_from, t_at, text) in enumerate(marks):
        colour = MARK_COLOURS[kind]
        at = t_at if t_at is not None else t_from
        if t_at is not None and t_at > t_from:
            out.append(f"<rect x='{x(t_from)}' y='{grid_top}' width='{x(t_at) - x(t_from):.2f}'"
                       f" height='{lanes_bottom - grid_top}' fill='{colour}' "
                       "fill-opacity='0.10'/>")
        out.append(f"<line x1='{x(at)}' y1='{grid_top - 4}' x2='{x(at)}' y2='{lanes_bottom + 4}' "
                   f"stroke='{colour}' stroke-width='2' stroke-dasharray='6 3'/>")
        # Two label rows, so markers close in time do not print over each other.
        row = 0 if x(at) - last_label_x[0] > 190 else 1
        if row == 1 and x(at) - last_label_x[1] <= 190:
            row = i % 2
        last_label_x[row] = x(at)
        anchor = "end" if x(at) > WIDTH - 200 else "start"
        dx = -4 if anchor == "end" else 4
        out.append(f"<text x='{x(at) + dx}' y='{HEAD_H + 6 + 16 * row}' text-anchor='{anchor}' "
                   f"font-weight='bold' fill='{colour}'>{escape(text)}</text>")

    # Legend and verdicts.
    lx = 12
    legend = [(STATE_COLOURS[State.UP], "up"), (STATE_COLOURS[State.DEGRADED], "degraded"),
              (STATE_COLOURS[State.DOWN], "down"), (STATE_COLOURS[State.UNKNOWN],
                                                    "not measured"),
              (PATH_UNKNOWN, "active line unknown")]
    legend += [(colour, f"traffic on {line}") for line, colour in line_colour.items()]
    for colour, text in legend:
        out.append(f"<rect x='{lx}' y='{legend_y}' width='12' height='12' fill='{colour}' "
                   "stroke='#999' stroke-width='0.5'/>")
        out.append(f"<text x='{lx + 16}' y='{legend_y + 10}'>{escape(text)}</text>")
        lx += 28 + 7 * len(text)
    ty = legend_y + 34
    for line in text_lines:
        out.append(f"<text x='12' y='{ty}' fill='#222'>{escape(line)}</text>")
        ty += 17
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _caption_lines(report: DrillReport) -> list[str]:
    lines = []
    for s in report.summaries:
        parts = [f"{s.group}: {s.verdict}"]
        for ep in s.episodes:
            if ep.switch_over_s is not None:
                parts.append(f"switch-over {_secs(ep.switch_over_s)} to {ep.switched_to}")
            if ep.failback_s is not None:
                parts.append(f"failback {_secs(ep.failback_s)}")
            worst = max(ep.outages, key=lambda o: o.outage_s, default=None)
            if worst is not None:
                parts.append(f"longest outage {worst.lane} {_secs(worst.outage_s)} "
                             f"({worst.lost_probes} lost)")
        lines.append("; ".join(parts))
        lines.append(f"    {s.reason}")
    return lines


_CSS = """
body { font-family: DejaVu Sans, Verdana, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 20px; } h2 { font-size: 16px; margin-top: 28px; }
table { border-collapse: collapse; font-size: 13px; }
td, th { border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f2f2f2; } .num { text-align: right; font-variant-numeric: tabular-nums; }
.ok { color: #2e9d4a; } .warning { color: #c27c00; } .critical { color: #d43a2f; }
.unknown { color: #666; } .mono { font-family: DejaVu Sans Mono, monospace; }
"""


def render_html(report: DrillReport) -> str:
    tl = report.timeline
    status = str(report.status)
    rows = []
    for s in report.summaries:
        sw = "; ".join(f"{_secs(ep.switch_over_s)} → {ep.switched_to}"
                       for ep in s.episodes if ep.switch_over_s is not None) or "-"
        fb = "; ".join(_secs(ep.failback_s) for ep in s.episodes
                       if ep.failback_s is not None) or "-"
        outs = "<br>".join(
            f"{escape(o.lane)}: {_secs(o.outage_s)}{' (ongoing)' if o.recovered_s is None else ''}"
            f", {o.lost_probes} lost" for ep in s.episodes for o in ep.outages) or "-"
        policy = {True: "yes", False: "<b>no</b>", None: "not yet"}[s.matches_policy]
        rows.append(f"<tr><td>{escape(s.group)}</td><td class='{s.status}'>{s.verdict}</td>"
                    f"<td>{policy} ({escape(s.failback_policy)} failback)</td>"
                    f"<td class='num'>{escape(sw)}</td><td class='num'>{escape(fb)}</td>"
                    f"<td>{outs}</td><td>{escape(s.reason)}</td></tr>")
    events = "\n".join(
        f"<tr><td class='mono'>{e.clock()}</td><td class='num'>{e.t_s:.2f} s</td>"
        f"<td>{escape(e.text)}</td></tr>" for e in report.events)
    notes = "".join(f"<li>{escape(n)}</li>" for n in tl.notes)
    reasons = "".join(f"<li>{escape(r)}</li>" for r in report.reasons)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>netprobe drill — {escape(report.vantage)}</title>
<style>{_CSS}</style></head>
<body>
<h1>Failover drill — {escape(report.vantage)}
 <span class="{status}">{status.upper()} (exit {report.exit_code})</span></h1>
<p>Config {escape(report.config)}; {len(tl.cycles)} cycles at {_secs(tl.interval_s)} over
{_secs(tl.t_end_s)}, ended by {escape(tl.ended_by)}. Times are measured on the monotonic clock;
each instant is observed at a probe cycle, so it is late by at most one interval.</p>
{f"<ul>{reasons}</ul>" if reasons else ""}
{render_svg(report)}
<h2>Groups</h2>
<table><tr><th>group</th><th>verdict</th><th>matches policy</th><th>switch-over</th>
<th>failback</th><th>outages</th><th>why</th></tr>
{"".join(rows)}
</table>
{f"<h2>Notes</h2><ul>{notes}</ul>" if notes else ""}
<h2>Events</h2>
<table><tr><th>time</th><th>since start</th><th>event</th></tr>
{events}
</table>
</body></html>
"""
