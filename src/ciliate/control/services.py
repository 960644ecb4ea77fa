"""Services: Kubernetes Services + EndpointSlices -> the lb4 maps of every node.

Inputs: Services (clusterIP and nodePorts already allocated at admission,
status.loadBalancer.ingress), their EndpointSlices (discovery.k8s.io/v1: endpoints
with addresses, conditions.ready, nodeName; ports already resolved from targetPort),
the nodes, the cluster config, and the IDs handed out before (``IDAllocator``).
Output: per Service a ``ServiceEntries``: lb4 master + slot entries, backends,
rev-NAT entries, Maglev tables, split into what every node shares and what differs
per node (NodePort frontends on the node's own IP, traffic policy Local).

Frontends per Service (cilium.md §7.1):

1. ClusterIP ``clusterIP:port`` (flags: none = ClusterIP; not ROUTABLE).
2. NodePort (types NodePort and LoadBalancer): the ``0.0.0.0:nodePort`` surrogate
   (not ROUTABLE) and ``<node IP>:nodePort`` on each node.
3. LoadBalancer: ``ingressIP:port`` per status.loadBalancer.ingress IP.
4. externalIPs: ``externalIP:port``.

Headless (clusterIP None) and ExternalName Services have no frontends. Only ready
endpoints become backends. Traffic policies: externalTrafficPolicy=Local limits the
backends of north-south frontends (2-4) to node-local ones (EXT_LOCAL_SCOPE);
internalTrafficPolicy=Local limits east-west ones (INT_LOCAL_SCOPE): the ClusterIP
frontend, and the scope-INT twin of the north-south frontends, which exists (flag
TWO_SCOPES) when the two policies differ. sessionAffinity ClientIP sets AFFINITY and
the timeout in the master's low 24 bits; the per-service annotation
``service.cilium.io/lb-algorithm`` puts the algorithm in its high 8 bits.

Sans-IO; imports only the model, ``desired`` and ``control``.
"""

from __future__ import annotations

import functools
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from ciliate.control.maglev import DEFAULT_HASH_SEED, compute_table
from ciliate.control.nodes import NodeInfo
from ciliate.desired import (
    LB_ALG_MAGLEV,
    LB_ALG_RANDOM,
    LB_SCOPE_EXT,
    LB_SCOPE_INT,
    SVC_FLAG2_INT_LOCAL_SCOPE,
    SVC_FLAG2_TWO_SCOPES,
    SVC_FLAG_AFFINITY,
    SVC_FLAG_EXT_LOCAL_SCOPE,
    SVC_FLAG_EXTERNAL_IP,
    SVC_FLAG_HOSTPORT,
    SVC_FLAG_LOADBALANCER,
    SVC_FLAG_NODEPORT,
    SVC_FLAG_ROUTABLE,
    LB4Backend,
    LB4Key,
    LB4ReverseNat,
    LB4Service,
    ServiceFrontend,
)
from ciliate.model.cluster import ClusterConfig
from ciliate.model.core import Service
from ciliate.model.meta import Doc

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
LB_ALGORITHM_ANNOTATION = "service.cilium.io/lb-algorithm"
MAGLEV_SEED_KEY = "maglevHashSeed"  # optional key under cluster: in cluster.yaml
PROTOCOLS = {"TCP": 6, "UDP": 17, "SCTP": 132}
PROTOCOL_NAMES = {v: k for k, v in PROTOCOLS.items()}
NODE_ADDRESS = "<node>"  # frontend address placeholder: each node's own IP
AFFINITY_TIMEOUT_MASK = 0xFFFFFF


