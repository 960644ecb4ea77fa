"""The networking101 walkthrough (examples/networking101/EXPECTED.md) end to end on
the model: cluster.yaml + workloads.yaml in; endpoint and identity lists, cilium_lxc
and cilium_ipcache dumps, routes, and the blog's two bpftool lookups out, compared
with golden files (``pytest --update-golden`` rewrites them)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from _cli import run_cli
from _paths import example_file
from ciliate.cli.context import Context
from ciliate.cli.state import load_desired
from ciliate.desired import DesiredState, Route

GOLDEN = Path(__file__).parent / "golden"
W1, W2 = "mycluster-worker", "mycluster-worker2"


def run(state: Path, *argv: str) -> tuple[int, str]:
    rc, out, err = run_cli(state, *argv)
    return rc, out + err


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Path:
    state = tmp_path_factory.mktemp("n101")
    rc, text = run(state, "cluster", "create", "-f", str(example_file("cluster.yaml")))
    assert rc == 0, text
    workloads = example_file("networking101/workloads.yaml")
    rc, text = run(state, "apply", "-f", str(workloads))
    assert rc == 0, text
    return state


def _pods(state: Path) -> dict[str, dict[str, Any]]:
    rc, text = run(state, "get", "pods", "-n", "networking101", "-o", "json")
    assert rc == 0, text
    out: dict[str, dict[str, Any]] = {}
    for p in json.loads(text)["items"]:
        out[f"{p['metadata']['labels']['app']}@{p['spec']['nodeName']}"] = p
    return out


def _route_text(r: Route) -> str:
    parts = [r.dst]
    if r.via:
        parts += ["via", r.via]
    parts += ["dev", r.dev]
    if r.proto:
        parts += ["proto", r.proto]
    if r.scope:
        parts += ["scope", r.scope]
    if r.src:
        parts += ["src", r.src]
    if r.mtu:
        parts += ["mtu", str(r.mtu)]
    return " ".join(parts)


def _golden(name: str, text: str, update: bool) -> None:
    path = GOLDEN / name
    if update or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if not update:
            pytest.skip(f"golden file {path.name} created; rerun to compare")
    assert text == path.read_text(), f"{path} differs (rerun with --update-golden if intended)"


def _state(cluster: Path) -> DesiredState:
    ctx = Context(state_dir=cluster)
    try:
        return load_desired(ctx)
    finally:
        ctx.close()


def _hex(ip: str) -> list[str]:
    return [f"{int(x):02x}" for x in ip.split(".")]


@pytest.mark.parametrize(
    "name,argv",
    [
        ("endpoint_list.txt", ["endpoint", "list"]),
        ("identity_list.txt", ["identity", "list"]),
        ("bpf_endpoint_list.txt", ["bpf", "endpoint", "list"]),
        ("bpf_ipcache_list_worker.txt", ["bpf", "ipcache", "list", "--node", W1]),
        ("ciliumendpoints.txt", ["get", "ciliumendpoints", "-n", "networking101"]),
    ],
)
def test_tables(cluster: Path, update_golden: bool, name: str, argv: list[str]) -> None:
    rc, text = run(cluster, *argv)
    assert rc == 0, text
    _golden(name, text, update_golden)


def test_ciliumnodes(cluster: Path) -> None:
    rc, text = run(cluster, "get", "ciliumnodes")
    assert rc == 0
    lines = {ln.split()[0]: ln.split()[1:3] for ln in text.splitlines()[1:]}
    assert lines[W1] == ["10.10.2.205", "172.18.0.2"]
    assert lines[W2] == ["10.10.1.55", "172.18.0.4"]


def test_routes_are_the_blogs(cluster: Path, update_golden: bool) -> None:
    st = _state(cluster)
    node = [_route_text(r) for r in st.nodes[W1].routes]
    assert node == [
        "10.10.0.0/24 via 10.10.2.205 dev cilium_host proto kernel src 10.10.2.205 mtu 1450",
        "10.10.1.0/24 via 10.10.2.205 dev cilium_host proto kernel src 10.10.2.205 mtu 1450",
        "10.10.2.0/24 via 10.10.2.205 dev cilium_host proto kernel src 10.10.2.205",
        "10.10.2.205 dev cilium_host proto kernel scope link",
        "172.18.0.0/16 dev eth0 proto kernel scope link src 172.18.0.2",
    ]
    pod = next(iter(st.nodes[W1].pods.values()))
    assert [_route_text(r) for r in pod.routes] == [
        "default via 10.10.2.205 dev eth0 mtu 1450",
        "10.10.2.205 dev eth0 scope link",
        "10.10.2.0/24 via 10.10.2.205 dev eth0",
    ]
    text = ""
    for name in sorted(st.nodes):
        text += f"# {name}\n" + "".join(_route_text(r) + "\n" for r in st.nodes[name].routes)
    _golden("routes.txt", text, update_golden)


def test_same_node_lxc_lookup(cluster: Path, update_golden: bool) -> None:
    pods = _pods(cluster)
    dst = pods[f"netshoot@{W1}"]
    ip = dst["status"]["podIP"]
    key = [*_hex(ip), *["00"] * 12, "01", "00", "00", "00"]
    rc, text = run(cluster, "bpf", "map", "lookup", W1, "cilium_lxc", "key", "hex", *key)
    assert rc == 0, text
    value = bytes.fromhex("".join(text.split("value:")[1].split()))
    st = _state(cluster)
    ep = next(e for e in st.nodes[W1].endpoints.values() if str(e.ip) == ip)
    assert int.from_bytes(value[6:8], "little") == ep.id
    assert value[16:22] == bytes.fromhex(ep.pod_mac.replace(":", ""))
    assert value[24:30] == bytes.fromhex(ep.lxc_mac.replace(":", ""))
    assert text.startswith("key:\n" + " ".join(key[:8]) + "  " + " ".join(key[8:16]) + "\n")
    _golden("lookup_lxc.txt", text, update_golden)


def test_cross_node_ipcache_lookup(cluster: Path, update_golden: bool) -> None:
    pods = _pods(cluster)
    dst = pods[f"netshoot@{W2}"]
    key = [
        "40",
        "00",
        "00",
        "00",
        "00",
        "00",
        "00",
        "01",
        *_hex(dst["status"]["podIP"]),
        *["00"] * 12,
    ]
    rc, text = run(cluster, "bpf", "map", "lookup", W1, "cilium_ipcache", "key", "hex", *key)
    assert rc == 0, text
    value = bytes.fromhex("".join(text.split("value:")[1].split()))
    st = _state(cluster)
    ident = next(
        e.identity
        for e in st.nodes[W2].endpoints.values()
        if e.pod.endswith(dst["metadata"]["name"])
    )
    assert int.from_bytes(value[0:4], "little") == ident
    assert value[4:8] == bytes([0xAC, 0x12, 0x00, 0x04])
    _golden("lookup_ipcache.txt", text, update_golden)


def test_lookup_miss_is_an_error(cluster: Path) -> None:
    key = ["0a", "0a", "09", "09", *["00"] * 12, "01", "00", "00", "00"]
    rc, text = run(cluster, "bpf", "map", "lookup", W1, "cilium_lxc", "key", "hex", *key)
    assert rc == 2 and "No such file or directory" in text
    rc, text = run(cluster, "bpf", "map", "lookup", W1, "cilium_lxc", "key", "hex", "0a")
    assert rc == 1 and "expected 20 bytes" in text


def test_both_replicas_share_an_identity(cluster: Path) -> None:
    rc, text = run(cluster, "get", "ciliumendpoints", "-n", "networking101", "-o", "json")
    assert rc == 0
    ids: dict[str, set[int]] = {}
    for item in json.loads(text)["items"]:
        ids.setdefault(item["metadata"]["name"].split("-")[0], set()).add(
            item["status"]["identity"]["id"]
        )
    assert len(ids["busybox"]) == 1 and len(ids["netshoot"]) == 1
    assert ids["busybox"] != ids["netshoot"]


def test_policy_map_has_allow_all_without_policy(cluster: Path) -> None:
    st = _state(cluster)
    ep = next(e for e in st.nodes[W1].endpoints.values() if e.pod)
    rc, text = run(cluster, "bpf", "policy", "get", str(ep.id), "--node", W1)
    assert rc == 0, text
    rows = text.splitlines()[1:]
    assert [r.split()[:4] for r in rows] == [
        ["Allow", "Ingress", "ANY", "ANY"],
        ["Allow", "Egress", "ANY", "ANY"],
    ]


def test_pod_routes_leave_room_for_vxlan(cluster: Path) -> None:
    """Tunnel mode, as Cilium sets it: eth0 keeps the device MTU (1500) and the default
    route carries the route MTU 1450 (1500 less VXLAN's 50 bytes), so nothing a pod sends
    to another node is fragmented; the node's own pod CIDR is routed without the limit
    (same-node traffic never enters the tunnel)."""
    state = load_desired(Context(state_dir=cluster))
    for node in state.nodes.values():
        for pod in node.pods.values():
            eth0 = next(d for d in pod.devices if d.name == "eth0")
            assert eth0.mtu == 1500, (pod.pod, eth0)
            by_dst = {r.dst: r for r in pod.routes}
            assert by_dst["default"].mtu == 1450
            assert by_dst[str(node.pod_cidr)].mtu == 0
