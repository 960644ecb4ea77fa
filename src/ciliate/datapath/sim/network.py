"""The fabric between nodes and the walk driver: ``trace`` and ``probe``.

The fabric is the node network (172.18.0.0/16 in the examples): a packet leaving a node
on eth0 arrives on eth0 of the node owning its (outer) destination address; VXLAN
packets go to that node's ``cilium_vxlan`` (``cil_from_overlay``), plain packets to
``cil_from_netdev``; anything else leaves the cluster (``world``).

``trace`` resolves SRC and DST (a pod ``ns/name``, a pod IP, a service ``ns/name``
through ``DesiredState.services``, a frontend ``IP[:port]``, a node name or address,
``NODE:PORT``, or any other IP as the world), builds the first packet of the probe, injects it where such a packet
starts (a pod's lxc, a node's stack, eth0 of the entry node for the world), follows it
through the programs, and — when it was delivered — lets the destination answer and
follows the reply back. ``probe`` is the fast form for reachability matrices: no texts,
and a cache of verdicts keyed by what can change them (identities, policy maps, node
relation, protocol, port, HTTP request) when no service is involved.

Inputs: a ``DesiredState``, an injected clock and RNG. Outputs: ``TraceResult`` /
``ProbeResult``. Raises ``NotFoundError`` for names that do not resolve. No I/O.

Imports ``desired``, ``clock``, ``datapath.api``/``packet`` and sibling ``sim`` modules.
Must not import ``datapath.linux``, sockets or subprocess (an import contract: the model
never touches the kernel).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from ipaddress import AddressValueError, IPv4Address

from ciliate.clock import Clock, FakeClock
from ciliate.datapath.api import (
    Endpoint,
    Endpointish,
    Kind,
    ProbeResult,
    TraceResult,
    Verdict,
)
from ciliate.datapath.packet import (
    HTTPRequest,
    IPProto,
    Packet,
    build_arp_request,
    build_reply,
    build_request,
)
from ciliate.datapath.sim import host, lxc, overlay
from ciliate.datapath.sim.lb import RNG
from ciliate.datapath.sim.walk import Outcome, Topology, Walk, Where
from ciliate.desired import DesiredState
from ciliate.errors import CiliateError, NotFoundError

WORLD_MAC = "02:00:00:00:00:01"  # the router of the node network, for outside clients
CLIENT_PORT = 40000  # the source port of every probe (deterministic traces)

_TOPOLOGIES: dict[int, tuple[DesiredState, Topology]] = {}


def topology(state: DesiredState) -> Topology:
    """The cached index of ``state`` (the few most recent states are kept)."""
    hit = _TOPOLOGIES.get(id(state))
    if hit is not None and hit[0] is state:
        return hit[1]
    if len(_TOPOLOGIES) >= 4:
        _TOPOLOGIES.pop(next(iter(_TOPOLOGIES)))
    topo = Topology(state)
    _TOPOLOGIES[id(state)] = (state, topo)
    return topo


# --- the fabric ------------------------------------------------------------------------


def transmit(w: Walk, node: str, p: Packet) -> Outcome:
    """``p`` leaves ``node`` on eth0 and crosses the node network."""
    if p.vxlan is not None:
        target = w.topo.node_by_ip.get(p.vxlan.outer_dst)
        if target is None:
            return Outcome(Where.WORLD, node, p)
        w.step(
            target,
            "eth0",
            "-",
            "fabric",
            f"{node} eth0 -> {target} eth0: VXLAN udp/{p.vxlan.dport} handed to cilium_vxlan",
            p,
        )
        return overlay.from_overlay(w, target, p)
    target = w.topo.node_by_ip.get(p.dst)
    if target is None:
        owner = w.topo.pod_by_ip.get(p.dst)
        target = owner[0] if owner is not None else None
    if target is None or target == node:
        w.step(
            node,
            "eth0",
            "-",
            "to-network",
            f"to-network: {p.dst} leaves the cluster through {node} eth0",
            p,
            verdict=Verdict.FORWARDED,
        )
        return Outcome(Where.WORLD, node, p)
    w.step(target, "eth0", "-", "fabric", f"{node} eth0 -> {target} eth0 (node network)", p)
    return host.from_netdev(w, target, p)


# --- resolving SRC and DST -------------------------------------------------------------


def _service_frontend(topo: Topology, name: str, port: int) -> Endpoint | None:
    """The ClusterIP frontend of Service ``ns/name`` (the one on ``port`` if given)."""
    fronts = sorted(
        (f for f in topo.state.services.values() if f.service == name and f.type == "ClusterIP"),
        key=lambda f: (f.port != port, f.rev_nat_index),
    )
    if not fronts:
        return None
    f = fronts[0]
    return Endpoint(Kind.SERVICE, name, IPv4Address(f.address), port=f.port)


def resolve(
    topo: Topology,
    what: Endpointish,
    services: Mapping[str, tuple[IPv4Address, int]] | None = None,
    port: int = 0,
) -> Endpoint:
    """A pod (ns/name or IP), a service (ns/name: its ClusterIP frontend, on ``port``
    when it has several; or a frontend IP[:port]), a node (name or address), else an
    outside (world) IP. ``services`` adds names (ns/name -> frontend) for states that
    do not carry ``DesiredState.services``."""
    if isinstance(what, Endpoint):
        return what
    text = what.strip()
    if text in topo.pods:
        node, ep = topo.pods[text]
        return Endpoint(Kind.POD, text, ep.ip, node)
    if services and text in services:
        ip, sport = services[text]
        return Endpoint(Kind.SERVICE, text, ip, port=sport)
    svc = _service_frontend(topo, text, port) if "/" in text else None
    if svc is not None:
        return svc
    addr, _, port_text = text.partition(":")
    if addr in topo.nodes:  # a node, or NODE:PORT (a NodePort on that node)
        nport = int(port_text) if port_text.isdigit() else port
        return Endpoint(Kind.NODE, addr, topo.nodes[addr].state.internal_ip, addr, nport)
    try:
        ip = IPv4Address(addr)
    except (AddressValueError, ValueError):
        raise NotFoundError(
            f"{text!r} is not a pod (namespace/name), service, node or IPv4 address"
        ) from None
    port = int(port_text) if port_text.isdigit() else port
    if ip in topo.pod_by_ip:
        node, ep = topo.pod_by_ip[ip]
        return Endpoint(Kind.POD, ep.pod, ip, node, port)
    if ip in topo.node_by_ip:
        return Endpoint(Kind.NODE, topo.node_by_ip[ip], ip, topo.node_by_ip[ip], port)
    ports = topo.frontends().get(ip, ())
    if ports:
        chosen = port if port in ports else (port or ports[0])
        if chosen in ports:
            return Endpoint(Kind.SERVICE, f"{ip}:{chosen}", ip, port=chosen)
    return Endpoint(Kind.WORLD, str(ip), ip, port=port)


def _entry_node(topo: Topology, src: Endpoint, dst: Endpoint) -> str:
    """Where a packet from ``src`` starts."""
    if src.kind in (Kind.POD, Kind.NODE):
        return src.node
    if dst.kind in (Kind.POD, Kind.NODE) and dst.node:
        return dst.node  # an outside client reaches the node hosting (or being) the target
    return next(iter(sorted(topo.nodes)))


def _first_packet(
    w: Walk, src: Endpoint, dst: Endpoint, proto: IPProto, port: int, http: HTTPRequest | None
) -> tuple[str, Packet]:
    topo = w.topo
    node = _entry_node(topo, src, dst)
    ns = topo.nodes[node].state
    if src.kind == Kind.POD:
        ep = topo.pods[src.name][1]
        src_ip, mac_src, mac_dst = ep.ip, ep.pod_mac, ep.lxc_mac
    elif src.kind == Kind.NODE:
        pod_side = any(dst.ip in n.pod_cidr for n in topo.state.nodes.values())
        src_ip = ns.cilium_internal_ip if pod_side else ns.internal_ip
        mac = next((d.mac for d in ns.devices if d.name == "cilium_host"), "00:00:00:00:00:00")
        mac_src = mac_dst = mac
    else:
        src_ip = src.ip
        mac_src = WORLD_MAC
        mac_dst = next((d.mac for d in ns.devices if d.name == "eth0"), "00:00:00:00:00:00")
    return node, build_request(mac_src, mac_dst, src_ip, dst.ip, proto, port, CLIENT_PORT, http)


def _inject(w: Walk, src: Endpoint, node: str, p: Packet) -> Outcome:
    if src.kind == Kind.POD:
        return lxc.from_container(w, node, w.topo.pods[src.name][1], p)
    if src.kind == Kind.NODE:
        return host.host_send(w, node, p)
    return host.from_netdev(w, node, p)


def _answer(w: Walk, out: Outcome) -> Outcome:
    """The destination's stack answers the delivered request; follow the reply."""
    reply = build_reply(out.packet)
    if out.where == Where.ENDPOINT and out.endpoint is not None:
        return lxc.from_container(w, out.node, out.endpoint, reply)
    if out.where == Where.HOST:
        return host.host_send(w, out.node, reply)
    # The world answers through the node the request left from.
    return host.from_netdev(w, out.node, reply)


