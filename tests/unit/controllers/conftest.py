"""Fixtures for the controller tests: an in-memory Store and the example cluster.

``MemoryStore`` implements ``ciliate.store.api.Store`` with the SQLite backend's
server-side rules (uid, creationTimestamp, resourceVersion, generation; a put without
``status`` keeps the stored status), so controller tests run without a database.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from _paths import example_file
from ciliate.controllers.clusterconfig import cluster_doc, load_cluster_file
from ciliate.model.cluster import ClusterConfig
from ciliate.model.meta import Doc, doc_key
from ciliate.store.api import Change, EventType, ObjectKey, VersionConflictError, WatchEvent


class ExampleDir:
    """``examples_dir / "ebook" / "x.yaml"``: the file (``_paths.example_file``: the shared
    examples, else the packaged copies), or a skip naming where it was looked for."""

    def __init__(self, rel: str = "") -> None:
        self.rel = rel

    def __truediv__(self, part: str) -> ExampleDir:
        return ExampleDir(f"{self.rel}/{part}" if self.rel else part)

    def __fspath__(self) -> str:
        return str(self.path)

    @property
    def path(self) -> Path:
        return example_file(self.rel)

    def read_text(self) -> str:
        return self.path.read_text()


EXAMPLES = ExampleDir()


class MemoryStore:
    def __init__(self) -> None:
        self.objects: dict[ObjectKey, Doc] = {}
        self.events: list[WatchEvent] = []
        self.rv = 0
        self.batches = 0
        self._uid = 0

    def get(self, key: ObjectKey) -> Doc | None:
        d = self.objects.get(key)
        return copy.deepcopy(d) if d is not None else None

    def list(self, kind: str | None = None, namespace: str | None = None) -> list[Doc]:
        out = [
            copy.deepcopy(d)
            for k, d in sorted(self.objects.items())
            if (kind is None or k.kind == kind) and (namespace is None or k.namespace == namespace)
        ]
        return out

    def apply(self, changes: Sequence[Change], *, if_version: int | None = None) -> int:
        if if_version is not None and if_version != self.rv:
            raise VersionConflictError(f"store changed since version {if_version}")
        self.batches += 1
        for ch in changes:
            old = self.objects.get(ch.key)
            if ch.object is None:
                if old is not None:
                    self.rv += 1
                    del self.objects[ch.key]
                    self.events.append(WatchEvent(EventType.DELETED, self.rv, ch.key, old))
                continue
            new = copy.deepcopy(ch.object)
            if "status" not in new and old is not None and "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            m = new.setdefault("metadata", {})
            if old is not None:
                om = old["metadata"]
                m["uid"] = om["uid"]
                m["creationTimestamp"] = om["creationTimestamp"]
                m["resourceVersion"] = om["resourceVersion"]
                spec_old = {k: v for k, v in old.items() if k not in ("metadata", "status")}
                spec_new = {k: v for k, v in new.items() if k not in ("metadata", "status")}
                m["generation"] = om["generation"] + (spec_old != spec_new)
                if json.dumps(new, sort_keys=True) == json.dumps(old, sort_keys=True):
                    continue
            else:
                self._uid += 1
                m["uid"] = f"uid-{self._uid:06d}"
                # A distinct, increasing timestamp per object keeps "newest" well defined.
                m["creationTimestamp"] = (
                    f"2026-01-01T00:{self._uid // 60:02d}:{self._uid % 60:02d}Z"
                )
                m["generation"] = 1
            self.rv += 1
            m["resourceVersion"] = str(self.rv)
            self.objects[ch.key] = new
            et = EventType.ADDED if old is None else EventType.MODIFIED
            self.events.append(WatchEvent(et, self.rv, ch.key, new))
        return self.rv

    def resource_version(self) -> int:
        return self.rv

    def watch(self, since: int = 0, timeout: float | None = None) -> Iterator[WatchEvent]:
        return iter([e for e in self.events if e.resource_version > since])

    def close(self) -> None:
        pass

    def put_docs(self, docs: Sequence[Doc]) -> None:
        self.apply([Change(ObjectKey(*doc_key(d)), d) for d in docs])


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def example_config() -> ClusterConfig:
    return load_cluster_file((EXAMPLES / "cluster.yaml").path)


@pytest.fixture
def example_cluster(store: MemoryStore, example_config: ClusterConfig) -> MemoryStore:
    """The networking101 cluster created in the in-memory store (no workloads yet)."""
    from ciliate.controllers.cluster import cluster_objects

    store.put_docs(cluster_objects(example_config))
    assert store.get(ObjectKey("Cluster", "", "cluster")) == store.get(
        ObjectKey(*doc_key(cluster_doc(example_config)))
    )
    return store


def load_docs(path: Path | ExampleDir) -> list[Doc]:
    import yaml

    return [d for d in yaml.safe_load_all(path.read_text()) if d]


ApplyFn = Callable[[Sequence[Doc]], int]


@pytest.fixture
def apply(store: MemoryStore, example_config: ClusterConfig) -> ApplyFn:
    """What ``ciliate apply`` does with a valid batch: admit, write, reconcile.

    Returns the number of changes the reconcile wrote.
    """
    import random

    from ciliate.controllers.admission import admit
    from ciliate.controllers.reconcile import reconcile

    def run(docs: Sequence[Doc]) -> int:
        admitted = admit(docs, store, example_config)
        store.put_docs(admitted)
        return reconcile(store, example_config, random.Random(7))

    return run


@pytest.fixture
def networking101(example_cluster: MemoryStore, apply: ApplyFn) -> MemoryStore:
    apply(load_docs(EXAMPLES / "networking101" / "workloads.yaml"))
    return example_cluster


@pytest.fixture
def examples_dir() -> ExampleDir:
    return EXAMPLES


@pytest.fixture
def new_store() -> Callable[[], MemoryStore]:
    return MemoryStore


@pytest.fixture
def read_docs() -> Callable[[Path | ExampleDir], list[Doc]]:
    return load_docs
