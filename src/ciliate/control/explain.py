"""Explain: an independent, rule-level policy evaluator (the oracle).

Role: answers "is SRC -> DST:PORT/PROTO allowed, and why?" straight from the typed
policies (``model.netpol``, ``model.cilium``) and the pods' and namespaces' labels. It
never reads compiled policy maps and does not use ``control.rules``/``control.policy``,
so the compiler and this evaluator check each other (ARCHITECTURE "Rules of the house").

Semantics, per direction (egress at the source pod, ingress at the destination pod;
world and host endpoints have no policy of their own):

1. The rules selecting the subject pod; the direction is enforced when the mode is
   ``always``, or (mode ``default``) when a selecting rule sets default deny for it
   (NetworkPolicy: its policyTypes; CNP: the section exists and enableDefaultDeny is not
   false). Mode ``never`` enforces nothing.
2. A matching deny element of a selecting rule drops (181), whatever else allows.
3. Otherwise every matching allow element is a candidate, tagged with how specific it
   is as the datapath sees it: L3 (it named the peer) or L4-only (wildcard peer), and
   the protocol+port prefix length of the matching port (0 any protocol, 8 protocol,
   8+n an aligned block of a range, 24 one port). A non-enforced direction adds an
   "allow-any" L4 candidate of length 0; an enforced ingress adds "allow-localhost"
   (L3, length 0) for the host.
4. The winning level is the longest L4-only candidate if it is longer than every L3
   one, else the longest L3 candidate (cilium.md §3.3). Its candidates redirect to the
   proxy when any carries L7 rules (the union of their rules decides; 403 otherwise).
5. No candidate: dropped (133), "no rule allows it; default deny because ...".

ipBlock of a NetworkPolicy matches a pod when its IP is inside (and outside the
excepts) AND every pod sharing its security labels is inside too — the choice
documented on ``rules.CIDRPeer`` (identity-keyed maps cannot split an identity).
toFQDNs rules are reported as stored but not enforced.

Sans-IO; imports the model, ``desired`` and the pure helpers ``control.identity``,
``control.selectors`` (label normalization), ``control.portrange``, ``control.l7``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, ip_address, ip_network
from typing import Any

from ciliate.control.explanation import (
    DirectionVerdict,
    Endpoint,
    Explanation,
    RuleRef,
    object_name,
)
from ciliate.control.explanation import namespace_labels as namespace_labels
from ciliate.control.identity import pod_identity_labels
from ciliate.control.l7 import HTTP_FORBIDDEN, http_allowed
from ciliate.control.portrange import split_range
from ciliate.control.selectors import label_map, normalize_key
from ciliate.desired import L7Rule
from ciliate.model.cilium import CCNP_KIND, CNP_KIND, CiliumPolicy, RuleElement
from ciliate.model.cluster import ClusterConfig
from ciliate.model.core import Namespace, Pod, Service
from ciliate.model.meta import Doc, LabelSelector, Requirement
from ciliate.model.netpol import NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort

DROP_POLICY = 133
DROP_POLICY_DENY = 181
PROTO_NUM = {"TCP": 6, "UDP": 17, "SCTP": 132, "ICMP": 1}
NS_KEY = "k8s:io.kubernetes.pod.namespace"
NS_LABELS = "k8s:io.cilium.k8s.namespace.labels."


@dataclass(frozen=True, slots=True)
class _Cand:
    l3: bool
    lpm: int
    ref: RuleRef
    l7: tuple[L7Rule, ...] | None


@dataclass(frozen=True, slots=True)
class _Subject:
    ref: RuleRef
    default_deny: bool
    elements: tuple[tuple[bool, Any, str], ...]  # (deny, element, path)
    policy: Any


class Evaluator:
    """The oracle over one cluster state (namespaces, pods, policies, services)."""

    def __init__(
        self,
        config: ClusterConfig,
        namespaces: Sequence[Namespace],
        pods: Sequence[Pod],
        policies: Sequence[Doc],
        services: Sequence[Service] = (),
        endpoint_slices: Sequence[Doc] = (),
        pod_ips: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self.cluster = config.name or "default"
        self.mode = config.policy_enforcement
        self.ns_labels: dict[str, dict[str, str]] = {}
        for ns in namespaces:
            self.ns_labels[ns.meta.name] = namespace_labels(ns, ns.meta.name)
        self.pods: dict[str, Pod] = {p.key: p for p in pods}
        self.pod_ip: dict[str, IPv4Address] = {}
        for p in pods:
            raw = (pod_ips or {}).get(p.key) or p.status.pod_ip
            if raw:
                try:
                    a = ip_address(raw)
                except ValueError:
                    continue
                if isinstance(a, IPv4Address):
                    self.pod_ip[p.key] = a
        self.pod_labels: dict[str, dict[str, str]] = {}
        self.same_identity: dict[tuple[str, ...], list[str]] = {}
        for p in pods:
            nsl = self.ns_labels.get(p.meta.namespace) or namespace_labels(None, p.meta.namespace)
            labs = pod_identity_labels(p, nsl, self.cluster)
            self.pod_labels[p.key] = label_map(labs)
            self.same_identity.setdefault(labs, []).append(p.key)
        self._identity_members = {
            k: members for members in self.same_identity.values() for k in members
        }
        self.services = {s.key: s for s in services}
        self.slices = list(endpoint_slices)
        self.netpols: list[NetworkPolicy] = []
        self.cilium: list[CiliumPolicy] = []
        for d in policies:
            kind = d.get("kind")
            if kind == "NetworkPolicy":
                self.netpols.append(NetworkPolicy.from_doc(d))
            elif kind in (CNP_KIND, CCNP_KIND):
                self.cilium.append(CiliumPolicy.from_doc(d))

    # --- endpoints --------------------------------------------------------------------

    def endpoint(self, text: str) -> Endpoint:
        """``ns/name`` (a pod), a pod IP, ``host``, or any other IP (world)."""
        if text in self.pods:
            return self._pod_ep(text)
        if text in ("host", "reserved:host"):
            return Endpoint("host", "host", labels={"reserved:host": ""})
        try:
            ip = ip_address(text)
        except ValueError as e:
            raise KeyError(text) from e
        if not isinstance(ip, IPv4Address):
            raise KeyError(text)
        for k, a in self.pod_ip.items():
            if a == ip:
                return self._pod_ep(k)
        return Endpoint("world", str(ip), ip=ip, labels={"reserved:world": ""})

    def _pod_ep(self, key: str) -> Endpoint:
        return Endpoint("pod", key, self.pods[key], self.pod_ip.get(key), self.pod_labels[key])

    # --- entry point ------------------------------------------------------------------

    def explain(
        self,
        src: str | Endpoint,
        dst: str | Endpoint,
        port: int,
        protocol: str = "TCP",
        http: tuple[str, str] | None = None,
    ) -> Explanation:
        s = src if isinstance(src, Endpoint) else self.endpoint(src)
        d = dst if isinstance(dst, Endpoint) else self.endpoint(dst)
        proto = protocol.upper()
        if s.kind == "pod" and s.name == d.name:
            same = DirectionVerdict(
                "egress", s.name, False, (), True, 0, (), "same pod: never crosses the datapath"
            )
            return Explanation(
                s.name,
                d.name,
                port,
                proto,
                http,
                True,
                0,
                0,
                same,
                DirectionVerdict(
                    "ingress",
                    d.name,
                    False,
                    (),
                    True,
                    0,
                    (),
                    "same pod: never crosses the datapath",
                ),
            )
        eg = self._direction(s, d, True, proto, port, http)
        ing = self._direction(d, s, False, proto, port, http)
        allowed = eg.allowed and ing.allowed
        # The first stage that refuses decides what the client sees: the egress side
        # (a drop, or the proxy's 403) before the ingress side.
        first = eg if not eg.allowed else ing
        drop = 0 if allowed else first.drop_reason
        status = 0 if allowed else first.http_status
        return Explanation(s.name, d.name, port, proto, http, allowed, drop, status, eg, ing)

    def allowed(self, src: str, dst: str, port: int, protocol: str = "TCP") -> bool:
        return self.explain(src, dst, port, protocol).allowed

    # --- one direction --------------------------------------------------------------

    def _subjects(self, subject: Endpoint, egress: bool) -> list[_Subject]:
        """Rules selecting ``subject`` in this direction (with their elements)."""
        out: list[_Subject] = []
        pod = subject.pod
        if pod is None or self.mode == "never":
            return out  # mode never: no rule applies at all (cilium.md §6.1)
        for np in self.netpols:
            if np.meta.namespace != pod.meta.namespace or not np.pod_selector.matches(
                pod.meta.labels
            ):
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
            out.append(_Subject(ref, True, elems, np))
        for cp in self.cilium:
            if not cp.clusterwide and cp.meta.namespace != pod.meta.namespace:
                continue
            for rule in cp.rules:
                if rule.endpoint_selector is None:
                    continue
                sel = rule.endpoint_selector
                if not cp.clusterwide:
                    # A CNP subject is its namespace's pods; a user namespace match is
                    # replaced by the policy's (cilium.md §6.2).
                    sel = LabelSelector(
                        tuple(r for r in sel.requirements if normalize_key(r.key) != NS_KEY)
                    )
                if not _match_sel(sel, subject.labels):
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
                out.append(_Subject(ref, dd is not False, elems, cp))
        return out

    def _direction(
        self,
        subject: Endpoint,
        peer: Endpoint,
        egress: bool,
        proto: str,
        port: int,
        http: tuple[str, str] | None,
    ) -> DirectionVerdict:
        dname = "egress" if egress else "ingress"
        if subject.kind != "pod":
            return DirectionVerdict(
                dname, "", False, (), True, 0, (), f"{subject.name} has no {dname} policy"
            )
        subs = self._subjects(subject, egress)
        selected = tuple(s.ref for s in subs)
        if self.mode == "never":
            enforced = False
        elif self.mode == "always":
            enforced = True
        else:
            enforced = any(s.default_deny for s in subs)
        # The pod that owns the port: the destination (ingress subject / egress peer).
        dst_pod = peer if egress else subject
        denies: list[RuleRef] = []
        cands: list[_Cand] = []
        notes: list[str] = []
        for s in subs:
            for deny, el, path in s.elements:
                ref = RuleRef(
                    s.ref.kind, s.ref.namespace, s.ref.name, path, s.policy.source.where(path)
                )
                for l3, lpm, l7 in self._element_matches(
                    s.policy, el, peer, dst_pod, egress, proto, port, notes
                ):
                    if deny:
                        denies.append(ref)
                        break
                    cands.append(_Cand(l3, lpm, ref, l7))
        if denies:
            return DirectionVerdict(
                dname,
                subject.name,
                enforced,
                selected,
                False,
                DROP_POLICY_DENY,
                tuple(_uniq(denies)),
                "denied by a deny rule (deny wins over every allow)",
                notes=tuple(_uniq(notes)),
            )
        if not enforced:
            cands.append(_Cand(False, 0, RuleRef("derived", "", "", f"allow-any-{dname}"), None))
        elif not egress and peer.kind == "host":
            cands.append(
                _Cand(True, 0, RuleRef("derived", "", "", "allow-localhost-ingress"), None)
            )
        if not cands:
            # Name the policies that put the pod in default deny for this direction
            # (one policy per name, even when it has several rules).
            deniers = _uniq(f"{s.ref.kind} {object_name(s.ref)}" for s in subs if s.default_deny)
            why = " and ".join(deniers)
            verb = "selects" if len(deniers) == 1 else "select"
            reason = (
                f"no rule allows it; default deny because {why} {verb} {subject.name} for {dname}"
                if why
                else f"no rule allows it; policy enforcement is '{self.mode}'"
            )
            return DirectionVerdict(
                dname,
                subject.name,
                enforced,
                selected,
                False,
                DROP_POLICY,
                (),
                reason,
                notes=tuple(_uniq(notes)),
            )
        l3c = [c for c in cands if c.l3]
        l4c = [c for c in cands if not c.l3]
        best3 = max((c.lpm for c in l3c), default=-1)
        best4 = max((c.lpm for c in l4c), default=-1)
        level = (
            [c for c in l4c if c.lpm == best4]
            if best4 > best3
            else [c for c in l3c if c.lpm == best3]
        )
        refs = tuple(_uniq(c.ref for c in level))
        redirect_rules: list[L7Rule] = []
        for c in level:
            for r in c.l7 or ():
                if r not in redirect_rules:
                    redirect_rules.append(r)
        redirect = any(c.l7 is not None for c in level)
        if redirect and http is not None and any(r.kind == "http" for r in redirect_rules):
            ok = http_allowed(redirect_rules, http[0], http[1])
            if ok is None:
                return DirectionVerdict(
                    dname,
                    subject.name,
                    enforced,
                    selected,
                    False,
                    0,
                    refs,
                    f"allowed at L4 but the proxy refuses {http[0]} {http[1]} (403 Access denied)",
                    True,
                    tuple(redirect_rules),
                    HTTP_FORBIDDEN,
                    tuple(_uniq(notes)),
                )
        return DirectionVerdict(
            dname,
            subject.name,
            enforced,
            selected,
            True,
            0,
            refs,
            "allowed",
            redirect,
            tuple(redirect_rules),
            0,
            tuple(_uniq(notes)),
        )

    # --- element matching -------------------------------------------------------------

    def _element_matches(
        self,
        pol: Any,
        el: Any,
        peer: Endpoint,
        dst_pod: Endpoint,
        egress: bool,
        proto: str,
        port: int,
        notes: list[str],
    ) -> list[tuple[bool, int, tuple[L7Rule, ...] | None]]:
        """(is_l3, prefix length, l7) for every way this element matches the packet."""
        if isinstance(pol, NetworkPolicy):
            return self._np_matches(pol, el, peer, dst_pod, proto, port)
        return self._cnp_matches(pol, el, peer, dst_pod, egress, proto, port, notes)

    def _np_matches(
        self,
        pol: NetworkPolicy,
        rule: Any,
        peer: Endpoint,
        dst_pod: Endpoint,
        proto: str,
        port: int,
    ) -> list[tuple[bool, int, tuple[L7Rule, ...] | None]]:
        if not rule.peers:
            kinds = [False]  # no peers: every peer, an L4-only (wildcard) entry
        else:
            kinds = [True] if any(self._np_peer(pol, p, peer) for p in rule.peers) else []
        if not kinds:
            return []
        lpm = self._np_ports(rule.ports, dst_pod, proto, port)
        return [] if lpm is None else [(kinds[0], lpm, None)]

    def _np_peer(self, pol: NetworkPolicy, p: NetworkPolicyPeer, peer: Endpoint) -> bool:
        if p.ip_block is not None:
            net = _net(p.ip_block.cidr)
            exc = [_net(x) for x in p.ip_block.except_]
            if peer.kind == "world" and peer.ip is not None:
                return _inside(peer.ip, net, exc)
            if peer.kind == "pod" and peer.pod is not None:
                members = self._identity_members.get(peer.name, [peer.name])
                return all(
                    (ip := self.pod_ip.get(m)) is not None and _inside(ip, net, exc)
                    for m in members
                )
            return False
        if peer.kind != "pod" or peer.pod is None:
            return False
        pod = peer.pod
        if p.namespace_selector is None:
            if pod.meta.namespace != pol.meta.namespace:
                return False
        else:
            nsl = self.ns_labels.get(pod.meta.namespace) or namespace_labels(
                None, pod.meta.namespace
            )
            if not p.namespace_selector.matches(nsl):
                return False
        return p.pod_selector is None or p.pod_selector.matches(pod.meta.labels)

    def _np_ports(
        self, ports: Sequence[NetworkPolicyPort], dst_pod: Endpoint, proto: str, port: int
    ) -> int | None:
        if not ports:
            return 0
        best: int | None = None
        for p in ports:
            if p.protocol != proto:
                continue
            lpm = _port_lpm(p.port, p.end_port or 0, proto, port, dst_pod)
            if lpm is not None and (best is None or lpm > best):
                best = lpm
        return best

    def _cnp_matches(
        self,
        pol: CiliumPolicy,
        el: RuleElement,
        peer: Endpoint,
        dst_pod: Endpoint,
        egress: bool,
        proto: str,
        port: int,
        notes: list[str],
    ) -> list[tuple[bool, int, tuple[L7Rule, ...] | None]]:
        if el.is_empty:
            return []
        if el.fqdns:
            names = ", ".join(f.match_name or f.match_pattern for f in el.fqdns)
            notes.append(f"{el.path}: toFQDNs ({names}) is stored but not enforced yet")
        kinds: list[bool] = []
        if not el.has_peer:
            kinds.append(False)
        else:
            if "all" in el.entities:
                kinds.append(False)
            if self._cnp_peer(pol, el, peer):
                kinds.append(True)
        if not kinds:
            return []
        ports = self._cnp_ports(el, dst_pod, proto, port)
        out: list[tuple[bool, int, tuple[L7Rule, ...] | None]] = []
        for lpm, l7, named in ports:
            for k in kinds:
                # An egress named port is resolved per destination identity, so even a
                # wildcard peer yields an entry keyed by that identity (L3).
                out.append((k or (named and egress), lpm, l7))
        return out

    def _cnp_peer(self, pol: CiliumPolicy, el: RuleElement, peer: Endpoint) -> bool:
        labels = peer.labels
        for sel in el.endpoints or ():
            if self._scoped_match(pol, sel, el.requires, peer):
                return True
        for ent in el.entities:
            if _entity_match(ent, peer, self.cluster):
                return True
        for c in el.cidrs:
            if (
                peer.kind == "world"
                and peer.ip is not None
                and _inside(peer.ip, _net(c.cidr), [_net(x) for x in c.except_])
            ):
                return True
        for svc in el.services:
            if self._service_backend(pol, svc, peer):
                return True
        return any("reserved:remote-node" in labels and _match_sel(n, labels) for n in el.nodes)

    def _scoped_match(
        self,
        pol: CiliumPolicy,
        sel: LabelSelector,
        requires: Iterable[LabelSelector],
        peer: Endpoint,
    ) -> bool:
        if not _match_sel(sel, peer.labels):
            return False
        if not all(_match_sel(r, peer.labels) for r in requires):
            return False
        keys = [normalize_key(r.key) for r in sel.requirements]
        for r in requires:
            keys.extend(normalize_key(x.key) for x in r.requirements)
        if any(k.startswith("reserved:") or k == NS_KEY or k.startswith(NS_LABELS) for k in keys):
            return True
        if peer.kind != "pod" or peer.pod is None:
            return False  # scoped to pods of a namespace (CNP) or of any namespace (CCNP)
        return pol.clusterwide or peer.pod.meta.namespace == pol.meta.namespace

    def _service_backend(self, pol: CiliumPolicy, ref: Any, peer: Endpoint) -> bool:
        ns = ref.namespace or pol.meta.namespace or "default"
        svcs: list[Service] = []
        if ref.name:
            s = self.services.get(f"{ns}/{ref.name}")
            svcs = [] if s is None else [s]
        elif ref.selector is not None:
            svcs = [
                s
                for s in self.services.values()
                if s.meta.namespace == ns and ref.selector.matches(s.meta.labels)
            ]
        for svc in svcs:
            sel = svc.selector
            if sel is not None:
                if (
                    peer.pod is not None
                    and peer.pod.meta.namespace == ns
                    and sel.matches(peer.pod.meta.labels)
                ):
                    return True
                continue
            if peer.kind == "world" and peer.ip is not None:
                for sl in self.slices:
                    m = sl.get("metadata") or {}
                    if (
                        m.get("namespace") != ns
                        or (m.get("labels") or {}).get("kubernetes.io/service-name")
                        != svc.meta.name
                    ):
                        continue
                    for ep in sl.get("endpoints") or ():
                        if str(peer.ip) in [str(a) for a in ep.get("addresses") or ()]:
                            return True
        return False

    def _cnp_ports(
        self, el: RuleElement, dst_pod: Endpoint, proto: str, port: int
    ) -> list[tuple[int, tuple[L7Rule, ...] | None, bool]]:
        """(prefix length, L7 rules, named port?) of each port spec matching the packet."""
        if not el.to_ports and not el.icmps:
            return [(0, None, False)]
        out: list[tuple[int, tuple[L7Rule, ...] | None, bool]] = []
        for pr in el.to_ports:
            l7 = _l7_of(pr)
            for pp in pr.ports:
                if pp.protocol != "ANY" and pp.protocol != proto:
                    continue
                if proto not in ("TCP", "UDP", "SCTP"):
                    continue
                first: int | str | None
                if pp.port.isdigit():
                    first = int(pp.port)
                    if first == 0:
                        first = None
                elif pp.port:
                    first = pp.port
                else:
                    first = None
                if pp.protocol == "ANY" and first is None:
                    out.append((0, l7, False))
                    continue
                lpm = _port_lpm(first, pp.end_port, proto, port, dst_pod)
                if lpm is not None:
                    out.append((lpm, l7, isinstance(first, str)))
        for icmp in el.icmps:
            if proto == "ICMP" and icmp.family.upper() == "IPV4" and icmp.type == port:
                out.append((24, None, False))
        return out


# --- helpers ---------------------------------------------------------------------------


def _l7_of(pr: Any) -> tuple[L7Rule, ...] | None:
    if pr.http is not None:
        rules = tuple(L7Rule("http", h.method, h.path, h.host, h.headers) for h in pr.http)
        return rules or (L7Rule("http"),)
    if pr.dns is not None:
        rules = tuple(
            L7Rule("dns", match_name=d.match_name, match_pattern=d.match_pattern) for d in pr.dns
        )
        return rules or (L7Rule("dns", match_pattern="*"),)
    return None


def _port_lpm(
    first: int | str | None, end: int, proto: str, port: int, dst_pod: Endpoint
) -> int | None:
    """Prefix length of the map entry a port spec makes for ``port``, or None."""
    if first is None:
        return 8
    if isinstance(first, str):
        pod = dst_pod.pod
        if pod is None:
            return None
        cp = pod.named_port(first, proto)
        return 24 if cp is not None and cp.container_port == port else None
    last = end if end >= first else first
    if not first <= port <= last:
        return None
    for start, plen in split_range(first, last):
        if start <= port < start + (1 << (16 - plen)):
            return 8 + plen
    return None


def _match_sel(sel: LabelSelector, labels: Mapping[str, str]) -> bool:
    for r in sel.requirements:
        if not Requirement(normalize_key(r.key), r.op, r.values).matches(labels):
            return False
    return True


def _entity_match(entity: str, peer: Endpoint, cluster: str) -> bool:
    if entity == "all":
        return True
    if entity in ("world", "world-ipv4"):
        return peer.kind == "world"
    if entity == "host":
        return peer.kind == "host"
    if entity == "cluster":
        if peer.kind == "host":
            return True
        return peer.labels.get("k8s:io.cilium.k8s.policy.cluster") == cluster
    return False


def _net(text: str) -> IPv4Network:
    try:
        net = ip_network(text, strict=False)
    except ValueError:
        return IPv4Network("255.255.255.255/32")
    return net if isinstance(net, IPv4Network) else IPv4Network("255.255.255.255/32")


def _inside(ip: IPv4Address, net: IPv4Network, excepts: Sequence[IPv4Network]) -> bool:
    return ip in net and not any(ip in e for e in excepts)


def _uniq(items: Iterable[Any]) -> list[Any]:
    out: list[Any] = []
    for x in items:
        if x not in out:
            out.append(x)
    return out
