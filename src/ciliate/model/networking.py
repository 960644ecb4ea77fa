"""networking.k8s.io/v1 Ingress and IngressClass (typed read-only views).

NetworkPolicy, in the same API group, lives in ``model.netpol``. An Ingress backend is
``service.name`` + ``service.port.number|name`` (the removed extensions/v1beta1 form
``serviceName``/``servicePort`` is refused by the decoder). The address kubectl shows
is ``status.loadBalancer.ingress[].ip|hostname``. Imports only ``ciliate.model.meta``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ciliate.model.meta import Doc, ObjectMeta

DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"


@dataclass(frozen=True, slots=True)
class IngressBackend:
    service_name: str = ""
    port_number: int = 0
    port_name: str = ""
    resource: Mapping[str, Any] | None = None  # a TypedLocalObjectReference, kept as given

    @classmethod
    def from_doc(cls, d: Mapping[str, Any] | None) -> IngressBackend | None:
        if not d:
            return None
        svc = d.get("service") or {}
        port = svc.get("port") or {}
        num = port.get("number")
        return cls(
            str(svc.get("name", "") or ""),
            num if isinstance(num, int) and not isinstance(num, bool) else 0,
            str(port.get("name", "") or ""),
            d.get("resource"),
        )


@dataclass(frozen=True, slots=True)
class IngressPath:
    path: str
    path_type: str  # Exact | Prefix | ImplementationSpecific
    backend: IngressBackend | None


@dataclass(frozen=True, slots=True)
class IngressRule:
    host: str  # "" = every host
    paths: tuple[IngressPath, ...]


@dataclass(frozen=True, slots=True)
class IngressTLS:
    hosts: tuple[str, ...]
    secret_name: str


@dataclass(frozen=True, slots=True)
class Ingress:
    meta: ObjectMeta
    ingress_class_name: str  # "" = the default class (or the legacy annotation)
    default_backend: IngressBackend | None
    rules: tuple[IngressRule, ...]
    tls: tuple[IngressTLS, ...]
    addresses: tuple[str, ...]  # status.loadBalancer.ingress[].ip or hostname
    doc: Doc = field(repr=False, compare=False)

    @classmethod
    def from_doc(cls, doc: Doc) -> Ingress:
        meta = ObjectMeta.from_doc(doc)
        spec = doc.get("spec") or {}
        rules: list[IngressRule] = []
        for r in spec.get("rules") or ():
            paths = tuple(
                IngressPath(
                    str(p.get("path", "/") or "/"),
                    str(p.get("pathType", "ImplementationSpecific")),
                    IngressBackend.from_doc(p.get("backend")),
                )
                for p in (r.get("http") or {}).get("paths") or ()
            )
            rules.append(IngressRule(str(r.get("host", "") or ""), paths))
        klass = spec.get("ingressClassName") or meta.annotations.get(
            "kubernetes.io/ingress.class", ""
        )
        lb = ((doc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or ()
        return cls(
            meta,
            str(klass),
            IngressBackend.from_doc(spec.get("defaultBackend")),
            tuple(rules),
            tuple(
                IngressTLS(
                    tuple(str(h) for h in t.get("hosts") or ()), str(t.get("secretName", ""))
                )
                for t in spec.get("tls") or ()
            ),
            tuple(
                str(i.get("ip") or i.get("hostname"))
                for i in lb
                if i.get("ip") or i.get("hostname")
            ),
            doc,
        )

    @property
    def hosts(self) -> tuple[str, ...]:
        """HOSTS column: rule hosts, "*" for a rule without one."""
        return tuple(r.host or "*" for r in self.rules)


@dataclass(frozen=True, slots=True)
class IngressClass:
    meta: ObjectMeta
    controller: str
    is_default: bool
    doc: Doc = field(repr=False, compare=False)

    @classmethod
    def from_doc(cls, doc: Doc) -> IngressClass:
        meta = ObjectMeta.from_doc(doc)
        return cls(
            meta,
            str((doc.get("spec") or {}).get("controller", "") or ""),
            meta.annotations.get(DEFAULT_CLASS_ANNOTATION) == "true",
            doc,
        )
