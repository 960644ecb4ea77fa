"""Explanations: the answer types of the policy oracle and how they print.

``Endpoint`` (a pod, the host or an outside IP), ``RuleRef`` (kind, namespace/name, rule
path, file:line), ``DirectionVerdict`` (one side: who selects the subject, what decided,
why), ``Explanation`` (both sides, the verdict, ``text()`` and ``to_json()`` for
``ciliate policy explain``). Produced by ``control.explain``; pure data, no evaluation.

Imports only ``ciliate.desired``, ``ciliate.model`` and ``control.l7`` (rule texts).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Any

from ciliate.control.l7 import describe
from ciliate.desired import L7Rule
from ciliate.model.core import Namespace, Pod

DROP_POLICY_DENY = 181


def namespace_labels(ns: Namespace | None, name: str) -> dict[str, str]:
    """A namespace's labels as the API server stores them (with metadata.name)."""
    labels = dict(ns.meta.labels) if ns is not None else {}
    labels.setdefault("kubernetes.io/metadata.name", name)
    return labels


@dataclass(frozen=True, slots=True)
class Endpoint:
    kind: str  # pod | world | host
    name: str  # ns/name, the IP, or "host"
    pod: Pod | None = None
    ip: IPv4Address | None = None
    labels: Mapping[str, str] = field(default_factory=dict)  # identity labels (source:key)

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class RuleRef:
    kind: str
    namespace: str
    name: str
    rule: str
    where: str = ""  # file:line

    def __str__(self) -> str:
        obj = f"{self.namespace}/{self.name}" if self.namespace else self.name
        s = f"{self.kind} {obj} {self.rule}".rstrip()
        return f"{s} ({self.where})" if self.where else s

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "rule": self.rule,
            "source": self.where,
        }


@dataclass(frozen=True, slots=True)
class DirectionVerdict:
    direction: str  # egress | ingress
    subject: str  # the pod whose policy decides, or "" (world/host: no policy)
    enforced: bool
    selected_by: tuple[RuleRef, ...]
    allowed: bool
    drop_reason: int
    decided_by: tuple[RuleRef, ...]
    reason: str
    redirect: bool = False
    l7_rules: tuple[L7Rule, ...] = ()
    http_status: int = 0  # 403 when the proxy refuses the request
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "direction": self.direction,
            "subject": self.subject,
            "enforced": self.enforced,
            "selectedBy": [r.to_json() for r in self.selected_by],
            "allowed": self.allowed,
            "dropReason": self.drop_reason,
            "decidedBy": [r.to_json() for r in self.decided_by],
            "reason": self.reason,
            "redirect": self.redirect,
            "l7Rules": [describe(r) for r in self.l7_rules],
            "httpStatus": self.http_status,
            "notes": list(self.notes),
        }


@dataclass(frozen=True, slots=True)
class Explanation:
    src: str
    dst: str
    port: int
    protocol: str
    http: tuple[str, str] | None
    allowed: bool
    drop_reason: int
    http_status: int
    egress: DirectionVerdict
    ingress: DirectionVerdict

    @property
    def verdict(self) -> str:
        if self.allowed:
            return "ALLOWED"
        if self.http_status:
            return f"DENIED (HTTP {self.http_status} by the proxy)"
        name = (
            "Policy denied by denylist"
            if self.drop_reason == DROP_POLICY_DENY
            else ("Policy denied")
        )
        return f"DROPPED ({name}, {self.drop_reason})"

    def text(self) -> str:
        req = f" {self.http[0]} {self.http[1]}" if self.http else ""
        lines = [f"{self.src} -> {self.dst} {self.port}/{self.protocol}{req}: {self.verdict}"]
        for d in (self.egress, self.ingress):
            lines.append(f"  {d.direction}:")
            if d.selected_by:
                lines.append(f"    {d.subject} is selected by:")
                lines.extend(f"      - {r}" for r in d.selected_by)
            lines.append(f"    {d.reason}")
            for r in d.decided_by:
                lines.append(f"      by {r}")
            if d.redirect:
                rules = ", ".join(describe(r) for r in d.l7_rules)
                lines.append(f"    redirected to the L7 proxy: {rules}")
            lines.extend(f"    note: {n}" for n in d.notes)
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "src": self.src,
            "dst": self.dst,
            "port": self.port,
            "protocol": self.protocol,
            "http": None if self.http is None else {"method": self.http[0], "path": self.http[1]},
            "verdict": self.verdict,
            "allowed": self.allowed,
            "dropReason": self.drop_reason,
            "httpStatus": self.http_status,
            "egress": self.egress.to_json(),
            "ingress": self.ingress.to_json(),
        }


def object_name(r: RuleRef) -> str:
    return f"{r.namespace}/{r.name}" if r.namespace else r.name
