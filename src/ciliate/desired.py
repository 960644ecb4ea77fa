"""DesiredState: the contract between the control plane and the two datapaths.

What Cilium's agent on every node would program, as data: the ``cilium_lxc`` endpoint
map, ``cilium_ipcache``, per-endpoint policy maps, the lb4 service/backend/revNAT maps
and Maglev tables, plus the devices, addresses, routes and neighbours of nodes and pods.
The model datapath (``datapath.sim``) walks packets through exactly these entries and
the kernel datapath (``datapath.linux``) writes exactly these entries into BPF maps, so
the two cannot disagree about the state. ``diff(old, new)`` yields only changed entries.

Byte encoders (``build_*``/``parse_*`` in the sibling ``ciliate.codec``) reproduce
Cilium's layouts (../shared/reference/cilium.md §3) so ``bpf map lookup ... key hex ...``
reads the same in both datapaths; ``bpf/lib/*.h`` declares the same structs and a test
compares them with ``codec.STRUCT_LAYOUTS``.

Per-node maps are usually ``LayeredMap``s: one shared base (what every node holds
alike) under a small per-node layer. They read like dicts; never mutate a map taken
from a DesiredState (``layered`` builds a changed copy that shares the base).

Must import nothing but ``ciliate.model``, ``ciliate.layered`` and the standard library
(no I/O).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from ciliate.layered import LayeredMap as LayeredMap
from ciliate.layered import layered as layered

# --- identities (cilium.md §1.1) -------------------------------------------------------


class ReservedIdentity(enum.IntEnum):
    UNKNOWN = 0
    HOST = 1
    WORLD = 2
    UNMANAGED = 3
    HEALTH = 4
    INIT = 5
    REMOTE_NODE = 6
    KUBE_APISERVER = 7
    INGRESS = 8


MIN_USER_IDENTITY = 256
LOCAL_IDENTITY_SCOPE = 1 << 24  # CIDR identities: 1<<24 | n


@dataclass(frozen=True, slots=True)
class Identity:
    id: int
    labels: tuple[str, ...]  # sorted "source:key=value" strings


# --- cilium_lxc (cilium.md §3.1) -------------------------------------------------------

ENDPOINT_F_HOST = 0x1
ENDPOINT_F_ATHOSTNS = 0x2
ENDPOINT_KEY_IPV4 = 1  # endpoint_key.family / ipcache_key.family


@dataclass(frozen=True, slots=True, order=True)
class EndpointKey:
    ip: IPv4Address
    cluster_id: int = 0


@dataclass(frozen=True, slots=True)
class EndpointInfo:
    ifindex: int  # host-side veth ifindex (redirect target)
    lxc_id: int  # endpoint ID
    flags: int = 0
    mac: str = "00:00:00:00:00:00"  # pod-side MAC
    node_mac: str = "00:00:00:00:00:00"  # host-side (lxc) MAC
    sec_id: int = 0
    parent_ifindex: int = 0


# --- cilium_ipcache (cilium.md §3.2) ---------------------------------------------------

IPCACHE_F_SKIP_TUNNEL = 0x1
IPCACHE_F_HAS_TUNNEL_EP = 0x2
IPCACHE_F_REMOTE_CLUSTER = 0x8


@dataclass(frozen=True, slots=True, order=True)
class IPCacheKey:
    prefix: IPv4Network
    cluster_id: int = 0


@dataclass(frozen=True, slots=True)
class RemoteEndpointInfo:
    sec_identity: int
    tunnel_endpoint: IPv4Address | None = None
    flags: int = 0
    encrypt_key: int = 0


# --- per-endpoint policy map (cilium.md §3.3, §6.4) -------------------------------------


@dataclass(frozen=True, slots=True, order=True)
class PolicyKey:
    identity: int  # remote identity; 0 = any
    egress: bool
    protocol: int = 0  # IP proto; 0 = any (only with port 0 / prefix 0)
    dport: int = 0  # first port of the (aligned) block
    port_prefix_len: int = 0  # 0 = any port, 16 = exact port, between = aligned range

    @property
    def lpm_prefix_len(self) -> int:
        """Bits of proto+port in this entry: 0 any proto, 8 proto only, 8+n with a port."""
        if self.protocol == 0:
            return 0
        return 8 + self.port_prefix_len


@dataclass(frozen=True, slots=True)
class Provenance:
    """Which rule made an entry: policy kind/namespace/name, rule index, manifest line."""

    kind: str  # NetworkPolicy | CiliumNetworkPolicy | CiliumClusterwideNetworkPolicy | derived
    namespace: str
    name: str
    rule: str = ""  # e.g. "spec.ingress[0]" or "allow-any-ingress"
    file: str = ""
    line: int = 0


@dataclass(frozen=True, slots=True)
class L7Rule:
    """An L7 rule kept as data for a redirect entry (http or dns)."""

    kind: str  # http | dns
    method: str = ""
    path: str = ""
    host: str = ""
    headers: tuple[str, ...] = ()
    match_name: str = ""
    match_pattern: str = ""


@dataclass(frozen=True, slots=True)
class PolicyEntry:
    deny: bool = False
    proxy_port: int = 0  # != 0: redirect to the L7 proxy
    auth_type: int = 0
    l7_rules: tuple[L7Rule, ...] = ()
    provenance: tuple[Provenance, ...] = field(default=(), compare=False)
    proxy_port_priority: int = 0  # 1.18 policy_entry byte 4: higher wins among redirects
    cookie: int = 0  # 1.18 policy-log cookie


PolicyMap = Mapping[PolicyKey, PolicyEntry]

# --- load balancer (cilium.md §3.5, §7) ------------------------------------------------

SVC_FLAG_EXTERNAL_IP = 0x1
SVC_FLAG_NODEPORT = 0x2
SVC_FLAG_EXT_LOCAL_SCOPE = 0x4
SVC_FLAG_HOSTPORT = 0x8
SVC_FLAG_AFFINITY = 0x10
SVC_FLAG_LOADBALANCER = 0x20
SVC_FLAG_ROUTABLE = 0x40
SVC_FLAG2_INT_LOCAL_SCOPE = 0x10
SVC_FLAG2_TWO_SCOPES = 0x20
LB_ALG_RANDOM = 1
LB_ALG_MAGLEV = 2
LB_SCOPE_EXT = 0
LB_SCOPE_INT = 1


@dataclass(frozen=True, slots=True, order=True)
class LB4Key:
    address: IPv4Address
    dport: int
    backend_slot: int = 0
    proto: int = 0
    scope: int = LB_SCOPE_EXT


@dataclass(frozen=True, slots=True)
class LB4Service:
    backend_id: int = 0  # slot entries; in the master: affinity timeout | algorithm << 24
    count: int = 0
    rev_nat_index: int = 0
    flags: int = 0
    flags2: int = 0
    qcount: int = 0


@dataclass(frozen=True, slots=True)
class LB4Backend:
    address: IPv4Address
    port: int
    proto: int = 6
    flags: int = 0  # 0 active, 1 terminating, 2 quarantined, 3 maintenance
    cluster_id: int = 0
    zone: int = 0


@dataclass(frozen=True, slots=True)
class LB4ReverseNat:
    address: IPv4Address
    port: int


# --- devices, addresses, routes --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Device:
    name: str
    ifindex: int
    mac: str
    kind: str  # veth | vxlan | loopback | bridge
    mtu: int = 1500
    peer: str = ""  # "eth0@if7" style peer link shown by ip a
    peer_ifindex: int = 0
    addresses: tuple[str, ...] = ()  # CIDR strings, e.g. "10.10.2.205/32"
    programs: tuple[tuple[str, str], ...] = ()  # (direction ingress|egress, program name)


@dataclass(frozen=True, slots=True, order=True)
class Route:
    dst: str  # "default" or a CIDR / address
    dev: str
    via: str = ""
    src: str = ""
    proto: str = ""  # "kernel" or ""
    scope: str = ""  # "link" or ""
    mtu: int = 0


@dataclass(frozen=True, slots=True)
class Neighbor:
    ip: str
    mac: str
    dev: str


# --- endpoints, pods and nodes ---------------------------------------------------------
#
# Interface index plan. The kernel datapath creates every link WITH THESE INDEXES
# (netlink accepts a requested ifindex), so `ip a`, the ifindex in cilium_lxc and the
# model's view agree. Per network namespace:
#
#   node netns:  lo 1, eth0 2, cilium_net 3, cilium_host 4, cilium_vxlan 5,
#                lxc_health 6, pod lxc link of endpoint ID n: 2*n + 8 (8..8198)
#   pod netns:   lo 1, eth0 2*n + 7 (the endpoint ID's odd twin)
#   health netns: lo 1, eth0 5 (peer of lxc_health)
#
# The pair of a pod sits on consecutive numbers as when a veth pair is created in one
# namespace and one end moved, like on a real cluster (`eth0@if10` in the pod,
# `lxc…@if9` on the node). Both derive from the endpoint ID alone, so pods coming and
# going never renumber anybody else's links.

IFINDEX_LO = 1
IFINDEX_ETH0 = 2
IFINDEX_CILIUM_NET = 3
IFINDEX_CILIUM_HOST = 4
IFINDEX_CILIUM_VXLAN = 5
IFINDEX_LXC_HEALTH = 6
IFINDEX_HEALTH_ETH0 = 5


def lxc_ifindex(endpoint_id: int) -> int:
    """Node-side ifindex of a pod's lxc link."""
    return 2 * endpoint_id + 8


