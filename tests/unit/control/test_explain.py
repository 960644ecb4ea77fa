"""The explain oracle's answers: verdict, the policies selecting each side, the rule
that decided (kind, ns/name, rule path, file:line), the default-deny sentence, L7."""

from __future__ import annotations

from typing import Any

from ciliate.control.explain import Evaluator
from ciliate.model.cluster import ClusterConfig
from ciliate.model.core import Namespace, Pod

Doc = dict[str, Any]


def pod(key: str, ip: str, **labels: str) -> Pod:
    n, name = key.split("/")
    return Pod.from_doc(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": n, "labels": labels},
            "spec": {"containers": [{"name": "c"}]},
            "status": {"podIP": ip},
        }
    )


NS = [Namespace.from_doc({"kind": "Namespace", "metadata": {"name": n}}) for n in ("a", "b")]
PODS = [
    pod("a/web", "10.0.0.1", app="web"),
    pod("a/db", "10.0.0.2", app="db"),
    pod("b/cli", "10.0.1.1", app="cli"),
]
SRC = {
    "ciliate.io/source": "p.yaml:3",
    "ciliate.io/source-lines": '{"spec":7,"spec.ingress[0]":9,"spec.ingressDeny[0]":14}',
}


def ev(*policies: Doc, mode: str = "default") -> Evaluator:
    return Evaluator(ClusterConfig("default", policy_enforcement=mode), NS, PODS, list(policies))


def cnp(spec: Doc) -> Doc:
    return {
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumNetworkPolicy",
        "metadata": {"name": "db", "namespace": "a", "annotations": SRC},
        "spec": spec,
    }


def test_unselected_pods_are_open() -> None:
    ex = ev().explain("a/web", "a/db", 5432)
    assert ex.allowed and ex.verdict == "ALLOWED"
    assert ex.egress.decided_by[0].rule == "allow-any-egress"
    assert ex.ingress.decided_by[0].rule == "allow-any-ingress"


def test_allowed_by_a_rule_with_its_source_line() -> None:
    e = ev(
        cnp(
            {
                "endpointSelector": {"matchLabels": {"app": "db"}},
                "ingress": [{"fromEndpoints": [{"matchLabels": {"app": "web"}}]}],
            }
        )
    )
    ex = e.explain("a/web", "a/db", 5432)
    assert ex.allowed
    assert [str(r) for r in ex.ingress.selected_by] == ["CiliumNetworkPolicy a/db spec (p.yaml:7)"]
    assert str(ex.ingress.decided_by[0]) == "CiliumNetworkPolicy a/db spec.ingress[0] (p.yaml:9)"
    js = ex.to_json()
    assert js["ingress"]["decidedBy"][0] == {
        "kind": "CiliumNetworkPolicy",
        "namespace": "a",
        "name": "db",
        "rule": "spec.ingress[0]",
        "source": "p.yaml:9",
    }


def test_default_deny_sentence() -> None:
    e = ev(
        cnp(
            {
                "endpointSelector": {"matchLabels": {"app": "db"}},
                "ingress": [{"fromEndpoints": [{"matchLabels": {"app": "web"}}]}],
            }
        )
    )
    ex = e.explain("b/cli", "a/db", 5432)
    assert not ex.allowed and ex.drop_reason == 133
    assert ex.verdict == "DROPPED (Policy denied, 133)"
    assert ex.ingress.reason == (
        "no rule allows it; default deny because CiliumNetworkPolicy a/db selects a/db for ingress"
    )
    assert "no rule allows it" in ex.text()


def test_deny_names_the_deny_rule() -> None:
    e = ev(
        cnp(
            {
                "endpointSelector": {},
                "ingress": [{"fromEntities": ["all"]}],
                "ingressDeny": [{"fromEntities": ["world"]}],
            }
        )
    )
    ex = e.explain("8.8.8.8", "a/db", 5432)
    assert ex.drop_reason == 181 and ex.verdict == "DROPPED (Policy denied by denylist, 181)"
    assert ex.ingress.decided_by[0].rule == "spec.ingressDeny[0]"
    assert ex.ingress.decided_by[0].where == "p.yaml:14"


def test_endpoints_by_ip_host_and_world() -> None:
    e = ev()
    assert e.endpoint("10.0.0.2").name == "a/db"
    assert e.endpoint("host").kind == "host"
    assert e.endpoint("1.2.3.4").kind == "world"
    ex = e.explain("a/web", "1.2.3.4", 443)
    assert ex.ingress.reason == "1.2.3.4 has no ingress policy"


def test_http_rules() -> None:
    e = ev(
        cnp(
            {
                "endpointSelector": {"matchLabels": {"app": "db"}},
                "ingress": [
                    {
                        "toPorts": [
                            {
                                "ports": [{"port": "80", "protocol": "TCP"}],
                                "rules": {"http": [{"method": "GET", "path": "/ok"}]},
                            }
                        ]
                    }
                ],
            }
        )
    )
    ok = e.explain("a/web", "a/db", 80, http=("GET", "/ok"))
    assert ok.allowed and ok.ingress.redirect
    bad = e.explain("a/web", "a/db", 80, http=("GET", "/nope"))
    assert not bad.allowed and bad.http_status == 403
    assert bad.verdict == "DENIED (HTTP 403 by the proxy)"
    assert "redirected to the L7 proxy: http GET /ok" in bad.text()


def test_same_pod_is_always_allowed() -> None:
    e = ev(cnp({"endpointSelector": {}, "ingress": [{}], "egress": [{}]}))
    assert e.explain("a/db", "a/db", 1).allowed
    assert not e.explain("a/web", "a/db", 1).allowed
