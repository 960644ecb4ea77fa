"""Host services: the node's own stack reaches service frontends through ``cilium_host``.

Role: Cilium's socket-LB translates a service address at ``connect()`` for the host's
own sockets; ciliate does the same translation in ``cil_from_host`` (``bpf/bpf_host.c``,
decision 0009), so the host's packets to a frontend must leave by ``cilium_host``. The
node's main routing table stays as the networking101 blog shows it (no service route):
the frontends are routed by policy routing instead, in the node's namespace:

1. table ``HOST_SVC_TABLE`` (2010) holds one route,
   ``default via <CiliumInternalIP> dev cilium_host src <node IP> [mtu <tunnel MTU>]``
   (the source the model's trace shows for the node's traffic; the MTU of the routes to
   remote pod CIDRs, since the backend may sit behind the tunnel);
2. rules at ``RULE_PREF`` (20), all ``iif lo`` (only the node's own sockets; forwarded
   packets keep the main table, so a missed service never loops through cilium_host):
   ``to <service CIDR>``; ``to <node IP> ipproto tcp|udp|sctp dport <nodePort range>``
   (a NodePort on the node's own address, which the model translates too); ``to <IP>/32``
   for every LoadBalancer / external IP frontend the node's ``cilium_lb4_services_v2``
   holds outside the service CIDR;
3. the ``lookup local`` rule moved from priority 0 to 100, as Cilium moves it
   (``RulePriorityLocalLookup``): the NodePort rules must be consulted before the
   node's own address is found local and looped back through ``lo``;
4. ``net.ipv4.conf.all.accept_local=1``: a reply reverse-NATed to the node's own
   address (``<node IP>:<nodePort>``) enters by an lxc or ``cilium_host`` and would
   otherwise be dropped as a martian (a local source arriving from outside).

Every step is ensure-style (looked up first, changed only when it differs), so a
restarted agent adopts what it finds; ``down`` deletes the namespace and everything in it.

Inputs: a ``NodeState``, the cluster's service CIDR and NodePort range, ``MapChange``s.
Outputs: netlink requests through the node namespace's pyroute2 ``IPRoute``. Must not
import cli, agent, servers or observe.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from pyroute2.netlink.exceptions import NetlinkError

from ciliate.datapath.linux import netns as nl
from ciliate.desired import LB4Key, MapChange, MapName, NodeState

HOST_SVC_TABLE = 2010
RULE_PREF = 20
LOCAL_TABLE = 255
LOCAL_RULE_PREF = 100  # Cilium's RulePriorityLocalLookup
L4_PROTOS = (socket.IPPROTO_TCP, socket.IPPROTO_UDP, 132)  # SCTP
SYSCTLS = (("net.ipv4.conf.all.accept_local", "1"),)
ANY = IPv4Address(0)
_PROTO_NAMES = {socket.IPPROTO_TCP: "tcp", socket.IPPROTO_UDP: "udp", 132: "sctp"}


@dataclass(frozen=True, slots=True, order=True)
class HostRule:
    """One ``iif lo to <dst> [ipproto P dport LO-HI] lookup HOST_SVC_TABLE`` rule."""

    dst: IPv4Network
    proto: int = 0
    dports: tuple[int, int] | None = None

    def render(self) -> str:
        """As ``ip rule`` prints it (messages and tests)."""
        ports = ""
        if self.dports:
            name = _PROTO_NAMES.get(self.proto, str(self.proto))
            ports = f" ipproto {name} dport {self.dports[0]}-{self.dports[1]}"
        return f"{RULE_PREF}: to {self.dst} iif lo{ports} lookup {HOST_SVC_TABLE}"


@dataclass(frozen=True, slots=True)
class HostServicePlan:
    """What one node's namespace must hold for its own traffic to reach services."""

    rules: frozenset[HostRule]
    gateway: IPv4Address  # CiliumInternalIP, on cilium_host
    src: IPv4Address  # the node's InternalIP
    mtu: int = 0  # 0: the device's


def extra_frontends(node: NodeState, service_cidr: IPv4Network) -> frozenset[IPv4Address]:
    """LoadBalancer and external IP frontends: master entries outside the service CIDR
    that are neither the NodePort surrogate nor one of the node's own addresses."""
    own = {node.internal_ip, node.cilium_internal_ip, ANY}
    return frozenset(
        k.address
        for k in node.lb4_services
        if k.backend_slot == 0 and k.address not in own and k.address not in service_cidr
    )


def compute_plan(
    node: NodeState,
    service_cidr: IPv4Network,
    node_port_range: tuple[int, int],
    mtu: int = 0,
) -> HostServicePlan:
    rules = {HostRule(service_cidr)}
    node_ip = IPv4Network(f"{node.internal_ip}/32")
    rules |= {HostRule(node_ip, p, node_port_range) for p in L4_PROTOS}
    rules |= {HostRule(IPv4Network(f"{a}/32")) for a in extra_frontends(node, service_cidr)}
    return HostServicePlan(frozenset(rules), node.cilium_internal_ip, node.internal_ip, mtu)


