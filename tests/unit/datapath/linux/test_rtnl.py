"""Raw rtnetlink requests (``datapath.linux.rtnl``) without a kernel: what the messages
carry, attribute by attribute, and how acknowledgements and errors are read."""

from __future__ import annotations

import socket
import struct
from typing import Any

import pytest
from pyroute2.netlink.exceptions import NetlinkError

from ciliate.datapath.linux import rtnl
from ciliate.datapath.linux.netns import LinkSpec, RouteSpec


def attrs(data: bytes) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    off = 0
    while off + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, off)
        out[kind] = data[off + 4 : off + length]
        off += (length + 3) & ~3
    return out


def test_veth_creates_local_up_and_the_peer_in_its_namespace() -> None:
    lxc = LinkSpec("lxc1", 12, "02:c1:00:00:01:01", mtu=1450)
    eth0 = LinkSpec("eth0", 11, "0a:58:0a:0a:02:79", mtu=1450)
    kind, flags, body = rtnl.veth(lxc, eth0, 7)
    assert kind == rtnl.RTM_NEWLINK
    assert flags == rtnl.NLM_F_CREATE | rtnl.NLM_F_EXCL
    family, _type, index, ifflags, change = struct.unpack_from("=BxHiII", body)
    assert (family, index, ifflags, change) == (socket.AF_UNSPEC, 12, rtnl.IFF_UP, rtnl.IFF_UP)
    top = attrs(body[16:])
    assert top[rtnl.IFLA_IFNAME] == b"lxc1\0"
    assert struct.unpack("=I", top[rtnl.IFLA_MTU]) == (1450,)
    assert top[rtnl.IFLA_ADDRESS] == bytes.fromhex("02c100000101")
    info = attrs(top[rtnl.IFLA_LINKINFO])
    assert info[rtnl.IFLA_INFO_KIND] == b"veth"
    peer = attrs(info[rtnl.IFLA_INFO_DATA])[rtnl.VETH_INFO_PEER]
    _f, _t, peer_index, peer_flags, peer_change = struct.unpack_from("=BxHiII", peer)
    # the peer is brought up afterwards: up at creation fails (ENOTCONN, no pair yet)
    assert (peer_index, peer_flags, peer_change) == (11, 0, 0)
    peer_attrs = attrs(peer[16:])
    assert peer_attrs[rtnl.IFLA_IFNAME] == b"eth0\0"
    assert struct.unpack("=I", peer_attrs[rtnl.IFLA_NET_NS_FD]) == (7,)
    assert peer_attrs[rtnl.IFLA_ADDRESS] == bytes.fromhex("0a580a0a0279")


def test_address_is_local_and_address_with_the_prefix() -> None:
    kind, flags, body = rtnl.address(11, "10.10.2.121/32")
    assert kind == rtnl.RTM_NEWADDR and flags & rtnl.NLM_F_EXCL
    assert struct.unpack_from("=BBBBI", body) == (socket.AF_INET, 32, 0, 0, 11)
    a = attrs(body[8:])
    assert a[rtnl.IFA_LOCAL] == a[rtnl.IFA_ADDRESS] == bytes([10, 10, 2, 121])


def test_routes_replace_with_gateway_scope_and_mtu() -> None:
    kind, flags, body = rtnl.route(RouteSpec("default", "eth0", via="10.10.2.205", mtu=1450), 11)
    assert kind == rtnl.RTM_NEWROUTE
    assert flags == rtnl.NLM_F_CREATE | rtnl.NLM_F_REPLACE
    family, dst_len, _s, _tos, table, proto, scope, rtype, _f = struct.unpack_from(
        "=BBBBBBBBI", body
    )
    assert (family, dst_len, table, proto, scope, rtype) == (
        socket.AF_INET, 0, rtnl.RT_TABLE_MAIN, rtnl.RTPROT_BOOT, rtnl.RT_SCOPE_UNIVERSE,
        rtnl.RTN_UNICAST,
    )  # fmt: skip
    a = attrs(body[12:])
    assert rtnl.RTA_DST not in a  # the default route names no destination
    assert struct.unpack("=I", a[rtnl.RTA_OIF]) == (11,)
    assert a[rtnl.RTA_GATEWAY] == bytes([10, 10, 2, 205])
    assert attrs(a[rtnl.RTA_METRICS]) == {rtnl.RTAX_MTU: struct.pack("=I", 1450)}

    _k, _f2, body = rtnl.route(RouteSpec("10.10.2.205", "eth0", link_scope=True), 11)
    assert struct.unpack_from("=BBBBBBBBI", body)[1] == 32
    assert struct.unpack_from("=BBBBBBBBI", body)[6] == rtnl.RT_SCOPE_LINK
    a = attrs(body[12:])
    assert a[rtnl.RTA_DST] == bytes([10, 10, 2, 205]) and rtnl.RTA_GATEWAY not in a


