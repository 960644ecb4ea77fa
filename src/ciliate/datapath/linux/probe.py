"""Probes: real connections between pod network namespaces, for ``reach --datapath kernel``.

Role: given the endpoints of a running kernel cluster (pod key, IP, netns name), open
a socket *inside the source pod's netns* (``netns.run_in_netns``: a short-lived thread
setns()es, creates the socket and exits; the socket stays bound to that namespace) and
do a bounded request/response to the destination pod IP:

- TCP: connect, send a request (an HTTP request line, which the built-in HTTP servers
  answer and the echo listeners echo back), read at least one byte;
- UDP: send a datagram (re-sent within the timeout, since a datagram may be lost while
  the neighbour entry is being resolved), wait for the echo;
- SCTP: like TCP, where the kernel has SCTP sockets (``sctp_unavailable`` checks by
  opening one in a pod namespace).

A probe is "allowed" when the response arrives. A refused TCP connection (RST from the
destination) also counts as delivered: the datapath let the SYN through and Cilium
drops silently, it never resets. Timeouts and unreachable errors are "denied".

``Listeners`` makes sure the destination serves the probed port: where no workload
listens on it, a small echo listener is opened inside the destination's netns for the
duration of the probes (the model's verdict means "a connection would be established if
the pod serves the port", so the kernel check must not fail for a missing server).

Inputs: netns names and IPs; outputs: booleans (and notes). Must not import cli, agent,
control or observe; the only kernel access is sockets in namespaces.
"""

from __future__ import annotations

import contextlib
import errno
import select
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ciliate.datapath.linux.netns import run_in_netns

PROTO_SOCK = {
    "TCP": (socket.SOCK_STREAM, socket.IPPROTO_TCP),
    "UDP": (socket.SOCK_DGRAM, socket.IPPROTO_UDP),
    "SCTP": (socket.SOCK_STREAM, getattr(socket, "IPPROTO_SCTP", 132)),
}
DEFAULT_TIMEOUT = 1.5
MAX_PARALLEL = 64
PAYLOAD = b"ciliate-probe\n"


@dataclass(frozen=True, slots=True)
class Target:
    """One pod as the prober sees it."""

    key: str  # namespace/name
    ip: str
    netns: str


@dataclass(frozen=True, slots=True)
class Outcome:
    allowed: bool
    detail: str  # "response", "refused", "timeout", an errno name, or an HTTP status


def open_in(netns: str, protocol: str) -> socket.socket:
    """A socket of ``protocol`` created inside ``netns``."""
    stype, proto = PROTO_SOCK[protocol]
    return run_in_netns(netns, lambda: socket.socket(socket.AF_INET, stype, proto))


def sctp_unavailable(netns: str) -> str | None:
    """Why SCTP cannot be probed in ``netns`` (None when an SCTP socket opens there)."""
    try:
        open_in(netns, "SCTP").close()
    except OSError as e:
        return f"the kernel has no SCTP sockets ({e.strerror or e})"
    return None


def http_request(http: tuple[str, str] | None) -> bytes:
    method, path = http or ("GET", "/")
    return f"{method} {path} HTTP/1.0\r\nHost: probe\r\nUser-Agent: ciliate-reach\r\n\r\n".encode()


def _stream(
    sock: socket.socket, ip: str, port: int, request: bytes, timeout: float, l7: bool = True
) -> Outcome:
    deadline = time.monotonic() + timeout
    sock.settimeout(timeout)
    try:
        sock.connect((ip, port))
        sock.sendall(request)
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        data = sock.recv(4096)
    except ConnectionRefusedError:
        return Outcome(True, "refused")
    except TimeoutError:
        return Outcome(False, "timeout")
    except OSError as e:
        return Outcome(False, errno.errorcode.get(e.errno or 0, str(e)))
    if not data:
        return Outcome(True, "closed")  # accepted, then closed: the path works
    if data.startswith(b"HTTP/"):
        status = data.split(b" ", 2)[1].decode(errors="replace") if b" " in data else "?"
        # an HTTP 403 is the proxy's L7 denial of the probe's request; any other answer
        # means it got through. A probe without a request of its own (``l7`` false) asks
        # whether the connection opens -- the model's "the proxy forwards the
        # connection" -- and any answer proves that
        return Outcome(status != "403" or not l7, f"http {status}")
    return Outcome(True, "response")


