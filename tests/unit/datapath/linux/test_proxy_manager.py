"""The agent's side of the L7 proxies (datapath.linux.proxy) without a kernel: rules
files for every node, a proxy only where a redirect exists (and a namespace to run
it in), the proxy's command line."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from ciliate.datapath.linux.proxy import ProxyManager, _Proc, proxy_argv
from ciliate.datapath.linux.proxy_rules import load_rules
from ciliate.datapath.linux.runtime import KernelPaths
from ciliate.datapath.linux.workloads import process_start_time
from ciliate.desired import DesiredState, L7Rule, PolicyEntry, PolicyKey, PolicyMap

NS_B = "networking101/netshoot-b"  # worker2
L7: PolicyMap = {
    PolicyKey(3372, False, 6, 80, 16): PolicyEntry(
        proxy_port=10080, l7_rules=(L7Rule("http", method="GET"),)
    ),
}
Make = Callable[..., DesiredState]


def test_rules_for_every_node_and_no_process_without_a_namespace(
    make_state: Make, tmp_path: Path
) -> None:
    state = make_state({NS_B: L7})
    pm = ProxyManager(KernelPaths(tmp_path))
    try:
        pm.start(state.nodes)
        for node in state.nodes:
            assert pm.files(node).rules.exists()
        assert list(load_rules(pm.files("mycluster-worker2").rules)) != []
        assert load_rules(pm.files("mycluster-worker").rules) == {}
        assert pm.cache.needs_proxy("mycluster-worker2")
        assert pm.status() == []  # the node's namespace does not exist here
    finally:
        pm.stop()


def test_the_proxy_command_line(tmp_path: Path) -> None:
    kp = KernelPaths(tmp_path)
    argv = proxy_argv(ProxyManager(kp).files("w1"))
    assert argv[1:3] == ("-m", "ciliate.servers.proxy")
    opts = dict(zip(argv[3::2], argv[4::2], strict=True))
    assert opts["--node"] == "w1" and opts["--port"] == "10080"
    assert opts["--pin-dir"].endswith(f"/{kp.names.tag}/w1/tc/globals")
    assert opts["--flows"] == str(tmp_path / "flows" / "w1.proxy.jsonl")
    assert opts["--rules"] == str(tmp_path / "kernel" / "proxy" / "w1.rules.json")


def test_a_restart_by_the_supervisor_is_reported_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``poll`` restarts a proxy that exited and flags it for the agent's status (which
    would otherwise show the dead pid until the next reconcile); the flag is taken once."""
    pm = ProxyManager(KernelPaths(tmp_path))
    me = os.getpid()

    def spawn(self: ProxyManager, proc: _Proc, node: str) -> _Proc:
        proc.pid, proc.start = me, process_start_time(me) or 0  # "started": this process
        return proc

    monkeypatch.setattr(ProxyManager, "_spawn", spawn)
    monkeypatch.setattr(ProxyManager, "_wait_ready", lambda self, procs: None)
    pm.procs["w1"] = _Proc(pm.files("w1"), "netns-w1", pid=0)  # exited
    assert not pm.take_changed()
    assert pm.poll() == 1
    assert pm.take_changed() and not pm.take_changed()
    assert pm.status()[0] == {
        "node": "w1", "pid": me, "running": True, "adopted": False, "restarts": 1,
        "endpoints": 0,
    }  # fmt: skip
    assert pm.poll() == 0 and not pm.take_changed()  # alive: nothing to report
