"""Each report format, rendered from synthetic reports and read back with a
real parser of that format (jsonschema, prometheus_client, ElementTree)."""

from __future__ import annotations

import io
import json
import re
import xml.etree.ElementTree as ET

import jsonschema
import pytest
from prometheus_client.parser import text_string_to_metric_families
from report_builders import make_result, ok_report, sample_report
from rich.console import Console

from netprobe.config import Thresholds
from netprobe.diagnosis.model import Severity, Status
from netprobe.errors import NetprobeError
from netprobe.evidence import Evidence
from netprobe.report import EXTENSIONS, Format, format_for_path, print_table, render
from netprobe.report.schema import REPORT_SCHEMA

ANSI = re.compile(r"\x1b\[")


# -- the enum and the dispatch ---------------------------------------------------

@pytest.mark.parametrize("fmt", list(Format))
def test_every_format_renders_text_ending_in_newline(fmt):
    text = render(sample_report(), fmt)
    assert isinstance(text, str) and text.strip()
    assert text.endswith("\n")


def test_render_accepts_the_format_name_and_rejects_an_unknown_one():
    assert render(ok_report(), "json") == render(ok_report(), Format.JSON)
    with pytest.raises(NetprobeError, match="table, json, prom, junit, nagios, md"):
        render(ok_report(), "yaml")


@pytest.mark.parametrize(("name", "fmt"), [
    ("run.json", Format.JSON), ("node/netprobe.prom", Format.PROM), ("junit.XML", Format.JUNIT),
    ("mail.md", Format.MD), ("out.txt", Format.TABLE), ("check.nagios", Format.NAGIOS),
])
def test_format_for_path_follows_the_extension(name, fmt):
    assert format_for_path(name) == fmt


@pytest.mark.parametrize("name", ["report.yaml", "report", "archive.json.gz"])
def test_format_for_path_names_the_known_extensions(name):
    with pytest.raises(NetprobeError) as err:
        format_for_path(name)
    message = str(err.value)
    assert name in message
    for ext in EXTENSIONS:
        assert ext in message


def test_every_format_is_reachable_by_some_extension():
    assert set(EXTENSIONS.values()) == set(Format)


# -- json -----------------------------------------------------------------------

def test_json_validates_against_the_report_schema():
    for report in (sample_report(), ok_report(), sample_report(Severity.CRITICAL)):
        data = json.loads(render(report, Format.JSON))
        jsonschema.Draft202012Validator(REPORT_SCHEMA).validate(data)
        assert data["status"] == str(report.status)
        assert data["exit_code"] == report.exit_code


def test_the_schema_is_strict_enough_to_reject_a_broken_report():
    data = json.loads(render(sample_report(), Format.JSON))
    validator = jsonschema.Draft202012Validator(REPORT_SCHEMA)
    data["components"][0]["state"] = "sort-of-up"
    assert not validator.is_valid(data)
    data = json.loads(render(sample_report(), Format.JSON))
    del data["probes"][0]["rtt_ms"]
    assert not validator.is_valid(data)
    data = json.loads(render(sample_report(), Format.JSON))
    data["added_by_a_later_version"] = {"fine": True}  # the contract allows added fields
    assert validator.is_valid(data)


def test_json_round_trips_the_evidence():
    report = sample_report()
    data = json.loads(render(report, Format.JSON))
    again = Evidence.from_json(data)
    assert [r.id for r in again.results] == [r.id for r in report.evidence.results]
    assert [r.received for r in again.results] == [r.received for r in report.evidence.results]
    assert [r.error for r in again.results] == [r.error for r in report.evidence.results]


# -- prometheus -------------------------------------------------------------------

def _samples(text: str) -> dict[str, list]:
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append(s)
    return out


