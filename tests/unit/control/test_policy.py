"""Policy compilation: Cilium policy semantics (cilium.md §6), each verdict checked
through the compiled maps (``probe_maps``: what the datapath does) AND the explain
oracle, plus map-level facts (provenance, CIDR identities, sharing, enforcement)."""

from __future__ import annotations

from typing import Any

import pytest

from ciliate.control.mapstate import DROP_POLICY, DROP_POLICY_DENY
from ciliate.control.policy import PolicyResult, compute_policy
from ciliate.control.reach import ClusterView, build_view, probe_maps
from ciliate.control.rules import DNS_PROXY_PORT, HTTP_PROXY_PORT
from ciliate.desired import LOCAL_IDENTITY_SCOPE, PolicyKey
from ciliate.model.cluster import ClusterConfig

Doc = dict[str, Any]


def ns(name: str, **labels: str) -> Doc:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def pod(key: str, ip: str = "", ports: tuple[tuple[str, int, str], ...] = (), **labels: str) -> Doc:
    n, name = key.split("/")
    d: Doc = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": n, "labels": labels},
        "spec": {
            "containers": [
                {
                    "name": "c",
                    "ports": [
                        {"name": pn, "containerPort": num, "protocol": proto}
                        for pn, num, proto in ports
                    ],
                }
            ]
        },
    }
    if ip:
        d["status"] = {"podIP": ip}
    return d


def cnp(name: str, namespace: str, spec: Doc, kind: str = "CiliumNetworkPolicy", **ann: str) -> Doc:
    meta: Doc = {"name": name}
    if kind == "CiliumNetworkPolicy":
        meta["namespace"] = namespace
    if ann:
        meta["annotations"] = ann
    return {"apiVersion": "cilium.io/v2", "kind": kind, "metadata": meta, "spec": spec}


def ccnp(name: str, spec: Doc) -> Doc:
    return cnp(name, "", spec, kind="CiliumClusterwideNetworkPolicy")


def np_(name: str, namespace: str, spec: Doc) -> Doc:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


BASE = [
    ns("x", team="red"),
    ns("y", team="blue"),
    pod("x/a", "10.10.0.10", (("http", 8080, "TCP"),), app="a"),
    pod("x/b", "10.10.0.11", app="b"),
    pod("y/a", "10.10.1.10", app="a"),
    pod("y/b", "10.10.1.11", app="b"),
]


class World:
    def __init__(self, docs: list[Doc], mode: str = "default") -> None:
        self.view: ClusterView = build_view(
            ClusterConfig("default", policy_enforcement=mode), BASE + docs
        )
        self.result: PolicyResult = compute_policy(self.view.inputs())
        self.ev = self.view.evaluator()

    def verdict(
        self,
        src: str,
        dst: str,
        port: int = 80,
        proto: str = "TCP",
        http: tuple[str, str] | None = None,
    ) -> tuple[bool, int]:
        """(allowed, reason) — asserting that maps and oracle agree."""
        m = probe_maps(self.view, self.result, src, dst, port, proto, http)
        ex = self.ev.explain(src, dst, port, proto, http)
        oracle = (ex.allowed, ex.drop_reason or ex.http_status)
        assert m == oracle, f"maps {m} != oracle {oracle}\n{ex.text()}"
        return m

    def ok(
        self,
        src: str,
        dst: str,
        port: int = 80,
        proto: str = "TCP",
        http: tuple[str, str] | None = None,
    ) -> bool:
        return self.verdict(src, dst, port, proto, http)[0]


def test_no_policy_allows_everything_with_allow_all_entries() -> None:
    w = World([])
    assert w.ok("x/a", "y/b") and w.ok("8.8.8.8", "x/a") and w.ok("x/a", "8.8.8.8")
    m = w.result.endpoints["x/a"].map
    assert PolicyKey(0, False) in m and PolicyKey(0, True) in m
    assert m[PolicyKey(0, False)].provenance[0].rule == "allow-any-ingress"


def test_cnp_from_endpoints_is_scoped_to_the_policy_namespace() -> None:
    w = World(
        [
            cnp(
                "p",
                "x",
                {
                    "endpointSelector": {"matchLabels": {"app": "a"}},
                    "ingress": [{"fromEndpoints": [{"matchLabels": {"app": "b"}}]}],
                },
            )
        ]
    )
    assert w.ok("x/b", "x/a")
    assert not w.ok("y/b", "x/a")  # same labels, other namespace
    assert w.ok("x/b", "y/a")  # the subject is x's pods only
    assert w.verdict("y/a", "x/a") == (False, DROP_POLICY)


