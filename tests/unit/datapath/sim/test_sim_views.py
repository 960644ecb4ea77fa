"""Model views of ``ip a`` / ``ip route`` / ``arp -a`` / ``bpftool net show`` against the
lines of ../shared/examples/networking101/EXPECTED.md."""

import pytest

from ciliate.datapath.sim.views import run_node, run_pod
from ciliate.desired import DesiredState
from ciliate.errors import UnsupportedError

BB_A = "networking101/busybox-a"


def test_pod_ip_a_has_one_eth0_with_a_slash_32(state: DesiredState) -> None:
    pod = state.nodes["mycluster-worker"].pods[BB_A]
    ep = next(e for e in state.nodes["mycluster-worker"].endpoints.values() if e.pod == BB_A)
    text = run_pod(pod, ["ip", "a"])
    assert (
        f"{ep.pod_ifindex}: eth0@if{ep.lxc_ifindex}: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 "
        "qdisc noqueue state UP group default qlen 1000\n"
        f"    link/ether {ep.pod_mac} brd ff:ff:ff:ff:ff:ff link-netnsid 0\n"
        "    inet 10.10.2.117/32 scope global eth0\n"
        "       valid_lft forever preferred_lft forever"
    ) in text
    assert text.startswith("1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536")
    assert run_pod(pod, ["ip", "addr", "show"]) == text


def test_pod_routes_and_arp(state: DesiredState) -> None:
    pod = state.nodes["mycluster-worker"].pods[BB_A]
    assert run_pod(pod, ["ip", "route"]).splitlines() == [
        "default via 10.10.2.205 dev eth0",
        "10.10.2.205 dev eth0 scope link",
    ]
    ep = next(e for e in state.nodes["mycluster-worker"].endpoints.values() if e.pod == BB_A)
    # The gateway (cilium_host's address) at the MAC of the pod's lxc on the node side.
    assert run_pod(pod, ["arp", "-a"]) == f"? (10.10.2.205) at {ep.lxc_mac} [ether] on eth0"
    assert run_pod(pod, ["ip", "neigh"]) == f"10.10.2.205 dev eth0 lladdr {ep.lxc_mac} REACHABLE"


def test_node_routes_match_the_blog(state: DesiredState) -> None:
    lines = run_node(state.nodes["mycluster-worker"], ["ip", "route"]).splitlines()
    assert (
        "10.10.1.0/24 via 10.10.2.205 dev cilium_host proto kernel src 10.10.2.205 mtu 1450"
        in lines
    )
    assert "10.10.2.0/24 via 10.10.2.205 dev cilium_host proto kernel src 10.10.2.205" in lines
    assert "10.10.2.205 dev cilium_host proto kernel scope link" in lines
    assert "172.18.0.0/16 dev eth0 proto kernel scope link src 172.18.0.2" in lines


def test_node_links(state: DesiredState) -> None:
    text = run_node(state.nodes["mycluster-worker"], ["ip", "a"])
    assert "3: cilium_net@cilium_host: <BROADCAST,MULTICAST,NOARP,UP,LOWER_UP>" in text
    assert "4: cilium_host@cilium_net: " in text
    assert "    inet 10.10.2.205/32 scope global cilium_host" in text
    assert "5: cilium_vxlan: <BROADCAST,MULTICAST,UP,LOWER_UP>" in text
    assert "    inet 172.18.0.2/16 brd 172.18.255.255 scope global eth0" in text
    for ep in state.nodes["mycluster-worker"].endpoints.values():
        assert f"{ep.lxc_ifindex}: {ep.lxc_name}@if{ep.pod_ifindex}: " in text


def test_bpftool_net_show_lists_the_tc_programs(state: DesiredState) -> None:
    text = run_node(state.nodes["mycluster-worker"], ["bpftool", "net", "show"])
    for dev, hook, prog in (
        ("cilium_net", "ingress", "cil_to_host"),
        ("cilium_host", "ingress", "cil_to_host"),
        ("cilium_host", "egress", "cil_from_host"),
        ("cilium_vxlan", "ingress", "cil_from_overlay"),
        ("cilium_vxlan", "egress", "cil_to_overlay"),
        ("eth0", "ingress", "cil_from_netdev"),
    ):
        assert any(
            line.startswith(f"{dev}(") and f"tcx/{hook} {prog} " in line
            for line in text.splitlines()
        ), (dev, hook, prog)
    assert "lxc" in text and "egress cil_from_container" not in text


@pytest.mark.parametrize(
    "argv", [["ping", "1.1.1.1"], ["ip", "link", "set", "eth0", "down"], ["ip", "neigh"]]
)
def test_unsupported_commands_raise_exit_4(state: DesiredState, argv: list[str]) -> None:
    with pytest.raises(UnsupportedError) as e:
        run_node(state.nodes["mycluster-worker"], argv)
    assert e.value.exit_code == 4 and "\n" not in str(e.value)


def test_ip_link_is_ip_a_without_addresses(state: DesiredState) -> None:
    node = state.nodes["mycluster-worker"]
    link = run_node(node, ["ip", "link"])
    assert "inet " not in link
    assert [
        x
        for x in run_node(node, ["ip", "a"]).splitlines()
        if "inet" not in x and "valid_lft" not in x
    ] == link.splitlines()