def test_prometheus_exposes_probe_component_group_and_run_metrics():
    report = sample_report()
    samples = _samples(render(report, Format.PROM))
    for s in (x for v in samples.values() for x in v):
        assert s.labels["vantage"] == "city-hall-lan"
    success = {s.labels["probe"]: s.value for s in samples["netprobe_probe_success"]}
    assert success["leased-a/icmp"] == 0.0
    assert success["ce-hq/icmp"] == 1.0
    # not measured: no success sample (0 would claim "down"), measured = 0 instead
    assert "intra-dns/dns" not in success
    measured = {s.labels["probe"]: s.value for s in samples["netprobe_probe_measured"]}
    assert measured["intra-dns/dns"] == 0.0 and measured["ce-hq/icmp"] == 1.0
    loss = {s.labels["probe"]: s.value for s in samples["netprobe_probe_loss_ratio"]}
    assert loss["leased-a/icmp"] == 1.0
    assert loss["dc-app/icmp"] == pytest.approx(1 / 3)
    rtt = {(s.labels["probe"], s.labels["stat"]): s.value
           for s in samples["netprobe_probe_rtt_seconds"]}
    assert rtt[("dc-app/tcp/443", "avg")] == pytest.approx(0.200)
    assert rtt[("dc-app/tcp/443", "max")] == pytest.approx(0.220)
    assert ("leased-a/icmp", "avg") not in rtt  # nothing came back: no RTT, not 0

    run_status = samples["netprobe_run_status"][0].value
    assert run_status == report.exit_code == 2
    assert samples["netprobe_run_duration_seconds"][0].value == pytest.approx(2.345)
    assert samples["netprobe_last_run_timestamp_seconds"][0].value == pytest.approx(
        report.evidence.started_at + report.evidence.duration_s)


def _with_results(report, *results):
    from dataclasses import replace

    return replace(report, evidence=replace(report.evidence, results=results))


def test_loss_means_no_answer_and_a_wrong_answer_has_its_own_outcome():
    from netprobe.evidence import ProbeError

    refused = make_result("dc-app/tcp/443", rtts_ms=(), error=ProbeError.REFUSED)
    refused = replace_detail(refused, outcomes=["refused"] * 3)
    mismatch = make_result("intra-dns/dns", rtts_ms=(), error=ProbeError.DNS_MISMATCH)
    mismatch = replace_detail(mismatch, outcomes=["dns_mismatch"] * 3)
    silent = make_result("leased-a/icmp", rtts_ms=(), error=ProbeError.TIMEOUT)
    fine = make_result("ce-hq/icmp")
    report = _with_results(sample_report(), refused, mismatch, silent, fine)
    samples = _samples(render(report, Format.PROM))
    success = {s.labels["probe"]: (s.value, s.labels["outcome"])
               for s in samples["netprobe_probe_success"]}
    assert success == {"dc-app/tcp/443": (0.0, "wrong_answer"),
                       "intra-dns/dns": (0.0, "wrong_answer"),
                       "leased-a/icmp": (0.0, "no_answer"), "ce-hq/icmp": (1.0, "ok")}
    loss = {s.labels["probe"]: s.value for s in samples["netprobe_probe_loss_ratio"]}
    assert loss == {"dc-app/tcp/443": 0.0, "intra-dns/dns": 0.0, "leased-a/icmp": 1.0,
                    "ce-hq/icmp": 0.0}
    perf = _perf(render(report, Format.NAGIOS))
    assert perf["dc-app/tcp/443_loss"][0] == "0" and perf["leased-a_loss"][0] == "100"
    assert json.loads(render(report, Format.JSON))["probes"][0]["loss"] == 0.0


def replace_detail(result, **detail):
    from dataclasses import replace

    return replace(result, detail={**result.detail, **detail})


def test_prometheus_states_and_verdicts_are_one_hot():
    samples = _samples(render(sample_report(), Format.PROM))
    by_component: dict[str, dict[str, float]] = {}
    for s in samples["netprobe_component_state"]:
        by_component.setdefault(s.labels["component"], {})[s.labels["state"]] = s.value
    for name, states in by_component.items():
        assert sum(states.values()) == 1.0, name
        assert set(states) == {"up", "degraded", "down", "unknown"}
    assert by_component["leased-a"]["down"] == 1.0
    assert by_component["intra-dns/dns"]["unknown"] == 1.0
    kinds = {s.labels["component"]: s.labels["kind"] for s in samples["netprobe_component_state"]}
    assert kinds["leased-a"] == "line" and kinds["dc-app/tcp/443"] == "service"

    verdicts = {s.labels["verdict"]: s.value for s in samples["netprobe_group_verdict"]}
    assert sum(verdicts.values()) == 1.0 and verdicts["failed_over"] == 1.0
    active = {s.labels["line"]: s.value for s in samples["netprobe_group_active_line"]}
    assert active == {"leased-a": 0.0, "broadband-b": 1.0}


def test_prometheus_escapes_label_values():
    report = sample_report()
    tricky = 'lab "b"\\n'
    from dataclasses import replace

    samples = _samples(render(replace(report, vantage=tricky), Format.PROM))
    assert samples["netprobe_run_status"][0].labels["vantage"] == tricky


# -- junit --------------------------------------------------------------------------

def _junit(report) -> ET.Element:
    return ET.fromstring(render(report, Format.JUNIT).encode())


