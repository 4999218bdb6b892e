"""The loader's fast path reads plain configs exactly as the full reader does.

`parse_plain` (no positions) must give the same data as `parse_yaml` or decline;
`load_config` must give the same Config either way, and every problem must
still come from the full reader, with its position.
"""

from __future__ import annotations

import ipaddress
import math
import random
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from test_config_fuzz import DUMPER, FUZZ, KEYS, TEXT, TREES, edited_text, mutated_example

from netprobe.config import _load_plain, load_config, parse_address
from netprobe.errors import ConfigError
from netprobe.yamlpos import MAX_DEPTH, NOT_PLAIN, YamlError, parse_plain, parse_yaml

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.yaml"))


def typed(value: Any) -> Any:
    """A value with its types spelled out: 1, 1.0 and True are not the same config."""
    if isinstance(value, dict):
        return ("dict", [(typed(k), typed(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [typed(v) for v in value])
    if isinstance(value, float) and math.isnan(value):
        return ("float", "nan")
    return (type(value).__name__, value)


def same_as_full_reader(text: str) -> None:
    plain = parse_plain(text)
    if plain is NOT_PLAIN:
        return
    try:
        full = parse_yaml(text)
    except YamlError as exc:
        raise AssertionError(f"parse_plain read what parse_yaml refuses: {exc.message}") from None
    assert not full.problems, "parse_plain must decline what the full reader reports"
    assert typed(plain) == typed(full.data)


@settings(FUZZ, max_examples=300)
@given(data=st.dictionaries(KEYS, TREES, max_size=6))
def test_plain_documents_read_the_same(data):
    same_as_full_reader(yaml.dump(data, Dumper=DUMPER, allow_unicode=True))


@settings(FUZZ, max_examples=200)
@given(data=mutated_example())
def test_mutated_example_reads_the_same(data):
    same_as_full_reader(yaml.dump(data, Dumper=DUMPER, allow_unicode=True, sort_keys=False))


@settings(FUZZ, max_examples=200)
@given(text=st.one_of(edited_text(), TEXT))
def test_any_text_reads_the_same_or_is_declined(text):
    same_as_full_reader(text)


@pytest.mark.parametrize("text", [
    "a: &x 1\nb: *x\n",                      # anchors and aliases: the full reader caps them
    "base: &b {k: 1}\nc: {<<: *b}\n",        # merge keys
    "a: 1\na: 2\n",                          # a duplicate key
    "a: !!python/object:os.system ls\n",     # a tag that would run code elsewhere
    "a: !custom 1\n",
    "? [a, b]\n: 1\n",                       # a complex key
    "a: !!int abc\n",                        # a value that does not convert
    "a: 1\n---\nb: 2\n",                     # two documents
    "a: [1\n",                               # a syntax error
    "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1) + "\n",
    "",
])
def test_parse_plain_declines_what_it_does_not_handle(text):
    assert parse_plain(text) is NOT_PLAIN


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_configs_take_the_fast_path_to_the_same_config(path):
    fast = _load_plain(path.read_text(encoding="utf-8"))
    assert fast is not None, f"{path.name} should be plain YAML that passes every check"
    assert fast == load_config(path)


@pytest.mark.parametrize("text", [
    "version: 1\nendpoints:\n  a: {address: 192.0.2.1, path: [nowhere]}\n",  # cross-check
    "version: 1\nendpoints:\n  a: {address: 192.0.2.300}\n",                   # schema
    "version: 2\n",
    "version: true\nendpoints:\n  a: {address: 192.0.2.1}\n",                  # not the number 1
    'version: 1\nendpoints:\n  "a\\e[31m": {address: 192.0.2.1}\n',            # a control character
    "version: 1\nendpoints:\n  a: {address: 192.0.2.1, host: a.example}\n",    # address and host
])
def test_a_problem_is_reported_by_the_full_reader_with_its_position(tmp_path, text):
    assert _load_plain(text) is None
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert all(p.startswith(f"{path}:") and p[len(str(path)) + 1].isdigit()
               for p in caught.value.problems), caught.value.problems


def test_canonical_ipv4_shortcut_agrees_with_ipaddress():
    """Parsing only: none of these addresses is ever sent a packet."""
    rng = random.Random(11)
    samples = ["0.0.0.0", "255.255.255.255", "01.2.3.4", "1.2.3", "1.2.3.4.5", " 1.2.3.4",
               "1.2.3.4\n", "256.0.0.1", "1.02.3.4", "::1", "2001:DB8::1", "١.٢.٣.٤"]
    samples += [".".join(str(rng.choice([rng.randrange(256), rng.randrange(1000)]))
                         for _ in range(4)) for _ in range(5000)]
    for text in samples:
        try:
            expected: str | None = str(ipaddress.ip_address(text.strip()))
        except ValueError:
            expected = None
        try:
            got: str | None = parse_address(text)
        except ValueError:
            got = None
        assert got == expected, text
