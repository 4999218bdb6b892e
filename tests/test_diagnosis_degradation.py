"""Where loss (and delay) begins: one finding for the segment, not one per endpoint behind it."""

from __future__ import annotations

import copy
import json
import sys

import pytest
from builders import CITY_HALL, make_result, make_topology, with_results

from netprobe.diagnosis import diagnose, rediagnose
from netprobe.diagnosis.degradation import locate_degradation
from netprobe.diagnosis.findings import chance_of_at_least
from netprobe.diagnosis.localize import localize
from netprobe.diagnosis.model import FindingKind, Severity, State, Status
from netprobe.evidence import Evidence
from netprobe.plan import build_plan
from netprobe.report.model import build_report


@pytest.fixture(autouse=True)
def _without_audit(monkeypatch):
    """The static audit has its own tests; here only the live findings count."""
    monkeypatch.setitem(sys.modules, "netprobe.diagnosis.audit", None)


# The namespace lab's shape (configs/lab.yaml): the city hall plus SSH on dc-app
# and a cloud endpoint, all behind ce-hq, dc-wan and dc-edge.
LAB = copy.deepcopy(CITY_HALL)
LAB["endpoints"]["dc-app"]["probes"] = ["icmp", "tcp/443", "tcp/22"]
LAB["endpoints"]["cloud-app"] = {"address": "203.0.113.130", "site": "dc-east",
                                 "path": ["ce-hq", "dc-wan", "dc-edge"], "probes": ["icmp", "tcp/443"]}

DOWNSTREAM = ("dc-edge", "dc-app", "dc-app/tcp/443", "dc-app/tcp/22", "intra-dns", "intra-dns/dns",
              "cloud-app", "cloud-app/tcp/443")


def got(probe_id: str, received: int, sent: int = 3, **kw):
    """A probe that got `received` answers to `sent` attempts."""
    return make_result(probe_id, sent=sent, loss=1 - received / sent, **kw)


def state(d, name):
    return next(c for c in d.components if c.name == name)


def degraded_findings(d):
    return [f for f in d.findings if f.kind == FindingKind.DEGRADED]


# primary-lossy as one lab run saw it: leased-a's own pings 3/3, ce clean, loss behind
PRIMARY_LOSSY = [got("dc-app/icmp", 2), got("dc-app/tcp/443", 2), got("dc-app/tcp/22", 2, sent=8),
                 got("intra-dns/icmp", 1), got("cloud-app/icmp", 2)]


@pytest.fixture
def lab():
    return make_topology(LAB)


def test_primary_lossy_blames_the_line_in_one_finding(lab):
    d = diagnose(lab, with_results(lab, PRIMARY_LOSSY))
    assert d.state_of("leased-a") == State.DEGRADED
    assert d.state_of("ce-hq") == State.UP
    assert all(c.state != State.DOWN for c in d.components)  # loss never makes anything down
    # through leased-a: 3+3+3+3+8+3+3+3+3 = 32 packets, 11 lost; before it: ce-hq's 0/3
    assert state(d, "leased-a").reason == (
        "leased-a (carrier-a) far end 198.51.100.1: loss on 11 of 32 packets (34%) through "
        "leased-a, 0 of 3 on probes that stop before it (ce-hq)")
    [f] = degraded_findings(d)
    assert f.components == ("leased-a",)
    assert f.severity == Severity.WARNING
    assert f.summary.startswith("leased-a (carrier-a) far end 198.51.100.1 is losing packets: "
                                "11/32 lost (34%) on probes through it (dc-app, intra-dns, "
                                "cloud-app and 2 services), while probes that stop at ce-hq lost 0/3")
    # its own 3/3 is said, and so is what the probes cannot separate from it
    assert "its own probe lost 0/3" in f.summary
    assert "cannot tell it apart from dc-edge" in f.summary
    assert {"dc-app/tcp/22", "intra-dns/icmp", "ce-hq/icmp"} <= set(f.evidence)
    # the endpoints behind it do see the loss: degraded, explained, no finding of their own
    for name in ("dc-app", "dc-app/tcp/443", "dc-app/tcp/22", "intra-dns", "cloud-app"):
        assert d.state_of(name) == State.DEGRADED
        assert state(d, name).reason.endswith("; loss explained by leased-a")
    assert not [f for f in d.findings if set(f.components) & set(DOWNSTREAM)]
    assert d.group("dc-wan").verdict.value == "nominal"
    assert d.status() == Status.WARNING


