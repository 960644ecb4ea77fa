"""Property: the store behaves like a dict plus an event log, for any sequence of batches.

Replaying the watch stream from 0 rebuilds exactly the listed state; rvs strictly
increase; generation moves only with spec changes; no-op puts leave no event.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ciliate.store.api import Change, EventType, ObjectKey
from ciliate.store.memory import MemoryStore
from ciliate.store.sqlite import SQLiteStore

names = st.sampled_from(["a", "b", "c", "d"])
namespaces = st.sampled_from(["default", "kube-system"])
specs = st.sampled_from([{"replicas": 1}, {"replicas": 2}, {"replicas": 2, "x": "y"}])
labels = st.sampled_from([{}, {"app": "web"}])
op = st.tuples(st.booleans(), names, namespaces, specs, labels)
batches = st.lists(st.lists(op, min_size=1, max_size=4), min_size=1, max_size=8)


def _doc(name: str, ns: str, spec: dict[str, Any], lab: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": lab},
        "spec": spec,
    }


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
@settings(max_examples=40, deadline=None)
@given(batch_list=batches)
def test_watch_replay_equals_state_and_generation_follows_spec(kind: str, batch_list: Any) -> None:
    with tempfile.TemporaryDirectory() as d:
        s = SQLiteStore(Path(d) / "s.db") if kind == "sqlite" else MemoryStore()
        try:
            _check(s, batch_list)
        finally:
            s.close()


def _check(s: SQLiteStore | MemoryStore, batch_list: Any) -> None:
    model: dict[ObjectKey, dict[str, Any]] = {}
    generations: dict[ObjectKey, int] = {}
    last_rv = 0
    for batch in batch_list:
        changes = []
        for is_delete, name, ns, spec, lab in batch:
            k = ObjectKey("Deployment", ns, name)
            if is_delete:
                changes.append(Change(k, None))
            else:
                changes.append(Change(k, _doc(name, ns, spec, lab)))
        rv = s.apply(changes)
        assert rv >= last_rv
        # The model: sequential application within the batch.
        for c in changes:
            if c.object is None:
                model.pop(c.key, None)
                generations.pop(c.key, None)
            else:
                old = model.get(c.key)
                if old is None:
                    generations[c.key] = 1
                elif old["spec"] != c.object["spec"]:
                    generations[c.key] += 1
                model[c.key] = c.object
        last_rv = rv

    listed = {
        ObjectKey("Deployment", x["metadata"]["namespace"], x["metadata"]["name"]): x
        for x in s.list()
    }
    assert set(listed) == set(model)
    for k, doc in listed.items():
        assert doc["spec"] == model[k]["spec"]
        assert doc["metadata"]["labels"] == model[k]["metadata"]["labels"]
        assert doc["metadata"]["generation"] == generations[k]

    replay: dict[ObjectKey, dict[str, Any]] = {}
    prev = 0
    for ev in s.watch(0, timeout=0):
        assert ev.resource_version == prev + 1
        prev = ev.resource_version
        if ev.type is EventType.DELETED:
            assert ev.key in replay
            del replay[ev.key]
        else:
            assert (ev.type is EventType.ADDED) == (ev.key not in replay)
            if ev.type is EventType.MODIFIED:
                assert ev.object != replay[ev.key]  # no-op puts leave no event
            replay[ev.key] = ev.object
    assert prev == s.resource_version()
    assert replay == listed


@settings(max_examples=30, deadline=None)
@given(batch_list=batches)
def test_sqlite_and_memory_backends_agree_exactly(batch_list: Any) -> None:
    """Differential: with the same clock and uids, both backends return the same rvs,
    the same documents and the same event stream for any sequence of batches."""

    def fixed() -> dict[str, Any]:
        clock = iter(range(1_700_000_000, 1_800_000_000))
        uids = iter(f"uid-{i}" for i in range(10_000))
        return {"now": lambda: float(next(clock)), "new_uid": lambda: next(uids)}

    with tempfile.TemporaryDirectory() as d:
        a = SQLiteStore(Path(d) / "s.db", **fixed())
        b = MemoryStore(**fixed())
        try:
            for batch in batch_list:
                changes = [
                    Change(
                        ObjectKey("Deployment", ns, name),
                        None if is_delete else _doc(name, ns, spec, lab),
                    )
                    for is_delete, name, ns, spec, lab in batch
                ]
                assert a.apply(changes) == b.apply(changes)
            assert a.list() == b.list()
            assert list(a.watch(0, timeout=0)) == list(b.watch(0, timeout=0))
        finally:
            a.close()
            b.close()
