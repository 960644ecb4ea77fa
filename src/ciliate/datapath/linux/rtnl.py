"""Raw rtnetlink requests for the hot path of a new pod: encoded with ``struct``, sent
in batches on a plain netlink socket, every request acknowledged and checked.

Role: wires a pod into a namespace that was just created (so nothing has to be looked
up first) in two system calls instead of eight pyroute2 requests. pyroute2 spends
~0.3 ms of Python per request (its asyncio core runs an event loop per call, measured on
the 2-vCPU VM); the kernel work for the same request is a few microseconds, so pyroute2
was most of a new pod's plumbing. Everything else (looking state up, converging an
existing namespace, tc) stays with pyroute2 in ``netns`` / ``loader``.

Inputs: ``netns.LinkSpec`` / ``netns.RouteSpec`` values and interface indexes.
Outputs: kernel state; ``NetlinkError`` (pyroute2's, so callers catch one type) with the
kernel's errno for the first request that failed. Requests of one batch are processed in
order and independently: a failed request does not stop the ones after it, so a caller
that gets an error converges with the idempotent ``ensure_*`` calls afterwards.

Layouts (linux/netlink.h, linux/rtnetlink.h, linux/if_link.h, linux/veth.h):
``nlmsghdr`` {u32 len, u16 type, u16 flags, u32 seq, u32 pid}; ``ifinfomsg`` {u8 family,
u8 pad, u16 type, i32 index, u32 flags, u32 change}; ``ifaddrmsg`` {u8 family, u8
prefixlen, u8 flags, u8 scope, u32 index}; ``rtmsg`` {u8 family, dst_len, src_len, tos,
table, protocol, scope, type; u32 flags}; attributes {u16 len, u16 type, payload padded
to 4}.

Must not import anything of ciliate above ``datapath.linux.netns``.
"""

from __future__ import annotations

import errno
import itertools
import os
import socket
import struct
from collections.abc import Collection, Iterable
from ipaddress import IPv4Address, IPv4Interface

from pyroute2.netlink.exceptions import NetlinkError

from ciliate.datapath.linux.netns import (
    RT_SCOPE_LINK,
    RT_SCOPE_UNIVERSE,
    RTPROT_BOOT,
    RTPROT_KERNEL,
    LinkSpec,
    RouteSpec,
)

NLMSG_ERROR = 2
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400

RTM_NEWLINK = 16
RTM_GETLINK = 18
RTM_NEWADDR = 20
RTM_NEWROUTE = 24
RTM_NEWQDISC = 36
RTM_NEWTFILTER = 44

IFF_UP = 0x1
IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_MTU = 4
IFLA_LINKINFO = 18
IFLA_NET_NS_FD = 28
IFLA_INFO_KIND = 1
IFLA_INFO_DATA = 2
VETH_INFO_PEER = 1

IFA_ADDRESS = 1
IFA_LOCAL = 2

RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RTA_PREFSRC = 7
RTA_METRICS = 8
RTA_TABLE = 15
RTAX_MTU = 2
RT_TABLE_MAIN = 254
RTN_UNICAST = 1

TCA_KIND = 1
TCA_OPTIONS = 2
TCA_BPF_CLASSID = 3
TCA_BPF_FD = 6
TCA_BPF_NAME = 7
TCA_BPF_FLAGS = 8
TCA_BPF_FLAG_ACT_DIRECT = 1
TC_H_CLSACT = 0xFFFFFFF1
TC_H_CLSACT_HANDLE = 0xFFFF0000  # TC_H_MAKE(TC_H_CLSACT, 0)
ETH_P_ALL = 0x0003

_NLMSGHDR = struct.Struct("=IHHII")
_IFINFOMSG = struct.Struct("=BxHiII")
_IFADDRMSG = struct.Struct("=BBBBI")
_RTMSG = struct.Struct("=BBBBBBBBI")
_TCMSG = struct.Struct("=BxxxiIII")
_seq = itertools.count(1)


