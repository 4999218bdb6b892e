"""configs/prometheus/alerts.yml, tested by Prometheus' own `promtool`: its
shipped unit tests, and the rules fed with the series netprobe itself writes."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from report_builders import sample_report

from netprobe.diagnosis.model import Verdict
from netprobe.report import Format, render

RULES = Path(__file__).resolve().parent.parent / "configs" / "prometheus" / "alerts.yml"
PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian package "
                                "prometheus) not installed")


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60)


def test_rules_are_valid_and_their_unit_tests_pass():
    done = promtool("check", "rules", RULES.name, cwd=RULES.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    done = promtool("test", "rules", "tests/alerts_test.yml", cwd=RULES.parent)
    assert done.returncode == 0, done.stdout + done.stderr


def _series(prom_text: str, minutes: int) -> list[dict[str, str]]:
    """Every sample of a netprobe .prom file as a promtool input series, held
    for `minutes` (a cron job's file stays the same between runs)."""
    out = []
    for family in text_string_to_metric_families(prom_text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out.append({"series": f"{s.name}{{{labels}}}", "values": f"{s.value:g}x{minutes}"})
    return out


def _alert(name: str, **labels: str) -> dict:
    """The alert promtool should see: the rule's labels plus the series', and its
    annotations with the labels filled in."""
    rule = next(r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]
                if r.get("alert") == name)
    notes = {}
    for key, text in rule.get("annotations", {}).items():
        for label, value in labels.items():
            text = text.replace("{{ $labels." + label + " }}", value)
        notes[key] = text
    return {"exp_labels": {**rule.get("labels", {}), **labels}, "exp_annotations": notes}


def test_the_rules_fire_on_what_netprobe_writes(tmp_path):
    report = sample_report()
    failed = replace(report, diagnosis=replace(report.diagnosis, groups=tuple(
        replace(g, verdict=Verdict.FAILOVER_FAILED, active=None) for g in report.groups)))
    prom = render(failed, Format.PROM)
    shutil.copy(RULES, tmp_path / RULES.name)
    test = {
        "rule_files": [RULES.name],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": _series(prom, 20),
            "alert_rule_test": [
                {"eval_time": "1m", "alertname": "NetprobeFailoverFailed", "exp_alerts": [
                    _alert("NetprobeFailoverFailed", vantage="city-hall-lan", group="dc-wan",
                           verdict="failover_failed")]},
                {"eval_time": "16m", "alertname": "NetprobeNotMeasured", "exp_alerts": [
                    _alert("NetprobeNotMeasured", vantage="city-hall-lan", probe="intra-dns/dns",
                           component="intra-dns/dns", kind="dns")]},
                {"eval_time": "6m", "alertname": "NetprobeComponentDown", "exp_alerts": [
                    _alert("NetprobeComponentDown", vantage="city-hall-lan", component=c.name,
                           kind=c.kind, state="down")
                    for c in failed.components if str(c.state) == "down"]},
                {"eval_time": "6m", "alertname": "NetprobeGroupDown", "exp_alerts": []},
            ],
        }],
    }
    (tmp_path / "generated.test.yml").write_text(yaml.safe_dump(test, sort_keys=False))
    done = promtool("test", "rules", "generated.test.yml", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
