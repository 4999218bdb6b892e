"""The drill's judgement on synthetic timelines: pure, no network.

A timeline is written as strings, one character per cycle:
  states  U up, G degraded (slow), D down (lost), ? not measured
  paths   a leased-a, b broadband-b, . no hop answered
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netprobe.diagnosis.model import Severity, State, Status
from netprobe.watch.report import build_drill_report, report_from_json, summary_lines
from netprobe.watch.summary import DrillVerdict, down_runs, measured, summarize
from netprobe.watch.timeline import (
    Cycle,
    EventKind,
    GroupInfo,
    Lane,
    LaneKind,
    Route,
    Sample,
    Timeline,
    build_events,
)

INTERVAL = 0.2
STATE = {"U": State.UP, "G": State.DEGRADED, "D": State.DOWN, "?": State.UNKNOWN}
LINE = {"a": "leased-a", "b": "broadband-b", ".": None}


def make_timeline(pref: str, standby: str | None = None, app: str | None = None,
                  path: str | None = None, failback: str = "auto",
                  skipped: dict[int, int] | None = None) -> Timeline:
    n = len(pref)
    standby = standby or "U" * n
    app = app or "U" * n
    path = path or "a" * n
    assert len(standby) == len(app) == len(path) == n
    lanes = (Lane("leased-a", LaneKind.LINE, "leased-a/icmp", ("dc-wan",)),
             Lane("broadband-b", LaneKind.LINE, "broadband-b/icmp", ("dc-wan",)),
             Lane("dc-app", LaneKind.ENDPOINT, "dc-app/icmp", ("dc-wan",)))
    group = GroupInfo("dc-wan", ("leased-a", "broadband-b"), failback, ("dc-app",))
    cycles = []
    for i in range(n):
        def sample(lane: str, ch: str) -> Sample:
            state = STATE[ch]
            ok = state in (State.UP, State.DEGRADED)
            return Sample(lane, state, (250.0 if ch == "G" else 2.0) if ok else None,
                          0 if state == State.UNKNOWN else 1, 1 if ok else 0,
                          "timeout" if state == State.DOWN else
                          "permission" if state == State.UNKNOWN else None)
        t = i * INTERVAL
        cycles.append(Cycle(i, t, 1_700_000_000.0 + t, 0.01,
                            (sample("leased-a", pref[i]), sample("broadband-b", standby[i]),
                             sample("dc-app", app[i])),
                            (Route("dc-wan", "dc-app", LINE[path[i]]),),
                            (skipped or {}).get(i, 0)))
    return Timeline(INTERVAL, 1000.0, 1_700_000_000.0, lanes, (group,), tuple(cycles))


def judge(tl: Timeline, failover_window_s: float = 1.0, failback_window_s: float = 1.0):
    (summary,) = summarize(tl, failover_window_s, failback_window_s)
    return summary


def test_failover_and_failback_times_are_measured_from_the_first_lost_probe():
    #                   0123456789012345678901234
    tl = make_timeline(pref="UUUDDDDDDDDDUUUUUUUUUUUUU",
                       app="UUUDDDDUUUUUUUUUUUUUUUUUU",
                       path="aaa....bbbbbbbbbbbaaaaaaa")
    s = judge(tl)
    assert s.verdict == DrillVerdict.FAILBACK_DONE
    assert s.matches_policy is True and s.status == Status.OK
    (ep,) = s.episodes
    assert ep.first_loss_s == pytest.approx(3 * INTERVAL)
    assert ep.switch_at_s == pytest.approx(7 * INTERVAL)
    assert ep.switch_over_s == pytest.approx(4 * INTERVAL)
    assert ep.switched_to == "broadband-b"
    assert ep.preferred_back_s == pytest.approx(12 * INTERVAL)
    assert ep.failback_s == pytest.approx(6 * INTERVAL)  # back at 12, path at 18
    (outage,) = ep.outages
    assert outage.lane == "dc-app"
    assert outage.lost_probes == 4
    assert outage.outage_s == pytest.approx(4 * INTERVAL)  # first failure to first answer
    assert outage.last_failure_s == pytest.approx(6 * INTERVAL)
    assert ep.restore_s == pytest.approx(4 * INTERVAL)
    assert [(p.from_line, p.to_line) for p in s.path_changes] == \
        [(None, "leased-a"), ("leased-a", "broadband-b"), ("broadband-b", "leased-a")]
    # the bracket: the old line was last seen at cycle 2, the new one first at 7
    assert s.path_changes[1].last_seen_before_s == pytest.approx(2 * INTERVAL)


def test_path_never_changing_while_endpoints_fail_is_a_failed_failover():
    tl = make_timeline(pref="UUUDDDDDDDDDDDDD",
                       app="UUUDDDDDDDDDDDDD",
                       path="aaa.............")
    s = judge(tl, failover_window_s=1.0)
    assert s.verdict == DrillVerdict.FAILOVER_FAILED
    assert s.matches_policy is False
    assert s.status == Status.CRITICAL
    (ep,) = s.episodes
    assert ep.switch_at_s is None and ep.switch_over_s is None
    assert ep.outages[0].recovered_s is None  # still failing at the end
    report = build_drill_report(tl, "site.yaml", "office", failover_window_s=1.0)
    assert report.exit_code == 2
    assert any("failover_failed" in r for r in report.reasons)


def test_a_drill_that_ends_inside_the_failover_window_is_inconclusive():
    tl = make_timeline(pref="UUUUUUUDDD", app="UUUUUUUDDD", path="aaaaaaa...")
    s = judge(tl, failover_window_s=5.0)
    assert s.verdict == DrillVerdict.INCONCLUSIVE
    assert s.status == Status.UNKNOWN
    assert "within the failover window" in s.reason


def test_preferred_back_before_failover_was_due_is_a_brief_outage():
    tl = make_timeline(pref="UUUDDDUUUUUU", app="UUUDDDUUUUUU", path="aaa...aaaaaa")
    s = judge(tl, failover_window_s=2.0)
    assert s.verdict == DrillVerdict.BRIEF_OUTAGE
    assert s.status == Status.WARNING


def test_single_lost_probe_is_noise_not_an_episode():
    tl = make_timeline(pref="UUUUDUUUUUUU")
    s = judge(tl)
    assert s.verdict == DrillVerdict.STEADY and s.episodes == ()
    assert s.status == Status.OK


@pytest.mark.parametrize(("policy", "matches", "status"),
                         [("auto", False, Status.WARNING), ("manual", True, Status.OK)])
def test_failback_pending_is_judged_against_the_policy(policy, matches, status):
    tl = make_timeline(pref="UUDDDDDUUUUUUUUUUUUU",
                       app="UUDDUUUUUUUUUUUUUUUU",
                       path="aa..bbbbbbbbbbbbbbbb", failback=policy)
    s = judge(tl, failback_window_s=1.0)  # preferred back 13 cycles = 2.6 s: beyond it
    assert s.verdict == DrillVerdict.FAILBACK_PENDING
    assert s.matches_policy is matches
    assert s.status == status


def test_failback_pending_within_its_window_is_not_judged_yet():
    tl = make_timeline(pref="UUDDDDDUUU", app="UUDDUUUUUU", path="aa..bbbbbb")
    s = judge(tl, failback_window_s=30.0)
    assert s.verdict == DrillVerdict.FAILBACK_PENDING and s.matches_policy is None


def test_still_failed_over_at_the_end_is_a_warning_that_critical_gating_lets_pass():
    tl = make_timeline(pref="UUDDDDDDDD", app="UUDDUUUUUU", path="aa..bbbbbb")
    s = judge(tl)
    assert s.verdict == DrillVerdict.FAILED_OVER and s.matches_policy is True
    assert build_drill_report(tl, "c", "v").status == Status.WARNING
    assert build_drill_report(tl, "c", "v", Severity.CRITICAL).status == Status.OK


def test_every_line_down_is_group_down():
    tl = make_timeline(pref="UUDDDDDDDDDD", standby="UUDDDDDDDDDD", app="UUDDDDDDDDDD",
                       path="aa..........")
    s = judge(tl)
    assert s.verdict == DrillVerdict.DOWN and s.status == Status.CRITICAL


def test_endpoints_recovering_without_a_seen_path_change_still_count_as_failover():
    # No hop check answered at all (say, no privilege): the endpoints coming
    # back while the preferred line is still down are the proof traffic moved.
    tl = make_timeline(pref="UUDDDDDDDDDDDD", app="UUDDDUUUUUUUUU", path="..............")
    s = judge(tl)
    assert s.verdict == DrillVerdict.FAILED_OVER
    assert "no hop check saw" in s.reason


def test_a_controller_quicker_than_our_probe_gives_a_zero_switch_over():
    tl = make_timeline(pref="UUUDDDDDDUUUU", app="UUUUUUUUUUUUU", path="aaabbbbbbbaaa")
    (ep,) = judge(tl).episodes
    assert ep.switch_over_s == pytest.approx(0.0)
    assert ep.failback_s == pytest.approx(INTERVAL)


def test_preferred_down_when_the_watch_began_has_no_switch_over_time():
    tl = make_timeline(pref="DDDDDDUUUU", app="UUUUUUUUUU", path="bbbbbbbaaa")
    s = judge(tl)
    (ep,) = s.episodes
    assert ep.began_before_watch
    assert ep.switch_over_s is None
    assert s.verdict == DrillVerdict.FAILBACK_DONE
    assert ep.failback_s == pytest.approx(INTERVAL)


def test_unmeasured_cycles_neither_prove_up_nor_down():
    series = [(i * 0.2, Sample("x", STATE[c])) for i, c in enumerate("DD??DDU")]
    ms = measured(series)
    assert down_runs(ms, merge_up=0) == [(0, 3)]


def test_events_read_like_the_operator_log():
    tl = make_timeline(pref="UUUDDDDDDUUUUUU", app="UUUDDDUUUUUUUUU",
                       path="aaa...bbbbbbaaa", skipped={4: 1})
    texts = [e.text for e in build_events(tl)]
    assert "leased-a far end stopped answering" in texts
    assert "dc-app stopped answering" in texts
    assert "traffic to dc-app moved to broadband-b" in texts
    assert "dc-app answering again after 600 ms (3 lost)" in texts
    assert "traffic to dc-app moved to leased-a" in texts
    assert any(t.startswith("slow cycle") and "1 slot(s) skipped" in t for t in texts)
    report = build_drill_report(tl, "c", "v")
    markers = [e for e in report.events if e.kind in (EventKind.SWITCH_OVER, EventKind.FAILBACK)]
    assert [e.kind for e in markers] == [EventKind.SWITCH_OVER, EventKind.FAILBACK]
    assert markers[0].value_s == pytest.approx(3 * INTERVAL)
    assert markers[0].line().endswith("switch-over to broadband-b took 0.60 s after the first "
                                      "lost probe on leased-a")


def test_report_round_trips_through_json():
    tl = make_timeline(pref="UUUDDDDDDUUUUUU", app="UUUDGDUUUUUUUUU", path="aaa...bbbbbbaaa")
    report = build_drill_report(tl, "site.yaml", "office", failover_window_s=3.0)
    data = json.loads(json.dumps(report.to_json()))
    again = report_from_json(data)
    assert again.to_json() == report.to_json()
    assert data["schema"] == "netprobe.drill/1"
    assert data["groups"][0]["episodes"][0]["switch_over_s"] == pytest.approx(0.6)
    assert summary_lines(again)[0].startswith("drill: 3.00 s at 200 ms intervals, 15 cycles")


@settings(max_examples=150, deadline=None)
@given(st.text("UDG?", min_size=1, max_size=40), st.data())
def test_any_timeline_gets_a_verdict_and_sane_times(pref, data):
    n = len(pref)
    app = data.draw(st.text("UD?", min_size=n, max_size=n))
    path = data.draw(st.text("ab.", min_size=n, max_size=n))
    tl = make_timeline(pref=pref, app=app, path=path)
    s = judge(tl)
    assert s.verdict in DrillVerdict
    end = tl.t_end_s
    for ep in s.episodes:
        assert 0 <= ep.first_loss_s < end
        if ep.switch_over_s is not None:
            assert -2 * INTERVAL - 1e-9 <= ep.switch_over_s < end
        if ep.failback_s is not None:
            assert ep.failback_at_s is not None and ep.switch_at_s is not None
            assert ep.failback_at_s >= ep.switch_at_s
        for o in ep.outages:
            assert o.first_failure_s <= o.last_failure_s
            assert o.outage_s >= o.last_failure_s - o.first_failure_s - 1e-9
            assert o.lost_probes >= 1
