"""The fabric's fast path (datapath/linux/fabric.py, bpf/bpf_fabric.c): unicast between
known nodes goes from one eth0 to the other without the bridge, everything else still
crosses the bridge, and a node unplugged falls back to the bridge."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator

import pytest
from topology_plan import NODES, node_state

from ciliate.datapath.linux import loader
from ciliate.datapath.linux.fabric import FabricSwitch
from ciliate.datapath.linux.topology import ClusterNames, Topology, teardown

pytestmark = pytest.mark.privileged

A, B = "mycluster-worker", "mycluster-worker2"


@pytest.fixture
def names() -> Iterator[ClusterNames]:
    n = ClusterNames(f"w{os.getpid() % 100000:05d}"[:6])
    yield n
    teardown(n)
    loader.remove_cluster_pins(n.tag)


@pytest.fixture
def fabric(names: ClusterNames) -> Iterator[tuple[Topology, FabricSwitch]]:
    topo, switch = Topology(names), FabricSwitch(names)
    topo.ensure_fabric()
    for node in NODES:
        topo.ensure_node(node_state(node))
        switch.plug(names.fabric_port(node), topo.link_mac(node, "eth0"))
    yield topo, switch
    switch.close()
    topo.close()


def tx_packets(names: ClusterNames, port: str) -> int:
    out = subprocess.run(["ip", "-n", names.fabric, "-j", "-s", "link", "show", port],
                         check=True, capture_output=True, text=True).stdout  # fmt: skip
    return int(json.loads(out)[0]["stats64"]["tx"]["packets"])


def ping(names: ClusterNames, node: str, ip: str, count: int) -> None:
    r = subprocess.run(["nsenter", f"--net=/run/netns/{names.node(node)}", "ping", "-c",
                        str(count), "-i", "0.05", "-W", "2", ip],
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr


def test_every_node_is_in_the_table_and_its_port_runs_the_program(
    fabric: tuple[Topology, FabricSwitch], names: ClusterNames
) -> None:
    topo, switch = fabric
    entries = switch.entries()
    for node in NODES:
        port = names.fabric_port(node)
        out = subprocess.run(["ip", "-n", names.fabric, "-j", "link", "show", port],
                             check=True, capture_output=True, text=True).stdout  # fmt: skip
        assert entries[topo.link_mac(node, "eth0")] == json.loads(out)[0]["ifindex"]
        filters = subprocess.run(["tc", "-n", names.fabric, "filter", "show", "dev", port,
                                  "ingress"], check=True, capture_output=True, text=True)  # fmt: skip
        assert "fabric_forward" in filters.stdout


def test_unicast_between_nodes_skips_the_bridge_until_unplugged(
    fabric: tuple[Topology, FabricSwitch], names: ClusterNames
) -> None:
    topo, switch = fabric
    port_b = names.fabric_port(B)
    ping(names, A, NODES[B][0], 1)  # ARP settled (its broadcast crosses the bridge)
    before = tx_packets(names, port_b)
    ping(names, A, NODES[B][0], 20)
    # the requests went from A's port straight into B's eth0: B's port sent none of them
    assert tx_packets(names, port_b) - before < 5
    switch.unplug(topo.link_mac(B, "eth0"))
    before = tx_packets(names, port_b)
    ping(names, A, NODES[B][0], 20)
    assert tx_packets(names, port_b) - before >= 20  # through the bridge again


def test_plug_again_is_idempotent(
    fabric: tuple[Topology, FabricSwitch], names: ClusterNames
) -> None:
    topo, switch = fabric
    before = switch.entries()
    for node in NODES:
        switch.plug(names.fabric_port(node), topo.link_mac(node, "eth0"))
    assert switch.entries() == before
    ping(names, B, NODES[A][0], 2)