def test_a_lossy_far_end_ping_too_is_folded_into_the_line(lab):
    # other runs: the line's own pings lose too, and dc-edge's
    d = diagnose(lab, with_results(lab, [*PRIMARY_LOSSY, got("leased-a/icmp", 2),
                                         got("dc-edge/icmp", 2)]))
    [f] = degraded_findings(d)
    assert f.components == ("leased-a",)
    assert "13/32 lost (41%)" in f.summary
    assert "its own probe lost" not in f.summary
    assert state(d, "dc-edge").reason.endswith("loss explained by leased-a")


def test_the_line_is_named_when_only_its_own_ping_separates_it_from_the_device_behind(lab):
    # without dc-app, the probes through leased-a lost 2/21 (under warn), those through
    # dc-edge 2/18 (over it): only leased-a's own 3 pings tell the two apart, too few
    d = diagnose(lab, with_results(lab, [got("dc-app/icmp", 2), got("dc-app/tcp/443", 2),
                                         got("cloud-app/icmp", 2), got("cloud-app/tcp/443", 2)]))
    [f] = degraded_findings(d)
    assert f.components == ("leased-a",)
    assert "cannot tell it apart from dc-edge behind it" in f.summary
    assert d.state_of("dc-edge") == State.UP


def test_loss_at_one_endpoint_stays_with_that_endpoint(lab):
    d = diagnose(lab, with_results(lab, [got("dc-app/icmp", 1), got("dc-app/tcp/443", 1),
                                         got("dc-app/tcp/22", 2)]))
    assert d.state_of("leased-a") == State.UP
    assert d.state_of("ce-hq") == State.UP
    assert d.state_of("dc-app") == State.DEGRADED
    [f] = degraded_findings(d)
    assert f.components == ("dc-app",)
    assert f.summary == ("dc-app 203.0.113.10 is losing packets: 5/9 lost (56%) on probes through "
                         "it (dc-app/tcp/443, dc-app/tcp/22), while probes that stop at ce-hq, "
                         "leased-a or dc-edge lost 0/9.")
    assert state(d, "dc-app/tcp/443").reason.endswith("loss explained by dc-app")


def test_loss_on_an_endpoint_s_own_ping_alone_keeps_the_per_component_finding(lab):
    d = diagnose(lab, with_results(lab, [got("dc-app/icmp", 1)]))
    [f] = degraded_findings(d)
    assert f.components == ("dc-app",)
    assert f.summary == "dc-app 203.0.113.10: loss 67% > 10% (1/3, 1.0 ms)."
    assert d.state_of("leased-a") == State.UP


def test_far_end_losing_its_own_pings_is_not_a_lossy_line():
    # the far end drops pings addressed to itself; everything crossing it is clean
    t = make_topology()
    d = diagnose(t, with_results(t, [got("leased-a/icmp", 1)]))
    [f] = degraded_findings(d)
    assert f.summary == "leased-a (carrier-a) far end 198.51.100.1: loss 67% > 10% (1/3, 1.0 ms)."
    assert locate_degradation(t, localize(t, with_results(t, [got("leased-a/icmp", 1)]))).loss == ()


def test_loss_everywhere_blames_the_first_device(lab):
    everything = [got(task.id, 2) for task in build_plan(lab) if task.kind != "trace"]
    d = diagnose(lab, with_results(lab, everything))
    assert d.state_of("ce-hq") == State.DEGRADED
    [f] = degraded_findings(d)
    assert f.components == ("ce-hq",)
    assert "ce-hq 192.0.2.1 is losing packets: 11/33 lost (33%)" in f.summary
    assert "no probe stops before it to compare with; its own probe lost 1/3" in f.summary
    assert "no probe stops before it" in state(d, "ce-hq").reason
    for name in ("leased-a", "broadband-b", *DOWNSTREAM):
        assert d.state_of(name) == State.DEGRADED
        assert state(d, name).reason.endswith("loss explained by ce-hq")


