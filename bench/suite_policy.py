"""Policy benchmark: compilation, reachability matrices, incremental updates, and
network-config-analyzer (NCA, a peer) side by side on the same NetworkPolicy input.

Rows (``quick`` uses small sizes):

- ``compile``: ``compute_policy`` for 10,000 pods / 1,000 NetworkPolicies (goal <= 2 s).
- ``matrix_1000`` / ``matrix_5000``: every ordered pod pair on TCP/80 from the compiled
  maps (``reach_matrix``: the datapath's lookup per identity class; goals <= 1 s and
  <= 10 s), and ``matrix_1000_sim``: the same through the model datapath (``sim.probe``
  over the DesiredState of the control engine, what ``ciliate reach`` prints).
- ``incremental``: p99 of one policy change, one pod add (a replica of a known
  identity) and one pod add with a new identity, on the 10,000-pod state (goal <= 5 ms),
  in wall and in process CPU time.
- ``engine_new_identity``: that new-identity pod add through ``Engine.update`` (the
  pods spread over 100 nodes): compiler plus the per-endpoint map changes it causes.
- ``nca``: the same pods/namespaces/policies exported as YAML lists and given to
  ``nca --connectivity POLICIES --pod_list pods.yaml --ns_list ns.yaml -o
  txt_no_fw_rules`` (1,000 pods / 200 policies; quick: 100 / 20); verdicts compared on
  the shared subset (pod -> pod, TCP/80, no loopback) and the time ratio.

NCA is a peer, not a dependency: install it in its own venv, e.g.
``python3 -m venv bench/.venv-nca && bench/.venv-nca/bin/pip install
network-config-analyzer`` (or point ``$CILIATE_NCA`` at an ``nca`` executable; the
suite also looks in /tmp/nca-venv). Without it the row says so. Nothing here asserts a
time; ``run`` prints a table and returns a JSON-able dict.
"""

from __future__ import annotations

import gc
import os
import random
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from ciliate.control.explain import namespace_labels
from ciliate.control.identity import allocate_identities, pod_identity_labels
from ciliate.control.policy import PolicyCompiler, compute_policy
from ciliate.control.reach import ClusterView, build_view, reach_matrix
from ciliate.desired import Identity
from ciliate.model.cluster import ClusterConfig
from ciliate.model.core import Pod
from ciliate.model.meta import Doc

HERE = Path(__file__).resolve().parent
GOALS = {"compile_s": 2.0, "matrix_1000_s": 1.0, "matrix_5000_s": 10.0, "incr_p99_ms": 5.0}


# --- input -------------------------------------------------------------------------------


def generate(n_pods: int, n_pols: int, n_ns: int = 50, n_apps: int = 20) -> list[Doc]:
    """Namespaces with team labels; pods spread over (namespace, app) identities, each
    with a named container port; policies selecting one app and allowing it from the
    next app (same namespace) or from a third app in namespaces of one team, on a port,
    a named port and a port range; every fourth also restricts egress (an ipBlock with
    except, and DNS)."""
    docs: list[Doc] = []
    for i in range(n_ns):
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": f"ns-{i}", "labels": {"team": f"t{i % 5}"}},
            }
        )
    for j in range(n_pods):
        ns, app = j % n_ns, (j // n_ns) % n_apps
        docs.append({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"p-{j}", "namespace": f"ns-{ns}", "labels": {"app": f"app-{app}"}},
            "spec": {"containers": [{"name": "c", "image": "nginx",
                                     "ports": [{"name": "http", "containerPort": 8080}]}]},
            "status": {"phase": "Running",
                       "podIP": f"10.{10 + j // 62500}.{(j // 250) % 250}.{j % 250 + 1}"},
        })  # fmt: skip
    for k in range(n_pols):
        ns, app = k % n_ns, (k // n_ns) % n_apps
        spec: Doc = {
            "podSelector": {"matchLabels": {"app": f"app-{app}"}},
            "policyTypes": ["Ingress"],
            "ingress": [{
                "from": [
                    {"podSelector": {"matchLabels": {"app": f"app-{(app + 1) % n_apps}"}}},
                    {"namespaceSelector": {"matchLabels": {"team": f"t{k % 5}"}},
                     "podSelector": {"matchLabels": {"app": f"app-{(app + 2) % n_apps}"}}},
                ],
                "ports": [{"port": 80, "protocol": "TCP"}, {"port": "http", "protocol": "TCP"},
                          {"port": 9000, "endPort": 9100, "protocol": "TCP"}],
            }],
        }  # fmt: skip
        if k % 4 == 0:
            spec["policyTypes"] = ["Ingress", "Egress"]
            spec["egress"] = [
                {"to": [{"ipBlock": {"cidr": "172.16.0.0/12", "except": ["172.17.0.0/16"]}}]},
                {"ports": [{"port": 53, "protocol": "UDP"}]},
                {"to": [{"namespaceSelector": {}}], "ports": [{"port": 80, "protocol": "TCP"}]},
            ]
        docs.append(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {"name": f"np-{k}", "namespace": f"ns-{ns}"},
                "spec": spec,
            }
        )
    return docs