class FakeKernel:
    """Acknowledges every request it is sent; ``fail`` maps a request's position to an
    errno. Answers in datagrams of ``per_datagram`` acks."""

    def __init__(self, fail: dict[int, int] | None = None, per_datagram: int = 1) -> None:
        self.fail = fail or {}
        self.per_datagram = per_datagram
        self.sent: list[bytes] = []
        self.replies: list[bytes] = []

    def sendto(self, data: bytes, addr: Any) -> None:
        assert addr == (0, 0)
        self.sent.append(data)
        acks: list[bytes] = []
        off, i = 0, 0
        while off < len(data):
            length, _kind, flags, seq, _pid = struct.unpack_from("=IHHII", data, off)
            assert flags & rtnl.NLM_F_REQUEST and flags & rtnl.NLM_F_ACK
            code = -self.fail.get(i, 0)
            ack = struct.pack("=i", code) + data[off : off + 16]
            acks.append(struct.pack("=IHHII", 16 + len(ack), rtnl.NLMSG_ERROR, 0, seq, 0) + ack)
            off += length
            i += 1
        for k in range(0, len(acks), self.per_datagram):
            self.replies.append(b"".join(acks[k : k + self.per_datagram]))

    def recv(self, size: int) -> bytes:
        return self.replies.pop(0)


@pytest.mark.parametrize("per_datagram", [1, 3])
def test_a_batch_goes_in_one_datagram_and_every_ack_is_read(per_datagram: int) -> None:
    k = FakeKernel(per_datagram=per_datagram)
    rtnl.request(k, [rtnl.link_up(1), rtnl.link_up(11), rtnl.address(11, "10.0.0.1/32")])  # type: ignore[arg-type]
    assert len(k.sent) == 1
    assert k.replies == []


def test_the_first_refused_request_is_raised_after_reading_every_ack() -> None:
    k = FakeKernel(fail={1: 17, 2: 19})
    with pytest.raises(NetlinkError) as e:
        rtnl.request(k, [rtnl.link_up(1), rtnl.address(11, "10.0.0.1/32"), rtnl.link_up(99)])  # type: ignore[arg-type]
    assert e.value.code == 17
    assert k.replies == []  # the socket is left with nothing unread


def test_no_requests_sends_nothing() -> None:
    k = FakeKernel()
    rtnl.request(k, [])  # type: ignore[arg-type]
    assert k.sent == []


def test_clsact_qdisc_and_a_direct_action_bpf_filter() -> None:
    kind, flags, body = rtnl.clsact(12)
    assert kind == rtnl.RTM_NEWQDISC and flags == rtnl.NLM_F_CREATE | rtnl.NLM_F_EXCL
    assert struct.unpack_from("=BxxxiIII", body) == (0, 12, 0xFFFF0000, 0xFFFFFFF1, 0)
    assert attrs(body[20:]) == {rtnl.TCA_KIND: b"clsact\0"}

    kind, flags, body = rtnl.bpf_filter(12, 0xFFFFFFF2, 9, "cil_from_container")
    assert kind == rtnl.RTM_NEWTFILTER
    assert flags == rtnl.NLM_F_CREATE | rtnl.NLM_F_REPLACE  # atomic: never without a program
    _fam, index, handle, parent, info = struct.unpack_from("=BxxxiIII", body)
    # pref 1, protocol all (ETH_P_ALL in network order), handle 1, on the ingress hook
    assert (index, handle, parent, info) == (12, 1, 0xFFFFFFF2, (1 << 16) | socket.htons(0x0003))
    top = attrs(body[20:])
    assert top[rtnl.TCA_KIND] == b"bpf\0"
    opts = attrs(top[rtnl.TCA_OPTIONS])
    assert struct.unpack("=I", opts[rtnl.TCA_BPF_FD]) == (9,)
    assert opts[rtnl.TCA_BPF_NAME] == b"cil_from_container\0"
    assert struct.unpack("=I", opts[rtnl.TCA_BPF_FLAGS]) == (rtnl.TCA_BPF_FLAG_ACT_DIRECT,)
    assert struct.unpack("=I", opts[rtnl.TCA_BPF_CLASSID]) == (1,)


def test_tolerated_errors_are_not_raised() -> None:
    k = FakeKernel(fail={0: 17})
    rtnl.request(k, [rtnl.clsact(12), rtnl.link_up(12)], tolerate=(17,))  # type: ignore[arg-type]
    assert k.replies == []


class FakeLinks:
    """Answers RTM_GETLINK by name: an RTM_NEWLINK with the index, or ENODEV."""

    def __init__(self, links: dict[str, int]) -> None:
        self.links = links
        self.replies: list[bytes] = []

    def sendto(self, data: bytes, addr: Any) -> None:
        _len, kind, _flags, seq, _pid = struct.unpack_from("=IHHII", data)
        assert kind == rtnl.RTM_GETLINK
        name = attrs(data[32:])[rtnl.IFLA_IFNAME].rstrip(b"\0").decode()
        noise = struct.pack("=IHHII", 16, rtnl.NLMSG_ERROR + 1, 0, seq + 1000, 0)  # not ours
        if name in self.links:
            ifi = struct.pack("=BxHiII", 0, 1, self.links[name], 0, 0)
            msg = struct.pack("=IHHII", 32, rtnl.RTM_NEWLINK, 0, seq, 0) + ifi
        else:
            err = struct.pack("=i", -19) + data[:16]
            msg = struct.pack("=IHHII", 16 + len(err), rtnl.NLMSG_ERROR, 0, seq, 0) + err
        self.replies.append(noise + msg)

    def recv(self, size: int) -> bytes:
        return self.replies.pop(0)


def test_link_index_by_name() -> None:
    k = FakeLinks({"lxc1": 12})
    assert rtnl.link_index(k, "lxc1") == 12  # type: ignore[arg-type]
    assert rtnl.link_index(k, "missing") == 0  # type: ignore[arg-type]