def nodes_to_refresh(changes: Iterable[MapChange], service_cidr: IPv4Network) -> set[str]:
    """Nodes whose service map changed at a frontend address outside the service CIDR
    (a LoadBalancer or external IP came or went; NodePort entries of the node's own
    address too, harmlessly): their rules are converged again. ClusterIP changes, the
    bulk of service churn, never are."""
    out: set[str] = set()
    for c in changes:
        if c.map != MapName.LB4_SERVICES or c.node in out:
            continue
        k = c.key
        if (
            isinstance(k, LB4Key)
            and k.backend_slot == 0
            and k.address != ANY
            and k.address not in service_cidr
        ):
            out.add(c.node)
    return out


# --- netlink ---------------------------------------------------------------------------


def _attrs(msg: Any) -> Mapping[str, Any]:
    return dict(msg.get("attrs") or ())


def parse_rule(msg: Any) -> tuple[int, HostRule] | None:
    """``(priority, rule)`` of a dumped rule of ``HOST_SVC_TABLE``; None for others."""
    a = _attrs(msg)
    if a.get("FRA_TABLE", msg.get("table")) != HOST_SVC_TABLE or "FRA_DST" not in a:
        return None
    dst = IPv4Network(f"{a['FRA_DST']}/{msg['dst_len']}")
    dports: tuple[int, int] | None = None
    if "FRA_DPORT_RANGE" in a:
        lo, _, hi = str(a["FRA_DPORT_RANGE"]).partition(":")
        dports = (int(lo), int(hi or lo))
    return int(a.get("FRA_PRIORITY") or 0), HostRule(dst, int(a.get("FRA_IP_PROTO") or 0), dports)


def _rule_kwargs(rule: HostRule, pref: int) -> dict[str, Any]:
    kw: dict[str, Any] = {
        "family": socket.AF_INET,
        "table": HOST_SVC_TABLE,
        "priority": pref,
        "dst": str(rule.dst.network_address),
        "dst_len": rule.dst.prefixlen,
        "iifname": "lo",
    }
    if rule.proto:
        kw["FRA_IP_PROTO"] = rule.proto
    if rule.dports:
        kw["dport_range"] = f"{rule.dports[0]}:{rule.dports[1]}"
    return kw


def _local_rule_prefs(ipr: Any) -> set[int]:
    """Priorities of the plain ``from all lookup local`` rules."""
    prefs: set[int] = set()
    for msg in ipr.get_rules(family=socket.AF_INET):
        a = _attrs(msg)
        if a.get("FRA_TABLE", msg.get("table")) != LOCAL_TABLE:
            continue
        if any(k in a for k in ("FRA_DST", "FRA_SRC", "FRA_IIFNAME", "FRA_FWMARK")):
            continue
        prefs.add(int(a.get("FRA_PRIORITY") or 0))
    return prefs


def ensure_local_rule(ipr: Any) -> None:
    """``lookup local`` at ``LOCAL_RULE_PREF``; added before the priority-0 one goes,
    so the node never runs a moment without it."""
    prefs = _local_rule_prefs(ipr)
    if LOCAL_RULE_PREF not in prefs:
        ipr.rule("add", family=socket.AF_INET, table=LOCAL_TABLE, priority=LOCAL_RULE_PREF)
    if 0 in prefs:
        with contextlib.suppress(NetlinkError):
            ipr.rule("del", family=socket.AF_INET, table=LOCAL_TABLE, priority=0)


def ensure_rules(ipr: Any, wanted: frozenset[HostRule]) -> tuple[int, int]:
    """The table's rules become exactly ``wanted``; (added, removed)."""
    have: dict[HostRule, int] = {}
    stale: list[tuple[int, HostRule]] = []
    for msg in ipr.get_rules(family=socket.AF_INET):
        got = parse_rule(msg)
        if got is None:
            continue
        pref, rule = got
        if pref == RULE_PREF and rule in wanted and rule not in have:
            have[rule] = pref
        else:
            stale.append(got)
    added = 0
    for rule in sorted(wanted - have.keys()):
        ipr.rule("add", **_rule_kwargs(rule, RULE_PREF))
        added += 1
    for pref, rule in stale:
        with contextlib.suppress(NetlinkError):
            ipr.rule("del", **_rule_kwargs(rule, pref))
    return added, len(stale)


def ensure_route(ipr: Any, plan: HostServicePlan) -> None:
    oif = nl.link_index(ipr, "cilium_host")
    if not oif:
        raise RuntimeError("cilium_host is missing: the node's devices come first")
    kw: dict[str, Any] = {}
    if plan.mtu:
        kw["RTA_METRICS"] = {"attrs": [["RTAX_MTU", plan.mtu]]}
    ipr.route(
        "replace",
        family=socket.AF_INET,
        dst="0.0.0.0/0",
        table=HOST_SVC_TABLE,
        gateway=str(plan.gateway),
        oif=oif,
        prefsrc=str(plan.src),
        **kw,
    )


def ensure_host_services(ipr: Any, netns: str, plan: HostServicePlan) -> None:
    """Converge one node's namespace (``ipr`` is bound to it) to ``plan``."""
    nl.write_sysctl(netns, SYSCTLS)
    ensure_route(ipr, plan)
    ensure_local_rule(ipr)
    ensure_rules(ipr, plan.rules)
