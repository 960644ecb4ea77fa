"""Topology: a DesiredState's nodes and pods realized as Linux network namespaces.

Role: turn ``NodeState`` devices/addresses/routes and each ``PodNet`` into kernel state
with the plumbing of ``netns``; remove it again. Inputs: ``desired.NodeState``,
``EndpointState``, ``PodNet`` and the cluster's names (``ClusterNames``). Output: kernel
state only. Programs and maps are not made here (``bpf``/``loader``/``maps`` do that).

Layout (all names carry the cluster tag so two clusters never collide)::

    <tag>-fabric       bridge br0: the node network (kind's docker bridge); the agent
                       adds an eBPF fast path on its ports (``fabric``)
      v<hash(node)> ──veth── eth0            in <tag>-n-<node>  (node IP/prefix)
    <tag>-n-<node>     lo, eth0, cilium_host <-> cilium_net (CiliumInternalIP/32 on
                       cilium_host), cilium_vxlan (external, dstport 8472),
                       lxc_health ──veth── eth0 in <tag>-h-<node> (health IP/32),
                       lxc<12hex> ──veth── eth0 in <tag>-p-<hash(ns/pod)> (pod IP/32)

Interface numbers and MACs are the ones the control plane planned, so ``ip a`` in the
kernel shows what the model shows. Must not import cli, agent, servers or observe.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from ciliate.datapath.linux import hostsvc, rtnl
from ciliate.datapath.linux import netns as nl
from ciliate.datapath.linux.crashpoints import crash_point
from ciliate.desired import Device, EndpointState, NodeState, PodNet, Route

FABRIC_BRIDGE = "br0"
VXLAN_PORT = 8472

# Namespace-wide knobs, written before any link exists so new links inherit them.
# Why: Cilium's routes send pod traffic "via cilium_host" on the same host, replies come
# in on other devices than they would leave by, so strict reverse-path filtering drops
# them; IPv6 is off to keep `ip a`/flows as the IPv4-only examples show.
NODE_SYSCTLS = (
    ("net.ipv4.ip_forward", "1"),
    ("net.ipv4.conf.all.rp_filter", "0"),
    ("net.ipv4.conf.default.rp_filter", "0"),
    ("net.ipv4.conf.all.forwarding", "1"),
    ("net.ipv6.conf.all.disable_ipv6", "1"),
    ("net.ipv6.conf.default.disable_ipv6", "1"),
)
POD_SYSCTLS = (
    ("net.ipv4.conf.all.rp_filter", "0"),
    ("net.ipv4.conf.default.rp_filter", "0"),
    ("net.ipv6.conf.all.disable_ipv6", "1"),
    ("net.ipv6.conf.default.disable_ipv6", "1"),
    # ping from inside a pod without CAP_NET_RAW games: the whole range may use ICMP sockets
    ("net.ipv4.ping_group_range", "0 2147483647"),
)
FABRIC_SYSCTLS = (
    ("net.ipv6.conf.all.disable_ipv6", "1"),
    ("net.ipv6.conf.default.disable_ipv6", "1"),
)


def cluster_tag(state_dir: Path) -> str:
    """Six hex digits of the state directory's path: the per-cluster name prefix."""
    return hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:6]


def _short(text: str, n: int = 8) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


@dataclass(frozen=True, slots=True)
class ClusterNames:
    """Every kernel name of one cluster, derived from its tag."""

    tag: str

    @property
    def prefix(self) -> str:
        return f"{self.tag}-"

    @property
    def fabric(self) -> str:
        return f"{self.tag}-fabric"

    def node(self, node: str) -> str:
        return f"{self.tag}-n-{node}"

    def health(self, node: str) -> str:
        return f"{self.tag}-h-{_short(node)}"

    def pod(self, pod: str) -> str:
        """``pod`` is "namespace/name"."""
        return f"{self.tag}-p-{_short(pod, 10)}"

    def fabric_port(self, node: str) -> str:
        return f"v{_short(node, 10)}"  # <= 15 bytes (IFNAMSIZ)

    @property
    def pin_root(self) -> Path:
        return Path("/sys/fs/bpf/ciliate") / self.tag

    def pin_dir(self, node: str) -> Path:
        """Where a node's maps are pinned; bind-mounted on /sys/fs/bpf by node exec."""
        return self.pin_root / node