def test_junit_counts_match_the_cases():
    report = sample_report()
    root = _junit(report)
    suite = root.find("testsuite")
    cases = suite.findall("testcase")
    # 6 components + 1 group + 1 audit finding (shared risk)
    assert len(cases) == 8
    failures = [c for c in cases if c.find("failure") is not None]
    skipped = [c for c in cases if c.find("skipped") is not None]
    assert {c.get("name") for c in failures} == {"leased-a", "dc-app/tcp/443", "dc-wan"}
    assert [c.get("name") for c in skipped] == ["intra-dns/dns"]
    for element in (root, suite):
        assert int(element.get("tests")) == len(cases)
        assert int(element.get("failures")) == len(failures)
        assert int(element.get("errors")) == 0
    assert int(suite.get("skipped")) == len(skipped)
    assert root.get("skipped") is None  # junit-10 refuses it on <testsuites>


def test_junit_failure_carries_the_finding_and_its_evidence():
    suite = _junit(sample_report()).find("testsuite")
    line = next(c for c in suite.findall("testcase") if c.get("name") == "leased-a")
    assert line.get("classname") == "netprobe.component.line"
    failure = line.find("failure")
    assert failure.get("message").startswith("Line leased-a (carrier-a) is down")
    assert "leased-a/icmp: 0/3 replies, loss 100%, error timeout" in failure.text
    group = next(c for c in suite.findall("testcase") if c.get("classname") == "netprobe.group")
    assert "dc-app/trace" in group.find("failure").text
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert props["status"] == "critical" and props["exit_code"] == "2"


def test_junit_follows_fail_on_critical():
    """Warnings tolerated by --fail-on critical pass, with the note kept."""
    suite = _junit(sample_report(Severity.CRITICAL)).find("testsuite")
    failures = [c.get("name") for c in suite.findall("testcase") if c.find("failure") is not None]
    assert failures == ["leased-a"]
    svc = next(c for c in suite.findall("testcase") if c.get("name") == "dc-app/tcp/443")
    assert "slow" in svc.find("system-out").text


def test_junit_all_up_has_no_failures_and_survives_control_characters():
    from dataclasses import replace

    report = ok_report()
    assert int(_junit(report).get("failures")) == 0
    weird = replace(report, vantage="lab\x07bell <&>")
    root = _junit(weird)  # parses: the control character was replaced
    assert root.find("testsuite").get("hostname") == "lab\ufffdbell <&>"


# -- nagios ---------------------------------------------------------------------------

PERF = re.compile(r"'((?:[^']|'')+)'=([-0-9.]+|U)([a-zA-Z%]*)((?:;[-@~:0-9.]*){0,4})")  # value, then warn;crit;min;max (ranges allowed)


def _perf(text: str) -> dict[str, tuple[str, str, list[str]]]:
    """All perfdata items, from the first line and the long-text section."""
    lines = text.splitlines()
    chunks = []
    if "|" in lines[0]:
        chunks.append(lines[0].split("|", 1)[1])
    seen_bar = False
    for line in lines[1:]:
        if seen_bar:
            chunks.append(line)
        elif "|" in line:
            seen_bar = True
            chunks.append(line.split("|", 1)[1])
    items = {}
    for chunk in chunks:
        rest = chunk.strip()
        while rest:
            m = PERF.match(rest)
            assert m, f"bad perfdata at {rest!r}"
            items[m.group(1)] = (m.group(2), m.group(3), m.group(4).split(";")[1:])
            rest = rest[m.end():].strip()
    return items


def test_nagios_first_line_is_short_and_says_the_status():
    text = render(sample_report(), Format.NAGIOS)
    first = text.splitlines()[0]
    assert first.startswith("NETPROBE CRITICAL - ")
    status = first.split(" | ")[0]
    assert len(status) <= 140
    assert "line_down leased-a" in status
    assert ";" not in status  # Nagios Core would turn it into a colon
    assert render(ok_report(), Format.NAGIOS).startswith("NETPROBE OK - 4/4 components up")


def test_nagios_perfdata_uses_units_and_config_thresholds():
    th = Thresholds.model_validate({"loss": {"warn": "20%", "crit": "80%"},
                                    "rtt": {"warn": "100ms", "crit": "500ms"}})
    perf = _perf(render(sample_report(thresholds=th), Format.NAGIOS))
    assert perf["dc-app/tcp/443_rtt"] == ("200", "ms", ["100", "500", "0"])
    # crit is the inclusive range '@80:': critical at 80% and above
    assert perf["leased-a_loss"] == ("100", "%", ["20", "@80:", "0", "100"])
    assert perf["leased-a_rtt"][0] == "U"  # no reply: undetermined, not 0 ms
    assert perf["intra-dns/dns_loss"][0] == "U"  # not measured
    assert perf["duration"][:2] == ("2.345", "s")
    assert not any(k.startswith("dc-app/trace") for k in perf)


