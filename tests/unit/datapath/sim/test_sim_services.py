"""Service translation in the model datapath: DNAT, reverse NAT, NodePort, no backend,
session affinity on the injected clock, Maglev consistency."""

import random
from collections.abc import Callable

import pytest

from ciliate.clock import FakeClock
from ciliate.datapath.api import EventType, ObsPoint, TraceResult
from ciliate.datapath.render import path_tokens, reply_start
from ciliate.datapath.sim import trace
from ciliate.datapath.sim.network import topology, transmit
from ciliate.datapath.sim.walk import Walk
from ciliate.desired import DesiredState

BB_A = "networking101/busybox-a"
BACKENDS = {"10.10.2.121:8080", "10.10.1.155:8080"}


def test_cluster_ip_is_dnated_and_the_reply_reverse_nated(state: DesiredState) -> None:
    r = trace(state, BB_A, "10.96.0.10:80", protocol="tcp")
    assert r.delivered and r.backend in BACKENDS
    svc = next(s for s in r.steps if s.action == "service")
    assert svc.lookups[0].map == "cilium_lb4_services_v2"
    assert svc.lookups[0].key_hex == "0a 60 00 0a 00 50 00 00 06 00 00 00"
    rev = next(s for s in r.reply_steps if s.action == "rev-nat")
    assert "-> 10.96.0.10:80" in rev.detail
    # The client sees the answer coming from the service address.
    assert r.reply_steps[-1].packet.startswith("10.96.0.10:80 -> 10.10.2.117:40000")


def test_service_by_name(state: DesiredState) -> None:
    r = trace(state, BB_A, "networking101/netshoot", 80, "tcp")
    assert r.dst.kind == "service" and r.delivered


def test_no_backend_drops_158(state: DesiredState) -> None:
    r = trace(state, BB_A, "10.96.0.20:80", protocol="tcp")
    assert not r.delivered and r.drop_reason == 158
    assert r.steps[-1].action == "drop" and "Service backend not found" in r.steps[-1].detail
    drops = [f for f in r.flows if f.event_type == 1]
    assert drops and drops[0].to_hubble()["drop_reason_desc"] == "SERVICE_BACKEND_NOT_FOUND"


def test_random_selection_follows_the_injected_rng(state: DesiredState) -> None:
    seen = {
        trace(state, BB_A, "10.96.0.10:80", rng=random.Random(seed)).backend for seed in range(12)
    }
    assert seen == BACKENDS
    a = trace(state, BB_A, "10.96.0.10:80", rng=random.Random(5)).backend
    b = trace(state, BB_A, "10.96.0.10:80", rng=random.Random(5)).backend
    assert a == b


def test_session_affinity_sticks_until_the_timeout(state: DesiredState) -> None:
    clock = FakeClock()
    rng = random.Random(1)
    w = Walk(topology(state), clock, rng, transmit)
    first = trace(state, BB_A, "10.96.0.30:80", walk=w).backend
    for _ in range(10):
        clock.advance(30)  # each connection within the 100 s timeout of the last use
        # A new connection (the old CT entry is gone after its SYN lifetime).
        w.ct.clear()
        assert trace(state, BB_A, "10.96.0.30:80", walk=w).backend == first
    clock.advance(101)
    w.ct.clear()
    r = trace(state, BB_A, "10.96.0.30:80", walk=w)
    step = next(s for s in r.steps if s.action == "service")
    # The affinity entry timed out: a fresh (random) choice, remembered again.
    assert "(random)" in step.detail
    assert any(lk.map == "cilium_lb4_affinity" and not lk.hit for lk in step.lookups)


def test_established_connection_keeps_its_backend_without_affinity(state: DesiredState) -> None:
    w = Walk(topology(state), FakeClock(), random.Random(3), transmit)
    first = trace(state, BB_A, "10.96.0.10:80", walk=w).backend
    assert all(trace(state, BB_A, "10.96.0.10:80", walk=w).backend == first for _ in range(10))


