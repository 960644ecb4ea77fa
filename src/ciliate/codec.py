"""Byte codecs for the BPF map entries of ``desired``: Cilium's exact layouts.

Role: ``build_*`` turns a typed key or value of ``ciliate.desired`` into the bytes that
Cilium's datapath keeps in the map; ``parse_*`` turns them back. ``bpf map lookup ...
key hex ...`` and the kernel datapath's map writes both go through here, so the model
and the kernel read the same bytes. ``STRUCT_LAYOUTS`` lists every struct's fields as
(name, offset, size) so the C headers in ``bpf/lib/*.h`` can be checked against it.

Layouts (../shared/reference/cilium.md §3): integers are host order (little endian on
x86) unless the C field is a ``be16``/``be32`` (addresses and ports).

Choices, where Cilium versions differ:

1. ipcache: the ≤1.18 ``cilium_ipcache`` value of 12 bytes (4-byte tunnel endpoint),
   because the networking101 example reads map ``cilium_ipcache`` with "value bytes
   0-3 identity, 4-7 node IP". The key is the 24-byte ``ipcache_key`` of every version.
2. policy: the 12-byte LPM key and the 1.18 ``policy_entry`` (proxy port, deny bit and
   entry prefix length, auth, proxy-port priority, cookie).
3. lb4: the 1.18 ``lb4_key`` (proto and scope bytes), ``lb4_service`` (flags2, qcount)
   and ``lb4_backend`` v3 with a u16 cluster_id.

Imports only ``ciliate.desired`` and the standard library.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from ciliate.desired import (
    ENDPOINT_KEY_IPV4,
    EndpointInfo,
    EndpointKey,
    IPCacheKey,
    LB4Backend,
    LB4Key,
    LB4ReverseNat,
    LB4Service,
    PolicyEntry,
    PolicyKey,
    RemoteEndpointInfo,
)

Layout = list[tuple[str, int, int]]

STRUCT_LAYOUTS: dict[str, Layout] = {
    "endpoint_key": [("ip4", 0, 4), ("pad_ip6", 4, 12), ("family", 16, 1), ("key", 17, 1),
                     ("cluster_id", 18, 2)],
    "endpoint_info": [("ifindex", 0, 4), ("unused", 4, 2), ("lxc_id", 6, 2), ("flags", 8, 4),
                      ("pad", 12, 4), ("mac", 16, 8), ("node_mac", 24, 8), ("sec_id", 32, 4),
                      ("parent_ifindex", 36, 4), ("pad2", 40, 8)],
    "ipcache_key": [("prefixlen", 0, 4), ("cluster_id", 4, 2), ("pad1", 6, 1), ("family", 7, 1),
                    ("ip4", 8, 4), ("pad_ip6", 12, 12)],
    "remote_endpoint_info": [("sec_identity", 0, 4), ("tunnel_endpoint", 4, 4), ("pad", 8, 2),
                             ("key", 10, 1), ("flags", 11, 1)],
    "policy_key": [("prefixlen", 0, 4), ("sec_label", 4, 4), ("egress", 8, 1),
                   ("protocol", 9, 1), ("dport", 10, 2)],
    "policy_entry": [("proxy_port", 0, 2), ("deny_prefix", 2, 1), ("auth_type", 3, 1),
                     ("proxy_port_priority", 4, 1), ("pad", 5, 3), ("cookie", 8, 4)],
    "lb4_key": [("address", 0, 4), ("dport", 4, 2), ("backend_slot", 6, 2), ("proto", 8, 1),
                ("scope", 9, 1), ("pad", 10, 2)],
    "lb4_service": [("backend_id", 0, 4), ("count", 4, 2), ("rev_nat_index", 6, 2),
                    ("flags", 8, 1), ("flags2", 9, 1), ("qcount", 10, 2)],
    "lb4_backend": [("address", 0, 4), ("port", 4, 2), ("proto", 6, 1), ("flags", 7, 1),
                    ("cluster_id", 8, 2), ("zone", 10, 1), ("pad", 11, 1)],
    "lb4_reverse_nat": [("address", 0, 4), ("port", 4, 2)],
    "ipv4_ct_tuple": [("daddr", 0, 4), ("saddr", 4, 4), ("dport", 8, 2), ("sport", 10, 2),
                      ("nexthdr", 12, 1), ("flags", 13, 1)],
    "ct_entry": [("reserved0", 0, 8), ("backend_id", 8, 8), ("packets", 16, 8), ("bytes", 24, 8),
                 ("lifetime", 32, 4), ("flags", 36, 2), ("rev_nat_index", 38, 2),
                 ("ifindex", 40, 2), ("tx_flags_seen", 42, 1), ("rx_flags_seen", 43, 1),
                 ("src_sec_id", 44, 4), ("last_tx_report", 48, 4), ("last_rx_report", 52, 4)],
}  # fmt: skip

STRUCT_SIZES: dict[str, int] = {
    "endpoint_key": 20,
    "endpoint_info": 48,
    "ipcache_key": 24,
    "remote_endpoint_info": 12,
    "policy_key": 12,
    "policy_entry": 12,
    "lb4_key": 12,
    "lb4_service": 12,
    "lb4_backend": 12,
    "lb4_reverse_nat": 6,
    "ipv4_ct_tuple": 14,
    "ct_entry": 56,
}


class CodecError(ValueError):
    """Bytes that do not decode as the named struct (wrong size or field value)."""


def _need(data: bytes, size: int, what: str) -> None:
    if len(data) != size:
        raise CodecError(f"{what}: expected {size} bytes, got {len(data)}")


def mac_to_bytes(mac: str) -> bytes:
    parts = mac.split(":")
    if len(parts) != 6:
        raise CodecError(f"invalid MAC {mac!r}")
    return bytes(int(p, 16) for p in parts)


def mac_from_bytes(data: bytes) -> str:
    return ":".join(f"{b:02x}" for b in data[:6])


# --- cilium_lxc -------------------------------------------------------------------------

_ENDPOINT_KEY = struct.Struct("<4s12xBBH")
_ENDPOINT_INFO = struct.Struct("<IHHI4x6s2x6s2xII8x")


def build_endpoint_key(key: EndpointKey) -> bytes:
    return _ENDPOINT_KEY.pack(key.ip.packed, ENDPOINT_KEY_IPV4, 0, key.cluster_id)


def parse_endpoint_key(data: bytes) -> EndpointKey:
    _need(data, 20, "endpoint_key")
    ip, family, _k, cluster_id = _ENDPOINT_KEY.unpack(data)
    if family != ENDPOINT_KEY_IPV4:
        raise CodecError(f"endpoint_key: family {family} is not IPv4")
    return EndpointKey(IPv4Address(ip), cluster_id)


def build_endpoint_info(info: EndpointInfo) -> bytes:
    # The MACs are u64 fields holding the six MAC bytes lowest first: as bytes in order.
    return _ENDPOINT_INFO.pack(
        info.ifindex,
        0,
        info.lxc_id,
        info.flags,
        mac_to_bytes(info.mac),
        mac_to_bytes(info.node_mac),
        info.sec_id,
        info.parent_ifindex,
    )


def parse_endpoint_info(data: bytes) -> EndpointInfo:
    _need(data, 48, "endpoint_info")
    ifindex, _u, lxc_id, flags, mac, node_mac, sec_id, parent = _ENDPOINT_INFO.unpack(data)
    return EndpointInfo(
        ifindex=ifindex,
        lxc_id=lxc_id,
        flags=flags,
        mac=mac_from_bytes(mac),
        node_mac=mac_from_bytes(node_mac),
        sec_id=sec_id,
        parent_ifindex=parent,
    )


# --- cilium_ipcache ---------------------------------------------------------------------

IPCACHE_STATIC_PREFIX = 32  # bits of cluster_id + pad1 + family ahead of the address
_IPCACHE_KEY = struct.Struct("<IHxB4s12x")
_REMOTE_INFO = struct.Struct("<I4s2xBB")


def build_ipcache_key(key: IPCacheKey) -> bytes:
    return _IPCACHE_KEY.pack(
        IPCACHE_STATIC_PREFIX + key.prefix.prefixlen,
        key.cluster_id,
        ENDPOINT_KEY_IPV4,
        key.prefix.network_address.packed,
    )


def parse_ipcache_key(data: bytes) -> IPCacheKey:
    _need(data, 24, "ipcache_key")
    prefixlen, cluster_id, family, ip = _IPCACHE_KEY.unpack(data)
    if family != ENDPOINT_KEY_IPV4:
        raise CodecError(f"ipcache_key: family {family} is not IPv4")
    plen = prefixlen - IPCACHE_STATIC_PREFIX
    if not 0 <= plen <= 32:
        raise CodecError(f"ipcache_key: prefixlen {prefixlen} out of range 32..64")
    return IPCacheKey(IPv4Network((IPv4Address(ip), plen), strict=False), cluster_id)


def build_remote_endpoint_info(info: RemoteEndpointInfo) -> bytes:
    tun = info.tunnel_endpoint.packed if info.tunnel_endpoint is not None else bytes(4)
    return _REMOTE_INFO.pack(info.sec_identity, tun, info.encrypt_key, info.flags)


def parse_remote_endpoint_info(data: bytes) -> RemoteEndpointInfo:
    _need(data, 12, "remote_endpoint_info")
    sec, tun, key, flags = _REMOTE_INFO.unpack(data)
    tunnel = None if tun == bytes(4) else IPv4Address(tun)
    return RemoteEndpointInfo(sec, tunnel, flags, key)


# --- cilium_policy_v2_NNNNN -------------------------------------------------------------

POLICY_STATIC_PREFIX = 40  # identity (32) + direction byte (8)
POLICY_FULL_PREFIX = 64
_POLICY_KEY = struct.Struct("<IIBB2s")
_POLICY_ENTRY = struct.Struct("<2sBBB3xI")


def build_policy_key(key: PolicyKey) -> bytes:
    return _POLICY_KEY.pack(
        POLICY_STATIC_PREFIX + key.lpm_prefix_len,
        key.identity,
        1 if key.egress else 0,
        key.protocol,
        key.dport.to_bytes(2, "big"),
    )


def parse_policy_key(data: bytes) -> PolicyKey:
    _need(data, 12, "policy_key")
    prefixlen, ident, egress, proto, dport = _POLICY_KEY.unpack(data)
    rest = prefixlen - POLICY_STATIC_PREFIX
    if not 0 <= rest <= 24 or (rest and not proto) or 0 < rest < 8:
        raise CodecError(f"policy_key: prefixlen {prefixlen} does not fit protocol {proto}")
    port_bits = max(rest - 8, 0)
    return PolicyKey(ident, bool(egress & 1), proto, int.from_bytes(dport, "big"), port_bits)


def build_policy_entry(key: PolicyKey, entry: PolicyEntry) -> bytes:
    """The value; the entry's own prefix length (bits 3-7 of byte 2) comes from its key."""
    flags = (1 if entry.deny else 0) | ((key.lpm_prefix_len & 0x1F) << 3)
    auth = entry.auth_type & 0x7F
    if entry.auth_type:
        auth |= 0x80  # has_explicit_auth_type
    return _POLICY_ENTRY.pack(
        entry.proxy_port.to_bytes(2, "big"),
        flags,
        auth,
        entry.proxy_port_priority & 0xFF,
        entry.cookie,
    )


