"""The incremental policy compiler: policies, pods and services in, per-endpoint policy
maps out, and for every update the pods whose maps changed.

Role (cilium.md §6.4): the stateful form behind ``policy.compute_policy``; the engine
keeps one (``control.endpoint_policy``). Theory of operation: ``control.policy``.
Its parts: rules are resolved by ``control.rules``, selectors by the
``SelectorCache`` (``control.selectors``), the rule indexes by ``control.rule_index``,
CIDR and service peers by ``control.peers``, and maps distilled by
``control.distillery`` (a mixin of the compiler).

Updates (``set_policy``, ``remove_policy``, ``set_pod``, ``remove_pod``,
``set_namespace_pods``, ``set_services``) recompile only the endpoint groups whose
selecting rules or peer identities changed; a new identity extends the maps of the
rules peering with it, a gone one is removed from them (no recompilation).

Sans-IO; imports the model, ``desired`` and ``control``.
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterable, Mapping, Sequence
from ipaddress import IPv4Address, IPv4Network

from ciliate.control import peers as P
from ciliate.control import rules as R
from ciliate.control.compilation import (
    CIDR_ID_SPAN,
    WORLD_NET,
    EndpointPolicy,
    GroupKey,
    PolicyInputs,
    PolicyResult,
    cidr_identity_labels,
    named_port_key,
)
from ciliate.control.distillery import Distillery
from ciliate.control.rule_index import RuleIndex, index_rules
from ciliate.control.selectors import IdentitySelector, SelectorCache
from ciliate.desired import LOCAL_IDENTITY_SCOPE, Identity, layered
from ciliate.model.cluster import ClusterConfig
from ciliate.model.core import Pod, Service
from ciliate.model.meta import Doc


class PolicyCompiler(Distillery):
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
        self._pod_deps: RuleIndex | None = None
        # each policy's position in policy order (kept when it is replaced, as the
        # dict order of ``rules``): rules are merged in this order
        self._policy_pos: dict[tuple[str, str, str], int] = {}
        self._next_pos = 0
        self._init_distillery()

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
            c._position(pid)
            c.rules[pid] = R.resolve_rules(doc, c.cluster)
            c._policy_cidrs[pid] = c._cidrs_of(c.rules[pid])
        c._sync_cidr_identities()
        for g in c._groups:
            c._maps[g] = c._compile_group(g)
        # Built now, then kept current by each update: otherwise the first pod event
        # after startup would pay for indexing every rule.
        c._deps()
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
        pos = self._position(pid)
        if self._pod_deps is not None:
            self._pod_deps.remove_rules(old)
            self._pod_deps.add_rules(pos, new)
        ids = self._subjects(old) | self._subjects(new) | self._sync_cidr_identities()
        return self._recompile_identities(ids)

    def remove_policy(self, kind: str, namespace: str, name: str) -> set[str]:
        pid = (kind, namespace, name)
        old = self.rules.pop(pid, ())
        self._policy_cidrs.pop(pid, None)
        self._policy_pos.pop(pid, None)
        self._reindex(old, ())
        if self._pod_deps is not None:
            self._pod_deps.remove_rules(old)
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

    def selecting_rules(self, ident: int) -> list[R.Rule]:
        """The rules whose subject selects ``ident`` (identity -> rules index)."""
        if self._by_ident is None:
            idx: dict[int, list[R.Rule]] = {}
            for r in self._all_rules():
                for i in self.cache.select(r.subject):
                    idx.setdefault(i, []).append(r)
            self._by_ident = idx
        return self._by_ident.get(ident, [])

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
        return self._deps().rules_peering(changed)

    def _deps(self) -> RuleIndex:
        """The rule indexes (built on first use, then updated per policy change)."""
        if self._pod_deps is None:
            pos = self._policy_pos
            self._pod_deps = index_rules((pos[pid], rs) for pid, rs in self.rules.items())
        return self._pod_deps

    def _position(self, pid: tuple[str, str, str]) -> int:
        """A policy's position in policy order (a new one goes last)."""
        pos = self._policy_pos.get(pid)
        if pos is None:
            pos = self._policy_pos[pid] = self._next_pos
            self._next_pos += 1
        return pos

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
