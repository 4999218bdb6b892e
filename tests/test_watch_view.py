"""The live view and the plain event lines, on a fixed-width console."""

from __future__ import annotations

import io

from rich.console import Console
from test_watch_summary import make_timeline

from netprobe.diagnosis.model import State
from netprobe.watch.timeline import EventTracker, Sample
from netprobe.watch.view import LiveView, PlainView, sparkline


def console() -> Console:
    return Console(file=io.StringIO(), width=110, force_terminal=False, color_system=None,
                   record=True)


def feed(view, tl):
    tracker = EventTracker(tl.interval_s, tl.lanes)
    view.start(tl)
    for c in tl.cycles:
        view.cycle(c, tracker.feed(c))
    view.finish(tl)


def test_sparkline_marks_loss_apart_from_slowness():
    samples = [Sample("x", State.UP, 1.0, 1, 1), Sample("x", State.UP, 8.0, 1, 1),
               Sample("x", State.DOWN, None, 1, 0), Sample("x", State.UNKNOWN, None, 0, 0)]
    assert sparkline(samples).plain == "▁█×·"
    assert len(sparkline(samples * 20, width=30).plain) == 30


def test_live_view_shows_active_line_lanes_and_event_log():
    tl = make_timeline(pref="UUUDDDDDDDDD", app="UUUDDDUUUUUU", path="aaa...bbbbbb")
    con = console()
    view = LiveView(con, duration_s=60)
    feed(view, tl)
    con.print(view.render())
    text = con.export_text()
    assert "dc-wan" in text and "broadband-b" in text
    row = next(line for line in text.splitlines() if line.startswith("leased-a far end"))
    assert "down" in row and row.rstrip().endswith("███×××××××××")  # equal RTTs: full bars
    assert "traffic to dc-app moved to broadband-b" in text
    assert "cycle 12" in text


def test_plain_view_prints_one_line_per_event():
    tl = make_timeline(pref="UUUDDDDDDDDD", app="UUUDDDUUUUUU", path="aaa...bbbbbb")
    con = console()
    feed(PlainView(con), tl)
    lines = con.export_text().splitlines()
    assert lines[0] == "watching 3 probes and 1 group(s) every 200 ms"
    assert any(line.endswith(" leased-a far end stopped answering") for line in lines)
    assert any(line.endswith(" traffic to dc-app moved to broadband-b") for line in lines)
    # each event line starts with its wall-clock time, to the millisecond
    assert all(line[2] == ":" and line[8] == "." for line in lines[1:])
