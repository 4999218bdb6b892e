"""Read-ahead: a large config's YAML read by a forked child while netprobe starts.

Real forks, real files; no packet is sent (the configs use documentation
addresses and are only loaded).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from netprobe import readahead
from netprobe.config import load_topology
from netprobe.errors import ConfigError
from netprobe.yamlpos import parse_plain


def big_config(n: int, extra: str = "") -> str:
    lines = ["version: 1", "vantage: readahead-test", "defaults: {timeout: 500ms}", "endpoints:"]
    lines += [f"  ep{i:05d}: {{address: 192.0.2.{i % 254 + 1}, tags: {{rack: r{i % 7}}}}}"
              for i in range(n)]
    return "\n".join(lines) + "\n" + extra


@pytest.fixture
def big(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text(big_config(1000))
    assert path.stat().st_size >= readahead.MIN_BYTES
    return path


@pytest.fixture(autouse=True)
def no_leftovers():
    yield
    # reap what a test left running, so no child outlives it
    while readahead._started:
        readahead._started.pop().result()


def gone(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


def test_the_child_reads_what_parse_plain_reads_in_process(big):
    ahead = readahead.start(["netprobe", "validate", str(big)])
    assert ahead is not None and ahead.pid is not None
    pid = ahead.pid
    texts: list[str] = []
    expected = parse_plain(big.read_text(), texts)
    assert readahead.claim(big.read_text()) is ahead
    assert ahead.result() == (expected, texts)
    assert gone(pid)  # reaped: no zombie left behind


def test_the_loader_takes_the_childs_data_for_the_same_text(big, monkeypatch):
    expected = load_topology(big).config
    pid = readahead.start(["netprobe", "check", "-f", "json", str(big), "--confirm", "0"]).pid
    # the child was forked before this: only the parent cannot read YAML now
    monkeypatch.setattr("netprobe.yamlpos.parse_plain", lambda *a: pytest.fail("read in-process"))
    assert load_topology(big).config == expected
    assert gone(pid) and not readahead._started


def test_a_text_changed_after_the_start_is_read_again(big):
    ahead = readahead.start(["netprobe", "check", str(big)])
    big.write_text(big_config(1000).replace("ep00000", "renamed"))
    config = load_topology(big).config
    assert "renamed" in config.endpoints and "ep00000" not in config.endpoints
    assert readahead._started == [ahead]  # not claimed: the fixture reaps it


def test_a_broken_config_is_still_reported_at_its_line_and_column(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text(big_config(1000, extra="  late: {address: 192.0.2.1, colour: blue}\n"))
    assert readahead.start(["netprobe", "validate", str(path)]) is not None
    with pytest.raises(ConfigError) as caught:
        load_topology(path)
    assert f"{path}:1005:" in str(caught.value) and "colour" in str(caught.value)


def test_small_configs_other_commands_and_the_off_switch_fork_nothing(tmp_path, big, monkeypatch):
    small = tmp_path / "small.yaml"
    small.write_text(big_config(3))
    assert readahead.start(["netprobe", "check", str(small)]) is None
    assert readahead.start(["netprobe", "watch", str(big)]) is None
    assert readahead.start(["netprobe", "check", str(tmp_path / "missing.yaml")]) is None
    assert readahead.start(["netprobe", "check", str(big.with_suffix(".txt"))]) is None
    monkeypatch.setenv("NETPROBE_READAHEAD", "0")
    assert readahead.start(["netprobe", "check", str(big)]) is None
    assert not readahead._started


def test_a_config_kept_by_the_cache_forks_no_reader(big, tmp_path, monkeypatch):
    monkeypatch.setenv("NETPROBE_CACHE_DIR", str(tmp_path / "cache"))
    expected = load_topology(big).config  # read once: now kept
    ahead = readahead.start(["netprobe", "check", str(big)])
    assert ahead is not None and ahead.pid is None
    monkeypatch.setattr("netprobe.yamlpos.parse_plain", lambda *a: pytest.fail("read again"))
    assert load_topology(big).config == expected


def test_the_child_yields_the_cpu_and_a_signal_ends_it_quietly(tmp_path, capfd):
    path = tmp_path / "huge.yaml"
    path.write_text(big_config(30_000))  # ~1.4 MB: the child reads for a few tenths of a second
    ahead = readahead.start(["netprobe", "check", str(path)])
    # niced, so on a CPU it shares with the parent's start-up it waits (bounded poll)
    deadline = time.monotonic() + 2
    while os.getpriority(os.PRIO_PROCESS, ahead.pid) != 19 and time.monotonic() < deadline:
        time.sleep(0.001)
    assert os.getpriority(os.PRIO_PROCESS, ahead.pid) == 19
    os.kill(ahead.pid, signal.SIGINT)
    assert ahead.result() is None  # the loader then reads the text itself
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_the_command_reads_ahead_and_says_the_same(big):
    """The real entry point, which forks: the same answer with and without."""
    runs = []
    for switch in ("1", "0"):
        env = {**os.environ, "NETPROBE_READAHEAD": switch, "NETPROBE_CACHE_DIR": ""}
        runs.append(subprocess.run([sys.executable, "-m", "netprobe", "validate", str(big)],
                                   capture_output=True, text=True, env=env, timeout=60))
    assert runs[0].returncode == runs[1].returncode == 0, runs[0].stderr
    assert runs[0].stdout == runs[1].stdout and "1000" in runs[0].stdout
    assert runs[0].stderr == runs[1].stderr


@pytest.mark.parametrize("text", ["# only a comment\n", "---\n", "version: 1\n", "[1, 2\n",
                                  "a: &x 1\nb: *x\n"])
def test_every_kind_of_answer_comes_back_as_parse_plain_gives_it(tmp_path, text):
    """A null document, plain data, and the texts parse_plain declines (NOT_PLAIN)."""
    path = tmp_path / "odd.yaml"
    path.write_text(text + "#" * readahead.MIN_BYTES + "\n")
    full = path.read_text()
    ahead = readahead.start(["netprobe", "validate", str(path)])
    texts: list[str] = []
    assert readahead.claim(full).result() == (parse_plain(full, texts), texts)
    assert ahead.pid is None  # reaped
