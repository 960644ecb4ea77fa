"""The control engine: a store snapshot (all docs) -> DesiredState, and incrementally
store changes -> the changed map entries.

Role: ``compute_desired(docs, config, previous)`` builds what every node's agent would
program; ``Engine`` keeps the intermediate results so that a pod or an EndpointSlice
change recomputes only what depends on it and returns the ``MapChange``s it made.

Theory of operation:

1. Nodes (``control.nodes``) give devices and routes; pods with a node and an IP get
   an identity (``control.identity``), a local endpoint on their node
   (``control.endpoints``) and a policy map (``control.endpoint_policy`` over the
   policy compiler, ``control.policy``).
2. The ipcache is one shared map holding every address as seen from elsewhere (pods
   and node addresses with their tunnel endpoint) plus, per node, a small layer with
   its own addresses (no tunnel; its node IP and cilium_host IP as ``host``).
3. lb maps: one shared layer for frontends every node has alike, plus per-node layers
   (NodePort on the node's own IP; traffic policy Local): ``control.lbstate`` over
   ``control.services``.
4. Every per-node map is a ``LayeredMap`` over the shared one, and every update goes
   through ``desired.layered``: earlier DesiredStates are never mutated, and ``diff``
   compares only the layers that differ. What is kept per node between updates, and
   how it becomes the node's ``NodeState``: ``control.node_parts``.

Pods, Services, EndpointSlices and policies (through the policy compiler's own
incremental updates) change incrementally; any other kind (Node, Namespace, Cluster)
triggers a full rebuild that keeps every ID handed out, and returns ``diff``'s changes.

Sans-IO (no clock, no randomness); must not import the store, datapaths or CLI.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterable, Iterator, Mapping, Sequence
from ipaddress import IPv4Address, IPv4Network
from typing import Any, Protocol

from ciliate.control import endpoints as E
from ciliate.control import services as S
from ciliate.control.endpoint_policy import POLICY_KINDS, EndpointPolicies
from ciliate.control.identity import (
    LabelSet,
    allocate_identities,
    pod_identity_labels,
    reserved_identities,
)
from ciliate.control.ipcache import WORLD, cidr_delta, host_prefix, remote_view
from ciliate.control.lbstate import LBState
from ciliate.control.mapstate import map_delta
from ciliate.control.node_parts import (
    NodeParts,
    PodRecord,
    build_node_parts,
    endpoint_state,
    ip4,
    node_state,
    pod_eligible,
)
from ciliate.control.nodes import (
    NodeInfo,
    resolve_nodes,
    sorted_pod_cidrs,
)
from ciliate.control.pins import export_pins, seed_pins
from ciliate.desired import (
    IPCACHE_F_HAS_TUNNEL_EP,
    DesiredState,
    EndpointKey,
    EndpointState,
    Identity,
    IPCacheKey,
    MapChange,
    MapName,
    PolicyEntry,
    PolicyKey,
    PolicyMap,
    RemoteEndpointInfo,
    layered,
    policy_map_name,
)
from ciliate.model.cluster import ClusterConfig
from ciliate.model.core import Namespace, Pod, Service
from ciliate.model.meta import Doc, doc_key

# The kinds the state is computed from; everything else is ignored by the engine.
STATE_KINDS = frozenset(
    {"Pod", "Service", "EndpointSlice", "Node", "Namespace", "Cluster", *POLICY_KINDS}
)
IPCACHE_MAP = MapName.IPCACHE.value  # hoisted: enum attribute access shows at 1,000 nodes


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """A full build allocates millions of small acyclic objects; the cyclic collector
    would rescan the growing heap again and again (half the build time at 100k pods).
    Nothing built here needs collecting before the build ends."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


class DocEvent(Protocol):
    """A store watch event (``store.api.WatchEvent``), duck-typed: control/ must not
    import the store."""

    @property
    def type(self) -> str: ...

    @property
    def object(self) -> Doc: ...


