"""The lab's parts that need no root: its layout and config agree, the
controller's hysteresis, the delay wire's checksum repair, the CLI's message
without root. No packet is sent."""

from __future__ import annotations

import ipaddress
import json
import os
import struct
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from netprobe.config import load_config
from netprobe.errors import NetprobeError
from netprobe.lab import layout
from netprobe.lab.cli import app
from netprobe.lab.controller import (
    FROZEN_FLAG,
    Controller,
    ControllerSettings,
    Uplink,
    echo_request,
    parse_echo_reply,
)
from netprobe.lab.delay import fix_l4_checksum
from netprobe.lab.lab import Lab, LabSettings
from netprobe.lab.netns import list_netns
from netprobe.lab.scenarios import SCENARIOS, get_scenario

REPO = Path(__file__).resolve().parents[1]
DOC_NETS = [ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24",
                                              "203.0.113.0/24")]


# -- layout -----------------------------------------------------------------------

def _ends():
    for v in layout.VETHS:
        yield v.a_role, v.a_if, v.a_cidr
        yield v.b_role, v.b_if, v.b_cidr


def test_interface_names_fit_the_kernel_and_are_unique_per_namespace():
    names = [(role, name) for role, name, _ in _ends()]
    names += [(b.role, b.name) for b in layout.BRIDGES]
    assert all(len(name) <= 15 for _, name in names)
    assert [k for k, n in Counter(names).items() if n > 1] == []
    assert {role for role, _ in names} == set(layout.ROLES)


def test_every_address_is_a_documentation_address():
    cidrs = [c for _, _, c in _ends() if c] + [b.cidr for b in layout.BRIDGES if b.cidr]
    for cidr in cidrs:
        net = ipaddress.ip_interface(cidr).network
        assert any(net.subnet_of(d) for d in DOC_NETS), cidr
    for rt in layout.ROUTES:
        assert any(ipaddress.ip_address(rt.via) in d for d in DOC_NETS), rt


def test_lab_config_describes_this_lab():
    cfg = load_config(str(REPO / "configs" / "lab.yaml"))
    assert cfg.vantage == "lab-office"
    assert cfg.devices["ce"].address == layout.CE_LAN_ADDR
    assert cfg.devices["dc-edge"].address == layout.DC_EDGE_ADDR
    for line, priority in ((layout.PRIMARY, 1), (layout.SECONDARY, 2)):
        c = cfg.lines[line.name]
        assert (c.far_end, c.trace_hops, c.group, c.priority) == \
            (line.far_end, [line.far_end], "dc-wan", priority)
    assert cfg.endpoints["dc-app"].address == layout.SERVER_ADDR
    assert cfg.endpoints["intra-dns"].address == layout.DNS_ADDR
    assert cfg.endpoints["cloud-app"].address == layout.CLOUD_ADDR
    # fast enough that a check finishes in a few seconds
    assert cfg.defaults.timeout * cfg.defaults.attempts <= 2.0


def test_the_packaged_copy_of_the_lab_config_is_current():
    """`netprobe demo lab` ships a copy inside the package: it must not drift."""
    packaged = REPO / "netprobe" / "data" / "lab.yaml"
    if not packaged.exists():
        pytest.skip("no packaged copy of configs/lab.yaml")
    assert packaged.read_text() == (REPO / "configs" / "lab.yaml").read_text()


def test_the_lab_offers_every_scenario():
    assert set(SCENARIOS) == {
        "healthy", "primary-cut", "primary-cut-frozen", "ce-down", "carrier-a-down",
        "both-lines-down", "dc-edge-down", "service-down", "dns-down", "primary-lossy",
        "primary-slow", "failback-stuck", "standby-dead", "carrier-a-ratelimit", "dc-edge-off",
        "carrier-a-silent"}
    with pytest.raises(NetprobeError, match="unknown scenario 'nope'; known: healthy"):
        get_scenario("nope")


@pytest.mark.parametrize("prefix", ["", "a", "Bad", "has-dash", "x" * 13, "9lives"])
def test_a_bad_prefix_is_refused(prefix: str):
    with pytest.raises(NetprobeError, match="lab prefix"):
        Lab(LabSettings(prefix=prefix))


# -- the controller's decisions ------------------------------------------------------

def _controller(tmp_path: Path) -> Controller:
    settings = ControllerSettings(
        state_dir=tmp_path, primary=Uplink("leased-a", "wan-a", "198.51.100.1"),
        secondary=Uplink("broadband-b", "wan-b", "198.51.100.5"), down_after=10, up_after=5)
    return Controller(settings)


