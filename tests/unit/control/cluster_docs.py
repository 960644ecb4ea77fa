"""Store documents for control-plane tests, built directly (no controllers needed):
Nodes with Cilium's annotations, pods with spec.nodeName/status.podIP, Services with
allocated clusterIP/nodePorts, EndpointSlices."""

from __future__ import annotations

from typing import Any

from ciliate.model.cluster import ClusterConfig
from ciliate.model.meta import Doc

CLUSTER_YAML: dict[str, Any] = {
    "cluster": {
        "name": "mycluster",
        "nodeNetwork": "172.18.0.0/16",
        "podCIDR": "10.10.0.0/16",
        "serviceCIDR": "10.96.0.0/12",
        "routing": "tunnel",
    },
    "nodes": [
        {"name": "mycluster-control-plane", "role": "control-plane", "internalIP": "172.18.0.3",
         "podCIDR": "10.10.0.0/24", "ciliumInternalIP": "10.10.0.54"},
        {"name": "mycluster-worker", "internalIP": "172.18.0.2", "podCIDR": "10.10.2.0/24",
         "ciliumInternalIP": "10.10.2.205"},
        {"name": "mycluster-worker2", "internalIP": "172.18.0.4", "podCIDR": "10.10.1.0/24",
         "ciliumInternalIP": "10.10.1.55"},
    ],
}  # fmt: skip

HEALTH = {"mycluster-control-plane": "10.10.0.77", "mycluster-worker": "10.10.2.36",
          "mycluster-worker2": "10.10.1.140"}  # fmt: skip


def config(**over: Any) -> ClusterConfig:
    doc = {"cluster": {**CLUSTER_YAML["cluster"], **over}, "nodes": CLUSTER_YAML["nodes"]}
    return ClusterConfig.from_doc(doc)


def node_docs(cfg: ClusterConfig) -> list[Doc]:
    out: list[Doc] = []
    for n in cfg.nodes:
        labels = {"kubernetes.io/hostname": n.name}
        if n.role == "control-plane":
            labels["node-role.kubernetes.io/control-plane"] = ""
        out.append({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": n.name, "labels": labels, "annotations": {
                "network.cilium.io/ipv4-cilium-host": n.cilium_internal_ip,
                "network.cilium.io/ipv4-health-ip": HEALTH.get(n.name, ""),
            }},
            "spec": {"podCIDR": n.pod_cidr},
            "status": {"addresses": [{"type": "InternalIP", "address": n.internal_ip},
                                     {"type": "Hostname", "address": n.name}]},
        })  # fmt: skip
    return out


def namespace(name: str, labels: dict[str, str] | None = None) -> Doc:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name,
                                                  **(labels or {})}}}  # fmt: skip


def pod(
    ns: str,
    name: str,
    node: str,
    ip: str,
    labels: dict[str, str],
    ports: list[dict[str, Any]] | None = None,
    ready: bool = True,
) -> Doc:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x",
                                                   "ports": ports or []}]},
        "status": {"phase": "Running", "podIP": ip,
                   "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }  # fmt: skip


def networking101() -> list[Doc]:
    """The pods of examples/networking101 on the nodes and IPs of the blog."""
    return [
        namespace("networking101"),
        pod("networking101", "busybox-6f8c5b7d9-abcde", "mycluster-worker2", "10.10.1.164",
            {"app": "busybox", "pod-template-hash": "6f8c5b7d9"}),
        pod("networking101", "busybox-6f8c5b7d9-fghij", "mycluster-worker", "10.10.2.117",
            {"app": "busybox", "pod-template-hash": "6f8c5b7d9"}),
        pod("networking101", "netshoot-7d9c8b6f5-klmno", "mycluster-worker", "10.10.2.121",
            {"app": "netshoot", "pod-template-hash": "7d9c8b6f5"}),
        pod("networking101", "netshoot-7d9c8b6f5-pqrst", "mycluster-worker2", "10.10.1.155",
            {"app": "netshoot", "pod-template-hash": "7d9c8b6f5"}),
    ]  # fmt: skip


def service(
    ns: str,
    name: str,
    cluster_ip: str,
    ports: list[dict[str, Any]],
    selector: dict[str, str] | None = None,
    type_: str = "ClusterIP",
    lb_ingress: list[str] | None = None,
    annotations: dict[str, str] | None = None,
    **spec: Any,
) -> Doc:
    d: Doc = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": ns, "annotations": annotations or {}},
        "spec": {"type": type_, "clusterIP": cluster_ip, "ports": ports,
                 "selector": selector, **spec},
    }  # fmt: skip
    if lb_ingress:
        d["status"] = {"loadBalancer": {"ingress": [{"ip": ip} for ip in lb_ingress]}}
    return d


def endpoint_slice(
    ns: str,
    svc: str,
    endpoints: list[tuple[str, str, bool]],
    ports: list[dict[str, Any]],
    name: str = "",
) -> Doc:
    """endpoints: (ip, nodeName, ready)."""
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name or f"{svc}-abcde", "namespace": ns,
                     "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip], "nodeName": node, "conditions": {"ready": ready}}
                      for ip, node, ready in endpoints],
        "ports": ports,
    }  # fmt: skip
