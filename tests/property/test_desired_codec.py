"""Every codec round-trips: parse(build(x)) == x for any valid entry."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from hypothesis import given
from hypothesis import strategies as st

from ciliate import codec
from ciliate.desired import (
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

ip4 = st.integers(0, 2**32 - 1).map(IPv4Address)
u8, u16, u32 = st.integers(0, 255), st.integers(0, 65535), st.integers(0, 2**32 - 1)
mac = st.binary(min_size=6, max_size=6).map(lambda b: ":".join(f"{x:02x}" for x in b))


@given(ip4, u16, u32, u16, u32, mac, mac, u32, u32)
def test_lxc(ip, cid, ifi, lxc, flags, m1, m2, sec, parent):  # type: ignore[no-untyped-def]
    k = EndpointKey(ip, cid)
    assert codec.parse_endpoint_key(codec.build_endpoint_key(k)) == k
    v = EndpointInfo(ifi, lxc, flags, m1, m2, sec, parent)
    assert codec.parse_endpoint_info(codec.build_endpoint_info(v)) == v


@given(
    ip4,
    st.integers(0, 32),
    u16,
    u32,
    st.one_of(st.none(), ip4.filter(lambda a: int(a) != 0)),
    u8,
    u8,
)
def test_ipcache(ip, plen, cid, ident, tun, flags, key):  # type: ignore[no-untyped-def]
    k = IPCacheKey(IPv4Network((ip, plen), strict=False), cid)
    assert codec.parse_ipcache_key(codec.build_ipcache_key(k)) == k
    v = RemoteEndpointInfo(ident, tun, flags, key)
    assert codec.parse_remote_endpoint_info(codec.build_remote_endpoint_info(v)) == v


policy_keys = st.one_of(
    st.builds(PolicyKey, u32, st.booleans()),
    st.builds(PolicyKey, u32, st.booleans(), st.integers(1, 255)),
    st.integers(0, 16).flatmap(
        lambda n: st.builds(
            PolicyKey, u32, st.booleans(), st.integers(1, 255),
            st.integers(0, 65535).map(lambda p: p & ~((1 << (16 - n)) - 1) & 0xFFFF), st.just(n),
        )
    ),
)  # fmt: skip


@given(policy_keys, st.booleans(), u16, st.integers(0, 127), u8, u32)
def test_policy(k, deny, proxy, auth, prio, cookie):  # type: ignore[no-untyped-def]
    if k.protocol and k.port_prefix_len == 0 and k.dport:
        k = PolicyKey(k.identity, k.egress, k.protocol)
    assert codec.parse_policy_key(codec.build_policy_key(k)) == k
    e = PolicyEntry(deny, proxy, auth, proxy_port_priority=prio, cookie=cookie)
    assert codec.parse_policy_entry(codec.build_policy_entry(k, e)) == e


@given(ip4, u16, u16, u8, u8, u32, u16, u16, u8, u8, u16)
def test_lb(ip, port, slot, proto, scope, bid, count, rn, f1, f2, q):  # type: ignore[no-untyped-def]
    k = LB4Key(ip, port, slot, proto, scope)
    assert codec.parse_lb4_key(codec.build_lb4_key(k)) == k
    s = LB4Service(bid, count, rn, f1, f2, q)
    assert codec.parse_lb4_service(codec.build_lb4_service(s)) == s
    b = LB4Backend(ip, port, proto, f1, q, f2)
    assert codec.parse_lb4_backend(codec.build_lb4_backend(b)) == b
    r = LB4ReverseNat(ip, port)
    assert codec.parse_lb4_reverse_nat(codec.build_lb4_reverse_nat(r)) == r
