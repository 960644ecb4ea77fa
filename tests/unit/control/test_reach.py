"""reach: views from documents, the matrix shapes (JSON and truth table), and the map
walk per class pair agreeing with a pair-by-pair evaluation."""

from __future__ import annotations

from typing import Any

from ciliate.control.policy import compute_policy
from ciliate.control.reach import Matrix, build_view, explain_matrix, probe_maps, reach_matrix
from ciliate.model.cluster import ClusterConfig

Doc = dict[str, Any]


def pod(ns: str, name: str, ip: str = "", **labels: str) -> Doc:
    d: Doc = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"containers": [{"name": "c"}]},
    }
    if ip:
        d["status"] = {"podIP": ip}
    return d


def test_build_view_adds_namespaces_addresses_and_identities() -> None:
    v = build_view(ClusterConfig("c"), [pod("x", "a", "10.10.0.10", app="a"), pod("y", "b")])
    assert {n.meta.name for n in v.namespaces} == {"x", "y"}
    assert v.pod_ips["x/a"] == "10.10.0.10"
    assert v.pod_ips["y/b"] and v.pod_ips["y/b"] != "10.10.0.10"
    assert v.pod_identity["x/a"] >= 256 and v.pod_identity["x/a"] != v.pod_identity["y/b"]
    assert {1, 2, 6, 7}.issubset(v.identities)


def test_policy_without_namespace_lands_in_default() -> None:
    pol = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "p"},
        "spec": {"podSelector": {}},
    }
    v = build_view(ClusterConfig("c"), [pod("default", "a"), pod("default", "b"), pol])
    m = reach_matrix(v, 80)
    assert not m.allowed["default/a"]["default/b"]


def test_matrix_json_and_table() -> None:
    m = Matrix(
        80,
        "TCP",
        ("x/a", "x/b"),
        {"x/a": {"x/a": True, "x/b": False}, "x/b": {"x/a": True, "x/b": True}},
    )
    assert m.to_json() == {
        "port": 80,
        "protocol": "TCP",
        "pods": ["x/a", "x/b"],
        "matrix": {"x/a": {"x/a": True, "x/b": False}, "x/b": {"x/a": True, "x/b": True}},
    }
    assert m.table().splitlines() == ["     x/a x/b", "x/a  .   X", "x/b  .   ."]


def test_class_grouping_matches_pairwise_answers() -> None:
    docs = [
        pod(ns, f"{app}-{i}", f"10.10.{k}.{i + 1}", app=app)
        for k, (ns, app) in enumerate([("x", "web"), ("x", "db"), ("y", "web")])
        for i in range(3)
    ]
    docs.append(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "db", "namespace": "x"},
            "spec": {
                "podSelector": {"matchLabels": {"app": "db"}},
                "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}]}],
            },
        }
    )
    v = build_view(ClusterConfig("c"), docs)
    res = compute_policy(v.inputs())
    m = reach_matrix(v, 80, result=res)
    for a in m.pods:
        for b in m.pods:
            want = a == b or probe_maps(v, res, a, b, 80)[0]
            assert m.allowed[a][b] is want, (a, b)
    assert m == explain_matrix(v, 80)
    assert not m.allowed["y/web-0"]["x/db-1"] and m.allowed["x/web-2"]["x/db-0"]
