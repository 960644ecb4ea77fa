"""The cluster as the explain oracle sees it: namespaces' labels, pods with their
addresses and identity labels, the pods that share an identity, services, endpoint
slices, and the policies parsed into their typed models.

Input: the typed objects a caller has (a store snapshot or manifests). Output: one
``OracleCluster`` and ``Endpoint``s resolved from text (``ns/name``, a pod IP, ``host``
or any other IPv4 address). Built once per ``explain.Evaluator``; never changes.

Sans-IO; imports the model, ``control.identity`` (identity labels),
``control.selectors`` (label maps) and ``control.explanation`` (the answer types). It
must not import ``control.rules``/``control.policy``: the oracle stays independent of
the compiler it checks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, ip_address

from ciliate.control.explanation import Endpoint, namespace_labels
from ciliate.control.identity import pod_identity_labels
from ciliate.control.selectors import label_map
from ciliate.model.cilium import CCNP_KIND, CNP_KIND, CiliumPolicy
from ciliate.model.core import Namespace, Pod, Service
from ciliate.model.meta import Doc
from ciliate.model.netpol import NetworkPolicy


@dataclass(frozen=True, slots=True)
class OracleCluster:
    name: str  # the cluster name identity labels carry ("default" when unnamed)
    ns_labels: Mapping[str, Mapping[str, str]]
    pods: Mapping[str, Pod]  # by ns/name
    pod_ip: Mapping[str, IPv4Address]
    pod_labels: Mapping[str, Mapping[str, str]]  # identity labels (source:key)
    identity_members: Mapping[str, Sequence[str]]  # pod -> every pod of its identity
    services: Mapping[str, Service]
    slices: Sequence[Doc]
    netpols: Sequence[NetworkPolicy]
    cilium: Sequence[CiliumPolicy]

    @classmethod
    def build(
        cls,
        name: str,
        namespaces: Sequence[Namespace],
        pods: Sequence[Pod],
        policies: Sequence[Doc],
        services: Sequence[Service] = (),
        endpoint_slices: Sequence[Doc] = (),
        pod_ips: Mapping[str, str] | None = None,
    ) -> OracleCluster:
        """``pod_ips`` overrides ``status.podIP`` (an unparsable or IPv6 address leaves
        the pod without one: only ipBlock rules look at addresses)."""
        ns_labels = {ns.meta.name: namespace_labels(ns, ns.meta.name) for ns in namespaces}
        pod_ip: dict[str, IPv4Address] = {}
        for p in pods:
            raw = (pod_ips or {}).get(p.key) or p.status.pod_ip
            if raw:
                try:
                    a = ip_address(raw)
                except ValueError:
                    continue
                if isinstance(a, IPv4Address):
                    pod_ip[p.key] = a
        pod_labels: dict[str, dict[str, str]] = {}
        same_identity: dict[tuple[str, ...], list[str]] = {}
        for p in pods:
            nsl = ns_labels.get(p.meta.namespace) or namespace_labels(None, p.meta.namespace)
            labs = pod_identity_labels(p, nsl, name)
            pod_labels[p.key] = label_map(labs)
            same_identity.setdefault(labs, []).append(p.key)
        netpols: list[NetworkPolicy] = []
        cilium: list[CiliumPolicy] = []
        for d in policies:
            kind = d.get("kind")
            if kind == "NetworkPolicy":
                netpols.append(NetworkPolicy.from_doc(d))
            elif kind in (CNP_KIND, CCNP_KIND):
                cilium.append(CiliumPolicy.from_doc(d))
        return cls(
            name=name,
            ns_labels=ns_labels,
            pods={p.key: p for p in pods},
            pod_ip=pod_ip,
            pod_labels=pod_labels,
            identity_members={k: ms for ms in same_identity.values() for k in ms},
            services={s.key: s for s in services},
            slices=list(endpoint_slices),
            netpols=netpols,
            cilium=cilium,
        )

    def namespace_labels_of(self, namespace: str) -> Mapping[str, str]:
        """A namespace's labels; one the cluster does not hold has only its name."""
        return self.ns_labels.get(namespace) or namespace_labels(None, namespace)

    def endpoint(self, text: str) -> Endpoint:
        """``ns/name`` (a pod), a pod IP, ``host``, or any other IP (world); anything
        else is a KeyError."""
        if text in self.pods:
            return self.pod_endpoint(text)
        if text in ("host", "reserved:host"):
            return Endpoint("host", "host", labels={"reserved:host": ""})
        try:
            ip = ip_address(text)
        except ValueError as e:
            raise KeyError(text) from e
        if not isinstance(ip, IPv4Address):
            raise KeyError(text)
        for k, a in self.pod_ip.items():
            if a == ip:
                return self.pod_endpoint(k)
        return Endpoint("world", str(ip), ip=ip, labels={"reserved:world": ""})

    def pod_endpoint(self, key: str) -> Endpoint:
        return Endpoint("pod", key, self.pods[key], self.pod_ip.get(key), self.pod_labels[key])
