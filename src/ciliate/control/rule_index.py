"""Rule indexes: which rules peer through a selector, whose subject a selector is, and
which rules depend on pods other than through selectors.

Role: the lookups of the incremental policy compiler (``control.compiler``). Built in
one pass over every rule (``index_rules``), then kept current per policy change
(``remove_rules`` / ``add_rules``: O(the rules of that policy x the index lists they
are in), not O(all rules)); the peering plans per selector (what a new identity
matching that selector extends) are derived on first use and dropped when a rule
peering through that selector changes.

Inputs: ``rules.Rule``s in policy order. Outputs: a ``RuleIndex``.
Sans-IO; imports only ``control.rules`` and ``control.selectors``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from ciliate.control import rules as R
from ciliate.control.selectors import IdentitySelector

K = TypeVar("K")

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
    order: dict[int, tuple[int, int]]  # id(rule) -> (policy position, rule index)
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

    def add_rules(self, pos: int, rules: Sequence[R.Rule]) -> None:
        """Index the rules of the policy at position ``pos``."""
        for i, r in enumerate(rules):
            self.order[id(r)] = (pos, i)
            self.subjects.setdefault(r.subject, []).append(r)
            for e in r.elements:
                for sel in e.peers.selectors:
                    users = self.peers.setdefault(sel, [])
                    if not users or users[-1] is not r:
                        users.append(r)
                    self.peer_elems.setdefault(sel, []).append((r, e))
                    self.plans.pop(sel, None)
                for c in e.peers.cidrs:
                    if c.match_pods:
                        self.cidrs.setdefault(c, []).append(r.subject)
                for sv in e.peers.services:
                    self.service_ns.setdefault(sv.namespace, []).append(r.subject)
                if e.egress:
                    for p in e.ports:
                        if p.name:
                            self.named.setdefault(p.name, []).append(r.subject)

    def remove_rules(self, rules: Sequence[R.Rule]) -> None:
        """Forget these rules (indexed by ``add_rules`` before)."""
        for r in rules:
            self.order.pop(id(r), None)
            _drop_rule(self.subjects, r.subject, r)
            for e in r.elements:
                for sel in e.peers.selectors:
                    _drop_rule(self.peers, sel, r)
                    pairs = [x for x in self.peer_elems.get(sel, ()) if x[0] is not r]
                    if pairs:
                        self.peer_elems[sel] = pairs
                    else:
                        self.peer_elems.pop(sel, None)
                    self.plans.pop(sel, None)
                # selector lists: equal selectors are interchangeable, drop one each
                for c in e.peers.cidrs:
                    if c.match_pods:
                        _drop_one(self.cidrs, c, r.subject)
                for sv in e.peers.services:
                    _drop_one(self.service_ns, sv.namespace, r.subject)
                if e.egress:
                    for p in e.ports:
                        if p.name:
                            _drop_one(self.named, p.name, r.subject)

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


def _drop_rule(
    index: dict[IdentitySelector, list[R.Rule]], key: IdentitySelector, r: R.Rule
) -> None:
    kept = [x for x in index.get(key, ()) if x is not r]
    if kept:
        index[key] = kept
    else:
        index.pop(key, None)


def _drop_one(index: dict[K, list[IdentitySelector]], key: K, sel: IdentitySelector) -> None:
    lst = index.get(key)
    if lst is not None and sel in lst:
        lst.remove(sel)
        if not lst:
            del index[key]


def _plan(r: R.Rule, elems: list[R.Element]) -> Plan:
    return (r, elems, any(e.named_ports for e in elems), any(e.deny for e in elems))


def index_rules(policies: Iterable[tuple[int, Sequence[R.Rule]]]) -> RuleIndex:
    """One pass over every policy's rules; ``policies`` gives each policy's position in
    policy order (the order a full compilation visits them in)."""
    d = RuleIndex({}, {}, {}, {}, {}, {}, {})
    for pos, rules in policies:
        d.add_rules(pos, rules)
    return d
