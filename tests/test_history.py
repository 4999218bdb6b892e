"""The SQLite history: recording, the summary's arithmetic, windows,
migration from version 0, concurrent writers, rendering."""

from __future__ import annotations

import json
import random
import sqlite3

import pytest
from report_builders import T0, ok_report

from netprobe.diagnosis.model import ComponentState, Diagnosis, GroupVerdict, State, Verdict
from netprobe.errors import NetprobeError
from netprobe.evidence import Evidence
from netprobe.history import (
    SCHEMA_VERSION,
    ComponentHistory,
    GroupHistory,
    connect,
    recompute_flags,
    record_run,
    render_history,
    summarize,
)
from netprobe.report import Format, render
from netprobe.report.model import build_report

KINDS = {"ce-hq": "device", "leased-a": "line", "broadband-b": "line", "dc-app": "endpoint",
         "dc-app/tcp/443": "service"}
STEP_S = 60.0


def make_run(t: float, states: dict[str, str],
             groups: dict[str, tuple[str, str | None]] | None = None,
             vantage: str = "city-hall-lan"):
    groups = groups or {}
    components = tuple(ComponentState(n, KINDS.get(n, "endpoint"), State(s), "test")
                       for n, s in states.items())
    verdicts = tuple(GroupVerdict(g, ("leased-a", "broadband-b"), "leased-a", active, Verdict(v),
                                  "test") for g, (v, active) in groups.items())
    evidence = Evidence(results=(), started_at=t, duration_s=1.5)
    return build_report(vantage, "site.yaml", evidence, Diagnosis(components, verdicts, ()))


def one(items, name: str):
    (found,) = [x for x in items if x.name == name]
    return found


# -- a handcrafted sequence ------------------------------------------------------

LINE_SEQUENCE = ["up", "up", "down", "down", "unknown", "down", "up", "degraded", "down", "up",
                 "up", "down", "down"]  # t0 .. t12; the last incident is still open

GROUP_SEQUENCE = [("nominal", "leased-a"), ("nominal", "leased-a"),
                  ("failed_over", "broadband-b"), ("failed_over", "broadband-b"),
                  ("unknown", None), ("failback_pending", "broadband-b"),
                  ("nominal", "leased-a"), ("failover_failed", "leased-a"), ("down", None),
                  ("nominal", "leased-a")]  # t0 .. t9


@pytest.fixture
def handcrafted_db(tmp_path):
    db = tmp_path / "history.db"
    for i, state in enumerate(LINE_SEQUENCE):
        groups = {"dc-wan": GROUP_SEQUENCE[i]} if i < len(GROUP_SEQUENCE) else {}
        record_run(db, make_run(T0 + i * STEP_S, {"leased-a": state, "ce-hq": "up"}, groups))
    return db


def test_line_availability_incidents_recovery_and_flaps(handcrafted_db):
    s = summarize(handcrafted_db)
    assert s.runs == 13
    line = one(s.components, "leased-a")
    assert (line.runs, line.measured, line.unknown) == (13, 12, 1)
    assert line.available == 6  # t0 t1 t6 t7(degraded) t9 t10
    assert line.availability_ratio == pytest.approx(0.5)
    # t2..t5 (the unknown t4 inside neither breaks nor extends it), t8, t11..t12
    assert line.incidents == 3
    assert line.recovered == 2
    assert line.longest_recovery_s == pytest.approx(4 * STEP_S)  # t2 -> t6
    assert line.mean_recovery_s == pytest.approx((4 * STEP_S + STEP_S) / 2)  # and t8 -> t9
    assert line.down_since == pytest.approx(T0 + 11 * STEP_S)
    assert line.flaps == 6  # t2 t6 t7 t8 t9 t11
    assert line.last_state == "down"
    device = one(s.components, "ce-hq")
    assert (device.availability_ratio, device.incidents, device.flaps) == (1.0, 0, 0)
    assert device.mean_recovery_s is None and device.down_since is None


