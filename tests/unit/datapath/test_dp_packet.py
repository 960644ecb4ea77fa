"""Packets: builders, replies, rewrites and the texts Hubble and the monitor print."""

from ipaddress import IPv4Address

from ciliate.datapath.packet import (
    ETH_P_ARP,
    VXLAN,
    ARPOp,
    HTTPRequest,
    IPProto,
    build_arp_reply,
    build_arp_request,
    build_reply,
    build_request,
)

A = IPv4Address("10.10.2.117")
B = IPv4Address("10.10.2.121")


def test_tcp_request_is_a_syn_and_its_reply_a_syn_ack() -> None:
    p = build_request("aa:aa:aa:aa:aa:aa", "bb:bb:bb:bb:bb:bb", A, B, IPProto.TCP, 80, 40000)
    assert p.summary() == "TCP Flags: SYN"
    assert p.conn() == "10.10.2.117:40000 -> 10.10.2.121:80 tcp SYN"
    r = build_reply(p)
    assert (r.src, r.dst, r.sport, r.dport) == (B, A, 80, 40000)
    assert r.summary() == "TCP Flags: SYN, ACK"
    assert (r.eth_src, r.eth_dst) == (p.eth_dst, p.eth_src)


def test_icmp_echo_and_reply_keep_the_identifier() -> None:
    p = build_request("a", "b", A, B, IPProto.ICMP, 0, 7)
    assert p.summary() == "ICMPv4 EchoRequest"
    r = build_reply(p)
    assert r.summary() == "ICMPv4 EchoReply"
    assert r.l4.icmp_id == 7


def test_rewrites_return_new_packets() -> None:
    p = build_request("a", "b", A, IPv4Address("10.96.0.10"), IPProto.UDP, 53, http=None)
    q = p.with_dst(B, 5353)
    assert (p.dst, p.dport) == (IPv4Address("10.96.0.10"), 53)
    assert (q.dst, q.dport, q.summary()) == (B, 5353, "UDP")
    e = q.encap(VXLAN(IPv4Address("172.18.0.2"), IPv4Address("172.18.0.4"), 3372))
    assert e.vxlan is not None and e.vxlan.dport == 8472 and e.decap().vxlan is None


def test_http_rides_on_the_request_only() -> None:
    p = build_request("a", "b", A, B, IPProto.TCP, 80, http=HTTPRequest("GET", "/public"))
    assert p.http is not None and build_reply(p).http is None


def test_arp_reply_answers_the_sender() -> None:
    q = build_arp_request("ee:44:0f:74:ac:a4", A, IPv4Address("10.10.2.205"))
    assert q.ethertype == ETH_P_ARP and q.eth_dst == "ff:ff:ff:ff:ff:ff"
    r = build_arp_reply(q, "1a:49:92:cb:47:13")
    assert r.arp is not None
    assert r.arp.op == ARPOp.REPLY
    assert r.arp.sender_ip == IPv4Address("10.10.2.205")
    assert r.arp.sender_mac == "1a:49:92:cb:47:13"
    assert r.eth_dst == "ee:44:0f:74:ac:a4"