def pod_eth0_ifindex(endpoint_id: int) -> int:
    """ifindex of eth0 inside the pod's network namespace."""
    return 2 * endpoint_id + 7


class EndpointKind(enum.StrEnum):
    POD = "pod"
    HEALTH = "health"


@dataclass(frozen=True, slots=True)
class EndpointState:
    """A local endpoint of a node: one pod (or the health endpoint)."""

    id: int
    pod: str  # "namespace/name" ("" for the health endpoint)
    ip: IPv4Address
    identity: int
    lxc_name: str  # lxc + 12 hex
    lxc_ifindex: int
    lxc_mac: str
    pod_ifindex: int  # eth0 inside the pod netns
    pod_mac: str
    labels: tuple[str, ...] = ()
    ingress_enforced: bool = False
    egress_enforced: bool = False
    state: str = "ready"
    kind: EndpointKind = EndpointKind.POD


@dataclass(frozen=True, slots=True)
class PodNet:
    """What a pod network namespace holds: eth0, its routes and ARP table."""

    pod: str  # namespace/name
    node: str
    devices: tuple[Device, ...]
    routes: tuple[Route, ...]
    neighbors: tuple[Neighbor, ...] = ()


@dataclass(frozen=True, slots=True)
class NodeState:
    name: str
    internal_ip: IPv4Address
    node_prefix_len: int
    cilium_internal_ip: IPv4Address
    pod_cidr: IPv4Network
    health_ip: IPv4Address | None
    devices: tuple[Device, ...]
    routes: Sequence[Route]  # a tuple, or a sequence built on first read (equal to it)
    endpoints: Mapping[int, EndpointState]  # by endpoint ID
    lxc: Mapping[EndpointKey, EndpointInfo]
    ipcache: Mapping[IPCacheKey, RemoteEndpointInfo]
    policy: Mapping[int, PolicyMap]  # endpoint ID -> its policy map
    lb4_services: Mapping[LB4Key, LB4Service]
    lb4_backends: Mapping[int, LB4Backend]
    lb4_reverse_nat: Mapping[int, LB4ReverseNat]
    maglev: Mapping[int, tuple[int, ...]]  # rev_nat_index -> M backend IDs
    pods: Mapping[str, PodNet] = field(default_factory=dict)  # local pods by ns/name
    # The host endpoint (identity 1, reserved:host): listed by `endpoint list`; it has
    # no lxc link (its address lives on cilium_host) and no policy map here.
    host_endpoint_id: int = 0
    role: str = "worker"  # control-plane | worker
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ServiceFrontend:
    """What a rev_nat_index (Cilium's service ID) stands for: one frontend of a Service.
    ``address`` is the frontend IP, ``0.0.0.0`` for the NodePort surrogate, or
    ``<node>`` for the NodePort frontend on each node's own IP (one ID on every node)."""

    rev_nat_index: int
    service: str  # namespace/name
    type: str  # ClusterIP | NodePort | LoadBalancer | ExternalIPs
    address: str
    port: int
    protocol: str  # TCP | UDP | SCTP
    port_name: str = ""


