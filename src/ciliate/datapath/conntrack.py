"""Connection tracking as Cilium's datapath does it (cilium.md §3.4), on an injected clock.

Theory of operation
-------------------
One CT table per node (Cilium's ``cilium_ct4_global`` / ``cilium_ct_any4_global`` are
per node, shared by all its endpoints). A key is ``ipv4_ct_tuple``: ``daddr``, ``saddr``,
``dport``, ``sport``, ``nexthdr``, ``flags``. As in Cilium the *address* names are
reversed (``daddr`` holds the original source: it is the reply's destination) while the
*port* names are those of the original direction. ``flags`` is ``TUPLE_F_OUT`` (0) for an
entry made on egress of an endpoint, ``TUPLE_F_IN`` (1) for one made on ingress,
``TUPLE_F_SERVICE`` (4) for the service entry holding the chosen backend.

A lookup in direction ``dir`` (CT_EGRESS / CT_INGRESS):

1. first the *reverse* tuple with the opposite direction flag: a hit means this packet
   answers a connection opened the other way -> ``CT_REPLY`` (Cilium checks the reverse
   first because REPLY must win over ESTABLISHED for policy);
2. then the forward tuple with this direction's flag -> ``CT_ESTABLISHED``;
3. otherwise ``CT_NEW``: the caller runs policy and, if allowed, calls ``create``.

Lifetimes (agent defaults): a TCP entry that has only seen a SYN lives 60 s, an
established TCP entry 8000 s, anything else 60 s; every hit refreshes the lifetime.
Expired entries are invisible to lookups and removed by ``gc``. The clock is passed in
(``ciliate.clock.Clock``), never read here.

The tuple type and its bytes are ``ciliate.codec``'s (shared with the kernel datapath).
Inputs: packets (``datapath.packet``) and a clock. Outputs: CT states and entries.
Must not import the control plane, the kernel datapath or anything doing I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from ipaddress import IPv4Address

from ciliate.clock import Clock
from ciliate.codec import (
    TUPLE_F_IN,
    TUPLE_F_OUT,
    TUPLE_F_RELATED,
    TUPLE_F_SERVICE,
    CTTuple,
)
from ciliate.datapath.packet import IPProto, Packet, TCPFlag

__all__ = ["TUPLE_F_IN", "TUPLE_F_OUT", "TUPLE_F_RELATED", "TUPLE_F_SERVICE", "CTTuple"]

# ct_entry flags (cilium.md §3.4)
CT_F_RX_CLOSING = 0x1
CT_F_TX_CLOSING = 0x2
CT_F_SEEN_NON_SYN = 0x10
CT_F_NODE_PORT = 0x20
CT_F_PROXY_REDIRECT = 0x40
CT_F_FROM_TUNNEL = 0x400

# Default lifetimes in seconds (bpf-ct-timeout-*).
CT_LIFETIME_TCP = 8000
CT_LIFETIME_TCP_SYN = 60
CT_LIFETIME_TCP_FIN = 10
CT_LIFETIME_ANY = 60
CT_SERVICE_LIFETIME_TCP = 8000
CT_SERVICE_LIFETIME_ANY = 60


class CTDir(enum.IntEnum):
    EGRESS = 0
    INGRESS = 1
    SERVICE = 2


class CTStatus(enum.IntEnum):
    """Also the trace ``reason`` (cilium.md §3.6): 0 new, 1 established, 2 reply, 3 related."""

    NEW = 0
    ESTABLISHED = 1
    REPLY = 2
    RELATED = 3

    @property
    def text(self) -> str:
        return self.name.lower()


def render_tuple(t: CTTuple) -> str:
    """As ``cilium-dbg bpf ct list global`` prints a tuple: ``TCP OUT a:p -> b:q``."""
    proto = {6: "TCP", 17: "UDP", 132: "SCTP", 1: "ICMP"}.get(t.nexthdr, str(t.nexthdr))
    direction = {TUPLE_F_OUT: "OUT", TUPLE_F_IN: "IN", TUPLE_F_SERVICE: "SVC"}.get(
        t.flags, str(t.flags)
    )
    return f"{proto} {direction} {t.daddr}:{t.sport} -> {t.saddr}:{t.dport}"


@dataclass(frozen=True, slots=True)
class CTEntry:
    lifetime: float  # expiry, seconds of the monotonic clock
    backend_id: int = 0
    rev_nat_index: int = 0
    packets: int = 0
    bytes: int = 0
    flags: int = 0
    tx_flags_seen: int = 0
    rx_flags_seen: int = 0
    src_sec_id: int = 0
    ifindex: int = 0
    # The node a connection came from through the overlay (CT_F_FROM_TUNNEL): replies
    # go back to it through the tunnel whatever the ipcache says (NodePort SNAT).
    tunnel_peer: IPv4Address | None = None


def _ports(p: Packet) -> tuple[int, int]:
    """(sport, dport) as the CT sees them: ICMP echo puts the identifier in the
    source port of requests and the destination port of replies (so the two match)."""
    if p.proto == IPProto.ICMP:
        if p.l4.icmp_type == 8:
            return p.l4.icmp_id, 0
        return 0, p.l4.icmp_id
    return p.sport, p.dport


def forward_tuple(p: Packet, flags: int) -> CTTuple:
    sport, dport = _ports(p)
    return CTTuple(p.src, p.dst, dport, sport, int(p.proto), flags)


def reverse_tuple(p: Packet, flags: int) -> CTTuple:
    """The key of the entry that ``p`` would answer."""
    sport, dport = _ports(p)
    return CTTuple(p.dst, p.src, sport, dport, int(p.proto), flags)


def service_tuple(p: Packet) -> CTTuple:
    """The CT_SERVICE key: client address/port and the frontend (VIP) address/port."""
    return forward_tuple(p, TUPLE_F_SERVICE)


def _lifetime(p: Packet, entry_flags: int) -> int:
    if p.proto != IPProto.TCP:
        return CT_LIFETIME_ANY
    if p.l4.flags & (TCPFlag.FIN | TCPFlag.RST):
        return CT_LIFETIME_TCP_FIN
    if entry_flags & CT_F_SEEN_NON_SYN:
        return CT_LIFETIME_TCP
    return CT_LIFETIME_TCP_SYN


@dataclass(frozen=True, slots=True)
class CTResult:
    status: CTStatus
    tuple: CTTuple  # the key that matched (or would be created on NEW)
    entry: CTEntry | None


class CTTable:
    """One node's conntrack table. Mutable (it is a map); entries are values."""

    def __init__(self, clock: Clock, name: str = "cilium_ct4_global") -> None:
        self.clock = clock
        self.name = name
        self._entries: dict[CTTuple, CTEntry] = {}

    def __len__(self) -> int:
        return sum(1 for _ in self.items())

    def items(self) -> list[tuple[CTTuple, CTEntry]]:
        now = self.clock.monotonic()
        return sorted((k, v) for k, v in self._entries.items() if v.lifetime > now)

    def get(self, key: CTTuple) -> CTEntry | None:
        entry = self._entries.get(key)
        if entry is None or entry.lifetime <= self.clock.monotonic():
            return None
        return entry

    def lookup(self, p: Packet, direction: CTDir) -> CTResult:
        """Reply first, then established, else new (see the module docstring).

        A hit refreshes the entry: counters, seen flags and lifetime, as ``ct_lookup4``
        does. Seeing a packet other than a bare SYN marks the TCP entry established."""
        own = TUPLE_F_IN if direction == CTDir.INGRESS else TUPLE_F_OUT
        other = TUPLE_F_OUT if own == TUPLE_F_IN else TUPLE_F_IN
        rkey = reverse_tuple(p, other)
        entry = self.get(rkey)
        if entry is not None:
            self._touch(rkey, entry, p, reply=True)
            return CTResult(CTStatus.REPLY, rkey, self._entries[rkey])
        fkey = forward_tuple(p, own)
        entry = self.get(fkey)
        if entry is not None:
            self._touch(fkey, entry, p, reply=False)
            return CTResult(CTStatus.ESTABLISHED, fkey, self._entries[fkey])
        return CTResult(CTStatus.NEW, fkey, None)

    def create(
        self,
        key: CTTuple,
        p: Packet,
        *,
        rev_nat_index: int = 0,
        backend_id: int = 0,
        src_sec_id: int = 0,
        flags: int = 0,
        ifindex: int = 0,
        tunnel_peer: IPv4Address | None = None,
    ) -> CTEntry:
        entry = CTEntry(
            lifetime=self.clock.monotonic() + _lifetime(p, flags),
            backend_id=backend_id,
            rev_nat_index=rev_nat_index,
            packets=1,
            bytes=p.length,
            flags=flags,
            tx_flags_seen=p.l4.flags if p.proto == IPProto.TCP else 0,
            src_sec_id=src_sec_id,
            ifindex=ifindex,
            tunnel_peer=tunnel_peer,
        )
        self._entries[key] = entry
        return entry

    def lookup_service(self, p: Packet) -> CTEntry | None:
        """The CT_SERVICE entry of this client and frontend, if alive (refreshed)."""
        key = service_tuple(p)
        entry = self.get(key)
        if entry is not None:
            self._touch(key, entry, p, reply=False)
        return self._entries.get(key) if entry is not None else None

    def create_service(
        self, p: Packet, backend_id: int, rev_nat_index: int, src_sec_id: int = 0
    ) -> tuple[CTTuple, CTEntry]:
        key = service_tuple(p)
        lifetime = CT_SERVICE_LIFETIME_TCP if p.proto == IPProto.TCP else CT_SERVICE_LIFETIME_ANY
        entry = CTEntry(
            lifetime=self.clock.monotonic() + lifetime,
            backend_id=backend_id,
            rev_nat_index=rev_nat_index,
            packets=1,
            bytes=p.length,
            src_sec_id=src_sec_id,
        )
        self._entries[key] = entry
        return key, entry

    def gc(self) -> int:
        """Remove expired entries; returns how many went."""
        now = self.clock.monotonic()
        dead = [k for k, v in self._entries.items() if v.lifetime <= now]
        for k in dead:
            del self._entries[k]
        return len(dead)

    def _touch(self, key: CTTuple, entry: CTEntry, p: Packet, reply: bool) -> None:
        tcp_flags = p.l4.flags if p.proto == IPProto.TCP else 0
        flags = entry.flags
        if p.proto == IPProto.TCP and (reply or tcp_flags & ~int(TCPFlag.SYN)):
            flags |= CT_F_SEEN_NON_SYN
        self._entries[key] = replace(
            entry,
            packets=entry.packets + 1,
            bytes=entry.bytes + p.length,
            flags=flags,
            tx_flags_seen=entry.tx_flags_seen | (0 if reply else tcp_flags),
            rx_flags_seen=entry.rx_flags_seen | (tcp_flags if reply else 0),
            lifetime=self.clock.monotonic() + _lifetime(p, flags),
        )
