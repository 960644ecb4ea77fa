"""Workload controllers: Deployment -> ReplicaSet -> Pods, DaemonSet, StatefulSet.

Role: what kube-controller-manager's deployment, replicaset, daemonset and statefulset
controllers do, collapsed to one step per reconcile round and without a container
runtime:

- Deployment: the ReplicaSet for the current pod template is named
  ``<deploy>-<pod-template-hash>`` and scaled to ``spec.replicas``; every other
  ReplicaSet it owns is scaled to 0 (a rolling update collapsed to one step; old
  ReplicaSets are kept at 0 as revision history, like ``revisionHistoryLimit``).
- ReplicaSet: creates ``<rs>-<5 random chars>`` pods until ``spec.replicas`` active
  pods exist; scales down by deleting, in Kubernetes' order (controller.ActivePods):
  unscheduled before scheduled, pending before running, not ready before ready, then
  the newest first.
- DaemonSet: one pod ``<ds>-<5 chars>`` per eligible node with ``spec.nodeName`` set
  (eligible: nodeSelector matches and every NoSchedule/NoExecute taint is tolerated;
  the control-plane taint is not tolerated implicitly); pods of an old template or on
  an ineligible node are deleted and replaced.
- StatefulSet: ordinal pods ``<sts>-0 .. <sts>-N-1`` with hostname/subdomain set;
  scale down removes the highest ordinals; a template change replaces every pod.

Status fields (replicas, readyReplicas, availableReplicas, updatedReplicas, ...) are
recomputed from the pods so ``get deploy`` shows READY 2/2.

pod-template-hash: Kubernetes hashes the template with FNV-32a and encodes the decimal
form of the hash with ``rand.SafeEncodeString`` (each digit mapped into the alphabet
"bcdfghjklmnpqrstvwxz2456789"); the input here is the template's canonical JSON.

Inputs: a ``Snapshot`` and a ``random.Random`` (injected, for name suffixes).
Outputs: ``Change`` lists. Pure apart from the injected generator.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ciliate.controllers.failures import guarded
from ciliate.controllers.owners import is_controlled_by, owner_reference
from ciliate.controllers.podstate import (
    creation_order,
    is_active,
    is_ready,
    labels_of,
    meta,
    name_of,
    namespace_of,
    node_name,
    phase,
)
from ciliate.controllers.scheduler import node_is_eligible
from ciliate.controllers.snapshot import Snapshot, delete, put
from ciliate.model.meta import Doc
from ciliate.store.api import Change

SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
POD_TEMPLATE_HASH = "pod-template-hash"
CONTROLLER_REVISION_HASH = "controller-revision-hash"
STS_POD_NAME = "statefulset.kubernetes.io/pod-name"
STS_POD_INDEX = "apps.kubernetes.io/pod-index"
DS_TEMPLATE_GENERATION = "pod-template-generation"
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"

_FNV32_OFFSET = 0x811C9DC5
_FNV32_PRIME = 0x01000193


def fnv32a(data: bytes) -> int:
    h = _FNV32_OFFSET
    for b in data:
        h ^= b
        h = (h * _FNV32_PRIME) & 0xFFFFFFFF
    return h


def safe_encode(text: str) -> str:
    """apimachinery rand.SafeEncodeString: each character mapped into the alphabet."""
    return "".join(SAFE_ALPHABET[ord(c) % len(SAFE_ALPHABET)] for c in text)


def pod_template_hash(template: Mapping[str, Any]) -> str:
    canonical = json.dumps(template, sort_keys=True, separators=(",", ":"))
    return safe_encode(str(fnv32a(canonical.encode())))


def random_suffix(rng: random.Random, length: int = 5) -> str:
    """utilrand.String: ``length`` characters of the safe alphabet."""
    return "".join(rng.choice(SAFE_ALPHABET) for _ in range(length))


def _replicas(spec: Mapping[str, Any]) -> int:
    r = spec.get("replicas")
    return 1 if r is None else max(int(r), 0)


def _template(doc: Mapping[str, Any]) -> dict[str, Any]:
    return dict((doc.get("spec") or {}).get("template") or {})


def _put_status(doc: Doc, status: dict[str, Any]) -> list[Change]:
    """The change that gives ``doc`` this ``status``; none when it already has exactly it."""
    if doc.get("status") == status:
        return []
    return [put({**doc, "status": status})]


def _with_replicas(doc: Doc, replicas: int) -> Doc | None:
    spec = doc.get("spec") or {}
    if spec.get("replicas") == replicas:
        return None
    new = dict(doc)
    new["spec"] = {**spec, "replicas": replicas}
    return new


def _new_pod(
    owner: Doc,
    name: str,
    template: Mapping[str, Any],
    extra_labels: Mapping[str, str],
    *,
    generate_name: str = "",
    spec_overrides: Mapping[str, Any] | None = None,
) -> Doc:
    tmeta = template.get("metadata") or {}
    labels = {**{str(k): str(v) for k, v in (tmeta.get("labels") or {}).items()}, **extra_labels}
    m: dict[str, Any] = {"name": name, "namespace": namespace_of(owner), "labels": labels}
    if generate_name:
        m["generateName"] = generate_name
    if tmeta.get("annotations"):
        m["annotations"] = dict(tmeta["annotations"])
    m["ownerReferences"] = [owner_reference(owner)]
    # A shallow copy: the nested parts of the template are shared between the pods of
    # one pass. Safe because controllers never modify a document in place (they build
    # changed copies) and the store serializes what it is given; it saves a deep copy
    # per pod at 100,000 pods.
    spec = dict(template.get("spec") or {})
    spec.update(spec_overrides or {})
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": m,
        "spec": spec,
        "status": {"phase": "Pending"},
    }


def _unique_name(
    snap: Snapshot, namespace: str, prefix: str, rng: random.Random, taken: set[tuple[str, str]]
) -> str:
    """A generated pod name free in the snapshot and among ``taken`` (names created
    earlier in the same pass), which it joins."""
    while True:
        name = prefix + random_suffix(rng)
        if snap.find("Pod", namespace, name) is None and (namespace, name) not in taken:
            taken.add((namespace, name))
            return name


def owned(snap: Snapshot, kind: str, owner: Doc) -> list[Doc]:
    """Objects of ``kind`` in the owner's namespace whose controller is ``owner``."""
    candidates = snap.controlled_by(
        kind, namespace_of(owner), str(owner.get("kind")), name_of(owner)
    )
    return [d for d in candidates if is_controlled_by(d, owner)]


