"""apply / get / delete / describe through the entry point, in a temporary state."""

from __future__ import annotations

import io
import ipaddress
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from _cli import run_cli
from _paths import shared_examples
from ciliate.cli import virtual
from ciliate.cli.context import Context
from ciliate.cli.main import main

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def run(state: Path) -> Run:
    def _run(*argv: str, stdin: str = "") -> tuple[int, str, str]:
        return run_cli(state, *argv, stdin=stdin)

    return _run


@pytest.fixture
def cluster(run: Run) -> Run:
    rc, _, err = run("cluster", "create", "-f", str(shared_examples() / "cluster.yaml"))
    assert rc == 0, err
    return run


def test_networking101_pods_spread_over_the_workers(cluster: Run) -> None:
    rc, out, err = cluster("apply", "-f", str(shared_examples() / "networking101/workloads.yaml"))
    assert (rc, err) == (0, "")
    assert out.splitlines() == [
        "namespace/networking101 created",
        "deployment.apps/busybox created",
        "deployment.apps/netshoot created",
    ]
    rc, out, err = cluster("get", "pods", "-n", "networking101", "-o", "wide")
    assert rc == 0, err
    header, *rows = out.splitlines()
    assert header.split()[:5] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert "IP" in header and "NODE" in header and "NOMINATED NODE" in header
    assert len(rows) == 4
    cidr = {"mycluster-worker": "10.10.2.0/24", "mycluster-worker2": "10.10.1.0/24"}
    placement: dict[str, list[str]] = {}
    for row in rows:
        name, ready, status, _restarts, _age, ip, node, *_ = row.split()
        m = re.fullmatch(r"(busybox|netshoot)-[0-9a-f]{8,10}-[a-z0-9]{5}", name)
        assert m, name
        assert (ready, status) == ("1/1", "Running")
        assert ipaddress.ip_address(ip) in ipaddress.ip_network(cidr[node])
        placement.setdefault(m[1], []).append(node)
    # each deployment's two replicas are spread over the two workers
    assert {k: sorted(v) for k, v in placement.items()} == {
        "busybox": sorted(cidr),
        "netshoot": sorted(cidr),
    }


def test_get_output_formats(cluster: Run) -> None:
    cluster("apply", "-f", str(shared_examples() / "networking101/workloads.yaml"))
    _, out, _ = cluster("get", "deploy", "-n", "networking101", "-o", "json")
    lst = json.loads(out)
    assert lst["apiVersion"] == "v1" and lst["kind"] == "List"
    assert lst["metadata"] == {"resourceVersion": ""}
    assert [i["metadata"]["name"] for i in lst["items"]] == ["busybox", "netshoot"]
    _, out, _ = cluster("get", "deploy", "busybox", "-n", "networking101", "-o", "json")
    one = json.loads(out)
    assert one["kind"] == "Deployment" and one["metadata"]["uid"]
    _, out, _ = cluster("get", "deploy", "busybox", "-n", "networking101", "-o", "yaml")
    assert yaml.safe_load(out)["spec"]["replicas"] == 2
    _, out, _ = cluster("get", "deploy", "-n", "networking101", "-o", "name")
    assert out == "deployment.apps/busybox\ndeployment.apps/netshoot\n"
    _rc, out, _ = cluster("get", "deploy", "-n", "networking101")
    assert out.splitlines()[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert out.splitlines()[1].split()[:4] == ["busybox", "2/2", "2", "2"]


def test_get_all_namespaces_labels_and_several_kinds(cluster: Run) -> None:
    cluster("apply", "-f", str(shared_examples() / "networking101/workloads.yaml"))
    _, out, _ = cluster("get", "po", "-A", "-l", "app=netshoot")
    header, *rows = out.splitlines()
    assert header.split()[:2] == ["NAMESPACE", "NAME"]
    assert len(rows) == 2 and all(r.startswith("networking101 ") for r in rows)
    assert all("netshoot-" in r for r in rows)
    _rc, out, _ = cluster("get", "deploy,ns", "-A")
    assert "deployment.apps/busybox" in out and "namespace/networking101" in out


def test_services_columns(cluster: Run) -> None:
    rc, _, err = cluster("apply", "-f", str(shared_examples() / "lb-ipam-l2-ingress/app.yaml"))
    assert rc == 0, err
    rc, out, _ = cluster("get", "svc", "-n", "cilium")
    header, row = out.splitlines()
    assert header.split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    name, type_, cip, ext, ports, _age = row.split()
    assert (name, type_, ports) == ("cilium-ingress-basic-ingress", "LoadBalancer", "80:31814/TCP")
    assert ipaddress.ip_address(cip) in ipaddress.ip_network("10.96.0.0/12")
    assert ext == "<pending>"


def test_not_found_and_empty(cluster: Run) -> None:
    rc, out, err = cluster("get", "pods", "nope")
    assert (rc, out, err) == (2, "", 'Error from server (NotFound): pods "nope" not found\n')
    rc, out, err = cluster("get", "pods")
    assert (rc, out, err) == (0, "", "No resources found in default namespace.\n")
    rc, out, err = cluster("get", "pods", "-n", "kube-public")
    assert err == "No resources found in kube-public namespace.\n"
    rc, _, err = cluster("get", "podz")
    assert rc == 1 and 'doesn\'t have a resource type "podz"' in err
    rc, _, err = cluster("get", "po", "-l", "a in (")
    assert rc == 1 and "invalid label selector" in err


def test_apply_is_atomic_and_reports_unchanged(cluster: Run, state: Path) -> None:
    good = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: good}\ndata: {a: '1'}\n"
    bad = "---\napiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {clusterIP: 1.2.3.4, ports: [{port: 80}]}\n"
    rc, out, err = cluster("apply", "-f", "-", stdin=good + bad)
    assert rc == 1 and out == ""
    assert "<stdin>:9:19:" in err and "spec.clusterIP" in err and "10.96.0.0/12" in err
    rc, _, _ = cluster("get", "cm", "good")
    assert rc == 2
    assert cluster("apply", "-f", "-", stdin=good)[1] == "configmap/good created\n"
    assert cluster("apply", "-f", "-", stdin=good)[1] == "configmap/good unchanged\n"
    changed = good.replace("'1'", "'2'")
    assert cluster("apply", "-f", "-", stdin=changed)[1] == "configmap/good configured\n"


