"""`netprobe serve`: the exporter, on loopback only.

The pure parts (pooling cycles, the hop check as trace evidence, the /probe
selection) are unit-tested; the server is a real `netprobe serve` process
probing real listeners on 127.0.0.0/8, read with prometheus_client's own
parser, and stopped with SIGTERM.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from builders import make_result, make_topology, with_results
from conftest import LOOPBACK, stop_process
from prometheus_client.parser import text_string_to_metric_families

from netprobe.diagnosis import diagnose
from netprobe.diagnosis.model import Verdict
from netprobe.errors import NetprobeError
from netprobe.evidence import Evidence, ProbeError
from netprobe.serve import parse_listen, pool_results, route_traces, selection
from netprobe.watch.timeline import Route

REPO = Path(__file__).resolve().parent.parent


# -- pure parts -------------------------------------------------------------------------

def test_pool_results_adds_attempts_and_keeps_the_newest_error() -> None:
    ok = make_result("leased-a/icmp", sent=1, rtt_ms=2.0)
    lost = make_result("leased-a/icmp", sent=1, ok=False)
    (one,) = pool_results([[ok], [lost], [ok]])
    assert (one.sent, one.received, one.error) == (3, 2, None)
    (none,) = pool_results([[lost], [lost]])
    assert (none.sent, none.received, none.error) == (2, 0, ProbeError.TIMEOUT)
    refused = make_result("dc-app/tcp/443", sent=1, error=ProbeError.REFUSED)
    unmeasured = make_result("dc-app/tcp/443", error=ProbeError.SKIPPED)
    (svc,) = pool_results([[refused], [unmeasured]])
    assert svc.error == ProbeError.REFUSED and svc.sent == 1  # unmeasured adds nothing
    (skip,) = pool_results([[unmeasured]])
    assert not skip.measured


def test_hop_check_routes_tell_the_diagnosis_the_active_line() -> None:
    topology = make_topology()
    base = with_results(topology, [make_result("leased-a/icmp", ok=False)], traces=False)
    without = diagnose(topology, base)
    assert without.group("dc-wan").active is None
    routes = [Route("dc-wan", "dc-app", "broadband-b", "198.51.100.5", 2),
              Route("dc-wan", "intra-dns", None)]
    evidence = Evidence(base.results + tuple(route_traces(topology, routes)), base.started_at,
                        base.duration_s)
    d = diagnose(topology, evidence)
    assert d.group("dc-wan").active == "broadband-b"
    assert d.group("dc-wan").verdict == Verdict.FAILED_OVER


def test_selection_of_a_group_has_its_lines_what_is_behind_and_the_path() -> None:
    topology = make_topology()
    names = selection(topology, "dc-wan", None)
    assert {"leased-a", "broadband-b", "dc-edge", "dc-app", "dc-app/tcp/443", "ce-hq"} <= names
    assert selection(topology, None, "ce-hq") == {"ce-hq"}
    with pytest.raises(KeyError, match="no redundancy group named 'nope'"):
        selection(topology, "nope", None)


def test_parse_listen() -> None:
    assert parse_listen("127.0.0.1:9469") == ("127.0.0.1", 9469)
    assert parse_listen("[::1]:0") == ("::1", 0)
    for bad in ("9469", "127.0.0.1", ":9469", "127.0.0.1:99999"):
        with pytest.raises(NetprobeError, match="--listen"):
            parse_listen(bad)


# -- a real server on loopback -----------------------------------------------------

def write_config(tmp_path: Path, web_port: int, dns_port: int, timeout: str = "300ms") -> Path:
    cfg = tmp_path / "serve.yaml"
    cfg.write_text(f"""\
version: 1
vantage: serve-test
defaults: {{timeout: {timeout}, attempts: 3}}
devices:
  gw: {{address: 127.0.0.3}}
lines:
  line-a: {{device: gw, far_end: 127.0.1.1, carrier: carrier-a, group: wan, priority: 1}}
  line-b: {{device: gw, far_end: 127.0.1.2, carrier: carrier-b, group: wan, priority: 2}}
endpoints:
  web:
    address: 127.0.0.1
    path: [gw, wan]
    probes: [tcp/{web_port}]
  resolver:
    address: 127.0.0.1
    path: [gw]
    probes: [{{dns: {{query: www.local.example, port: {dns_port}}}}}]
""")
    return cfg


class Served:
    def __init__(self, proc: subprocess.Popen, url: str) -> None:
        self.proc, self.url = proc, url

    def get(self, path: str, timeout_s: float = 10.0,
            headers: dict[str, str] | None = None) -> tuple[int, str, float]:
        req = urllib.request.Request(self.url + path, headers=headers or {})
        t0 = time.monotonic()
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as resp:
                return resp.status, resp.read().decode(), time.monotonic() - t0
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(), time.monotonic() - t0


def start_serve(config: Path, *extra: str) -> Served:
    proc = subprocess.Popen(
        [sys.executable, "-m", "netprobe", "serve", str(config), "--listen", f"{LOOPBACK}:0",
         *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    deadline = time.monotonic() + 20
    line = ""
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if "listening on " in line or not line:
            break
    if "listening on " not in line:
        stop_process(proc)
        raise AssertionError(f"serve did not start: {line!r}")
    return Served(proc, line.rsplit("listening on ", 1)[1].strip())


@pytest.fixture()
def mute_udp() -> Iterator[int]:
    """A UDP port that is bound and never answers: a DNS probe there times out."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOOPBACK, 0))
        yield s.getsockname()[1]