def test_group_verdicts_failovers_and_failbacks(handcrafted_db):
    s = summarize(handcrafted_db)
    (group,) = s.groups
    assert isinstance(group, GroupHistory) and group.kind == "group"
    assert (group.runs, group.measured, group.unknown) == (10, 9, 1)
    assert group.available == 7  # every verdict but failover_failed and down
    assert group.incidents == 1 and group.recovered == 1  # failover_failed t7, down t8
    assert group.longest_recovery_s == pytest.approx(2 * STEP_S)
    assert group.flaps == 6
    assert group.last_state == "nominal"
    # failover_failed with traffic still on leased-a is not a failover;
    # `down` (active line not known) is neither
    assert (group.failovers, group.failbacks) == (1, 1)
    assert [(e.kind, e.at, e.from_line, e.to_line, e.verdict) for e in group.events] == [
        ("failover", T0 + 2 * STEP_S, "leased-a", "broadband-b", "failed_over"),
        ("failback", T0 + 6 * STEP_S, "broadband-b", "leased-a", "nominal"),
    ]


def test_since_window(handcrafted_db):
    until = T0 + 12 * STEP_S
    s = summarize(handcrafted_db, since_s=6 * STEP_S, until=until)  # t6 .. t12
    assert s.runs == 7
    assert s.since == pytest.approx(T0 + 6 * STEP_S) and s.until == until
    line = one(s.components, "leased-a")
    assert (line.runs, line.measured, line.available) == (7, 7, 4)
    assert line.incidents == 2 and line.recovered == 1
    assert line.mean_recovery_s == pytest.approx(STEP_S)
    assert line.flaps == 5  # t6 shows a change from t5, before the window: counted at t6
    (group,) = s.groups  # t6 .. t9
    assert (group.failovers, group.failbacks) == (0, 1)
    assert [e.kind for e in group.events] == ["failback"]


def test_a_window_opening_inside_an_incident_counts_it_from_the_window_start(handcrafted_db):
    s = summarize(handcrafted_db, since_s=4 * STEP_S, until=T0 + 7 * STEP_S)  # t3 .. t7
    line = one(s.components, "leased-a")
    assert line.incidents == 1
    assert line.longest_recovery_s == pytest.approx(3 * STEP_S)  # t3 -> t6, clipped
    empty = summarize(handcrafted_db, since_s=60, until=T0 - 3600)
    assert empty.runs == 0 and empty.components == () and empty.groups == ()


def test_since_defaults_to_a_window_ending_now(handcrafted_db):
    # the runs are in 2023: a one-day window ending now holds none of them
    assert summarize(handcrafted_db, since_s=86400).runs == 0
    assert summarize(handcrafted_db).runs == 13
    with pytest.raises(NetprobeError):
        summarize(handcrafted_db, since_s=-5)


# -- against a reference implementation, in order and out of order ---------------

DOWN = {"component": {"down"}, "group": {"down", "failover_failed"}}


def reference(seq: list[tuple[float, str]], t0: float, t1: float, kind: str) -> dict:
    """The documented definitions, computed naively from (time, state) pairs."""
    seq = sorted(seq)
    down = DOWN[kind]
    window = [(t, s) for t, s in seq if t0 <= t <= t1]
    measured_all = [(t, s) for t, s in seq if s != "unknown"]
    prev_of = {measured_all[i][0]: measured_all[i - 1][1] for i in range(1, len(measured_all))}
    m = [(t, s) for t, s in window if s != "unknown"]
    flaps = sum(1 for t, s in m if t in prev_of and prev_of[t] != s)
    incidents, recoveries, open_since = 0, [], None
    start = None
    for t, s in m:
        if s in down and start is None:
            start, incidents = t, incidents + 1
        elif s not in down and start is not None:
            recoveries.append(t - start)
            start = None
    open_since = start
    return {
        "runs": len(window), "unknown": len(window) - len(m),
        "available": sum(1 for _, s in m if s not in down), "flaps": flaps,
        "incidents": incidents, "recovered": len(recoveries),
        "longest": max(recoveries) if recoveries else None,
        "mean": sum(recoveries) / len(recoveries) if recoveries else None,
        "down_since": open_since, "last": m[-1][1] if m else None,
    }


