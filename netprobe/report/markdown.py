"""Markdown for a cron mail or a ticket: readable raw, and as GitHub-flavoured
Markdown when rendered. Every text that comes from the network or the config is
escaped (`escape_md`), so it shows as itself: no link, emphasis or HTML."""

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

# Text from the network (a DNS TXT answer, a banner, a host name) and from the
# config must read as text, never as Markdown: each ASCII punctuation mark that
# can open a construct in the middle of a line is backslash-escaped (CommonMark
# allows it before any ASCII punctuation and renders the mark itself): emphasis
# (* _ ~), code (`), links and images ([ ] ( ) !), raw HTML, entities and
# autolinks (< > &), a heading's closing # and table cells (|), and GFM's
# extended autolinks, which start at a scheme's '://' or 'www.'. An e-mail
# address is linked even with its '@' escaped (GFM finds it in the rendered
# text), so the '@' goes into a code span of its own. Marks that matter only at
# the start of a line (- + 1.) are escaped there only.
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#!|~&])")
_LINE_START = re.compile(r"^([-+=]|\d+(?=[.)]))")
_AUTOLINK = re.compile(r"(?i)\b(www)\.|:(?=//)|\b(mailto|xmpp):")


def _unlink(m: re.Match[str]) -> str:
    if m.group(1):
        return m.group(1) + "\\."
    return (m.group(2) or "") + "\\:"


def escape_md(value: object, *, line_start: bool = False) -> str:
    """Any text as literal Markdown on one line; `line_start` when it opens a line."""
    text = " ".join(str(value).split())  # a newline would end the paragraph or row
    text = _MD_SPECIAL.sub(r"\\\1", text)
    text = _AUTOLINK.sub(_unlink, text).replace("@", "`@`")
    if not line_start:
        return text
    return _LINE_START.sub(lambda m: m.group(1) + "\\" if m.group(1).isdigit()
                           else "\\" + m.group(1), text)


class Markup(str):
    """Markdown we wrote ourselves (not text to escape), for a table cell."""


def bold(value: object) -> Markup:
    return Markup(f"**{escape_md(value)}**")


def cell(value: object) -> str:
    """One GFM table cell: literal text, one line, never empty."""
    if isinstance(value, Markup):
        return str(value)
    text = "" if value is None else escape_md(value)
    return text or "-"


def inline(value: str, *, line_start: bool = False) -> str:
    """Text in running prose or a heading: literal, on one line."""
    return escape_md(value, line_start=line_start)


def code(value: str) -> str:
    """Text in a code span, literal: no backtick can close it early, no newline can
    end the list item it is in."""
    return "`" + " ".join(str(value).replace("`", "'").split()) + "`"


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
            [[g.name, bold(g.verdict), active_text(g), g.preferred,
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
