"""What a policy compilation takes and gives, and the per-pod inputs of a compiled map.

Role: the data types shared by the policy compiler (``control.compiler``), its
distillation (``control.distillery``) and their callers (``control.policy``,
``control.endpoint_policy``, ``control.reach``): ``PolicyInputs`` in,
``PolicyResult`` (an ``EndpointPolicy`` per pod) out. Endpoints are grouped by
``GroupKey`` = (identity, named container ports): the only per-pod inputs of a map.

Sans-IO; imports the model and ``desired`` only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from ciliate.desired import Identity, PolicyEntry, PolicyKey, PolicyMap
from ciliate.model.cluster import ClusterConfig
from ciliate.model.core import Namespace, Pod, Service
from ciliate.model.meta import Doc

WORLD_NET = IPv4Network("0.0.0.0/0")
CIDR_ID_SPAN = (1 << 24) - 1  # local-scope identities 1<<24 | 1 .. 1<<24 | 2^24-1

# (identity, sorted named container ports (name, protocol, number)): pods of one group
# share one compiled map.
GroupKey = tuple[int, tuple[tuple[str, str, int], ...]]


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
    # overrides status.podIP; an address the caller parsed already is taken as is
    pod_ips: Mapping[str, str | IPv4Address] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EndpointPolicy:
    map: PolicyMap
    ingress_enforced: bool
    egress_enforced: bool
    # When the compiler only added entries to the previous map (a new identity's keys):
    # (that previous map, the added entries), so a consumer holding the previous map
    # can take the change without diffing the two.
    extends: tuple[PolicyMap, Mapping[PolicyKey, PolicyEntry]] | None = field(
        default=None, compare=False, repr=False
    )


@dataclass(frozen=True, slots=True)
class PolicyResult:
    endpoints: Mapping[str, EndpointPolicy]  # by "ns/name"
    cidr_identities: Mapping[IPv4Network, Identity] = field(default_factory=dict)


def cidr_identity_labels(net: IPv4Network) -> tuple[str, ...]:
    return (f"cidr:{net}", "reserved:world")


def named_port_key(pod: Pod) -> tuple[tuple[str, str, int], ...]:
    """The per-pod input of a compiled map: its named container ports."""
    if not any(p.name for c in pod.spec.containers for p in c.ports):
        return ()  # most pods: no generator, no sort
    return tuple(
        sorted(
            (p.name, p.protocol, p.container_port)
            for c in pod.spec.containers
            for p in c.ports
            if p.name
        )
    )
