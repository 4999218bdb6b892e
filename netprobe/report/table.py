"""The rich table a person reads in a terminal (and, uncoloured, in a .txt file).

Colour comes from rich's styles only, so a console that is not a terminal
(a pipe, a file, cron mail) gets plain text with no escape codes.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Sequence

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from netprobe.diagnosis.model import ComponentState, Finding, Severity, State, Status, Verdict
from netprobe.report.common import (
    fmt_duration_s,
    fmt_ms,
    fmt_ratio,
    interruption,
    sorted_findings,
    status_title,
)
from netprobe.report.model import Report

STATUS_STYLE = {Status.OK: "bold green", Status.WARNING: "bold yellow",
                Status.CRITICAL: "bold red", Status.UNKNOWN: "bold magenta"}
STATE_STYLE = {State.UP: "green", State.DEGRADED: "yellow", State.DOWN: "bold red",
               State.UNKNOWN: "magenta"}
SEVERITY_STYLE = {Severity.CRITICAL: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}
VERDICT_STYLE = {Verdict.NOMINAL: "green", Verdict.REDUNDANCY_LOST: "yellow",
                 Verdict.FAILED_OVER: "yellow", Verdict.FAILBACK_PENDING: "yellow",
                 Verdict.FAILOVER_FAILED: "bold red", Verdict.DOWN: "bold red",
                 Verdict.AMBIGUOUS: "yellow", Verdict.UNKNOWN: "magenta"}

# Width used when the table goes to a file: fits a mail client and a ticket.
PLAIN_WIDTH = 100

# Up to this many components, the table lists every one; above it (a site of
# thousands of endpoints) it counts what is up and lists what is not, at most
# MAX_NOT_UP_ROWS of those: a person reads the findings, and a table of 20,000
# rows takes rich seconds to lay out. `-v` lists everything; JSON always does.
FULL_LIST_MAX = 60
MAX_NOT_UP_ROWS = 100
MAX_FINDING_ROWS = 100
_STATE_ORDER = {State.DOWN: 0, State.DEGRADED: 1, State.UNKNOWN: 2, State.UP: 3}


def _table(title: str) -> Table:
    # SIMPLE_HEAD: one rule under the header, no box around, so wrapped reasons
    # at 80 columns stay legible and the text copies cleanly.
    return Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, expand=False,
                 pad_edge=False, show_edge=False)


def header(report: Report) -> Text:
    text = Text()
    text.append("netprobe ", style="bold")
    text.append(status_title(report), style=STATUS_STYLE[report.status])
    if report.interrupted:
        text.append(f"  interrupted: {interruption(report)}", style="bold magenta")
    # second line: fits 80 columns for any vantage name of reasonable length
    text.append(f"\nvantage {report.vantage} · started {report.started_at_iso} · "
                f"took {fmt_duration_s(report.evidence.duration_s)}")
    return text


def components_table(report: Report, components: Sequence[ComponentState] | None = None,
                     title: str = "Components") -> Table:
    t = _table(title)
    t.add_column("component", no_wrap=True, overflow="fold")
    t.add_column("kind", no_wrap=True)
    t.add_column("state", no_wrap=True)
    t.add_column("reason", ratio=1, overflow="fold")
    for c in report.components if components is None else components:
        t.add_row(Text(c.name), c.kind, Text(str(c.state), style=STATE_STYLE[c.state]),
                  Text(c.reason))
    return t


def _counted(counts: Counter[str], noun: str = "") -> str:
    """Counter({'endpoint': 2, 'service': 1}) -> '2 endpoints, 1 service'."""
    return ", ".join(f"{n:,} {k}{'' if n == 1 else 's'}{noun}" for k, n in counts.most_common())


def components_section(report: Report, *, verbose: bool = False) -> list[RenderableType]:
    """Every component for a small site; for a large one, a count of what is up
    and a list of what is not (worst first)."""
    components = report.components
    if verbose or len(components) <= FULL_LIST_MAX:
        return [components_table(report)]
    up = Counter(c.kind for c in components if c.state == State.UP)
    not_up = sorted((c for c in components if c.state != State.UP),
                    key=lambda c: _STATE_ORDER[c.state])  # stable: config order within a state
    line = Text()
    line.append("Components", style="bold")
    line.append(f"  {sum(up.values()):,} of {len(components):,} up")
    if up:
        line.append(f" ({_counted(up)})")
    if not not_up:
        line.append("; every component is up", style="green")
        return [line]
    line.append(f"; {len(not_up):,} not: ")
    line.append(", ".join(f"{n:,} {state}" for state, n in
                          Counter(str(c.state) for c in not_up).items()))
    parts: list[RenderableType] = [line, components_table(report, not_up[:MAX_NOT_UP_ROWS],
                                                           title="")]
    if len(not_up) > MAX_NOT_UP_ROWS:
        rest = Counter(str(c.state) for c in not_up[MAX_NOT_UP_ROWS:])
        parts.append(Text(f"... and {len(not_up) - MAX_NOT_UP_ROWS:,} more not up ("
                          + ", ".join(f"{n:,} {state}" for state, n in rest.items())
                          + "): -v lists every component, and -f json or -o FILE.json keeps "
                          "them all", style="magenta"))
    return parts


def groups_table(report: Report) -> Table:
    t = _table("Redundancy groups")
    t.add_column("group", no_wrap=True, overflow="fold")
    t.add_column("active line", overflow="fold")
    t.add_column("verdict", no_wrap=True)
    t.add_column("reason", ratio=1, overflow="fold")
    for g in report.groups:
        if g.active is None and g.candidates:
            active = Text(f"{' or '.join(g.candidates)}?", style="yellow")
        elif g.active is None:
            active = Text("not known", style="magenta")
        elif g.active == g.preferred:
            active = Text(g.active)
        else:
            active = Text(f"{g.active} (preferred {g.preferred})", style="yellow")
        t.add_row(Text(g.name), active, Text(str(g.verdict), style=VERDICT_STYLE[g.verdict]),
                  Text(g.reason))
    return t


def findings_table(report: Report, findings: Sequence[Finding] | None = None) -> Table:
    t = _table("Findings")
    t.add_column("severity", no_wrap=True)
    t.add_column("finding", ratio=1, overflow="fold")
    for f in sorted_findings(report.findings) if findings is None else findings:
        t.add_row(Text(str(f.severity), style=SEVERITY_STYLE[f.severity]), Text(f.summary))
    return t


def findings_section(report: Report, *, verbose: bool = False) -> list[RenderableType]:
    """Every finding, worst first; past MAX_FINDING_ROWS (thousands of degraded
    services), the first of them and a count of the rest by severity."""
    findings = sorted_findings(report.findings)
    if verbose or len(findings) <= MAX_FINDING_ROWS:
        return [findings_table(report, findings)]
    rest = Counter(str(f.severity) for f in findings[MAX_FINDING_ROWS:])
    return [findings_table(report, findings[:MAX_FINDING_ROWS]),
            Text(f"... and {len(findings) - MAX_FINDING_ROWS:,} more findings ("
                 + ", ".join(f"{n:,} {sev}" for sev, n in rest.items())
                 + "): -v lists every one, and -f json or -o FILE.json keeps them all",
                 style="magenta")]


def audit_table(findings: list) -> Table:
    """The static audit's findings, for `netprobe validate`."""
    t = _table("Redundancy audit")
    t.add_column("severity", no_wrap=True)
    t.add_column("finding", ratio=1, overflow="fold")
    for f in sorted_findings(findings):
        t.add_row(Text(str(f.severity), style=SEVERITY_STYLE[f.severity]), Text(f.summary))
    return t


