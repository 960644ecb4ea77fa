"""Synthetic ``cilium_events`` records: the bytes ``bpf/lib/trace.h`` writes, built in Python.

Role: tests and the flow benchmark (``bench/suite_flows.py``) feed ``parse_event`` and
``FlowEnricher`` the exact record layout the kernel programs produce (trace_notify v1,
drop_notify v2, policy_verdict_notify, each header padded to ``HEADER_LEN`` and followed
by the captured packet) without loading a program.

Inputs: header fields and packet bytes. Outputs: ``bytes``. Pure; imports only the
standard library and ``events`` (for the layout constants).
"""

from __future__ import annotations

import struct
from ipaddress import IPv4Address

from ciliate.datapath.linux.events import HEADER_LEN, MSG_DROP, MSG_POLICY_VERDICT, MSG_TRACE

_ETH = bytes.fromhex("b2448d106ae33a1f0c9e5107") + b"\x08\x00"


def build_packet(src: IPv4Address, dst: IPv4Address, proto: int, l4: bytes) -> bytes:
    """Ethernet + IPv4 (no options) + the given L4 bytes."""
    ip = struct.pack(
        ">BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, 0, 64, proto, 0, src.packed, dst.packed
    )
    return _ETH + ip + l4


def build_tcp(sport: int, dport: int, flags: int = 0x02) -> bytes:
    """A 20-byte TCP header (flags: FIN=0x01, SYN=0x02, ACK=0x10, …)."""
    return struct.pack(">HHIIBBHHH", sport, dport, 1, 0, 0x50, flags, 1024, 0, 0)


def build_icmp_echo(reply: bool = False) -> bytes:
    return struct.pack(">BBHHH", 0 if reply else 8, 0, 0, 7, 1)


def build_trace(obs: int, source: int, src_label: int, dst_label: int, dst_id: int,
                reason: int, ifindex: int, payload: bytes, flags: int = 0) -> bytes:  # fmt: skip
    """A trace_notify (v1) record; the capture is padded to 128 bytes as the program does."""
    n = len(payload)
    hdr = struct.pack("<BBHIIHBB", MSG_TRACE, obs, source, 0xABC, n, n, 1, 0)
    hdr += struct.pack("<IIHBBI16s", src_label, dst_label, dst_id, reason, flags, ifindex,
                       bytes(16))  # fmt: skip
    return hdr + payload + bytes(max(0, 128 - n))


def build_drop(reason: int, source: int, src_label: int, dst_label: int, payload: bytes,
               file: int = 2, line: int = 2118, ifindex: int = 0) -> bytes:  # fmt: skip
    """A drop_notify (v2) record: the 40-byte header padded to HEADER_LEN, then the packet."""
    n = len(payload)
    hdr = struct.pack("<BBHIIHBB", MSG_DROP, reason, source, 0, n, n, 2, 0)
    hdr += struct.pack("<IIIHBbIB3x", src_label, dst_label, 0, line, file, 0, ifindex, 0)
    return hdr + bytes(HEADER_LEN - len(hdr)) + payload


def build_verdict(source: int, remote: int, verdict: int, *, egress: bool, proto: int,
                  dport: int, match_type: int, payload: bytes) -> bytes:  # fmt: skip
    """A policy_verdict_notify record (verdict 0 allow, -reason drop, >0 proxy port)."""
    n = len(payload)
    flags = (2 if egress else 1) | (match_type << 3)
    hdr = struct.pack("<BBHIIHBB", MSG_POLICY_VERDICT, 0, source, 0, n, n, 1, 0)
    hdr += struct.pack("<IiHBBB3xI", remote, verdict, dport, proto, flags, 0, 0)
    return hdr + bytes(HEADER_LEN - len(hdr)) + payload