def parse_policy_entry(data: bytes) -> PolicyEntry:
    _need(data, 12, "policy_entry")
    proxy, flags, auth, prio, cookie = _POLICY_ENTRY.unpack(data)
    return PolicyEntry(
        deny=bool(flags & 1),
        proxy_port=int.from_bytes(proxy, "big"),
        auth_type=auth & 0x7F,
        proxy_port_priority=prio,
        cookie=cookie,
    )


# --- load balancer ----------------------------------------------------------------------

_LB4_KEY = struct.Struct("<4s2sHBB2x")
_LB4_SERVICE = struct.Struct("<IHHBBH")
_LB4_BACKEND = struct.Struct("<4s2sBBHBx")
_LB4_REVNAT = struct.Struct("<4s2s")


def build_lb4_key(key: LB4Key) -> bytes:
    return _LB4_KEY.pack(
        key.address.packed, key.dport.to_bytes(2, "big"), key.backend_slot, key.proto, key.scope
    )


def parse_lb4_key(data: bytes) -> LB4Key:
    _need(data, 12, "lb4_key")
    addr, dport, slot, proto, scope = _LB4_KEY.unpack(data)
    return LB4Key(IPv4Address(addr), int.from_bytes(dport, "big"), slot, proto, scope)


def build_lb4_service(svc: LB4Service) -> bytes:
    return _LB4_SERVICE.pack(
        svc.backend_id, svc.count, svc.rev_nat_index, svc.flags, svc.flags2, svc.qcount
    )


