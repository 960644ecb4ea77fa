"""Pod lifecycle: a scheduled pod gets its address and runs (the kubelet + CNI ADD,
without a container runtime).

Role, per active pod bound to a node, in creation order:

1. Addresses already in pod status are claimed first (pods given with status.podIP
   keep it; pods already running keep theirs), so a new pod can never take them.
   A claimed address must lie in the podCIDR of the pod's node; a conflict becomes
   pod status (phase Pending, reason IPAMConflict), never an exception, except for a
   controller-owned running pod holding an address an older pod holds too (two
   writers reconciled from the same snapshot): it is given a new address.
2. A pod without an address gets the lowest free one of its node's podCIDR
   (``control.ipam``); hostNetwork pods use the node's InternalIP instead. A full CIDR
   leaves the pod Pending with PodScheduled True, reason IPAMExhausted and the message
   ``IPAM: no free address in 10.10.2.0/24``; it is retried every round.
3. A pod with an address is Running: podIP(s), hostIP(s), conditions Ready True, one
   running container status per container. Readiness is set once, when the pod
   starts; afterwards its Ready conditions are left to whoever owns them (the kernel
   datapath may flip them).
4. A pod bound to a node that does not exist is deleted when a controller owns it (it
   is re-created elsewhere, like the pod garbage collector does) and otherwise left
   Pending with a message.

Addresses are released by deleting the pod: the allocator is rebuilt from the pods of
each snapshot, so a deleted pod's address is free in the next round.

Inputs: a ``Snapshot`` and the (resolved) cluster config. Outputs: pod changes. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ciliate.control.ipam import ClusterIPAM, Conflict, Exhausted, compute_node_ipam
from ciliate.controllers.owners import controller_ref
from ciliate.controllers.podstate import (
    creation_order,
    is_active,
    meta,
    name_of,
    namespace_of,
    node_name,
    phase,
    pod_ip,
)
from ciliate.controllers.snapshot import Snapshot, delete, put
from ciliate.model.cluster import ClusterConfig
from ciliate.model.meta import Doc
from ciliate.store.api import Change

REASON_EXHAUSTED = "IPAMExhausted"
REASON_CONFLICT = "IPAMConflict"
REASON_NODE_LOST = "NodeLost"


def _host_network(pod: Mapping[str, Any]) -> bool:
    return bool((pod.get("spec") or {}).get("hostNetwork"))


def _node_ip(node: Doc) -> str:
    for a in (node.get("status") or {}).get("addresses") or ():
        if a.get("type") == "InternalIP":
            return str(a.get("address", ""))
    return ""


def _key(pod: Doc) -> str:
    return f"{namespace_of(pod)}/{name_of(pod)}"


def build_ipam(snap: Snapshot, config: ClusterConfig) -> ClusterIPAM:
    """The allocator with every address already held by an active pod claimed."""
    ipam = ClusterIPAM(compute_node_ipam(config))
    for p in sorted(snap.list("Pod"), key=creation_order):
        if is_active(p) and pod_ip(p) and not _host_network(p):
            ipam.claim(pod_ip(p), _key(p))
    return ipam


def _container_statuses(pod: Doc, running: bool, waiting_reason: str = "") -> list[Any]:
    started = str(meta(pod).get("creationTimestamp", "") or "")
    out: list[Any] = []
    for c in (pod.get("spec") or {}).get("containers") or ():
        st: dict[str, Any] = {
            "name": c.get("name", ""),
            "image": c.get("image", ""),
            "imageID": "",
            "ready": running,
            "started": running,
            "restartCount": 0,
        }
        if running:
            st["state"] = {"running": {"startedAt": started}}
        else:
            st["state"] = {"waiting": {"reason": waiting_reason or "ContainerCreating"}}
        out.append(st)
    return out


def running_status(pod: Doc, ip: str, host_ip: str) -> dict[str, Any]:
    """The status of a started pod (rule 3)."""
    old = dict(pod.get("status") or {})
    started = str(meta(pod).get("creationTimestamp", "") or "")
    if phase(pod) == "Running" and old.get("conditions"):
        conditions = old["conditions"]
        containers = old.get("containerStatuses") or _container_statuses(pod, True)
    else:
        conditions = [
            {"type": t, "status": "True"}
            for t in (
                "PodReadyToStartContainers",
                "Initialized",
                "Ready",
                "ContainersReady",
                "PodScheduled",
            )
        ]
        containers = _container_statuses(pod, True)
    status = {k: v for k, v in old.items() if k not in ("reason", "message", "nominatedNodeName")}
    status.update(
        {
            "phase": "Running",
            "conditions": conditions,
            "hostIP": host_ip,
            "hostIPs": [{"ip": host_ip}] if host_ip else [],
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "startTime": old.get("startTime") or started,
            "containerStatuses": containers,
            "qosClass": old.get("qosClass") or "BestEffort",
        }
    )
    return status


def pending_status(pod: Doc, reason: str, message: str, host_ip: str = "") -> dict[str, Any]:
    """A bound pod that cannot start (rules 1, 2 and 4)."""
    status: dict[str, Any] = {
        "phase": "Pending",
        "reason": reason,
        "message": message,
        "conditions": [
            {"type": "PodReadyToStartContainers", "status": "False"},
            {"type": "Initialized", "status": "True"},
            {
                "type": "Ready",
                "status": "False",
                "reason": "ContainersNotReady",
                "message": message,
            },
            {"type": "ContainersReady", "status": "False", "reason": "ContainersNotReady"},
            {"type": "PodScheduled", "status": "True"},
        ],
        "containerStatuses": _container_statuses(pod, False),
        "qosClass": "BestEffort",
    }
    if host_ip:
        status["hostIP"] = host_ip
        status["hostIPs"] = [{"ip": host_ip}]
    return status


def _with_status(pod: Doc, status: dict[str, Any]) -> Change | None:
    if pod.get("status") == status:
        return None
    new = dict(pod)
    new["status"] = status
    return put(new)


def _allocate(ipam: ClusterIPAM, node: str, p: Doc, host_ip: str) -> Change | None:
    """A new address for the pod from its node's podCIDR: Running with it, or Pending
    when the node's range is exhausted."""
    addr = ipam.allocate(node, _key(p))
    if isinstance(addr, Exhausted):
        return _with_status(p, pending_status(p, REASON_EXHAUSTED, addr.message, host_ip))
    return _with_status(p, running_status(p, addr, host_ip))


