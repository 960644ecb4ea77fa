"""Node objects of a cluster, as kind's kubelets and Cilium's agents register them.

Role: ``node_docs(config)`` gives the v1 Node of every configured node: labels
(kubernetes.io/hostname, kubernetes.io/os, kubernetes.io/arch, the control-plane role
label), kind's control-plane taint (only when there are workers, as kind does), spec.podCIDR(s), status addresses (InternalIP,
Hostname), a Ready condition, nodeInfo, and the annotations Cilium's agent writes
with the node's CiliumInternalIP (router IP on cilium_host) and health IP.

Inputs: the resolved cluster config. Outputs: documents. Pure.
"""

from __future__ import annotations

from typing import Any

from ciliate.control.ipam import (
    ANNOTATION_CILIUM_HOST_IP,
    ANNOTATION_HEALTH_IP,
    ANNOTATION_POD_CIDR,
    compute_node_ipam,
)
from ciliate.model.cluster import ClusterConfig
from ciliate.model.meta import Doc

CONTROL_PLANE_LABEL = "node-role.kubernetes.io/control-plane"
KUBELET_VERSION = "v1.31.0"


def node_docs(config: ClusterConfig) -> list[Doc]:
    plans = {p.node: p for p in compute_node_ipam(config)}
    # kind removes the control-plane taint when there is no worker, so that a
    # one-node cluster can run workloads.
    has_worker = any(n.role != "control-plane" for n in config.nodes)
    out: list[Doc] = []
    for n in config.nodes:
        plan = plans[n.name]
        labels: dict[str, str] = {
            "beta.kubernetes.io/arch": "amd64",
            "beta.kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "kubernetes.io/hostname": n.name,
            "kubernetes.io/os": "linux",
        }
        spec: dict[str, Any] = {
            "podCIDR": plan.cidr,
            "podCIDRs": [plan.cidr],
            "providerID": f"kind://docker/{config.name}/{n.name}",
        }
        if n.role == "control-plane":
            labels[CONTROL_PLANE_LABEL] = ""
            labels["node.kubernetes.io/exclude-from-external-load-balancers"] = ""
            if has_worker:
                spec["taints"] = [{"key": CONTROL_PLANE_LABEL, "effect": "NoSchedule"}]
        labels.update(n.labels)
        out.append(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": n.name,
                    "labels": labels,
                    "annotations": {
                        ANNOTATION_CILIUM_HOST_IP: plan.router_ip,
                        ANNOTATION_HEALTH_IP: plan.health_ip,
                        ANNOTATION_POD_CIDR: plan.cidr,
                        "node.alpha.kubernetes.io/ttl": "0",
                    },
                },
                "spec": spec,
                "status": {
                    "addresses": [
                        {"type": "InternalIP", "address": n.internal_ip},
                        {"type": "Hostname", "address": n.name},
                    ],
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "True",
                            "reason": "KubeletReady",
                            "message": "kubelet is posting ready status",
                        }
                    ],
                    "nodeInfo": {
                        "architecture": "amd64",
                        "operatingSystem": "linux",
                        "osImage": "Debian GNU/Linux 12 (bookworm)",
                        "kernelVersion": "6.1.0",
                        "containerRuntimeVersion": "containerd://1.7.18",
                        "kubeletVersion": KUBELET_VERSION,
                        "kubeProxyVersion": KUBELET_VERSION,
                    },
                },
            }
        )
    return out
