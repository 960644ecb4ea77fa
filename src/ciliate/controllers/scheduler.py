"""The scheduler: bind each pod without ``spec.nodeName`` to a node.

Role: kube-scheduler's filter-then-score, reduced to what a Cilium lab cluster needs.

Filters (a node is feasible when all hold):

1. The node is not ``spec.unschedulable``.
2. Every taint with effect NoSchedule or NoExecute is tolerated by the pod (kind puts
   ``node-role.kubernetes.io/control-plane:NoSchedule`` on its control plane, so
   ordinary pods land on workers). Toleration matching follows
   v1.Toleration.ToleratesTaint: empty effect matches every effect; operator Exists
   with an empty key tolerates every taint; Equal compares the value.
3. ``spec.nodeSelector`` is a subset of the node's labels, and the pod's
   ``requiredDuringSchedulingIgnoredDuringExecution`` node affinity (matchExpressions
   on labels, terms ORed) matches.

Score (lowest wins), which spreads replicas the way the default
PodTopologySpread/NodeResourcesBalancedAllocation plugins tend to:

1. fewest pods of the same controller (owner kind/name) on the node,
2. then fewest pods on the node overall,
3. then node order (the cluster config's order, then name).

A pod that comes with ``status.podIP`` but no nodeName goes to the node whose podCIDR
holds the address (the address decides, as it would on a real cluster where the pod
already runs there). A pod no node can take stays Pending with PodScheduled False,
reason Unschedulable, and a message in kube-scheduler's style.

Inputs: a ``Snapshot`` and the cluster config. Outputs: pod ``Change`` puts. Pure.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Mapping, Sequence
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from ciliate.controllers.owners import controller_ref
from ciliate.controllers.podstate import (
    creation_order,
    is_active,
    labels_of,
    name_of,
    namespace_of,
    node_name,
    pod_ip,
)
from ciliate.controllers.snapshot import Snapshot, put
from ciliate.model.cluster import ClusterConfig
from ciliate.model.meta import Doc
from ciliate.store.api import Change

_BLOCKING_EFFECTS = ("NoSchedule", "NoExecute")


def tolerates(toleration: Mapping[str, Any], taint: Mapping[str, Any]) -> bool:
    """v1.Toleration.ToleratesTaint."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    if key and key != taint.get("key"):
        return False
    op = toleration.get("operator") or "Equal"
    if op == "Exists":
        return True
    return bool(op == "Equal" and (toleration.get("value") or "") == (taint.get("value") or ""))


def untolerated_taint(node: Doc, pod_spec: Mapping[str, Any]) -> Mapping[str, Any] | None:
    tolerations = list(pod_spec.get("tolerations") or ())
    for taint in (node.get("spec") or {}).get("taints") or ():
        if taint.get("effect") not in _BLOCKING_EFFECTS:
            continue
        if not any(tolerates(t, taint) for t in tolerations):
            return dict(taint)
    return None


def _expression_matches(expr: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    key = str(expr.get("key", ""))
    op = str(expr.get("operator", ""))
    values = [str(v) for v in expr.get("values") or ()]
    if op == "In":
        return key in labels and labels[key] in values
    if op == "NotIn":
        return key not in labels or labels[key] not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    if op in ("Gt", "Lt") and key in labels and values:
        try:
            a, b = int(labels[key]), int(values[0])
        except ValueError:
            return False
        return a > b if op == "Gt" else a < b
    return False


def selector_matches(node: Doc, pod_spec: Mapping[str, Any]) -> bool:
    labels = labels_of(node)
    for k, v in (pod_spec.get("nodeSelector") or {}).items():
        if labels.get(str(k)) != str(v):
            return False
    required = ((pod_spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = required.get("nodeSelectorTerms") or ()
    if terms:
        return any(
            all(_expression_matches(e, labels) for e in t.get("matchExpressions") or ())
            for t in terms
        )
    return True


def node_is_eligible(
    node: Doc, pod_spec: Mapping[str, Any], *, ignore_unschedulable: bool = False
) -> bool:
    """Filters 1-3 of the module docstring (DaemonSet pods skip filter 1: the
    DaemonSet controller tolerates node.kubernetes.io/unschedulable)."""
    if (node.get("spec") or {}).get("unschedulable") and not ignore_unschedulable:
        return False
    return untolerated_taint(node, pod_spec) is None and selector_matches(node, pod_spec)


def node_order(snap: Snapshot, config: ClusterConfig | None) -> list[Doc]:
    order = {n.name: i for i, n in enumerate(config.nodes)} if config else {}
    return sorted(snap.list("Node"), key=lambda n: (order.get(name_of(n), len(order)), name_of(n)))


def _owner_key(pod: Doc) -> tuple[str, str] | None:
    ref = controller_ref(pod)
    return None if ref is None else (str(ref.get("kind", "")), str(ref.get("name", "")))


def _unschedulable_message(nodes: Sequence[Doc], pod_spec: Mapping[str, Any]) -> str:
    taints: dict[str, int] = {}
    selector = unschedulable = 0
    for n in nodes:
        if (n.get("spec") or {}).get("unschedulable"):
            unschedulable += 1
            continue
        t = untolerated_taint(n, pod_spec)
        if t is not None:
            desc = f"{{{t.get('key', '')}: {t.get('value', '') or ''}}}"
            taints[desc] = taints.get(desc, 0) + 1
        elif not selector_matches(n, pod_spec):
            selector += 1
    reasons = [f"{c} node(s) had untolerated taint {t}" for t, c in sorted(taints.items())]
    if selector:
        reasons.append(f"{selector} node(s) didn't match Pod's node affinity/selector")
    if unschedulable:
        reasons.append(f"{unschedulable} node(s) were unschedulable")
    return f"0/{len(nodes)} nodes are available: " + ", ".join(reasons) + "."


def _node_for_address(nodes: Sequence[Doc], ip: str) -> str:
    try:
        addr = IPv4Address(ip)
    except ValueError:
        return ""
    for n in nodes:
        spec = n.get("spec") or {}
        for cidr in spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else []):
            try:
                if addr in IPv4Network(str(cidr)):
                    return name_of(n)
            except ValueError:
                continue
    return ""


def _bind(pod: Doc, node: str) -> Doc:
    new = dict(pod)
    new["spec"] = {**(pod.get("spec") or {}), "nodeName": node}
    status = dict(pod.get("status") or {})
    conds = [c for c in status.get("conditions") or () if c.get("type") != "PodScheduled"]
    status["conditions"] = [{"type": "PodScheduled", "status": "True"}, *conds]
    if status.get("reason") == "Unschedulable":
        del status["reason"]
    new["status"] = status
    return new


def _unschedulable(pod: Doc, message: str) -> Doc | None:
    status = {
        **(pod.get("status") or {}),
        "phase": "Pending",
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": message,
            }
        ],
    }
    if status == pod.get("status"):
        return None
    new = dict(pod)
    new["status"] = status
    return new