@dataclass(frozen=True, slots=True)
class DesiredState:
    cluster: str
    nodes: Mapping[str, NodeState]
    identities: Mapping[int, Identity]
    revision: int = 0  # store resourceVersion it was computed from
    services: Mapping[int, ServiceFrontend] = field(default_factory=dict)  # by rev_nat_index


# --- deltas ---------------------------------------------------------------------------


class MapName(enum.StrEnum):
    LXC = "cilium_lxc"
    IPCACHE = "cilium_ipcache"
    LB4_SERVICES = "cilium_lb4_services_v2"
    LB4_BACKENDS = "cilium_lb4_backends_v3"
    LB4_REVERSE_NAT = "cilium_lb4_reverse_nat"
    LB4_MAGLEV = "cilium_lb4_maglev"
    POLICY = "cilium_policy_v2"  # + _%05d endpoint suffix


@dataclass(frozen=True, slots=True)
class MapChange:
    node: str
    map: str  # MapName value, policy maps with their endpoint suffix
    key: object
    value: object | None  # None = delete


def policy_map_name(endpoint_id: int) -> str:
    """``cilium_policy_v2_%05d``: the per-endpoint policy map's pinned name."""
    return f"{MapName.POLICY}_{endpoint_id:05d}"


def parse_policy_map_name(name: str) -> int | None:
    """The endpoint ID of ``cilium_policy_v2_NNNNN`` (or the ≤1.15 ``cilium_policy_NNNNN``)."""
    for prefix in (f"{MapName.POLICY}_", "cilium_policy_"):
        if name.startswith(prefix) and name[len(prefix) :].isdigit():
            return int(name[len(prefix) :])
    return None


