"""The agent's side of the L7 proxies (datapath.linux.proxy) without a kernel: rules
files for every node, a proxy only where a redirect exists (and a namespace to run
it in), the proxy's command line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ciliate.datapath.linux.proxy import ProxyManager, proxy_argv
from ciliate.datapath.linux.proxy_rules import load_rules
from ciliate.datapath.linux.runtime import KernelPaths
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