# --- Deployment --------------------------------------------------------------------


def _revision(rs: Doc) -> int:
    return int((meta(rs).get("annotations") or {}).get(REVISION_ANNOTATION, 0) or 0)


def replicaset_name(deploy: Doc) -> str:
    return f"{name_of(deploy)}-{pod_template_hash(_template(deploy))}"


def compute_deployments(snap: Snapshot) -> list[Change]:
    out: list[Change] = []
    for d in snap.list("Deployment"):
        out.extend(guarded(d, _deployment, snap, d))
    return out


def _deployment(snap: Snapshot, d: Doc) -> list[Change]:
    out: list[Change] = []
    spec = d.get("spec") or {}
    want = _replicas(spec)
    template = _template(d)
    h = pod_template_hash(template)
    rs_name = f"{name_of(d)}-{h}"
    rses = owned(snap, "ReplicaSet", d)
    current = snap.find("ReplicaSet", namespace_of(d), rs_name)
    revisions = [_revision(r) for r in rses]
    if current is None:
        tmeta = dict(template.get("metadata") or {})
        labels = {**labels_of({"metadata": tmeta}), POD_TEMPLATE_HASH: h}
        sel = copy.deepcopy(dict(spec.get("selector") or {}))
        sel["matchLabels"] = {**(sel.get("matchLabels") or {}), POD_TEMPLATE_HASH: h}
        rs_template = copy.deepcopy(template)
        rs_template["metadata"] = {**tmeta, "labels": labels}
        current = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": rs_name,
                "namespace": namespace_of(d),
                "labels": labels,
                "annotations": {
                    REVISION_ANNOTATION: str(max(revisions, default=0) + 1),
                    "deployment.kubernetes.io/desired-replicas": str(want),
                },
                "ownerReferences": [owner_reference(d)],
            },
            "spec": {"replicas": want, "selector": sel, "template": rs_template},
            "status": {"replicas": 0},
        }
        out.append(put(current))
    else:
        new = _with_replicas(current, want) or current
        others = [_revision(r) for r in rses if name_of(r) != rs_name]
        if others and _revision(current) < max(others):
            # A rollback to an earlier template: that ReplicaSet becomes the newest
            # revision again, as `kubectl rollout undo` shows it.
            m = dict(new["metadata"])
            m["annotations"] = {
                **(m.get("annotations") or {}),
                REVISION_ANNOTATION: str(max(others) + 1),
            }
            new = {**new, "metadata": m}
        if new is not current:
            out.append(put(new))
    old_rses = [r for r in rses if name_of(r) != rs_name]
    for r in old_rses:
        scaled = _with_replicas(r, 0)
        if scaled is not None:
            out.append(put(scaled))
    # revisionHistoryLimit (default 10): the oldest scaled-down ReplicaSets beyond it
    # go, once their pods are gone.
    history = spec.get("revisionHistoryLimit")
    limit = 10 if history is None else max(int(history), 0)
    idle = [r for r in old_rses if not int((r.get("status") or {}).get("replicas", 0) or 0)]
    idle.sort(key=_revision)
    for r in idle[: max(len(old_rses) - limit, 0)]:
        out.append(delete(r))
    # Status from the ReplicaSets' own status (computed from pods by the RS controller).
    total = ready = updated = 0
    for r in rses:
        st = r.get("status") or {}
        total += int(st.get("replicas", 0) or 0)
        ready += int(st.get("readyReplicas", 0) or 0)
        if name_of(r) == rs_name:
            updated = int(st.get("replicas", 0) or 0)
    status: dict[str, Any] = {
        "observedGeneration": int(meta(d).get("generation", 0) or 0),
        "replicas": total,
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": ready,
    }
    if total - ready:
        status["unavailableReplicas"] = total - ready
    status["conditions"] = [
        {
            "type": "Available",
            "status": "True" if ready >= want else "False",
            "reason": "MinimumReplicasAvailable" if ready >= want else "MinimumReplicasUnavailable",
            "message": "Deployment has minimum availability."
            if ready >= want
            else "Deployment does not have minimum availability.",
        },
        {
            "type": "Progressing",
            "status": "True",
            "reason": "NewReplicaSetAvailable" if updated == want == ready else "ReplicaSetUpdated",
            "message": f'ReplicaSet "{rs_name}" has successfully progressed.'
            if updated == want == ready
            else f'ReplicaSet "{rs_name}" is progressing.',
        },
    ]
    out.extend(_put_status(d, status))
    return out