# --- layered maps (ciliate.layered): re-exported, the per-node maps are built of them -----

# --- diff and apply ---------------------------------------------------------------------

_MISSING: Any = object()


def node_maps(node: NodeState) -> dict[str, Mapping[Any, Any]]:
    """Every BPF map of a node by its pinned name (policy maps one per endpoint)."""
    maps: dict[str, Mapping[Any, Any]] = {
        MapName.LXC.value: node.lxc,
        MapName.IPCACHE.value: node.ipcache,
        MapName.LB4_SERVICES.value: node.lb4_services,
        MapName.LB4_BACKENDS.value: node.lb4_backends,
        MapName.LB4_REVERSE_NAT.value: node.lb4_reverse_nat,
        MapName.LB4_MAGLEV.value: node.maglev,
    }
    for ep_id, pmap in node.policy.items():
        maps[policy_map_name(ep_id)] = pmap
    return maps


def _sort_key(k: object) -> tuple[str, object]:
    return (type(k).__name__, k)


def _changed_keys(
    old: Mapping[Any, Any], new: Mapping[Any, Any], memo: dict[tuple[int, int], set[Any]]
) -> set[Any]:
    """Keys whose presence or value may differ (a superset; the caller compares)."""
    if old is new:
        return set()
    memo_key = (id(old), id(new))
    if memo_key in memo:
        return memo[memo_key]
    keys: set[Any]
    if isinstance(old, LayeredMap) and isinstance(new, LayeredMap):
        keys = _changed_keys(old.base, new.base, memo) | old.own_keys | new.own_keys
    elif isinstance(new, LayeredMap) and new.base is old:
        keys = set(new.own_keys)
    elif isinstance(old, LayeredMap) and old.base is new:
        keys = set(old.own_keys)
    elif isinstance(new, LayeredMap) and isinstance(new.base, LayeredMap) and new.base.base is old:
        keys = set(new.own_keys | new.base.own_keys)
    else:
        keys = {k for k, v in new.items() if old.get(k, _MISSING) != v}
        keys.update(k for k in old if k not in new)
    memo[memo_key] = keys
    return keys


