"""Selector cache: label selectors over identity labels, resolved to identities.

Role (cilium.md §6.4 item 3): every peer or subject selector of every rule is resolved
once to the set of identities whose labels it matches; pods of the same identity share
the answer. An inverted index (label key=value -> identities) keeps resolution fast when
there are thousands of identities: a selector starts from the smallest candidate set of
its positive requirements and filters only those.

Labels: an identity's labels are ``source:key=value`` strings (``k8s:app=web``,
``reserved:host``, ``cidr:10.0.0.0/8``); they become a map {``source:key``: value}.
Selector keys are normalized the same way (§6.2): a key without a source, or with
``any:``, means ``k8s:`` for pods (reserved labels always name their source).

Inputs: identities (id -> labels). Outputs: frozensets of identity ids.
Sans-IO; imports only ``ciliate.model.meta`` and ``ciliate.desired``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from ciliate.desired import Identity
from ciliate.model.meta import LabelSelector, Requirement, SelectorOp

KNOWN_SOURCES = frozenset(
    {"k8s", "reserved", "cidr", "fqdn", "unspec", "container", "cni", "cidrgroup", "node"}
)


def normalize_key(key: str) -> str:
    """``app`` / ``any:app`` -> ``k8s:app``; keys with a known source stay as written."""
    src, sep, rest = key.partition(":")
    if sep and src in KNOWN_SOURCES:
        return key
    if sep and src == "any":
        return f"k8s:{rest}"
    return f"k8s:{key}"


def label_map(labels: Iterable[str]) -> dict[str, str]:
    """``("k8s:app=web", "reserved:host")`` -> {"k8s:app": "web", "reserved:host": ""}."""
    out: dict[str, str] = {}
    for lab in labels:
        k, _, v = lab.partition("=")
        out[k] = v
    return out


@dataclass(frozen=True, slots=True)
class IdentitySelector:
    """A selector over normalized identity label keys; no requirements = every identity."""

    requirements: tuple[Requirement, ...] = ()
    _hash: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Selectors key every cache and index of the compiler: hash once, not per lookup.
        object.__setattr__(self, "_hash", hash(self.requirements))

    def __hash__(self) -> int:
        return self._hash

    @classmethod
    def from_label_selector(cls, sel: LabelSelector) -> IdentitySelector:
        return cls(
            tuple(Requirement(normalize_key(r.key), r.op, r.values) for r in sel.requirements)
        )

    @classmethod
    def exists(cls, key: str) -> IdentitySelector:
        return cls((Requirement(key, SelectorOp.EXISTS),))

    @classmethod
    def equals(cls, key: str, value: str) -> IdentitySelector:
        return cls((Requirement(key, SelectorOp.IN, frozenset({value})),))

    def and_(self, *reqs: Requirement) -> IdentitySelector:
        return IdentitySelector(self.requirements + tuple(reqs))

    def without_key(self, key: str) -> IdentitySelector:
        return IdentitySelector(tuple(r for r in self.requirements if r.key != key))

    def mentions(self, predicate: Callable[[str], bool]) -> bool:
        return any(predicate(r.key) for r in self.requirements)

    @property
    def is_wildcard(self) -> bool:
        return not self.requirements

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)

    def __str__(self) -> str:
        return str(LabelSelector(self.requirements)) or "{}"


class SelectorCache:
    """Identities with an inverted index, and memoized selector -> identities answers.

    ``add_identity``/``remove_identity`` keep the memo exact and return the cached
    selectors whose selection changed, so the policy compiler knows whom to recompile.

    The memoized selectors are themselves indexed by one *anchor* requirement each (an
    ``In`` under every key=value it accepts, an ``Exists`` under its key; selectors with
    neither are checked always): an identity can only match a selector whose anchor its
    labels satisfy, so a new or gone identity evaluates only those candidates (Cilium's
    selector cache does the same per label), not every cached selector.
    """

    def __init__(self, identities: Mapping[int, Identity] | None = None) -> None:
        self._labels: dict[int, dict[str, str]] = {}
        self._by_kv: dict[tuple[str, str], set[int]] = {}
        self._by_key: dict[str, set[int]] = {}
        self._memo: dict[IdentitySelector, frozenset[int]] = {}
        # anchor index of the memoized selectors; values keep memo insertion order
        self._sel_by_kv: dict[tuple[str, str], list[IdentitySelector]] = {}
        self._sel_by_key: dict[str, list[IdentitySelector]] = {}
        self._sel_always: list[IdentitySelector] = []
        self._sel_seq: dict[IdentitySelector, int] = {}
        for ident in (identities or {}).values():
            self._index(ident)

    def _index(self, ident: Identity) -> None:
        lm = label_map(ident.labels)
        self._labels[ident.id] = lm
        for k, v in lm.items():
            self._by_kv.setdefault((k, v), set()).add(ident.id)
            self._by_key.setdefault(k, set()).add(ident.id)

    def labels(self, identity: int) -> Mapping[str, str]:
        return self._labels.get(identity, {})

    @property
    def identities(self) -> frozenset[int]:
        return frozenset(self._labels)

    def _candidates(self, lm: Mapping[str, str]) -> list[IdentitySelector]:
        """Cached selectors that labels ``lm`` may match (their anchor holds), in memo
        insertion order so callers see a stable order."""
        out = list(self._sel_always)
        by_kv, by_key = self._sel_by_kv, self._sel_by_key
        for kv in lm.items():
            hit = by_kv.get(kv)
            if hit:
                out += hit
            hit = by_key.get(kv[0])
            if hit:
                out += hit
        if len(out) > 1:
            out.sort(key=self._sel_seq.__getitem__)
        return out

    def add_identity(self, ident: Identity) -> list[IdentitySelector]:
        if ident.id in self._labels:
            return []
        self._index(ident)
        lm = self._labels[ident.id]
        changed: list[IdentitySelector] = []
        memo = self._memo
        for sel in self._candidates(lm):
            if sel.matches(lm):
                memo[sel] = memo[sel] | {ident.id}
                changed.append(sel)
        return changed

    def remove_identity(self, identity: int) -> list[IdentitySelector]:
        lm = self._labels.pop(identity, None)
        if lm is None:
            return []
        for k, v in lm.items():
            self._by_kv.get((k, v), set()).discard(identity)
            self._by_key.get(k, set()).discard(identity)
        changed: list[IdentitySelector] = []
        memo = self._memo
        for sel in self._candidates(lm):
            ids = memo[sel]
            if identity in ids:
                memo[sel] = ids - {identity}
                changed.append(sel)
        return changed

    def select(self, sel: IdentitySelector) -> frozenset[int]:
        hit = self._memo.get(sel)
        if hit is not None:
            return hit
        result, anchor = self._resolve(sel)
        self._memo[sel] = frozenset(result)
        self._sel_seq[sel] = len(self._sel_seq)
        if anchor is None:
            self._sel_always.append(sel)
        elif anchor.op is SelectorOp.IN:
            for v in anchor.values:
                self._sel_by_kv.setdefault((anchor.key, v), []).append(sel)
        else:
            self._sel_by_key.setdefault(anchor.key, []).append(sel)
        return self._memo[sel]

    def _resolve(self, sel: IdentitySelector) -> tuple[set[int], Requirement | None]:
        """The identities ``sel`` matches, and the requirement whose candidates were the
        fewest (the selector's anchor in the memo index)."""
        best: set[int] | None = None
        anchor: Requirement | None = None
        for r in sel.requirements:
            cand: set[int] | None = None
            if r.op is SelectorOp.IN:
                cand = set()
                for v in r.values:
                    cand |= self._by_kv.get((r.key, v), set())
            elif r.op is SelectorOp.EXISTS:
                cand = self._by_key.get(r.key, set())
            if cand is not None and (best is None or len(cand) < len(best)):
                best, anchor = cand, r
        pool = self._labels.keys() if best is None else best
        return {i for i in pool if sel.matches(self._labels[i])}, anchor

    def cached(self) -> Mapping[IdentitySelector, frozenset[int]]:
        """Every resolved selector (``cilium-dbg policy selectors``)."""
        return dict(self._memo)
