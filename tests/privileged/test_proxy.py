"""The L7 proxy in the kernel datapath, for real: the HTTP-aware rule of the
network-policy example on a cluster in namespaces.

Pods (namespace default): fe1 and fe2 (role=frontend) on reach-worker, fe3
(role=frontend) and other (role=other) on reach-worker2; fe2 serves HTTP on TCP/80 and
UDP/81. The CiliumNetworkPolicy lets role=frontend pods reach role=frontend pods on
TCP/80 only with ``GET /public``. Expected (EXPECTED.md of the example): frontends get
the server's 200 for ``GET /public`` (same node and across the overlay), 403 ``Access
denied`` from the proxy for anything else on that port (keep-alive connections
included), a non-frontend is dropped at L4 (133), UDP/81 is dropped as before (133);
``observe`` shows the to-proxy traces and the proxy's L7 records; the proxy survives
``kill -9`` of the agent and is adopted by the next ``up``; ``down`` removes it.

Every cluster lives in its own state directory (unique tag); traffic flows only between
namespaces the test made.
"""

from __future__ import annotations

import io
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from ciliate.cli.cmd_policy import compute_reach
from ciliate.cli.context import Context
from ciliate.cli.main import main
from ciliate.controllers.clusterconfig import get_cluster_config
from ciliate.datapath.flowlog import read_flows
from ciliate.datapath.linux import netns as nl
from ciliate.datapath.linux import reach, runtime
from ciliate.datapath.linux.probe import Target, open_in
from ciliate.datapath.linux.workloads import process_start_time
from ciliate.observe.flow import Flow, FlowType, L7FlowType, TraceObservationPoint, Verdict
from ciliate.servers.proxy_http import END, Head, MessageReader
from ciliate.store.sqlite import SQLiteStore

pytestmark = [pytest.mark.privileged, pytest.mark.slow]

T = TypeVar("T")
W1, W2 = "reach-worker", "reach-worker2"


def _pod(name: str, role: str, node: str, **extra: Any) -> dict[str, Any]:
    containers = [{"name": "web", "image": "nginx", "ports": [{"containerPort": 80}]}]
    containers += extra.get("more", [])
    labels = {"role": role, **extra.get("labels", {})}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "spec": {"nodeName": node, "containers": containers},
    }


UDP81 = {"name": "udp", "image": "busybox", "ports": [{"containerPort": 81, "protocol": "UDP"}]}
PODS = [
    _pod("fe1", "frontend", W1),
    _pod("fe2", "frontend", W1, more=[UDP81], labels={"app": "web"}),
    _pod("fe3", "frontend", W2),
    _pod("other", "other", W2),
    # egress L7: c1 may send GET /public and /egress-only to role=api pods, which admit
    # only clients, and from them only GET /public and /ingress-only
    _pod("c1", "client", W1),
    _pod("api1", "api", W1),
    _pod("api2", "api", W2),
]
# a ClusterIP service in front of fe2 only
SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "web", "namespace": "default"},
    "spec": {"selector": {"app": "web"}, "ports": [{"port": 8000, "targetPort": 80}]},
}
# the network-policy example's http-aware-rule.yaml, as written there
POLICY = {
    "apiVersion": "cilium.io/v2",
    "kind": "CiliumNetworkPolicy",
    "metadata": {"name": "http-aware-rule"},
    "spec": {
        "endpointSelector": {"matchLabels": {"role": "frontend"}},
        "ingress": [
            {
                "fromEndpoints": [{"matchLabels": {"role": "frontend"}}],
                "toPorts": [
                    {
                        "ports": [{"port": "80", "protocol": "TCP"}],
                        "rules": {"http": [{"method": "GET", "path": "/public"}]},
                    }
                ],
            }
        ],
    },
}


EGRESS_L7 = {
    "apiVersion": "cilium.io/v2",
    "kind": "CiliumNetworkPolicy",
    "metadata": {"name": "client-egress-l7", "namespace": "default"},
    "spec": {
        "endpointSelector": {"matchLabels": {"role": "client"}},
        "egress": [
            {
                "toEndpoints": [{"matchLabels": {"role": "api"}}],
                "toPorts": [
                    {
                        "ports": [{"port": "80", "protocol": "TCP"}],
                        "rules": {"http": [{"method": "GET", "path": "/public|/egress-only"}]},
                    }
                ],
            }
        ],
    },
}
API_FROM_CLIENTS = {
    "apiVersion": "cilium.io/v2",
    "kind": "CiliumNetworkPolicy",
    "metadata": {"name": "api-from-clients", "namespace": "default"},
    "spec": {
        "endpointSelector": {"matchLabels": {"role": "api"}},
        "ingress": [
            {
                "fromEndpoints": [{"matchLabels": {"role": "client"}}],
                "toPorts": [
                    {
                        "ports": [{"port": "80", "protocol": "TCP"}],
                        "rules": {"http": [{"method": "GET", "path": "/public|/ingress-only"}]},
                    }
                ],
            }
        ],
    },
}


