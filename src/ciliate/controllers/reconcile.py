"""The reconciler: run the controllers to a fixed point over the store.

Role: each round reads one snapshot of the store, runs the controllers in the order
Kubernetes' components would act on a change, each on the snapshot with the previous
controllers' changes folded in, and writes the net difference in one atomic store
batch. Rounds repeat until one produces no change (a fixed point) or ``max_rounds``
pass (then the last state stays written: reconcile failures become state, never a
crash, and the next call continues from there).

Order within a round:

1. namespaces: objects of deleted namespaces go, namespace labels are completed;
2. garbage collection by ownerReferences (and owner uids completed);
3. workloads: Deployment -> ReplicaSet -> Pods, DaemonSet, StatefulSet;
4. scheduler: pods without a node are bound;
5. pod network: bound pods get addresses (IPAM) and start;
6. multus: started pods asking for secondary networks get their network-status;
7. endpointslices: services' slices follow the pods.

Inputs: a ``Store`` and the cluster config; randomness for generated names comes from
an injected ``random.Random`` (by default seeded from the store's resourceVersion, so
the same history gives the same names). Output: the number of object changes written.
Must not import cli, agent, datapath or observe.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from ciliate.controllers.endpointslices import compute_endpointslices
from ciliate.controllers.multus import compute_network_status
from ciliate.controllers.namespaces import compute_namespaces
from ciliate.controllers.owners import compute_garbage, fill_owner_uids
from ciliate.controllers.podnetwork import compute_pod_network
from ciliate.controllers.scheduler import compute_scheduling
from ciliate.controllers.snapshot import Snapshot, net_changes
from ciliate.controllers.workloads import compute_workloads
from ciliate.model.cluster import ClusterConfig
from ciliate.store.api import Change, ObjectKey, Store, apply_unless_changed

# Rounds of optimistic retries before giving up when other writers keep racing us.
RECONCILE_ATTEMPTS = 50

Controller = Callable[[Snapshot], list[Change]]


def controllers(config: ClusterConfig, rng: random.Random) -> Sequence[tuple[str, Controller]]:
    return (
        ("namespaces", compute_namespaces),
        ("garbage", compute_garbage),
        ("owner-uids", fill_owner_uids),
        ("workloads", lambda s: compute_workloads(s, rng)),
        ("scheduler", lambda s: compute_scheduling(s, config)),
        ("pod-network", lambda s: compute_pod_network(s, config)),
        ("multus", compute_network_status),
        ("endpointslices", lambda s: compute_endpointslices(s, rng)),
    )


def compute_round(snap: Snapshot, config: ClusterConfig, rng: random.Random) -> list[Change]:
    """One round over a snapshot: the net changes of every controller in order."""
    work = snap
    touched: set[ObjectKey] = set()
    for _name, ctl in controllers(config, rng):
        changes = ctl(work)
        touched.update(c.key for c in changes)
        work = work.with_changes(changes)
    return net_changes(snap, work, touched)


def reconcile(
    store: Store,
    config: ClusterConfig,
    rng: random.Random | None = None,
    max_rounds: int = 20,
) -> int:
    """Run the controllers until nothing changes; return the number of changes written."""
    if rng is None:
        rng = random.Random(store.resource_version())
    total = 0

    def one_round() -> tuple[list[Change], int]:
        changes = compute_round(Snapshot(store.list()), config, rng)
        return changes, len(changes)

    for _ in range(max_rounds):
        # Written only if nobody wrote since the snapshot: two processes reconciling at
        # once (two `apply`s, or `apply` and the agent) never act on the same reading,
        # so they cannot both create the missing replica or hand out the same address.
        n = apply_unless_changed(
            store,
            one_round,
            attempts=RECONCILE_ATTEMPTS,
            gave_up="reconcile: the store kept changing under the controllers; run the "
            "command again",
        )
        if not n:
            break
        total += n
    return total
