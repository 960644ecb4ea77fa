"""The topology in real namespaces: devices, addresses and routes as the networking101
blog shows them, pods added and removed while the cluster stands, nothing left behind.

Independent of the control plane: the plan is hand-made (topology_plan.py)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator

import pytest
from topology_plan import NODES, node_state

from ciliate.datapath.linux import netns as nl
from ciliate.datapath.linux.topology import ClusterNames, Topology, teardown

pytestmark = pytest.mark.privileged


def sh(cmd: str) -> str:
    return subprocess.run(cmd, shell=True, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def names() -> Iterator[ClusterNames]:
    n = ClusterNames(f"t{os.getpid() % 100000:05d}"[:6])
    yield n
    teardown(n)


@pytest.fixture
def topo(names: ClusterNames) -> Iterator[Topology]:
    t = Topology(names)
    t.ensure_fabric()
    for node in NODES:
        state = node_state(node)
        t.ensure_node(state)
        for ep in state.endpoints.values():
            t.ensure_pod(state, ep, state.pods[ep.pod])
    yield t
    t.close()


def test_node_devices_and_routes_match_the_blog(topo: Topology, names: ClusterNames) -> None:
    ns = names.node("mycluster-worker")
    links = sh(f"ip -n {ns} -o link")
    assert "2: cilium_net@cilium_host" in links
    assert "3: cilium_host@cilium_net" in links
    assert "4: cilium_vxlan" in links
    assert "9: lxc0a0a0275aaaa@if10" in links
    addrs = sh(f"ip -n {ns} -o -4 addr")
    assert "cilium_host    inet 10.10.2.205/32" in addrs
    assert "eth0    inet 172.18.0.2/16" in addrs
    details = sh(f"ip -n {ns} -d link show cilium_vxlan")
    assert "vxlan external" in details and "dstport 8472" in details
    routes = sh(f"ip -n {ns} route").splitlines()
    assert (
        "10.10.1.0/24 via 10.10.2.205 dev cilium_host proto kernel src 10.10.2.205 mtu 1450 "
        in routes
    )
    assert "10.10.2.0/24 via 10.10.2.205 dev cilium_host proto kernel src 10.10.2.205 " in routes
    assert "10.10.2.205 dev cilium_host proto kernel scope link " in routes
    assert "172.18.0.0/16 dev eth0 proto kernel scope link src 172.18.0.2 " in routes


def test_pod_has_eth0_slash32_and_routes_via_cilium_host(
    topo: Topology, names: ClusterNames
) -> None:
    ns = names.pod("networking101/busybox-a")
    assert "10: eth0@if9" in sh(f"ip -n {ns} -o link")
    assert "inet 10.10.2.117/32" in sh(f"ip -n {ns} -o -4 addr show eth0")
    # the model's `ip route` view prints the same lines (tests/unit/cli/test_cmd_exec_views)
    assert [line.rstrip() for line in sh(f"ip -n {ns} route").splitlines()] == [
        "default via 10.10.2.205 dev eth0 mtu 1450",
        "10.10.2.0/24 via 10.10.2.205 dev eth0",
        "10.10.2.205 dev eth0 scope link",
    ]
    assert "mtu 1500 " in sh(f"ip -n {ns} -o link show eth0")


def test_nodes_reach_each_other_over_the_fabric(topo: Topology, names: ClusterNames) -> None:
    ns = names.node("mycluster-worker")
    out = subprocess.run(
        ["nsenter", f"--net=/run/netns/{ns}", "ping", "-c1", "-W2", "172.18.0.4"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_gateway_arp_answers_with_the_lxc_mac(topo: Topology, names: ClusterNames) -> None:
    # The blog: arping the gateway from the pod -> answered with the lxc's MAC; after
    # traffic the ARP table holds that one entry.
    ns = names.pod("networking101/busybox-a")
    enter = ["nsenter", f"--net=/run/netns/{ns}"]
    out = subprocess.run(
        [*enter, "arping", "-c1", "-w2", "-I", "eth0", "10.10.2.205"],
        capture_output=True,
        text=True,
    )
    assert "02:C1:00:00:01:01" in out.stdout.upper(), out.stdout + out.stderr
    subprocess.run([*enter, "ping", "-c1", "-W1", "10.10.2.205"], capture_output=True)
    neigh = sh(f"ip -n {ns} neigh show 10.10.2.205")
    assert "lladdr 02:c1:00:00:01:01" in neigh


def test_pod_add_and_delete_while_running(topo: Topology, names: ClusterNames) -> None:
    node = node_state("mycluster-worker")
    ep = next(e for e in node.endpoints.values() if e.pod.endswith("netshoot-a"))
    topo.remove_pod(node.name, ep.pod, ep.lxc_name)
    assert not nl.netns_exists(names.pod(ep.pod))
    assert ep.lxc_name not in sh(f"ip -n {names.node(node.name)} -o link")
    t0 = time.perf_counter()
    topo.ensure_pod(node, ep, node.pods[ep.pod])
    elapsed_ms = (time.perf_counter() - t0) * 1000
    print(f"pod wired in {elapsed_ms:.1f} ms")  # reported, not asserted (no timing asserts)
    assert "inet 10.10.2.121/32" in sh(f"ip -n {names.pod(ep.pod)} -o -4 addr")
    assert f"{ep.lxc_name}@if12" in sh(f"ip -n {names.node(node.name)} -o link")


def test_ensure_is_idempotent(topo: Topology, names: ClusterNames) -> None:
    before = sh(f"ip -n {names.node('mycluster-worker')} -o link")
    state = node_state("mycluster-worker")
    topo.ensure_node(state)
    for ep in state.endpoints.values():
        topo.ensure_pod(state, ep, state.pods[ep.pod])
    assert sh(f"ip -n {names.node('mycluster-worker')} -o link") == before


def test_teardown_leaves_no_namespace(names: ClusterNames) -> None:
    # Only this cluster's namespaces are compared: other tests (the other xdist worker)
    # and benchmarks create and remove their own namespaces meanwhile.
    before = set(nl.list_netns(names.prefix))
    t = Topology(names)
    t.ensure_fabric()
    t.ensure_node(node_state("mycluster-worker"))
    t.close()
    assert nl.list_netns(names.prefix)
    teardown(names)
    assert set(nl.list_netns(names.prefix)) == before == set()


# --- crash leftovers (resumable up) ---------------------------------------------------------


def test_a_namespace_placeholder_left_by_a_crash_is_replaced(names: ClusterNames) -> None:
    """A creator killed between making /run/netns/<name> and bind-mounting the namespace
    on it leaves an empty file; ensure_netns makes the namespace instead of trusting it."""
    name = f"{names.tag}-crash"
    nl.ensure_netns(name)  # makes /run/netns exist as ensure_netns wants it
    nl.delete_netns(name)
    nl.netns_path(name).touch()
    try:
        assert nl.ensure_netns(name) is True
        assert "lo" in sh(f"ip -n {name} -o link")
        assert nl.ensure_netns(name) is False  # a real one now: kept
    finally:
        nl.delete_netns(name)


def test_sysctls_are_written_into_an_existing_namespace(names: ClusterNames) -> None:
    """A namespace made before its creator died misses its sysctls: ensuring it again
    writes them (ip_forward is 0 in a new namespace)."""
    name = f"{names.tag}-sysctl"
    try:
        nl.ensure_netns(name)
        assert sh(f"ip netns exec {name} sysctl -n net.ipv4.ip_forward").strip() == "0"
        fresh, ipr = nl.ensure_netns_rtnl(name, [("net.ipv4.ip_forward", "1")])
        ipr.close()
        assert fresh is False
        assert sh(f"ip netns exec {name} sysctl -n net.ipv4.ip_forward").strip() == "1"
    finally:
        nl.delete_netns(name)
