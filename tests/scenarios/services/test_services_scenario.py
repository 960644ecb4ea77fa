"""Services of every type, end to end through the CLI: services.yaml in; the lb4 maps
(`bpf lb list`, `--revnat`, `--backends`) and `service list` of one worker out,
compared with golden files (``pytest --update-golden`` rewrites them)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from _cli import run_cli
from _paths import example_file

HERE = Path(__file__).parent
GOLDEN = HERE / "golden"
CLUSTER = example_file("cluster.yaml")
W1 = "mycluster-worker"


def run(state: Path, *argv: str) -> tuple[int, str]:
    rc, out, err = run_cli(state, *argv)
    return rc, out + err


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Path:
    state = tmp_path_factory.mktemp("svc")
    for argv in (
        ("cluster", "create", "-f", str(CLUSTER)),
        ("apply", "-f", str(HERE / "services.yaml")),
    ):
        rc, text = run(state, *argv)
        assert rc == 0, text
    return state


def _golden(name: str, text: str, update: bool) -> None:
    path = GOLDEN / name
    if update or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if not update:
            pytest.skip(f"golden file {path.name} created; rerun to compare")
    assert text == path.read_text(), f"{path} differs (rerun with --update-golden if intended)"


@pytest.mark.parametrize(
    "name,argv",
    [
        ("bpf_lb_list.txt", ["bpf", "lb", "list", "--node", W1]),
        ("bpf_lb_list_revnat.txt", ["bpf", "lb", "list", "--revnat", "--node", W1]),
        ("bpf_lb_list_backends.txt", ["bpf", "lb", "list", "--backends", "--node", W1]),
        ("service_list.txt", ["service", "list", "--node", W1]),
    ],
)
def test_tables(cluster: Path, update_golden: bool, name: str, argv: list[str]) -> None:
    rc, text = run(cluster, *argv)
    assert rc == 0, text
    _golden(name, text, update_golden)


def _services(cluster: Path) -> dict[str, dict[str, object]]:
    rc, text = run(cluster, "get", "svc", "-n", "svc", "-o", "json")
    assert rc == 0, text
    return {s["metadata"]["name"]: s for s in json.loads(text)["items"]}


def _frontends(cluster: Path) -> dict[str, str]:
    rc, text = run(cluster, "bpf", "lb", "list", "--node", W1)
    assert rc == 0
    out: dict[str, str] = {}
    current = ""
    for line in text.splitlines()[1:]:
        if not line.startswith(" "):
            current = line.split()[0]
            out[current] = ""
        out[current] += line + "\n"
    return out


def test_frontends_per_type(cluster: Path) -> None:
    svcs = _services(cluster)
    fes = _frontends(cluster)
    ip = lambda name: svcs[name]["spec"]["clusterIP"]  # type: ignore[index]  # noqa: E731
    assert "[ClusterIP, non-routable]" in fes[f"{ip('web-clusterip')}:80/TCP"]
    assert "[NodePort, non-routable]" in fes["0.0.0.0:31814/TCP"]
    assert "[NodePort]" in fes["172.18.0.2:31814/TCP"]
    assert "172.18.0.4:31814/TCP" not in fes  # another node's IP is not a frontend here
    assert "0.0.0.0:31815/TCP" in fes  # LoadBalancer pending: ClusterIP + NodePort only
    assert not any(k.startswith("None") for k in fes)  # headless: no frontend
    assert "sessionAffinity" in fes[f"{ip('web-affinity')}:80/TCP"]
    assert "[NodePort, Local, two-scopes]" in fes["172.18.0.2:31816/TCP"]
    assert fes["172.18.0.2:31816/TCP"].count(":8080/TCP") == 1  # only the local backend
    assert fes["172.18.0.2:31816/TCP/i"].count(":8080/TCP") == 2
    assert "InternalLocal" in fes[f"{ip('web-internal-local')}:80/TCP"]
    assert fes[f"{ip('web-internal-local')}:80/TCP"].count(":8080/TCP") == 1


def test_affinity_timeout_in_master_bytes(cluster: Path) -> None:
    svcs = _services(cluster)
    addr = [f"{int(x):02x}" for x in svcs["web-affinity"]["spec"]["clusterIP"].split(".")]  # type: ignore[index]
    key = [*addr, "00", "50", "00", "00", "06", "00", "00", "00"]
    rc, text = run(
        cluster, "bpf", "map", "lookup", W1, "cilium_lb4_services_v2", "key", "hex", *key
    )
    assert rc == 0, text
    value = bytes.fromhex("".join(text.split("value:")[1].split()))
    assert int.from_bytes(value[0:4], "little") & 0xFFFFFF == 60
    assert int.from_bytes(value[4:6], "little") == 2  # two backends
    assert value[8] & 0x10  # SVC_FLAG_AFFINITY