def test_policies_carry_their_source(cluster: Run) -> None:
    path = shared_examples() / "ebook/redis-ingress-ipblock.yaml"
    assert cluster("apply", "-f", str(path))[0] == 0
    _, out, _ = cluster("get", "netpol", "redis-ingress", "-o", "json")
    ann = json.loads(out)["metadata"]["annotations"]
    assert ann["ciliate.io/source"] == f"{path}:2"
    assert json.loads(ann["ciliate.io/source-lines"])["spec.ingress[0].from[0].ipBlock.cidr"] == 16
    _rc, out, _ = cluster("get", "netpol")
    assert out.splitlines()[1].split()[:2] == ["redis-ingress", "role=db"]


def test_delete(cluster: Run) -> None:
    workloads = str(shared_examples() / "networking101/workloads.yaml")
    cluster("apply", "-f", workloads)
    rc, out, _ = cluster("delete", "deploy", "busybox", "-n", "networking101")
    assert (rc, out) == (0, 'deployment.apps "busybox" deleted\n')
    rc, out, _ = cluster("get", "po", "-n", "networking101", "-o", "name")
    assert out and "busybox" not in out  # its ReplicaSet and pods were collected
    rc, _, err = cluster("delete", "deploy", "busybox", "-n", "networking101")
    assert rc == 2 and 'deployments.apps "busybox" not found' in err
    rc, out, _ = cluster("delete", "-f", workloads, "--ignore-not-found")
    assert rc == 0 and 'namespace "networking101" deleted' in out
    rc, out, _ = cluster("get", "po", "-A", "-o", "name")
    assert "networking101" not in out and "busybox" not in out
    rc, _, err = cluster("delete", "ns", "default")
    assert rc == 1 and "may not be deleted" in err


def test_describe(cluster: Run) -> None:
    cluster("apply", "-f", str(shared_examples() / "ebook/services.yaml"))
    rc, out, _ = cluster("describe", "svc", "my-service")
    assert rc == 0
    assert re.search(r"^Name:\s+my-service$", out, re.M)
    assert re.search(r"^TargetPort:\s+9376/TCP$", out, re.M)
    assert re.search(r"^Selector:\s+app=MyApp$", out, re.M)
    rc, _, err = cluster("describe", "po", "nope")
    assert rc == 2 and 'pods "nope" not found' in err


def test_apply_without_cluster(run: Run) -> None:
    rc, _, err = run(
        "apply", "-f", "-", stdin="apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n"
    )
    assert rc == 2 and "ciliate cluster create" in err


