"""The Internet checksum against RFC 1071's worked example and a real ICMP echo."""

from netprobe.packets import inet_checksum, ones_complement_sum


def test_rfc1071_example():
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert ones_complement_sum(data) == 0xDDF2
    assert inet_checksum(data) == 0x220D


def test_a_packet_with_its_checksum_sums_to_all_ones():
    echo = bytes.fromhex("0800" "0000" "1234" "0001") + b"abc"  # odd length is padded
    csum = inet_checksum(echo)
    filled = echo[:2] + csum.to_bytes(2, "big") + echo[4:]
    assert ones_complement_sum(filled) == 0xFFFF
