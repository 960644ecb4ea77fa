"""Endpoint policies: the policy map and enforcement of every pod, kept up to date.

Role: the engine's side of ``control.policy``: it feeds the policy compiler pods,
policies and (only when a policy names one) services, and answers "what is pod P's
policy map now" after each change. Until ``control.policy`` exists (an ImportError),
every endpoint gets Cilium's allow-all entries for both directions (identity 0, any
protocol and port; provenance ``allow-any-ingress``/``allow-any-egress``).

Inputs: pods with their identities and IPs, namespaces, identities, policy documents,
Services and EndpointSlices. Outputs: ``EPPolicy`` per pod key, the CIDR identities
policies need (``cidr_identities``), and for every update the set of pods whose maps
were recompiled.

Sans-IO; imports the model, ``desired`` and ``control``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from ciliate.desired import Identity, PolicyEntry, PolicyKey, PolicyMap, Provenance
from ciliate.model.cluster import ClusterConfig
from ciliate.model.core import Namespace, Pod, Service
from ciliate.model.meta import Doc, doc_key

try:  # the policy engineer's compiler; the allow-all fallback goes when it lands
    from ciliate.control import policy as _policy
except ImportError:  # pragma: no cover - only before control/policy.py exists
    _policy = None  # type: ignore[assignment]

POLICY_KINDS = frozenset({"NetworkPolicy", "CiliumNetworkPolicy", "CiliumClusterwideNetworkPolicy"})
_DERIVED = "derived"

ALLOW_ALL: PolicyMap = {
    PolicyKey(0, False): PolicyEntry(
        provenance=(Provenance(_DERIVED, "", "", "allow-any-ingress"),)
    ),
    PolicyKey(0, True): PolicyEntry(provenance=(Provenance(_DERIVED, "", "", "allow-any-egress"),)),
}


@dataclass(frozen=True, slots=True)
class EPPolicy:
    map: PolicyMap
    ingress_enforced: bool
    egress_enforced: bool
    # (previous map, entries added to it) when that is all that changed (the compiler's
    # ``EndpointPolicy.extends``)
    extends: tuple[PolicyMap, Mapping[PolicyKey, PolicyEntry]] | None = field(
        default=None, compare=False, repr=False
    )


FALLBACK = EPPolicy(ALLOW_ALL, False, False)


def uses_services(x: Any) -> bool:
    """Whether a policy document has a ``toServices`` peer anywhere."""
    if isinstance(x, Mapping):
        return "toServices" in x or any(uses_services(v) for v in x.values())
    if isinstance(x, list):
        return any(uses_services(v) for v in x)
    return False


class EndpointPolicies:
    def __init__(self) -> None:
        self.compiler: Any = None
        self.by_pod: dict[str, EPPolicy] = {}
        self.cidr_identities: dict[IPv4Network, Identity] = {}
        self.docs: dict[tuple[str, str, str], Doc] = {}

    @property
    def incremental(self) -> bool:
        """Whether policy documents can be applied one by one (a compiler exists)."""
        return self.compiler is not None

    def get(self, pod: str) -> EPPolicy:
        return self.by_pod.get(pod, FALLBACK)

    def uses_services(self) -> bool:
        return any(uses_services(d) for d in self.docs.values())

    def rebuild(
        self,
        config: ClusterConfig,
        namespaces: Sequence[Namespace],
        pods: Mapping[str, tuple[Pod, int, str | IPv4Address]],  # key -> (pod, identity, ip)
        identities: Mapping[int, Identity],
        policy_docs: Mapping[tuple[str, str, str], Doc],
        services: Callable[[], tuple[list[Service], list[Doc]]],
    ) -> None:
        """Compile everything. ``services`` is called only when a policy names one:
        nothing else reads services and slices."""
        self.docs = dict(policy_docs)
        self.by_pod = {}
        self.cidr_identities = {}
        if _policy is None:
            self.compiler = None
            self.by_pod = dict.fromkeys(pods, FALLBACK)
            return
        svcs, slices = services() if self.uses_services() else ([], [])
        inputs = _policy.PolicyInputs(
            config=config,
            namespaces=list(namespaces),
            pods=[p for p, _, _ in pods.values()],
            pod_identity={k: ident for k, (_, ident, _) in pods.items()},
            identities=identities,
            policies=list(self.docs.values()),
            services=svcs,
            endpoint_slices=slices,
            pod_ips={k: ip for k, (_, _, ip) in pods.items()},
        )
        self.compiler = _policy.PolicyCompiler.from_inputs(inputs)
        result = self.compiler.result()
        for key in pods:
            ep = result.endpoints.get(key)
            self.by_pod[key] = (
                EPPolicy(ep.map, ep.ingress_enforced, ep.egress_enforced) if ep else FALLBACK
            )
        self.cidr_identities = dict(result.cidr_identities)

    # --- incremental: each returns the pods whose maps were recompiled ----------------

    def set_pod(self, pod: Pod, identity: Identity, ip: str | IPv4Address) -> set[str]:
        if self.compiler is None:
            self.by_pod[pod.key] = FALLBACK
            return set()
        return set(self.compiler.set_pod(pod, identity, ip)) | {pod.key}

    def remove_pod(self, key: str) -> set[str]:
        self.by_pod.pop(key, None)
        if self.compiler is None:
            return set()
        return set(self.compiler.remove_pod(key)) - {key}

    def set_policy(
        self, d: Doc, services: Callable[[], tuple[list[Service], list[Doc]]]
    ) -> set[str]:
        self.docs[doc_key(d)] = d
        out: set[str] = set()
        if uses_services(d) and hasattr(self.compiler, "set_services"):
            # Service and slice changes skip the compiler while no policy names a
            # service; bring it up to date before one does.
            out |= set(self.compiler.set_services(*services()))
        return out | set(self.compiler.set_policy(d))

    def remove_policy(self, d: Doc) -> set[str]:
        self.docs.pop(doc_key(d), None)
        kind, ns, name = doc_key(d)
        return set(self.compiler.remove_policy(kind, ns, name))

    def set_services(self, services: list[Service], slices: list[Doc]) -> set[str]:
        if not hasattr(self.compiler, "set_services"):
            return set()
        return set(self.compiler.set_services(services, slices))

    def refresh(self, pods: Iterable[str]) -> dict[str, EPPolicy]:
        """The current policy of recompiled pods (recorded, and returned)."""
        out: dict[str, EPPolicy] = {}
        if self.compiler is None:
            return out
        shared: dict[int, EPPolicy] = {}  # pods of one group share one compiled policy
        for key in pods:
            ep = self.compiler.endpoint(key)
            if ep is None:
                continue
            new = shared.get(id(ep))
            if new is None:
                new = shared[id(ep)] = EPPolicy(
                    ep.map, ep.ingress_enforced, ep.egress_enforced, ep.extends
                )
            self.by_pod[key] = new
            out[key] = new
        return out

    def compiler_cidr_identities(self) -> dict[IPv4Network, Identity]:
        return dict(self.compiler.cidr_identities) if self.compiler is not None else {}
