"""The node's own traffic to services in the kernel datapath, against the model's trace
(decision 0009): from a node's network namespace, a ClusterIP with a local and with a
remote backend answers, a NodePort on the node's own address and on another node's
answers, external and LoadBalancer IPs answer (one added while running gets its rule), a
service without endpoints drops with 158 (seen in ``observe``), and for every (node,
frontend) pair, TCP and UDP, the model's ``trace`` verdict is the kernel's. The node's
main routing table is the one the model (and the blog) shows; the policy rules survive
an agent restart unchanged.

One cluster for the module (networking101's three nodes, one echo server on
mycluster-worker), in its own state directory, removed with ``ciliate down``.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from restart_lab import (
    CLUSTER,
    PORT,
    WORKER,
    WORKER2,
    cli,
    connects,
    in_netns,
    ok,
    pod,
    wait_for,
)
from restart_lab import skip_without_datapath as _skip

from ciliate.cli.context import Context
from ciliate.cli.state import load_desired
from ciliate.datapath.sim.views import render_routes

pytestmark = [pytest.mark.privileged, pytest.mark.slow]

CONTROL = "mycluster-control-plane"
IPS = {CONTROL: "172.18.0.3", WORKER: "172.18.0.2", WORKER2: "172.18.0.4"}
SVC_IP, EMPTY_IP, NODE_PORT = "10.96.88.10", "10.96.88.20", 30707
EXTERNAL_IP, LATE_IP = "192.0.2.50", "192.0.2.51"  # TEST-NET-1: never routed anywhere
UDP_IP, UDP_PORT, UDP_NODE_PORT = "10.96.88.30", 5353, 30708
LB_IP = "198.51.100.7"  # TEST-NET-2, as a LoadBalancer's status gives it
LB_SERVICE = f"""apiVersion: v1
kind: Service
metadata:
  name: lb
  namespace: rs
spec:
  type: LoadBalancer
  selector:
    app: server
  ports:
  - port: {PORT}
    targetPort: {PORT}
status:
  loadBalancer:
    ingress:
    - ip: {LB_IP}
"""
UDP_POD = f"""apiVersion: v1
kind: Pod
metadata:
  name: userver
  namespace: rs
  labels:
    app: userver
spec:
  nodeName: {WORKER}
  containers:
    - name: main
      image: example/udp-echo
      ports:
      - containerPort: {UDP_PORT}
        protocol: UDP
"""
UDP_PROBE = (
    "import socket,sys\n"
    "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.settimeout(1.0)\n"
    "s.connect((sys.argv[1],int(sys.argv[2])))\n"
    "for _ in range(3):\n"
    "    s.send(b'probe')\n"
    "    try:\n"
    "        assert s.recv(5)==b'probe'; sys.exit(0)\n"
    "    except OSError:\n"
    "        pass\n"
    "sys.exit(1)\n"
)


def _service(
    name: str,
    ip: str,
    app: str,
    node_port: int = 0,
    external: str = "",
    port: int = PORT,
    proto: str = "TCP",
) -> str:
    kind = "  type: NodePort\n" if node_port else ""
    np = f"    nodePort: {node_port}\n" if node_port else ""
    addr = f"  clusterIP: {ip}\n" if ip else ""
    addr += f"  externalIPs: [{external}]\n" if external else ""
    return f"""apiVersion: v1
kind: Service
metadata:
  name: {name}
  namespace: rs
