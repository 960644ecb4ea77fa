"""EndpointSlices: the endpointslice controller, and the ``kubernetes`` service.

Role: for every Service with a selector (not ExternalName), the discovery.k8s.io/v1
EndpointSlices listing the pods it selects, as kube-controller-manager writes them:

1. Pods in the service's namespace whose labels match the selector, not finished,
   with an address (status.podIP) take part.
2. Ports are resolved per pod: a numeric targetPort is used as is; a named one is
   looked up among the pod's container ports (name and protocol); a name the pod does
   not define leaves that port out for that pod. Pods whose resolved ports differ go
   into different slices (a slice has one port list for all its endpoints).
3. Each endpoint: addresses [podIP], conditions ready (the pod's Ready condition, or
   always with publishNotReadyAddresses) / serving / terminating, nodeName, targetRef
   to the pod, and hostname when the pod's hostname/subdomain name it in this service.
4. Slices are named ``<svc>-<5 random chars>`` (generateName), labelled
   kubernetes.io/service-name and endpointslice.kubernetes.io/managed-by, owned by
   the service (so the garbage collector deletes them with it), at most 100
   endpoints each. Existing slices are reused (matched by port list first) so names
   stay stable; a service selecting no pod keeps one empty slice.

``kubernetes_service_docs(config)`` gives the ``default/kubernetes`` service (ClusterIP
= first host of the service CIDR, port 443 -> the control plane's 6443) and its
EndpointSlice, which ``cluster create`` writes (the API server maintains them, not
this controller: the service has no selector).

Inputs: a ``Snapshot``, an injected ``random.Random`` for names, the cluster config.
Outputs: ``Change`` lists. Pure apart from the injected generator.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from ipaddress import IPv4Network
from typing import Any

from ciliate.controllers.failures import guarded
from ciliate.controllers.owners import is_controlled_by, owner_reference
from ciliate.controllers.podstate import (
    is_active,
    is_ready,
    labels_of,
    meta,
    name_of,
    namespace_of,
    node_name,
    pod_ip,
)
from ciliate.controllers.snapshot import Snapshot, delete, put
from ciliate.model.cluster import ClusterConfig
from ciliate.model.meta import Doc
from ciliate.store.api import Change

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
MANAGED_BY = "endpointslice-controller.k8s.io"
HEADLESS_LABEL = "service.kubernetes.io/headless"
MAX_ENDPOINTS_PER_SLICE = 100
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"

PortList = tuple[tuple[str, int, str], ...]  # (name, port, protocol)


def resolve_ports(svc: Doc, pod: Doc) -> PortList:
    """Rule 2: the service's ports as this pod serves them."""
    out: list[tuple[str, int, str]] = []
    containers = (pod.get("spec") or {}).get("containers") or ()
    for sp in (svc.get("spec") or {}).get("ports") or ():
        proto = str(sp.get("protocol") or "TCP")
        target = sp.get("targetPort")
        if target is None or target == "" or target == 0:
            target = sp.get("port", 0)
        number = 0
        if isinstance(target, int) or str(target).isdigit():
            number = int(target)
        else:
            for c in containers:
                for cp in c.get("ports") or ():
                    if cp.get("name") == target and str(cp.get("protocol") or "TCP") == proto:
                        number = int(cp.get("containerPort", 0))
                        break
                if number:
                    break
        if number:
            out.append((str(sp.get("name") or ""), number, proto))
    return tuple(out)


def _endpoint(svc: Doc, pod: Doc) -> dict[str, Any]:
    publish = bool((svc.get("spec") or {}).get("publishNotReadyAddresses"))
    ready = publish or is_ready(pod)
    ep: dict[str, Any] = {
        "addresses": [pod_ip(pod)],
        "conditions": {"ready": ready, "serving": ready, "terminating": False},
    }
    pspec = pod.get("spec") or {}
    if pspec.get("hostname") and pspec.get("subdomain") == name_of(svc):
        ep["hostname"] = pspec["hostname"]
    if node_name(pod):
        ep["nodeName"] = node_name(pod)
    ref: dict[str, Any] = {"kind": "Pod", "namespace": namespace_of(pod), "name": name_of(pod)}
    if meta(pod).get("uid"):
        ref["uid"] = meta(pod)["uid"]
    ep["targetRef"] = ref
    return ep


def _ports_doc(ports: PortList) -> list[dict[str, Any]]:
    return [{"name": n, "port": p, "protocol": proto} for n, p, proto in ports]


def _ports_of_slice(slice_doc: Doc) -> PortList:
    return tuple(
        (str(p.get("name") or ""), int(p.get("port", 0)), str(p.get("protocol") or "TCP"))
        for p in slice_doc.get("ports") or ()
    )


