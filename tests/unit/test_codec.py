"""Byte layouts of the map entries (cilium.md §3) and the networking101 lookups."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest

from ciliate import codec
from ciliate.desired import (
    ENDPOINT_F_HOST,
    IPCACHE_F_HAS_TUNNEL_EP,
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


@pytest.mark.parametrize("name", sorted(codec.STRUCT_LAYOUTS))
def test_layouts_tile_the_struct_without_gaps(name: str) -> None:
    fields = sorted(codec.STRUCT_LAYOUTS[name], key=lambda f: f[1])
    end = 0
    for field, off, size in fields:
        assert off == end, f"{name}.{field} at {off}, previous field ended at {end}"
        end = off + size
    assert end == codec.STRUCT_SIZES[name]


def test_endpoint_key_is_the_blog_key() -> None:
    key = codec.build_endpoint_key(EndpointKey(IPv4Address("10.10.2.121")))
    assert key.hex(" ") == "0a 0a 02 79 00 00 00 00 00 00 00 00 00 00 00 00 01 00 00 00"


def test_endpoint_info_puts_the_id_little_endian_at_bytes_6_7_and_macs_at_16_24() -> None:
    info = EndpointInfo(ifindex=15, lxc_id=0x0633, mac="aa:bb:cc:dd:ee:01",
                        node_mac="02:00:00:00:00:02", sec_id=3372)  # fmt: skip
    b = codec.build_endpoint_info(info)
    assert len(b) == 48
    assert b[0:4] == (15).to_bytes(4, "little")
    assert b[6:8] == bytes([0x33, 0x06])
    assert b[16:22] == bytes.fromhex("aabbccddee01") and b[22:24] == b"\0\0"
    assert b[24:30] == bytes.fromhex("020000000002")
    assert b[32:36] == (3372).to_bytes(4, "little")
    assert codec.parse_endpoint_info(b) == info


def test_host_entry_is_all_zero_but_the_flag() -> None:
    b = codec.build_endpoint_info(EndpointInfo(0, 0, flags=ENDPOINT_F_HOST))
    assert b[8] == 1 and sum(b) == 1


def test_ipcache_key_and_value_match_the_blog() -> None:
    key = codec.build_ipcache_key(IPCacheKey(IPv4Network("10.10.1.155/32")))
    assert key.hex(" ") == "40 00 00 00 00 00 00 01 0a 0a 01 9b" + " 00" * 12
    world = codec.build_ipcache_key(IPCacheKey(IPv4Network("0.0.0.0/0")))
    assert world[:4] == (32).to_bytes(4, "little")
    v = codec.build_remote_endpoint_info(
        RemoteEndpointInfo(10388, IPv4Address("172.18.0.4"), IPCACHE_F_HAS_TUNNEL_EP)
    )
    assert v[0:4] == (10388).to_bytes(4, "little")
    assert v[4:8].hex(" ") == "ac 12 00 04"
    assert v[11] == IPCACHE_F_HAS_TUNNEL_EP


def test_policy_key_prefix_lengths() -> None:
    full = codec.build_policy_key(PolicyKey(3372, False, 6, 80, 16))
    assert full[:4] == (64).to_bytes(4, "little")
    assert full[10:12] == (80).to_bytes(2, "big")
    anyk = codec.build_policy_key(PolicyKey(0, True))
    assert anyk[:4] == (40).to_bytes(4, "little") and anyk[8] == 1
    ranged = PolicyKey(0, False, 6, 8080, 14)  # 8080-8083
    assert codec.parse_policy_key(codec.build_policy_key(ranged)) == ranged


def test_policy_entry_carries_deny_and_the_entry_prefix() -> None:
    k = PolicyKey(7, False, 6, 443, 16)
    b = codec.build_policy_entry(k, PolicyEntry(deny=True, proxy_port=15001))
    assert b[0:2] == (15001).to_bytes(2, "big")
    assert b[2] & 1 == 1 and b[2] >> 3 == 24
    assert codec.parse_policy_entry(b) == PolicyEntry(deny=True, proxy_port=15001)


def test_lb4_layouts() -> None:
    k = LB4Key(IPv4Address("10.96.0.10"), 53, 2, 17, 1)
    b = codec.build_lb4_key(k)
    assert b.hex(" ") == "0a 60 00 0a 00 35 02 00 11 01 00 00"
    assert codec.parse_lb4_key(b) == k
    s = LB4Service(backend_id=10800 | (2 << 24), count=3, rev_nat_index=7, flags=0x10)
    assert codec.build_lb4_service(s)[3] == 2
    assert codec.parse_lb4_service(codec.build_lb4_service(s)) == s
    be = LB4Backend(IPv4Address("10.10.1.5"), 8080, 6, 1, 3, 0)
    assert codec.build_lb4_backend(be).hex(" ") == "0a 0a 01 05 1f 90 06 01 03 00 00 00"
    rn = LB4ReverseNat(IPv4Address("10.96.0.10"), 53)
    assert codec.build_lb4_reverse_nat(rn).hex(" ") == "0a 60 00 0a 00 35"


def test_wrong_sizes_are_codec_errors() -> None:
    with pytest.raises(codec.CodecError):
        codec.parse_endpoint_key(b"\0" * 19)
    with pytest.raises(codec.CodecError):
        codec.parse_ipcache_key(b"\x60" + b"\0" * 6 + b"\x01" + b"\0" * 16)  # prefixlen 96