def test_cnp_explicit_namespace_label_reaches_other_namespaces() -> None:
    w = World(
        [
            cnp(
                "p",
                "x",
                {
                    "endpointSelector": {},
                    "ingress": [
                        {
                            "fromEndpoints": [
                                {
                                    "matchLabels": {
                                        "k8s:io.kubernetes.pod.namespace": "y",
                                        "app": "b",
                                    }
                                }
                            ]
                        }
                    ],
                },
            )
        ]
    )
    assert w.ok("y/b", "x/a") and not w.ok("y/a", "x/a") and not w.ok("x/b", "x/a")


def test_ccnp_empty_selector_means_any_pod_not_world() -> None:
    w = World(
        [
            ccnp(
                "p",
                {
                    "endpointSelector": {"matchLabels": {"app": "a"}},
                    "ingress": [{"fromEndpoints": [{}]}],
                },
            )
        ]
    )
    assert w.ok("y/b", "x/a") and w.ok("x/b", "y/a")
    assert not w.ok("8.8.8.8", "x/a")


def test_ingress_empty_element_selects_nothing_but_enables_default_deny() -> None:
    w = World([cnp("p", "x", {"endpointSelector": {}, "ingress": [{}]})])
    assert not w.ok("x/b", "x/a") and not w.ok("y/a", "x/b")
    assert w.ok("x/a", "y/a")  # egress untouched
    assert w.ok("host", "x/a")  # allow-localhost
    m = w.result.endpoints["x/a"].map
    assert m[PolicyKey(1, False)].provenance[0].rule == "allow-localhost-ingress"
    assert w.result.endpoints["x/a"].ingress_enforced


def test_k8s_ingress_empty_rule_allows_all() -> None:
    w = World([np_("p", "x", {"podSelector": {}, "ingress": [{}]})])
    assert w.ok("y/a", "x/a", 1234, "UDP") and w.ok("8.8.8.8", "x/a")


def test_entities() -> None:
    w = World(
        [
            cnp(
                "p",
                "x",
                {
                    "endpointSelector": {"matchLabels": {"app": "a"}},
                    "ingress": [{"fromEntities": ["world"]}],
                    "egress": [{"toEntities": ["cluster"]}],
                },
            )
        ]
    )
    assert w.ok("8.8.8.8", "x/a") and not w.ok("x/b", "x/a")
    assert w.ok("x/a", "y/b") and not w.ok("x/a", "8.8.8.8")
    all_ = World([cnp("p", "x", {"endpointSelector": {}, "ingress": [{"fromEntities": ["all"]}]})])
    assert all_.ok("8.8.8.8", "x/a") and all_.ok("y/b", "x/b")
    assert all_.result.endpoints["x/a"].map[PolicyKey(0, False)].provenance[0].name == "p"


def test_deny_wins_across_policies() -> None:
    w = World(
        [
            np_("allow-all", "x", {"podSelector": {}, "ingress": [{}]}),
            ccnp(
                "deny-y",
                {
                    "endpointSelector": {"matchLabels": {"app": "a"}},
                    "ingressDeny": [
                        {
                            "fromEndpoints": [
                                {"matchLabels": {"k8s:io.kubernetes.pod.namespace": "y"}}
                            ],
                            "toPorts": [{"ports": [{"port": "80", "protocol": "TCP"}]}],
                        }
                    ],
                },
            ),
        ]
    )
    assert w.verdict("y/b", "x/a", 80) == (False, DROP_POLICY_DENY)
    assert w.ok("y/b", "x/a", 81)  # the deny is port-specific
    assert w.ok("x/b", "x/a", 80)


def test_deny_without_default_deny_keeps_the_rest_open() -> None:
    w = World(
        [
            cnp(
                "p",
                "x",
                {
                    "endpointSelector": {},
                    "enableDefaultDeny": {"ingress": False},
                    "ingressDeny": [{"fromEntities": ["world"]}],
                },
            )
        ]
    )
    assert not w.ok("8.8.8.8", "x/a") and w.ok("y/a", "x/a")
    assert not w.result.endpoints["x/a"].ingress_enforced


def test_to_ports_any_protocol_and_ranges() -> None:
    w = World(
        [
            cnp(
                "p",
                "x",
                {
                    "endpointSelector": {},
                    "ingress": [
                        {
                            "toPorts": [
                                {"ports": [{"port": "53", "protocol": "ANY"}]},
                                {"ports": [{"port": "8080", "endPort": 8083, "protocol": "TCP"}]},
                            ]
                        }
                    ],
                },
            )
        ]
    )
    for proto in ("TCP", "UDP", "SCTP"):
        assert w.ok("y/a", "x/a", 53, proto)
    assert all(w.ok("y/a", "x/a", p) for p in range(8080, 8084))
    assert not w.ok("y/a", "x/a", 8084) and not w.ok("y/a", "x/a", 8079)
    m = w.result.endpoints["x/a"].map
    assert PolicyKey(0, False, 6, 8080, 14) in m  # one aligned block


