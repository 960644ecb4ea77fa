"""Informer: list-then-watch keeps a cache; a lost watch window becomes a relist diff."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ciliate.store.api import Change, EventType, ObjectKey
from ciliate.store.informer import Informer
from ciliate.store.memory import MemoryStore
from ciliate.store.sqlite import SQLiteStore


def cm(name: str, v: str = "1", kind: str = "ConfigMap") -> dict[str, Any]:
    return {"kind": kind, "metadata": {"name": name, "namespace": "default"}, "data": {"v": v}}


def key(name: str, kind: str = "ConfigMap") -> ObjectKey:
    return ObjectKey(kind, "default", name)


@pytest.fixture(params=["sqlite", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    s = (
        SQLiteStore(tmp_path / "s.db", history=3, poll_interval=0.01)
        if request.param == "sqlite"
        else MemoryStore(history=3)
    )
    yield s
    s.close()


def test_sync_then_events_keep_the_cache(store: Any) -> None:
    store.apply([Change(key("a"), cm("a")), Change(key("s", "Secret"), cm("s", kind="Secret"))])
    inf = Informer(store, frozenset({"ConfigMap"}))
    assert inf.sync() == 2
    assert set(inf.cache) == {key("a")}
    store.apply([Change(key("b"), cm("b")), Change(key("a"), None)])
    store.apply([Change(key("t", "Secret"), cm("t", kind="Secret"))])
    evs = list(inf.events(timeout=0))
    assert [(e.type, e.key.name) for e in evs] == [
        (EventType.ADDED, "b"),
        (EventType.DELETED, "a"),
    ]
    assert set(inf.cache) == {key("b")}
    assert inf.resource_version == 5


def test_compacted_window_is_recovered_by_a_relist_diff(store: Any) -> None:
    store.apply([Change(key("a"), cm("a")), Change(key("b"), cm("b"))])
    inf = Informer(store)
    inf.sync()
    # Many changes while the informer is not watching: its window (history=3) is lost.
    store.apply([Change(key("a"), cm("a", "2"))])
    store.apply([Change(key("b"), None)])
    for i in range(5):
        store.apply([Change(key(f"n{i}"), cm(f"n{i}"))])
    evs = list(inf.events(timeout=0))
    assert inf.relists == 1
    got = {(e.type, e.key.name) for e in evs}
    assert (EventType.MODIFIED, "a") in got and (EventType.DELETED, "b") in got
    assert {(EventType.ADDED, f"n{i}") for i in range(5)} <= got
    listed, _ = store.list_with_version()
    assert inf.cache == {
        ObjectKey("ConfigMap", "default", d["metadata"]["name"]): d for d in listed
    }
