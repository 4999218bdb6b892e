"""write_outputs: several files, each atomically; refusals before any write."""

from __future__ import annotations

import json
import os
import random
import signal
import stat
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from report_builders import ok_report, sample_report

from netprobe.errors import NetprobeError
from netprobe.report import Format, render, write_outputs
from netprobe.report.atomic import TMP_SUFFIX, stale_temp_files, temp_name


def _temps(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.name.endswith(TMP_SUFFIX))


def test_writes_every_format_and_each_file_parses(tmp_path):
    report = sample_report()
    paths = [tmp_path / n for n in ("run.json", "node.prom", "junit.xml", "mail.md", "run.txt",
                                    "check.nagios")]
    written = write_outputs(report, paths)
    assert written == paths
    assert json.loads(paths[0].read_text())["exit_code"] == 2
    assert "netprobe_run_status" in paths[1].read_text()
    ET.parse(paths[2])
    assert paths[3].read_text() == render(report, Format.MD)
    assert paths[4].read_text() == render(report, Format.TABLE)
    assert paths[5].read_text().startswith("NETPROBE CRITICAL")
    assert _temps(tmp_path) == []


def test_new_files_follow_the_umask_and_existing_files_keep_their_mode(tmp_path):
    old = os.umask(0o027)
    try:
        existing = tmp_path / "kept.json"
        existing.write_text("{}")
        existing.chmod(0o604)
        write_outputs(ok_report(), [tmp_path / "new.json", existing])
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new.json").stat().st_mode) == 0o640  # 0o666 & ~0o027
    assert stat.S_IMODE(existing.stat().st_mode) == 0o604
    assert json.loads(existing.read_text())["status"] == "ok"


def test_unwritable_paths_are_refused_before_any_file_is_written(tmp_path):
    good = tmp_path / "good.json"
    good.write_text("old content")
    (tmp_path / "a-dir.json").mkdir()
    (tmp_path / "file").write_text("")
    bad = [tmp_path / "missing" / "x.prom",  # no such directory
           tmp_path / "a-dir.json",  # a directory in the way
           tmp_path / "file" / "x.md",  # parent is a file
           tmp_path / "report.yaml"]  # unknown extension
    with pytest.raises(NetprobeError) as err:
        write_outputs(sample_report(), [good, *bad])
    message = str(err.value)
    assert "nothing written" in message
    for path in bad:
        assert str(path) in message
    assert good.read_text() == "old content"
    assert not (tmp_path / "report.yaml").exists()
    assert _temps(tmp_path) == []


def test_the_same_file_named_twice_is_refused(tmp_path):
    with pytest.raises(NetprobeError, match="named twice"):
        write_outputs(ok_report(), [tmp_path / "a.json", tmp_path / "." / "a.json"])
    assert not (tmp_path / "a.json").exists()


def test_a_symlink_stays_a_link_and_its_target_gets_the_content(tmp_path):
    real = tmp_path / "real.json"
    real.write_text("{}")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    write_outputs(ok_report(), [link])
    assert link.is_symlink()
    assert json.loads(real.read_text())["status"] == "ok"


def test_stale_temp_files_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    target = tmp_path / "run.json"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        stale = temp_name(target, pid=dead.pid)
        stale.write_text("half a report")
        in_progress = temp_name(target, pid=live.pid)
        in_progress.write_text("being written")
        unrelated = tmp_path / f".other.json.{dead.pid}.abcd{TMP_SUFFIX}"
        unrelated.write_text("another target's temp file")
        assert stale_temp_files(target) == [stale]
        write_outputs(ok_report(), [target])
        assert not stale.exists()
        assert in_progress.exists()  # its writer may still rename it
        assert unrelated.exists()  # not ours to judge now; cleaned when that target is written
    finally:
        live.kill()
        live.wait()


