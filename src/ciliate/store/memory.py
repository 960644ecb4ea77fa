"""An in-process store backend: the same contract as SQLite, held in memory.

Role: a fast, file-less ``Store`` for tests of controllers and the engine, for the model
datapath's what-if runs, and as the reference implementation the contract tests run
against next to ``SQLiteStore``. Same server-side semantics (``store.objects``), same
event log with compaction and ``ResourceVersionTooOldError``; watch wakes on a
``threading.Condition``. Not shared between processes and not persistent.
Imports only the standard library and ``ciliate.store``/``ciliate.model``.
"""

from __future__ import annotations

import builtins
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ciliate.model.meta import Doc
from ciliate.store.api import (
    Change,
    EventType,
    ObjectKey,
    ResourceVersionAheadError,
    ResourceVersionTooOldError,
    VersionConflictError,
    WatchEvent,
)
from ciliate.store.objects import canonical, load, resolve_delete, resolve_put

DEFAULT_HISTORY = 10_000


class MemoryStore:
    def __init__(
        self,
        *,
        history: int = DEFAULT_HISTORY,
        now: Callable[[], float] = time.time,
        new_uid: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        if history < 1:
            raise ValueError("history must keep at least one event")
        self._history = history
        self._now = now
        self._new_uid = new_uid
        self._objects: dict[ObjectKey, str] = {}  # canonical text: callers get copies
        self._events: deque[tuple[int, EventType, ObjectKey, str]] = deque()
        self._rv = 0
        self._compacted = 0
        self._cond = threading.Condition(threading.RLock())
        self._closed = False

    def get(self, key: ObjectKey) -> Doc | None:
        with self._cond:
            text = self._objects.get(key)
        return None if text is None else load(text)

    def list(self, kind: str | None = None, namespace: str | None = None) -> builtins.list[Doc]:
        return self.list_with_version(kind, namespace)[0]

    def list_with_version(
        self, kind: str | None = None, namespace: str | None = None
    ) -> tuple[builtins.list[Doc], int]:
        with self._cond:
            items = [
                (k, t)
                for k, t in self._objects.items()
                if (kind is None or k.kind == kind)
                and (namespace is None or k.namespace == namespace)
            ]
            rv = self._rv
        items.sort(key=lambda kt: (kt[0].namespace, kt[0].name, kt[0].kind))
        return [load(t) for _, t in items], rv

    def resource_version(self) -> int:
        with self._cond:
            return self._rv

    def compacted_version(self) -> int:
        with self._cond:
            return self._compacted

    def apply(self, changes: Sequence[Change], *, if_version: int | None = None) -> int:
        with self._cond:
            if self._closed:
                raise RuntimeError("store is closed")
            if if_version is not None and self._rv != if_version:
                raise VersionConflictError(if_version, self._rv)
            # Stage everything first: an error in any change leaves the store untouched.
            staged: dict[ObjectKey, str | None] = {}
            events: builtins.list[tuple[int, EventType, ObjectKey, str]] = []
            rv = self._rv
            for ch in changes:
                cur = staged[ch.key] if ch.key in staged else self._objects.get(ch.key)
                old = None if cur is None else load(cur)
                if ch.object is None:
                    if old is None:
                        continue
                    rv += 1
                    staged[ch.key] = None
                    last = resolve_delete(old, rv)
                    events.append((rv, EventType.DELETED, ch.key, canonical(last)))
                    continue
                put = resolve_put(old, ch.object, rv + 1, now=self._now, new_uid=self._new_uid)
                if put is None:
                    continue
                rv += 1
                staged[ch.key] = put.text
                etype = EventType.ADDED if put.created else EventType.MODIFIED
                events.append((rv, etype, ch.key, put.text))
            if not events:
                return self._rv
            for k, text in staged.items():
                if text is None:
                    self._objects.pop(k, None)
                else:
                    self._objects[k] = text
            self._events.extend(events)
            self._rv = rv
            while len(self._events) > self._history:
                self._compacted = self._events.popleft()[0]
            self._cond.notify_all()
            return rv

    def update_status(self, key: ObjectKey, status: Any) -> int:
        with self._cond:
            doc = self.get(key)
            if doc is None:
                raise KeyError(str(key))
            doc["status"] = status
            return self.apply([Change(key, doc)])

    def watch(self, since: int = 0, timeout: float | None = None) -> Iterator[WatchEvent]:
        with self._cond:
            if since > self._rv:
                raise ResourceVersionAheadError(since, self._rv)
        last = since
        while True:
            with self._cond:
                if last < self._compacted:
                    raise ResourceVersionTooOldError(last, self._compacted)
                pending = [e for e in self._events if e[0] > last]
                if not pending:
                    if self._closed:
                        return
                    woke = self._cond.wait_for(self._newer_than(last), timeout=timeout)
                    if not woke or self._closed:
                        return
                    continue
            for rv, etype, key, text in pending:
                last = rv
                yield WatchEvent(etype, rv, key, load(text))

    def _newer_than(self, rv: int) -> Callable[[], bool]:
        return lambda: self._closed or self._rv > rv

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
