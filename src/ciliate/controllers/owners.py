"""Owner references and garbage collection (the kube-controller-manager GC, collapsed).

Role: ``owner_reference`` builds the metadata.ownerReferences entry a controller puts
on what it creates; ``compute_garbage`` deletes every object whose owners are all gone
(Kubernetes' background cascading deletion: deleting a Deployment removes its
ReplicaSets, then their Pods, one reconcile round per level).

An owner matches a reference when kind and name match in the dependent's namespace
(or cluster-wide for cluster-scoped owners) and, when both sides carry a uid, the uids
match too, so an owner deleted and re-created under the same name does not adopt the
old dependents.

Inputs: a ``Snapshot``. Outputs: ``Change`` deletes. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ciliate.controllers.snapshot import Snapshot, delete, key_of
from ciliate.model.meta import Doc, is_namespaced
from ciliate.store.api import Change


def owner_reference(owner: Doc, controller: bool = True) -> dict[str, Any]:
    m = owner.get("metadata") or {}
    ref: dict[str, Any] = {
        "apiVersion": owner.get("apiVersion", ""),
        "kind": owner.get("kind", ""),
        "name": m.get("name", ""),
        "uid": m.get("uid", ""),
    }
    if controller:
        ref["controller"] = True
        ref["blockOwnerDeletion"] = True
    return ref


def owner_refs(doc: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return list((doc.get("metadata") or {}).get("ownerReferences") or ())


def controller_ref(doc: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for r in owner_refs(doc):
        if r.get("controller"):
            return r
    return None


def is_controlled_by(doc: Mapping[str, Any], owner: Mapping[str, Any]) -> bool:
    """Whether ``owner`` is the controller of ``doc`` (kind, name, and uid when known)."""
    ref = controller_ref(doc)
    if ref is None:
        return False
    om = owner.get("metadata") or {}
    if ref.get("kind") != owner.get("kind") or ref.get("name") != om.get("name"):
        return False
    ref_uid, owner_uid = ref.get("uid") or "", om.get("uid") or ""
    return not (ref_uid and owner_uid and ref_uid != owner_uid)


def _owner_exists(snap: Snapshot, namespace: str, ref: Mapping[str, Any]) -> bool:
    kind = str(ref.get("kind", ""))
    ns = namespace if is_namespaced(kind) else ""
    owner = snap.find(kind, ns, str(ref.get("name", "")))
    if owner is None:
        return False
    ref_uid = ref.get("uid") or ""
    owner_uid = (owner.get("metadata") or {}).get("uid") or ""
    return not (ref_uid and owner_uid and ref_uid != owner_uid)


def compute_garbage(snap: Snapshot) -> list[Change]:
    """Delete every object that has owner references and none of whose owners exists."""
    out: list[Change] = []
    for doc in snap.all():
        refs = owner_refs(doc)
        if not refs:
            continue
        ns = str((doc.get("metadata") or {}).get("namespace", "") or "")
        if not any(_owner_exists(snap, ns, r) for r in refs):
            out.append(delete(doc))
    return out


def fill_owner_uids(snap: Snapshot) -> list[Change]:
    """Put the owner's uid into references created before the owner had one.

    Controllers create owner and dependents in the same round, before the store has
    assigned the owner a uid; once it has, the references are completed.
    """
    out: list[Change] = []
    for doc in snap.all():
        refs = owner_refs(doc)
        if not refs or all(r.get("uid") for r in refs):
            continue
        ns = str((doc.get("metadata") or {}).get("namespace", "") or "")
        new_refs: list[dict[str, Any]] = []
        changed = False
        for r in refs:
            nr = dict(r)
            if not nr.get("uid"):
                kind = str(r.get("kind", ""))
                owner = snap.find(kind, ns if is_namespaced(kind) else "", str(r.get("name", "")))
                uid = ((owner or {}).get("metadata") or {}).get("uid") or ""
                if uid:
                    nr["uid"] = uid
                    changed = True
            new_refs.append(nr)
        if changed:
            new = dict(doc)
            new["metadata"] = {**doc["metadata"], "ownerReferences": new_refs}
            out.append(Change(key_of(new), new))
    return out
