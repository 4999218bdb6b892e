"""The JUnit file against the strictest reader, Jenkins xUnit's junit-10 schema.

Two copies: Jenkins xUnit's own `junit-10.xsd`, as pytest's source distribution
on PyPI ships it (`make junit-xsd` puts it in `.cache/`; CI does), and
`tests/data/xsd/junit-10.xsd`, our own strict rendering of that published format
(see its header), which also holds offline. libxml2's `xmllint --schema`
validates against each. Test case names must not depend on the topology, so CI
keeps each case's history.
"""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import pytest
from report_builders import ok_report, sample_report

from netprobe.diagnosis.model import Finding, FindingKind, Severity
from netprobe.report import Format, render

OUR_XSD = Path(__file__).parent / "data" / "xsd" / "junit-10.xsd"
JENKINS_XSD = Path(__file__).parent.parent / ".cache" / "junit-10.xsd"
XMLLINT = shutil.which("xmllint")
needs_xmllint = pytest.mark.skipif(XMLLINT is None, reason="xmllint (Debian libxml2-utils) "
                                   "not installed")
SCHEMAS = [
    pytest.param(OUR_XSD, id="ours"),
    pytest.param(JENKINS_XSD, id="jenkins-xunit", marks=pytest.mark.skipif(
        not JENKINS_XSD.is_file(), reason="Jenkins xUnit's junit-10.xsd not fetched: run "
        "`make junit-xsd` (needs PyPI)")),
]


def validate(tmp_path: Path, text: str, xsd: Path) -> subprocess.CompletedProcess[str]:
    target = tmp_path / "junit.xml"
    target.write_text(text, encoding="utf-8")
    return subprocess.run([XMLLINT, "--noout", "--schema", str(xsd), str(target)],
                          capture_output=True, text=True, timeout=30)


@needs_xmllint
@pytest.mark.parametrize("xsd", SCHEMAS)
@pytest.mark.parametrize("fail_on", [Severity.WARNING, Severity.CRITICAL])
def test_junit_validates_against_the_junit_10_schema(tmp_path, fail_on, xsd):
    for report in (sample_report(fail_on), ok_report()):
        done = validate(tmp_path, render(report, Format.JUNIT), xsd)
        assert done.returncode == 0, done.stderr


@needs_xmllint
@pytest.mark.parametrize("xsd", SCHEMAS)
def test_the_schema_refuses_what_jenkins_xunit_refuses(tmp_path, xsd):
    # the file as netprobe wrote it before: a skipped count on <testsuites>
    root = ET.fromstring(render(sample_report(), Format.JUNIT).encode())
    root.set("skipped", "1")
    done = validate(tmp_path, ET.tostring(root, encoding="unicode"), xsd)
    assert done.returncode != 0
    assert "skipped" in done.stderr and "not allowed" in done.stderr


def _names(report) -> set[tuple[str, str]]:
    root = ET.fromstring(render(report, Format.JUNIT).encode())
    return {(tc.get("classname"), tc.get("name")) for tc in root.iter("testcase")}


def test_audit_case_names_do_not_change_with_the_topology():
    report = sample_report()
    audit = [f for f in report.findings if str(f.kind) == "shared_risk"]
    assert audit
    before = {n for n in _names(report) if n[0] == "netprobe.audit"}
    # one more line joins the group's shared risk: the finding's component list grows
    grown = tuple(replace(f, components=(*f.components, "leased-c"))
                  if str(f.kind) == "shared_risk" else f for f in report.findings)
    after = {n for n in _names(replace(report, diagnosis=replace(report.diagnosis,
                                                                 findings=grown)))
             if n[0] == "netprobe.audit"}
    assert before == after
    assert all("," not in name for _, name in before)


def test_two_audit_findings_on_one_anchor_get_distinct_stable_names():
    report = sample_report()
    extra = (Finding(Severity.WARNING, FindingKind.SHARED_RISK, ("dc-wan", "x", "y"), "one."),
             Finding(Severity.INFO, FindingKind.SHARED_RISK, ("dc-wan", "z"), "two."))
    findings = tuple(f for f in report.findings if str(f.kind) != "shared_risk") + extra
    names = sorted(n for c, n in _names(replace(
        report, diagnosis=replace(report.diagnosis, findings=findings))) if c == "netprobe.audit")
    assert names == ["shared_risk dc-wan", "shared_risk dc-wan #2"]
