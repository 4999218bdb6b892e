"""The config loader: each invalid config paired with its exact message lines.

Files are written under tmp_path and loaded by a relative name, so the
expected lines read as a user sees them: `site.yaml:LINE:COL: path: message`.
"""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml

from netprobe.config import (
    MAX_CONFIG_BYTES,
    Config,
    DnsSpec,
    TcpSpec,
    config_json_schema,
    load_config,
    load_topology,
)
from netprobe.errors import ConfigError
from netprobe.topology import Kind, build_topology

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "configs" / "example.yaml"
DATA = Path(__file__).resolve().parent / "data" / "configs"

# A small valid config; the cases below change one thing in it.
BASE = """\
version: 1
sites:
  dc-east: {kind: datacenter}
devices:
  ce-hq: {address: 192.0.2.1}
  dc-edge: {address: 203.0.113.1, site: dc-east, path: [ce-hq, dc-wan]}
lines:
  leased-a: {device: ce-hq, far_end: 198.51.100.1, carrier: carrier-a, group: dc-wan, priority: 1}
  broadband-b: {device: ce-hq, far_end: 198.51.100.5, carrier: carrier-b, group: dc-wan, priority: 2}
groups:
  dc-wan: {failback: auto}
endpoints:
  dc-app:
    address: 203.0.113.10
    path: [ce-hq, dc-wan, dc-edge]
    probes: [icmp, tcp/443]
"""


def edit(old: str, new: str) -> str:
    assert BASE.count(old) == 1, old
    return BASE.replace(old, new)


def problems(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str | bytes) -> list[str]:
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "site.yaml"
    if isinstance(text, bytes):
        target.write_bytes(text)
    else:
        target.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config("site.yaml")
    assert info.value.path == "site.yaml"
    return info.value.problems


