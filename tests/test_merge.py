"""`netprobe merge`: localisation across vantage points, from real site diagnoses.

Each site's report is made the way `check` makes it (the real diagnosis of
synthetic evidence, then the JSON contract), so the merge reads exactly what a
saved report holds.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from builders import CITY_HALL, make_result, make_topology, with_results

from netprobe.diagnosis import diagnose
from netprobe.diagnosis.merge import (
    CarrierVerdict,
    MergeInputError,
    merge_reports,
    render_merge_markdown,
    render_merge_text,
    site_from_json,
)
from netprobe.diagnosis.model import Severity, State, Status
from netprobe.evidence import ProbeError
from netprobe.plan import build_plan
from netprobe.report.model import build_report

T0 = 1_700_000_000.0

# A branch office of the same city: its own CE (also called `ce-hq`, on another
# address) and its own lines from the same two carriers, to the same data centre.
BRANCH: dict[str, Any] = copy.deepcopy(CITY_HALL)
BRANCH["vantage"] = "branch-1"
BRANCH["devices"]["ce-hq"] = {"address": "192.0.2.65"}
BRANCH["devices"]["dc-edge"]["path"] = ["ce-hq", "br-wan"]
BRANCH["lines"] = {
    "leased-a2": {"device": "ce-hq", "far_end": "198.51.100.17", "carrier": "carrier-a",
                  "group": "br-wan", "priority": 1},
    "broadband-b2": {"device": "ce-hq", "far_end": "198.51.100.21", "carrier": "carrier-b",
                     "group": "br-wan", "priority": 2},
}
BRANCH["groups"] = {"br-wan": {"failback": "auto"}}
for ep in BRANCH["endpoints"].values():
    ep["path"] = ["ce-hq", "br-wan", "dc-edge"]
HALL: dict[str, Any] = {**copy.deepcopy(CITY_HALL), "vantage": "city-hall"}


def site_json(base: dict[str, Any], results: list, *, active: dict[str, str] | None = None,
              started_at: float = T0, traces: bool = True) -> dict[str, Any]:
    """One site's report as `check -o site.json` writes it."""
    topology = make_topology(base)
    evidence = with_results(topology, results, active=active, traces=traces)
    evidence = type(evidence)(evidence.results, started_at, evidence.duration_s)
    report = build_report(topology.vantage, f"{topology.vantage}.yaml", evidence,
                          diagnose(topology, evidence), topology=topology.to_json())
    return json.loads(json.dumps(report.to_json()))


def merged(*reports: dict[str, Any], **kw: Any):
    return merge_reports([site_from_json(r, f"{r['vantage']}.json") for r in reports], **kw)


def kinds(m) -> list[str]:
    return [f.kind for f in m.findings]


def carrier(m, name: str):
    return next(c for c in m.carriers if c.name == name)


def line_cut(line: str) -> list:
    return [make_result(f"{line}/icmp", ok=False)]


def test_healthy_sites_agree() -> None:
    m = merged(site_json(HALL, []), site_json(BRANCH, []))
    assert m.status == Status.OK and m.exit_code == 0
    assert [f for f in m.findings if f.severity != Severity.INFO] == []
    assert {c.name: c.verdict for c in m.carriers} == {"carrier-a": CarrierVerdict.UP,
                                                       "carrier-b": CarrierVerdict.UP}
    shared = {c.name for c in m.components if c.scope == "shared"}
    # dc-edge, dc-app and its services are the same parts; each site's `ce-hq` is its own
    assert {"dc-edge", "dc-app", "dc-app/tcp/443", "intra-dns"} <= shared
    assert "ce-hq" not in shared
    assert {c.scope for c in m.components if c.name == "ce-hq"} == {"city-hall", "branch-1"}


def test_carrier_down_from_every_site_is_the_carrier() -> None:
    hall = site_json(HALL, line_cut("leased-a"), active={"dc-wan": "broadband-b"})
    branch = site_json(BRANCH, line_cut("leased-a2"), active={"br-wan": "broadband-b2"})
    m = merged(hall, branch)
    assert carrier(m, "carrier-a").verdict == CarrierVerdict.DOWN
    assert carrier(m, "carrier-b").verdict == CarrierVerdict.UP
    (f,) = [f for f in m.findings if f.kind == "carrier_down"]
    # both sites failed over to carrier-b: traffic flows, as a site's own report says
    assert f.severity == Severity.WARNING
    assert set(f.components) == {"leased-a", "leased-a2"}
    assert set(f.vantages) == {"city-hall", "branch-1"}
    assert "carrier-a is down for every site" in f.summary
    assert "city-hall:leased-a/icmp" in f.evidence and "branch-1:leased-a2/icmp" in f.evidence
    assert "line_down" not in kinds(m)  # not blamed on either site
    assert m.status == Status.WARNING


