"""Pod-to-pod walks of the networking101 example: same node, cross node, ARP, replies."""

from ciliate.datapath.api import ObsPoint
from ciliate.datapath.sim import trace
from ciliate.desired import DesiredState

BB_A = "networking101/busybox-a"  # 10.10.2.117 on mycluster-worker
NS_A = "networking101/netshoot-a"  # 10.10.2.121 on mycluster-worker (endpoint 1587)
NS_B = "networking101/netshoot-b"  # 10.10.1.155 on mycluster-worker2


def actions(steps: tuple[object, ...]) -> list[str]:
    return [f"{s.node}:{s.program}:{s.action}" for s in steps]  # type: ignore[attr-defined]


def test_same_node_redirects_to_the_destination_lxc(state: DesiredState) -> None:
    r = trace(state, BB_A, NS_A, 80, "tcp")
    assert r.delivered and r.drop_reason == 0
    redirect = next(s for s in r.steps if s.action == "redirect")
    assert redirect.program == "cil_from_container"
    lxc = next(lk for lk in redirect.lookups if lk.map == "cilium_lxc")
    # EXPECTED.md: the cilium_lxc key of 10.10.2.121 and endpoint id 1587 = 0x0633 LE.
    assert lxc.key_hex == "0a 0a 02 79 00 00 00 00 00 00 00 00 00 00 00 00 01 00 00 00"
    assert lxc.value_hex.split()[6:8] == ["33", "06"]
    assert r.steps[-1].action == "to-endpoint"
    assert not any(s.action == "encap" for s in r.steps)
    assert r.reply_steps[-1].action == "to-endpoint"


def test_cross_node_is_encapsulated_with_the_source_identity(state: DesiredState) -> None:
    r = trace(state, BB_A, NS_B, 0, "icmp")
    assert r.delivered
    ipc = next(lk for s in r.steps for lk in s.lookups if lk.map == "cilium_ipcache")
    assert ipc.key_hex.startswith("40 00 00 00 00 00 00 01 0a 0a 01 9b")
    assert ipc.value_hex.split()[4:8] == ["ac", "12", "00", "04"]
    encap = next(s for s in r.steps if s.action == "encap")
    assert encap.encap == "VXLAN 172.18.0.2 -> 172.18.0.4 udp/8472 vni 3372"
    decap = next(s for s in r.steps if s.action == "decap")
    assert decap.node == "mycluster-worker2" and decap.program == "cil_from_overlay"
    assert actions(r.steps)[-1] == "mycluster-worker2:handle_policy:to-endpoint"
    # The reply comes back through the tunnel with the destination's identity.
    back = next(s for s in r.reply_steps if s.action == "encap")
    assert back.encap.endswith("vni 10388")


def test_flows_carry_cilium_observation_points(state: DesiredState) -> None:
    r = trace(state, BB_A, NS_B, 80, "tcp")
    points = [f.sub_type for f in r.flows if f.event_type == 4]
    assert points[:3] == [ObsPoint.FROM_ENDPOINT, ObsPoint.TO_OVERLAY, ObsPoint.FROM_OVERLAY]
    assert ObsPoint.TO_ENDPOINT in points
    to_ep = [f for f in r.flows if f.event_type == 4 and f.sub_type == ObsPoint.TO_ENDPOINT]
    assert to_ep[0].trace_reason == "new" and to_ep[-1].trace_reason == "reply"
    d = to_ep[0].to_hubble("mycluster")
    assert d["verdict"] == "FORWARDED"
    assert d["trace_observation_point"] == "TO_ENDPOINT"
    assert d["destination"]["pod_name"] == "netshoot-b"
    assert d["node_name"] == "mycluster/mycluster-worker2"


def test_arp_for_the_gateway_is_answered_with_the_lxc_mac(state: DesiredState) -> None:
    r = trace(state, BB_A, "10.10.2.205", protocol="arp")
    assert r.delivered
    step = r.steps[0]
    ep = state.nodes["mycluster-worker"].pods[BB_A]
    lxc_mac = next(n.mac for n in ep.neighbors)
    assert step.action == "arp-reply" and lxc_mac in step.detail


def test_arp_for_another_address_gets_no_answer(state: DesiredState) -> None:
    assert not trace(state, BB_A, "10.10.2.121", protocol="arp").delivered


def test_pod_to_its_node_and_node_to_pod(state: DesiredState) -> None:
    r = trace(state, BB_A, "mycluster-worker", 22, "tcp")
    assert r.delivered and any(s.action == "to-host" for s in r.steps)
    r = trace(state, "mycluster-worker2", BB_A, 80, "tcp")
    assert r.delivered
    decap = next(s for s in r.steps if s.action == "decap")
    assert "source identity 6" in decap.detail  # host VNI becomes remote-node


def test_world_to_pod_enters_through_eth0(state: DesiredState) -> None:
    r = trace(state, "192.0.2.10", NS_A, 80, "tcp")
    assert r.steps[0].program == "cil_from_netdev" and r.steps[0].interface == "eth0"
    assert r.delivered
    assert r.reply_steps[-1].action == "to-network"


def test_pod_to_world_leaves_through_eth0(state: DesiredState) -> None:
    r = trace(state, BB_A, "1.1.1.1", 443, "tcp")
    assert r.delivered
    assert any(s.action == "to-stack" for s in r.steps)
    assert r.steps[-1].action == "to-network"


def test_a_service_is_no_source_and_unknown_names_are_not_found(state: DesiredState) -> None:
    import pytest

    from ciliate.errors import CiliateError, NotFoundError

    with pytest.raises(CiliateError) as e:
        trace(state, "networking101/netshoot", BB_A)
    assert "cannot send" in str(e.value)
    with pytest.raises(NotFoundError):
        trace(state, "networking101/nope", BB_A)


def test_probe_satisfies_the_prober_protocol() -> None:
    from ciliate.datapath.api import Prober
    from ciliate.datapath.sim import probe

    p: Prober = probe
    assert callable(p)


def test_native_routing_without_tunnel_endpoints(state: DesiredState) -> None:
    """routing: native — no tunnel endpoints in the ipcache: the packet is routed out of
    eth0 and enters the other node through cil_from_netdev (identity from the ipcache)."""
    from dataclasses import replace

    from ciliate.desired import RemoteEndpointInfo

    nodes = {
        name: replace(
            ns,
            ipcache={k: RemoteEndpointInfo(v.sec_identity) for k, v in ns.ipcache.items()},
        )
        for name, ns in state.nodes.items()
    }
    s = replace(state, nodes=nodes)
    r = trace(s, BB_A, NS_B, 80, "tcp")
    assert r.delivered
    assert not any(st.action == "encap" for st in r.steps)
    net = next(st for st in r.steps if st.action == "from-network")
    assert net.node == "mycluster-worker2" and "source identity 3372" in net.detail
