"""The host-side programs of a node (bpf_host.c): ``cil_from_netdev`` on eth0 ingress,
``cil_to_host`` on cilium_host ingress and ``cil_from_host`` on cilium_host egress.

* ``from_netdev``: traffic entering the node from the node network. Source identity
  from the ipcache (``world`` for outside clients). North-south service translation:
  the frontend ``dst:dport``, or the NodePort surrogate ``0.0.0.0:dport`` when ``dst``
  is an address of this node. A ClusterIP (non-routable) frontend reached from outside
  drops with 174. A local backend is delivered through its policy program; a remote
  backend is SNATed to this node's InternalIP (``bpf-lb-mode=snat``) and tunnelled
  with the client's identity (world) as VNI.
  Replies to such a SNAT come back here and are reversed. Traffic for a local pod goes
  through its policy program; traffic for this node goes to the host stack.
* ``to_host``: the host stack receives the packet (``to-host``); a reply from the remote
  backend of the host's own service connection is reverse-NATed first
  (``host_service_reply``, which ``lxc.from_container`` also runs for a local backend).
* ``from_host``: the host stack sends to a pod (routes via cilium_host): service
  translation (the socket-LB of the host), then local delivery (allow-localhost) or the
  tunnel (VNI = host, seen as remote-node on the far side).

Inputs: a ``Walk``, node names, packets. Outputs: ``Outcome``s. No I/O.

Imports ``desired``, ``datapath.api``/``packet``/``conntrack`` and sibling ``sim``
modules; no I/O. Must not import ``datapath.linux``, sockets or subprocess (an import
contract: the model never touches the kernel).
"""

from __future__ import annotations

from ciliate.datapath.api import DropReason, ObsPoint, Verdict
from ciliate.datapath.conntrack import CT_F_NODE_PORT
from ciliate.datapath.packet import Packet
from ciliate.datapath.sim import lb
from ciliate.datapath.sim.overlay import to_overlay
from ciliate.datapath.sim.policy import deliver_local
from ciliate.datapath.sim.walk import Outcome, Walk, Where
from ciliate.desired import (
    ENDPOINT_F_HOST,
    SVC_FLAG_EXTERNAL_IP,
    SVC_FLAG_LOADBALANCER,
    SVC_FLAG_NODEPORT,
    SVC_FLAG_ROUTABLE,
    ReservedIdentity,
)

_NORTH_SOUTH = SVC_FLAG_NODEPORT | SVC_FLAG_EXTERNAL_IP | SVC_FLAG_LOADBALANCER | SVC_FLAG_ROUTABLE


def to_host(w: Walk, node: str, p: Packet, src_identity: int) -> Outcome:
    p = host_service_reply(w, node, p, "cilium_host", "cil_to_host")
    w.step(
        node,
        "cilium_host",
        "cil_to_host",
        "to-host",
        f"to-host: delivered to the node's stack ({p.dst})",
        p,
        verdict=Verdict.FORWARDED,
    )
    w.trace_event(
        node,
        ObsPoint.TO_HOST,
        p,
        src_identity,
        ReservedIdentity.HOST,
        "cilium_host",
        0,
        None,
        False,
    )
    return Outcome(Where.HOST, node, p)


def host_service_reply(w: Walk, node: str, p: Packet, interface: str, program: str) -> Packet:
    """The reply to a connection the host's own service translation (``from_host``)
    made, reverse-NATed to the frontend before the host's socket sees it (the conntrack
    entry ``host_forward`` made carries the rev-NAT index; decision 0009), with a
    ``rev-nat`` step on ``interface``/``program``: ``cil_to_host`` on cilium_host for a
    remote backend's reply (tunnelled back to this node), ``cil_from_container`` on the
    backend's lxc for a local one. Any other packet: unchanged, no step."""
    orig = w.nodeport_orig(node, p)
    if orig is None:
        return p
    ns = w.topo.nodes[node].state
    fe, _ = lb.lookup_service(ns, orig[0], orig[1], int(p.proto), internal=True)
    if fe is None:
        return p
    index = fe.service.rev_nat_index
    back, lk = lb.rev_nat(ns, index)
    src = back if back is not None else orig
    q = p.with_src(src[0], src[1])
    w.step(
        node,
        interface,
        program,
        "rev-nat",
        f"reverse NAT: source {p.src}:{p.sport} -> {q.src}:{q.sport} (rev_nat_index {index})",
        q,
        (lk,),
    )
    return q


