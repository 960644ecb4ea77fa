"""CiliumNetworkPolicy / CiliumClusterwideNetworkPolicy (cilium.io/v2) as typed views.

A policy carries ``spec`` (one rule) and/or ``specs`` (a list); both are kept, in that
order, each with its field path (``spec`` or ``specs[i]``) for provenance. Field
semantics are those of cilium.md §6.3; this module only parses, the namespace scoping
of §6.2 and all matching happen in ``ciliate.control``. Label keys stay as written
(``k8s:app``, ``app``, ``any:app``, ``reserved:host``).

Imports only ``ciliate.model.meta`` and ``ciliate.model.netpol`` (SourceMap).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ciliate.model.meta import Doc, LabelSelector, ObjectMeta
from ciliate.model.netpol import SourceMap

CNP_KIND = "CiliumNetworkPolicy"
CCNP_KIND = "CiliumClusterwideNetworkPolicy"

ICMP_TYPE_NAMES: Mapping[str, int] = {
    "EchoReply": 0,
    "DestinationUnreachable": 3,
    "Redirect": 5,
    "EchoRequest": 8,
    "RouterAdvertisement": 9,
    "RouterSelection": 10,
    "TimeExceeded": 11,
    "ParameterProblem": 12,
    "Timestamp": 13,
    "TimestampReply": 14,
    "Photuris": 40,
    "ExtendedEchoRequest": 42,
    "ExtendedEchoReply": 43,
}


@dataclass(frozen=True, slots=True)
class CIDRRule:
    cidr: str
    except_: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ServiceRef:
    name: str = ""
    namespace: str = ""
    selector: LabelSelector | None = None  # k8sServiceSelector


@dataclass(frozen=True, slots=True)
class HTTPRule:
    method: str = ""
    path: str = ""
    host: str = ""
    headers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DNSRule:
    match_name: str = ""
    match_pattern: str = ""


@dataclass(frozen=True, slots=True)
class PortProtocol:
    port: str = "0"  # a number or a named port; "0" / "" = every port
    end_port: int = 0
    protocol: str = "ANY"  # TCP | UDP | SCTP | ANY (ANY = TCP, UDP and SCTP)


@dataclass(frozen=True, slots=True)
class PortRule:
    ports: tuple[PortProtocol, ...] = ()
    http: tuple[HTTPRule, ...] | None = None  # None = no L7; () never (``http: []``)
    dns: tuple[DNSRule, ...] | None = None


@dataclass(frozen=True, slots=True)
class ICMPField:
    family: str = "IPv4"
    type: int = 0


@dataclass(frozen=True, slots=True)
class RuleElement:
    """One element of ``ingress``/``egress``/``ingressDeny``/``egressDeny``.

    ``endpoints`` None = not given (``[]`` given and empty selects nothing either)."""

    path: str  # e.g. "spec.ingress[0]"
    endpoints: tuple[LabelSelector, ...] | None = None
    requires: tuple[LabelSelector, ...] = ()
    entities: tuple[str, ...] = ()
    cidrs: tuple[CIDRRule, ...] = ()
    services: tuple[ServiceRef, ...] = ()
    fqdns: tuple[DNSRule, ...] = ()
    nodes: tuple[LabelSelector, ...] = ()
    to_ports: tuple[PortRule, ...] = ()
    icmps: tuple[ICMPField, ...] = ()

    @property
    def has_peer(self) -> bool:
        return bool(
            self.endpoints is not None
            or self.entities
            or self.cidrs
            or self.services
            or self.fqdns
            or self.nodes
        )

    @property
    def is_empty(self) -> bool:
        """``- {}``: selects nothing (but its section still enables default deny)."""
        return not self.has_peer and not self.to_ports and not self.icmps


@dataclass(frozen=True, slots=True)
class CiliumRule:
    path: str  # "spec" or "specs[i]"
    endpoint_selector: LabelSelector | None
    node_selector: LabelSelector | None
    ingress: tuple[RuleElement, ...] | None  # None = section absent
    ingress_deny: tuple[RuleElement, ...] | None
    egress: tuple[RuleElement, ...] | None
    egress_deny: tuple[RuleElement, ...] | None
    default_deny_ingress: bool | None = None  # enableDefaultDeny.ingress (None = unset)
    default_deny_egress: bool | None = None
    description: str = ""


@dataclass(frozen=True, slots=True)
class CiliumPolicy:
    """A CNP (namespaced) or CCNP (clusterwide, ``meta.namespace`` == "")."""

    kind: str
    meta: ObjectMeta
    rules: tuple[CiliumRule, ...]
    source: SourceMap = field(default_factory=SourceMap, compare=False)
    doc: Doc = field(default_factory=dict, repr=False, compare=False)

    @property
    def clusterwide(self) -> bool:
        return self.kind == CCNP_KIND

    @property
    def key(self) -> str:
        return f"{self.meta.namespace}/{self.meta.name}" if self.meta.namespace else self.meta.name

    @classmethod
    def from_doc(cls, doc: Doc) -> CiliumPolicy:
        meta = ObjectMeta.from_doc(doc)
        rules: list[CiliumRule] = []
        if doc.get("spec"):
            rules.append(_rule(doc["spec"], "spec"))
        for i, s in enumerate(doc.get("specs") or ()):
            rules.append(_rule(s, f"specs[{i}]"))
        return cls(
            str(doc.get("kind", CNP_KIND)), meta, tuple(rules), SourceMap.from_meta(meta), doc
        )


def _sel(d: Mapping[str, Any] | None) -> LabelSelector | None:
    return None if d is None else LabelSelector.from_doc(d)


def _sels(items: Any) -> tuple[LabelSelector, ...]:
    return tuple(LabelSelector.from_doc(x) for x in items or ())


def _section(spec: Mapping[str, Any], name: str, path: str) -> tuple[RuleElement, ...] | None:
    if name not in spec or spec[name] is None:
        return None
    prefix = "from" if name.startswith("ingress") else "to"
    return tuple(_element(e or {}, prefix, f"{path}.{name}[{i}]") for i, e in enumerate(spec[name]))


def _cidrs(e: Mapping[str, Any], prefix: str) -> tuple[CIDRRule, ...]:
    out = [CIDRRule(str(c)) for c in e.get(f"{prefix}CIDR") or ()]
    for s in e.get(f"{prefix}CIDRSet") or ():
        if s.get("cidr"):
            out.append(CIDRRule(str(s["cidr"]), tuple(str(x) for x in s.get("except") or ())))
    return tuple(out)


def _services(e: Mapping[str, Any]) -> tuple[ServiceRef, ...]:
    out: list[ServiceRef] = []
    for s in e.get("toServices") or ():
        if s.get("k8sService"):
            k = s["k8sService"]
            out.append(ServiceRef(str(k.get("serviceName", "")), str(k.get("namespace", "") or "")))
        elif s.get("k8sServiceSelector"):
            k = s["k8sServiceSelector"]
            out.append(
                ServiceRef("", str(k.get("namespace", "") or ""), _sel(k.get("selector") or {}))
            )
    return tuple(out)


def _dns(items: Any) -> tuple[DNSRule, ...]:
    return tuple(
        DNSRule(str(d.get("matchName", "") or ""), str(d.get("matchPattern", "") or ""))
        for d in items or ()
    )


def _port_rule(p: Mapping[str, Any]) -> PortRule:
    ports = tuple(
        PortProtocol(
            port=str(x.get("port", "0") or "0"),
            end_port=int(x.get("endPort", 0) or 0),
            protocol=str(x.get("protocol", "ANY") or "ANY").upper(),
        )
        for x in p.get("ports") or ()
    )
    rules = p.get("rules") or {}
    http = rules.get("http")
    return PortRule(
        ports=ports,
        http=None
        if http is None
        else tuple(
            HTTPRule(
                str(h.get("method", "") or ""),
                str(h.get("path", "") or ""),
                str(h.get("host", "") or ""),
                tuple(str(x) for x in h.get("headers") or ()),
            )
            for h in http
        ),
        dns=None if rules.get("dns") is None else _dns(rules.get("dns")),
    )


def _icmp_type(v: Any) -> int:
    if isinstance(v, int) or str(v).isdigit():
        return int(v)
    return ICMP_TYPE_NAMES.get(str(v), -1)


def _element(e: Mapping[str, Any], prefix: str, path: str) -> RuleElement:
    icmps: list[ICMPField] = []
    for block in e.get("icmps") or ():
        for f in block.get("fields") or ():
            icmps.append(
                ICMPField(str(f.get("family", "IPv4") or "IPv4"), _icmp_type(f.get("type")))
            )
    eps = e.get(f"{prefix}Endpoints")
    return RuleElement(
        path=path,
        endpoints=None if eps is None else _sels(eps),
        requires=_sels(e.get(f"{prefix}Requires")),
        entities=tuple(str(x) for x in e.get(f"{prefix}Entities") or ()),
        cidrs=_cidrs(e, prefix),
        services=_services(e) if prefix == "to" else (),
        fqdns=_dns(e.get("toFQDNs")) if prefix == "to" else (),
        nodes=_sels(e.get(f"{prefix}Nodes")),
        to_ports=tuple(_port_rule(p) for p in e.get("toPorts") or ()),
        icmps=tuple(icmps),
    )


def _rule(spec: Mapping[str, Any], path: str) -> CiliumRule:
    dd = spec.get("enableDefaultDeny") or {}
    return CiliumRule(
        path=path,
        endpoint_selector=_sel(spec.get("endpointSelector")),
        node_selector=_sel(spec.get("nodeSelector")),
        ingress=_section(spec, "ingress", path),
        ingress_deny=_section(spec, "ingressDeny", path),
        egress=_section(spec, "egress", path),
        egress_deny=_section(spec, "egressDeny", path),
        default_deny_ingress=None if dd.get("ingress") is None else bool(dd["ingress"]),
        default_deny_egress=None if dd.get("egress") is None else bool(dd["egress"]),
        description=str(spec.get("description", "") or ""),
    )
