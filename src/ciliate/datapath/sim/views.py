"""What ``ip a``, ``ip route``, ``arp -a``/``ip neigh`` and ``bpftool net show`` print
inside a pod or on a node, rendered from the DesiredState in iproute2's formats.

In model mode ``ciliate exec POD -- ip a`` and ``ciliate node exec NODE -- ip route``
answer from these renderers; when the kernel datapath is up the real commands run, and
since the kernel datapath creates links with the planned ifindexes and MACs
(``desired`` ifindex plan), both print the same lines (IPv6 link-local addresses, which
the model does not have, aside).

Formats (iproute2 ``ip -d``-less output):

* ``N: NAME[@PEER]: <FLAGS> mtu M qdisc noqueue state S group default qlen 1000`` then
  ``    link/ether MAC brd ff:ff:ff:ff:ff:ff[ link-netnsid K]``, then per address
  ``    inet A/P [brd B ]scope global|host DEV`` and
  ``       valid_lft forever preferred_lft forever``. ``@PEER`` is the peer's name when
  it lives in the same namespace (``cilium_net@cilium_host``), else ``@ifN``.
* routes: ``DST [via GW ]dev DEV[ proto P][ scope S][ src A][ mtu M]``.
* ``arp -a``: ``? (IP) at MAC [ether] on DEV``; ``ip neigh``: ``IP dev DEV lladdr MAC REACHABLE``.
* ``bpftool net show``: the tc (tcx) attachments per device in ifindex order.

``run_pod``/``run_node`` take an argv and return the text, or raise ``UnsupportedError``
(exit 4) for commands the model cannot answer. Pure: no I/O.

Imports ``desired`` and ``errors`` only; pure text. Must not import ``datapath.linux``
(the real commands run there when the cluster is up).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from ipaddress import IPv4Interface

from ciliate.desired import Device, Neighbor, NodeState, PodNet, Route
from ciliate.errors import UnsupportedError

_BRD = "ff:ff:ff:ff:ff:ff"


def _flags(d: Device) -> tuple[str, str]:
    """(<FLAGS>, operstate) as iproute2 shows them for this kind of link."""
    if d.kind == "loopback":
        return "LOOPBACK,UP,LOWER_UP", "UNKNOWN"
    if d.kind == "vxlan":
        return "BROADCAST,MULTICAST,UP,LOWER_UP", "UNKNOWN"
    if d.name in ("cilium_host", "cilium_net"):
        return "BROADCAST,MULTICAST,NOARP,UP,LOWER_UP", "UP"
    return "BROADCAST,MULTICAST,UP,LOWER_UP", "UP"


def _inet_line(cidr: str, dev: str, loopback: bool) -> str:
    iface = IPv4Interface(cidr)
    brd = ""
    if not loopback and iface.network.prefixlen < 31:
        brd = f"brd {iface.network.broadcast_address} "
    scope = "host" if loopback else "global"
    return f"    inet {cidr} {brd}scope {scope} {dev}"


def render_ip_addr(devices: Sequence[Device], addresses: bool = True) -> str:
    """``ip a`` over the links of one network namespace (``ip link`` without addresses)."""
    local = {(d.name, d.ifindex) for d in devices}
    lines: list[str] = []
    netnsid = 0
    for d in sorted(devices, key=lambda x: x.ifindex):
        flags, state = _flags(d)
        name = d.name
        other_ns = False
        if d.peer:
            if (d.peer, d.peer_ifindex) in local:
                name += f"@{d.peer}"
            else:
                name += f"@if{d.peer_ifindex}"
                other_ns = True
        lines.append(
            f"{d.ifindex}: {name}: <{flags}> mtu {d.mtu} qdisc noqueue state {state} "
            "group default qlen 1000"
        )
        if d.kind == "loopback":
            lines.append(f"    link/loopback {d.mac} brd 00:00:00:00:00:00")
        else:
            link = f"    link/ether {d.mac} brd {_BRD}"
            if other_ns:
                link += f" link-netnsid {netnsid}"
                # Each pod is its own namespace: a node numbers them in order of use;
                # inside a pod the node is the only other namespace (id 0).
                if d.name != "eth0":
                    netnsid += 1
            lines.append(link)
        for addr in d.addresses if addresses else ():
            lines.append(_inet_line(addr, d.name, d.kind == "loopback"))
            lines.append("       valid_lft forever preferred_lft forever")
    return "\n".join(lines)


def render_route(r: Route) -> str:
    parts = [r.dst]
    if r.via:
        parts.append(f"via {r.via}")
    parts.append(f"dev {r.dev}")
    if r.proto:
        parts.append(f"proto {r.proto}")
    if r.scope:
        parts.append(f"scope {r.scope}")
    if r.src:
        parts.append(f"src {r.src}")
    if r.mtu:
        parts.append(f"mtu {r.mtu}")
    return " ".join(parts)


def _route_order(r: Route) -> tuple[int, int, int]:
    """The kernel's listing order (its FIB trie): default first, then by address, a
    shorter prefix before a longer one at the same address."""
    if r.dst == "default":
        return (0, 0, 0)
    try:
        net = ipaddress.ip_network(r.dst, strict=False)
    except ValueError:
        return (2, 0, 0)
    return (1, int(net.network_address), net.prefixlen)


def render_routes(routes: Sequence[Route]) -> str:
    """``ip route`` in the kernel's order."""
    return "\n".join(render_route(r) for r in sorted(routes, key=_route_order))


