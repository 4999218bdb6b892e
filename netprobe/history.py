"""Run history in SQLite: append each run, then summarise availability,
incidents, time to recover, flaps, failovers and failbacks.

Storage (schema version 1, in `PRAGMA user_version`):
- `runs`: one row per run (time, duration, status, vantage, config);
- `components` / `component_states`: a name dictionary, then one row per
  component per run, keyed (component, time, run) so a component's history
  is one ordered range of the primary key;
- `groups` / `group_states`: each redundancy group's verdict and active line
  per run;
- `findings`: kind, severity, components (a JSON list) and summary.

Each state row also carries `changed`: 1 when its state differs from the
previous measured state of the same component (unknown runs are skipped).
`record_run` keeps it right with two index seeks, also when a run arrives
out of time order (it then corrects the one row after it). Group rows carry
`standby` (traffic on a standby line: 1, on the preferred line: 0, not known:
NULL) and `switched` (standby differs from the previous known value).
So `summarize` counts in one scan in primary-key order and runs its window
functions (LAG to pair incident starts with recoveries) only over the rows
where something changed: 100,000 runs x 20 components take 1.2-1.6 s on a
2-core machine (bench/history_bench.py).
`recompute_flags` rebuilds the flags from scratch with window functions
(after a bulk load, and as the reference in the tests).

Version 0 is the first form, one row per run holding the whole JSON report
(`runs(started_at, report)`); `migrate` turns it into version 1. Each step in
`MIGRATIONS` moves one version up inside one write transaction, so a later
schema change is one more function. A new file starts at version 0 with no
tables and takes the same path.

Concurrency: WAL journal, a busy timeout, and `BEGIN IMMEDIATE` for every
write, so two cron jobs finishing at once both land, one after the other.

Definitions used by `summarize`, per component and per group (a group's
verdict plays the part of its state):
- measured runs exclude `unknown`; availability = available / measured, where
  available is up or degraded (groups: any verdict but down, failover_failed);
- an incident is a maximal streak of consecutive measured down runs (groups:
  down or failover_failed); unknown runs inside a streak neither break nor
  extend it. One already under way when the window opens counts from the
  window's first measured run;
- time to recover runs from the first down run of an incident to the first
  following measured run that is available again; an incident still open at
  the end of the window has no recovery time and shows as `down_since`;
- flaps = state changes between consecutive measured runs, counted at the run
  that shows the new state (so a change at the window's first run counts);
- a failover is a run whose traffic is on a standby line (active != preferred,
  or verdict failed_over / failback_pending) after a run on the preferred
  line; a failback is the reverse.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from netprobe.errors import NetprobeError

SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 30.0
MAX_EVENTS_PER_GROUP = 200  # the newest kept per group; the counts are always complete

PathLike = str | os.PathLike[str]


class HistoryError(NetprobeError):
    """The history database cannot be used: the message says why and what to do."""


# -- schema and migrations ---------------------------------------------------

_SCHEMA_V1 = """
CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    started_at REAL NOT NULL,            -- seconds since the epoch
    duration_s REAL NOT NULL,
    status TEXT NOT NULL,                -- ok | warning | critical | unknown
    exit_code INTEGER NOT NULL,
    vantage TEXT NOT NULL,
    config TEXT NOT NULL,
    interrupted INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX runs_by_time ON runs (started_at);
CREATE TABLE components (
    id INTEGER PRIMARY KEY,
    vantage TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,                  -- device | line | endpoint | service
    UNIQUE (vantage, name)
);
CREATE TABLE component_states (
    component_id INTEGER NOT NULL REFERENCES components (id),
    started_at REAL NOT NULL,            -- the run's time, copied: see the module doc
    run_id INTEGER NOT NULL REFERENCES runs (id),
    state TEXT NOT NULL CHECK (state IN ('up', 'degraded', 'down', 'unknown')),
    changed INTEGER NOT NULL DEFAULT 0,  -- differs from the previous measured state
    PRIMARY KEY (component_id, started_at, run_id)
) WITHOUT ROWID;
CREATE INDEX component_changes ON component_states (component_id, started_at, run_id, state)
    WHERE changed = 1;
CREATE TABLE groups (
    id INTEGER PRIMARY KEY,
    vantage TEXT NOT NULL,
    name TEXT NOT NULL,
    UNIQUE (vantage, name)
);
CREATE TABLE group_states (
    group_id INTEGER NOT NULL REFERENCES groups (id),
    started_at REAL NOT NULL,
    run_id INTEGER NOT NULL REFERENCES runs (id),
    verdict TEXT NOT NULL,
    active TEXT,                         -- NULL: not known
    preferred TEXT,
    changed INTEGER NOT NULL DEFAULT 0,  -- verdict differs from the previous known one
    standby INTEGER,                     -- 1 traffic on a standby line, 0 on the preferred, NULL ?
    switched INTEGER NOT NULL DEFAULT 0, -- standby differs from the previous known value
    prev_active TEXT,                    -- on a switched row: the line traffic left
    PRIMARY KEY (group_id, started_at, run_id)
) WITHOUT ROWID;
CREATE INDEX group_changes ON group_states (group_id, started_at, run_id, verdict)
    WHERE changed = 1;
