"""Kubernetes NetworkPolicy (networking.k8s.io/v1) as a frozen typed view.

Defaulting follows the API documentation: ``protocol`` TCP when omitted; ``policyTypes``
is ``[Ingress]`` plus ``Egress`` when the spec has an ``egress`` section, unless given.
``from``/``to`` absent or empty means "every peer"; ``ports`` absent or empty means
"every port". ``SourceMap`` reads the annotations ``apply`` adds
(``ciliate.io/source`` = "file:line", ``ciliate.io/source-lines`` = JSON {path: line}),
so provenance can point at the manifest line of a rule.

Imports only ``ciliate.model.meta``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ciliate.model.meta import Doc, LabelSelector, ObjectMeta

SOURCE_ANNOTATION = "ciliate.io/source"
SOURCE_LINES_ANNOTATION = "ciliate.io/source-lines"


@dataclass(frozen=True, slots=True)
class SourceMap:
    """Where an object's fields came from (empty when the annotations are absent)."""

    file: str = ""
    line: int = 0
    lines: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_meta(cls, meta: ObjectMeta) -> SourceMap:
        src = meta.annotations.get(SOURCE_ANNOTATION, "")
        file, _, line = src.rpartition(":")
        if not file:
            file, line = src, ""
        lines: dict[str, int] = {}
        raw = meta.annotations.get(SOURCE_LINES_ANNOTATION, "")
        if raw:
            try:
                parsed = json.loads(raw)
                if isinstance(parsed, dict):
                    lines = {str(k): int(v) for k, v in parsed.items() if str(v).isdigit()}
            except (ValueError, TypeError):
                lines = {}
        return cls(file, int(line) if line.isdigit() else 0, lines)

    def line_of(self, path: str) -> int:
        """The line of a field path, else of its closest ancestor, else the object's."""
        p = path
        while p:
            if p in self.lines:
                return self.lines[p]
            cut = max(p.rfind("."), p.rfind("["))
            p = p[:cut] if cut > 0 else ""
        return self.line

    def where(self, path: str) -> str:
        """``file:line`` of a field path, or "" when unknown."""
        if not self.file:
            return ""
        line = self.line_of(path)
        return f"{self.file}:{line}" if line else self.file


@dataclass(frozen=True, slots=True)
class IPBlock:
    cidr: str
    except_: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class NetworkPolicyPeer:
    """One peer: podSelector and namespaceSelector in one peer are ANDed; ipBlock alone."""

    pod_selector: LabelSelector | None = None
    namespace_selector: LabelSelector | None = None
    ip_block: IPBlock | None = None


@dataclass(frozen=True, slots=True)
class NetworkPolicyPort:
    protocol: str = "TCP"
    port: int | str | None = None  # None = every port; str = a named container port
    end_port: int | None = None


@dataclass(frozen=True, slots=True)
class NetworkPolicyRule:
    """One ingress (``from``) or egress (``to``) rule; empty peers/ports mean all."""

    peers: tuple[NetworkPolicyPeer, ...] = ()
    ports: tuple[NetworkPolicyPort, ...] = ()


@dataclass(frozen=True, slots=True)
class NetworkPolicy:
    meta: ObjectMeta
    pod_selector: LabelSelector
    policy_types: frozenset[str]  # "Ingress", "Egress" (after defaulting)
    ingress: tuple[NetworkPolicyRule, ...]
    egress: tuple[NetworkPolicyRule, ...]
    source: SourceMap = field(default_factory=SourceMap, compare=False)
    doc: Doc = field(default_factory=dict, repr=False, compare=False)

    kind = "NetworkPolicy"

    @property
    def key(self) -> str:
        return f"{self.meta.namespace}/{self.meta.name}"

    @classmethod
    def from_doc(cls, doc: Doc) -> NetworkPolicy:
        meta = ObjectMeta.from_doc(doc)
        spec = doc.get("spec") or {}
        types = spec.get("policyTypes")
        if types:
            ptypes = frozenset(str(t) for t in types)
        else:
            ptypes = frozenset({"Ingress", "Egress"} if spec.get("egress") else {"Ingress"})
        return cls(
            meta=meta,
            pod_selector=LabelSelector.from_doc(spec.get("podSelector")),
            policy_types=ptypes,
            ingress=tuple(_rule(r, "from") for r in spec.get("ingress") or ()),
            egress=tuple(_rule(r, "to") for r in spec.get("egress") or ()),
            source=SourceMap.from_meta(meta),
            doc=doc,
        )


def _rule(r: Mapping[str, Any] | None, peer_field: str) -> NetworkPolicyRule:
    r = r or {}
    return NetworkPolicyRule(
        peers=tuple(_peer(p) for p in r.get(peer_field) or ()),
        ports=tuple(_port(p) for p in r.get("ports") or ()),
    )


def _peer(p: Mapping[str, Any]) -> NetworkPolicyPeer:
    ipb = p.get("ipBlock")
    return NetworkPolicyPeer(
        pod_selector=None
        if p.get("podSelector") is None
        else LabelSelector.from_doc(p.get("podSelector")),
        namespace_selector=None
        if p.get("namespaceSelector") is None
        else LabelSelector.from_doc(p.get("namespaceSelector")),
        ip_block=None
        if ipb is None
        else IPBlock(str(ipb.get("cidr", "")), tuple(str(x) for x in ipb.get("except") or ())),
    )


def _port(p: Mapping[str, Any]) -> NetworkPolicyPort:
    raw = p.get("port")
    port: int | str | None
    if raw is None:
        port = None
    elif isinstance(raw, int) or str(raw).isdigit():
        port = int(raw)
    else:
        port = str(raw)
    end = p.get("endPort")
    return NetworkPolicyPort(
        protocol=str(p.get("protocol") or "TCP").upper(),
        port=port,
        end_port=None if end is None else int(end),
    )
