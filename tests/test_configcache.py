"""The cache of configs already read: same config from it, never from an untrusted place.

Reading only: no test here sends a packet.
"""

from __future__ import annotations

import marshal
import os
import subprocess
import sys
from pathlib import Path

import pytest

import netprobe.yamlpos
from netprobe import configcache
from netprobe.config import load_config
from netprobe.errors import ConfigError

EXAMPLE = Path(__file__).parent.parent / "configs" / "example.yaml"


@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> Path:
    where = tmp_path / "cache" / "netprobe"
    monkeypatch.setenv("NETPROBE_CACHE_DIR", str(where))
    return where


def entries(where: Path) -> list[Path]:
    return sorted(where.glob("*.marshal")) if where.exists() else []


def refuse_to_read(monkeypatch) -> None:
    def no(*args, **kwargs):
        raise AssertionError("the YAML reader ran; the config should have come from the cache")

    monkeypatch.setattr(netprobe.yamlpos, "parse_plain", no)


def test_an_unchanged_config_is_the_same_config_read_from_the_cache(cache_dir, monkeypatch):
    first = load_config(EXAMPLE)
    assert len(entries(cache_dir)) == 1
    assert oct(cache_dir.stat().st_mode & 0o777) == "0o700"
    assert oct(entries(cache_dir)[0].stat().st_mode & 0o777) == "0o600"
    refuse_to_read(monkeypatch)
    again = load_config(EXAMPLE)
    assert again.model_dump() == first.model_dump()


def test_a_changed_config_is_read_from_its_text(cache_dir, tmp_path, monkeypatch):
    config = tmp_path / "net.yaml"
    text = EXAMPLE.read_text()
    config.write_text(text)
    load_config(config)
    config.write_text(text + "# a comment is a change of text too\n")
    refuse_to_read(monkeypatch)
    with pytest.raises(AssertionError, match="YAML reader ran"):
        load_config(config)


def test_a_kept_entry_is_validated_every_time(cache_dir, tmp_path, monkeypatch):
    """An entry is data, not a verdict: one the schema refuses is read past (the
    text is read instead) and replaced."""
    config = tmp_path / "net.yaml"
    config.write_text(EXAMPLE.read_text())
    entry = configcache.key(config.read_text())
    configcache.put(entry, {"version": 1, "endpoints": {"stranger": {"address": "not an address"}}})
    from_text = load_config(config)
    assert "stranger" not in from_text.endpoints and from_text.endpoints
    refuse_to_read(monkeypatch)
    assert load_config(config).model_dump() == from_text.model_dump()


def test_a_config_with_a_problem_is_not_kept(cache_dir, tmp_path):
    config = tmp_path / "net.yaml"
    config.write_text("version: 1\nendpoints:\n  web: {address: 192.0.2.300}\n")
    with pytest.raises(ConfigError):
        load_config(config)
    assert entries(cache_dir) == []


@pytest.mark.parametrize("mode", [0o770, 0o707], ids=["group-writable", "world-writable"])
def test_a_directory_others_may_write_to_is_not_used(cache_dir, tmp_path, monkeypatch, mode):
    """Someone else's entry would decide what gets probed."""
    config = tmp_path / "net.yaml"
    config.write_text(EXAMPLE.read_text())
    first = load_config(config)
    cache_dir.chmod(mode)
    # a stranger swaps in a config of theirs under our text's name
    entries(cache_dir)[0].write_bytes(marshal.dumps(
        {"version": 1, "endpoints": {"elsewhere": {"address": "198.51.100.99"}}}))
    again = load_config(config)
    assert again.model_dump() == first.model_dump()
    assert "elsewhere" not in again.endpoints


def test_an_entry_others_may_write_to_is_not_used(cache_dir, tmp_path):
    config = tmp_path / "net.yaml"
    config.write_text(EXAMPLE.read_text())
    first = load_config(config)
    entry = entries(cache_dir)[0]
    entry.write_bytes(marshal.dumps(
        {"version": 1, "endpoints": {"elsewhere": {"address": "198.51.100.99"}}}))
    entry.chmod(0o666)
    assert load_config(config).model_dump() == first.model_dump()


def test_a_damaged_entry_is_read_past_and_replaced(cache_dir, tmp_path, monkeypatch):
    config = tmp_path / "net.yaml"
    config.write_text(EXAMPLE.read_text())
    first = load_config(config)
    entry = entries(cache_dir)[0]
    entry.write_bytes(entry.read_bytes()[:100])  # a disk that filled up, say
    assert load_config(config).model_dump() == first.model_dump()
    refuse_to_read(monkeypatch)
    assert load_config(config).model_dump() == first.model_dump()  # whole again


def test_an_empty_setting_turns_the_cache_off(tmp_path, monkeypatch):
    monkeypatch.setenv("NETPROBE_CACHE_DIR", "")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    load_config(EXAMPLE)
    assert not (tmp_path / "xdg").exists()


def test_xdg_cache_home_is_the_default_place(tmp_path, monkeypatch):
    monkeypatch.delenv("NETPROBE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    load_config(EXAMPLE)
    assert len(entries(tmp_path / "xdg" / "netprobe")) == 1


def test_only_the_most_recently_used_entries_are_kept(cache_dir, monkeypatch):
    monkeypatch.setattr(configcache, "MAX_ENTRIES", 3)
    for n in range(5):
        entry = configcache.key(f"text {n}")
        configcache.put(entry, {"n": n})
        # distinct times, in order (the clock's tick may be coarser than the writes)
        os.utime(cache_dir / f"{entry}.marshal", ns=(n * 10**9, n * 10**9))
    assert len(entries(cache_dir)) == 3
    kept = {configcache.get(configcache.key(f"text {n}"))["n"] for n in range(2, 5)}
    assert kept == {2, 3, 4}
    assert configcache.get(configcache.key("text 0")) is None


def test_data_that_is_not_plain_is_not_kept(cache_dir):
    configcache.put(configcache.key("x"), {"when": object()})
    assert entries(cache_dir) == []


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: makes a directory owned by another user")
def test_root_makes_no_directory_in_another_users_home(tmp_path, monkeypatch):
    """sudo may keep the caller's HOME: root must leave nothing root-owned in it."""
    home = tmp_path / "home"
    home.mkdir()
    os.chown(home, 65534, 65534)
    monkeypatch.setenv("NETPROBE_CACHE_DIR", str(home / ".cache" / "netprobe"))
    load_config(EXAMPLE)
    assert list(home.iterdir()) == []


def test_a_warm_run_does_not_import_the_yaml_reader(cache_dir):
    """The point of it: the whole process, as `check` and `validate` start."""
    code = ("import sys; from netprobe.config import load_topology; "
            f"load_topology({str(EXAMPLE)!r}); print(sorted(m for m in sys.modules "
            "if m == 'yaml' or m.startswith(('yaml.', 'netprobe.yamlpos'))))")
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True, env={**os.environ}).stdout.strip() for _ in range(2)]
    assert "'yaml'" in runs[0]  # cold: read from the text
    assert runs[1] == "[]"
