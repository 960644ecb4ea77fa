"""Push wake-up of watchers across processes (``store.wakeup``, ``SQLiteStore.watch``).

Every watcher here polls once an hour, so an event that arrives within the tests'
bounded waits was delivered by the push, not by the polling fallback.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from ciliate.store.api import Change, ObjectKey, WatchEvent
from ciliate.store.sqlite import WATCH_DIR_SUFFIX, SQLiteStore
from ciliate.store.wakeup import SUFFIX, Bell, Ringer

HOUR = 3600.0
BOUND = 30.0  # seconds a test waits for something that should take milliseconds

WATCHER = textwrap.dedent(
    """
    import sys
    from ciliate.store.sqlite import SQLiteStore

    s = SQLiteStore(sys.argv[1], poll_interval=3600.0)
    for ev in s.watch(0, timeout=None):
        print(ev.resource_version, ev.key.name, flush=True)
        if ev.key.name == sys.argv[2]:
            break
    s.close()
    """
)


def cm(name: str) -> tuple[ObjectKey, dict[str, Any]]:
    key = ObjectKey("ConfigMap", "default", name)
    doc = {"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name, "namespace": "default"}, "data": {"k": name}}  # fmt: skip
    return key, doc


def put(store: SQLiteStore, name: str) -> int:
    return store.apply([Change(*cm(name))])


def watcher(db: Path, last: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", WATCHER, str(db), last],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def sockets(db: Path) -> list[Path]:
    d = db.with_name(db.name + WATCH_DIR_SUFFIX)
    return sorted(d.glob(f"*{SUFFIX}")) if d.exists() else []


def first_line(p: subprocess.Popen[str]) -> str:
    """The watcher's first line, read with a bound (the process is killed after it)."""
    assert p.stdout is not None
    out: list[str] = []
    t = threading.Thread(target=lambda: out.append(p.stdout.readline()) if p.stdout else None)
    t.start()
    t.join(BOUND)
    if t.is_alive():
        p.kill()
        t.join()
    return out[0].strip() if out else ""


def test_a_commit_wakes_a_watcher_in_another_process_without_polling(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    store = SQLiteStore(db, poll_interval=HOUR)
    try:
        put(store, "first")
        p = watcher(db, "second")
        try:
            # The watcher reads "first" on its initial read, then waits for a ring.
            assert first_line(p) == "1 first"
            put(store, "second")
            out, err = p.communicate(timeout=BOUND)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        assert p.returncode == 0, err
        assert out.split("\n")[0] == "2 second"
        assert sockets(db) == []  # the watcher removed its socket on the way out
    finally:
        store.close()


def test_a_watcher_killed_with_sigkill_leaves_writers_working(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    store = SQLiteStore(db, poll_interval=HOUR)
    try:
        put(store, "first")
        p = watcher(db, "never")
        assert first_line(p) == "1 first"
        [stale] = sockets(db)
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=BOUND)
        assert stale.exists()  # kill -9: nobody removed it
        assert put(store, "second") == 2  # the ring finds nobody there...
        assert not stale.exists()  # ...and removes the dead watcher's socket
        assert put(store, "third") == 3
        assert store.get(ObjectKey("ConfigMap", "default", "third")) is not None
    finally:
        store.close()


def test_a_watcher_in_this_process_is_woken_by_another_store_object(tmp_path: Path) -> None:
    a = SQLiteStore(tmp_path / "s.db", poll_interval=HOUR)
    b = SQLiteStore(tmp_path / "s.db", poll_interval=HOUR)
    got: list[WatchEvent] = []

    def consume() -> None:
        for ev in a.watch(0, timeout=BOUND):
            got.append(ev)
            return

    try:
        t = threading.Thread(target=consume)
        t.start()
        put(b, "x")
        t.join(BOUND)
        assert not t.is_alive()
        assert [e.key.name for e in got] == ["x"]
    finally:
        a.close()
        b.close()


def test_closing_the_store_ends_its_waiting_watchers(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db", poll_interval=HOUR)
    done = threading.Event()

    def consume() -> None:
        for _ev in store.watch(0, timeout=None):
            pass
        done.set()

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    for _ in range(1000):  # the watcher registers its socket when it starts waiting
        if sockets(store.path) or done.wait(0.01):
            break
    store.close()
    assert done.wait(BOUND)
    assert sockets(store.path) == []


def test_without_a_usable_watch_directory_the_watch_falls_back_to_polling(
    tmp_path: Path,
) -> None:
    db = tmp_path / "s.db"
    db.with_name(db.name + WATCH_DIR_SUFFIX).write_text("not a directory")
    a = SQLiteStore(db)
    b = SQLiteStore(db)
    try:
        it = a.watch(0, timeout=BOUND)
        put(b, "x")  # the ring fails quietly; the writer is not affected
        ev = next(it)
        assert ev.key.name == "x"
    finally:
        a.close()
        b.close()


def test_bells_in_directories_too_long_for_a_socket_path(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    bell = Bell(deep)
    try:
        assert len(str(bell.path)) > 108
        bell.drain()
        assert Ringer(deep).ring() == 1
        assert bell.wait(BOUND)
        bell.drain()
        assert not bell.wait(0)
    finally:
        bell.close()
    assert list(deep.iterdir()) == []


def test_ringing_with_no_directory_rings_nobody(tmp_path: Path) -> None:
    assert Ringer(tmp_path / "missing").ring() == 0


def test_every_registered_watcher_is_rung(tmp_path: Path) -> None:
    bells = [Bell(tmp_path) for _ in range(3)]
    try:
        assert Ringer(tmp_path).ring() == 3
        assert all(b.wait(BOUND) for b in bells)
    finally:
        for b in bells:
            b.close()


def test_a_store_without_push_registers_no_socket_and_still_watches(tmp_path: Path) -> None:
    a = SQLiteStore(tmp_path / "s.db", push=False, poll_interval=0.01)
    b = SQLiteStore(tmp_path / "s.db")
    try:
        it = a.watch(0, timeout=BOUND)
        put(b, "x")
        assert next(it).key.name == "x"
        assert sockets(a.path) == []
    finally:
        a.close()
        b.close()


def test_a_bell_numbered_above_fd_setsize_still_wakes(tmp_path: Path) -> None:
    """An agent with many pods holds more than 1024 descriptors (select's limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < 1200")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    fds = [
        os.open(os.devnull, os.O_RDONLY)
        for _ in range(max(0, 1100 - len(os.listdir("/proc/self/fd"))))
    ]
    try:
        bell = Bell(tmp_path)
        try:
            assert bell.fileno() > 1024
            assert Ringer(tmp_path).ring() == 1
            assert bell.wait(BOUND)
        finally:
            bell.close()
    finally:
        for fd in fds:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
