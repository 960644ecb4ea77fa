"""Control-plane state benchmark: the full DesiredState for growing clusters, and the
incremental engine against a naive full recompute on the same input.

Grid (``quick`` runs the first row only): nodes x pods x services, 10 backends each.
Per row:

- ``full``: ``compute_desired`` over generated documents (no store).
- ``pod_add`` / ``pod_del`` / ``backend_change``: ``Engine.update`` with one document,
  the number of map entries it changed, and the same change by a naive full recompute
  (``compute_desired`` again with the previous state) for the ratio.

Goals (issue 3): 100k pods / 10k services in <= 10 s; one pod add <= 5 ms.
Nothing here asserts a time; ``run`` prints a table and returns a JSON-able dict.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

from ciliate.control.engine import Engine, compute_desired
from ciliate.model.cluster import ClusterConfig
from ciliate.model.meta import Doc

GRID = [(3, 100, 100), (100, 10_000, 1_000), (1_000, 100_000, 10_000)]
QUICK_GRID = [(3, 100, 100), (20, 1_000, 200)]
BACKENDS = 10
APPS = 500
GOAL_FULL_S = 10.0
GOAL_POD_ADD_MS = 5.0


def _node_name(i: int) -> str:
    return f"node-{i:04d}"


def _pod_ip(node: int, j: int) -> str:
    return f"10.{node // 256}.{node % 256}.{j + 2}"


def generate(n_nodes: int, n_pods: int, n_svcs: int) -> tuple[ClusterConfig, list[Doc]]:
    nodes_cfg = []
    for i in range(n_nodes):
        nodes_cfg.append({
            "name": _node_name(i), "internalIP": f"172.16.{i // 250}.{i % 250 + 1}",
            "podCIDR": f"10.{i // 256}.{i % 256}.0/24",
            "ciliumInternalIP": f"10.{i // 256}.{i % 256}.1",
            "role": "control-plane" if i == 0 else "worker",
        })  # fmt: skip
    cfg = ClusterConfig.from_doc({
        "cluster": {"name": "bench", "nodeNetwork": "172.16.0.0/12", "podCIDR": "10.0.0.0/8"},
        "nodes": nodes_cfg,
    })  # fmt: skip
    docs: list[Doc] = []
    for i, n in enumerate(cfg.nodes):
        docs.append({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": n.name, "annotations": {
                "network.cilium.io/ipv4-cilium-host": n.cilium_internal_ip,
                "network.cilium.io/ipv4-health-ip": f"10.{i // 256}.{i % 256}.254"}},
            "spec": {"podCIDR": n.pod_cidr},
            "status": {"addresses": [{"type": "InternalIP", "address": n.internal_ip}]},
        })  # fmt: skip
    for ns in range(10):
        docs.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"ns{ns}"}})
    pods: list[tuple[str, str, str]] = []  # (ip, node, app)
    for p in range(n_pods):
        node, j = p % n_nodes, p // n_nodes
        app = f"app{p % APPS}"
        ip = _pod_ip(node, j)
        docs.append(pod_doc(f"ns{p % 10}", f"pod-{p}", _node_name(node), ip, app))
        pods.append((ip, _node_name(node), app))
    for s in range(n_svcs):
        docs.append(service_doc(s))
        docs.append(slice_doc(s, [pods[(s * 7 + k * 13) % n_pods] for k in range(BACKENDS)]))
    return cfg, docs


def pod_doc(ns: str, name: str, node: str, ip: str, app: str) -> Doc:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": app}},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x"}]},
        "status": {"phase": "Running", "podIP": ip},
    }  # fmt: skip


def service_doc(s: int) -> Doc:
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": f"svc-{s}", "namespace": f"ns{s % 10}"},
        "spec": {"clusterIP": f"10.96.{s // 250}.{s % 250 + 1}", "selector": {"app": f"app{s % APPS}"},
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
    }  # fmt: skip


def slice_doc(s: int, backends: list[tuple[str, str, str]]) -> Doc:
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": f"svc-{s}-x", "namespace": f"ns{s % 10}",
                     "labels": {"kubernetes.io/service-name": f"svc-{s}"}},
        "endpoints": [{"addresses": [ip], "nodeName": node, "conditions": {"ready": True}}
                      for ip, node, _ in backends],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }  # fmt: skip


CPU: list[float] = []  # process CPU seconds of the last _time call (wall is noisy when shared)


def _time(fn: Callable[[], Any], settle: bool = True) -> tuple[float, Any]:
    """Wall seconds of fn(); its CPU seconds go to CPU[-1]. With ``settle``, objects
    alive before the call are collected and frozen out of the cyclic GC (gc.freeze),
    as a long-running agent would do after loading its state, so a collection over
    100k pods of earlier state does not land on an unrelated one-pod update. The
    incremental rounds run without settling in between (steady state: a collection
    right before each op returns memory to the OS that the op then faults back in)."""
    if settle:
        gc.collect()
        gc.freeze()
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    CPU.append(time.process_time() - c0)
    return time.perf_counter() - t0, out


def _row(n_nodes: int, n_pods: int, n_svcs: int, reps: int) -> dict[str, Any]:
    cfg, docs = generate(n_nodes, n_pods, n_svcs)
    full_samples, full_cpu = [], []
    state = None
    for _ in range(reps):
        dt, state = _time(lambda: compute_desired(docs, cfg))
        full_samples.append(dt)
        full_cpu.append(CPU[-1])
    assert state is not None
    eng = Engine(cfg)
    eng.load(docs)
    # incremental: pod add / delete on node 1, one backend change of service 0
    node = _node_name(1 % n_nodes)
    adds, dels, bchg, entries = [], [], [], {"pod_add": 0, "pod_del": 0, "backend_change": 0}
    add_cpu: list[float] = []
    # One warm-up round (first-use allocations), then at least 5 measured rounds:
    # incremental updates are cheap, so more samples cost nothing.
    rounds = max(reps, 5) + 1
    for r in range(rounds):
        if r == 1:
            adds, dels, bchg, add_cpu = [], [], [], []
        new = pod_doc("ns0", f"bench-new-{r}", node, f"10.0.{1 % n_nodes}.{240 - r % 30}", "app0")
        dt, ch = _time(lambda new=new: eng.update([new]), settle=r == 0)  # type: ignore[misc]
        adds.append(dt)
        add_cpu.append(CPU[-1])
        entries["pod_add"] = len(ch)
        dt, ch = _time(lambda new=new: eng.update([], [new]), settle=False)  # type: ignore[misc]
        dels.append(dt)
        entries["pod_del"] = len(ch)
        sl = slice_doc(
            0,
            [
                (_pod_ip(k % n_nodes, k // n_nodes), _node_name(k % n_nodes), "")
                for k in range(r % 5 + 1, r % 5 + 1 + BACKENDS)
            ],
        )
        dt, ch = _time(lambda sl=sl: eng.update([sl]), settle=False)  # type: ignore[misc]
        bchg.append(dt)
        entries["backend_change"] = len(ch)
    # the naive way: a full recompute for the same one-pod change
    new = pod_doc("ns0", "bench-naive", node, f"10.0.{1 % n_nodes}.239", "app0")
    naive_s, _ = _time(lambda: compute_desired([*docs, new], cfg, previous=state))
    naive_cpu = CPU[-1]
    med = statistics.median
    return {
        "nodes": n_nodes,
        "pods": n_pods,
        "services": n_svcs,
        "backends_per_service": BACKENDS,
        "full_s": {
            "samples": full_samples,
            "median": med(full_samples),
            "cpu_median": med(full_cpu),
        },
        "pod_add_ms": {
            "samples": [x * 1e3 for x in adds],
            "median": med(adds) * 1e3,
            "cpu_median": med(add_cpu) * 1e3,
            "entries": entries["pod_add"],
        },
        "pod_del_ms": {
            "samples": [x * 1e3 for x in dels],
            "median": med(dels) * 1e3,
            "entries": entries["pod_del"],
        },
        "backend_change_ms": {
            "samples": [x * 1e3 for x in bchg],
            "median": med(bchg) * 1e3,
            "entries": entries["backend_change"],
        },
        "naive_pod_add_s": naive_s,
        "naive_pod_add_cpu_s": naive_cpu,
        "ratio_naive_over_incremental": naive_cpu / med(add_cpu) if med(add_cpu) else None,
        "goal_full_ratio_cpu": med(full_cpu) / GOAL_FULL_S,
        "goal_pod_add_ratio_cpu": med(add_cpu) * 1e3 / GOAL_POD_ADD_MS,
    }


def run(reps: int, quick: bool) -> dict[str, Any]:
    grid = QUICK_GRID if quick else GRID
    rows = []
    hdr = (
        f"{'nodes':>6} {'pods':>7} {'svcs':>6} {'full s':>7} {'cpu s':>6} {'add ms':>7} {'cpu ms':>7}"
        f" {'(entries)':>9} {'del ms':>7} {'be ms':>7} {'(entries)':>9} {'naive cpu s':>11} {'naive/inc':>9}"
    )
    print(hdr)
    for n_nodes, n_pods, n_svcs in grid:
        r = _row(n_nodes, n_pods, n_svcs, reps if n_pods <= 10_000 else max(1, min(reps, 2)))
        rows.append(r)
        print(
            f"{n_nodes:>6} {n_pods:>7} {n_svcs:>6} {r['full_s']['median']:>7.2f} "
            f"{r['full_s']['cpu_median']:>6.2f} {r['pod_add_ms']['median']:>7.2f} "
            f"{r['pod_add_ms']['cpu_median']:>7.2f} {r['pod_add_ms']['entries']:>9} "
            f"{r['pod_del_ms']['median']:>7.2f} {r['backend_change_ms']['median']:>7.2f} "
            f"{r['backend_change_ms']['entries']:>9} {r['naive_pod_add_cpu_s']:>11.2f} "
            f"{r['ratio_naive_over_incremental'] or 0:>9.0f}",
            flush=True,
        )
    print(
        f"goals: full state <= {GOAL_FULL_S:.0f} s at 100k pods / 10k services; one pod add <= "
        f"{GOAL_POD_ADD_MS:.0f} ms (cpu = process CPU time: wall time is noisy on a shared machine)"
    )
    return {
        "suite": "state",
        "goals": {"full_s": GOAL_FULL_S, "pod_add_ms": GOAL_POD_ADD_MS},
        "rows": rows,
    }


if __name__ == "__main__":
    import sys

    run(int(sys.argv[1]) if len(sys.argv) > 1 else 3, "--quick" in sys.argv)
