"""Workload controllers: Deployment -> ReplicaSet -> Pods, scaling, rollout, DaemonSet,
StatefulSet, garbage collection."""

from __future__ import annotations

import copy
import random
from typing import Any

from ciliate.controllers.reconcile import reconcile
from ciliate.controllers.snapshot import Snapshot
from ciliate.controllers.workloads import (
    compute_replicasets,
    fnv32a,
    pod_template_hash,
    random_suffix,
    safe_encode,
)
from ciliate.store.api import Change, ObjectKey


def deployment(name: str = "web", replicas: int = 2, image: str = "nginx") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": name, "image": image}]},
            },
        },
    }


def pods_of(store, prefix: str) -> list[dict[str, Any]]:
    return [p for p in store.list("Pod") if p["metadata"]["name"].startswith(prefix + "-")]


def test_fnv32a_known_vectors():
    # FNV-1a 32-bit test vectors (http://www.isthe.com/chongo/tech/comp/fnv/).
    assert fnv32a(b"") == 0x811C9DC5
    assert fnv32a(b"a") == 0xE40C292C
    assert fnv32a(b"foobar") == 0xBF9CF968


def test_safe_encode_maps_digits_like_kubernetes():
    # "c8bbbbb84" (the example's busybox hash) is SafeEncodeString("746666640").
    assert safe_encode("746666640") == "c8bbbbb84"


def test_pod_template_hash_is_stable_and_sensitive():
    t = deployment()["spec"]["template"]
    assert pod_template_hash(t) == pod_template_hash(copy.deepcopy(t))
    t2 = copy.deepcopy(t)
    t2["spec"]["containers"][0]["image"] = "nginx:2"
    assert pod_template_hash(t) != pod_template_hash(t2)
    assert set(pod_template_hash(t)) <= set("bcdfghjklmnpqrstvwxz2456789")


def test_random_suffix_uses_the_safe_alphabet():
    s = random_suffix(random.Random(3))
    assert len(s) == 5 and set(s) <= set("bcdfghjklmnpqrstvwxz2456789")


def test_deployment_scale_up_and_down(example_cluster, apply):
    apply([deployment(replicas=2)])
    first = {p["metadata"]["name"] for p in pods_of(example_cluster, "web")}
    assert len(first) == 2
    apply([deployment(replicas=5)])
    after_up = {p["metadata"]["name"] for p in pods_of(example_cluster, "web")}
    assert len(after_up) == 5 and first <= after_up
    # Spread: the two workers share the 5 pods 3/2.
    nodes = [p["spec"]["nodeName"] for p in pods_of(example_cluster, "web")]
    assert sorted(nodes.count(n) for n in set(nodes)) == [2, 3]
    apply([deployment(replicas=1)])
    left = {p["metadata"]["name"] for p in pods_of(example_cluster, "web")}
    # The newest pods go first: one of the two original pods is what is left.
    assert len(left) == 1 and left <= first
    d = example_cluster.get(ObjectKey("Deployment", "default", "web"))
    assert d["status"]["replicas"] == 1 and d["status"]["readyReplicas"] == 1


def test_scale_to_zero_and_back(example_cluster, apply):
    apply([deployment(replicas=2)])
    apply([deployment(replicas=0)])
    assert pods_of(example_cluster, "web") == []
    apply([deployment(replicas=1)])
    assert len(pods_of(example_cluster, "web")) == 1


def test_template_change_creates_new_replicaset_and_scales_old_to_zero(example_cluster, apply):
    apply([deployment(image="nginx:1")])
    old_rs = example_cluster.list("ReplicaSet")
    assert len(old_rs) == 1
    apply([deployment(image="nginx:2")])
    rses = {r["metadata"]["name"]: r for r in example_cluster.list("ReplicaSet")}
    assert len(rses) == 2
    old = rses[old_rs[0]["metadata"]["name"]]
    assert old["spec"]["replicas"] == 0
    (new,) = [r for n, r in rses.items() if n != old_rs[0]["metadata"]["name"]]
    assert new["spec"]["replicas"] == 2
    assert new["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    pods = pods_of(example_cluster, "web")
    assert len(pods) == 2
    for p in pods:
        assert p["metadata"]["name"].startswith(new["metadata"]["name"] + "-")
        assert p["spec"]["containers"][0]["image"] == "nginx:2"


def test_deleting_a_deployment_collects_its_replicasets_and_pods(
    example_cluster, apply, example_config
):
    apply([deployment()])
    example_cluster.apply([Change(ObjectKey("Deployment", "default", "web"), None)])
    reconcile(example_cluster, example_config, random.Random(1))
    assert example_cluster.list("ReplicaSet") == []
    assert pods_of(example_cluster, "web") == []


def test_deleted_pod_is_replaced_and_its_address_reused(example_cluster, apply, example_config):
    apply([deployment(replicas=1)])
    (pod,) = pods_of(example_cluster, "web")
    example_cluster.apply([Change(ObjectKey("Pod", "default", pod["metadata"]["name"]), None)])
    reconcile(example_cluster, example_config, random.Random(2))
    (new,) = pods_of(example_cluster, "web")
    assert new["metadata"]["name"] != pod["metadata"]["name"]
    # Lowest free address: the released one is handed out again.
    assert new["status"]["podIP"] == pod["status"]["podIP"]


def test_replicaset_scale_down_prefers_unscheduled_then_newest():
    rs = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": "r", "namespace": "d", "uid": "u1"},
        "spec": {"replicas": 1, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {}}},
    }
    ref = [{"kind": "ReplicaSet", "name": "r", "uid": "u1", "controller": True}]

    def pod(name: str, ts: str, node: str) -> dict[str, Any]:
        return {
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": "d",
                "creationTimestamp": ts,
                "ownerReferences": ref,
            },
            "spec": {"nodeName": node} if node else {},
            "status": {"phase": "Running" if node else "Pending"},
        }

    snap = Snapshot(
        [
            rs,
            pod("r-old", "2026-01-01T00:00:01Z", "n1"),
            pod("r-new", "2026-01-01T00:00:05Z", "n1"),
            pod("r-unsched", "2026-01-01T00:00:00Z", ""),
        ]
    )
    changes = compute_replicasets(snap, random.Random(0))
    deleted = {c.key.name for c in changes if c.object is None}
    assert deleted == {"r-unsched", "r-new"}