def test_nagios_thresholds_come_from_the_embedded_topology_when_not_given():
    topology = {"defaults": {"thresholds": {"loss": {"warn": 0.05, "crit": 0.5},
                                            "rtt": {"warn": 0.2, "crit": 2.0}}}}
    perf = _perf(render(sample_report(topology=topology), Format.NAGIOS))
    assert perf["ce-hq_rtt"][2] == ["200", "2000", "0"]
    assert perf["ce-hq_loss"][2] == ["5", "@50:", "0", "100"]
    defaults = _perf(render(sample_report(), Format.NAGIOS))
    assert defaults["ce-hq_rtt"][2] == ["150", "1000", "0"]  # the config defaults


def test_nagios_many_findings_keep_the_status_short_and_lose_no_perfdata():
    from dataclasses import replace

    from netprobe.diagnosis.model import ComponentState, Finding, FindingKind, State

    report = sample_report()
    names = [f"endpoint-with-a-long-name-{i:03d}" for i in range(60)]
    results = tuple(make_result(f"{n}/icmp", rtts_ms=(), error=None, sent=3) for n in names)
    findings = tuple(Finding(Severity.CRITICAL, FindingKind.ENDPOINT_DOWN, (n,), f"{n} is down.")
                     for n in names)
    comps = tuple(ComponentState(n, "endpoint", State.DOWN, "no reply") for n in names)
    big = replace(report, evidence=replace(report.evidence, results=results),
                  diagnosis=replace(report.diagnosis, findings=findings, components=comps,
                                    groups=()))
    text = render(big, Format.NAGIOS)
    first = text.splitlines()[0]
    status, perf_text = first.split(" | ")
    assert len(status) <= 140
    assert re.search(r"\+\d+ more", status)
    # every value on the first line: Icinga 2 reads perfdata only from lines with a '|'
    assert all(f"'{n}_loss'=" in perf_text for n in names)
    assert sum("|" in line for line in text.splitlines()) == 1


def test_nagios_a_pipe_in_a_summary_does_not_start_perfdata():
    from dataclasses import replace

    from netprobe.diagnosis.model import Finding, FindingKind

    report = sample_report()
    odd = Finding(Severity.CRITICAL, FindingKind.SERVICE_DOWN, ("a|b",), "a|b is down | badly")
    r = replace(report, diagnosis=replace(report.diagnosis, findings=(odd,)))
    text = render(r, Format.NAGIOS)
    first = text.splitlines()[0]
    assert first.count("|") == 1  # only the perfdata separator
    assert "a/b is down / badly" in text
    assert len([line for line in text.splitlines() if "|" in line]) == 1  # the first only
    assert "ce-hq_rtt" in _perf(text)


# -- markdown ---------------------------------------------------------------------------

def _table_rows(md: str) -> list[list[str]]:
    rows = []
    for line in md.splitlines():
        if line.startswith("|"):
            cells = re.split(r"(?<!\\)\|", line)[1:-1]
            rows.append([c.strip() for c in cells])
    return rows


def test_markdown_has_title_sections_and_well_formed_tables():
    md = render(sample_report(), Format.MD)
    assert md.startswith("# netprobe: CRITICAL (exit 2)\n")
    for heading in ("## Redundancy groups", "## Findings", "## Components", "## Probes"):
        assert heading in md
    blocks = [b for b in md.split("\n\n") if b.startswith("|")]
    assert len(blocks) == 3
    for block in blocks:
        rows = _table_rows(block)
        assert len({len(r) for r in rows}) == 1, block  # every row has the header's width


def test_markdown_escapes_pipes_and_lists_evidence_under_findings():
    md = render(sample_report(), Format.MD)
    assert "no raw socket \\| try root" in md  # the probe message, escaped in its cell
    finding_block = md.split("## Findings")[1].split("## Components")[0]
    assert "**CRITICAL** Line leased-a" in finding_block
    assert "`leased-a/icmp: 0/3 replies, loss 100%, error timeout`" in finding_block
    probes = _table_rows(md.split("## Probes")[1])
    header, _rule, *rows = probes
    assert header[:5] == ["probe", "target", "address", "rx/tx", "loss"]
    tcp = next(r for r in rows if r[0] == "dc-app/tcp/443")
    assert tcp[3:8] == ["3/3", "0%", "180 ms", "200 ms", "220 ms"]