@pytest.fixture()
def served(tmp_path: Path, tcp_listener, dns_server) -> Iterator[Served]:
    cfg = write_config(tmp_path, tcp_listener.port, dns_server.port)
    s = start_serve(cfg, "--interval", "200ms", "--no-trace")
    try:
        yield s
    finally:
        stop_process(s.proc)


def wait_for_report(s: Served, cycles: int = 3, timeout_s: float = 15.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        code, body, _ = s.get("/report.json")
        if code == 200 and (data := json.loads(body))["serve"]["window_cycles"] >= cycles:
            return data
        time.sleep(0.1)
    raise AssertionError(f"no report with {cycles} cycles in {timeout_s} s")


def samples(text: str, name: str) -> dict[tuple, float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_serve_metrics_report_and_health(served: Served) -> None:
    code, body, _ = served.get("/-/healthy")
    assert code == 200 and body.startswith("OK")
    report = wait_for_report(served)
    assert report["schema"] == "netprobe.report/1" and report["vantage"] == "serve-test"
    web = next(p for p in report["probes"] if p["id"].startswith("web/tcp/"))
    assert web["sent"] == 3 and web["received"] == 3  # three cycles pooled, one attempt each
    code, text, _ = served.get("/metrics")
    assert code == 200
    success = samples(text, "netprobe_probe_success")
    assert any(dict(k)["probe"].startswith("web/tcp/") and v == 1.0 for k, v in success.items())
    assert samples(text, "netprobe_serve_cycles_total")[(("vantage", "serve-test"),)] >= 3
    assert samples(text, "process_resident_memory_bytes")
    assert samples(text, "netprobe_line_info")[(("carrier", "carrier-a"), ("component", "line-a"),
                                                ("group", "wan"), ("vantage", "serve-test"))] == 1
    assert served.get("/nope")[0] == 404
    if shutil.which("promtool"):  # Prometheus's own linter reads the exposition
        lint = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                              text=True, timeout=60)
        assert lint.returncode == 0, lint.stdout + lint.stderr


def test_serve_follows_the_network(tmp_path: Path, tcp_listener, lab_loop, dns_server) -> None:
    cfg = write_config(tmp_path, tcp_listener.port, dns_server.port)
    s = start_serve(cfg, "--interval", "200ms", "--no-trace", "--window", "2")
    try:
        wait_for_report(s, cycles=2)
        lab_loop.run(tcp_listener.stop())  # the port now refuses
        deadline = time.monotonic() + 10
        state = None
        while time.monotonic() < deadline:
            data = json.loads(s.get("/report.json")[1])
            state = next(c["state"] for c in data["components"] if c["kind"] == "service"
                         and c["name"].startswith("web/"))
            if state == "down":
                break
            time.sleep(0.2)
        assert state == "down" and data["status"] == "critical"
    finally:
        stop_process(s.proc)


def test_probe_one_group_per_scrape(served: Served) -> None:
    code, text, _ = served.get("/probe?group=wan")
    assert code == 200, text
    probes = {dict(k)["probe"] for k in samples(text, "netprobe_probe_measured")}
    assert any(p.startswith("web/tcp/") for p in probes)
    assert not any(p.startswith("resolver/") for p in probes)  # not behind the group
    verdicts = samples(text, "netprobe_group_verdict")
    assert {dict(k)["group"] for k in verdicts} == {"wan"}
    assert served.get("/probe?group=nope")[0] == 400
    assert served.get("/probe")[0] == 400
    code, text, _ = served.get("/probe?target=resolver")
    assert code == 200 and "resolver/dns" in text


def test_probe_respects_the_scrape_timeout(tmp_path: Path, tcp_listener, mute_udp: int) -> None:
    # The DNS server never answers and the config allows 3 attempts of 5 s: the
    # scrape says 1.5 s, so the answer comes before that, the DNS probe unmeasured.
    cfg = write_config(tmp_path, tcp_listener.port, mute_udp, timeout="5s")
    s = start_serve(cfg, "--interval", "1s", "--no-trace")
    try:
        code, text, took = s.get("/probe?target=resolver",
                                 headers={"X-Prometheus-Scrape-Timeout-Seconds": "1.5"})
        assert code == 200, text
        assert took < 1.5, f"answered after {took:.2f} s, past the scrape timeout"
        measured = samples(text, "netprobe_probe_measured")
        assert [v for k, v in measured.items() if dict(k)["probe"] == "resolver/dns"] == [0.0]
        assert "resolver/dns" not in str(samples(text, "netprobe_probe_success"))
    finally:
        stop_process(s.proc)


def test_sigterm_stops_cleanly(served: Served) -> None:
    wait_for_report(served, cycles=1)
    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(10) == 0
    assert "stopped" in served.proc.stderr.read()
    with pytest.raises(OSError):
        urllib.request.urlopen(served.url + "/-/healthy", timeout=2)


def test_bad_listen_address_is_exit_3(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, 1, 2)
    proc = subprocess.run([sys.executable, "-m", "netprobe", "serve", str(cfg), "--listen",
                           "localhost"], capture_output=True, text=True, timeout=30, cwd=REPO)
    assert proc.returncode == 3 and "--listen localhost: use HOST:PORT" in proc.stderr
    with socket.socket() as held:
        held.bind((LOOPBACK, 0))
        held.listen()
        port = held.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "netprobe", "serve", str(cfg), "--listen",
                               f"{LOOPBACK}:{port}"], capture_output=True, text=True, timeout=30,
                              cwd=REPO)
    assert proc.returncode == 3 and "cannot listen" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed (Debian package systemd)")
