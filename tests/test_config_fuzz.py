"""Hardening: whatever the file holds, `load_config` returns a Config or raises
ConfigError whose problems are one line each and start with `FILE:LINE:COL: `
or `FILE: ` -- never another exception, never a hang.

Generated cases (hypothesis, ~1,400 in all) plus hand-made hostile ones:
mutated copies of configs/example.yaml, YAML tags that would run code with an
unsafe loader, an alias bomb, 10,000 levels of nesting, a 10 MB file.
"""

from __future__ import annotations

import contextlib
import copy
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netprobe.config import Config, load_config
from netprobe.diagnosis.audit import audit
from netprobe.errors import ConfigError
from netprobe.plan import build_plan
from netprobe.topology import build_topology

EXAMPLE = Path(__file__).resolve().parent.parent / "configs" / "example.yaml"
EXAMPLE_TEXT = EXAMPLE.read_text(encoding="utf-8")
EXAMPLE_DATA = yaml.safe_load(EXAMPLE_TEXT)
DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

# generous: a case takes milliseconds; this only turns a hang into a failure
CASE_LIMIT_S = 10.0
FUZZ = settings(deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    def expire(_signum: int, _frame: Any) -> None:
        raise TimeoutError(f"load_config took more than {seconds}s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def outcome(path: Path) -> Config | list[str]:
    """Load, and check the contract; the Config or the problems, for more asserts."""
    source = str(path)
    with time_limit(CASE_LIMIT_S):
        try:
            config = load_config(path)
        except ConfigError as exc:
            assert exc.problems, "a ConfigError must say what is wrong"
            pattern = re.compile(rf"^{re.escape(source)}(:\d+:\d+)?: \S")
            for problem in exc.problems:
                assert pattern.match(problem), problem
                assert "\n" not in problem and "\r" not in problem, problem
            return exc.problems
        # a config that loads must go through the rest of the static pipeline too
        topology = build_topology(config, source=source)
        build_plan(topology)
        audit(topology)
        return config


def write(tmp_path: Path, content: str | bytes) -> Path:
    target = tmp_path / "fuzz.yaml"
    if isinstance(content, bytes):
        target.write_bytes(content)
    else:
        target.write_text(content, encoding="utf-8")
    return target


# -- strategies ------------------------------------------------------------------

TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
WORDS = ["version", "vantage", "defaults", "timeout", "attempts", "interval", "thresholds",
         "loss", "rtt", "warn", "crit", "sites", "devices", "lines", "groups", "endpoints",
         "address", "host", "path", "probes", "dns", "trace", "query", "type", "expect",
         "server", "device", "far_end", "carrier", "group", "priority", "hops", "site",
         "backup", "tags", "failback", "kind", "building", "power", "conduit", "protocol",
         "port", "max_hops", "ce", "wan", "app", "a", "b", "<<"]
VALUES = ["icmp", "tcp/443", "tcp/0", "tcp/65536", "trace", "1s", "150ms", "-1s", "10%",
          "150%", "192.0.2.1", "::1", "2001:db8::1", "999.1.1.1", "auto", "manual", "A", "ce",
          "wan", "app", "www.example", "🚀", "ケーブル", "", " ", "yes", "~", "1e999"]
KEYS = st.one_of(st.sampled_from(WORDS), TEXT)
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.just(10**100), st.just(-(10**100)),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(VALUES), TEXT)
TREES = st.recursive(
    SCALARS,
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(KEYS, children, max_size=5)),
    max_leaves=30)


