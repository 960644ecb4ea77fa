"""An HTTP rule with ``host`` gives the same verdict in the model datapath, the compiled
maps (``reach``) and the rule-level oracle (``policy explain``): all three judge the
request's Host as the client sends it, the destination's address (``curl
http://<pod IP>/path``), so a host-specific rule can allow a request to one backend and
refuse it (403) to another pod of the same identity."""

from __future__ import annotations

import re
from typing import Any

import pytest

from ciliate.cli.cmd_policy import compute_reach, ephemeral_docs
from ciliate.control.reach import build_view, explain_matrix, reach_matrix
from ciliate.datapath.sim import probe

Doc = dict[str, Any]
GET = ("GET", "/public")


def pod(name: str, **labels: str) -> Doc:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "x", "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "nginx", "ports": [{"containerPort": 80}]}]},
    }


PODS = [pod("a", app="client"), pod("b1", app="web"), pod("b2", app="web")]


def http_policy(host: str) -> Doc:
    return {
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumNetworkPolicy",
        "metadata": {"name": "web-http", "namespace": "x"},
        "spec": {
            "endpointSelector": {"matchLabels": {"app": "web"}},
            "ingress": [
                {
                    "fromEndpoints": [{"matchLabels": {"app": "client"}}],
                    "toPorts": [
                        {
                            "ports": [{"port": "80", "protocol": "TCP"}],
                            "rules": {"http": [{"method": "GET", "path": "/public", "host": host}]},
                        }
                    ],
                }
            ],
        },
    }


def pod_ips(docs: list[Doc]) -> dict[str, str]:
    return {
        f"x/{d['metadata']['name']}": d["status"]["podIP"]
        for d in docs
        if d.get("kind") == "Pod" and (d.get("status") or {}).get("podIP")
    }


def b1_host() -> str:
    """A host pattern matching b1's address only (addresses come from the cluster's
    IPAM, so they are read from the same ephemeral cluster first)."""
    docs, _ = ephemeral_docs(PODS)
    return re.escape(pod_ips(docs)["x/b1"])


@pytest.mark.parametrize(
    ("host", "to_b1", "to_b2"),
    [
        (r"[0-9.]+", True, True),  # any address: Host "" (no host passed) would not match
        ("b1", None, None),  # placeholder: b1's own address, filled in below
        ("example\\.com", False, False),  # a name no probe sends
    ],
)
def test_host_specific_http_rule_same_verdict_everywhere(
    host: str, to_b1: bool | None, to_b2: bool | None
) -> None:
    if host == "b1":
        host, to_b1, to_b2 = b1_host(), True, False
    docs, cfg = ephemeral_docs([*PODS, http_policy(host)])
    model = compute_reach(docs, cfg, 80, "TCP", GET)
    view = build_view(cfg, docs)
    maps = reach_matrix(view, 80, "TCP", GET)
    oracle = explain_matrix(view, 80, "TCP", GET)
    assert model.allowed["x/a"]["x/b1"] is to_b1
    assert model.allowed["x/a"]["x/b2"] is to_b2
    assert maps.allowed == model.allowed
    assert oracle.allowed == model.allowed
    # The oracle's answer for the refused pair is the proxy's 403, as the model's walk.
    ev = view.evaluator()
    for b, ok in (("x/b1", to_b1), ("x/b2", to_b2)):
        ex = ev.explain("x/a", b, 80, "TCP", GET)
        assert ex.allowed is ok
        assert ex.http_status == (0 if ok else 403)
    # Without an HTTP request the rule is an L4 allow for every web pod.
    assert reach_matrix(view, 80, "TCP").allowed["x/a"] == {"x/a": True, "x/b1": True, "x/b2": True}


def test_model_sends_the_destination_address_as_host() -> None:
    """The premise of the test above: the model's request to b1 carries Host = b1's IP
    (a pattern matching only that address allows it)."""
    host = b1_host()
    docs, cfg = ephemeral_docs([*PODS, http_policy(host)])
    from ciliate.control.engine import compute_desired

    state = compute_desired(list(docs), cfg)
    assert probe(state, "x/a", "x/b1", 80, "tcp", GET).allowed
    r = probe(state, "x/a", "x/b2", 80, "tcp", GET)
    assert not r.allowed and r.status == 403