CREATE INDEX group_switches ON group_states (group_id, started_at, run_id) WHERE switched = 1;
CREATE TABLE findings (
    run_id INTEGER NOT NULL REFERENCES runs (id),
    severity TEXT NOT NULL,
    kind TEXT NOT NULL,
    components TEXT NOT NULL,            -- JSON list of names
    summary TEXT NOT NULL
);
CREATE INDEX findings_by_run ON findings (run_id);
"""


def _tables(conn: sqlite3.Connection) -> dict[str, list[str]]:
    names = [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
    return {n: [r[1] for r in conn.execute(f'PRAGMA table_info("{n}")')] for n in names}


def _migrate_0_to_1(conn: sqlite3.Connection) -> None:
    """Empty file: create the tables. Version 0 (`runs(started_at, report)`,
    whole JSON reports): create the tables and load every stored report."""
    tables = _tables(conn)
    legacy = "runs" in tables and "report" in tables["runs"]
    unknown = set(tables) - ({"runs"} if legacy else set())
    if unknown:
        raise HistoryError(
            f"has tables netprobe does not know ({', '.join(sorted(unknown))}): not a netprobe "
            "history database; give a new file name")
    if legacy:
        conn.execute("ALTER TABLE runs RENAME TO runs_v0")
    for statement in _SCHEMA_V1.split(";"):
        # executescript() would COMMIT the open transaction: one statement at a time
        if statement.strip():
            conn.execute(statement)
    if legacy:
        rows = conn.execute("SELECT rowid, report FROM runs_v0 ORDER BY started_at, rowid")
        for rowid, text in rows.fetchall():
            try:
                data = json.loads(text)
                if not isinstance(data, dict):
                    raise TypeError("not a JSON object")
                _insert_run(conn, _row_from_json(data))
            except (ValueError, TypeError, KeyError) as exc:
                raise HistoryError(f"version 0 run {rowid} holds a damaged report ({exc!r}); "
                                   "the database was not changed") from None
        conn.execute("DROP TABLE runs_v0")


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_migrate_0_to_1]
assert len(MIGRATIONS) == SCHEMA_VERSION


def _user_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the database to SCHEMA_VERSION, one step per version, all in one
    write transaction (a concurrent opener waits, then finds it done)."""
    if _user_version(conn) == SCHEMA_VERSION:
        return SCHEMA_VERSION
    with _write(conn):
        version = _user_version(conn)  # again, under the lock: another process may have won
        if version > SCHEMA_VERSION:
            raise HistoryError(f"written by a newer netprobe (schema version {version}, this "
                               f"one knows up to {SCHEMA_VERSION}); upgrade netprobe")
        while version < SCHEMA_VERSION:
            MIGRATIONS[version](conn)
            version += 1
        conn.execute(f"PRAGMA user_version = {version}")
    return version


@contextmanager
def _write(conn: sqlite3.Connection) -> Iterator[None]:
    # IMMEDIATE takes the write lock up front: two writers queue on the busy
    # timeout instead of both reading and then failing to upgrade their locks.
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _set_wal(conn: sqlite3.Connection) -> None:
    """Switch to WAL, waiting for a concurrent opener.

    SQLite does not call the busy handler for a journal-mode change on a fresh
    file, so two runs creating the database at the same moment would see
    "database is locked" at once; retry within the busy timeout instead.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    delay_s = 0.005
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if time.monotonic() + delay_s > deadline:
                raise
            time.sleep(delay_s)
            delay_s = min(0.2, delay_s * 2)


# Below this much free space a failed write is the disk being full, whatever
# SQLite calls it (a full disk under WAL often surfaces as "disk I/O error").
_NEARLY_FULL_BYTES = 256 * 1024


def _sqlite_why(exc: sqlite3.Error, path: Path) -> str:
    """SQLite's complaint, with a full disk named as such."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    if name == "SQLITE_FULL" or "disk is full" in str(exc):
        return "no space left on device"
    if name.startswith("SQLITE_IOERR") or "disk I/O error" in str(exc):
        try:
            fs = os.statvfs(path.parent)
        except OSError:
            return str(exc)
        if fs.f_bavail * fs.f_frsize < _NEARLY_FULL_BYTES:
            return f"no space left on device ({exc})"
    return str(exc)