def wait_for(fn: Callable[[], T | None], timeout: float = 10.0, what: str = "") -> T:
    deadline = time.monotonic() + timeout
    while True:
        got = fn()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or fn}")
        time.sleep(0.1)


def cli(state: Path, *argv: str, stdin: str = "") -> str:
    out, err = io.StringIO(), io.StringIO()
    ctx = Context(state_dir=state, stdout=out, stderr=err, stdin=io.StringIO(stdin))
    try:
        rc = main(["--state", str(state), *argv], ctx)
    finally:
        ctx.close()
    assert rc == 0, f"ciliate {' '.join(argv)} -> {rc}\n{out.getvalue()}\n{err.getvalue()}"
    return out.getvalue()


class Cluster:
    def __init__(self, state: Path) -> None:
        self.state = state
        self.pods: dict[str, Target] = {}

    def up(self) -> None:
        runtime.up(Context(state_dir=self.state, stdout=io.StringIO(), stderr=io.StringIO()))
        reach.wait_converged(self.state)
        self.pods = {t.key.split("/", 1)[1]: t for t in reach.targets(self.state)}

    def status(self) -> dict[str, Any]:
        return runtime.read_status(runtime.KernelPaths(self.state))

    def requests(
        self,
        src: str,
        dst: str,
        *paths: str,
        method: str = "GET",
        timeout: float = 3.0,
        to: tuple[str, int] | None = None,
    ) -> list[tuple[int, bytes]]:
        """Requests on ONE connection from ``src``'s netns (keep-alive): (status, body).
        ``to``: another address than ``dst``'s pod IP port 80 (a service frontend)."""
        sock = open_in(self.pods[src].netns, "TCP")
        out: list[tuple[int, bytes]] = []
        with sock:
            sock.settimeout(timeout)
            sock.connect(to or (self.pods[dst].ip, 80))
            reader = MessageReader(request=False)
            for path in paths:
                sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: {dst}\r\n\r\n".encode())
                reader.expect(method)
                status, body, done = 0, b"", False
                while not done:
                    data = sock.recv(65536)
                    events = reader.feed(data) if data else reader.close()
                    for ev in events:
                        if isinstance(ev, Head):
                            status = ev.status
                        elif ev is END:
                            done = True
                        elif isinstance(ev, bytes):
                            body += ev
                    if not data:
                        break
                out.append((status, body))
        return out

    def get(self, src: str, dst: str, path: str) -> tuple[int, bytes]:
        return self.requests(src, dst, path)[0]

    def connects(self, src: str, dst: str, port: int = 80, timeout: float = 1.0) -> bool:
        sock = open_in(self.pods[src].netns, "TCP")
        with sock:
            sock.settimeout(timeout)
            try:
                sock.connect((self.pods[dst].ip, port))
            except OSError:
                return False
        return True

    def udp_answers(self, src: str, dst: str, port: int, timeout: float = 1.0) -> bool:
        sock = open_in(self.pods[src].netns, "UDP")
        with sock:
            sock.settimeout(timeout)
            sock.connect((self.pods[dst].ip, port))
            sock.send(b"ping\n")
            try:
                return bool(sock.recv(100))
            except OSError:
                return False

    def flows(self) -> list[Flow]:
        return read_flows(self.state)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    reason = runtime.unavailable_reason()
    if reason:
        pytest.skip(f"kernel datapath unavailable: {reason}")
    state = tmp_path_factory.mktemp("proxy")
    reach.create_cluster(state)
    c = Cluster(state)
    names = runtime.KernelPaths(state).names
    try:
        cli(
            state,
            "apply",
            "-f",
            "-",
            stdin=yaml.safe_dump_all([*PODS, SERVICE, POLICY, EGRESS_L7, API_FROM_CLIENTS]),
        )
        c.up()
        # the servers bind their ports shortly after up: wait for fe2's nginx
        wait_for(lambda: c.get("fe1", "fe2", "/public")[0] == 200, what="fe2 serving /public")
        yield c
    finally:
        runtime.down(Context(state_dir=state, stdout=io.StringIO(), stderr=io.StringIO()))
        assert not nl.list_netns(names.prefix), nl.list_netns(names.prefix)
        assert not names.pin_root.exists()