def _spec(dev: Device | None, name: str, mtu: int = 1500) -> nl.LinkSpec:
    if dev is None:
        return nl.LinkSpec(name=name, mtu=mtu)
    return nl.LinkSpec(name=dev.name, ifindex=dev.ifindex, mac=dev.mac, mtu=dev.mtu or mtu)


def route_spec(r: Route) -> nl.RouteSpec:
    return nl.RouteSpec(
        dst=r.dst,
        dev=r.dev,
        via=r.via,
        src=r.src,
        kernel_proto=r.proto == "kernel",
        link_scope=r.scope == "link",
        mtu=r.mtu,
    )


def _ordered(routes: Iterable[Route]) -> list[Route]:
    """Link-scope routes first: a gateway must be reachable before a route uses it."""
    return sorted(routes, key=lambda r: (r.scope != "link", bool(r.via), r.dst))


def _pod_sockets() -> tuple[socket.socket, socket.socket]:
    """In a pod's namespace: a raw netlink socket for ``rtnl`` and a datagram one for
    pyroute2 (its asyncio transport insists on a datagram socket), used only when the
    namespace has to be converged."""
    return rtnl.raw_socket(), socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 0)


def default_pod_routes(node: NodeState) -> tuple[Route, ...]:
    gw = str(node.cilium_internal_ip)
    return (
        Route(dst=gw, dev="eth0", scope="link"),
        Route(dst="default", dev="eth0", via=gw),
    )