def snat_reply(w: Walk, node: str, p: Packet, interface: str, program: str) -> Outcome | None:
    """A reply to a NodePort connection this node SNATed: reverse both translations and
    send it back to the client out of eth0. None when ``p`` is no such reply."""
    back = w.snat.get(node, {}).get((p.src, p.sport, p.dst, p.dport, int(p.proto)))
    if back is None:
        return None
    client_ip, client_port, fe_ip, fe_port = back
    q = p.with_src(fe_ip, fe_port).with_dst(client_ip, client_port)
    w.step(
        node,
        interface,
        program,
        "rev-nat",
        f"NodePort reply: reverse SNAT+DNAT {p.src}:{p.sport} -> {q.src}:{q.sport}, "
        f"to {q.dst}:{q.dport}",
        q,
    )
    return w.transmit(node, q)


def _snat_port(p: Packet) -> int:
    return p.sport  # the model keeps the client's port when it is free (it always is)


def from_netdev(w: Walk, node: str, p: Packet) -> Outcome:
    idx = w.topo.nodes[node]
    ns = idx.state
    prog = "cil_from_netdev"
    src_id, _, ipc_lk = w.ipcache(node, p.src)
    w.step(
        node,
        "eth0",
        prog,
        "from-network",
        f"from-network: {p.src} arrives on eth0, source identity {src_id}",
        p,
        (ipc_lk,),
    )
    w.trace_event(node, ObsPoint.FROM_NETWORK, p, src_id, 0, "eth0", 0, None, False)
    back = snat_reply(w, node, p, "eth0", prog)
    if back is not None:
        return back
    fe, lk = lb.lookup_service(ns, p.dst, p.dport, int(p.proto))
    if fe is None and p.dst in idx.local_ips:
        fe2, lk2 = lb.lookup_service(ns, lb.ANY_ADDRESS, p.dport, int(p.proto))
        if fe2 is not None and fe2.service.flags & SVC_FLAG_NODEPORT:
            fe, lk = fe2, lk2
    if fe is not None:
        if not fe.service.flags & _NORTH_SOUTH:
            return w.drop(
                node,
                "eth0",
                prog,
                p,
                DropReason.IS_A_CLUSTERIP,
                f"({p.dst}:{p.dport} is a ClusterIP)",
                src_id,
                0,
                file="bpf_host.c",
                egress=False,
                lookups=(lk,),
            )
        sel = w.select_backend(node, fe, p)
        if sel.backend is None:
            return w.drop(
                node,
                "eth0",
                prog,
                p,
                DropReason.SERVICE_BACKEND_NOT_FOUND,
                f"for {p.dst}:{p.dport}",
                src_id,
                0,
                file="bpf_host.c",
                egress=False,
                lookups=(lk, *sel.lookups),
            )
        be = sel.backend
        q = p.with_dst(be.address, be.port)
        w.backend = f"{be.address}:{be.port}"
        w.step(
            node,
            "eth0",
            prog,
            "service",
            f"service {p.dst}:{p.dport} -> backend {sel.backend_id} {w.backend} ({sel.how}); DNAT",
            q,
            (lk, *sel.lookups),
            frontend=f"{p.dst}:{p.dport}",
        )
        local = idx.by_ip.get(be.address)
        if local is not None:
            w.nodeport.setdefault(node, {})[(q.src, q.sport, q.dst, q.dport, int(q.proto))] = (
                p.dst,
                p.dport,
            )
            return deliver_local(
                w,
                node,
                local,
                q,
                src_id,
                interface=local.lxc_name,
                program=prog,
                rev_nat_index=fe.service.rev_nat_index,
                ct_flags=CT_F_NODE_PORT,
            )
        _, tunnel, tlk = w.ipcache(node, be.address)
        if tunnel is None:
            return w.drop(
                node,
                "eth0",
                prog,
                q,
                DropReason.NO_TUNNEL_OR_ENCAPSULATION_ENDPOINT,
                f"(no tunnel endpoint for backend {be.address})",
                src_id,
                0,
                file="bpf_host.c",
                egress=False,
                lookups=(tlk,),
            )
        r = q.with_src(ns.internal_ip, _snat_port(q))
        w.snat.setdefault(node, {})[(r.dst, r.dport, r.src, r.sport, int(r.proto))] = (
            p.src,
            p.sport,
            p.dst,
            p.dport,
        )
        w.step(
            node,
            "eth0",
            prog,
            "snat",
            f"backend is remote: SNAT {q.src}:{q.sport} -> {r.src}:{r.sport} (bpf-lb-mode snat)",
            r,
            (tlk,),
        )
        # In tunnel mode the VNI carries the client's identity (world), so the backend's
        # policy sees reserved:world although the source address is this node's
        # (Cilium docs, policy caveats: "Security Identity for N/S Service Traffic").
        return to_overlay(w, node, r, tunnel, src_id, None)
    info, lxc_lk = w.lxc_lookup(node, p.dst)
    if info is not None and not info.flags & ENDPOINT_F_HOST:
        ep = idx.by_ip[p.dst]
        w.step(
            node,
            "eth0",
            prog,
            "redirect",
            f"cilium_lxc hit: {p.dst} is local endpoint {info.lxc_id} ({ep.pod or 'health'})",
            p,
            (lxc_lk,),
            pod=ep.pod or "health",
        )
        return deliver_local(w, node, ep, p, src_id, interface=ep.lxc_name, program=prog)
    if info is not None or p.dst in idx.local_ips:
        return to_host(w, node, p, src_id)
    return w.drop(
        node,
        "eth0",
        prog,
        p,
        DropReason.UNKNOWN_L3_TARGET_ADDRESS,
        f"({p.dst} is not on this node)",
        src_id,
        0,
        file="bpf_host.c",
        egress=False,
        lookups=(lxc_lk,),
    )