def test_maglev_is_a_function_of_the_tuple(make_state: Callable[..., DesiredState]) -> None:
    s1, s2 = make_state(), make_state()
    got = [
        trace(s, BB_A, "10.96.0.40:80", rng=random.Random(i)).backend
        for i, s in enumerate((s1, s2, s1))
    ]
    assert len(set(got)) == 1 and got[0] in BACKENDS
    step = next(s for s in trace(s1, BB_A, "10.96.0.40:80").steps if s.action == "service")
    assert "(maglev)" in step.detail
    assert any(lk.map == "cilium_lb4_maglev" for lk in step.lookups)


def test_nodeport_from_outside_via_eth0(state: DesiredState) -> None:
    for seed in range(6):
        r = trace(state, "192.0.2.10", "172.18.0.2:31000", protocol="tcp", rng=random.Random(seed))
        assert r.steps[0].program == "cil_from_netdev"
        assert r.delivered, [s.detail for s in r.steps + r.reply_steps]
        assert r.backend in BACKENDS
        # The client gets its answer from the address and port it connected to.
        assert r.reply_steps[-1].packet.startswith("172.18.0.2:31000 -> 192.0.2.10:40000")
        if r.backend.startswith("10.10.1."):
            assert any(s.action == "snat" for s in r.steps)
            # The answer goes back through the tunnel to the node that translated it.
            back = next(s for s in r.reply_steps if s.action == "encap")
            assert back.encap.startswith("VXLAN 172.18.0.4 -> 172.18.0.2")


def test_cluster_ip_from_outside_is_refused(state: DesiredState) -> None:
    r = trace(state, "192.0.2.10", "10.96.0.10:80", protocol="tcp")
    assert r.drop_reason == 174


def test_two_scopes_east_west_uses_the_internal_twin(state: DesiredState) -> None:
    from dataclasses import replace
    from ipaddress import IPv4Address

    from ciliate.desired import (
        LB_SCOPE_EXT,
        LB_SCOPE_INT,
        SVC_FLAG2_TWO_SCOPES,
        SVC_FLAG_LOADBALANCER,
        LB4Key,
        LB4Service,
    )

    vip = IPv4Address("192.0.2.50")  # a LoadBalancer IP with iTP=Local, eTP=Cluster
    extra = {
        LB4Key(vip, 80, 0, 6, LB_SCOPE_EXT): LB4Service(
            backend_id=1 << 24,
            count=2,
            rev_nat_index=9,
            flags=SVC_FLAG_LOADBALANCER,
            flags2=SVC_FLAG2_TWO_SCOPES,
        ),
        LB4Key(vip, 80, 1, 6, LB_SCOPE_EXT): LB4Service(backend_id=1, rev_nat_index=9),
        LB4Key(vip, 80, 2, 6, LB_SCOPE_EXT): LB4Service(backend_id=2, rev_nat_index=9),
        LB4Key(vip, 80, 0, 6, LB_SCOPE_INT): LB4Service(
            backend_id=1 << 24,
            count=1,
            rev_nat_index=9,
            flags=SVC_FLAG_LOADBALANCER,
            flags2=SVC_FLAG2_TWO_SCOPES,
        ),
        LB4Key(vip, 80, 1, 6, LB_SCOPE_INT): LB4Service(backend_id=1, rev_nat_index=9),
    }
    nodes = {
        n: replace(ns, lb4_services={**ns.lb4_services, **extra}) for n, ns in state.nodes.items()
    }
    s = replace(state, nodes=nodes)
    east_west = {trace(s, BB_A, "192.0.2.50:80", rng=random.Random(i)).backend for i in range(10)}
    assert east_west == {"10.10.2.121:8080"}  # node-local only
    north_south = {
        trace(s, "198.51.100.7", "192.0.2.50:80", rng=random.Random(i)).backend for i in range(10)
    }
    assert north_south == BACKENDS


