"""Namespaces: the defaults of a new cluster, the metadata.name label, and deletion.

Role:

- ``default_namespaces()``: default, kube-system, kube-public, kube-node-lease, as a
  new Kubernetes cluster has them.
- ``namespace_label``: every namespace carries ``kubernetes.io/metadata.name=<name>``
  (the API server sets it on create and update since 1.21; admission calls this, and
  ``compute_namespaces`` repairs any namespace written without it).
- ``compute_namespaces``: deleting a namespace deletes everything in it (the namespace
  controller's cleanup, collapsed to one step): namespaced objects whose namespace
  does not exist are deleted.

Inputs: a ``Snapshot``. Outputs: ``Change`` lists. Pure.
"""

from __future__ import annotations

from ciliate.controllers.podstate import labels_of, name_of, namespace_of
from ciliate.controllers.snapshot import Snapshot, delete, put
from ciliate.model.meta import Doc, is_namespaced
from ciliate.store.api import Change

METADATA_NAME_LABEL = "kubernetes.io/metadata.name"
DEFAULT_NAMESPACES = ("default", "kube-node-lease", "kube-public", "kube-system")


def namespace_doc(name: str) -> Doc:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {METADATA_NAME_LABEL: name}},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }


def default_namespaces() -> list[Doc]:
    return [namespace_doc(n) for n in DEFAULT_NAMESPACES]


def namespace_label(doc: Doc) -> Doc:
    """``doc`` (a Namespace) with its metadata.name label; the same dict if present."""
    name = name_of(doc)
    if labels_of(doc).get(METADATA_NAME_LABEL) == name:
        return doc
    new = dict(doc)
    m = dict(doc.get("metadata") or {})
    m["labels"] = {**(m.get("labels") or {}), METADATA_NAME_LABEL: name}
    new["metadata"] = m
    return new


def compute_namespaces(snap: Snapshot) -> list[Change]:
    out: list[Change] = []
    existing = {name_of(n) for n in snap.list("Namespace")}
    for ns in snap.list("Namespace"):
        labelled = namespace_label(ns)
        if labelled is not ns:
            out.append(put(labelled))
    for kind in snap.kinds():
        if not is_namespaced(kind):
            continue
        for doc in snap.list(kind):
            # An empty namespace means the kind is cluster-scoped after all (a kind
            # the model does not list): never treat it as orphaned.
            where = namespace_of(doc)
            if where and where not in existing:
                out.append(delete(doc))
    return out
