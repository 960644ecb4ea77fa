"""A throwaway two-node lab for the eBPF tests, built with netlink directly.

Node A (pods a1, a2) and node B (pod b1), each a network namespace with cilium_host /
cilium_net, cilium_vxlan (external) and eth0; the two eth0s are the two ends of one veth
(the underlay). Pods are namespaces whose eth0 pairs with an lxc device on their node, with
a /32 address and ``default via <cilium_host IP>``, as ciliate's topology builds them.
Maps are filled by hand through the codecs (``KernelMaps.apply`` of ``MapChange``s), so the
tests exercise the programs and the map layouts without the control plane.

Names carry a random tag; ``Lab.destroy()`` removes every namespace and pin it made.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

import pytest

from ciliate import codec
from ciliate.datapath.linux import netns
from ciliate.datapath.linux.loader import NodeBPF, remove_cluster_pins
from ciliate.datapath.linux.maps import RuntimeConfig
from ciliate.desired import (
    ENDPOINT_F_HOST,
    IPCACHE_F_HAS_TUNNEL_EP,
    DesiredState,
    Device,
    EndpointInfo,
    EndpointKey,
    EndpointState,
    Identity,
    IPCacheKey,
    MapChange,
    NodeState,
    RemoteEndpointInfo,
)


def unavailable() -> str | None:
    """Why the lab cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root"
    if shutil.which("clang") is None:
        return "clang is not installed (make setup installs it)"
    if shutil.which("bpftool") is None:
        return "bpftool is not installed"
    if shutil.which("nsenter") is None:
        return "nsenter is not installed"
    return None


@dataclass
class Pod:
    name: str
    node: str
    ip: str
    ep_id: int
    identity: int
    netns: str = ""
    lxc: str = ""
    lxc_ifindex: int = 0
    lxc_mac: str = ""
    pod_mac: str = ""


@dataclass
class Node:
    name: str
    ip: str
    host_ip: str
    pod_cidr: str
    netns: str = ""
    bpf: NodeBPF | None = None
    host_ifindex: int = 0
    host_mac: str = ""
    vxlan_ifindex: int = 0
    pods: list[Pod] = field(default_factory=list)


