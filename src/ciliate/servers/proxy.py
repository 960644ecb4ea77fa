"""The node's L7 (HTTP) proxy: what Cilium's Envoy does for an HTTP rule, on asyncio.

``python -m ciliate.servers.proxy --node N --rules FILE --pin-dir DIR --flows FILE
--port 10080 [--ready FILE]`` runs in the node's network namespace (started and
supervised by ``datapath.linux.proxy``). The kernel hands it the connections whose
policy entry carries a proxy port (``bpf/lib/proxy.h``: socket assignment to this
listener, which has IP_TRANSPARENT, so an accepted socket carries the pod's address).

Per connection:

1. the original destination is the accepted socket's own address (``getsockname``);
   the client's identity is the one the kernel decided with: the conntrack entry of the
   connection (``src_sec_id``), else the node's ipcache, else world;
2. the rules (``decide_connection``): the agent's rules file
   (``datapath.linux.proxy_rules``, reloaded when it changes) holds the policy maps of
   the node's redirecting endpoints; the destination's map looked up for the client
   (ingress L7), else the client's map looked up for the destination's identity (egress
   L7), with ``control.mapstate.lookup`` -- the datapath's lookup; the chosen entry's
   HTTP rules decide each request with ``control.l7.http_allowed``, the model's matcher;
3. requests are framed by ``servers.proxy_http`` (HTTP/1.1, keep-alive, pipelining,
   chunked bodies). An allowed request is relayed verbatim over one upstream connection
   from the node to the original destination, marked for the host programs (SO_MARK
   0xA00 after an ingress redirect: the policy was enforced here; 0xB00 with the
   source's identity after an egress one: the destination's ingress policy sees the
   source); a denied one is answered ``403`` with the body ``Access denied\\r\\n``
   (Envoy's) and the connection stays open; responses go back in request order. Not
   HTTP: 400 and close;
4. every request gives Hubble L7 records (type L7, http method/url/code, verdict
   FORWARDED or DROPPED, the policy) appended to the node's proxy flow log, which
   ``ciliate observe`` merges with the kernel's flows.

Imports the standard library, ``ciliate.control`` (lookup and matcher), ``codec`` and
``datapath.linux.bpf`` (map reads), ``datapath.flowlog`` and ``observe.flow``; must not
import cli or agent.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import struct
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from ciliate import codec
from ciliate.control.l7 import http_allowed
from ciliate.control.mapstate import lookup
from ciliate.datapath.flowlog import FlowLogWriter
from ciliate.datapath.linux import bpf
from ciliate.datapath.linux.proxy_rules import EndpointRules, load_document
from ciliate.desired import IPCacheKey, L7Rule, PolicyEntry
from ciliate.observe import flow as hf
from ciliate.servers.proxy_http import (
    ACCESS_DENIED,
    END,
    Head,
    MessageReader,
    ProtocolError,
    simple_response,
)

log = logging.getLogger("ciliate.proxy")

IP_TRANSPARENT = 19
MARK_PROXY_UPSTREAM = 0x0A00  # bpf/lib/proxy.h MARK_MAGIC_PROXY_INGRESS
MARK_PROXY_EGRESS = 0x0B00  # bpf/lib/proxy.h MARK_MAGIC_PROXY_EGRESS, identity << 16
WORLD_ID = 2
TCP = 6


# --- decisions ------------------------------------------------------------------------


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


# --- flows ----------------------------------------------------------------------------


class FlowSink:
    """Hubble L7 records (``hubble observe --type l7``) into the proxy's flow log."""

    def __init__(self, path: Path | None, node: str) -> None:
        self.node = node
        self.writer = FlowLogWriter(path) if path is not None else None

    def record(
        self,
        conn: ClientConnection,
        head: Head,
        *,
        response: int | None,
        forwarded: bool,
        latency_ns: int = 0,
    ) -> None:
        if self.writer is None:
            return
        d = conn.decision
        ep = d.endpoint if d is not None else None
        ns, _, pod = (ep.pod if ep else "").partition("/")
        host = head.header("host") or conn.orig[0]
        url = f"http://{host}{head.path}"
        pols = d.policies if d is not None else ()
        code = response or 0
        # the peer of the deciding endpoint: named when it is a pod of this node
        peer_ip = conn.orig[0] if d is not None and d.egress else conn.client[0]
        peer_ns, _, peer_pod = conn.proxy.rules.pods.get(peer_ip, "").partition("/")
        src = hf.Endpoint(  # the client (the server, for an egress redirect)
            identity=d.identity if d else 0, namespace=peer_ns, pod_name=peer_pod
        )
        dst = hf.Endpoint(
            id=ep.id if ep else 0,
            identity=ep.identity if ep else 0,
            namespace=ns,
            pod_name=pod,
            labels=ep.labels if ep else (),
        )
        egress = d is not None and d.egress
        if egress:  # the endpoint is the client, the lookup's identity the server's
            src, dst = dst, src
        ips, ports = (conn.client[0], conn.orig[0]), (conn.client[1], conn.orig[1])
        if response:  # Hubble: a response record goes from the server to the client
            src, dst = dst, src
            ips, ports = ips[::-1], ports[::-1]
        flow = hf.Flow(
            time_ns=time.time_ns(),
            verdict=hf.Verdict.FORWARDED if forwarded else hf.Verdict.DROPPED,
            type=hf.FlowType.L7,
            ip=hf.IP(*ips),
            l4=hf.TCP(*ports),
            source=src,
            destination=dst,
            node_name=self.node,
            l7=hf.Layer7(
                type=hf.L7FlowType.RESPONSE if response else hf.L7FlowType.REQUEST,
                latency_ns=latency_ns,
                http=hf.HTTP(code=code, method=head.method, url=url, protocol=head.version),
            ),
            is_reply=bool(response),
            event_type=hf.CiliumEventType(129, 0),
            traffic_direction=(
                hf.TrafficDirection.EGRESS if egress else hf.TrafficDirection.INGRESS
            ),
            ingress_allowed_by=pols if forwarded and not egress else (),
            ingress_denied_by=pols if not forwarded and not egress else (),
            egress_allowed_by=pols if forwarded and egress else (),
            egress_denied_by=pols if not forwarded and egress else (),
            proxy_port=conn.proxy.port,
        )
        try:
            self.writer.write([flow])
        except OSError as e:  # the log is best effort; the traffic is not
            log.warning("flow log: %s", e)


