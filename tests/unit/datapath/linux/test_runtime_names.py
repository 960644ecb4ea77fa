"""Cluster names, runtime files and the fallback when the kernel datapath is missing --
no root needed."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from ciliate.cli.context import Context
from ciliate.datapath.linux import runtime
from ciliate.datapath.linux.topology import ClusterNames, cluster_tag
from ciliate.errors import ExitCode, NotFoundError, UnsupportedError


def ctx_for(state: Path) -> Context:
    return Context(state_dir=state, stdout=io.StringIO(), stderr=io.StringIO())


def test_cluster_tag_is_a_stable_short_hash_of_the_state_dir(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    assert cluster_tag(a) == cluster_tag(a)
    assert cluster_tag(a) != cluster_tag(b)
    assert len(cluster_tag(a)) == 6 and int(cluster_tag(a), 16) >= 0


def test_every_name_carries_the_tag_and_fits_the_kernel() -> None:
    n = ClusterNames("c3f9a1")
    names = [n.fabric, n.node("mycluster-worker"), n.health("mycluster-worker"), n.pod("ns/p")]
    assert all(x.startswith("c3f9a1-") for x in names)
    assert n.pod("ns/p") != n.pod("ns/q") and n.pod("a/bc") != n.pod("ab/c")
    assert len(n.fabric_port("a-very-long-node-name-indeed")) <= 15  # IFNAMSIZ - 1
    assert n.pin_dir("w1") == Path("/sys/fs/bpf/ciliate/c3f9a1/w1")


def test_runtime_files_live_in_the_state_dir(tmp_path: Path) -> None:
    kp = runtime.KernelPaths(tmp_path)
    assert kp.pidfile == tmp_path / "kernel" / "agent.pid"
    assert kp.ready.parent == kp.dir == tmp_path / "kernel"
    assert kp.pod_dir("networking101/busybox") == tmp_path / "pods" / "networking101_busybox"
    assert kp.flows == tmp_path / "flows"
    assert kp.names.tag == cluster_tag(tmp_path)


def test_not_up_means_model_datapath_and_no_map_source(tmp_path: Path) -> None:
    ctx = ctx_for(tmp_path)
    assert not runtime.is_up(ctx)
    assert runtime.map_source(ctx) is None
    st = runtime.status(ctx)
    assert st["datapath"] == "model" and st["agents"] == [] and st["up"] is False


def test_a_stale_pidfile_is_not_an_agent(tmp_path: Path) -> None:
    kp = runtime.KernelPaths(tmp_path)
    kp.dir.mkdir(parents=True)
    kp.pidfile.write_text("999999999\n")
    kp.ready.write_text("")
    assert runtime.agent_pid(kp) is None
    assert not runtime.is_up(ctx_for(tmp_path))


def test_unavailable_kernel_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime.os, "geteuid", lambda: 1000)
    reason = runtime.unavailable_reason()
    assert reason == "needs root (network namespaces and eBPF)"
    with pytest.raises(UnsupportedError) as e:
        runtime.require_kernel()
    assert str(e.value) == (
        "kernel datapath unavailable: needs root (network namespaces and eBPF); "
        "model commands (trace, reach, exec views) still work"
    )
    assert e.value.exit_code == ExitCode.UNSUPPORTED


def test_exec_in_a_pod_that_does_not_run_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        runtime.exec_in_pod(ctx_for(tmp_path), "default", "nope", ["true"])
    with pytest.raises(NotFoundError):
        runtime.exec_in_node(ctx_for(tmp_path), "nope", ["true"])


def test_node_exec_binds_the_node_pins_on_sys_fs_bpf(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = ClusterNames("abc123")
    monkeypatch.setattr(ClusterNames, "pin_root", property(lambda self: tmp_path))
    (tmp_path / "w1").mkdir()
    argv = runtime.node_exec_argv(names, "w1", ["bpftool", "map", "show"])
    assert argv[:2] == ["nsenter", "--net=/run/netns/abc123-n-w1"]
    assert "unshare" in argv and 'mount --bind "$0" /sys/fs/bpf && exec "$@"' in argv
    assert argv[-4:] == [str(tmp_path / "w1"), "bpftool", "map", "show"]
    # no pins (programs not loaded): plain nsenter
    assert runtime.node_exec_argv(names, "w2", ["ip", "a"]) == [
        "nsenter",
        "--net=/run/netns/abc123-n-w2",
        "--",
        "ip",
        "a",
    ]


def test_demo_kernel_says_why_it_cannot_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        runtime, "unavailable_reason", lambda: "needs root (network namespaces and eBPF)"
    )
    out = io.StringIO()
    assert runtime.demo_kernel(ctx_for(tmp_path), out) is False
    assert out.getvalue().startswith("kernel datapath unavailable: needs root")
