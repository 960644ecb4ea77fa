"""Gateway API kinds (gateway.networking.k8s.io): GatewayClass, Gateway, HTTPRoute,
GRPCRoute, TLSRoute, ReferenceGrant, as typed read-only views.

Field names and defaults follow the Gateway API spec (v1.2): a parentRef's group
defaults to gateway.networking.k8s.io and kind to Gateway; a backendRef's kind to
Service (core group) and weight to 1; a route rule without matches matches the path
prefix "/"; a listener's allowedRoutes.namespaces.from defaults to Same. Route status
(Accepted, ResolvedRefs) is computed by control/gateway, not read here.
Imports only ``ciliate.model.meta``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Self

from ciliate.model.meta import Doc, LabelSelector, ObjectMeta

GROUP = "gateway.networking.k8s.io"


def _s(v: Any, default: str = "") -> str:
    return default if v is None else str(v)


def _i(v: Any, default: int = 0) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else default


def _conditions(status: Mapping[str, Any]) -> Mapping[str, str]:
    return {
        str(c.get("type")): str(c.get("status"))
        for c in status.get("conditions") or ()
        if isinstance(c, Mapping)
    }


@dataclass(frozen=True, slots=True)
class GatewayClass:
    meta: ObjectMeta
    controller_name: str
    description: str
    doc: Doc = field(repr=False, compare=False)

    @classmethod
    def from_doc(cls, doc: Doc) -> GatewayClass:
        spec = doc.get("spec") or {}
        return cls(
            ObjectMeta.from_doc(doc),
            _s(spec.get("controllerName")),
            _s(spec.get("description")),
            doc,
        )


@dataclass(frozen=True, slots=True)
class Listener:
    name: str
    port: int
    protocol: str  # HTTP | HTTPS | TLS | TCP | UDP
    hostname: str = ""  # "" = any
    allowed_namespaces: str = "Same"  # All | Same | Selector
    namespace_selector: LabelSelector | None = None
    allowed_kinds: tuple[str, ...] = ()  # () = the kinds the protocol supports
    tls_mode: str = ""  # Terminate | Passthrough
    certificate_refs: tuple[str, ...] = ()  # "namespace/name" of Secrets

    @classmethod
    def from_doc(cls, d: Mapping[str, Any], gateway_ns: str) -> Listener:
        ar = d.get("allowedRoutes") or {}
        ns = ar.get("namespaces") or {}
        sel = ns.get("selector")
        tls = d.get("tls") or {}
        return cls(
            name=_s(d.get("name")),
            port=_i(d.get("port")),
            protocol=_s(d.get("protocol"), "HTTP"),
            hostname=_s(d.get("hostname")),
            allowed_namespaces=_s(ns.get("from"), "Same"),
            namespace_selector=None if sel is None else LabelSelector.from_doc(sel),
            allowed_kinds=tuple(_s(k.get("kind")) for k in ar.get("kinds") or ()),
            tls_mode=_s(tls.get("mode")) if tls else "",
            certificate_refs=tuple(
                f"{_s(r.get('namespace'), gateway_ns)}/{_s(r.get('name'))}"
                for r in tls.get("certificateRefs") or ()
            ),
        )


@dataclass(frozen=True, slots=True)
class Gateway:
    meta: ObjectMeta
    gateway_class_name: str
    listeners: tuple[Listener, ...]
    addresses: tuple[str, ...]  # spec.addresses[].value (requested)
    status_addresses: tuple[str, ...]  # status.addresses[].value (assigned)
    conditions: Mapping[str, str]  # status.conditions type -> status ("True"...)
    doc: Doc = field(repr=False, compare=False)

    @classmethod
    def from_doc(cls, doc: Doc) -> Gateway:
        meta = ObjectMeta.from_doc(doc)
        spec = doc.get("spec") or {}
        status = doc.get("status") or {}
        return cls(
            meta,
            _s(spec.get("gatewayClassName")),
            tuple(Listener.from_doc(x, meta.namespace) for x in spec.get("listeners") or ()),
            tuple(_s(a.get("value")) for a in spec.get("addresses") or ()),
            tuple(_s(a.get("value")) for a in status.get("addresses") or ()),
            _conditions(status),
            doc,
        )

    @property
    def programmed(self) -> str:
        """PROGRAMMED column: the status of the Programmed condition, "Unknown" if none."""
        return self.conditions.get("Programmed", "Unknown")


@dataclass(frozen=True, slots=True)
class ParentRef:
    name: str
    namespace: str  # defaults to the route's namespace
    group: str = GROUP
    kind: str = "Gateway"
    section_name: str = ""
    port: int = 0

    @classmethod
    def from_doc(cls, d: Mapping[str, Any], route_ns: str) -> ParentRef:
        return cls(
            _s(d.get("name")),
            _s(d.get("namespace"), route_ns),
            _s(d.get("group"), GROUP),
            _s(d.get("kind"), "Gateway"),
            _s(d.get("sectionName")),
            _i(d.get("port")),
        )


@dataclass(frozen=True, slots=True)
class BackendRef:
    name: str
    namespace: str
    port: int
    weight: int = 1
    group: str = ""  # "" = core
    kind: str = "Service"

    @classmethod
    def from_doc(cls, d: Mapping[str, Any], route_ns: str) -> BackendRef:
        return cls(
            _s(d.get("name")),
            _s(d.get("namespace"), route_ns),
            _i(d.get("port")),
            _i(d.get("weight"), 1),
            _s(d.get("group")),
            _s(d.get("kind"), "Service"),
        )


@dataclass(frozen=True, slots=True)
class HeaderMatch:
    name: str
    value: str
    type: str = "Exact"  # Exact | RegularExpression


@dataclass(frozen=True, slots=True)
class RouteMatch:
    path_type: str = "PathPrefix"  # Exact | PathPrefix | RegularExpression
    path: str = "/"
    method: str = ""  # "" = any
    headers: tuple[HeaderMatch, ...] = ()
    query_params: tuple[HeaderMatch, ...] = ()

    @classmethod
    def from_doc(cls, d: Mapping[str, Any]) -> RouteMatch:
        path = d.get("path") or {}

        def hm(items: Any) -> tuple[HeaderMatch, ...]:
            return tuple(
                HeaderMatch(_s(h.get("name")), _s(h.get("value")), _s(h.get("type"), "Exact"))
                for h in items or ()
            )

        return cls(
            _s(path.get("type"), "PathPrefix"),
            _s(path.get("value"), "/"),
            _s(d.get("method")),
            hm(d.get("headers")),
            hm(d.get("queryParams")),
        )


@dataclass(frozen=True, slots=True)
class RouteRule:
    matches: tuple[RouteMatch, ...]  # never empty: no matches = PathPrefix "/"
    backend_refs: tuple[BackendRef, ...]
    filters: tuple[Mapping[str, Any], ...] = ()  # kept as given (RequestHeaderModifier...)

    @classmethod
    def from_doc(cls, d: Mapping[str, Any], route_ns: str) -> RouteRule:
        matches = tuple(RouteMatch.from_doc(m) for m in d.get("matches") or ())
        return cls(
            matches or (RouteMatch(),),
            tuple(BackendRef.from_doc(b, route_ns) for b in d.get("backendRefs") or ()),
            tuple(d.get("filters") or ()),
        )


@dataclass(frozen=True, slots=True)
class Route:
    """HTTPRoute, GRPCRoute, TLSRoute (and TCP/UDP routes): parents, hostnames, rules."""

    kind: str
    meta: ObjectMeta
    parent_refs: tuple[ParentRef, ...]
    hostnames: tuple[str, ...]
    rules: tuple[RouteRule, ...]
    doc: Doc = field(repr=False, compare=False)

    @classmethod
    def from_doc(cls, doc: Doc) -> Self:
        meta = ObjectMeta.from_doc(doc)
        spec = doc.get("spec") or {}
        return cls(
            _s(doc.get("kind"), "HTTPRoute"),
            meta,
            tuple(ParentRef.from_doc(p, meta.namespace) for p in spec.get("parentRefs") or ()),
            tuple(_s(h) for h in spec.get("hostnames") or ()),
            tuple(RouteRule.from_doc(r, meta.namespace) for r in spec.get("rules") or ()),
            doc,
        )


class HTTPRoute(Route):
    """An HTTPRoute (``Route`` with kind HTTPRoute)."""

    __slots__ = ()


class GRPCRoute(Route):
    __slots__ = ()


class TLSRoute(Route):
    __slots__ = ()


@dataclass(frozen=True, slots=True)
class GrantFrom:
    group: str
    kind: str
    namespace: str


@dataclass(frozen=True, slots=True)
class GrantTo:
    group: str
    kind: str
    name: str = ""  # "" = every object of the kind


@dataclass(frozen=True, slots=True)
class ReferenceGrant:
    meta: ObjectMeta
    from_: tuple[GrantFrom, ...]
    to: tuple[GrantTo, ...]
    doc: Doc = field(repr=False, compare=False)

    @classmethod
    def from_doc(cls, doc: Doc) -> ReferenceGrant:
        spec = doc.get("spec") or {}
        return cls(
            ObjectMeta.from_doc(doc),
            tuple(
                GrantFrom(_s(f.get("group")), _s(f.get("kind")), _s(f.get("namespace")))
                for f in spec.get("from") or ()
            ),
            tuple(
                GrantTo(_s(t.get("group")), _s(t.get("kind")), _s(t.get("name")))
                for t in spec.get("to") or ()
            ),
            doc,
        )

    def allows(
        self, from_ns: str, from_group: str, from_kind: str, group: str, kind: str, name: str
    ) -> bool:
        """Whether a ``from_kind`` in ``from_ns`` may refer to ``kind``/``name`` here."""
        return any(
            f.namespace == from_ns and f.group == from_group and f.kind == from_kind
            for f in self.from_
        ) and any(t.group == group and t.kind == kind and t.name in ("", name) for t in self.to)
