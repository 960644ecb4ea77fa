"""Creating a cluster in a store: what ``kind create cluster`` leaves behind.

Role: ``cluster_objects(config)`` lists the objects of a new cluster: the stored
config (``Cluster/cluster``), the default namespaces, the Nodes, and the
``default/kubernetes`` service with its EndpointSlice. ``create_cluster`` writes
them in one batch (refusing a store that already holds a cluster) and reconciles.

Inputs: a resolved ``ClusterConfig`` and a ``Store``. Outputs: documents / store
writes. Must not import cli, agent, datapath or observe.
"""

from __future__ import annotations

import random

from ciliate.controllers.clusterconfig import CLUSTER_KEY, cluster_doc, config_from_doc
from ciliate.controllers.endpointslices import kubernetes_service_docs
from ciliate.controllers.namespaces import default_namespaces
from ciliate.controllers.nodes import node_docs
from ciliate.controllers.reconcile import reconcile
from ciliate.controllers.snapshot import put
from ciliate.errors import ConflictError
from ciliate.model.cluster import ClusterConfig
from ciliate.model.meta import Doc
from ciliate.store.api import Store


def cluster_objects(config: ClusterConfig) -> list[Doc]:
    return [
        cluster_doc(config),
        *default_namespaces(),
        *node_docs(config),
        *kubernetes_service_docs(config),
    ]


def create_cluster(
    store: Store, config: ClusterConfig, rng: random.Random | None = None
) -> ClusterConfig:
    """Write a new cluster; ``ConflictError`` if the store already has one."""
    existing = store.get(CLUSTER_KEY)
    if existing is not None:
        name = config_from_doc(existing).name
        raise ConflictError(
            f'a cluster ("{name}") already exists in this state directory: '
            "run `ciliate cluster delete` first, or use another --state"
        )
    store.apply([put(d) for d in cluster_objects(config)])
    reconcile(store, config, rng)
    return config