# --- timing helpers ----------------------------------------------------------------------


def _time(fn: Callable[[], Any], reps: int) -> tuple[list[float], Any]:
    samples: list[float] = []
    out: Any = None
    for _ in range(max(1, reps)):
        gc.collect()
        t = time.perf_counter()
        out = fn()
        samples.append(time.perf_counter() - t)
    return samples, out


def _p99(samples: list[float]) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(len(s) * 0.99))]


def _view(docs: list[Doc]) -> ClusterView:
    return build_view(ClusterConfig("default"), docs)


# --- rows --------------------------------------------------------------------------------


def bench_compile(n_pods: int, n_pols: int, reps: int) -> dict[str, Any]:
    view = _view(generate(n_pods, n_pols))
    samples, res = _time(lambda: compute_policy(view.inputs()), reps)
    return {
        "pods": n_pods, "policies": n_pols,
        "identities": len(set(view.pod_identity.values())),
        "entries": sum(len(e.map) for e in {id(e.map): e for e in res.endpoints.values()}.values()),
        "median_s": statistics.median(samples), "samples_s": samples,
    }  # fmt: skip


def bench_matrix(n_pods: int, n_pols: int, reps: int, sim: bool = False) -> dict[str, Any]:
    docs = generate(n_pods, n_pols, n_ns=20, n_apps=10)
    view = _view(docs)
    res = compute_policy(view.inputs())
    samples, m = _time(lambda: reach_matrix(view, 80, "TCP", result=res), reps)
    row: dict[str, Any] = {
        "pods": n_pods, "policies": n_pols, "pairs": n_pods * n_pods,
        "allowed": sum(v for r in m.allowed.values() for v in r.values()),
        "median_s": statistics.median(samples), "samples_s": samples,
    }  # fmt: skip
    if sim:
        from ciliate.cli.cmd_policy import compute_reach, ephemeral_docs

        full, cfg = ephemeral_docs(docs)
        s2, m2 = _time(lambda: compute_reach(full, cfg, 80, "TCP", None), max(1, reps // 2))
        row["sim_median_s"] = statistics.median(s2)
        row["sim_samples_s"] = s2
        row["sim_allowed"] = sum(v for r in m2.allowed.values() for v in r.values())
    return row


def bench_incremental(n_pods: int, n_pols: int, reps: int) -> dict[str, Any]:
    docs = generate(n_pods, n_pols)
    view = _view(docs)
    c = PolicyCompiler.from_inputs(view.inputs())
    rng = random.Random(1)
    # A long-running agent freezes its startup heap so that collections do not rescan
    # it on every update; the same here (otherwise p99 measures the garbage collector).
    gc.collect()
    gc.freeze()
    ns_docs = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Namespace"}
    n = max(20, reps * 20)

    pol_samples: list[float] = []
    # process CPU time per update besides wall time: on a shared VM a wall-clock p99 of a
    # millisecond operation mostly measures preemption by other processes
    cpu: dict[str, list[float]] = {"policy_change": [], "pod_add": [], "pod_add_new_identity": []}
    recompiled: list[int] = []
    for i in range(n):
        k = rng.randrange(n_pols)
        ns, app = k % 50, (k // 50) % 20
        doc = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
               "metadata": {"name": f"np-{k}", "namespace": f"ns-{ns}"},
               "spec": {"podSelector": {"matchLabels": {"app": f"app-{app}"}},
                        "ingress": [{"from": [{"podSelector": {"matchLabels": {
                            "app": f"app-{(app + 1 + i) % 20}"}}}],
                            "ports": [{"port": 80 + i % 3}]}]}}  # fmt: skip
        t, tc = time.perf_counter(), time.process_time()
        recompiled.append(len(c.set_policy(doc)))
        pol_samples.append(time.perf_counter() - t)
        cpu["policy_change"].append(time.process_time() - tc)

    # The agent's allocator keeps labels -> identity as it goes (engine.label_ids): the
    # same here, instead of re-deriving it from every identity on each add.
    label_ids = {i2.labels: i2.id for i2 in c.identities.values() if i2.id >= 256}

    def add_pods(new_identity: bool) -> list[float]:
        out: list[float] = []
        out_cpu = cpu["pod_add_new_identity" if new_identity else "pod_add"]
        for i in range(n):
            ns = rng.randrange(50)
            app = f"fresh-{i}" if new_identity else f"app-{rng.randrange(20)}"
            d = {"apiVersion": "v1", "kind": "Pod",
                 "metadata": {"name": f"new-{new_identity}-{i}", "namespace": f"ns-{ns}",
                              "labels": {"app": app}},
                 "spec": {"containers": [{"name": "c", "ports": [
                     {"name": "http", "containerPort": 8080}]}]}}  # fmt: skip
            pod = Pod.from_doc(d)
            ip = f"10.200.{i // 250}.{i % 250 + 1}"
            t, tc = time.perf_counter(), time.process_time()
            labels = pod_identity_labels(
                pod,
                namespace_labels(None, pod.meta.namespace)
                | dict(ns_docs[pod.meta.namespace]["metadata"]["labels"]),
                "default",
            )
            if labels not in label_ids:
                label_ids.update(allocate_identities([labels], label_ids))
            num = label_ids[labels]
            c.set_pod(pod, Identity(num, labels), ip)
            out.append(time.perf_counter() - t)
            out_cpu.append(time.process_time() - tc)
        return out

    replica = add_pods(False)
    fresh = add_pods(True)
    gc.unfreeze()
    return {
        "pods": n_pods, "policies": n_pols, "updates": n,
        "policy_change_p99_ms": _p99(pol_samples) * 1e3,
        "policy_change_median_ms": statistics.median(pol_samples) * 1e3,
        "policy_change_recompiled_median": statistics.median(recompiled),
        "pod_add_p99_ms": _p99(replica) * 1e3,
        "pod_add_median_ms": statistics.median(replica) * 1e3,
        "pod_add_new_identity_p99_ms": _p99(fresh) * 1e3,
        "pod_add_new_identity_median_ms": statistics.median(fresh) * 1e3,
        **{f"{k}_cpu_p99_ms": _p99(v) * 1e3 for k, v in cpu.items()},
        **{f"{k}_cpu_median_ms": statistics.median(v) * 1e3 for k, v in cpu.items()},
    }  # fmt: skip


def bench_engine_new_identity(n_pods: int, n_pols: int, n_nodes: int, reps: int) -> dict[str, Any]:
    """The same new-identity pod add end to end: ``Engine.update`` on the input above
    spread over ``n_nodes`` nodes, i.e. the compiler plus picking up every recompiled or
    extended map and emitting its per-endpoint map changes (each endpoint has its own
    policy map, as in Cilium)."""
    from bench import suite_state
    from ciliate.control.engine import Engine

    cfg, node_docs = suite_state.generate(n_nodes, 0, 0)
    nodes = [d for d in node_docs if d["kind"] == "Node"]
    docs = generate(n_pods, n_pols)
    for d in docs:
        if d["kind"] == "Pod":
            d["spec"]["nodeName"] = nodes[int(d["metadata"]["name"][2:]) % n_nodes]["metadata"][
                "name"
            ]
    eng = Engine(cfg)
    eng.load(nodes + docs)
    gc.collect()
    gc.freeze()
    wall: list[float] = []
    cpu: list[float] = []
    changes = 0
    for i in range(max(20, reps * 4)):
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": f"fresh-{i}", "namespace": f"ns-{i % 50}",
                            "labels": {"app": f"fresh-{i}"}},
               "spec": {"nodeName": nodes[i % n_nodes]["metadata"]["name"],
                        "containers": [{"name": "c", "ports": [
                            {"name": "http", "containerPort": 8080}]}]},
               "status": {"phase": "Running", "podIP": f"10.200.{i // 250}.{i % 250 + 1}"}}  # fmt: skip
        t, tc = time.perf_counter(), time.process_time()
        changes = len(eng.update([pod]))
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - tc)
    gc.unfreeze()
    return {
        "pods": n_pods, "policies": n_pols, "nodes": n_nodes, "updates": len(wall),
        "median_ms": statistics.median(wall) * 1e3, "p99_ms": _p99(wall) * 1e3,
        "cpu_median_ms": statistics.median(cpu) * 1e3, "cpu_p99_ms": _p99(cpu) * 1e3,
        "map_changes": changes,
    }  # fmt: skip