def test_carrier_down_is_critical_where_a_site_lost_its_traffic() -> None:
    hall = site_json(HALL, line_cut("leased-a"), active={"dc-wan": "broadband-b"})
    branch = site_json(BRANCH, line_cut("leased-a2") + line_cut("broadband-b2"), traces=False)
    assert branch["groups"][0]["verdict"] == "down"
    m = merged(hall, branch)
    (f,) = [f for f in m.findings if f.kind == "carrier_down"]
    assert f.severity == Severity.CRITICAL and m.status == Status.CRITICAL


def test_line_down_at_one_site_is_that_sites_line() -> None:
    hall = site_json(HALL, line_cut("leased-a"), active={"dc-wan": "broadband-b"})
    m = merged(hall, site_json(BRANCH, []))
    assert carrier(m, "carrier-a").verdict == CarrierVerdict.PARTIAL
    (f,) = [f for f in m.findings if f.kind == "line_down"]
    assert f.vantages == ("city-hall",) and f.components == ("leased-a",)
    assert "branch-1 (leased-a2)" in f.summary and "not the carrier" in f.summary
    assert "carrier_down" not in kinds(m)


def test_only_site_using_a_carrier_cannot_tell_line_from_carrier() -> None:
    branch = copy.deepcopy(BRANCH)
    branch["lines"]["leased-a2"]["carrier"] = "carrier-c"
    m = merged(site_json(HALL, []),
               site_json(branch, line_cut("leased-a2"), active={"br-wan": "broadband-b2"}))
    assert carrier(m, "carrier-c").verdict == CarrierVerdict.AMBIGUOUS
    (f,) = [f for f in m.findings if f.kind == "ambiguous"]
    assert f.vantages == ("branch-1",) and "cannot be told apart" in f.summary


def test_unmeasured_line_is_no_evidence() -> None:
    # The branch could not measure its carrier-a line: the hall's cut is not
    # promoted to a carrier failure, nor blamed on the hall alone.
    hall = site_json(HALL, line_cut("leased-a"), active={"dc-wan": "broadband-b"})
    branch = site_json(BRANCH, [make_result("leased-a2/icmp", error=ProbeError.PERMISSION)],
                       active={"br-wan": "broadband-b2"})
    m = merged(hall, branch)
    c = carrier(m, "carrier-a")
    assert c.verdict == CarrierVerdict.AMBIGUOUS
    (f,) = [f for f in m.findings if f.kind == "ambiguous"]
    assert "branch-1 could not measure" in f.summary
    assert {s.vantage: s.state for s in c.lines} == {"city-hall": State.DOWN,
                                                     "branch-1": State.UNKNOWN}


def test_shared_service_down_everywhere_is_the_service() -> None:
    refused = [make_result("dc-app/tcp/443", error=ProbeError.REFUSED)]
    m = merged(site_json(HALL, refused), site_json(BRANCH, refused))
    (f,) = [f for f in m.findings if f.kind == "service_down"]
    assert f.components == ("dc-app/tcp/443",) and set(f.vantages) == {"city-hall", "branch-1"}
    assert "every site" in f.summary
    svc = next(c for c in m.components if c.name == "dc-app/tcp/443")
    assert svc.state == State.DOWN and svc.scope == "shared"


def test_shared_service_down_from_one_site_is_that_sites_path() -> None:
    refused = [make_result("dc-app/tcp/443", error=ProbeError.REFUSED)]
    m = merged(site_json(HALL, refused), site_json(BRANCH, []))
    (f,) = [f for f in m.findings if f.kind == "site_path_down"]
    assert f.vantages == ("city-hall",)
    assert "answers from branch-1" in f.summary
    assert next(c for c in m.components if c.name == "dc-app/tcp/443").state == State.UP
    assert "service_down" not in kinds(m)


def test_same_name_other_address_is_not_the_same_part() -> None:
    # Both sites call their CE `ce-hq`; the hall's is down, the branch's is up:
    # that is no "site path" finding, it is the hall's own device.
    silent = [make_result(t.id, ok=False) for t in build_plan(make_topology(HALL))
              if t.kind != "trace"]
    hall = site_json(HALL, silent, traces=False)
    assert hall["components"][0] == {**hall["components"][0], "name": "ce-hq", "state": "down"}
    m = merged(hall, site_json(BRANCH, []))
    assert "site_path_down" not in kinds(m)
    (f,) = [f for f in m.findings if f.kind == "device_down"]
    assert f.vantages == ("city-hall",) and "no other site measured it" in f.summary


