"""``cil_from_container``: the program on the host side of a pod's veth (bpf_lxc.c).

Every packet a pod sends enters here (tc ingress of ``lxc…``). The stages, in the order
of cilium.md §4:

1. validate the ethertype; ARP for the gateway (the ``cilium_host`` address) is
   answered right here with the lxc MAC (Cilium's ARP responder); other ARP goes to the
   stack. Emit trace *from-endpoint*.
2. service translation (``lb``): frontend hit -> backend choice -> DNAT, CT_SERVICE.
3. CT_EGRESS lookup.
4. ipcache lookup of the destination identity (``world`` when nothing matches).
5. on CT_NEW and CT_ESTABLISHED: egress policy of this endpoint (``policy.enforce``; only
   replies skip it, as in Cilium); on CT_NEW: create the CT entry.
   A reply with a rev-NAT index gets its reverse NAT here, as ``bpf_lxc.c`` does on
   CT_REPLY: of a NodePort connection (``CT_F_NODE_PORT``, back to the frontend the
   client used), or of the node's own connection to a service whose backend is this
   endpoint (``host.host_service_reply``; decision 0009).
6. deliver: a local endpoint (``cilium_lxc`` hit) through its policy program and a
   redirect; a local host address -> to-host; a remote pod with a tunnel endpoint ->
   ``overlay.to_overlay``; anything else -> to-stack, out of eth0 via the fabric.

Inputs: a ``Walk``, the node name, the sending endpoint and packet. Output: ``Outcome``.
No I/O.

Imports ``desired``, ``datapath.api``/``packet``/``conntrack`` and sibling ``sim``
modules; no I/O. Must not import ``datapath.linux``, sockets or subprocess (an import
contract: the model never touches the kernel).
"""

from __future__ import annotations

from ciliate.datapath.api import DropReason, ObsPoint, Verdict
from ciliate.datapath.conntrack import CT_F_FROM_TUNNEL, CT_F_NODE_PORT, CTDir, CTStatus
from ciliate.datapath.packet import ETH_P_ARP, ETH_P_IP, ARPOp, Packet, build_arp_reply
from ciliate.datapath.sim import lb
from ciliate.datapath.sim.host import host_service_reply
from ciliate.datapath.sim.overlay import to_overlay
from ciliate.datapath.sim.policy import ct_record, deliver_local, enforce
from ciliate.datapath.sim.walk import Outcome, Walk, Where
from ciliate.desired import ENDPOINT_F_HOST, EndpointState, ReservedIdentity

PROGRAM = "cil_from_container"


def answer_arp(w: Walk, node: str, ep: EndpointState, p: Packet) -> Outcome:
    assert p.arp is not None
    gw = w.topo.nodes[node].state.cilium_internal_ip
    iface = ep.lxc_name
    if p.arp.op == ARPOp.REQUEST and p.arp.target_ip == gw:
        reply = build_arp_reply(p, ep.lxc_mac)
        w.step(
            node,
            iface,
            PROGRAM,
            "arp-reply",
            f"ARP who-has {gw} (the gateway, cilium_host) tell {p.arp.sender_ip}: "
            f"answered by {iface} with its own MAC {ep.lxc_mac}",
            reply,
            verdict=Verdict.FORWARDED,
            ifindex=ep.lxc_ifindex,
        )
        return Outcome(Where.ENDPOINT, node, reply, ep)
    w.step(
        node,
        iface,
        PROGRAM,
        "to-stack",
        f"ARP for {p.arp.target_ip}: not the gateway, passed to the stack (no answer)",
        p,
    )
    return Outcome(Where.HOST, node, p)


