"""The store interface every backend implements (SQLite now; etcd and a Kubernetes API
server later). Nothing above the store knows which backend it runs on.

Objects are documents (``Doc``) identified by ``ObjectKey`` (kind, namespace, name).
The store sets metadata.uid, resourceVersion (a global, strictly increasing integer as
a string), generation (bumped when anything but status/metadata changes) and
creationTimestamp. ``apply`` is atomic: all changes of a batch land together or none.

Imports ``ciliate.errors``, ``model.meta`` and the standard library; must not import a
backend (``sqlite3``) or any layer above the store.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol, TypeVar

from ciliate.errors import ConflictError
from ciliate.model.meta import Doc

T = TypeVar("T")


class ObjectKey(NamedTuple):
    kind: str
    namespace: str  # "" for cluster-scoped kinds
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace + '/' if self.namespace else ''}{self.name}"


class EventType(enum.StrEnum):
    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: EventType
    resource_version: int
    key: ObjectKey
    object: Doc  # the object after the change (before it, for DELETED)


@dataclass(frozen=True, slots=True)
class Change:
    """One change of a batch: put (create or replace) or delete."""

    key: ObjectKey
    object: Doc | None  # None = delete


class StoreError(ConflictError):
    """The store cannot be used: not a store file, written by a newer ciliate, or
    locked by another writer for longer than the busy timeout."""


class VersionConflictError(ConflictError):
    """``apply(..., if_version=v)`` found the store at another resourceVersion: someone
    else wrote since the caller's snapshot. Re-read and compute again."""

    def __init__(self, expected: int, actual: int) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"the store changed since resourceVersion {expected} (now {actual}); retry"
        )


class ResourceVersionTooOldError(ConflictError):
    """The events after ``since`` were compacted away (Kubernetes: 410 Gone).

    A watcher recovers by listing again and watching from the list's resourceVersion.
    """

    def __init__(self, since: int, compacted: int) -> None:
        self.since = since
        self.compacted = compacted
        super().__init__(
            f"resourceVersion too old: {since} (events up to {compacted} were compacted);"
            " list again and watch from the current resourceVersion"
        )


class ResourceVersionAheadError(ResourceVersionTooOldError):
    """A watch from a resourceVersion the store never reached: the store was recreated
    (``cluster delete`` / ``create``) under a long-running watcher. The remedy is the
    same as for a compacted window: list again and watch from the list's version."""

    def __init__(self, since: int, current: int) -> None:
        ConflictError.__init__(
            self,
            f"resourceVersion {since} is ahead of the store ({current}): the store was"
            " recreated; list again and watch from the current resourceVersion",
        )
        self.since = since
        self.compacted = current


def snapshot(
    store: Store, kind: str | None = None, namespace: str | None = None
) -> tuple[list[Doc], int]:
    """Objects and the resourceVersion they reflect, for list-then-watch and for
    ``apply(..., if_version=rv)``. Consistent on backends with ``list_with_version``;
    elsewhere the version is read first, so it is never newer than the list (a write in
    between makes a later ``if_version`` apply fail and retry, never lose an update)."""
    native = getattr(store, "list_with_version", None)
    if callable(native):
        docs, rv = native(kind, namespace)
        return list(docs), int(rv)
    rv = store.resource_version()
    return store.list(kind, namespace), rv


def update_status(store: Store, key: ObjectKey, status: object) -> int:
    """Replace the status of an object on any backend (a MODIFIED event, same generation).

    Backends with an atomic variant (``SQLiteStore.update_status``) are used directly.
    Raises ``KeyError`` when the object does not exist.
    """
    native = getattr(store, "update_status", None)
    if callable(native):
        return int(native(key, status))
    doc = store.get(key)
    if doc is None:
        raise KeyError(str(key))
    doc["status"] = status
    return store.apply([Change(key, doc)])


def apply_unless_changed(
    store: Store,
    compute: Callable[[], tuple[Sequence[Change], T]],
    *,
    attempts: int,
    gave_up: str,
) -> T:
    """Read-modify-write with optimistic concurrency: ``compute()`` reads the store and
    returns the changes to write and a result; the changes are written only if nobody
    wrote since the read (``if_version``), else ``compute`` runs again on the new state.
    So a concurrent writer is never lost and two writers never act on the same reading
    (two applies taking one cluster IP). ``ConflictError(gave_up)`` after ``attempts``
    rounds of conflicts."""
    for _attempt in range(attempts):
        version = store.resource_version()
        changes, result = compute()
        if not changes:
            return result
        try:
            store.apply(changes, if_version=version)
        except VersionConflictError:
            continue
        return result
    raise ConflictError(gave_up)


class Store(Protocol):
    def get(self, key: ObjectKey) -> Doc | None: ...

    def list(self, kind: str | None = None, namespace: str | None = None) -> list[Doc]:
        """Objects of a kind (all kinds when None), in one namespace or all (None)."""
        ...

    def apply(self, changes: Sequence[Change], *, if_version: int | None = None) -> int:
        """Apply a batch atomically; return the resourceVersion after it.

        Puts merge server-set metadata (uid and creationTimestamp kept across updates);
        a delete of a missing object is ignored. With ``if_version`` the batch is
        applied only if the store is still at that resourceVersion, else
        ``VersionConflictError`` and nothing changes (optimistic concurrency for
        read-compute-write loops such as the controllers).
        """
        ...

    def resource_version(self) -> int:
        """The current (highest) resourceVersion."""
        ...

    def watch(self, since: int = 0, timeout: float | None = None) -> Iterator[WatchEvent]:
        """Events with resourceVersion > since, in order; blocks for new ones until
        ``timeout`` seconds pass without any (None = forever)."""
        ...

    def close(self) -> None: ...
