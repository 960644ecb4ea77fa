"""Map keys and values as bpftool-style hex, for the ``key hex`` / ``value hex`` of trace steps.

The bytes come from ``ciliate.codec`` (Cilium's layouts, cilium.md §3.1-§3.5, shared
with the kernel datapath), so a trace step's key can be pasted into ``ciliate bpf map
lookup NODE MAP key hex ...`` (or bpftool on a real node) and return the same entry.
Here are only the lookup-side keys the programs compute from a packet.

Inputs: addresses, ports, identities. Outputs: hex text. Pure; imports ``codec`` and
``desired``.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from ciliate import codec
from ciliate.desired import (
    EndpointInfo,
    EndpointKey,
    IPCacheKey,
    LB4Key,
    PolicyKey,
    RemoteEndpointInfo,
)


def hexbytes(b: bytes) -> str:
    """``0a 0a 02 79 00 ...`` as bpftool prints key/value bytes."""
    return " ".join(f"{x:02x}" for x in b)


def build_lxc_key(ip: IPv4Address, cluster_id: int = 0) -> bytes:
    """``struct endpoint_key`` (20 B)."""
    return codec.build_endpoint_key(EndpointKey(ip, cluster_id))


def build_lxc_value(info: EndpointInfo) -> bytes:
    return codec.build_endpoint_info(info)


def build_ipcache_key(ip: IPv4Address, cluster_id: int = 0) -> bytes:
    """``struct ipcache_key`` of a lookup: the full /32 (prefixlen 64)."""
    return codec.build_ipcache_key(IPCacheKey(IPv4Network(ip), cluster_id))


def build_ipcache_value(info: RemoteEndpointInfo) -> bytes:
    return codec.build_remote_endpoint_info(info)


def build_lb4_key(key: LB4Key) -> bytes:
    return codec.build_lb4_key(key)


def build_policy_key(identity: int, egress: bool, proto: int, dport: int) -> bytes:
    """``struct policy_key`` of a lookup: full prefix, identity, direction, proto, port."""
    return codec.build_policy_key(PolicyKey(identity, egress, proto, dport, 16 if proto else 0))


def build_rev_nat_key(index: int) -> bytes:
    return codec.build_u16_key(index)


def build_backend_key(backend_id: int) -> bytes:
    return codec.build_u32_key(backend_id)