# --- NCA ---------------------------------------------------------------------------------


def find_nca() -> str | None:
    for cand in (
        os.environ.get("CILIATE_NCA", ""),
        str(HERE / ".venv-nca" / "bin" / "nca"),
        "/tmp/nca-venv/bin/nca",
        shutil.which("nca") or "",
    ):
        if cand and Path(cand).exists():
            return cand
    return None


_LINE = re.compile(r"^(\S+) => (\S+) : (.*)$")


def nca_allows(conn: str, proto: str, port: int) -> bool:
    """Does an NCA connection text allow proto/port ("All connections" or clauses
    like ``{protocols:TCP,dst_ports:80,8080,9000-9100}``)?"""
    if conn.strip() == "All connections":
        return True
    for clause in re.findall(r"\{([^}]*)\}", conn):
        fields = dict(
            (k.strip(), v.strip())
            for k, _, v in (part.partition(":") for part in re.split(r",(?=\w+:)", clause))
        )
        protos = fields.get("protocols", "")
        if protos and proto not in protos.split(","):
            continue
        ports = fields.get("dst_ports")
        if ports is None:
            return True
        for r in ports.split(","):
            lo, _, hi = r.partition("-")
            if lo.strip().isdigit() and int(lo) <= port <= int(hi or lo):
                return True
    return False


