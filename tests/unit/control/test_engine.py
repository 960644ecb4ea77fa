"""compute_desired on the networking101 cluster: what EXPECTED.md shows, and the
incremental Engine agreeing with a full recompute."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import cluster_docs as C
import pytest

from ciliate import codec
from ciliate.control.engine import Engine, compute_desired
from ciliate.desired import (
    IPCACHE_F_HAS_TUNNEL_EP,
    DesiredState,
    EndpointKey,
    IPCacheKey,
    Route,
    apply_delta,
    diff,
    map_contents,
)

W1, W2, CP = "mycluster-worker", "mycluster-worker2", "mycluster-control-plane"


@pytest.fixture(scope="module")
def state() -> DesiredState:
    cfg = C.config()
    return compute_desired(C.node_docs(cfg) + C.networking101(), cfg)


def test_node_routes_are_the_blogs(state: DesiredState) -> None:
    assert state.nodes[W1].routes == (
        Route("10.10.0.0/24", "cilium_host", "10.10.2.205", "10.10.2.205", "kernel", "", 1450),
        Route("10.10.1.0/24", "cilium_host", "10.10.2.205", "10.10.2.205", "kernel", "", 1450),
        Route("10.10.2.0/24", "cilium_host", "10.10.2.205", "10.10.2.205", "kernel", "", 0),
        Route("10.10.2.205", "cilium_host", proto="kernel", scope="link"),
        Route("172.18.0.0/16", "eth0", src="172.18.0.2", proto="kernel", scope="link"),
    )


def test_devices_and_programs(state: DesiredState) -> None:
    devs = {d.name: d for d in state.nodes[W1].devices}
    assert [d.ifindex for d in state.nodes[W1].devices[:5]] == [1, 2, 3, 4, 5]
    assert devs["cilium_host"].addresses == ("10.10.2.205/32",)
    assert devs["eth0"].addresses == ("172.18.0.2/16",)
    assert devs["cilium_net"].programs == (("ingress", "cil_to_host"),)
    assert devs["cilium_host"].programs == (("ingress", "cil_to_host"), ("egress", "cil_from_host"))
    assert devs["cilium_vxlan"].programs == (
        ("ingress", "cil_from_overlay"),
        ("egress", "cil_to_overlay"),
    )
    assert devs["eth0"].programs == (("ingress", "cil_from_netdev"),)
    lxcs = [d for d in state.nodes[W1].devices if d.name.startswith("lxc")]
    assert {d.name for d in lxcs} >= {"lxc_health"} and len(lxcs) == 3
    assert all(d.programs == (("ingress", "cil_from_container"),) for d in lxcs)
    assert len({d.ifindex for d in state.nodes[W1].devices}) == len(state.nodes[W1].devices)


def test_pod_namespace(state: DesiredState) -> None:
    pod = next(p for p in state.nodes[W1].pods.values() if "busybox" in p.pod)
    ep = next(e for e in state.nodes[W1].endpoints.values() if e.pod == pod.pod)
    eth0 = pod.devices[1]
    assert eth0.addresses == ("10.10.2.117/32",)
    assert (eth0.ifindex, eth0.peer_ifindex) == (ep.pod_ifindex, ep.lxc_ifindex)
    assert [str(r.dst) for r in pod.routes] == ["default", "10.10.2.205", "10.10.2.0/24"]
    assert pod.routes[0].via == "10.10.2.205" and pod.routes[1].scope == "link"
    # tunnel mode: the default route carries the tunnel MTU, the node's own CIDR not
    assert [r.mtu for r in pod.routes] == [1450, 0, 0] and pod.routes[2].via == "10.10.2.205"
    assert pod.neighbors[0].ip == "10.10.2.205" and pod.neighbors[0].mac == ep.lxc_mac
    assert ep.lxc_name.startswith("lxc") and len(ep.lxc_name) == 15
    assert int(ep.lxc_mac.split(":")[0], 16) & 0x3 == 0x2  # locally administered unicast


def test_same_labels_share_an_identity(state: DesiredState) -> None:
    eps = [e for n in state.nodes.values() for e in n.endpoints.values() if e.pod]
    by_app: dict[str, set[int]] = {}
    for e in eps:
        by_app.setdefault(e.pod.split("/")[1].split("-")[0], set()).add(e.identity)
    assert all(len(v) == 1 for v in by_app.values())
    assert by_app["busybox"] != by_app["netshoot"]
    assert all(i >= 256 for v in by_app.values() for i in v)


def test_ipcache_views(state: DesiredState) -> None:
    ic = state.nodes[W1].ipcache
    remote = ic[IPCacheKey(IPv4Network("10.10.1.155/32"))]
    assert (
        remote.tunnel_endpoint == IPv4Address("172.18.0.4")
        and remote.flags == IPCACHE_F_HAS_TUNNEL_EP
    )
    local = ic[IPCacheKey(IPv4Network("10.10.2.121/32"))]
    assert local.tunnel_endpoint is None and local.flags == 0
    assert ic[IPCacheKey(IPv4Network("172.18.0.2/32"))].sec_identity == 1
    assert ic[IPCacheKey(IPv4Network("10.10.2.205/32"))].sec_identity == 1
    assert ic[IPCacheKey(IPv4Network("172.18.0.4/32"))].sec_identity == 6
    assert ic[IPCacheKey(IPv4Network("172.18.0.3/32"))].sec_identity == 7
    assert ic[IPCacheKey(IPv4Network("10.10.1.140/32"))].sec_identity == 4
    assert ic[IPCacheKey(IPv4Network("0.0.0.0/0"))].sec_identity == 2


def test_lxc_lookup_bytes(state: DesiredState) -> None:
    node = state.nodes[W1]
    key = EndpointKey(IPv4Address("10.10.2.121"))
    value = codec.build_endpoint_info(node.lxc[key])
    ep = next(e for e in node.endpoints.values() if str(e.ip) == "10.10.2.121")
    assert int.from_bytes(value[6:8], "little") == ep.id
    assert value[16:22] == bytes.fromhex(ep.pod_mac.replace(":", ""))
    assert value[24:30] == bytes.fromhex(ep.lxc_mac.replace(":", ""))


def test_endpoint_ids_are_stable_when_others_come_and_go(state: DesiredState) -> None:
    cfg = C.config()
    extra = [
        C.pod("networking101", f"extra-{i}", W1, f"10.10.2.{150 + i}", {"app": "x"})
        for i in range(40)
    ]
    bigger = compute_desired(C.node_docs(cfg) + C.networking101() + extra, cfg, previous=state)
    ids = {e.pod: e.id for e in state.nodes[W1].endpoints.values()}
    ids2 = {e.pod: e.id for e in bigger.nodes[W1].endpoints.values()}
    assert all(ids2[k] == v for k, v in ids.items())
    assert len(set(ids2.values())) == len(ids2)
    smaller = compute_desired(
        C.node_docs(cfg) + C.networking101()[:2] + extra, cfg, previous=bigger
    )
    ids3 = {e.pod: e.id for e in smaller.nodes[W1].endpoints.values()}
    assert all(ids3[k] == ids2[k] for k in ids3)


def _svc_docs() -> list[dict[str, object]]:
    return [
        C.service(
            "networking101",
            "web",
            "10.96.0.20",
            [{"name": "http", "port": 80, "targetPort": 8080}],
            {"app": "netshoot"},
        ),
        C.endpoint_slice(
            "networking101",
            "web",
            [("10.10.2.121", W1, True), ("10.10.1.155", W2, True)],
            [{"name": "http", "port": 8080, "protocol": "TCP"}],
        ),
    ]


def test_incremental_engine_matches_full_recompute() -> None:
    cfg = C.config()
    base = C.node_docs(cfg) + C.networking101() + _svc_docs()
    eng = Engine(cfg)
    s0 = eng.load(base)
    newpod = C.pod("networking101", "netshoot-new", W2, "10.10.1.200", {"app": "netshoot"})
    changes = eng.update([newpod])
    s1 = eng.state
    full1 = compute_desired([*base, newpod], cfg, previous=s0)
    assert map_contents(s1) == map_contents(full1)
    assert map_contents(apply_delta(s0, changes)) == map_contents(s1)
    assert {c.map for c in changes} <= {"cilium_lxc", "cilium_ipcache"} | {
        m for c in changes if (m := c.map).startswith("cilium_policy_v2_")
    }
    # a backend becomes ready / another goes
    sl = C.endpoint_slice("networking101", "web", [("10.10.2.121", W1, True), ("10.10.1.200", W2, True)],
                          [{"name": "http", "port": 8080, "protocol": "TCP"}])  # fmt: skip
    ch2 = eng.update([sl])
    s2 = eng.state
    assert ch2 and all(c.map.startswith("cilium_lb4_") for c in ch2)
    assert map_contents(apply_delta(s1, ch2)) == map_contents(s2)
    assert map_contents(s2) == map_contents(
        compute_desired([*base[:-1], newpod, sl], cfg, previous=s0)
    )
    ch3 = eng.update([], [newpod])
    assert map_contents(apply_delta(s2, ch3)) == map_contents(eng.state)
    assert map_contents(s0) == map_contents(s0)  # earlier states are never mutated
    assert diff(s0, s0) == []


def test_earlier_states_stay_unchanged() -> None:
    cfg = C.config()
    eng = Engine(cfg)
    s0 = eng.load(C.node_docs(cfg) + C.networking101())
    before = map_contents(s0)
    taken = {36, 117, 121, 205}
    octets = [n for n in range(1, 255) if n not in taken][:100]
    for i, n in enumerate(octets):
        eng.update([C.pod("networking101", f"p{i}", W1, f"10.10.2.{n}", {"app": "p"})])
    assert map_contents(s0) == before
    assert len(eng.state.nodes[W2].ipcache) == len(s0.nodes[W2].ipcache) + 100


def _netpol() -> dict[str, object]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "only-busybox", "namespace": "networking101"},
        "spec": {
            "podSelector": {"matchLabels": {"app": "netshoot"}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "busybox"}}}],
                         "ports": [{"port": 80, "protocol": "TCP"}]}],
            "egress": [{"to": [{"ipBlock": {"cidr": "192.0.2.0/24"}}]}],
        },
    }  # fmt: skip


def test_incremental_policy_apply_and_delete_match_full() -> None:
    cfg = C.config()
    base = C.node_docs(cfg) + C.networking101()
    eng = Engine(cfg)
    s0 = eng.load(base)
    pol = _netpol()
    ch = eng.update([pol])
    s1 = eng.state
    full = compute_desired([*base, pol], cfg, previous=s0)
    assert map_contents(s1) == map_contents(full)
    assert map_contents(apply_delta(s0, ch)) == map_contents(s1)
    ns_eps = [e for e in s1.nodes[W1].endpoints.values() if "netshoot" in e.pod]
    assert ns_eps and all(e.ingress_enforced and e.egress_enforced for e in ns_eps)
    cidr = IPCacheKey(IPv4Network("192.0.2.0/24"))
    assert s1.nodes[W2].ipcache[cidr].sec_identity >= 1 << 24
    ch2 = eng.update([], [pol])
    assert map_contents(apply_delta(s1, ch2)) == map_contents(eng.state)
    assert map_contents(eng.state) == map_contents(s0)


def test_pins_keep_ids_across_processes() -> None:
    cfg = C.config()
    docs = C.node_docs(cfg) + C.networking101()
    eng = Engine(cfg)
    s0 = eng.load(docs)
    pins = eng.export_pins()
    pod = next(e.pod for e in s0.nodes[W1].endpoints.values() if e.pod)
    pins["endpoints"][W1][pod] = 7  # as if a collision had pushed it there earlier
    s1 = compute_desired(docs, cfg, pins=pins)
    assert next(e.id for e in s1.nodes[W1].endpoints.values() if e.pod == pod) == 7
    assert {i.id for i in s1.identities.values()} == {i.id for i in s0.identities.values()}
    assert compute_desired(docs, cfg, pins={"endpoints": "garbage"}).nodes.keys() == s0.nodes.keys()


def test_shared_backend_survives_one_service_dropping_it() -> None:
    cfg = C.config()
    port = [{"name": "http", "port": 8080, "protocol": "TCP"}]
    eps = [("10.10.2.121", W1, True), ("10.10.1.155", W2, True)]
    docs = C.node_docs(cfg) + C.networking101() + [
        C.service("networking101", "a", "10.96.0.40", [{"name": "http", "port": 80}], {"app": "x"}),
        C.endpoint_slice("networking101", "a", eps, port),
        C.service("networking101", "b", "10.96.0.41", [{"name": "http", "port": 80}], {"app": "x"}),
        C.endpoint_slice("networking101", "b", eps, port),
    ]  # fmt: skip
    eng = Engine(cfg)
    s0 = eng.load(docs)
    assert len(s0.nodes[W1].lb4_backends) == 2
    ch = eng.update([C.endpoint_slice("networking101", "a", eps[:1], port)])
    s1 = eng.state
    assert len(s1.nodes[W1].lb4_backends) == 2  # still used by b
    assert not [c for c in ch if c.map == "cilium_lb4_backends_v3"]
    ch2 = eng.update([C.endpoint_slice("networking101", "b", eps[:1], port)])
    assert len(eng.state.nodes[W1].lb4_backends) == 1
    assert map_contents(apply_delta(s1, ch2)) == map_contents(eng.state)


def test_to_services_policy_follows_slice_changes_incrementally() -> None:
    cfg = C.config()
    cnp = {
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumNetworkPolicy",
        "metadata": {"name": "to-web", "namespace": "networking101"},
        "spec": {
            "endpointSelector": {"matchLabels": {"app": "busybox"}},
            "egress": [{"toServices": [{"k8sService": {"serviceName": "web", "namespace": "networking101"}}]}],
        },
    }  # fmt: skip
    port = [{"name": "http", "port": 8080, "protocol": "TCP"}]
    svc = C.service("networking101", "web", "10.96.0.50", [{"name": "http", "port": 80}], None)
    base = C.node_docs(cfg) + C.networking101() + [svc]
    sl1 = C.endpoint_slice("networking101", "web", [("10.10.2.121", W1, True)], port)
    sl2 = C.endpoint_slice("networking101", "web", [("10.10.1.155", W2, True)], port)
    eng = Engine(cfg)
    s0 = eng.load([*base, sl1])
    ch = eng.update([cnp])
    assert map_contents(apply_delta(s0, ch)) == map_contents(eng.state)
    assert map_contents(eng.state) == map_contents(
        compute_desired([*base, sl1, cnp], cfg, previous=s0)
    )
    s1 = eng.state
    ch2 = eng.update([sl2])
    assert map_contents(apply_delta(s1, ch2)) == map_contents(eng.state)
    assert map_contents(eng.state) == map_contents(
        compute_desired([*base, sl2, cnp], cfg, previous=s0)
    )


def test_owner_objects_do_not_cost_a_rebuild() -> None:
    cfg = C.config()
    eng = Engine(cfg)
    s0 = eng.load(C.node_docs(cfg) + C.networking101())
    dep = {"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "busybox", "namespace": "networking101"}, "spec": {"replicas": 3}}  # fmt: skip
    assert eng.update([dep]) == []
    assert eng.state is s0  # nothing was recomputed


def test_new_identity_pod_extends_peering_maps_incrementally() -> None:
    """A pod with a new identity that policies peer with: the engine emits exactly the
    entries the compiler added to those endpoints' maps (taken from the compiler's
    ``extends`` instead of a diff), twice in a row (the second extends the first's
    layer), and the state equals a full recompute."""
    cfg = C.config()
    pol = _netpol()
    pol["spec"]["ingress"][0]["from"].append({"podSelector": {"matchLabels": {"tier": "t"}}})  # type: ignore[index]
    base = C.node_docs(cfg) + C.networking101() + [pol]
    eng = Engine(cfg)
    s = eng.load(base)
    docs = list(base)
    for i, octet in enumerate((201, 202)):
        new = C.pod(
            "networking101", f"tiered-{i}", W2, f"10.10.1.{octet}", {"tier": "t", "n": str(i)}
        )
        ch = eng.update([new])
        docs.append(new)
        assert map_contents(apply_delta(s, ch)) == map_contents(eng.state)
        assert map_contents(eng.state) == map_contents(compute_desired(docs, cfg, previous=s))
        policy_changes = [c for c in ch if c.map.startswith("cilium_policy_v2_")]
        netshoot = {
            f"cilium_policy_v2_{e.id:05d}"
            for n in eng.state.nodes.values()
            for e in n.endpoints.values()
            if "netshoot" in e.pod
        }
        ident = eng.state.nodes[W2].ipcache[IPCacheKey(IPv4Network(f"10.10.1.{octet}/32"))]
        touched = [c for c in policy_changes if c.map in netshoot]
        assert touched and all(c.key.identity == ident.sec_identity for c in touched)
        s = eng.state
