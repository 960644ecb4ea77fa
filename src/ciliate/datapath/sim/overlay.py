"""The VXLAN overlay programs on ``cilium_vxlan`` (bpf_overlay.c): ``cil_to_overlay``
(egress: encapsulate) and ``cil_from_overlay`` (ingress: decapsulate and deliver).

Encapsulation (cilium.md §4): outer IPv4 from this node's InternalIP to the tunnel
endpoint found in the ipcache, UDP destination port 8472, and the VNI carries the
*source security identity*, so the receiving node knows who sent the packet without an
ipcache lookup. On the far side a VNI of ``host`` (1) becomes ``remote-node`` (6).

Inputs: a ``Walk``, node names, packets. Outputs: ``Outcome``s. No I/O.

Imports ``desired``, ``datapath.api``/``packet``/``conntrack`` and sibling ``sim``
modules; no I/O. Must not import ``datapath.linux``, sockets or subprocess (an import
contract: the model never touches the kernel).
"""

from __future__ import annotations

from ipaddress import IPv4Address

from ciliate.datapath.api import DropReason, ObsPoint, Verdict
from ciliate.datapath.conntrack import CTStatus
from ciliate.datapath.packet import VXLAN, Packet
from ciliate.datapath.sim.lb import tuple_hash
from ciliate.datapath.sim.policy import deliver_local
from ciliate.datapath.sim.walk import Outcome, Walk
from ciliate.desired import ENDPOINT_F_HOST, ReservedIdentity


def _dev_mac(w: Walk, node: str, name: str) -> str:
    for d in w.topo.nodes[node].state.devices:
        if d.name == name:
            return d.mac
    return "00:00:00:00:00:00"


def to_overlay(
    w: Walk, node: str, p: Packet, tunnel: IPv4Address, src_identity: int, state: CTStatus | None
) -> Outcome:
    ns = w.topo.nodes[node].state
    peer = w.topo.node_by_ip.get(tunnel)
    outer = VXLAN(
        outer_src=ns.internal_ip,
        outer_dst=tunnel,
        vni=src_identity,
        # Linux picks the outer source port from the inner flow hash (RFC 7348 §5).
        sport=32768 + tuple_hash(p) % 28232,
        outer_src_mac=_dev_mac(w, node, "eth0"),
        outer_dst_mac=_dev_mac(w, peer, "eth0") if peer else "00:00:00:00:00:00",
    )
    q = p.encap(outer)
    encap = f"VXLAN {outer.outer_src} -> {outer.outer_dst} udp/{outer.dport} vni {outer.vni}"
    w.step(
        node,
        "cilium_vxlan",
        "cil_to_overlay",
        "encap",
        f"to-overlay: encapsulate for {tunnel} ({peer or 'unknown node'}): outer {outer.outer_src} -> "
        f"{outer.outer_dst} udp {outer.sport} -> {outer.dport}, VNI {outer.vni} (source identity)",
        q,
        verdict=Verdict.FORWARDED,
        encap=encap,
    )
    w.trace_event(node, ObsPoint.TO_OVERLAY, q, src_identity, 0, "cilium_vxlan", 0, state, True)
    return w.transmit(node, q)


def from_overlay(w: Walk, node: str, p: Packet) -> Outcome:
    assert p.vxlan is not None
    outer = p.vxlan
    identity = outer.vni
    if identity == ReservedIdentity.HOST:
        identity = int(ReservedIdentity.REMOTE_NODE)
    q = p.decap()
    w.step(
        node,
        "cilium_vxlan",
        "cil_from_overlay",
        "decap",
        f"from-overlay: VXLAN from {outer.outer_src}, VNI {outer.vni} -> source identity {identity}; decapsulated",
        q,
        encap=f"VXLAN {outer.outer_src} -> {outer.outer_dst} udp/{outer.dport} vni {outer.vni}",
    )
    w.trace_event(node, ObsPoint.FROM_OVERLAY, q, identity, 0, "cilium_vxlan", 0, None, False)
    info, lk = w.lxc_lookup(node, q.dst)
    if info is not None and not info.flags & ENDPOINT_F_HOST:
        ep = w.topo.nodes[node].by_ip[q.dst]
        w.step(
            node,
            "cilium_vxlan",
            "cil_from_overlay",
            "redirect",
            f"cilium_lxc hit: {q.dst} is local endpoint {info.lxc_id} ({ep.pod or 'health'}); tail call its policy program",
            q,
            (lk,),
            pod=ep.pod or "health",
        )
        return deliver_local(
            w,
            node,
            ep,
            q,
            identity,
            interface=ep.lxc_name,
            program="cil_from_overlay",
            tunnel_peer=outer.outer_src,
        )
    if info is not None or q.dst in w.topo.nodes[node].local_ips:
        # Imported here: host's programs hand packets to the overlay and back.
        from ciliate.datapath.sim.host import snat_reply, to_host

        back = snat_reply(w, node, q, "cilium_vxlan", "cil_from_overlay")
        if back is not None:
            return back

        w.step(
            node,
            "cilium_vxlan",
            "cil_from_overlay",
            "to-host",
            f"{q.dst} is an address of this node",
            q,
            (lk,),
        )
        return to_host(w, node, q, identity)
    return w.drop(
        node,
        "cilium_vxlan",
        "cil_from_overlay",
        q,
        DropReason.UNKNOWN_L3_TARGET_ADDRESS,
        f"({q.dst} is not on this node)",
        identity,
        0,
        file="bpf_overlay.c",
        egress=False,
        lookups=(lk,),
    )
