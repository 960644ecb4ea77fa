"""The cluster configuration (../shared/examples/cluster.yaml is its format).

``cluster:`` holds name, nodeNetwork, podCIDR (cluster-pool, ``podCIDRMaskSize`` per
node, default 24), serviceCIDR, routing; ``nodes:`` the nodes with name, role,
internalIP and optional podCIDR and ciliumInternalIP. Optional knobs mirror Cilium's
agent flags (``policyEnforcement``, ``lbAlgorithm``, ``maglevTableSize``, ``clusterID``).
It is stored in the store as a cluster-scoped object of kind ``Cluster`` named
``cluster``.

Imports only ``model.meta`` and the standard library: the model is the bottom layer and
must not import anything above it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ciliate.model.meta import Doc

KIND_NODE_NETWORK = "172.18.0.0/16"
KIND_POD_CIDR = "10.10.0.0/16"
KIND_SERVICE_CIDR = "10.96.0.0/12"


@dataclass(frozen=True, slots=True)
class NodeConfig:
    name: str
    internal_ip: str
    role: str = "worker"  # control-plane | worker
    pod_cidr: str = ""  # "" = allocated from the cluster pool
    cilium_internal_ip: str = ""  # "" = allocated from the node's podCIDR
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    name: str
    node_network: str = KIND_NODE_NETWORK
    pod_cidr: str = KIND_POD_CIDR
    pod_cidr_mask_size: int = 24
    service_cidr: str = KIND_SERVICE_CIDR
    routing: str = "tunnel"  # tunnel (VXLAN) | native
    tunnel_protocol: str = "vxlan"
    mtu: int = 1500
    cluster_id: int = 0
    policy_enforcement: str = "default"  # default | always | never
    lb_algorithm: str = "random"  # random | maglev
    maglev_table_size: int = 16381
    node_port_range: tuple[int, int] = (30000, 32767)
    nodes: tuple[NodeConfig, ...] = ()
    doc: Doc = field(default_factory=dict, repr=False, compare=False)

    @property
    def tunnel_mtu(self) -> int:
        """MTU on routes toward remote pod CIDRs: 50 bytes of VXLAN overhead."""
        return self.mtu - 50

    @property
    def pod_mtu(self) -> int:
        """MTU of a pod's eth0: the device MTU (Cilium's DeviceMTU). What a pod *sends*
        is bounded per route instead (``pod_route_mtu``)."""
        return self.mtu

    @property
    def pod_route_mtu(self) -> int:
        """MTU on a pod's default route (Cilium's RouteMTU): the device MTU less the
        VXLAN overhead in tunnel mode, 0 (none) otherwise. The eBPF path redirects pod
        packets straight into cilium_vxlan, bypassing the node's routes (and their
        ``mtu 1450``), so without it the node would fragment every full-size segment
        sent to another node. Pods of the same node reach each other through a route
        to the node's pod CIDR without this limit (see ``control.endpoints.pod_routes``)."""
        return self.tunnel_mtu if self.routing == "tunnel" else 0

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> ClusterConfig:
        c = doc.get("cluster") or {}
        nodes = tuple(
            NodeConfig(
                name=str(n.get("name", "")),
                internal_ip=str(n.get("internalIP", "")),
                role=str(n.get("role", "worker") or "worker"),
                pod_cidr=str(n.get("podCIDR", "") or ""),
                cilium_internal_ip=str(n.get("ciliumInternalIP", "") or ""),
                labels={str(k): str(v) for k, v in (n.get("labels") or {}).items()},
            )
            for n in doc.get("nodes") or ()
        )
        npr = str(c.get("nodePortRange", "30000-32767"))
        lo, _, hi = npr.partition("-")
        return cls(
            name=str(c.get("name", "")),
            node_network=str(c.get("nodeNetwork", KIND_NODE_NETWORK)),
            pod_cidr=str(c.get("podCIDR", KIND_POD_CIDR)),
            pod_cidr_mask_size=int(c.get("podCIDRMaskSize", 24)),
            service_cidr=str(c.get("serviceCIDR", KIND_SERVICE_CIDR)),
            routing=str(c.get("routing", "tunnel")),
            tunnel_protocol=str(c.get("tunnelProtocol", "vxlan")),
            mtu=int(c.get("mtu", 1500)),
            cluster_id=int(c.get("clusterID", 0)),
            policy_enforcement=str(c.get("policyEnforcement", "default")),
            lb_algorithm=str(c.get("lbAlgorithm", "random")),
            maglev_table_size=int(c.get("maglevTableSize", 16381)),
            node_port_range=(int(lo), int(hi or lo)),
            nodes=nodes,
            doc=dict(doc),
        )

    def to_doc(self) -> Doc:
        """The cluster.yaml form (round-trips through ``from_doc``)."""
        c: dict[str, Any] = {
            "name": self.name,
            "nodeNetwork": self.node_network,
            "podCIDR": self.pod_cidr,
            "podCIDRMaskSize": self.pod_cidr_mask_size,
            "serviceCIDR": self.service_cidr,
            "routing": self.routing,
            "tunnelProtocol": self.tunnel_protocol,
            "mtu": self.mtu,
            "clusterID": self.cluster_id,
            "policyEnforcement": self.policy_enforcement,
            "lbAlgorithm": self.lb_algorithm,
            "maglevTableSize": self.maglev_table_size,
            "nodePortRange": f"{self.node_port_range[0]}-{self.node_port_range[1]}",
        }
        nodes: list[dict[str, Any]] = []
        for n in self.nodes:
            d: dict[str, Any] = {"name": n.name, "role": n.role, "internalIP": n.internal_ip}
            if n.pod_cidr:
                d["podCIDR"] = n.pod_cidr
            if n.cilium_internal_ip:
                d["ciliumInternalIP"] = n.cilium_internal_ip
            if n.labels:
                d["labels"] = dict(n.labels)
            nodes.append(d)
        return {"cluster": c, "nodes": nodes}


def kind_node_names(name: str, count: int) -> tuple[str, ...]:
    """kind's naming: NAME-control-plane, NAME-worker, NAME-worker2, ..."""
    names = [f"{name}-control-plane"]
    for i in range(1, count):
        names.append(f"{name}-worker" if i == 1 else f"{name}-worker{i}")
    return tuple(names)
