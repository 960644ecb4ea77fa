"""manifest.merge: kubectl apply's three-way merge."""

from __future__ import annotations

import json

from ciliate.manifest.merge import LAST_APPLIED, is_unchanged, last_applied, merge_applied


def pod(**spec: object) -> dict:  # type: ignore[type-arg]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": dict(spec)}


def test_first_apply_records_the_manifest() -> None:
    out = merge_applied(None, pod(image="a"))
    assert out["spec"] == {"image": "a"}
    assert json.loads(out["metadata"]["annotations"][LAST_APPLIED]) == pod(image="a")


def test_controller_fields_survive_a_reapply() -> None:
    live = merge_applied(None, pod(image="a"))
    live["spec"]["nodeName"] = "worker"  # the scheduler
    live["metadata"]["annotations"]["k8s.v1.cni.cncf.io/network-status"] = "[]"  # multus
    live["metadata"].update(uid="u", resourceVersion="9")
    live["status"] = {"podIP": "10.0.0.1"}
    again = merge_applied(live, pod(image="a"))
    assert again["spec"] == {"image": "a", "nodeName": "worker"}
    assert "k8s.v1.cni.cncf.io/network-status" in again["metadata"]["annotations"]
    assert "status" not in again and "uid" not in again["metadata"]
    assert is_unchanged(live, again)


def test_fields_removed_from_the_manifest_are_removed() -> None:
    live = merge_applied(None, pod(image="a", hostNetwork=True))
    live["spec"]["nodeName"] = "worker"
    out = merge_applied(live, pod(image="b"))
    assert out["spec"] == {"image": "b", "nodeName": "worker"}
    assert not is_unchanged(live, out)
    assert last_applied(out) == pod(image="b")


def test_objects_without_a_record_keep_everything_not_given() -> None:
    live = pod(image="a", hostNetwork=True)
    assert merge_applied(live, pod(image="b"))["spec"] == {"image": "b", "hostNetwork": True}
    live["metadata"]["annotations"] = {LAST_APPLIED: "not json"}
    assert last_applied(live) == {}


def test_lists_are_replaced_whole() -> None:
    live = merge_applied(None, pod(containers=[{"name": "a"}, {"name": "b"}]))
    assert merge_applied(live, pod(containers=[{"name": "a"}]))["spec"]["containers"] == [
        {"name": "a"}
    ]