def compute_pod_network(snap: Snapshot, config: ClusterConfig) -> list[Change]:
    nodes = {name_of(n): n for n in snap.list("Node")}
    ipam = ClusterIPAM(compute_node_ipam(config))
    pods = [p for p in sorted(snap.list("Pod"), key=creation_order) if is_active(p)]
    bound = [p for p in pods if node_name(p)]
    out: list[Change] = []
    problems: dict[str, tuple[str, str]] = {}
    readdress: set[str] = set()
    # Rule 1: claim every address already in status.
    for p in bound:
        ip = pod_ip(p)
        if not ip or _host_network(p):
            continue
        holder = ipam.node_for_ip(ip)
        if holder is not None and holder != node_name(p):
            cidr = ipam.nodes[holder].cidr if holder in ipam.nodes else "?"
            problems[_key(p)] = (
                REASON_CONFLICT,
                f"IPAM: {ip} belongs to node {holder} ({cidr}), "
                f"not to the pod's node {node_name(p)}",
            )
            continue
        got = ipam.claim(ip, _key(p))
        if isinstance(got, Conflict):
            if controller_ref(p) is not None and phase(p) == "Running":
                # An address this allocator handed out twice (two writers reconciling
                # from the same old snapshot): the younger pod gets a fresh one.
                readdress.add(_key(p))
            else:
                problems[_key(p)] = (REASON_CONFLICT, got.message)
    for p in bound:
        n = node_name(p)
        node = nodes.get(n)
        if node is None:
            if controller_ref(p) is not None:
                out.append(delete(p))
            else:
                ch = _with_status(p, pending_status(p, REASON_NODE_LOST, f'node "{n}" not found'))
                if ch:
                    out.append(ch)
            continue
        host_ip = _node_ip(node)
        st = p.get("status") or {}
        if _key(p) in readdress:
            ch = _allocate(ipam, n, p, host_ip)
            if ch:
                out.append(ch)
            continue
        if (
            st.get("phase") == "Running"
            and st.get("hostIP") == host_ip
            and st.get("podIP")
            and not st.get("reason")
            and _key(p) not in problems
        ):
            # Started and unchanged (the common case): nothing to compute.
            continue
        if _key(p) in problems:
            reason, message = problems[_key(p)]
            ch = _with_status(p, pending_status(p, reason, message, host_ip))
        elif _host_network(p):
            ch = _with_status(p, running_status(p, host_ip, host_ip))
        elif pod_ip(p):
            ch = _with_status(p, running_status(p, pod_ip(p), host_ip))
        elif n not in ipam.nodes:
            ch = _with_status(
                p,
                pending_status(p, REASON_EXHAUSTED, f"IPAM: node {n} has no podCIDR", host_ip),
            )
        else:
            ch = _allocate(ipam, n, p, host_ip)
        if ch:
            out.append(ch)
    return out


def ipam_summaries(pods: Iterable[Doc], config: ClusterConfig) -> dict[str, str]:
    """node -> Cilium's agent line (``IPv4: 4/254 allocated from 10.10.2.0/24``), from
    the addresses the pods hold (router and health IPs counted)."""
    ipam = build_ipam(Snapshot(pods), config)
    return {node: ipam.summary(node) for node in ipam.nodes}


def with_readiness(pod: Doc, ready: bool, reason: str = "", message: str = "") -> Doc | None:
    """``pod`` with its Ready/ContainersReady conditions and container readiness set
    (what a kubelet's readiness probe reports; the kernel datapath calls this when a
    pod's process stops or comes back). None when nothing changes. Rule 3 keeps the
    result: a started pod's conditions are not recomputed."""
    status = dict(pod.get("status") or {})
    value = "True" if ready else "False"
    conds: list[dict[str, Any]] = []
    for c in status.get("conditions") or ():
        c = dict(c)
        if c.get("type") in ("Ready", "ContainersReady"):
            c = {"type": c["type"], "status": value}
            if not ready:
                c["reason"] = reason or "ContainersNotReady"
                if message:
                    c["message"] = message
        conds.append(c)
    status["conditions"] = conds
    status["containerStatuses"] = [
        {**cs, "ready": ready} for cs in status.get("containerStatuses") or ()
    ]
    if status == pod.get("status"):
        return None
    return {**pod, "status": status}