def test_maglev_with_the_control_plane_table_moves_few_surviving_flows(state: DesiredState) -> None:
    """Remove one of 8 backends: its flows move, almost all others stay (Maglev's point)."""
    from dataclasses import replace
    from ipaddress import IPv4Address

    from ciliate.control.maglev import compute_table
    from ciliate.datapath.packet import IPProto, build_request
    from ciliate.datapath.sim.lb import Frontend, select_backend
    from ciliate.desired import LB_ALG_MAGLEV, LB4Backend, LB4Key, LB4Service

    vip = IPv4Address("10.96.0.99")
    key = LB4Key(vip, 80, 0, 6)
    base = state.nodes["mycluster-worker"]

    def node(ids: tuple[int, ...]):  # type: ignore[no-untyped-def]
        table = compute_table([(i, f"10.1.0.{i}:80") for i in ids], 251)
        return replace(
            base,
            lb4_backends={i: LB4Backend(IPv4Address(f"10.1.0.{i}"), 80) for i in ids},
            lb4_services={key: LB4Service(LB_ALG_MAGLEV << 24, len(ids), 7)},
            maglev={7: table},
        )

    before, after = node(tuple(range(1, 9))), node((1, 2, 3, 5, 6, 7, 8))
    kept = survivors = 0
    for n in range(600):
        client = IPv4Address(0x0A0A0000 + n)
        p = build_request("x", "y", client, vip, IPProto.TCP, 80, 30000 + n % 97)
        picks = [
            select_backend(
                s,
                Frontend(key, s.lb4_services[key]),
                p,
                ct_backend=0,
                affinity={},
                now=0,
                rng=random.Random(0),
            )
            for s in (before, after)
        ]
        assert picks[0].how == picks[1].how == "maglev"
        assert picks[1].backend_id != 4
        if picks[0].backend_id != 4:
            survivors += 1
            kept += picks[0].backend_id == picks[1].backend_id
    assert kept / survivors > 0.85


def test_nodeport_to_a_remote_backend_carries_the_world_identity(
    make_state: Callable[..., DesiredState],
) -> None:
    """Tunnel mode: the backend's policy sees reserved:world (2), not the LB node."""
    from ciliate.desired import PolicyEntry, PolicyKey

    world_only = {PolicyKey(2, False): PolicyEntry(), PolicyKey(0, True): PolicyEntry()}
    s = make_state({"networking101/netshoot-b": world_only, "networking101/netshoot-a": world_only})
    for seed in range(6):
        r = trace(s, "192.0.2.10", "172.18.0.2:31000", rng=random.Random(seed))
        assert r.delivered, [st.detail for st in r.steps]
        if r.backend.startswith("10.10.1."):
            decap = next(st for st in r.steps if st.action == "decap")
            assert "source identity 2" in decap.detail


def test_steps_carry_the_packet_ends_and_the_endpoint_pod(state: DesiredState) -> None:
    r = trace(state, BB_A, "10.96.0.10:80", protocol="tcp")
    first, service = r.steps[0], next(s for s in r.steps if s.action == "service")
    assert (first.action, first.pod) == ("from-endpoint", BB_A)
    assert first.dst == "10.96.0.10:80" and first.src.endswith(":40000")
    assert service.dst == r.backend  # after DNAT
    last = r.steps[-1]
    assert last.action == "to-endpoint" and last.dst == r.backend and last.pod
    assert all(s.packet.startswith(f"{s.src} -> {s.dst} ") for s in (*r.steps, *r.reply_steps))


