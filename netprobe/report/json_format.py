"""JSON: the public contract `netprobe.report/1` (see DESIGN.md and `schema.py`)."""

from __future__ import annotations

import orjson

from netprobe.report.model import Report


def render_json(report: Report) -> str:
    # orjson: ~10x the standard encoder on a 10,000-probe report (10 MB). Its output
    # is UTF-8 without escapes, so names in the user's script stay readable.
    # Non-finite floats become null (the standard encoder would write NaN, not JSON).
    return orjson.dumps(report.to_json(), option=orjson.OPT_INDENT_2).decode() + "\n"
