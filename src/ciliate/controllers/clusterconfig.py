"""The cluster config: load and validate cluster.yaml, build kind-style clusters, and
keep the config in the store.

Role: ``load_cluster_file`` / ``parse_cluster_text`` turn the cluster.yaml format
(../shared/examples/cluster.yaml; ``model.cluster`` documents it), or a kind cluster
file (``kindconfig``), into a ``ClusterConfig``, collecting every problem as a
``Diagnostic`` with file:line:col before failing (``configcheck``, shared by both); ``kind_cluster`` builds the config kind would give a cluster of N
nodes; ``cluster_doc`` / ``get_cluster_config`` store and read it as the
cluster-scoped object ``Cluster/cluster``.

Inputs: YAML text (through ``manifest.yaml`` for positions), the store.
Outputs: ``ClusterConfig`` values (podCIDRs and CiliumInternalIPs resolved by
``control.ipam.resolve_config``), ``DiagnosticError`` on bad input.
Must not import cli, agent, datapath or observe.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from ciliate.control.ipam import IPAMError, resolve_config
from ciliate.controllers.configcheck import (
    DNS1123_LABEL,
    DNS1123_SUBDOMAIN,
    ConfigChecker,
    is_kind_cluster_name,
    kind_node_addresses,
    type_name,
)
from ciliate.controllers.kindconfig import from_kind_config, is_kind_config
from ciliate.errors import Diagnostic, DiagnosticError, NotFoundError
from ciliate.manifest.yaml import SourceMap, load_yaml
from ciliate.model.cluster import (
    KIND_NODE_NETWORK,
    KIND_POD_CIDR,
    KIND_SERVICE_CIDR,
    ClusterConfig,
    NodeConfig,
    kind_node_names,
)
from ciliate.model.meta import Doc
from ciliate.store.api import ObjectKey, Store

CLUSTER_API_VERSION = "ciliate.io/v1"
CLUSTER_KIND = "Cluster"
CLUSTER_OBJECT_NAME = "cluster"
CLUSTER_KEY = ObjectKey(CLUSTER_KIND, "", CLUSTER_OBJECT_NAME)

# Cilium accepts only these Maglev table sizes (bpf-lb-maglev-table-size; cilium.md §7.2).
MAGLEV_PRIMES = (251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071)
ROUTING_MODES = ("tunnel", "native")
TUNNEL_PROTOCOLS = ("vxlan", "geneve")
POLICY_ENFORCEMENT_MODES = ("default", "always", "never")
LB_ALGORITHMS = ("random", "maglev")
NODE_ROLES = ("control-plane", "worker")

_TOP_KEYS = frozenset({"cluster", "nodes"})
_CLUSTER_KEYS = frozenset(
    {
        "name",
        "nodeNetwork",
        "podCIDR",
        "podCIDRMaskSize",
        "serviceCIDR",
        "routing",
        "tunnelProtocol",
        "mtu",
        "clusterID",
        "policyEnforcement",
        "lbAlgorithm",
        "maglevTableSize",
        "nodePortRange",
    }
)
_NODE_KEYS = frozenset({"name", "role", "internalIP", "podCIDR", "ciliumInternalIP", "labels"})


def validate_cluster(
    data: Any, filename: str = "<input>", source: SourceMap | None = None
) -> ClusterConfig:
    """Check a parsed cluster.yaml document; return the resolved config or raise
    ``DiagnosticError`` with every problem found."""
    ck = ConfigChecker(filename, source)
    if is_kind_config(data):
        return _from_kind(ck, data)
    top = ck.mapping(data, "")
    if top is None:
        if data is None:
            ck.add("", "the cluster file is empty")
        raise DiagnosticError(ck.diags)
    ck.keys(top, _TOP_KEYS, "")
    c = ck.mapping(top.get("cluster"), "cluster") or {}
    if "cluster" not in top:
        ck.add("cluster", "required field is missing")
    ck.keys(c, _CLUSTER_KEYS, "cluster")

    name = ck.string(c, "name", "cluster", required="cluster" in top)
    if name and not (len(name) <= 63 and DNS1123_LABEL.match(name)):
        ck.add(
            "cluster.name",
            f'Invalid value: "{name}": a lowercase RFC 1123 label must consist of lower case '
            "alphanumeric characters or '-', and must start and end with an alphanumeric "
            "character",
        )
    node_net = ck.cidr(ck.string(c, "nodeNetwork", "cluster"), "cluster.nodeNetwork")
    pool = ck.cidr(ck.string(c, "podCIDR", "cluster"), "cluster.podCIDR")
    svc = ck.cidr(ck.string(c, "serviceCIDR", "cluster"), "cluster.serviceCIDR")
    if node_net is None and "nodeNetwork" not in c:
        node_net = IPv4Network(KIND_NODE_NETWORK)
    if pool is None and "podCIDR" not in c:
        pool = IPv4Network(KIND_POD_CIDR)
    if svc is None and "serviceCIDR" not in c:
        svc = IPv4Network(KIND_SERVICE_CIDR)
    mask = ck.integer(c, "podCIDRMaskSize", "cluster", 1, 32)
    if pool is not None and mask is not None and mask < pool.prefixlen:
        ck.add(
            "cluster.podCIDRMaskSize",
            f"Invalid value: {mask}: must not be shorter than the pool's /{pool.prefixlen}",
        )
    nets = [("cluster.nodeNetwork", node_net), ("cluster.podCIDR", pool)]
    nets.append(("cluster.serviceCIDR", svc))
    for i, (pa, na) in enumerate(nets):
        for pb, nb in nets[i + 1 :]:
            if na is not None and nb is not None and na.overlaps(nb):
                ck.add(pb, f"{nb} overlaps {pa.split('.')[-1]} {na}")
    ck.choice(c, "routing", "cluster", ROUTING_MODES)
    ck.choice(c, "tunnelProtocol", "cluster", TUNNEL_PROTOCOLS)
    ck.choice(c, "policyEnforcement", "cluster", POLICY_ENFORCEMENT_MODES)
    ck.choice(c, "lbAlgorithm", "cluster", LB_ALGORITHMS)
    ck.integer(c, "mtu", "cluster", 1280, 65535)
    ck.integer(c, "clusterID", "cluster", 0, 255)
    mts = c.get("maglevTableSize")
    if mts is not None and (isinstance(mts, bool) or mts not in MAGLEV_PRIMES):
        ck.add(
            "cluster.maglevTableSize",
            f"Unsupported value: {mts}: must be one of Cilium's primes "
            + ", ".join(str(p) for p in MAGLEV_PRIMES),
        )
    npr = c.get("nodePortRange")
    if npr is not None:
        m = re.fullmatch(r"(\d+)-(\d+)", str(npr).strip())
        if not m or not 1 <= int(m.group(1)) <= int(m.group(2)) <= 65535:
            ck.add(
                "cluster.nodePortRange",
                f'Invalid value: "{npr}": must be "FROM-TO" with 1 <= FROM <= TO <= 65535',
            )

    _check_nodes(ck, top, node_net, pool)
    if ck.diags:
        raise DiagnosticError(sorted(ck.diags, key=lambda d: (d.line, d.col)))
    config = ClusterConfig.from_doc(top)
    try:
        return resolve_config(config)
    except IPAMError as e:
        raise DiagnosticError([_diag(ck, "cluster.podCIDR", str(e))]) from e


def _from_kind(ck: ConfigChecker, data: Mapping[str, Any]) -> ClusterConfig:
    """A kind cluster file (``kindconfig``), with the checks both formats share."""
    got = from_kind_config(data, ck.filename, ck.source)
    if isinstance(got, list):
        raise DiagnosticError(sorted(got, key=lambda d: (d.line, d.col)))
    if not is_kind_cluster_name(got.name):
        ck.add("name", f'Invalid value: "{got.name}": must be a lowercase RFC 1123 label')
    pods, services = IPv4Network(got.pod_cidr), IPv4Network(got.service_cidr)
    if pods.overlaps(services):
        ck.add("networking.serviceSubnet", f"{services} overlaps podSubnet {pods}")
    if ck.diags:
        raise DiagnosticError(ck.diags)
    try:
        return resolve_config(got)
    except IPAMError as e:
        raise DiagnosticError([_diag(ck, "networking.podSubnet", str(e))]) from e


def _diag(ck: ConfigChecker, path: str, reason: str) -> Diagnostic:
    ck.add(path, reason)
    return ck.diags[-1]


def _check_nodes(
    ck: ConfigChecker,
    top: Mapping[str, Any],
    node_net: IPv4Network | None,
    pool: IPv4Network | None,
) -> None:
    nodes = top.get("nodes")
    if nodes is None or nodes == []:
        ck.add("nodes", "a cluster needs at least one node")
        return
    if not isinstance(nodes, list):
        ck.add("nodes", f"must be a list, not {type_name(nodes)}")
        return
    names: dict[str, str] = {}
    ips: dict[IPv4Address, str] = {}
    cidrs: list[tuple[IPv4Network, str]] = []
    for i, raw in enumerate(nodes):
        p = f"nodes[{i}]"
        n = ck.mapping(raw, p)
        if n is None:
            if raw is None:
                ck.add(p, "must be a mapping, not null")
            continue
        ck.keys(n, _NODE_KEYS, p)
        name = ck.string(n, "name", p, required=True)
        if name:
            if not (len(name) <= 253 and DNS1123_SUBDOMAIN.match(name)):
                ck.add(f"{p}.name", f'Invalid value: "{name}": must be a DNS-1123 subdomain')
            if name in names:
                ck.add(f"{p}.name", f'Duplicate value: "{name}" (also {names[name]}.name)')
            else:
                names[name] = p
        ck.choice(n, "role", p, NODE_ROLES)
        ip = ck.address(ck.string(n, "internalIP", p, required=True), f"{p}.internalIP")
        if ip is not None:
            if node_net is not None and ip not in node_net:
                ck.add(f"{p}.internalIP", f"{ip} is outside the node network {node_net}")
            if ip in ips:
                ck.add(f"{p}.internalIP", f'Duplicate value: "{ip}" (also {ips[ip]}.internalIP)')
            else:
                ips[ip] = p
        cidr = ck.cidr(ck.string(n, "podCIDR", p), f"{p}.podCIDR")
        if cidr is not None:
            if pool is not None and not cidr.subnet_of(pool):
                ck.add(f"{p}.podCIDR", f"{cidr} is outside the pod CIDR pool {pool}")
            elif cidr.prefixlen > 30:
                ck.add(f"{p}.podCIDR", f"{cidr} is too small for a router and a health IP")
            for other, op in cidrs:
                if cidr.overlaps(other):
                    ck.add(f"{p}.podCIDR", f"{cidr} overlaps {op}.podCIDR {other}")
            cidrs.append((cidr, p))
        cip = ck.address(ck.string(n, "ciliumInternalIP", p), f"{p}.ciliumInternalIP")
        if cip is not None:
            if cidr is None and "podCIDR" not in n:
                ck.add(
                    f"{p}.ciliumInternalIP",
                    "a ciliumInternalIP needs the node's podCIDR to be given too",
                )
            elif cidr is not None and (
                cip not in cidr
                or (cidr.prefixlen < 31 and cip in (cidr.network_address, cidr.broadcast_address))
            ):
                ck.add(
                    f"{p}.ciliumInternalIP",
                    f"{cip} is not a usable address of the node's podCIDR {cidr}",
                )
        labels = ck.mapping(n.get("labels"), f"{p}.labels") or {}
        for k, v in labels.items():
            if not isinstance(v, str | int | float | bool) or isinstance(v, bool):
                ck.add(f"{p}.labels.{k}", "label values must be strings")


def parse_cluster_text(text: str | bytes, filename: str = "<input>") -> ClusterConfig:
    """Parse and validate cluster.yaml text (one document)."""
    result = load_yaml(text, filename)
    if result.diagnostics:
        raise DiagnosticError(result.diagnostics)
    if not result.docs:
        raise DiagnosticError([Diagnostic("the cluster file is empty", file=filename)])
    if len(result.docs) > 1:
        second = result.docs[1].source.start_line
        raise DiagnosticError(
            [
                Diagnostic(
                    "a cluster file holds exactly one YAML document",
                    file=filename,
                    line=second,
                    col=1,
                )
            ]
        )
    doc = result.docs[0]
    return validate_cluster(doc.value, filename, doc.source)


def load_cluster_file(path: str | Path) -> ClusterConfig:
    """Read, parse and validate a cluster file (``-`` is not handled here)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise NotFoundError(f"cannot read {p}: {e.strerror or e}") from e
    return parse_cluster_text(data, str(path))


