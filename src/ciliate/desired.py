"""DesiredState: the contract between the control plane and the two datapaths.

What Cilium's agent on every node would program, as data: the ``cilium_lxc`` endpoint
map, ``cilium_ipcache``, per-endpoint policy maps, the lb4 service/backend/revNAT maps
and Maglev tables, plus the devices, addresses, routes and neighbours of nodes and pods.
The model datapath (``datapath.sim``) walks packets through exactly these entries and
the kernel datapath (``datapath.linux``) writes exactly these entries into BPF maps, so
the two cannot disagree about the state. ``diff(old, new)`` yields only changed entries.

Byte encoders (``build_*``/``parse_*``) reproduce Cilium's layouts
(../shared/reference/cilium.md §3) so ``bpf map lookup ... key hex ...`` reads the same
in both datapaths; ``bpf/lib/*.h`` declares the same structs and a test compares them.

Must import nothing but ``ciliate.model`` and the standard library (no I/O).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

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
    routes: tuple[Route, ...]
    endpoints: Mapping[int, EndpointState]  # by endpoint ID
    lxc: Mapping[EndpointKey, EndpointInfo]
    ipcache: Mapping[IPCacheKey, RemoteEndpointInfo]
    policy: Mapping[int, PolicyMap]  # endpoint ID -> its policy map
    lb4_services: Mapping[LB4Key, LB4Service]
    lb4_backends: Mapping[int, LB4Backend]
    lb4_reverse_nat: Mapping[int, LB4ReverseNat]
    maglev: Mapping[int, tuple[int, ...]]  # rev_nat_index -> M backend IDs
    pods: Mapping[str, PodNet] = field(default_factory=dict)  # local pods by ns/name


@dataclass(frozen=True, slots=True)
class DesiredState:
    cluster: str
    nodes: Mapping[str, NodeState]
    identities: Mapping[int, Identity]
    revision: int = 0  # store resourceVersion it was computed from


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
