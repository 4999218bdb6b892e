"""`netprobe schema` and the loader agree: every config the editor schema accepts,
the loader accepts, and the other way round (over the fuzz corpus and the shipped
configs). What JSON Schema cannot say is the loader's alone and is named here:
- references between names (a path naming a device that does not exist, a
  group without lines, two lines with one priority, loops): `netprobe validate`;
- warn above crit in a threshold (a schema cannot compare two values).
Documents JSON cannot hold (NaN, non-string keys are fine) are left out.

Edges where the two can still differ, none of which the corpus reaches: a
timeout in minutes or hours between 1 ms and 0.1 ms of resolution; whitespace
around an address or probe that Python's str.strip removes and ECMA-262's \\s
does not (or the other way round); one tcp port listed twice in two spellings
(tcp/443, tcp/0443); a DNS label whose IDNA form is longer than 63; a numeric
tag of more than 256 digits.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from schema_check import editor_validator
from test_config_fuzz import DUMPER, FUZZ, KEYS, TREES, mutated_example

from netprobe.config import load_config
from netprobe.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted([*ROOT.glob("configs/*.yaml"), *ROOT.glob("netprobe/data/*.yaml")])

# The loader's messages for what a schema cannot express (see the docstring).
NOT_EXPRESSIBLE = ("no device, line or group named", "no device named", "no site named",
                   "no endpoint named", "has no lines", "is also", "path loop",
                   "appears twice in this path", "is already the name of",
                   "is an endpoint; a path", "is a line, not a device",
                   "is an endpoint, not a device", "cannot be its own backup",
                   "must not be above crit")


def has_nan(node: Any) -> bool:
    if isinstance(node, float):
        return math.isnan(node)
    if isinstance(node, dict):
        return any(has_nan(k) or has_nan(v) for k, v in node.items())
    if isinstance(node, list):
        return any(has_nan(v) for v in node)
    return False


def loader_verdict(path: Path) -> tuple[bool, list[str]]:
    """(accepted as a document, the problems): problems a schema cannot express
    do not count against the document."""
    try:
        load_config(path)
    except ConfigError as exc:
        own = [p for p in exc.problems if not any(m in p for m in NOT_EXPRESSIBLE)]
        return not own, exc.problems
    return True, []


def agree(tmp_path: Path, data: Any) -> None:
    if has_nan(data):
        return
    path = tmp_path / "doc.yaml"
    path.write_text(yaml.dump(data, Dumper=DUMPER, allow_unicode=True, sort_keys=False),
                    encoding="utf-8")
    reread = yaml.safe_load(path.read_text(encoding="utf-8"))  # what an editor sees
    errors = [e.message for e in editor_validator().iter_errors(reread)]
    loader_ok, problems = loader_verdict(path)
    assert loader_ok == (not errors), (
        f"schema {'accepts' if not errors else 'refuses'} and loader "
        f"{'accepts' if loader_ok else 'refuses'}:\n{json.dumps(reread, default=str)[:600]}\n"
        f"schema: {errors[:3]}\nloader: {problems[:3]}")


@pytest.mark.parametrize("config", SHIPPED, ids=lambda p: p.name)
def test_shipped_configs_pass_the_schema(config):
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    assert list(editor_validator().iter_errors(data)) == []
    load_config(config)


@settings(FUZZ, max_examples=400)
@given(data=mutated_example())
def test_schema_and_loader_agree_on_mutated_examples(tmp_path, data):
    agree(tmp_path, data)


@settings(FUZZ, max_examples=300)
@given(data=st.dictionaries(KEYS, TREES, max_size=6))
def test_schema_and_loader_agree_on_documents_of_config_words(tmp_path, data):
    agree(tmp_path, {"version": 1, **data})


def _endpoint(**body: Any) -> dict[str, Any]:
    return {"version": 1, "endpoints": {"e": {"address": "192.0.2.10", **body}}}


# The cases where the schema was once looser than the loader, and names in other scripts.
CASES = [
    _endpoint(probes=["tcp/99999"]),
    _endpoint(probes=["tcp/0"]),
    _endpoint(probes=["tcp/65535", "tcp/1", " tcp/00443 "]),
    {"version": 1, "defaults": {"timeout": 0}},
    {"version": 1, "defaults": {"timeout": "0ms"}},
    {"version": 1, "defaults": {"timeout": "0.0005s"}},
    {"version": 1, "defaults": {"timeout": "1ms"}},
    {"version": 1, "defaults": {"timeout": "25h"}},
    {"version": 1, "defaults": {"interval": "86401s"}},
    {"version": 1, "defaults": {"interval": "0s", "attempts": 3.0}},
    {"version": 1, "endpoints": {"e": {"address": "192.0.2.10", "host": "www.example"}}},
    {"version": 1, "endpoints": {"e": {"probes": ["icmp"]}}},
    {"version": 1, "endpoints": {"e": {"address": None, "host": "www.example"}}},
    _endpoint(probes=["icmp", "icmp"]),
    _endpoint(probes=["trace", {"trace": {"max_hops": 3}}]),
    _endpoint(probes=[{"dns": {"query": "a.example"}}, {"dns": {"query": "b.example"}}]),
    {"version": 1, "endpoints": {"e": {"host": "bad..name"}}},
    {"version": 1, "endpoints": {"e": {"host": "192.0.2.1"}}},
    {"version": 1, "endpoints": {"e": {"host": "999.1.1.1"}}},
    {"version": 1, "defaults": {"thresholds": {"loss": {"warn": "10%", "crit": "150%"}}}},
    {"version": 1, "defaults": {"thresholds": {"loss": {"warn": "5%", "crit": "100.0%"}}}},
    _endpoint(probes=[{"dns": {"query": "a.example", "expect": ["2001:db8::1"]}}]),
    _endpoint(probes=[{"dns": {"query": "a.example", "type": "AAAA", "expect": ["2001:db8::1"]}}]),
    {"version": 1, "devices": {"café-süd": {"address": "192.0.2.1"}}},
    {"version": 1, "devices": {"ケーブル-1": {"address": "::1"}, "Москва.gw": {"address": "::"}}},
    {"version": 1, "devices": {"佐々木_ルータ": {"address": "192.0.2.1"}}},
    {"version": 1, "devices": {"core router": {"address": "192.0.2.1"}}},
    {"version": 1, "devices": {"🚀": {"address": "192.0.2.1"}}},
    {"version": 1, "devices": {"_x": {"address": "192.0.2.1"}}},
    {"version": 1, "devices": {"x": {"address": "fe80::1%eth0"}}},
    {"version": 1, "devices": {"x": {"address": "01.2.3.4"}}},
    _endpoint(probes=[{"dns": {"query": "a..b.example"}}]),
    _endpoint(probes=[{"dns": {"query": ".a.example"}}]),
    _endpoint(probes=[{"dns": {"query": "a" * 64 + ".example"}}]),
    _endpoint(probes=[{"dns": {"query": "a" * 63 + ".example."}}]),
    _endpoint(probes=[{"dns": {"query": "."}}]),
    _endpoint(attempts=0),
    _endpoint(attempts=101),
    _endpoint(probes=[{"trace": {"port": 0}}]),
    _endpoint(probes=[{"trace": {"port": 70000, "max_hops": 65}}]),
]


def test_the_schema_uses_only_keywords_json_schema_defines():
    """Every keyword the editor schema holds is one JSON Schema 2020-12 defines (or
    an annotation): an unknown one (pydantic's `ge`) is silently ignored by editors."""
    known = {"$schema", "$id", "$defs", "$ref", "title", "description", "default", "type",
             "properties", "required", "additionalProperties", "propertyNames", "items",
             "anyOf", "oneOf", "allOf", "not", "if", "then", "const", "enum", "pattern",
             "minimum", "maximum", "minLength", "maxLength", "minItems", "maxItems",
             "uniqueItems", "contains", "minContains", "maxContains", "examples"}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                assert key in known, key
                if key in ("properties", "$defs"):  # a mapping of names to schemas
                    for sub in value.values():
                        walk(sub)
                elif key not in ("default", "examples", "const", "enum"):
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    from netprobe.config import config_json_schema

    walk(config_json_schema())


@pytest.mark.parametrize("data", CASES, ids=range(len(CASES)))
def test_schema_and_loader_agree_on_the_known_cases(tmp_path, data):
    agree(tmp_path, data)


def test_non_ascii_names_pass_check_jsonschema(tmp_path):
    """The editor tool from PyPI (check-jsonschema: ECMA-262 patterns) accepts a
    name in another script, and refuses one with a space, like the loader."""
    import shutil
    import subprocess
    import sys

    tool = shutil.which("check-jsonschema") or str(Path(sys.executable).with_name(
        "check-jsonschema"))
    if not Path(tool).exists():
        pytest.skip("check-jsonschema (PyPI) not installed")
    schema = tmp_path / "netprobe.schema.json"
    done = subprocess.run([str(Path(sys.executable).with_name("netprobe")), "schema"],
                          capture_output=True, text=True, timeout=60)
    schema.write_text(done.stdout, encoding="utf-8")
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text("version: 1\ndevices:\n  café-süd: {address: 192.0.2.1}\n"
                    "  ケーブル: {address: '2001:db8::1'}\n", encoding="utf-8")
    bad.write_text("version: 1\ndevices:\n  core router: {address: 192.0.2.1}\n",
                   encoding="utf-8")
    for path, code in ((good, 0), (bad, 1)):
        run = subprocess.run([tool, "--schemafile", str(schema), str(path)],
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == code, run.stdout + run.stderr
        load_ok = True
        try:
            load_config(path)
        except ConfigError:
            load_ok = False
        assert load_ok == (code == 0)
    for config in SHIPPED:
        run = subprocess.run([tool, "--schemafile", str(schema), str(config)],
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stdout + run.stderr


AJV = ROOT / ".ci" / "node" / "node_modules" / ".bin" / "ajv"


@pytest.mark.skipif(not AJV.exists(), reason="ajv-cli not installed: run `make node-tools` (needs npm)")
def test_ajv_the_javascript_validator_of_editors_agrees(tmp_path):
    """ajv (strict mode, Unicode regular expressions, as editors run it): the schema
    holds no keyword it does not know, accepts names in other scripts and the shipped
    configs, and refuses what the loader refuses."""
    import subprocess
    import sys

    schema = tmp_path / "netprobe.schema.json"
    schema.write_text(subprocess.run(
        [str(Path(sys.executable).with_name("netprobe")), "schema"], capture_output=True,
        text=True, timeout=60).stdout, encoding="utf-8")
    docs = {"good": ("version: 1\ndevices:\n  café-süd: {address: 192.0.2.1}\n"
                     "  ケーブル: {address: '2001:db8::1'}\n", True),
            "space": ("version: 1\ndevices:\n  core router: {address: 192.0.2.1}\n", False),
            "port": ("version: 1\nendpoints:\n  e: {address: 192.0.2.1, probes: [tcp/99999]}\n",
                     False),
            "both": ("version: 1\nendpoints:\n  e: {address: 192.0.2.1, host: a.example}\n",
                     False),
            "loss": ("version: 1\ndefaults: {thresholds: {loss: {crit: 150%}}}\n", False)}
    paths = []
    for name, (text, ok) in docs.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(text, encoding="utf-8")
        paths.append((path, ok))
    paths += [(config, True) for config in SHIPPED]
    for path, ok in paths:
        run = subprocess.run([str(AJV), "validate", "--spec=draft2020", "--allow-union-types",
                              "-s", str(schema), "-d", str(path)],
                             capture_output=True, text=True, timeout=60)
        assert (run.returncode == 0) == ok, (path.name, run.stdout + run.stderr)
        assert loader_verdict(path)[0] == ok, path.name
