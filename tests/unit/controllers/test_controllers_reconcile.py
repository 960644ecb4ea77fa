"""The networking101 example end to end through admission and the reconciler."""

from __future__ import annotations

import random
import re
from ipaddress import IPv4Address, IPv4Network

from ciliate.controllers.admission import admit
from ciliate.controllers.cluster import cluster_objects
from ciliate.controllers.reconcile import reconcile
from ciliate.model.cluster import ClusterConfig
from ciliate.store.api import ObjectKey

POD_NAME = re.compile(
    r"^(busybox|netshoot)-[bcdfghjklmnpqrstvwxz2456789]{6,10}-[bcdfghjklmnpqrstvwxz2456789]{5}$"
)


def test_networking101_gives_four_pods_two_per_worker(networking101, example_config):
    pods = networking101.list("Pod", "networking101")
    assert len(pods) == 4
    by_node: dict[str, list[str]] = {}
    for p in pods:
        name = p["metadata"]["name"]
        assert POD_NAME.match(name), name
        assert p["status"]["phase"] == "Running"
        by_node.setdefault(p["spec"]["nodeName"], []).append(name.split("-")[0])
        ip = IPv4Address(p["status"]["podIP"])
        cidr = {"mycluster-worker": "10.10.2.0/24", "mycluster-worker2": "10.10.1.0/24"}[
            p["spec"]["nodeName"]
        ]
        assert ip in IPv4Network(cidr)
        assert p["status"]["podIPs"] == [{"ip": str(ip)}]
        node_ip = {"mycluster-worker": "172.18.0.2", "mycluster-worker2": "172.18.0.4"}
        assert p["status"]["hostIP"] == node_ip[p["spec"]["nodeName"]]
        ready = [c for c in p["status"]["conditions"] if c["type"] == "Ready"]
        assert ready == [{"type": "Ready", "status": "True"}]
    assert {k: sorted(v) for k, v in by_node.items()} == {
        "mycluster-worker": ["busybox", "netshoot"],
        "mycluster-worker2": ["busybox", "netshoot"],
    }


def test_pod_names_carry_their_replicaset_and_hash(networking101):
    for rs in networking101.list("ReplicaSet", "networking101"):
        h = rs["metadata"]["labels"]["pod-template-hash"]
        assert rs["metadata"]["name"].endswith("-" + h)
        owned = [
            p
            for p in networking101.list("Pod", "networking101")
            if p["metadata"]["ownerReferences"][0]["name"] == rs["metadata"]["name"]
        ]
        assert len(owned) == 2
        for p in owned:
            assert p["metadata"]["labels"]["pod-template-hash"] == h
            assert p["metadata"]["ownerReferences"][0]["uid"] == rs["metadata"]["uid"]


def test_deployments_report_ready(networking101):
    for d in networking101.list("Deployment", "networking101"):
        st = d["status"]
        assert (st["replicas"], st["readyReplicas"], st["updatedReplicas"]) == (2, 2, 2)
        assert st["availableReplicas"] == 2


def test_reconcile_is_a_fixed_point(networking101, example_config: ClusterConfig):
    before = networking101.rv
    assert reconcile(networking101, example_config, random.Random(1)) == 0
    assert networking101.rv == before


def test_same_history_gives_same_names(example_config, new_store, examples_dir, read_docs):
    # Two stores fed the same inputs end with the same pod names (seeded generator).
    docs = read_docs(examples_dir / "networking101" / "workloads.yaml")
    names = []
    for _ in range(2):
        s = new_store()
        s.put_docs(cluster_objects(example_config))
        s.put_docs(admit(docs, s, example_config))
        reconcile(s, example_config)
        names.append(sorted(p["metadata"]["name"] for p in s.list("Pod")))
    assert names[0] == names[1]


def test_cluster_objects(example_cluster):
    s = example_cluster
    assert {n["metadata"]["name"] for n in s.list("Namespace")} == {
        "default",
        "kube-system",
        "kube-public",
        "kube-node-lease",
    }
    for ns in s.list("Namespace"):
        assert ns["metadata"]["labels"]["kubernetes.io/metadata.name"] == ns["metadata"]["name"]
    cp = s.get(ObjectKey("Node", "", "mycluster-control-plane"))
    assert cp is not None
    assert cp["spec"]["taints"] == [
        {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}
    ]
    assert cp["metadata"]["labels"]["node-role.kubernetes.io/control-plane"] == ""
    w = s.get(ObjectKey("Node", "", "mycluster-worker"))
    assert w is not None
    assert w["spec"]["podCIDR"] == "10.10.2.0/24"
    assert w["metadata"]["annotations"]["network.cilium.io/ipv4-cilium-host"] == "10.10.2.205"
    assert w["metadata"]["annotations"]["network.cilium.io/ipv4-health-ip"] == "10.10.2.1"
    assert {"type": "InternalIP", "address": "172.18.0.2"} in w["status"]["addresses"]
    assert "taints" not in w["spec"]
    svc = s.get(ObjectKey("Service", "default", "kubernetes"))
    assert svc is not None
    assert svc["spec"]["clusterIP"] == "10.96.0.1"
    eps = s.get(ObjectKey("EndpointSlice", "default", "kubernetes"))
    assert eps is not None
    assert eps["endpoints"][0]["addresses"] == ["172.18.0.3"]
    assert eps["ports"][0]["port"] == 6443


def test_concurrent_reconcilers_lose_nothing(tmp_path, example_config):
    """Two reconcilers racing on one SQLite store (two `ciliate apply` processes, or
    `apply` and the agent) create exactly the replicas asked for, never one too many,
    and hand out no address twice: every round is written only if nobody wrote since
    its read."""
    import threading

    from ciliate.controllers.cluster import create_cluster
    from ciliate.store.api import Change
    from ciliate.store.sqlite import SQLiteStore

    path = tmp_path / "store.db"
    setup = SQLiteStore(path)
    create_cluster(setup, example_config)
    deploy = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": 12,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx"}]},
            },
        },
    }
    setup.apply([Change(ObjectKey("Deployment", "default", "web"), deploy)])
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        store = SQLiteStore(path)
        try:
            reconcile(store, example_config, rng=random.Random(seed))
        except BaseException as e:  # surfaced below
            errors.append(e)
        finally:
            store.close()

    threads = [threading.Thread(target=worker, args=(s,)) for s in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert reconcile(setup, example_config) == 0  # both stopped at the fixed point
    pods = setup.list("Pod", "default")
    # No pod was created twice over and then removed, no address reassigned: the
    # racing rounds were retried on fresh reads instead of both being written.
    events = [e for e in setup.watch(0, timeout=0) if e.key.kind == "Pod"]
    assert sum(e.type.value == "ADDED" for e in events) == 12
    assert not [e for e in events if e.type.value == "DELETED"]
    assert len(pods) == 12
    ips = [p["status"]["podIP"] for p in pods]
    assert len(set(ips)) == len(ips)
    setup.close()
