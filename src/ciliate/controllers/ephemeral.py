"""The ephemeral cluster: manifests alone turned into a reconciled cluster in memory, to
answer questions about the files (``reach -f``, ``trace -f``, ``policy explain -f``;
the kernel ``reach --datapath kernel -f`` seeds its store with the same objects).

Inputs: decoded documents, optionally a cluster config. Outputs: every object after the
controllers converged (Deployments turned into pods, pods scheduled and addressed), and
the config. kind-style nodes (``kind_cluster``: 3, more when the pods would not fit a /24
each); namespaces the files use but do not declare are created, since an ephemeral
cluster is for answering questions, not for refusing files. The controllers' random
choices are seeded, so the same files always give the same cluster (and the same JSON
from both datapaths).

Pure (no store, no I/O); must not import cli, agent, datapath or observe.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from ciliate.controllers.cluster import cluster_objects
from ciliate.controllers.clusterconfig import kind_cluster
from ciliate.controllers.reconcile import compute_round
from ciliate.controllers.snapshot import Snapshot
from ciliate.model.cluster import ClusterConfig
from ciliate.model.meta import Doc, is_namespaced

EPHEMERAL_CLUSTER = "reach"
EPHEMERAL_NODES = 3  # kind's default three-node cluster
PODS_PER_NODE = 200  # a /24 per node, with room to spare
MAX_ROUNDS = 20  # reconcile rounds; the controllers converge in a few


def ephemeral_node_count(docs: Sequence[Doc]) -> int:
    """kind's 3 nodes, more when the pods would not fit the /24 pod CIDR per node."""
    pods = 0
    for d in docs:
        kind = d.get("kind")
        if kind == "Pod":
            pods += 1
        elif kind in ("Deployment", "ReplicaSet", "StatefulSet"):
            pods += int((d.get("spec") or {}).get("replicas", 1) or 0)
    return max(EPHEMERAL_NODES, -(-pods // PODS_PER_NODE))


def ephemeral_docs(
    docs: Sequence[Doc], config: ClusterConfig | None = None
) -> tuple[list[Doc], ClusterConfig]:
    """Manifests + default kind-style nodes, reconciled in memory (no store)."""
    cfg = config or kind_cluster(EPHEMERAL_CLUSTER, ephemeral_node_count(docs))
    base = cluster_objects(cfg)
    have = {str((d.get("metadata") or {}).get("name")) for d in [*base, *docs]
            if d.get("kind") == "Namespace"}  # fmt: skip
    used = {
        str((d.get("metadata") or {}).get("namespace") or "default")
        for d in docs
        if is_namespaced(str(d.get("kind", "")))
    }
    implied = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}}
        for n in sorted(used - have)
    ]
    snap = Snapshot([*base, *implied, *docs])
    rng = random.Random(0)
    for _ in range(MAX_ROUNDS):
        changes = compute_round(snap, cfg, rng)
        if not changes:
            break
        snap = snap.with_changes(changes)
    return snap.all(), cfg
