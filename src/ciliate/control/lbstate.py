"""The cluster's load-balancer state: every Service's lb4 entries, merged into one
shared layer (alike on every node) plus small per-node layers, kept up to date one
Service at a time.

Inputs: Services and EndpointSlices (as documents), the nodes, the cluster config.
Outputs: per node the ``cilium_lb4_services_v2``, ``cilium_lb4_backends_v3``,
``cilium_lb4_reverse_nat`` and Maglev maps (``node_view``), what every rev_nat_index
stands for (``frontends``), and for a changed Service the ``MapChange``s it caused.

Backend and rev-NAT IDs come from ``services.Allocators``: a backend (address, port,
protocol) keeps its ID while any Service uses it, and is shared between Services.

Sans-IO; imports only the model, ``desired`` and ``control``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ciliate.control import services as S
from ciliate.control.nodes import NodeInfo
from ciliate.desired import (
    LayeredMap,
    LB4Backend,
    LB4Key,
    LB4ReverseNat,
    LB4Service,
    MapChange,
    MapName,
    ServiceFrontend,
    layered,
)
from ciliate.model.cluster import ClusterConfig
from ciliate.model.core import Service
from ciliate.model.meta import Doc

NodeView = tuple[
    Mapping[LB4Key, LB4Service],
    Mapping[int, LB4Backend],
    Mapping[int, LB4ReverseNat],
    Mapping[int, tuple[int, ...]],
]


def _delta(a: Mapping[Any, Any], b: Mapping[Any, Any]) -> tuple[dict[Any, Any], list[Any]]:
    ups = {k: v for k, v in b.items() if a.get(k) != v}
    return ups, [k for k in a if k not in b]


class LBState:
    def __init__(self) -> None:
        self.services: dict[str, Service] = {}
        self.slices: dict[str, dict[str, S.EndpointSlice]] = {}
        self.entries: dict[str, S.ServiceEntries] = {}
        self.alloc = S.Allocators()
        self.maglev_cache: dict[tuple[int, ...], tuple[int, ...]] = {}
        self.shared_services: Mapping[LB4Key, LB4Service] = {}
        self.backends: Mapping[int, LB4Backend] = {}
        self.shared_revnat: Mapping[int, LB4ReverseNat] = {}
        self.shared_maglev: Mapping[int, tuple[int, ...]] = {}
        self.frontends: Mapping[int, ServiceFrontend] = {}
        self.node_services: dict[str, Mapping[LB4Key, LB4Service]] = {}
        self.node_revnat: dict[str, Mapping[int, LB4ReverseNat]] = {}
        self.node_maglev: dict[str, Mapping[int, tuple[int, ...]]] = {}
        self.backend_refs: dict[int, int] = {}  # backend ID -> Services using it

    # --- reading ---------------------------------------------------------------------

    def node_view(self, node: str) -> NodeView:
        """The four lb maps of a node: the shared layer under the node's own."""

        def view(shared: Mapping[Any, Any], own: Mapping[Any, Any] | None) -> Mapping[Any, Any]:
            return LayeredMap(shared, own) if own else shared

        return (
            view(self.shared_services, self.node_services.get(node)),
            self.backends,
            view(self.shared_revnat, self.node_revnat.get(node)),
            view(self.shared_maglev, self.node_maglev.get(node)),
        )

    # --- full build --------------------------------------------------------------------

    def rebuild(
        self,
        service_docs: Iterable[Doc],
        slice_docs: Iterable[Doc],
        nodes: Sequence[NodeInfo],
        config: ClusterConfig,
    ) -> None:
        self.services = {}
        self.slices = {}
        for d in service_docs:
            svc = Service.from_doc(d)
            self.services[svc.key] = svc
        for d in slice_docs:
            sl = S.EndpointSlice.from_doc(d)
            self.slices.setdefault(sl.service, {})[sl.name] = sl
        keep_b: set[Any] = set()
        self.entries = {}
        for key in sorted(self.services):
            ent = self._compute(key, nodes, config)
            if ent is not None:
                self.entries[key] = ent
                keep_b.update((b.address, b.port, b.proto) for b in ent.backends.values())
        self.alloc.backends.retain(keep_b)
        self.backend_refs = {}
        for e in self.entries.values():
            for bid in e.backends:
                self.backend_refs[bid] = self.backend_refs.get(bid, 0) + 1
        self.alloc.rev_nat.retain(
            (fe.service, fe.type, fe.address, fe.port, fe.protocol)
            for e in self.entries.values()
            for fe in e.frontends.values()
        )
        svcs, backends, revnat, maglev, frontends = S.merge_shared(self.entries.values())
        self.shared_services, self.backends, self.shared_revnat = svcs, backends, revnat
        self.shared_maglev, self.frontends = maglev, frontends
        per_node = S.merge_nodes(self.entries.values())
        self.node_services = {n: v[0] for n, v in per_node.items()}
        self.node_revnat = {n: v[1] for n, v in per_node.items()}
        self.node_maglev = {n: v[2] for n, v in per_node.items()}

    def _compute(
        self, key: str, nodes: Sequence[NodeInfo], config: ClusterConfig
    ) -> S.ServiceEntries | None:
        svc = self.services.get(key)
        if svc is None:
            return None
        return S.compute_service_entries(
            svc,
            list(self.slices.get(key, {}).values()),
            nodes,
            config,
            self.alloc,
            self.maglev_cache,
        )

    # --- incremental -----------------------------------------------------------------------

    def set_doc(self, d: Doc, delete: bool) -> str:
        """Record a changed Service or EndpointSlice; return the Service key it affects."""
        if d.get("kind") == "Service":
            svc = Service.from_doc(d)
            if delete:
                self.services.pop(svc.key, None)
            else:
                self.services[svc.key] = svc
            return svc.key
        sl = S.EndpointSlice.from_doc(d)
        per = self.slices.setdefault(sl.service, {})
        if delete:
            per.pop(sl.name, None)
        else:
            per[sl.name] = sl
        return sl.service

    def recompute(
        self, key: str, nodes: Sequence[NodeInfo], config: ClusterConfig
    ) -> list[MapChange]:
        """Recompute one Service; layer its changes in; return them per node and map."""
        old = self.entries.pop(key, None)
        new = self._compute(key, nodes, config)
        if new is not None:
            self.entries[key] = new
        o = old or S.ServiceEntries(key)
        n = new or S.ServiceEntries(key)
        names = [x.name for x in nodes]
        out: list[MapChange] = []
        # Backends are shared between Services: drop only those nobody uses any more.
        refs = self.backend_refs
        for bid in n.backends:
            refs[bid] = refs.get(bid, 0) + 1
        for bid in o.backends:
            refs[bid] -= 1
            if not refs[bid]:
                del refs[bid]
                gone = o.backends[bid]
                self.alloc.backends.release((gone.address, gone.port, gone.proto))
        shared = (
            ("shared_services", MapName.LB4_SERVICES, o.shared_services, n.shared_services),
            ("backends", MapName.LB4_BACKENDS, o.backends, n.backends),
            ("shared_revnat", MapName.LB4_REVERSE_NAT, o.shared_revnat, n.shared_revnat),
            ("shared_maglev", MapName.LB4_MAGLEV, o.shared_maglev, n.shared_maglev),
        )
        for attr, map_name, a, b in shared:
            ups, dels = _delta(a, b)
            if attr == "backends":
                dels = [x for x in dels if x not in refs]
            if not ups and not dels:
                continue
            setattr(self, attr, layered(getattr(self, attr), ups, dels))
            entries = [*sorted(ups.items()), *((k, None) for k in sorted(dels))]
            mname = map_name.value
            for name in names:
                out.extend([MapChange(name, mname, k, v) for k, v in entries])
        per_node: tuple[
            tuple[
                dict[str, Mapping[Any, Any]],
                MapName,
                Mapping[str, Mapping[Any, Any]],
                Mapping[str, Mapping[Any, Any]],
            ],
            ...,
        ] = (
            (self.node_services, MapName.LB4_SERVICES, o.node_services, n.node_services),
            (self.node_revnat, MapName.LB4_REVERSE_NAT, o.node_revnat, n.node_revnat),
            (self.node_maglev, MapName.LB4_MAGLEV, o.node_maglev, n.node_maglev),
        )
        for layers, map_name, a_by_node, b_by_node in per_node:
            for name in sorted(a_by_node.keys() | b_by_node.keys()):
                ups, dels = _delta(a_by_node.get(name, {}), b_by_node.get(name, {}))
                if not ups and not dels:
                    continue
                layers[name] = layered(layers.get(name, {}), ups, dels)
                out.extend(MapChange(name, map_name.value, k, v) for k, v in sorted(ups.items()))
                out.extend(MapChange(name, map_name.value, k, None) for k in sorted(dels))
        fe_ups, fe_dels = _delta(o.frontends, n.frontends)
        for rn in fe_dels:
            fe = o.frontends[rn]
            self.alloc.rev_nat.release((fe.service, fe.type, fe.address, fe.port, fe.protocol))
        if fe_ups or fe_dels:
            self.frontends = layered(self.frontends, fe_ups, fe_dels)
        return out