def test_virtual_kinds(cluster: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = [
        {"apiVersion": "cilium.io/v2", "kind": "CiliumThing",
         "metadata": {"name": n, "namespace": ns, "labels": {"x": n}}}
        for n, ns in (("a", "default"), ("b", "other"))
    ]  # fmt: skip
    vk = virtual.VirtualKind(
        kind="CiliumThing",
        plural="ciliumthings",
        short_names=("cth",),
        namespaced=True,
        list=lambda ctx: docs,
        table=lambda ds, wide: (["NAME", "X"], [[d["metadata"]["name"], "y"] for d in ds]),
    )
    monkeypatch.setitem(virtual.VIRTUAL_KINDS, vk.plural, vk)
    rc, out, _ = cluster("get", "cth")
    assert out == "NAME   X\na      y\n"
    rc, out, _ = cluster("get", "ciliumthings", "-A", "-o", "name")
    assert out == "ciliumthing.cilium.io/a\nciliumthing.cilium.io/b\n"
    rc, out, _ = cluster("get", "cth", "-A", "-l", "x=b")
    assert out.splitlines()[1].split() == ["other", "b", "y"]
    rc, _, err = cluster("get", "cth", "zzz")
    assert rc == 2 and 'ciliumthings.cilium.io "zzz" not found' in err


def test_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    for cmd in ("apply", "get", "delete", "describe", "scale", "label", "api-resources", "diff"):
        with pytest.raises(SystemExit):
            main([cmd, "--help"])
        assert "Examples:" in capsys.readouterr().out


def test_endpoints_are_folded_from_slices(cluster: Run) -> None:
    rc, _, err = cluster("apply", "-f", str(shared_examples() / "gateway-api/http-server.yaml"))
    assert rc == 0, err
    _, out, _ = cluster("get", "ep", "testgw-svc")
    header, row = out.splitlines()
    assert header.split() == ["NAME", "ENDPOINTS", "AGE"]
    name, endpoints, _age = row.split()
    assert name == "testgw-svc" and re.fullmatch(r"10\.10\.[12]\.\d+:3000", endpoints)
    _, out, _ = cluster("get", "endpoints", "testgw-svc", "-o", "json")
    assert json.loads(out)["subsets"][0]["ports"] == [
        {"name": "http", "port": 3000, "protocol": "TCP"}
    ]
    rc, out, err = cluster("get", "ep", "nope", "-o", "yaml")
    assert (rc, out) == (2, "") and 'endpoints "nope" not found' in err


def test_apply_namespace_flag(cluster: Run) -> None:
    cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n"
    assert cluster("apply", "-n", "kube-public", "-f", "-", stdin=cm)[0] == 0
    assert cluster("get", "cm", "a", "-n", "kube-public", "-o", "name")[1] == "configmap/a\n"
    other = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b, namespace: default}\n"
    rc, _, err = cluster("apply", "-n", "kube-public", "-f", "-", stdin=other)
    assert rc == 1 and 'namespace from the provided object "default" does not match' in err


def test_get_all_and_jsonpath(cluster: Run) -> None:
    cluster("apply", "-f", str(shared_examples() / "networking101/workloads.yaml"))
    _, out, _ = cluster("get", "all", "-n", "networking101", "-o", "name")
    kinds = {line.split("/")[0] for line in out.splitlines()}
    assert kinds == {"pod", "deployment.apps", "replicaset.apps"}
    _, out, _ = cluster(
        "get", "po", "-n", "networking101", "-l", "app=busybox",
        "-o", "jsonpath={range .items[*]}{.spec.nodeName}{'\\n'}{end}",
    )  # fmt: skip
    assert sorted(out.split()) == ["mycluster-worker", "mycluster-worker2"]
    _, out, _ = cluster("get", "svc", "kubernetes", "-o", "jsonpath={.spec.clusterIP}")
    assert out == "10.96.0.1"
    rc, _, err = cluster("get", "svc", "-o", "jsonpath={.a")
    assert rc == 1 and "error parsing jsonpath" in err


def test_apply_dry_run_writes_nothing(cluster: Run, state: Path) -> None:
    workloads = str(shared_examples() / "networking101/workloads.yaml")
    rc, out, _ = cluster("apply", "--dry-run", "-f", workloads)
    assert rc == 0 and out.splitlines()[0] == "namespace/networking101 created (dry run)"
    rc, _, _ = cluster("get", "ns", "networking101")
    assert rc == 2


def test_delete_by_manifest_needs_only_identities(cluster: Run) -> None:
    good = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n"
    assert cluster("apply", "-f", "-", stdin=good)[0] == 0
    bad_fields = good + "data: {k: 1}\n"  # a number where a string belongs
    rc, out, err = cluster("delete", "-f", "-", stdin=bad_fields)
    assert (rc, out, err) == (0, 'configmap "a" deleted\n', "")
    rc, _, err = cluster("delete", "-f", "-", stdin="kind: ConfigMap\nmetadata: {name: a}\n")
    assert rc == 1 and "apiVersion: required value" in err


