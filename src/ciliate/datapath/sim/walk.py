"""The state of one walk through the model datapath: indexes, conntrack, steps, flows.

``Topology`` indexes a ``DesiredState`` once (endpoints by IP and by lxc ifindex, node
by IP, the ipcache sorted for longest-prefix match); it is immutable and cached per
state so that thousands of probes pay for it once. ``Walk`` is one run: the per-node
conntrack tables and affinity maps (which persist across the request and its reply),
the injected clock and RNG, and the ``TraceStep``s and ``FlowEvent``s recorded by the
programs. ``Outcome`` is how a packet's journey ends (delivered where, or dropped why).

Programs (``lxc``, ``overlay``, ``host``) record through ``Walk.step``/``Walk.event``
and hand packets that leave a node to ``Walk.transmit`` (the fabric, set by
``network``). Imports: ``desired``, ``datapath.api/packet/conntrack``; no I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from ciliate.clock import Clock
from ciliate.datapath.api import (
    EventType,
    FlowEndpoint,
    FlowEvent,
    MapLookup,
    ObsPoint,
    ProbeResult,
    TraceStep,
    Verdict,
)
from ciliate.datapath.conntrack import CTStatus, CTTable
from ciliate.datapath.packet import IPProto, Packet
from ciliate.datapath.sim import keys, lb
from ciliate.datapath.sim.lb import RNG, AffinityMap
from ciliate.desired import (
    DesiredState,
    EndpointInfo,
    EndpointKey,
    EndpointState,
    NodeState,
    RemoteEndpointInfo,
    ReservedIdentity,
)


class Where(enum.StrEnum):
    ENDPOINT = "endpoint"  # a pod's stack
    HOST = "host"  # a node's own stack
    WORLD = "world"  # left the cluster through eth0
    PROXY = "proxy"  # answered by the L7 proxy (403)
    DROPPED = "dropped"


@dataclass(frozen=True, slots=True)
class Outcome:
    where: Where
    node: str
    packet: Packet
    endpoint: EndpointState | None = None
    drop_reason: int = 0
    status: int | None = None  # HTTP status when the L7 proxy decided


class NodeIndex:
    """One node's lookups: endpoints by IP and ifindex, and the ipcache split into an
    exact /32 table plus the few shorter prefixes (longest first) for the LPM."""

    def __init__(self, node: NodeState) -> None:
        self.state = node
        self.by_ip: dict[IPv4Address, EndpointState] = {ep.ip: ep for ep in node.endpoints.values()}
        self.by_ifindex: dict[int, EndpointState] = {
            ep.lxc_ifindex: ep for ep in node.endpoints.values()
        }
        self.local_ips = frozenset({node.internal_ip, node.cilium_internal_ip})
        self.hosts: dict[IPv4Address, tuple[IPv4Network, RemoteEndpointInfo]] = {}
        prefixes: list[tuple[IPv4Network, RemoteEndpointInfo]] = []
        for k, v in node.ipcache.items():
            if k.prefix.prefixlen == 32:
                self.hosts[k.prefix.network_address] = (k.prefix, v)
            else:
                prefixes.append((k.prefix, v))
        prefixes.sort(key=lambda kv: (-kv[0].prefixlen, int(kv[0].network_address)))
        self.prefixes = tuple(prefixes)

    def ipcache_lookup(
        self, ip: IPv4Address
    ) -> tuple[RemoteEndpointInfo | None, IPv4Network | None]:
        hit = self.hosts.get(ip)
        if hit is not None:
            return hit[1], hit[0]
        for prefix, info in self.prefixes:
            if ip in prefix:
                return info, prefix
        return None, None


class _Nodes(Mapping[str, NodeIndex]):
    """Node indexes built on first use: a trace touches two or three nodes of a
    thousand, so only those pay for their ipcache index."""

    def __init__(self, state: DesiredState) -> None:
        self._state = state
        self._built: dict[str, NodeIndex] = {}

    def __getitem__(self, name: str) -> NodeIndex:
        idx = self._built.get(name)
        if idx is None:
            idx = self._built[name] = NodeIndex(self._state.nodes[name])
        return idx

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._state.nodes))

    def __len__(self) -> int:
        return len(self._state.nodes)

    def __contains__(self, name: object) -> bool:
        return name in self._state.nodes


class Topology:
    """Read-only indexes over a DesiredState."""

    def __init__(self, state: DesiredState) -> None:
        self.state = state
        self.nodes = _Nodes(state)
        self.node_by_ip: dict[IPv4Address, str] = {}
        self.pods: dict[str, tuple[str, EndpointState]] = {}
        self.pod_by_ip: dict[IPv4Address, tuple[str, EndpointState]] = {}
        # probe verdicts by what decides them (network.probe); lives as long as the index
        self.probe_cache: dict[tuple[object, ...], ProbeResult] = {}
        self._frontends: dict[IPv4Address, tuple[int, ...]] | None = None
        for name, node in sorted(state.nodes.items()):
            for ip in (node.internal_ip, node.cilium_internal_ip):
                self.node_by_ip[ip] = name
            for ep in node.endpoints.values():
                if ep.pod:
                    self.pods[ep.pod] = (name, ep)
                    self.pod_by_ip[ep.ip] = (name, ep)

    def ipcache_lookup(
        self, node: str, ip: IPv4Address
    ) -> tuple[RemoteEndpointInfo | None, IPv4Network | None]:
        return self.nodes[node].ipcache_lookup(ip)

    def frontends(self) -> dict[IPv4Address, tuple[int, ...]]:
        """Service frontend addresses and their ports (for resolving ``IP[:port]``):
        cluster-wide ones are on every node, so the first node's lb4 map is enough."""
        if self._frontends is None:
            found: dict[IPv4Address, set[int]] = {}
            first = next(iter(sorted(self.state.nodes)), None)
            if first is not None:
                for key in self.state.nodes[first].lb4_services:
                    if key.backend_slot == 0 and int(key.address) != 0:
                        found.setdefault(key.address, set()).add(key.dport)
            self._frontends = {ip: tuple(sorted(p)) for ip, p in found.items()}
        return self._frontends

    def identity_labels(self, identity: int) -> tuple[str, ...]:
        ident = self.state.identities.get(identity)
        if ident is not None:
            return ident.labels
        try:
            return (f"reserved:{ReservedIdentity(identity).name.lower().replace('_', '-')}",)
        except ValueError:
            return ()