SMALL = {"devices": {"ce-hq": {"address": "192.0.2.1"}},
         "lines": {"leased-a": {"device": "ce-hq", "far_end": "198.51.100.1", "carrier": "carrier-a"}},
         "groups": {},
         "endpoints": {"web": {"address": "203.0.113.80", "path": ["ce-hq", "leased-a"],
                               "probes": ["icmp"]},
                       "api": {"address": "203.0.113.81", "path": ["ce-hq", "leased-a"],
                               "probes": ["icmp"]}}}


def test_too_few_packets_are_not_localised():
    t = make_topology(**SMALL)
    ev = with_results(t, [got("ce-hq/icmp", 1, sent=1), got("leased-a/icmp", 1, sent=1),
                          got("web/icmp", 1, sent=2), got("api/icmp", 1, sent=2)])
    # 5 packets through leased-a, 2 of them lost: too few to place the loss
    assert locate_degradation(t, localize(t, ev)).loss == ()
    assert [s.element for s in locate_degradation(t, localize(t, ev), min_loss_packets=5).loss] \
        == ["leased-a"]
    d = diagnose(t, ev)
    assert d.state_of("leased-a") == State.UP
    assert {f.components for f in degraded_findings(d)} == {("web",), ("api",)}
    assert "web 203.0.113.80: loss 50% > 10% (1/2, 1.0 ms)." in [f.summary for f in d.findings]
    # the same picture with more packets is placed on the line
    more = with_results(t, [got("ce-hq/icmp", 4, sent=4), got("leased-a/icmp", 4, sent=4),
                            got("web/icmp", 2, sent=4), got("api/icmp", 2, sent=4)])
    assert [s.element for s in locate_degradation(t, localize(t, more)).loss] == ["leased-a"]
    assert [f.components for f in degraded_findings(diagnose(t, more))] == [("leased-a",)]


def test_loss_at_a_single_host_is_not_blamed_on_the_path_in_front():
    # leased-a's far end 3/3, web lost 2 of 6: the line or web, which one is not told by one
    # host; the loss stays web's
    t = make_topology(**{**SMALL, "endpoints": {"web": {
        "address": "203.0.113.80", "path": ["ce-hq", "leased-a"], "probes": ["icmp", "tcp/443"]}}})
    d = diagnose(t, with_results(t, [got("web/icmp", 2), got("web/tcp/443", 2)]))
    assert d.state_of("leased-a") == State.UP
    assert d.state_of("ce-hq") == State.UP
    [f] = degraded_findings(d)
    assert f.components == ("web",)
    assert f.summary.startswith("web 203.0.113.80 is losing packets: 2/6 lost (33%)")


def test_the_active_line_of_a_group_is_blamed_not_the_standby(lab):
    # failed over (leased-a still up: failback pending), and broadband-b is lossy
    d = diagnose(lab, with_results(lab, PRIMARY_LOSSY, active={"dc-wan": "broadband-b"}))
    assert d.state_of("broadband-b") == State.DEGRADED
    assert d.state_of("leased-a") == State.UP
    [f] = degraded_findings(d)
    assert f.components == ("broadband-b",)
    assert f.summary.startswith("broadband-b (carrier-b) far end 198.51.100.5 is losing packets")
    assert state(d, "dc-app").reason.endswith("loss explained by broadband-b")
    assert d.group("dc-wan").verdict.value == "failback_pending"


