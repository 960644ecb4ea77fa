"""Golden traces: manifests in, ``ciliate trace`` out, compared with files in golden/.

The cluster is the networking101 one (../shared/examples/cluster.yaml and
networking101/workloads.yaml, copied into ``src/ciliate/examples`` for the demo);
``services.yaml`` here adds services of each kind and a CiliumNetworkPolicy. Pod names
and addresses are deterministic, so the traces are too (the RNG is seeded).

Rewrite the files with ``pytest --update-golden`` (or CILIATE_UPDATE_GOLDEN=1) and
review the diff.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest

from _cli import run_cli

HERE = Path(__file__).parent
GOLDEN = HERE / "golden"
EXAMPLES = resources.files("ciliate") / "examples"

BB_W1 = "networking101/busybox-76f5c8b857-h2k4g"  # mycluster-worker
BB_W2 = "networking101/busybox-76f5c8b857-lm448"  # mycluster-worker2
NS_W1 = "networking101/netshoot-599564794-dwj6m"  # mycluster-worker
NS_W2 = "networking101/netshoot-599564794-k26hg"  # mycluster-worker2


def run(state: Path, argv: list[str]) -> tuple[int, str]:
    rc, out, err = run_cli(state, *argv)
    # Provenance names manifest files; keep the goldens independent of the checkout.
    return rc, (out + err).replace(str(HERE), "<scenario>")


def make_cluster(root: Path, extra: list[Path]) -> Path:
    state = root / "state"
    cluster = root / "cluster.yaml"
    workloads = root / "networking101.yaml"
    cluster.write_text((EXAMPLES / "cluster.yaml").read_text())
    workloads.write_text((EXAMPLES / "networking101.yaml").read_text())
    for argv in (
        ["cluster", "create", "-f", str(cluster)],
        ["apply", "-f", str(workloads)],
        *(["apply", "-f", str(p)] for p in extra),
    ):
        rc, text = run(state, argv)
        assert rc == 0, text
    return state


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_cluster(tmp_path_factory.mktemp("plain"), [])


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_cluster(tmp_path_factory.mktemp("services"), [HERE / "services.yaml"])


PLAIN_CASES = {
    "same-node-icmp": [BB_W1, NS_W1, "--protocol", "icmp"],
    "cross-node-icmp": [BB_W1, NS_W2, "--protocol", "icmp"],
    "same-node-tcp": [BB_W1, NS_W1, "--port", "80"],
    "cross-node-tcp": [BB_W1, NS_W2, "--port", "80"],
    "arp-gateway": [BB_W1, "10.10.2.205", "--protocol", "arp"],
    "node-to-pod": ["mycluster-worker2", BB_W1, "--port", "8080"],
}
SERVICE_CASES = {
    "clusterip": [BB_W1, "networking101/netshoot"],
    "clusterip-cross-node": [BB_W2, "networking101/netshoot"],
    # the node's own connections, backend on the node: reverse NAT in cil_from_container
    "host-to-clusterip-local": ["mycluster-worker", "networking101/netshoot"],
    "host-to-nodeport-local": ["mycluster-worker", "mycluster-worker:31000"],
    "nodeport-from-outside": ["192.0.2.9", "mycluster-worker:31000"],
    "no-backend-158": [BB_W1, "networking101/nobody"],
    "policy-denied-133": [BB_W1, NS_W2, "--port", "80"],
    "policy-denied-133-flows": [BB_W1, NS_W2, "--port", "80", "--flows"],
    "world-to-clusterip-174": ["192.0.2.9", "networking101/netshoot"],
}


def check(name: str, text: str, update: bool) -> None:
    path = GOLDEN / name
    if update or not path.exists():
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(text)
        if not update:
            pytest.fail(f"golden file {path} was missing and has been written; review it")
    assert text == path.read_text(), f"{name} differs from its golden file (--update-golden)"


@pytest.mark.parametrize("name", sorted(PLAIN_CASES))
def test_networking101_traces(plain: Path, name: str, update_golden: bool) -> None:
    rc, text = run(plain, ["trace", *PLAIN_CASES[name]])
    assert rc == 0, text
    check(f"{name}.txt", text, update_golden)


@pytest.mark.parametrize("name", sorted(SERVICE_CASES))
def test_service_traces(services: Path, name: str, update_golden: bool) -> None:
    rc, text = run(services, ["trace", *SERVICE_CASES[name]])
    assert rc == 0, text
    check(f"{name}.txt", text, update_golden)


# Manifest mode (-f): an ephemeral kind-style cluster "reach" (names differ from above).
EPH_BB = "networking101/busybox-76f5c8b857-q7rcl"
EPH_NS = "networking101/netshoot-599564794-vgmg7"
L7_CASES = {
    "l7-get-public-200": "GET /public/index.html",
    "l7-get-private-403": "GET /private",
    "l7-post-public-403": "POST /public",
}


@pytest.mark.parametrize("name", sorted(L7_CASES))
def test_l7_traces_from_manifests(tmp_path: Path, name: str, update_golden: bool) -> None:
    workloads = tmp_path / "networking101.yaml"
    workloads.write_text((EXAMPLES / "networking101.yaml").read_text())
    argv = ["trace", "-f", str(workloads), "-f", str(HERE / "l7.yaml"), EPH_BB, EPH_NS]
    rc, text = run(tmp_path / "state", [*argv, "--port", "8080", "--http", L7_CASES[name]])
    assert rc == 0, text
    check(f"{name}.txt", text, update_golden)
    assert ("HTTP 200" in text) == name.endswith("200")
    assert ("403 Access denied" in text) == name.endswith("403")


def test_json_shape(plain: Path, update_golden: bool) -> None:
    rc, text = run(plain, ["trace", BB_W1, NS_W2, "--protocol", "icmp", "-o", "json"])
    assert rc == 0, text
    doc = json.loads(text)
    assert doc["version"] == 1 and doc["delivered"] is True
    assert [h["hop"] for h in doc["request"] + doc["reply"]] == list(
        range(1, len(doc["request"]) + len(doc["reply"]) + 1)
    )
    assert doc["flows"][0]["flow"]["trace_observation_point"] == "FROM_ENDPOINT"
    assert doc["flows"][-1]["flow"]["trace_reason"] == "REPLY"
    check("cross-node-icmp.json", text, update_golden)


def test_blog_reading(plain: Path) -> None:
    """The two walks of EXPECTED.md, as the path line shows them."""
    _, same = run(plain, ["trace", BB_W1, NS_W1, "--protocol", "icmp"])
    path = next(line for line in same.splitlines() if line.startswith("Path:"))
    assert path.startswith("Path:  busybox 10.10.2.2 -> lxc")
    assert "-> cilium_lxc -> lxc" in path and path.endswith("netshoot 10.10.2.3")
    _, cross = run(plain, ["trace", BB_W1, NS_W2, "--protocol", "icmp"])
    path = next(line for line in cross.splitlines() if line.startswith("Path:"))
    assert "cilium_ipcache (tunnel 172.18.0.4) -> cilium_vxlan -> mycluster-worker2 eth0" in path
    assert "-> cil_from_overlay -> cilium_lxc -> lxc" in path and path.endswith(
        "netshoot 10.10.1.3"
    )
    assert "ac 12 00 04" in cross  # the tunnel endpoint in the ipcache value
