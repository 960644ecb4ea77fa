"""Store benchmark: the SQLite backend against the in-memory backend (same semantics, no
persistence: the cost floor of ``store.objects``) and a bare sqlite3 upsert loop (the
cost floor of the file), on the same documents in the same run.

Rows:

- ``apply_1``: one-object batches, as ``ciliate apply`` of one manifest does (p50/p99 ms).
- ``apply_batch``: one batch of N objects (a Deployment's pods, a big manifest) (s).
- ``list``: list N objects (ms).
- ``watch_inproc`` / ``watch_xproc``: apply → a watcher in this / another process
  receives the event (p50/p99 ms). Cross-process twice: pushed (the writer rings the
  watcher's socket after its commit; polling every 1 s only as the fallback) and
  polling alone every 25 ms (how every watch worked before the push).
- ``ring``: what a commit pays to wake 1 and 10 registered watchers (µs).

Nothing here asserts a time; ``run`` prints a table and returns a JSON-able dict.
"""

from __future__ import annotations

import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

from ciliate.store.api import Change, ObjectKey
from ciliate.store.memory import MemoryStore
from ciliate.store.sqlite import SQLiteStore
from ciliate.store.wakeup import Bell, Ringer


def _doc(i: int, gen: int = 0) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"pod-{i}", "namespace": "bench", "labels": {"app": f"a{i % 50}"}},
        "spec": {
            "nodeName": f"node-{i % 10}",
            "containers": [{"name": "c", "image": "nginx", "ports": [{"containerPort": 80}]}],
            "gen": gen,
        },
        "status": {"podIP": f"10.{i // 65536}.{(i // 256) % 256}.{i % 256}"},
    }


def _key(i: int) -> ObjectKey:
    return ObjectKey("Pod", "bench", f"pod-{i}")


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def _bare_sqlite(path: Path, n: int) -> list[float]:
    import json

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("CREATE TABLE o (k TEXT PRIMARY KEY, doc TEXT)")
    out = []
    for i in range(n):
        t = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT OR REPLACE INTO o VALUES (?, ?)", (f"pod-{i}", json.dumps(_doc(i))))
        conn.execute("COMMIT")
        out.append((time.perf_counter() - t) * 1e3)
    conn.close()
    return out


def _apply_1(store: Any, n: int) -> list[float]:
    out = []
    for i in range(n):
        t = time.perf_counter()
        store.apply([Change(_key(i), _doc(i))])
        out.append((time.perf_counter() - t) * 1e3)
    return out


def _watch_inproc(store: Any, n: int) -> list[float]:
    lat: list[float] = []
    sent: dict[int, float] = {}
    done = threading.Event()
    start = store.resource_version()

    def consume() -> None:
        for ev in store.watch(start, timeout=10):
            lat.append((time.perf_counter() - sent[ev.resource_version]) * 1e3)
            if len(lat) == n:
                break
        done.set()

    t = threading.Thread(target=consume)
    t.start()
    time.sleep(0.05)
    for i in range(n):
        rv = store.resource_version() + 1
        sent[rv] = time.perf_counter()
        store.apply([Change(_key(i), _doc(i, gen=1000 + i))])
        time.sleep(0.005)
    done.wait(30)
    t.join(5)
    return lat


_WATCHER = textwrap.dedent(
    """
    import sys, time
    from ciliate.store.sqlite import SQLiteStore
    s = SQLiteStore(sys.argv[1], poll_interval=float(sys.argv[3]), push=sys.argv[4] == "push")
    since = s.resource_version()
    print(since, flush=True)
    n = 0
    for ev in s.watch(since, timeout=20):
        print(ev.resource_version, time.time(), flush=True)
        n += 1
        if n == int(sys.argv[2]):
            break
    """
)