def test_one_proxy_on_the_node_of_the_l7_endpoints(cluster: Cluster) -> None:
    proxies = {p["node"]: p for p in cluster.status()["proxies"]}
    # fe1/fe2 on W1, fe3 on W2 are selected by the rule; the control plane has none
    assert set(proxies) == {W1, W2}
    assert all(p["running"] for p in proxies.values())
    # W1: fe1, fe2, api1 (ingress L7), c1 (egress L7); W2: fe3, api2
    assert proxies[W1]["endpoints"] == 4 and proxies[W2]["endpoints"] == 2


def test_allowed_request_gets_the_servers_answer(cluster: Cluster) -> None:
    for src in ("fe1", "fe3"):  # same node, across the overlay
        status, body = cluster.get(src, "fe2", "/public")
        assert status == 200, (src, body)
        assert b"Welcome to nginx" in body, (src, body)
    assert cluster.get("fe2", "fe3", "/public")[0] == 200  # the other way round


def test_other_requests_are_answered_403_by_the_proxy(cluster: Cluster) -> None:
    for src in ("fe1", "fe3"):
        assert cluster.get(src, "fe2", "/private") == (403, b"Access denied\r\n")
    assert cluster.requests("fe1", "fe2", "/public", method="POST") == [(403, b"Access denied\r\n")]
    # one keep-alive connection: each request decided on its own, answers in order
    got = cluster.requests("fe1", "fe2", "/private", "/public", "/publicX", "/public")
    assert [s for s, _ in got] == [403, 200, 403, 200]


def test_through_a_service_the_client_sees_the_frontend(cluster: Cluster) -> None:
    """The connection is load-balanced to fe2 before its ingress policy redirects it;
    the proxy's answers are reverse-NATed to the service address (bpf_host.c)."""
    vip = cli(cluster.state, "get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}").strip()
    for src in ("fe1", "fe3"):
        got = cluster.requests(src, "fe2", "/public", "/private", to=(vip, 8000))
        assert [s for s, _ in got] == [200, 403], (src, got)


def test_egress_l7_at_the_source_carries_its_identity(cluster: Cluster) -> None:
    """c1's egress rule sends its connections to its node's proxy; the upstream carries
    c1's identity (mark, then the VNI), so api2's ingress policy -- clients only --
    admits it across the overlay, as it admits c1 itself."""
    for dst in ("api1", "api2"):
        got = cluster.requests("c1", dst, "/public", "/private", "/public")
        assert [s for s, _ in got] == [200, 403, 200], (dst, got)
        assert got[1][1] == b"Access denied\r\n"
    assert not cluster.connects("other", "api2")  # api admits clients only


def test_egress_and_ingress_l7_both_apply(cluster: Cluster) -> None:
    """A request must pass c1's egress rules and api's ingress rules: on one node one
    proxy applies both, across nodes each node's proxy applies its side."""
    for dst in ("api1", "api2"):
        got = cluster.requests("c1", dst, "/public", "/egress-only", "/ingress-only")
        assert [s for s, _ in got] == [200, 403, 403], (dst, got)


def test_a_non_frontend_is_dropped_at_l4(cluster: Cluster) -> None:
    assert not cluster.connects("other", "fe2")
    drops = wait_for(
        lambda: [
            f
            for f in cluster.flows()
            if f.verdict is Verdict.DROPPED
            and f.drop_reason == 133
            and f.source is not None
            and f.source.pod_name == "other"
            and f.destination is not None
            and f.destination.pod_name == "fe2"
        ],
        what="the 133 drop of other -> fe2",
    )
    assert drops[0].l4 is not None


def test_udp_81_is_dropped_as_without_the_proxy(cluster: Cluster) -> None:
    assert not cluster.udp_answers("fe1", "fe2", 81)
    wait_for(
        lambda: [
            f
            for f in cluster.flows()
            if f.drop_reason == 133
            and f.source is not None
            and f.source.pod_name == "fe1"
            and f.l4 is not None
            and getattr(f.l4, "destination_port", 0) == 81
        ],
        what="the 133 drop of fe1 -> fe2 UDP/81",
    )


