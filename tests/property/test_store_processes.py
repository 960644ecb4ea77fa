"""The store under several processes: concurrent writers, and a writer killed with -9.

These run real processes against one SQLite file. They check the issue's promises:
every change of concurrent CLI processes lands with unique increasing resourceVersions,
and after ``kill -9`` at any moment the store holds whole batches only.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from ciliate.store.api import ObjectKey
from ciliate.store.sqlite import SQLiteStore

WRITER = textwrap.dedent(
    """
    import sys
    from ciliate.store.api import Change, ObjectKey
    from ciliate.store.sqlite import SQLiteStore

    path, mode, tag, count, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    s = SQLiteStore(path)
    def cm(name, data):
        return {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": "default", "labels": {"batch": data}},
                "data": {"batch": data, "pad": "x" * 512}}
    if mode == "singles":
        # ``count`` separate transactions of one object each, as CLI invocations do.
        for i in range(count):
            n = f"{tag}-{i}"
            s.apply([Change(ObjectKey("ConfigMap", "default", n), cm(n, tag))])
    else:
        # Batches of ``size`` objects all tagged with the batch number, plus a counter
        # object rewritten in the same batch; runs until killed. Batch b writes slot
        # b % SLOTS, overwriting batch b - SLOTS, so the store stays small however many
        # batches land, and a torn batch would leave mixed tags in its slot.
        start = int(tag)
        print("ready", flush=True)
        for b in range(start, start + count):
            slot = b % 4
            ch = [Change(ObjectKey("ConfigMap", "default", f"s{slot}-{i}"), cm(f"s{slot}-{i}", str(b)))
                  for i in range(size)]
            ch.append(Change(ObjectKey("ConfigMap", "default", "counter"), cm("counter", str(b))))
            s.apply(ch)
    s.close()
    """
)


def _run_writer(*args: str) -> subprocess.Popen[str]:
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[2] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_concurrent_processes_all_land_with_unique_increasing_rvs(tmp_path: Path) -> None:
    db = str(tmp_path / "store.db")
    writers, per = 4, 40
    procs = [_run_writer(db, "singles", f"w{w}", str(per), "1") for w in range(writers)]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    with SQLiteStore(db) as s:
        docs = s.list("ConfigMap")
        assert len(docs) == writers * per
        assert s.resource_version() == writers * per
        events = list(s.watch(0, timeout=0))
        assert [e.resource_version for e in events] == list(range(1, writers * per + 1))
        rv_of = {d["metadata"]["name"]: int(d["metadata"]["resourceVersion"]) for d in docs}
        assert {e.key.name: e.resource_version for e in events} == rv_of
        # Each writer's own changes appear in the order it made them.
        for w in range(writers):
            mine = [e.key.name for e in events if e.key.name.startswith(f"w{w}-")]
            assert mine == [f"w{w}-{i}" for i in range(per)]


SLOTS = 4


def _check_whole_batches(db: str, size: int) -> int:
    """Assert the store holds only whole batches; return how many were committed."""
    with SQLiteStore(db) as s:
        docs = s.list("ConfigMap")
        counter = s.get(ObjectKey("ConfigMap", "default", "counter"))
        if counter is None:
            assert not docs
            assert s.resource_version() == 0
            return 0
        last = int(counter["data"]["batch"])
        tags: dict[int, Counter[str]] = {}
        for d in docs:
            name = d["metadata"]["name"]
            if name != "counter":
                tags.setdefault(int(name[1 : name.index("-")]), Counter())[d["data"]["batch"]] += 1
        # Each slot holds exactly one batch, whole: the newest batch written to it.
        expected = {b % SLOTS: b for b in range(max(0, last - SLOTS + 1), last + 1)}
        assert {slot: dict(c) for slot, c in tags.items()} == {
            slot: {str(b): size} for slot, b in expected.items()
        }
        # The event log agrees: (size + 1) events per batch, nothing torn.
        assert s.resource_version() == (last + 1) * (size + 1)
        return last + 1


@pytest.mark.slow
def test_kill_9_mid_apply_leaves_whole_batches_only(tmp_path: Path) -> None:
    db = str(tmp_path / "store.db")
    size, kills = 60, 30
    rng = random.Random(20260304)
    committed = 0
    for _ in range(kills):
        p = _run_writer(db, "batches", str(committed), "100000", str(size))
        assert p.stdout is not None
        assert p.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.12))  # land anywhere inside some batch
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
        assert p.returncode == -signal.SIGKILL
        now = _check_whole_batches(db, size)
        assert now >= committed
        committed = now
    assert committed > 0


WATCHER = textwrap.dedent(
    """
    import json, sys
    from ciliate.store.sqlite import SQLiteStore

    s = SQLiteStore(sys.argv[1], poll_interval=0.01)
    print("ready", flush=True)
    n = 0
    for ev in s.watch(0, timeout=20):
        print(json.dumps([ev.type.value, ev.resource_version, ev.key.name]), flush=True)
        n += 1
        if n == int(sys.argv[2]):
            break
    s.close()
    """
)


def test_a_watcher_in_another_process_receives_events_in_order(tmp_path: Path) -> None:
    import json

    from ciliate.store.api import Change

    db = str(tmp_path / "store.db")
    SQLiteStore(db).close()  # create it before the watcher opens it
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2] / "src")
    p = subprocess.Popen(
        [sys.executable, "-c", WATCHER, db, "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert p.stdout is not None
    assert p.stdout.readline().strip() == "ready"
    k = ObjectKey("ConfigMap", "default", "x")
    doc = {"kind": "ConfigMap", "metadata": {"name": "x", "namespace": "default"}}
    with SQLiteStore(db) as s:
        s.apply([Change(k, doc)])
        s.apply([Change(k, {**doc, "data": {"a": "1"}})])
        s.apply([Change(k, None)])
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    assert [json.loads(line) for line in out.splitlines()] == [
        ["ADDED", 1, "x"],
        ["MODIFIED", 2, "x"],
        ["DELETED", 3, "x"],
    ]


ALLOCATOR = textwrap.dedent(
    """
    import sys
    from ciliate.store.api import Change, ObjectKey, VersionConflictError
    from ciliate.store.sqlite import SQLiteStore

    s = SQLiteStore(sys.argv[1])
    tag, count = sys.argv[2], int(sys.argv[3])
    retries = 0
    for i in range(count):
        while True:
            # Read-compute-write, as the controllers' IPAM does: take the lowest free
            # number, and write only if nobody wrote since the snapshot.
            docs, rv = s.list_with_version("Pod")
            used = {d["status"]["n"] for d in docs}
            n = min(set(range(len(used) + 1)) - used)
            name = f"{tag}-{i}"
            doc = {"kind": "Pod", "metadata": {"name": name, "namespace": "d"},
                   "status": {"n": n}}
            try:
                s.apply([Change(ObjectKey("Pod", "d", name), doc)], if_version=rv)
                break
            except VersionConflictError:
                retries += 1
    print(retries)
    s.close()
    """
)


def test_read_compute_write_with_if_version_never_hands_out_a_number_twice(
    tmp_path: Path,
) -> None:
    db = str(tmp_path / "store.db")
    SQLiteStore(db).close()
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2] / "src")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", ALLOCATOR, db, f"p{w}", "25"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for w in range(3)
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    with SQLiteStore(db) as s:
        numbers = [d["status"]["n"] for d in s.list("Pod")]
    assert sorted(numbers) == list(range(75))