class _Feasible:
    """The nodes one set of constraints allows, with a heap for the common choice.

    Scoring (module docstring) picks the minimum of (pods of the owner, pods, order).
    While some feasible node holds no pod of the owner, the answer is the node with
    the fewest pods (then order) among those: a heap of (pods, order, node) answers
    it in O(k log n) for an owner with k placed pods, instead of a scan over every
    node. Counts only grow while scheduling, so an entry whose count is out of date is
    corrected when it surfaces. Otherwise (more replicas than nodes) all are scanned.
    """

    def __init__(self, nodes: Sequence[tuple[int, str]], per_node: Mapping[str, int]) -> None:
        self.nodes = list(nodes)
        self.names = {n for _, n in self.nodes}
        self.heap = [(per_node[n], i, n) for i, n in self.nodes]
        heapq.heapify(self.heap)

    def pick(self, per_node: Mapping[str, int], owned: Mapping[str, int]) -> str:
        if not self.nodes:
            return ""
        if sum(1 for n in owned if n in self.names) < len(self.nodes):
            aside: list[tuple[int, int, str]] = []
            chosen = ""
            while self.heap:
                entry = heapq.heappop(self.heap)
                count, i, n = entry
                if count != per_node[n]:
                    heapq.heappush(self.heap, (per_node[n], i, n))
                    continue
                aside.append(entry)
                if owned.get(n, 0) == 0:
                    chosen = n
                    break
            for e in aside:
                heapq.heappush(self.heap, e)
            return chosen
        best: tuple[int, int, int] | None = None
        target = ""
        for i, n in self.nodes:
            score = (owned.get(n, 0), per_node[n], i)
            if best is None or score < best:
                best, target = score, n
        return target


def compute_scheduling(snap: Snapshot, config: ClusterConfig | None = None) -> list[Change]:
    nodes = node_order(snap, config)
    per_node: dict[str, int] = {name_of(n): 0 for n in nodes}
    # owner (namespace, kind, name) -> node -> pods of that owner there
    per_owner: dict[tuple[str, ...], dict[str, int]] = {}
    pending: list[Doc] = []
    for p in snap.list("Pod"):
        if not is_active(p):
            continue
        n = node_name(p)
        if not n:
            pending.append(p)
            continue
        per_node[n] = per_node.get(n, 0) + 1
        ok = _owner_key(p)
        if ok is not None:
            counts = per_owner.setdefault((namespace_of(p), *ok), {})
            counts[n] = counts.get(n, 0) + 1
    out: list[Change] = []
    # Pods of one workload share their scheduling constraints: filter nodes once per
    # distinct (tolerations, nodeSelector, affinity).
    feasible: dict[str, _Feasible] = {}
    for p in sorted(pending, key=creation_order):
        spec = p.get("spec") or {}
        constraints = [spec.get("tolerations"), spec.get("nodeSelector"), spec.get("affinity")]
        sig = json.dumps(constraints, sort_keys=True) if any(constraints) else ""
        if sig not in feasible:
            allowed = [(i, name_of(n)) for i, n in enumerate(nodes) if node_is_eligible(n, spec)]
            feasible[sig] = _Feasible(allowed, per_node)
        ok = _owner_key(p)
        owned = per_owner.setdefault((namespace_of(p), *ok), {}) if ok else {}
        target = _node_for_address(nodes, pod_ip(p)) if pod_ip(p) else ""
        if not target:
            target = feasible[sig].pick(per_node, owned)
        if not target:
            msg = _unschedulable_message(nodes, spec) if nodes else "no nodes available"
            new = _unschedulable(p, msg)
            if new is not None:
                out.append(put(new))
            continue
        per_node[target] = per_node.get(target, 0) + 1
        if ok is not None:
            owned[target] = owned.get(target, 0) + 1
        out.append(put(_bind(p, target)))
    return out
