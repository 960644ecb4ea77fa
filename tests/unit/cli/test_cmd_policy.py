"""``ciliate reach`` / ``ciliate policy explain`` as a user runs them: shapes, flags and
exit codes (manifests only; no cluster state is touched)."""

from __future__ import annotations

import json
from pathlib import Path

from _cli import run_cli

MANIFEST = """\
apiVersion: v1
kind: Namespace
metadata: {name: x}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {pod: a}}
spec: {containers: [{name: c, image: nginx, ports: [{containerPort: 80}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: x, labels: {pod: b}}
spec: {containers: [{name: c, image: nginx}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: x}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, image: nginx}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: a-from-b, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress:
  - from: [{podSelector: {matchLabels: {pod: b}}}]
    ports: [{port: 80}]
"""


def run(tmp: Path, *argv: str) -> tuple[int, str, str]:
    return run_cli(tmp / "state", *argv)


def write(tmp: Path) -> str:
    p = tmp / "m.yaml"
    p.write_text(MANIFEST)
    return str(p)


def test_reach_json_includes_deployment_pods(tmp_path: Path) -> None:
    code, out, err = run(tmp_path, "reach", "-f", write(tmp_path), "-o", "json")
    assert code == 0, err
    doc = json.loads(out)
    assert list(doc) == ["port", "protocol", "pods", "matrix"]
    assert "x/a" in doc["pods"] and "x/b" in doc["pods"]
    assert sum(p.startswith("x/web-") for p in doc["pods"]) == 2
    assert doc["matrix"]["x/b"]["x/a"] is True
    web = next(p for p in doc["pods"] if p.startswith("x/web-"))
    assert doc["matrix"][web]["x/a"] is False and doc["matrix"]["x/a"]["x/a"] is True
    assert not (tmp_path / "state").exists()  # manifests only: no store was created


def test_reach_table_and_ports(tmp_path: Path) -> None:
    f = write(tmp_path)
    code, out, _ = run(tmp_path, "reach", "-f", f, "--port", "81", "-o", "table")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "Reachability 81/TCP (rows from, columns to):"
    row_b = next(line for line in lines if line.startswith("x/b "))
    assert "X" in row_b  # port 81 is not allowed into x/a


def test_explain_text_and_json(tmp_path: Path) -> None:
    f = write(tmp_path)
    code, out, _ = run(tmp_path, "policy", "explain", "x/b", "x/a", "--port", "80", "-f", f)
    assert code == 0 and out.startswith("x/b -> x/a 80/TCP: ALLOWED")
    assert "NetworkPolicy x/a-from-b spec.ingress[0] (" in out and "m.yaml:" in out
    code, out, _ = run(
        tmp_path, "policy", "explain", "x/b", "x/a", "--port", "81", "-f", f, "-o", "json"
    )
    doc = json.loads(out)
    assert doc["allowed"] is False and doc["dropReason"] == 133
    assert doc["datapath"] == {"allowed": False, "dropReason": 133}


def test_errors_and_exit_codes(tmp_path: Path) -> None:
    f = write(tmp_path)
    # The kernel datapath without -f probes the running cluster: none here -> exit 4
    # (also 4 when the kernel prober is missing or not root). With -f it would bring a
    # real cluster up: that is the privileged suite's job, not this unit test's.
    code, _, err = run(tmp_path, "reach", "--datapath", "kernel")
    assert code == 4, err
    code, _, err = run(tmp_path, "policy", "explain", "x/nope", "x/a", "-f", f)
    assert code == 2 and "x/nope" in err
    code, _, err = run(tmp_path, "reach", "-f", f, "--http", "GET")
    assert code == 1 and "METHOD /path" in err
    code, _, err = run(tmp_path, "reach", "-f", str(tmp_path / "missing.yaml"))
    assert code == 1 and "no such file" in err
