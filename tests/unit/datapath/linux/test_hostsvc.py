"""The node's policy routing for its own traffic to services (datapath.linux.hostsvc):
which rules a node gets, which map changes make the agent converge them again, and the
ensure steps against a fake netlink socket (what is added, what is removed, what is
left alone)."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from ciliate.datapath.linux import hostsvc
from ciliate.datapath.linux.hostsvc import HOST_SVC_TABLE, RULE_PREF, HostRule
from ciliate.desired import DesiredState, LB4Key, LB4Service, MapChange, MapName

SVC = IPv4Network("10.96.0.0/12")
NODE = "mycluster-worker"  # 172.18.0.2, cilium_host 10.10.2.205
RANGE = (30000, 32767)


def test_a_node_routes_the_service_cidr_and_its_own_node_ports(state: DesiredState) -> None:
    plan = hostsvc.compute_plan(state.nodes[NODE], SVC, RANGE, 1450)
    me = IPv4Network("172.18.0.2/32")
    assert plan.rules == {
        HostRule(SVC),
        HostRule(me, 6, RANGE),
        HostRule(me, 17, RANGE),
        HostRule(me, 132, RANGE),
    }
    assert (plan.gateway, plan.src, plan.mtu) == (
        IPv4Address("10.10.2.205"),
        IPv4Address("172.18.0.2"),
        1450,
    )
    assert HostRule(me, 6, RANGE).render() == (
        f"{RULE_PREF}: to 172.18.0.2/32 iif lo ipproto tcp dport 30000-32767 "
        f"lookup {HOST_SVC_TABLE}"
    )


def test_load_balancer_ips_get_a_rule_each(state: DesiredState) -> None:
    node = state.nodes[NODE]
    lb_ip = IPv4Address("192.0.2.10")
    services = {
        **node.lb4_services,
        LB4Key(lb_ip, 80, 0, 6): LB4Service(0, 1, 9),
        LB4Key(lb_ip, 80, 1, 6): LB4Service(1, 0, 9),  # a slot: not another rule
    }
    node = replace(node, lb4_services=services)
    assert hostsvc.extra_frontends(node, SVC) == {lb_ip}
    plan = hostsvc.compute_plan(node, SVC, RANGE)
    assert HostRule(IPv4Network("192.0.2.10/32")) in plan.rules
    assert len(plan.rules) == 5


def test_only_frontends_outside_the_service_cidr_refresh_a_node() -> None:
    def change(node: str, ip: str, slot: int = 0) -> MapChange:
        key = LB4Key(IPv4Address(ip), 80, slot, 6)
        return MapChange(node, MapName.LB4_SERVICES, key, None)

    changes = [
        change("a", "10.96.0.10"),  # a ClusterIP: covered by the CIDR rule
        change("b", "0.0.0.0"),  # the NodePort surrogate
        change("c", "192.0.2.1", slot=1),  # a backend slot
        change("d", "192.0.2.1"),  # a LoadBalancer IP
        MapChange("e", MapName.LB4_BACKENDS, 1, None),
    ]
    assert hostsvc.nodes_to_refresh(changes, SVC) == {"d"}


def _msg(table: int, pref: int, **attrs: Any) -> dict[str, Any]:
    dst_len = attrs.pop("dst_len", 0)
    a = [("FRA_TABLE", table), ("FRA_PRIORITY", pref), *attrs.items()]
    return {"table": table if table < 256 else 252, "dst_len": dst_len, "attrs": a}


class FakeIPR:
    """``get_rules`` / ``rule`` of pyroute2's IPRoute over a list of rule messages."""

    def __init__(self, rules: list[dict[str, Any]]) -> None:
        self.rules = rules
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def get_rules(self, family: int) -> list[dict[str, Any]]:
        return list(self.rules)

    def rule(self, command: str, **kw: Any) -> None:
        self.calls.append((command, kw))
        if command == "add" and kw.get("table") == 255:
            self.rules.append(_msg(255, kw["priority"]))
        if command == "del" and kw.get("table") == 255:
            self.rules = [
                r for r in self.rules if dict(r["attrs"]).get("FRA_PRIORITY") != kw["priority"]
            ]


def test_parse_rule_reads_what_the_kernel_dumps() -> None:
    msg = _msg(
        HOST_SVC_TABLE,
        RULE_PREF,
        FRA_DST="172.18.0.2",
        dst_len=32,
        FRA_IIFNAME="lo",
        FRA_IP_PROTO=6,
        FRA_DPORT_RANGE="30000:32767",
    )
    assert hostsvc.parse_rule(msg) == (
        RULE_PREF,
        HostRule(IPv4Network("172.18.0.2/32"), 6, RANGE),
    )
    assert hostsvc.parse_rule(_msg(2004, 9, FRA_FWMARK=0x200)) is None  # the L7 proxy's


def test_ensure_rules_adds_the_missing_and_removes_the_stale() -> None:
    keep = HostRule(SVC)
    gone = HostRule(IPv4Network("192.0.2.9/32"))
    ipr = FakeIPR(
        [
            _msg(HOST_SVC_TABLE, RULE_PREF, FRA_DST="10.96.0.0", dst_len=12, FRA_IIFNAME="lo"),
            _msg(HOST_SVC_TABLE, RULE_PREF, FRA_DST="192.0.2.9", dst_len=32, FRA_IIFNAME="lo"),
            _msg(2004, 9, FRA_FWMARK=0x200),
        ]
    )
    new = HostRule(IPv4Network("192.0.2.10/32"))
    assert hostsvc.ensure_rules(ipr, frozenset({keep, new})) == (1, 1)
    adds = [kw for c, kw in ipr.calls if c == "add"]
    dels = [kw for c, kw in ipr.calls if c == "del"]
    assert [(a["dst"], a["dst_len"], a["iifname"]) for a in adds] == [("192.0.2.10", 32, "lo")]
    assert [(d["dst"], d["priority"]) for d in dels] == [(str(gone.dst.network_address), 20)]


def test_the_local_rule_moves_to_100_once() -> None:
    ipr = FakeIPR([_msg(255, 0), _msg(254, 32766)])
    hostsvc.ensure_local_rule(ipr)
    assert [(c, kw["priority"]) for c, kw in ipr.calls] == [("add", 100), ("del", 0)]
    ipr.calls.clear()
    hostsvc.ensure_local_rule(ipr)  # adopted on restart: nothing to do
    assert ipr.calls == []