def daemonset(name: str = "agent", tolerations: list[Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "a", "image": "agent"}]}
    if tolerations is not None:
        spec["tolerations"] = tolerations
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": "kube-system"},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": spec},
        },
    }


def test_daemonset_runs_on_every_worker_not_the_tainted_control_plane(example_cluster, apply):
    apply([daemonset()])
    pods = pods_of(example_cluster, "agent")
    assert sorted(p["spec"]["nodeName"] for p in pods) == ["mycluster-worker", "mycluster-worker2"]
    for p in pods:
        assert p["status"]["phase"] == "Running"
        assert len(p["metadata"]["name"]) == len("agent-") + 5
    ds = example_cluster.get(ObjectKey("DaemonSet", "kube-system", "agent"))
    assert ds["status"]["desiredNumberScheduled"] == 2
    assert ds["status"]["numberReady"] == 2


def test_daemonset_with_toleration_includes_the_control_plane(example_cluster, apply):
    apply([daemonset(tolerations=[{"operator": "Exists"}])])
    nodes = sorted(p["spec"]["nodeName"] for p in pods_of(example_cluster, "agent"))
    assert nodes == ["mycluster-control-plane", "mycluster-worker", "mycluster-worker2"]
    cp = [p for p in pods_of(example_cluster, "agent") if p["spec"]["nodeName"].endswith("plane")]
    assert cp[0]["status"]["podIP"].startswith("10.10.0.")


def test_daemonset_template_change_replaces_pods(example_cluster, apply):
    apply([daemonset()])
    before = {p["metadata"]["name"] for p in pods_of(example_cluster, "agent")}
    ds = daemonset()
    ds["spec"]["template"]["spec"]["containers"][0]["image"] = "agent:2"
    apply([ds])
    after = pods_of(example_cluster, "agent")
    assert len(after) == 2
    assert before.isdisjoint({p["metadata"]["name"] for p in after})
    assert all(p["spec"]["containers"][0]["image"] == "agent:2" for p in after)


def statefulset(replicas: int = 3, image: str = "db") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}},
            "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {"containers": [{"name": "db", "image": image}]},
            },
        },
    }


def test_statefulset_ordinal_names_and_scaling(example_cluster, apply):
    apply([statefulset(3)])
    names = sorted(p["metadata"]["name"] for p in pods_of(example_cluster, "db"))
    assert names == ["db-0", "db-1", "db-2"]
    p0 = example_cluster.get(ObjectKey("Pod", "default", "db-0"))
    assert p0["spec"]["hostname"] == "db-0" and p0["spec"]["subdomain"] == "db"
    assert p0["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] == "db-0"
    apply([statefulset(1)])
    assert [p["metadata"]["name"] for p in pods_of(example_cluster, "db")] == ["db-0"]
    sts = example_cluster.get(ObjectKey("StatefulSet", "default", "db"))
    assert sts["status"]["replicas"] == 1 and sts["status"]["readyReplicas"] == 1


def test_statefulset_template_change_replaces_pods_in_place(example_cluster, apply):
    apply([statefulset(2, image="db:1")])
    apply([statefulset(2, image="db:2")])
    pods = pods_of(example_cluster, "db")
    assert sorted(p["metadata"]["name"] for p in pods) == ["db-0", "db-1"]
    assert all(p["spec"]["containers"][0]["image"] == "db:2" for p in pods)
    assert all(p["status"]["phase"] == "Running" for p in pods)


def test_revision_history_limit_prunes_old_replicasets(example_cluster, apply):
    for i in range(4):
        d = deployment(image=f"nginx:{i}")
        d["spec"]["revisionHistoryLimit"] = 1
        apply([d])
    rses = example_cluster.list("ReplicaSet")
    revisions = sorted(
        int(r["metadata"]["annotations"]["deployment.kubernetes.io/revision"]) for r in rses
    )
    assert revisions == [3, 4]  # the current one and one old one
    assert len(pods_of(example_cluster, "web")) == 2


def test_rollback_reuses_the_old_replicaset_as_newest_revision(example_cluster, apply):
    apply([deployment(image="nginx:1")])
    (first,) = example_cluster.list("ReplicaSet")
    apply([deployment(image="nginx:2")])
    apply([deployment(image="nginx:1")])
    rs = example_cluster.get(ObjectKey("ReplicaSet", "default", first["metadata"]["name"]))
    assert rs["spec"]["replicas"] == 2
    assert rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
    assert len(example_cluster.list("ReplicaSet")) == 2


def test_selector_is_immutable(example_cluster, apply):
    import pytest

    from ciliate.errors import DiagnosticError

    apply([deployment()])
    d = deployment()
    d["spec"]["selector"] = {"matchLabels": {"app": "web", "tier": "x"}}
    d["spec"]["template"]["metadata"]["labels"]["tier"] = "x"
    with pytest.raises(DiagnosticError) as e:
        apply([d])
    (diag,) = e.value.diagnostics
    assert diag.path == "spec.selector"
    assert diag.reason.endswith(": field is immutable")