def paths_of(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            found += paths_of(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            found += paths_of(v, (*prefix, i))
    return found


def get(node: Any, path: tuple[Any, ...]) -> Any:
    for element in path:
        node = node[element]
    return node


@st.composite
def mutated_example(draw: st.DrawFn) -> Any:
    """The example with a few values replaced, keys dropped or renamed, lists grown."""
    data = copy.deepcopy(EXAMPLE_DATA)
    for _ in range(draw(st.integers(1, 4))):
        paths = [p for p in paths_of(data) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, last = get(data, path[:-1]), path[-1]
        action = draw(st.sampled_from(["replace", "replace", "drop", "rename", "wrap", "tree"]))
        if action == "replace":
            parent[last] = draw(SCALARS)
        elif action == "tree":
            parent[last] = draw(TREES)
        elif action == "drop":
            del parent[last]
        elif action == "wrap":
            parent[last] = [parent[last]]
        elif isinstance(parent, dict):
            parent[draw(KEYS)] = parent.pop(last)
    return data


@st.composite
def edited_text(draw: st.DrawFn) -> str:
    """The example's text with characters YAML cares about put in random places."""
    text = EXAMPLE_TEXT
    for _ in range(draw(st.integers(1, 5))):
        at = draw(st.integers(0, len(text)))
        cut = draw(st.integers(0, 3))
        insert = draw(st.text(alphabet=":-[]{}&*!|>#'\"%@`,?\t\n ~é🚀0", max_size=3))
        text = text[:at] + insert + text[at + cut:]
    return text


# -- generated cases -------------------------------------------------------------------

@settings(FUZZ, max_examples=300)
@given(content=st.one_of(TEXT, st.text(alphabet=st.characters(blacklist_categories=("Cs",)),
                                       max_size=400)))
def test_any_text(tmp_path, content):
    outcome(write(tmp_path, content))


@settings(FUZZ, max_examples=100)
@given(content=st.binary(max_size=300))
def test_any_bytes(tmp_path, content):
    outcome(write(tmp_path, content))


@settings(FUZZ, max_examples=400)
@given(data=st.dictionaries(KEYS, TREES, max_size=6),
       version=st.sampled_from([1, 1, 1, 2, "1", None, 1.0, True]))
def test_any_document_made_of_config_words(tmp_path, data, version):
    doc = {"version": version, **data}
    outcome(write(tmp_path, yaml.dump(doc, Dumper=DUMPER, allow_unicode=True)))


@settings(FUZZ, max_examples=400)
@given(data=mutated_example())
def test_mutated_example(tmp_path, data):
    outcome(write(tmp_path, yaml.dump(data, Dumper=DUMPER, allow_unicode=True, sort_keys=False)))


@settings(FUZZ, max_examples=250)
@given(text=edited_text())
def test_example_with_stray_characters(tmp_path, text):
    outcome(write(tmp_path, text))


# -- hand-made hostile cases -------------------------------------------------------------

def example_with(old: str, new: str) -> str:
    assert old in EXAMPLE_TEXT
    return EXAMPLE_TEXT.replace(old, new, 1)


BOMB = "version: 1\na: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n" for i in range(8))

HOSTILE: list[tuple[str, str | bytes, str]] = [
    # (id, content, a fragment the problems must contain; "" when loading may succeed)
    ("python object tag", example_with("vantage: city-hall-lan", "vantage: !!python/object/apply:os.system [echo pwned]"),
     "unsupported YAML tag '!!python/object/apply:os.system'"),
    ("python name tag", "version: 1\nvantage: !!python/name:os.system ''\n",
     "unsupported YAML tag '!!python/name:os.system'"),
    ("local tag", "version: 1\nvantage: !secret x\n", "unsupported YAML tag '!secret'"),
    ("binary tag", "version: 1\nvantage: !!binary aGVsbG8=\n", "unsupported YAML tag '!!binary'"),
    ("set tag", "version: 1\ngroups: !!set {a, b}\n", "unsupported YAML tag '!!set'"),
    ("billion laughs", BOMB, "expands to more than"),
    ("recursive alias", "version: 1\ndevices: &d {x: *d}\n", "refers to a collection that contains it"),
    ("deep flow nesting", "version: 1\nvantage: " + "[" * 10_000 + "]" * 10_000 + "\n",
     "nested deeper than"),
    ("deep block nesting", "version: 1\nvantage:\n" + "".join(" " * i + "- \n" for i in range(1, 1000)),
     "nested deeper than"),
    ("deep mapping nesting", "version: 1\n" + "".join(" " * i + "a:\n" for i in range(1000)),
     "nested deeper than"),
    ("deep one-line sequence", "version: 1\nvantage: " + "- " * 10_000 + "x\n", ""),
    ("huge integer", example_with("attempts: 3", f"attempts: {10**100}"), "must be at most 100"),
    ("too many digits", example_with("attempts: 3", "attempts: " + "7" * 10_000), "is too long"),
    ("huge priority", example_with("priority: 2", f"priority: {10**100}"), "must be at most 1000"),
    ("infinite timeout", example_with("timeout: 1s", "timeout: .inf"), "out of range"),
    ("nan threshold", example_with("warn: 10%", "warn: .nan"), "out of range"),
    ("huge duration text", example_with("timeout: 1s", "timeout: " + "9" * 500 + "s"), "out of range"),
    ("emoji names", example_with("  ce-hq:", "  🚀-hq:"), "is not a valid name"),
    ("unicode vantage", example_with("vantage: city-hall-lan", "vantage: 市役所の LAN 🏛️"), ""),
    ("unicode in a path", example_with("path: [ce-hq, dc-wan, dc-edge]", "path: [ce-hq, 回線, dc-edge]"),
     "no device, line or group named '回線'"),
    ("a key with a newline", 'version: 1\ndevices: {"a\\nb": {address: 192.0.2.1}}\n',
     "is not a valid name"),
    ("complex key", "version: 1\ndevices: {? [a, b] : {address: 192.0.2.1}}\n",
     "a key must be a plain value"),
    ("null key", "version: 1\n~: 1\n", "keys must be text"),
    ("NUL byte", "version: 1\nvantage: a\x00b\n", "not valid YAML"),
    ("only a BOM", "\ufeff", "the file is empty"),
    ("only spaces", "   \n\n  \n", "the file is empty"),
    ("document end only", "...\n", ""),
    ("latin-1 bytes", b"version: 1\nvantage: caf\xe9\n", "not UTF-8 text"),
    ("UTF-16", "version: 1\n".encode("utf-16"), "not UTF-8 text"),
    ("long line", "version: 1\nvantage: " + "x" * 1_000_000 + "\n", "longer than 128 characters"),
    ("many devices", "version: 1\ndevices:\n" + "".join(
        f"  d{i}: {{address: 192.0.2.{i % 250 + 1}}}\n" for i in range(5000)), ""),
    # longer than Python's recursion limit, declared in both orders
    ("a long chain of devices", "version: 1\ndevices:\n  d0: {address: 192.0.2.1}\n" + "".join(
        f"  d{i}: {{address: 192.0.2.1, path: [d{i - 1}]}}\n" for i in range(1, 1500)), ""),
    ("a long chain declared backwards", "version: 1\ndevices:\n" + "".join(
        f"  d{i}: {{address: 192.0.2.1, path: [d{i + 1}]}}\n" for i in range(1499))
     + "  d1499: {address: 192.0.2.1}\n", ""),
    ("a long loop of devices", "version: 1\ndevices:\n  d0: {address: 192.0.2.1, path: [d2999]}\n" + "".join(
        f"  d{i}: {{address: 192.0.2.1, path: [d{i - 1}]}}\n" for i in range(1, 3000)), "path loop"),
    ("merge of a scalar", "version: 1\ndefaults: {<<: 3}\n", "a << merge key needs a mapping"),
    ("undefined tag handle", "version: 1\nvantage: !x!y z\n", "not valid YAML"),
    ("directive", "%YAML 1.1\n---\nversion: 1\n", ""),
    ("bad directive", "%YAML 9.9\n---\nversion: 1\n", "not valid YAML"),
]


@pytest.mark.parametrize(("content", "expected"), [c[1:] for c in HOSTILE], ids=[c[0] for c in HOSTILE])
def test_hostile_input(tmp_path, content, expected):
    result = outcome(write(tmp_path, content))
    if expected:
        assert isinstance(result, list), "this input must not load"
        assert any(expected in p for p in result), result


def test_alias_bomb_costs_neither_memory_nor_time(tmp_path):
    path = write(tmp_path, BOMB)
    tracemalloc.start()
    started = time.monotonic()
    try:
        result = outcome(path)
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(result, list)
    assert time.monotonic() - started < 2.0
    assert peak_bytes < 20 * 1024 * 1024


def test_ten_megabyte_file_is_refused_quickly(tmp_path):
    path = write(tmp_path, EXAMPLE_TEXT + ("#" * 99 + "\n") * 100_000)
    assert path.stat().st_size > 10_000_000
    started = time.monotonic()
    result = outcome(path)
    assert time.monotonic() - started < 2.0
    assert result == [f"{path}: the file is larger than 2 MiB; is it really a netprobe config?"]


def test_a_device_file_is_read_only_up_to_the_cap():
    # /dev/zero never ends: the loader must stop reading at the cap
    result = outcome(Path("/dev/zero"))
    assert result == ["/dev/zero: the file is larger than 2 MiB; is it really a netprobe config?"]


def test_unreadable_file(tmp_path):
    path = write(tmp_path, EXAMPLE_TEXT)
    path.chmod(0)
    try:
        if os.geteuid() != 0:
            assert outcome(path) == [f"{path}: cannot read the file: Permission denied"]
            return
        # root reads a mode-0 file anyway: ask as nobody, in a child process
        if shutil.which("setpriv") is None:
            pytest.skip("as root this needs util-linux `setpriv` to drop to nobody")
        # in a directory the user `nobody` can enter, so only the file's own mode refuses
        shared = Path(tempfile.mkdtemp(prefix="netprobe-unreadable-"))
        shared.chmod(0o755)
        path = write(shared, EXAMPLE_TEXT)
        path.chmod(0)
        code = ("import sys\nfrom netprobe.config import load_config\nfrom netprobe.errors "
                "import ConfigError\ntry:\n    load_config(sys.argv[1])\nexcept ConfigError as e:"
                "\n    print(e.problems[0])\n")
        proc = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                               sys.executable, "-c", code, str(path)],
                              capture_output=True, text=True, timeout=60)
        try:
            assert proc.stdout.strip() == f"{path}: cannot read the file: Permission denied", \
                proc.stderr
        finally:
            shutil.rmtree(shared)
    finally:
        if path.exists():
            path.chmod(0o644)


def test_every_prefix_of_the_example(tmp_path):
    """Cut the example at every line: each prefix loads or fails cleanly."""
    lines = EXAMPLE_TEXT.splitlines(keepends=True)
    for n in range(len(lines) + 1):
        outcome(write(tmp_path, "".join(lines[:n])))
