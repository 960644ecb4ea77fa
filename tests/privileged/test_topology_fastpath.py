"""A pod wired on the fast path (raw rtnetlink, ``datapath.linux.rtnl``) and a pod wired
by converging with pyroute2 end up identical, and the fast path hands over to the
converging path when the kernel refuses it (a stale link of the lxc's name)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest
from topology_plan import node_state

from ciliate.datapath.linux.topology import ClusterNames, Topology, teardown

pytestmark = pytest.mark.privileged


def sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def names() -> Iterator[ClusterNames]:
    n = ClusterNames(f"f{os.getpid() % 100000:05d}"[:6])
    yield n
    teardown(n)


def pod_view(names: ClusterNames, node: str, pod: str, lxc: str) -> list[str]:
    """Everything ``ip -d`` says about the pod's namespace and its lxc."""
    ns, node_ns = names.pod(pod), names.node(node)
    return [
        sh("ip", "-n", ns, "-d", "link"),
        sh("ip", "-n", ns, "-d", "addr"),
        sh("ip", "-n", ns, "-d", "route", "show", "table", "all"),
        sh("ip", "-n", node_ns, "-d", "link", "show", lxc),
    ]


def test_fast_path_and_converged_pod_are_identical(names: ClusterNames) -> None:
    topo = Topology(names)
    try:
        topo.ensure_fabric()
        node = node_state("mycluster-worker")
        topo.ensure_node(node)
        ep = next(e for e in node.endpoints.values() if e.pod.endswith("netshoot-a"))
        topo.ensure_pod(node, ep, node.pods[ep.pod])  # fresh namespace: fast path
        fast = pod_view(names, node.name, ep.pod, ep.lxc_name)
        assert "state UP" in fast[3] and "inet 10.10.2.121/32" in fast[1]

        topo.remove_pod(node.name, ep.pod, ep.lxc_name)
        # a stale device holding the lxc's name: the fast path's veth is refused (EEXIST)
        stale = ("ip", "-n", names.node(node.name), "link", "add", ep.lxc_name, "type", "veth")
        sh(*stale, "peer", "name", "stale0")
        topo.ensure_pod(node, ep, node.pods[ep.pod])
        converged = pod_view(names, node.name, ep.pod, ep.lxc_name)
        assert "stale0" not in sh("ip", "-n", names.node(node.name), "-o", "link")
        assert converged == fast
    finally:
        topo.close()
