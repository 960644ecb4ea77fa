"""Rule resolution: NetworkPolicy, CNP and CCNP turned into one internal rule form.

Role: the ``Repository`` half of cilium.md §6.4. Every policy becomes ``Rule``s with a
subject selector over identity labels, its default-deny contribution per direction
and ``Element``s (direction, allow/deny, peers, ports, L7), each with provenance. The
compiler (``policy.py``) resolves peers through the selector cache and distills maps;
``explain.py`` deliberately does NOT use this module (it re-reads the typed policies).

Translation rules, in order:

1. NetworkPolicy (Kubernetes API docs): the subject is ``podSelector`` within the
   policy's namespace; directions are ``policyTypes`` (defaulted in the model); a rule
   without peers allows every peer (identity 0, like Cilium's translation); a peer's
   podSelector and namespaceSelector are ANDed; podSelector alone means the policy's
   namespace; namespaceSelector alone means every pod of the matching namespaces
   (never reserved identities); ipBlock becomes a CIDR peer that also matches pod
   identities (see ``CIDRPeer.match_pods``); a port without a number is the protocol
   with any port; protocol defaults to TCP.
2. CNP/CCNP (§6.2, §6.3): a CNP subject gets ``io.kubernetes.pod.namespace=<ns>`` (a user
   namespace match is replaced); each CNP peer selector gets the same unless it
   mentions the namespace, namespace labels or reserved labels; each CCNP peer selector
   gets "namespace Exists" unless it mentions the namespace or reserved labels;
   ``fromRequires`` is ANDed into every selector of its element; an element with only
   ports/icmps has the wildcard peer; ``- {}`` selects nothing; ``toFQDNs`` is kept
   but yields no entries yet; protocol ANY with a port is TCP, UDP and SCTP.
3. A direction's default deny: NetworkPolicy when its type is listed; CNP when the
   section (allow or deny) exists and ``enableDefaultDeny.<dir>`` is not false.

Sans-IO; imports the model, ``desired`` and ``control.selectors``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Network, ip_network

from ciliate.control.identity import CLUSTER_LABEL, NAMESPACE_LABEL, NAMESPACE_LABELS_PREFIX
from ciliate.control.selectors import IdentitySelector
from ciliate.desired import L7Rule, Provenance
from ciliate.model.cilium import CCNP_KIND, CiliumPolicy, CiliumRule, PortRule, RuleElement
from ciliate.model.meta import Doc, LabelSelector, Requirement, SelectorOp
from ciliate.model.netpol import NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort, SourceMap

PROTOCOLS = {"TCP": 6, "UDP": 17, "SCTP": 132, "ICMP": 1, "VRRP": 112, "IGMP": 2}
PROTOCOL_NAMES = {v: k for k, v in PROTOCOLS.items()}
ANY_PROTOCOLS = (6, 17, 132)

# Proxy ports handed to redirect entries (Cilium allocates them from 10000 upward).
HTTP_PROXY_PORT = 10080
DNS_PROXY_PORT = 10053

NS_KEY = f"k8s:{NAMESPACE_LABEL}"
NS_LABELS_PREFIX = f"k8s:{NAMESPACE_LABELS_PREFIX}"
CLUSTER_KEY = f"k8s:{CLUSTER_LABEL}"

ENTITY_LABELS = {
    "host": "reserved:host",
    "remote-node": "reserved:remote-node",
    "kube-apiserver": "reserved:kube-apiserver",
    "ingress": "reserved:ingress",
    "health": "reserved:health",
    "init": "reserved:init",
    "unmanaged": "reserved:unmanaged",
    "world": "reserved:world",
    "world-ipv4": "reserved:world",
}
CLUSTER_ENTITY_RESERVED = ("host", "remote-node", "init", "ingress", "health", "unmanaged")


@dataclass(frozen=True, slots=True)
class PortSpec:
    """A protocol and port range; protocol 0 = everything; first 0 = every port."""

    protocol: int
    first: int = 0
    last: int = 0
    name: str = ""  # a named port (resolved per pod); first/last are 0 then
    l7: tuple[L7Rule, ...] | None = None  # None = plain; else redirect with these rules
    path: str = ""


@dataclass(frozen=True, slots=True)
class CIDRPeer:
    net: IPv4Network
    excepts: tuple[IPv4Network, ...] = ()
    # A Kubernetes ipBlock also matches pod addresses (the upstream conformance suite
    # expects it). Policy maps are keyed by identity, so a pod identity is matched when
    # EVERY pod of that identity has its IP inside the block (and outside the excepts).
    # When replicas sharing an identity straddle the block, none is matched: ciliate
    # errs toward denying rather than allowing a pod the block does not name.
    match_pods: bool = False

    def contains(self, ip: IPv4Network) -> bool:
        return ip.subnet_of(self.net) and not any(ip.subnet_of(e) for e in self.excepts)


@dataclass(frozen=True, slots=True)
class ServicePeer:
    namespace: str
    name: str = ""
    selector: LabelSelector | None = None  # k8sServiceSelector over service labels


@dataclass(frozen=True, slots=True)
class Peers:
    wildcard: bool = False  # every identity (policy-map identity 0)
    selectors: tuple[IdentitySelector, ...] = ()
    cidrs: tuple[CIDRPeer, ...] = ()
    services: tuple[ServicePeer, ...] = ()
    fqdns: tuple[str, ...] = ()  # stored; not enforced yet


@dataclass(frozen=True, slots=True)
class Element:
    egress: bool
    deny: bool
    peers: Peers
    ports: tuple[PortSpec, ...]  # () = every protocol and port
    provenance: Provenance
    # Whether a port is named: its keys then depend on the endpoint (its own container
    # ports, or the peer's). Derived once; the compiler asks for it on every key build.
    named_ports: bool = field(default=False, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "named_ports", any(p.name for p in self.ports))


@dataclass(frozen=True, slots=True)
class Rule:
    kind: str
    namespace: str
    name: str
    path: str
    subject: IdentitySelector
    default_deny_ingress: bool
    default_deny_egress: bool
    elements: tuple[Element, ...]


def policy_id(doc: Doc) -> tuple[str, str, str]:
    m = doc.get("metadata") or {}
    return (str(doc.get("kind", "")), str(m.get("namespace", "") or ""), str(m.get("name", "")))


def resolve_rules(doc: Doc, cluster: str = "default") -> tuple[Rule, ...]:
    """The internal rules of one policy document (unknown kinds yield none)."""
    kind = str(doc.get("kind", ""))
    if kind == "NetworkPolicy":
        return (_from_netpol(NetworkPolicy.from_doc(doc)),)
    if kind in ("CiliumNetworkPolicy", CCNP_KIND):
        pol = CiliumPolicy.from_doc(doc)
        return tuple(
            r for rule in pol.rules if (r := _from_cilium_rule(pol, rule, cluster)) is not None
        )
    return ()


# --- Kubernetes NetworkPolicy -----------------------------------------------------------


def _ns_labels_selector(sel: LabelSelector) -> tuple[Requirement, ...]:
    return tuple(
        Requirement(f"{NS_LABELS_PREFIX}{r.key}", r.op, r.values) for r in sel.requirements
    )


def _k8s_peer(peer: NetworkPolicyPeer, ns: str) -> IdentitySelector | CIDRPeer | None:
    if peer.ip_block is not None:
        b = peer.ip_block
        return CIDRPeer(_net(b.cidr), tuple(_net(e) for e in b.except_), match_pods=True)
    reqs: list[Requirement] = []
    if peer.pod_selector is not None:
        reqs.extend(IdentitySelector.from_label_selector(peer.pod_selector).requirements)
    if peer.namespace_selector is not None:
        reqs.extend(_ns_labels_selector(peer.namespace_selector))
        reqs.append(Requirement(NS_KEY, SelectorOp.EXISTS))
    elif peer.pod_selector is not None:
        reqs.append(Requirement(NS_KEY, SelectorOp.IN, frozenset({ns})))
    else:
        return None
    return IdentitySelector(tuple(reqs))


def _k8s_ports(ports: Sequence[NetworkPolicyPort], path: str) -> tuple[PortSpec, ...]:
    out: list[PortSpec] = []
    for i, p in enumerate(ports):
        if p.protocol not in ("TCP", "UDP", "SCTP"):
            continue  # the API allows only these; anything else matches nothing
        proto = PROTOCOLS[p.protocol]
        ppath = f"{path}.ports[{i}]"
        if p.port is None:
            out.append(PortSpec(proto, path=ppath))
        elif isinstance(p.port, str):
            out.append(PortSpec(proto, name=p.port, path=ppath))
        else:
            last = p.end_port if p.end_port is not None and p.end_port >= p.port else p.port
            out.append(PortSpec(proto, p.port, last, path=ppath))
    return tuple(out)


def _from_netpol(np: NetworkPolicy) -> Rule:
    ns = np.meta.namespace
    subject = IdentitySelector.from_label_selector(np.pod_selector).and_(
        Requirement(NS_KEY, SelectorOp.IN, frozenset({ns}))
    )
    elements: list[Element] = []
    for egress, rules, tname in ((False, np.ingress, "Ingress"), (True, np.egress, "Egress")):
        if tname not in np.policy_types:
            continue
        section = "egress" if egress else "ingress"
        for i, r in enumerate(rules):
            path = f"spec.{section}[{i}]"
            if not r.peers:
                peers = Peers(wildcard=True)
            else:
                sels: list[IdentitySelector] = []
                cidrs: list[CIDRPeer] = []
                for p in r.peers:
                    got = _k8s_peer(p, ns)
                    if isinstance(got, CIDRPeer):
                        cidrs.append(got)
                    elif got is not None:
                        sels.append(got)
                peers = Peers(selectors=tuple(sels), cidrs=tuple(cidrs))
            ports = _k8s_ports(r.ports, path)
            if r.ports and not ports:
                continue  # ports were given and none is valid: the rule matches nothing
            elements.append(
                Element(
                    egress, False, peers, ports, _prov(np.kind, ns, np.meta.name, path, np.source)
                )
            )
    return Rule(
        kind=np.kind,
        namespace=ns,
        name=np.meta.name,
        path="spec",
        subject=subject,
        default_deny_ingress="Ingress" in np.policy_types,
        default_deny_egress="Egress" in np.policy_types,
        elements=tuple(elements),
    )


# --- CiliumNetworkPolicy / CiliumClusterwideNetworkPolicy -----------------------------


def _mentions_namespace(key: str) -> bool:
    return key == NS_KEY or key.startswith(NS_LABELS_PREFIX)


def _is_reserved(key: str) -> bool:
    return key.startswith("reserved:")


def _scoped_peer(
    sel: LabelSelector, pol: CiliumPolicy, requires: Iterable[Requirement]
) -> IdentitySelector:
    s = IdentitySelector.from_label_selector(sel).and_(*requires)
    if s.mentions(_is_reserved) or s.mentions(_mentions_namespace):
        return s
    if pol.clusterwide:
        return s.and_(Requirement(NS_KEY, SelectorOp.EXISTS))
    return s.and_(Requirement(NS_KEY, SelectorOp.IN, frozenset({pol.meta.namespace})))


def _entity_selectors(entity: str, cluster: str) -> tuple[tuple[IdentitySelector, ...], bool]:
    """(selectors, wildcard) of one entity (§6.3 table)."""
    if entity == "all":
        return (), True
    if entity == "cluster":
        sels = [IdentitySelector.exists(ENTITY_LABELS[e]) for e in CLUSTER_ENTITY_RESERVED]
        sels.append(IdentitySelector.exists("reserved:kube-apiserver"))
        sels.append(IdentitySelector.equals(CLUSTER_KEY, cluster))
        return tuple(sels), False
    label = ENTITY_LABELS.get(entity)
    if label is None:  # "none" and unknown entities select nothing
        return (), False
    return (IdentitySelector.exists(label),), False


def _l7(pr: PortRule) -> tuple[L7Rule, ...] | None:
    if pr.http is not None:
        rules = tuple(L7Rule("http", h.method, h.path, h.host, h.headers) for h in pr.http)
        return rules or (L7Rule("http"),)
    if pr.dns is not None:
        rules = tuple(
            L7Rule("dns", match_name=d.match_name, match_pattern=d.match_pattern) for d in pr.dns
        )
        return rules or (L7Rule("dns", match_pattern="*"),)
    return None


def _cilium_ports(e: RuleElement, deny: bool) -> tuple[PortSpec, ...]:
    out: list[PortSpec] = []
    for i, pr in enumerate(e.to_ports):
        l7 = None if deny else _l7(pr)
        ports = pr.ports or ()
        for j, pp in enumerate(ports):
            path = f"{e.path}.toPorts[{i}].ports[{j}]"
            protos: tuple[int, ...]
            if pp.protocol == "ANY":
                protos = ANY_PROTOCOLS
            elif pp.protocol in PROTOCOLS:
                protos = (PROTOCOLS[pp.protocol],)
            else:
                continue  # an unknown protocol matches nothing (never widened to TCP)
            name = "" if pp.port.isdigit() or pp.port == "" else pp.port
            first = int(pp.port) if pp.port.isdigit() else 0
            last = pp.end_port if pp.end_port >= first else first
            if pp.protocol == "ANY" and first == 0 and not name:
                out.append(PortSpec(0, l7=l7, path=path))
                continue
            for proto in protos:
                out.append(PortSpec(proto, first, last if first else 0, name, l7, path))
    for k, icmp in enumerate(e.icmps):
        if icmp.family.upper() == "IPV4" and icmp.type >= 0:
            out.append(PortSpec(1, icmp.type, icmp.type, path=f"{e.path}.icmps[{k}]"))
    return tuple(out)


def _cilium_peers(e: RuleElement, pol: CiliumPolicy, cluster: str) -> Peers:
    requires: list[Requirement] = []
    for r in e.requires:
        requires.extend(IdentitySelector.from_label_selector(r).requirements)
    sels: list[IdentitySelector] = [_scoped_peer(s, pol, requires) for s in e.endpoints or ()]
    wildcard = False
    for ent in e.entities:
        got, wild = _entity_selectors(ent, cluster)
        sels.extend(got)
        wildcard = wildcard or wild
    for n in e.nodes:
        sels.append(
            IdentitySelector.from_label_selector(n).and_(
                Requirement("reserved:remote-node", SelectorOp.EXISTS)
            )
        )
    cidrs = tuple(CIDRPeer(_net(c.cidr), tuple(_net(x) for x in c.except_)) for c in e.cidrs)
    services = tuple(
        ServicePeer(s.namespace or pol.meta.namespace or "default", s.name, s.selector)
        for s in e.services
    )
    fqdns = tuple(f.match_name or f.match_pattern for f in e.fqdns)
    if not e.has_peer and (e.to_ports or e.icmps):
        wildcard = True  # L4-only: any peer (§6.3)
    return Peers(wildcard, tuple(sels), cidrs, services, fqdns)


def _from_cilium_rule(pol: CiliumPolicy, rule: CiliumRule, cluster: str) -> Rule | None:
    if rule.endpoint_selector is None:
        return None  # nodeSelector (host firewall) rules select no pod
    subject = IdentitySelector.from_label_selector(rule.endpoint_selector)
    if not pol.clusterwide:
        subject = subject.without_key(NS_KEY).and_(
            Requirement(NS_KEY, SelectorOp.IN, frozenset({pol.meta.namespace}))
        )
    elements: list[Element] = []
    sections = (
        (False, False, rule.ingress),
        (False, True, rule.ingress_deny),
        (True, False, rule.egress),
        (True, True, rule.egress_deny),
    )
    for egress, deny, section in sections:
        for e in section or ():
            if e.is_empty:
                continue  # `- {}` selects nothing (but the section enables default deny)
            ports = _cilium_ports(e, deny)
            if (e.to_ports or e.icmps) and not ports:
                continue  # ports/icmps given but none usable (IPv6 only, bad protocol)
            elements.append(
                Element(
                    egress,
                    deny,
                    _cilium_peers(e, pol, cluster),
                    ports,
                    _prov(pol.kind, pol.meta.namespace, pol.meta.name, e.path, pol.source),
                )
            )
    has_in = rule.ingress is not None or rule.ingress_deny is not None
    has_eg = rule.egress is not None or rule.egress_deny is not None
    return Rule(
        kind=pol.kind,
        namespace=pol.meta.namespace,
        name=pol.meta.name,
        path=rule.path,
        subject=subject,
        default_deny_ingress=has_in and rule.default_deny_ingress is not False,
        default_deny_egress=has_eg and rule.default_deny_egress is not False,
        elements=tuple(elements),
    )


# --- helpers --------------------------------------------------------------------------


def _net(text: str) -> IPv4Network:
    try:
        net = ip_network(text, strict=False)
    except ValueError:
        return IPv4Network("255.255.255.255/32")  # the decoder reports it; match nothing
    if not isinstance(net, IPv4Network):
        return IPv4Network("255.255.255.255/32")  # IPv6 is out of scope
    return net


def _prov(kind: str, ns: str, name: str, path: str, src: SourceMap) -> Provenance:
    return Provenance(kind, ns, name, path, src.file, src.line_of(path) if src.file else 0)
