"""The L7 proxy's connection logic (servers.proxy.ClientConnection) without sockets:
fake transports, a rules file, a fixed client identity. Requests are decided one by
one, denied ones are answered 403 by the proxy, and the client gets every answer in
request order (keep-alive, pipelining)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from ciliate.datapath.linux.proxy_rules import write_rules
from ciliate.desired import L7Rule, PolicyEntry, PolicyKey, Provenance
from ciliate.servers import proxy as P

SERVER, CLIENT = ("10.10.1.4", 80), ("10.10.1.3", 40000)
PROV = (Provenance("CiliumNetworkPolicy", "default", "http-aware-rule"),)
FRONTEND = 30692


class FakeTransport(asyncio.Transport):
    def __init__(self, sockname: tuple[str, int], peername: tuple[str, int]) -> None:
        super().__init__()
        self.extra = {"sockname": sockname, "peername": peername}
        self.out = bytearray()
        self.closed = False
        self.eof = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.extra.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closed
        self.out += data

    def close(self) -> None:
        self.closed = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True


class Identity:
    def of(self, client: tuple[str, int], orig: tuple[str, int]) -> int:
        return FRONTEND

    def remote(self, ip: str) -> int:
        return FRONTEND


@pytest.fixture
def proxy(tmp_path: Path) -> P.Proxy:
    entries = [
        [FRONTEND, 0, 6, 80, 16, 0, 10080, 0, [{"kind": "http", "method": "GET", "path": "/public"}],
         [["CiliumNetworkPolicy", "default", "http-aware-rule"]]],
    ]  # fmt: skip
    doc = {
        "version": 1,
        "node": "w",
        "endpoints": {
            SERVER[0]: {"id": 7, "identity": FRONTEND, "pod": "default/fe2", "entries": entries}
        },
    }
    write_rules(tmp_path / "w.rules.json", doc)
    p = P.Proxy("w", tmp_path / "w.rules.json", tmp_path, None, [10080])
    p.identities = Identity()  # type: ignore[assignment]
    return p


def connect(proxy: P.Proxy) -> tuple[P.ClientConnection, FakeTransport, FakeTransport]:
    conn = P.ClientConnection(proxy)
    client = FakeTransport(SERVER, CLIENT)
    conn.connection_made(client)
    up = P.Upstream(conn)
    upstream = FakeTransport(("10.10.1.1", 50000), SERVER)
    up.connection_made(upstream)
    conn.upstream = up  # as if _open_upstream had connected
    return conn, client, upstream


def req(path: str, method: str = "GET", extra: str = "") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: fe2\r\n{extra}\r\n".encode()


def ok(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def test_the_decision_is_the_entry_the_lookup_chose(proxy: P.Proxy) -> None:
    conn, _, _ = connect(proxy)
    assert conn.decision is not None and conn.decision.entry is not None
    assert conn.decision.http_rules == (L7Rule("http", method="GET", path="/public"),)
    assert conn.decision.entry == PolicyEntry(
        proxy_port=10080, l7_rules=conn.decision.http_rules, provenance=PROV
    )
    assert [p.name for p in conn.decision.policies] == ["http-aware-rule"]
    assert PolicyKey(FRONTEND, False, 6, 80, 16) in conn.decision.endpoint.policy  # type: ignore[union-attr]


def test_pipelined_requests_answered_in_order(proxy: P.Proxy) -> None:
    conn, client, upstream = connect(proxy)
    conn.data_received(req("/public") + req("/private") + req("/public"))
    # only the allowed requests went upstream, verbatim
    assert bytes(upstream.out) == req("/public") * 2
    # the 403 waits for the first upstream answer
    assert bytes(client.out) == b""
    conn.upstream_data(ok(b"one"))
    out = bytes(client.out)
    assert out.startswith(ok(b"one")) and b" 403 Forbidden" in out
    assert out.endswith(b"Access denied\r\n")
    conn.upstream_data(ok(b"two"))
    assert bytes(client.out).endswith(ok(b"two"))
    assert not client.closed  # keep-alive


def test_a_denied_request_body_is_not_relayed(proxy: P.Proxy) -> None:
    conn, client, upstream = connect(proxy)
    conn.data_received(req("/public", "POST", "Content-Length: 5\r\n") + b"hello")
    assert upstream.out == b""
    assert b"403" in client.out
    conn.data_received(req("/public", extra="Connection: close\r\n"))
    conn.upstream_data(ok(b"x"))
    assert client.closed  # the client asked to close after this answer


def test_not_http_is_answered_400_and_closed(proxy: P.Proxy) -> None:
    conn, client, upstream = connect(proxy)
    conn.data_received(b"ciliate-probe\r\n\r\n")
    assert client.out.startswith(b"HTTP/1.1 400 Bad Request") and client.closed
    assert upstream.closed


def test_a_connection_the_policy_no_longer_allows_is_closed(proxy: P.Proxy) -> None:
    class Stranger(Identity):
        def of(self, client: tuple[str, int], orig: tuple[str, int]) -> int:
            return 99999

    proxy.identities = Stranger()  # type: ignore[assignment]
    conn = P.ClientConnection(proxy)
    client = FakeTransport(SERVER, CLIENT)
    conn.connection_made(client)
    assert client.closed and conn.decision is not None and conn.decision.denied


def test_an_egress_redirect_is_decided_on_the_clients_map() -> None:
    """No ingress redirect at the destination: the client's egress entry applies, and
    the upstream carries the client's identity in its mark (bpf/lib/proxy.h)."""
    client_ep = P.EndpointRules(
        id=9,
        identity=40829,
        pod="default/c1",
        labels=(),
        policy={
            PolicyKey(FRONTEND, True, 6, 80, 16): PolicyEntry(
                proxy_port=10080, l7_rules=(L7Rule("http", path="/public"),), provenance=PROV
            )
        },
    )
    rules = {CLIENT[0]: client_ep}
    d = P.decide_connection(rules, CLIENT, SERVER, 40829, lambda ip: FRONTEND)
    assert d.egress and d.entry is not None and d.endpoint is client_ep
    assert d.upstream_mark == 0x0B00 | 40829 << 16
    # an identity the egress map does not allow: closed
    d = P.decide_connection(rules, CLIENT, SERVER, 40829, lambda ip: 12345)
    assert d.denied and d.entry is None


