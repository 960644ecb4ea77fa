"""Object metadata and label selectors (metav1.ObjectMeta, metav1.LabelSelector).

Standard library only; every layer above imports it, so it must not import any of them.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

Doc = dict[str, Any]
"""A JSON-compatible Kubernetes document (apiVersion, kind, metadata, spec, status, ...)."""

CLUSTER_SCOPED_KINDS = frozenset(
    {
        "Namespace",
        "Node",
        "IngressClass",
        "GatewayClass",
        "CiliumClusterwideNetworkPolicy",
        "CiliumLoadBalancerIPPool",
        "CiliumL2AnnouncementPolicy",
        "CiliumNode",
        "CiliumIdentity",
        "IPPool",
        "BGPConfiguration",
        "Cluster",
    }
)


def is_namespaced(kind: str) -> bool:
    return kind not in CLUSTER_SCOPED_KINDS


@dataclass(frozen=True, slots=True)
class ObjectMeta:
    name: str
    namespace: str = ""  # "" for cluster-scoped objects
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    uid: str = ""
    resource_version: str = ""
    generation: int = 0
    creation_timestamp: str = ""
    owner_references: tuple[Mapping[str, Any], ...] = ()

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> ObjectMeta:
        m = doc.get("metadata") or {}
        return cls(
            name=str(m.get("name", "")),
            namespace=str(m.get("namespace", "") or ""),
            labels={str(k): str(v) for k, v in (m.get("labels") or {}).items()},
            annotations={str(k): str(v) for k, v in (m.get("annotations") or {}).items()},
            uid=str(m.get("uid", "")),
            resource_version=str(m.get("resourceVersion", "")),
            generation=int(m.get("generation", 0) or 0),
            creation_timestamp=str(m.get("creationTimestamp", "")),
            owner_references=tuple(m.get("ownerReferences") or ()),
        )


class SelectorOp(enum.StrEnum):
    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    op: SelectorOp
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        # Semantics of metav1.LabelSelectorRequirement (apimachinery labels.Requirement).
        if self.op is SelectorOp.IN:
            return self.key in labels and labels[self.key] in self.values
        if self.op is SelectorOp.NOT_IN:
            return self.key not in labels or labels[self.key] not in self.values
        if self.op is SelectorOp.EXISTS:
            return self.key in labels
        return self.key not in labels


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """A label selector; ``matchLabels`` are folded into ``In`` requirements.

    The empty selector (no requirements) matches everything; ``None`` where a selector
    is optional means "nothing" or "not given", as the owning field defines.
    """

    requirements: tuple[Requirement, ...] = ()

    @classmethod
    def from_doc(cls, sel: Mapping[str, Any] | None) -> LabelSelector:
        if not sel:
            return cls()
        reqs: list[Requirement] = []
        for k, v in sorted((sel.get("matchLabels") or {}).items()):
            reqs.append(Requirement(str(k), SelectorOp.IN, frozenset({str(v)})))
        for e in sel.get("matchExpressions") or ():
            reqs.append(
                Requirement(
                    str(e.get("key", "")),
                    SelectorOp(str(e.get("operator", "Exists"))),
                    frozenset(str(x) for x in (e.get("values") or ())),
                )
            )
        return cls(tuple(reqs))

    @classmethod
    def from_labels(cls, labels: Mapping[str, str]) -> LabelSelector:
        return cls(
            tuple(Requirement(k, SelectorOp.IN, frozenset({v})) for k, v in sorted(labels.items()))
        )

    @property
    def is_empty(self) -> bool:
        return not self.requirements

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)

    def __str__(self) -> str:
        parts: list[str] = []
        for r in self.requirements:
            vals = ",".join(sorted(r.values))
            if r.op is SelectorOp.IN and len(r.values) == 1:
                parts.append(f"{r.key}={vals}")
            elif r.op is SelectorOp.IN:
                parts.append(f"{r.key} in ({vals})")
            elif r.op is SelectorOp.NOT_IN:
                parts.append(f"{r.key} notin ({vals})")
            elif r.op is SelectorOp.EXISTS:
                parts.append(r.key)
            else:
                parts.append(f"!{r.key}")
        return ",".join(parts)


def name_of(doc: Mapping[str, Any]) -> str:
    """``metadata.name`` of a document ("" when absent)."""
    return str((doc.get("metadata") or {}).get("name", ""))


def namespace_of(doc: Mapping[str, Any]) -> str:
    """``metadata.namespace`` of a document ("" for cluster-scoped or absent)."""
    return str((doc.get("metadata") or {}).get("namespace", "") or "")


def doc_key(doc: Mapping[str, Any]) -> tuple[str, str, str]:
    """(kind, namespace, name) of a document: the identity of an object in the store."""
    return (str(doc.get("kind", "")), namespace_of(doc), name_of(doc))
