"""Captured packet bytes of a kernel event -> Hubble's L2/L3/L4 layers.

Role: ``decode_packet(data)`` reads the Ethernet / IPv4 / TCP|UDP|SCTP|ICMPv4 headers of
the up to 128 bytes ``bpf/lib/trace.h`` copies after an event's header, as far as the
capture goes, into ``observe.flow`` values (and the flow's Summary text). Part of
``events``' pipeline (``events`` re-exports ``decode_packet`` and ``PacketSummary``).

Inputs: bytes. Outputs: ``PacketSummary``. Pure apart from bounded caches of the frozen
values it builds; imports only the standard library and ``ciliate.observe``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address

from ciliate.observe.flow import (
    IP,
    SCTP,
    TCP,
    UDP,
    Ethernet,
    ICMPv4,
    Layer4,
    TCPFlags,
    compute_summary,
)

_PORTS = struct.Struct(">HH")

# Decoded values repeat (a node sees the same few hundred addresses and flag sets), and
# the value types are frozen: each is built once and shared. Bounded: cleared when full.
CACHE_MAX = 4096
_ETHERNETS: dict[bytes, Ethernet] = {}
_IPS: dict[bytes, IP] = {}
_TCP_FLAGS: dict[int, tuple[TCPFlags, str]] = {}  # header bits -> flags, Hubble summary


@dataclass(frozen=True, slots=True)
class PacketSummary:
    ethernet: Ethernet | None
    ip: IP | None
    l4: Layer4 | None
    proto: int = 0
    summary: str = ""  # compute_summary(l4, None), when l4 is set


def _mac(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


def _ethernet(macs: bytes) -> Ethernet:
    eth = _ETHERNETS.get(macs)
    if eth is None:
        if len(_ETHERNETS) >= CACHE_MAX:
            _ETHERNETS.clear()
        eth = _ETHERNETS[macs] = Ethernet(source=_mac(macs[6:12]), destination=_mac(macs[0:6]))
    return eth


def _ip(addrs: bytes) -> IP:
    ip = _IPS.get(addrs)
    if ip is None:
        if len(_IPS) >= CACHE_MAX:
            _IPS.clear()
        src, dst = str(IPv4Address(addrs[0:4])), str(IPv4Address(addrs[4:8]))
        ip = _IPS[addrs] = IP(source=src, destination=dst)
    return ip


def _tcp_flags(bits: int) -> tuple[TCPFlags, str]:
    got = _TCP_FLAGS.get(bits)
    if got is None:
        flags = TCPFlags.from_bits(bits)
        got = _TCP_FLAGS[bits] = (flags, compute_summary(TCP(0, 0, flags), None))
    return got


def decode_packet(data: bytes) -> PacketSummary:
    """Ethernet / IPv4 / TCP|UDP|SCTP|ICMPv4 from the captured bytes (as far as they go)."""
    if len(data) < 14:
        return PacketSummary(None, None, None)
    eth = _ethernet(data[0:12])
    if data[12:14] != b"\x08\x00" or len(data) < 34:
        return PacketSummary(eth, None, None)
    ihl = (data[14] & 0x0F) * 4
    proto = data[23]
    ip = _ip(data[26:34])
    l4_off = 14 + ihl
    frag = ((data[20] << 8) | data[21]) & 0x1FFF
    l4: Layer4 | None = None
    summary = ""
    if frag == 0:
        if proto == 6 and len(data) >= l4_off + 14:
            sp, dp = _PORTS.unpack_from(data, l4_off)
            flags, summary = _tcp_flags(data[l4_off + 13] | ((data[l4_off + 12] & 0x1) << 8))
            return PacketSummary(eth, ip, TCP(sp, dp, flags), proto, summary)
        if proto == 17 and len(data) >= l4_off + 4:
            sp, dp = _PORTS.unpack_from(data, l4_off)
            l4 = UDP(sp, dp)
        elif proto == 132 and len(data) >= l4_off + 4:
            sp, dp = _PORTS.unpack_from(data, l4_off)
            l4 = SCTP(sp, dp)
        elif proto == 1 and len(data) >= l4_off + 2:
            l4 = ICMPv4(data[l4_off], data[l4_off + 1])
        if l4 is not None:
            summary = compute_summary(l4, None)
    return PacketSummary(eth, ip, l4, proto, summary)