def test_scale_and_label(cluster: Run) -> None:
    cluster("apply", "-f", str(shared_examples() / "networking101/workloads.yaml"))
    rc, out, _ = cluster("scale", "deploy", "busybox", "--replicas=3", "-n", "networking101")
    assert (rc, out) == (0, "deployment.apps/busybox scaled\n")
    _, out, _ = cluster("get", "po", "-n", "networking101", "-l", "app=busybox", "-o", "name")
    assert len(out.splitlines()) == 3
    rc, _, err = cluster("scale", "svc", "kubernetes", "--replicas=2")
    assert rc == 1 and "cannot be scaled" in err
    rc, _, err = cluster("scale", "deploy", "nope", "--replicas=2")
    assert rc == 2 and 'deployments.apps "nope" not found' in err

    rc, out, _ = cluster("label", "ns", "networking101", "team=blue")
    assert (rc, out) == (0, "namespace/networking101 labeled\n")
    _, out, _ = cluster("get", "ns", "networking101", "--show-labels")
    assert "team=blue" in out.splitlines()[1] and out.splitlines()[0].endswith("LABELS")
    rc, _, err = cluster("label", "ns", "networking101", "team=red")
    assert rc == 1 and "--overwrite is false" in err
    assert cluster("label", "ns", "networking101", "team=red", "--overwrite")[0] == 0
    assert (
        cluster("label", "ns", "networking101", "team-")[1] == "namespace/networking101 labeled\n"
    )
    _, out, _ = cluster("get", "ns", "-l", "team", "-o", "name")
    assert out == ""
    rc, _, err = cluster("label", "ns", "networking101", "bad key=x")
    assert rc == 1 and "label key" in err


def test_concurrent_applies_never_share_a_cluster_ip(run: Run, state: Path, tmp_path: Path) -> None:
    """Admission reads free addresses, then writes: concurrent applies into a tiny
    service CIDR (/28: 14 addresses) must still never hand one address out twice."""
    import threading

    text = (shared_examples() / "cluster.yaml").read_text()
    small = tmp_path / "cluster.yaml"
    small.write_text(text.replace("serviceCIDR: 10.96.0.0/12", "serviceCIDR: 10.96.0.0/28"))
    assert run("cluster", "create", "-f", str(small))[0] == 0

    def services(prefix: str) -> str:
        return "".join(
            f"---\napiVersion: v1\nkind: Service\nmetadata: {{name: {prefix}-{i}}}\n"
            f"spec: {{type: NodePort, ports: [{{port: 80}}]}}\n"
            for i in range(4)
        )

    results: list[int] = []

    def apply(prefix: str) -> None:
        out, err = io.StringIO(), io.StringIO()
        ctx = Context(state_dir=state, stdout=out, stderr=err, stdin=io.StringIO(services(prefix)))
        results.append(main(["apply", "-f", "-"], ctx))

    threads = [threading.Thread(target=apply, args=(p,)) for p in ("a", "b", "c")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [0, 0, 0]
    _, out, _ = run("get", "svc", "-o", "json")
    items = json.loads(out)["items"]
    assert len(items) == 13
    ips = [i["spec"]["clusterIP"] for i in items]
    ports = [
        i["spec"]["ports"][0].get("nodePort") for i in items if i["spec"]["type"] == "NodePort"
    ]
    assert len(set(ips)) == 13 and len(set(ports)) == 12


def test_api_resources(run: Run) -> None:
    rc, out, _ = run("api-resources")
    assert rc == 0
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert rows["pods"] == ["pods", "po", "v1", "true", "Pod"]
    assert rows["ciliumnetworkpolicies"][1:] == ["cnp,ciliumnp", "cilium.io/v2", "true",
                                                 "CiliumNetworkPolicy"]  # fmt: skip


def test_diff(cluster: Run) -> None:
    services = (shared_examples() / "ebook/services.yaml").read_text()
    rc, out, _ = cluster("diff", "-f", "-", stdin=services)
    assert rc == 0 and "+++ merged/Service/default/my-service" in out
    cluster("apply", "-f", "-", stdin=services)
    assert cluster("diff", "-f", "-", stdin=services)[:2] == (0, "")
    rc, out, _ = cluster("diff", "-f", "-", stdin=services.replace("9376", "9377"))
    assert "-    targetPort: 9376\n+    targetPort: 9377\n" in out
    assert cluster("get", "svc", "my-service", "-o", "jsonpath={.spec.ports[0].targetPort}")[1] == (
        "9376"
    )


def test_pods_given_with_an_address_keep_it(cluster: Run) -> None:
    pod = (
        "apiVersion: v1\nkind: Pod\nmetadata: {name: fixed}\n"
        "spec:\n  nodeName: mycluster-worker\n  containers: [{name: c, image: busybox}]\n"
        "status:\n  podIP: 10.10.2.117\n"
    )
    assert cluster("apply", "-f", "-", stdin=pod)[0] == 0
    _, out, _ = cluster("get", "po", "fixed", "-o", "wide")
    assert out.splitlines()[1].split()[5:7] == ["10.10.2.117", "mycluster-worker"]
    assert cluster("apply", "-f", "-", stdin=pod)[1] == "pod/fixed unchanged\n"