Transmit = Callable[["Walk", str, Packet], Outcome]


@dataclass
class Walk:
    topo: Topology
    clock: Clock
    rng: RNG
    transmit_fn: Transmit | None = None
    ct: dict[str, CTTable] = field(default_factory=dict)
    affinity: dict[str, AffinityMap] = field(default_factory=dict)
    steps: list[TraceStep] = field(default_factory=list)
    flows: list[FlowEvent] = field(default_factory=list)
    backend: str = ""
    record: bool = True
    # NodePort translations made by cil_from_netdev, so replies can be reversed:
    # (client ip, client port, backend ip, backend port, proto) -> (frontend ip, port)
    nodeport: dict[
        str, dict[tuple[IPv4Address, int, IPv4Address, int, int], tuple[IPv4Address, int]]
    ] = field(default_factory=dict)
    # SNAT for remote backends: (backend ip, port, node ip, port, proto) -> (client ip, port, frontend ip, port)
    snat: dict[
        str,
        dict[
            tuple[IPv4Address, int, IPv4Address, int, int],
            tuple[IPv4Address, int, IPv4Address, int],
        ],
    ] = field(default_factory=dict)  # False: probes skip building texts they will not show

    def ct_of(self, node: str) -> CTTable:
        if node not in self.ct:
            self.ct[node] = CTTable(self.clock)
        return self.ct[node]

    def affinity_of(self, node: str) -> AffinityMap:
        return self.affinity.setdefault(node, {})

    def select_backend(
        self, node: str, fe: lb.Frontend, p: Packet, ct_backend: int = 0
    ) -> lb.Selection:
        """``lb.select_backend`` on ``node``'s maps with this walk's affinity map for the
        node, clock and RNG (every program that translates a service asks the same way)."""
        return lb.select_backend(
            self.topo.nodes[node].state,
            fe,
            p,
            ct_backend=ct_backend,
            affinity=self.affinity_of(node),
            now=self.clock.monotonic(),
            rng=self.rng,
        )

    def nodeport_orig(self, node: str, reply: Packet) -> tuple[IPv4Address, int] | None:
        """The frontend a NodePort request was sent to, for the reply ``reply``."""
        key = (reply.dst, reply.dport, reply.src, reply.sport, int(reply.proto))
        return self.nodeport.get(node, {}).get(key)

    def transmit(self, node: str, p: Packet) -> Outcome:
        assert self.transmit_fn is not None
        return self.transmit_fn(self, node, p)

    # --- lookups that also produce their MapLookup record ------------------------

    def lxc_lookup(self, node: str, ip: IPv4Address) -> tuple[EndpointInfo | None, MapLookup]:
        info = self.topo.nodes[node].state.lxc.get(EndpointKey(ip))
        key = keys.hexbytes(keys.build_lxc_key(ip)) if self.record else ""
        if info is None:
            return None, MapLookup("cilium_lxc", key, "miss", hit=False)
        if info.flags & 0x1:
            text = "hit: local host address (flags HOST)"
        else:
            text = (
                f"hit: endpoint {info.lxc_id} ifindex {info.ifindex} "
                f"mac {info.mac} nodemac {info.node_mac} identity {info.sec_id}"
            )
        value = keys.hexbytes(keys.build_lxc_value(info)) if self.record else ""
        return info, MapLookup("cilium_lxc", key, text, value_hex=value)

    def ipcache(self, node: str, ip: IPv4Address) -> tuple[int, IPv4Address | None, MapLookup]:
        """Identity and tunnel endpoint of ``ip`` (world when nothing matches)."""
        info, prefix = self.topo.ipcache_lookup(node, ip)
        key = keys.hexbytes(keys.build_ipcache_key(ip)) if self.record else ""
        if info is None:
            return (
                int(ReservedIdentity.WORLD),
                None,
                MapLookup("cilium_ipcache", key, "miss: identity 2 (world)", hit=False),
            )
        tunnel = f" tunnelendpoint {info.tunnel_endpoint}" if info.tunnel_endpoint else ""
        value = keys.hexbytes(keys.build_ipcache_value(info)) if self.record else ""
        return (
            info.sec_identity,
            info.tunnel_endpoint,
            MapLookup(
                "cilium_ipcache",
                key,
                f"hit {prefix}: identity {info.sec_identity}{tunnel}",
                value_hex=value,
            ),
        )

    # --- recording -------------------------------------------------------------

    def step(
        self,
        node: str,
        interface: str,
        program: str,
        action: str,
        detail: str,
        p: Packet,
        lookups: tuple[MapLookup, ...] = (),
        *,
        verdict: Verdict | None = None,
        drop_reason: int = 0,
        provenance: tuple[str, ...] = (),
        encap: str = "",
        ifindex: int = 0,
        pod: str = "",
        tunnel_endpoint: str = "",
        tunnel_source: str = "",
        frontend: str = "",
    ) -> None:
        if not self.record:
            return
        src, dst = p.ends()
        self.steps.append(
            TraceStep(
                node=node,
                interface=interface,
                program=program,
                action=action,
                detail=detail,
                packet=p.conn(),
                lookups=lookups,
                verdict=verdict.value if verdict else "",
                drop_reason=drop_reason,
                provenance=provenance,
                encap=encap,
                ifindex=ifindex,
                src=src,
                dst=dst,
                pod=pod,
                tunnel_endpoint=tunnel_endpoint,
                tunnel_source=tunnel_source,
                frontend=frontend,
            )
        )

    def endpoint_of(self, node: str, ip: IPv4Address, identity: int) -> FlowEndpoint:
        """The flow's view of one side. An identity the event does not carry (0) is
        filled from the node's ipcache, as Hubble's parser does (cilium.md §14.2)."""
        if identity == 0:
            info, _ = self.topo.ipcache_lookup(node, ip)
            identity = info.sec_identity if info is not None else int(ReservedIdentity.WORLD)
        hit = self.topo.pod_by_ip.get(ip)
        labels = self.topo.identity_labels(identity)
        if hit is not None:
            ns, _, name = hit[1].pod.partition("/")
            local_id = hit[1].id if hit[0] == node else 0
            return FlowEndpoint(identity, str(ip), local_id, ns, name, labels)
        return FlowEndpoint(identity, str(ip), labels=labels)

    def event(
        self,
        node: str,
        etype: EventType,
        sub: int,
        p: Packet,
        src_id: int,
        dst_id: int,
        *,
        verdict: Verdict = Verdict.FORWARDED,
        interface: str = "",
        ifindex: int = 0,
        state: CTStatus | None = None,
        direction: str = "TRAFFIC_DIRECTION_UNKNOWN",
        drop_reason: int = 0,
        match_type: int = 0,
        proxy_port: int = 0,
        file: str = "",
        policies: tuple[str, ...] = (),
        policy_refs: tuple[tuple[str, str, str], ...] = (),
        http: tuple[str, str, str, int] | None = None,
    ) -> None:
        if not self.record:
            return
        l4: dict[str, object] = {}
        if p.proto == IPProto.TCP:
            from ciliate.datapath.packet import tcp_flag_names

            l4 = {
                "TCP": {
                    "source_port": p.sport,
                    "destination_port": p.dport,
                    "flags": {f: True for f in tcp_flag_names(p.l4.flags)},
                }
            }
        elif p.proto == IPProto.ICMP:
            l4 = {"ICMPv4": {"type": p.l4.icmp_type, "code": p.l4.icmp_code}}
        else:
            l4 = {p.proto.name: {"source_port": p.sport, "destination_port": p.dport}}
        tunnel: dict[str, object] = {}
        if p.vxlan is not None:
            tunnel = {
                "protocol": "VXLAN",
                "IP": {"source": str(p.vxlan.outer_src), "destination": str(p.vxlan.outer_dst)},
                "vni": p.vxlan.vni,
            }
        self.flows.append(
            FlowEvent(
                node=node,
                event_type=etype,
                sub_type=sub,
                verdict=verdict,
                source=self.endpoint_of(node, p.src, src_id),
                destination=self.endpoint_of(node, p.dst, dst_id),
                summary=p.summary(),
                l4=dict(l4),
                ethernet=(p.eth_src, p.eth_dst),
                ifindex=ifindex,
                interface=interface,
                is_reply=(state == CTStatus.REPLY) if state is not None else None,
                traffic_direction=direction,
                trace_reason=state.text if state is not None else "",
                drop_reason=drop_reason,
                match_type=match_type,
                proxy_port=proxy_port,
                file=file,
                tunnel=tunnel,
                policies=policies,
                policy_refs=policy_refs,
                time=self.clock.now(),
                http=http,
            )
        )

    def trace_event(
        self,
        node: str,
        obs: ObsPoint,
        p: Packet,
        src_id: int,
        dst_id: int,
        interface: str,
        ifindex: int,
        state: CTStatus | None,
        source_is_local_ep: bool,
    ) -> None:
        direction = "TRAFFIC_DIRECTION_UNKNOWN"
        if state is not None:
            is_reply = state == CTStatus.REPLY
            direction = "EGRESS" if source_is_local_ep != is_reply else "INGRESS"
        self.event(
            node,
            EventType.TRACE,
            int(obs),
            p,
            src_id,
            dst_id,
            interface=interface,
            ifindex=ifindex,
            state=state,
            direction=direction,
        )

    def drop(
        self,
        node: str,
        interface: str,
        program: str,
        p: Packet,
        reason: int,
        detail: str,
        src_id: int,
        dst_id: int,
        *,
        file: str,
        egress: bool,
        lookups: tuple[MapLookup, ...] = (),
        provenance: tuple[str, ...] = (),
        ifindex: int = 0,
        policy_refs: tuple[tuple[str, str, str], ...] = (),
        pod: str = "",
    ) -> Outcome:
        from ciliate.datapath.api import drop_text

        self.step(
            node,
            interface,
            program,
            "drop",
            f"DROPPED: {drop_text(reason)} ({reason}) {detail}".rstrip(),
            p,
            lookups,
            verdict=Verdict.DROPPED,
            drop_reason=reason,
            provenance=provenance,
            ifindex=ifindex,
            pod=pod,
        )
        self.event(
            node,
            EventType.DROP,
            reason,
            p,
            src_id,
            dst_id,
            verdict=Verdict.DROPPED,
            interface=interface,
            ifindex=ifindex,
            direction="EGRESS" if egress else "INGRESS",
            drop_reason=reason,
            file=file,
            policies=provenance,
            policy_refs=policy_refs,
        )
        return Outcome(Where.DROPPED, node, p, drop_reason=reason)
