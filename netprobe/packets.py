"""The Internet checksum (RFC 1071), shared by everything that builds packets by hand."""

from __future__ import annotations

import struct


def ones_complement_sum(data: bytes) -> int:
    """16-bit one's-complement sum of `data` (padded to an even length)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def inet_checksum(data: bytes) -> int:
    """The checksum field's value for a header whose checksum field is zero in `data`."""
    return ~ones_complement_sum(data) & 0xFFFF