def test_markdown_neutralises_html_in_names():
    from dataclasses import replace

    md = render(replace(sample_report(), vantage="<script>x</script>"), Format.MD)
    assert "\\<script\\>" in md
    assert not re.search(r"(?<!\\)<[A-Za-z/]", md)  # no '<' that could open a tag


# -- table -----------------------------------------------------------------------------------

def _console(width: int, *, terminal: bool = False) -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, width=width, force_terminal=terminal, color_system="standard"
                   if terminal else None), buf


@pytest.mark.parametrize("width", [80, 100])
def test_table_fits_the_width_and_has_no_colour_off_a_terminal(width):
    console, buf = _console(width)
    print_table(sample_report(), console, verbose=True)
    out = buf.getvalue()
    assert not ANSI.search(out)
    assert max(len(line) for line in out.splitlines()) <= width
    assert "CRITICAL (exit 2)" in out
    for name in ("leased-a", "dc-app/tcp/443", "dc-wan"):
        assert name in out
    assert "failed_over" in out and "(preferred" in out  # may wrap at 80 columns
    assert "Probes" in out and "intra-dns/dns" in out


def test_table_colours_on_a_terminal_and_hides_probes_unless_verbose():
    console, buf = _console(100, terminal=True)
    print_table(sample_report(), console)
    out = buf.getvalue()
    assert ANSI.search(out)
    assert "Probes" not in out


def test_table_rendered_to_text_is_plain():
    text = render(sample_report(), Format.TABLE, verbose=True)
    assert not ANSI.search(text)
    assert all(line == line.rstrip() for line in text.splitlines())
    assert "Probes" in text
    assert "No findings." in render(ok_report(), Format.TABLE)


@pytest.mark.parametrize("fmt", [Format.TABLE, Format.MD, Format.NAGIOS, Format.JUNIT])
def test_status_follows_fail_on(fmt):
    """With only warnings, --fail-on critical reports OK (exit 0) in every format."""
    from dataclasses import replace

    from netprobe.diagnosis.model import FindingKind

    report = sample_report()
    warnings_only = tuple(f for f in report.findings
                          if f.severity != Severity.CRITICAL and f.kind != FindingKind.NOT_MEASURED)
    diagnosis = replace(report.diagnosis, findings=warnings_only)
    for fail_on, status in ((Severity.WARNING, Status.WARNING), (Severity.CRITICAL, Status.OK)):
        r = replace(report, diagnosis=diagnosis, fail_on=fail_on,
                    status=diagnosis.status(fail_on))
        assert r.status == status
        text = render(r, fmt)
        assert (str(status).upper() in text) or (f'value="{status}"' in text)


@pytest.mark.parametrize("fmt", list(Format))
def test_an_ambiguous_group_renders_in_every_format_with_its_candidates(fmt):
    import dataclasses

    from netprobe.diagnosis.model import Verdict

    report = sample_report()
    ambiguous = dataclasses.replace(
        report.diagnosis.groups[0], active=None, verdict=Verdict.AMBIGUOUS,
        reason="traffic flows, on leased-a or broadband-b: cannot be told apart",
        candidates=("leased-a", "broadband-b"))
    report = dataclasses.replace(
        report, diagnosis=dataclasses.replace(report.diagnosis, groups=(ambiguous,)))
    text = render(report, fmt)
    if fmt == Format.JSON:
        data = json.loads(text)
        jsonschema.validate(data, REPORT_SCHEMA)
        assert data["groups"][0]["candidates"] == ["leased-a", "broadband-b"]
        assert data["groups"][0]["verdict"] == "ambiguous"
    elif fmt in (Format.TABLE, Format.MD, Format.NAGIOS):
        assert "ambiguous" in text and "leased-a or broadband-b" in text


def test_nagios_ok_names_the_probes_it_could_not_measure():
    from dataclasses import replace

    from netprobe.evidence import ProbeError

    report = ok_report()
    skipped = make_result("dc-app/trace", address="203.0.113.10", error=ProbeError.PERMISSION,
                          message="traces need a raw socket")
    r = replace(report, evidence=replace(report.evidence,
                                         results=(*report.evidence.results, skipped)))
    assert r.status == Status.OK  # nothing depended on the trace
    first = render(r, Format.NAGIOS).splitlines()[0]
    assert first.startswith("NETPROBE OK - 4/4 components up, 1/1 groups nominal, "
                            "1 probe not measured | ")
    assert "not measured" not in render(report, Format.NAGIOS).split(" | ")[0]
