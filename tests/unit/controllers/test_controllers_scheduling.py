"""Scheduler filters and scoring, and the pod network (IPAM into pod status)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from ciliate.controllers.cluster import cluster_objects
from ciliate.controllers.clusterconfig import kind_cluster
from ciliate.controllers.reconcile import reconcile
from ciliate.controllers.scheduler import node_is_eligible, tolerates
from ciliate.errors import DiagnosticError
from ciliate.model.cluster import ClusterConfig, NodeConfig
from ciliate.store.api import ObjectKey


def pod(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": name}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}], **spec},
    }


def get_pod(store, name: str) -> dict[str, Any]:
    p = store.get(ObjectKey("Pod", "default", name))
    assert p is not None
    return p


@pytest.mark.parametrize(
    ("toleration", "ok"),
    [
        ({"operator": "Exists"}, True),
        ({"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}, True),
        ({"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}, True),
        ({"key": "node-role.kubernetes.io/control-plane", "effect": "NoExecute"}, False),
        ({"key": "other", "operator": "Exists"}, False),
        ({"key": "node-role.kubernetes.io/control-plane", "value": "x"}, False),
    ],
)
def test_tolerations(toleration, ok):
    taint = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}
    assert tolerates(toleration, taint) is ok


def test_node_selector_and_affinity():
    node = {"metadata": {"name": "n", "labels": {"disk": "ssd", "zone": "a"}}, "spec": {}}
    assert node_is_eligible(node, {"nodeSelector": {"disk": "ssd"}})
    assert not node_is_eligible(node, {"nodeSelector": {"disk": "hdd"}})
    aff = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]},
                    {"matchExpressions": [{"key": "disk", "operator": "Exists"}]},
                ]
            }
        }
    }
    assert node_is_eligible(node, {"affinity": aff})
    assert not node_is_eligible({**node, "spec": {"unschedulable": True}}, {})


def test_bare_pods_go_to_workers_and_honor_node_name(example_cluster, apply):
    apply([pod("a"), pod("b", nodeName="mycluster-control-plane")])
    assert get_pod(example_cluster, "a")["spec"]["nodeName"] == "mycluster-worker"
    b = get_pod(example_cluster, "b")
    # nodeName bypasses the scheduler (and so the taint), as in Kubernetes.
    assert b["spec"]["nodeName"] == "mycluster-control-plane"
    assert b["status"]["podIP"] == "10.10.0.2"  # .1 is the health IP, .54 the router


def test_node_selector_picks_the_labelled_node(example_cluster, apply):
    apply([pod("a", nodeSelector={"kubernetes.io/hostname": "mycluster-worker2"})])
    assert get_pod(example_cluster, "a")["spec"]["nodeName"] == "mycluster-worker2"


def test_unschedulable_pod_stays_pending_with_a_reason(example_cluster, apply):
    apply([pod("a", nodeSelector={"disk": "ssd"})])
    p = get_pod(example_cluster, "a")
    assert "nodeName" not in p["spec"]
    assert p["status"]["phase"] == "Pending"
    (cond,) = p["status"]["conditions"]
    assert cond["type"] == "PodScheduled" and cond["status"] == "False"
    assert cond["reason"] == "Unschedulable"
    assert cond["message"] == (
        "0/3 nodes are available: 1 node(s) had untolerated taint "
        "{node-role.kubernetes.io/control-plane: }, "
        "2 node(s) didn't match Pod's node affinity/selector."
    )


def test_pod_with_given_address_keeps_it_and_lands_on_its_node(example_cluster, apply):
    p = pod("fixed")
    p["status"] = {"podIP": "10.10.1.164"}
    apply([p, pod("other")])
    got = get_pod(example_cluster, "fixed")
    assert got["spec"]["nodeName"] == "mycluster-worker2"
    assert got["status"]["podIP"] == "10.10.1.164"
    assert got["status"]["phase"] == "Running"


def test_given_address_outside_every_node_cidr_is_refused(example_cluster, apply):
    p = pod("fixed")
    p["status"] = {"podIP": "10.20.0.5"}
    with pytest.raises(DiagnosticError) as e:
        apply([p])
    (d,) = e.value.diagnostics
    assert d.path == "status.podIP"
    assert "not inside any node's podCIDR" in d.reason


def test_given_address_already_held_is_refused(example_cluster, apply):
    apply([pod("a")])
    taken = get_pod(example_cluster, "a")["status"]["podIP"]
    p = pod("b")
    p["status"] = {"podIP": taken}
    with pytest.raises(DiagnosticError) as e:
        apply([p])
    assert "already allocated to pod default/a" in e.value.diagnostics[0].reason


def test_reapplying_a_bound_pod_keeps_node_and_address(example_cluster, apply):
    apply([pod("a")])
    first = get_pod(example_cluster, "a")
    apply([pod("a")])
    again = get_pod(example_cluster, "a")
    assert again["spec"]["nodeName"] == first["spec"]["nodeName"]
    assert again["status"]["podIP"] == first["status"]["podIP"]


def small_cluster() -> ClusterConfig:
    # One worker with a /29: 6 usable addresses, 2 reserved -> room for 4 pods.
    cfg = ClusterConfig(
        name="tiny",
        pod_cidr="10.10.0.0/16",
        pod_cidr_mask_size=29,
        nodes=(
            NodeConfig(name="tiny-control-plane", internal_ip="172.18.0.2", role="control-plane"),
            NodeConfig(name="tiny-worker", internal_ip="172.18.0.3"),
        ),
    )
    from ciliate.control.ipam import resolve_config

    return resolve_config(cfg)


def test_exhaustion_is_reported_in_pod_status_and_recovers(new_store):
    cfg = small_cluster()
    store = new_store()
    store.put_docs(cluster_objects(cfg))
    store.put_docs([pod(f"p{i}") for i in range(5)])
    reconcile(store, cfg, random.Random(0))
    pods = {p["metadata"]["name"]: p for p in store.list("Pod")}
    running = [n for n, p in pods.items() if p["status"]["phase"] == "Running"]
    assert len(running) == 4
    (stuck,) = [p for p in pods.values() if p["status"]["phase"] == "Pending"]
    st = stuck["status"]
    assert st["message"] == "IPAM: no free address in 10.10.0.8/29"
    assert st["reason"] == "IPAMExhausted"
    assert {"type": "PodScheduled", "status": "True"} in st["conditions"]
    assert "podIP" not in st
    # Free one address: the stuck pod gets it on the next reconcile.
    from ciliate.store.api import Change

    victim = running[0]
    freed = pods[victim]["status"]["podIP"]
    store.apply([Change(ObjectKey("Pod", "default", victim), None)])
    reconcile(store, cfg, random.Random(0))
    now = store.get(ObjectKey("Pod", "default", stuck["metadata"]["name"]))
    assert now["status"]["phase"] == "Running"
    assert now["status"]["podIP"] == freed
    assert "message" not in now["status"]


def test_host_network_pod_uses_the_node_address(example_cluster, apply):
    apply([pod("h", hostNetwork=True)])
    p = get_pod(example_cluster, "h")
    assert p["status"]["podIP"] == p["status"]["hostIP"] == "172.18.0.2"


def test_kind_cluster_spreads_over_all_workers(new_store):
    cfg = kind_cluster("lab", 4)
    store = new_store()
    store.put_docs(cluster_objects(cfg))
    d = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "w", "namespace": "default"},
        "spec": {
            "replicas": 6,
            "selector": {"matchLabels": {"app": "w"}},
            "template": {"metadata": {"labels": {"app": "w"}}, "spec": {"containers": []}},
        },
    }
    store.put_docs([d])
    reconcile(store, cfg, random.Random(0))
    nodes = [p["spec"]["nodeName"] for p in store.list("Pod")]
    assert sorted(nodes) == sorted(["lab-worker", "lab-worker2", "lab-worker3"] * 2)


def test_single_node_cluster_runs_pods_on_the_control_plane(new_store):
    cfg = kind_cluster("solo", 1)
    store = new_store()
    store.put_docs(cluster_objects(cfg))
    store.put_docs([pod("a")])
    reconcile(store, cfg, random.Random(0))
    p = get_pod(store, "a")
    assert p["spec"]["nodeName"] == "solo-control-plane"
    assert p["status"]["phase"] == "Running"


def test_an_address_handed_out_twice_is_repaired(example_cluster, apply, example_config):
    # Two writers reconciling from one old snapshot could give two pods one address.
    from ciliate.controllers.snapshot import put

    apply(
        [
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "w", "namespace": "default"},
                "spec": {
                    "replicas": 2,
                    "selector": {"matchLabels": {"app": "w"}},
                    "template": {"metadata": {"labels": {"app": "w"}}, "spec": {}},
                },
            }
        ]
    )
    pods = sorted(example_cluster.list("Pod"), key=lambda p: p["metadata"]["creationTimestamp"])
    old, young = pods
    clash = {
        **young,
        "spec": {**young["spec"], "nodeName": old["spec"]["nodeName"]},
        "status": {**young["status"], "podIP": old["status"]["podIP"]},
    }
    example_cluster.apply([put(clash)])
    reconcile(example_cluster, example_config, random.Random(0))
    a = get_pod(example_cluster, old["metadata"]["name"])
    b = get_pod(example_cluster, young["metadata"]["name"])
    assert a["status"]["podIP"] == old["status"]["podIP"]
    assert b["status"]["podIP"] != a["status"]["podIP"]
    assert b["status"]["phase"] == "Running"
