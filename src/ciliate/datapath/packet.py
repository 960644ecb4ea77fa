"""Packets as values: what the model datapath walks through the programs of a node.

A ``Packet`` is frozen: every program that rewrites a header (DNAT, reverse NAT, VXLAN
encapsulation, a TTL decrement) returns a new packet with ``dataclasses.replace``, so a
trace can show the packet as it was at every hop. Layers: Ethernet (MACs, ethertype),
ARP *or* IPv4 (addresses, TTL, protocol), one L4 header (TCP with flags, UDP, SCTP,
ICMP echo), an optional HTTP request line for L7 probes, and an optional VXLAN outer
header (outer IPs, UDP 8472, VNI = source security identity, cilium.md §4).

Inputs: nothing but the standard library. Outputs: ``Packet`` and builders. Must not
import the control plane or any I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from ipaddress import IPv4Address

ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
VXLAN_PORT = 8472  # Cilium's default VXLAN port (the Linux one, not IANA's 4789)
BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"
ANY_IP = IPv4Address(0)


class IPProto(enum.IntEnum):
    ICMP = 1
    TCP = 6
    UDP = 17
    SCTP = 132

    @classmethod
    def parse(cls, text: str) -> IPProto:
        try:
            return cls[text.upper()]
        except KeyError:
            raise ValueError(f"unknown protocol {text!r} (tcp, udp, sctp or icmp)") from None


class TCPFlag(enum.IntFlag):
    FIN = 0x01
    SYN = 0x02
    RST = 0x04
    PSH = 0x08
    ACK = 0x10
    URG = 0x20


# The order Hubble prints TCP flags in (cilium.md §13.12).
_FLAG_ORDER = (TCPFlag.SYN, TCPFlag.ACK, TCPFlag.RST, TCPFlag.FIN, TCPFlag.PSH, TCPFlag.URG)


def tcp_flag_names(flags: int) -> tuple[str, ...]:
    return tuple(str(f.name) for f in _FLAG_ORDER if flags & f)


class ICMPType(enum.IntEnum):
    ECHO_REPLY = 0
    ECHO_REQUEST = 8


class ARPOp(enum.IntEnum):
    REQUEST = 1
    REPLY = 2


@dataclass(frozen=True, slots=True)
class L4:
    """Ports for TCP/UDP/SCTP; type/code/id for ICMP echo (ports then stay 0)."""

    sport: int = 0
    dport: int = 0
    flags: int = 0  # TCP only
    icmp_type: int = 0
    icmp_code: int = 0
    icmp_id: int = 0


@dataclass(frozen=True, slots=True)
class ARP:
    op: ARPOp
    sender_mac: str
    sender_ip: IPv4Address
    target_mac: str
    target_ip: IPv4Address


@dataclass(frozen=True, slots=True)
class HTTPRequest:
    method: str
    path: str
    host: str = ""


@dataclass(frozen=True, slots=True)
class VXLAN:
    """The outer headers added by cil_to_overlay: node IP to node IP, UDP 8472, VNI."""

    outer_src: IPv4Address
    outer_dst: IPv4Address
    vni: int
    sport: int = 0
    dport: int = VXLAN_PORT
    outer_src_mac: str = "00:00:00:00:00:00"
    outer_dst_mac: str = "00:00:00:00:00:00"


@dataclass(frozen=True, slots=True)
class Packet:
    eth_src: str
    eth_dst: str
    ethertype: int = ETH_P_IP
    src: IPv4Address = ANY_IP
    dst: IPv4Address = ANY_IP
    ttl: int = 64
    proto: IPProto = IPProto.TCP
    l4: L4 = L4()
    arp: ARP | None = None
    http: HTTPRequest | None = None
    vxlan: VXLAN | None = None
    length: int = 74  # bytes on the wire without the outer header (a TCP SYN)

    @property
    def is_arp(self) -> bool:
        return self.ethertype == ETH_P_ARP

    @property
    def sport(self) -> int:
        return self.l4.sport

    @property
    def dport(self) -> int:
        """The L4 destination port; for ICMP echo the policy key port is 0."""
        return self.l4.dport

    def with_dst(self, ip: IPv4Address, port: int | None = None) -> Packet:
        """DNAT: rewrite the destination address (and port)."""
        l4 = self.l4 if port is None else replace(self.l4, dport=port)
        return replace(self, dst=ip, l4=l4)

    def with_src(self, ip: IPv4Address, port: int | None = None) -> Packet:
        """Reverse NAT / SNAT: rewrite the source address (and port)."""
        l4 = self.l4 if port is None else replace(self.l4, sport=port)
        return replace(self, src=ip, l4=l4)

    def with_macs(self, src: str, dst: str) -> Packet:
        return replace(self, eth_src=src, eth_dst=dst)

    def encap(self, outer: VXLAN) -> Packet:
        return replace(self, vxlan=outer)

    def decap(self) -> Packet:
        return replace(self, vxlan=None)

    def summary(self) -> str:
        """Hubble's Summary text: ``TCP Flags: SYN``, ``UDP``, ``ICMPv4 EchoRequest``."""
        if self.is_arp:
            return "ARP"
        if self.proto == IPProto.TCP:
            return "TCP Flags: " + ", ".join(tcp_flag_names(self.l4.flags))
        if self.proto == IPProto.ICMP:
            name = "EchoRequest" if self.l4.icmp_type == ICMPType.ECHO_REQUEST else "EchoReply"
            return f"ICMPv4 {name}"
        return self.proto.name

    def ends(self) -> tuple[str, str]:
        """Source and destination as the connection summary writes them: ``ip:port``,
        the bare address for ICMP, sender and target address for ARP."""
        if self.is_arp and self.arp is not None:
            return str(self.arp.sender_ip), str(self.arp.target_ip)
        if self.proto == IPProto.ICMP:
            return str(self.src), str(self.dst)
        return f"{self.src}:{self.sport}", f"{self.dst}:{self.dport}"

    def conn(self) -> str:
        """cilium-dbg monitor's connection summary (GetConnectionSummary)."""
        src, dst = self.ends()
        if self.is_arp and self.arp is not None:
            return f"ARP {self.arp.op.name.lower()} {src} -> {dst}"
        if self.proto == IPProto.ICMP:
            return f"{src} -> {dst} icmp {self.l4.icmp_type}-{self.l4.icmp_code}"
        text = f"{src} -> {dst} {self.proto.name.lower()}"
        if self.proto == IPProto.TCP:
            text += " " + "|".join(tcp_flag_names(self.l4.flags))
        return text