# --- connections ------------------------------------------------------------------------


@dataclass
class _Slot:
    """One answer due to the client, in request order."""

    head: Head
    local: bytes = b""  # the proxy's own answer; empty: the upstream's
    started: int = 0
    close_after: bool = False


class Upstream(asyncio.Protocol):
    def __init__(self, client: ClientConnection) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.client.upstream_data(data)

    def eof_received(self) -> bool:
        self.client.upstream_closed()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.upstream_closed()


class ClientConnection(asyncio.Protocol):
    """One connection the kernel handed over (see the module docstring)."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.transport: asyncio.Transport | None = None
        self.requests = MessageReader(request=True)
        self.responses = MessageReader(request=False)
        self.slots: deque[_Slot] = deque()
        self.decision: Decision | None = None
        self.client: tuple[str, int] = ("0.0.0.0", 0)
        self.orig: tuple[str, int] = ("0.0.0.0", 0)
        self.upstream: Upstream | None = None
        self._pending_up: list[bytes] = []
        self._connecting = False
        self._relaying = False  # the body of the current request goes upstream
        self._client_eof = False
        self._closed = False

    # client side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.client = transport.get_extra_info("peername")[:2]
        self.orig = transport.get_extra_info("sockname")[:2]
        if self.orig[1] in self.proxy.ports:  # a direct connection to the proxy: no
            transport.close()  # original destination to relay to
            return
        ids = self.proxy.identities
        self.decision = decide_connection(
            self.proxy.rules.current(),
            self.client,
            self.orig,
            ids.of(self.client, self.orig),
            ids.remote,
        )
        if self.decision.denied:  # fail closed (the policy changed since the redirect)
            log.info("%s:%d -> %s:%d: denied by the current policy", *self.client, *self.orig)
            self._close()
            return
        if self.decision.entry is None:
            # no L7 rule applies (the policy changed since the redirect): relay as L4
            self._connect()

    def data_received(self, data: bytes) -> None:
        if self.decision is not None and self.decision.entry is None:
            self._send_up(data)
            return
        try:
            events = self.requests.feed(data)
        except ProtocolError as e:
            self._bad_request(str(e))
            return
        for ev in events:
            if isinstance(ev, Head):
                self._request(ev)
            elif ev is END:
                self._relaying = False
            elif isinstance(ev, bytes) and self._relaying:
                self._send_up(ev)

    def eof_received(self) -> bool:
        self._client_eof = True
        up = self.upstream.transport if self.upstream is not None else None
        if up is not None and up.can_write_eof():
            up.write_eof()
        self._maybe_close()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._close()

    def _request(self, head: Head) -> None:
        assert self.decision is not None
        allowed = self.decision.allows(head)
        close = not head.keep_alive
        self.proxy.flows.record(self, head, response=None, forwarded=allowed)
        if allowed:
            self.slots.append(_Slot(head, started=time.monotonic_ns(), close_after=close))
            self.responses.expect(head.method)
            self._relaying = True
            self._send_up(head.raw)
        else:
            self._relaying = False
            answer = simple_response(403, "Forbidden", ACCESS_DENIED, close=close)
            self.slots.append(_Slot(head, local=answer, close_after=close))
            self.proxy.flows.record(self, head, response=403, forwarded=False)
            self._flush_local()

    def _bad_request(self, why: str) -> None:
        log.info("%s:%d: not HTTP: %s", self.client[0], self.client[1], why)
        if self.transport is not None:
            self.transport.write(
                simple_response(400, "Bad Request", b"Bad Request\r\n", close=True)
            )
        self._close()

    # upstream side

    def _connect(self) -> None:
        if self._connecting or self._closed:
            return
        self._connecting = True
        asyncio.get_running_loop().create_task(self._open_upstream())

    async def _open_upstream(self) -> None:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        mark = self.decision.upstream_mark if self.decision else MARK_PROXY_UPSTREAM
        try:
            # an unsigned 32-bit value: identities past 0x7fff set the sign bit
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, struct.pack("=I", mark))
            sock.setblocking(False)
            await asyncio.wait_for(loop.sock_connect(sock, self.orig), self.proxy.connect_timeout)
            _, proto = await loop.create_connection(lambda: Upstream(self), sock=sock)
        except (OSError, TimeoutError) as e:
            sock.close()
            log.info("upstream %s:%d: %s", self.orig[0], self.orig[1], e)
            self._upstream_failed()
            return
        self.upstream = proto
        if self._closed:
            self._close()
            return
        assert proto.transport is not None
        for chunk in self._pending_up:
            proto.transport.write(chunk)
        self._pending_up.clear()
        if self._client_eof and proto.transport.can_write_eof():
            proto.transport.write_eof()

    def _send_up(self, data: bytes) -> None:
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.write(data)
            return
        self._pending_up.append(data)
        self._connect()

    def _upstream_failed(self) -> None:
        """Envoy's answer when the upstream cannot be reached: 503 to what was due."""
        if self.transport is None or self._closed:
            return
        body = b"upstream connect error or disconnect/reset before headers\r\n"
        if any(not s.local for s in self.slots) or self.decision is None or not self.decision.entry:
            self.transport.write(simple_response(503, "Service Unavailable", body, close=True))
        self._close()

    def upstream_data(self, data: bytes) -> None:
        if self.transport is None or self._closed:
            return
        if self.decision is not None and self.decision.entry is None:
            self.transport.write(data)  # L4 relay
            return
        try:
            events = self.responses.feed(data)
        except ProtocolError:
            self._close()
            return
        self._responses(events)

    def _responses(self, events: Sequence[object]) -> None:
        assert self.transport is not None
        for ev in events:
            if isinstance(ev, Head):
                if self.slots:
                    slot = self.slots[0]
                    latency = time.monotonic_ns() - slot.started
                    self.proxy.flows.record(
                        self, slot.head, response=ev.status, forwarded=True, latency_ns=latency
                    )
                    if not ev.keep_alive:
                        slot.close_after = True
                self.transport.write(ev.raw)
            elif isinstance(ev, bytes):
                self.transport.write(ev)
            elif ev is END and self.slots:
                done = self.slots.popleft()
                if done.close_after:
                    self._close()
                    return
                self._flush_local()
        self._maybe_close()

    def upstream_closed(self) -> None:
        if self._closed:
            return
        if self.decision is not None and self.decision.entry is None:
            self._close()
            return
        with contextlib.suppress(ProtocolError):
            self._responses(self.responses.close())
        if self.upstream is not None:
            self.upstream = None
            self._connecting = False
            if any(not s.local for s in self.slots):
                self._close()  # answers were still due from it
                return
        self._maybe_close()

    # ordering and teardown

    def _flush_local(self) -> None:
        """Write the proxy's own answers that are next in line."""
        assert self.transport is not None
        while self.slots and self.slots[0].local:
            slot = self.slots.popleft()
            self.transport.write(slot.local)
            if slot.close_after:
                self._close()
                return

    def _maybe_close(self) -> None:
        if self._client_eof and not self.slots and not self._closed:
            self._close()

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.transport is not None:
            self.transport.close()
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.close()


