"""MapState: the content of one endpoint's policy map, and the datapath's lookup in it.

Role: two halves of one contract (cilium.md §3.3, §6.5).

* ``lookup(map, identity, egress, proto, dport)`` is ``__policy_can_access`` of
  ``bpf/lib/policy.h`` restated over ``desired.PolicyMap``. The model datapath calls it
  at the egress stage of the source endpoint and the ingress stage of the destination;
  the C code does the same against the BPF LPM trie. Packet outcomes are data: a
  ``PolicyVerdict`` with Cilium's drop reason, never an exception.
* ``MapStateBuilder`` inserts entries with the deny-precedence and overlap rules of
  §6.5, so a compiled map never holds an allow shadowed by a deny of the same identity.

LPM semantics of a key: identity and direction match exactly; the 24 bits of
``protocol``+``dport`` match on their first ``lpm_prefix_len`` bits (0 = any protocol,
8 = the protocol with any port, 8+n = the protocol and the first n bits of the port).
``dport`` of a stored key is the first port of its aligned block.

Inputs: ``desired.PolicyKey``/``PolicyEntry``. Outputs: ``PolicyVerdict``, maps.
Sans-IO; imports only ``ciliate.desired``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ciliate.desired import LayeredMap, PolicyEntry, PolicyKey, PolicyMap, Provenance, diff_map

# Drop reasons (cilium.md §5): the datapath reports them negated; we keep them positive.
DROP_POLICY = 133
DROP_POLICY_DENY = 181
DROP_POLICY_AUTH_REQUIRED = 189


class MatchType(enum.IntEnum):
    """Policy-verdict match types (cilium.md §3.3 item 6; flow.proto policy_match_type)."""

    NONE = 0
    L3_ONLY = 1
    L3_L4 = 2
    L4_ONLY = 3
    ALL = 4
    L3_PROTO = 5
    PROTO_ONLY = 6


@dataclass(frozen=True, slots=True)
class PolicyVerdict:
    allowed: bool
    drop_reason: int  # 0 when allowed; 133 no entry, 181 deny entry, 189 auth required
    key: PolicyKey | None  # the chosen entry's key (None when nothing matched)
    entry: PolicyEntry | None
    match_type: int  # MatchType value
    redirect: bool  # allowed through the L7 proxy (entry.proxy_port != 0)

    @property
    def proxy_port(self) -> int:
        return self.entry.proxy_port if self.entry is not None and self.allowed else 0


def _block(dport: int, prefix: int) -> int:
    """First port of the aligned block of ``prefix`` leading bits containing dport."""
    if prefix <= 0:
        return 0
    shift = 16 - prefix
    return (dport >> shift) << shift


_Hit = tuple[PolicyKey, PolicyEntry]


class _Index:
    """A map arranged for LPM lookups: (identity, direction) -> protocol -> entries by
    decreasing prefix, plus the any-protocol entry. Built once per map object."""

    __slots__ = ("by_peer",)

    def __init__(self, policy_map: PolicyMap) -> None:
        by_peer: dict[tuple[int, bool], dict[int, list[tuple[int, int, _Hit]]]] = {}
        for key, entry in policy_map.items():
            protos = by_peer.setdefault((key.identity, key.egress), {})
            plen = key.port_prefix_len if key.protocol else 0
            protos.setdefault(key.protocol, []).append((plen, key.dport, (key, entry)))
        for protos in by_peer.values():
            for lst in protos.values():
                lst.sort(key=lambda t: -t[0])
        self.by_peer = by_peer

    def lpm(self, identity: int, egress: bool, proto: int, dport: int) -> _Hit | None:
        protos = self.by_peer.get((identity, egress))
        if protos is None:
            return None
        if proto:
            for plen, start, hit in protos.get(proto, ()):
                if plen == 0 or (dport >> (16 - plen)) == (start >> (16 - plen)):
                    return hit
        anyp = protos.get(0)
        return anyp[0][2] if anyp else None


_INDEXES: dict[int, tuple[PolicyMap, int, _Index]] = {}
_MAX_INDEXES = 8192


def _index(policy_map: PolicyMap) -> _Index:
    """The cached index of a map (maps are never mutated once compiled)."""
    hit = _INDEXES.get(id(policy_map))
    if hit is not None and hit[0] is policy_map and hit[1] == len(policy_map):
        return hit[2]
    if len(_INDEXES) >= _MAX_INDEXES:
        _INDEXES.clear()
    idx = _Index(policy_map)
    _INDEXES[id(policy_map)] = (policy_map, len(policy_map), idx)
    return idx


def _lpm(policy_map: PolicyMap, identity: int, egress: bool, proto: int, dport: int) -> _Hit | None:
    """Longest-prefix match over protocol+port for one exact (identity, direction)."""
    return _index(policy_map).lpm(identity, egress, proto, dport)


def _match_type(key: PolicyKey) -> MatchType:
    l3 = key.identity != 0
    if key.protocol == 0:
        return MatchType.L3_ONLY if l3 else MatchType.ALL
    if key.port_prefix_len == 0:
        return MatchType.L3_PROTO if l3 else MatchType.PROTO_ONLY
    return MatchType.L3_L4 if l3 else MatchType.L4_ONLY


def _verdict(key: PolicyKey, entry: PolicyEntry) -> PolicyVerdict:
    mt = int(_match_type(key))
    if entry.deny:
        return PolicyVerdict(False, DROP_POLICY_DENY, key, entry, mt, False)
    if entry.auth_type:
        # No auth map in ciliate yet: a required authentication is never satisfied.
        return PolicyVerdict(False, DROP_POLICY_AUTH_REQUIRED, key, entry, mt, False)
    return PolicyVerdict(True, 0, key, entry, mt, entry.proxy_port != 0)


def lookup(
    policy_map: PolicyMap, identity: int, egress: bool, proto: int, dport: int
) -> PolicyVerdict:
    """The datapath verdict for a new connection (``__policy_can_access``, §3.3).

    1. L3 lookup with the real remote identity; a deny hit drops with 181.
    2. L4-only lookup with identity 0. Choose it when it is a deny, when there is no L3
       hit, or when its proto+port prefix is longer (proxy priorities are equal in
       ciliate); otherwise the L3 hit wins (ties go to L3).
    3. No entry at all drops with 133.
    For ICMP, ``dport`` carries the ICMP type (the ``enable_icmp_rule`` option).
    """
    l3 = _lpm(policy_map, identity, egress, proto, dport) if identity != 0 else None
    if l3 is not None and l3[1].deny:
        return _verdict(*l3)
    l4 = _lpm(policy_map, 0, egress, proto, dport)
    chosen = l3
    if l4 is not None and (l4[1].deny or l3 is None or l4[0].lpm_prefix_len > l3[0].lpm_prefix_len):
        chosen = l4
    if chosen is None:
        return PolicyVerdict(False, DROP_POLICY, None, None, int(MatchType.NONE), False)
    return _verdict(*chosen)


# --- building a map with the overlap rules of §6.5 ----------------------------------------


def _covers(broad: PolicyKey, narrow: PolicyKey) -> bool:
    """Whether ``broad`` matches every packet ``narrow`` matches (same direction, same or
    wildcard identity, a proto/port prefix of ``narrow``'s)."""
    if broad.egress != narrow.egress:
        return False
    if broad.identity not in (0, narrow.identity):
        return False
    if broad.protocol == 0:
        return True
    if broad.protocol != narrow.protocol:
        return False
    if broad.port_prefix_len > narrow.port_prefix_len:
        return False
    return _block(narrow.dport, broad.port_prefix_len) == broad.dport


def merge_allow(old: PolicyEntry, new: PolicyEntry) -> PolicyEntry:
    """Two allows on one key (§6.5): a redirect beats none; between redirects the lower
    proxy port wins (one listener priority in ciliate); the higher auth type wins; L7
    rules and provenance are unioned."""
    if old.proxy_port and new.proxy_port:
        proxy = min(old.proxy_port, new.proxy_port)
    else:
        proxy = old.proxy_port or new.proxy_port
    rules = old.l7_rules + tuple(r for r in new.l7_rules if r not in old.l7_rules)
    prov = old.provenance + tuple(p for p in new.provenance if p not in old.provenance)
    return PolicyEntry(
        deny=False,
        proxy_port=proxy,
        auth_type=max(old.auth_type, new.auth_type),
        l7_rules=rules,
        provenance=prov,
    )


class MapStateBuilder:
    """Accumulates keys with the insertion rules of §6.5:

    1. A new allow covered by an existing deny (same or wildcard identity, broader or
       equal proto/port) is not inserted.
    2. A new deny deletes every narrower-or-equal key of its identity (or of every
       identity when it is the wildcard), then is inserted; identical denies merge.
    3. Two allows on one key merge (``merge_allow``).
    """

    def __init__(self) -> None:
        self._entries: dict[PolicyKey, PolicyEntry] = {}
        self._denies: dict[PolicyKey, PolicyEntry] = {}

    @classmethod
    def from_map(cls, policy_map: PolicyMap) -> MapStateBuilder:
        """Continue from a built map (insertion is order-independent, so adding keys to
        it gives what building everything at once gives)."""
        b = cls()
        b._entries = dict(policy_map)
        b._denies = {k: e for k, e in policy_map.items() if e.deny}
        return b

    def add(self, key: PolicyKey, entry: PolicyEntry) -> None:
        if entry.deny:
            self._add_deny(key, entry)
        else:
            self._add_allow(key, entry)

    def add_many(self, items: Iterable[tuple[PolicyKey, PolicyEntry]]) -> None:
        """``add`` for many keys; plain allows while no deny exists take a fast path
        (the common case: most maps hold no deny at all)."""
        entries = self._entries
        for key, entry in items:
            if entry.deny or self._denies:
                self.add(key, entry)
                continue
            old = entries.get(key)
            entries[key] = entry if old is None else merge_allow(old, entry)

    def _add_allow(self, key: PolicyKey, entry: PolicyEntry) -> None:
        for dk in self._denies:
            if _covers(dk, key):
                return
        old = self._entries.get(key)
        self._entries[key] = entry if old is None else merge_allow(old, entry)

    def _add_deny(self, key: PolicyKey, entry: PolicyEntry) -> None:
        for dk in self._denies:
            if dk != key and _covers(dk, key):
                return  # a broader deny already drops everything this one would
        old = self._entries.get(key)
        if old is not None and old.deny:
            prov = old.provenance + tuple(p for p in entry.provenance if p not in old.provenance)
            merged = PolicyEntry(deny=True, provenance=prov)
            self._entries[key] = merged
            self._denies[key] = merged
            return
        for k in [k for k in self._entries if _covers(key, k)]:
            del self._entries[k]
            self._denies.pop(k, None)
        self._entries[key] = entry
        self._denies[key] = entry

    def build(self) -> dict[PolicyKey, PolicyEntry]:
        return dict(self._entries)


def build_map(items: Iterable[tuple[PolicyKey, PolicyEntry]]) -> dict[PolicyKey, PolicyEntry]:
    b = MapStateBuilder()
    for k, e in items:
        b.add(k, e)
    return b.build()


_NONE: Any = object()


def map_delta(old: PolicyMap, new: PolicyMap) -> list[tuple[PolicyKey, PolicyEntry | None]]:
    """(key, new entry or None) for every entry that differs between two versions of a
    compiled map, sorted by key: ``desired.diff_map`` for the shapes the compiler makes.

    A version is usually the previous one with a layer more (a new identity's keys) or
    compacted into a dict: then only the layers (or the dicts underneath, at C speed,
    skipping entries that are the same object) are compared, not every entry through
    ``LayeredMap`` lookups and dataclass equality. Other shapes go to ``diff_map``.
    """
    out: list[tuple[PolicyKey, PolicyEntry | None]] = []
    if not isinstance(old, LayeredMap) or old.deletes:
        return diff_map(old, new)
    ob, ou = old.base, old.upserts
    if isinstance(new, LayeredMap) and new.base is ob and not new.deletes:
        nu = new.upserts
        for k, v in nu.items():
            ov = ou.get(k, _NONE)
            if ov is _NONE:
                ov = ob.get(k, _NONE)
            if ov is not v and ov != v:
                out.append((k, v))
        for k, ov in ou.items():
            if k not in nu:
                nv = ob.get(k)
                if nv is not ov and nv != ov:
                    out.append((k, nv))
    elif isinstance(new, dict) and isinstance(ob, dict):
        for k, v in new.items():
            ov = ou.get(k, _NONE)
            if ov is _NONE:
                ov = ob.get(k, _NONE)
            if ov is not v and ov != v:
                out.append((k, v))
        out.extend((k, None) for k in ou if k not in new)
        out.extend((k, None) for k in ob if k not in new and k not in ou)
    else:
        return diff_map(old, new)
    out.sort(key=lambda kv: kv[0])
    return out


def allow_all(egress: bool, provenance: Provenance) -> tuple[PolicyKey, PolicyEntry]:
    """The single entry of a non-enforced direction (identity 0, proto 0, port 0)."""
    return PolicyKey(0, egress, 0, 0, 0), PolicyEntry(provenance=(provenance,))


def format_key(key: PolicyKey) -> str:
    """``Key.String()``-style port column: ANY, 80/TCP, 8080-8083/TCP."""
    names = {6: "TCP", 17: "UDP", 132: "SCTP", 1: "ICMP", 58: "ICMPv6"}
    if key.protocol == 0:
        return "ANY"
    proto = names.get(key.protocol, str(key.protocol))
    if key.port_prefix_len == 0:
        return f"ANY/{proto}"
    last = key.dport + (1 << (16 - key.port_prefix_len)) - 1
    if last == key.dport:
        return f"{key.dport}/{proto}"
    return f"{key.dport}-{last}/{proto}"


def entries_for(policy_map: Mapping[PolicyKey, PolicyEntry]) -> list[tuple[PolicyKey, PolicyEntry]]:
    """Entries in a stable order (direction, identity, protocol, port)."""
    return sorted(policy_map.items(), key=lambda kv: kv[0])
