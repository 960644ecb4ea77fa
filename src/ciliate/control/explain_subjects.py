"""Subjects: the policy rules that select a pod for one direction, with their allow and
deny elements, as the explain oracle reads them from the typed policies.

- NetworkPolicy: same namespace, podSelector matches, the direction in policyTypes;
  always default deny for that direction.
- CNP/CCNP: per rule, the endpointSelector matches the pod's identity labels (a CNP's
  own namespace replaces any namespace key the user wrote, cilium.md §6.2) and the rule
  has an allow or a deny section for the direction; default deny unless
  enableDefaultDeny sets it false.
- Mode ``never``: no rule applies at all (cilium.md §6.1).

Input: the ``OracleCluster``, the subject ``Endpoint`` and the direction. Output:
``Subject``s. Sans-IO; imports the model and ``control.selectors``. Must not import
``control.rules``/``control.policy``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ciliate.control.explain_cluster import OracleCluster
from ciliate.control.explain_peers import NS_KEY, match_sel
from ciliate.control.explanation import Endpoint, RuleRef
from ciliate.control.selectors import normalize_key
from ciliate.model.meta import LabelSelector


@dataclass(frozen=True, slots=True)
class Subject:
    """One rule selecting the subject pod: its reference, whether it puts the pod in
    default deny for the direction, and its elements as (deny, element, rule path)."""

    ref: RuleRef
    default_deny: bool
    elements: tuple[tuple[bool, Any, str], ...]
    policy: Any


def selecting_rules(
    cluster: OracleCluster, mode: str, subject: Endpoint, egress: bool
) -> list[Subject]:
    """Rules selecting ``subject`` in this direction (with their elements)."""
    out: list[Subject] = []
    pod = subject.pod
    if pod is None or mode == "never":
        return out
    for np in cluster.netpols:
        if np.meta.namespace != pod.meta.namespace or not np.pod_selector.matches(pod.meta.labels):
            continue
        tname = "Egress" if egress else "Ingress"
        if tname not in np.policy_types:
            continue
        section = "egress" if egress else "ingress"
        ref = RuleRef(np.kind, np.meta.namespace, np.meta.name, "spec", np.source.where("spec"))
        rules = np.egress if egress else np.ingress
        elems: tuple[tuple[bool, Any, str], ...] = tuple(
            (False, r, f"spec.{section}[{i}]") for i, r in enumerate(rules)
        )
        out.append(Subject(ref, True, elems, np))
    for cp in cluster.cilium:
        if not cp.clusterwide and cp.meta.namespace != pod.meta.namespace:
            continue
        for rule in cp.rules:
            if rule.endpoint_selector is None:
                continue
            sel = rule.endpoint_selector
            if not cp.clusterwide:
                sel = LabelSelector(
                    tuple(r for r in sel.requirements if normalize_key(r.key) != NS_KEY)
                )
            if not match_sel(sel, subject.labels):
                continue
            allow = rule.egress if egress else rule.ingress
            deny = rule.egress_deny if egress else rule.ingress_deny
            if allow is None and deny is None:
                continue
            dd = rule.default_deny_egress if egress else rule.default_deny_ingress
            ref = RuleRef(
                cp.kind, cp.meta.namespace, cp.meta.name, rule.path, cp.source.where(rule.path)
            )
            elems = tuple((False, e, e.path) for e in allow or ()) + tuple(
                (True, e, e.path) for e in deny or ()
            )
            out.append(Subject(ref, dd is not False, elems, cp))
    return out
