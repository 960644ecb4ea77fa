"""A hand-built DesiredState for the model datapath tests: the networking101 cluster.

Two workers as in ../shared/examples/cluster.yaml (mycluster-worker 172.18.0.2 with
10.10.2.0/24, mycluster-worker2 172.18.0.4 with 10.10.1.0/24), the four pods of
networking101 at the addresses the blog shows, the two identities (busybox 3372,
netshoot 10388), allow-all policy maps, and a few services:

* ``10.96.0.10:80`` ClusterIP -> both netshoot pods on :8080 (rev_nat 1), with
  NodePort 31000 (surrogate 0.0.0.0:31000 and each node's IP, rev_nat 2);
* ``10.96.0.20:80`` ClusterIP without backends (rev_nat 3);
* ``10.96.0.30:80`` ClusterIP with ClientIP session affinity, timeout 100 s (rev_nat 4);
* ``10.96.0.40:80`` Maglev service over both netshoot pods (rev_nat 5, M = 251).

Built with the control plane's endpoint/node helpers where they exist, so names, MACs
and ifindexes follow the same plan as the real compiler.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network

import pytest

from ciliate.control.endpoints import lxc_device, lxc_entry, pod_endpoint, pod_net
from ciliate.control.nodes import NodeInfo, node_devices, node_routes
from ciliate.desired import (
    ENDPOINT_F_HOST,
    IPCACHE_F_HAS_TUNNEL_EP,
    LB_ALG_MAGLEV,
    LB_ALG_RANDOM,
    SVC_FLAG_AFFINITY,
    SVC_FLAG_NODEPORT,
    DesiredState,
    EndpointInfo,
    EndpointKey,
    EndpointState,
    Identity,
    IPCacheKey,
    LB4Backend,
    LB4Key,
    LB4ReverseNat,
    LB4Service,
    NodeState,
    PolicyEntry,
    PolicyKey,
    PolicyMap,
    RemoteEndpointInfo,
    ServiceFrontend,
)
from ciliate.model.cluster import ClusterConfig, NodeConfig

BUSYBOX_ID = 3372
NETSHOOT_ID = 10388
NS = "networking101"

WORKER = NodeInfo(
    "mycluster-worker",
    IPv4Address("172.18.0.2"),
    16,
    IPv4Network("10.10.2.0/24"),
    IPv4Address("10.10.2.205"),
    None,
)
WORKER2 = NodeInfo(
    "mycluster-worker2",
    IPv4Address("172.18.0.4"),
    16,
    IPv4Network("10.10.1.0/24"),
    IPv4Address("10.10.1.55"),
    None,
)
CONFIG = ClusterConfig(
    name="mycluster",
    nodes=(
        NodeConfig("mycluster-worker", "172.18.0.2", pod_cidr="10.10.2.0/24"),
        NodeConfig("mycluster-worker2", "172.18.0.4", pod_cidr="10.10.1.0/24"),
    ),
)

# (pod, node, endpoint id, ip, identity)
PODS = (
    (f"{NS}/busybox-a", WORKER, 2001, "10.10.2.117", BUSYBOX_ID),
    (f"{NS}/netshoot-a", WORKER, 1587, "10.10.2.121", NETSHOOT_ID),
    (f"{NS}/busybox-b", WORKER2, 302, "10.10.1.164", BUSYBOX_ID),
    (f"{NS}/netshoot-b", WORKER2, 955, "10.10.1.155", NETSHOOT_ID),
)

ALLOW_ALL: PolicyMap = {
    PolicyKey(0, False): PolicyEntry(),
    PolicyKey(0, True): PolicyEntry(),
}

CLUSTER_IP = IPv4Address("10.96.0.10")
EMPTY_IP = IPv4Address("10.96.0.20")
AFFINITY_IP = IPv4Address("10.96.0.30")
MAGLEV_IP = IPv4Address("10.96.0.40")
NODEPORT = 31000


def _labels(app: str) -> tuple[str, ...]:
    return (f"k8s:app={app}", f"k8s:io.kubernetes.pod.namespace={NS}")


def _services() -> tuple[
    dict[LB4Key, LB4Service],
    dict[int, LB4Backend],
    dict[int, LB4ReverseNat],
    dict[int, tuple[int, ...]],
]:
    backends = {
        1: LB4Backend(IPv4Address("10.10.2.121"), 8080),
        2: LB4Backend(IPv4Address("10.10.1.155"), 8080),
    }
    svcs: dict[LB4Key, LB4Service] = {}
    revnat: dict[int, LB4ReverseNat] = {}

    def frontend(
        ip: IPv4Address,
        port: int,
        rev: int,
        ids: tuple[int, ...],
        flags: int = 0,
        alg: int = LB_ALG_RANDOM,
        timeout: int = 0,
    ) -> None:
        svcs[LB4Key(ip, port, 0, 6)] = LB4Service(
            backend_id=(alg << 24) | timeout, count=len(ids), rev_nat_index=rev, flags=flags
        )
        for slot, bid in enumerate(ids, start=1):
            svcs[LB4Key(ip, port, slot, 6)] = LB4Service(
                backend_id=bid, rev_nat_index=rev, flags=flags
            )
        revnat[rev] = LB4ReverseNat(ip, port)

    frontend(CLUSTER_IP, 80, 1, (1, 2))
    frontend(IPv4Address(0), NODEPORT, 2, (1, 2), flags=SVC_FLAG_NODEPORT)
    frontend(EMPTY_IP, 80, 3, ())
    frontend(AFFINITY_IP, 80, 4, (1, 2), flags=SVC_FLAG_AFFINITY, timeout=100)
    frontend(MAGLEV_IP, 80, 5, (1, 2), alg=LB_ALG_MAGLEV)
    maglev = {5: tuple(1 if (i * 7) % 3 else 2 for i in range(251))}
    return svcs, backends, revnat, maglev


def build_state(
    policy: Mapping[str, PolicyMap] | None = None,
    enforced: bool = False,
) -> DesiredState:
    """The fixture state; ``policy`` replaces the allow-all map of the named pods."""
    policy = policy or {}
    nodes_info = (WORKER, WORKER2)
    eps: dict[str, list[EndpointState]] = {n.name: [] for n in nodes_info}
    for pod, info, epid, ip, ident in PODS:
        app = pod.split("/")[1].split("-")[0]
        ep = pod_endpoint(info, pod, epid, IPv4Address(ip), ident, _labels(app))
        if pod in policy or enforced:
            ep = replace(ep, ingress_enforced=True, egress_enforced=True)
        eps[info.name].append(ep)
    svcs, backends, revnat, maglev = _services()
    nodes: dict[str, NodeState] = {}
    for info in nodes_info:
        lxc: dict[EndpointKey, EndpointInfo] = {
            EndpointKey(info.cilium_internal_ip): EndpointInfo(0, 0, flags=ENDPOINT_F_HOST),
            EndpointKey(info.internal_ip): EndpointInfo(0, 0, flags=ENDPOINT_F_HOST),
        }
        for ep in eps[info.name]:
            k, v = lxc_entry(ep)
            lxc[k] = v
        ipcache: dict[IPCacheKey, RemoteEndpointInfo] = {
            IPCacheKey(IPv4Network("0.0.0.0/0")): RemoteEndpointInfo(2),
        }
        for other in nodes_info:
            local = other.name == info.name
            tun = None if local else other.internal_ip
            flags = 0 if local else IPCACHE_F_HAS_TUNNEL_EP
            ipcache[IPCacheKey(IPv4Network(other.internal_ip))] = RemoteEndpointInfo(
                1 if local else 6
            )
            ipcache[IPCacheKey(IPv4Network(other.cilium_internal_ip))] = RemoteEndpointInfo(
                1 if local else 6, tun, flags
            )
            for ep in eps[other.name]:
                ipcache[IPCacheKey(IPv4Network(ep.ip))] = RemoteEndpointInfo(
                    ep.identity, tun, flags
                )
        devices = node_devices(info, CONFIG) + tuple(lxc_device(ep) for ep in eps[info.name])
        nodes[info.name] = NodeState(
            name=info.name,
            internal_ip=info.internal_ip,
            node_prefix_len=16,
            cilium_internal_ip=info.cilium_internal_ip,
            pod_cidr=info.pod_cidr,
            health_ip=None,
            devices=devices,
            routes=node_routes(info, nodes_info, CONFIG),
            endpoints={ep.id: ep for ep in eps[info.name]},
            lxc=lxc,
            ipcache=ipcache,
            policy={ep.id: policy.get(ep.pod, ALLOW_ALL) for ep in eps[info.name]},
            lb4_services=svcs,
            lb4_backends=backends,
            lb4_reverse_nat=revnat,
            maglev=maglev,
            pods={ep.pod: pod_net(ep, info, 1500) for ep in eps[info.name]},
        )
    identities = {
        BUSYBOX_ID: Identity(BUSYBOX_ID, _labels("busybox")),
        NETSHOOT_ID: Identity(NETSHOOT_ID, _labels("netshoot")),
    }
    services = {
        1: ServiceFrontend(1, f"{NS}/netshoot", "ClusterIP", str(CLUSTER_IP), 80, "TCP"),
        2: ServiceFrontend(2, f"{NS}/netshoot", "NodePort", "0.0.0.0", NODEPORT, "TCP"),
        3: ServiceFrontend(3, f"{NS}/empty", "ClusterIP", str(EMPTY_IP), 80, "TCP"),
        4: ServiceFrontend(4, f"{NS}/sticky", "ClusterIP", str(AFFINITY_IP), 80, "TCP"),
        5: ServiceFrontend(5, f"{NS}/maglev", "ClusterIP", str(MAGLEV_IP), 80, "TCP"),
    }
    return DesiredState("mycluster", nodes, identities, services=services)


@pytest.fixture
def state() -> DesiredState:
    return build_state()


@pytest.fixture
def make_state() -> Callable[..., DesiredState]:
    return build_state