def test_named_port_resolves_per_destination_pod() -> None:
    w = World(
        [
            cnp(
                "p",
                "x",
                {
                    "endpointSelector": {},
                    "ingress": [{"toPorts": [{"ports": [{"port": "http", "protocol": "TCP"}]}]}],
                },
            )
        ]
    )
    assert w.ok("y/a", "x/a", 8080) and not w.ok("y/a", "x/b", 8080)
    e = World(
        [
            np_(
                "p",
                "y",
                {
                    "podSelector": {},
                    "policyTypes": ["Egress"],
                    "egress": [{"ports": [{"port": "http"}]}],
                },
            )
        ]
    )
    assert e.ok("y/a", "x/a", 8080) and not e.ok("y/a", "x/b", 8080)


def test_icmp_rules() -> None:
    w = World(
        [
            cnp(
                "p",
                "x",
                {
                    "endpointSelector": {},
                    "ingress": [{"icmps": [{"fields": [{"type": 8, "family": "IPv4"}]}]}],
                },
            )
        ]
    )
    assert w.ok("y/a", "x/a", 8, "ICMP") and not w.ok("y/a", "x/a", 0, "ICMP")
    assert not w.ok("y/a", "x/a", 80)


def test_cidr_set_with_except_and_cidr_identities() -> None:
    w = World(
        [
            cnp(
                "p",
                "x",
                {
                    "endpointSelector": {},
                    "egress": [
                        {"toCIDRSet": [{"cidr": "172.17.0.0/16", "except": ["172.17.1.0/24"]}]}
                    ],
                },
            )
        ]
    )
    assert w.ok("x/a", "172.17.0.9") and not w.ok("x/a", "172.17.1.9")
    assert not w.ok("x/a", "8.8.8.8")
    assert not w.ok("x/a", "10.10.1.10")  # CIDR rules never match pods
    ids = w.result.cidr_identities
    assert {str(n) for n in ids} == {"172.17.0.0/16", "172.17.1.0/24"}
    for net, ident in ids.items():
        assert ident.id & LOCAL_IDENTITY_SCOPE
        assert f"cidr:{net}" in ident.labels and "reserved:world" in ident.labels


def test_world_cidr_zero_matches_everything_outside() -> None:
    w = World(
        [
            np_(
                "p",
                "x",
                {
                    "podSelector": {},
                    "policyTypes": ["Egress"],
                    "egress": [
                        {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}]}
                    ],
                },
            )
        ]
    )
    assert w.ok("x/a", "8.8.8.8") and not w.ok("x/a", "10.1.2.3")


def test_to_services_selects_backends() -> None:
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "b", "namespace": "y"},
        "spec": {"selector": {"app": "b"}, "ports": [{"port": 80}]},
    }
    w = World(
        [
            svc,
            cnp(
                "p",
                "x",
                {
                    "endpointSelector": {},
                    "egress": [
                        {"toServices": [{"k8sService": {"serviceName": "b", "namespace": "y"}}]}
                    ],
                },
            ),
        ]
    )
    assert w.ok("x/a", "y/b") and not w.ok("x/a", "y/a") and not w.ok("x/a", "x/b")


def test_fqdn_is_stored_not_enforced_and_explain_says_so() -> None:
    w = World(
        [
            cnp(
                "p",
                "x",
                {
                    "endpointSelector": {},
                    "egress": [{"toFQDNs": [{"matchName": "api.example.com"}]}],
                },
            )
        ]
    )
    assert not w.ok("x/a", "93.184.216.34", 443)
    ex = w.ev.explain("x/a", "93.184.216.34", 443)
    assert any("not enforced yet" in n for n in ex.egress.notes)


def test_l7_http_and_dns_rules_become_redirects() -> None:
    w = World(
        [
            cnp(
                "p",
                "x",
                {
                    "endpointSelector": {"matchLabels": {"app": "a"}},
                    "ingress": [
                        {
                            "fromEndpoints": [{}],
                            "toPorts": [
                                {
                                    "ports": [{"port": "80", "protocol": "TCP"}],
                                    "rules": {"http": [{"method": "GET", "path": "/api/.*"}]},
                                }
                            ],
                        }
                    ],
                    "egress": [
                        {
                            "toEntities": ["all"],
                            "toPorts": [
                                {
                                    "ports": [{"port": "53", "protocol": "ANY"}],
                                    "rules": {"dns": [{"matchPattern": "*"}]},
                                }
                            ],
                        }
                    ],
                },
            )
        ]
    )
    m = w.result.endpoints["x/a"].map
    http = [e for k, e in m.items() if not k.egress and e.proxy_port]
    assert http and http[0].proxy_port == HTTP_PROXY_PORT and http[0].l7_rules[0].path == "/api/.*"
    dns = [e for k, e in m.items() if k.egress and e.proxy_port]
    assert dns and all(e.proxy_port == DNS_PROXY_PORT for e in dns)
    assert w.ok("x/b", "x/a", 80, http=("GET", "/api/v1"))
    assert w.verdict("x/b", "x/a", 80, http=("GET", "/other")) == (False, 403)
    assert w.verdict("x/b", "x/a", 80, http=("POST", "/api/v1")) == (False, 403)
    assert w.ok("x/a", "8.8.8.8", 53, "UDP")