def test_systemd_unit_example_verifies(tmp_path: Path) -> None:
    unit = (REPO / "configs/systemd/netprobe-serve.service").read_text()
    assert "netprobe serve" in unit and "AmbientCapabilities=CAP_NET_RAW" in unit
    # verify checks that ExecStart exists: point it at this venv's netprobe
    local = unit.replace("/usr/local/bin/netprobe", str(Path(sys.executable).parent / "netprobe"))
    path = tmp_path / "netprobe-serve.service"
    path.write_text(local)
    proc = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True,
                          text=True, timeout=60)
    problems = [ln for ln in proc.stderr.splitlines() if "netprobe-serve.service" in ln]
    assert proc.returncode == 0 and not problems, proc.stderr


def test_history_gets_one_run_per_window(tmp_path: Path, tcp_listener, dns_server) -> None:
    from netprobe.history import summarize

    cfg = write_config(tmp_path, tcp_listener.port, dns_server.port)
    db = tmp_path / "history.db"
    s = start_serve(cfg, "--interval", "200ms", "--no-trace", "--window", "2", "--history",
                    str(db))
    try:
        report = wait_for_report(s, cycles=2)
        deadline = time.monotonic() + 10
        while report["serve"]["cycle"] < 5 and time.monotonic() < deadline:
            time.sleep(0.2)
            report = json.loads(s.get("/report.json")[1])
        s.proc.send_signal(signal.SIGTERM)
        assert s.proc.wait(10) == 0
    finally:
        stop_process(s.proc)
    cycles = report["serve"]["cycle"] + 1
    summary = summarize(db)
    # cycles 0-1, 2-3, ...: one run per full window; SIGTERM may end one more cycle
    assert cycles // 2 <= summary.runs <= (cycles + 1) // 2 + 1
    web = next(c for c in summary.components if c.name.startswith("web/tcp/"))
    assert web.vantage == "serve-test" and web.availability_ratio == 1.0


def test_hop_check_traces_stay_out_of_the_probe_metrics() -> None:
    from netprobe.report.model import build_report
    from netprobe.serve import without_hop_checks

    topology = make_topology()
    base = with_results(topology, [], traces=False)
    traces = route_traces(topology, [Route("dc-wan", "dc-app", "leased-a", "198.51.100.1", 2)])
    evidence = Evidence(base.results + tuple(traces), base.started_at, base.duration_s)
    report = build_report("v", "c.yaml", evidence, diagnose(topology, evidence))
    assert "dc-app/trace" in {p["id"] for p in report.to_json()["probes"]}  # kept in the JSON
    shown = without_hop_checks(report)
    assert "dc-app/trace" not in {r.id for r in shown.evidence.results}
    assert shown.diagnosis == report.diagnosis


def test_health_turns_503_when_cycles_stop_and_report_waits_for_the_first() -> None:
    from netprobe.serve import ServeApp, ServeOptions, ServeState

    state = ServeState(make_topology(), "c.yaml", ServeOptions(interval_s=1.0))
    app = ServeApp(state)
    env = {"REQUEST_METHOD": "GET"}
    assert app.route({**env, "PATH_INFO": "/-/healthy"})[0] == "200 OK"
    status, _, body = app.route({**env, "PATH_INFO": "/report.json"})
    assert status.startswith("503") and b"no cycle has finished yet" in body
    state.started_monotonic -= 60  # a minute without a cycle: 3 intervals + 1 s timeout + 5 s
    status, _, body = app.route({**env, "PATH_INFO": "/-/healthy"})
    assert status.startswith("503") and b"no probe cycle finished for 60 s" in body
    assert app.route({"REQUEST_METHOD": "POST", "PATH_INFO": "/metrics"})[0].startswith("405")