def test_observe_shows_the_redirect_and_the_l7_records(cluster: Cluster) -> None:
    cluster.get("fe1", "fe2", "/public")
    cluster.get("fe1", "fe2", "/private")
    cluster.get("c1", "api1", "/public")

    def seen() -> tuple[list[Flow], list[Flow]] | None:
        flows = cluster.flows()
        to_proxy = [
            f
            for f in flows
            if f.trace_observation_point is TraceObservationPoint.TO_PROXY
            and f.destination is not None
            and f.destination.pod_name == "fe2"
        ]
        l7 = [f for f in flows if f.type is FlowType.L7 and f.l7 is not None]
        return (to_proxy, l7) if to_proxy and len(l7) >= 3 else None

    to_proxy, l7 = wait_for(seen, what="to-proxy traces and L7 records")
    assert to_proxy[0].verdict is Verdict.FORWARDED
    requests = [f for f in l7 if f.l7 is not None and f.l7.type is L7FlowType.REQUEST]
    by_url = {(f.l7.http.url.rsplit("/", 1)[-1], f.verdict) for f in requests if f.l7 and f.l7.http}
    assert ("public", Verdict.FORWARDED) in by_url
    assert ("private", Verdict.DROPPED) in by_url
    fe1 = cluster.pods["fe1"].ip
    denied = next(
        f
        for f in requests
        if f.verdict is Verdict.DROPPED and f.ip is not None and f.ip.source == fe1
    )
    assert [p.name for p in denied.ingress_denied_by] == ["http-aware-rule"]
    # both ends named: the server from the rules, the client as a pod of the node
    assert denied.destination is not None and denied.destination.pod_name == "fe2"
    assert denied.source is not None and denied.source.pod_name == "fe1"
    codes = {f.l7.http.code for f in l7 if f.l7 and f.l7.http and f.l7.type is L7FlowType.RESPONSE}
    assert {200, 403} <= codes
    # and through the CLI: `ciliate observe --type l7`-style output names the requests
    egress = wait_for(
        lambda: [
            f
            for f in cluster.flows()
            if f.type is FlowType.L7
            and f.egress_allowed_by
            and f.source is not None
            and f.source.pod_name == "c1"
        ],
        what="an egress L7 record of c1",
    )
    assert "client-egress-l7" in [p.name for p in egress[0].egress_allowed_by]
    text = cli(cluster.state, "observe", "--last", "200")
    assert "to-proxy" in text and "http-request" in text
    # hubble's filters apply to them: the proxy's denials, the redirects
    denials = cli(cluster.state, "observe", "-t", "l7", "--http-status", "403", "--last", "50")
    lines = [ln for ln in denials.splitlines() if ln.strip()]
    assert lines and all("403" in ln for ln in lines), denials
    redirects = cli(cluster.state, "observe", "-t", "trace:to-proxy", "--last", "50")
    assert redirects.strip() and all("to-proxy" in ln for ln in redirects.splitlines() if ln)


@pytest.mark.parametrize(
    ("port", "protocol", "http"),
    [
        (80, "TCP", None),
        (80, "TCP", ("GET", "/public")),
        (80, "TCP", ("GET", "/private")),
        (80, "TCP", ("GET", "/egress-only")),
        (80, "TCP", ("GET", "/ingress-only")),
        (81, "TCP", None),
        (80, "UDP", None),
    ],
)
def test_model_and_kernel_agree_on_every_pair(
    cluster: Cluster, port: int, protocol: str, http: tuple[str, str] | None
) -> None:
    """Ingress L7, egress L7 and L4 policies together: the model's matrix (the compiled
    maps walked by datapath.sim and its proxy model) equals the kernel's, pair by pair."""
    store = SQLiteStore(cluster.state / "store.db")
    try:
        docs, config = store.list(), get_cluster_config(store)
    finally:
        store.close()
    model = compute_reach(docs, config, port, protocol, http)
    kernel = reach.probe_running(
        cluster.state, port, protocol, http, confirm=lambda a, b: bool(model.allowed[a][b])
    )
    wrong = [
        f"{a} -> {b}: model {bool(model.allowed[a][b])}, kernel {kernel.allowed[a][b]} "
        f"({kernel.details.get(a, {}).get(b, '?')})"
        for a in model.pods
        for b in model.pods
        if bool(model.allowed[a][b]) != kernel.allowed[a][b]
    ]
    assert not wrong, "\n".join([model.table(), kernel.table(), *wrong])
    # the matrix is not trivial: some pairs pass, some do not
    cells = [bool(model.allowed[a][b]) for a in model.pods for b in model.pods if a != b]
    assert any(cells) and not all(cells)


