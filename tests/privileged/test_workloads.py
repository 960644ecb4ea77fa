"""Pod processes in pod namespaces: the echo server answers on the pod IP, the process
sees its own resolv.conf, restartPolicy is honoured and stop leaves nothing running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from topology_plan import node_state

from ciliate.datapath.linux.topology import ClusterNames, Topology, teardown
from ciliate.datapath.linux.workloads import Supervisor, launch_argv, plan_pod
from ciliate.model.core import Pod

pytestmark = pytest.mark.privileged
POD = "networking101/busybox-a"


@pytest.fixture
def pod_ns() -> Iterator[str]:
    names = ClusterNames(f"w{os.getpid() % 100000:05d}")
    topo = Topology(names)
    try:
        topo.ensure_fabric()
        state = node_state("mycluster-worker", (POD,))
        topo.ensure_node(state)
        (ep,) = state.endpoints.values()
        topo.ensure_pod(state, ep, state.pods[POD])
        yield names.pod(POD)
    finally:
        topo.close()
        teardown(names)


def make_pod(containers: list[dict[str, object]], restart: str = "Always") -> Pod:
    return Pod.from_doc(
        {
            "kind": "Pod",
            "metadata": {"name": "busybox-a", "namespace": "networking101"},
            "spec": {"containers": containers, "restartPolicy": restart},
        }
    )


def wait_for(cond: object, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(cond) and cond():
            return True
        time.sleep(0.05)
    return False


def in_ns(ns: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(launch_argv(ns, None, argv), capture_output=True, text=True)


def test_echo_server_answers_with_pod_name_on_the_pod_ip(pod_ns: str, tmp_path: Path) -> None:
    pod = make_pod(
        [
            {
                "name": "echo",
                "image": "gcr.io/k8s-staging-ingressconformance/echoserver:v1",
                "env": [
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {
                        "name": "NAMESPACE",
                        "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
                    },
                ],
            },
            {"name": "sh", "image": "busybox", "command": ["sleep", "infinity"]},
        ]
    )
    sup = Supervisor(clock=time.monotonic)
    sup.start_pod(
        plan_pod(pod, "mycluster-worker", "10.10.2.117", pod_ns, tmp_path), "networking101"
    )
    try:
        url = "http://10.10.2.117:3000/get"

        def answered() -> bool:
            return in_ns(pod_ns, "curl", "-sf", "-m", "1", url).returncode == 0

        assert wait_for(answered), (tmp_path / "echo.log").read_text()
        body = json.loads(in_ns(pod_ns, "curl", "-sf", "-m", "1", url).stdout)
        assert body["pod"] == "busybox-a" and body["namespace"] == "networking101"
        assert body["path"] == "/get" and body["method"] == "GET"
        # the server is reachable only inside the pod's network namespace
        assert subprocess.run(["curl", "-sf", "-m", "1", url], capture_output=True).returncode != 0
        assert len(sup.pids()) == 2
    finally:
        sup.stop_all()
    assert sup.pids() == []


def test_process_sees_the_pod_resolv_conf(pod_ns: str, tmp_path: Path) -> None:
    out = tmp_path / "seen"
    pod = make_pod(
        [
            {
                "name": "c",
                "image": "alpine",
                "command": ["sh", "-c", f"cat /etc/resolv.conf > {out}"],
            }
        ],
        restart="Never",
    )
    sup = Supervisor(clock=time.monotonic)
    sup.start_pod(plan_pod(pod, "n", "10.10.2.117", pod_ns, tmp_path), "networking101")
    try:
        assert wait_for(out.exists)
        assert wait_for(lambda: "nameserver" in out.read_text())
        assert out.read_text().startswith("search networking101.svc.cluster.local ")
        assert "options ndots:5" in out.read_text()
        # the host's /etc/resolv.conf is untouched
        assert "networking101" not in Path("/etc/resolv.conf").read_text()
    finally:
        sup.stop_all()


def test_restart_policy_always_restarts_a_killed_process(pod_ns: str, tmp_path: Path) -> None:
    pod = make_pod([{"name": "c", "image": "busybox", "command": ["sleep", "infinity"]}])
    sup = Supervisor(clock=time.monotonic)
    sup.start_pod(plan_pod(pod, "n", "10.10.2.117", pod_ns, tmp_path), "networking101")
    try:
        (pid,) = sup.pids()
        os.kill(pid, signal.SIGKILL)

        def restarted() -> bool:
            sup.poll()
            return bool(sup.pids()) and sup.pids() != [pid]

        assert wait_for(restarted)
        assert sup.status()[0]["restarts"] == 1
    finally:
        sup.stop_all()


def test_restart_policy_never_leaves_an_exited_process(pod_ns: str, tmp_path: Path) -> None:
    pod = make_pod([{"name": "c", "image": "busybox", "command": ["true"]}], restart="Never")
    sup = Supervisor(clock=time.monotonic)
    sup.start_pod(plan_pod(pod, "n", "10.10.2.117", pod_ns, tmp_path), "networking101")
    try:

        def exited() -> bool:
            sup.poll()
            return sup.status()[0]["exitCode"] == 0

        assert wait_for(exited)
        sup.poll()
        assert sup.status()[0]["restarts"] == 0
    finally:
        sup.stop_all()
