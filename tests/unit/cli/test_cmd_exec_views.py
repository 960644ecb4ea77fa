"""``ciliate exec`` / ``ciliate node exec`` in model mode, and ``ciliate trace`` errors,
through ``main(argv, ctx)`` on a networking101 cluster in a temporary state dir."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

from _cli import run_cli

EXAMPLES = resources.files("ciliate") / "examples"
BB = "busybox-76f5c8b857-h2k4g"  # networking101, mycluster-worker, 10.10.2.2


def run(state: Path, argv: list[str]) -> tuple[int, str, str]:
    return run_cli(state, *argv)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("exec")
    (root / "cluster.yaml").write_text((EXAMPLES / "cluster.yaml").read_text())
    (root / "w.yaml").write_text((EXAMPLES / "networking101.yaml").read_text())
    state = root / "state"
    for argv in (
        ["cluster", "create", "-f", str(root / "cluster.yaml")],
        ["apply", "-f", str(root / "w.yaml")],
    ):
        rc, out, err = run(state, argv)
        assert rc == 0, out + err
    return state


def test_exec_ip_route_in_a_pod(cluster: Path) -> None:
    rc, out, _ = run(cluster, ["exec", "-n", "networking101", BB, "--", "ip", "route"])
    assert rc == 0
    assert out.splitlines() == [
        "default via 10.10.2.205 dev eth0 mtu 1450",
        "10.10.2.0/24 via 10.10.2.205 dev eth0",
        "10.10.2.205 dev eth0 scope link",
    ]
    rc, out2, _ = run(cluster, ["exec", f"networking101/{BB}", "--", "ip", "r"])
    assert out2 == out


def test_exec_ip_a_and_arp(cluster: Path) -> None:
    rc, out, _ = run(cluster, ["exec", f"networking101/{BB}", "--", "ip", "a"])
    assert rc == 0 and "inet 10.10.2.2/32 scope global eth0" in out
    rc, out, _ = run(cluster, ["exec", f"networking101/{BB}", "--", "arp", "-a"])
    assert rc == 0 and out.startswith("? (10.10.2.205) at ")


def test_node_exec(cluster: Path) -> None:
    rc, out, _ = run(cluster, ["node", "exec", "mycluster-worker", "--", "ip", "route"])
    assert rc == 0
    assert (
        "10.10.0.0/24 via 10.10.2.205 dev cilium_host proto kernel src 10.10.2.205 mtu 1450" in out
    )
    rc, out, _ = run(cluster, ["node", "exec", "mycluster-worker", "--", "bpftool", "net", "show"])
    assert rc == 0 and "cilium_vxlan(5) tcx/egress cil_to_overlay" in out


def test_unsupported_and_unknown(cluster: Path) -> None:
    rc, _, err = run(cluster, ["exec", f"networking101/{BB}", "--", "ping", "-c1", "10.10.1.3"])
    assert rc == 4 and len(err.strip().splitlines()) == 1
    rc, _, err = run(cluster, ["exec", "networking101/nope", "--", "ip", "a"])
    assert rc == 2
    rc, _, err = run(cluster, ["node", "exec", "nope", "--", "ip", "a"])
    assert rc == 2


def test_trace_errors(cluster: Path) -> None:
    rc, _, err = run(cluster, ["trace", "networking101/nope", "1.2.3.4"])
    assert rc == 2 and "not a pod" in err
    rc, _, err = run(cluster, ["trace", f"networking101/{BB}", "1.2.3.4", "--http", "GET"])
    assert rc == 1
