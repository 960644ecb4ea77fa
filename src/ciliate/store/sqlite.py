"""The embedded store backend: one SQLite file in WAL mode (see docs/decisions/0001-store.md).

Role: implements ``ciliate.store.api.Store`` for one machine. Inputs are batches of
``Change``; outputs are documents and ``WatchEvent``s. Imports only the standard library
and ``ciliate.store.api`` / ``ciliate.model.meta`` / ``ciliate.errors`` (never anything
above the store layer).

Theory of operation
-------------------

Two tables hold everything:

- ``objects(kind, namespace, name, resource_version, doc)``: the current state, one
  row per object, ``doc`` the canonical JSON of the whole document.
- ``events(rv INTEGER PRIMARY KEY, type, kind, namespace, name, doc)``: an append-only
  log, one row per change. ``rv`` is the global resourceVersion; the current version is
  kept in ``meta`` (``rv``) because compaction may delete old events.

``apply`` runs a batch in one ``BEGIN IMMEDIATE`` transaction, so writers from several
processes serialize on SQLite's write lock (``busy_timeout`` makes them wait instead of
failing) and a batch is wholly visible or not at all. Each change that alters an object
takes the next rv. What a put stores (uid, creationTimestamp, generation, the
status kept when a put carries none, "unchanged" for identical documents) is decided
by ``ciliate.store.objects``, shared with every backend.

Watchers read the event log with their own connection. New events are pushed: each
watcher registers a unix datagram socket in ``<db>-watch/`` and every writer, in any
process, rings all of them right after its commit (``ciliate.store.wakeup``), so a
watcher in the agent wakes as soon as ``ciliate apply`` commits. Polling stays as the
fallback: a watcher also checks ``PRAGMA data_version`` (no query of the events table
when nothing changed) every ``poll_interval`` seconds, so a lost ring (a writer killed
between its commit and its ring, a directory it may not write to) costs at most one
interval. Where no socket can be registered, the watcher waits on an in-process
notifier (a ``threading.Condition`` shared by every store object on the same file)
and polls every ``PUSHLESS_POLL_INTERVAL`` instead.

Crash safety (kill -9): SQLite's WAL commit is atomic with respect to a process dying
at any instruction: a transaction is visible only once its commit frame is in the WAL,
and a torn tail is ignored on the next open. ``synchronous=NORMAL`` in WAL mode loses
no committed transaction when a *process* dies (the OS still has the pages); only a
power loss can roll back the most recent commits, never corrupt the file. ``durable=True``
selects ``synchronous=FULL`` (an fsync per commit) for that case.
"""

from __future__ import annotations

import builtins
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ciliate.model.meta import Doc
from ciliate.store.api import (
    Change,
    EventType,
    ObjectKey,
    ResourceVersionAheadError,
    ResourceVersionTooOldError,
    StoreError,
    VersionConflictError,
    WatchEvent,
)
from ciliate.store.objects import canonical, load, resolve_delete, resolve_put
from ciliate.store.wakeup import Bell, Ringer

DEFAULT_HISTORY = 10_000
"""Events kept for watchers; older ones are compacted away (etcd's compaction)."""

DEFAULT_POLL_INTERVAL = 1.0
"""Seconds between checks for other processes' commits while a watch waits, when no ring
arrives (the fallback of the push wake-up; it was 25 ms when polling was the only way:
40 queries a second from every idle watcher)."""

PUSHLESS_POLL_INTERVAL = 0.025
"""The poll interval of a watcher that could not register a wake-up socket."""

WATCH_DIR_SUFFIX = "-watch"
"""``<db>-watch/`` holds the wake-up sockets of the watchers of ``<db>``."""

SCHEMA_VERSION = 1

BUSY_TIMEOUT_MS = 60_000
"""How long a writer waits for another process's write transaction before failing."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS objects (
    kind             TEXT NOT NULL,
    namespace        TEXT NOT NULL,
    name             TEXT NOT NULL,
    resource_version INTEGER NOT NULL,
    doc              TEXT NOT NULL,
    PRIMARY KEY (kind, namespace, name)
);
CREATE INDEX IF NOT EXISTS objects_by_ns ON objects (namespace, name);
CREATE TABLE IF NOT EXISTS events (
    rv        INTEGER PRIMARY KEY,
    type      TEXT NOT NULL,
    kind      TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name      TEXT NOT NULL,
    doc       TEXT NOT NULL
);
INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', 1), ('rv', 0), ('compacted', 0);
"""


