"""Services of every type -> lb4 entries (cilium.md §7.1)."""

from __future__ import annotations

from ipaddress import IPv4Address

import cluster_docs as C

from ciliate.control.engine import compute_desired
from ciliate.desired import (
    LB_SCOPE_INT,
    SVC_FLAG2_INT_LOCAL_SCOPE,
    SVC_FLAG2_TWO_SCOPES,
    SVC_FLAG_AFFINITY,
    SVC_FLAG_EXT_LOCAL_SCOPE,
    SVC_FLAG_LOADBALANCER,
    SVC_FLAG_NODEPORT,
    SVC_FLAG_ROUTABLE,
    DesiredState,
    LB4Key,
    NodeState,
)

W1, W2 = "mycluster-worker", "mycluster-worker2"
PORT = [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]
SLICE_PORT = [{"name": "http", "port": 8080, "protocol": "TCP"}]
EPS = [("10.10.2.121", W1, True), ("10.10.1.155", W2, True), ("10.10.1.9", W2, False)]


def _state(*svc_docs: dict[str, object]) -> DesiredState:
    cfg = C.config()
    return compute_desired(C.node_docs(cfg) + C.networking101() + list(svc_docs), cfg)


def _master(n: NodeState, ip: str, port: int, scope: int = 0):  # type: ignore[no-untyped-def]
    return n.lb4_services[LB4Key(IPv4Address(ip), port, 0, 6, scope)]


def _backend_ips(n: NodeState, ip: str, port: int, scope: int = 0) -> set[str]:
    m = _master(n, ip, port, scope)
    out = set()
    for slot in range(1, m.count + 1):
        bid = n.lb4_services[LB4Key(IPv4Address(ip), port, slot, 6, scope)].backend_id
        out.add(str(n.lb4_backends[bid].address))
    return out


def test_clusterip_only_ready_backends_and_revnat() -> None:
    s = _state(C.service("ns", "web", "10.96.0.20", PORT, {"app": "x"}),
               C.endpoint_slice("ns", "web", EPS, SLICE_PORT))  # fmt: skip
    n = s.nodes[W1]
    m = _master(n, "10.96.0.20", 80)
    assert m.count == 2 and m.flags & SVC_FLAG_ROUTABLE == 0
    assert _backend_ips(n, "10.96.0.20", 80) == {"10.10.2.121", "10.10.1.155"}
    assert {b.port for b in n.lb4_backends.values()} == {8080}
    rn = n.lb4_reverse_nat[m.rev_nat_index]
    assert (str(rn.address), rn.port) == ("10.96.0.20", 80)
    assert s.services[m.rev_nat_index].service == "ns/web"


def test_nodeport_surrogate_and_node_ip_frontends() -> None:
    np_port = [{**PORT[0], "nodePort": 31814}]
    s = _state(C.service("ns", "web", "10.96.0.21", np_port, {"app": "x"}, type_="NodePort"),
               C.endpoint_slice("ns", "web", EPS, SLICE_PORT))  # fmt: skip
    for name, ip in ((W1, "172.18.0.2"), (W2, "172.18.0.4")):
        n = s.nodes[name]
        sur = _master(n, "0.0.0.0", 31814)
        assert sur.flags & SVC_FLAG_NODEPORT and not sur.flags & SVC_FLAG_ROUTABLE
        own = _master(n, ip, 31814)
        assert own.flags & SVC_FLAG_NODEPORT and own.flags & SVC_FLAG_ROUTABLE
        assert str(n.lb4_reverse_nat[own.rev_nat_index].address) == ip
    other = "172.18.0.4"
    assert LB4Key(IPv4Address(other), 31814, 0, 6) not in s.nodes[W1].lb4_services


def test_loadbalancer_pending_and_with_ingress() -> None:
    p = [{**PORT[0], "nodePort": 30080}]
    pending = _state(C.service("ns", "lb", "10.96.0.22", p, {"app": "x"}, type_="LoadBalancer"),
                     C.endpoint_slice("ns", "lb", EPS, SLICE_PORT))  # fmt: skip
    types = {fe.type for fe in pending.services.values()}
    assert types == {"ClusterIP", "NodePort"}
    s = _state(C.service("ns", "lb", "10.96.0.22", p, {"app": "x"}, type_="LoadBalancer",
                         lb_ingress=["172.18.255.200"]),
               C.endpoint_slice("ns", "lb", EPS, SLICE_PORT))  # fmt: skip
    m = _master(s.nodes[W1], "172.18.255.200", 80)
    assert m.flags & SVC_FLAG_LOADBALANCER and m.count == 2


