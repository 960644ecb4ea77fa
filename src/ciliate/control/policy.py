"""Policy compilation: rules -> per-identity selection -> per-endpoint policy maps.

Role (cilium.md §6.4): ``compute_policy(PolicyInputs) -> PolicyResult`` is what the
control engine calls; ``PolicyCompiler`` is the stateful, incremental form behind it.

Theory of operation:

1. Every policy document is resolved into ``rules.Rule``s (``rules.resolve_rules``).
2. CIDR peers allocate local-scope identities (``1<<24 | n``, labels ``cidr:<prefix>``
   and ``reserved:world``; 0.0.0.0/0 is ``reserved:world`` itself); they are returned in
   ``cidr_identities`` so the engine can put them into the ipcache.
3. A ``SelectorCache`` resolves every subject and peer selector to identities once.
4. Endpoints are grouped by (identity, container ports): pods of a group share one
   compiled map (named ports are the only per-pod input), so N replicas compile once.
5. For a group, the rules selecting its identity give the enforcement per direction
   (mode ``default``: a selecting rule with that direction; ``always``; ``never``),
   then every element yields keys (peer identity or 0 for the wildcard) x (protocol,
   aligned port block) with provenance, inserted through ``MapStateBuilder`` (deny
   precedence of §6.5). A non-enforced direction gets the allow-all entry; an
   enforced ingress gets the allow-localhost entry for identity 1 (host).
   CIDR and service peers are resolved by ``control.peers``.
6. Incremental updates (``set_policy``, ``remove_policy``, ``set_pod``, ``remove_pod``,
   ``set_namespace_pods``, ``set_services``) recompute only the groups whose selecting
   rules or peer identities changed and return the pods whose maps changed. A new (or
   gone) identity does not regenerate the maps of the rules peering with it: its keys
   are built against the map's identity-0 denies only and layered over the old map
   (``desired.layered``), because §6.5 coverage never relates two non-zero identities.
7. Maps are never mutated once returned (consumers diff and cache them by identity).

Sans-IO; imports the model, ``desired`` and ``control``.
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from ciliate.control import peers as P
from ciliate.control import rules as R
from ciliate.control.mapstate import MapStateBuilder, merge_allow
from ciliate.control.portrange import split_range
from ciliate.control.selectors import IdentitySelector, SelectorCache
from ciliate.desired import (
    LOCAL_IDENTITY_SCOPE,
    Identity,
    LayeredMap,
    PolicyEntry,
    PolicyKey,
    PolicyMap,
    Provenance,
    ReservedIdentity,
    layered,
)
from ciliate.model.cluster import ClusterConfig
from ciliate.model.core import Namespace, Pod, Service
from ciliate.model.meta import Doc

WORLD_NET = IPv4Network("0.0.0.0/0")
CIDR_ID_SPAN = (1 << 24) - 1  # local-scope identities 1<<24 | 1 .. 1<<24 | 2^24-1


@dataclass(frozen=True, slots=True)
class PolicyInputs:
    config: ClusterConfig
    namespaces: Sequence[Namespace]
    pods: Sequence[Pod]
    pod_identity: Mapping[str, int]  # "ns/name" -> identity
    identities: Mapping[int, Identity]  # all, incl. reserved 1..8
    policies: Sequence[Doc]  # NetworkPolicy, CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy
    services: Sequence[Service] = ()
    endpoint_slices: Sequence[Doc] = ()
    # overrides status.podIP; an address the caller parsed already is taken as is
    pod_ips: Mapping[str, str | IPv4Address] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EndpointPolicy:
    map: PolicyMap
    ingress_enforced: bool
    egress_enforced: bool


@dataclass(frozen=True, slots=True)
class PolicyResult:
    endpoints: Mapping[str, EndpointPolicy]  # by "ns/name"
    cidr_identities: Mapping[IPv4Network, Identity] = field(default_factory=dict)


def _extend_map(g: GroupKey, base: PolicyMap, ups: Mapping[PolicyKey, PolicyEntry]) -> PolicyMap:
    """``layered(base, ups)``, compacted earlier than ``layered`` would at a point that
    differs per group: one new identity extends hundreds of maps in one update, and
    compacting all of them in the same update would make it several times slower than
    the others (a p99 spike every ~60 new identities)."""
    if not isinstance(base, LayeredMap):
        return LayeredMap(base, dict(ups))
    # what ``layered`` does for a base without deletes (a new identity deletes nothing)
    layer = dict(base.upserts)
    layer.update(ups)
    if len(layer) + len(base.deletes) <= 8 + g[0] % 53:
        return LayeredMap(base.base, layer, base.deletes)
    flat = dict(base.base)
    for k in base.deletes:
        flat.pop(k, None)
    flat.update(layer)
    return flat


def compute_policy(inputs: PolicyInputs) -> PolicyResult:
    """Per-endpoint policy maps for every pod of ``inputs`` (one full compilation)."""
    c = PolicyCompiler.from_inputs(inputs)
    return c.result()


def cidr_identity_labels(net: IPv4Network) -> tuple[str, ...]:
    return (f"cidr:{net}", "reserved:world")


def named_port_key(pod: Pod) -> tuple[tuple[str, str, int], ...]:
    """The per-pod input of a compiled map: its named container ports."""
    if not any(p.name for c in pod.spec.containers for p in c.ports):
        return ()  # most pods: no generator, no sort
    return tuple(
        sorted(
            (p.name, p.protocol, p.container_port)
            for c in pod.spec.containers
            for p in c.ports
            if p.name
        )
    )


GroupKey = tuple[int, tuple[tuple[str, str, int], ...]]
# One port spec of an element: the spec, its entry, its (protocol, start, prefix) triples
# (None for an egress named port, resolved per peer identity).
_PortEntry = tuple[R.PortSpec, PolicyEntry, list[tuple[int, int, int]] | None]
# A rule's contribution toward a new identity: its keys when no named port makes them
# depend on the group, else None; and its elements peering with the identity.
# With no deny and no key twice, also those keys as a dict (shared: never mutated).
_Extension = tuple[
    list[tuple[PolicyKey, PolicyEntry]] | None,
    list[R.Element],
    dict[PolicyKey, PolicyEntry] | None,
]


# A rule with its elements peering through some selector, whether one of those has a
# named port, whether one is a deny.
_Plan = tuple[R.Rule, list[R.Element], bool, bool]


@dataclass(frozen=True, slots=True)
class _PodDeps:
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
    plans: dict[IdentitySelector, list[_Plan]] = field(default_factory=dict)

    def plan(self, sel: IdentitySelector) -> list[_Plan]:
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


def _plan(r: R.Rule, elems: list[R.Element]) -> _Plan:
    return (r, elems, any(e.named_ports for e in elems), any(e.deny for e in elems))


class PolicyCompiler:
    """Stateful compiler; every update returns the pods whose maps were recompiled.

    Indexes kept up to date by the updates: identity -> selecting rules, identity ->
    pods, identity -> named ports, per-policy CIDR prefixes, and a memo of the peer
    sets that depend on pods (ipBlock, toServices), cleared when pods change.
    """

    def __init__(self, config: ClusterConfig, identities: Mapping[int, Identity]) -> None:
        self.config = config
        self.cluster = config.name or "default"
        self.mode = config.policy_enforcement
        self.cache = SelectorCache(identities)
        self.identities: dict[int, Identity] = dict(identities)
        self.rules: dict[tuple[str, str, str], tuple[R.Rule, ...]] = {}
        self.pods: dict[str, Pod] = {}
        self.pod_identity: dict[str, int] = {}
        self.pod_ip: dict[str, IPv4Address] = {}
        self.services: dict[str, Service] = {}
        self.slices: list[Doc] = []
        self.cidr_identities: dict[IPv4Network, Identity] = {}
        self._groups: dict[GroupKey, set[str]] = {}
        self._ident_groups: dict[int, set[GroupKey]] = {}  # identity -> its groups
        self._group_of: dict[str, GroupKey] = {}
        self._ident_pods: dict[int, set[str]] = {}
        self._maps: dict[GroupKey, EndpointPolicy] = {}
        self._by_ident: dict[int, list[R.Rule]] | None = None
        self._peer_memo: dict[R.Peers, frozenset[int]] = {}
        self._policy_cidrs: dict[tuple[str, str, str], set[IPv4Network]] = {}
        self._pod_deps: _PodDeps | None = None
        self._wild_denies: dict[GroupKey, dict[PolicyKey, PolicyEntry]] = {}
        self._elem_ports: dict[int, tuple[R.Element, list[_PortEntry]]] = {}
        self._elem_keys: dict[
            tuple[int, frozenset[int]], tuple[R.Element, list[tuple[PolicyKey, PolicyEntry]]]
        ] = {}

    # --- construction ---------------------------------------------------------------

    @classmethod
    def from_inputs(cls, inputs: PolicyInputs) -> PolicyCompiler:
        c = cls(inputs.config, inputs.identities)
        c.services = {s.key: s for s in inputs.services}
        c.slices = list(inputs.endpoint_slices)
        for pod in inputs.pods:
            ident = inputs.pod_identity.get(pod.key)
            if ident is None:
                continue
            c._add_pod_state(pod, ident, inputs.pod_ips.get(pod.key, ""))
        for doc in inputs.policies:
            pid = R.policy_id(doc)
            c.rules[pid] = R.resolve_rules(doc, c.cluster)
            c._policy_cidrs[pid] = c._cidrs_of(c.rules[pid])
        c._sync_cidr_identities()
        for g in c._groups:
            c._maps[g] = c._compile_group(g)
        return c

    def result(self) -> PolicyResult:
        return PolicyResult(self.endpoints(), dict(self.cidr_identities))

    def endpoints(self) -> dict[str, EndpointPolicy]:
        return {p: self._maps[g] for p, g in self._group_of.items()}

    def endpoint(self, pod: str) -> EndpointPolicy | None:
        g = self._group_of.get(pod)
        return None if g is None else self._maps.get(g)

    # --- incremental updates --------------------------------------------------------

    def set_policy(self, doc: Doc) -> set[str]:
        """Add or replace one policy; returns the pods whose maps were recompiled."""
        pid = R.policy_id(doc)
        old = self.rules.get(pid, ())
        new = R.resolve_rules(doc, self.cluster)
        self.rules[pid] = new
        self._policy_cidrs[pid] = self._cidrs_of(new)
        self._reindex(old, new)
        self._pod_deps = None
        ids = self._subjects(old) | self._subjects(new) | self._sync_cidr_identities()
        return self._recompile_identities(ids)

    def remove_policy(self, kind: str, namespace: str, name: str) -> set[str]:
        pid = (kind, namespace, name)
        old = self.rules.pop(pid, ())
        self._policy_cidrs.pop(pid, None)
        self._reindex(old, ())
        self._pod_deps = None
        ids = self._subjects(old) | self._sync_cidr_identities()
        return self._recompile_identities(ids)

    def set_pod(self, pod: Pod, identity: Identity, ip: str | IPv4Address = "") -> set[str]:
        """Add a pod or change its labels (a new identity); returns the pods whose maps
        were recompiled or extended."""
        old_g = self._group_of.get(pod.key)
        affected: set[int] = set()
        touched = {identity.id} if old_g is None else {identity.id, old_g[0]}
        before = self._ipblock_status(touched)
        if old_g is not None:
            affected |= self._pod_sensitive_users(pod.key)
            self._drop_pod_state(pod.key)
        changed_sels: list[IdentitySelector] = []
        if identity.id not in self.identities:
            self.identities[identity.id] = identity
            changed_sels = self.cache.add_identity(identity)
            self._index_identity(identity.id, changed_sels)
        self._add_pod_state(pod, identity.id, ip)
        affected |= self._pod_sensitive_users(pod.key)
        affected |= self._ipblock_users(before, self._ipblock_status(touched))
        out: set[str] = set()
        if old_g is not None:
            out |= self._gc_identity(old_g[0], affected)
        out |= self._recompile_identities(affected)
        if changed_sels:
            # A new identity only adds keys for itself to the maps of the rules that now
            # select it as a peer (cilium.md §6.4 item 6): extend, do not regenerate.
            out |= self._extend_groups(identity.id, changed_sels, affected)
        g = self._group_of[pod.key]
        if g not in self._maps:
            self._maps[g] = self._compile_group(g)
        return out | {pod.key}

    def remove_pod(self, key: str) -> set[str]:
        g = self._group_of.get(key)
        if g is None:
            return set()
        before = self._ipblock_status({g[0]})
        affected = self._pod_sensitive_users(key)
        self._drop_pod_state(key)
        affected |= self._ipblock_users(before, self._ipblock_status({g[0]}))
        out = self._gc_identity(g[0], affected)
        return out | self._recompile_identities(affected)

    def _extend_groups(
        self, ident: int, changed: Iterable[IdentitySelector], skip: set[int]
    ) -> set[str]:
        """Add a new identity's keys to the maps of the rules that now select it as a
        peer: O(those rules' subject groups x the keys of their peering elements)."""
        if self.mode == "never":
            return set()
        only = frozenset({ident})
        # Per subject identity, its peering rules in policy order (the order a full
        # compilation merges them in, which fixes the provenance order of merged keys),
        # each with its keys toward the new identity when they do not depend on the
        # group (no named ports), else its elements.
        by_subject: dict[int, list[_Extension]] = {}
        for r, elems, named, deny in self._peering_plan(changed):
            ext: _Extension = (None, elems, None)
            if not named:
                keys = [kv for e in elems for kv in self._element_keys(e, only, None)]
                # a plain dict of them serves every group without an identity-0 deny
                plain = None
                if not deny:
                    plain = dict(keys)
                    if len(plain) != len(keys):  # one key twice: merge, below
                        plain = None
                ext = (keys, elems, plain)
            for sid in self.cache.select(r.subject):
                if sid not in skip:
                    by_subject.setdefault(sid, []).append(ext)
        out: set[str] = set()
        maps, groups, wild = self._maps, self._groups, self._wild_denies
        for sid, exts in by_subject.items():
            for g in self._ident_groups.get(sid, ()):
                old = maps.get(g)
                if old is None:
                    continue
                ups = exts[0][2] if len(exts) == 1 and not wild.get(g) else None
                if ups is None:
                    items = [
                        kv
                        for keys, elems, _plain in exts
                        for kv in (
                            keys
                            if keys is not None
                            else [x for e in elems for x in self._element_keys(e, only, g)]
                        )
                    ]
                    ups = self._new_identity_keys(g, ident, items)
                if ups:
                    maps[g] = EndpointPolicy(
                        _extend_map(g, old.map, ups), old.ingress_enforced, old.egress_enforced
                    )
                    out.update(groups[g])
        return out

    def _peering_plan(self, changed: Iterable[IdentitySelector]) -> list[_Plan]:
        """The rules with an element peering through one of ``changed``, in policy
        order, each with those elements in rule order (and whether any has a named
        port, whether any is a deny)."""
        deps = self._deps()
        plans = [p for p in (deps.plan(sel) for sel in changed) if p]
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
        out = sorted(merged.values(), key=lambda t: deps.order[id(t[0])])
        for r, elems in out:
            if len(elems) > 1:
                elems.sort(key=r.elements.index)
        return [_plan(r, elems) for r, elems in out]

    def _new_identity_keys(
        self, g: GroupKey, ident: int, items: list[tuple[PolicyKey, PolicyEntry]]
    ) -> dict[PolicyKey, PolicyEntry]:
        """The keys a new identity adds to group ``g``'s map. It has no keys there yet,
        so its keys interact only with each other and with the map's identity-0 denies
        (coverage, §6.5): built against those alone, to be layered over the old map."""
        if not self._wild_denies.get(g) and not any(e.deny for _k, e in items):
            # No deny anywhere near: plain allows, merged per key (the common case).
            ups: dict[PolicyKey, PolicyEntry] = {}
            for k, e in items:
                prev = ups.get(k)
                ups[k] = e if prev is None else merge_allow(prev, e)
            return ups
        b = MapStateBuilder.from_map(self._wild_denies.get(g) or {})
        b.add_many(items)
        return {k: v for k, v in b.build().items() if k.identity == ident}

    def set_services(self, services: Sequence[Service], endpoint_slices: Sequence[Doc]) -> set[str]:
        """Services or EndpointSlices changed: the rules with ``toServices`` peers (and
        the CIDR identities of selector-less services) are recomputed."""
        self.services = {s.key: s for s in services}
        self.slices = list(endpoint_slices)
        self._peer_memo.clear()
        for pid, rules in self.rules.items():
            if any(e.peers.services for r in rules for e in r.elements):
                self._policy_cidrs[pid] = self._cidrs_of(rules)
        ids = self._sync_cidr_identities()
        for r in self._all_rules():
            if any(e.peers.services for e in r.elements):
                ids |= self.cache.select(r.subject)
        return self._recompile_identities(ids)

    def set_namespace_pods(self, pods: Iterable[tuple[Pod, Identity]]) -> set[str]:
        """A namespace label change: every pod of it with its new identity."""
        out: set[str] = set()
        for pod, ident in pods:
            ip = self.pod_ip.get(pod.key)
            out |= self.set_pod(pod, ident, "" if ip is None else str(ip))
        return out

    # --- state helpers ----------------------------------------------------------------

    def _add_pod_state(self, pod: Pod, ident: int, ip: str | IPv4Address) -> None:
        key = pod.key
        self.pods[key] = pod
        self.pod_identity[key] = ident
        if isinstance(ip, IPv4Address):
            self.pod_ip[key] = ip
        else:
            addr = ip or pod.status.pod_ip
            if addr:
                with contextlib.suppress(ValueError):  # IPv6 or garbage: no address
                    self.pod_ip[key] = IPv4Address(addr)
        g: GroupKey = (ident, named_port_key(pod))
        self._group_of[key] = g
        members = self._groups.get(g)
        if members is None:
            self._groups[g] = {key}
            self._ident_groups.setdefault(ident, set()).add(g)
        else:
            members.add(key)
        self._ident_pods.setdefault(ident, set()).add(key)
        if self._peer_memo:
            self._peer_memo.clear()

    def _drop_pod_state(self, key: str) -> None:
        g = self._group_of.pop(key)
        idp = self._ident_pods.get(g[0], set())
        idp.discard(key)
        if not idp:
            self._ident_pods.pop(g[0], None)
        members = self._groups.get(g, set())
        members.discard(key)
        if not members:
            self._groups.pop(g, None)
            self._maps.pop(g, None)
            self._wild_denies.pop(g, None)
            ig = self._ident_groups.get(g[0], set())
            ig.discard(g)
            if not ig:
                self._ident_groups.pop(g[0], None)
        self.pods.pop(key, None)
        self.pod_identity.pop(key, None)
        self.pod_ip.pop(key, None)
        self._peer_memo.clear()

    def _gc_identity(self, ident: int, skip: set[int]) -> set[str]:
        """Forget a pod identity no pod uses any more: its keys leave the maps of the
        rules that selected it as a peer (nothing else depends on them: coverage only
        relates keys of one identity or of identity 0). Returns the pods updated."""
        if ident < 256 or self._ident_pods.get(ident):
            return set()
        self.identities.pop(ident, None)
        changed = self.cache.remove_identity(ident)
        if self._by_ident is not None:
            self._by_ident.pop(ident, None)
        out: set[str] = set()
        users = self._peer_users(changed) - skip
        for g in [g for u in users for g in self._ident_groups.get(u, ())]:
            old = self._maps.get(g)
            if g[0] not in users or old is None:
                continue
            gone = [k for k in old.map if k.identity == ident]
            if not gone:
                continue
            self._maps[g] = EndpointPolicy(
                layered(old.map, {}, gone), old.ingress_enforced, old.egress_enforced
            )
            out |= self._groups[g]
        return out

    def _reindex(self, old: Iterable[R.Rule], new: Iterable[R.Rule]) -> None:
        """Keep identity -> selecting rules current across one policy's change."""
        if self._by_ident is None:
            return
        for r in old:
            for i in self.cache.select(r.subject):
                lst = self._by_ident.get(i)
                if lst is not None:
                    self._by_ident[i] = [x for x in lst if x is not r]
        for r in new:
            for i in self.cache.select(r.subject):
                self._by_ident.setdefault(i, []).append(r)

    def _index_identity(self, ident: int, changed: Iterable[IdentitySelector]) -> None:
        """A new identity: the rules whose subject selects it (kept in policy order).
        Only rules whose subject is among the selectors the cache reported as changed
        can select it (every subject is in the cache once the index exists)."""
        if self._by_ident is None:
            return
        deps = self._deps()
        rules = [r for sel in changed for r in deps.subjects.get(sel, ())]
        rules.sort(key=lambda r: deps.order[id(r)])
        self._by_ident[ident] = rules

    def _subjects(self, rules: Iterable[R.Rule]) -> set[int]:
        out: set[int] = set()
        for r in rules:
            out |= self.cache.select(r.subject)
        return out

    def _all_rules(self) -> Iterable[R.Rule]:
        for rs in self.rules.values():
            yield from rs

    def _peer_users(self, changed: Iterable[IdentitySelector]) -> set[int]:
        """Subject identities of rules with a peer selector among ``changed``."""
        out: set[int] = set()
        for r in self._rules_peering(changed):
            out |= self.cache.select(r.subject)
        return out

    def _rules_peering(self, changed: Iterable[IdentitySelector]) -> list[R.Rule]:
        """Rules with one of these selectors among their peers (each once)."""
        peers = self._deps().peers
        seen: set[int] = set()
        out: list[R.Rule] = []
        for sel in changed:
            for r in peers.get(sel, ()):
                if id(r) not in seen:
                    seen.add(id(r))
                    out.append(r)
        return out

    def _deps(self) -> _PodDeps:
        """Which rules depend on pods beyond selectors (rebuilt after rule changes)."""
        if self._pod_deps is None:
            d = _PodDeps({}, {}, {}, {}, {}, {}, {})
            for r in self._all_rules():
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
            self._pod_deps = d
        return self._pod_deps

    def _pod_sensitive_users(self, key: str) -> set[int]:
        """Subject identities of rules whose peers this pod can change besides ipBlocks:
        a service of its namespace, an egress named port that the pod declares."""
        out: set[int] = set()
        pod = self.pods.get(key)
        if pod is None:
            return out
        deps = self._deps()
        subjects = list(deps.service_ns.get(pod.meta.namespace, ()))
        for n, _p, _num in named_port_key(pod):
            subjects.extend(deps.named.get(n, ()))
        for sel in set(subjects):
            out |= self.cache.select(sel)
        return out

    def _ipblock_status(self, idents: Iterable[int]) -> dict[tuple[R.CIDRPeer, int], bool]:
        """Whether each identity currently matches each pod-matching ipBlock."""
        out: dict[tuple[R.CIDRPeer, int], bool] = {}
        for c in self._deps().cidrs:
            base, mask = int(c.net.network_address), int(c.net.netmask)
            exc = [(int(e.network_address), int(e.netmask)) for e in c.excepts]
            for ident in idents:
                members = self._ident_pods.get(ident)
                out[(c, ident)] = bool(members) and self._inside(members or (), base, mask, exc)
        return out

    def _ipblock_users(
        self,
        before: Mapping[tuple[R.CIDRPeer, int], bool],
        after: Mapping[tuple[R.CIDRPeer, int], bool],
    ) -> set[int]:
        """Subject identities of rules with an ipBlock whose selection changed."""
        changed = {k[0] for k, v in after.items() if before.get(k) != v}
        out: set[int] = set()
        deps = self._deps()
        for c in changed:
            for sel in set(deps.cidrs.get(c, ())):
                out |= self.cache.select(sel)
        return out

    def _recompile_identities(self, ids: set[int]) -> set[str]:
        out: set[str] = set()
        for g in [g for i in ids for g in self._ident_groups.get(i, ())]:
            self._maps[g] = self._compile_group(g)
            out |= self._groups[g]
        return out

    def _cidrs_of(self, rules: Iterable[R.Rule]) -> set[IPv4Network]:
        want: set[IPv4Network] = set()
        for r in rules:
            for e in r.elements:
                for c in e.peers.cidrs:
                    want.add(c.net)
                    want.update(c.excepts)
                for s in e.peers.services:
                    want.update(self._selectorless_service_nets(s))
        return want

    def _sync_cidr_identities(self) -> set[int]:
        """Local CIDR identities for every prefix named by a rule (§6.3 "CIDR rules")."""
        want: set[IPv4Network] = set()
        for nets in self._policy_cidrs.values():
            want |= nets
        want.discard(WORLD_NET)
        changed: list[IdentitySelector] = []
        moved = want ^ set(self.cidr_identities)
        for net in [n for n in self.cidr_identities if n not in want]:
            ident = self.cidr_identities.pop(net)
            changed += self.cache.remove_identity(ident.id)
            self.identities.pop(ident.id, None)
        used = {i.id for i in self.cidr_identities.values()}
        for net in sorted(want - self.cidr_identities.keys()):
            # A stable function of the prefix (probing on collision), so the number does
            # not depend on the order policies arrived in, nor on restarts.
            n = 1 + zlib.crc32(str(net).encode()) % CIDR_ID_SPAN
            while (LOCAL_IDENTITY_SCOPE | n) in used:
                n = 1 + n % CIDR_ID_SPAN
            ident = Identity(LOCAL_IDENTITY_SCOPE | n, cidr_identity_labels(net))
            used.add(ident.id)
            self.cidr_identities[net] = ident
            self.identities[ident.id] = ident
            changed += self.cache.add_identity(ident)
        if changed or moved:
            self._by_ident = None
            self._peer_memo.clear()
        # Whose peers changed: rules naming a changed selector, or a CIDR holding a
        # prefix that came or went (its identity joins or leaves that CIDR's peers).
        users = self._peer_users(changed) if changed else set()
        if moved:
            for r in self._all_rules():
                if any(
                    n.subnet_of(c.net) for e in r.elements for c in e.peers.cidrs for n in moved
                ):
                    users |= self.cache.select(r.subject)
        return users

    # --- peers ------------------------------------------------------------------------

    def _cidr_peer_ids(self, c: R.CIDRPeer) -> set[int]:
        return P.cidr_peer_ids(c, self.cidr_identities, self._ident_pods, self.pod_ip)

    def _inside(
        self, members: Iterable[str], base: int, mask: int, exc: Sequence[tuple[int, int]]
    ) -> bool:
        return P.identity_inside(members, self.pod_ip, base, mask, exc)

    def _selectorless_service_nets(self, s: R.ServicePeer) -> list[IPv4Network]:
        return P.selectorless_service_nets(s, self.services, self.slices)

    def _service_peer_ids(self, s: R.ServicePeer) -> set[int]:
        return P.service_peer_ids(
            s, self.services, self.slices, self.pods, self.pod_identity, self.cidr_identities
        )

    def peer_identities(self, peers: R.Peers) -> frozenset[int]:
        """The identities a peer set selects; {0} for the wildcard."""
        if peers.wildcard:
            return frozenset({0})
        if not peers.cidrs and not peers.services:
            if len(peers.selectors) == 1:
                return self.cache.select(peers.selectors[0])
            return frozenset().union(*(self.cache.select(s) for s in peers.selectors))
        hit = self._peer_memo.get(peers)
        if hit is not None:
            return hit
        out: set[int] = set()
        for s in peers.selectors:
            out |= self.cache.select(s)
        for c in peers.cidrs:
            out |= self._cidr_peer_ids(c)
        for sv in peers.services:
            out |= self._service_peer_ids(sv)
        result = frozenset(out)
        self._peer_memo[peers] = result
        return result

    # --- distillation -------------------------------------------------------------------

    def selecting_rules(self, ident: int) -> list[R.Rule]:
        if self._by_ident is None:
            idx: dict[int, list[R.Rule]] = {}
            for r in self._all_rules():
                for i in self.cache.select(r.subject):
                    idx.setdefault(i, []).append(r)
            self._by_ident = idx
        return self._by_ident.get(ident, [])

    def _named_ports(self, ident: int, name: str, proto: int) -> set[int]:
        out: set[int] = set()
        pname = R.PROTOCOL_NAMES.get(proto, "")
        for g in self._ident_groups.get(ident, ()):
            for n, p, num in g[1]:
                if n == name and p == pname:
                    out.add(num)
        return out

    def _port_keys(
        self, spec: R.PortSpec, egress: bool, peer: int, own: GroupKey | None
    ) -> list[tuple[int, int, int]]:
        """(protocol, block start, prefix) for one port spec toward one peer identity."""
        if spec.protocol == 0:
            return [(0, 0, 0)]
        if spec.name:
            if egress:
                nums = self._named_ports(peer, spec.name, spec.protocol)
            else:
                pname = R.PROTOCOL_NAMES.get(spec.protocol, "")
                own_ports = own[1] if own is not None else ()
                nums = {num for n, p, num in own_ports if n == spec.name and p == pname}
            return [(spec.protocol, n, 16) for n in sorted(nums)]
        if spec.first == 0:
            return [(spec.protocol, 0, 0)]
        return [(spec.protocol, s, p) for s, p in split_range(spec.first, spec.last)]

    def enforcement(self, selecting: Sequence[R.Rule]) -> tuple[bool, bool]:
        if self.mode == "never":
            return False, False
        if self.mode == "always":
            return True, True
        return (
            any(r.default_deny_ingress for r in selecting),
            any(r.default_deny_egress for r in selecting),
        )

    def _compile_group(self, g: GroupKey) -> EndpointPolicy:
        ident = g[0]
        selecting = self.selecting_rules(ident)
        ing, eg = self.enforcement(selecting)
        b = MapStateBuilder()
        if self.mode != "never":
            # Allows of a non-enforced direction still matter: their L7 redirects apply
            # (enableDefaultDeny does not cover L7, §6.1); the allow-all entry below
            # covers everything else.
            for r in selecting:
                for e in r.elements:
                    self._add_element(b, e, g)
        if not ing:
            b.add(
                PolicyKey(0, False),
                PolicyEntry(provenance=(Provenance("derived", "", "", "allow-any-ingress"),)),
            )
        else:
            b.add(
                PolicyKey(int(ReservedIdentity.HOST), False),
                PolicyEntry(provenance=(Provenance("derived", "", "", "allow-localhost-ingress"),)),
            )
        if not eg:
            b.add(
                PolicyKey(0, True),
                PolicyEntry(provenance=(Provenance("derived", "", "", "allow-any-egress"),)),
            )
        built = b.build()
        self._wild_denies[g] = {k: v for k, v in built.items() if k.identity == 0 and v.deny}
        return EndpointPolicy(built, ing, eg)

    def _add_element(self, b: MapStateBuilder, e: R.Element, g: GroupKey) -> None:
        b.add_many(self._items(e, g, None))

    def _items(
        self, e: R.Element, g: GroupKey, only: frozenset[int] | None
    ) -> list[tuple[PolicyKey, PolicyEntry]]:
        """An element's keys for group ``g`` (toward ``only`` when given, else toward
        every peer identity)."""
        if only is not None or e.named_ports:
            # toward one new identity (used once) or with named ports: not memoized
            return self._element_keys(e, self.peer_identities(e.peers) if only is None else only, g)
        peers = self.peer_identities(e.peers)
        # Without named ports an element's keys depend only on its peers: shared by
        # every endpoint it applies to (the memo key holds the peer set itself).
        memo_key = (id(e), peers)
        hit = self._elem_keys.get(memo_key)
        if hit is not None and hit[0] is e:
            return hit[1]
        items = self._element_keys(e, peers, g)
        if len(self._elem_keys) > 50_000:
            self._elem_keys.clear()
        self._elem_keys[memo_key] = (e, items)
        return items

    def _element_ports(self, e: R.Element, g: GroupKey | None) -> list[_PortEntry]:
        """Per port spec of an element: its map entry and its (protocol, block start,
        prefix) triples (None for an egress named port: resolved per peer). Without
        named ports this depends on the element alone and is cached."""
        hit = self._elem_ports.get(id(e))
        if hit is not None and hit[0] is e:
            return hit[1]
        named = e.named_ports
        out: list[_PortEntry] = []
        prov = (e.provenance,)
        for spec in e.ports or (R.PortSpec(0),):
            if e.deny:
                entry = PolicyEntry(deny=True, provenance=prov)
            elif spec.l7 is not None:
                proxy = R.DNS_PROXY_PORT if spec.l7[0].kind == "dns" else R.HTTP_PROXY_PORT
                entry = PolicyEntry(proxy_port=proxy, l7_rules=spec.l7, provenance=prov)
            else:
                entry = PolicyEntry(provenance=prov)
            if spec.name and e.egress:
                out.append((spec, entry, None))
            else:
                out.append((spec, entry, self._port_keys(spec, e.egress, 0, g)))
        if not named:
            if len(self._elem_ports) > 50_000:
                self._elem_ports.clear()
            self._elem_ports[id(e)] = (e, out)
        return out

    def _element_keys(
        self, e: R.Element, peers: frozenset[int], g: GroupKey | None
    ) -> list[tuple[PolicyKey, PolicyEntry]]:
        """An element's keys toward ``peers`` (``g`` only matters for named ports)."""
        out: list[tuple[PolicyKey, PolicyEntry]] = []
        egress = e.egress
        for spec, entry, keys in self._element_ports(e, g):
            if keys is None:
                # A named port is the destination pod's (resolved per peer identity); the
                # wildcard peer becomes every pod identity having a port of that name, so
                # world/host and pods without it are not opened (k8s API semantics; Cilium
                # itself opens the port number toward every peer).
                named_peers = set(self._ident_pods) if 0 in peers else set(peers)
                for peer in named_peers:
                    for proto, start, plen in self._port_keys(spec, True, peer, g):
                        out.append((_key(peer, True, proto, start, plen), entry))
                continue
            for peer in peers:
                for proto, start, plen in keys:
                    out.append((_key(peer, egress, proto, start, plen), entry))
        return out


_KEYS: dict[tuple[int, bool, int, int, int], PolicyKey] = {}


def _key(identity: int, egress: bool, proto: int, start: int, plen: int) -> PolicyKey:
    """Interned policy keys: building a frozen dataclass costs far more than a lookup,
    and the same keys recur across endpoints and recompilations."""
    t = (identity, egress, proto, start, plen)
    k = _KEYS.get(t)
    if k is None:
        if len(_KEYS) > 1_000_000:
            _KEYS.clear()
        k = PolicyKey(identity, egress, proto, start, plen)
        _KEYS[t] = k
    return k