def desired_slices(svc: Doc, pods: Sequence[Doc]) -> list[tuple[PortList, list[dict[str, Any]]]]:
    """(ports, endpoints) per slice; one empty slice when no pod is selected."""
    groups: dict[PortList, list[Doc]] = {}
    for p in sorted(pods, key=name_of):
        groups.setdefault(resolve_ports(svc, p), []).append(p)
    out: list[tuple[PortList, list[dict[str, Any]]]] = []
    for ports in sorted(groups):
        eps = [_endpoint(svc, p) for p in groups[ports]]
        for i in range(0, len(eps), MAX_ENDPOINTS_PER_SLICE):
            out.append((ports, eps[i : i + MAX_ENDPOINTS_PER_SLICE]))
    if not out:
        out.append(((), []))
    return out


def selected_pods(snap: Snapshot, svc: Doc) -> list[Doc]:
    selector = (svc.get("spec") or {}).get("selector")
    if selector is None:
        return []
    want = {str(k): str(v) for k, v in selector.items()}
    return [p for p in snap.select("Pod", namespace_of(svc), want) if is_active(p) and pod_ip(p)]


def _manages(svc: Doc) -> bool:
    spec = svc.get("spec") or {}
    return spec.get("selector") is not None and spec.get("type") != "ExternalName"


def compute_endpointslices(snap: Snapshot, rng: random.Random) -> list[Change]:
    out: list[Change] = []
    taken: set[tuple[str, str]] = set()  # slice names generated in this pass
    for svc in snap.list("Service"):
        out.extend(guarded(svc, _service_slices, snap, svc, rng, taken))
    return out


def _service_slices(
    snap: Snapshot, svc: Doc, rng: random.Random, taken: set[tuple[str, str]]
) -> list[Change]:
    out: list[Change] = []
    ns, name = namespace_of(svc), name_of(svc)
    existing = [
        s
        for s in snap.select(
            "EndpointSlice", ns, {SERVICE_NAME_LABEL: name, MANAGED_BY_LABEL: MANAGED_BY}
        )
        if is_controlled_by(s, svc)
    ]
    if not _manages(svc):
        return [delete(s) for s in existing]
    wanted = desired_slices(svc, selected_pods(snap, svc))
    # Reuse existing slices: first those with the same port list, then any.
    free = list(existing)
    assigned: list[tuple[Doc | None, PortList, list[dict[str, Any]]]] = []
    for ports, eps in wanted:
        match = next((s for s in free if _ports_of_slice(s) == ports), None)
        if match is not None:
            free.remove(match)
        assigned.append((match, ports, eps))
    for i, (slot, ports, eps) in enumerate(assigned):
        if slot is None and free:
            assigned[i] = (free.pop(0), ports, eps)
    out.extend(delete(s) for s in free)
    labels = {**labels_of(svc), SERVICE_NAME_LABEL: name, MANAGED_BY_LABEL: MANAGED_BY}
    if (svc.get("spec") or {}).get("clusterIP") == "None":
        labels[HEADLESS_LABEL] = ""  # as the endpointslice controller marks them
    for slot, ports, eps in assigned:
        if slot is None:
            while True:
                sname = f"{name}-" + "".join(rng.choice(_ALPHABET) for _ in range(5))
                if snap.find("EndpointSlice", ns, sname) is None and (ns, sname) not in taken:
                    taken.add((ns, sname))
                    break
            new: Doc = {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": sname,
                    "namespace": ns,
                    "generateName": f"{name}-",
                    "labels": labels,
                    "ownerReferences": [owner_reference(svc)],
                },
                "addressType": "IPv4",
                "endpoints": eps,
                "ports": _ports_doc(ports),
            }
            out.append(put(new))
            continue
        updated = dict(slot)
        updated["metadata"] = {**slot["metadata"], "labels": labels}
        updated["addressType"] = "IPv4"
        updated["endpoints"] = eps
        updated["ports"] = _ports_doc(ports)
        if updated != slot:
            out.append(put(updated))
    return out


def kubernetes_service_ip(config: ClusterConfig) -> str:
    """The first host address of the service CIDR (10.96.0.1 for 10.96.0.0/12)."""
    return str(IPv4Network(config.service_cidr).network_address + 1)


def _control_plane_ip(config: ClusterConfig) -> str:
    for n in config.nodes:
        if n.role == "control-plane":
            return n.internal_ip
    return config.nodes[0].internal_ip if config.nodes else ""


def kubernetes_service_docs(config: ClusterConfig) -> list[Doc]:
    ip = kubernetes_service_ip(config)
    svc: Doc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": {"component": "apiserver", "provider": "kubernetes"},
        },
        "spec": {
            "type": "ClusterIP",
            "clusterIP": ip,
            "clusterIPs": [ip],
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
            "internalTrafficPolicy": "Cluster",
            "sessionAffinity": "None",
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}],
        },
        "status": {"loadBalancer": {}},
    }
    eps: Doc = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": {SERVICE_NAME_LABEL: "kubernetes"},
        },
        "addressType": "IPv4",
        "endpoints": [
            {
                "addresses": [_control_plane_ip(config)],
                "conditions": {"ready": True, "serving": True, "terminating": False},
            }
        ],
        "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}],
    }
    return [svc, eps]