@pytest.mark.root
def test_a_full_disk_leaves_every_target_untouched(tmp_path, tiny_tmpfs):
    """A real ENOSPC on a tiny tmpfs: no target is replaced, no temp file stays."""
    from report_builders import big_report

    roomy = tmp_path / "roomy.json"
    roomy.write_text("old roomy")
    cramped = tiny_tmpfs / "cramped.json"
    cramped.write_text("old cramped")
    with pytest.raises(NetprobeError, match="nothing written") as info:
        write_outputs(big_report(600), [roomy, cramped])  # ~400 kB of JSON
    assert f"{cramped}: no space left on device" in str(info.value)
    assert f"{roomy}: not written" in str(info.value)
    assert roomy.read_text() == "old roomy"
    assert cramped.read_text() == "old cramped"
    assert _temps(tmp_path) == [] and _temps(tiny_tmpfs) == []


# -- killed part-way ------------------------------------------------------------------

# The writer renders nothing itself: the parent renders two big reports once,
# and the writer only loops over the write path (`write_atomically`, the part
# of write_outputs that touches files), so every kill lands while writing,
# fsyncing or renaming rather than while rendering. The writer is a fork of
# this process: no interpreter start-up per kill.

N_ENDPOINTS = 3000  # about 2 MB of JSON: a write plus fsync takes a while


def _writer_loop(versions, ready) -> None:
    from netprobe.report.atomic import write_atomically

    ready.set()
    i = 0
    while True:  # until killed; the parent bounds the time
        write_atomically(versions[i % 2])
        i += 1


def _check_complete(json_path: Path, xml_path: Path) -> str:
    data = json.loads(json_path.read_text())  # raises on a torn file
    assert data["tag"] in ("a", "b")
    assert len(data["components"]) == N_ENDPOINTS
    suite = ET.parse(xml_path).getroot().find("testsuite")
    assert int(suite.get("tests")) == N_ENDPOINTS == len(suite.findall("testcase"))
    return data["tag"]


@pytest.mark.slow
def test_a_writer_killed_at_random_moments_never_leaves_a_torn_file(tmp_path):
    import multiprocessing

    from report_builders import big_report

    from netprobe.report.atomic import PendingWrite

    json_path, xml_path = tmp_path / "run.json", tmp_path / "junit.xml"
    versions = []
    for tag in "ab":
        report = big_report(N_ENDPOINTS, tag=tag)
        versions.append([PendingWrite(json_path, render(report, Format.JSON)),
                         PendingWrite(xml_path, render(report, Format.JUNIT))])
    write_outputs(big_report(N_ENDPOINTS, tag="a"), [json_path, xml_path])

    ctx = multiprocessing.get_context("fork")
    rng = random.Random(1234)
    tags_seen: set[str] = set()
    kills_mid_write = 0
    killed: list[int] = []
    deadline = time.monotonic() + 120
    for _ in range(20):
        assert time.monotonic() < deadline, "the kill loop is taking far too long"
        ready = ctx.Event()
        child = ctx.Process(target=_writer_loop, args=(versions, ready), daemon=True)
        child.start()
        try:
            assert ready.wait(timeout=30)
            time.sleep(rng.uniform(0.0, 0.3))
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.join(timeout=10)
        assert child.exitcode == -signal.SIGKILL
        tags_seen.add(_check_complete(json_path, xml_path))
        # Only killed writers' temp files may remain, one per target each at most.
        # A writer removes them (their process is gone) when it starts writing; one
        # killed before its first write leaves its predecessor's in place.
        killed.append(child.pid)
        owners = [int(t.name.split(".")[-3]) for t in _temps(tmp_path)]
        assert set(owners) <= set(killed)
        assert all(owners.count(pid) <= 2 for pid in owners)
        kills_mid_write += child.pid in owners
    assert tags_seen == {"a", "b"}  # writes did land between the kills
    assert kills_mid_write > 0  # and some kills did hit a write in progress

    write_outputs(ok_report(), [json_path, xml_path])
    assert _temps(tmp_path) == []
    assert json.loads(json_path.read_text())["status"] == "ok"