def from_container(w: Walk, node: str, ep: EndpointState, p: Packet) -> Outcome:
    iface = ep.lxc_name
    ns = w.topo.nodes[node].state
    if p.ethertype == ETH_P_ARP:
        return answer_arp(w, node, ep, p)
    if p.ethertype != ETH_P_IP:
        return w.drop(
            node,
            iface,
            PROGRAM,
            p,
            DropReason.UNSUPPORTED_L3_PROTOCOL,
            "",
            ep.identity,
            0,
            file="bpf_lxc.c",
            egress=True,
        )
    if p.src != ep.ip:
        return w.drop(
            node,
            iface,
            PROGRAM,
            p,
            DropReason.INVALID_SOURCE_IP,
            f"(endpoint {ep.id} owns {ep.ip})",
            ep.identity,
            0,
            file="bpf_lxc.c",
            egress=True,
        )
    w.step(
        node,
        iface,
        PROGRAM,
        "from-endpoint",
        f"from-endpoint {ep.id} ({ep.pod or 'health'}) {ep.ip}, identity {ep.identity}",
        p,
        ifindex=ep.lxc_ifindex,
        pod=ep.pod or "health",
    )
    w.trace_event(
        node, ObsPoint.FROM_ENDPOINT, p, ep.identity, 0, iface, ep.lxc_ifindex, None, True
    )
    ct = w.ct_of(node)

    # 2. service translation
    rev_nat_index = 0
    fe, lk = lb.lookup_service(ns, p.dst, p.dport, int(p.proto), internal=True)
    if fe is not None:
        svc_entry = ct.lookup_service(p)
        sel = w.select_backend(node, fe, p, svc_entry.backend_id if svc_entry else 0)
        if sel.backend is None:
            return w.drop(
                node,
                iface,
                PROGRAM,
                p,
                DropReason.SERVICE_BACKEND_NOT_FOUND,
                f"for service {p.dst}:{p.dport}",
                ep.identity,
                0,
                file="bpf_lxc.c",
                egress=True,
                lookups=(lk, *sel.lookups),
            )
        if svc_entry is None:
            ct.create_service(p, sel.backend_id, fe.service.rev_nat_index, ep.identity)
        before = p
        p = p.with_dst(sel.backend.address, sel.backend.port)
        rev_nat_index = fe.service.rev_nat_index
        w.backend = f"{sel.backend.address}:{sel.backend.port}"
        w.step(
            node,
            iface,
            PROGRAM,
            "service",
            f"service {before.dst}:{before.dport} -> backend {sel.backend_id} {w.backend} ({sel.how}); DNAT",
            p,
            (lk, *sel.lookups),
            frontend=f"{before.dst}:{before.dport}",
        )
    # 3. conntrack
    res = ct.lookup(p, CTDir.EGRESS)
    ct_lk = ct_record(w, p, res)
    # 4. destination identity
    dst_id, tunnel, ipc_lk = w.ipcache(node, p.dst)
    w.step(
        node,
        iface,
        PROGRAM,
        "conntrack",
        f"CT_EGRESS: {res.status.text}; destination {p.dst} has identity {dst_id}",
        p,
        (ct_lk, ipc_lk),
    )
    # 5. policy / reply handling
    if res.status in (CTStatus.NEW, CTStatus.ESTABLISHED):
        # Cilium enforces policy on every packet but replies: a deny added while a flow
        # is established takes effect on its next packet
        po = enforce(w, node, ep, p, dst_id, egress=True, program=PROGRAM, interface=iface)
        if not po.allowed:
            assert po.dropped is not None
            return po.dropped
    if res.status == CTStatus.NEW:
        ct.create(
            res.tuple,
            p,
            rev_nat_index=rev_nat_index,
            src_sec_id=ep.identity,
            ifindex=ep.lxc_ifindex,
        )
    elif (
        res.status == CTStatus.REPLY and res.entry is not None and res.entry.flags & CT_F_NODE_PORT
    ):
        _, rlk = lb.rev_nat(ns, res.entry.rev_nat_index)
        orig = w.nodeport_orig(node, p)
        if orig is not None:
            before = p
            p = p.with_src(orig[0], orig[1])
            w.step(
                node,
                iface,
                PROGRAM,
                "rev-nat",
                f"NodePort reply: reverse NAT source {before.src}:{before.sport} -> {p.src}:{p.sport}",
                p,
                (rlk,),
            )
    elif res.status == CTStatus.REPLY and res.entry is not None and res.entry.rev_nat_index:
        # The entry cil_from_host made for the node's own service connection: reversed
        # here, before to-host. A pod client's reply is reversed in the client's
        # handle_policy (policy.deliver_local) instead: host_service_reply leaves a
        # packet that no host-side translation recorded (w.nodeport) alone.
        p = host_service_reply(w, node, p, iface, PROGRAM)
    # 6. deliver
    info, lxc_lk = w.lxc_lookup(node, p.dst)
    if info is not None and not info.flags & ENDPOINT_F_HOST:
        dst_ep = w.topo.nodes[node].by_ip[p.dst]
        w.step(
            node,
            iface,
            PROGRAM,
            "redirect",
            f"cilium_lxc hit: {p.dst} is local endpoint {info.lxc_id} ({dst_ep.pod or 'health'}); tail call cilium_call_policy[{info.lxc_id}], redirect to {dst_ep.lxc_name}",
            p,
            (lxc_lk,),
            pod=dst_ep.pod or "health",
        )
        return deliver_local(
            w, node, dst_ep, p, ep.identity, interface=dst_ep.lxc_name, program=PROGRAM
        )
    if info is not None:
        w.step(
            node,
            "cilium_host",
            PROGRAM,
            "to-host",
            f"{p.dst} is an address of this node: to-host via cilium_host",
            p,
            (lxc_lk,),
            verdict=Verdict.FORWARDED,
        )
        w.trace_event(
            node,
            ObsPoint.TO_HOST,
            p,
            ep.identity,
            ReservedIdentity.HOST,
            "cilium_host",
            0,
            res.status,
            True,
        )
        return Outcome(Where.HOST, node, p)
    why = f"cilium_ipcache: {p.dst} is behind tunnel endpoint {tunnel}"
    source = "cilium_ipcache"
    if (
        res.status == CTStatus.REPLY
        and res.entry is not None
        and res.entry.flags & CT_F_FROM_TUNNEL
        and res.entry.tunnel_peer is not None
        and res.entry.tunnel_peer != tunnel
    ):
        # The connection came through the overlay: answer through it, to the node it
        # came from, whatever the ipcache says about the (SNATed) destination.
        tunnel = res.entry.tunnel_peer
        why = f"the connection came through the overlay (tunnel endpoint {tunnel})"
        source = "conntrack"
    if tunnel is not None:
        w.step(
            node,
            iface,
            PROGRAM,
            "tunnel",
            f"cilium_lxc miss; {why}",
            p,
            (lxc_lk,),
            tunnel_endpoint=str(tunnel),
            tunnel_source=source,
        )
        return to_overlay(w, node, p, tunnel, ep.identity, res.status)
    w.step(
        node,
        iface,
        PROGRAM,
        "to-stack",
        f"no local endpoint or tunnel for {p.dst}: to-stack (routed out of eth0)"
        + (
            f"; leaving the cluster, {p.src} is masqueraded to the node's {ns.internal_ip}"
            if dst_id == ReservedIdentity.WORLD and res.status != CTStatus.REPLY
            else ""
        ),
        p,
        (lxc_lk,),
        verdict=Verdict.FORWARDED,
    )
    w.trace_event(
        node, ObsPoint.TO_STACK, p, ep.identity, dst_id, iface, ep.lxc_ifindex, res.status, True
    )
    return w.transmit(node, p)
