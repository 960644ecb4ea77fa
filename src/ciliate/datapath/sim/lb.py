"""Service translation as ``bpf/lib/lb.h`` does it: frontend lookup, backend choice, revNAT.

Stages (cilium.md §4 step 2, §7):

1. ``lookup_service``: the master entry ``lb4_key{dst, dport, slot 0, proto, scope}``;
   a key with ``proto`` 0 (ANY) is tried after the exact protocol, as older agents
   write proto 0. ``0.0.0.0:nodePort`` (the NodePort surrogate) matches any local
   address when asked for (``cil_from_netdev``).
2. ``select_backend``, in this order:
   1. an existing ``CT_SERVICE`` entry of this client and frontend keeps its backend
      (established connections never move);
   2. session affinity (flag ``SVC_FLAG_AFFINITY``): the client IP's last backend while
      it is younger than the timeout (low 24 bits of the master's ``backend_id``);
   3. Maglev (algorithm byte 2 and a table for the ``rev_nat_index``):
      ``table[hash(5-tuple) % M]``;
   4. random: ``slot = rng.randrange(count) + 1``, the model of ``prandom() % count + 1``.
   No backend (count 0, a missing slot or backend) -> drop 158.
3. ``rev_nat``: a reply whose CT entry carries a ``rev_nat_index`` gets its source
   rewritten to the frontend address and port of ``cilium_lb4_reverse_nat``.

The hash is CRC-32 over the packed 5-tuple (Cilium uses jhash with the Maglev seed; the
model only needs a stable, well-spread function of the tuple). Inputs: a node's
``NodeState`` and a packet. Outputs: lookups and translations as data. No I/O.

Imports ``desired``, ``datapath.api``/``packet``/``conntrack`` and sibling ``sim``
modules; no I/O. Must not import ``datapath.linux``, sockets or subprocess (an import
contract: the model never touches the kernel).
"""

from __future__ import annotations

import struct
from collections.abc import MutableMapping
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Protocol

from ciliate.datapath.api import MapLookup
from ciliate.datapath.packet import Packet
from ciliate.datapath.sim import keys
from ciliate.desired import (
    LB_ALG_MAGLEV,
    LB_SCOPE_EXT,
    LB_SCOPE_INT,
    SVC_FLAG2_TWO_SCOPES,
    SVC_FLAG_AFFINITY,
    LB4Backend,
    LB4Key,
    LB4Service,
    NodeState,
)

ANY_ADDRESS = IPv4Address(0)


class RNG(Protocol):
    """The injected randomness (``random.Random`` fits)."""

    def randrange(self, start: int, stop: int | None = ..., step: int = ...) -> int: ...


@dataclass(frozen=True, slots=True)
class Frontend:
    key: LB4Key
    service: LB4Service

    @property
    def algorithm(self) -> int:
        return self.service.backend_id >> 24

    @property
    def affinity_timeout(self) -> int:
        return self.service.backend_id & 0xFFFFFF


@dataclass(frozen=True, slots=True)
class Selection:
    backend_id: int
    backend: LB4Backend | None
    how: str  # conntrack | affinity | maglev | random | none
    lookups: tuple[MapLookup, ...]


# (rev_nat_index, client ip) -> (backend_id, last_used): the affinity map of one node.
AffinityMap = MutableMapping[tuple[int, IPv4Address], tuple[int, float]]


def _svc_text(svc: LB4Service) -> str:
    return (
        f"hit: count {svc.count} rev_nat_index {svc.rev_nat_index} "
        f"flags 0x{svc.flags:02x} alg {'maglev' if svc.backend_id >> 24 == LB_ALG_MAGLEV else 'random'}"
    )


def lookup_service(
    node: NodeState, ip: IPv4Address, dport: int, proto: int, internal: bool = False
) -> tuple[Frontend | None, MapLookup]:
    """The master entry for ``ip:dport`` (exact protocol first, then ANY).

    ``lb4_lookup_service``'s scope switch: the lookup is made in the external scope;
    when the hit has ``SVC_FLAG2_TWO_SCOPES`` and the traffic is east-west
    (``internal``: from a pod or the host), the internal-scope twin is used instead,
    whose backends follow internalTrafficPolicy."""
    first = LB4Key(ip, dport, 0, proto, LB_SCOPE_EXT)
    for key in (first, LB4Key(ip, dport, 0, 0, LB_SCOPE_EXT)):
        svc = node.lb4_services.get(key)
        if svc is not None:
            if internal and svc.flags2 & SVC_FLAG2_TWO_SCOPES:
                ikey = LB4Key(ip, dport, 0, key.proto, LB_SCOPE_INT)
                isvc = node.lb4_services.get(ikey)
                if isvc is not None:
                    key, svc = ikey, isvc
            return Frontend(key, svc), MapLookup(
                "cilium_lb4_services_v2", keys.hexbytes(keys.build_lb4_key(key)), _svc_text(svc)
            )
    return None, MapLookup(
        "cilium_lb4_services_v2", keys.hexbytes(keys.build_lb4_key(first)), "miss", hit=False
    )