# --- the server -------------------------------------------------------------------------


class Proxy:
    def __init__(
        self,
        node: str,
        rules: Path,
        pin_dir: Path,
        flows: Path | None,
        ports: Sequence[int],
        connect_timeout: float = 5.0,
    ) -> None:
        self.node = node
        self.rules = Rules(rules)
        self.identities = Identities(pin_dir)
        self.flows = FlowSink(flows, node)
        self.ports = tuple(ports)
        self.port = self.ports[0]
        self.connect_timeout = connect_timeout

    def listener(self, port: int) -> socket.socket:
        """0.0.0.0:port with IP_TRANSPARENT: the kernel assigns connections for any
        destination to it, and the accepted sockets answer from that destination."""
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_IP, IP_TRANSPARENT, 1)
        s.bind(("0.0.0.0", port))
        s.listen(1024)
        s.setblocking(False)
        return s

    async def serve(self, ready: Path | None) -> None:
        loop = asyncio.get_running_loop()
        servers = [
            await loop.create_server(lambda: ClientConnection(self), sock=self.listener(p))
            for p in self.ports
        ]
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        if ready is not None:
            tmp = ready.with_suffix(".tmp")
            tmp.write_text(f"{os.getpid()}\n")
            tmp.replace(ready)
        log.info("proxy of %s listening on %s", self.node, ",".join(map(str, self.ports)))
        await stop.wait()
        for s in servers:
            s.close()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="ciliate-proxy", description=__doc__.split("\n\n")[0])
    ap.add_argument("--node", required=True)
    ap.add_argument("--rules", required=True, type=Path)
    ap.add_argument("--pin-dir", required=True, type=Path)
    ap.add_argument("--flows", type=Path, default=None)
    ap.add_argument("--port", type=int, action="append", required=True)
    ap.add_argument("--ready", type=Path, default=None)
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    proxy = Proxy(a.node, a.rules, a.pin_dir, a.flows, a.port)
    asyncio.run(proxy.serve(a.ready))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
