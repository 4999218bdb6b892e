"""JSON: the public contract `netprobe.report/1` (see DESIGN.md and `schema.py`)."""

from __future__ import annotations

import json

from netprobe.report.model import Report


def render_json(report: Report) -> str:
    # ensure_ascii=False: names and summaries in the user's script stay readable.
    return json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n"