CASES: list[tuple[str, str | bytes, list[str]]] = [
    ("unknown key, did you mean",
     edit("ce-hq: {address: 192.0.2.1}", "ce-hq: {adress: 192.0.2.1}"),
     ["site.yaml:5:10: devices.ce-hq.address: missing required key 'address'",
      "site.yaml:5:11: devices.ce-hq.adress: unknown key 'adress' (did you mean 'address'?)"]),
    ("unknown top-level key lists nothing close",
     BASE + "colour: blue\n",
     ["site.yaml:17:1: colour: unknown key 'colour' (expected one of: version, vantage, "
      "defaults, sites, devices, lines, groups, endpoints)"]),
    ("bad duration",
     BASE + "defaults: {timeout: fast}\n",
     ["site.yaml:17:21: defaults.timeout: expected a duration like 1s or 150ms, got 'fast'"]),
    ("duration out of range",
     BASE + "defaults: {timeout: 2d}\n",
     ["site.yaml:17:21: defaults.timeout: expected a duration like 1s or 150ms, got '2d'"]),
    ("bad percentage",
     BASE + "defaults:\n  thresholds:\n    loss: {warn: ten%}\n",
     ["site.yaml:19:18: defaults.thresholds.loss.warn: expected a percentage like 10%, got 'ten%'"]),
    ("a bare number as a percentage",
     BASE + "defaults:\n  thresholds:\n    loss: {warn: 10}\n",
     ["site.yaml:19:18: defaults.thresholds.loss.warn: 10 is read as a fraction of 1; "
      "write 10% for a percentage"]),
    ("warn above crit",
     BASE + "defaults:\n  thresholds:\n    rtt: {warn: 2s, crit: 500ms}\n",
     ["site.yaml:19:5: defaults.thresholds.rtt: warn (2000ms) must not be above crit (500ms)"]),
    ("bad address",
     edit("192.0.2.1}", "192.0.2.300}"),
     ["site.yaml:5:20: devices.ce-hq.address: '192.0.2.300' is not an IPv4 or IPv6 address"]),
    ("unknown name in a path, did you mean",
     edit("path: [ce-hq, dc-wan, dc-edge]", "path: [ce-hq, dc-wam, dc-edge]"),
     ["site.yaml:15:19: endpoints.dc-app.path[1]: no device, line or group named 'dc-wam' "
      "(did you mean 'dc-wan'?)"]),
    ("an endpoint named in a path",
     BASE + "  web: {address: 203.0.113.11, path: [dc-app]}\n",
     ["site.yaml:17:39: endpoints.web.path[0]: 'dc-app' is an endpoint; a path lists the "
      "devices, lines or groups crossed on the way"]),
    ("a line's device missing",
     edit("{device: ce-hq, far_end: 198.51.100.5", "{device: ce-hp, far_end: 198.51.100.5"),
     ["site.yaml:9:25: lines.broadband-b.device: no device named 'ce-hp' (did you mean 'ce-hq'?)"]),
    ("a required key missing, with what it is for",
     edit("{device: ce-hq, far_end: 198.51.100.5, ", "{device: ce-hq, "),
     ["site.yaml:9:16: lines.broadband-b.far_end: missing required key 'far_end' (the carrier's "
      "end; probed to test this line alone)"]),
    ("a line's device is a line",
     edit("{device: ce-hq, far_end: 198.51.100.5", "{device: leased-a, far_end: 198.51.100.5"),
     ["site.yaml:9:25: lines.broadband-b.device: 'leased-a' is a line, not a device; a line's "
      "device is the router at our end"]),
    ("duplicate priority in a group",
     edit("group: dc-wan, priority: 2}", "group: dc-wan, priority: 1}"),
     ["site.yaml:9:100: lines.broadband-b.priority: priority 1 is also leased-a's in group "
      "dc-wan; give each line of a group its own priority (1 = preferred)"]),
    ("default priorities clash, pointing at the line",
     edit(", priority: 1}", "}").replace(", priority: 2}", "}"),
     ["site.yaml:9:3: lines.broadband-b: priority 1 is also leased-a's in group dc-wan; give "
      "each line of a group its own priority (1 = preferred)"]),
    ("cycle through a group",
     edit("ce-hq: {address: 192.0.2.1}", "ce-hq: {address: 192.0.2.1, path: [dc-edge]}"),
     ["site.yaml:5:38: devices.ce-hq.path[0]: path loop: ce-hq -> dc-edge -> ce-hq "
      "(a device cannot be reached through itself)"]),
    ("a device in its own path",
     edit("path: [ce-hq, dc-wan]}", "path: [dc-edge]}"),
     ["site.yaml:6:57: devices.dc-edge.path[0]: path loop: dc-edge -> dc-edge "
      "(a device cannot be reached through itself)"]),
    ("duplicate YAML key",
     edit("  dc-edge:", "  ce-hq: {address: 192.0.2.2}\n  dc-edge:"),
     ["site.yaml:6:3: devices.ce-hq: duplicate key 'ce-hq' (first at line 5); YAML would "
      "silently keep only the last one"]),
    ("wrong type: text for a number",
     BASE + "defaults: {attempts: three}\n",
     ["site.yaml:17:22: defaults.attempts: expected a whole number, got 'three'"]),
    ("wrong type: a list for a mapping",
     edit("ce-hq: {address: 192.0.2.1}", "ce-hq: [192.0.2.1]"),
     ["site.yaml:5:10: devices.ce-hq: expected a mapping (key: value), got a list"]),
    ("number out of range",
     BASE + "defaults: {attempts: 1000}\n",
     ["site.yaml:17:22: defaults.attempts: must be at most 100, got 1000"]),
    ("YAML reads yes as a boolean",
     edit("carrier: carrier-a", "carrier: yes"),
     ["site.yaml:8:61: lines.leased-a.carrier: expected text, got yes (YAML reads yes as a "
      "boolean; put it in quotes: 'yes')"]),
    ("a literal with a near miss",
     edit("failback: auto", "failback: automatic"),
     ["site.yaml:11:22: groups.dc-wan.failback: expected 'auto' or 'manual', got 'automatic' "
      "(did you mean 'auto'?)"]),
    ("missing version",
     BASE.replace("version: 1\n", ""),
     ["site.yaml:1:1: missing 'version: 1' (the config format version) at the top of the file"]),
    ("version 2",
     BASE.replace("version: 1", "version: 2"),
     ["site.yaml:1:10: version: version 2 is not supported: this netprobe reads version 1 configs"]),
    ("version as text",
     BASE.replace("version: 1", "version: '1'"),
     ["site.yaml:1:10: version: expected the number 1, got '1'"]),
    ("address and host both",
     edit("    address: 203.0.113.10\n", "    address: 203.0.113.10\n    host: app.example\n"),
     ["site.yaml:13:3: endpoints.dc-app: give address or host, not both"]),
    ("neither address nor host",
     edit("    address: 203.0.113.10\n", ""),
     ["site.yaml:13:3: endpoints.dc-app: give an address (an IP) or a host (a name resolved "
      "at run time)"]),
    ("an IP address as host",
     edit("    address: 203.0.113.10\n", "    host: 203.0.113.10\n"),
     ["site.yaml:14:11: endpoints.dc-app.host: '203.0.113.10' is an IP address: write it as "
      "address: 203.0.113.10"]),
    ("unknown probe string",
     edit("[icmp, tcp/443]", "[icmp, tcp:443, ping]"),
     ["site.yaml:16:20: endpoints.dc-app.probes[1]: unknown probe 'tcp:443' "
      "(did you mean 'tcp/443'?)",
      "site.yaml:16:29: endpoints.dc-app.probes[2]: unknown probe 'ping' "
      "(use icmp, tcp/PORT, trace, or dns: {query: NAME})"]),
    ("tcp port out of range",
     edit("tcp/443", "tcp/70000"),
     ["site.yaml:16:20: endpoints.dc-app.probes[1]: port 70000 in 'tcp/70000' is out of range "
      "(1 to 65535)"]),
    ("a dns probe's body, field by field",
     edit("[icmp, tcp/443]", "[icmp, {dns: {qeury: www.example, type: AAA}}]"),
     ["site.yaml:16:26: endpoints.dc-app.probes[1].dns.query: missing required key 'query'",
      "site.yaml:16:27: endpoints.dc-app.probes[1].dns.qeury: unknown key 'qeury' "
      "(did you mean 'query'?)",
      "site.yaml:16:53: endpoints.dc-app.probes[1].dns.type: expected 'A', 'AAAA', 'CNAME', "
      "'MX', 'TXT', 'NS', 'SOA', 'PTR' or 'SRV', got 'AAA' (did you mean 'AAAA'?)"]),
    ("a dns expectation that cannot match its type",
     edit("[icmp, tcp/443]", "[{dns: {query: www.example, expect: [www.example]}}]"),
     ["site.yaml:16:50: endpoints.dc-app.probes[0].dns.expect[0]: a type A answer is an IPv4 "
      "address, got 'www.example'"]),
    ("a probe listed twice",
     edit("[icmp, tcp/443]", "[icmp, tcp/443, icmp]"),
     ["site.yaml:16:13: endpoints.dc-app.probes: probe listed twice: icmp"]),
    ("undeclared site, with the hint to declare it",
     edit("{address: 192.0.2.1}", "{address: 192.0.2.1, site: city-hall}"),
     ["site.yaml:5:37: devices.ce-hq.site: no site named 'city-hall' (declare it under sites:, "
      "e.g. sites: {city-hall: {kind: datacenter}})"]),
    ("undeclared site, did you mean",
     edit("site: dc-east", "site: dc-est"),
     ["site.yaml:6:41: devices.dc-edge.site: no site named 'dc-est' (did you mean 'dc-east'?)"]),
    ("backup is itself, backup unknown",
     BASE + "    backup: dc-app\n  web: {address: 203.0.113.11, backup: dc-ap}\n",
     ["site.yaml:17:13: endpoints.dc-app.backup: an endpoint cannot be its own backup",
      "site.yaml:18:40: endpoints.web.backup: no endpoint named 'dc-ap' (did you mean 'dc-app'?)"]),
    ("a device and a line with one name",
     BASE.replace("lines:\n", "lines:\n  dc-edge: {device: ce-hq, far_end: 198.51.100.9}\n"),
     ["site.yaml:8:3: lines.dc-edge: 'dc-edge' is already the name of a device (line 6); "
      "devices, lines, groups and endpoints share one set of names, as paths and probe ids use them"]),
    ("a group without lines",
     edit("  dc-wan: {failback: auto}", "  dc-wan: {failback: auto}\n  dc-lan: {}"),
     ["site.yaml:12:3: groups.dc-lan: group 'dc-lan' has no lines (did you mean 'dc-wan'?)"]),
    ("a name that is not a name",
     edit("  ce-hq: {address: 192.0.2.1}", "  ce-hq: {address: 192.0.2.1}\n  'core router': {address: 192.0.2.2}"),
     ["site.yaml:6:3: devices['core router']: 'core router' is not a valid name: use letters "
      "(any script), digits, '.', '_' and '-', starting with a letter or digit"]),
    ("names in any script are names",
     edit("  ce-hq: {address: 192.0.2.1}", "  ce-hq: {address: 192.0.2.1}\n  本庁舎: {address: 192.0.2.2}")
     + "  web: {address: 203.0.113.10, path: [本庁舎, 回線]}\n",
     ["site.yaml:18:44: endpoints.web.path[1]: no device, line or group named '回線'"]),
    ("unknown YAML tag",
     BASE + "vantage: !!python/object:os.system echo\n",
     ["site.yaml:17:10: vantage: unsupported YAML tag '!!python/object:os.system': a config "
      "holds plain values only (strings, numbers, lists, mappings)"]),
    ("empty file", "", ["site.yaml:1:1: the file is empty; a config starts with 'version: 1'"]),
    ("only comments", "# nothing yet\n",
     ["site.yaml:1:1: the file is empty; a config starts with 'version: 1'"]),
    ("not a mapping", "- version: 1\n",
     ["site.yaml:1:1: the top level must be a mapping of settings (version: 1, devices: ..., "
      "endpoints: ...), got a list"]),
    ("a scalar document", "hello\n",
     ["site.yaml:1:1: the top level must be a mapping of settings (version: 1, devices: ..., "
      "endpoints: ...), got 'hello'"]),
    ("two documents", BASE + "---\nversion: 1\n",
     ["site.yaml:17:1: only one YAML document per file (a second one starts here)"]),
    ("YAML syntax", "version: 1\ndevices: {ce: {address: 192.0.2.1}\n",
     ["site.yaml:3:1: not valid YAML: did not find expected ',' or '}' (while parsing a flow mapping)"]),
    ("tabs for indentation", "version: 1\ndevices:\n\tce: {address: 192.0.2.1}\n",
     ["site.yaml:3:1: not valid YAML: found character that cannot start any token "
      "(while scanning for the next token)"]),
    ("an alias to nothing", "version: 1\nvantage: *nowhere\n",
     ["site.yaml:2:10: alias *nowhere has no anchor &nowhere before it"]),
    ("a recursive alias", "version: 1\ngroups: &g {a: *g}\n",
     ["site.yaml:2:16: alias *g refers to a collection that contains it"]),
    ("a number too long for Python", f"version: 1\ndefaults: {{attempts: {'9' * 5000}}}\n",
     ["site.yaml:2:22: defaults.attempts: number '9999999999999999999999999...' is too long"]),
    ("not UTF-8", b"version: 1\nvantage: h\xf4tel-de-ville\n",
     ["site.yaml:2:11: not UTF-8 text (byte 0xf4); save the file as UTF-8"]),
    # a key ending in a line break is named escaped, so each problem stays one line
    ("a key ending in a line break", 'version: 1\nendpoints:\n  "web\\n": {address: 192.0.2.1}\n',
     ["site.yaml:3:3: endpoints['web\\n']: 'web\\n' is not a valid name: use letters (any "
      "script), digits, '.', '_' and '-', starting with a letter or digit",
      "site.yaml:3:3: endpoints['web\\n']: contains a line break; names and text in a config "
      "are printed in terminals, reports and tickets, so they must be one line of plain text"]),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_invalid_config_gives_exact_messages(tmp_path, monkeypatch, text, expected):
    assert problems(tmp_path, monkeypatch, text) == expected


def test_every_problem_is_reported_at_once_in_file_order(tmp_path, monkeypatch):
    text = (DATA / "many-problems.yaml").read_text(encoding="utf-8")
    assert problems(tmp_path, monkeypatch, text) == [
        "site.yaml:8:12: defaults.timeout: expected a duration like 1s or 150ms, got 'soon'",
        "site.yaml:9:13: defaults.attempts: expected a whole number, got 'three'",
        "site.yaml:13:5: devices.ce-hq.address: missing required key 'address'",
        "site.yaml:13:5: devices.ce-hq.adress: unknown key 'adress' (did you mean 'address'?)",
        "site.yaml:23:3: lines.leased-a: duplicate key 'leased-a' (first at line 17); YAML would "
        "silently keep only the last one",
        "site.yaml:25:14: lines.leased-a.far_end: '198.51.100.256' is not an IPv4 or IPv6 address",
        "site.yaml:29:3: endpoints.dc-app: give address or host, not both",
        "site.yaml:32:20: endpoints.dc-app.probes[1]: unknown probe 'tcp/https' "
        "(a tcp probe names a port number: tcp/443)",
    ]


def test_cross_check_problems_are_all_reported_too(tmp_path, monkeypatch):
    text = edit("path: [ce-hq, dc-wan, dc-edge]", "path: [ce-hp, dc-wam]").replace(
        "site: dc-east", "site: dc-west")
    assert problems(tmp_path, monkeypatch, text) == [
        "site.yaml:6:41: devices.dc-edge.site: no site named 'dc-west' (did you mean 'dc-east'?)",
        "site.yaml:15:12: endpoints.dc-app.path[0]: no device, line or group named 'ce-hp' "
        "(did you mean 'ce-hq'?)",
        "site.yaml:15:19: endpoints.dc-app.path[1]: no device, line or group named 'dc-wam' "
        "(did you mean 'dc-wan'?)",
    ]


def test_missing_file_names_the_file_and_the_errno_text(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_config("nowhere.yaml")
    assert info.value.problems == ["nowhere.yaml: cannot read the file: No such file or directory"]
    with pytest.raises(ConfigError) as info:
        load_config(".")
    assert info.value.problems == [".: cannot read the file: Is a directory"]


def test_a_file_over_the_size_cap_is_refused_without_parsing(tmp_path, monkeypatch):
    text = BASE + "# padding\n" * (MAX_CONFIG_BYTES // 10 + 1)
    assert problems(tmp_path, monkeypatch, text) == [
        "site.yaml: the file is larger than 2 MiB; is it really a netprobe config?"]


def test_a_utf8_bom_and_unicode_names_are_fine(tmp_path):
    target = tmp_path / "site.yaml"
    target.write_bytes("\ufeff".encode() + BASE.replace("version: 1", "version: 1\nvantage: 市役所")
                       .encode())
    assert load_config(target).vantage == "市役所"


def test_an_error_inside_an_anchor_points_at_the_anchor(tmp_path, monkeypatch):
    text = edit("    probes: [icmp, tcp/443]\n", "    <<: &tuning {attempts: 0}\n    probes: [icmp]\n"
                ) + "  web: {address: 203.0.113.11, <<: *tuning}\n"
    # said once, at the anchor, naming where else the alias brings it
    assert problems(tmp_path, monkeypatch, text) == [
        "site.yaml:16:28: endpoints.dc-app.attempts: must be at least 1, got 0 "
        "(also reached through aliases as endpoints.web.attempts)",
    ]


def test_merge_keys_and_aliases_load(tmp_path):
    target = tmp_path / "site.yaml"
    target.write_text(BASE + (
        "  web: &web\n"
        "    address: 203.0.113.11\n"
        "    path: [ce-hq, dc-wan, dc-edge]\n"
        "    probes: [tcp/443]\n"
        "  web-2:\n"
        "    <<: *web\n"
        "    address: 203.0.113.12\n"), encoding="utf-8")
    cfg = load_config(target)
    assert cfg.endpoints["web-2"].address == "203.0.113.12"
    assert cfg.endpoints["web-2"].path == ["ce-hq", "dc-wan", "dc-edge"]
    assert cfg.endpoints["web-2"].probes == [TcpSpec(port=443)]


# -- the example -------------------------------------------------------------

def test_example_loads_into_the_expected_topology():
    topo = load_topology(EXAMPLE)
    kinds = {name: c.kind for name, c in topo.components.items()}
    assert {n for n, k in kinds.items() if k == Kind.DEVICE} == {"ce-hq", "dc-edge", "dc-cloud-gw"}
    assert {n for n, k in kinds.items() if k == Kind.LINE} == {"leased-a", "broadband-b", "cloud-link"}
    assert {n for n, k in kinds.items() if k == Kind.ENDPOINT} == {
        "dc-app", "intra-dns", "web", "web-dr", "cloud-mail"}
    assert {n for n, k in kinds.items() if k == Kind.SERVICE} == {
        "dc-app/tcp/443", "dc-app/tcp/22", "intra-dns/dns", "web/tcp/443", "web-dr/tcp/443",
        "cloud-mail/tcp/25"}
    c = topo.components
    assert c["dc-edge"].path == ("ce-hq", "dc-wan")
    assert c["leased-a"].path == ("ce-hq",) and c["leased-a"].carrier == "carrier-a.example"
    assert c["cloud-link"].path == ("ce-hq", "dc-wan", "dc-edge", "dc-cloud-gw")
    assert c["dc-app/tcp/443"].path == ("ce-hq", "dc-wan", "dc-edge", "dc-app")
    assert c["web"].host == "www.city.example" and c["web"].backup == "web-dr"
    assert topo.groups["dc-wan"].lines == ("leased-a", "broadband-b")
    assert topo.groups["dc-wan"].failback == "auto"
    dns = c["intra-dns/dns"].probe
    assert isinstance(dns, DnsSpec) and dns.check.expect == ["203.0.113.10"]
    assert topo.config.defaults.thresholds.rtt.warn == pytest.approx(0.150)
    assert topo.config.defaults.thresholds.loss.warn == pytest.approx(0.10)
    assert topo.config.endpoints["web-dr"].timeout == 2.0
    assert topo.source == str(EXAMPLE)


def test_example_uses_documentation_addresses_only():
    import ipaddress

    cfg = load_config(EXAMPLE)
    docs = [ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")]
    addresses = [d.address for d in cfg.devices.values()]
    addresses += [ln.far_end for ln in cfg.lines.values()] + [h for ln in cfg.lines.values()
                                                              for h in ln.hops or []]
    addresses += [e.address for e in cfg.endpoints.values() if e.address]
    assert addresses and all(any(ipaddress.ip_address(a) in n for n in docs) for a in addresses)
    assert all(e.host.endswith(".example") for e in cfg.endpoints.values() if e.host)


def test_a_dumped_config_validates_again():
    # `netprobe diagnose run.json` rebuilds the topology from the report's dump
    cfg = load_config(EXAMPLE)
    again = Config.model_validate(cfg.model_dump(mode="json"))
    assert again == cfg
    assert build_topology(again).components.keys() == build_topology(cfg).components.keys()


# -- the JSON Schema -----------------------------------------------------------

def test_schema_accepts_the_example_and_rejects_a_bad_document():
    schema = config_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"].endswith("2020-12/schema") and schema["$id"] and schema["title"]
    validator = jsonschema.Draft202012Validator(schema)
    doc = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    assert list(validator.iter_errors(doc)) == []

    bad = dict(doc, defaults={"timeout": "soon", "thresholds": {"loss": {"warn": "ten%"}}})
    bad["devices"] = {"ce-hq": {"adress": "192.0.2.1"}}
    bad["endpoints"] = {"x": {"address": "203.0.113.1", "probes": ["ping", {"dns": {"qeury": "a"}}]}}
    failing = {"/".join(str(p) for p in e.absolute_path) for e in validator.iter_errors(bad)}
    assert {"defaults/timeout", "defaults/thresholds/loss/warn", "devices/ce-hq",
            "endpoints/x/probes/0", "endpoints/x/probes/1"} <= failing
    assert not validator.is_valid(dict(doc, version=2))
    assert not validator.is_valid(dict(doc, devices={"core router": {"address": "192.0.2.1"}}))


@pytest.mark.parametrize("probe", ["icmp", "trace", "tcp/443", {"trace": None},
                                   {"trace": {"protocol": "tcp", "port": 443}},
                                   {"dns": {"query": "www.example", "expect": ["192.0.2.1"]}}])
def test_schema_and_loader_agree_on_probe_forms(tmp_path, probe):
    validator = jsonschema.Draft202012Validator(config_json_schema())
    doc = {"version": 1, "endpoints": {"x": {"address": "192.0.2.1", "probes": [probe]}}}
    assert validator.is_valid(doc)
    target = tmp_path / "site.yaml"
    target.write_text(yaml.safe_dump(doc), encoding="utf-8")
    assert len(load_config(target).endpoints["x"].probes) == 1


@pytest.mark.parametrize(("text", "expected"), [
    ("version: 1\ndefaults: {timeout: 0}\n",
     "site.yaml:2:21: defaults.timeout: timeout 0 leaves no time for an answer: use at least 1ms"),
    ("version: 1\nendpoints:\n  e: {address: 192.0.2.1, probes: []}\n",
     "site.yaml:3:35: endpoints.e.probes: needs at least 1 entry; an endpoint without probes "
     "would never be checked"),
    ('version: 1\nendpoints:\n  e: {address: 192.0.2.1, probes: [dns: {query: "a..b"}]}\n',
     "site.yaml:3:49: endpoints.e.probes[0].dns.query: 'a..b' is not a DNS name "
     "(A DNS label is empty.)"),
])
def test_values_that_would_make_a_run_lie_are_refused_at_load(tmp_path, monkeypatch, text,
                                                              expected):
    # a zero timeout discards every reply (everything "down"); no probes means never
    # checked; a bad query name would fail only at run time
    assert problems(tmp_path, monkeypatch, text) == [expected]


def test_booleans_are_refused_where_numbers_are_meant(tmp_path, monkeypatch):
    # YAML reads `yes` and `true` as booleans; pydantic's lax mode would make them 1
    text = ("version: 1\ndefaults: {attempts: yes}\n"
            "devices:\n  d: {address: 192.0.2.1}\n"
            "lines:\n  a: {device: d, far_end: 192.0.2.9, group: g, priority: true}\n"
            "endpoints:\n  e: {address: 192.0.2.5, probes: [dns: {query: a.example, port: true}]}\n")
    assert problems(tmp_path, monkeypatch, text) == [
        "site.yaml:2:22: defaults.attempts: expected a whole number, got yes",
        "site.yaml:6:58: lines.a.priority: expected a whole number, got true",
        "site.yaml:8:66: endpoints.e.probes[0].dns.port: expected a whole number, got true",
    ]


def test_a_kept_config_is_frozen_out_of_the_collectors_sight(tmp_path):
    import gc

    path = tmp_path / "site.yaml"
    path.write_text(BASE, encoding="utf-8")
    frozen_before = gc.get_freeze_count()
    try:
        load_config(path)  # a library caller's or a test's: no change to the collector
        assert gc.get_freeze_count() == frozen_before and gc.isenabled()
        config = load_config(path, keep=True)  # a command's: held until it exits
        assert gc.get_freeze_count() > frozen_before and gc.isenabled()
        assert config == load_config(path)
        # a config that fails freezes nothing
        gc.unfreeze()
        path.write_text(edit("version: 1", "version: 2"), encoding="utf-8")
        with pytest.raises(ConfigError):
            load_config(path, keep=True)
        assert gc.get_freeze_count() == 0 and gc.isenabled()
    finally:
        gc.unfreeze()


def test_tags_default_to_an_empty_mapping_of_each_entrys_own(tmp_path):
    # a factory, not a shared `= {}`; the schema still tells editors the default
    path = tmp_path / "site.yaml"
    path.write_text(BASE + "  dc-db: {address: 203.0.113.20}\n", encoding="utf-8")
    config = load_config(path)
    entries = [*config.devices.values(), *config.lines.values(), *config.endpoints.values(),
               *config.sites.values()]
    assert len(entries) == 7 and all(e.tags == {} for e in entries)
    assert len({id(e.tags) for e in entries}) == len(entries)
    assert "tags" not in config.endpoints["dc-db"].model_fields_set
    defs = config_json_schema()["$defs"]
    assert all(defs[m]["properties"]["tags"]["default"] == {}
               for m in ("Site", "Device", "Line", "Endpoint"))