spec:
{kind}{addr}  selector:
    app: {app}
  ports:
  - port: {port}
    targetPort: {port}
    protocol: {proto}
{np}"""


MANIFEST = "\n---\n".join(
    [
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: rs\n",
        pod("server", WORKER, "server", True),
        _service("svc", SVC_IP, "server"),
        _service("np", "", "server", NODE_PORT),
        _service("empty", EMPTY_IP, "nothing"),
        _service("ext", "", "server", external=EXTERNAL_IP),
        UDP_POD,
        LB_SERVICE,
        _service("udp", UDP_IP, "userver", UDP_NODE_PORT, port=UDP_PORT, proto="UDP"),
    ]
)

# (node, frontend): what the node's own stack connects to
PAIRS = [
    (WORKER, SVC_IP, PORT),  # ClusterIP, backend on this node
    (WORKER2, SVC_IP, PORT),  # ClusterIP, backend behind the tunnel
    (CONTROL, SVC_IP, PORT),
    (WORKER, IPS[WORKER], NODE_PORT),  # NodePort on the node's own address, local backend
    (WORKER2, IPS[WORKER2], NODE_PORT),  # ... remote backend
    (WORKER2, IPS[WORKER], NODE_PORT),  # NodePort of another node
    (WORKER, IPS[WORKER2], NODE_PORT),  # ... hairpinned back to this node's backend
    (WORKER, EMPTY_IP, PORT),  # no endpoints: 158
    (WORKER2, EMPTY_IP, PORT),
    (WORKER, EXTERNAL_IP, PORT),  # an external IP frontend
    (WORKER2, EXTERNAL_IP, PORT),
    (WORKER, LB_IP, PORT),  # a LoadBalancer ingress IP
    (WORKER2, LB_IP, PORT),
]
UDP_PAIRS = [
    (WORKER, UDP_IP, UDP_PORT),
    (WORKER2, UDP_IP, UDP_PORT),
    (WORKER, IPS[WORKER], UDP_NODE_PORT),
    (WORKER2, IPS[WORKER2], UDP_NODE_PORT),
]


@dataclass
class Cluster:
    state: Path
    tag: str

    def netns(self, node: str) -> str:
        return f"{self.tag}-n-{node}"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    _skip()
    state = tmp_path_factory.mktemp("host-services")
    ok(state, "cluster", "create", "-f", str(CLUSTER))
    (state / "m.yaml").write_text(MANIFEST)
    ok(state, "apply", "-f", str(state / "m.yaml"))
    try:
        ok(state, "up")
        tag = json.loads(ok(state, "status", "-o", "json"))["tag"]
        c = Cluster(state, tag)
        # the echo server needs a moment to listen
        assert wait_for(lambda: connects(c.netns(WORKER), SVC_IP, PORT), 15)
        yield c
    finally:
        cli(state, "down")


def _ip(netns: str, *argv: str) -> str:
    return subprocess.run(
        ["ip", "-n", netns, *argv], check=True, capture_output=True, text=True
    ).stdout


def _lines(text: str) -> list[str]:
    return sorted(re.sub(r"\s+", " ", line).strip() for line in text.splitlines() if line.strip())


def model_verdict(c: Cluster, node: str, ip: str, port: int) -> tuple[str, int]:
    out = json.loads(ok(c.state, "trace", node, f"{ip}:{port}", "-o", "json"))
    return out["verdict"], int(out["drop_reason"] or 0)


def drops_158(c: Cluster, node: str, ip: str) -> bool:
    out = ok(c.state, "observe", "--last", "500", "--verdict", "DROPPED", "-o", "json")
    for line in out.splitlines():
        f = json.loads(line)["flow"]
        if (
            f.get("IP", {}).get("source") == IPS[node]
            and f.get("IP", {}).get("destination") == ip
            and f.get("drop_reason") == 158
        ):
            return True
    return False


def kernel_verdict(c: Cluster, node: str, ip: str, port: int) -> tuple[str, int]:
    if connects(c.netns(node), ip, port, timeout=1.5):
        return "FORWARDED", 0
    if wait_for(lambda: drops_158(c, node, ip), 3):
        return "DROPPED", 158
    return "TIMEOUT", 0


def test_cluster_ip_answers_with_a_local_and_a_remote_backend(cluster: Cluster) -> None:
    assert connects(cluster.netns(WORKER), SVC_IP, PORT)
    assert connects(cluster.netns(WORKER2), SVC_IP, PORT)


def test_node_port_on_the_nodes_own_address_answers(cluster: Cluster) -> None:
    assert connects(cluster.netns(WORKER), IPS[WORKER], NODE_PORT)
    assert connects(cluster.netns(WORKER2), IPS[WORKER2], NODE_PORT)


def test_a_service_without_endpoints_drops_with_158(cluster: Cluster) -> None:
    assert not connects(cluster.netns(WORKER2), EMPTY_IP, PORT, timeout=1.0)
    assert wait_for(lambda: drops_158(cluster, WORKER2, EMPTY_IP), 5)


def test_model_and_kernel_agree_for_every_node_and_frontend(cluster: Cluster) -> None:
    differ = []
    for node, ip, port in PAIRS:
        model, kernel = (
            model_verdict(cluster, node, ip, port),
            kernel_verdict(cluster, node, ip, port),
        )
        if model != kernel:
            differ.append(f"{node} -> {ip}:{port}: model {model}, kernel {kernel}")
    assert not differ, "\n".join(differ)


def udp_answers(c: Cluster, node: str, ip: str, port: int) -> bool:
    done = subprocess.run(
        in_netns(c.netns(node), sys.executable, "-c", UDP_PROBE, ip, str(port)),
        capture_output=True,
        timeout=20,
    )
    return done.returncode == 0


def test_udp_services_agree_too(cluster: Cluster) -> None:
    assert wait_for(lambda: udp_answers(cluster, WORKER, UDP_IP, UDP_PORT), 10)
    differ = []
    for node, ip, port in UDP_PAIRS:
        out = ok(cluster.state, "trace", node, f"{ip}:{port}", "--protocol", "udp", "-o", "json")
        model = json.loads(out)["verdict"]
        kernel = "FORWARDED" if udp_answers(cluster, node, ip, port) else "NO ANSWER"
        if model != kernel:
            differ.append(f"udp {node} -> {ip}:{port}: model {model}, kernel {kernel}")
    assert not differ, "\n".join(differ)


def test_the_main_routing_table_is_the_models(cluster: Cluster) -> None:
    """The rules and their table are all that is added: ``ip route`` on a node is what
    the model (and the networking101 blog) shows."""
    ctx = Context(state_dir=cluster.state, stdout=io.StringIO(), stderr=io.StringIO())
    state = load_desired(ctx)
    for node in (WORKER, WORKER2):
        kernel = _ip(cluster.netns(node), "route")
        model = render_routes(state.nodes[node].routes)  # the model's `ip route`
        assert _lines(kernel) == _lines(model)
        assert SVC_IP not in kernel and "10.96.0.0/12" not in kernel
        rules = _ip(cluster.netns(node), "rule")
        assert "to 10.96.0.0/12 iif lo lookup 2010" in rules
        assert f"to {IPS[node]} iif lo ipproto tcp dport 30000-32767 lookup 2010" in rules
        assert "100:\tfrom all lookup local" in rules
        assert not re.search(r"^0:\s+from all lookup local", rules, re.M)


def test_an_external_ip_added_while_running_gets_its_rule(cluster: Cluster) -> None:
    manifest = cluster.state / "late.yaml"
    manifest.write_text(_service("late", "", "server", external=LATE_IP))
    ok(cluster.state, "apply", "-f", str(manifest))
    rule = f"to {LATE_IP} iif lo lookup 2010"
    assert wait_for(lambda: rule in _ip(cluster.netns(WORKER2), "rule"), 10)
    assert connects(cluster.netns(WORKER2), LATE_IP, PORT)
    ok(cluster.state, "delete", "-f", str(manifest))
    assert wait_for(lambda: rule not in _ip(cluster.netns(WORKER2), "rule"), 10)


def test_an_agent_restart_adopts_the_rules_unchanged(cluster: Cluster) -> None:
    before = {n: _ip(cluster.netns(n), "rule") for n in IPS}
    ok(cluster.state, "up", "--restart")
    after = {n: _ip(cluster.netns(n), "rule") for n in IPS}
    assert before == after
    time.sleep(0.2)
    assert connects(cluster.netns(WORKER2), SVC_IP, PORT)