def build_request(
    eth_src: str,
    eth_dst: str,
    src: IPv4Address,
    dst: IPv4Address,
    proto: IPProto,
    dport: int,
    sport: int = 40000,
    http: HTTPRequest | None = None,
) -> Packet:
    """The first packet of a probe: a TCP SYN, a UDP/SCTP datagram or an ICMP echo request."""
    if proto == IPProto.ICMP:
        l4 = L4(icmp_type=ICMPType.ECHO_REQUEST, icmp_id=sport)
        return Packet(eth_src, eth_dst, src=src, dst=dst, proto=proto, l4=l4, length=98)
    flags = TCPFlag.SYN if proto == IPProto.TCP else 0
    length = 74 if proto == IPProto.TCP else 60
    return Packet(
        eth_src,
        eth_dst,
        src=src,
        dst=dst,
        proto=proto,
        l4=L4(sport=sport, dport=dport, flags=int(flags)),
        http=http,
        length=length,
    )


def build_reply(request: Packet) -> Packet:
    """What the destination's stack answers: SYN-ACK, echo reply, a UDP/SCTP answer."""
    l4 = request.l4
    if request.proto == IPProto.ICMP:
        new_l4 = replace(l4, icmp_type=ICMPType.ECHO_REPLY)
    else:
        flags = int(TCPFlag.SYN | TCPFlag.ACK) if request.proto == IPProto.TCP else 0
        new_l4 = L4(sport=l4.dport, dport=l4.sport, flags=flags)
    return replace(
        request,
        eth_src=request.eth_dst,
        eth_dst=request.eth_src,
        src=request.dst,
        dst=request.src,
        ttl=64,
        l4=new_l4,
        http=None,
        vxlan=None,
    )


def build_arp_request(sender_mac: str, sender_ip: IPv4Address, target_ip: IPv4Address) -> Packet:
    arp = ARP(ARPOp.REQUEST, sender_mac, sender_ip, "00:00:00:00:00:00", target_ip)
    return Packet(sender_mac, BROADCAST_MAC, ethertype=ETH_P_ARP, arp=arp, length=42)


def build_arp_reply(request: Packet, mac: str) -> Packet:
    """The answer to ``request`` saying that its target IP is at ``mac``."""
    assert request.arp is not None
    q = request.arp
    arp = ARP(ARPOp.REPLY, mac, q.target_ip, q.sender_mac, q.sender_ip)
    return Packet(mac, q.sender_mac, ethertype=ETH_P_ARP, arp=arp, length=42)
