"""JSON: the public contract `netprobe.report/1` (see DESIGN.md and `schema.py`)."""

from __future__ import annotations

import orjson

from netprobe.report.model import Report


def render_json_bytes(report: Report) -> bytes:
    """The report as UTF-8, without the final line break: for a caller that writes
    bytes (10 MB at 10,000 probes: decoding and copying it costs ~10 ms)."""
    # orjson: ~10x the standard encoder on a 10,000-probe report. Its output is
    # UTF-8 without escapes, so names in the user's script stay readable.
    # Non-finite floats become null (the standard encoder would write NaN, not JSON).
    return orjson.dumps(report.to_json(), option=orjson.OPT_INDENT_2)


def render_json(report: Report) -> str:
    return render_json_bytes(report).decode() + "\n"
