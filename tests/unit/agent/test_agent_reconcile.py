"""The agent's reconcile logic without a kernel: a real store and control engine, fake
topology/programs/supervisor that record what they were asked to do."""

from __future__ import annotations

import io
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ciliate.agent import Agent, dns_ip, pod_places
from ciliate.agent import reconciler as agent_mod  # the module whose NodePrograms Agent uses
from ciliate.cli.context import Context
from ciliate.cli.main import main
from ciliate.datapath.linux.proxy import ProxyManager, _Proc
from ciliate.datapath.linux.workloads import process_start_time
from ciliate.desired import EndpointState, MapChange, NodeState

DEPLOY = """apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: default}}
spec:
  replicas: {n}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers: [{{name: web, image: nginx}}]
"""


class FakeTopo:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def ensure_fabric(self) -> None:
        self.calls.append(("fabric", ""))

    def ensure_node(self, node: NodeState) -> None:
        self.calls.append(("node", node.name))

    def ensure_node_routes(self, node: NodeState) -> None:
        self.calls.append(("routes", node.name))

    def ensure_host_services(self, node: NodeState, plan: Any) -> None:
        self.calls.append(("hostsvc", node.name))

    def ensure_pod(self, node: NodeState, ep: EndpointState, podnet: Any) -> None:
        self.calls.append(("pod+", ep.pod))

    def remove_pod(self, node: str, pod: str, lxc: str = "") -> None:
        self.calls.append(("pod-", pod))

    def remove_node(self, node: str) -> None:
        self.calls.append(("node-", node))

    def link_mac(self, node: str, device: str) -> str:
        return f"02:00:00:00:{len(node):02x}:{sum(map(ord, node)) % 256:02x}"

    def close(self) -> None:
        pass


class FakeFabric:
    def __init__(self) -> None:
        self.table: dict[str, str] = {}  # mac -> port

    def plug(self, port: str, mac: str) -> None:
        self.table[mac] = port

    def unplug(self, mac: str) -> None:
        self.table.pop(mac, None)

    def close(self) -> None: ...


class FakePrograms:
    impl = None
    loaded = True

    def __init__(self, tag: str, node: str, netns: str) -> None:
        self.node = node
        self.applied: list[MapChange] = []
        self.synced = 0

    def load(self) -> None: ...
    def configure(self, node: NodeState) -> None: ...
    def attach_all(self, devices: Any) -> None: ...
    def detach(self, device: str) -> None: ...
    def close(self) -> None: ...
    def unload(self) -> None: ...

    def sync(self, node: NodeState) -> None:
        self.synced += 1

    def apply(self, changes: list[MapChange]) -> None:
        self.applied += changes


class FakeSupervisor:
    def __init__(self) -> None:
        self.started: list[str] = []
        self.stopped: list[str] = []
        self.dns_ip = ""

    def start_pod(self, specs: Any, namespace: str) -> None:
        self.started += [s.pod for s in specs]

    def stop_pod(self, pod: str) -> None:
        self.stopped.append(pod)

    def poll(self) -> None: ...
    def stop_all(self) -> None: ...

    def status(self) -> list[dict[str, object]]:
        return []


def run(state: Path, *argv: str) -> None:
    out, err = io.StringIO(), io.StringIO()
    rc = main(["--state", str(state), *argv], Context(state_dir=state, stdout=out, stderr=err))
    assert rc == 0, err.getvalue()


@pytest.fixture
def started(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Agent, Path]:
    run(tmp_path, "cluster", "create", "lab", "--nodes", "3")
    (tmp_path / "web.yaml").write_text(DEPLOY.format(n=2))
    run(tmp_path, "apply", "-f", str(tmp_path / "web.yaml"))
    monkeypatch.setattr(agent_mod, "NodePrograms", FakePrograms)
    monkeypatch.setattr(agent_mod.netns, "list_netns", lambda prefix="": [])
    ctx = Context(state_dir=tmp_path)
    a = Agent(tmp_path, ctx.store())
    a.topo = FakeTopo()  # type: ignore[assignment]
    a.fabric = FakeFabric()  # type: ignore[assignment]
    a.sup = FakeSupervisor()  # type: ignore[assignment]
    a.kp.dir.mkdir(parents=True, exist_ok=True)
    monkeypatch.setattr(Agent, "_start_pump", lambda self, node: None)
    a.start()
    return a, tmp_path


def events_since(a: Agent) -> list[Any]:
    return list(a.store.watch(since=a.rev, timeout=0.2))