def _datagram(sock: socket.socket, ip: str, port: int, timeout: float) -> Outcome:
    deadline = time.monotonic() + timeout
    resend = timeout / 3
    try:
        sock.connect((ip, port))
        while True:
            sock.send(PAYLOAD)
            left = deadline - time.monotonic()
            if left <= 0:
                return Outcome(False, "timeout")
            ready, _, _ = select.select([sock], [], [], min(resend, left))
            if ready:
                sock.recv(4096)
                return Outcome(True, "response")
    except ConnectionRefusedError:
        # ICMP port unreachable came back from the destination: it was delivered
        return Outcome(True, "refused")
    except OSError as e:
        return Outcome(False, errno.errorcode.get(e.errno or 0, str(e)))


def probe(
    src: Target,
    dst: Target,
    port: int,
    protocol: str,
    timeout: float = DEFAULT_TIMEOUT,
    http: tuple[str, str] | None = None,
) -> Outcome:
    """One connection from ``src``'s netns to ``dst``'s IP."""
    sock = open_in(src.netns, protocol)
    with sock:
        if protocol == "UDP":
            return _datagram(sock, dst.ip, port, timeout)
        return _stream(sock, dst.ip, port, http_request(http), timeout, l7=http is not None)


def probe_pairs(
    pairs: Sequence[tuple[Target, Target]],
    port: int,
    protocol: str,
    timeout: float = DEFAULT_TIMEOUT,
    http: tuple[str, str] | None = None,
    parallel: int = MAX_PARALLEL,
) -> list[Outcome]:
    """Every pair probed, at most ``parallel`` at a time; results in input order."""
    if not pairs:
        return []
    with ThreadPoolExecutor(max_workers=min(parallel, len(pairs))) as pool:
        futs = [pool.submit(probe, a, b, port, protocol, timeout, http) for a, b in pairs]
        return [f.result() for f in futs]


# --- listeners ----------------------------------------------------------------------------


@dataclass
class Listeners:
    """Echo listeners opened where a destination does not serve the probed port.

    ``ensure(target, port, protocol)`` binds 0.0.0.0:port in the target's netns; when
    the bind fails with EADDRINUSE a workload already serves it and nothing is opened.
    ``close()`` stops them all (use as a context manager)."""

    opened: list[tuple[str, int, str]] = field(default_factory=list)
    _socks: list[socket.socket] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def ensure(self, target: Target, port: int, protocol: str) -> bool:
        """True when a listener was opened (the port was free)."""
        sock = open_in(target.netns, protocol)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError as e:
            sock.close()
            if e.errno == errno.EADDRINUSE:
                return False
            raise
        if protocol != "UDP":
            sock.listen(64)
        sock.settimeout(0.2)
        self._socks.append(sock)
        self.opened.append((target.key, port, protocol))
        serve = self._serve_dgram if protocol == "UDP" else self._serve_stream
        th = threading.Thread(target=serve, args=(sock,), name="ciliate-probe-listener")
        th.daemon = True
        th.start()
        self._threads.append(th)
        return True

    def _serve_stream(self, sock: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(1.0)
                with contextlib.suppress(OSError):
                    data = conn.recv(4096)
                    if data:
                        conn.sendall(data)

    def _serve_dgram(self, sock: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                data, peer = sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            with contextlib.suppress(OSError):
                sock.sendto(data, peer)

    def close(self) -> None:
        self._stop.set()
        for th in self._threads:
            th.join(timeout=2)
        for s in self._socks:
            s.close()
        self._socks.clear()
        self._threads.clear()

    def __enter__(self) -> Listeners:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def wait_served(
    targets: Iterable[Target],
    port: int,
    protocol: str,
    declared: Callable[[Target], bool],
    listeners: Listeners,
    settle: float = 5.0,
) -> None:
    """Make every target serve ``port``: a port the pod declares is given up to
    ``settle`` seconds for its workload to bind (a free port is closed again at once);
    after that, or for undeclared ports, a probe listener takes it."""
    deadline = time.monotonic() + settle
    for t in targets:
        if not declared(t):
            listeners.ensure(t, port, protocol)
            continue
        while True:
            if time.monotonic() >= deadline:
                listeners.ensure(t, port, protocol)
                break
            if not _port_free(t, port, protocol):
                break
            time.sleep(0.1)


def _port_free(target: Target, port: int, protocol: str) -> bool:
    sock = open_in(target.netns, protocol)
    with sock:
        try:
            sock.bind(("0.0.0.0", port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                return False
            raise
    return True