def trace(
    state: DesiredState,
    src: Endpointish,
    dst: Endpointish,
    port: int = 0,
    protocol: str = "tcp",
    http: tuple[str, str] | None = None,
    clock: Clock | None = None,
    rng: RNG | None = None,
    *,
    services: Mapping[str, tuple[IPv4Address, int]] | None = None,
    walk: Walk | None = None,
    record: bool = True,
) -> TraceResult:
    """Follow one probe (request, then reply) through the model datapath.

    ``protocol`` is tcp|udp|sctp|icmp, or arp (an ARP request from a pod for DST's
    address, answered by the lxc for the gateway). ``walk`` may be passed to keep
    conntrack and affinity state across calls (it must be over the same state)."""
    topo = topology(state)
    s = resolve(topo, src, services)
    d = resolve(topo, dst, services, port)
    if d.port and not port:
        port = d.port
    w = walk or Walk(topo, clock or FakeClock(), rng or random.Random(0), transmit)
    w.transmit_fn = transmit
    w.record = record
    w.steps, w.flows, w.backend = [], [], ""
    req = HTTPRequest(http[0], http[1], host=str(d.ip)) if http else None
    if s.kind == Kind.SERVICE:
        raise CiliateError(
            f"{s.name}: a service cannot send packets; trace from a client to it instead"
        )
    if protocol == "arp":
        if s.kind != Kind.POD:
            raise CiliateError("an ARP trace starts from a pod")
        node = s.node
        ep = topo.pods[s.name][1]
        out = lxc.from_container(w, node, ep, build_arp_request(ep.pod_mac, ep.ip, d.ip))
        ok = out.packet.is_arp and out.packet.arp is not None and out.packet.arp.op == 2
        return TraceResult(
            s,
            d,
            "arp",
            0,
            tuple(w.steps),
            Verdict.FORWARDED if ok else Verdict.DROPPED,
            (),
            tuple(w.flows),
            0,
            ok,
        )
    proto = IPProto.parse(protocol)
    if proto != IPProto.ICMP and not port:
        port = 80
    if proto == IPProto.ICMP:
        port = 0
    node, first = _first_packet(w, s, d, proto, port, req)
    out = _inject(w, s, node, first)
    steps = tuple(w.steps)
    backend = w.backend
    w.steps = []
    delivered = False
    status: int | None = None
    drop = out.drop_reason
    if out.where == Where.PROXY:
        status = 403
    elif out.where != Where.DROPPED:
        back = _answer(w, out)
        delivered = back.where != Where.DROPPED
        drop = back.drop_reason
        if delivered and req is not None:
            status = 200
    return TraceResult(
        src=s,
        dst=d,
        protocol=proto.name.lower(),
        port=port,
        steps=steps,
        request_verdict=Verdict.FORWARDED
        if out.where not in (Where.DROPPED, Where.PROXY)
        else Verdict.DROPPED,
        reply_steps=tuple(w.steps),
        flows=tuple(w.flows),
        drop_reason=drop,
        delivered=delivered,
        status=status,
        backend=backend,
        http=http,
        time=w.clock.now(),
    )