def test_start_builds_every_node_and_pod_and_syncs_maps(started: tuple[Agent, Path]) -> None:
    a, _ = started
    topo: FakeTopo = a.topo  # type: ignore[assignment]
    assert [c for c in topo.calls if c[0] == "node"] == [("node", n) for n in a.state.nodes]
    pods = sorted(p for k, p in topo.calls if k == "pod+")
    assert len(pods) == 2 and all(p.startswith("default/web-") for p in pods)
    assert all(p.synced == 1 for p in a.programs.values())  # type: ignore[attr-defined]
    assert sorted(a.sup.started) == pods  # type: ignore[attr-defined]
    assert a.kp.ready.exists()
    # every node's eth0 is in the fabric's fast path, behind its own port
    fabric: FakeFabric = a.fabric  # type: ignore[assignment]
    assert fabric.table == {topo.link_mac(n, "eth0"): a.names.fabric_port(n) for n in a.state.nodes}


def test_scale_up_wires_only_the_new_pod_and_applies_map_deltas(
    started: tuple[Agent, Path],
) -> None:
    a, state = started
    topo: FakeTopo = a.topo  # type: ignore[assignment]
    before = set(pod_places(a.state))
    topo.calls.clear()
    (state / "web.yaml").write_text(DEPLOY.format(n=3))
    run(state, "apply", "-f", str(state / "web.yaml"))
    a.reconcile(events_since(a))
    (new,) = set(pod_places(a.state)) - before
    assert topo.calls == [("pod+", new)]
    applied = [c for p in a.programs.values() for c in p.applied]  # type: ignore[attr-defined]
    assert any(c.map == "cilium_lxc" and c.value is not None for c in applied)
    assert {c.node for c in applied if c.map == "cilium_ipcache"} == set(a.state.nodes)
    assert a.sup.started[-1] == new  # type: ignore[attr-defined]
    assert a.status()["timings"]["pods_wired"] == 3


def test_scale_down_removes_the_pod_its_processes_and_entries(started: tuple[Agent, Path]) -> None:
    a, state = started
    topo: FakeTopo = a.topo  # type: ignore[assignment]
    before = set(pod_places(a.state))
    topo.calls.clear()
    (state / "web.yaml").write_text(DEPLOY.format(n=1))
    run(state, "apply", "-f", str(state / "web.yaml"))
    a.reconcile(events_since(a))
    (gone,) = before - set(pod_places(a.state))
    assert topo.calls == [("pod-", gone)]
    assert a.sup.stopped == [gone]  # type: ignore[attr-defined]
    applied = [c for p in a.programs.values() for c in p.applied]  # type: ignore[attr-defined]
    assert any(c.map == "cilium_lxc" and c.value is None for c in applied)


def test_a_failing_map_delta_resyncs_the_node(started: tuple[Agent, Path]) -> None:
    a, state = started

    def boom(changes: list[MapChange]) -> None:
        raise OSError(22, "Invalid argument")

    for p in a.programs.values():
        p.apply = boom  # type: ignore[method-assign]
    (state / "web.yaml").write_text(DEPLOY.format(n=3))
    run(state, "apply", "-f", str(state / "web.yaml"))
    a.reconcile(events_since(a))
    assert all(p.synced == 2 for p in a.programs.values())  # type: ignore[attr-defined]
    assert any("resynced" in e for e in a.errors)


def test_dns_ip_prefers_kube_dns() -> None:
    svc = {"kind": "Service", "metadata": {"name": "kube-dns"}, "spec": {"clusterIP": "10.96.0.53"}}
    assert dns_ip([svc]) == "10.96.0.53"
    assert dns_ip([]) == "10.96.0.10"


def test_a_proxy_restart_rewrites_the_status_without_a_store_event(
    started: tuple[Agent, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The proxies' supervisor thread restarts a node's L7 proxy that exited; the agent's
    loop rewrites status.json with the new pid, with no store change to reconcile."""
    a, _ = started
    me = os.getpid()

    def spawn(self: ProxyManager, proc: _Proc, node: str) -> _Proc:
        proc.pid, proc.start = me, process_start_time(me) or 0  # "started": this process
        return proc

    monkeypatch.setattr(ProxyManager, "_spawn", spawn)
    monkeypatch.setattr(ProxyManager, "_wait_ready", lambda self, procs: None)
    with a.proxies._lock:
        a.proxies.procs["lab-worker"] = _Proc(a.proxies.files("lab-worker"), "ns", pid=0)
    a.write_status()
    assert json.loads(a.kp.status.read_text())["proxies"][0]["pid"] == 0
    loop = threading.Thread(target=a.run, daemon=True)
    loop.start()
    try:
        proxies: list[dict[str, Any]] = []
        for _ in range(200):  # the supervisor polls every 0.5 s, the loop every 0.25 s
            proxies = json.loads(a.kp.status.read_text())["proxies"]
            if proxies[0]["pid"] == me:
                break
            time.sleep(0.05)
        assert proxies == [
            {"node": "lab-worker", "pid": me, "running": True, "adopted": False,
             "restarts": 1, "endpoints": 0},
        ]  # fmt: skip
    finally:
        a.stopping.set()
        a.proxies.detach()
        loop.join(timeout=5)
