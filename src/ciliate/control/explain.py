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
   proxy when any carries L7 rules (the union of their rules decides, for a request
   whose Host is the destination's address: ``request_host``; 403 otherwise).
5. No candidate: dropped (133), "no rule allows it; default deny because ...".

toFQDNs rules are reported as stored but not enforced.

Modules, by domain noun: ``explain_cluster`` (the pods, addresses, labels and policies
the oracle reads), ``explain_subjects`` (step 1: rules selecting a pod),
``explain_peers`` (does the other end match a rule's peers; the ipBlock choice),
``explain_ports`` (step 3's prefix lengths and L7 rules); this module decides (steps
2-5) and is the public entry point (``Evaluator``, ``namespace_labels``).

Sans-IO; imports the model, ``desired`` and the pure helpers ``control.identity``,
``control.selectors`` (label normalization), ``control.portrange``, ``control.l7``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from ipaddress import IPv4Address
from typing import Any

from ciliate.control.explain_cluster import OracleCluster
from ciliate.control.explain_peers import NS_KEY, NS_LABELS, cnp_peer_matches, np_peer_matches
from ciliate.control.explain_ports import L7Rules, cnp_ports_lpm, np_ports_lpm
from ciliate.control.explain_subjects import selecting_rules
from ciliate.control.explanation import (
    DirectionVerdict,
    Endpoint,
    Explanation,
    RuleRef,
    object_name,
)
from ciliate.control.explanation import namespace_labels as namespace_labels
from ciliate.control.l7 import HTTP_FORBIDDEN, http_allowed
from ciliate.model.cilium import CiliumPolicy, RuleElement
from ciliate.model.cluster import ClusterConfig
from ciliate.model.core import Namespace, Pod, Service
from ciliate.model.meta import Doc
from ciliate.model.netpol import NetworkPolicy

__all__ = [
    "DROP_POLICY",
    "DROP_POLICY_DENY",
    "NS_KEY",
    "NS_LABELS",
    "PROTO_NUM",
    "Evaluator",
    "namespace_labels",
    "request_host",
]

DROP_POLICY = 133
DROP_POLICY_DENY = 181
PROTO_NUM = {"TCP": 6, "UDP": 17, "SCTP": 132, "ICMP": 1}


@dataclass(frozen=True, slots=True)
class _Cand:
    l3: bool
    lpm: int
    ref: RuleRef
    l7: L7Rules


Match = tuple[bool, int, L7Rules]  # (is L3, prefix length, L7 rules)


def request_host(address: IPv4Address | None) -> str:
    """The Host an HTTP probe carries: the destination's address, as a client that
    was given only the address sends it (``curl http://10.10.1.3/public``). The model
    datapath builds its requests the same way (``datapath.sim.network.trace``), so an
    L7 rule with ``host`` gets the same inputs in the model, ``reach`` and here; an
    endpoint without an address (the host) sends none."""
    return "" if address is None else str(address)


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
        self.objects = OracleCluster.build(
            self.cluster, namespaces, pods, policies, services, endpoint_slices, pod_ips
        )

    # --- endpoints --------------------------------------------------------------------

    def endpoint(self, text: str) -> Endpoint:
        """``ns/name`` (a pod), a pod IP, ``host``, or any other IP (world)."""
        return self.objects.endpoint(text)

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
        host = request_host(d.ip)
        eg = self._direction(s, d, True, proto, port, http, host)
        ing = self._direction(d, s, False, proto, port, http, host)
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

    def _direction(
        self,
        subject: Endpoint,
        peer: Endpoint,
        egress: bool,
        proto: str,
        port: int,
        http: tuple[str, str] | None,
        host: str = "",
    ) -> DirectionVerdict:
        dname = "egress" if egress else "ingress"
        if subject.kind != "pod":
            return DirectionVerdict(
                dname, "", False, (), True, 0, (), f"{subject.name} has no {dname} policy"
            )
        subs = selecting_rules(self.objects, self.mode, subject, egress)
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
        # Every answer of this side shares its first fields.
        side = partial(
            DirectionVerdict, dname, subject.name, enforced, selected, notes=tuple(_uniq(notes))
        )
        if denies:
            return side(
                False,
                DROP_POLICY_DENY,
                tuple(_uniq(denies)),
                "denied by a deny rule (deny wins over every allow)",
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
            return side(False, DROP_POLICY, (), reason)
        level = _winning_level(cands)
        refs = tuple(_uniq(c.ref for c in level))
        redirect_rules = tuple(_uniq(r for c in level for r in c.l7 or ()))
        redirect = any(c.l7 is not None for c in level)
        if (
            redirect
            and http is not None
            and any(r.kind == "http" for r in redirect_rules)
            and http_allowed(redirect_rules, http[0], http[1], host) is None
        ):
            refused = f"allowed at L4 but the proxy refuses {http[0]} {http[1]} (403 Access denied)"
            return side(False, 0, refs, refused, True, redirect_rules, HTTP_FORBIDDEN)
        return side(True, 0, refs, "allowed", redirect, redirect_rules, 0)

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
    ) -> list[Match]:
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
    ) -> list[Match]:
        if not rule.peers:
            kinds = [False]  # no peers: every peer, an L4-only (wildcard) entry
        else:
            hit = any(np_peer_matches(self.objects, pol, p, peer) for p in rule.peers)
            kinds = [True] if hit else []
        if not kinds:
            return []
        lpm = np_ports_lpm(rule.ports, dst_pod, proto, port)
        return [] if lpm is None else [(kinds[0], lpm, None)]

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
    ) -> list[Match]:
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
            if cnp_peer_matches(self.objects, pol, el, peer):
                kinds.append(True)
        if not kinds:
            return []
        out: list[Match] = []
        for lpm, l7, named in cnp_ports_lpm(el, dst_pod, proto, port):
            for k in kinds:
                # An egress named port is resolved per destination identity, so even a
                # wildcard peer yields an entry keyed by that identity (L3).
                out.append((k or (named and egress), lpm, l7))
        return out


def _winning_level(cands: Sequence[_Cand]) -> list[_Cand]:
    """Step 4: the longest L4-only candidates if longer than every L3 one, else the
    longest L3 candidates (cilium.md §3.3)."""
    l3c = [c for c in cands if c.l3]
    l4c = [c for c in cands if not c.l3]
    best3 = max((c.lpm for c in l3c), default=-1)
    best4 = max((c.lpm for c in l4c), default=-1)
    if best4 > best3:
        return [c for c in l4c if c.lpm == best4]
    return [c for c in l3c if c.lpm == best3]


def _uniq(items: Iterable[Any]) -> list[Any]:
    out: list[Any] = []
    for x in items:
        if x not in out:
            out.append(x)
    return out
