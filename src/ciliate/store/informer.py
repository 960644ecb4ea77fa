"""List-then-watch with a local cache: client-go's reflector + informer, for any Store.

Role: what the agent and the control engine use to follow the cluster state. ``sync()``
lists (a consistent snapshot and its resourceVersion when the backend offers
``list_with_version``), then ``events()`` watches from there, keeping ``cache`` current
and yielding each event. When the watch window was compacted away
(``ResourceVersionTooOldError``, Kubernetes' 410 Gone) it lists again and yields the
difference as synthetic ADDED / MODIFIED / DELETED events — consumers never see the
error, only a consistent stream. Imports only ``ciliate.store`` and the standard library.
"""

from __future__ import annotations

from collections.abc import Iterator

from ciliate.model.meta import Doc, doc_key
from ciliate.store.api import (
    EventType,
    ObjectKey,
    ResourceVersionTooOldError,
    Store,
    WatchEvent,
    snapshot,
)


def _key_of(doc: Doc) -> ObjectKey:
    return ObjectKey(*doc_key(doc))


def _rv_of(doc: Doc) -> int:
    try:
        return int((doc.get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


class Informer:
    """A cache of the objects of ``kinds`` (all kinds when None), kept by watching."""

    def __init__(self, store: Store, kinds: frozenset[str] | None = None) -> None:
        self.store = store
        self.kinds = kinds
        self.cache: dict[ObjectKey, Doc] = {}
        self.resource_version = 0
        self.relists = 0  # how often the watch window was lost (for status / tests)

    def _wanted(self, key: ObjectKey) -> bool:
        return self.kinds is None or key.kind in self.kinds

    def _list(self) -> tuple[dict[ObjectKey, Doc], int]:
        docs, rv = snapshot(self.store)
        return {k: d for d in docs if self._wanted(k := _key_of(d))}, rv

    def sync(self) -> int:
        """(Re)list: replace the cache; return the resourceVersion it reflects."""
        self.cache, self.resource_version = self._list()
        return self.resource_version

    def _relist_events(self) -> list[WatchEvent]:
        old = self.cache
        new, rv = self._list()
        out: list[WatchEvent] = []
        for k, d in new.items():
            if k not in old:
                out.append(WatchEvent(EventType.ADDED, _rv_of(d), k, d))
            elif old[k] != d:
                out.append(WatchEvent(EventType.MODIFIED, _rv_of(d), k, d))
        for k, d in old.items():
            if k not in new:
                out.append(WatchEvent(EventType.DELETED, rv, k, d))
        out.sort(key=lambda e: e.resource_version)
        self.cache, self.resource_version = new, rv
        self.relists += 1
        return out

    def events(self, timeout: float | None = None) -> Iterator[WatchEvent]:
        """Watch from the cache's version; ends after ``timeout`` idle seconds."""
        while True:
            try:
                for ev in self.store.watch(self.resource_version, timeout=timeout):
                    self.resource_version = ev.resource_version
                    if not self._wanted(ev.key):
                        continue
                    if ev.type is EventType.DELETED:
                        self.cache.pop(ev.key, None)
                    else:
                        self.cache[ev.key] = ev.object
                    yield ev
                return
            except ResourceVersionTooOldError:
                yield from self._relist_events()
