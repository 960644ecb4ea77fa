"""Endpoints: the local endpoints of a node (pods and the health endpoint).

Inputs: the pods scheduled on a node (with their IPs and identities), the node's
``NodeInfo`` and the endpoint IDs handed out before (from the previous DesiredState).
Outputs: ``EndpointState`` per endpoint, the pod's network namespace (``PodNet``), the
node-side lxc ``Device`` and the ``cilium_lxc`` entries.

Stability, so that nothing moves under running traffic:

1. An endpoint ID is kept once handed out (``existing``).
2. A new one takes its preferred ID, a hash of its key (``ns/name``) into 1..4095,
   probing upward on collision; new endpoints are placed in sorted order, so the result
   does not depend on the order pods are listed in.
3. lxc names (``lxc`` + 12 hex chars) and MACs are hashes of the pod key and node;
   ifindexes derive from the endpoint ID (plan in ``desired``).

Sans-IO; imports only the model, ``desired`` and ``control.nodes``.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterable, Iterator, Mapping
from ipaddress import IPv4Address

from ciliate.control.nodes import PROGRAMS_LXC, NodeInfo, derived_mac
from ciliate.desired import (
    ENDPOINT_F_HOST,
    IFINDEX_HEALTH_ETH0,
    IFINDEX_LO,
    IFINDEX_LXC_HEALTH,
    Device,
    EndpointInfo,
    EndpointKey,
    EndpointKind,
    EndpointState,
    Neighbor,
    PodNet,
    ReservedIdentity,
    Route,
    lxc_ifindex,
    pod_eth0_ifindex,
)

MAX_ENDPOINT_ID = 4095
HEALTH_KEY = "reserved:health"
HOST_KEY = "reserved:host"
HEALTH_LABELS = ("reserved:health",)


class EndpointIDsExhausted(ValueError):
    """More than 4095 endpoints on one node."""


def preferred_endpoint_id(key: str) -> int:
    return 1 + zlib.crc32(key.encode()) % MAX_ENDPOINT_ID


def allocate_endpoint_ids(keys: Iterable[str], existing: Mapping[str, int]) -> dict[str, int]:
    """Endpoint IDs for keys: kept ones first, then new ones at their preferred ID."""
    wanted = set(keys)
    result = {k: v for k, v in existing.items() if k in wanted}
    used = set(result.values())
    for key in sorted(wanted - result.keys()):
        if len(used) >= MAX_ENDPOINT_ID:
            raise EndpointIDsExhausted(f"no endpoint ID left for {key} (1..{MAX_ENDPOINT_ID})")
        n = preferred_endpoint_id(key)
        while n in used:
            n = n % MAX_ENDPOINT_ID + 1
        result[key] = n
        used.add(n)
    return result


def _digest(node: str, pod_key: str) -> bytes:
    return hashlib.sha256(f"{node}/{pod_key}".encode()).digest()


def lxc_name(pod_key: str) -> str:
    """``lxc`` + 12 hex chars: 15 characters, the Linux interface-name limit."""
    return "lxc" + hashlib.sha256(pod_key.encode()).hexdigest()[:12]


def _mac(b: bytes) -> str:
    """Six bytes as a locally administered unicast MAC (bit 1 set, bit 0 clear)."""
    return (bytes(((b[0] & 0xFC) | 0x02,)) + b[1:6]).hex(":")


def pod_endpoint(
    node: NodeInfo,
    pod_key: str,
    endpoint_id: int,
    ip: IPv4Address,
    identity: int,
    labels: tuple[str, ...],
) -> EndpointState:
    # One digest of node and pod gives both MACs (bytes 0-5 pod side, 6-11 lxc side):
    # stable, distinct per pod, and a single hash per pod at 100,000 pods.
    d = _digest(node.name, pod_key)
    return EndpointState(
        id=endpoint_id,
        pod=pod_key,
        ip=ip,
        identity=identity,
        lxc_name=lxc_name(pod_key),
        lxc_ifindex=lxc_ifindex(endpoint_id),
        lxc_mac=_mac(d[6:12]),
        pod_ifindex=pod_eth0_ifindex(endpoint_id),
        pod_mac=_mac(d[0:6]),
        labels=labels,
    )


def health_endpoint(node: NodeInfo, endpoint_id: int) -> EndpointState | None:
    if node.health_ip is None:
        return None
    return EndpointState(
        id=endpoint_id,
        pod="",
        ip=node.health_ip,
        identity=int(ReservedIdentity.HEALTH),
        lxc_name="lxc_health",
        lxc_ifindex=IFINDEX_LXC_HEALTH,
        lxc_mac=derived_mac(f"lxc_health:{node.name}"),
        pod_ifindex=IFINDEX_HEALTH_ETH0,
        pod_mac=derived_mac(f"health:{node.name}"),
        labels=HEALTH_LABELS,
        kind=EndpointKind.HEALTH,
    )


def lxc_device(ep: EndpointState) -> Device:
    """The node side of the endpoint's veth pair (`lxc…@ifN`, N = the pod's eth0)."""
    return Device(
        name=ep.lxc_name,
        ifindex=ep.lxc_ifindex,
        mac=ep.lxc_mac,
        kind="veth",
        peer="eth0",
        peer_ifindex=ep.pod_ifindex,
        programs=PROGRAMS_LXC,
    )


POD_LO = Device("lo", IFINDEX_LO, "00:00:00:00:00:00", "loopback", 65536,
                addresses=("127.0.0.1/8",))  # fmt: skip


def pod_routes(node: NodeInfo, route_mtu: int = 0) -> tuple[Route, ...]:
    """Every pod of a node has these (one shared tuple per node): the default route via
    the node's cilium_host address, which is on link. With a route MTU (tunnel mode) the
    default route carries it, as Cilium's RouteMTU, and the node's own pod CIDR gets a
    route without it: same-node traffic never enters the tunnel, and a full-size MSS
    there is worth ~5-10 % of single-stream throughput on this machine."""
    gw = str(node.cilium_internal_ip)
    default = Route(dst="default", dev="eth0", via=gw, mtu=route_mtu)
    link = Route(dst=gw, dev="eth0", scope="link")
    if not route_mtu:
        return (default, link)
    return (default, link, Route(dst=str(node.pod_cidr), dev="eth0", via=gw))


def pod_net(
    ep: EndpointState,
    node: NodeInfo,
    mtu: int,
    routes: tuple[Route, ...] | None = None,
    route_mtu: int = 0,
) -> PodNet:
    """The pod's netns (EXPECTED.md): eth0 with a /32, a default route via the node's
    cilium_host address which is on link, and after an arping the gateway's ARP entry
    at the lxc MAC (the lxc side answers ARP for every address)."""
    rts = routes if routes is not None else pod_routes(node, route_mtu)
    eth0 = Device("eth0", ep.pod_ifindex, ep.pod_mac, "veth", mtu, peer=ep.lxc_name,
                  peer_ifindex=ep.lxc_ifindex, addresses=(f"{ep.ip}/32",))  # fmt: skip
    return PodNet(
        pod=ep.pod,
        node=node.name,
        devices=(POD_LO, eth0),
        routes=rts,
        neighbors=(Neighbor(rts[1].dst, ep.lxc_mac, "eth0"),),
    )


def lxc_entry(ep: EndpointState, cluster_id: int = 0) -> tuple[EndpointKey, EndpointInfo]:
    return (
        EndpointKey(ep.ip, cluster_id),
        EndpointInfo(
            ifindex=ep.lxc_ifindex,
            lxc_id=ep.id,
            mac=ep.pod_mac,
            node_mac=ep.lxc_mac,
            sec_id=ep.identity,
        ),
    )


def host_lxc_entries(node: NodeInfo, cluster_id: int = 0) -> dict[EndpointKey, EndpointInfo]:
    """Every IP of the node (cilium_host's and the node IP) with ENDPOINT_F_HOST (§3.1)."""
    host = EndpointInfo(ifindex=0, lxc_id=0, flags=ENDPOINT_F_HOST)
    return {
        EndpointKey(node.cilium_internal_ip, cluster_id): host,
        EndpointKey(node.internal_ip, cluster_id): host,
    }


class PodNets(Mapping[str, PodNet]):
    """The pod network namespaces of a node by ``ns/name``, each built on first read
    from its endpoint (``pod_net``): a full build at 100,000 pods skips 300,000
    objects nobody may look at. Read-only; equal to the dict of its items."""

    __slots__ = ("_built", "_eps", "_mtu", "_node", "_routes")

    def __init__(
        self,
        node: NodeInfo,
        mtu: int,
        endpoints: Mapping[str, EndpointState],
        route_mtu: int = 0,
    ) -> None:
        self._node = node
        self._mtu = mtu
        self._eps = endpoints
        self._routes = pod_routes(node, route_mtu)
        self._built: dict[str, PodNet] = {}

    def __getitem__(self, key: str) -> PodNet:
        got = self._built.get(key)
        if got is None:
            got = pod_net(self._eps[key], self._node, self._mtu, self._routes)
            self._built[key] = got
        return got

    def __iter__(self) -> Iterator[str]:
        return iter(self._eps)

    def __len__(self) -> int:
        return len(self._eps)

    def __contains__(self, key: object) -> bool:
        return key in self._eps
