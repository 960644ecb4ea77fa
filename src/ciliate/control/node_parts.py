"""Node parts: what the engine keeps per node between updates, and how a node's parts
become its ``NodeState``.

Role: the per-node half of ``control.engine``. ``build_node_parts`` gives a node its
endpoints (pods, health, host), cilium_lxc entries, its own ipcache layer, policy maps
per endpoint, devices, routes and pod namespace views; ``node_state`` assembles the
``desired.NodeState`` over the shared ipcache and lb views. The engine's incremental
updates replace single mappings of a ``NodeParts`` with ``desired.layered`` copies.

Inputs: ``NodeInfo``s, ``PodRecord``s, endpoint policies. Outputs: ``NodeParts``,
``NodeState``. Sans-IO; must not import the store, datapaths or CLI.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address
from typing import Any, overload

from ciliate.control import endpoints as E
from ciliate.control import services as S
from ciliate.control.endpoint_policy import ALLOW_ALL, EndpointPolicies
from ciliate.control.identity import LabelSet
from ciliate.control.ipcache import local_view
from ciliate.control.lbstate import NodeView
from ciliate.control.nodes import NodeInfo, node_devices, node_routes
from ciliate.desired import (
    Device,
    EndpointInfo,
    EndpointKey,
    EndpointState,
    IPCacheKey,
    LayeredMap,
    NodeState,
    PodNet,
    PolicyMap,
    RemoteEndpointInfo,
    Route,
)
from ciliate.model.cluster import ClusterConfig
from ciliate.model.core import Pod


@dataclass(frozen=True, slots=True)
class PodRecord:
    key: str
    pod: Pod
    node: str
    ip: IPv4Address
    labels: LabelSet
    identity: int
    ipcache_key: IPCacheKey  # ip/32, built once (IPv4Network construction is not cheap)


@dataclass(slots=True)
class NodeParts:
    info: NodeInfo
    base_devices: tuple[Device, ...]
    routes: Sequence[Route]
    host_endpoint_id: int
    endpoints: Mapping[int, EndpointState] = field(default_factory=dict)
    lxc: Mapping[EndpointKey, EndpointInfo] = field(default_factory=dict)
    own_ipcache: Mapping[IPCacheKey, RemoteEndpointInfo] = field(default_factory=dict)
    policy: Mapping[int, PolicyMap] = field(default_factory=dict)
    pods: Mapping[str, PodNet] = field(default_factory=dict)
    # (the endpoints mapping it was built from, devices): rebuilt when endpoints change
    devices: tuple[Mapping[int, EndpointState], tuple[Device, ...]] | None = None


class NodeRoutes(Sequence[Route]):
    """A node's routing table (``nodes.node_routes``), built on first read: every node
    has a route to every pod CIDR, so 1,000 nodes make 1,000,000 routes that a full
    build would create although only the nodes a datapath realizes (or a user views)
    are read. Read-only; equal to the tuple of its routes."""

    __slots__ = ("_args", "_routes")

    def __init__(
        self,
        info: NodeInfo,
        all_nodes: Sequence[NodeInfo],
        cfg: ClusterConfig,
        cidrs: Sequence[tuple[str, str]] | None,
    ) -> None:
        # the engine never mutates these after a build (a rebuild makes new ones)
        self._args: tuple[Any, ...] | None = (info, all_nodes, cfg, cidrs)
        self._routes: tuple[Route, ...] = ()

    def _all(self) -> tuple[Route, ...]:
        if self._args is not None:
            self._routes = node_routes(*self._args)
            self._args = None
        return self._routes

    @overload
    def __getitem__(self, i: int) -> Route: ...
    @overload
    def __getitem__(self, i: slice) -> tuple[Route, ...]: ...
    def __getitem__(self, i: int | slice) -> Route | tuple[Route, ...]:
        return self._all()[i]

    def __len__(self) -> int:
        return len(self._all())

    def __iter__(self) -> Iterator[Route]:
        return iter(self._all())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, NodeRoutes):
            return self._all() == other._all()
        if isinstance(other, Sequence) and not isinstance(other, str):
            return self._all() == tuple(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # like a list: equal by content

    def __repr__(self) -> str:
        return f"NodeRoutes({self._all()!r})"


def pod_eligible(pod: Pod) -> bool:
    """Whether a pod gets an endpoint: scheduled, addressed, not host-network, running."""
    return (
        bool(pod.spec.node_name)
        and bool(pod.status.pod_ip)
        and not pod.spec.host_network
        and pod.status.phase not in ("Succeeded", "Failed")
    )


def ip4(text: str) -> IPv4Address | None:
    return S.parse_ipv4(text)


def endpoint_state(
    info: NodeInfo, rec: PodRecord, ep_id: int, policies: EndpointPolicies
) -> EndpointState:
    """A pod's endpoint, with the enforcement of its current policy."""
    ep = E.pod_endpoint(info, rec.key, ep_id, rec.ip, rec.identity, rec.labels)
    pol = policies.get(rec.key)
    if pol.ingress_enforced or pol.egress_enforced:
        ep = replace(ep, ingress_enforced=pol.ingress_enforced, egress_enforced=pol.egress_enforced)
    return ep


