"""The examples of ../shared/examples/network-policy and ebook with their EXPECTED.md
behaviour, end to end through the CLI (``ciliate reach`` / ``policy explain``): model
datapath over the compiled maps, and the explain oracle for the same pairs.

Reach tables are also kept as golden files (``golden/*.txt``; ``--update-golden``
rewrites them). Generated pod names are stable (the ephemeral cluster seeds its RNG).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from _cli import run_cli

# Copies of ../shared/examples/{network-policy,ebook} (public manifests), so the suite
# runs from a fresh clone.
EXAMPLES = Path(__file__).resolve().parent / "examples"
NP = EXAMPLES / "network-policy"
EBOOK = EXAMPLES / "ebook"
GOLDEN = Path(__file__).parent / "golden"
HERE = Path(__file__).parent

pytestmark = pytest.mark.skipif(not NP.exists(), reason=f"examples not found at {NP}")


def run(*argv: str) -> tuple[int, str, str]:
    # Manifests only (-f): the state directory is never read or written.
    return run_cli(Path("/nonexistent-ciliate-state"), *argv)


def reach(files: list[Path], *extra: str) -> dict[str, Any]:
    args = ["reach", "-o", "json", *extra]
    for f in files:
        args += ["-f", str(f)]
    code, out, err = run(*args)
    assert code == 0, err
    doc: dict[str, Any] = json.loads(out)
    return doc


def explain(files: list[Path], src: str, dst: str, *extra: str) -> dict[str, Any]:
    args = ["policy", "explain", src, dst, "-o", "json", *extra]
    for f in files:
        args += ["-f", str(f)]
    code, out, err = run(*args)
    assert code == 0, err
    doc: dict[str, Any] = json.loads(out)
    # The oracle and the model datapath (compiled maps) must agree on every answer.
    assert doc["datapath"] is not None and doc["datapath"]["allowed"] == doc["allowed"], doc
    return doc


def app(pod: str) -> str:
    """frontend1 out of app1/frontend1-7db65b7f45-mtpxj."""
    return pod.split("/")[1].rsplit("-", 2)[0]


def table_of(doc: dict[str, Any]) -> str:
    pods = doc["pods"]
    lines = [f"{doc['port']}/{doc['protocol']}"]
    for a in pods:
        lines.append(a + " " + "".join("." if doc["matrix"][a][b] else "X" for b in pods))
    return "\n".join(lines) + "\n"


def golden(name: str, text: str, update: bool) -> None:
    path = GOLDEN / f"{name}.txt"
    if update or not path.exists():
        path.write_text(text)
    assert text == path.read_text(), f"golden {path} differs (run with --update-golden)"


def test_reach_json_shape_and_no_policy_allows_everything(update_golden: bool) -> None:
    doc = reach([NP / "apps.yaml"])
    assert list(doc) == ["port", "protocol", "pods", "matrix"]
    assert doc["port"] == 80 and doc["protocol"] == "TCP"
    assert len(doc["pods"]) == 8
    assert list(doc["matrix"]) == doc["pods"]
    assert all(list(doc["matrix"][a]) == doc["pods"] for a in doc["pods"])
    assert all(v for row in doc["matrix"].values() for v in row.values())
    golden("apps-no-policy", table_of(doc), update_golden)


def test_ingress_backend_rule(update_golden: bool) -> None:
    doc = reach([NP / "apps.yaml", NP / "ingress-backend-rule.yaml"])
    for a in doc["pods"]:
        for b in doc["pods"]:
            if a == b:
                continue
            want = app(b) != "backend1" or (app(a) == "frontend1")
            assert doc["matrix"][a][b] is want, (a, b)
    golden("ingress-backend-rule", table_of(doc), update_golden)


def test_egress_frontend_rule_and_both(update_golden: bool) -> None:
    doc = reach([NP / "apps.yaml", NP / "egress-frontend-rule.yaml"])
    for a in doc["pods"]:
        for b in doc["pods"]:
            if a != b:
                want = app(a) != "frontend1" or app(b) == "backend1"
                assert doc["matrix"][a][b] is want, (a, b)
    both = reach(
        [NP / "apps.yaml", NP / "ingress-backend-rule.yaml", NP / "egress-frontend-rule.yaml"]
    )
    for a in both["pods"]:
        for b in both["pods"]:
            if a == b:
                continue
            want = (app(b) != "backend1" or app(a) == "frontend1") and (
                app(a) != "frontend1" or app(b) == "backend1"
            )
            assert both["matrix"][a][b] is want, (a, b)
            # backend1 egress and frontend1 ingress stay open (EXPECTED.md)
            if app(a) == "backend1" and app(b) != "backend1":
                assert both["matrix"][a][b]
    golden("both-rules", table_of(both), update_golden)


def test_egress_frontend_rule_drops_dns() -> None:
    doc = reach([NP / "apps.yaml", NP / "egress-frontend-rule.yaml"])
    fe = next(p for p in doc["pods"] if app(p) == "frontend1")
    ex = explain(
        [NP / "apps.yaml", NP / "egress-frontend-rule.yaml"],
        fe,
        "10.96.0.10",
        "--port",
        "53",
        "--protocol",
        "UDP",
    )
    assert ex["allowed"] is False and ex["dropReason"] == 133
    assert (
        "default deny because CiliumNetworkPolicy app1/egress-frontend-rule"
        in (ex["egress"]["reason"])
    )


def test_http_aware_rule() -> None:
    files = [HERE / "frontends.yaml", NP / "http-aware-rule.yaml"]
    pub = reach(files, "--http", "GET /public")
    m = pub["matrix"]
    assert m["default/fe1"]["default/fe2"] and m["default/fe2"]["default/fe1"]
    assert not m["default/other"]["default/fe1"]
    assert m["default/fe1"]["default/other"]  # egress open, other is not selected
    for req in ("GET /private", "POST /public", "GET /public/x"):
        assert not reach(files, "--http", req)["matrix"]["default/fe1"]["default/fe2"], req
    assert not reach(files, "--port", "81")["matrix"]["default/fe1"]["default/fe2"]
    ex = explain(files, "default/fe1", "default/fe2", "--http", "GET /private")
    assert ex["httpStatus"] == 403 and not ex["allowed"]
    assert ex["datapath"]["allowed"] is False
    assert ex["ingress"]["decidedBy"][0]["rule"] == "spec.ingress[0]"
    assert ex["ingress"]["decidedBy"][0]["source"].endswith("http-aware-rule.yaml:11")
    ok = explain(files, "default/fe1", "default/fe2", "--http", "GET /public")
    assert ok["allowed"] and ok["ingress"]["redirect"]
    dropped = explain(files, "default/fe1", "default/fe2", "--port", "81")
    assert dropped["dropReason"] == 133


def tier(pod: str) -> str:
    return pod.split("/")[1].rsplit("-", 2)[0]


def test_ebook_three_tier(update_golden: bool) -> None:
    files = [EBOOK / "three-tier-policies.yaml", HERE / "three-tier-clients.yaml"]
    m6379 = reach(files, "--port", "6379")
    m = m6379["matrix"]
    pods = m6379["pods"]
    db = next(p for p in pods if tier(p) == "db")
    web = [p for p in pods if tier(p) == "web"]
    backend = [p for p in pods if tier(p) == "backend"]
    # db-access-ingress: web -> db blocked; backend -> db is allowed by db's ingress but
    # db-egress-denyall lets backend send only DNS and 3306 to 10.0.0.0/24.
    assert all(not m[w][db] for w in web)
    assert all(not m[b][db] for b in backend)
    ex = explain(files, backend[0], db, "--port", "6379")
    assert ex["ingress"]["allowed"] and not ex["egress"]["allowed"]
    assert ex["egress"]["selectedBy"][0]["name"] == "db-egress-denyall"
    # backend: DNS anywhere (UDP and TCP 53), 3306 to 10.0.0.0/24 only.
    assert explain(files, backend[0], "8.8.8.8", "--port", "53", "--protocol", "UDP")["allowed"]
    assert explain(files, backend[0], "8.8.8.8", "--port", "53")["allowed"]
    assert explain(files, backend[0], "10.0.0.7", "--port", "3306")["allowed"]
    assert not explain(files, backend[0], "10.0.1.7", "--port", "3306")["allowed"]
    assert not explain(files, backend[0], "10.0.0.7", "--port", "3307")["allowed"]
    # web-allow-internal-port80: web accepts 8080 only from mytestapp web-test-client.
    m8080 = reach(files, "--port", "8080")["matrix"]
    client = next(p for p in pods if p.startswith("myproject/test-client"))
    other = next(p for p in pods if p.startswith("myproject/stranger"))
    assert all(m8080[client][w] for w in web)
    assert all(not m8080[other][w] for w in web)
    assert not reach(files, "--port", "80")["matrix"][client][web[0]]
    golden("ebook-three-tier-6379", table_of(m6379), update_golden)


def test_ebook_redis_ipblock() -> None:
    files = [EBOOK / "redis-ingress-ipblock.yaml", HERE / "redis-clients.yaml"]
    doc = reach(files, "--port", "6379")
    m = doc["matrix"]
    assert m["default/frontend"]["default/redis"]  # podSelector peer
    assert m["myproject/anything"]["default/redis"]  # namespaceSelector peer
    assert not m["default/stranger"]["default/redis"]
    assert not m["other/frontend"]["default/redis"]  # podSelector is the policy's namespace
    assert not reach(files, "--port", "6380")["matrix"]["default/frontend"]["default/redis"]
    inside = explain(files, "172.17.0.5", "default/redis", "--port", "6379")
    assert inside["allowed"], inside
    excepted = explain(files, "172.17.1.5", "default/redis", "--port", "6379")
    assert not excepted["allowed"] and excepted["dropReason"] == 133
    # web-allow-all-access: from: [] allows everyone, on every port.
    assert reach(files, "--port", "9999")["matrix"]["default/stranger"]["default/web"]