NCA_PROBES = ((80, "TCP"), (8080, "TCP"), (9050, "TCP"), (53, "UDP"), (81, "TCP"))


def bench_nca(n_pods: int, n_pols: int, timeout: float) -> dict[str, Any]:
    """Same input to both; compared on every pod pair for a port, a named port, a range,
    UDP and an unlisted port. Timing: ciliate's compile plus one matrix (NCA's single run
    computes every connection; one matrix is the question a user asks)."""
    nca = find_nca()
    docs = generate(n_pods, n_pols, n_ns=10, n_apps=10)
    view = _view(docs)

    def ours() -> Any:
        return reach_matrix(view, 80, "TCP", result=compute_policy(view.inputs()))

    samples, _m = _time(ours, 3)
    ours_s = statistics.median(samples)
    row: dict[str, Any] = {"pods": n_pods, "policies": n_pols, "ciliate_s": ours_s}
    if nca is None:
        row["nca"] = ("not installed: python3 -m venv bench/.venv-nca && "
                      "bench/.venv-nca/bin/pip install network-config-analyzer")  # fmt: skip
        return row
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        for kind, fname in (
            ("Namespace", "ns.yaml"),
            ("Pod", "pods.yaml"),
            ("NetworkPolicy", "policies.yaml"),
        ):
            items = [x for x in docs if x["kind"] == kind]
            api = "networking.k8s.io/v1" if kind == "NetworkPolicy" else "v1"
            (d / fname).write_text(yaml.safe_dump(
                {"apiVersion": api, "kind": f"{kind}List", "items": items}))  # fmt: skip
        cmd = [nca, "--connectivity", str(d / "policies.yaml"), "--pod_list",
               str(d / "pods.yaml"), "--ns_list", str(d / "ns.yaml"), "-o",
               "txt_no_fw_rules", "--output_endpoints", "pods"]  # fmt: skip
        t = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            row["nca"] = f"timed out after {timeout:.0f} s"
            return row
        row["nca_s"] = time.perf_counter() - t
    conns: dict[tuple[str, str], list[str]] = {}
    for line in proc.stdout.splitlines():
        mt = _LINE.match(line.strip())
        if mt and "/" in mt.group(1) and "/" in mt.group(2) and "." not in mt.group(1)[:4]:
            # a pair may be listed on several lines (one per connection set)
            conns.setdefault((mt.group(1), mt.group(2)), []).append(mt.group(3))
    res = compute_policy(view.inputs())
    ev = view.evaluator()
    per_probe: dict[str, int] = {}
    diffs: list[dict[str, Any]] = []
    compared = 0
    for port, proto in NCA_PROBES:
        m = reach_matrix(view, port, proto, result=res)
        n = 0
        for a in m.pods:
            for b in m.pods:
                if a == b:
                    continue
                compared += 1
                mine = m.allowed[a][b]
                other = any(nca_allows(c, proto, port) for c in conns.get((a, b), ()))
                if mine != other:
                    n += 1
                    if len(diffs) < 5:
                        ex = ev.explain(a, b, port, proto)
                        diffs.append({"src": a, "dst": b, "probe": f"{port}/{proto}",
                                      "ciliate": mine, "nca": other,
                                      "why": ex.ingress.reason if not ex.ingress.allowed
                                      else ex.egress.reason})  # fmt: skip
        per_probe[f"{port}/{proto}"] = n
    row.update({
        "probes": [f"{p}/{q}" for p, q in NCA_PROBES],
        "pairs_compared": compared,
        "nca_pairs_listed": len(conns),
        "differences": sum(per_probe.values()), "differences_per_probe": per_probe,
        "difference_examples": diffs,
        "ratio_nca_over_ciliate": row["nca_s"] / ours_s if ours_s else None,
        "nca_returncode": proc.returncode,
    })  # fmt: skip
    return row