def test_headless_and_externalname_have_no_frontends() -> None:
    s = _state(
        C.service("ns", "h", "None", PORT, {"app": "x"}),
        C.endpoint_slice("ns", "h", EPS, SLICE_PORT),
        C.service("ns", "ext", "", [], None, type_="ExternalName", externalName="example.com"),
    )
    assert not s.services and not s.nodes[W1].lb4_services


def test_session_affinity_timeout_in_master() -> None:
    s = _state(C.service("ns", "sa", "10.96.0.23", PORT, {"app": "x"}, sessionAffinity="ClientIP",
                         sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}}),
               C.endpoint_slice("ns", "sa", EPS, SLICE_PORT))  # fmt: skip
    m = _master(s.nodes[W1], "10.96.0.23", 80)
    assert m.flags & SVC_FLAG_AFFINITY and m.backend_id & 0xFFFFFF == 60 and m.backend_id >> 24 == 0


def test_lb_algorithm_annotation_and_maglev_table() -> None:
    s = _state(C.service("ns", "mg", "10.96.0.24", PORT, {"app": "x"},
                         annotations={"service.cilium.io/lb-algorithm": "maglev"}),
               C.endpoint_slice("ns", "mg", EPS, SLICE_PORT))  # fmt: skip
    m = _master(s.nodes[W1], "10.96.0.24", 80)
    assert m.backend_id >> 24 == 2
    table = s.nodes[W1].maglev[m.rev_nat_index]
    assert len(table) == 16381 and set(table) == set(s.nodes[W1].lb4_backends)


def test_external_traffic_policy_local_two_scopes() -> None:
    p = [{**PORT[0], "nodePort": 30081}]
    s = _state(C.service("ns", "loc", "10.96.0.25", p, {"app": "x"}, type_="NodePort",
                         externalTrafficPolicy="Local"),
               C.endpoint_slice("ns", "loc", EPS, SLICE_PORT))  # fmt: skip
    n1, n2 = s.nodes[W1], s.nodes[W2]
    ext = _master(n1, "172.18.0.2", 30081)
    assert ext.flags & SVC_FLAG_EXT_LOCAL_SCOPE and ext.flags2 & SVC_FLAG2_TWO_SCOPES
    assert _backend_ips(n1, "172.18.0.2", 30081) == {"10.10.2.121"}
    assert _backend_ips(n2, "172.18.0.4", 30081) == {"10.10.1.155"}
    # in-cluster clients (scope INT) still reach every backend
    assert _backend_ips(n1, "172.18.0.2", 30081, LB_SCOPE_INT) == {"10.10.2.121", "10.10.1.155"}
    # the ClusterIP frontend is east-west: all backends
    assert _backend_ips(n1, "10.96.0.25", 80) == {"10.10.2.121", "10.10.1.155"}


def test_internal_traffic_policy_local_limits_clusterip() -> None:
    s = _state(C.service("ns", "il", "10.96.0.26", PORT, {"app": "x"}, internalTrafficPolicy="Local"),
               C.endpoint_slice("ns", "il", EPS, SLICE_PORT))  # fmt: skip
    assert _master(s.nodes[W1], "10.96.0.26", 80).flags2 & SVC_FLAG2_INT_LOCAL_SCOPE
    assert _backend_ips(s.nodes[W1], "10.96.0.26", 80) == {"10.10.2.121"}
    assert _backend_ips(s.nodes[W2], "10.96.0.26", 80) == {"10.10.1.155"}
    assert _master(s.nodes["mycluster-control-plane"], "10.96.0.26", 80).count == 0


def test_backend_ids_are_shared_and_stable() -> None:
    docs = [
        C.service("ns", "a", "10.96.0.30", PORT, {"app": "x"}),
        C.endpoint_slice("ns", "a", EPS, SLICE_PORT),
        C.service("ns", "b", "10.96.0.31", PORT, {"app": "x"}),
        C.endpoint_slice("ns", "b", EPS, SLICE_PORT),
    ]
    s = _state(*docs)
    assert len(s.nodes[W1].lb4_backends) == 2  # same ip:port/proto, one backend ID
    cfg = C.config()
    fewer = [docs[0], C.endpoint_slice("ns", "a", EPS[1:], SLICE_PORT), *docs[2:]]
    s2 = compute_desired(C.node_docs(cfg) + C.networking101() + fewer, cfg, previous=s)
    assert dict(s2.nodes[W1].lb4_backends) == dict(s.nodes[W1].lb4_backends)
