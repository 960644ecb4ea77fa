"""Nodes: what every Cilium node holds outside its BPF maps.

Inputs: v1 Node documents (spec.podCIDR, status.addresses InternalIP, the annotations
``network.cilium.io/ipv4-cilium-host`` = CiliumInternalIP and
``network.cilium.io/ipv4-health-ip``) and the ``ClusterConfig`` (its ``nodes:`` fill
what a Node document lacks, or stand in for Node documents that do not exist yet).
Outputs: ``NodeInfo`` per node, and per node its devices (ifindex plan in
``desired``), tc programs (cilium.md §4) and routes (networking101 EXPECTED.md).

Routing: tunnel mode (VXLAN) only: every pod CIDR, local or remote, is routed via the
local cilium_host address with ``proto kernel``; remote ones carry the tunnel MTU.

Sans-IO; imports only the model and ``desired``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from ciliate.desired import (
    IFINDEX_CILIUM_HOST,
    IFINDEX_CILIUM_NET,
    IFINDEX_CILIUM_VXLAN,
    IFINDEX_ETH0,
    IFINDEX_LO,
    Device,
    Route,
)
from ciliate.model.cluster import ClusterConfig, NodeConfig
from ciliate.model.core import Node
from ciliate.model.meta import Doc

ANNOTATION_CILIUM_HOST = "network.cilium.io/ipv4-cilium-host"
ANNOTATION_HEALTH_IP = "network.cilium.io/ipv4-health-ip"
CONTROL_PLANE_LABEL = "node-role.kubernetes.io/control-plane"

# tc programs per device, as `bpftool net show` lists them on a Cilium node (§4).
PROGRAMS_CILIUM_NET = (("ingress", "cil_to_host"),)
PROGRAMS_CILIUM_HOST = (("ingress", "cil_to_host"), ("egress", "cil_from_host"))
PROGRAMS_CILIUM_VXLAN = (("ingress", "cil_from_overlay"), ("egress", "cil_to_overlay"))
PROGRAMS_ETH0 = (("ingress", "cil_from_netdev"),)
PROGRAMS_LXC = (("ingress", "cil_from_container"),)


@dataclass(frozen=True, slots=True)
class NodeInfo:
    name: str
    internal_ip: IPv4Address
    node_prefix_len: int
    pod_cidr: IPv4Network
    cilium_internal_ip: IPv4Address
    health_ip: IPv4Address | None
    role: str = "worker"
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_control_plane(self) -> bool:
        return self.role == "control-plane"


def derived_mac(seed: str) -> str:
    """A stable, locally administered unicast MAC from a seed string."""
    b = bytearray(hashlib.sha256(seed.encode()).digest()[:6])
    b[0] = (b[0] & 0xFC) | 0x02
    return bytes(b).hex(":")


def _ip(text: str) -> IPv4Address | None:
    try:
        return IPv4Address(text.strip())
    except ValueError:
        return None


def _net(text: str) -> IPv4Network | None:
    try:
        return IPv4Network(text.strip(), strict=False)
    except ValueError:
        return None


def resolve_nodes(node_docs: Iterable[Doc], config: ClusterConfig) -> dict[str, NodeInfo]:
    """NodeInfo by name. Precedence per field: 1. the Node document (status address,
    spec.podCIDR, Cilium annotations), 2. the cluster config's node entry, 3. for the
    CiliumInternalIP only, the first address of the pod CIDR. A node without an
    internal IP or a pod CIDR has no pod networking yet and is left out."""
    node_net = _net(config.node_network) or IPv4Network("0.0.0.0/0")
    by_cfg: dict[str, NodeConfig] = {n.name: n for n in config.nodes}
    docs = {Node.from_doc(d).meta.name: Node.from_doc(d) for d in node_docs}
    out: dict[str, NodeInfo] = {}
    for name in sorted(set(docs) | set(by_cfg)):
        node = docs.get(name)
        cfg = by_cfg.get(name)
        ann: Mapping[str, str] = node.meta.annotations if node else {}
        ip = _ip(node.internal_ip) if node and node.internal_ip else None
        if ip is None and cfg is not None:
            ip = _ip(cfg.internal_ip)
        cidr = _net(node.pod_cidr) if node and node.pod_cidr else None
        if cidr is None and cfg is not None and cfg.pod_cidr:
            cidr = _net(cfg.pod_cidr)
        if ip is None or cidr is None:
            continue
        cip = _ip(ann.get(ANNOTATION_CILIUM_HOST, ""))
        if cip is None and cfg is not None and cfg.cilium_internal_ip:
            cip = _ip(cfg.cilium_internal_ip)
        if cip is None:
            cip = cidr.network_address + 1
        labels = dict(node.meta.labels) if node else dict(cfg.labels if cfg else {})
        role = cfg.role if cfg is not None else "worker"
        if CONTROL_PLANE_LABEL in labels:
            role = "control-plane"
        out[name] = NodeInfo(
            name=name,
            internal_ip=ip,
            node_prefix_len=node_net.prefixlen,
            pod_cidr=cidr,
            cilium_internal_ip=cip,
            health_ip=_ip(ann.get(ANNOTATION_HEALTH_IP, "")),
            role=role,
            labels=labels,
        )
    return out


def node_devices(info: NodeInfo, config: ClusterConfig) -> tuple[Device, ...]:
    """lo, eth0, cilium_net/cilium_host (a veth pair, the CiliumInternalIP as /32 on
    cilium_host), cilium_vxlan (external mode, MTU of the underlay). lxc links are
    added by the endpoints."""
    n = info.name
    host_mac = derived_mac(f"cilium_host:{n}")
    net_mac = derived_mac(f"cilium_net:{n}")
    return (
        Device("lo", IFINDEX_LO, "00:00:00:00:00:00", "loopback", 65536,
               addresses=("127.0.0.1/8",)),
        Device("eth0", IFINDEX_ETH0, derived_mac(f"eth0:{n}"), "veth", config.mtu,
               addresses=(f"{info.internal_ip}/{info.node_prefix_len}",),
               programs=PROGRAMS_ETH0),
        Device("cilium_net", IFINDEX_CILIUM_NET, net_mac, "veth", config.mtu,
               peer="cilium_host", peer_ifindex=IFINDEX_CILIUM_HOST,
               programs=PROGRAMS_CILIUM_NET),
        Device("cilium_host", IFINDEX_CILIUM_HOST, host_mac, "veth", config.mtu,
               peer="cilium_net", peer_ifindex=IFINDEX_CILIUM_NET,
               addresses=(f"{info.cilium_internal_ip}/32",),
               programs=PROGRAMS_CILIUM_HOST),
        Device("cilium_vxlan", IFINDEX_CILIUM_VXLAN, derived_mac(f"cilium_vxlan:{n}"), "vxlan",
               config.mtu, programs=PROGRAMS_CILIUM_VXLAN),
    )  # fmt: skip


def sorted_pod_cidrs(all_nodes: Sequence[NodeInfo]) -> list[tuple[str, str]]:
    """(pod CIDR text, node name) in address order: computed once per cluster."""
    nodes = sorted(all_nodes, key=lambda n: (n.pod_cidr.network_address, n.pod_cidr.prefixlen))
    return [(str(n.pod_cidr), n.name) for n in nodes]


def node_routes(
    info: NodeInfo,
    all_nodes: Sequence[NodeInfo],
    config: ClusterConfig,
    cidrs: Sequence[tuple[str, str]] | None = None,
) -> tuple[Route, ...]:
    """The node's routing table (EXPECTED.md): every pod CIDR via cilium_host with the
    tunnel MTU toward remote ones, the cilium_host address on link, the node network
    on eth0. ``cidrs`` (from ``sorted_pod_cidrs``) saves re-sorting per node."""
    cip = str(info.cilium_internal_ip)
    mtu = config.tunnel_mtu
    name = info.name
    routes = [
        Route(cidr, "cilium_host", cip, cip, "kernel", "", 0 if other == name else mtu)
        for cidr, other in (cidrs if cidrs is not None else sorted_pod_cidrs(all_nodes))
    ]
    routes.append(Route(dst=cip, dev="cilium_host", proto="kernel", scope="link"))
    node_net = IPv4Network(f"{info.internal_ip}/{info.node_prefix_len}", strict=False)
    routes.append(
        Route(
            dst=str(node_net), dev="eth0", src=str(info.internal_ip), proto="kernel", scope="link"
        )
    )
    return tuple(routes)
