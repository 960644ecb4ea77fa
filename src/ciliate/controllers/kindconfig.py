"""kind's own cluster file (``kind.x-k8s.io/v1alpha4`` ``Cluster``) as a cluster config.

Role: users who follow kind tutorials (the networking101 posts start from one) have a
file like::

    kind: Cluster
    apiVersion: kind.x-k8s.io/v1alpha4
    name: mycluster
    nodes:
    - role: control-plane
    - role: worker
    - role: worker
    networking:
      disableDefaultCNI: true
      podSubnet: 10.10.0.0/16
      serviceSubnet: 10.96.0.0/12

``cluster create -f`` accepts it too. The nodes are named and addressed as kind does
(NAME-control-plane, NAME-control-plane2 ..., NAME-worker, NAME-worker2 ...; node IPs
from 172.18.0.0/16 from .2 in file order), the pod subnet becomes the cluster pool with
a /24 per node, ``labels`` of a node are kept. Fields that only matter to docker or
kubeadm (image, extraMounts, extraPortMappings, kubeadmConfigPatches, ...) are
accepted and ignored; unknown fields and IPv6 are refused with their position.

Inputs: a parsed YAML document and its source map. Outputs: an unresolved
``ClusterConfig`` (``clusterconfig`` resolves and validates it) or diagnostics.
Must not import cli, agent, datapath or observe.
"""

from __future__ import annotations

from collections.abc import Mapping
from ipaddress import IPv4Network
from typing import Any

from ciliate.controllers.configcheck import ConfigChecker, kind_node_addresses
from ciliate.errors import Diagnostic
from ciliate.manifest.yaml import SourceMap
from ciliate.model.cluster import (
    KIND_NODE_NETWORK,
    KIND_POD_CIDR,
    KIND_SERVICE_CIDR,
    ClusterConfig,
    NodeConfig,
)

KIND_API_PREFIX = "kind.x-k8s.io/"
DEFAULT_KIND_NAME = "kind"

_TOP = frozenset(
    {"kind", "apiVersion", "name", "nodes", "networking", "featureGates", "runtimeConfig"}
    | {"kubeadmConfigPatches", "kubeadmConfigPatchesJSON6902", "containerdConfigPatches"}
    | {"containerdConfigPatchesJSON6902"}
)
_NODE = frozenset(
    {"role", "image", "labels", "extraMounts", "extraPortMappings", "kubeadmConfigPatches"}
    | {"kubeadmConfigPatchesJSON6902"}
)
_NETWORKING = frozenset(
    {"ipFamily", "apiServerAddress", "apiServerPort", "podSubnet", "serviceSubnet"}
    | {"disableDefaultCNI", "kubeProxyMode", "dnsSearch"}
)


def is_kind_config(data: Any) -> bool:
    return isinstance(data, Mapping) and str(data.get("apiVersion", "")).startswith(KIND_API_PREFIX)


def _numbered(base: str, i: int) -> str:
    return base if i == 1 else f"{base}{i}"


def from_kind_config(
    data: Mapping[str, Any], filename: str, source: SourceMap | None
) -> ClusterConfig | list[Diagnostic]:
    ck = ConfigChecker(filename, source)
    add = ck.add

    def keys(m: Mapping[str, Any], allowed: frozenset[str], path: str) -> None:
        ck.keys(m, allowed, path, where="in a kind cluster file")

    keys(data, _TOP, "")
    if data.get("kind") != "Cluster":
        add("kind", f'Unsupported value: "{data.get("kind")}": a kind file holds kind: Cluster')
    name = str(data.get("name") or DEFAULT_KIND_NAME)
    net = data.get("networking") or {}
    if not isinstance(net, Mapping):
        add("networking", "must be a mapping")
        net = {}
    keys(net, _NETWORKING, "networking")
    if net.get("ipFamily") not in (None, "ipv4"):
        add(
            "networking.ipFamily",
            f'Unsupported value: "{net.get("ipFamily")}": only ipv4 clusters are supported',
        )
    pods = str(net.get("podSubnet") or KIND_POD_CIDR)
    services = str(net.get("serviceSubnet") or KIND_SERVICE_CIDR)
    for field, value in (("podSubnet", pods), ("serviceSubnet", services)):
        try:
            IPv4Network(value)
        except ValueError as e:
            add(f"networking.{field}", f'invalid CIDR "{value}": {e}')
    raw_nodes = data.get("nodes")
    if raw_nodes is None:
        raw_nodes = [{"role": "control-plane"}]  # kind's default: one node
    if not isinstance(raw_nodes, list) or not raw_nodes:
        add("nodes", "must be a non-empty list")
        raw_nodes = []
    hosts = kind_node_addresses(KIND_NODE_NETWORK)
    counts = {"control-plane": 0, "worker": 0}
    nodes: list[NodeConfig] = []
    for i, n in enumerate(raw_nodes):
        path = f"nodes[{i}]"
        if not isinstance(n, Mapping):
            add(path, "must be a mapping")
            continue
        keys(n, _NODE, path)
        role = str(n.get("role") or "control-plane")  # kind's default role
        if role not in counts:
            add(
                f"{path}.role",
                f'Unsupported value: "{role}": supported values: "control-plane", "worker"',
            )
            continue
        counts[role] += 1
        labels = n.get("labels") or {}
        if not isinstance(labels, Mapping):
            add(f"{path}.labels", "must be a mapping")
            labels = {}
        nodes.append(
            NodeConfig(
                name=_numbered(f"{name}-{role}", counts[role]),
                internal_ip=str(next(hosts)),
                role=role,
                labels={str(k): str(v) for k, v in labels.items()},
            )
        )
    if raw_nodes and counts["control-plane"] == 0:
        add("nodes", "a kind cluster needs a control-plane node")
    if ck.diags:
        return ck.diags
    # kind lists control planes first in its node names' order; keep the file's order
    # for addresses (kind gives them in container start order: any order is faithful).
    return ClusterConfig(
        name=name,
        node_network=KIND_NODE_NETWORK,
        pod_cidr=str(IPv4Network(pods)),
        service_cidr=str(IPv4Network(services)),
        nodes=tuple(nodes),
    )
