"""Services in eBPF: ClusterIP DNAT to local and remote backends with reverse NAT on the
replies, NodePort from the node network, Maglev tables in the shared map, session
affinity, a service without backends dropping with 158, and established connections
keeping their backend when the service's backends change.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from ipaddress import IPv4Address

import pytest
from bpf_lab import Lab, NameServer, ask, connect, running_lab

from ciliate.datapath.linux.events import EventReader, parse_event
from ciliate.desired import (
    LB_ALG_MAGLEV,
    SVC_FLAG_AFFINITY,
    SVC_FLAG_NODEPORT,
    LB4Backend,
    LB4Key,
    LB4ReverseNat,
    LB4Service,
    MapChange,
)

pytestmark = [pytest.mark.privileged]

TCP = 6
BACKENDS = {1: ("a2", "10.77.1.12"), 2: ("b1", "10.77.2.11")}


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with running_lab() as lab:
        servers: list[NameServer] = []
        try:
            for _, (pod, _ip) in BACKENDS.items():
                servers.append(NameServer(lab, pod, 8080))
            for node in lab.nodes:
                backends = [
                    MapChange(
                        node, "cilium_lb4_backends_v3", bid, LB4Backend(IPv4Address(ip), 8080)
                    )
                    for bid, (_pod, ip) in BACKENDS.items()
                ]
                apply(lab, node, backends)
            yield lab
        finally:
            for s in servers:
                s.close()


def apply(lab: Lab, node: str, changes: list[MapChange]) -> None:
    bpf = lab.nodes[node].bpf
    assert bpf is not None
    bpf.maps.apply(changes)


def service(
    node: str,
    vip: str,
    port: int,
    rev: int,
    backend_ids: list[int],
    *,
    flags: int = 0,
    master_value: int = 0,
) -> list[MapChange]:
    addr = IPv4Address(vip)
    ch = [
        MapChange(
            node,
            "cilium_lb4_services_v2",
            LB4Key(addr, port, 0, TCP),
            LB4Service(master_value, len(backend_ids), rev, flags),
        ),
        MapChange(node, "cilium_lb4_reverse_nat", rev, LB4ReverseNat(addr, port)),
    ]
    for slot, bid in enumerate(backend_ids, start=1):
        ch.append(
            MapChange(
                node,
                "cilium_lb4_services_v2",
                LB4Key(addr, port, slot, TCP),
                LB4Service(bid, 0, rev, flags),
            )
        )
    return ch


def test_cluster_ip_to_a_local_backend(lab: Lab) -> None:
    apply(lab, "na", service("na", "10.96.7.7", 80, 1, [1]))
    s = connect(lab, "a1", "10.96.7.7", 80)
    assert isinstance(s, socket.socket)
    with s:
        # the reply came from the service address (reverse NAT), or connect would fail
        assert s.getpeername() == ("10.96.7.7", 80)
        assert ask(s) == "a2"


def test_cluster_ip_to_a_remote_backend_is_reverse_nated_on_return(lab: Lab) -> None:
    apply(lab, "na", service("na", "10.96.7.8", 80, 2, [2]))
    s = connect(lab, "a1", "10.96.7.8", 80)
    assert isinstance(s, socket.socket)
    with s:
        assert ask(s) == "b1"


def test_service_without_backends_drops_with_158(lab: Lab) -> None:
    apply(lab, "na", service("na", "10.96.7.9", 80, 3, []))
    bpf = lab.nodes["na"].bpf
    assert bpf is not None
    reader: EventReader = bpf.events()
    try:
        with pytest.raises(OSError):
            connect(lab, "a1", "10.96.7.9", 80, timeout=0.5)
        events = [parse_event(r) for r in reader.poll(200)]
    finally:
        reader.close()
    assert any(e.is_drop and e.subtype == 158 for e in events), events


def test_node_port_from_the_node_network(lab: Lab) -> None:
    node_ip = lab.nodes["na"].ip
    apply(lab, "na", service("na", node_ip, 30080, 4, [1], flags=SVC_FLAG_NODEPORT))
    s = connect(lab, "nb", node_ip, 30080)  # from the other node, over eth0
    assert isinstance(s, socket.socket)
    with s:
        assert s.getpeername() == (node_ip, 30080)
        assert ask(s) == "a2"


def test_maglev_table_in_the_shared_map_decides(lab: Lab) -> None:
    m = 251
    # slots say a2, the Maglev table says b1: Maglev must win
    changes = service("na", "10.96.7.10", 80, 5, [1], master_value=LB_ALG_MAGLEV << 24)
    changes.append(MapChange("na", "cilium_lb4_maglev", 5, tuple([2] * m)))
    apply(lab, "na", changes)
    bpf = lab.nodes["na"].bpf
    assert bpf is not None
    cfg = bpf.maps.runtime_config()
    assert cfg is not None and cfg.maglev_m == m
    dump = dict(bpf.maps.dump("cilium_lb4_maglev"))
    assert len(dump[(5).to_bytes(2, "little")]) == 4 * m
    for _ in range(3):
        s = connect(lab, "a1", "10.96.7.10", 80)
        assert isinstance(s, socket.socket)
        with s:
            assert ask(s) == "b1"


def test_session_affinity_keeps_the_client_on_one_backend(lab: Lab) -> None:
    timeout = 100
    apply(
        lab,
        "na",
        service("na", "10.96.7.11", 80, 6, [1, 2], flags=SVC_FLAG_AFFINITY, master_value=timeout),
    )
    seen = set()
    for _ in range(8):
        s = connect(lab, "a1", "10.96.7.11", 80)
        assert isinstance(s, socket.socket)
        with s:
            seen.add(ask(s))
    assert len(seen) == 1


def test_established_connection_keeps_its_backend_when_backends_change(lab: Lab) -> None:
    apply(lab, "na", service("na", "10.96.7.12", 80, 7, [1]))
    s = connect(lab, "a1", "10.96.7.12", 80)
    assert isinstance(s, socket.socket)
    with s:
        assert ask(s) == "a2"
        apply(lab, "na", service("na", "10.96.7.12", 80, 7, [2]))  # now only b1
        time.sleep(0.05)
        assert ask(s) == "a2"  # the running connection stays on a2
        s2 = connect(lab, "a1", "10.96.7.12", 80)
        assert isinstance(s2, socket.socket)
        with s2:
            assert ask(s2) == "b1"  # new connections go to the new backend


def test_node_port_to_a_backend_on_another_node(lab: Lab) -> None:
    """NodePort on na with the only backend on nb: the client (nb's host, over eth0)
    reaches na's address and gets its answer from na's address, though b1 served it."""
    node_ip = lab.nodes["na"].ip
    apply(lab, "na", service("na", node_ip, 30081, 8, [2], flags=SVC_FLAG_NODEPORT))
    s = connect(lab, "nb", node_ip, 30081)
    assert isinstance(s, socket.socket)
    with s:
        assert s.getpeername() == (node_ip, 30081)
        assert ask(s) == "b1"


def test_node_port_hairpin_back_to_the_clients_node(lab: Lab) -> None:
    """a1 (on na) -> nb's NodePort -> backend a2 (on na): nb tunnels to na, and the
    replies go back through nb (which holds the translation) before reaching a1."""
    node_ip = lab.nodes["nb"].ip
    apply(lab, "nb", service("nb", node_ip, 30082, 9, [1], flags=SVC_FLAG_NODEPORT))
    s = connect(lab, "a1", node_ip, 30082)
    assert isinstance(s, socket.socket)
    with s:
        assert s.getpeername() == (node_ip, 30082)
        assert ask(s) == "a2"


def test_internal_traffic_policy_local_uses_the_int_scope_twin(lab: Lab) -> None:
    """A two-scopes service: the EXT entry lists every backend, the INT twin (for traffic
    from inside the cluster, internalTrafficPolicy=Local) only the node-local one."""
    from ciliate.desired import LB_SCOPE_INT, SVC_FLAG2_TWO_SCOPES

    vip, rev = IPv4Address("10.96.7.13"), 10
    changes = service("na", str(vip), 80, rev, [2])  # EXT: only the remote b1
    changes[0] = MapChange(
        "na",
        "cilium_lb4_services_v2",
        LB4Key(vip, 80, 0, TCP),
        LB4Service(0, 1, rev, 0, SVC_FLAG2_TWO_SCOPES),
    )
    changes += [
        MapChange(
            "na",
            "cilium_lb4_services_v2",
            LB4Key(vip, 80, 0, TCP, LB_SCOPE_INT),
            LB4Service(0, 1, rev, 0, SVC_FLAG2_TWO_SCOPES),
        ),
        MapChange(
            "na",
            "cilium_lb4_services_v2",
            LB4Key(vip, 80, 1, TCP, LB_SCOPE_INT),
            LB4Service(1, 0, rev),
        ),
    ]
    apply(lab, "na", changes)
    for _ in range(3):
        s = connect(lab, "a1", str(vip), 80)
        assert isinstance(s, socket.socket)
        with s:
            assert ask(s) == "a2"  # the INT twin's local backend, never b1


def test_maglev_table_delete_removes_every_slot(lab: Lab) -> None:
    apply(lab, "na", [MapChange("na", "cilium_lb4_maglev", 11, tuple([1] * 251))])
    bpf = lab.nodes["na"].bpf
    assert bpf is not None
    key = (11).to_bytes(2, "little")
    assert bpf.maps.lookup("cilium_lb4_maglev", key) is not None
    apply(lab, "na", [MapChange("na", "cilium_lb4_maglev", 11, None)])
    assert bpf.maps.lookup("cilium_lb4_maglev", key) is None
