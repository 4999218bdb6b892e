"""One `validate` reports every problem it can find, and a hostile file
cannot make that cost more than the file is worth (issue 14)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from test_config import BASE, edit, problems

from netprobe.config import MAX_PROBLEMS_SHOWN, load_config
from netprobe.errors import ConfigError
from netprobe.yamlpos import MAX_VALUES


def test_schema_and_cross_reference_problems_come_in_one_run(tmp_path, monkeypatch):
    # three problems in three places: a bad value, a path to nowhere, a missing site
    text = edit("path: [ce-hq, dc-wan, dc-edge]", "path: [ce-hq, dc-wam, dc-edge]").replace(
        "site: dc-east", "site: dc-west").replace("priority: 2}", "priority: lots}")
    assert problems(tmp_path, monkeypatch, text) == [
        "site.yaml:6:41: devices.dc-edge.site: no site named 'dc-west' (did you mean 'dc-east'?)",
        "site.yaml:9:100: lines.broadband-b.priority: expected a whole number, got 'lots'",
        "site.yaml:15:19: endpoints.dc-app.path[1]: no device, line or group named 'dc-wam' "
        "(did you mean 'dc-wan'?)",
    ]


def test_a_required_field_missing_does_not_hide_the_names_elsewhere(tmp_path, monkeypatch):
    text = edit("  ce-hq: {address: 192.0.2.1}\n", "  ce-hq: {}\n").replace(
        "device: ce-hq, far_end: 198.51.100.5", "device: ce-hx, far_end: 198.51.100.5")
    found = problems(tmp_path, monkeypatch, text)
    assert found == [
        "site.yaml:5:10: devices.ce-hq.address: missing required key 'address'",
        "site.yaml:9:25: lines.broadband-b.device: no device named 'ce-hx' (did you mean 'ce-hq'?)",
    ]


def test_many_problems_show_the_first_fifty_by_position_and_count_the_rest(tmp_path):
    endpoints = "".join(f"  e{i:03d}: {{address: 203.0.113.9, path: [nowhere-{i}]}}\n"
                        for i in range(120))
    config = tmp_path / "site.yaml"
    config.write_text(BASE + endpoints)
    with pytest.raises(ConfigError) as info:
        load_config(config)
    assert info.value.total == 120 and len(info.value.problems) == MAX_PROBLEMS_SHOWN
    assert info.value.problems[0].endswith("e000.path[0]: no device, line or group named "
                                           "'nowhere-0'")
    last = MAX_PROBLEMS_SHOWN - 1
    assert info.value.problems[-1].endswith(f"e{last:03d}.path[0]: no device, line or group "
                                            f"named 'nowhere-{last}'")
    message = str(info.value)
    assert message.splitlines()[0] == f"{config}: 120 problems:"
    assert message.splitlines()[-1] == "... and 70 more problems not shown; fix these and run again"


def test_an_aliased_mistake_is_said_once_at_the_anchor(tmp_path, monkeypatch):
    uses = "".join(f"  d{i}: *bad\n" for i in range(500))
    text = ("version: 1\ndevices:\n  d: &bad {address: nope, path: [ce], tags: {a: [7]}}\n"
            + uses)
    found = problems(tmp_path, monkeypatch, text)
    # a schema problem and a cross-reference problem, each once for 501 devices
    assert found == [
        "site.yaml:3:21: devices.d.address: 'nope' is not an IPv4 or IPv6 address (also reached "
        "through aliases as devices.d0.address, devices.d1.address, devices.d2.address and "
        "497 more)",
        "site.yaml:3:34: devices.d.path[0]: no device, line or group named 'ce' (also reached "
        "through aliases as devices.d0.path[0], devices.d1.path[0], devices.d2.path[0] and "
        "497 more)",
        "site.yaml:3:49: devices.d.tags.a: expected text, got a list (also reached through "
        "aliases as devices.d0.tags.a, devices.d1.tags.a, devices.d2.tags.a and 497 more)",
    ]


def test_a_long_list_is_one_problem_not_one_per_item(tmp_path, monkeypatch):
    text = edit("probes: [icmp, tcp/443]", "probes: [" + ", ".join(["bogus"] * 5000) + "]")
    (found,) = problems(tmp_path, monkeypatch, text)
    assert found == ("site.yaml:16:13: endpoints.dc-app.probes: at most 64 entries, got 5000: "
                     "is this the list you meant?")


def test_a_huge_flow_sequence_stops_at_the_value_cap_where_it_is_reached(tmp_path, monkeypatch):
    # 2 MB of one flow list: refused as soon as the cap is passed, at that item
    items = ",".join(["1"] * (MAX_VALUES + 200_000))
    text = f"version: 1\ndevices: {{d: {{address: 192.0.2.1, path: [{items}]}}}}\n"
    (found,) = problems(tmp_path, monkeypatch, text)
    line, column = found.split(":")[1:3]
    assert line == "2" and int(column) < len(text.splitlines()[1]) - 100_000
    assert f"expands to more than {MAX_VALUES} values" in found


# -- typos that split a group ---------------------------------------------------

TWO_GROUPS = BASE.replace("groups:\n  dc-wan: {failback: auto}\n", "") + """\
  extra-c: {device: ce-hq, far_end: 198.51.100.9, carrier: carrier-c, group: dc-wna, priority: 3}