def test_enforcement_modes() -> None:
    always = World([], mode="always")
    assert not always.ok("x/a", "y/a") and always.ok("host", "x/a")
    never = World(
        [
            cnp(
                "p",
                "x",
                {
                    "endpointSelector": {},
                    "ingress": [{}],
                    "ingressDeny": [{"fromEntities": ["all"]}],
                },
            )
        ],
        mode="never",
    )
    assert never.ok("y/a", "x/a") and never.ok("8.8.8.8", "x/b")


def test_provenance_names_policy_rule_and_line() -> None:
    lines = '{"spec.ingress[0]":12,"spec":5}'
    w = World(
        [
            cnp(
                "p",
                "x",
                {"endpointSelector": {}, "ingress": [{"fromEntities": ["world"]}]},
                **{"ciliate.io/source": "pol.yaml:1", "ciliate.io/source-lines": lines},
            )
        ]
    )
    entry = w.result.endpoints["x/a"].map[PolicyKey(2, False)]
    prov = entry.provenance[0]
    assert (prov.kind, prov.namespace, prov.name, prov.rule, prov.file, prov.line) == (
        "CiliumNetworkPolicy",
        "x",
        "p",
        "spec.ingress[0]",
        "pol.yaml",
        12,
    )
    ex = w.ev.explain("8.8.8.8", "x/a", 80)
    assert ex.ingress.decided_by[0].where == "pol.yaml:12"


def test_default_deny_explanation_names_the_policy() -> None:
    w = World([np_("lock", "x", {"podSelector": {"matchLabels": {"app": "a"}}})])
    ex = w.ev.explain("y/a", "x/a", 80)
    assert not ex.allowed and ex.drop_reason == DROP_POLICY
    assert ex.ingress.reason == (
        "no rule allows it; default deny because NetworkPolicy x/lock selects x/a for ingress"
    )


def test_pods_with_one_identity_share_one_compiled_map() -> None:
    docs = [pod(f"x/r{i}", f"10.10.2.{i + 1}", app="r") for i in range(5)]
    w = World([*docs, np_("p", "x", {"podSelector": {"matchLabels": {"app": "r"}}})])
    maps = {id(w.result.endpoints[f"x/r{i}"].map) for i in range(5)}
    assert len(maps) == 1


def test_ipblock_on_pods_requires_every_pod_of_the_identity_inside() -> None:
    docs = [pod("z/r1", "10.10.5.1", app="r"), pod("z/r2", "10.10.6.1", app="r"), ns("z")]
    pol = np_(
        "p",
        "x",
        {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.10.5.0/24"}}]}]},
    )
    w = World([*docs, pol])
    # r1 is inside, but r2 shares its identity and is outside: neither is allowed.
    assert not w.ok("z/r1", "x/a") and not w.ok("z/r2", "x/a")
    whole = World(
        [
            *docs,
            np_(
                "p",
                "x",
                {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.10.0.0/16"}}]}]},
            ),
        ]
    )
    assert whole.ok("z/r1", "x/a") and whole.ok("z/r2", "x/a")


@pytest.mark.parametrize("mode", ["default", "always"])
def test_host_is_allowed_into_enforced_pods(mode: str) -> None:
    w = World([np_("p", "x", {"podSelector": {}})], mode=mode)
    assert w.ok("host", "x/a")


def test_unusable_ports_never_widen_a_rule() -> None:
    # An IPv6-only icmps block or an unknown protocol selects nothing: the element
    # must not turn into an allow-everything L3 rule.
    w = World(
        [
            cnp(
                "p",
                "x",
                {
                    "endpointSelector": {},
                    "ingress": [
                        {
                            "fromEntities": ["all"],
                            "icmps": [{"fields": [{"type": 128, "family": "IPv6"}]}],
                        },
                        {
                            "fromEntities": ["all"],
                            "toPorts": [{"ports": [{"port": "80", "protocol": "VRRP"}]}],
                        },
                    ],
                },
            )
        ]
    )
    assert not w.ok("y/a", "x/a", 80) and not w.ok("y/a", "x/a", 128, "ICMP")