_U32 = 0xFFFFFFFF


def _le(value: int, size: int) -> int:
    """A network-order field read as a host (little-endian) integer, as the C code does."""
    return int.from_bytes(value.to_bytes(size, "big"), "little")


def tuple_hash(p: Packet) -> int:
    """``lb4_hash`` of bpf/lib/lb.h over the service CT tuple, bit for bit, so that the
    model and the kernel pick the same Maglev slot for the same connection.

    The tuple is built as ``ct_build_tuple`` builds it: ``saddr`` holds the packet's
    destination (the frontend), ``daddr`` its source; ports keep their own direction.
    """
    saddr = _le(int(p.dst), 4)
    daddr = _le(int(p.src), 4)
    sport = _le(p.sport, 2)
    dport = _le(p.dport, 2)
    h = (saddr ^ (daddr * 2654435761)) & _U32
    h ^= (((sport << 16) | dport) * 2246822519) & _U32
    h ^= int(p.proto) & 0xFF
    h ^= h >> 15
    h = (h * 2654435761) & _U32
    return h ^ (h >> 13)


def select_backend(
    node: NodeState,
    fe: Frontend,
    p: Packet,
    *,
    ct_backend: int,
    affinity: AffinityMap,
    now: float,
    rng: RNG,
) -> Selection:
    lookups: list[MapLookup] = []
    svc = fe.service
    rev = svc.rev_nat_index

    def backend_of(bid: int, how: str) -> Selection:
        be = node.lb4_backends.get(bid)
        lookups.append(
            MapLookup(
                "cilium_lb4_backends_v3",
                keys.hexbytes(keys.build_backend_key(bid)),
                f"hit: {be.address}:{be.port}" if be else "miss",
                hit=be is not None,
            )
        )
        return Selection(bid, be, how if be else "none", tuple(lookups))

    if ct_backend and ct_backend in node.lb4_backends:
        return backend_of(ct_backend, "conntrack")
    if svc.flags & SVC_FLAG_AFFINITY:
        hit = affinity.get((rev, p.src))
        if hit is not None and now - hit[1] <= fe.affinity_timeout and hit[0] in node.lb4_backends:
            lookups.append(
                MapLookup("cilium_lb4_affinity", f"{p.src} rev_nat {rev}", f"hit: backend {hit[0]}")
            )
            affinity[(rev, p.src)] = (hit[0], now)
            return backend_of(hit[0], "affinity")
        lookups.append(
            MapLookup("cilium_lb4_affinity", f"{p.src} rev_nat {rev}", "miss", hit=False)
        )
    if svc.count == 0:
        return Selection(0, None, "none", tuple(lookups))
    table = node.maglev.get(rev)
    if fe.algorithm == LB_ALG_MAGLEV and table:
        idx = tuple_hash(p) % len(table)
        bid = table[idx]
        lookups.append(
            MapLookup(
                "cilium_lb4_maglev",
                keys.hexbytes(struct.pack("<H", rev)),
                f"slot {idx} -> backend {bid}",
            )
        )
        how = "maglev"
    else:
        slot = rng.randrange(svc.count) + 1
        skey = LB4Key(fe.key.address, fe.key.dport, slot, fe.key.proto, fe.key.scope)
        entry = node.lb4_services.get(skey)
        lookups.append(
            MapLookup(
                "cilium_lb4_services_v2",
                keys.hexbytes(keys.build_lb4_key(skey)),
                f"slot {slot}: backend {entry.backend_id}" if entry else "miss",
                hit=entry is not None,
            )
        )
        if entry is None:
            return Selection(0, None, "none", tuple(lookups))
        bid = entry.backend_id
        how = "random"
    sel = backend_of(bid, how)
    if sel.backend is not None and svc.flags & SVC_FLAG_AFFINITY:
        affinity[(rev, p.src)] = (bid, now)
    return sel


def rev_nat(node: NodeState, index: int) -> tuple[tuple[IPv4Address, int] | None, MapLookup]:
    entry = node.lb4_reverse_nat.get(index)
    key = keys.hexbytes(keys.build_rev_nat_key(index))
    if entry is None:
        return None, MapLookup("cilium_lb4_reverse_nat", key, "miss", hit=False)
    return (entry.address, entry.port), MapLookup(
        "cilium_lb4_reverse_nat", key, f"hit: {entry.address}:{entry.port}"
    )
