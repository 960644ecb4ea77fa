"""Property: whatever sequence of scale changes and pod deletions, the reconciled pods
hold distinct addresses inside their node's podCIDR, and the counts match."""

from __future__ import annotations

import random
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ciliate.control.ipam import resolve_config
from ciliate.controllers.cluster import cluster_objects
from ciliate.controllers.reconcile import compute_round
from ciliate.controllers.snapshot import Snapshot, key_of
from ciliate.model.cluster import ClusterConfig, NodeConfig
from ciliate.store.api import Change

CONFIG = resolve_config(
    ClusterConfig(
        name="p",
        pod_cidr="10.10.0.0/16",
        pod_cidr_mask_size=28,  # 14 usable, 12 for pods: exhaustion is reachable
        nodes=(
            NodeConfig("p-control-plane", "172.18.0.2", "control-plane"),
            NodeConfig("p-worker", "172.18.0.3"),
            NodeConfig("p-worker2", "172.18.0.4"),
        ),
    )
)


def deployment(name: str, replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": []}},
        },
    }


class Emulated:
    """Just enough of a store: uids and creation order for new objects."""

    def __init__(self, docs: list[dict[str, Any]]) -> None:
        self.n = 0
        self.snap = Snapshot()
        self.write([Change(key_of(d), d) for d in docs])

    def write(self, changes: list[Change]) -> None:
        out = []
        for c in changes:
            if c.object is not None and self.snap.get(c.key) is None:
                self.n += 1
                m = {**c.object.get("metadata", {})}
                m.setdefault("uid", f"u{self.n}")
                m.setdefault("creationTimestamp", f"t{self.n:08d}")
                c = Change(c.key, {**c.object, "metadata": m})
            out.append(c)
        self.snap = self.snap.with_changes(out)

    def reconcile(self, rng: random.Random) -> None:
        for _ in range(20):
            ch = compute_round(self.snap, CONFIG, rng)
            if not ch:
                return
            self.write(ch)
        raise AssertionError("no fixed point in 20 rounds")


step = st.one_of(
    st.tuples(st.just("scale"), st.sampled_from(["a", "b"]), st.integers(0, 15)),
    st.tuples(st.just("kill"), st.integers(0, 40), st.just(0)),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(step, min_size=1, max_size=12), st.integers(0, 2**16))
def test_addresses_stay_unique_through_scaling(steps, seed):
    store = Emulated(cluster_objects(CONFIG))
    rng = random.Random(seed)
    want = {"a": 0, "b": 0}
    for op, arg, n in steps:
        if op == "scale":
            want[arg] = n
            store.write([Change(key_of(deployment(arg, n)), deployment(arg, n))])
        else:
            pods = store.snap.list("Pod")
            if pods:
                victim = pods[arg % len(pods)]
                store.write([Change(key_of(victim), None)])
        store.reconcile(rng)
        pods = store.snap.list("Pod")
        assert len(pods) == sum(want.values())
        cidrs = {n.name: IPv4Network(n.pod_cidr) for n in CONFIG.nodes}
        seen: set[str] = set()
        running: dict[str, int] = {}
        pending_on: set[str] = set()
        for p in pods:
            st_ = p["status"]
            node = p["spec"]["nodeName"]
            if st_["phase"] == "Running":
                running[node] = running.get(node, 0) + 1
                ip = st_["podIP"]
                assert ip not in seen, f"{ip} handed out twice"
                seen.add(ip)
                assert IPv4Address(ip) in cidrs[node]
            else:
                assert st_["message"] == f"IPAM: no free address in {cidrs[node]}"
                pending_on.add(node)
        # A pod waits for an address only on a node whose 12 pod addresses are all held.
        for node in pending_on:
            assert running.get(node, 0) == 12
