"""Text that comes from the network (a DNS TXT answer, an error message) must
render as text in every format, never as rich markup."""

from __future__ import annotations

import copy

from builders import CITY_HALL, make_result, make_topology, with_results

from netprobe.diagnosis import diagnose
from netprobe.report import Format, render
from netprobe.report.model import build_report


def test_markup_like_answers_render_verbatim_in_every_format():
    config = copy.deepcopy(CITY_HALL)
    config["endpoints"]["intra-dns"]["probes"][1] = {
        "dns": {"query": "v.intra.example", "type": "TXT", "expect": ["ok"]}}
    topology = make_topology(config)
    evidence = with_results(topology, [make_result(
        "intra-dns/dns", address="203.0.113.53", error="dns_mismatch",
        answers=['"see [/status] page [bold]now"'])])
    report = build_report("v", "site.yaml", evidence, diagnose(topology, evidence))
    for fmt in Format:
        text = render(report, fmt)  # raised MarkupError for the table before
        assert text
    table = render(report, Format.TABLE)
    assert "[/status]" in table and "[bold]now" in table
