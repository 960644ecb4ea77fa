"""Admission: the API server's defaulting and allocation before objects are stored.

Role: ``admit(docs, store, config, locate)`` is what ``apply`` runs on a valid batch
before writing it. It returns the documents with the fields the API server fills in,
or raises ``DiagnosticError`` with every problem of the batch (nothing is written):

- Namespace: the label ``kubernetes.io/metadata.name=<name>``, always.
- Service (ipallocator and portallocator of kube-apiserver):
  1. ``spec.clusterIP``: kept when given (must be inside the service CIDR, not its
     network/broadcast address, not the ``kubernetes`` service's first host, and not
     held by another service); ``None`` stays (headless); ExternalName gets none; an
     object re-applied without one keeps the one it has; else one is allocated.
     ``clusterIPs`` mirrors it.
  2. ``spec.ports[].nodePort`` for NodePort and LoadBalancer services (unless
     ``allocateLoadBalancerNodePorts: false``): kept when given (inside the cluster's
     node-port range and free); else the port the stored object has for the same
     (port, protocol); else one is allocated. A nodePort on a ClusterIP service is
     refused, as Kubernetes does.
  3. ``spec.healthCheckNodePort`` for LoadBalancer services with
     externalTrafficPolicy Local, from the same range and under the same rules.
  4. Defaults: type ClusterIP, sessionAffinity None (ClientIP gets the 10800 s
     timeout), ipFamilies [IPv4], ipFamilyPolicy SingleStack, internalTrafficPolicy
     Cluster, externalTrafficPolicy Cluster (NodePort/LoadBalancer), ports[].protocol
     TCP, targetPort = port, and ``status.loadBalancer: {}`` when the object has no
     status yet.
- Deployment, ReplicaSet, DaemonSet, StatefulSet: spec.selector cannot change.
- Pod: a re-applied pod keeps the node it is bound to; a pod given with
  ``status.podIP`` must carry an address inside some node's podCIDR (inside its own
  node's when spec.nodeName is given) that no other pod holds.

Allocation is deterministic: a Service's address is found by hashing its
namespace/name into the upper ("dynamic") part of the range and probing upward, as
Kubernetes prefers the upper band for automatic allocation and leaves the lower band
for addresses users pick (KEP-3070: the static band is min(max(16, size/16), 256)
addresses; for node ports min(max(16, size/32), 128)). The same manifests thus give
the same addresses in any order of application.

Inputs: documents, the store (other objects' allocations), the cluster config, an
optional ``locate(doc_index, field_path) -> (file, line, col)``. Outputs: documents.
Must not import cli, agent, datapath or observe.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from ciliate.control.ipam import NodeIPAM, compute_node_ipam
from ciliate.controllers.namespaces import namespace_label
from ciliate.controllers.podstate import is_active, name_of, namespace_of, node_name, pod_ip
from ciliate.controllers.workloads import fnv32a
from ciliate.errors import Diagnostic, DiagnosticError
from ciliate.model.cluster import ClusterConfig
from ciliate.model.meta import Doc, doc_key
from ciliate.store.api import ObjectKey, Store

Locate = Callable[[int, str], tuple[str, int, int]]
_NODEPORT_TYPES = ("NodePort", "LoadBalancer")
_WORKLOAD_KINDS = ("Deployment", "ReplicaSet", "DaemonSet", "StatefulSet")


def _static_band(size: int, divisor: int, cap: int) -> int:
    return min(max(16, size // divisor), cap)


@dataclass
class _Allocations:
    """Cluster IPs and node ports held by services other than those being admitted."""

    ips: dict[IPv4Address, str] = field(default_factory=dict)  # ip -> ns/name
    ports: dict[int, str] = field(default_factory=dict)  # nodePort -> ns/name


class _Batch:
    def __init__(self, config: ClusterConfig, locate: Locate | None) -> None:
        self.config = config
        self.locate = locate
        self.diags: list[Diagnostic] = []
        self.net = IPv4Network(config.service_cidr)
        self._plans: tuple[NodeIPAM, ...] | None = None
        self._pod_ips: dict[str, str] | None = None  # podIP -> ns/name of stored pods

    @property
    def plans(self) -> tuple[NodeIPAM, ...]:
        if self._plans is None:
            self._plans = compute_node_ipam(self.config)
        return self._plans

    def stored_pod_ips(self, store: Store) -> dict[str, str]:
        if self._pod_ips is None:
            self._pod_ips = {}
            for p in store.list("Pod"):
                if is_active(p) and pod_ip(p):
                    self._pod_ips.setdefault(pod_ip(p), _owner(p))
        return self._pod_ips

    def add(self, index: int, doc: Doc, path: str, reason: str) -> None:
        file, line, col = ("<input>", 0, 0)
        if self.locate is not None:
            file, line, col = self.locate(index, path)
        kind, ns, name = doc_key(doc)
        self.diags.append(Diagnostic(reason, file, line, col, kind, ns, name, path))


def admit(
    docs: Sequence[Doc],
    store: Store,
    config: ClusterConfig,
    locate: Locate | None = None,
) -> list[Doc]:
    """Defaults and allocations for a batch (module docstring); all-or-nothing."""
    batch = _Batch(config, locate)
    out = [copy.deepcopy(d) for d in docs]
    keys = {ObjectKey(*doc_key(d)) for d in out}
    alloc = _Allocations()
    for svc in store.list("Service"):
        key = ObjectKey(*doc_key(svc))
        if key not in keys:
            _record(alloc, svc)
    services = [(i, d) for i, d in enumerate(out) if d.get("kind") == "Service"]
    # Pass 0: what re-applied services already hold and keep (rule 1 and 2).
    for _i, d in services:
        _keep_existing(alloc, d, store)
    # Pass 1: explicit requests first, so that an automatic allocation earlier in the
    # batch cannot take an address or port that a later object asks for by name.
    for i, d in services:
        _claim_explicit(batch, alloc, i, d, store)
    # Pass 2: allocate what was not given.
    for i, d in services:
        _allocate(batch, alloc, i, d, store)
    for i, d in enumerate(out):
        kind = d.get("kind")
        if kind == "Namespace":
            out[i] = namespace_label(d)
        elif kind == "Pod":
            _admit_pod(batch, i, d, store, out)
        elif kind in _WORKLOAD_KINDS:
            _check_selector_unchanged(batch, i, d, store)
    if batch.diags:
        raise DiagnosticError(batch.diags)
    return out


def _check_selector_unchanged(batch: _Batch, i: int, doc: Doc, store: Store) -> None:
    """apps/v1 workloads: spec.selector is immutable once created."""
    old = _existing(store, doc)
    if old is None:
        return
    before = (old.get("spec") or {}).get("selector")
    after = (doc.get("spec") or {}).get("selector")
    if before != after:
        batch.add(
            i,
            doc,
            "spec.selector",
            f"Invalid value: {json.dumps(after, sort_keys=True)}: field is immutable",
        )


def _owner(doc: Mapping[str, Any]) -> str:
    return f"{namespace_of(doc)}/{name_of(doc)}"


def _record(alloc: _Allocations, svc: Mapping[str, Any]) -> None:
    spec = svc.get("spec") or {}
    ip = str(spec.get("clusterIP") or "")
    with contextlib.suppress(ValueError):
        alloc.ips[IPv4Address(ip)] = _owner(svc)
    for p in spec.get("ports") or ():
        if p.get("nodePort"):
            alloc.ports[int(p["nodePort"])] = _owner(svc)
    if spec.get("healthCheckNodePort"):
        alloc.ports[int(spec["healthCheckNodePort"])] = _owner(svc)


# --- Service: cluster IPs --------------------------------------------------------------


def _keep_existing(alloc: _Allocations, doc: Doc, store: Store) -> None:
    """Record the address and node ports a stored service keeps when re-applied
    without them, so that no other service of the batch can ask for them."""
    old = _existing(store, doc)
    if old is None:
        return
    spec = doc.get("spec") or {}
    old_spec = old.get("spec") or {}
    stype = str(spec.get("type") or "ClusterIP")
    if stype != "ExternalName" and not spec.get("clusterIP"):
        with contextlib.suppress(ValueError):
            alloc.ips[IPv4Address(str(old_spec.get("clusterIP") or ""))] = _owner(doc)
    if stype not in _NODEPORT_TYPES:
        return
    if old_spec.get("healthCheckNodePort") and not spec.get("healthCheckNodePort"):
        alloc.ports[int(old_spec["healthCheckNodePort"])] = _owner(doc)
    old_ports = {
        (int(p.get("port", 0) or 0), str(p.get("protocol") or "TCP")): int(p.get("nodePort") or 0)
        for p in old_spec.get("ports") or ()
    }
    for p in spec.get("ports") or ():
        if p.get("nodePort"):
            continue
        prev = old_ports.get((int(p.get("port", 0) or 0), str(p.get("protocol") or "TCP")), 0)
        if prev:
            alloc.ports[prev] = _owner(doc)


def _existing(store: Store, doc: Doc) -> Doc | None:
    return store.get(ObjectKey(*doc_key(doc)))


def _claim_explicit(batch: _Batch, alloc: _Allocations, i: int, doc: Doc, store: Store) -> None:
    spec = doc.setdefault("spec", {})
    stype = str(spec.get("type") or "ClusterIP")
    old = _existing(store, doc)
    old_ip = str(((old or {}).get("spec") or {}).get("clusterIP") or "")
    _check_families(batch, i, doc)
    ip = str(spec.get("clusterIP") or "")
    if ip and ip != "None" and stype != "ExternalName":
        try:
            addr = IPv4Address(ip)
        except ValueError:
            batch.add(
                i, doc, "spec.clusterIP", f'Invalid value: "{ip}": must be a valid IP address'
            )
        else:
            _check_ip(batch, alloc, i, doc, addr, old_ip)
    elif ip == "None" and old_ip and old_ip != "None":
        batch.add(i, doc, "spec.clusterIP", f'Invalid value: "{ip}": field is immutable')
    if stype in _NODEPORT_TYPES:
        lo, hi = batch.config.node_port_range
        for j, p in enumerate(spec.get("ports") or ()):
            np = p.get("nodePort")
            if not np:
                continue
            path = f"spec.ports[{j}].nodePort"
            if not isinstance(np, int) or isinstance(np, bool):
                batch.add(i, doc, path, f'Invalid value: "{np}": must be an integer')
                continue
            if not lo <= np <= hi:
                batch.add(
                    i,
                    doc,
                    path,
                    f"Invalid value: {np}: provided port is not in the valid range. "
                    f"The range of valid ports is {lo}-{hi}",
                )
                continue
            holder = alloc.ports.get(np)
            if holder is not None and holder != _owner(doc):
                batch.add(i, doc, path, f"Invalid value: {np}: provided port is already allocated")
                continue
            alloc.ports[np] = _owner(doc)
    else:
        for j, p in enumerate(spec.get("ports") or ()):
            if p.get("nodePort"):
                batch.add(
                    i,
                    doc,
                    f"spec.ports[{j}].nodePort",
                    f"Forbidden: may not be used when `type` is '{stype}'",
                )


def _check_families(batch: _Batch, i: int, doc: Doc) -> None:
    """The cluster is single-stack IPv4: IPv6 families and required dual stack are
    refused the way an API server without an IPv6 service CIDR refuses them."""
    spec = doc["spec"]
    for j, fam in enumerate(spec.get("ipFamilies") or ()):
        if fam != "IPv4":
            batch.add(
                i,
                doc,
                f"spec.ipFamilies[{j}]",
                f'Invalid value: "{fam}": not configured on this cluster (IPv4 only)',
            )
    if spec.get("ipFamilyPolicy") == "RequireDualStack":
        batch.add(
            i,
            doc,
            "spec.ipFamilyPolicy",
            'Invalid value: "RequireDualStack": this cluster is not configured for '
            "dual-stack services",
        )


def _check_ip(
    batch: _Batch, alloc: _Allocations, i: int, doc: Doc, addr: IPv4Address, old_ip: str
) -> None:
    net = batch.net
    if old_ip and old_ip != str(addr):
        batch.add(i, doc, "spec.clusterIP", f'Invalid value: "{addr}": field is immutable')
        return
    if addr not in net or addr in (net.network_address, net.broadcast_address):
        batch.add(
            i,
            doc,
            "spec.clusterIP",
            f'Invalid value: "{addr}": provided IP is not in the valid range. '
            f"The range of valid IPs is {net}",
        )
        return
    holder = alloc.ips.get(addr)
    if holder is not None and holder != _owner(doc):
        batch.add(
            i, doc, "spec.clusterIP", f'Invalid value: "{addr}": provided IP is already allocated'
        )
        return
    if addr == net.network_address + 1 and _owner(doc) != "default/kubernetes":
        batch.add(
            i,
            doc,
            "spec.clusterIP",
            f'Invalid value: "{addr}": provided IP is already allocated '
            "(reserved for the kubernetes service)",
        )
        return
    alloc.ips[addr] = _owner(doc)


def allocate_cluster_ip(net: IPv4Network, owner: str, taken: Mapping[IPv4Address, str]) -> str:
    """A free address for ``owner`` (hash into the dynamic band, probe upward, then the
    static band); "" when the range is full."""
    size = net.num_addresses
    base = int(net.network_address)
    first, last = 2, size - 2  # .0 network, .1 kubernetes, last broadcast
    if last < first:
        return ""
    static = _static_band(size, 16, 256)
    lo = max(first, static) if static < last else first
    span = last - lo + 1
    start = lo + fnv32a(owner.encode()) % span
    for off in itertools.chain(range(start, last + 1), range(lo, start), range(first, lo)):
        addr = IPv4Address(base + off)
        if addr not in taken:
            return str(addr)
    return ""


def allocate_node_port(lo: int, hi: int, owner: str, index: int, taken: Mapping[int, str]) -> int:
    """A free node port (same scheme as ``allocate_cluster_ip``); 0 when full."""
    size = hi - lo + 1
    static = _static_band(size, 32, 128)
    dyn_lo = lo + static if static < size else lo
    span = hi - dyn_lo + 1
    start = dyn_lo + fnv32a(f"{owner}#{index}".encode()) % span
    for port in itertools.chain(range(start, hi + 1), range(dyn_lo, start), range(lo, dyn_lo)):
        if port not in taken:
            return int(port)
    return 0


def _allocate(batch: _Batch, alloc: _Allocations, i: int, doc: Doc, store: Store) -> None:
    spec = doc.setdefault("spec", {})
    stype = str(spec.get("type") or "ClusterIP")
    spec["type"] = stype
    old = _existing(store, doc)
    old_spec = (old or {}).get("spec") or {}
    if stype == "ExternalName":
        spec.pop("clusterIPs", None)
        if not spec.get("clusterIP"):
            spec.pop("clusterIP", None)
    else:
        ip = str(spec.get("clusterIP") or "")
        if not ip:
            ip = str(old_spec.get("clusterIP") or "")
            if ip:
                alloc.ips.setdefault(_safe_ip(ip), _owner(doc))
        if not ip:
            ip = allocate_cluster_ip(batch.net, _owner(doc), alloc.ips)
            if not ip:
                batch.add(
                    i,
                    doc,
                    "spec.clusterIP",
                    f"Internal error: failed to allocate a serviceIP: range {batch.net} is full",
                )
                return
            alloc.ips[IPv4Address(ip)] = _owner(doc)
        spec["clusterIP"] = ip
        spec["clusterIPs"] = [ip]
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("internalTrafficPolicy", "Cluster")
    spec.setdefault("sessionAffinity", "None")
    if spec["sessionAffinity"] == "ClientIP" and not spec.get("sessionAffinityConfig"):
        # Kubernetes' default affinity timeout: 3 hours.
        spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": 10800}}
    if stype in _NODEPORT_TYPES:
        spec.setdefault("externalTrafficPolicy", "Cluster")
    if stype == "LoadBalancer":
        spec.setdefault("allocateLoadBalancerNodePorts", True)
    want_node_ports = stype == "NodePort" or (
        stype == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts") is not False
    )
    old_ports = {
        (int(p.get("port", 0)), str(p.get("protocol") or "TCP")): int(p.get("nodePort") or 0)
        for p in old_spec.get("ports") or ()
    }
    lo, hi = batch.config.node_port_range
    for j, p in enumerate(spec.get("ports") or ()):
        p.setdefault("protocol", "TCP")
        if p.get("targetPort") in (None, "", 0):
            p["targetPort"] = p.get("port")
        if not want_node_ports or p.get("nodePort"):
            continue
        prev = old_ports.get((int(p.get("port", 0) or 0), str(p["protocol"])), 0)
        if prev and alloc.ports.get(prev, _owner(doc)) == _owner(doc):
            p["nodePort"] = prev
            alloc.ports[prev] = _owner(doc)
            continue
        np = allocate_node_port(lo, hi, _owner(doc), j, alloc.ports)
        if not np:
            batch.add(
                i,
                doc,
                f"spec.ports[{j}].nodePort",
                f"Internal error: failed to allocate a nodePort: range {lo}-{hi} is full",
            )
            continue
        p["nodePort"] = np
        alloc.ports[np] = _owner(doc)
    if stype == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local":
        _health_check_node_port(batch, alloc, i, doc, old_spec)
    if "status" not in doc:
        doc["status"] = copy.deepcopy((old or {}).get("status")) or {"loadBalancer": {}}


def _health_check_node_port(
    batch: _Batch, alloc: _Allocations, i: int, doc: Doc, old_spec: Mapping[str, Any]
) -> None:
    """LoadBalancer services with externalTrafficPolicy Local get a node port for the
    load balancer's health checks (kept when given or already held; else allocated)."""
    spec = doc["spec"]
    lo, hi = batch.config.node_port_range
    me = _owner(doc)
    given = spec.get("healthCheckNodePort")
    if given:
        holder = alloc.ports.get(int(given))
        if holder is not None and holder != me:
            batch.add(
                i,
                doc,
                "spec.healthCheckNodePort",
                f"Invalid value: {given}: provided port is already allocated",
            )
            return
        alloc.ports[int(given)] = me
        return
    prev = int(old_spec.get("healthCheckNodePort") or 0)
    port = (
        prev
        if prev and alloc.ports.get(prev, me) == me
        else allocate_node_port(lo, hi, me, -1, alloc.ports)
    )
    if port:
        spec["healthCheckNodePort"] = port
        alloc.ports[port] = me


