"""The drill picture: well-formed SVG with a lane per line and endpoint, state
bands where the timeline says, and the measured switch-over and failback marked."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from test_watch_summary import INTERVAL, make_timeline

from netprobe.watch.render_html import nice_step, render_html, render_svg
from netprobe.watch.report import build_drill_report

SVG = "{http://www.w3.org/2000/svg}"


def drill(**kw):
    return build_drill_report(make_timeline(**kw), "site<1>.yaml", "office & lab",
                              failover_window_s=1.0)


def texts(root) -> list[str]:
    return ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]


def bands(root) -> list[str]:
    return [t.text for r in root.iter(f"{SVG}rect") if (t := r.find(f"{SVG}title")) is not None]


def test_failover_drill_picture_has_lanes_bands_and_markers():
    report = drill(pref="UUUDDDDDDUUUUUU", app="UUUDDDUUUUUUUUU", path="aaa...bbbbbbaaa")
    root = ET.fromstring(render_svg(report))
    words = texts(root)
    for label in ("dc-wan: active line", "leased-a far end", "broadband-b far end", "dc-app"):
        assert label in words
    assert "dc-wan: switch-over 600 ms" in words
    assert "dc-wan: failback 600 ms" in words  # back at cycle 9, path at 12
    assert "OK (exit 0)" in " ".join(words)
    # Bands follow the samples: the preferred far end down from the first lost
    # probe until it answered again, the path on the standby line in between.
    spans = bands(root)
    assert f"leased-a far end: down {3 * INTERVAL:.2f}–{9 * INTERVAL:.2f} s" in spans
    assert f"dc-app: down {3 * INTERVAL:.2f}–{6 * INTERVAL:.2f} s" in spans
    assert f"broadband-b {6 * INTERVAL:.2f}–{12 * INTERVAL:.2f} s" in spans
    assert f"unknown {3 * INTERVAL:.2f}–{6 * INTERVAL:.2f} s" in spans
    # dashed markers: one per measured event
    dashed = [line for line in root.iter(f"{SVG}line") if line.get("stroke-dasharray")]
    assert len(dashed) == 2
    # the axis is in seconds and covers the drill (3 s)
    assert {"0 s", "1 s", "2 s", "3 s"} <= set(words) or {"0 s", "0.5 s", "3 s"} <= set(words)


def test_failed_failover_is_marked_and_critical():
    report = drill(pref="UUUDDDDDDDDD", app="UUUDDDDDDDDD", path="aaa.........")
    svg = render_svg(report)
    ET.fromstring(svg)
    assert "failover FAILED — leased-a down 1.80 s, traffic never moved" in svg
    assert "CRITICAL (exit 2)" in svg


def test_html_wraps_the_picture_with_summary_and_escaped_names():
    report = drill(pref="UUUDDDDDDUUUUUU", app="UUUDDDUUUUUUUUU", path="aaa...bbbbbbaaa")
    html = render_html(report)
    assert html.startswith("<!DOCTYPE html>")
    assert "<svg" in html and "<script" not in html
    assert "office &amp; lab" in html and "site&lt;1&gt;.yaml" in html
    assert "traffic to dc-app moved to broadband-b" in html
    assert re.search(r"<td class='ok'>failback_done</td>", html)


def test_nice_step_keeps_ticks_readable():
    assert nice_step(3.0) == 0.5
    assert nice_step(14.0) == 2
    assert nice_step(300.0) == 50
    assert 300 / nice_step(300.0) <= 12