class IDAllocator:
    """Stable small integer IDs: a key keeps its ID while it exists; new keys get
    the lowest free ID at or above ``start``. Plain data, mutated only by its owner."""

    def __init__(self, start: int = 1, limit: int = 0xFFFFFFFF) -> None:
        self.ids: dict[Hashable, int] = {}
        self._used: set[int] = set()
        self._next = start
        self._start = start
        self._limit = limit

    def pin(self, key: Hashable, value: int) -> None:
        if key not in self.ids and value not in self._used:
            self.ids[key] = value
            self._used.add(value)

    def get(self, key: Hashable) -> int:
        got = self.ids.get(key)
        if got is not None:
            return got
        n = self._next
        while n in self._used:
            n += 1
        if n > self._limit:
            raise ValueError(f"ID space exhausted ({self._limit})")
        self.ids[key] = n
        self._used.add(n)
        self._next = n + 1
        return n

    def release(self, key: Hashable) -> None:
        n = self.ids.pop(key, None)
        if n is not None:
            self._used.discard(n)
            self._next = min(self._next, n)

    def retain(self, keys: Iterable[Hashable]) -> None:
        """Forget every key not in ``keys``."""
        keep = set(keys)
        for k in [k for k in self.ids if k not in keep]:
            self.release(k)


@dataclass(frozen=True, slots=True)
class SliceEndpoint:
    address: IPv4Address
    ready: bool
    node: str
    pod: str  # ns/name from targetRef, "" if none


@dataclass(frozen=True, slots=True)
class SlicePort:
    name: str
    port: int
    protocol: str


@dataclass(frozen=True, slots=True)
class EndpointSlice:
    service: str  # ns/name of the owning Service
    name: str
    endpoints: tuple[SliceEndpoint, ...]
    ports: tuple[SlicePort, ...]

    @classmethod
    def from_doc(cls, doc: Doc) -> EndpointSlice:
        meta = doc.get("metadata") or {}
        ns = str(meta.get("namespace", "") or "")
        svc = str((meta.get("labels") or {}).get(SERVICE_NAME_LABEL, "") or "")
        eps: list[SliceEndpoint] = []
        for e in doc.get("endpoints") or ():
            cond = e.get("conditions") or {}
            # EndpointSlice API: a nil ready condition is to be read as ready.
            ready = cond.get("ready") is not False
            ref = e.get("targetRef") or {}
            pod = f"{ref.get('namespace', ns)}/{ref['name']}" if ref.get("name") else ""
            for a in e.get("addresses") or ():
                addr = parse_ipv4(str(a))
                if addr is None:
                    continue  # IPv6 or garbage: this model is IPv4-only
                eps.append(SliceEndpoint(addr, ready, str(e.get("nodeName", "") or ""), pod))
        ports = tuple(
            SlicePort(
                str(p.get("name", "") or ""),
                int(p.get("port", 0) or 0),
                str(p.get("protocol", "TCP") or "TCP"),
            )
            for p in doc.get("ports") or ()
        )
        return cls(f"{ns}/{svc}", str(meta.get("name", "")), tuple(eps), ports)


@dataclass(frozen=True, slots=True)
class Backend:
    address: IPv4Address
    port: int
    proto: int
    node: str

    @property
    def key(self) -> tuple[IPv4Address, int, int]:
        return (self.address, self.port, self.proto)

    @property
    def name(self) -> str:
        """The string form Maglev hashes (L3n4Addr: ``ip:port/PROTO``)."""
        return f"{self.address}:{self.port}/{PROTOCOL_NAMES.get(self.proto, 'ANY')}"


@dataclass(slots=True)
class ServiceEntries:
    """One Service's contribution to the lb maps."""

    service: str
    shared_services: dict[LB4Key, LB4Service] = field(default_factory=dict)
    shared_revnat: dict[int, LB4ReverseNat] = field(default_factory=dict)
    shared_maglev: dict[int, tuple[int, ...]] = field(default_factory=dict)
    node_services: dict[str, dict[LB4Key, LB4Service]] = field(default_factory=dict)
    node_revnat: dict[str, dict[int, LB4ReverseNat]] = field(default_factory=dict)
    node_maglev: dict[str, dict[int, tuple[int, ...]]] = field(default_factory=dict)
    backends: dict[int, LB4Backend] = field(default_factory=dict)
    frontends: dict[int, ServiceFrontend] = field(default_factory=dict)

    @property
    def entry_count(self) -> int:
        return (
            len(self.shared_services)
            + sum(len(v) for v in self.node_services.values())
            + len(self.backends)
        )


