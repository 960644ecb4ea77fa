"""Multus: secondary interfaces get host-local addresses in the network-status."""

from __future__ import annotations

import json
from typing import Any

from ciliate.controllers.multus import Attachment, host_local, requested_networks
from ciliate.store.api import ObjectKey


def example(examples_dir, read_docs) -> list[dict[str, Any]]:
    docs = read_docs(examples_dir / "ebook" / "multus-macvlan.yaml")
    for d in docs:  # what the decoder does with a namespaced object without one
        d["metadata"].setdefault("namespace", "default")
    return docs


def status(store, name: str) -> list[dict[str, Any]]:
    p = store.get(ObjectKey("Pod", "default", name))
    assert p is not None
    return json.loads(p["metadata"]["annotations"]["k8s.v1.cni.cncf.io/network-status"])


def sample(name: str, networks: str = "macvlan-conf", node: str = "") -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "alpine"}]}
    if node:
        spec["nodeName"] = node
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "default",
            "annotations": {"k8s.v1.cni.cncf.io/networks": networks},
        },
        "spec": spec,
    }


def test_the_ebook_example_gets_net1_from_the_range(
    example_cluster, apply, examples_dir, read_docs
):
    apply(example(examples_dir, read_docs))
    p = example_cluster.get(ObjectKey("Pod", "default", "samplepod"))
    st = status(example_cluster, "samplepod")
    assert st[0] == {
        "name": "cilium",
        "interface": "eth0",
        "ips": [p["status"]["podIP"]],
        "default": True,
        "dns": {},
    }
    assert st[1]["name"] == "default/macvlan-conf"
    assert st[1]["interface"] == "net1"
    assert st[1]["ips"] == ["192.168.1.200"]
    assert st[1]["gateway"] == ["192.168.1.1"]
    assert len(st[1]["mac"]) == 17


def test_host_local_state_is_per_node(example_cluster, apply, examples_dir, read_docs):
    nad = [d for d in example(examples_dir, read_docs) if d["kind"] != "Pod"]
    apply(
        [
            *nad,
            sample("a", node="mycluster-worker"),
            sample("b", node="mycluster-worker"),
            sample("c", node="mycluster-worker2"),
        ]
    )
    assert status(example_cluster, "a")[1]["ips"] == ["192.168.1.200"]
    assert status(example_cluster, "b")[1]["ips"] == ["192.168.1.201"]
    assert status(example_cluster, "c")[1]["ips"] == ["192.168.1.200"]


def test_missing_definition_is_reported_on_the_pod(example_cluster, apply):
    apply([sample("a", networks="nowhere@macv0")])
    entry = status(example_cluster, "a")[1]
    assert entry["interface"] == "macv0"
    assert entry["error"] == "NetworkAttachmentDefinition default/nowhere not found"


def test_annotation_forms():
    assert requested_networks(sample("p", "a, other/b@eth9")) == [
        Attachment("default", "a", ""),
        Attachment("other", "b", "eth9"),
    ]
    js = json.dumps([{"name": "a", "interface": "x"}, {"name": "b", "namespace": "n"}])
    assert requested_networks(sample("p", js)) == [
        Attachment("default", "a", "x"),
        Attachment("n", "b", ""),
    ]


def test_host_local_forms():
    nad = {"spec": {"config": json.dumps({"plugins": [{"type": "macvlan", "ipam": {
        "type": "host-local", "ranges": [[{"subnet": "10.1.0.0/29"}]]}}]})}}  # fmt: skip
    r = host_local(nad)
    assert not isinstance(r, str)
    assert (r.start, r.end, r.gateway) == (0x0A010001, 0x0A010006, "10.1.0.1")
    assert host_local({"spec": {"config": "{"}}).startswith("invalid CNI config")
    assert host_local({"spec": {"config": '{"ipam": {"type": "dhcp"}}'}}) == (
        "no host-local IPAM in the CNI config"
    )
