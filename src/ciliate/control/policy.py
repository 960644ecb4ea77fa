"""Policy compilation entry point (filled in by the compiler; signature is the contract)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Network

from ciliate.desired import Identity, PolicyMap
from ciliate.model.cluster import ClusterConfig
from ciliate.model.core import Namespace, Pod, Service
from ciliate.model.meta import Doc


@dataclass(frozen=True, slots=True)
class PolicyInputs:
    config: ClusterConfig
    namespaces: Sequence[Namespace]
    pods: Sequence[Pod]
    pod_identity: Mapping[str, int]  # "ns/name" -> identity
    identities: Mapping[int, Identity]  # all, incl. reserved 1..8
    policies: Sequence[Doc]  # NetworkPolicy, CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy
    services: Sequence[Service] = ()
    endpoint_slices: Sequence[Doc] = ()


@dataclass(frozen=True, slots=True)
class EndpointPolicy:
    map: PolicyMap
    ingress_enforced: bool
    egress_enforced: bool


@dataclass(frozen=True, slots=True)
class PolicyResult:
    endpoints: Mapping[str, EndpointPolicy]  # by "ns/name"
    cidr_identities: Mapping[IPv4Network, Identity] = field(default_factory=dict)


def compute_policy(inputs: PolicyInputs) -> PolicyResult:
    """Per-endpoint policy maps for every pod of ``inputs`` (stub: allow-all)."""
    from ciliate.control.mapstate import allow_all
    from ciliate.desired import Provenance

    eps: dict[str, EndpointPolicy] = {}
    for pod in inputs.pods:
        m = dict(
            [
                allow_all(False, Provenance("derived", "", "", "allow-any-ingress")),
                allow_all(True, Provenance("derived", "", "", "allow-any-egress")),
            ]
        )
        eps[pod.key] = EndpointPolicy(m, False, False)
    return PolicyResult(eps, {})
