"""Peer resolution that depends on more than labels: CIDR blocks and Kubernetes
services (cilium.md §6.3 "CIDR rules", "toServices").

Pure functions over the compiler's state, passed in explicitly:

- ``cidr_peer_ids``: a CIDR peer selects the local CIDR identities whose prefix lies
  inside it (and not inside an except), ``reserved:world`` for 0.0.0.0/0, and — for a
  Kubernetes ipBlock — every pod identity whose pods ALL have addresses inside
  (``rules.CIDRPeer.match_pods`` documents that choice).
- ``service_peer_ids``: the backends of the named (or label-selected) services: pod
  identities for services with a selector, the CIDR identities of the EndpointSlice
  addresses for services without one.

Sans-IO; imports the model, ``desired`` and ``control.rules``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from ipaddress import IPv4Address, IPv4Network

from ciliate.control import rules as R
from ciliate.desired import Identity, ReservedIdentity
from ciliate.model.core import Pod, Service
from ciliate.model.meta import Doc

WORLD_NET = IPv4Network("0.0.0.0/0")


def cidr_peer_ids(
    c: R.CIDRPeer,
    cidr_identities: Mapping[IPv4Network, Identity],
    ident_pods: Mapping[int, Iterable[str]],
    pod_ip: Mapping[str, IPv4Address],
) -> set[int]:
    out: set[int] = set()
    if c.net == WORLD_NET and not any(c.net == e for e in c.excepts):
        out.add(int(ReservedIdentity.WORLD))
    for net, cident in cidr_identities.items():
        if c.contains(net):
            out.add(cident.id)
    if c.match_pods:
        base, mask = int(c.net.network_address), int(c.net.netmask)
        exc = [(int(e.network_address), int(e.netmask)) for e in c.excepts]
        for ident, members in ident_pods.items():
            if ident not in out and members and identity_inside(members, pod_ip, base, mask, exc):
                out.add(ident)
    return out


def identity_inside(
    members: Iterable[str],
    pod_ip: Mapping[str, IPv4Address],
    base: int,
    mask: int,
    exc: Sequence[tuple[int, int]],
) -> bool:
    """Every pod of an identity has an address inside the block and outside the excepts
    (integer arithmetic: this runs for every identity of every pod-matching ipBlock)."""
    for p in members:
        ip = pod_ip.get(p)
        if ip is None:
            return False
        n = int(ip)
        if n & mask != base or any(n & m == b for b, m in exc):
            return False
    return True


def services_of(s: R.ServicePeer, services: Mapping[str, Service]) -> list[Service]:
    if s.name:
        svc = services.get(f"{s.namespace}/{s.name}")
        return [] if svc is None else [svc]
    if s.selector is None:
        return []
    return [
        svc
        for svc in services.values()
        if svc.meta.namespace == s.namespace and s.selector.matches(svc.meta.labels)
    ]


def selectorless_service_nets(
    s: R.ServicePeer, services: Mapping[str, Service], slices: Sequence[Doc]
) -> list[IPv4Network]:
    """/32 prefixes of the EndpointSlice addresses of the selector-less services."""
    out: list[IPv4Network] = []
    for svc in services_of(s, services):
        if svc.spec.selector is not None:
            continue
        for sl in slices:
            m = sl.get("metadata") or {}
            labels = m.get("labels") or {}
            if (
                m.get("namespace") == svc.meta.namespace
                and labels.get("kubernetes.io/service-name") == svc.meta.name
            ):
                for ep in sl.get("endpoints") or ():
                    for a in ep.get("addresses") or ():
                        with contextlib.suppress(ValueError):
                            out.append(IPv4Network(f"{a}/32"))
    return out


def service_peer_ids(
    s: R.ServicePeer,
    services: Mapping[str, Service],
    slices: Sequence[Doc],
    pods: Mapping[str, Pod],
    pod_identity: Mapping[str, int],
    cidr_identities: Mapping[IPv4Network, Identity],
) -> set[int]:
    out: set[int] = set()
    for svc in services_of(s, services):
        sel = svc.selector
        if sel is None:
            continue
        for p, pod in pods.items():
            if pod.meta.namespace == svc.meta.namespace and sel.matches(pod.meta.labels):
                out.add(pod_identity[p])
    for net in selectorless_service_nets(s, services, slices):
        ident = cidr_identities.get(net)
        if ident is not None:
            out.add(ident.id)
    return out
