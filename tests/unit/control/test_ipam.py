"""Cluster-pool IPAM: CIDR carving, reserved addresses, allocation, the agent line."""

from __future__ import annotations

import pytest

from ciliate.control.ipam import (
    ClusterIPAM,
    Conflict,
    Exhausted,
    IPAMError,
    carve_pod_cidrs,
    compute_node_ipam,
    ipam_summary,
    plan_node,
    resolve_config,
)
from ciliate.model.cluster import ClusterConfig, NodeConfig


def nodes(*specs: tuple[str, str]) -> tuple[NodeConfig, ...]:
    return tuple(
        NodeConfig(name=n, internal_ip=f"172.18.0.{i + 2}", pod_cidr=c)
        for i, (n, c) in enumerate(specs)
    )


def test_carving_skips_explicit_cidrs_in_node_order():
    got = carve_pod_cidrs(
        "10.10.0.0/16",
        24,
        nodes(("a", ""), ("b", "10.10.0.0/24"), ("c", ""), ("d", "10.10.2.0/24")),
    )
    assert got == {
        "a": "10.10.1.0/24",
        "b": "10.10.0.0/24",
        "c": "10.10.3.0/24",
        "d": "10.10.2.0/24",
    }


def test_carving_runs_out():
    with pytest.raises(IPAMError, match="no free /25 left for node c"):
        carve_pod_cidrs("10.10.0.0/24", 25, nodes(("a", ""), ("b", ""), ("c", "")))
    with pytest.raises(IPAMError):
        carve_pod_cidrs("10.10.0.0/24", 16, nodes(("a", "")))


def test_router_and_health_addresses():
    assert plan_node("n", "10.10.2.0/24", "10.10.2.205") == plan_node(
        "n", "10.10.2.0/24", "10.10.2.205"
    )
    p = plan_node("n", "10.10.2.0/24", "10.10.2.205")
    assert (p.router_ip, p.health_ip) == ("10.10.2.205", "10.10.2.1")
    q = plan_node("n", "10.10.2.0/24")
    assert (q.router_ip, q.health_ip) == ("10.10.2.1", "10.10.2.2")
    assert q.capacity == 254


def test_example_cluster_plan():
    cfg = ClusterConfig(
        name="mycluster",
        nodes=(
            NodeConfig(
                "mycluster-control-plane",
                "172.18.0.3",
                "control-plane",
                "10.10.0.0/24",
                "10.10.0.54",
            ),
            NodeConfig("mycluster-worker", "172.18.0.2", "worker", "10.10.2.0/24", "10.10.2.205"),
            NodeConfig("mycluster-worker2", "172.18.0.4", "worker", "10.10.1.0/24", "10.10.1.55"),
        ),
    )
    plans = {p.node: p for p in compute_node_ipam(cfg)}
    assert plans["mycluster-worker"].cidr == "10.10.2.0/24"
    assert plans["mycluster-worker2"].router_ip == "10.10.1.55"
    assert resolve_config(cfg).nodes == cfg.nodes


def test_allocation_lowest_free_release_and_reuse():
    ipam = ClusterIPAM([plan_node("w", "10.10.2.0/24", "10.10.2.205")])
    assert ipam.allocate("w", "a") == "10.10.2.2"  # .1 is the health IP
    assert ipam.allocate("w", "b") == "10.10.2.3"
    ipam.release("10.10.2.2")
    assert ipam.allocate("w", "c") == "10.10.2.2"
    assert ipam.owner("10.10.2.2") == "c"
    # Two pods + router + health.
    assert ipam.summary("w") == "IPv4: 4/254 allocated from 10.10.2.0/24"


def test_allocation_skips_the_router_address():
    ipam = ClusterIPAM([plan_node("w", "10.10.2.0/29", "10.10.2.3")])
    got = [ipam.allocate("w", str(i)) for i in range(5)]
    # usable .1-.6; router .3, health .1
    assert got[:4] == ["10.10.2.2", "10.10.2.4", "10.10.2.5", "10.10.2.6"]
    assert got[4] == Exhausted("w", "10.10.2.0/29")
    assert got[4].message == "IPAM: no free address in 10.10.2.0/29"


def test_claims():
    ipam = ClusterIPAM(
        [plan_node("w", "10.10.2.0/24", "10.10.2.205"), plan_node("v", "10.10.1.0/24")]
    )
    assert ipam.claim("10.10.1.164", "p") == "v"
    assert ipam.claim("10.10.1.164", "p") == "v"  # idempotent for the same owner
    c = ipam.claim("10.10.1.164", "q")
    assert isinstance(c, Conflict) and c.reason == "10.10.1.164 is already allocated to p"
    assert isinstance(ipam.claim("10.20.0.1", "q"), Conflict)
    assert isinstance(ipam.claim("10.10.2.205", "q"), Conflict)
    assert isinstance(ipam.claim("10.10.2.255", "q"), Conflict)
    assert ipam.node_for_ip("10.10.2.7") == "w"
    assert ipam.node_for_ip("nonsense") is None
    # A claimed address is never allocated.
    assert ipam.allocate("v", "r") == "10.10.1.3"  # .1 router, .2 health


def test_ipam_summary_line():
    assert (
        ipam_summary(plan_node("w", "10.10.2.0/24"), 5) == "IPv4: 5/254 allocated from 10.10.2.0/24"
    )
