"""configs/grafana/netprobe-dashboard.json: a dashboard Grafana can import.

Grafana itself is not in the package registries this project uses, so the
dashboard is checked against the published dashboard JSON model (the fields
an import needs, panels on the 24-column grid without overlaps, unique ids
and refIds), every query is parsed by Prometheus' own `promtool`, and every
metric a query names is one netprobe writes.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from report_builders import sample_report

from netprobe.report import Format, render

DASHBOARD = Path(__file__).resolve().parent.parent / "configs" / "grafana" / "netprobe-dashboard.json"
PANEL_TYPES = {"stat", "timeseries", "table", "state-timeline", "gauge", "bargauge", "text"}


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def queries(dash: dict) -> list[str]:
    return [t["expr"] for p in dash["panels"] for t in p["targets"]]


def test_dashboard_has_what_an_import_needs():
    dash = dashboard()
    assert dash["title"] and re.fullmatch(r"[A-Za-z0-9_-]{1,40}", dash["uid"])
    assert isinstance(dash["schemaVersion"], int) and dash["schemaVersion"] >= 36
    names = {v["name"] for v in dash["templating"]["list"]}
    assert {"datasource", "vantage"} <= names
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in dash["panels"]:
        assert p["type"] in PANEL_TYPES and p["title"]
        g = p["gridPos"]
        assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24 and g["h"] > 0
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"])
                for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & mine, f"panel {p['title']!r} overlaps another"
        cells |= mine
        refs = [t["refId"] for t in p["targets"]]
        assert refs and len(refs) == len(set(refs))
        assert all(t["datasource"]["uid"] == "${datasource}" for t in p["targets"])


def test_every_query_names_metrics_netprobe_writes():
    written = {m.name for m in text_string_to_metric_families(render(sample_report(), Format.PROM))}
    written |= {s.name for m in text_string_to_metric_families(render(sample_report(), Format.PROM))
                for s in m.samples}
    for expr in queries(dashboard()):
        named = set(re.findall(r"\bnetprobe_[a-z_]+", expr))
        assert named and named <= written, (expr, named - written)


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool (Debian package prometheus) not installed")
def test_every_query_is_valid_promql(tmp_path):
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": expr.replace("$vantage", ".*")}
        for i, expr in enumerate(queries(dashboard()))]}]}
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump(rules))
    done = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