def diff_map(
    old: Mapping[Any, Any],
    new: Mapping[Any, Any],
    memo: dict[tuple[int, int], set[Any]] | None = None,
) -> list[tuple[Any, Any]]:
    """(key, new value or None) for every entry that differs, sorted by key."""
    out: list[tuple[Any, Any]] = []
    for k in _changed_keys(old, new, {} if memo is None else memo):
        nv = new.get(k, _MISSING)
        if nv is _MISSING:
            if k in old:
                out.append((k, None))
        elif old.get(k, _MISSING) != nv:
            out.append((k, nv))
    out.sort(key=lambda kv: _sort_key(kv[0]))
    return out


def diff(old: DesiredState, new: DesiredState) -> list[MapChange]:
    """Only the changed map entries, per node and map (nodes, then maps, by name).

    A node that disappears has all its entries deleted; a new node gets all of its
    entries. Devices, routes and endpoints are not map entries: compare them directly.
    """
    memo: dict[tuple[int, int], set[Any]] = {}
    empty: dict[str, Mapping[Any, Any]] = {}
    changes: list[MapChange] = []
    for name in sorted(set(old.nodes) | set(new.nodes)):
        o = old.nodes.get(name)
        n = new.nodes.get(name)
        if o is n:
            continue
        om = node_maps(o) if o is not None else empty
        nm = node_maps(n) if n is not None else empty
        for map_name in sorted(set(om) | set(nm)):
            for k, v in diff_map(om.get(map_name, {}), nm.get(map_name, {}), memo):
                changes.append(MapChange(name, map_name, k, v))
    return changes


def _empty_node(name: str) -> NodeState:
    return NodeState(
        name=name,
        internal_ip=IPv4Address(0),
        node_prefix_len=0,
        cilium_internal_ip=IPv4Address(0),
        pod_cidr=IPv4Network("0.0.0.0/32"),
        health_ip=None,
        devices=(),
        routes=(),
        endpoints={},
        lxc={},
        ipcache={},
        policy={},
        lb4_services={},
        lb4_backends={},
        lb4_reverse_nat={},
        maglev={},
    )


_FIELD_OF_MAP = {
    MapName.LXC.value: "lxc",
    MapName.IPCACHE.value: "ipcache",
    MapName.LB4_SERVICES.value: "lb4_services",
    MapName.LB4_BACKENDS.value: "lb4_backends",
    MapName.LB4_REVERSE_NAT.value: "lb4_reverse_nat",
    MapName.LB4_MAGLEV.value: "maglev",
}


def apply_delta(old: DesiredState, delta: Iterable[MapChange]) -> DesiredState:
    """``old`` with the map changes applied (map contents only: devices, routes and
    endpoints are kept from ``old``). ``apply_delta(a, diff(a, b))`` has b's maps."""
    grouped: dict[str, dict[str, tuple[dict[Any, Any], set[Any]]]] = {}
    for ch in delta:
        ups, dels = grouped.setdefault(ch.node, {}).setdefault(ch.map, ({}, set()))
        if ch.value is None:
            ups.pop(ch.key, None)
            dels.add(ch.key)
        else:
            dels.discard(ch.key)
            ups[ch.key] = ch.value
    nodes = dict(old.nodes)
    for node_name, per_map in grouped.items():
        node = nodes.get(node_name) or _empty_node(node_name)
        updates: dict[str, Any] = {}
        policy = dict(node.policy)
        for map_name, (ups, dels) in per_map.items():
            field_name = _FIELD_OF_MAP.get(map_name)
            if field_name is not None:
                updates[field_name] = layered(getattr(node, field_name), ups, dels)
                continue
            ep_id = parse_policy_map_name(map_name)
            if ep_id is None:
                raise ValueError(f"unknown map {map_name!r} in delta")
            pm = layered(policy.get(ep_id, {}), ups, dels)
            if len(pm):
                policy[ep_id] = pm
            else:
                policy.pop(ep_id, None)
        updates["policy"] = policy
        nodes[node_name] = replace(node, **updates)
    return replace(old, nodes=nodes)


def map_contents(state: DesiredState) -> dict[tuple[str, str], dict[Any, Any]]:
    """Every non-empty map of every node as plain dicts (for comparisons in tests)."""
    out: dict[tuple[str, str], dict[Any, Any]] = {}
    for name, node in state.nodes.items():
        for map_name, m in node_maps(node).items():
            if len(m):
                out[(name, map_name)] = dict(m.items())
    return out
