"""A read-only view of the cluster state that controllers compute from.

Role: controllers are pure functions ``Snapshot -> list[Change]``. A snapshot indexes
documents by kind and (namespace, name); ``with_changes`` returns a new snapshot with
a batch folded in (the reconciler runs the controllers of one round in sequence on
successively updated snapshots, then writes the net result in one store batch).

Documents handed out must be treated as read-only: controllers build changed copies
(``copy.deepcopy`` or fresh dicts) and return them as ``Change`` values.

Inputs: documents. Outputs: lookups. Imports only the model and the store interface.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Mapping, Sequence

from ciliate.model.meta import Doc, doc_key
from ciliate.store.api import Change, ObjectKey

_ByName = dict[tuple[str, str], Doc]


class Snapshot:
    def __init__(self, docs: Iterable[Doc] = ()) -> None:
        self._kinds: dict[str, _ByName] = {}
        # Lazily built indexes (a snapshot never changes, so they never go stale).
        self._by_controller: dict[str, dict[tuple[str, str, str], builtins.list[Doc]]] = {}
        self._by_label: dict[str, dict[tuple[str, str, str], builtins.list[Doc]]] = {}
        for d in docs:
            kind, ns, name = doc_key(d)
            self._kinds.setdefault(kind, {})[(ns, name)] = d

    @classmethod
    def _from_kinds(cls, kinds: dict[str, _ByName]) -> Snapshot:
        s = cls()
        s._kinds = kinds
        return s

    def controlled_by(
        self, kind: str, namespace: str, owner_kind: str, owner_name: str
    ) -> builtins.list[Doc]:
        """Objects of ``kind`` in ``namespace`` whose controller reference names the
        owner (kind and name; callers check the uid), sorted by name."""
        index = self._by_controller.get(kind)
        if index is None:
            index = {}
            for d in self.list(kind):
                m = d.get("metadata") or {}
                for r in m.get("ownerReferences") or ():
                    if r.get("controller"):
                        k = (
                            str(m.get("namespace", "") or ""),
                            str(r.get("kind")),
                            str(r.get("name")),
                        )
                        index.setdefault(k, []).append(d)
                        break
            self._by_controller[kind] = index
        return index.get((namespace, owner_kind, owner_name), [])

    def select(self, kind: str, namespace: str, labels: Mapping[str, str]) -> builtins.list[Doc]:
        """Objects of ``kind`` in ``namespace`` carrying every label of ``labels`` (an
        equality selector; empty selects all), sorted by name."""
        if not labels:
            return self.list(kind, namespace)
        index = self._by_label.get(kind)
        if index is None:
            index = {}
            for d in self.list(kind):
                m = d.get("metadata") or {}
                ns = str(m.get("namespace", "") or "")
                for k, v in (m.get("labels") or {}).items():
                    index.setdefault((ns, str(k), str(v)), []).append(d)
            self._by_label[kind] = index
        items = sorted(labels.items())
        # Start from the smallest candidate list, then filter by the other labels.
        lists = [index.get((namespace, str(k), str(v)), []) for k, v in items]
        base = min(lists, key=len)
        out = []
        for d in base:
            have = (d.get("metadata") or {}).get("labels") or {}
            if all(str(have.get(k)) == str(v) and k in have for k, v in items):
                out.append(d)
        return out

    def get(self, key: ObjectKey) -> Doc | None:
        return self._kinds.get(key.kind, {}).get((key.namespace, key.name))

    def find(self, kind: str, namespace: str, name: str) -> Doc | None:
        return self._kinds.get(kind, {}).get((namespace, name))

    def list(self, kind: str, namespace: str | None = None) -> builtins.list[Doc]:
        """Objects of ``kind`` sorted by (namespace, name); one namespace or all."""
        by = self._kinds.get(kind, {})
        keys = sorted(k for k in by if namespace is None or k[0] == namespace)
        return [by[k] for k in keys]

    def kinds(self) -> builtins.list[str]:
        return sorted(k for k, v in self._kinds.items() if v)

    def all(self) -> builtins.list[Doc]:
        return [d for k in self.kinds() for d in self.list(k)]

    def with_changes(self, changes: Sequence[Change]) -> Snapshot:
        if not changes:
            return self
        kinds = dict(self._kinds)
        copied: set[str] = set()
        for ch in changes:
            k = ch.key.kind
            if k not in copied:
                kinds[k] = dict(kinds.get(k, {}))
                copied.add(k)
            nk = (ch.key.namespace, ch.key.name)
            if ch.object is None:
                kinds[k].pop(nk, None)
            else:
                kinds[k][nk] = ch.object
        return Snapshot._from_kinds(kinds)


def key_of(doc: Doc) -> ObjectKey:
    kind, ns, name = doc_key(doc)
    return ObjectKey(kind, ns, name)


def put(doc: Doc) -> Change:
    return Change(key_of(doc), doc)


def delete(doc: Doc) -> Change:
    return Change(key_of(doc), None)


def net_changes(
    before: Snapshot, after: Snapshot, touched: Iterable[ObjectKey] | None = None
) -> builtins.list[Change]:
    """The puts and deletes that turn ``before`` into ``after`` (unchanged objects left
    out), in a stable order: kind, namespace, name. ``touched`` (the keys any change
    named) limits the comparison to those objects; None compares everything."""
    if touched is None:
        keys: set[ObjectKey] = set()
        for kind in set(before.kinds()) | set(after.kinds()):
            keys.update(key_of(d) for d in before.list(kind))
            keys.update(key_of(d) for d in after.list(kind))
    else:
        keys = set(touched)
    out: builtins.list[Change] = []
    for key in sorted(keys):
        o, n = before.get(key), after.get(key)
        if n is None:
            if o is not None:
                out.append(Change(key, None))
        elif o is None or o != n:
            out.append(Change(key, n))
    return out