def connect(db_path: PathLike, *, create: bool = True) -> sqlite3.Connection:
    """Open (create, migrate) a history database; HistoryError if it cannot be used."""
    path = Path(db_path)
    if not create and not path.exists():
        raise HistoryError(f"{path}: no such history database; create one with "
                           f"`netprobe check CONFIG --history {path}`")
    if create and not path.parent.is_dir():
        raise HistoryError(f"{path}: directory {path.parent} does not exist; create it first")
    try:
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    except sqlite3.Error as exc:
        raise HistoryError(f"{path}: cannot open: {_sqlite_why(exc, path)}") from None
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        _set_wal(conn)
        conn.execute("PRAGMA synchronous = NORMAL")  # WAL: durable at checkpoints, never corrupt
        migrate(conn)
    except HistoryError as exc:
        conn.close()
        raise HistoryError(f"{path}: {exc}") from None
    except sqlite3.Error as exc:  # not a database, locked past the timeout, read-only, ...
        conn.close()
        raise HistoryError(f"{path}: cannot use as a history database: "
                           f"{_sqlite_why(exc, path)}") from None
    return conn


# -- recording ----------------------------------------------------------------

@dataclass(frozen=True)
class RunRow:
    """What the history keeps of one run (a subset of the report)."""

    started_at: float
    duration_s: float
    status: str
    exit_code: int
    vantage: str
    config: str
    interrupted: bool
    components: tuple[tuple[str, str, str], ...]  # name, kind, state
    groups: tuple[tuple[str, str, str | None, str | None], ...]  # name, verdict, active, preferred
    findings: tuple[tuple[str, str, tuple[str, ...], str], ...]  # severity, kind, components, summary


def _row_from_report(report: Any) -> RunRow:
    return RunRow(
        started_at=report.evidence.started_at,
        duration_s=report.evidence.duration_s,
        status=str(report.status),
        exit_code=report.exit_code,
        vantage=report.vantage,
        config=report.config,
        interrupted=report.interrupted,
        components=tuple((c.name, c.kind, str(c.state)) for c in report.components),
        groups=tuple((g.name, str(g.verdict), g.active, g.preferred) for g in report.groups),
        findings=tuple((str(f.severity), str(f.kind), tuple(f.components), f.summary)
                       for f in report.findings),
    )


def _row_from_json(data: dict[str, Any]) -> RunRow:
    """From a JSON report (netprobe.report/1), as version 0 stored them."""
    from netprobe.evidence import _epoch

    return RunRow(
        started_at=_epoch(data["started_at"]),
        duration_s=float(data.get("duration_s") or 0.0),
        status=str(data["status"]),
        exit_code=int(data.get("exit_code", 3)),
        vantage=str(data.get("vantage", "")),
        config=str(data.get("config", "")),
        interrupted=bool(data.get("interrupted", False)),
        components=tuple((c["name"], c["kind"], c["state"]) for c in data.get("components", ())),
        groups=tuple((g["name"], g["verdict"], g.get("active"), g.get("preferred"))
                     for g in data.get("groups", ())),
        findings=tuple((f["severity"], f["kind"], tuple(f.get("components", ())), f["summary"])
                       for f in data.get("findings", ())),
    )


# Where the group's traffic is, from one row: the one definition, used by
# record_run and recompute_flags alike.
_STANDBY_SQL = """CASE
    WHEN verdict IN ('failed_over', 'failback_pending') THEN 1
    WHEN active IS NOT NULL AND preferred IS NOT NULL AND active != preferred THEN 1
    WHEN active IS NOT NULL AND active = preferred THEN 0
    WHEN verdict = 'nominal' THEN 0  -- redundancy_lost alone does not say which line carries traffic
END"""

_NEIGHBOUR_SQL = """
SELECT started_at, run_id, {col} FROM {table}
WHERE {eid} = :e AND (started_at, run_id) {op} (:t, :r) AND {known}
ORDER BY started_at {order}, run_id {order} LIMIT 1
"""


def _neighbour(conn: sqlite3.Connection, table: str, eid: str, col: str, known: str,
               key: dict[str, Any], before: bool) -> tuple | None:
    """The nearest row before (or after) (t, r) of the same entity whose `known` holds."""
    sql = _NEIGHBOUR_SQL.format(col=col, table=table, eid=eid, known=known,
                                op="<" if before else ">", order="DESC" if before else "ASC")
    return conn.execute(sql, key).fetchone()


def _set_changed(conn: sqlite3.Connection, table: str, eid: str, col: str, key: dict[str, Any],
                 value: str) -> None:
    """`changed` of the new row, and of the next measured row, which now follows it."""
    known = f"{col} != 'unknown'"
    if value == "unknown":
        return  # unknown rows are skipped: they change nothing around them
    prev = _neighbour(conn, table, eid, col, known, key, before=True)
    if prev is not None and prev[2] != value:
        conn.execute(f"UPDATE {table} SET changed = 1 WHERE {eid} = :e AND started_at = :t "
                     "AND run_id = :r", key)
    nxt = _neighbour(conn, table, eid, col, known, key, before=False)
    if nxt is not None:  # only when this run arrived out of time order
        conn.execute(f"UPDATE {table} SET changed = ? WHERE {eid} = ? AND started_at = ? "
                     "AND run_id = ?", (int(nxt[2] != value), key["e"], nxt[0], nxt[1]))