# --- entry -------------------------------------------------------------------------------


def run(reps: int, quick: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"goals": GOALS, "quick": quick}
    if quick:
        out["compile"] = bench_compile(1000, 100, reps)
        out["matrix_1000"] = bench_matrix(200, 40, reps, sim=True)
        out["matrix_5000"] = bench_matrix(500, 100, reps)
        out["incremental"] = bench_incremental(1000, 100, reps)
        out["engine_new_identity"] = bench_engine_new_identity(1000, 100, 10, reps)
        out["nca"] = bench_nca(100, 20, timeout=300)
    else:
        out["compile"] = bench_compile(10_000, 1_000, reps)
        out["matrix_1000"] = bench_matrix(1000, 200, reps, sim=True)
        out["matrix_5000"] = bench_matrix(5000, 1000, max(1, reps // 2))
        out["incremental"] = bench_incremental(10_000, 1_000, reps)
        out["engine_new_identity"] = bench_engine_new_identity(10_000, 1_000, 100, reps)
        out["nca"] = bench_nca(1000, 200, timeout=1800)
    _print(out)
    return out


def _print(r: dict[str, Any]) -> None:
    c, m1, m5, inc, nca = (
        r["compile"],
        r["matrix_1000"],
        r["matrix_5000"],
        r["incremental"],
        r["nca"],
    )
    print(f"   compile {c['pods']} pods / {c['policies']} policies ({c['identities']} identities): "
          f"{c['median_s']:.2f} s (goal <= {GOALS['compile_s']} s)")  # fmt: skip
    print(f"   matrix {m1['pods']} pods ({m1['pairs']} pairs), compiled maps: "
          f"{m1['median_s']:.2f} s (goal <= {GOALS['matrix_1000_s']} s)"
          + (f"; model datapath: {m1['sim_median_s']:.2f} s" if "sim_median_s" in m1 else ""))  # fmt: skip
    print(f"   matrix {m5['pods']} pods ({m5['pairs']} pairs): {m5['median_s']:.2f} s "
          f"(goal <= {GOALS['matrix_5000_s']} s)")  # fmt: skip
    print(f"   incremental on {inc['pods']} pods: policy change p99 "
          f"{inc['policy_change_p99_ms']:.2f} ms, pod add p99 {inc['pod_add_p99_ms']:.2f} ms, "
          f"pod add (new identity) p99 {inc['pod_add_new_identity_p99_ms']:.2f} ms "
          f"(goal <= {GOALS['incr_p99_ms']} ms); CPU time p99: "
          f"{inc['policy_change_cpu_p99_ms']:.2f} / {inc['pod_add_cpu_p99_ms']:.2f} / "
          f"{inc['pod_add_new_identity_cpu_p99_ms']:.2f} ms")  # fmt: skip
    e = r["engine_new_identity"]
    print(f"   engine pod add with a new identity ({e['pods']} pods, {e['nodes']} nodes): "
          f"median {e['median_ms']:.2f} ms, p99 {e['p99_ms']:.2f} ms (CPU {e['cpu_median_ms']:.2f}"
          f" / {e['cpu_p99_ms']:.2f} ms), {e['map_changes']} map changes")  # fmt: skip
    if "nca_s" in nca:
        print(f"   NCA {nca['pods']} pods / {nca['policies']} policies: nca {nca['nca_s']:.2f} s, "
              f"ciliate {nca['ciliate_s']:.3f} s (x{nca['ratio_nca_over_ciliate']:.0f}); "
              f"{nca['differences']} differing verdicts of {nca['pairs_compared']}")  # fmt: skip
    else:
        print(f"   NCA: {nca.get('nca')}")
