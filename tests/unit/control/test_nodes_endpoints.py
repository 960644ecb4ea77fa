"""Node facts from Node documents and the cluster config; endpoint ID allocation."""

from __future__ import annotations

from ipaddress import IPv4Address

import cluster_docs as C
import pytest

from ciliate.control.endpoints import (
    MAX_ENDPOINT_ID,
    EndpointIDsExhausted,
    allocate_endpoint_ids,
    lxc_name,
    preferred_endpoint_id,
)
from ciliate.control.nodes import resolve_nodes


def test_node_docs_win_over_config_and_config_fills_gaps() -> None:
    cfg = C.config()
    docs = C.node_docs(cfg)
    docs[1]["metadata"]["annotations"]["network.cilium.io/ipv4-cilium-host"] = "10.10.2.99"
    nodes = resolve_nodes(docs, cfg)
    assert nodes["mycluster-worker"].cilium_internal_ip == IPv4Address("10.10.2.99")
    assert nodes["mycluster-control-plane"].is_control_plane
    bare = resolve_nodes([], cfg)  # no Node documents yet: the config stands in
    assert bare["mycluster-worker2"].cilium_internal_ip == IPv4Address("10.10.1.55")
    assert bare["mycluster-worker2"].health_ip is None
    assert bare["mycluster-worker2"].node_prefix_len == 16


def test_node_without_pod_cidr_is_left_out() -> None:
    cfg = C.config()
    doc = C.node_docs(cfg)[0]
    doc["metadata"]["name"] = "extra"
    doc["spec"] = {}
    assert "extra" not in resolve_nodes([doc], cfg)


def test_endpoint_ids_probe_on_collision_and_keep_existing() -> None:
    a = "ns/a"
    pref = preferred_endpoint_id(a)
    ids = allocate_endpoint_ids([a, "ns/b"], {"ns/b": pref})
    assert ids["ns/b"] == pref and ids[a] == pref % MAX_ENDPOINT_ID + 1
    assert allocate_endpoint_ids([a, "ns/b"], {}) == allocate_endpoint_ids(["ns/b", a], {})


def test_endpoint_ids_exhausted() -> None:
    existing = {f"p{i}": i for i in range(1, MAX_ENDPOINT_ID + 1)}
    with pytest.raises(EndpointIDsExhausted):
        allocate_endpoint_ids([*existing, "one-more"], existing)


def test_lxc_names_fit_ifnamsiz() -> None:
    name = lxc_name("a-very-long-namespace/a-very-long-pod-name-0123456789")
    assert len(name) == 15 and name.startswith("lxc")
    assert all(c in "0123456789abcdef" for c in name[3:])


def test_cidr_delta_never_overrides_pods() -> None:
    from ipaddress import IPv4Network

    from ciliate.control.ipcache import cidr_delta
    from ciliate.desired import Identity, IPCacheKey, RemoteEndpointInfo

    pod = IPCacheKey(IPv4Network("10.10.2.5/32"))
    cache = {pod: RemoteEndpointInfo(300)}
    a = Identity((1 << 24) | 1, ("cidr:10.10.2.5/32",))
    b = Identity((1 << 24) | 2, ("cidr:192.0.2.0/24",))
    ups, dels = cidr_delta(
        cache, {}, {IPv4Network("10.10.2.5/32"): a, IPv4Network("192.0.2.0/24"): b}
    )
    assert pod not in ups and IPCacheKey(IPv4Network("192.0.2.0/24")) in ups and not dels
    cache.update(ups)
    ups2, dels2 = cidr_delta(cache, {IPv4Network("192.0.2.0/24"): b}, {})
    assert not ups2 and dels2 == [IPCacheKey(IPv4Network("192.0.2.0/24"))]


def test_pod_nets_are_built_on_read_and_equal_eager_ones() -> None:
    from ciliate.control.endpoints import PodNets, pod_endpoint, pod_net

    cfg = C.config()
    info = resolve_nodes(C.node_docs(cfg), cfg)["mycluster-worker"]
    eps = {
        f"ns/p{i}": pod_endpoint(info, f"ns/p{i}", i, IPv4Address(f"10.10.2.{i}"), 300, ())
        for i in range(1, 4)
    }
    lazy = PodNets(info, 1500, eps)
    assert len(lazy) == 3 and "ns/p2" in lazy and "ns/p9" not in lazy
    assert lazy == {k: pod_net(ep, info, 1500) for k, ep in eps.items()}
    assert lazy["ns/p1"] is lazy["ns/p1"]