def observed(h: ComponentHistory) -> dict:
    return {"runs": h.runs, "unknown": h.unknown, "available": h.available, "flaps": h.flaps,
            "incidents": h.incidents, "recovered": h.recovered,
            "longest": h.longest_recovery_s, "mean": h.mean_recovery_s,
            "down_since": h.down_since, "last": h.last_state}


def _random_history(rng: random.Random, n_runs: int):
    states = ["up", "up", "up", "degraded", "down", "down", "unknown"]
    verdicts = [("nominal", "leased-a"), ("nominal", "leased-a"), ("failed_over", "broadband-b"),
                ("failback_pending", "broadband-b"), ("redundancy_lost", "leased-a"),
                ("failover_failed", "leased-a"), ("down", None), ("unknown", None)]
    runs = []
    for i in range(n_runs):
        # sticky states so streaks happen; distinct times, jittered
        t = T0 + i * STEP_S + rng.uniform(0, 30)
        prev = runs[-1][1] if runs else {}
        comp = {n: (prev[n] if prev and rng.random() < 0.6 else rng.choice(states))
                for n in ("leased-a", "dc-app")}
        g = runs[-1][2]["dc-wan"] if runs and rng.random() < 0.6 else rng.choice(verdicts)
        runs.append((t, comp, {"dc-wan": g}))
    return runs


def _compare(db, runs, t0: float, t1: float) -> None:
    import math

    s = summarize(db, since_s=None if math.isinf(t0) else t1 - t0,
                  until=None if math.isinf(t1) else t1)
    for name in ("leased-a", "dc-app"):
        seq = [(t, comp[name]) for t, comp, _ in runs]
        expected = reference(seq, t0, t1, "component")
        if expected["runs"] == 0:
            assert all(c.name != name for c in s.components)
            continue
        got = observed(one(s.components, name))
        assert got == pytest.approx(expected), name
    seq = [(t, g["dc-wan"][0]) for t, _, g in runs]
    expected = reference(seq, t0, t1, "group")
    if expected["runs"]:
        assert observed(one(s.groups, "dc-wan")) == pytest.approx(expected)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_summary_matches_the_reference_even_when_runs_arrive_out_of_order(tmp_path, seed):
    rng = random.Random(seed)
    runs = _random_history(rng, 40)
    in_order, shuffled = tmp_path / "in-order.db", tmp_path / "shuffled.db"
    for t, comp, groups in runs:
        record_run(in_order, make_run(t, comp, groups))
    for t, comp, groups in rng.sample(runs, len(runs)):
        record_run(shuffled, make_run(t, comp, groups))
    for db in (in_order, shuffled):
        _compare(db, runs, -float("inf"), float("inf"))
        for _ in range(3):
            a, b = sorted(rng.uniform(T0 - 100, T0 + 41 * STEP_S) for _ in range(2))
            _compare(db, runs, a, b)


def test_incremental_flags_equal_a_full_recompute(tmp_path):
    rng = random.Random(7)
    runs = _random_history(rng, 40)
    db = tmp_path / "h.db"
    for t, comp, groups in rng.sample(runs, len(runs)):
        record_run(db, make_run(t, comp, groups))
    flags_sql = ("SELECT component_id, started_at, run_id, changed FROM component_states "
                 "ORDER BY 1, 2, 3",
                 "SELECT group_id, started_at, run_id, changed, standby, switched, prev_active "
                 "FROM group_states ORDER BY 1, 2, 3")
    conn = connect(db)
    try:
        incremental = [conn.execute(q).fetchall() for q in flags_sql]
        assert any(row[3] for row in incremental[0])  # there is something to compare
        recompute_flags(conn)
        assert [conn.execute(q).fetchall() for q in flags_sql] == incremental
    finally:
        conn.close()


