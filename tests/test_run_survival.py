"""A run is never lost: signals at any stage, outputs that cannot be written.

Each test runs the real command in a child process against loopback: a TCP
port that refuses (a CRITICAL finding) and a DNS "server" that is a UDP
socket this test holds and never answers, so the run is reliably mid-probe
once that socket has received the query.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import free_port

ENTRY = [sys.executable, "-m", "netprobe"]


def silent_dns() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(20)
    return s


def write_config(tmp_path: Path, dns_port: int) -> Path:
    config = tmp_path / "site.yaml"
    config.write_text(textwrap.dedent(f"""
        version: 1
        vantage: survival
        endpoints:
          web: {{address: 127.0.0.1, probes: [tcp/{free_port()}]}}
          mute:
            address: 127.0.0.1
            timeout: 30s
            probes: [{{dns: {{query: www.example, port: {dns_port}}}}}]
        """), encoding="utf-8")
    return config


def start_check(config: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([*ENTRY, "check", str(config), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def wait_mid_probe(dns: socket.socket) -> None:
    dns.recvfrom(512)  # the query arrived: probing began, and the TCP probe is quick
    time.sleep(0.5)


def finish(proc: subprocess.Popen, timeout_s: float = 30) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"netprobe did not exit within {timeout_s} s: {err}")
    return proc.returncode, out, err


# -- signals while probing ---------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_signal_mid_run_writes_every_output_and_history_then_exits_with_the_verdict(
        tmp_path, sig):
    dns = silent_dns()
    try:
        config = write_config(tmp_path, dns.getsockname()[1])
        out_json, out_md, db = tmp_path / "run.json", tmp_path / "run.md", tmp_path / "h.db"
        proc = start_check(config, "-f", "nagios", "-o", str(out_json), "-o", str(out_md),
                           "--history", str(db))
        wait_mid_probe(dns)
        proc.send_signal(sig)
        code, out, err = finish(proc)
    finally:
        dns.close()
    # what was measured: the refused port is CRITICAL, and CRITICAL outranks the unmeasured rest
    assert code == 2, err
    assert out.startswith(f"NETPROBE CRITICAL - run interrupted by {sig.name}, "), out
    assert f"interrupted by {sig.name}; reporting what was measured" in err
    assert "Traceback" not in err
    report = json.loads(out_json.read_text())
    assert report["interrupted"] is True and report["interrupted_by"] == sig.name
    probes = {p["id"]: p for p in report["probes"]}
    assert probes["mute/dns"]["error"] == "skipped"
    assert next(p for i, p in probes.items() if i.startswith("web/"))["error"] == "refused"
    assert f"interrupted:** {sig.name}; some probes did not run" in out_md.read_text()
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT status, interrupted FROM runs").fetchall() == [("critical", 1)]


def test_a_signal_before_probing_is_one_line_and_exit_3(tmp_path):
    # The config is a FIFO nobody writes to yet: the loader waits in open(),
    # before any probe, until the test has seen it there.
    fifo = tmp_path / "site.yaml"
    os.mkfifo(fifo)
    out = tmp_path / "run.json"
    proc = start_check(fifo, "-o", str(out))
    deadline = time.monotonic() + 20
    writer = None
    while writer is None and time.monotonic() < deadline:
        try:  # succeeds only once the reader (netprobe's loader) has the FIFO open
            writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            time.sleep(0.02)
    assert writer is not None, "netprobe never opened its config"
    try:
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        code, stdout, err = finish(proc)
    finally:
        os.close(writer)
    assert code == 3
    assert err.strip().splitlines() == [
        "netprobe: stopped by SIGTERM before there was anything to report"], err
    assert stdout == "" and not out.exists()


def _catches(pid: int, sig: signal.Signals) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    mask = next(int(line.split()[1], 16) for line in status.splitlines()
                if line.startswith("SigCgt:"))
    return bool(mask & (1 << (sig - 1)))


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc to see handlers")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_start_up_imports_is_one_line_never_a_traceback(tmp_path, sig):
    config = tmp_path / "site.yaml"
    config.write_text("version: 1\nendpoints: {web: {address: 127.0.0.1, probes: [tcp/9]}}\n")
    proc = start_check(config)
    deadline = time.monotonic() + 10
    # SIGTERM is caught only by netprobe's own early handler: once it is, the
    # imports (typer, rich, pydantic) are under way
    while not _catches(proc.pid, signal.SIGTERM) and time.monotonic() < deadline:
        time.sleep(0.001)
    proc.send_signal(sig)
    code, _out, err = finish(proc)
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert code == 3, err
    assert len(err.strip().splitlines()) == 1 and f"stopped by {sig.name}" in err, err


# -- outputs that cannot be written --------------------------------------------

def test_an_output_lost_at_the_end_still_prints_the_verdict_and_exits_critical(tmp_path):
    # The output directory exists when the run starts and is gone when it ends.
    dns = silent_dns()
    gone = tmp_path / "gone"
    gone.mkdir()
    try:
        config = write_config(tmp_path, dns.getsockname()[1])
        kept = tmp_path / "kept.json"
        proc = start_check(config, "-f", "nagios", "--deadline", "3s", "-o", str(kept),
                           "-o", str(gone / "r.json"), "--history", str(tmp_path / "h.db"))
        wait_mid_probe(dns)
        gone.rmdir()
        code, out, err = finish(proc)
    finally:
        dns.close()
    assert code == 2, err  # the diagnosis said CRITICAL; a lost file does not hide it
    assert out.startswith("NETPROBE CRITICAL"), out
    assert f"{gone / 'r.json'}: directory {gone} does not exist" in err
    assert f"{kept}: not written" in err  # the outputs are one consistent set
    assert "Traceback" not in err
    with sqlite3.connect(tmp_path / "h.db") as conn:  # the history is kept all the same
        assert conn.execute("SELECT status FROM runs").fetchall() == [("critical",)]


def test_an_unwritten_output_on_an_ok_run_exits_unknown_with_the_verdict_printed(
        tmp_path, capsys):
    from report_builders import ok_report

    from netprobe.cli import _emit

    report = ok_report()
    missing = tmp_path / "no-such-dir" / "r.json"
    code = _emit(report, "nagios", [missing], quiet=False, verbose=False, history=None)
    out, err = capsys.readouterr()
    assert report.exit_code == 0 and code == 3
    assert out.startswith("NETPROBE OK")
    assert f"{missing}: directory {missing.parent} does not exist" in err


def fill(directory: Path) -> None:
    fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        for _ in range(100_000):  # bounded: 400 MB at most, far above any tmpfs here
            os.write(fd, b"x" * 4096)
    except OSError:
        pass  # full
    finally:
        os.close(fd)


@pytest.mark.root
def test_a_full_disk_at_the_end_names_no_space_and_keeps_the_critical_verdict(
        tmp_path, tiny_tmpfs):
    full_disk = tiny_tmpfs
    dns = silent_dns()
    try:
        config = write_config(tmp_path, dns.getsockname()[1])
        db = full_disk / "h.db"
        proc = start_check(config, "-f", "nagios", "--deadline", "3s",
                           "-o", str(full_disk / "r.json"), "--history", str(db))
        wait_mid_probe(dns)  # the history exists by now (opened before probing)
        fill(full_disk)
        code, out, err = finish(proc)
    finally:
        dns.close()
    assert code == 2, err
    assert out.startswith("NETPROBE CRITICAL"), out
    assert f"{full_disk / 'r.json'}: no space left on device" in err
    assert f"{db}: cannot " in err and "no space left on device" in err.split(str(db))[-1]
    assert "Traceback" not in err


# -- the guard itself, in this process -------------------------------------------

def test_the_guard_raises_before_probing_and_notes_after():
    from netprobe.signals import Interrupted, command_guard

    before = signal.getsignal(signal.SIGTERM)
    with command_guard() as guard:
        with pytest.raises(Interrupted) as info:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # the handler runs between bytecodes; never reached
        assert info.value.signame == "SIGTERM"
        told: list[str] = []
        stopped: list[bool] = []
        guard.defer(told.append)
        guard.attach(lambda: stopped.append(True))
        os.kill(os.getpid(), signal.SIGHUP)
        os.kill(os.getpid(), signal.SIGHUP)  # a hang-up often comes twice: still noted once
        os.kill(os.getpid(), signal.SIGTERM)
        assert guard.received == "SIGHUP" and told == ["SIGHUP"] and stopped == [True]
    assert signal.getsignal(signal.SIGTERM) is before  # put back for whoever ran us


def test_a_second_ctrl_c_stops_at_once():
    from netprobe.signals import Interrupted, command_guard

    with command_guard() as guard:
        guard.defer()
        os.kill(os.getpid(), signal.SIGINT)
        assert guard.received == "SIGINT"
        with pytest.raises(Interrupted):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)


def test_a_signal_after_probing_keeps_the_measured_verdict_and_is_marked():
    from report_builders import sample_report

    from netprobe.report import Format, render
    from netprobe.report.model import build_report

    measured = sample_report()
    report = build_report(measured.vantage, measured.config, measured.evidence,
                          measured.diagnosis, interrupted_by="SIGTERM")
    assert report.status == measured.status  # every probe had run: nothing unknown added
    data = json.loads(render(report, Format.JSON))
    assert data["interrupted"] is True and data["interrupted_by"] == "SIGTERM"
    assert "interrupted: SIGTERM; after every probe had run" in render(report, Format.TABLE)


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM])
def test_a_drill_ended_by_a_signal_still_writes_its_summary(tmp_path, tcp_listener, sig):
    config = tmp_path / "drill.yaml"
    config.write_text(f"version: 1\nendpoints: {{web: {{address: 127.0.0.1, probes: "
                      f"[tcp/{tcp_listener.port}]}}}}\n")
    out = tmp_path / "drill.json"
    proc = subprocess.Popen([*ENTRY, "watch", str(config), "--interval", "200ms", "--duration",
                             "60s", "--no-hop-check", "-q", "-o", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2)  # a few cycles
    proc.send_signal(sig)
    code, _out, err = finish(proc)
    assert code in (0, 1, 2, 3) and "Traceback" not in err, (code, err)
    drill = json.loads(out.read_text())
    assert drill["ended_by"] == "interrupted"
    assert code == drill["exit_code"]


def test_a_damaged_saved_report_is_named_at_file_line_col(tmp_path):
    bad = tmp_path / "run.json"
    bad.write_text('{"schema": "netprobe.report/1",\n  oops}\n')
    proc = subprocess.run([*ENTRY, "diagnose", str(bad)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 3
    assert proc.stderr.startswith(f"netprobe: {bad}:2:3: not a JSON report: "), proc.stderr