def _set_switched(conn: sqlite3.Connection, key: dict[str, Any]) -> None:
    standby, active = conn.execute(
        "SELECT standby, active FROM group_states WHERE group_id = :e AND started_at = :t AND "
        "run_id = :r", key).fetchone()
    if standby is None:
        return
    known = "standby IS NOT NULL"
    prev = _neighbour(conn, "group_states", "group_id", "standby, active", known, key, True)
    if prev is not None and prev[2] != standby:
        conn.execute("UPDATE group_states SET switched = 1, prev_active = :a WHERE group_id = :e "
                     "AND started_at = :t AND run_id = :r", {**key, "a": prev[3]})
    nxt = _neighbour(conn, "group_states", "group_id", "standby", known, key, False)
    if nxt is not None:  # out of time order: the next known row now follows this one
        switched = nxt[2] != standby
        conn.execute("UPDATE group_states SET switched = ?, prev_active = ? WHERE group_id = ? "
                     "AND started_at = ? AND run_id = ?",
                     (int(switched), active if switched else None, key["e"], nxt[0], nxt[1]))


def _insert_run(conn: sqlite3.Connection, row: RunRow) -> int:
    cur = conn.execute(
        "INSERT INTO runs (started_at, duration_s, status, exit_code, vantage, config, "
        "interrupted) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (row.started_at, row.duration_s, row.status, row.exit_code, row.vantage, row.config,
         int(row.interrupted)))
    run_id = int(cur.lastrowid or 0)
    for name, kind, state in dict((c[0], c) for c in row.components).values():
        (cid,) = conn.execute(
            "INSERT INTO components (vantage, name, kind) VALUES (?, ?, ?) "
            "ON CONFLICT (vantage, name) DO UPDATE SET kind = excluded.kind RETURNING id",
            (row.vantage, name, kind)).fetchone()
        key = {"e": cid, "t": row.started_at, "r": run_id}
        conn.execute("INSERT INTO component_states (component_id, started_at, run_id, state) "
                     "VALUES (:e, :t, :r, :s)", {**key, "s": state})
        _set_changed(conn, "component_states", "component_id", "state", key, state)
    for name, verdict, active, preferred in dict((g[0], g) for g in row.groups).values():
        (gid,) = conn.execute(
            "INSERT INTO groups (vantage, name) VALUES (?, ?) ON CONFLICT (vantage, name) "
            "DO UPDATE SET name = excluded.name RETURNING id", (row.vantage, name)).fetchone()
        key = {"e": gid, "t": row.started_at, "r": run_id}
        conn.execute("INSERT INTO group_states (group_id, started_at, run_id, verdict, active, "
                     "preferred) VALUES (:e, :t, :r, :v, :a, :p)",
                     {**key, "v": verdict, "a": active, "p": preferred})
        conn.execute(f"UPDATE group_states SET standby = {_STANDBY_SQL} "
                     "WHERE group_id = :e AND started_at = :t AND run_id = :r", key)
        _set_changed(conn, "group_states", "group_id", "verdict", key, verdict)
        _set_switched(conn, key)
    conn.executemany(
        "INSERT INTO findings (run_id, severity, kind, components, summary) VALUES (?, ?, ?, ?, ?)",
        [(run_id, sev, kind, json.dumps(list(comps)), summary)
         for sev, kind, comps, summary in row.findings])
    return run_id


def record_run(db_path: PathLike, report: Any) -> int:
    """Append one run (a `Report`) to the history; returns its run id.

    Creates the database if needed. Waits up to BUSY_TIMEOUT_S for another
    writer; HistoryError (a NetprobeError) if the file cannot be used.
    """
    row = _row_from_report(report)
    conn = connect(db_path)
    try:
        with _write(conn):
            return _insert_run(conn, row)
    except sqlite3.Error as exc:
        raise HistoryError(f"{db_path}: cannot record the run: "
                           f"{_sqlite_why(exc, Path(db_path))}") from None
    finally:
        conn.close()


_RECOMPUTE_SQL = [
    "UPDATE component_states SET changed = 0 WHERE changed != 0",
    """UPDATE component_states AS s SET changed = 1 FROM (
        SELECT component_id, started_at, run_id FROM (
            SELECT component_id, started_at, run_id, state,
                   LAG(state) OVER (PARTITION BY component_id ORDER BY started_at, run_id) AS prev
            FROM component_states WHERE state != 'unknown')
        WHERE prev != state) AS x
       WHERE s.component_id = x.component_id AND s.started_at = x.started_at
         AND s.run_id = x.run_id""",
    f"UPDATE group_states SET standby = {_STANDBY_SQL}, changed = 0, switched = 0, "
    "prev_active = NULL",
    """UPDATE group_states AS s SET changed = 1 FROM (
        SELECT group_id, started_at, run_id FROM (
            SELECT group_id, started_at, run_id, verdict,
                   LAG(verdict) OVER (PARTITION BY group_id ORDER BY started_at, run_id) AS prev
            FROM group_states WHERE verdict != 'unknown')
        WHERE prev != verdict) AS x
       WHERE s.group_id = x.group_id AND s.started_at = x.started_at AND s.run_id = x.run_id""",
    """UPDATE group_states AS s SET switched = 1, prev_active = x.prev_active FROM (
        SELECT group_id, started_at, run_id, prev_active FROM (
            SELECT group_id, started_at, run_id, standby,
                   LAG(standby) OVER w AS prev_standby, LAG(active) OVER w AS prev_active
            FROM group_states WHERE standby IS NOT NULL
            WINDOW w AS (PARTITION BY group_id ORDER BY started_at, run_id))
        WHERE prev_standby != standby) AS x
       WHERE s.group_id = x.group_id AND s.started_at = x.started_at AND s.run_id = x.run_id""",
]