@dataclass(slots=True)
class Allocators:
    backends: IDAllocator = field(default_factory=IDAllocator)
    rev_nat: IDAllocator = field(default_factory=lambda: IDAllocator(1, 0xFFFF))


@functools.lru_cache(maxsize=1 << 17)
def parse_ipv4(text: str) -> IPv4Address | None:
    """An IPv4 address or None. Memoized: the same pod and service addresses are read
    again and again (as backends of several services, in policies, per node)."""
    try:
        return IPv4Address(text)
    except ValueError:
        return None


def _is_ipv4(text: str) -> bool:
    return parse_ipv4(text) is not None


def slices_by_service(slices: Iterable[Doc]) -> dict[str, list[EndpointSlice]]:
    out: dict[str, list[EndpointSlice]] = {}
    for d in slices:
        s = EndpointSlice.from_doc(d)
        out.setdefault(s.service, []).append(s)
    return out


def _backends_for_port(
    port_name: str, proto: str, slices: Sequence[EndpointSlice]
) -> list[Backend]:
    """Ready endpoints of the slice port matching the service port (by name, as the
    EndpointSlice controller names them), deduplicated, sorted by address and port."""
    seen: dict[tuple[IPv4Address, int, int], Backend] = {}
    pnum = PROTOCOLS.get(proto, 0)
    for s in slices:
        for sp in s.ports:
            if sp.name != port_name or sp.protocol != proto or not sp.port:
                continue
            for e in s.endpoints:
                if e.ready:
                    b = Backend(e.address, sp.port, pnum, e.node)
                    seen.setdefault(b.key, b)
    return sorted(seen.values(), key=lambda b: (b.address, b.port))


@dataclass(frozen=True, slots=True)
class _Frontend:
    type: str
    address: str  # an IP, "0.0.0.0" or NODE_ADDRESS
    port: int
    flags: int
    north_south: bool


def _frontends(svc: Service) -> list[tuple[str, str, int, list[_Frontend]]]:
    """(port name, protocol, service port, frontends) per service port."""
    spec = svc.spec
    out: list[tuple[str, str, int, list[_Frontend]]] = []
    if (
        spec.type == "ExternalName"
        or spec.cluster_ip in ("None", "")
        or not _is_ipv4(spec.cluster_ip)
    ):
        return out
    for p in spec.ports:
        fes = [_Frontend("ClusterIP", spec.cluster_ip, p.port, 0, False)]
        if spec.type in ("NodePort", "LoadBalancer") and p.node_port:
            fes.append(_Frontend("NodePort", "0.0.0.0", p.node_port, SVC_FLAG_NODEPORT, True))
            fes.append(
                _Frontend(
                    "NodePort",
                    NODE_ADDRESS,
                    p.node_port,
                    SVC_FLAG_NODEPORT | SVC_FLAG_ROUTABLE,
                    True,
                )
            )
        if spec.type == "LoadBalancer":
            for ip in svc.load_balancer_ingress:
                if _is_ipv4(ip):
                    fes.append(
                        _Frontend(
                            "LoadBalancer",
                            ip,
                            p.port,
                            SVC_FLAG_LOADBALANCER | SVC_FLAG_ROUTABLE,
                            True,
                        )
                    )
        for ip in spec.external_ips:
            if _is_ipv4(ip):
                fes.append(
                    _Frontend(
                        "ExternalIPs", ip, p.port, SVC_FLAG_EXTERNAL_IP | SVC_FLAG_ROUTABLE, True
                    )
                )
        out.append((p.name, p.protocol, p.port, fes))
    return out


def _algorithm(svc: Service, config: ClusterConfig) -> tuple[bool, int]:
    """(use Maglev, algorithm bits for the master entry: 0 unless annotated)."""
    ann = svc.meta.annotations.get(LB_ALGORITHM_ANNOTATION, "")
    if ann == "maglev":
        return True, LB_ALG_MAGLEV
    if ann == "random":
        return False, LB_ALG_RANDOM
    return config.lb_algorithm == "maglev", 0