DENY_FE1 = {
    "apiVersion": "cilium.io/v2",
    "kind": "CiliumNetworkPolicy",
    "metadata": {"name": "deny-fe1", "namespace": "default"},
    "spec": {
        "endpointSelector": {"matchLabels": {"app": "web"}},  # fe2
        "ingressDeny": [{"fromEndpoints": [{"matchLabels": {"role": "frontend"}}]}],
    },
}


def test_a_proxied_connection_survives_a_policy_change(cluster: Cluster) -> None:
    """Established flows are checked again when the policy changes (the revision in
    conntrack): a connection the proxy serves is re-checked, still allowed, and stays
    with the proxy."""
    extra = {
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumNetworkPolicy",
        "metadata": {"name": "unrelated", "namespace": "default"},
        "spec": {
            # c1 lives on fe1/fe2's node: that node's policy revision moves
            "endpointSelector": {"matchLabels": {"role": "client"}},
            "ingress": [{"fromEndpoints": [{"matchLabels": {"role": "frontend"}}]}],
        },
    }
    sock = open_in(cluster.pods["fe1"].netns, "TCP")
    reader = MessageReader(request=False)

    def ask(path: str) -> int:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: fe2\r\n\r\n".encode())
        reader.expect("GET")
        status = 0
        while True:
            events = reader.feed(sock.recv(65536))
            for ev in events:
                if isinstance(ev, Head):
                    status = ev.status
            if END in events:
                return status

    with sock:
        sock.settimeout(3)
        sock.connect((cluster.pods["fe2"].ip, 80))
        assert ask("/public") == 200
        cli(cluster.state, "apply", "-f", "-", stdin=yaml.safe_dump(extra))
        try:
            reach.wait_converged(cluster.state)
            assert [ask("/private"), ask("/public"), ask("/public")] == [403, 200, 200]
            # and a deny added now reaches the proxied connection too
            cli(cluster.state, "apply", "-f", "-", stdin=yaml.safe_dump(DENY_FE1))
            reach.wait_converged(cluster.state)
            sock.settimeout(1.5)
            with pytest.raises(OSError):
                ask("/public")
        finally:
            cli(cluster.state, "delete", "cnp", "unrelated", "deny-fe1", "--ignore-not-found")
    reach.wait_converged(cluster.state)
    assert cluster.get("fe1", "fe2", "/public")[0] == 200


def test_a_proxy_that_dies_is_restarted(cluster: Cluster) -> None:
    record = runtime.KernelPaths(cluster.state).dir / "proxy" / f"{W1}.proc.json"
    pid = json.loads(record.read_text())["pid"]
    os.kill(pid, signal.SIGKILL)

    def serving_again() -> bool:
        try:
            now = json.loads(record.read_text())["pid"]
            return now != pid and cluster.get("fe1", "fe2", "/private")[0] == 403
        except (OSError, ValueError):
            return False

    wait_for(serving_again, timeout=15, what="the proxy restarted and answering")
    assert cluster.get("fe1", "fe2", "/public")[0] == 200


def test_the_proxy_outlives_the_agent_and_is_adopted(cluster: Cluster) -> None:
    """Last in the module: kills the agent."""
    proxy_dir = runtime.KernelPaths(cluster.state).dir / "proxy"
    # from the records (status.json is rewritten by the agent's rounds, not by restarts)
    before = {
        f.name.removesuffix(".proc.json"): json.loads(f.read_text())["pid"]
        for f in proxy_dir.glob("*.proc.json")
    }
    assert set(before) == {W1, W2}
    agent = int(runtime.KernelPaths(cluster.state).pidfile.read_text())
    os.kill(agent, signal.SIGKILL)
    wait_for(lambda: process_start_time(agent) is None, what="the agent gone")
    # no agent: the proxy keeps deciding
    assert cluster.get("fe1", "fe2", "/public")[0] == 200
    assert cluster.get("fe3", "fe2", "/private") == (403, b"Access denied\r\n")
    cluster.up()  # a plain up adopts the running datapath
    after = {p["node"]: p for p in cluster.status()["proxies"]}
    assert {n: p["pid"] for n, p in after.items()} == before
    assert all(p["adopted"] and p["running"] for p in after.values())
    assert cluster.get("fe1", "fe2", "/private") == (403, b"Access denied\r\n")
    assert cluster.get("fe3", "fe2", "/public")[0] == 200
    assert [s for s, _ in cluster.requests("c1", "api2", "/public", "/x")] == [200, 403]