# --- ReplicaSet --------------------------------------------------------------------


def _deletion_rank(pod: Doc) -> tuple[int, int, int]:
    """Lower ranks are deleted first (controller.ActivePods, simplified); the sort is
    stable over a newest-first list, so among equals the newest pod goes first."""
    scheduled = 1 if node_name(pod) else 0
    running = 1 if phase(pod) == "Running" else 0
    ready = 1 if is_ready(pod) else 0
    return (scheduled, running, ready)


def compute_replicasets(snap: Snapshot, rng: random.Random) -> list[Change]:
    out: list[Change] = []
    taken: set[tuple[str, str]] = set()
    for rs in snap.list("ReplicaSet"):
        out.extend(guarded(rs, _replicaset, snap, rs, rng, taken))
    return out


def _replicaset(
    snap: Snapshot, rs: Doc, rng: random.Random, taken: set[tuple[str, str]]
) -> list[Change]:
    out: list[Change] = []
    want = _replicas(rs.get("spec") or {})
    pods = [p for p in owned(snap, "Pod", rs) if is_active(p)]
    template = _template(rs)
    ns = namespace_of(rs)
    if len(pods) < want:
        h = labels_of(rs).get(POD_TEMPLATE_HASH, "")
        extra = {POD_TEMPLATE_HASH: h} if h else {}
        for _ in range(want - len(pods)):
            name = _unique_name(snap, ns, f"{name_of(rs)}-", rng, taken)
            pod = _new_pod(rs, name, template, extra, generate_name=f"{name_of(rs)}-")
            out.append(put(pod))
            pods.append(pod)
    elif len(pods) > want:
        # Newest first among equals: sort by rank, then reverse the age order.
        newest_first = sorted(pods, key=creation_order, reverse=True)
        victims = sorted(newest_first, key=_deletion_rank)[: len(pods) - want]
        for p in victims:
            out.append(delete(p))
        gone = {name_of(p) for p in victims}
        pods = [p for p in pods if name_of(p) not in gone]
    ready = sum(1 for p in pods if is_ready(p))
    status = {
        "replicas": len(pods),
        "fullyLabeledReplicas": len(pods),
        "readyReplicas": ready,
        "availableReplicas": ready,
        "observedGeneration": int(meta(rs).get("generation", 0) or 0),
    }
    out.extend(_put_status(rs, status))
    return out


# --- DaemonSet ---------------------------------------------------------------------


def compute_daemonsets(snap: Snapshot, rng: random.Random) -> list[Change]:
    out: list[Change] = []
    taken: set[tuple[str, str]] = set()
    for ds in snap.list("DaemonSet"):
        out.extend(guarded(ds, _daemonset, snap, ds, rng, taken))
    return out


