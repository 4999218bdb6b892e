"""JSON parts made ahead of time splice in byte for byte (report/json_format.Prerendered).

Pure: synthetic reports, no network.
"""

from __future__ import annotations

import dataclasses
import json

import orjson
import pytest
from report_builders import big_report, sample_report

from netprobe.report.json_format import Prerendered, render_json_bytes

TOPOLOGY = {"version": 1, "vantage": "city-hall-lan", "devices": {"ce-hq": {
    "address": "192.0.2.1", "path": [], "tags": {"rack": "B2", "note": "café, ケーブル"}}},
    "endpoints": {}, "lines": {}, "groups": {}, "sites": {}, "empty": [], "none": {}}


def rendered_at_once(report) -> bytes:
    return orjson.dumps(report.to_json(), option=orjson.OPT_INDENT_2)


def with_parts(report, which: str):
    parts = Prerendered()
    data = report.to_json()
    sources = {
        "results": [(r, r.to_json(shared=True)) for r in report.evidence.results],
        "components": [(c, c.to_json()) for c in report.diagnosis.components],
        "topology": [(report.extra["topology"], report.extra["topology"])],
    }
    for kind, pairs in sources.items():
        if which in ("all", kind):
            for k, (source, value) in enumerate(pairs):
                if which == "all" and k % 3 == 1:
                    continue  # some made ahead, some not: both in one output
                parts.add(source, value, depth=1 if kind == "topology" else 2)
    assert data == report.to_json()  # (making parts changes nothing)
    return dataclasses.replace(report, prerendered=parts)


@pytest.mark.parametrize("which", ["all", "results", "components", "topology"])
@pytest.mark.parametrize("make", [lambda: sample_report(topology=TOPOLOGY),
                                  lambda: big_report(300, tag="x")], ids=["sample", "big"])
def test_parts_made_ahead_render_byte_for_byte_the_same(make, which):
    report = make()
    if "topology" not in report.extra:
        report = dataclasses.replace(report, extra={**report.extra, "topology": TOPOLOGY})
    expected = rendered_at_once(report)
    got = render_json_bytes(with_parts(report, which))
    assert got == expected
    assert json.loads(got) == json.loads(expected)


def test_a_part_is_used_only_for_its_own_object():
    """By identity, not equality: an equal result made again (a guessed one the
    run replaced) gets its own JSON, never another object's bytes."""
    report = sample_report(topology=TOPOLOGY)
    parts = Prerendered()
    first = report.evidence.results[0]
    twin = dataclasses.replace(first)
    assert twin == first and twin is not first
    parts.add(twin, {"id": "not this one"}, depth=2)
    out = json.loads(render_json_bytes(dataclasses.replace(report, prerendered=parts)))
    assert out["probes"][0]["id"] == first.id


def test_to_json_without_parts_holds_no_fragment():
    """Other readers of to_json (history, the exporter) get plain data."""
    report = with_parts(sample_report(topology=TOPOLOGY), "all")
    json.dumps(report.to_json())  # the standard encoder would refuse a Fragment
