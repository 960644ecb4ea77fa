"""Cluster-pool IPAM: per-node pod CIDRs, reserved node addresses, pod addresses.

Role: what Cilium's operator and agent do in ``ipam.mode=cluster-pool`` (cilium.md §11):

1. The operator carves one podCIDR per node out of the cluster pool with the pool's
   mask size (``podCIDRMaskSize``, default /24). CIDRs given explicitly in the cluster
   config are kept and never carved again; the others are taken in node order, lowest
   free subnet first, skipping any subnet that overlaps an explicit one.
2. On each node the agent reserves the router IP (``cilium_host``, the
   CiliumInternalIP: from the config when given, else the first usable address) and
   the health endpoint's IP (the lowest usable address that is not the router IP).
3. Pods get the lowest usable address of their node's CIDR that is neither reserved
   nor in use. Lowest-free (instead of Cilium's random pick) keeps runs reproducible.
4. An address is never handed out twice; releasing it makes it free again. A full CIDR
   is reported as a value (``Exhausted``), never raised: the controller turns it into
   pod status.

Usable addresses exclude the network and broadcast addresses of the CIDR (a /24 has
254), which is also the denominator of the agent's ``IPv4: 5/254 allocated from
10.10.2.0/24`` line (``ipam_summary``).

Inputs: the cluster config (``model.cluster``). Outputs: ``NodeIPAM`` plans and a
``ClusterIPAM`` allocator (in-memory, deterministic). Sans-IO: imports only
``ciliate.model``; no store, no clock, no randomness.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv4Network

from ciliate.model.cluster import ClusterConfig, NodeConfig

# Node annotations Cilium's agent writes (pkg/annotation): where other parts read the
# router (cilium_host) and health addresses of a node.
ANNOTATION_CILIUM_HOST_IP = "network.cilium.io/ipv4-cilium-host"
ANNOTATION_HEALTH_IP = "network.cilium.io/ipv4-health-ip"
ANNOTATION_POD_CIDR = "network.cilium.io/ipv4-pod-cidr"


class IPAMError(ValueError):
    """The configuration cannot be served (the pool cannot hold every node's CIDR)."""


@dataclass(frozen=True, slots=True)
class NodeIPAM:
    """One node's share of the pool: its podCIDR and the two reserved addresses."""

    node: str
    cidr: str
    router_ip: str  # CiliumInternalIP (cilium_host)
    health_ip: str  # the cilium-health endpoint

    @property
    def network(self) -> IPv4Network:
        return IPv4Network(self.cidr)

    @property
    def capacity(self) -> int:
        """Usable addresses: all but network and broadcast (a /32 or /31 has all)."""
        n = self.network
        return n.num_addresses if n.prefixlen >= 31 else n.num_addresses - 2

    @property
    def reserved(self) -> frozenset[str]:
        return frozenset({self.router_ip, self.health_ip})


@dataclass(frozen=True, slots=True)
class Exhausted:
    """No free address is left in a node's podCIDR."""

    node: str
    cidr: str

    @property
    def message(self) -> str:
        return f"IPAM: no free address in {self.cidr}"


@dataclass(frozen=True, slots=True)
class Conflict:
    """A requested address cannot be claimed (in use, reserved or outside every CIDR)."""

    ip: str
    reason: str

    @property
    def message(self) -> str:
        return f"IPAM: {self.reason}"


def _usable(net: IPv4Network) -> Iterable[IPv4Address]:
    # hosts() already drops network and broadcast, and keeps every address of /31, /32.
    return net.hosts()


def first_usable(cidr: str) -> str:
    net = IPv4Network(cidr)
    for ip in _usable(net):
        return str(ip)
    raise IPAMError(f"{cidr} has no usable address")


def carve_pod_cidrs(pool: str, mask_size: int, nodes: Sequence[NodeConfig]) -> dict[str, str]:
    """node name -> podCIDR: explicit ones kept, the others carved in node order.

    Raises ``IPAMError`` when the pool runs out (the cluster config cannot be served).
    """
    pool_net = IPv4Network(pool, strict=False)
    if mask_size < pool_net.prefixlen or mask_size > 32:
        raise IPAMError(
            f"podCIDRMaskSize /{mask_size} does not fit in the pool {pool_net} "
            f"(must be between /{pool_net.prefixlen} and /32)"
        )
    taken: list[IPv4Network] = [IPv4Network(n.pod_cidr) for n in nodes if n.pod_cidr]
    out: dict[str, str] = {n.name: str(IPv4Network(n.pod_cidr)) for n in nodes if n.pod_cidr}
    candidates = pool_net.subnets(new_prefix=mask_size)
    for n in nodes:
        if n.pod_cidr:
            continue
        for cand in candidates:
            if not any(cand.overlaps(t) for t in taken):
                taken.append(cand)
                out[n.name] = str(cand)
                break
        else:
            raise IPAMError(
                f"the pod CIDR pool {pool_net} has no free /{mask_size} left for node {n.name}"
            )
    return out


def plan_node(node: str, cidr: str, cilium_internal_ip: str = "") -> NodeIPAM:
    """The reserved addresses of one node (rule 2 of the module docstring)."""
    net = IPv4Network(cidr)
    router = cilium_internal_ip or first_usable(cidr)
    health = ""
    for ip in _usable(net):
        if str(ip) != router:
            health = str(ip)
            break
    if not health:
        raise IPAMError(f"{cidr} of node {node} is too small for a router and a health IP")
    return NodeIPAM(node=node, cidr=str(net), router_ip=router, health_ip=health)


def compute_node_ipam(config: ClusterConfig) -> tuple[NodeIPAM, ...]:
    """Every node's plan, in config order. A pure function of the config."""
    cidrs = carve_pod_cidrs(config.pod_cidr, config.pod_cidr_mask_size, config.nodes)
    return tuple(plan_node(n.name, cidrs[n.name], n.cilium_internal_ip) for n in config.nodes)


def resolve_config(config: ClusterConfig) -> ClusterConfig:
    """The config with every node's podCIDR and CiliumInternalIP filled in.

    This is what ``cluster create`` stores, so that every later reader sees the same
    addresses without running the carving again.
    """
    plans = {p.node: p for p in compute_node_ipam(config)}
    nodes = tuple(
        replace(n, pod_cidr=plans[n.name].cidr, cilium_internal_ip=plans[n.name].router_ip)
        for n in config.nodes
    )
    resolved = replace(config, nodes=nodes)
    return replace(resolved, doc=resolved.to_doc())


def ipam_summary(node: NodeIPAM, allocated: int) -> str:
    """Cilium agent's status line; ``allocated`` counts pods + router + health."""
    return f"IPv4: {allocated}/{node.capacity} allocated from {node.cidr}"


class ClusterIPAM:
    """The address state of every node's podCIDR.

    Deterministic and in memory: the controller rebuilds it from the store on each
    reconcile round (``claim`` every pod address already in pod status), then
    ``allocate``s for the pods that have none. ``owner`` is an opaque string (the pod's
    ``namespace/name``) kept to explain conflicts.
    """

    def __init__(self, nodes: Iterable[NodeIPAM]) -> None:
        self._nodes: dict[str, NodeIPAM] = {}
        # prefix length -> network address (int) -> node: an address finds its node
        # with one lookup per distinct prefix length, not a scan over every node.
        self._nets: dict[int, dict[int, str]] = {}
        self._span: dict[str, tuple[int, int, int]] = {}  # node -> (base, first, last)
        self._reserved: dict[str, frozenset[int]] = {}
        self._used: dict[str, dict[int, str]] = {}  # node -> address (int) -> owner
        # Next candidate offset per node: every address below it is used or reserved,
        # so allocation does not rescan the CIDR from its start each time.
        self._cursor: dict[str, int] = {}
        for n in nodes:
            net = n.network
            base = int(net.network_address)
            small = net.prefixlen >= 31  # /31 and /32 have no network/broadcast address
            self._nodes[n.node] = n
            self._nets.setdefault(net.prefixlen, {})[base] = n.node
            self._span[n.node] = (
                base,
                0 if small else 1,
                net.num_addresses - (1 if small else 2),
            )
            self._reserved[n.node] = frozenset(int(IPv4Address(x)) for x in n.reserved)
            self._used[n.node] = {}
            self._cursor[n.node] = 0

    @property
    def nodes(self) -> Mapping[str, NodeIPAM]:
        return self._nodes

    def _locate(self, value: int) -> str | None:
        for plen, nets in self._nets.items():
            mask = (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF
            node = nets.get(value & mask)
            if node is not None:
                return node
        return None

    def node_for_ip(self, ip: str) -> str | None:
        """The node whose podCIDR holds ``ip`` (None: no node's, or not an address)."""
        value = parse_ipv4(ip)
        return None if value is None else self._locate(value)

    def owner(self, ip: str) -> str | None:
        value = parse_ipv4(ip)
        node = None if value is None else self._locate(value)
        if value is None or node is None:
            return None
        return self._used[node].get(value)

    def allocate(self, node: str, owner: str) -> str | Exhausted:
        """The lowest free usable address of ``node``'s CIDR, now owned by ``owner``."""
        base, first, last = self._span[node]
        used = self._used[node]
        reserved = self._reserved[node]
        off = max(self._cursor[node], first)
        while off <= last:
            value = base + off
            if value not in used and value not in reserved:
                used[value] = owner
                self._cursor[node] = off + 1
                return str(IPv4Address(value))
            off += 1
        self._cursor[node] = off
        return Exhausted(node, self._nodes[node].cidr)

    def claim(self, ip: str, owner: str) -> str | Conflict:
        """Record that ``owner`` holds ``ip`` (a pod that came with status.podIP).

        Returns the node name, or why the address cannot be held.
        """
        value = parse_ipv4(ip)
        node = None if value is None else self._locate(value)
        if value is None or node is None:
            return Conflict(ip, f"{ip} is not inside any node's podCIDR")
        if value in self._reserved[node]:
            return Conflict(ip, f"{ip} is reserved on node {node} (router or health IP)")
        base, first, last = self._span[node]
        if not first <= value - base <= last:
            cidr = self._nodes[node].cidr
            return Conflict(ip, f"{ip} is the network or broadcast address of {cidr}")
        holder = self._used[node].get(value)
        if holder is not None and holder != owner:
            return Conflict(ip, f"{ip} is already allocated to {holder}")
        self._used[node][value] = owner
        return node

    def release(self, ip: str) -> None:
        """Free ``ip`` (unknown or free addresses are ignored: release is idempotent)."""
        value = parse_ipv4(ip)
        node = None if value is None else self._locate(value)
        if value is None or node is None:
            return
        if self._used[node].pop(value, None) is not None:
            off = value - self._span[node][0]
            self._cursor[node] = min(self._cursor[node], off)

    def allocated(self, node: str) -> int:
        """Addresses in use on ``node``, router and health included (Cilium's count)."""
        return len(self._used[node]) + len(self._reserved[node])

    def addresses(self, node: str) -> dict[str, str]:
        """ip -> owner of every pod address on ``node``."""
        return {str(IPv4Address(a)): o for a, o in sorted(self._used[node].items())}

    def summary(self, node: str) -> str:
        return ipam_summary(self._nodes[node], self.allocated(node))


def parse_ipv4(text: str) -> int | None:
    """A dotted-quad IPv4 address as an int; None if it is not one.

    Stricter than ``int()`` per octet and as strict as ``ipaddress`` (no signs, spaces
    or leading zeros), but much cheaper: the controllers parse every pod address on
    every round.
    """
    parts = text.split(".")
    if len(parts) != 4:
        return None
    value = 0
    for part in parts:
        if not part.isascii() or not part.isdigit() or len(part) > 3:
            return None
        if len(part) > 1 and part[0] == "0":
            return None
        octet = int(part)
        if octet > 255:
            return None
        value = (value << 8) | octet
    return value
