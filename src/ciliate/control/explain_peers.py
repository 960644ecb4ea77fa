"""Peers as the explain oracle matches them: does the other end of a connection (a pod,
the host or an outside address) match a NetworkPolicy peer or a Cilium rule element's
peers (endpoint selectors with fromRequires, entities, CIDRs, services, nodes)?

Input: the ``OracleCluster`` and one ``Endpoint``. Output: booleans. Choices:

- ipBlock of a NetworkPolicy matches a pod when its IP is inside (and outside the
  excepts) AND every pod sharing its security labels is inside too — the choice
  documented on ``rules.CIDRPeer`` (identity-keyed maps cannot split an identity).
- A CNP's endpoint selector without namespace or reserved keys selects pods of the
  policy's namespace only; a CCNP's, pods of any namespace (cilium.md §6.2).

Sans-IO; imports the model and ``control.selectors`` (label keys normalized to
``source:key``). Must not import ``control.rules``/``control.policy``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from ipaddress import IPv4Address, IPv4Network, ip_network
from typing import Any

from ciliate.control.explain_cluster import OracleCluster
from ciliate.control.explanation import Endpoint
from ciliate.control.selectors import normalize_key
from ciliate.model.cilium import CiliumPolicy, RuleElement
from ciliate.model.core import Service
from ciliate.model.meta import LabelSelector, Requirement
from ciliate.model.netpol import NetworkPolicy, NetworkPolicyPeer

NS_KEY = "k8s:io.kubernetes.pod.namespace"
NS_LABELS = "k8s:io.cilium.k8s.namespace.labels."


def np_peer_matches(
    cluster: OracleCluster, pol: NetworkPolicy, p: NetworkPolicyPeer, peer: Endpoint
) -> bool:
    """One ``from``/``to`` entry of a NetworkPolicy rule against the peer."""
    if p.ip_block is not None:
        net = parse_net(p.ip_block.cidr)
        exc = [parse_net(x) for x in p.ip_block.except_]
        if peer.kind == "world" and peer.ip is not None:
            return inside(peer.ip, net, exc)
        if peer.kind == "pod" and peer.pod is not None:
            members = cluster.identity_members.get(peer.name, [peer.name])
            return all(
                (ip := cluster.pod_ip.get(m)) is not None and inside(ip, net, exc) for m in members
            )
        return False
    if peer.kind != "pod" or peer.pod is None:
        return False
    pod = peer.pod
    if p.namespace_selector is None:
        if pod.meta.namespace != pol.meta.namespace:
            return False
    elif not p.namespace_selector.matches(cluster.namespace_labels_of(pod.meta.namespace)):
        return False
    return p.pod_selector is None or p.pod_selector.matches(pod.meta.labels)


def cnp_peer_matches(
    cluster: OracleCluster, pol: CiliumPolicy, el: RuleElement, peer: Endpoint
) -> bool:
    """Any of a Cilium rule element's peers against the peer (``entities: all`` is
    handled by the caller: it makes an L4-only entry, not an L3 one)."""
    labels = peer.labels
    for sel in el.endpoints or ():
        if _scoped_match(pol, sel, el.requires, peer):
            return True
    for ent in el.entities:
        if _entity_match(ent, peer, cluster.name):
            return True
    for c in el.cidrs:
        if (
            peer.kind == "world"
            and peer.ip is not None
            and inside(peer.ip, parse_net(c.cidr), [parse_net(x) for x in c.except_])
        ):
            return True
    for svc in el.services:
        if _service_backend(cluster, pol, svc, peer):
            return True
    return any("reserved:remote-node" in labels and match_sel(n, labels) for n in el.nodes)


def _scoped_match(
    pol: CiliumPolicy,
    sel: LabelSelector,
    requires: Iterable[LabelSelector],
    peer: Endpoint,
) -> bool:
    if not match_sel(sel, peer.labels):
        return False
    if not all(match_sel(r, peer.labels) for r in requires):
        return False
    keys = [normalize_key(r.key) for r in sel.requirements]
    for r in requires:
        keys.extend(normalize_key(x.key) for x in r.requirements)
    if any(k.startswith("reserved:") or k == NS_KEY or k.startswith(NS_LABELS) for k in keys):
        return True
    if peer.kind != "pod" or peer.pod is None:
        return False  # scoped to pods of a namespace (CNP) or of any namespace (CCNP)
    return pol.clusterwide or peer.pod.meta.namespace == pol.meta.namespace


def _service_backend(cluster: OracleCluster, pol: CiliumPolicy, ref: Any, peer: Endpoint) -> bool:
    """toServices: the peer is a backend of the named (or selected) service: a pod its
    selector matches, or for a selector-less service an address of its slices."""
    ns = ref.namespace or pol.meta.namespace or "default"
    svcs: list[Service] = []
    if ref.name:
        s = cluster.services.get(f"{ns}/{ref.name}")
        svcs = [] if s is None else [s]
    elif ref.selector is not None:
        svcs = [
            s
            for s in cluster.services.values()
            if s.meta.namespace == ns and ref.selector.matches(s.meta.labels)
        ]
    for svc in svcs:
        sel = svc.selector
        if sel is not None:
            if (
                peer.pod is not None
                and peer.pod.meta.namespace == ns
                and sel.matches(peer.pod.meta.labels)
            ):
                return True
            continue
        if peer.kind == "world" and peer.ip is not None:
            for sl in cluster.slices:
                m = sl.get("metadata") or {}
                if (
                    m.get("namespace") != ns
                    or (m.get("labels") or {}).get("kubernetes.io/service-name") != svc.meta.name
                ):
                    continue
                for ep in sl.get("endpoints") or ():
                    if str(peer.ip) in [str(a) for a in ep.get("addresses") or ()]:
                        return True
    return False


def match_sel(sel: LabelSelector, labels: Mapping[str, str]) -> bool:
    """A selector against identity labels, its keys normalized to ``source:key``."""
    for r in sel.requirements:
        if not Requirement(normalize_key(r.key), r.op, r.values).matches(labels):
            return False
    return True


def _entity_match(entity: str, peer: Endpoint, cluster: str) -> bool:
    if entity == "all":
        return True
    if entity in ("world", "world-ipv4"):
        return peer.kind == "world"
    if entity == "host":
        return peer.kind == "host"
    if entity == "cluster":
        if peer.kind == "host":
            return True
        return peer.labels.get("k8s:io.cilium.k8s.policy.cluster") == cluster
    return False


def parse_net(text: str) -> IPv4Network:
    """A CIDR as written; an invalid or IPv6 one matches nothing (255.255.255.255/32)."""
    try:
        net = ip_network(text, strict=False)
    except ValueError:
        return IPv4Network("255.255.255.255/32")
    return net if isinstance(net, IPv4Network) else IPv4Network("255.255.255.255/32")


def inside(ip: IPv4Address, net: IPv4Network, excepts: Sequence[IPv4Network]) -> bool:
    return ip in net and not any(ip in e for e in excepts)