class _Notifier:
    """Wakes in-process watchers of one database file when a commit lands."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.commits = 0

    def notify(self) -> None:
        with self.cond:
            self.commits += 1
            self.cond.notify_all()


_notifiers: dict[str, _Notifier] = {}
_notifiers_lock = threading.Lock()


def _notifier_for(path: str) -> _Notifier:
    with _notifiers_lock:
        n = _notifiers.get(path)
        if n is None:
            n = _notifiers[path] = _Notifier()
        return n


class SQLiteStore:
    """The embedded ``Store``: a SQLite file shared safely by threads and processes."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        history: int = DEFAULT_HISTORY,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        durable: bool = False,
        push: bool = True,
        now: Callable[[], float] = time.time,
        new_uid: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        if history < 1:
            raise ValueError("history must keep at least one event")
        # Absolute: watch() opens connections later, possibly after a chdir (daemons).
        self.path = Path(path).absolute()
        self._history = history
        self._poll_interval = poll_interval
        self._push = push  # False: this store's watchers only poll (benchmarks, tests)
        self._synchronous = "FULL" if durable else "NORMAL"
        self._now = now
        self._new_uid = new_uid
        self._lock = threading.RLock()
        self._notifier = _notifier_for(str(self.path.resolve()))
        self._watch_dir = self.path.resolve().with_name(self.path.name + WATCH_DIR_SUFFIX)
        self._ringer = Ringer(self._watch_dir)
        self._bells: set[Bell] = set()  # this store's watchers, rung when it closes
        self._closed = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = self._connect()
            self._init_schema()
        except sqlite3.DatabaseError as e:
            raise StoreError(f"{self.path}: cannot open the store: {e}") from e
        schema = self._meta("schema")
        if schema > SCHEMA_VERSION:
            self._conn.close()
            raise StoreError(
                f"{self.path}: store schema {schema} was written by a newer ciliate"
                f" (this one reads {SCHEMA_VERSION})"
            )

    # --- connections ----------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves (BEGIN IMMEDIATE for
        # writers, so the write lock is taken up front and busy_timeout applies).
        conn = sqlite3.connect(
            str(self.path), isolation_level=None, check_same_thread=False, timeout=60.0
        )
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self._retry_busy(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone())
        conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        return conn

    @staticmethod
    def _retry_busy(fn: Callable[[], Any]) -> Any:
        # Switching a new file to WAL needs an exclusive lock that the busy handler does
        # not always wait for (several processes creating the store at once).
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) and "busy" not in str(e):
                    raise
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def _init_schema(self) -> None:
        # Plain statements in our own transaction (executescript would COMMIT first).
        def create() -> None:
            with self._lock:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    for stmt in _SCHEMA.split(";"):
                        if stmt.strip():
                            self._conn.execute(stmt)
                    self._conn.execute("COMMIT")
                except BaseException:
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                    raise

        self._retry_busy(create)

    # --- reads ----------------------------------------------------------------------

    def get(self, key: ObjectKey) -> Doc | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT doc FROM objects WHERE kind = ? AND namespace = ? AND name = ?",
                (key.kind, key.namespace, key.name),
            ).fetchone()
        return None if row is None else load(row[0])

    def list(self, kind: str | None = None, namespace: str | None = None) -> list[Doc]:
        docs, _ = self.list_with_version(kind, namespace)
        return docs

    def list_with_version(
        self, kind: str | None = None, namespace: str | None = None
    ) -> tuple[builtins.list[Doc], int]:
        """A consistent snapshot and the resourceVersion it reflects (list-then-watch)."""
        sql = "SELECT doc FROM objects"
        where: builtins.list[str] = []
        args: builtins.list[str] = []
        if kind is not None:
            where.append("kind = ?")
            args.append(kind)
        if namespace is not None:
            where.append("namespace = ?")
            args.append(namespace)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY namespace, name, kind"
        with self._lock:
            # One read transaction: the rows and the rv come from the same snapshot.
            self._conn.execute("BEGIN")
            try:
                rows = self._conn.execute(sql, args).fetchall()
                rv = self._meta("rv")
            finally:
                self._conn.execute("COMMIT")
        return [load(r[0]) for r in rows], rv

    def resource_version(self) -> int:
        with self._lock:
            return self._meta("rv")

    def _meta(self, key: str) -> int:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    # --- writes ---------------------------------------------------------------------

    def apply(self, changes: Sequence[Change], *, if_version: int | None = None) -> int:
        def body(rv: int) -> int:
            if if_version is not None and rv != if_version:
                raise VersionConflictError(if_version, rv)
            for change in changes:
                rv = self._apply_one(change, rv)
            return rv

        return self._write(body)

    def update_status(self, key: ObjectKey, status: Any) -> int:
        """Replace an object's status (a MODIFIED event; generation unchanged).

        Raises ``KeyError`` when the object does not exist. Atomic: the read and the
        write happen in one transaction, so a concurrent spec update is not lost.
        """

        def body(rv: int) -> int:
            row = self._conn.execute(
                "SELECT doc FROM objects WHERE kind = ? AND namespace = ? AND name = ?",
                (key.kind, key.namespace, key.name),
            ).fetchone()
            if row is None:
                raise KeyError(str(key))
            doc = load(row[0])
            doc["status"] = status
            return self._apply_one(Change(key, doc), rv)

        return self._write(body)

    def _write(self, body: Callable[[int], int]) -> int:
        """One write transaction: ``body(rv)`` makes its changes inside ``BEGIN
        IMMEDIATE`` and returns the rv after them; the new rv, the compaction and the
        commit follow, or everything rolls back. Watchers are woken after the commit."""
        if self._closed:
            raise RuntimeError("store is closed")
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                rv = start = self._meta("rv")
                rv = body(rv)
                if rv != start:
                    conn.execute("UPDATE meta SET value = ? WHERE key = 'rv'", (rv,))
                    self._compact(rv)
                conn.execute("COMMIT")
            except sqlite3.OperationalError as e:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise StoreError(f"{self.path}: {e}") from e
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        if rv != start:
            self._notifier.notify()
            self._ringer.ring()
        return rv

    def _apply_one(self, change: Change, rv: int) -> int:
        """Write one change inside the open transaction; return the rv after it."""
        key = change.key
        conn = self._conn
        row = conn.execute(
            "SELECT doc FROM objects WHERE kind = ? AND namespace = ? AND name = ?",
            (key.kind, key.namespace, key.name),
        ).fetchone()
        old = None if row is None else load(row[0])

        if change.object is None:
            if old is None:
                return rv  # deleting a missing object is not an error (kubectl --ignore-not-found)
            rv += 1
            conn.execute(
                "DELETE FROM objects WHERE kind = ? AND namespace = ? AND name = ?",
                (key.kind, key.namespace, key.name),
            )
            self._event(rv, EventType.DELETED, key, canonical(resolve_delete(old, rv)))
            return rv

        put = resolve_put(old, change.object, rv + 1, now=self._now, new_uid=self._new_uid)
        if put is None:
            return rv  # byte-identical after normalization: unchanged, no event
        rv += 1
        conn.execute(
            "INSERT OR REPLACE INTO objects (kind, namespace, name, resource_version, doc)"
            " VALUES (?, ?, ?, ?, ?)",
            (key.kind, key.namespace, key.name, rv, put.text),
        )
        self._event(rv, EventType.ADDED if put.created else EventType.MODIFIED, key, put.text)
        return rv

    def _event(self, rv: int, type_: EventType, key: ObjectKey, text: str) -> None:
        self._conn.execute(
            "INSERT INTO events (rv, type, kind, namespace, name, doc) VALUES (?, ?, ?, ?, ?, ?)",
            (rv, type_.value, key.kind, key.namespace, key.name, text),
        )

    def _compact(self, rv: int) -> None:
        floor = rv - self._history
        if floor > self._meta("compacted"):
            self._conn.execute("DELETE FROM events WHERE rv <= ?", (floor,))
            self._conn.execute("UPDATE meta SET value = ? WHERE key = 'compacted'", (floor,))

    # --- watch ----------------------------------------------------------------------

    def compacted_version(self) -> int:
        """The highest resourceVersion whose event was compacted away (0 = none)."""
        with self._lock:
            return self._meta("compacted")

    def watch(self, since: int = 0, timeout: float | None = None) -> Iterator[WatchEvent]:
        """Events with rv > ``since`` in order, from this process and any other.

        Ends when ``timeout`` seconds pass without a new event (never when None) or the
        store is closed. Raises ``ResourceVersionTooOldError`` when events after
        ``since`` were compacted (Kubernetes answers 410 Gone): list again and watch
        from the list's resourceVersion.
        """
        # A private connection: a waiting watcher never holds the writer's lock, and
        # data_version on it changes for every commit made through other connections.
        conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        bell = self._open_bell()  # before the first read: no later commit is missed
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            yield from self._watch_loop(conn, since, timeout, bell)
        finally:
            if bell is not None:
                with self._lock:
                    self._bells.discard(bell)
                bell.close()
            conn.close()

    def _open_bell(self) -> Bell | None:
        """This watcher's wake-up socket, or None (then it polls every
        ``PUSHLESS_POLL_INTERVAL``): no unix sockets, a read-only state directory."""
        if not self._push:
            return None
        try:
            bell = Bell(self._watch_dir)
        except OSError:
            return None
        with self._lock:
            self._bells.add(bell)
        return bell

    def _watch_loop(
        self, conn: sqlite3.Connection, since: int, timeout: float | None, bell: Bell | None
    ) -> Iterator[WatchEvent]:
        row = conn.execute("SELECT value FROM meta WHERE key = 'rv'").fetchone()
        current = int(row[0]) if row else 0
        if since > current:
            raise ResourceVersionAheadError(since, current)
        last = since
        idle_deadline = None if timeout is None else time.monotonic() + timeout
        data_version = -1
        notifier = self._notifier
        interval = (
            self._poll_interval
            if bell is not None
            else min(self._poll_interval, PUSHLESS_POLL_INTERVAL)
        )
        while not self._closed:
            if bell is not None:
                bell.drain()  # rings so far are answered by the read below
            with notifier.cond:
                seen_commits = notifier.commits
            dv = int(conn.execute("PRAGMA data_version").fetchone()[0])
            if dv != data_version:
                data_version = dv
                batch = self._read_events(conn, last)
                if batch:
                    for ev in batch:
                        last = ev.resource_version
                        yield ev
                    if timeout is not None:
                        idle_deadline = time.monotonic() + timeout
                    data_version = -1  # there may be more than one page: read again
                    continue
            wait = interval
            if idle_deadline is not None:
                left = idle_deadline - time.monotonic()
                if left <= 0:
                    return
                wait = min(wait, left)
            if bell is not None:
                bell.wait(wait)
                continue
            with notifier.cond:
                if notifier.commits == seen_commits:
                    notifier.cond.wait(wait)

    def _read_events(self, conn: sqlite3.Connection, after: int) -> builtins.list[WatchEvent]:
        conn.execute("BEGIN")
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'compacted'").fetchone()
            compacted = int(row[0]) if row else 0
            if after < compacted:
                raise ResourceVersionTooOldError(after, compacted)
            rows = conn.execute(
                "SELECT rv, type, kind, namespace, name, doc FROM events"
                " WHERE rv > ? ORDER BY rv LIMIT 1000",
                (after,),
            ).fetchall()
        finally:
            conn.execute("COMMIT")
        return [
            WatchEvent(EventType(t), int(rv), ObjectKey(k, ns, n), load(doc))
            for rv, t, k, ns, n, doc in rows
        ]

    # --- lifecycle ------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._conn.close()
            bells = list(self._bells)
        self._notifier.notify()  # let this process's watchers see the close
        for bell in bells:
            bell.ring()
        self._ringer.close()

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
