"""Markdown for a cron mail or a ticket: readable raw, and as GitHub-flavoured
Markdown when rendered. Table cells escape `|` and keep to one line."""

from __future__ import annotations

import re

from netprobe.report.common import (
    active_text,
    evidence_lines,
    fmt_duration_s,
    fmt_ms,
    fmt_ratio,
    interruption,
    probes_by_id,
    sorted_findings,
    status_title,
)
from netprobe.report.model import Report

# A '<' that could open an HTML tag or comment; '<1%' or 'a < b' stay as they are.
_TAG_START = re.compile(r"<(?=[A-Za-z/!?])")


def cell(value: object) -> str:
    """One GFM table cell: no raw '|', no line break, no HTML, never empty."""
    text = "" if value is None else str(value)
    text = text.replace("\\", "\\\\").replace("|", "\\|")
    text = _TAG_START.sub(r"\\<", text)
    text = " ".join(text.split())  # newlines and runs of spaces would break the row
    return text or "-"


def inline(value: str) -> str:
    """Text in running prose: one line, with the characters escaped that would
    change its meaning (emphasis, code, HTML). Underscores inside words are
    left alone: GFM does not read them as emphasis, and names are full of them."""
    text = " ".join(str(value).split())
    for ch in ("\\", "`", "*"):
        text = text.replace(ch, "\\" + ch)
    return _TAG_START.sub(r"\\<", text)


def code(value: str) -> str:
    """A name in backticks (names never contain backticks; guard anyway)."""
    return "`" + str(value).replace("`", "'") + "`"


def table(headers: list[str], rows: list[list[object]], align: str | None = None) -> list[str]:
    """GFM table; `align` is one char per column: l, r or c."""
    spec = align or "l" * len(headers)
    rule = {"l": "---", "r": "--:", "c": ":-:"}
    out = ["| " + " | ".join(cell(h) for h in headers) + " |",
           "| " + " | ".join(rule[a] for a in spec) + " |"]
    out += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return out


def render_markdown(report: Report) -> str:
    lines = [f"# netprobe: {status_title(report)}", ""]
    lines += [
        f"- **vantage:** {inline(report.vantage)}",
        f"- **started:** {report.started_at_iso}",
        f"- **duration:** {fmt_duration_s(report.evidence.duration_s)}",
        f"- **config:** {code(report.config)}",
        f"- **fail on:** {report.fail_on}",
    ]
    if report.interrupted:
        lines.append(f"- **interrupted:** {interruption(report)}")
    lines.append("")

    if report.groups:
        lines += ["## Redundancy groups", ""]
        lines += table(
            ["group", "verdict", "active line", "preferred", "lines", "reason"],
            [[g.name, f"**{g.verdict}**", active_text(g), g.preferred,
              ", ".join(g.lines), g.reason] for g in report.groups])
        lines.append("")

    lines += ["## Findings", ""]
    if not report.findings:
        lines += ["No findings.", ""]
    results = probes_by_id(report)
    for f in sorted_findings(report.findings):
        about = ", ".join(code(c) for c in f.components)
        lines.append(f"- **{str(f.severity).upper()}** {inline(f.summary)}"
                     + (f" ({code(str(f.kind))}: {about})" if about else f" ({code(str(f.kind))})"))
        lines += [f"  - {code(e)}" for e in evidence_lines(report, f.evidence, results)]
    if report.findings:
        lines.append("")

    if report.components:
        lines += ["## Components", ""]
        lines += table(["component", "kind", "state", "reason", "evidence"],
                       [[c.name, c.kind, c.state, c.reason, ", ".join(c.evidence)]
                        for c in report.components])
        lines.append("")

    if report.evidence.results:
        lines += ["## Probes", ""]
        rows = []
        for p in report.evidence.results:
            error = "" if p.error is None else str(p.error)
            if p.message:
                error = f"{error}: {p.message}" if error else p.message
            rows.append([p.id, p.target, p.address or "-", f"{p.received}/{p.sent}",
                         fmt_ratio(p.loss_ratio), fmt_ms(p.rtt_min_ms), fmt_ms(p.rtt_avg_ms),
                         fmt_ms(p.rtt_max_ms), error])
        lines += table(["probe", "target", "address", "rx/tx", "loss", "rtt min", "rtt avg",
                        "rtt max", "error"], rows, align="llllrrrrl")
        lines.append("")
    return "\n".join(lines)
