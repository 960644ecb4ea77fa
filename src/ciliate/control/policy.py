"""Policy compilation: rules -> per-identity selection -> per-endpoint policy maps.

Role (cilium.md §6.4): ``compute_policy(PolicyInputs) -> PolicyResult`` is what the
control engine calls; ``PolicyCompiler`` is the stateful, incremental form behind it.

Theory of operation:

1. Every policy document is resolved into ``rules.Rule``s (``rules.resolve_rules``).
2. CIDR peers allocate local-scope identities (``1<<24 | n``, labels ``cidr:<prefix>``
   and ``reserved:world``; 0.0.0.0/0 is ``reserved:world`` itself); they are returned in
   ``cidr_identities`` so the engine can put them into the ipcache.
3. A ``SelectorCache`` resolves every subject and peer selector to identities once.
4. Endpoints are grouped by (identity, container ports): pods of a group share one
   compiled map (named ports are the only per-pod input), so N replicas compile once.
5. For a group, the rules selecting its identity give the enforcement per direction
   (mode ``default``: a selecting rule with that direction; ``always``; ``never``),
   then every element yields keys (peer identity or 0 for the wildcard) x (protocol,
   aligned port block) with provenance, inserted through ``MapStateBuilder`` (deny
   precedence of §6.5). A non-enforced direction gets the allow-all entry; an
   enforced ingress gets the allow-localhost entry for identity 1 (host).
   CIDR and service peers are resolved by ``control.peers``.
6. Incremental updates (``set_policy``, ``remove_policy``, ``set_pod``, ``remove_pod``,
   ``set_namespace_pods``, ``set_services``) recompute only the groups whose selecting
   rules or peer identities changed and return the pods whose maps changed. A new (or
   gone) identity does not regenerate the maps of the rules peering with it: its keys
   are built against the map's identity-0 denies only and layered over the old map
   (``desired.layered``), because §6.5 coverage never relates two non-zero identities.
7. Maps are never mutated once returned (consumers diff and cache them by identity).

Modules: ``compilation`` (inputs and results), ``compiler`` (``PolicyCompiler``: state
and incremental updates), ``rule_index`` (rule lookups), ``distillery`` (rules -> map
entries; a new identity's keys), ``rules``, ``selectors``, ``peers``, ``mapstate``.
This module is the entry point and keeps the import paths of all of them.

Sans-IO; imports the model, ``desired`` and ``control``.
"""

from __future__ import annotations

from ciliate.control.compilation import (
    CIDR_ID_SPAN,
    WORLD_NET,
    EndpointPolicy,
    GroupKey,
    PolicyInputs,
    PolicyResult,
    cidr_identity_labels,
    named_port_key,
)
from ciliate.control.compiler import PolicyCompiler

__all__ = [
    "CIDR_ID_SPAN",
    "WORLD_NET",
    "EndpointPolicy",
    "GroupKey",
    "PolicyCompiler",
    "PolicyInputs",
    "PolicyResult",
    "cidr_identity_labels",
    "compute_policy",
    "named_port_key",
]


def compute_policy(inputs: PolicyInputs) -> PolicyResult:
    """Per-endpoint policy maps for every pod of ``inputs`` (one full compilation)."""
    return PolicyCompiler.from_inputs(inputs).result()