def raw_socket() -> socket.socket:
    """A netlink route socket in the calling thread's namespace (see ``netns``)."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    sock.bind((0, 0))
    return sock


# --- encoding ---------------------------------------------------------------------------


def _attr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def _u32(kind: int, value: int) -> bytes:
    return _attr(kind, struct.pack("=I", value))


def _ipv4(kind: int, address: str) -> bytes:
    return _attr(kind, IPv4Address(address).packed)


def _mac(address: str) -> bytes:
    return bytes(int(b, 16) for b in address.split(":"))


def _link_attrs(spec: LinkSpec) -> bytes:
    out = _attr(IFLA_IFNAME, spec.name.encode() + b"\0") + _u32(IFLA_MTU, spec.mtu)
    if spec.mac:
        out += _attr(IFLA_ADDRESS, _mac(spec.mac))
    return out


def _up_ifinfo(index: int) -> bytes:
    return _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, IFF_UP, IFF_UP)


def veth(local: LinkSpec, peer: LinkSpec, peer_netns_fd: int) -> tuple[int, int, bytes]:
    """``ip link add local up type veth peer peer netns FD``: both ends with their
    planned indexes, MACs and MTUs, ``peer`` numbered in its namespace. Only ``local``
    comes up: the kernel configures the peer before it links the pair, and a veth
    opened without its peer fails with ENOTCONN, so the peer is set up afterwards
    (``link_up`` in its namespace)."""
    peer_info = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, peer.ifindex, 0, 0) + _link_attrs(peer)
    peer_info += _u32(IFLA_NET_NS_FD, peer_netns_fd)
    linkinfo = _attr(IFLA_INFO_KIND, b"veth") + _attr(
        IFLA_INFO_DATA, _attr(VETH_INFO_PEER, peer_info)
    )
    body = _up_ifinfo(local.ifindex) + _link_attrs(local) + _attr(IFLA_LINKINFO, linkinfo)
    return RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body


def link_up(index: int) -> tuple[int, int, bytes]:
    """``ip link set dev INDEX up``."""
    return RTM_NEWLINK, 0, _up_ifinfo(index)


def address(index: int, cidr: str) -> tuple[int, int, bytes]:
    """``ip addr add CIDR dev INDEX`` (IPv4)."""
    a = IPv4Interface(cidr)
    body = _IFADDRMSG.pack(socket.AF_INET, a.network.prefixlen, 0, RT_SCOPE_UNIVERSE, index)
    body += _ipv4(IFA_LOCAL, str(a.ip)) + _ipv4(IFA_ADDRESS, str(a.ip))
    return RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, body


def route(r: RouteSpec, oif: int) -> tuple[int, int, bytes]:
    """``ip route replace`` of ``r`` through interface ``oif`` (what
    ``netns.ensure_route`` asks pyroute2 for)."""
    dst = IPv4Interface("0.0.0.0/0" if r.dst == "default" else r.dst)
    body = _RTMSG.pack(
        socket.AF_INET,
        dst.network.prefixlen,
        0,
        0,
        RT_TABLE_MAIN,
        RTPROT_KERNEL if r.kernel_proto else RTPROT_BOOT,
        RT_SCOPE_LINK if r.link_scope else RT_SCOPE_UNIVERSE,
        RTN_UNICAST,
        0,
    )
    body += _u32(RTA_TABLE, RT_TABLE_MAIN)
    if dst.network.prefixlen:
        body += _ipv4(RTA_DST, str(dst.network.network_address))
    body += _u32(RTA_OIF, oif)
    if r.via:
        body += _ipv4(RTA_GATEWAY, r.via)
    if r.src:
        body += _ipv4(RTA_PREFSRC, r.src)
    if r.mtu:
        body += _attr(RTA_METRICS, _u32(RTAX_MTU, r.mtu))
    return RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, body


def clsact(index: int) -> tuple[int, int, bytes]:
    """``tc qdisc add dev INDEX clsact`` (EEXIST when it is there)."""
    body = _TCMSG.pack(socket.AF_UNSPEC, index, TC_H_CLSACT_HANDLE, TC_H_CLSACT, 0)
    return RTM_NEWQDISC, NLM_F_CREATE | NLM_F_EXCL, body + _attr(TCA_KIND, b"clsact\0")


def bpf_filter(
    index: int, parent: int, fd: int, name: str, *, prio: int = 1, handle: int = 1
) -> tuple[int, int, bytes]:
    """``tc filter replace dev INDEX parent PARENT pref PRIO handle HANDLE protocol all
    bpf direct-action fd FD name NAME classid 1`` (what ``loader`` asked pyroute2 for):
    replacing is atomic, the hook never runs without a program."""
    info = (prio << 16) | socket.htons(ETH_P_ALL)
    options = (
        _u32(TCA_BPF_CLASSID, 1)
        + _u32(TCA_BPF_FD, fd)
        + _attr(TCA_BPF_NAME, name.encode() + b"\0")
        + _u32(TCA_BPF_FLAGS, TCA_BPF_FLAG_ACT_DIRECT)
    )
    body = _TCMSG.pack(socket.AF_UNSPEC, index, handle, parent, info)
    body += _attr(TCA_KIND, b"bpf\0") + _attr(TCA_OPTIONS, options)
    return RTM_NEWTFILTER, NLM_F_CREATE | NLM_F_REPLACE, body


# --- sending ----------------------------------------------------------------------------


def link_index(sock: socket.socket, name: str) -> int:
    """``ip link show NAME``'s index, 0 when there is no such link."""
    seq = next(_seq)
    body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + _attr(IFLA_IFNAME, name.encode() + b"\0")
    sock.sendto(
        _NLMSGHDR.pack(_NLMSGHDR.size + len(body), RTM_GETLINK, NLM_F_REQUEST, seq, 0) + body,
        (0, 0),
    )
    while True:
        data = sock.recv(65536)
        off = 0
        while off + _NLMSGHDR.size <= len(data):
            length, kind, _flags, mseq, _pid = _NLMSGHDR.unpack_from(data, off)
            if length < _NLMSGHDR.size:
                break
            if mseq == seq:
                if kind == RTM_NEWLINK:
                    return int(_IFINFOMSG.unpack_from(data, off + _NLMSGHDR.size)[2])
                if kind == NLMSG_ERROR:
                    (code,) = struct.unpack_from("=i", data, off + _NLMSGHDR.size)
                    if -code in (errno.ENODEV, 0):
                        return 0
                    raise NetlinkError(-code, os.strerror(-code))
            off += (length + 3) & ~3


