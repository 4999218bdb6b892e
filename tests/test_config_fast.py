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

from netprobe.config import (
    _is_address,
    _load_plain,
    _probe_from_text,
    _texts,
    load_config,
    parse_address,
    parse_probe_spec,
)
from netprobe.errors import ConfigError
from netprobe.yamlpos import MAX_DEPTH, NOT_PLAIN, YamlError, parse_plain, parse_yaml, plain_tag

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
    texts: list[str] = []
    plain = parse_plain(text, texts)
    if plain is NOT_PLAIN:
        return
    # the text the control-character check reads: every string key and value (a
    # config is a mapping; _texts looks inside containers only)
    if isinstance(plain, dict | list):
        assert sorted(texts) == sorted(_texts(plain))
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


# YAML 1.1's implicit types at their edges: every spelling of bool and null, the
# int bases, sexagesimals, the float specials, timestamps, merge and value keys
TAG_EDGES = ["", "yes", "No", "NO", "nO", "y", "n", "on", "Off", "true", "TRUE", "tRue", "null",
             "Null", "~", "0x1F", "0b101", "0o17", "017", "1_000", "+12", "-3", "1:20",
             "190:20:30", ".inf", "-.Inf", ".NaN", ".nan", "1e3", "1.5e+3", "-.5", "6.8_5e+03",
             "2001-12-14", "2001-12-14t21:59:43.10-05:00", "2002-12-14 21:59:43.10 -5", "<<",
             "=", "!", "&a", "*a", "t00000", "192.0.2.1", "2001:db8::1", "1000ms", "icmp", "0",
             "00", "0.", ".", "-", "+", "0x", "12:", "1,000", "\n", "yes\n", "1\n", "null\n"]


@settings(FUZZ, max_examples=500)
@given(text=st.one_of(st.sampled_from(TAG_EDGES),
                      st.text(alphabet="0123456789.+-_:eExXbBoOaAtTfFnNyYlLsSuU~<=!&* \n", max_size=10),
                      st.text(max_size=8)))
def test_plain_tag_is_what_pyyamls_resolver_says(text):
    from yaml.nodes import ScalarNode
    from yaml.resolver import Resolver

    for implicit in ((True, False), (False, True)):
        assert plain_tag(text, implicit) == Resolver().resolve(ScalarNode, text, implicit), text


def test_canonical_ipv4_shortcut_agrees_with_ipaddress():
    """Parsing only: none of these addresses is ever sent a packet."""
    rng = random.Random(11)
    samples = ["0.0.0.0", "255.255.255.255", "0192.0.2.4", "192.0.2", "192.0.2.4.5", " 192.0.2.4",
               "192.0.2.4\n", "256.0.0.1", "192.0.02.4", "::1", "2001:DB8::1", "١.٢.٣.٤"]
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


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_parse_plain_collects_every_string_of_a_shipped_config(path):
    texts: list[str] = []
    data = parse_plain(path.read_text(encoding="utf-8"), texts)
    assert texts and sorted(texts) == sorted(_texts(data))


@pytest.mark.parametrize("text", [
    'version: 1\nendpoints:\n  a: {address: 192.0.2.1, tags: {"no\\x07te": x}}\n',    # a key
    'version: 1\nendpoints:\n  a: {address: 192.0.2.1, tags: {note: "a\\u202eb"}}\n',  # a value
    'version: 1\nendpoints:\n  a: {address: 192.0.2.1, path: ["ce\\e[31m"]}\n',       # a list item
    'version: 1\nvantage: |\n  two\n  lines\nendpoints:\n  a: {address: 192.0.2.1}\n',  # block text
])
def test_a_control_character_anywhere_leaves_the_fast_path(text):
    assert _load_plain(text) is None


# Every short form a probe is written in, and forms the loader refuses.
PROBE_TEXTS = ["icmp", " icmp ", "trace", "trace\t", "tcp/443", "tcp/1", "tcp/65535", "tcp/00443"]
BAD_PROBE_TEXTS = ["tcp/0", "tcp/70000", "tcp 443", "tcp:443", "tcp/https", "icmpp", "ping", "dns", ""]


@pytest.mark.parametrize("text", PROBE_TEXTS)
def test_a_probe_text_parsed_once_is_what_parsing_it_again_gives(text):
    first = _probe_from_text(text)
    assert first == parse_probe_spec(text) and type(first) is type(parse_probe_spec(text))
    assert _probe_from_text(text) is first  # the cache answers; the spec is frozen, so shared


@pytest.mark.parametrize("text", BAD_PROBE_TEXTS)
def test_a_refused_probe_text_is_refused_every_time_with_the_same_message(text):
    with pytest.raises(ValueError) as uncached:
        parse_probe_spec(text)
    for _ in range(2):
        with pytest.raises(ValueError) as cached:
            _probe_from_text(text)
        assert str(cached.value) == str(uncached.value)


def test_endpoints_that_share_probe_texts_load_as_if_each_were_parsed_alone(tmp_path):
    lines = ["version: 1", "endpoints:"]
    lines += [f"  e{i}: {{address: 192.0.2.{i + 1}, probes: [{', '.join(PROBE_TEXTS[i % 2::2][:3])}]}}"
              for i in range(6)]
    lines += ["  bare: {address: 192.0.2.99}"]  # the default probe
    path = tmp_path / "shared.yaml"
    path.write_text("\n".join(lines) + "\n")
    config = load_config(path)
    for i in range(6):
        expected = [parse_probe_spec(t) for t in PROBE_TEXTS[i % 2::2][:3]]
        assert config.endpoints[f"e{i}"].probes == expected
    assert [p.kind for p in config.endpoints["bare"].probes] == ["icmp"]
    # a saved topology (model_dump) reads back to the same config
    assert type(config).model_validate(config.model_dump(mode="json")) == config


def test_the_cross_checks_ipv4_shortcut_agrees_with_ipaddress():
    """Parsing only: none of these addresses is ever sent a packet."""
    rng = random.Random(12)
    samples = ["192.0.2.1", "0.0.0.0", "255.255.255.255", "0192.0.2.4", "192.0.2", "256.1.1.1",
               "192.0.2.4\n", " 192.0.2.4", "::1", "2001:db8::1", "::ffff:192.0.2.1", "١.٢.٣.٤", ""]
    samples += [".".join(str(rng.randrange(300)) for _ in range(4)) for _ in range(2000)]
    for text in samples:
        try:
            version: int | None = ipaddress.ip_address(text).version
        except ValueError:
            version = None
        for wanted in (None, 4, 6):
            expected = version is not None and wanted in (None, version)
            assert _is_address(text, wanted) == expected, (text, wanted)
