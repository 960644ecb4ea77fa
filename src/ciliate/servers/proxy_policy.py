"""What applies to one connection the kernel handed to the L7 proxy.

Role: the proxy's policy side (``servers.proxy`` does the I/O). ``decide_connection``
finds the redirect that brought a connection (the source's egress entry first, as
``bpf_lxc.c`` looks, else the destination's ingress entry) in the agent's rules file
(``Rules``: ``datapath.linux.proxy_rules``, reloaded when it changes) with
``control.mapstate.lookup`` -- the lookup both datapaths use -- and the client's
identity as the kernel decided it (``Identities``: the connection's conntrack entry,
else the node's ipcache, else world). ``Decision.allows`` answers each request with
``control.l7.http_allowed``, the model's matcher (``datapath.sim.policy.l7_decide``), so
model and kernel cannot disagree on a request.

Inputs: rules, addresses, pinned maps (read only). Outputs: ``Decision``s. Imports
``control`` (lookup, matcher), ``codec``, ``datapath.linux.bpf`` and
``datapath.linux.proxy_rules``, ``observe.flow`` (policy names) and
``servers.proxy_http``; must not import cli or agent.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from ciliate import codec
from ciliate.control.l7 import http_allowed
from ciliate.control.mapstate import lookup
from ciliate.datapath.linux import bpf
from ciliate.datapath.linux.proxy_rules import EndpointRules, load_document
from ciliate.desired import IPCacheKey, L7Rule, PolicyEntry
from ciliate.observe import flow as hf
from ciliate.servers.proxy_http import Head

log = logging.getLogger("ciliate.proxy")

MARK_PROXY_UPSTREAM = 0x0A00  # bpf/lib/proxy.h MARK_MAGIC_PROXY_INGRESS
MARK_PROXY_EGRESS = 0x0B00  # bpf/lib/proxy.h MARK_MAGIC_PROXY_EGRESS, identity << 16
WORLD_ID = 2
TCP = 6


@dataclass(frozen=True, slots=True)
class Decision:
    """What applies to one proxied connection. ``endpoint`` is the local endpoint whose
    map decided: the destination (ingress) or the client (egress); ``identity`` the
    remote identity of the lookup (the client's, or the destination's)."""

    endpoint: EndpointRules | None
    identity: int
    entry: PolicyEntry | None  # the redirect entry chosen (None: relay as L4)
    denied: bool = False  # the map denies the connection now: closed, never relayed
    egress: bool = False
    # an egress redirect to an endpoint of this node that has L7 ingress rules too: its
    # decision, enforced here as well (the host programs cannot redirect the upstream)
    also: Decision | None = None

    @property
    def upstream_mark(self) -> int:
        """SO_MARK of the upstream (bpf/lib/proxy.h): an egress redirect carries the
        source's identity, so the destination's ingress policy sees the source --
        unless that policy was applied here (``also``)."""
        if self.egress and self.endpoint is not None and self.also is None:
            return MARK_PROXY_EGRESS | (self.endpoint.identity & 0xFFFF) << 16
        return MARK_PROXY_UPSTREAM

    @property
    def http_rules(self) -> tuple[L7Rule, ...]:
        return tuple(r for r in self.entry.l7_rules if r.kind == "http") if self.entry else ()

    @property
    def policies(self) -> tuple[hf.Policy, ...]:
        if self.entry is None:
            return ()
        provs = [
            *self.entry.provenance,
            *(self.also.entry.provenance if self.also and self.also.entry else ()),
        ]
        seen = dict.fromkeys((p.kind, p.namespace, p.name) for p in provs)
        return tuple(hf.Policy(name=n, namespace=ns, kind=k) for k, ns, n in seen if n)

    def allows(self, head: Head) -> bool:
        """The model's answer for this request (``datapath.sim.policy.l7_decide``; with
        ``also``, the source's egress and the destination's ingress rules, in turn)."""
        if self.also is not None and not self.also.allows(head):
            return False
        rules = self.http_rules
        if self.entry is None or not rules:
            return True
        host = head.header("host") or ""
        return http_allowed(rules, head.method, head.path, host, head.header_map) is not None


def decide(
    endpoint: EndpointRules | None, identity: int, port: int, *, egress: bool = False
) -> Decision:
    """The entry the kernel chose for this connection: the same lookup, same map."""
    if endpoint is None:
        return Decision(None, identity, None, egress=egress)
    v = lookup(endpoint.policy, identity, egress, TCP, port)
    entry = v.entry if v.allowed and v.redirect else None
    return Decision(endpoint, identity, entry, denied=not v.allowed, egress=egress)


def decide_connection(
    rules: dict[str, EndpointRules],
    client: tuple[str, int],
    orig: tuple[str, int],
    client_identity: int,
    remote_identity: Callable[[str], int],
) -> Decision:
    """Which redirect brought the connection here, in the order the kernel looks:

    1. the client is a local endpoint whose egress entry for the destination redirects
       (``bpf_lxc.c`` checks the source's egress policy first); when the destination is
       an endpoint of this node with L7 rules too, its ingress decision is enforced here
       as well (``also``) -- or, if its map denies the client, the connection closes;
    2. the destination is a local endpoint whose ingress entry for the client redirects;
    3. otherwise a map that now denies closes it; else it is relayed as L4 (the policy
       changed since the redirect), egress when the client is a local endpoint."""
    ingress = decide(rules.get(orig[0]), client_identity, orig[1])
    src = rules.get(client[0])
    egress = decide(src, remote_identity(orig[0]), orig[1], egress=True) if src else None
    if egress is not None and egress.entry is not None:
        if ingress.denied:
            return ingress
        return replace(egress, also=ingress) if ingress.entry is not None else egress
    if ingress.entry is not None or ingress.denied:
        return ingress
    return egress if egress is not None else ingress


class Rules:
    """The agent's rules file, reloaded when its mtime or size changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self.endpoints: dict[str, EndpointRules] = {}
        self.pods: dict[str, str] = {}  # IP -> namespace/name of the node's endpoints

    def current(self) -> dict[str, EndpointRules]:
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = (0, 0)
        if stamp != self._stamp:
            try:
                self.endpoints, self.pods = load_document(self.path)
                self._stamp = stamp
            except ValueError as e:  # keep the previous rules; the agent rewrites it
                log.warning("%s", e)
        return self.endpoints


class Identities:
    """The client's identity as the kernel saw it: conntrack, else ipcache, else world."""

    def __init__(self, pin_dir: Path) -> None:
        self.pin_dir = pin_dir
        self._maps: dict[str, bpf.Map] = {}

    def _map(self, name: str) -> bpf.Map | None:
        m = self._maps.get(name)
        if m is None:
            try:
                m = bpf.Map.pinned(self.pin_dir / name)
            except OSError:
                return None
            self._maps[name] = m
        return m

    def of(self, client: tuple[str, int], orig: tuple[str, int]) -> int:
        ct = self._map("cilium_ct4_global")
        if ct is not None:
            key = codec.build_ct_tuple(
                codec.CTTuple(IPv4Address(client[0]), IPv4Address(orig[0]), orig[1], client[1], TCP)
            )
            with contextlib.suppress(OSError):
                raw = ct.lookup(key)
                if raw is not None:
                    sec = codec.parse_ct_entry(raw).src_sec_id
                    if sec:
                        return sec
        return self.remote(client[0])

    def remote(self, ip: str) -> int:
        """The identity of an address from the node's ipcache (world when absent)."""
        ipc = self._map("cilium_ipcache")
        if ipc is not None:
            key = codec.build_ipcache_key(IPCacheKey(IPv4Network(f"{ip}/32")))
            with contextlib.suppress(OSError, codec.CodecError):
                raw = ipc.lookup(key)
                if raw is not None:
                    return codec.parse_remote_endpoint_info(raw).sec_identity
        return WORLD_ID