def compute_service_entries(
    svc: Service,
    slices: Sequence[EndpointSlice],
    nodes: Sequence[NodeInfo],
    config: ClusterConfig,
    alloc: Allocators,
    maglev_cache: dict[tuple[int, ...], tuple[int, ...]] | None = None,
) -> ServiceEntries:
    out = ServiceEntries(svc.key)
    spec = svc.spec
    use_maglev, alg_bits = _algorithm(svc, config)
    ext_local = spec.external_traffic_policy == "Local"
    int_local = spec.internal_traffic_policy == "Local"
    affinity = spec.session_affinity == "ClientIP"
    master_value = alg_bits << 24
    if affinity:
        master_value |= spec.session_affinity_timeout & AFFINITY_TIMEOUT_MASK
    seed = str((config.doc.get("cluster") or {}).get(MAGLEV_SEED_KEY, DEFAULT_HASH_SEED))
    cache = maglev_cache if maglev_cache is not None else {}

    for port_name, proto, _sport, fes in _frontends(svc):
        pnum = PROTOCOLS.get(proto, 0)
        backends = _backends_for_port(port_name, proto, slices)
        ids = [alloc.backends.get(b.key) for b in backends]
        for bid, b in zip(ids, backends, strict=True):
            out.backends[bid] = LB4Backend(b.address, b.port, b.proto)
        all_ids = tuple(ids)

        def ids_for(
            node: str, local: bool, _b: list[Backend] = backends, _ids: list[int] = ids
        ) -> tuple[int, ...]:
            if not local:
                return tuple(_ids)
            return tuple(i for i, b in zip(_ids, _b, strict=True) if b.node == node)

        def table(
            ids_: tuple[int, ...], _b: list[Backend] = backends, _ids: list[int] = ids
        ) -> tuple[int, ...]:
            if not ids_:
                return ()
            got = cache.get(ids_)
            if got is None:
                names = {i: b.name for i, b in zip(_ids, _b, strict=True)}
                got = compute_table([(i, names[i]) for i in ids_], config.maglev_table_size, seed)
                cache[ids_] = got
            return got

        for fe in fes:
            rn = alloc.rev_nat.get((svc.key, fe.type, fe.address, fe.port, proto))
            out.frontends[rn] = ServiceFrontend(
                rn, svc.key, fe.type, fe.address, fe.port, proto, port_name
            )
            flags = fe.flags | (SVC_FLAG_AFFINITY if affinity else 0)
            flags2 = 0
            two_scopes = fe.north_south and ext_local != int_local
            if fe.north_south:
                ext_scope_local = ext_local
                if ext_local:
                    flags |= SVC_FLAG_EXT_LOCAL_SCOPE
                if int_local:
                    flags2 |= SVC_FLAG2_INT_LOCAL_SCOPE
                if two_scopes:
                    flags2 |= SVC_FLAG2_TWO_SCOPES
            else:
                ext_scope_local = int_local  # ClusterIP: all traffic is east-west
                if int_local:
                    flags2 |= SVC_FLAG2_INT_LOCAL_SCOPE
            per_node = fe.address == NODE_ADDRESS or ext_scope_local or (two_scopes and int_local)
            scopes = [(LB_SCOPE_EXT, ext_scope_local)]
            if two_scopes:
                scopes.append((LB_SCOPE_INT, int_local))
            targets: list[tuple[str, str]] = (
                [
                    (n.name, str(n.internal_ip) if fe.address == NODE_ADDRESS else fe.address)
                    for n in nodes
                ]
                if per_node
                else [("", fe.address)]
            )
            for node_name, addr_text in targets:
                addr = parse_ipv4(addr_text) or IPv4Address(addr_text)
                entries: dict[LB4Key, LB4Service] = {}
                tables: dict[int, tuple[int, ...]] = {}
                for scope, local in scopes:
                    sel = ids_for(node_name, local) if node_name else all_ids
                    entries[LB4Key(addr, fe.port, 0, pnum, scope)] = LB4Service(
                        backend_id=master_value,
                        count=len(sel),
                        rev_nat_index=rn,
                        flags=flags,
                        flags2=flags2,
                    )
                    for slot, bid in enumerate(sel, start=1):
                        entries[LB4Key(addr, fe.port, slot, pnum, scope)] = LB4Service(
                            backend_id=bid, rev_nat_index=rn, flags=flags, flags2=flags2
                        )
                    if use_maglev and scope == LB_SCOPE_EXT:
                        tables[rn] = table(sel)
                revnat = LB4ReverseNat(addr, fe.port)
                if node_name:
                    out.node_services.setdefault(node_name, {}).update(entries)
                    out.node_revnat.setdefault(node_name, {})[rn] = revnat
                    if tables and tables[rn]:
                        out.node_maglev.setdefault(node_name, {}).update(tables)
                else:
                    out.shared_services.update(entries)
                    out.shared_revnat[rn] = revnat
                    if tables and tables[rn]:
                        out.shared_maglev.update(tables)
    return out