def test_without_traces_the_group_s_unknown_active_line_is_blamed(lab):
    d = diagnose(lab, with_results(lab, PRIMARY_LOSSY, traces=False))
    # neither line is known to carry the traffic: neither is called degraded
    assert d.state_of("leased-a") == State.UP
    assert d.state_of("broadband-b") == State.UP
    [f] = degraded_findings(d)
    assert f.components == ("leased-a", "broadband-b")
    assert f.summary.startswith("the active line of dc-wan (leased-a or broadband-b) is losing "
                                "packets")
    assert state(d, "dc-app").reason.endswith("loss explained by the active line of dc-wan")


def test_a_service_clearly_worse_than_the_line_keeps_its_own_finding(lab):
    ev = with_results(lab, [*PRIMARY_LOSSY[:2], got("dc-app/tcp/22", 1, sent=10), *PRIMARY_LOSSY[3:]])
    d = diagnose(lab, ev)
    by_comp = {f.components: f for f in degraded_findings(d)}
    assert set(by_comp) == {("leased-a",), ("dc-app/tcp/22",)}
    # 9/10 lost where the rest through leased-a lost 5/24: not the line's doing alone
    assert "loss 9/10 is more than the 21% of the other probes through leased-a explains" \
        in by_comp[("dc-app/tcp/22",)].summary
    assert state(d, "dc-app").reason.endswith("loss explained by leased-a")


def test_a_confirmation_round_is_judged_on_its_own_counts(lab):
    # first round 0/3 (which is why the executor asked again), then 2/5
    confirmed = got("dc-app/tcp/22", 2, sent=8,
                    detail={"confirmation": {"first_sent": 3, "sent": 5, "received": 2}})
    worse_alone = got("dc-app/tcp/22", 1, sent=8)  # 7/8 lost with no confirmation round
    ok = diagnose(lab, with_results(lab, [*PRIMARY_LOSSY[:2], confirmed, *PRIMARY_LOSSY[3:]]))
    assert state(ok, "dc-app/tcp/22").reason.endswith("loss explained by leased-a")
    bad = diagnose(lab, with_results(lab, [*PRIMARY_LOSSY[:2], worse_alone, *PRIMARY_LOSSY[3:]]))
    assert "more than" in state(bad, "dc-app/tcp/22").reason


def test_a_filtered_ping_is_not_loss(lab):
    # dc-app drops ICMP while its ports answer: silence is the boolean localisation's business
    d = diagnose(lab, with_results(lab, [make_result("dc-app/icmp", ok=False)]))
    assert locate_degradation(lab, localize(lab, with_results(
        lab, [make_result("dc-app/icmp", ok=False)]))).loss == ()
    assert d.state_of("dc-app") == State.UP
    assert not degraded_findings(d)


def test_heavy_loss_is_never_down(lab):
    heavy = [got(task.id, 1, sent=10) for task in build_plan(lab)
             if task.kind != "trace" and task.target not in ("ce-hq", "broadband-b")]
    d = diagnose(lab, with_results(lab, heavy))
    assert all(c.state in (State.UP, State.DEGRADED) for c in d.components)
    [f] = degraded_findings(d)
    assert f.components == ("leased-a",)
    assert "90%" in f.summary
    assert d.status() == Status.WARNING  # crit is 100%: replies came back


def test_loss_at_crit_keeps_the_critical_severity_of_what_it_explains():
    base = copy.deepcopy(LAB)
    base["defaults"] = {"thresholds": {"loss": {"warn": 0.1, "crit": 0.5}}}
    t = make_topology(base)
    d = diagnose(t, with_results(t, PRIMARY_LOSSY))
    [f] = degraded_findings(d)
    assert f.components == ("leased-a",)
    # intra-dns lost 2/3 (67% >= 50%) on its own probe: the exit code must not improve
    assert f.severity == Severity.CRITICAL
    assert d.status() == Status.CRITICAL


# -- delay ---------------------------------------------------------------------------------------


def slow_behind_leased_a(topology, extra: dict[str, float] | None = None):
    """primary-slow: 200 ms more on leased-a; everything behind it too."""
    extra = extra or {}
    return with_results(topology, [
        make_result(task.id, rtt_ms=201.0 + extra.get(task.id, 0.0)) for task in build_plan(topology)
        if task.kind != "trace" and task.target not in ("ce-hq", "broadband-b")])