def _watch_xproc(path: Path, n: int, poll: float, push: bool) -> list[float]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1] / "src")
    p = subprocess.Popen(
        [sys.executable, "-c", _WATCHER, str(path), str(n), str(poll), "push" if push else "poll"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert p.stdout is not None
    int(p.stdout.readline())
    sent: dict[int, float] = {}
    with SQLiteStore(path) as s:
        for i in range(n):
            sent[s.resource_version() + 1] = time.time()
            # a generation of its own per run: identical documents would be no-ops
            s.apply([Change(_key(i), _doc(i, gen=(5000 if push else 9000) + i))])
            time.sleep(0.01)
    out, _ = p.communicate(timeout=60)
    lat = []
    for line in out.splitlines():
        rv, t = line.split()
        lat.append((float(t) - sent[int(rv)]) * 1e3)
    return lat


def _ring_us(base: Path, watchers: int, n: int = 2000) -> float:
    """Median cost of one ring with ``watchers`` registered bells (µs)."""
    d = base / f"ring{watchers}"
    bells = [Bell(d) for _ in range(watchers)]
    ringer = Ringer(d)
    try:
        out = []
        for i in range(n):
            t = time.perf_counter()
            ringer.ring()
            out.append((time.perf_counter() - t) * 1e6)
            if i % 100 == 0:
                for b in bells:
                    b.drain()
        return statistics.median(out)
    finally:
        ringer.close()
        for b in bells:
            b.close()


def run(reps: int, quick: bool) -> dict[str, Any]:
    n1 = 200 if quick else 1000
    nb = 1000 if quick else 10_000
    nw = 50 if quick else 200
    result: dict[str, Any] = {"suite": "store", "n_apply_1": n1, "n_batch": nb}
    with tempfile.TemporaryDirectory() as d:
        base = Path(d)
        sq = SQLiteStore(base / "a.db")
        mem = MemoryStore()
        bare = _bare_sqlite(base / "bare.db", n1)
        a_sq, a_mem = _apply_1(sq, n1), _apply_1(mem, n1)
        result["apply_1_ms"] = {
            name: {"p50": _pct(xs, 0.5), "p99": _pct(xs, 0.99)}
            for name, xs in (("sqlite", a_sq), ("memory", a_mem), ("bare_sqlite", bare))
        }
        batch: dict[str, list[float]] = {"sqlite": [], "memory": []}
        for r in range(max(1, reps)):
            for name, store in (
                ("sqlite", SQLiteStore(base / f"b{r}.db")),
                ("memory", MemoryStore()),
            ):
                t = time.perf_counter()
                store.apply([Change(_key(i), _doc(i)) for i in range(nb)])
                batch[name].append(time.perf_counter() - t)
                lt = time.perf_counter()
                store.list("Pod")
                batch.setdefault(f"list_{name}", []).append((time.perf_counter() - lt) * 1e3)
                store.close()
        result["apply_batch_s"] = {
            k: statistics.median(v) for k, v in batch.items() if "list" not in k
        }
        result["list_ms"] = {k[5:]: statistics.median(v) for k, v in batch.items() if "list" in k}
        w_in = _watch_inproc(sq, nw)
        w_x = _watch_xproc(base / "a.db", nw, 1.0, push=True)
        w_p = _watch_xproc(base / "a.db", nw, 0.025, push=False)
        result["watch_inproc_ms"] = {"p50": _pct(w_in, 0.5), "p99": _pct(w_in, 0.99)}
        result["watch_xproc_ms"] = {"p50": _pct(w_x, 0.5), "p99": _pct(w_x, 0.99), "poll_s": 1.0}
        result["watch_xproc_poll_only_ms"] = {
            "p50": _pct(w_p, 0.5),
            "p99": _pct(w_p, 0.99),
            "poll_s": 0.025,
        }
        result["ring_us"] = {str(k): _ring_us(base, k) for k in (1, 10)}
        sq.close()
    a = result["apply_1_ms"]
    result["ratios"] = {
        "apply_1_sqlite_over_memory": a["sqlite"]["p50"] / max(a["memory"]["p50"], 1e-9),
        "apply_1_sqlite_over_bare": a["sqlite"]["p50"] / max(a["bare_sqlite"]["p50"], 1e-9),
        "batch_sqlite_over_memory": result["apply_batch_s"]["sqlite"]
        / max(result["apply_batch_s"]["memory"], 1e-9),
    }
    print(f"{'row':<22} {'sqlite':>10} {'memory':>10} {'bare':>10} {'ratio':>8}")
    print(
        f"{'apply_1 p50 ms':<22} {a['sqlite']['p50']:>10.3f} {a['memory']['p50']:>10.3f}"
        f" {a['bare_sqlite']['p50']:>10.3f} {result['ratios']['apply_1_sqlite_over_memory']:>8.1f}"
    )
    print(
        f"{'apply_1 p99 ms':<22} {a['sqlite']['p99']:>10.3f} {a['memory']['p99']:>10.3f}"
        f" {a['bare_sqlite']['p99']:>10.3f}"
    )
    bs = result["apply_batch_s"]
    print(
        f"{f'apply {nb} s':<22} {bs['sqlite']:>10.3f} {bs['memory']:>10.3f} {'':>10}"
        f" {result['ratios']['batch_sqlite_over_memory']:>8.1f}"
    )
    ls = result["list_ms"]
    print(f"{f'list {nb} ms':<22} {ls['sqlite']:>10.1f} {ls['memory']:>10.1f}")
    wi, wx = result["watch_inproc_ms"], result["watch_xproc_ms"]
    print(f"{'watch in-proc ms':<22} p50 {wi['p50']:.2f}  p99 {wi['p99']:.2f}")
    wp = result["watch_xproc_poll_only_ms"]
    print(f"{'watch cross-proc ms':<22} p50 {wx['p50']:.2f}  p99 {wx['p99']:.2f} (pushed)")
    print(f"{'watch cross-proc ms':<22} p50 {wp['p50']:.2f}  p99 {wp['p99']:.2f} (poll 25 ms only)")
    ring = result["ring_us"]
    print(f"{'ring per commit us':<22} 1 watcher {ring['1']:.1f}  10 watchers {ring['10']:.1f}")
    return result


if __name__ == "__main__":
    run(int(sys.argv[1]) if len(sys.argv) > 1 else 3, "--quick" in sys.argv)