def request(
    sock: socket.socket,
    requests: Iterable[tuple[int, int, bytes]],
    tolerate: Collection[int] = (),
) -> None:
    """Send ``requests`` in one datagram and wait for every acknowledgement; raise
    ``NetlinkError`` for the first that failed with an errno not in ``tolerate`` (after
    reading them all, so the socket is left clean)."""
    seqs: list[int] = []
    out = bytearray()
    for kind, flags, body in requests:
        seq = next(_seq)
        seqs.append(seq)
        out += _NLMSGHDR.pack(
            _NLMSGHDR.size + len(body), kind, NLM_F_REQUEST | NLM_F_ACK | flags, seq, 0
        )
        out += body
    if not seqs:
        return
    sock.sendto(bytes(out), (0, 0))  # the kernel
    pending = set(seqs)
    errors: dict[int, int] = {}
    while pending:
        data = sock.recv(65536)
        off = 0
        while off + _NLMSGHDR.size <= len(data):
            length, kind, _flags, seq, _pid = _NLMSGHDR.unpack_from(data, off)
            if length < _NLMSGHDR.size:
                break
            if kind == NLMSG_ERROR and seq in pending:
                (code,) = struct.unpack_from("=i", data, off + _NLMSGHDR.size)
                pending.discard(seq)
                if code and -code not in tolerate:
                    errors[seq] = -code
            off += (length + 3) & ~3
    for seq in seqs:
        if seq in errors:
            code = errors[seq]
            raise NetlinkError(code, os.strerror(code))
