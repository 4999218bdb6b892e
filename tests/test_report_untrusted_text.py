"""Text that comes from the network (a DNS TXT answer, an error message) must
render as text in every format, never as rich markup."""

from __future__ import annotations

import copy
import re

import pytest
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


# Network text that Markdown would otherwise turn into links, emphasis or HTML.
HOSTILE = ("see [the status page](http://evil.example/x) **now** _or_ ~~never~~ "
           "<b>bold</b> <img src=x> &amp; www.evil.example https://evil.example/y "
           "admin@evil.example `code` ![img](http://evil.example/i.png) # | pipe")


def _hostile_report(tmp_vantage: str = "<i>city</i> [hall](http://evil.example)"):
    config = copy.deepcopy(CITY_HALL)
    config["endpoints"]["intra-dns"]["probes"][1] = {
        "dns": {"query": "v.intra.example", "type": "TXT", "expect": ["ok"]}}
    topology = make_topology(config)
    evidence = with_results(topology, [make_result(
        "intra-dns/dns", address="203.0.113.53", error="dns_mismatch", answers=[HOSTILE],
        message=f"answered {HOSTILE}, expected ok")])
    report = build_report(tmp_vantage, "site.yaml", evidence, diagnose(topology, evidence))
    assert any(HOSTILE in (p.message or "") for p in report.evidence.results)
    return report


def test_markdown_renders_network_text_as_text_in_githubs_renderer():
    """GitHub's own renderer (cmark-gfm, with its table, strikethrough and autolink
    extensions) finds no link, emphasis, image or HTML in what the network said."""
    cmarkgfm = pytest.importorskip("cmarkgfm", reason="cmarkgfm (PyPI) not installed")
    md = render(_hostile_report(), Format.MD)
    html = cmarkgfm.github_flavored_markdown_to_html(md)
    for made in ("<a ", "<em>", "<del>", "<img", "<b>", "<i>", "<strong>now"):
        assert made not in html, made
    # ours stay: the bold labels and the tables
    assert "<strong>vantage:</strong>" in html and "<table>" in html
    # and the text itself shows, mark for mark
    text = re.sub(r"<[^>]+>", "", html).replace("&lt;", "<").replace("&gt;", ">") \
        .replace("&quot;", '"').replace("&amp;", "&")
    assert "[the status page](http://evil.example/x) **now** _or_ ~~never~~" in text
    assert "<b>bold</b> <img src=x> &amp; www.evil.example https://evil.example/y" in text
    assert "admin@evil.example" in text
    assert "<i>city</i> [hall](http://evil.example)" in text


def test_history_markdown_headings_carry_no_html(tmp_path):
    from netprobe.history import record_run, render_history, summarize

    db = tmp_path / "h.db"
    for vantage in ("<img src=x onerror=alert(1)>", "plain"):
        record_run(db, _hostile_report(vantage))
    md = render_history(summarize(db), "md")
    headings = [line for line in md.splitlines() if line.startswith("#")]
    assert any("img" in h for h in headings)
    assert not any(re.search(r"(?<!\\)<[A-Za-z/]", h) for h in headings)
