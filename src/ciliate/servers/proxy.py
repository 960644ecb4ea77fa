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
2. the rules (``proxy_policy.decide_connection``): the agent's rules file
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

The decisions (1.-2.) live in ``servers.proxy_policy``, the framing in
``servers.proxy_http``; this module does the I/O. Imports the standard library, those
two, ``datapath.flowlog`` and ``observe.flow``; must not import cli or agent.
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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ciliate.datapath.flowlog import FlowLogWriter
from ciliate.datapath.linux.proxy_rules import EndpointRules
from ciliate.observe import flow as hf
from ciliate.servers.proxy_http import (
    ACCESS_DENIED,
    END,
    Head,
    MessageReader,
    ProtocolError,
    simple_response,
)
from ciliate.servers.proxy_policy import (
    MARK_PROXY_EGRESS,
    MARK_PROXY_UPSTREAM,
    Decision,
    Identities,
    Rules,
    decide,
    decide_connection,
)

__all__ = [  # the policy side is re-exported: ``servers.proxy`` is the proxy's one name
    "MARK_PROXY_EGRESS",
    "MARK_PROXY_UPSTREAM",
    "ClientConnection",
    "Decision",
    "EndpointRules",
    "Head",
    "Identities",
    "MessageReader",
    "Proxy",
    "Rules",
    "Upstream",
    "decide",
    "decide_connection",
    "main",
]

log = logging.getLogger("ciliate.proxy")

IP_TRANSPARENT = 19
PENDING_MAX = 1 << 20  # bytes held for an upstream still connecting before reading pauses


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

    # flow control: the upstream's send buffer is full, stop reading the client
    def pause_writing(self) -> None:
        if self.client.transport is not None:
            self.client.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.client.transport is not None and not self.client.transport.is_closing():
            self.client.transport.resume_reading()


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

    # flow control: the client's send buffer is full, stop reading the upstream
    def pause_writing(self) -> None:
        up = self.upstream.transport if self.upstream is not None else None
        if up is not None:
            up.pause_reading()

    def resume_writing(self) -> None:
        up = self.upstream.transport if self.upstream is not None else None
        if up is not None and not up.is_closing():
            up.resume_reading()

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
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()
        if self._client_eof and proto.transport.can_write_eof():
            proto.transport.write_eof()

    def _send_up(self, data: bytes) -> None:
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.write(data)
            return
        self._pending_up.append(data)
        if self.transport is not None and sum(map(len, self._pending_up)) > PENDING_MAX:
            self.transport.pause_reading()  # resumed once the upstream has it
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