def test_reports_far_apart_warn() -> None:
    m = merged(site_json(HALL, []), site_json(BRANCH, [], started_at=T0 + 3600))
    (f,) = [f for f in m.findings if f.kind == "stale_report"]
    assert f.severity == Severity.WARNING and "60 min apart" in f.summary
    assert m.status == Status.WARNING
    assert merged(site_json(HALL, []), site_json(BRANCH, [], started_at=T0 + 3600),
                  max_skew_s=7200).status == Status.OK


def test_status_is_the_worst_of_sites_and_findings() -> None:
    branch = site_json(BRANCH, [make_result("intra-dns/dns", error=ProbeError.PERMISSION)])
    assert branch["status"] == "unknown"
    assert merged(site_json(HALL, []), branch).status == Status.UNKNOWN


def test_bad_inputs_name_the_file() -> None:
    hall = site_json(HALL, [])
    with pytest.raises(MergeInputError, match="both from vantage 'city-hall'"):
        merged(hall, copy.deepcopy(hall))
    with pytest.raises(MergeInputError, match="at least two"):
        merged(hall)
    with pytest.raises(MergeInputError, match=r"x\.json: not a netprobe report"):
        site_from_json({"schema": "other"}, "x.json")
    with pytest.raises(MergeInputError, match=r"y\.json: the report is damaged"):
        site_from_json({"schema": "netprobe.report/1", "vantage": "v"}, "y.json")
    other = site_json(BRANCH, [])
    for c in other["components"]:
        if c["name"] == "dc-edge":
            c["kind"] = "endpoint"
    with pytest.raises(MergeInputError, match="'dc-edge' is a device in .* but a endpoint"):
        merged(hall, other)


def test_renderings_carry_the_verdicts() -> None:
    hall = site_json(HALL, line_cut("leased-a"), active={"dc-wan": "broadband-b"})
    branch = site_json(BRANCH, line_cut("leased-a2"), active={"br-wan": "broadband-b2"})
    m = merged(hall, branch)
    text = render_merge_text(m)
    assert "carrier-a" in text and "down" in text and "WARNING (exit 1)" in text
    md = render_merge_markdown(m)
    assert md.startswith("# netprobe merge: WARNING") and "| carrier-a | down |" in md
    data = m.to_json()
    assert data["schema"] == "netprobe.merge/1" and data["exit_code"] == 1
    assert {g["vantage"] for g in data["groups"]} == {"city-hall", "branch-1"}
    assert json.loads(json.dumps(data)) == data


def test_cli_merge(tmp_path: Path) -> None:
    a, b = tmp_path / "hall.json", tmp_path / "branch.json"
    a.write_text(json.dumps(site_json(HALL, line_cut("leased-a"),
                                      active={"dc-wan": "broadband-b"})))
    b.write_text(json.dumps(site_json(BRANCH, line_cut("leased-a2"),
                                      active={"br-wan": "broadband-b2"})))
    out = tmp_path / "merged.json"
    proc = subprocess.run([sys.executable, "-m", "netprobe", "merge", str(a), str(b), "-o",
                           str(out)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr  # both sites failed over: a warning
    assert "carrier-a is down for every site" in proc.stdout
    assert json.loads(out.read_text())["carriers"][0]["verdict"] == "down"
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    proc = subprocess.run([sys.executable, "-m", "netprobe", "merge", str(a), str(bad), "-o",
                           str(tmp_path / "m2.json")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3 and "bad.json:1:2: not a JSON report" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "m2.json").exists()


def test_example_configs_are_two_vantages_of_one_topology() -> None:
    from netprobe.config import load_topology

    configs = Path(__file__).resolve().parent.parent / "configs"
    hall = load_topology(str(configs / "example.yaml"))
    branch = load_topology(str(configs / "branch-example.yaml"))
    assert hall.vantage != branch.vantage
    shared = {"dc-edge", "dc-app", "intra-dns"}
    for name in shared:  # what merge joins: the same name at the same address
        assert hall.components[name].address == branch.components[name].address, name
    carriers = {c.carrier for t in (hall, branch) for c in t.components.values() if c.carrier}
    hall_carriers = {c.carrier for c in hall.components.values() if c.carrier}
    branch_carriers = {c.carrier for c in branch.components.values() if c.carrier}
    assert "carrier-a.example" in hall_carriers & branch_carriers and len(carriers) >= 3
