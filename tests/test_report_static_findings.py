"""Static audit findings (shared carrier, one router) do not move check's exit
code, so no machine-read format may treat them as failures either."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from builders import CITY_HALL, healthy_evidence, make_topology
from prometheus_client.parser import text_string_to_metric_families

from netprobe.diagnosis import diagnose
from netprobe.diagnosis.model import STATIC_KINDS, Status
from netprobe.report import Format, render
from netprobe.report.model import build_report


def healthy_report_with_audit_findings():
    topology = make_topology(CITY_HALL)
    evidence = healthy_evidence(topology)
    diagnosis = diagnose(topology, evidence)
    assert any(f.kind in STATIC_KINDS for f in diagnosis.findings)  # the premise
    return build_report("v", "site.yaml", evidence, diagnosis)


def test_junit_has_no_failure_for_a_healthy_run_with_audit_findings():
    report = healthy_report_with_audit_findings()
    assert report.status == Status.OK
    suite = ET.fromstring(render(report, Format.JUNIT)).find("testsuite")
    assert suite.get("failures") == "0"
    audit = [tc for tc in suite.iter("testcase") if tc.get("classname") == "netprobe.audit"]
    assert audit and all(tc.find("system-out") is not None for tc in audit)


def test_prometheus_separates_static_findings():
    report = healthy_report_with_audit_findings()
    families = {f.name: f for f in text_string_to_metric_families(render(report, Format.PROM))}
    samples = families["netprobe_findings"].samples
    live = sum(s.value for s in samples if s.labels["static"] == "false")
    static = sum(s.value for s in samples if s.labels["static"] == "true")
    assert live == 0 and static >= 1
