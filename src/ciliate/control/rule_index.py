"""Rule indexes: which rules peer through a selector, whose subject a selector is, and
which rules depend on pods other than through selectors.

Role: the lookups of the incremental policy compiler (``control.compiler``). Built in
one pass over every rule after a policy change (``index_rules``); the peering plans
per selector (what a new identity matching that selector extends) are derived on
first use and kept until the next policy change.

Inputs: ``rules.Rule``s in policy order. Outputs: a ``RuleIndex``.
Sans-IO; imports only ``control.rules`` and ``control.selectors``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ciliate.control import rules as R
from ciliate.control.selectors import IdentitySelector

# A rule with its elements peering through some selector, whether one of those has a
# named port, whether one is a deny.
Plan = tuple[R.Rule, list[R.Element], bool, bool]


@dataclass(frozen=True, slots=True)
class RuleIndex:
    """Indexes over the rules, rebuilt after a policy change: which rules peer through
    a selector, whose subject a selector is, and which depend on pods other than
    through selectors (ipBlocks, toServices, egress named ports), by trigger."""

    peers: dict[IdentitySelector, list[R.Rule]]  # peer selector -> rules using it
    peer_elems: dict[IdentitySelector, list[tuple[R.Rule, R.Element]]]  # ... and elements
    subjects: dict[IdentitySelector, list[R.Rule]]  # subject selector -> its rules
    order: dict[int, int]  # id(rule) -> position in policy order
    cidrs: dict[R.CIDRPeer, list[IdentitySelector]]  # pod-matching ipBlocks
    service_ns: dict[str, list[IdentitySelector]]  # toServices, by service namespace
    named: dict[str, list[IdentitySelector]]  # egress named ports, by port name
    plans: dict[IdentitySelector, list[Plan]] = field(default_factory=dict)

    def plan(self, sel: IdentitySelector) -> list[Plan]:
        """Rules with an element peering through ``sel`` (policy order), each with
        those elements (rule order); computed on first use."""
        hit = self.plans.get(sel)
        if hit is None:
            by_rule: dict[int, tuple[R.Rule, list[R.Element]]] = {}
            for r, e in self.peer_elems.get(sel, ()):
                by_rule.setdefault(id(r), (r, []))[1].append(e)
            ordered = sorted(by_rule.values(), key=lambda t: self.order[id(t[0])])
            hit = [_plan(r, elems) for r, elems in ordered]
            self.plans[sel] = hit
        return hit

    def peering_plan(self, changed: Iterable[IdentitySelector]) -> list[Plan]:
        """The rules with an element peering through one of ``changed``, in policy
        order, each with those elements in rule order (and whether any has a named
        port, whether any is a deny)."""
        plans = [p for p in (self.plan(sel) for sel in changed) if p]
        if len(plans) == 1:
            return plans[0]
        merged: dict[int, tuple[R.Rule, list[R.Element]]] = {}
        for plan in plans:
            for r, elems, _n, _d in plan:
                hit = merged.get(id(r))
                if hit is None:
                    merged[id(r)] = (r, list(elems))
                else:
                    hit[1].extend(e for e in elems if all(x is not e for x in hit[1]))
        out = sorted(merged.values(), key=lambda t: self.order[id(t[0])])
        for r, elems in out:
            if len(elems) > 1:
                elems.sort(key=r.elements.index)
        return [_plan(r, elems) for r, elems in out]

    def rules_peering(self, changed: Iterable[IdentitySelector]) -> list[R.Rule]:
        """Rules with one of these selectors among their peers (each once)."""
        seen: set[int] = set()
        out: list[R.Rule] = []
        for sel in changed:
            for r in self.peers.get(sel, ()):
                if id(r) not in seen:
                    seen.add(id(r))
                    out.append(r)
        return out


def _plan(r: R.Rule, elems: list[R.Element]) -> Plan:
    return (r, elems, any(e.named_ports for e in elems), any(e.deny for e in elems))


def index_rules(rules: Iterable[R.Rule]) -> RuleIndex:
    """One pass over every rule (in policy order)."""
    d = RuleIndex({}, {}, {}, {}, {}, {}, {})
    for r in rules:
        d.order[id(r)] = len(d.order)
        d.subjects.setdefault(r.subject, []).append(r)
        for e in r.elements:
            for sel in e.peers.selectors:
                users = d.peers.setdefault(sel, [])
                if not users or users[-1] is not r:
                    users.append(r)
                d.peer_elems.setdefault(sel, []).append((r, e))
            for c in e.peers.cidrs:
                if c.match_pods:
                    d.cidrs.setdefault(c, []).append(r.subject)
            for sv in e.peers.services:
                d.service_ns.setdefault(sv.namespace, []).append(r.subject)
            if e.egress:
                for p in e.ports:
                    if p.name:
                        d.named.setdefault(p.name, []).append(r.subject)
    return d
