"""Layered mappings: a read-only ``Mapping`` made of a shared base plus a small layer
of changes, and ``layered`` to stack more changes while sharing the base.

Role: structural sharing for ``desired``. Most of a node's ipcache and lb maps are the
same on every node, and one pod more changes one entry; sharing the base keeps 1,000
nodes x 100,000 pods affordable, earlier states stay valid (nothing is mutated), and
``desired.diff`` compares only the layers that differ. Imports only the standard
library.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class LayeredMap(Mapping[K, V], Generic[K, V]):
    """A read-only mapping: ``base`` with some keys replaced (``upserts``) or removed
    (``deletes``). Why: most of a node's ipcache and lb maps are the same on every node,
    and one pod more changes one entry; sharing the base keeps 1,000 nodes x 100,000
    pods affordable, and ``diff`` compares only the layers that differ.
    Never mutate ``base``, ``upserts`` or ``deletes`` after construction."""

    __slots__ = ("_len", "base", "deletes", "upserts")

    def __init__(
        self,
        base: Mapping[K, V],
        upserts: Mapping[K, V] | None = None,
        deletes: Iterable[K] = (),
    ) -> None:
        # upserts are taken as given (not copied): the caller hands over ownership.
        ups: Mapping[K, V] = upserts if upserts is not None else {}
        self.base = base
        self.upserts = ups
        self.deletes: frozenset[K] = frozenset(k for k in deletes if k in base and k not in ups)
        self._len = -1  # computed on first use: building many layers stays O(1)

    def __getitem__(self, key: K) -> V:
        ups = self.upserts
        if key in ups:
            return ups[key]
        if key in self.deletes:
            raise KeyError(key)
        return self.base[key]

    def __contains__(self, key: object) -> bool:
        if key in self.upserts:
            return True
        return key not in self.deletes and key in self.base

    def __iter__(self) -> Iterator[K]:
        dels, base = self.deletes, self.base
        for k in base:
            if k not in dels:
                yield k
        for k in self.upserts:
            if k not in base:
                yield k

    def __len__(self) -> int:
        if self._len < 0:
            base = self.base
            self._len = (
                len(base) - len(self.deletes) + sum(1 for k in self.upserts if k not in base)
            )
        return self._len

    def __repr__(self) -> str:
        return f"LayeredMap({len(self)} entries, {len(self.upserts) + len(self.deletes)} own)"

    @property
    def own_keys(self) -> frozenset[K]:
        """Keys this layer changes relative to its base."""
        return frozenset(self.upserts) | self.deletes

    def with_changes(self, upserts: Mapping[K, V], deletes: Iterable[K] = ()) -> Mapping[K, V]:
        """A new mapping with more changes on top; compacted into one dict when the
        layer grows past a quarter of the base (amortized O(1) per change)."""
        return layered(self, upserts, deletes)


def layered(
    base: Mapping[K, V], upserts: Mapping[K, V], deletes: Iterable[K] = ()
) -> Mapping[K, V]:
    """``base`` with changes, sharing ``base`` (flattening one level of layers)."""
    dels = set(deletes)
    if isinstance(base, LayeredMap):
        # dict() copies with the stored hashes; a comprehension would rehash every key
        # (a Python-level __hash__ for dataclass keys such as PolicyKey).
        ups = dict(base.upserts)
        for k in dels:
            ups.pop(k, None)
        ups.update(upserts)
        all_dels = (set(base.deletes) - set(upserts)) | dels
        inner: Mapping[K, V] = base.base
    else:
        ups, all_dels, inner = dict(upserts), dels, base
    # Compaction threshold ~ 2*sqrt(n): a change costs O(sqrt n) copying the layer,
    # flattening O(n) every ~sqrt(n) changes; both stay small at 100,000 entries.
    if len(ups) + len(all_dels) > max(64, 2 * math.isqrt(len(inner))):
        flat = dict(inner)
        for k in all_dels:
            flat.pop(k, None)
        flat.update(ups)
        return flat
    return LayeredMap(inner, ups, all_dels)