# -- storage, migration, errors ------------------------------------------------------

def test_record_run_stores_the_run_its_groups_and_findings(tmp_path):
    from report_builders import sample_report

    db = tmp_path / "h.db"
    run_id = record_run(db, sample_report())
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        row = conn.execute("SELECT started_at, duration_s, status, exit_code, vantage, config "
                           "FROM runs WHERE id = ?", (run_id,)).fetchone()
        assert row == (T0, 2.345, "critical", 2, "city-hall-lan", "site.yaml")
        states = dict(conn.execute(
            "SELECT c.name, s.state FROM component_states s JOIN components c "
            "ON c.id = s.component_id"))
        assert states["leased-a"] == "down" and states["intra-dns/dns"] == "unknown"
        assert conn.execute("SELECT verdict, active, preferred FROM group_states").fetchone() == (
            "failed_over", "broadband-b", "leased-a")
        findings = conn.execute("SELECT severity, kind, components FROM findings "
                                "ORDER BY rowid").fetchall()
        assert ("critical", "line_down", '["leased-a"]') in findings
        assert len(findings) == 5
    finally:
        conn.close()


def _v0_db(path, reports) -> None:
    """The version 0 form, made by hand: whole JSON reports, user_version 0."""
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE runs (started_at REAL, report TEXT)")
    for report in reports:
        conn.execute("INSERT INTO runs VALUES (?, ?)",
                     (report.evidence.started_at, render(report, Format.JSON)))
    conn.commit()
    conn.close()


def test_a_version_0_database_is_migrated_on_open(tmp_path):
    db = tmp_path / "old.db"
    # stored out of time order: the migration replays them by time
    states = ["up", "down", "down", "up"]
    reports = [make_run(T0 + i * STEP_S, {"leased-a": s}) for i, s in enumerate(states)]
    _v0_db(db, [reports[2], reports[0], reports[3], reports[1]])
    s = summarize(db)
    assert s.runs == 4
    line = one(s.components, "leased-a")
    assert (line.incidents, line.recovered, line.flaps) == (1, 1, 2)
    assert line.mean_recovery_s == pytest.approx(2 * STEP_S)
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert "runs_v0" not in tables and {"runs", "component_states", "groups"} <= tables
    finally:
        conn.close()
    record_run(db, make_run(T0 + 10 * STEP_S, {"leased-a": "up"}))  # and it takes new runs
    assert summarize(db).runs == 5


def test_a_damaged_version_0_database_is_left_as_it_was(tmp_path):
    db = tmp_path / "old.db"
    _v0_db(db, [make_run(T0, {"leased-a": "up"})])
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO runs VALUES (?, ?)", (T0 + 60, "{not json"))
    conn.commit()
    conn.close()
    with pytest.raises(NetprobeError, match="damaged report"):
        summarize(db)
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 0
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 2
        assert [c[1] for c in conn.execute("PRAGMA table_info(runs)")] == ["started_at", "report"]
    finally:
        conn.close()


def test_files_that_are_not_our_history_are_refused_and_not_changed(tmp_path):
    newer = tmp_path / "newer.db"
    conn = sqlite3.connect(newer)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(NetprobeError, match="newer netprobe"):
        record_run(newer, ok_report())

    foreign = tmp_path / "foreign.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE invoices (id INTEGER)")
    conn.commit()
    conn.close()
    with pytest.raises(NetprobeError, match="invoices"):
        record_run(foreign, ok_report())
    conn = sqlite3.connect(foreign)
    assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master")] == ["invoices"]
    conn.close()

    text = tmp_path / "notes.db"
    text.write_text("this is not a database at all, just some text " * 100)
    with pytest.raises(NetprobeError, match="notes.db"):
        summarize(text)

    with pytest.raises(NetprobeError, match="no such history database"):
        summarize(tmp_path / "missing.db")
    with pytest.raises(NetprobeError, match="does not exist"):
        record_run(tmp_path / "no-dir" / "h.db", ok_report())


