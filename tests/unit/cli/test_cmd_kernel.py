"""`up`/`down`/`status`/`observe` without a running kernel datapath (no root needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from _cli import run_cli
from ciliate.datapath.flowlog import FlowLogDir
from ciliate.datapath.linux import runtime
from ciliate.observe.flow import IP, TCP, Endpoint, Flow, Verdict


def test_up_without_kernel_support_exits_4_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run_cli(tmp_path, "cluster", "create", "lab", "--nodes", "2")[0] == 0
    monkeypatch.setattr(
        runtime, "unavailable_reason", lambda: "needs root (network namespaces and eBPF)"
    )
    rc, _, err = run_cli(tmp_path, "up")
    assert rc == 4
    assert err.strip().splitlines() == [
        "error: kernel datapath unavailable: needs root (network namespaces and eBPF); "
        "model commands (trace, reach, exec views) still work"
    ]


def test_up_without_a_cluster_is_not_found(tmp_path: Path) -> None:
    rc, _, err = run_cli(tmp_path, "up")
    assert rc == 2 and "cluster create" in err


def test_status_json_when_not_up(tmp_path: Path) -> None:
    run_cli(tmp_path, "cluster", "create", "lab", "--nodes", "2")
    rc, out, _ = run_cli(tmp_path, "status", "-o", "json")
    st = json.loads(out)
    assert rc == 0
    assert st["datapath"] == "model" and st["up"] is False and st["agents"] == []
    assert [n["name"] for n in st["nodes"]] == ["lab-control-plane", "lab-worker"]


def test_status_text_when_not_up(tmp_path: Path) -> None:
    run_cli(tmp_path, "cluster", "create", "lab", "--nodes", "2")
    rc, out, _ = run_cli(tmp_path, "status")
    assert rc == 0 and "Datapath:   model (kernel datapath not up)" in out


def test_down_when_nothing_runs(tmp_path: Path) -> None:
    rc, out, _ = run_cli(tmp_path, "down")
    assert rc == 0 and "not up" in out


def _flow(i: int, src: str, dst: str, verdict: Verdict = Verdict.FORWARDED) -> Flow:
    return Flow(
        time_ns=1_700_000_000_000_000_000 + i,
        verdict=verdict,
        uuid=str(i),
        ip=IP(f"10.10.2.{i}", "10.10.1.3"),
        l4=TCP(40000 + i, 80),
        source=Endpoint(namespace="networking101", pod_name=src),
        destination=Endpoint(namespace="networking101", pod_name=dst),
        node_name="mycluster/mycluster-worker",
    )


def test_observe_reads_the_agents_flow_logs_with_filters(tmp_path: Path) -> None:
    logs = FlowLogDir(runtime.KernelPaths(tmp_path).flows)
    with logs.writer("mycluster-worker") as w:
        w.write([_flow(1, "busybox", "netshoot"), _flow(2, "netshoot", "busybox", Verdict.DROPPED)])
    rc, out, _ = run_cli(tmp_path, "observe")
    assert rc == 0 and len(out.splitlines()) == 2
    rc, out, _ = run_cli(tmp_path, "observe", "--verdict", "DROPPED", "-o", "json")
    (line,) = out.splitlines()
    assert json.loads(line)["flow"]["verdict"] == "DROPPED"
    rc, out, _ = run_cli(tmp_path, "observe", "--last", "1")
    assert len(out.splitlines()) == 1 and "netshoot" in out.split("->")[0]
    rc, out, _ = run_cli(tmp_path, "observe", "--from-pod", "networking101/busybox")
    assert len(out.splitlines()) == 1 and "FORWARDED" in out


def test_observe_before_any_kernel_run_says_where_flows_come_from(tmp_path: Path) -> None:
    rc, out, err = run_cli(tmp_path, "observe")
    assert rc == 0 and out == "" and "ciliate up" in err
