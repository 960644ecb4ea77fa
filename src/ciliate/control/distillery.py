"""Distillation: the rules selecting an endpoint group -> its policy map entries.

Role (cilium.md §6.4 item 5, Cilium's ``pkg/policy/distillery.go``): for a group of
endpoints (identity, named ports) the rules selecting its identity give the
enforcement per direction, then every rule element yields keys (peer identity or 0
for the wildcard) x (protocol, aligned port block) with provenance, inserted through
``MapStateBuilder`` (deny precedence of §6.5). A non-enforced direction gets the
allow-all entry; an enforced ingress gets the allow-localhost entry for identity 1.

A new identity does not regenerate the maps of the rules peering with it
(``_extend_groups``): its keys are built once per peering rule, against the map's
identity-0 denies only (§6.5 coverage never relates two non-zero identities), and
layered over each group's old map (``extend_map``).

``Distillery`` is a mixin of ``compiler.PolicyCompiler``: it reads the compiler's
indexes (declared below) and keeps its own caches (element ports and keys, interned
``PolicyKey``s). Sans-IO; imports ``desired`` and ``control`` (rules, mapstate,
selectors, rule_index, compilation, portrange).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from ciliate.control import rules as R
from ciliate.control.compilation import EndpointPolicy, GroupKey
from ciliate.control.mapstate import MapStateBuilder, merge_allow
from ciliate.control.portrange import split_range
from ciliate.control.rule_index import RuleIndex
from ciliate.control.selectors import IdentitySelector, SelectorCache
from ciliate.desired import (
    LayeredMap,
    PolicyEntry,
    PolicyKey,
    PolicyMap,
    Provenance,
    ReservedIdentity,
)

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


class Distillery:
    """Map distillation over the compiler's state (a mixin of ``PolicyCompiler``)."""

    # the compiler's state this reads (set by ``PolicyCompiler.__init__``)
    mode: str
    cache: SelectorCache
    _groups: dict[GroupKey, set[str]]
    _ident_groups: dict[int, set[GroupKey]]
    _ident_pods: dict[int, set[str]]
    _maps: dict[GroupKey, EndpointPolicy]
    # this module's own caches (also set up by the compiler)
    _wild_denies: dict[GroupKey, dict[PolicyKey, PolicyEntry]]
    _elem_ports: dict[int, tuple[R.Element, list[_PortEntry]]]
    _elem_keys: dict[
        tuple[int, frozenset[int]], tuple[R.Element, list[tuple[PolicyKey, PolicyEntry]]]
    ]

    def _init_distillery(self) -> None:
        self._wild_denies = {}  # per group: its identity-0 denies (new identities meet them)
        self._elem_ports = {}
        self._elem_keys = {}

    def selecting_rules(self, ident: int) -> list[R.Rule]:
        raise NotImplementedError  # the compiler's identity -> rules index

    def peer_identities(self, peers: R.Peers) -> frozenset[int]:
        raise NotImplementedError  # the compiler's peer resolution

    def _deps(self) -> RuleIndex:
        raise NotImplementedError  # the compiler's rule indexes

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
        for r, elems, named, deny in self._deps().peering_plan(changed):
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
                        extend_map(g, old.map, ups),
                        old.ingress_enforced,
                        old.egress_enforced,
                        (old.map, ups),
                    )
                    out.update(groups[g])
        return out

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


def extend_map(g: GroupKey, base: PolicyMap, ups: Mapping[PolicyKey, PolicyEntry]) -> PolicyMap:
    """``base`` with ``ups`` layered over it (``desired.layered``), compacted into one
    dict when the layer passes a size that differs per group (32..254 keys).

    Why per group: one new identity extends hundreds of maps in one update; with one
    threshold they would all compact in the same update (a p99 spike every ~60 new
    identities). Why up to 254 keys: a compaction copies the whole map and hands the
    collector a fresh dict of it to scan, while a longer layer only costs its own copy
    (small dict copies keep their hashes)."""
    if not isinstance(base, LayeredMap):
        return LayeredMap(base, dict(ups))
    # what ``layered`` does for a base without deletes (a new identity deletes nothing)
    layer = dict(base.upserts)
    layer.update(ups)
    if len(layer) + len(base.deletes) <= 32 + g[0] % 223:
        return LayeredMap(base.base, layer, base.deletes)
    flat = dict(base.base)
    for k in base.deletes:
        flat.pop(k, None)
    flat.update(layer)
    return flat


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