# -- concurrent writers -------------------------------------------------------------------

RUNS_PER_WRITER = 15
WRITERS = 4


def _writer(db: str, writer: int, start) -> None:
    start.wait(timeout=30)
    for i in range(RUNS_PER_WRITER):
        # interleaved times: each writer's runs fall between the others'
        t = T0 + (i * WRITERS + writer) * STEP_S
        state = "down" if (i + writer) % 3 == 0 else "up"
        record_run(db, make_run(t, {"leased-a": state, "dc-app": "up"},
                                {"dc-wan": ("nominal", "leased-a")}))


def test_concurrent_writers_all_land_and_the_database_stays_intact(tmp_path):
    import multiprocessing

    db = tmp_path / "shared.db"
    ctx = multiprocessing.get_context("fork")
    start = ctx.Event()
    procs = [ctx.Process(target=_writer, args=(str(db), w, start)) for w in range(WRITERS)]
    for p in procs:
        p.start()
    start.set()  # all at once: fresh database, so they also race to create the schema
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0] * WRITERS
    conn = connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        total = WRITERS * RUNS_PER_WRITER
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == total
        assert conn.execute("SELECT COUNT(*) FROM component_states").fetchone()[0] == 2 * total
        assert conn.execute("SELECT COUNT(*) FROM components").fetchone()[0] == 2
        flags = conn.execute("SELECT * FROM component_states ORDER BY 1, 2, 3").fetchall()
        recompute_flags(conn)  # arrivals interleaved out of time order: flags still exact
        assert conn.execute("SELECT * FROM component_states ORDER BY 1, 2, 3").fetchall() == flags
    finally:
        conn.close()
    line = one(summarize(db).components, "leased-a")
    assert line.runs == total and line.incidents > 0


# -- rendering ----------------------------------------------------------------------------

def test_render_history_table_json_and_markdown(handcrafted_db):
    s = summarize(handcrafted_db)
    data = json.loads(render_history(s, "json"))
    assert data["runs"] == 13
    line = next(c for c in data["components"] if c["name"] == "leased-a")
    assert line["availability_ratio"] == 0.5 and line["incidents"] == 3
    assert line["down_since"].startswith("2023-11-14T")
    assert [e["kind"] for e in data["groups"][0]["events"]] == ["failover", "failback"]

    table = render_history(s, "table")
    assert "\x1b[" not in table
    assert max(len(x) for x in table.splitlines()) <= 100
    assert "leased-a" in table and "50.000%" in table and "failover" in table
    assert "2m30s" in table and "4m00s" in table  # MTTR and longest recovery
    assert "leased-a: down since 2023-11-14 22:24Z, not recovered" in table

    md = render_history(s, "md")
    assert md.startswith("# netprobe history")
    rows = [x for x in md.splitlines() if x.startswith("|")]
    assert any(r.startswith("| leased-a | line | 50.000% |") for r in rows)

    with pytest.raises(NetprobeError, match="table, json, md"):
        render_history(s, "prom")


def test_availability_is_never_rounded_up_to_100_percent(tmp_path):
    from netprobe.history import _pct

    assert _pct(0.999999) == "99.999%"
    assert _pct(1.0) == "100.000%"
    assert _pct(None) == "-"


def _open_at_once(path: str, barrier, results) -> None:
    from netprobe.history import connect as open_history

    barrier.wait(timeout=30)
    try:
        open_history(path).close()
        results.put("ok")
    except Exception as exc:  # the assertion below shows what went wrong
        results.put(repr(exc))


