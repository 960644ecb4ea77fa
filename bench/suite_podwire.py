"""Pod wiring benchmark: how long it takes to give a new pod its network namespace, veth
pair (planned ifindexes and MACs), /32 address, up links and the two routes -- the
plumbing part of the ≤ 50 ms "pod added while the cluster runs" goal.

Side by side in one run, on the same node namespace:

- ``ciliate``: ``Topology.ensure_pod`` (netlink from a setns'd thread; a fresh namespace
  takes the no-lookup hot path);
- ``ip``: the same steps as ``ip netns add`` / ``ip link add ... netns`` / ``ip -n ...``
  commands, one process per step (what a shell-script CNI does).

Needs root (skipped with the reason otherwise). Everything is created under a unique
tag and removed. Nothing here asserts a time.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from ciliate.datapath.linux.topology import ClusterNames, Topology, teardown
from ciliate.desired import Device, EndpointState, NodeState, Route


def _node() -> NodeState:
    return NodeState(
        name="bench-node",
        internal_ip=IPv4Address("172.18.0.2"),
        node_prefix_len=16,
        cilium_internal_ip=IPv4Address("10.10.2.205"),
        pod_cidr=IPv4Network("10.10.2.0/24"),
        health_ip=None,
        devices=(
            Device("cilium_host", 4, "02:00:00:00:00:04", "veth", addresses=("10.10.2.205/32",)),
        ),
        routes=(Route(dst="10.10.2.205", dev="cilium_host", proto="kernel", scope="link"),),
        endpoints={},
        lxc={},
        ipcache={},
        policy={},
        lb4_services={},
        lb4_backends={},
        lb4_reverse_nat={},
        maglev={},
    )


def _endpoint(i: int) -> EndpointState:
    return EndpointState(
        id=100 + i,
        pod=f"bench/p{i}",
        ip=IPv4Address(f"10.10.2.{10 + i}"),
        identity=256,
        lxc_name=f"lxc{i:012x}",
        lxc_ifindex=2 * (100 + i) + 8,
        lxc_mac=f"02:00:00:00:{i:02x}:01",
        pod_ifindex=2 * (100 + i) + 7,
        pod_mac=f"02:00:00:00:{i:02x}:02",
    )


def _ip_commands(node_ns: str, ns: str, ep: EndpointState, gw: str) -> None:
    steps = [
        ["ip", "netns", "add", ns],
        ["ip", "-n", node_ns, "link", "add", ep.lxc_name, "index", str(ep.lxc_ifindex),
         "address", ep.lxc_mac, "type", "veth", "peer", "name", "eth0",
         "index", str(ep.pod_ifindex), "address", ep.pod_mac, "netns", ns],
        ["ip", "-n", node_ns, "link", "set", ep.lxc_name, "up"],
        ["ip", "-n", ns, "link", "set", "lo", "up"],
        ["ip", "-n", ns, "addr", "add", f"{ep.ip}/32", "dev", "eth0"],
        ["ip", "-n", ns, "link", "set", "eth0", "up"],
        ["ip", "-n", ns, "route", "add", gw, "dev", "eth0", "scope", "link"],
        ["ip", "-n", ns, "route", "add", "default", "via", gw, "dev", "eth0"],
    ]  # fmt: skip
    for argv in steps:
        subprocess.run(argv, check=True, capture_output=True)


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def run(reps: int, quick: bool) -> dict[str, Any]:
    if os.geteuid() != 0:
        print("podwire: skipped (needs root)")
        return {"suite": "podwire", "skipped": "needs root"}
    n = 10 if quick else 40
    names = ClusterNames(f"bw{os.getpid() % 10000:04d}")
    topo = Topology(names)
    node = _node()
    samples: dict[str, list[float]] = {"ciliate": [], "ip": []}
    try:
        topo.ensure_fabric()
        topo.ensure_node(node)
        node_ns = names.node(node.name)
        gw = str(node.cilium_internal_ip)
        for r in range(max(1, reps)):
            for i in range(n):
                ep = _endpoint(i)
                t = time.perf_counter()
                topo.ensure_pod(node, ep, None)
                samples["ciliate"].append((time.perf_counter() - t) * 1e3)
                topo.remove_pod(node.name, ep.pod, ep.lxc_name)
                ep2 = replace(ep, pod=f"bench/ip{i}-{r}")
                ns = names.pod(ep2.pod)
                t = time.perf_counter()
                _ip_commands(node_ns, ns, ep2, gw)
                samples["ip"].append((time.perf_counter() - t) * 1e3)
                topo.remove_pod(node.name, ep2.pod, ep2.lxc_name)
    finally:
        topo.close()
        teardown(names)
    result: dict[str, Any] = {
        "suite": "podwire",
        "pods": n,
        "reps": reps,
        "ms": {k: {"p50": statistics.median(v), "p99": _pct(v, 0.99)} for k, v in samples.items()},
        "samples_ms": samples,
    }
    ms = result["ms"]
    result["ratios"] = {"ip_over_ciliate_p50": ms["ip"]["p50"] / max(ms["ciliate"]["p50"], 1e-9)}
    print(f"{'pod wiring':<12} {'p50 ms':>8} {'p99 ms':>8}")
    for k in ("ciliate", "ip"):
        print(f"{k:<12} {ms[k]['p50']:>8.2f} {ms[k]['p99']:>8.2f}")
    print(f"ip / ciliate (p50): {result['ratios']['ip_over_ciliate_p50']:.1f}x")
    return result