def probes_table(report: Report) -> Table:
    t = _table("Probes")
    t.add_column("probe", overflow="fold")
    t.add_column("address", overflow="fold")
    t.add_column("rx/tx", justify="right", no_wrap=True)
    t.add_column("loss", justify="right", no_wrap=True)
    t.add_column("rtt avg", justify="right", no_wrap=True)
    t.add_column("error", overflow="fold")
    for r in report.evidence.results:
        error = "" if r.error is None else str(r.error)
        style = "magenta" if not r.measured else ("red" if r.error else "")
        t.add_row(Text(r.id), Text(r.address or "-"), f"{r.received}/{r.sent}", fmt_ratio(r.loss_ratio),
                  fmt_ms(r.rtt_avg_ms), Text(error, style=style))
    return t


def table_renderables(report: Report, *, verbose: bool = False) -> RenderableType:
    parts: list[RenderableType] = [header(report)]
    if report.components:
        parts += [Text(), *components_section(report, verbose=verbose)]
    if report.groups:
        parts += [Text(), groups_table(report)]
    if report.findings:
        parts += [Text(), *findings_section(report, verbose=verbose)]
    else:
        parts += [Text(), Text("No findings.", style="green")]
    if verbose and report.evidence.results:
        parts += [Text(), probes_table(report)]
    return Group(*parts)


def print_table(report: Report, console: Console, *, verbose: bool = False) -> None:
    """Print the report on `console`; colour only if the console is a terminal."""
    console.print(table_renderables(report, verbose=verbose))


def render_table(report: Report, *, verbose: bool = False, width: int = PLAIN_WIDTH) -> str:
    """The same tables as plain text (no colour, no escape codes), for a file."""
    buf = io.StringIO()
    console = Console(file=buf, width=width, color_system=None, force_terminal=False,
                      no_color=True, highlight=False, emoji=False, soft_wrap=False)
    print_table(report, console, verbose=verbose)
    # rich pads cells to the column width; trailing blanks only make diffs noisy
    return "\n".join(line.rstrip() for line in buf.getvalue().splitlines()) + "\n"