def render_arp(neighbors: Sequence[Neighbor]) -> str:
    return "\n".join(f"? ({n.ip}) at {n.mac} [ether] on {n.dev}" for n in neighbors)


def render_neigh(neighbors: Sequence[Neighbor]) -> str:
    return "\n".join(f"{n.ip} dev {n.dev} lladdr {n.mac} REACHABLE" for n in neighbors)


def render_bpftool_net(node: NodeState) -> str:
    """``bpftool net show``: every tc attachment of the node's links (tcx, kernel ≥ 6.6).

    Program and link ids are stable numbers derived from the ifindex and direction
    (the kernel hands out real ones)."""
    tc: list[str] = []
    for d in sorted(node.devices, key=lambda x: x.ifindex):
        for direction, prog in sorted(d.programs, key=lambda p: p[0] != "ingress"):
            n = d.ifindex * 2 + (0 if direction == "ingress" else 1)
            tc.append(
                f"{d.name}({d.ifindex}) tcx/{direction} {prog} prog_id {1000 + n} link_id {n}"
            )
    return "\n".join(["xdp:", "", "tc:", *tc, "", "flow_dissector:", "", "netfilter:", ""])


# --- commands --------------------------------------------------------------------------

_ADDR = {"a", "addr", "address"}
_ROUTE = {"r", "ro", "route"}
_NEIGH = {"n", "neigh", "neighbor", "neighbour"}
_LINK = {"l", "link"}
_SHOW = {"", "show", "list", "ls"}


def _ip_words(argv: Sequence[str]) -> tuple[str, str] | None:
    """("addr"|"route"|"neigh", rest) for ``ip [-4] OBJECT [show|list]``."""
    words = [a for a in argv[1:] if a not in ("-4", "-c", "-color", "--color")]
    if not words:
        return None
    obj, verb = words[0], " ".join(words[1:])
    if verb not in _SHOW:
        return None
    if obj in _ADDR:
        return "addr", verb
    if obj in _ROUTE:
        return "route", verb
    if obj in _NEIGH:
        return "neigh", verb
    if obj in _LINK:
        return "link", verb
    return None


def _unsupported(argv: Sequence[str], where: str, supported: str) -> UnsupportedError:
    return UnsupportedError(
        f"model mode can answer only {supported} {where}; "
        f"`{' '.join(argv)}` needs the kernel datapath (sudo ciliate up)"
    )


def run_pod(pod: PodNet, argv: Sequence[str]) -> str:
    """The output of ``argv`` inside ``pod``'s network namespace."""
    if argv and argv[0] == "ip":
        w = _ip_words(argv)
        if w is not None:
            if w[0] in ("addr", "link"):
                return render_ip_addr(pod.devices, addresses=w[0] == "addr")
            if w[0] == "route":
                return render_routes(pod.routes)
            return render_neigh(pod.neighbors)
    if list(argv) in (["arp", "-a"], ["arp", "-an"], ["arp", "-n"], ["arp"]):
        return render_arp(pod.neighbors)
    raise _unsupported(argv, f"in pod {pod.pod}", "ip a, ip link, ip route, ip neigh and arp -a")


def run_node(node: NodeState, argv: Sequence[str]) -> str:
    """The output of ``argv`` on ``node`` (its root network namespace)."""
    if argv and argv[0] == "ip":
        w = _ip_words(argv)
        if w is not None and w[0] in ("addr", "link"):
            return render_ip_addr(node.devices, addresses=w[0] == "addr")
        if w is not None and w[0] == "route":
            return render_routes(node.routes)
    if list(argv[:3]) in (["bpftool", "net", "show"], ["bpftool", "net", "list"]) or list(argv) == [
        "bpftool",
        "net",
    ]:
        return render_bpftool_net(node)
    raise _unsupported(argv, f"on node {node.name}", "ip a, ip link, ip route and bpftool net show")