def build_node_parts(
    cfg: ClusterConfig,
    info: NodeInfo,
    all_nodes: Sequence[NodeInfo],
    recs: list[PodRecord],
    ids: Mapping[str, int],
    policies: EndpointPolicies,
    cidrs: Sequence[tuple[str, str]] | None = None,
) -> NodeParts:
    """Everything of one node; ``ids`` holds an endpoint ID for every pod of ``recs``,
    the host (``E.HOST_KEY``) and, with a health IP, the health endpoint."""
    endpoints: dict[int, EndpointState] = {}
    lxc: dict[EndpointKey, EndpointInfo] = E.host_lxc_entries(info, cfg.cluster_id)
    own = local_view(info)
    policy: dict[int, PolicyMap] = {}
    pod_eps: dict[str, EndpointState] = {}
    health = E.health_endpoint(info, ids.get(E.HEALTH_KEY, 0))
    if health is not None:
        endpoints[health.id] = health
        k, v = E.lxc_entry(health, cfg.cluster_id)
        lxc[k] = v
        policy[health.id] = ALLOW_ALL
    for rec in recs:
        ep = endpoint_state(info, rec, ids[rec.key], policies)
        endpoints[ep.id] = ep
        k, v = E.lxc_entry(ep, cfg.cluster_id)
        lxc[k] = v
        own[rec.ipcache_key] = RemoteEndpointInfo(rec.identity)
        policy[ep.id] = policies.get(rec.key).map
        pod_eps[rec.key] = ep
    return NodeParts(
        info=info,
        base_devices=node_devices(info, cfg),
        routes=NodeRoutes(info, all_nodes, cfg, cidrs),
        host_endpoint_id=ids[E.HOST_KEY],
        endpoints=endpoints,
        lxc=lxc,
        own_ipcache=own,
        policy=policy,
        pods=E.PodNets(info, cfg.pod_mtu, pod_eps, cfg.pod_route_mtu),
    )


def node_state(
    p: NodeParts, shared_ipcache: Mapping[IPCacheKey, RemoteEndpointInfo], lb_view: NodeView
) -> NodeState:
    """The node's DesiredState part: its own ipcache layer over the shared one, and its
    lb view (``LBState.node_view``)."""
    info = p.info
    if p.devices is None or p.devices[0] is not p.endpoints:
        lxc_devs = tuple(
            E.lxc_device(ep) for ep in sorted(p.endpoints.values(), key=lambda e: e.lxc_ifindex)
        )
        p.devices = (p.endpoints, p.base_devices + lxc_devs)
    return NodeState(
        info.name,
        info.internal_ip,
        info.node_prefix_len,
        info.cilium_internal_ip,
        info.pod_cidr,
        info.health_ip,
        p.devices[1],
        p.routes,
        p.endpoints,
        p.lxc,
        LayeredMap(shared_ipcache, p.own_ipcache),
        p.policy,
        *lb_view,
        p.pods,
        p.host_endpoint_id,
        info.role,
        info.labels,
    )