def merge_shared(
    entries: Iterable[ServiceEntries],
) -> tuple[
    dict[LB4Key, LB4Service],
    dict[int, LB4Backend],
    dict[int, LB4ReverseNat],
    dict[int, tuple[int, ...]],
    dict[int, ServiceFrontend],
]:
    svcs: dict[LB4Key, LB4Service] = {}
    backends: dict[int, LB4Backend] = {}
    revnat: dict[int, LB4ReverseNat] = {}
    maglev: dict[int, tuple[int, ...]] = {}
    frontends: dict[int, ServiceFrontend] = {}
    for e in entries:
        svcs.update(e.shared_services)
        backends.update(e.backends)
        revnat.update(e.shared_revnat)
        maglev.update(e.shared_maglev)
        frontends.update(e.frontends)
    return svcs, backends, revnat, maglev, frontends


NodeLB = tuple[dict[LB4Key, LB4Service], dict[int, LB4ReverseNat], dict[int, tuple[int, ...]]]


def merge_node(entries: Iterable[ServiceEntries], node: str) -> NodeLB:
    return merge_nodes(entries).get(node, ({}, {}, {}))


def merge_nodes(entries: Iterable[ServiceEntries]) -> dict[str, NodeLB]:
    """Per-node lb layers of all services, in one pass over the services."""
    out: dict[str, NodeLB] = {}
    for e in entries:
        for node, svcs in e.node_services.items():
            out.setdefault(node, ({}, {}, {}))[0].update(svcs)
        for node, rn in e.node_revnat.items():
            out.setdefault(node, ({}, {}, {}))[1].update(rn)
        for node, mg in e.node_maglev.items():
            out.setdefault(node, ({}, {}, {}))[2].update(mg)
    return out


def service_flag_names(svc: LB4Service) -> list[str]:
    """The agent's flag strings (§3.5): the type first, then the qualifiers."""
    f, f2 = svc.flags, svc.flags2
    if f & SVC_FLAG_EXTERNAL_IP:
        names = ["ExternalIPs"]
    elif f & SVC_FLAG_NODEPORT:
        names = ["NodePort"]
    elif f & SVC_FLAG_LOADBALANCER:
        names = ["LoadBalancer"]
    elif f & SVC_FLAG_HOSTPORT:
        names = ["HostPort"]
    else:
        names = ["ClusterIP"]
    if f & SVC_FLAG_EXT_LOCAL_SCOPE:
        names.append("Local")
    if f2 & SVC_FLAG2_INT_LOCAL_SCOPE:
        names.append("InternalLocal")
    if f2 & SVC_FLAG2_TWO_SCOPES:
        names.append("two-scopes")
    if f & SVC_FLAG_AFFINITY:
        names.append("sessionAffinity")
    if not f & SVC_FLAG_ROUTABLE:
        names.append("non-routable")
    return names


def seed_allocators(
    alloc: Allocators,
    backends: Mapping[int, LB4Backend],
    frontends: Mapping[int, ServiceFrontend],
) -> None:
    """Pin the IDs of a previous state so that they never move."""
    for bid, b in backends.items():
        alloc.backends.pin((b.address, b.port, b.proto), bid)
    for rn, fe in frontends.items():
        alloc.rev_nat.pin((fe.service, fe.type, fe.address, fe.port, fe.protocol), rn)