def test_primary_slow_blames_the_line_in_one_finding(lab):
    d = diagnose(lab, slow_behind_leased_a(lab))
    assert d.state_of("leased-a") == State.DEGRADED
    [f] = degraded_findings(d)
    assert f.components == ("leased-a",)
    assert f.summary.startswith("leased-a (carrier-a) far end 198.51.100.1 is slow: every probe "
                                "through it took at least 201 ms")
    assert f.summary.endswith("while probes that stop at ce-hq answered in 1.0 ms.")
    assert state(d, "leased-a").reason.endswith(
        "rtt at least 201 ms on all 9 probes through leased-a, 1.0 ms on probes that stop before "
        "it (ce-hq)")
    for name in DOWNSTREAM:
        assert state(d, name).reason.endswith("rtt explained by leased-a")


def test_a_server_slower_than_the_line_explains_keeps_its_own_finding(lab):
    d = diagnose(lab, slow_behind_leased_a(lab, {"cloud-app/tcp/443": 400.0}))
    by_comp = {f.components: f for f in degraded_findings(d)}
    assert set(by_comp) == {("leased-a",), ("cloud-app/tcp/443",)}
    assert "rtt 601 ms is more than the 200 ms leased-a adds" in by_comp[("cloud-app/tcp/443",)].summary


def test_one_fast_probe_through_it_clears_a_segment_of_delay(lab):
    # dc-edge and dc-app's ping are slow, but dc-app's port answers fast: no common delay
    d = diagnose(lab, with_results(lab, [make_result("dc-edge/icmp", rtt_ms=200.0),
                                         make_result("dc-app/icmp", rtt_ms=1500.0)]))
    assert locate_degradation(lab, localize(lab, with_results(lab, []))).delay == ()
    assert {f.components for f in degraded_findings(d)} == {("dc-edge",), ("dc-app",)}


def test_loss_and_delay_of_different_kinds_are_explained_apart(lab):
    # slow line, and intra-dns losing on its own: rtt explained, loss not
    ev = slow_behind_leased_a(lab)
    results = [got("intra-dns/icmp", 1, rtt_ms=201.0) if r.id == "intra-dns/icmp" else r
               for r in ev.results]
    d = diagnose(lab, Evidence(tuple(results), ev.started_at, ev.duration_s))
    by_comp = {f.components: f for f in degraded_findings(d)}
    assert set(by_comp) == {("leased-a",), ("intra-dns",)}
    assert by_comp[("intra-dns",)].summary.endswith("; rtt explained by leased-a.")


# -- pure parts --------------------------------------------------------------------------------


def test_chance_of_at_least():
    assert chance_of_at_least(0, 3, 0.3) == 1.0
    assert chance_of_at_least(3, 3, 0.5) == pytest.approx(0.125)
    assert chance_of_at_least(2, 3, 0.5) == pytest.approx(0.5)
    assert chance_of_at_least(1, 3, 0.0) == 0.0
    assert 0.0 < chance_of_at_least(900, 2000, 0.3) < 1e-10  # big counts do not overflow


@pytest.mark.parametrize("scenario", ["lossy", "slow", "failed over lossy"])
def test_round_trip_through_json_gives_the_same_diagnosis(lab, scenario):
    ev = {"lossy": lambda: with_results(lab, PRIMARY_LOSSY),
          "slow": lambda: slow_behind_leased_a(lab),
          "failed over lossy": lambda: with_results(lab, PRIMARY_LOSSY,
                                                    active={"dc-wan": "broadband-b"})}[scenario]()
    live = diagnose(lab, ev)
    again = diagnose(lab, Evidence.from_json(json.loads(json.dumps(ev.to_json()))))
    assert again == live
    report = build_report(lab.vantage, "site.yaml", ev, live, Severity.WARNING).to_json()
    assert rediagnose(lab, json.loads(json.dumps(report))) == live