# --- probes ----------------------------------------------------------------------------


def probe(
    state: DesiredState,
    src: str,
    dst: str,
    port: int = 80,
    protocol: str = "tcp",
    http: tuple[str, str] | None = None,
) -> ProbeResult:
    """Can SRC reach DST? The same walk as ``trace`` without texts, cached by the inputs
    that decide it when no service is on the path."""
    topo = topology(state)
    s = resolve(topo, src)
    d = resolve(topo, dst, port=port)
    key: tuple[object, ...] | None = None
    if s.kind == Kind.POD and d.kind == Kind.POD:
        sn, sep = topo.pods[s.name]
        dn, dep = topo.pods[d.name]
        spm = topo.nodes[sn].state.policy.get(sep.id)
        dpm = topo.nodes[dn].state.policy.get(dep.id)
        key = (
            sep.identity,
            dep.identity,
            sn == dn,
            id(spm),
            id(dpm),
            sep.egress_enforced,
            dep.ingress_enforced,
            port,
            protocol,
            http,
        )
        hit = topo.probe_cache.get(key)
        if hit is not None:
            return hit
    r = trace(state, s, d, port, protocol, http, record=False)
    result = ProbeResult(r.delivered, r.drop_reason, r.status)
    if key is not None:
        topo.probe_cache[key] = result
    return result