def _events(tmp_path: Path) -> list[dict]:
    path = tmp_path / "controller.log"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_primary_goes_down_after_ten_misses_in_a_row_only(tmp_path: Path):
    c = _controller(tmp_path)
    for i in range(9):
        c.on_outcome(False, 100.0 + i)
    c.on_outcome(True, 110.0)  # one reply resets the count
    for i in range(9):
        c.on_outcome(False, 200.0 + i)
    assert c.primary_up and _events(tmp_path) == []
    c.on_outcome(False, 209.0)
    assert not c.primary_up
    (event,) = _events(tmp_path)
    assert event["event"] == "primary_down" and event["down_since_mono_s"] == 200.0
    assert json.loads((tmp_path / "controller.json").read_text())["primary_state"] == "down"


def test_primary_comes_back_after_five_replies_in_a_row(tmp_path: Path):
    c = _controller(tmp_path)
    for i in range(10):
        c.on_outcome(False, float(i))
    for i in range(4):
        c.on_outcome(True, 20.0 + i)
    c.on_outcome(False, 30.0)
    for i in range(4):
        c.on_outcome(True, 40.0 + i)
    assert not c.primary_up
    c.on_outcome(True, 50.0)
    assert c.primary_up
    assert [e["event"] for e in _events(tmp_path)] == ["primary_down", "primary_up"]


def test_flags_are_read_and_logged_once(tmp_path: Path):
    c = _controller(tmp_path)
    (tmp_path / FROZEN_FLAG).write_text("1\n")
    c.read_flags()
    c.read_flags()
    assert c.frozen
    (tmp_path / FROZEN_FLAG).unlink()
    c.read_flags()
    assert not c.frozen
    assert [e["event"] for e in _events(tmp_path)] == ["freeze", "unfreeze"]
    assert all(e["wall"].endswith("Z") and e["mono_s"] > 0 for e in _events(tmp_path))


def test_echo_request_checksum_and_reply_parsing():
    packet = echo_request(0x1234, 7)
    padded = packet + b"\0" * (len(packet) % 2)
    words = struct.unpack(f"!{len(padded) // 2}H", padded)
    total = sum(words)
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    assert total == 0xFFFF  # a valid Internet checksum sums to all ones
    reply_icmp = bytes([0, 0]) + packet[2:]
    ip_header = bytes([0x45, 0, 0, 20 + len(reply_icmp), 0, 0, 0, 0, 64, 1, 0, 0,
                       198, 51, 100, 1, 198, 51, 100, 2])
    assert parse_echo_reply(ip_header + reply_icmp) == ("198.51.100.1", 0x1234, 7)
    assert parse_echo_reply(ip_header + packet) is None  # a request is not a reply


# -- the delay wire's checksum repair ------------------------------------------------

@pytest.mark.parametrize("layer", ["tcp", "udp"])
def test_fix_l4_checksum_restores_what_offload_left_out(layer: str):
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.l2 import Ether

    l4 = TCP(sport=40000, dport=443, flags="S", seq=1) if layer == "tcp" else \
        UDP(sport=40000, dport=53) / b"query"
    good = bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
                 / IP(src="192.0.2.10", dst="203.0.113.10") / l4)
    at = 14 + 20 + (16 if layer == "tcp" else 6)
    partial = good[:at] + b"\x12\x34" + good[at + 2:]  # what a CHECKSUM_PARTIAL copy holds
    assert fix_l4_checksum(partial) == good
    assert fix_l4_checksum(good) == good
    arp = bytes(14) + b"\x00" * 28
    assert fix_l4_checksum(arp) == arp


# -- without root --------------------------------------------------------------------

@pytest.mark.parametrize("command", [["up"], ["down"], ["status"], ["break", "primary-cut"],
                                     ["heal"], ["exec", "--", "true"]])
def test_every_lab_command_without_root_says_how_to_fix_it(command, monkeypatch):
    if os.geteuid() == 0:  # play an ordinary user: the check is on the effective uid
        monkeypatch.setattr(os, "geteuid", lambda: 1000)
    before = list_netns()
    result = CliRunner().invoke(app, [*command, "--prefix", "npltnoroot"])
    assert result.exit_code == 3, result.output
    text = " ".join(result.output.split())
    assert "needs root" in text and "sudo" in text and "Nothing was changed" in text
    if command[0] != "exec":  # after `--` the prefix is part of the command
        assert "--prefix npltnoroot" in text  # the hint names the lab it is about
    assert list_netns() == before


def test_demo_lab_takes_a_prefix():
    proc = subprocess.run([sys.executable, "-m", "netprobe", "demo", "lab", "--help"],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "--prefix" in proc.stdout