def recompute_flags(conn: sqlite3.Connection) -> None:
    """Rebuild `changed`, `standby`, `switched` and `prev_active` from the
    states alone, with window functions. For a bulk load that inserted rows
    directly; `record_run` keeps them right incrementally."""
    with _write(conn):
        for statement in _RECOMPUTE_SQL:
            conn.execute(statement)


# -- summary values -------------------------------------------------------------

@dataclass(frozen=True)
class ComponentHistory:
    vantage: str
    name: str
    kind: str  # device | line | endpoint | service | group
    runs: int  # runs in the window that recorded it
    measured: int  # runs that were not unknown
    available: int  # up or degraded (groups: traffic flows)
    unknown: int
    incidents: int  # maximal streaks of consecutive down runs
    recovered: int  # incidents that ended inside the window
    longest_recovery_s: float | None
    mean_recovery_s: float | None  # MTTR over the recovered incidents
    flaps: int  # changes of state between consecutive measured runs
    last_state: str | None  # of the last measured run (groups: the verdict)
    down_since: float | None  # the start of an incident still open at the window's end

    @property
    def availability_ratio(self) -> float | None:
        return None if self.measured == 0 else self.available / self.measured

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["availability_ratio"] = self.availability_ratio
        data["down_since"] = _iso(self.down_since)
        return data


@dataclass(frozen=True)
class GroupEvent:
    at: float  # the first run that saw the change
    kind: str  # failover | failback
    from_line: str | None
    to_line: str | None
    verdict: str

    def to_json(self) -> dict[str, Any]:
        return {"at": _iso(self.at), "kind": self.kind, "from_line": self.from_line,
                "to_line": self.to_line, "verdict": self.verdict}


@dataclass(frozen=True)
class GroupHistory(ComponentHistory):
    failovers: int = 0
    failbacks: int = 0
    events: tuple[GroupEvent, ...] = ()  # oldest first; the newest MAX_EVENTS_PER_GROUP

    def to_json(self) -> dict[str, Any]:
        data = super().to_json()
        data["events"] = [e.to_json() for e in self.events]
        return data


@dataclass(frozen=True)
class HistorySummary:
    db_path: str
    since: float | None  # the window asked for, seconds since the epoch; None: unbounded
    until: float | None
    runs: int
    first_run_at: float | None
    last_run_at: float | None
    status_counts: tuple[tuple[str, int], ...]
    components: tuple[ComponentHistory, ...]
    groups: tuple[GroupHistory, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": "netprobe.history/1",
            "db": self.db_path,
            "since": _iso(self.since),
            "until": _iso(self.until),
            "runs": self.runs,
            "first_run_at": _iso(self.first_run_at),
            "last_run_at": _iso(self.last_run_at),
            "status_counts": dict(self.status_counts),
            "components": [c.to_json() for c in self.components],
            "groups": [g.to_json() for g in self.groups],
        }


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


# -- summarising (the heavy lifting is SQL) -----------------------------------------