def from_host(w: Walk, node: str, p: Packet) -> Outcome:
    """The host stack sends ``p`` towards a pod or service (route via cilium_host)."""
    idx = w.topo.nodes[node]
    ns = idx.state
    prog = "cil_from_host"
    host_id = int(ReservedIdentity.HOST)
    w.step(
        node,
        "cilium_host",
        prog,
        "from-host",
        f"from-host: the node's stack sends {p.src} -> {p.dst}, identity {host_id}",
        p,
    )
    w.trace_event(node, ObsPoint.FROM_HOST, p, host_id, 0, "cilium_host", 0, None, False)
    fe, lk = lb.lookup_service(ns, p.dst, p.dport, int(p.proto), internal=True)
    rev_nat_index = 0
    if fe is not None:
        sel = w.select_backend(node, fe, p)
        if sel.backend is None:
            return w.drop(
                node,
                "cilium_host",
                prog,
                p,
                DropReason.SERVICE_BACKEND_NOT_FOUND,
                f"for {p.dst}:{p.dport}",
                host_id,
                0,
                file="bpf_host.c",
                egress=True,
                lookups=(lk, *sel.lookups),
            )
        q = p.with_dst(sel.backend.address, sel.backend.port)
        w.backend = f"{sel.backend.address}:{sel.backend.port}"
        w.step(
            node,
            "cilium_host",
            prog,
            "service",
            f"service {p.dst}:{p.dport} -> backend {sel.backend_id} {w.backend} ({sel.how}); DNAT, as socket-LB does at connect() for the host",
            q,
            (lk, *sel.lookups),
            frontend=f"{p.dst}:{p.dport}",
        )
        w.nodeport.setdefault(node, {})[(q.src, q.sport, q.dst, q.dport, int(q.proto))] = (
            p.dst,
            p.dport,
        )
        rev_nat_index = fe.service.rev_nat_index
        p = q
    info, lxc_lk = w.lxc_lookup(node, p.dst)
    if info is not None and not info.flags & ENDPOINT_F_HOST:
        ep = idx.by_ip[p.dst]
        w.step(
            node,
            "cilium_host",
            prog,
            "redirect",
            f"cilium_lxc hit: {p.dst} is local endpoint {info.lxc_id} ({ep.pod or 'health'})",
            p,
            (lxc_lk,),
            pod=ep.pod or "health",
        )
        # host_forward creates the conntrack entry with the rev-NAT index, so the
        # backend's reply is reverse-NATed in its cil_from_container (decision 0009, 2)
        return deliver_local(
            w,
            node,
            ep,
            p,
            host_id,
            interface=ep.lxc_name,
            program=prog,
            rev_nat_index=rev_nat_index,
        )
    if info is not None:
        return to_host(w, node, p, host_id)
    _, tunnel, ipc_lk = w.ipcache(node, p.dst)
    if tunnel is not None:
        w.step(
            node,
            "cilium_host",
            prog,
            "tunnel",
            f"cilium_ipcache: {p.dst} is behind tunnel endpoint {tunnel}",
            p,
            (lxc_lk, ipc_lk),
            tunnel_endpoint=str(tunnel),
            tunnel_source="cilium_ipcache",
        )
        return to_overlay(w, node, p, tunnel, host_id, None)
    w.step(
        node,
        "eth0",
        prog,
        "to-stack",
        f"{p.dst}: routed out of eth0",
        p,
        (ipc_lk,),
        verdict=Verdict.FORWARDED,
    )
    return w.transmit(node, p)


def host_send(w: Walk, node: str, p: Packet) -> Outcome:
    """Where the host stack's routing table sends ``p``: pod CIDRs via cilium_host, the
    rest out of eth0."""
    idx = w.topo.nodes[node]
    routed_to_pods = any(p.dst in n.pod_cidr for n in w.topo.state.nodes.values())
    fe, _ = lb.lookup_service(idx.state, p.dst, p.dport, int(p.proto))
    if routed_to_pods or fe is not None or p.dst == idx.state.cilium_internal_ip:
        return from_host(w, node, p)
    w.step(
        node,
        "eth0",
        "-",
        "to-network",
        f"the node's stack routes {p.dst} out of eth0",
        p,
        verdict=Verdict.FORWARDED,
    )
    return w.transmit(node, p)
