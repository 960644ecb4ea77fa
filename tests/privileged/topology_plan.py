"""A hand-made DesiredState of the networking101 shape, independent of the control plane,
so topology tests run even when the compiler changes (values from the blog's EXPECTED.md)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from ciliate.desired import Device, EndpointState, NodeState, PodNet, Route

NODES = {
    # name: (internal IP, cilium_host IP, pod CIDR)
    "mycluster-worker": ("172.18.0.2", "10.10.2.205", "10.10.2.0/24"),
    "mycluster-worker2": ("172.18.0.4", "10.10.1.55", "10.10.1.0/24"),
}
PODS = {
    # ns/name: (node, ip, lxc ifindex, lxc name)
    "networking101/busybox-a": ("mycluster-worker", "10.10.2.117", 9, "lxc0a0a0275aaaa"),
    "networking101/netshoot-a": ("mycluster-worker", "10.10.2.121", 11, "lxc0a0a0279bbbb"),
    "networking101/busybox-b": ("mycluster-worker2", "10.10.1.164", 9, "lxc0a0a01a4cccc"),
    "networking101/netshoot-b": ("mycluster-worker2", "10.10.1.155", 11, "lxc0a0a019bdddd"),
}


def pod_net(pod: str, node: str) -> tuple[EndpointState, PodNet]:
    _, ip, idx, lxc = PODS[pod]
    gw = NODES[node][1]
    n = list(PODS).index(pod) + 1
    ep = EndpointState(
        id=100 + n,
        pod=pod,
        ip=IPv4Address(ip),
        identity=256 + n,
        lxc_name=lxc,
        lxc_ifindex=idx,
        lxc_mac=f"02:c1:00:00:{n:02x}:01",
        pod_ifindex=idx + 1,
        pod_mac=f"02:c1:00:00:{n:02x}:02",
    )
    net = PodNet(
        pod=pod,
        node=node,
        devices=(
            Device(
                "eth0",
                idx + 1,
                ep.pod_mac,
                "veth",
                peer=f"eth0@if{idx}",
                peer_ifindex=idx,
                addresses=(f"{ip}/32",),
            ),
        ),
        # as control.endpoints.pod_routes makes them in tunnel mode
        routes=(
            Route(dst=gw, dev="eth0", scope="link"),
            Route(dst="default", dev="eth0", via=gw, mtu=1450),
            Route(dst=NODES[node][2], dev="eth0", via=gw),
        ),
    )
    return ep, net


def node_state(node: str, pods: tuple[str, ...] | None = None) -> NodeState:
    internal, host_ip, cidr = NODES[node]
    k = list(NODES).index(node) + 1
    pods = tuple(p for p in PODS if PODS[p][0] == node) if pods is None else pods
    eps: dict[int, EndpointState] = {}
    nets: dict[str, PodNet] = {}
    devices = [
        Device("lo", 1, "00:00:00:00:00:00", "loopback", mtu=65536),
        Device("cilium_net", 2, f"02:c1:0{k}:00:00:02", "veth", peer="cilium_host", peer_ifindex=3),
        Device(
            "cilium_host",
            3,
            f"02:c1:0{k}:00:00:03",
            "veth",
            peer="cilium_net",
            peer_ifindex=2,
            addresses=(f"{host_ip}/32",),
        ),
        Device("cilium_vxlan", 4, f"02:c1:0{k}:00:00:04", "vxlan"),
        Device("eth0", 6, f"02:42:ac:12:00:0{k}", "veth", addresses=(f"{internal}/16",)),
    ]
    routes = [
        Route(dst=host_ip, dev="cilium_host", proto="kernel", scope="link"),
        Route(dst="172.18.0.0/16", dev="eth0", proto="kernel", scope="link", src=internal),
    ]
    for other, (_, _, other_cidr) in NODES.items():
        routes.append(
            Route(
                dst=other_cidr,
                dev="cilium_host",
                via=host_ip,
                src=host_ip,
                proto="kernel",
                mtu=0 if other == node else 1450,
            )
        )
    for p in pods:
        ep, net = pod_net(p, node)
        eps[ep.id] = ep
        nets[p] = net
        devices.append(
            Device(
                ep.lxc_name,
                ep.lxc_ifindex,
                ep.lxc_mac,
                "veth",
                peer=f"eth0@if{ep.pod_ifindex}",
                peer_ifindex=ep.pod_ifindex,
                programs=(("ingress", "cil_from_container"),),
            )
        )
    return NodeState(
        name=node,
        internal_ip=IPv4Address(internal),
        node_prefix_len=16,
        cilium_internal_ip=IPv4Address(host_ip),
        pod_cidr=IPv4Network(cidr),
        health_ip=None,
        devices=tuple(devices),
        routes=tuple(routes),
        endpoints=eps,
        lxc={},
        ipcache={},
        policy={},
        lb4_services={},
        lb4_backends={},
        lb4_reverse_nat={},
        maglev={},
        pods=nets,
    )