# Per entity, in the window [:t0, :t1]. `{down}` is a predicate on a column named
# `state` (a component's state or a group's verdict).
_SUMMARY_SQL = """
WITH agg AS (
    SELECT {eid} AS eid,
           COUNT(*) AS runs,
           SUM({state} = 'unknown') AS unknown,
           SUM({state} != 'unknown' AND NOT ({down_col})) AS available,
           SUM(changed) AS flaps
    FROM {table}
    WHERE started_at >= :t0 AND started_at <= :t1
    GROUP BY {eid}
),
firsts AS (  -- each entity's first measured run in the window: index seeks, no scan
    SELECT eid, t, rid, state FROM (
        SELECT e.id AS eid,
               ({seek} ORDER BY x.started_at, x.run_id LIMIT 1) AS t,
               ({seek_rid} ORDER BY x.started_at, x.run_id LIMIT 1) AS rid,
               ({seek_state} ORDER BY x.started_at, x.run_id LIMIT 1) AS state
        FROM {entities} AS e)
    WHERE t IS NOT NULL
),
lasts AS (
    SELECT e.id AS eid,
           ({seek_state} ORDER BY x.started_at DESC, x.run_id DESC LIMIT 1) AS state
    FROM {entities} AS e
),
changes AS (  -- the window's first measured run and every change: few rows
    SELECT eid, t, rid, state FROM firsts
    UNION
    SELECT {eid}, started_at, run_id, {state} FROM {table} INDEXED BY {changes_index}
    WHERE changed = 1 AND started_at >= :t0 AND started_at <= :t1
),
marked AS (
    SELECT eid, t, rid, ({down}) AS down, LAG(({down})) OVER w AS prev_down
    FROM changes
    WINDOW w AS (PARTITION BY eid ORDER BY t, rid)
),
edges AS (  -- incident starts (down = 1) and recoveries (down = 0), alternating
    SELECT eid, t, down,
           LAG(t) OVER (PARTITION BY eid ORDER BY t, rid) AS start_t,
           ROW_NUMBER() OVER (PARTITION BY eid ORDER BY t DESC, rid DESC) AS from_end
    FROM marked WHERE down != COALESCE(prev_down, 0)
),
incidents AS (
    SELECT eid,
           SUM(down) AS incidents,
           SUM(NOT down) AS recovered,
           MAX(CASE WHEN NOT down THEN t - start_t END) AS longest_s,
           AVG(CASE WHEN NOT down THEN t - start_t END) AS mean_s,
           MAX(CASE WHEN from_end = 1 AND down THEN t END) AS down_since
    FROM edges GROUP BY eid
)
SELECT agg.eid, agg.runs, agg.unknown, agg.available, agg.flaps, lasts.state,
       COALESCE(incidents.incidents, 0), COALESCE(incidents.recovered, 0),
       incidents.longest_s, incidents.mean_s, incidents.down_since
FROM agg
LEFT JOIN lasts ON lasts.eid = agg.eid
LEFT JOIN incidents ON incidents.eid = agg.eid
"""

_COMPONENT_DOWN = "state = 'down'"
_GROUP_DOWN = "state IN ('down', 'failover_failed')"

_SEEK = """SELECT x.{col} FROM {table} AS x
    WHERE x.{eid} = e.id AND x.{state} != 'unknown' AND x.started_at >= :t0 AND x.started_at <= :t1"""


def _summary_sql(eid: str, state: str, table: str, entities: str, down: str,
                 changes_index: str) -> str:
    def seek(col: str) -> str:
        return _SEEK.format(col=col, table=table, eid=eid, state=state)

    return _SUMMARY_SQL.format(
        eid=eid, state=state, table=table, entities=entities, changes_index=changes_index,
        down=down, down_col=down.replace("state", state), seek=seek("started_at"),
        seek_rid=seek("run_id"), seek_state=seek(state))


_COMPONENT_SUMMARY_SQL = _summary_sql("component_id", "state", "component_states", "components",
                                      _COMPONENT_DOWN, "component_changes")
_GROUP_SUMMARY_SQL = _summary_sql("group_id", "verdict", "group_states", "groups", _GROUP_DOWN,
                                  "group_changes")

_SWITCH_COUNTS_SQL = """
SELECT group_id, SUM(standby = 1), SUM(standby = 0) FROM group_states
WHERE switched = 1 AND started_at >= :t0 AND started_at <= :t1 GROUP BY group_id
"""

_SWITCH_EVENTS_SQL = """
SELECT group_id, started_at, CASE WHEN standby = 1 THEN 'failover' ELSE 'failback' END,
       prev_active, active, verdict
FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY group_id ORDER BY started_at DESC, run_id DESC)
                AS from_end
      FROM group_states
      WHERE switched = 1 AND started_at >= :t0 AND started_at <= :t1)
WHERE from_end <= :max_events
ORDER BY group_id, started_at, run_id
"""


def summarize(db_path: PathLike, since_s: float | None = None, until: float | None = None, *,
              max_events: int = MAX_EVENTS_PER_GROUP) -> HistorySummary:
    """Availability, incidents, time to recover, flaps, failovers and failbacks.

    The window is [until - since_s, until], both ends included. `until` is
    seconds since the epoch (default: now when `since_s` is given, else no
    bound); `since_s` is a length in seconds (default: everything before).
    """
    if since_s is not None and (not math.isfinite(since_s) or since_s < 0):
        raise HistoryError(f"the window must be a positive duration, got {since_s} s")
    end = until if until is not None else (time.time() if since_s is not None else None)
    start = end - since_s if (since_s is not None and end is not None) else None
    params = {"t0": -math.inf if start is None else start,
              "t1": math.inf if end is None else end, "max_events": max_events}
    conn = connect(db_path, create=False)
    try:
        return _summarize(conn, str(db_path), start, end, params)
    except sqlite3.Error as exc:
        raise HistoryError(f"{db_path}: cannot read the history: {exc}") from None
    finally:
        conn.close()


_KIND_ORDER = {"device": 0, "line": 1, "endpoint": 2, "service": 3}