class Engine:
    """Incremental control engine. ``load`` builds everything; ``update`` and
    ``apply_events`` take changed and deleted documents and return the map changes.
    ``state`` is the current DesiredState (earlier ones stay valid and unchanged)."""

    def __init__(
        self,
        config: ClusterConfig,
        previous: DesiredState | None = None,
        pins: Mapping[str, Any] | None = None,
    ) -> None:
        self.config = config
        self.cluster_name = config.name or "default"
        self.previous = previous
        self.docs: dict[str, dict[tuple[str, str, str], Doc]] = {}  # kind -> key -> doc
        self.nodes: dict[str, NodeInfo] = {}
        self.parts: dict[str, NodeParts] = {}
        self.namespaces: dict[str, Namespace] = {}
        self.pods: dict[str, PodRecord] = {}
        self.label_ids: dict[LabelSet, int] = {}
        self.ident_refs: dict[int, int] = {}
        self.identities: Mapping[int, Identity] = {}
        self.ep_ids: dict[str, dict[str, int]] = {}
        self.policies = EndpointPolicies()
        self.cidr_identities: dict[IPv4Network, Identity] = {}
        self.lb = LBState()
        self.shared_ipcache: Mapping[IPCacheKey, RemoteEndpointInfo] = {}
        self.revision = 0
        self._state: DesiredState | None = None
        self._label_memo: dict[tuple[str, str, tuple[tuple[str, str], ...]], LabelSet] = {}
        if previous is not None:
            self._seed_from(previous)
        if pins:
            self._seed_from_pins(pins)

    # --- seeding IDs from an earlier state -------------------------------------------

    def _seed_from(self, prev: DesiredState) -> None:
        for ident in prev.identities.values():
            if ident.id >= 256 and ident.id < (1 << 24):
                self.label_ids.setdefault(ident.labels, ident.id)
        seen: set[int] = set()  # the backends map is usually one object shared by all nodes
        for name, node in prev.nodes.items():
            ids = self.ep_ids.setdefault(name, {})
            for ep in node.endpoints.values():
                ids[ep.pod or E.HEALTH_KEY] = ep.id
            if node.host_endpoint_id:
                ids[E.HOST_KEY] = node.host_endpoint_id
            if id(node.lb4_backends) not in seen:
                seen.add(id(node.lb4_backends))
                S.seed_allocators(self.lb.alloc, node.lb4_backends, {})
        S.seed_allocators(self.lb.alloc, {}, prev.services)

    # --- IDs as plain data (persisted by the CLI between runs) -------------------------

    def export_pins(self) -> dict[str, Any]:
        """Every ID handed out, JSON-able (``control.pins``). ``Engine(config,
        pins=...)`` keeps them, so separate processes computing from the same store
        agree even after collisions were resolved by probing."""
        return export_pins(self.label_ids, self.ep_ids, self.lb.alloc)

    def _seed_from_pins(self, pins: Mapping[str, Any]) -> None:
        seed_pins(pins, self.label_ids, self.ep_ids, self.lb.alloc)

    # --- full build ------------------------------------------------------------------

    def load(self, docs: Iterable[Doc]) -> DesiredState:
        with _gc_paused():
            self.docs = {}
            for d in docs:
                self._put(d)
            self._rebuild()
            return self.state

    def _kind(self, kind: str) -> list[Doc]:
        return list(self.docs.get(kind, {}).values())

    def _put(self, d: Doc) -> None:
        k = doc_key(d)
        self.docs.setdefault(k[0], {})[k] = d

    def _drop(self, d: Doc) -> None:
        k = doc_key(d)
        self.docs.get(k[0], {}).pop(k, None)

    def _rebuild(self) -> None:
        cfg = self.config
        self.nodes = resolve_nodes(self._kind("Node"), cfg)
        self.namespaces = {
            n.meta.name: n for n in (Namespace.from_doc(d) for d in self._kind("Namespace"))
        }
        self._label_memo = {}
        # 1. pods -> identities
        pods: list[tuple[Pod, IPv4Address, LabelSet]] = []
        for d in self._kind("Pod"):
            pod = Pod.from_doc(d)
            ip = ip4(pod.status.pod_ip)
            if ip is None or not pod_eligible(pod) or pod.spec.node_name not in self.nodes:
                continue
            pods.append((pod, ip, self._labels(pod)))
        self.label_ids = allocate_identities((p[2] for p in pods), self.label_ids)
        self.pods = {
            p.key: PodRecord(
                p.key,
                p,
                p.spec.node_name,
                ip,
                labels,
                self.label_ids[labels],
                IPCacheKey(host_prefix(ip)),
            )
            for p, ip, labels in pods
        }
        self.ident_refs = {}
        for rec in self.pods.values():
            self.ident_refs[rec.identity] = self.ident_refs.get(rec.identity, 0) + 1
        self.label_ids = {k: v for k, v in self.label_ids.items() if v in self.ident_refs}
        # 2. policy
        self.policies.rebuild(
            self.config,
            list(self.namespaces.values()),
            {k: (r.pod, r.identity, r.ip) for k, r in self.pods.items()},
            self._identity_objects(),
            {k: d for kind in POLICY_KINDS for k, d in self.docs.get(kind, {}).items()},
            self._services_for_policy,
        )
        self.cidr_identities = dict(self.policies.cidr_identities)
        self._refresh_identities()
        # 3. per-node endpoints and maps
        by_node: dict[str, list[PodRecord]] = {n: [] for n in self.nodes}
        for rec in self.pods.values():
            by_node[rec.node].append(rec)
        shared: dict[IPCacheKey, RemoteEndpointInfo] = {WORLD: RemoteEndpointInfo(2)}
        for net, ident in self.cidr_identities.items():
            shared[IPCacheKey(net)] = RemoteEndpointInfo(ident.id)
        for info in self.nodes.values():
            shared.update(remote_view(info))
        for rec in self.pods.values():
            shared[rec.ipcache_key] = RemoteEndpointInfo(
                rec.identity, self.nodes[rec.node].internal_ip, IPCACHE_F_HAS_TUNNEL_EP
            )
        self.shared_ipcache = shared
        all_nodes = list(self.nodes.values())
        cidrs = sorted_pod_cidrs(all_nodes)
        self.parts = {}
        for name, info in self.nodes.items():
            self.parts[name] = self._build_node(info, all_nodes, by_node[name], cidrs)
        # 4. services
        self.lb.rebuild(
            self._kind("Service"), self._kind("EndpointSlice"), list(self.nodes.values()), cfg
        )
        self._state = None

    def _labels(self, pod: Pod) -> LabelSet:
        # Replicas share their labels: compute each distinct (namespace, service
        # account, labels) once per rebuild (namespace labels and the cluster name only
        # change through a rebuild, which clears the memo).
        memo_key = (
            pod.meta.namespace,
            pod.spec.service_account_name,
            tuple(pod.meta.labels.items()),
        )
        hit = self._label_memo.get(memo_key)
        if hit is not None:
            return hit
        ns = self.namespaces.get(pod.meta.namespace)
        ns_labels = dict(ns.meta.labels) if ns else {}
        ns_labels.setdefault("kubernetes.io/metadata.name", pod.meta.namespace)
        labels = pod_identity_labels(pod, ns_labels, self.cluster_name)
        self._label_memo[memo_key] = labels
        return labels

    def _identity_objects(self) -> dict[int, Identity]:
        out = reserved_identities()
        for labels, n in self.label_ids.items():
            out[n] = Identity(n, labels)
        return out

    def _refresh_identities(self) -> None:
        idents = self._identity_objects()
        for ident in self.cidr_identities.values():
            idents[ident.id] = ident
        self.identities = idents

    def _services_for_policy(self) -> tuple[list[Service], list[Doc]]:
        """Services and slices for toServices peers (asked for only when needed)."""
        if self.lb.services:
            return list(self.lb.services.values()), self._kind("EndpointSlice")
        return [Service.from_doc(d) for d in self._kind("Service")], self._kind("EndpointSlice")

    def _build_node(
        self,
        info: NodeInfo,
        all_nodes: Sequence[NodeInfo],
        recs: list[PodRecord],
        cidrs: Sequence[tuple[str, str]] | None = None,
    ) -> NodeParts:
        keys = [r.key for r in recs] + [E.HOST_KEY] + ([E.HEALTH_KEY] if info.health_ip else [])
        ids = E.allocate_endpoint_ids(keys, self.ep_ids.get(info.name, {}))
        self.ep_ids[info.name] = ids
        return build_node_parts(self.config, info, all_nodes, recs, ids, self.policies, cidrs)

    def _endpoint(self, info: NodeInfo, rec: PodRecord, ep_id: int) -> EndpointState:
        return endpoint_state(info, rec, ep_id, self.policies)

    # --- the state ---------------------------------------------------------------------

    @property
    def state(self) -> DesiredState:
        if self._state is None:
            self._state = DesiredState(
                cluster=self.config.name,
                nodes={
                    n: node_state(p, self.shared_ipcache, self.lb.node_view(n))
                    for n, p in self.parts.items()
                },
                identities=self.identities,
                revision=self.revision,
                services=self.lb.frontends,
            )
        return self._state

    # --- incremental updates -------------------------------------------------------------

    def apply_events(self, events: Iterable[DocEvent]) -> list[MapChange]:
        changed: list[Doc] = []
        deleted: list[Doc] = []
        for ev in events:
            (deleted if str(ev.type) == "DELETED" else changed).append(ev.object)
        return self.update(changed, deleted)

    def update(self, changed: Sequence[Doc] = (), deleted: Sequence[Doc] = ()) -> list[MapChange]:
        """Apply changed (put) and deleted documents; return the map changes made.
        Kinds that never reach the maps (Deployments, ReplicaSets, ConfigMaps, ...) are
        dropped here: a rollout's churn of owner objects must not cost rebuilds."""
        changed = [d for d in changed if d.get("kind") in STATE_KINDS]
        deleted = [d for d in deleted if d.get("kind") in STATE_KINDS]
        kinds = {str(d.get("kind", "")) for d in [*changed, *deleted]}
        if not kinds:
            return []
        incremental = {"Pod", "Service", "EndpointSlice"}
        services_in_policy = False
        if self.policies.incremental:
            incremental |= POLICY_KINDS
            # toServices peers follow Service and slice changes (below)
            services_in_policy = bool(kinds & {"Service", "EndpointSlice"}) and (
                self.policies.uses_services()
            )
        for d in changed:
            if d.get("kind") == "Cluster" and isinstance(d.get("spec"), Mapping):
                self.config = ClusterConfig.from_doc(d["spec"])
        if not kinds <= incremental:
            before = self.state
            for d in deleted:
                self._drop(d)
            for d in changed:
                self._put(d)
            with _gc_paused():
                self._rebuild()
            from ciliate.desired import diff

            return diff(before, self.state)
        out: list[MapChange] = []
        svc_touched: set[str] = set()
        for d in deleted:
            self._drop(d)
            kind = d.get("kind")
            if kind == "Pod":
                out += self._remove_pod(doc_key(d)[1] + "/" + doc_key(d)[2])
            elif kind in POLICY_KINDS:
                out += self._policy_doc(d, delete=True)
            else:
                svc_touched.add(self.lb.set_doc(d, delete=True))
        for d in changed:
            self._put(d)
            kind = d.get("kind")
            if kind == "Pod":
                out += self._set_pod(Pod.from_doc(d))
            elif kind in POLICY_KINDS:
                out += self._policy_doc(d, delete=False)
            else:
                svc_touched.add(self.lb.set_doc(d, delete=False))
        nodes = list(self.nodes.values())
        for key in sorted(svc_touched - {""}):
            out += self.lb.recompute(key, nodes, self.config)
        if services_in_policy:
            self._sync_policy(self.policies.set_services(*self._services_for_policy()), out)
            self._follow_cidr_identities(out)
        self._state = None
        return out

    # pods

    def _set_pod(self, pod: Pod) -> list[MapChange]:
        out: list[MapChange] = []
        if pod.key in self.pods:
            old = self.pods[pod.key]
            ip = ip4(pod.status.pod_ip)
            if (
                pod_eligible(pod)
                and ip == old.ip
                and pod.spec.node_name == old.node
                and self._labels(pod) == old.labels
            ):
                return out
            out += self._remove_pod(pod.key)
        ip = ip4(pod.status.pod_ip)
        if ip is None or not pod_eligible(pod) or pod.spec.node_name not in self.parts:
            return out
        labels = self._labels(pod)
        new_ident = labels not in self.label_ids
        if new_ident:
            self.label_ids = allocate_identities([labels], self.label_ids)
        ident = self.label_ids[labels]
        self.ident_refs[ident] = self.ident_refs.get(ident, 0) + 1
        if new_ident:
            self.identities = layered(self.identities, {ident: Identity(ident, labels)})
        rec = PodRecord(
            pod.key, pod, pod.spec.node_name, ip, labels, ident, IPCacheKey(host_prefix(ip))
        )
        self.pods[pod.key] = rec
        recompiled = self.policies.set_pod(pod, Identity(ident, labels), ip)
        parts = self.parts[rec.node]
        ids = E.allocate_endpoint_ids([*self.ep_ids[rec.node], pod.key], self.ep_ids[rec.node])
        self.ep_ids[rec.node] = ids
        info = parts.info
        self._sync_policy(recompiled, out)
        ep = self._endpoint(info, rec, ids[pod.key])
        k, v = E.lxc_entry(ep, self.config.cluster_id)
        ick = rec.ipcache_key
        local = RemoteEndpointInfo(ident)
        remote = RemoteEndpointInfo(ident, info.internal_ip, IPCACHE_F_HAS_TUNNEL_EP)
        parts.endpoints = layered(parts.endpoints, {ep.id: ep})
        parts.lxc = layered(parts.lxc, {k: v})
        parts.own_ipcache = layered(parts.own_ipcache, {ick: local})
        pmap = self.policies.get(pod.key).map
        parts.policy = layered(parts.policy, {ep.id: pmap})
        net = E.pod_net(ep, info, self.config.pod_mtu, route_mtu=self.config.pod_route_mtu)
        parts.pods = layered(parts.pods, {pod.key: net})
        self.shared_ipcache = layered(self.shared_ipcache, {ick: remote})
        out.append(MapChange(rec.node, MapName.LXC.value, k, v))
        ipc, node = IPCACHE_MAP, rec.node
        out.extend([MapChange(n, ipc, ick, local if n == node else remote) for n in self.parts])
        pname = policy_map_name(ep.id)
        out.extend(MapChange(rec.node, pname, pk, pe) for pk, pe in sorted(pmap.items()))
        return out

    def _remove_pod(self, key: str) -> list[MapChange]:
        rec = self.pods.pop(key, None)
        out: list[MapChange] = []
        if rec is None:
            return out
        parts = self.parts.get(rec.node)
        self.ident_refs[rec.identity] -= 1
        if not self.ident_refs[rec.identity]:
            del self.ident_refs[rec.identity]
            self.label_ids.pop(rec.labels, None)
            self.identities = layered(self.identities, {}, [rec.identity])
        self._sync_policy(self.policies.remove_pod(key), out)
        ick = rec.ipcache_key
        self.shared_ipcache = layered(self.shared_ipcache, {}, [ick])
        ipc = IPCACHE_MAP
        out.extend([MapChange(n, ipc, ick, None) for n in self.parts])
        if parts is None:
            return out
        ep_id = self.ep_ids[rec.node].pop(key, 0)
        ep = parts.endpoints.get(ep_id)
        if ep is not None:
            ek = EndpointKey(ep.ip, self.config.cluster_id)
            parts.endpoints = layered(parts.endpoints, {}, [ep_id])
            parts.lxc = layered(parts.lxc, {}, [ek])
            out.append(MapChange(rec.node, MapName.LXC.value, ek, None))
            old_map = parts.policy.get(ep_id, {})
            out.extend(
                MapChange(rec.node, policy_map_name(ep_id), pk, None) for pk in sorted(old_map)
            )
            parts.policy = layered(parts.policy, {}, [ep_id])
        parts.own_ipcache = layered(parts.own_ipcache, {}, [ick])
        parts.pods = layered(parts.pods, {}, [key])
        return out

    def _sync_policy(self, pods: set[str], out: list[MapChange]) -> None:
        """Pick up recompiled policy maps of existing pods and emit their entry changes.
        Pods of one endpoint group share their old and new map: each pair is diffed
        once, and each node's policy mapping takes all its new maps in one layer."""
        deltas: dict[tuple[int, int], list[tuple[PolicyKey, PolicyEntry | None]]] = {}
        per_node: dict[str, dict[int, PolicyMap]] = {}
        for key, new in sorted(self.policies.refresh(pods).items()):
            rec = self.pods.get(key)
            if rec is None:
                continue
            ep_id = self.ep_ids.get(rec.node, {}).get(key)
            if ep_id is None:
                continue
            parts = self.parts[rec.node]
            old_map = parts.policy.get(ep_id)
            if old_map is None or old_map is new.map:
                continue
            pair = (id(old_map), id(new.map))  # both alive through this call
            delta = deltas.get(pair)
            if delta is None:
                if new.extends is not None and new.extends[0] is old_map:
                    delta = sorted(new.extends[1].items())  # entries added, nothing else
                else:
                    delta = map_delta(old_map, new.map)
                deltas[pair] = delta
            name = policy_map_name(ep_id)
            out.extend([MapChange(rec.node, name, pk, pe) for pk, pe in delta])
            per_node.setdefault(rec.node, {})[ep_id] = new.map
            old_ep = parts.endpoints[ep_id]
            if (old_ep.ingress_enforced, old_ep.egress_enforced) != (
                new.ingress_enforced,
                new.egress_enforced,
            ):
                parts.endpoints = layered(
                    parts.endpoints, {ep_id: self._endpoint(parts.info, rec, ep_id)}
                )
        for node, maps in per_node.items():
            parts = self.parts[node]
            parts.policy = layered(parts.policy, maps)

    # policies

    def _policy_doc(self, d: Doc, delete: bool) -> list[MapChange]:
        """A policy changed: recompile the pods it selects (the compiler knows which),
        then follow the CIDR identities it added or dropped into every ipcache."""
        out: list[MapChange] = []
        if delete:
            pods = self.policies.remove_policy(d)
        else:
            pods = self.policies.set_policy(d, self._services_for_policy)
        self._sync_policy(pods, out)
        self._follow_cidr_identities(out)
        return out

    def _follow_cidr_identities(self, out: list[MapChange]) -> None:
        """CIDR identities the compiler added or dropped, into every ipcache."""
        new_cidrs = self.policies.compiler_cidr_identities()
        old_cidrs = self.cidr_identities
        if new_cidrs == old_cidrs:
            return
        ups, dels = cidr_delta(self.shared_ipcache, old_cidrs, new_cidrs)
        self.cidr_identities = new_cidrs
        idents = {i.id: i for i in new_cidrs.values()}
        gone = [i.id for i in old_cidrs.values() if i.id not in idents]
        self.identities = layered(self.identities, idents, gone)
        if ups or dels:
            self.shared_ipcache = layered(self.shared_ipcache, ups, dels)
            entries = [*sorted(ups.items()), *((k, None) for k in sorted(dels))]
            for name in self.parts:
                out.extend([MapChange(name, IPCACHE_MAP, k, v) for k, v in entries])


def compute_desired(
    docs: Sequence[Doc],
    config: ClusterConfig,
    previous: DesiredState | None = None,
    pins: Mapping[str, Any] | None = None,
) -> DesiredState:
    """Everything every node programs, from a store snapshot (all documents).

    ``previous`` (or ``pins``, see ``Engine.export_pins``) keeps the IDs handed out
    before (identities, endpoint IDs, backend and rev-NAT IDs) so that they never move
    between recomputations.
    """
    return Engine(config, previous, pins).load(docs)