class Lab:
    def __init__(self) -> None:
        self.tag = "bt" + secrets.token_hex(3)
        self.nodes = {
            "na": Node("na", "192.168.77.1", "10.77.1.1", "10.77.1.0/24"),
            "nb": Node("nb", "192.168.77.2", "10.77.2.1", "10.77.2.0/24"),
        }
        self.pods = {
            "a1": Pod("a1", "na", "10.77.1.11", 101, 30001),
            "a2": Pod("a2", "na", "10.77.1.12", 102, 30002),
            "b1": Pod("b1", "nb", "10.77.2.11", 201, 30003),
        }
        self.namespaces: list[str] = []

    # --- build ------------------------------------------------------------------------

    def _ns(self, short: str) -> str:
        name = f"{self.tag}-{short}"
        netns.ensure_netns(name)
        self.namespaces.append(name)
        return name

    def build(self) -> None:
        for node in self.nodes.values():
            node.netns = self._ns(node.name)
            ipr = netns.open_rtnl(
                node.netns,
                sysctls=[
                    ("net.ipv4.ip_forward", "1"),
                    ("net.ipv4.conf.all.rp_filter", "0"),
                    ("net.ipv4.conf.default.rp_filter", "0"),
                ],
            )
            try:
                netns.ensure_up(ipr, "lo")
                netns.ensure_veth(ipr, netns.LinkSpec("cilium_host"), netns.LinkSpec("cilium_net"))
                netns.ensure_vxlan(ipr, netns.LinkSpec("cilium_vxlan"))
                for dev in ("cilium_host", "cilium_net", "cilium_vxlan"):
                    ipr.link("set", index=netns.link_index(ipr, dev), state="up")
                # Cilium's cilium_host does not ARP: neighbours resolve to its own MAC.
                ipr.link("set", index=netns.link_index(ipr, "cilium_host"), arp=False)
                netns.ensure_addresses(ipr, "cilium_host", [f"{node.host_ip}/32"])
                node.host_ifindex = netns.link_index(ipr, "cilium_host")
                node.vxlan_ifindex = netns.link_index(ipr, "cilium_vxlan")
                (link,) = ipr.get_links(node.host_ifindex)
                node.host_mac = str(link.get("address"))
            finally:
                ipr.close()
        # the underlay: one veth between the two nodes' eth0
        na, nb = self.nodes["na"], self.nodes["nb"]
        ipr = netns.open_rtnl(na.netns)
        try:
            netns.ensure_veth(ipr, netns.LinkSpec("eth0"), netns.LinkSpec("eth0"), nb.netns)
            netns.ensure_addresses(ipr, "eth0", [f"{na.ip}/24"])
            netns.ensure_up(ipr, "eth0")
            for cidr in (na.pod_cidr, nb.pod_cidr):
                netns.ensure_route(
                    ipr, netns.RouteSpec(cidr, "cilium_host", via=na.host_ip, src=na.host_ip)
                )
        finally:
            ipr.close()
        ipr = netns.open_rtnl(nb.netns)
        try:
            netns.ensure_addresses(ipr, "eth0", [f"{nb.ip}/24"])
            netns.ensure_up(ipr, "eth0")
            for cidr in (na.pod_cidr, nb.pod_cidr):
                netns.ensure_route(
                    ipr, netns.RouteSpec(cidr, "cilium_host", via=nb.host_ip, src=nb.host_ip)
                )
        finally:
            ipr.close()
        for pod in self.pods.values():
            self._build_pod(pod)

    def _build_pod(self, pod: Pod) -> None:
        node = self.nodes[pod.node]
        pod.netns = self._ns(pod.name)
        pod.lxc = f"lxc{self.tag}{pod.name}"[:15]
        ipr = netns.open_rtnl(node.netns)
        try:
            netns.ensure_veth(ipr, netns.LinkSpec(pod.lxc), netns.LinkSpec("eth0"), pod.netns)
            netns.ensure_up(ipr, pod.lxc)
            pod.lxc_ifindex = netns.link_index(ipr, pod.lxc)
            (link,) = ipr.get_links(pod.lxc_ifindex)
            pod.lxc_mac = str(link.get("address"))
        finally:
            ipr.close()
        ipr = netns.open_rtnl(pod.netns, sysctls=[("net.ipv6.conf.all.disable_ipv6", "1")])
        try:
            netns.ensure_up(ipr, "lo")
            netns.ensure_addresses(ipr, "eth0", [f"{pod.ip}/32"])
            netns.ensure_up(ipr, "eth0")
            (link,) = ipr.get_links(netns.link_index(ipr, "eth0"))
            pod.pod_mac = str(link.get("address"))
            netns.ensure_route(ipr, netns.RouteSpec(node.host_ip, "eth0", link_scope=True))
            # 50 bytes of VXLAN overhead: without the route MTU every full-size segment
            # to another node would be fragmented on the underlay (6x slower here)
            netns.ensure_route(ipr, netns.RouteSpec("default", "eth0", via=node.host_ip, mtu=1450))
        finally:
            ipr.close()
        node.pods.append(pod)

    # --- eBPF -------------------------------------------------------------------------

    def load(self, *, policy: bool = False) -> None:
        for node in self.nodes.values():
            node.bpf = NodeBPF(self.tag, node.name, node.netns)
            node.bpf.load()
            node.bpf.maps.set_runtime_config(self.runtime_config(node, policy=policy))
            node.bpf.attach("cilium_vxlan", "ingress", "cil_from_overlay")
            node.bpf.attach("cilium_vxlan", "egress", "cil_to_overlay")
            node.bpf.attach("cilium_host", "ingress", "cil_to_host")
            node.bpf.attach("cilium_host", "egress", "cil_from_host")
            node.bpf.attach("cilium_net", "ingress", "cil_to_host")
            node.bpf.attach("eth0", "ingress", "cil_from_netdev")
            for pod in node.pods:
                node.bpf.attach(pod.lxc, "ingress", "cil_from_container")
            node.bpf.maps.apply(self.map_changes(node))

    def runtime_config(self, node: Node, *, policy: bool) -> RuntimeConfig:
        return RuntimeConfig(
            node_ip=IPv4Address(node.ip),
            host_ip=IPv4Address(node.host_ip),
            host_ifindex=node.host_ifindex,
            vxlan_ifindex=node.vxlan_ifindex,
            host_mac=node.host_mac,
            policy=policy,
        )

    def map_changes(self, node: Node) -> list[MapChange]:
        ch: list[MapChange] = []
        for pod in self.pods.values():
            if pod.node == node.name:
                ch.append(
                    MapChange(
                        node.name,
                        "cilium_lxc",
                        EndpointKey(IPv4Address(pod.ip)),
                        EndpointInfo(
                            ifindex=pod.lxc_ifindex,
                            lxc_id=pod.ep_id,
                            mac=pod.pod_mac,
                            node_mac=pod.lxc_mac,
                            sec_id=pod.identity,
                        ),
                    )
                )
                ch.append(self._ipcache(node, pod.ip, pod.identity))
            else:
                other = self.nodes[pod.node]
                ch.append(self._ipcache(node, pod.ip, pod.identity, tunnel=other.ip))
        for ip in (node.ip, node.host_ip):
            ch.append(
                MapChange(
                    node.name,
                    "cilium_lxc",
                    EndpointKey(IPv4Address(ip)),
                    EndpointInfo(ifindex=0, lxc_id=0, flags=ENDPOINT_F_HOST),
                )
            )
            ch.append(self._ipcache(node, ip, 1))
        for other in self.nodes.values():
            if other is not node:
                ch.append(self._ipcache(node, other.ip, 6))
                ch.append(self._ipcache(node, other.host_ip, 6, tunnel=other.ip))
        ch.append(
            MapChange(
                node.name,
                "cilium_ipcache",
                IPCacheKey(IPv4Network("0.0.0.0/0")),
                RemoteEndpointInfo(2),
            )
        )
        return ch

    @staticmethod
    def _ipcache(node: Node, ip: str, ident: int, tunnel: str = "") -> MapChange:
        return MapChange(
            node.name,
            "cilium_ipcache",
            IPCacheKey(IPv4Network(f"{ip}/32")),
            RemoteEndpointInfo(
                ident,
                IPv4Address(tunnel) if tunnel else None,
                IPCACHE_F_HAS_TUNNEL_EP if tunnel else 0,
            ),
        )

    def desired(self) -> DesiredState:
        """A DesiredState describing the lab (for the flow enricher)."""
        nodes = {}
        for node in self.nodes.values():
            eps = {
                p.ep_id: EndpointState(
                    id=p.ep_id,
                    pod=f"lab/{p.name}",
                    ip=IPv4Address(p.ip),
                    identity=p.identity,
                    lxc_name=p.lxc,
                    lxc_ifindex=p.lxc_ifindex,
                    lxc_mac=p.lxc_mac,
                    pod_ifindex=0,
                    pod_mac=p.pod_mac,
                    labels=(f"k8s:app={p.name}", "k8s:io.kubernetes.pod.namespace=lab"),
                )
                for p in node.pods
            }
            nodes[node.name] = NodeState(
                name=node.name,
                internal_ip=IPv4Address(node.ip),
                node_prefix_len=24,
                cilium_internal_ip=IPv4Address(node.host_ip),
                pod_cidr=IPv4Network(node.pod_cidr),
                health_ip=None,
                devices=(
                    Device("cilium_host", node.host_ifindex, node.host_mac, "veth"),
                    Device("cilium_vxlan", node.vxlan_ifindex, "", "vxlan"),
                ),
                routes=(),
                endpoints=eps,
                lxc={},
                ipcache={},
                policy={},
                lb4_services={},
                lb4_backends={},
                lb4_reverse_nat={},
                maglev={},
            )
        idents = {
            p.identity: Identity(p.identity, (f"k8s:app={p.name}",)) for p in self.pods.values()
        }
        idents[1] = Identity(1, ("reserved:host",))
        idents[6] = Identity(6, ("reserved:remote-node",))
        return DesiredState(cluster="lab", nodes=nodes, identities=idents)

    # --- running things ---------------------------------------------------------------

    def run(self, where: str, *argv: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
        """Run a command in the network namespace of a pod or node (by short name)."""
        ns = self.pods[where].netns if where in self.pods else self.nodes[where].netns
        return subprocess.run(
            ["nsenter", f"--net=/run/netns/{ns}", *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def ping(self, src: str, dst_ip: str, count: int = 2) -> bool:
        r = self.run(src, "ping", "-c", str(count), "-i", "0.2", "-W", "1", dst_ip)
        return r.returncode == 0

    def bpftool_lookup(self, node: str, map_name: str, key: bytes) -> bytes | None:
        n = self.nodes[node]
        assert n.bpf is not None
        r = self.run(
            node,
            "bpftool",
            "-j",
            "map",
            "lookup",
            "pinned",
            str(n.bpf.pin_dir / map_name),
            "key",
            "hex",
            *[f"{b:02x}" for b in key],
        )
        if r.returncode != 0:
            return None
        import json

        doc = json.loads(r.stdout)
        return bytes(int(x, 16) for x in doc["value"])

    # --- teardown ---------------------------------------------------------------------

    def destroy(self) -> None:
        for node in self.nodes.values():
            if node.bpf is not None:
                with contextlib.suppress(Exception):
                    node.bpf.unload()
        for ns in reversed(self.namespaces):
            with contextlib.suppress(OSError):
                netns.delete_netns(ns)
        remove_cluster_pins(self.tag)

    def leftovers(self) -> list[str]:
        left = [n for n in netns.list_netns() if n.startswith(self.tag)]
        if (remove_pins_root := NodeBPF(self.tag, "x", "x").pin_dir.parents[2]).exists():
            left.append(str(remove_pins_root))
        return left


@contextlib.contextmanager
def running_lab(*, policy: bool = False) -> Iterator[Lab]:
    """A built and loaded lab for one test module (a skip naming the reason where the
    kernel cannot run it); destroyed afterwards, and nothing of it may be left."""
    reason = unavailable()
    if reason:
        pytest.skip(f"eBPF lab unavailable: {reason}")
    lab = Lab()
    try:
        lab.build()
        lab.load(policy=policy)
        yield lab
    finally:
        lab.destroy()
        assert lab.leftovers() == []


__all__ = ["Lab", "codec", "running_lab", "unavailable"]


# --- TCP servers and clients inside pod namespaces (in-process: a socket stays in the
# namespace it was created in, whichever thread uses it) ---------------------------------


class NameServer:
    """A TCP server in a pod's namespace answering every line with the pod's name."""

    def __init__(self, lab: Lab, pod: str, port: int) -> None:
        import socket
        import threading

        self.name = pod
        ns = lab.pods[pod].netns if pod in lab.pods else lab.nodes[pod].netns

        def make() -> socket.socket:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("0.0.0.0", port))
            s.listen(64)
            return s

        self.sock = netns.run_in_netns(ns, make)
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        import threading

        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: object) -> None:
        import socket

        assert isinstance(conn, socket.socket)
        conn.settimeout(5)
        with conn:
            try:
                while conn.recv(64):
                    conn.sendall(self.name.encode() + b"\n")
            except OSError:
                pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def connect(lab: Lab, where: str, ip: str, port: int, timeout: float = 1.0) -> object:
    """A TCP socket connected from a pod's (or node's) namespace."""
    import socket

    ns = lab.pods[where].netns if where in lab.pods else lab.nodes[where].netns

    def make() -> socket.socket:
        return socket.create_connection((ip, port), timeout=timeout)

    return netns.run_in_netns(ns, make)


def ask(sock: object) -> str:
    """Send a line, return the server's answer (its pod name)."""
    import socket

    assert isinstance(sock, socket.socket)
    sock.sendall(b"?\n")
    return sock.recv(64).decode().strip()