"""


def test_a_one_line_group_one_letter_off_another_is_an_error_with_did_you_mean(
        tmp_path, monkeypatch):
    text = BASE.replace("group: dc-wan, priority: 2", "group: dc-wna, priority: 2")
    assert problems(tmp_path, monkeypatch, text) == [
        "site.yaml:9:82: lines.broadband-b.group: group 'dc-wna' has only this line, and its "
        "name is one letter off group 'dc-wan' (did you mean 'dc-wan'?); a typo here splits a "
        "redundancy group. If 'dc-wna' is really a group of its own, declare it under groups: "
        "(dc-wna: {failback: auto})",
    ]


def test_a_one_line_group_declared_under_groups_is_meant(tmp_path):
    config = tmp_path / "site.yaml"
    config.write_text(BASE.replace("group: dc-wan, priority: 2", "group: dc-wna, priority: 2")
                      .replace("  dc-wan: {failback: auto}\n",
                               "  dc-wan: {failback: auto}\n  dc-wna: {failback: manual}\n"))
    cfg = load_config(config)
    assert cfg.lines["broadband-b"].group == "dc-wna"


def test_validate_exits_3_on_the_typo_where_the_right_file_passes(tmp_path):
    right = tmp_path / "right.yaml"
    right.write_text(BASE)
    typo = tmp_path / "typo.yaml"
    typo.write_text(BASE.replace("group: dc-wan, priority: 2", "group: dc-wam, priority: 2"))
    run = [sys.executable, "-m", "netprobe", "validate"]
    ok = subprocess.run([*run, str(right)], capture_output=True, text=True, timeout=60)
    bad = subprocess.run([*run, str(typo)], capture_output=True, text=True, timeout=60)
    assert ok.returncode in (0, 1, 2), ok.stderr
    assert bad.returncode == 3 and "did you mean 'dc-wan'?" in bad.stderr


def test_one_edit_covers_change_insert_delete_and_swap():
    from netprobe.config import _one_edit_apart

    assert _one_edit_apart("dc-wan", "dc-wam")  # changed
    assert _one_edit_apart("dc-wan", "dc-wann")  # inserted
    assert _one_edit_apart("dc-wan", "dc-wa")  # deleted
    assert _one_edit_apart("dc-wan", "dc-wna")  # neighbours swapped
    assert not _one_edit_apart("dc-wan", "dc-wan")
    assert not _one_edit_apart("dc-wan", "dc-lan-2")
    assert not _one_edit_apart("wan-a", "wan-b-c")
    assert not _one_edit_apart("wan1", "wan2")  # numbered on purpose
    assert not _one_edit_apart("g", "h") and not _one_edit_apart("ab", "ac")  # too short


# -- text that reaches terminals ------------------------------------------------

@pytest.mark.parametrize(("where", "text"), [
    ("vantage", 'version: 1\nvantage: "city\\e[31mhall"\n'),
    ("a tag value", 'version: 1\nsites: {s: {tags: {note: "a\\u202eb"}}}\n'),
    ("a key", 'version: 1\nsites: {s: {tags: {"no\\x07te": x}}}\n'),
    ("a line break", 'version: 1\nsites: {s: {building: "main\\nwing"}}\n'),
])
def test_control_characters_are_refused_at_load(tmp_path, monkeypatch, where, text):
    (found,) = problems(tmp_path, monkeypatch, text)
    assert "contains a" in found and "must be one line of plain text" in found, where
    assert "\x1b" not in found and "\u202e" not in found and "\x07" not in found


def test_every_message_starts_with_file_line_col_in_plain_ascii(tmp_path, monkeypatch):
    text = edit("probes: [icmp, tcp/443]", "probes: [icmp, tcp/https]").replace(
        "vantage", "vantage") + "  café: {address: 203.0.113.9, path: [ce-hq, dc-wam]}\n"
    for line in problems(tmp_path, monkeypatch, text):
        head = line.split(": ", 1)[0]
        name, row, col = head.split(":")
        assert name == "site.yaml" and row.isdigit() and col.isdigit(), line


def test_a_hostile_file_fails_fast_through_the_command(tmp_path):
    # the cost is measured by bench/config_hostile.py; here: bounded output, exit 3
    uses = "".join(f"  d{i}: *bad\n" for i in range(2000))
    config = tmp_path / "alias.yaml"
    config.write_text("version: 1\ndevices:\n  d: &bad {address: nope, path: ["
                      + ", ".join(["1"] * 60) + "]}\n" + uses)
    proc = subprocess.run([sys.executable, "-m", "netprobe", "validate", str(config)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3
    lines = proc.stderr.splitlines()
    assert lines[0] == f"netprobe: {config}: 61 problems:"
    assert len(lines) == 1 + MAX_PROBLEMS_SHOWN + 1 and len(proc.stderr) < 50_000
    assert Path(config).exists()


def test_an_alias_copy_does_not_inherit_the_anchor_entrys_bad_name(tmp_path, monkeypatch):
    text = 'version: 1\ndevices:\n  "bad name": &b {address: nope}\n  good: *b\n'
    found = problems(tmp_path, monkeypatch, text)
    assert [line.split(": ", 2)[1] for line in found] == ["devices['bad name']",
                                                          "devices['bad name'].address"]
    assert "good" not in found[0] and "devices.good.address" in found[1]