def test_host_to_cluster_ip_reply_from_a_remote_backend_is_reverse_nated_in_to_host(
    state: DesiredState,
) -> None:
    """The node's own connection to a ClusterIP (DNAT in cil_from_host): the reply of a
    remote backend comes back through the tunnel and cil_to_host reverse-NATs it, as the
    kernel does (decision 0009); a local backend's reply is not touched there."""
    remote = local = 0
    for seed in range(8):
        r = trace(
            state, "mycluster-worker", "10.96.0.10:80", protocol="tcp", rng=random.Random(seed)
        )
        assert r.delivered, [st.detail for st in r.steps]
        to_host = [s for s in r.reply_steps if s.program == "cil_to_host"]
        if r.backend.startswith("10.10.1."):  # on mycluster-worker2: behind the tunnel
            remote += 1
            assert [s.action for s in to_host] == ["rev-nat", "to-host"]
            rev = to_host[0]
            assert rev.detail == (
                f"reverse NAT: source {r.backend} -> 10.96.0.10:80 (rev_nat_index 1)"
            )
            assert rev.lookups[0].map == "cilium_lb4_reverse_nat"
            assert r.reply_steps[-1].packet.startswith("10.96.0.10:80 -> 172.18.0.2:")
        else:
            local += 1
            assert not any(s.action == "rev-nat" and s.program == "cil_to_host"
                           for s in r.reply_steps)  # fmt: skip
    assert remote and local


def _host_to_cluster_ip(state: DesiredState, local: bool) -> TraceResult:
    """mycluster-worker's own connection to the ClusterIP, with the backend on the same
    node (``local``, 10.10.2.x) or behind the tunnel (10.10.1.x), by the seeded RNG."""
    for seed in range(16):
        r = trace(
            state, "mycluster-worker", "10.96.0.10:80", protocol="tcp", rng=random.Random(seed)
        )
        if r.backend.startswith("10.10.2.") == local:
            return r
    raise AssertionError(f"no seed picks a {'local' if local else 'remote'} backend")


def test_host_to_cluster_ip_reply_from_a_local_backend_is_reverse_nated_in_from_container(
    state: DesiredState,
) -> None:
    """With the backend on the node itself, cil_from_host's conntrack entry carries the
    rev-NAT index and the backend's cil_from_container reverse-NATs the reply before
    to-host, as bpf_lxc.c does (decision 0009): the host sees the ClusterIP answer."""
    r = _host_to_cluster_ip(state, local=True)
    assert r.delivered
    acts = [(s.program, s.action) for s in r.reply_steps]
    assert acts[-2:] == [("cil_from_container", "rev-nat"), ("cil_from_container", "to-host")]
    rev = r.reply_steps[-2]
    assert rev.interface.startswith("lxc") and rev.node == "mycluster-worker"
    assert rev.detail == f"reverse NAT: source {r.backend} -> 10.96.0.10:80 (rev_nat_index 1)"
    assert [lk.map for lk in rev.lookups] == ["cilium_lb4_reverse_nat"]
    assert r.reply_steps[-1].packet.startswith("10.96.0.10:80 -> 172.18.0.2:40000 ")
    # Exactly one reverse NAT on the way back, and the to-host flow carries the frontend.
    assert sum(s.action == "rev-nat" for s in r.reply_steps) == 1
    to_host = [
        f for f in r.flows if f.event_type == EventType.TRACE and f.sub_type == ObsPoint.TO_HOST
    ]
    assert [f.source.ip for f in to_host] == ["10.96.0.10"]


@pytest.mark.parametrize("local", [True, False], ids=["local-backend", "remote-backend"])
def test_host_to_cluster_ip_reply_path_names_the_host_once_after_the_nat(
    state: DesiredState, local: bool
) -> None:
    """The reply line reads "... -> reverse NAT -> mycluster-worker host": the NAT is
    shown where it happens and the host is named once, at the end, whichever program
    (cil_from_container or cil_to_host) reverses it."""
    r = _host_to_cluster_ip(state, local)
    tokens = path_tokens(r, r.reply_steps, reply_start(r), r.src)
    assert tokens[-2:] == ["reverse NAT", "mycluster-worker host"]
    assert tokens.count("mycluster-worker host") == 1