def kind_cluster(
    name: str,
    nodes: int = 3,
    *,
    node_network: str = KIND_NODE_NETWORK,
    pod_cidr: str = KIND_POD_CIDR,
    service_cidr: str = KIND_SERVICE_CIDR,
    routing: str = "tunnel",
) -> ClusterConfig:
    """The cluster ``kind create cluster --name NAME`` with N nodes would give.

    Names follow kind (NAME-control-plane, NAME-worker, NAME-worker2, ...); node IPs
    are handed out from the node network in that order starting at .2 (the first
    host, .1, is the docker bridge's gateway); podCIDRs are carved per node.
    """
    if nodes < 1:
        raise DiagnosticError([Diagnostic(f"--nodes must be at least 1, not {nodes}")])
    ck = ConfigChecker("<flags>", None)
    if not (len(name) <= 50 and DNS1123_LABEL.match(name)):
        ck.add("name", f'Invalid value: "{name}": must be a lowercase RFC 1123 label')
        raise DiagnosticError(ck.diags)
    net = IPv4Network(node_network)
    hosts = kind_node_addresses(node_network)
    node_cfgs: list[NodeConfig] = []
    for i, node_name in enumerate(kind_node_names(name, nodes)):
        try:
            ip = next(hosts)
        except StopIteration:
            raise DiagnosticError(
                [Diagnostic(f"the node network {net} cannot hold {nodes} nodes")]
            ) from None
        role = "control-plane" if i == 0 else "worker"
        node_cfgs.append(NodeConfig(name=node_name, internal_ip=str(ip), role=role))
    raw = ClusterConfig(
        name=name,
        node_network=str(net),
        pod_cidr=pod_cidr,
        service_cidr=service_cidr,
        routing=routing,
        nodes=tuple(node_cfgs),
    )
    try:
        return resolve_config(raw)
    except IPAMError as e:
        raise DiagnosticError([Diagnostic(str(e))]) from e


def cluster_doc(config: ClusterConfig) -> Doc:
    """The store object holding the config."""
    return {
        "apiVersion": CLUSTER_API_VERSION,
        "kind": CLUSTER_KIND,
        "metadata": {"name": CLUSTER_OBJECT_NAME},
        "spec": config.to_doc(),
    }


def config_from_doc(doc: Mapping[str, Any]) -> ClusterConfig:
    return ClusterConfig.from_doc(doc.get("spec") or {})


def get_cluster_config(store: Store, where: str = "") -> ClusterConfig:
    """The cluster of this store; ``NotFoundError`` when there is none.

    ``where`` names the state directory in the message; by default it is the directory
    of an embedded store's file when the backend has one (``path``)."""
    doc = store.get(CLUSTER_KEY)
    if doc is None:
        if not where:
            path = getattr(store, "path", None)
            where = str(Path(path).parent) if path is not None else "the state directory"
        raise NotFoundError(f"no cluster in {where}: run `ciliate cluster create`")
    return config_from_doc(doc)


def find_cluster_config(store: Store) -> ClusterConfig | None:
    doc = store.get(CLUSTER_KEY)
    return None if doc is None else config_from_doc(doc)