def parse_lb4_service(data: bytes) -> LB4Service:
    _need(data, 12, "lb4_service")
    return LB4Service(*_LB4_SERVICE.unpack(data))


def build_lb4_backend(be: LB4Backend) -> bytes:
    return _LB4_BACKEND.pack(
        be.address.packed, be.port.to_bytes(2, "big"), be.proto, be.flags, be.cluster_id, be.zone
    )


def parse_lb4_backend(data: bytes) -> LB4Backend:
    _need(data, 12, "lb4_backend")
    addr, port, proto, flags, cluster_id, zone = _LB4_BACKEND.unpack(data)
    return LB4Backend(
        IPv4Address(addr), int.from_bytes(port, "big"), proto, flags, cluster_id, zone
    )


def build_lb4_reverse_nat(rn: LB4ReverseNat) -> bytes:
    return _LB4_REVNAT.pack(rn.address.packed, rn.port.to_bytes(2, "big"))


def parse_lb4_reverse_nat(data: bytes) -> LB4ReverseNat:
    _need(data, 6, "lb4_reverse_nat")
    addr, port = _LB4_REVNAT.unpack(data)
    return LB4ReverseNat(IPv4Address(addr), int.from_bytes(port, "big"))


def build_u16_key(n: int) -> bytes:
    """rev_nat_index keys (cilium_lb4_reverse_nat, cilium_lb4_maglev)."""
    return n.to_bytes(2, "little")