def test_many_processes_creating_the_same_database_at_once_all_succeed(tmp_path):
    # SQLite does not wait on a busy lock for the switch to WAL on a fresh file:
    # without a retry, some of these openers fail with "database is locked".
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    outcomes = []
    for trial in range(10):
        path = str(tmp_path / f"fresh{trial}.db")
        barrier, results = ctx.Barrier(6), ctx.Queue()
        procs = [ctx.Process(target=_open_at_once, args=(path, barrier, results))
                 for _ in range(6)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        outcomes += [results.get(timeout=10) for _ in procs]
    assert outcomes == ["ok"] * 60, [o for o in outcomes if o != "ok"]


def test_redundancy_lost_without_a_known_active_line_is_no_failback(tmp_path):
    # run 1: failed over to broadband-b; run 2: a standby is down and no trace told
    # which line carries traffic. Nobody saw traffic return to leased-a.
    db = tmp_path / "h.db"
    record_run(db, make_run(T0, {"leased-a": "up"}, {"dc-wan": ("nominal", "leased-a")}))
    record_run(db, make_run(T0 + 60, {"leased-a": "down"},
                            {"dc-wan": ("failed_over", "broadband-b")}))
    record_run(db, make_run(T0 + 120, {"leased-a": "up"}, {"dc-wan": ("redundancy_lost", None)}))
    (group,) = summarize(db).groups
    assert (group.failovers, group.failbacks) == (1, 0)


# -- several vantage points in one database ---------------------------------------

@pytest.fixture
def two_vantage_db(tmp_path):
    """The city hall lost dc-app for two runs; the branch never did; each has its own line."""
    db = tmp_path / "sites.db"
    hall = ["up", "down", "down", "up"]
    for i, state in enumerate(hall):
        record_run(db, make_run(T0 + i * STEP_S, {"dc-app": state, "leased-a": "up"},
                                vantage="city-hall"))
        record_run(db, make_run(T0 + i * STEP_S + 5, {"dc-app": "up", "leased-a2": "up"},
                                vantage="branch-1"))
    return db


def test_runs_of_several_vantages_are_kept_apart(two_vantage_db):
    s = summarize(two_vantage_db)
    assert s.runs == 8
    assert {(c.vantage, c.name) for c in s.components} == {
        ("city-hall", "dc-app"), ("city-hall", "leased-a"), ("branch-1", "dc-app"),
        ("branch-1", "leased-a2")}
    hall = next(c for c in s.components if (c.vantage, c.name) == ("city-hall", "dc-app"))
    branch = next(c for c in s.components if (c.vantage, c.name) == ("branch-1", "dc-app"))
    assert (hall.incidents, hall.availability_ratio) == (1, 0.5)
    assert (branch.incidents, branch.availability_ratio) == (0, 1.0)


def test_history_side_by_side(two_vantage_db):
    s = summarize(two_vantage_db)
    text = render_history(s, "table", side_by_side=True)
    (row,) = [ln for ln in text.splitlines() if ln.startswith("dc-app")]
    # one row, the branch's column first (vantages sorted), then the city hall's
    assert row.index("100.000%, 0 incidents, up") < row.index("50.000%, 1 incident, up")
    assert "Components by vantage" in text and "(city-hall)" not in text
    (line_a,) = [ln for ln in text.splitlines() if ln.startswith("leased-a ")]
    assert line_a.split()[2] == "-"  # the branch has no leased-a
    md = render_history(s, "md", side_by_side=True)
    assert "| name | kind | branch-1 | city-hall |" in md
    data = json.loads(render_history(s, "json", side_by_side=True))
    (app,) = [x for x in data["side_by_side"] if x["name"] == "dc-app"]
    assert app["vantages"]["city-hall"]["incidents"] == 1
    assert app["vantages"]["branch-1"]["availability_ratio"] == 1.0