def _safe_ip(text: str) -> IPv4Address:
    try:
        return IPv4Address(text)
    except ValueError:
        return IPv4Address(0)


# --- Pod ----------------------------------------------------------------------------


def _admit_pod(batch: _Batch, i: int, doc: Doc, store: Store, batch_docs: Sequence[Doc]) -> None:
    old = _existing(store, doc)
    spec = doc.setdefault("spec", {})
    if old is not None and node_name(old) and not spec.get("nodeName"):
        # A bound pod stays bound (the binding is not part of what users apply).
        spec["nodeName"] = node_name(old)
    ip = pod_ip(doc)
    if not ip or spec.get("hostNetwork"):
        return
    try:
        addr = IPv4Address(ip)
    except ValueError:
        batch.add(i, doc, "status.podIP", f'Invalid value: "{ip}": must be a valid IPv4 address')
        return
    plans = batch.plans
    holder = next((p for p in plans if addr in p.network), None)
    if holder is None:
        batch.add(
            i,
            doc,
            "status.podIP",
            f'Invalid value: "{ip}": not inside any node\'s podCIDR ('
            + ", ".join(f"{p.node} {p.cidr}" for p in plans)
            + ")",
        )
        return
    if spec.get("nodeName") and spec["nodeName"] != holder.node:
        batch.add(
            i,
            doc,
            "status.podIP",
            f'Invalid value: "{ip}": outside the podCIDR of node {spec["nodeName"]} '
            f"({holder.cidr} belongs to {holder.node})",
        )
        return
    if ip in holder.reserved:
        batch.add(
            i,
            doc,
            "status.podIP",
            f'Invalid value: "{ip}": reserved on node {holder.node} (router or health IP)',
        )
        return
    me = _owner(doc)
    # Earlier pods of the batch, and stored pods the batch does not replace.
    holders = [_owner(d) for d in batch_docs[:i] if d.get("kind") == "Pod" and pod_ip(d) == ip]
    stored = batch.stored_pod_ips(store).get(ip)
    if stored is not None and not any(
        d.get("kind") == "Pod" and _owner(d) == stored for d in batch_docs
    ):
        holders.append(stored)
    for other in holders:
        if other != me:
            batch.add(
                i,
                doc,
                "status.podIP",
                f'Invalid value: "{ip}": provided IP is already allocated to pod {other}',
            )
            return
