"""Namespaces: labels, deletion of everything inside, and orphaned objects."""

from __future__ import annotations

import random

from ciliate.controllers.namespaces import compute_namespaces
from ciliate.controllers.reconcile import reconcile
from ciliate.controllers.snapshot import Snapshot
from ciliate.store.api import Change, ObjectKey


def test_deleting_a_namespace_deletes_its_contents(networking101, example_config):
    assert networking101.list("Pod", "networking101")
    networking101.apply([Change(ObjectKey("Namespace", "", "networking101"), None)])
    reconcile(networking101, example_config, random.Random(0))
    for kind in ("Deployment", "ReplicaSet", "Pod"):
        assert networking101.list(kind, "networking101") == []
    # Other namespaces and cluster objects stay.
    assert networking101.get(ObjectKey("Service", "default", "kubernetes")) is not None
    assert len(networking101.list("Node")) == 3


def test_namespace_label_is_repaired_and_cluster_scoped_objects_are_left_alone():
    snap = Snapshot(
        [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}},
            {"kind": "SomethingClusterScoped", "metadata": {"name": "x"}},
        ]
    )
    (ch,) = compute_namespaces(snap)
    assert ch.object is not None
    assert ch.object["metadata"]["labels"] == {"kubernetes.io/metadata.name": "a"}


def test_kubernetes_service_slice_is_not_managed_by_the_controller(example_cluster, example_config):
    before = example_cluster.get(ObjectKey("EndpointSlice", "default", "kubernetes"))
    reconcile(example_cluster, example_config, random.Random(0))
    assert example_cluster.get(ObjectKey("EndpointSlice", "default", "kubernetes")) == before


def test_pod_on_a_missing_node(example_cluster, apply):
    apply(
        [
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "lost", "namespace": "default"},
                "spec": {"nodeName": "nowhere", "containers": []},
            }
        ]
    )
    p = example_cluster.get(ObjectKey("Pod", "default", "lost"))
    assert p["status"]["phase"] == "Pending"
    assert p["status"]["message"] == 'node "nowhere" not found'


def test_a_broken_object_gets_a_condition_and_the_others_reconcile():
    from ciliate.controllers.workloads import compute_deployments

    bad = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "bad", "namespace": "default"},
        "spec": {"replicas": "many", "template": {}},
    }
    good = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "good", "namespace": "default"},
        "spec": {"replicas": 1, "template": {"metadata": {"labels": {"a": "b"}}}},
    }
    changes = compute_deployments(Snapshot([bad, good]))
    by_name = {c.key.name: c.object for c in changes}
    cond = by_name["bad"]["status"]["conditions"][-1]
    assert cond["type"] == "ReconcileError" and "ValueError" in cond["message"]
    assert any(n.startswith("good-") for n in by_name)
    # Applying the condition again changes nothing.
    assert compute_deployments(Snapshot([by_name["bad"]])) == []


def test_ipam_summaries(networking101, example_config):
    from ciliate.controllers.podnetwork import ipam_summaries

    got = ipam_summaries(networking101.list("Pod"), example_config)
    assert got == {
        "mycluster-control-plane": "IPv4: 2/254 allocated from 10.10.0.0/24",
        "mycluster-worker": "IPv4: 4/254 allocated from 10.10.2.0/24",
        "mycluster-worker2": "IPv4: 4/254 allocated from 10.10.1.0/24",
    }
