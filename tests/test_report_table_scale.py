"""The table of a site of thousands: what is up is counted, what is not is
listed (worst first, capped), and every row is still in -v and the JSON."""

from __future__ import annotations

import json
import re

from report_builders import T0, component, make_result

from netprobe.diagnosis.model import Diagnosis, Finding, FindingKind, Severity, State
from netprobe.evidence import Evidence
from netprobe.report import Format, render
from netprobe.report.model import build_report
from netprobe.report.table import FULL_LIST_MAX, MAX_FINDING_ROWS, MAX_NOT_UP_ROWS, render_table


def site_of(n: int, down: int, unknown: int, warnings: int):
    """n endpoints, each with a service; `down` endpoints down, `unknown` unknown."""
    components, results, findings = [], [], []
    for i in range(n):
        name = f"ep{i:05d}"
        state = State.DOWN if i < down else State.UNKNOWN if i < down + unknown else State.UP
        components.append(component(name, "endpoint", state, f"{name} reason-{state}"))
        components.append(component(f"{name}/tcp/443", "service", State.UP))
        results.append(make_result(f"{name}/icmp"))
        if state == State.DOWN:
            findings.append(Finding(Severity.CRITICAL, FindingKind.ENDPOINT_DOWN, (name,),
                                    f"{name} does not answer."))
    findings += [Finding(Severity.WARNING, FindingKind.DEGRADED, (f"ep{i:05d}",),
                         f"ep{i:05d} is slow.") for i in range(warnings)]
    # config order puts an unknown first: the list must still show the down ones first
    components.insert(0, components.pop(2 * down))
    return build_report("big", "site.yaml", Evidence(tuple(results), T0, 1.0),
                        Diagnosis(tuple(components), (), tuple(findings)))


def test_a_large_site_counts_what_is_up_and_lists_what_is_not_worst_first():
    report = site_of(3000, down=120, unknown=30, warnings=50)
    text = render_table(report)
    flat = " ".join(text.split())
    assert "5,850 of 6,000 up (3,000 services, 2,850 endpoints); 150 not: 120 down, 30 unknown" \
        in flat
    listed = re.findall(r"^(ep\d{5}) +endpoint +(\w+)", text, re.M)
    assert len(listed) == MAX_NOT_UP_ROWS
    assert [state for _, state in listed] == ["down"] * MAX_NOT_UP_ROWS  # worst first
    assert "... and 50 more not up (20 down, 30 unknown)" in flat
    assert "ep02999" not in text  # an up endpoint is counted, not listed
    # findings: the first MAX_FINDING_ROWS, worst first, and a count of the rest
    assert len(re.findall(r"^critical ", text, re.M)) == MAX_FINDING_ROWS
    assert "... and 70 more findings (20 critical, 50 warning)" in flat


def test_every_row_is_still_in_verbose_and_in_the_json():
    report = site_of(300, down=120, unknown=30, warnings=0)
    verbose = render_table(report, verbose=True)
    assert len(re.findall(r"^ep\d{5} +endpoint", verbose, re.M)) == 300
    data = json.loads(render(report, Format.JSON))
    assert len(data["components"]) == 600 and len(data["findings"]) == 120


def test_a_small_site_lists_every_component():
    n = FULL_LIST_MAX // 2  # two components each: just at the limit
    report = site_of(n, down=1, unknown=0, warnings=0)
    text = render_table(report)
    assert len(re.findall(r"^ep\d{5}", text, re.M)) == 2 * n
    assert " up (" not in text


def test_a_large_healthy_site_is_two_lines():
    text = render_table(site_of(5000, down=0, unknown=0, warnings=0))
    assert "10,000 of 10,000 up (5,000 endpoints, 5,000 services); every component is up" in text
    assert len(text.splitlines()) < 10