def _daemonset(
    snap: Snapshot, ds: Doc, rng: random.Random, taken: set[tuple[str, str]]
) -> list[Change]:
    out: list[Change] = []
    template = _template(ds)
    h = pod_template_hash(template)
    tspec = template.get("spec") or {}
    eligible = [
        n for n in snap.list("Node") if node_is_eligible(n, tspec, ignore_unschedulable=True)
    ]
    eligible_names = {name_of(n) for n in eligible}
    pods = [p for p in owned(snap, "Pod", ds) if is_active(p)]
    by_node: dict[str, list[Doc]] = {}
    for p in pods:
        by_node.setdefault(node_name(p), []).append(p)
    keep: list[Doc] = []
    for node, ps in sorted(by_node.items()):
        ps = sorted(ps, key=creation_order)
        for i, p in enumerate(ps):
            stale = labels_of(p).get(CONTROLLER_REVISION_HASH) != h
            if node not in eligible_names or i > 0 or stale:
                out.append(delete(p))
            else:
                keep.append(p)
    covered = {node_name(p) for p in keep}
    generation = str(int(meta(ds).get("generation", 0) or 0) or 1)
    ns = namespace_of(ds)
    for n in eligible:
        if name_of(n) in covered:
            continue
        name = _unique_name(snap, ns, f"{name_of(ds)}-", rng, taken)
        pod = _new_pod(
            ds,
            name,
            template,
            {CONTROLLER_REVISION_HASH: h, DS_TEMPLATE_GENERATION: generation},
            generate_name=f"{name_of(ds)}-",
            spec_overrides={"nodeName": name_of(n)},
        )
        out.append(put(pod))
    ready = sum(1 for p in keep if is_ready(p))
    status = {
        "currentNumberScheduled": len(keep),
        "desiredNumberScheduled": len(eligible),
        "numberMisscheduled": 0,
        "numberReady": ready,
        "numberAvailable": ready,
        "updatedNumberScheduled": len(keep),
        "observedGeneration": int(meta(ds).get("generation", 0) or 0),
    }
    if len(eligible) - ready:
        status["numberUnavailable"] = len(eligible) - ready
    out.extend(_put_status(ds, status))
    return out


# --- StatefulSet -------------------------------------------------------------------


def compute_statefulsets(snap: Snapshot) -> list[Change]:
    out: list[Change] = []
    for sts in snap.list("StatefulSet"):
        out.extend(guarded(sts, _statefulset, snap, sts))
    return out


def _ordinal(sts_name: str, pod: Doc) -> int | None:
    suffix = name_of(pod)[len(sts_name) + 1 :]
    return int(suffix) if suffix.isdigit() and name_of(pod).startswith(sts_name + "-") else None


def _statefulset(snap: Snapshot, sts: Doc) -> list[Change]:
    out: list[Change] = []
    spec = sts.get("spec") or {}
    want = _replicas(spec)
    template = _template(sts)
    name = name_of(sts)
    revision = f"{name}-{pod_template_hash(template)}"
    pods = owned(snap, "Pod", sts)
    present: dict[int, Doc] = {}
    for p in pods:
        o = _ordinal(name, p)
        if o is None or o >= want or labels_of(p).get(CONTROLLER_REVISION_HASH) != revision:
            # Out of range (scale down), a foreign name, or an old template: replaced.
            out.append(delete(p))
        else:
            present[o] = p
    for i in range(want):
        if i in present:
            continue
        pod_name = f"{name}-{i}"
        if snap.find("Pod", namespace_of(sts), pod_name) is not None:
            # Either ours, deleted above (an old template): it is re-created in the next
            # round, after watchers have seen it go, as the StatefulSet controller does;
            # or not ours: never overwritten.
            continue
        overrides: dict[str, Any] = {"hostname": pod_name}
        if spec.get("serviceName"):
            overrides["subdomain"] = spec["serviceName"]
        pod = _new_pod(
            sts,
            pod_name,
            template,
            {CONTROLLER_REVISION_HASH: revision, STS_POD_NAME: pod_name, STS_POD_INDEX: str(i)},
            spec_overrides=overrides,
        )
        out.append(put(pod))
    kept = list(present.values())
    ready = sum(1 for p in kept if is_ready(p))
    status = {
        "replicas": len(kept),
        "readyReplicas": ready,
        "availableReplicas": ready,
        "currentReplicas": len(kept),
        "updatedReplicas": len(kept),
        "currentRevision": revision,
        "updateRevision": revision,
        "observedGeneration": int(meta(sts).get("generation", 0) or 0),
    }
    out.extend(_put_status(sts, status))
    return out


def compute_workloads(snap: Snapshot, rng: random.Random) -> list[Change]:
    """All workload controllers, each seeing the previous ones' changes."""
    changes: list[Change] = []
    steps: Sequence[Callable[[Snapshot], list[Change]]] = (
        compute_deployments,
        lambda s: compute_replicasets(s, rng),
        lambda s: compute_daemonsets(s, rng),
        compute_statefulsets,
    )
    for step in steps:
        ch = step(snap)
        snap = snap.with_changes(ch)
        changes.extend(ch)
    return changes