def test_egress_to_a_local_l7_endpoint_applies_both_sides() -> None:
    """The kernel redirects at the source first; a destination of this node with L7
    ingress rules cannot redirect the upstream again, so the proxy applies both."""
    client_ep = P.EndpointRules(
        9, 40829, "default/c1", (),
        {PolicyKey(FRONTEND, True, 6, 80, 16): PolicyEntry(
            proxy_port=10080, l7_rules=(L7Rule("http", path="/public|/egress-only"),),
            provenance=PROV)},
    )  # fmt: skip
    server_ep = P.EndpointRules(
        7, FRONTEND, "default/fe2", (),
        {PolicyKey(40829, False, 6, 80, 16): PolicyEntry(
            proxy_port=10080, l7_rules=(L7Rule("http", path="/public|/ingress-only"),),
            provenance=PROV)},
    )  # fmt: skip
    rules = {CLIENT[0]: client_ep, SERVER[0]: server_ep}
    d = P.decide_connection(rules, CLIENT, SERVER, 40829, lambda ip: FRONTEND)
    assert d.egress and d.also is not None and not d.also.egress
    assert d.upstream_mark == P.MARK_PROXY_UPSTREAM  # both sides enforced here

    def allowed(path: str) -> bool:
        head = P.MessageReader(request=True).feed(req(path))[0]
        assert isinstance(head, P.Head)
        return d.allows(head)

    assert [allowed(p) for p in ("/public", "/egress-only", "/ingress-only")] == [
        True, False, False,
    ]  # fmt: skip
