"""Conntrack: Cilium's tuple layout, NEW/ESTABLISHED/REPLY, service entries, lifetimes."""

from ipaddress import IPv4Address

from ciliate.clock import FakeClock
from ciliate.codec import build_ct_tuple
from ciliate.datapath.conntrack import (
    CT_LIFETIME_TCP_SYN,
    TUPLE_F_IN,
    TUPLE_F_OUT,
    CTDir,
    CTStatus,
    CTTable,
    forward_tuple,
    render_tuple,
)
from ciliate.datapath.packet import IPProto, build_reply, build_request

A = IPv4Address("10.10.2.117")
B = IPv4Address("10.10.1.155")


def test_tuple_layout_reverses_addresses_but_not_ports() -> None:
    p = build_request("a", "b", A, B, IPProto.TCP, 80, 40000)
    t = forward_tuple(p, TUPLE_F_OUT)
    # daddr holds the original source; dport is the original destination port.
    assert build_ct_tuple(t).hex(" ") == "0a 0a 02 75 0a 0a 01 9b 00 50 9c 40 06 00"
    assert render_tuple(t) == "TCP OUT 10.10.2.117:40000 -> 10.10.1.155:80"


def test_new_then_established_then_reply() -> None:
    ct = CTTable(FakeClock())
    p = build_request("a", "b", A, B, IPProto.TCP, 80, 40000)
    r = ct.lookup(p, CTDir.EGRESS)
    assert r.status == CTStatus.NEW and r.entry is None
    ct.create(r.tuple, p)
    assert ct.lookup(p, CTDir.EGRESS).status == CTStatus.ESTABLISHED
    # The reply enters the same endpoint in the ingress direction.
    back = ct.lookup(build_reply(p), CTDir.INGRESS)
    assert back.status == CTStatus.REPLY
    assert back.tuple.flags == TUPLE_F_OUT


def test_an_ingress_entry_answers_the_egress_of_the_other_side() -> None:
    ct = CTTable(FakeClock())
    p = build_request("a", "b", A, B, IPProto.UDP, 53, 40000)
    r = ct.lookup(p, CTDir.INGRESS)
    ct.create(r.tuple, p)
    assert r.tuple.flags == TUPLE_F_IN
    assert ct.lookup(build_reply(p), CTDir.EGRESS).status == CTStatus.REPLY
    # The same packet seen on egress is not a reply of itself.
    assert ct.lookup(p, CTDir.EGRESS).status == CTStatus.NEW


def test_icmp_echo_reply_matches_the_request() -> None:
    ct = CTTable(FakeClock())
    p = build_request("a", "b", A, B, IPProto.ICMP, 0, 9)
    ct.create(ct.lookup(p, CTDir.EGRESS).tuple, p)
    assert ct.lookup(build_reply(p), CTDir.INGRESS).status == CTStatus.REPLY


def test_syn_only_entries_expire_after_60s_established_ones_live_longer() -> None:
    clock = FakeClock()
    ct = CTTable(clock)
    p = build_request("a", "b", A, B, IPProto.TCP, 80, 40000)
    ct.create(ct.lookup(p, CTDir.EGRESS).tuple, p)
    clock.advance(CT_LIFETIME_TCP_SYN + 1)
    assert ct.lookup(p, CTDir.EGRESS).status == CTStatus.NEW
    assert len(ct) == 0 and ct.gc() == 1
    # Seen a reply: established, 8000 s.
    ct.create(ct.lookup(p, CTDir.EGRESS).tuple, p)
    ct.lookup(build_reply(p), CTDir.INGRESS)
    clock.advance(600)
    assert ct.lookup(build_reply(p), CTDir.INGRESS).status == CTStatus.REPLY
    clock.advance(8001)
    assert ct.lookup(build_reply(p), CTDir.INGRESS).status == CTStatus.NEW


def test_service_entries_keep_backend_and_rev_nat() -> None:
    clock = FakeClock()
    ct = CTTable(clock)
    p = build_request("a", "b", A, IPv4Address("10.96.0.10"), IPProto.TCP, 80, 40000)
    assert ct.lookup_service(p) is None
    key, _entry = ct.create_service(p, backend_id=7, rev_nat_index=3)
    assert key.flags == 4
    got = ct.lookup_service(p)
    assert got is not None and (got.backend_id, got.rev_nat_index) == (7, 3)
    clock.advance(8001)
    assert ct.lookup_service(p) is None