def _summarize(conn: sqlite3.Connection, db_path: str, start: float | None, end: float | None,
               params: dict[str, Any]) -> HistorySummary:
    # One read transaction: a writer appending meanwhile does not skew the figures.
    conn.execute("BEGIN")
    try:
        runs, first, last = conn.execute(
            "SELECT COUNT(*), MIN(started_at), MAX(started_at) FROM runs "
            "WHERE started_at >= :t0 AND started_at <= :t1", params).fetchone()
        status_counts = tuple(conn.execute(
            "SELECT status, COUNT(*) FROM runs WHERE started_at >= :t0 AND started_at <= :t1 "
            "GROUP BY status ORDER BY status", params).fetchall())
        names = {r[0]: r[1:] for r in conn.execute("SELECT id, vantage, name, kind FROM components")}
        components = sorted(
            (_history(ComponentHistory, names[r[0]], r[1:])
             for r in conn.execute(_COMPONENT_SUMMARY_SQL, params)),
            key=lambda c: (c.vantage, _KIND_ORDER.get(c.kind, 9), c.name))

        gnames = {r[0]: (r[1], r[2], "group")
                  for r in conn.execute("SELECT id, vantage, name FROM groups")}
        switches = {r[0]: r[1:] for r in conn.execute(_SWITCH_COUNTS_SQL, params)}
        events: dict[int, list[GroupEvent]] = {}
        for gid, t, kind, from_line, to_line, verdict in conn.execute(_SWITCH_EVENTS_SQL, params):
            events.setdefault(gid, []).append(GroupEvent(t, kind, from_line, to_line, verdict))
        groups = []
        for r in conn.execute(_GROUP_SUMMARY_SQL, params):
            base = _history(ComponentHistory, gnames[r[0]], r[1:])
            failovers, failbacks = switches.get(r[0], (0, 0))
            groups.append(GroupHistory(**base.__dict__, failovers=failovers or 0,
                                       failbacks=failbacks or 0,
                                       events=tuple(events.get(r[0], ()))))
        groups.sort(key=lambda g: (g.vantage, g.name))
    finally:
        conn.execute("COMMIT")
    return HistorySummary(db_path=db_path, since=start, until=end, runs=runs, first_run_at=first,
                          last_run_at=last, status_counts=status_counts,
                          components=tuple(components), groups=tuple(groups))


def _history(cls: type[ComponentHistory], name: tuple, row: tuple) -> ComponentHistory:
    vantage, cname, kind = name
    (runs, unknown, available, flaps, last_state, incidents, recovered, longest_s, mean_s,
     down_since) = row
    return cls(vantage=vantage, name=cname, kind=kind, runs=runs, measured=runs - (unknown or 0),
               available=available or 0, unknown=unknown or 0, incidents=incidents,
               recovered=recovered, longest_recovery_s=longest_s, mean_recovery_s=mean_s,
               flaps=flaps or 0, last_state=last_state, down_since=down_since)


# -- rendering ------------------------------------------------------------------------

HISTORY_FORMATS = ("table", "json", "md")


def render_history(summary: HistorySummary, fmt: str, *, side_by_side: bool = False) -> str:
    """The summary as `table` (plain text tables), `json` or `md`. `side_by_side`:
    one row per component or group name, one column per vantage point."""
    fmt = str(fmt)
    if fmt == "json":
        data = summary.to_json()
        if side_by_side:
            data["side_by_side"] = side_by_side_json(summary)
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    if fmt == "md":
        return _render_md(summary, side_by_side)
    if fmt == "table":
        return _render_table(summary, side_by_side)
    raise HistoryError(f"--format {fmt}: history can be shown as {', '.join(HISTORY_FORMATS)}")


def _pct(ratio: float | None) -> str:
    if ratio is None:
        return "-"
    # floor at 3 decimals: 99.9996% must not read as 100% when there was an outage
    return f"{math.floor(ratio * 100_000) / 1000:.3f}%"