class Topology:
    """The kernel objects of one cluster; keeps a netlink socket per node namespace.

    Not thread-safe: the agent calls it from one reconcile thread.
    """

    def __init__(self, names: ClusterNames) -> None:
        self.names = names
        self._rtnl: dict[str, Any] = {}  # netns name -> IPRoute
        self._raw: dict[str, socket.socket] = {}  # node netns name -> raw rtnetlink socket

    # --- sockets ----------------------------------------------------------------------

    def rtnl(self, netns: str) -> Any:
        ipr = self._rtnl.get(netns)
        if ipr is None:
            ipr = nl.open_rtnl(netns)
            self._rtnl[netns] = ipr
        return ipr

    def raw_rtnl(self, netns: str) -> socket.socket:
        """A raw netlink socket in a node's namespace, for ``rtnl`` (kept like ``rtnl``)."""
        sock = self._raw.get(netns)
        if sock is None:
            sock = self._raw[netns] = nl.run_in_netns(netns, rtnl.raw_socket)
        return sock

    def close(self) -> None:
        for ipr in self._rtnl.values():
            with contextlib.suppress(Exception):
                ipr.close()
        self._rtnl.clear()
        for sock in self._raw.values():
            sock.close()
        self._raw.clear()

    # --- fabric and nodes --------------------------------------------------------------

    def ensure_fabric(self) -> None:
        ns = self.names.fabric
        nl.ensure_netns(ns)
        # always, not only when created: an agent killed between the two left it unset
        ipr = self.rtnl(ns)
        nl.write_sysctl(ns, FABRIC_SYSCTLS)
        nl.ensure_up(ipr, "lo")
        nl.ensure_bridge(ipr, nl.LinkSpec(FABRIC_BRIDGE))
        nl.ensure_up(ipr, FABRIC_BRIDGE)

    def ensure_node(self, node: NodeState) -> None:
        """Namespace, devices, addresses, routes and sysctls of one node (not its pods)."""
        ns = self.names.node(node.name)
        nl.ensure_netns(ns)
        nl.write_sysctl(ns, NODE_SYSCTLS)  # always: see ensure_fabric
        ipr = self.rtnl(ns)
        devs = {d.name: d for d in node.devices}
        nl.ensure_up(ipr, "lo")

        # eth0 on the fabric bridge
        eth0 = _spec(devs.get("eth0"), "eth0")
        port = self.names.fabric_port(node.name)
        nl.ensure_veth(ipr, eth0, nl.LinkSpec(port), peer_netns=self.names.fabric)
        fab = self.rtnl(self.names.fabric)
        nl.ensure_master(fab, port, FABRIC_BRIDGE)
        nl.ensure_up(fab, port)
        eth0_addrs = devs["eth0"].addresses if "eth0" in devs else ()
        nl.ensure_addresses(
            ipr, "eth0", eth0_addrs or (f"{node.internal_ip}/{node.node_prefix_len}",)
        )
        nl.ensure_up(ipr, "eth0")

        # cilium_host <-> cilium_net
        host = _spec(devs.get("cilium_host"), "cilium_host")
        net = _spec(devs.get("cilium_net"), "cilium_net")
        nl.ensure_veth(ipr, host, net)
        host_addrs = devs["cilium_host"].addresses if "cilium_host" in devs else ()
        nl.ensure_addresses(ipr, "cilium_host", host_addrs or (f"{node.cilium_internal_ip}/32",))
        nl.ensure_up(ipr, "cilium_net")
        nl.ensure_up(ipr, "cilium_host")

        # cilium_vxlan: MTU stays 1500 on the device, the 1450 is on the routes
        nl.ensure_vxlan(ipr, _spec(devs.get("cilium_vxlan"), "cilium_vxlan"), VXLAN_PORT)
        nl.ensure_up(ipr, "cilium_vxlan")
        nl.write_sysctl(
            ns,
            [
                (f"net.ipv4.conf.{d}.rp_filter", "0")
                for d in ("eth0", "cilium_host", "cilium_net", "cilium_vxlan")
            ],
        )

        # the health endpoint, a pod without a pod
        if node.health_ip is not None:
            health = next((e for e in node.endpoints.values() if not e.pod), None)
            self._ensure_endpoint(node, self.names.health(node.name), health, None, "lxc_health")

        self.ensure_node_routes(node)

    def link_mac(self, node: str, device: str) -> str:
        """The MAC address a node's device has in the kernel."""
        ipr = self.rtnl(self.names.node(node))
        idx = nl.link_index(ipr, device)
        if not idx:
            raise FileNotFoundError(f"no device {device} in netns {self.names.node(node)}")
        return str(ipr.get_links(idx)[0].get_attr("IFLA_ADDRESS"))

    def ensure_node_routes(self, node: NodeState) -> None:
        ipr = self.rtnl(self.names.node(node.name))
        for r in _ordered(node.routes):
            if not nl.link_index(ipr, r.dev):
                continue  # the device of a pod not wired yet; ensure_pod comes back
            nl.ensure_route(ipr, route_spec(r))

    def ensure_host_services(self, node: NodeState, plan: hostsvc.HostServicePlan) -> None:
        """The node's own traffic to service frontends is routed to cilium_host by
        policy rules, the main table untouched (``hostsvc``, decision 0009)."""
        ns = self.names.node(node.name)
        hostsvc.ensure_host_services(self.rtnl(ns), ns, plan)

    # --- pods ---------------------------------------------------------------------------

    def ensure_pod(self, node: NodeState, ep: EndpointState, podnet: PodNet | None) -> None:
        """A pod's namespace, its eth0 paired with the lxc device on the node, the pod's
        address and routes. Fast path: one namespace, one socket, one veth."""
        self._ensure_endpoint(node, self.names.pod(ep.pod), ep, podnet, ep.lxc_name)

    def _ensure_endpoint(
        self,
        node: NodeState,
        ns: str,
        ep: EndpointState | None,
        podnet: PodNet | None,
        lxc_name: str,
    ) -> None:
        node_ipr = self.rtnl(self.names.node(node.name))
        pod_dev = next((d for d in podnet.devices if d.name == "eth0"), None) if podnet else None
        if ep is not None:
            lxc = nl.LinkSpec(lxc_name, ep.lxc_ifindex, ep.lxc_mac)
            eth0 = nl.LinkSpec("eth0", ep.pod_ifindex, ep.pod_mac)
            ip = ep.ip
        else:
            lxc, eth0 = nl.LinkSpec(lxc_name), nl.LinkSpec("eth0")
            assert node.health_ip is not None
            ip = node.health_ip
        if pod_dev is not None:
            eth0 = _spec(pod_dev, "eth0")
        addrs = (pod_dev.addresses if pod_dev is not None else ()) or (f"{ip}/32",)
        routes = _ordered(podnet.routes if podnet and podnet.routes else default_pod_routes(node))

        # The pod sockets are opened per call and closed: a node may hold many pods.
        fresh, (raw, dgram) = nl.ensure_netns_with(ns, POD_SYSCTLS, _pod_sockets)
        pod_ipr: Any = None
        try:
            if fresh and self._wire_fresh(raw, ns, node, lxc, eth0, addrs, routes):
                return
            # Converge an existing namespace (agent restart, changed plan, a fresh one
            # the fast path could not finish): look first.
            pod_ipr = IPRoute(use_socket=dgram)  # closes dgram when closed
            nl.ensure_veth(node_ipr, lxc, eth0, peer_netns=ns)
            nl.ensure_up(node_ipr, lxc_name)
            nl.ensure_up(pod_ipr, "lo")
            nl.ensure_addresses(pod_ipr, "eth0", addrs)
            nl.ensure_up(pod_ipr, "eth0")
            for r in routes:
                nl.ensure_route(pod_ipr, route_spec(r))
        finally:
            raw.close()
            if pod_ipr is not None:
                pod_ipr.close()
            else:
                dgram.close()

    def _wire_fresh(
        self,
        pod_raw: socket.socket,
        ns: str,
        node: NodeState,
        lxc: nl.LinkSpec,
        eth0: nl.LinkSpec,
        addrs: Iterable[str],
        routes: Iterable[Route],
    ) -> bool:
        """The hot path of a pod added at run time, in two raw netlink requests
        (``rtnl``: pyroute2 costs ~0.3 ms of Python per request, the kernel
        microseconds): the veth from the node's side, the lxc end up and eth0 created
        in the pod's namespace; then one batch there: lo and eth0 up, the addresses, the
        routes. A new namespace holds nothing, so nothing is looked up. The node's
        default rp_filter=0 is inherited by the new lxc link. False (nothing or part
        done, the caller converges) when the plan lacks an interface number, a route
        leaves by another device, or the kernel refuses a request (a stale lxc of that
        name, a taken interface number)."""
        routes = list(routes)
        if not (lxc.ifindex and eth0.ifindex) or any(r.dev != "eth0" for r in routes):
            return False
        fd = nl.open_netns_fd(ns)
        try:
            rtnl.request(self.raw_rtnl(self.names.node(node.name)), [rtnl.veth(lxc, eth0, fd)])
        except NetlinkError:
            return False
        finally:
            os.close(fd)
        crash_point("pod-veth")
        try:
            rtnl.request(
                pod_raw,
                [
                    rtnl.link_up(1),  # lo is always 1 in a new namespace
                    rtnl.link_up(eth0.ifindex),
                    *(rtnl.address(eth0.ifindex, a) for a in addrs),
                    *(rtnl.route(route_spec(r), eth0.ifindex) for r in routes),
                ],
            )
        except NetlinkError:
            return False
        return True

    def remove_pod(self, node: str, pod: str, lxc_name: str = "") -> None:
        """Delete a pod's namespace; its eth0 goes with it and takes the lxc peer along.
        The lxc is also deleted explicitly so it is gone even while a process still
        holds the namespace."""
        if lxc_name:
            node_ns = self.names.node(node)
            if nl.netns_exists(node_ns):
                nl.delete_link(self.rtnl(node_ns), lxc_name)
        nl.delete_netns(self.names.pod(pod))

    def remove_node(self, node: str) -> None:
        """Delete a node's namespace and its health endpoint's (pods are removed first)."""
        ns = self.names.node(node)
        raw = self._raw.pop(ns, None)
        if raw is not None:
            raw.close()
        ipr = self._rtnl.pop(ns, None)
        if ipr is not None:
            with contextlib.suppress(Exception):
                ipr.close()
        nl.delete_netns(self.names.health(node))
        nl.delete_netns(ns)

    # --- inspection ---------------------------------------------------------------------

    def namespaces(self) -> list[str]:
        return nl.list_netns(self.names.prefix)


def node_addresses(nodes: Mapping[str, NodeState]) -> dict[str, IPv4Address]:
    return {n.name: n.internal_ip for n in nodes.values()}


def teardown(names: ClusterNames) -> list[str]:
    """Delete every namespace of the cluster (pods first, fabric last); returns them.
    Links inside die with their namespaces. Idempotent."""
    found = nl.list_netns(names.prefix)
    order = sorted(found, key=lambda n: (n == names.fabric, "-n-" in n, n))
    for ns in order:
        nl.delete_netns(ns)
    return order


def iter_pod_endpoints(node: NodeState) -> Iterator[EndpointState]:
    """The node's pod endpoints (the health endpoint excluded)."""
    for ep in node.endpoints.values():
        if ep.pod:
            yield ep
