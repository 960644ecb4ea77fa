"""desired.py: layered maps, diff and apply_delta, policy map names."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from ciliate.desired import (
    IPCacheKey,
    LayeredMap,
    MapChange,
    RemoteEndpointInfo,
    apply_delta,
    diff_map,
    layered,
    lxc_ifindex,
    parse_policy_map_name,
    pod_eth0_ifindex,
    policy_map_name,
)


def test_layered_map_reads_like_a_dict() -> None:
    base = {1: "a", 2: "b", 3: "c"}
    m = LayeredMap(base, {2: "B", 4: "d"}, [3, 99])
    assert dict(m) == {1: "a", 2: "B", 4: "d"}
    assert len(m) == 3 and 3 not in m and 4 in m and m.get(3) is None
    assert base == {1: "a", 2: "b", 3: "c"}  # the base is never touched


def test_layered_flattens_and_compacts() -> None:
    base = {i: i for i in range(1000)}
    m = layered(base, {5: -5})
    m2 = layered(m, {6: -6}, [7])
    assert isinstance(m2, LayeredMap) and m2.base is base  # one level, shared base
    assert m2[5] == -5 and m2[6] == -6 and 7 not in m2
    big = layered(m2, {i: -i for i in range(100)})
    assert isinstance(big, dict) and big[7] == -7 and 7 in big  # re-added after delete
    assert dict(m) == {**base, 5: -5}  # earlier layers unchanged


def test_diff_map_only_changed_entries() -> None:
    base = {i: i for i in range(100)}
    a = layered(base, {1: 10})
    b = layered(base, {2: 20}, [3])
    assert diff_map(a, b) == [(1, 1), (2, 20), (3, None)]
    assert diff_map(a, a) == []
    assert diff_map({1: 1}, {1: 1, 2: 2}) == [(2, 2)]


def test_policy_map_names() -> None:
    assert policy_map_name(7) == "cilium_policy_v2_00007"
    assert parse_policy_map_name("cilium_policy_v2_01587") == 1587
    assert parse_policy_map_name("cilium_policy_01587") == 1587
    assert parse_policy_map_name("cilium_lxc") is None


def test_ifindex_plan_pairs_are_distinct_and_stable() -> None:
    node_side = {lxc_ifindex(i) for i in range(1, 4096)}
    assert min(node_side) > 6 and len(node_side) == 4095
    assert all(pod_eth0_ifindex(i) == lxc_ifindex(i) - 1 for i in range(1, 4096))


def test_apply_delta_on_a_new_node_creates_it() -> None:
    from ciliate.desired import DesiredState

    st = DesiredState("c", {}, {})
    k = IPCacheKey(IPv4Network("10.0.0.1/32"))
    v = RemoteEndpointInfo(300, IPv4Address("172.18.0.9"), 2)
    out = apply_delta(st, [MapChange("n1", "cilium_ipcache", k, v)])
    assert dict(out.nodes["n1"].ipcache) == {k: v}