def _dur(seconds: float | None) -> str:
    """Compact, for table cells: 45s, 2m30s, 1h05m, 3d04h."""
    if seconds is None:
        return "-"
    total = int(round(seconds))
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def _short_time(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%MZ")


def _window_text(s: HistorySummary) -> str:
    if s.runs == 0:
        return f"{s.db_path}: no runs in the window"
    noun = "run" if s.runs == 1 else "runs"
    return (f"{s.db_path}: {s.runs} {noun} from {_short_time(s.first_run_at)} to "
            f"{_short_time(s.last_run_at)}; "
            + ", ".join(f"{n} {status}" for status, n in s.status_counts))


_HEADERS = ["name", "kind", "availability", "measured", "incidents", "MTTR", "longest",
            "flaps", "last"]
_RIGHT = {"availability", "measured", "incidents", "MTTR", "longest", "flaps"}
_EVENT_HEADERS = ["group", "at", "event", "lines", "verdict"]


@dataclass(frozen=True)
class _Section:
    title: str
    headers: list[str]
    rows: list[list[str]]


def _by_name(items: tuple[ComponentHistory, ...]) -> dict[tuple[str, str], dict[str, ComponentHistory]]:
    """(name, kind) -> vantage -> its history, in the summary's order."""
    out: dict[tuple[str, str], dict[str, ComponentHistory]] = {}
    for c in sorted(items, key=lambda c: (_KIND_ORDER.get(c.kind, 9), c.name)):
        out.setdefault((c.name, c.kind), {})[c.vantage] = c
    return out


def _cell(c: ComponentHistory | None) -> str:
    if c is None:
        return "-"
    noun = "incident" if c.incidents == 1 else "incidents"
    return f"{_pct(c.availability_ratio)}, {c.incidents} {noun}, {c.last_state or '-'}"


def side_by_side_json(s: HistorySummary) -> list[dict[str, Any]]:
    """Each component and group name with its history from every vantage that has it."""
    return [{"name": name, "kind": kind,
             "vantages": {v: c.to_json() for v, c in sorted(seen.items())}}
            for items in (s.components, s.groups)
            for (name, kind), seen in _by_name(items).items()]


def _side_by_side(s: HistorySummary, vantages: list[str]) -> list[_Section]:
    """One row per name, one column per vantage: availability, incidents, last state."""
    sections = []
    for title, items in (("Components by vantage", s.components),
                         ("Redundancy groups by vantage", s.groups)):
        rows = [[name, kind, *(_cell(seen.get(v)) for v in vantages)]
                for (name, kind), seen in _by_name(items).items()]
        if rows:
            sections.append(_Section(title, ["name", "kind", *vantages], rows))
    return sections


def _sections(s: HistorySummary, side_by_side: bool = False) -> tuple[list[_Section], list[str]]:
    """Tables (one set per vantage when the database holds several, or one row per
    name and a column per vantage `side_by_side`) and notes."""
    vantages = sorted({c.vantage for c in (*s.components, *s.groups)})
    sections, notes = [], []
    if side_by_side:
        sections = _side_by_side(s, vantages)
    for vantage in vantages:
        suffix = f" ({vantage})" if len(vantages) > 1 else ""
        for title, items in (("Components", s.components), ("Redundancy groups", s.groups)):
            mine = [c for c in items if c.vantage == vantage]
            if mine and not side_by_side:
                sections.append(_Section(title + suffix, _HEADERS, [
                    [c.name, c.kind, _pct(c.availability_ratio), f"{c.measured}/{c.runs}",
                     str(c.incidents), _dur(c.mean_recovery_s), _dur(c.longest_recovery_s),
                     str(c.flaps), c.last_state or "-"] for c in mine]))
            notes += [f"{c.name}{suffix}: down since {_short_time(c.down_since)}, not recovered"
                      for c in mine if c.down_since is not None]
        events = [[g.name, _short_time(e.at), e.kind, f"{e.from_line or '?'} -> {e.to_line or '?'}",
                   e.verdict] for g in s.groups if g.vantage == vantage for e in g.events]
        if events and not side_by_side:
            sections.append(_Section("Failovers and failbacks" + suffix, _EVENT_HEADERS, events))
        notes += [f"{g.name}{suffix}: {g.failovers} failovers and {g.failbacks} failbacks in "
                  f"all; the newest {len(g.events)} are listed"
                  for g in s.groups if g.vantage == vantage
                  and g.failovers + g.failbacks > len(g.events)]
    return sections, notes


def _render_table(s: HistorySummary, side_by_side: bool = False) -> str:
    import io

    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    buf = io.StringIO()
    con = Console(file=buf, width=max(100, 40 + 34 * len({c.vantage for c in s.components}))
                  if side_by_side else 100, color_system=None, no_color=True, highlight=False,
                  force_terminal=False, emoji=False)
    con.print(_window_text(s), markup=False)
    sections, notes = _sections(s, side_by_side)
    for section in sections:
        t = Table(title=section.title, title_justify="left", box=box.SIMPLE_HEAD,
                  show_edge=False, pad_edge=False)
        for h in section.headers:
            t.add_column(h, justify="right" if h in _RIGHT else "left", overflow="fold",
                         no_wrap=h not in ("name", "group", "lines"))
        for row in section.rows:  # Text: names from the database are never read as markup
            t.add_row(*(cell if isinstance(cell, Text) else Text(str(cell)) for cell in row))
        con.print()
        con.print(t)
    if notes:
        con.print()
        for note in notes:
            con.print(note, markup=False)
    return "\n".join(line.rstrip() for line in buf.getvalue().splitlines()) + "\n"


def _render_md(s: HistorySummary, side_by_side: bool = False) -> str:
    from netprobe.report.markdown import inline, table

    lines = ["# netprobe history", "", inline(_window_text(s), line_start=True), ""]
    sections, notes = _sections(s, side_by_side)
    for section in sections:
        align = "".join("r" if h in _RIGHT else "l" for h in section.headers)
        lines += [f"## {inline(section.title)}", "", *table(section.headers, section.rows, align), ""]
    if notes:
        lines += ["## Notes", "", *(f"- {inline(n)}" for n in notes), ""]
    return "\n".join(lines)