def parse_u16_key(data: bytes) -> int:
    _need(data, 2, "u16 key")
    return int.from_bytes(data, "little")


def build_u32_key(n: int) -> bytes:
    """Backend ID keys (cilium_lb4_backends_v3)."""
    return n.to_bytes(4, "little")


def parse_u32_key(data: bytes) -> int:
    _need(data, 4, "u32 key")
    return int.from_bytes(data, "little")


def build_maglev_table(backend_ids: tuple[int, ...]) -> bytes:
    """The inner array of ``cilium_lb4_maglev``: M u32 backend IDs."""
    return struct.pack(f"<{len(backend_ids)}I", *backend_ids)


def parse_maglev_table(data: bytes) -> tuple[int, ...]:
    if len(data) % 4:
        raise CodecError(f"maglev table: {len(data)} bytes is not a multiple of 4")
    return struct.unpack(f"<{len(data) // 4}I", data)


# --- conntrack --------------------------------------------------------------------------

TUPLE_F_OUT = 0
TUPLE_F_IN = 1
TUPLE_F_RELATED = 2
TUPLE_F_SERVICE = 4


@dataclass(frozen=True, slots=True, order=True)
class CTTuple:
    """``struct ipv4_ct_tuple``: daddr/saddr are named for the reply direction."""

    daddr: IPv4Address
    saddr: IPv4Address
    dport: int
    sport: int
    nexthdr: int
    flags: int = TUPLE_F_OUT


@dataclass(frozen=True, slots=True)
class CTEntry:
    backend_id: int = 0
    packets: int = 0
    bytes: int = 0
    lifetime: int = 0
    flags: int = 0
    rev_nat_index: int = 0
    ifindex: int = 0
    tx_flags_seen: int = 0
    rx_flags_seen: int = 0
    src_sec_id: int = 0
    last_tx_report: int = 0
    last_rx_report: int = 0


_CT_TUPLE = struct.Struct("<4s4s2s2sBB")
_CT_ENTRY = struct.Struct("<8xQQQIHHHBBIII")


def build_ct_tuple(t: CTTuple) -> bytes:
    return _CT_TUPLE.pack(
        t.daddr.packed,
        t.saddr.packed,
        t.dport.to_bytes(2, "big"),
        t.sport.to_bytes(2, "big"),
        t.nexthdr,
        t.flags,
    )


def parse_ct_tuple(data: bytes) -> CTTuple:
    _need(data, 14, "ipv4_ct_tuple")
    d, s, dp, sp, nh, fl = _CT_TUPLE.unpack(data)
    return CTTuple(
        IPv4Address(d), IPv4Address(s), int.from_bytes(dp, "big"), int.from_bytes(sp, "big"), nh, fl
    )


def build_ct_entry(e: CTEntry) -> bytes:
    return _CT_ENTRY.pack(
        e.backend_id,
        e.packets,
        e.bytes,
        e.lifetime,
        e.flags,
        e.rev_nat_index,
        e.ifindex,
        e.tx_flags_seen,
        e.rx_flags_seen,
        e.src_sec_id,
        e.last_tx_report,
        e.last_rx_report,
    )


def parse_ct_entry(data: bytes) -> CTEntry:
    _need(data, 56, "ct_entry")
    return CTEntry(*_CT_ENTRY.unpack(data))
