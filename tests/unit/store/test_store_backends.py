"""The store contract, run against every backend (SQLite, memory): server-set metadata,
atomic batches, watch in order, compaction. SQLite-only behaviour is marked so."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from ciliate.errors import ConflictError
from ciliate.store.api import (
    Change,
    EventType,
    ObjectKey,
    ResourceVersionTooOldError,
    Store,
    WatchEvent,
    update_status,
)
from ciliate.store.memory import MemoryStore
from ciliate.store.sqlite import SQLiteStore


def pod(name: str, ns: str = "default", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
        "spec": spec or {"containers": [{"name": "c", "image": "busybox"}]},
    }


def key(name: str, ns: str = "default", kind: str = "Pod") -> ObjectKey:
    return ObjectKey(kind, ns, name)


@pytest.fixture(params=["sqlite", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """Every backend must pass the same contract tests."""
    clock = iter(range(1_700_000_000, 1_800_000_000))
    uids = iter(f"uid-{i}" for i in range(1_000_000))
    s: SQLiteStore | MemoryStore
    if request.param == "sqlite":
        s = SQLiteStore(
            tmp_path / "store.db",
            now=lambda: float(next(clock)),
            new_uid=lambda: next(uids),
            poll_interval=0.01,
        )
    else:
        s = MemoryStore(now=lambda: float(next(clock)), new_uid=lambda: next(uids))
    yield s
    s.close()


def backend(kind: str, tmp_path: Path, **kw: Any) -> SQLiteStore | MemoryStore:
    if kind == "sqlite":
        return SQLiteStore(tmp_path / "s.db", **kw)
    return MemoryStore(**kw)


def test_satisfies_the_store_protocol(store: SQLiteStore) -> None:
    s: Store = store
    assert s.resource_version() == 0


def test_create_sets_uid_rv_generation_and_timestamp(store: SQLiteStore) -> None:
    rv = store.apply([Change(key("a"), pod("a"))])
    assert rv == 1
    doc = store.get(key("a"))
    assert doc is not None
    m = doc["metadata"]
    assert m["uid"] == "uid-0"
    assert m["resourceVersion"] == "1"
    assert m["generation"] == 1
    assert m["creationTimestamp"] == "2023-11-14T22:13:20Z"
    assert m["labels"] == {"app": "a"}


def test_input_document_is_not_mutated(store: SQLiteStore) -> None:
    d = pod("a")
    store.apply([Change(key("a"), d)])
    assert "uid" not in d["metadata"]


def test_update_keeps_uid_and_creation_bumps_generation_on_spec_change(
    store: SQLiteStore,
) -> None:
    store.apply([Change(key("a"), pod("a"))])
    first = store.get(key("a"))
    store.apply([Change(key("a"), pod("a", image="nginx"))])
    second = store.get(key("a"))
    assert first is not None and second is not None
    assert second["metadata"]["uid"] == first["metadata"]["uid"]
    assert second["metadata"]["creationTimestamp"] == first["metadata"]["creationTimestamp"]
    assert second["metadata"]["generation"] == 2
    assert second["metadata"]["resourceVersion"] == "2"


def test_label_change_is_modified_but_keeps_generation(store: SQLiteStore) -> None:
    store.apply([Change(key("a"), pod("a"))])
    d = pod("a")
    d["metadata"]["labels"] = {"app": "b"}
    rv = store.apply([Change(key("a"), d)])
    doc = store.get(key("a"))
    assert doc is not None
    assert rv == 2 and doc["metadata"]["generation"] == 1
    assert doc["metadata"]["labels"] == {"app": "b"}


def test_identical_reapply_is_unchanged_no_event_no_rv(store: SQLiteStore) -> None:
    store.apply([Change(key("a"), pod("a"))])
    # Same document, keys in another order and server fields from the client ignored.
    d = pod("a")
    d = {"spec": d["spec"], "metadata": dict(d["metadata"], resourceVersion="77"), **d}
    assert store.apply([Change(key("a"), d)]) == 1
    assert store.resource_version() == 1
    assert [e.resource_version for e in store.watch(0, timeout=0)] == [1]


def test_each_change_of_a_batch_gets_its_own_increasing_rv(store: SQLiteStore) -> None:
    rv = store.apply([Change(key(n), pod(n)) for n in ("a", "b", "c")])
    assert rv == 3
    rvs = [int(d["metadata"]["resourceVersion"]) for d in store.list("Pod")]
    assert rvs == [1, 2, 3]


def test_batch_is_atomic_on_error(store: SQLiteStore) -> None:
    store.apply([Change(key("a"), pod("a"))])
    bad: dict[str, Any] = pod("b")
    bad["spec"] = {"x": object()}  # not JSON-serializable: fails mid-batch
    with pytest.raises(TypeError):
        store.apply([Change(key("c"), pod("c")), Change(key("b"), bad)])
    assert [d["metadata"]["name"] for d in store.list()] == ["a"]
    assert store.resource_version() == 1


def test_delete_writes_deleted_with_last_doc_and_missing_delete_is_ignored(
    store: SQLiteStore,
) -> None:
    store.apply([Change(key("a"), pod("a"))])
    assert store.apply([Change(key("a"), None)]) == 2
    assert store.get(key("a")) is None
    assert store.apply([Change(key("zzz"), None)]) == 2
    events = list(store.watch(0, timeout=0))
    assert [(e.type, e.resource_version) for e in events] == [
        (EventType.ADDED, 1),
        (EventType.DELETED, 2),
    ]
    assert events[1].object["metadata"]["name"] == "a"
    assert events[1].object["spec"] == pod("a")["spec"]


def test_recreate_after_delete_gets_new_uid_and_generation_1(store: SQLiteStore) -> None:
    store.apply([Change(key("a"), pod("a", image="x"))])
    store.apply([Change(key("a"), pod("a", image="y"))])
    store.apply([Change(key("a"), None)])
    store.apply([Change(key("a"), pod("a"))])
    doc = store.get(key("a"))
    assert doc is not None
    assert doc["metadata"]["uid"] == "uid-1"
    assert doc["metadata"]["generation"] == 1


def test_list_sorted_and_filtered(store: SQLiteStore) -> None:
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "b"}}
    store.apply(
        [
            Change(key("z", "a"), pod("z", "a")),
            Change(key("y", "b"), pod("y", "b")),
            Change(key("x", "a"), pod("x", "a")),
            Change(ObjectKey("Namespace", "", "b"), ns),
        ]
    )
    names = [
        (d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]) for d in store.list()
    ]
    assert names == [
        ("Namespace", "", "b"),
        ("Pod", "a", "x"),
        ("Pod", "a", "z"),
        ("Pod", "b", "y"),
    ]
    assert [d["metadata"]["name"] for d in store.list("Pod", "a")] == ["x", "z"]
    assert [d["metadata"]["name"] for d in store.list("Namespace")] == ["b"]
    assert store.list("Service") == []
    docs, rv = store.list_with_version("Pod")
    assert len(docs) == 3 and rv == 4


def test_status_update_keeps_generation_and_reapply_keeps_status(store: SQLiteStore) -> None:
    store.apply([Change(key("a"), pod("a"))])
    rv = update_status(store, key("a"), {"podIP": "10.0.0.5"})
    assert rv == 2
    doc = store.get(key("a"))
    assert doc is not None
    assert doc["status"] == {"podIP": "10.0.0.5"} and doc["metadata"]["generation"] == 1
    # ``apply -f`` of the manifest (no status key) keeps the status written by controllers.
    assert store.apply([Change(key("a"), pod("a"))]) == 2
    # A put with a status replaces it (manifests that carry status.podIP).
    d = pod("a")
    d["status"] = {"podIP": "10.0.0.9"}
    store.apply([Change(key("a"), d)])
    doc = store.get(key("a"))
    assert doc is not None and doc["status"] == {"podIP": "10.0.0.9"}
    ev = list(store.watch(1, timeout=0))
    assert [e.type for e in ev] == [EventType.MODIFIED, EventType.MODIFIED]


def test_update_status_of_missing_object_raises(store: SQLiteStore) -> None:
    with pytest.raises(KeyError):
        store.update_status(key("nope"), {})


def test_state_persists_across_reopen(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "s.db") as s:
        s.apply([Change(key("a"), pod("a"))])
    with SQLiteStore(tmp_path / "s.db") as s:
        assert s.resource_version() == 1
        assert s.get(key("a")) is not None


def test_watch_from_rv_yields_later_events_in_order(store: SQLiteStore) -> None:
    for n in "abcde":
        store.apply([Change(key(n), pod(n))])
    got = [(e.resource_version, e.key.name) for e in store.watch(2, timeout=0)]
    assert got == [(3, "c"), (4, "d"), (5, "e")]


def test_watch_in_process_receives_new_events(store: SQLiteStore) -> None:
    received: list[WatchEvent] = []
    ready = threading.Event()

    def consume() -> None:
        ready.set()
        for ev in store.watch(0, timeout=2.0):
            received.append(ev)
            if len(received) == 3:
                return

    t = threading.Thread(target=consume)
    t.start()
    ready.wait()
    store.apply([Change(key("a"), pod("a"))])
    store.apply([Change(key("a"), pod("a", image="z"))])
    store.apply([Change(key("a"), None)])
    t.join(timeout=10)
    assert not t.is_alive()
    assert [e.type for e in received] == [EventType.ADDED, EventType.MODIFIED, EventType.DELETED]


def test_watch_sees_writes_from_another_store_object(tmp_path: Path) -> None:
    a = SQLiteStore(tmp_path / "s.db", poll_interval=0.01)
    b = SQLiteStore(tmp_path / "s.db", poll_interval=0.01)
    try:
        it = a.watch(0, timeout=2.0)
        b.apply([Change(key("x"), pod("x"))])
        ev = next(it)
        assert (ev.type, ev.key.name) == (EventType.ADDED, "x")
    finally:
        a.close()
        b.close()


def test_watch_pages_through_more_events_than_one_read(store: SQLiteStore) -> None:
    store.apply([Change(key(f"p{i:04}"), pod(f"p{i:04}")) for i in range(2500)])
    rvs = [e.resource_version for e in store.watch(0, timeout=0)]
    assert rvs == list(range(1, 2501))


def test_watch_timeout_ends_an_idle_watch(store: SQLiteStore) -> None:
    assert list(store.watch(0, timeout=0.05)) == []


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
def test_compaction_keeps_last_n_and_old_watch_is_gone(kind: str, tmp_path: Path) -> None:
    s = backend(kind, tmp_path, history=5)
    try:
        for i in range(12):
            s.apply([Change(key(f"p{i}"), pod(f"p{i}"))])
        assert s.compacted_version() == 7
        assert [e.resource_version for e in s.watch(7, timeout=0)] == [8, 9, 10, 11, 12]
        with pytest.raises(ResourceVersionTooOldError) as exc:
            list(s.watch(3, timeout=0))
        assert isinstance(exc.value, ConflictError)
        assert "resourceVersion too old" in str(exc.value)
        # list-then-watch recovers.
        docs, rv = s.list_with_version()
        assert len(docs) == 12 and list(s.watch(rv, timeout=0)) == []
    finally:
        s.close()


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
def test_history_must_keep_an_event(kind: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        backend(kind, tmp_path, history=0)


def test_wal_mode_is_on(tmp_path: Path) -> None:
    import sqlite3

    SQLiteStore(tmp_path / "s.db").close()
    conn = sqlite3.connect(tmp_path / "s.db")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_a_file_that_is_not_a_store_is_refused_clearly(tmp_path: Path) -> None:
    from ciliate.store.api import StoreError

    bad = tmp_path / "store.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError) as exc:
        SQLiteStore(bad)
    assert str(bad) in str(exc.value)


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    import sqlite3

    from ciliate.store.api import StoreError

    SQLiteStore(tmp_path / "s.db").close()
    conn = sqlite3.connect(tmp_path / "s.db")
    conn.execute("UPDATE meta SET value = 99 WHERE key = 'schema'")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="newer ciliate"):
        SQLiteStore(tmp_path / "s.db")


def test_missing_parent_directories_are_created(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "a" / "b" / "store.db") as s:
        assert s.resource_version() == 0


def test_if_version_applies_only_on_an_unchanged_store(store: SQLiteStore) -> None:
    from ciliate.store.api import VersionConflictError

    rv = store.apply([Change(key("a"), pod("a"))])
    assert store.apply([Change(key("b"), pod("b"))], if_version=rv) == rv + 1
    with pytest.raises(VersionConflictError) as exc:
        store.apply([Change(key("c"), pod("c"))], if_version=rv)
    assert (exc.value.expected, exc.value.actual) == (rv, rv + 1)
    assert isinstance(exc.value, ConflictError)
    assert store.get(key("c")) is None and store.resource_version() == rv + 1


def test_snapshot_helper_on_any_store(store: SQLiteStore) -> None:
    from ciliate.store.api import snapshot

    store.apply([Change(key("a"), pod("a")), Change(key("b"), pod("b"))])
    docs, rv = snapshot(store, "Pod")
    assert [d["metadata"]["name"] for d in docs] == ["a", "b"] and rv == 2

    class Minimal:  # a backend without list_with_version
        def __init__(self, inner: SQLiteStore) -> None:
            self.inner = inner

        def list(self, kind: str | None = None, namespace: str | None = None) -> list[Any]:
            return self.inner.list(kind, namespace)

        def resource_version(self) -> int:
            return self.inner.resource_version()

    docs, rv = snapshot(Minimal(store), "Pod")  # type: ignore[arg-type]
    assert len(docs) == 2 and rv == 2


def test_watch_from_a_version_the_store_never_reached_says_it_was_recreated(
    store: SQLiteStore,
) -> None:
    from ciliate.store.api import ResourceVersionAheadError

    store.apply([Change(key("a"), pod("a"))])
    with pytest.raises(ResourceVersionAheadError) as exc:
        list(store.watch(5, timeout=0))
    assert isinstance(exc.value, ResourceVersionTooOldError)  # same remedy: relist
    assert "recreated" in str(exc.value)
    assert [e.resource_version for e in store.watch(1, timeout=0)] == []


def test_apply_unless_changed_recomputes_after_a_concurrent_write(store: SQLiteStore) -> None:
    from ciliate.store.api import apply_unless_changed

    store.apply([Change(key("a"), pod("a"))])
    readings: list[int] = []

    def compute() -> tuple[list[Change], str]:
        # Counts the pods it saw; the first time, another writer slips in after the read.
        seen = len(store.list("Pod"))
        readings.append(seen)
        if len(readings) == 1:
            store.apply([Change(key("intruder"), pod("intruder"))])
        return [Change(key(f"made-after-{seen}"), pod(f"made-after-{seen}"))], f"saw {seen}"

    assert apply_unless_changed(store, compute, attempts=3, gave_up="no") == "saw 2"
    assert readings == [1, 2]
    names = {d["metadata"]["name"] for d in store.list("Pod")}
    assert names == {"a", "intruder", "made-after-2"}  # the stale reading wrote nothing

    def nothing() -> tuple[list[Change], int]:
        return [], 7

    rv = store.resource_version()
    assert apply_unless_changed(store, nothing, attempts=1, gave_up="no") == 7
    assert store.resource_version() == rv

    def always_raced() -> tuple[list[Change], None]:
        store.apply([Change(key("a"), pod("a", containers=[{"name": "c", "image": "x"}]))])
        store.apply([Change(key("a"), pod("a"))])
        return [Change(key("late"), pod("late"))], None

    with pytest.raises(ConflictError, match="kept changing"):
        apply_unless_changed(store, always_raced, attempts=2, gave_up="kept changing")
    assert store.get(key("late")) is None
