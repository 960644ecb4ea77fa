"""The incremental PolicyCompiler: each update recompiles only the endpoints whose
selection or peers changed (counted here) and ends with exactly the maps a full
compilation of the new state gives."""

from __future__ import annotations

from typing import Any

from ciliate.control.explain import namespace_labels
from ciliate.control.identity import allocate_identities, pod_identity_labels
from ciliate.control.policy import PolicyCompiler, compute_policy
from ciliate.control.reach import build_view
from ciliate.desired import Identity
from ciliate.model.cluster import ClusterConfig
from ciliate.model.core import Namespace, Pod

Doc = dict[str, Any]
CFG = ClusterConfig("default")


def pod(key: str, ip: str, **labels: str) -> Doc:
    n, name = key.split("/")
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": n, "labels": labels},
        "spec": {"containers": [{"name": "c"}]},
        "status": {"podIP": ip},
    }


def np_(name: str, namespace: str, spec: Doc) -> Doc:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def ns(name: str, **labels: str) -> Doc:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def world() -> list[Doc]:
    docs: list[Doc] = [ns("x"), ns("y")]
    n = 1
    for namespace in ("x", "y"):
        for app in ("web", "api", "db"):
            for i in range(3):
                docs.append(pod(f"{namespace}/{app}-{i}", f"10.10.0.{n}", app=app))
                n += 1
    return docs


def full(docs: list[Doc]) -> dict[str, Any]:
    view = build_view(CFG, docs)
    return {
        k: (dict(v.map), v.ingress_enforced, v.egress_enforced)
        for k, v in compute_policy(view.inputs()).endpoints.items()
    }


def state(c: PolicyCompiler) -> dict[str, Any]:
    return {
        k: (dict(v.map), v.ingress_enforced, v.egress_enforced) for k, v in c.endpoints().items()
    }


def identity_of(p: Pod, namespaces: dict[str, Doc], existing: dict[int, Identity]) -> Identity:
    nsd = namespaces.get(p.meta.namespace)
    labels = pod_identity_labels(
        p, namespace_labels(Namespace.from_doc(nsd) if nsd else None, p.meta.namespace), "default"
    )
    pinned = {i.labels: i.id for i in existing.values() if i.id >= 256}
    return Identity(allocate_identities([labels], pinned)[labels], labels)


def test_policy_add_and_remove_recompile_only_selected_endpoints() -> None:
    docs = world()
    c = PolicyCompiler.from_inputs(build_view(CFG, docs).inputs())
    pol = np_(
        "db",
        "x",
        {
            "podSelector": {"matchLabels": {"app": "db"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "api"}}}]}],
        },
    )
    changed = c.set_policy(pol)
    assert changed == {"x/db-0", "x/db-1", "x/db-2"}
    assert state(c) == full([*docs, pol])
    assert c.remove_policy("NetworkPolicy", "x", "db") == changed
    assert state(c) == full(docs)


def test_pod_add_with_a_known_identity_compiles_nothing_else() -> None:
    docs = world()
    pol = np_(
        "db",
        "x",
        {
            "podSelector": {"matchLabels": {"app": "db"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "api"}}}]}],
        },
    )
    docs.append(pol)
    c = PolicyCompiler.from_inputs(build_view(CFG, docs).inputs())
    new = pod("x/api-9", "10.10.3.1", app="api")
    p = Pod.from_doc(new)
    changed = c.set_pod(p, identity_of(p, {"x": ns("x")}, c.identities), "10.10.3.1")
    assert changed == {"x/api-9"}
    assert state(c) == full([*docs, new])


def test_pod_with_a_new_identity_recompiles_the_rules_peering_with_it() -> None:
    docs = world()
    pol = np_(
        "db",
        "x",
        {
            "podSelector": {"matchLabels": {"app": "db"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"tier": "gold"}}}]}],
        },
    )
    docs.append(pol)
    c = PolicyCompiler.from_inputs(build_view(CFG, docs).inputs())
    new = pod("x/gold", "10.10.3.2", app="other", tier="gold")
    p = Pod.from_doc(new)
    changed = c.set_pod(p, identity_of(p, {"x": ns("x")}, c.identities), "10.10.3.2")
    assert changed == {"x/gold", "x/db-0", "x/db-1", "x/db-2"}
    assert state(c) == full([*docs, new])
    # and away again: the peers lose the identity
    assert c.remove_pod("x/gold") == {"x/db-0", "x/db-1", "x/db-2"}
    assert state(c) == full(docs)


def test_pod_label_change_moves_it_between_selections() -> None:
    docs = world()
    pol = np_("lock-web", "y", {"podSelector": {"matchLabels": {"app": "web"}}})
    docs.append(pol)
    c = PolicyCompiler.from_inputs(build_view(CFG, docs).inputs())
    relabeled = pod("y/api-0", "10.10.0.13", app="web")
    p = Pod.from_doc(relabeled)
    changed = c.set_pod(p, identity_of(p, {"y": ns("y")}, c.identities), "10.10.0.13")
    assert changed == {"y/api-0"}
    after = [
        d for d in docs if d["metadata"]["name"] != "api-0" or d["metadata"].get("namespace") != "y"
    ] + [relabeled]
    assert state(c) == full(after)
    assert c.endpoint("y/api-0") is not None and c.endpoint("y/api-0").ingress_enforced  # type: ignore[union-attr]


def test_namespace_label_change() -> None:
    docs = world()
    pol = np_(
        "from-team",
        "x",
        {
            "podSelector": {},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "blue"}}}]}],
        },
    )
    docs.append(pol)
    c = PolicyCompiler.from_inputs(build_view(CFG, docs).inputs())
    y_labeled = ns("y", team="blue")
    ypods = [
        Pod.from_doc(d) for d in docs if d["kind"] == "Pod" and d["metadata"]["namespace"] == "y"
    ]
    changed = c.set_namespace_pods(
        (p, identity_of(p, {"y": y_labeled}, c.identities)) for p in ypods
    )
    xpods = {f"x/{a}-{i}" for a in ("web", "api", "db") for i in range(3)}
    assert xpods <= changed  # the x pods gain peers
    after = [
        y_labeled if d["kind"] == "Namespace" and d["metadata"]["name"] == "y" else d for d in docs
    ]
    assert state(c) == full(after)


def test_service_changes_recompile_to_services_users() -> None:
    from ciliate.model.core import Service

    docs = world()
    cnp = {
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumNetworkPolicy",
        "metadata": {"name": "to-svc", "namespace": "x"},
        "spec": {
            "endpointSelector": {"matchLabels": {"app": "web"}},
            "egress": [{"toServices": [{"k8sService": {"serviceName": "s", "namespace": "y"}}]}],
        },
    }
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "s", "namespace": "y"},
        "spec": {"selector": {"app": "db"}, "ports": [{"port": 80}]},
    }
    docs += [cnp, svc]
    c = PolicyCompiler.from_inputs(build_view(CFG, docs).inputs())
    moved = {**svc, "spec": {"selector": {"app": "api"}, "ports": [{"port": 80}]}}
    changed = c.set_services([Service.from_doc(moved)], [])
    assert changed == {"x/web-0", "x/web-1", "x/web-2"}
    after = [moved if d is svc else d for d in docs]
    assert state(c) == full(after)


def test_new_identity_extends_maps_with_denies_named_ports_and_merged_rules() -> None:
    """A new identity's keys are layered over the peering endpoints' maps without
    recompiling them: with a deny toward it, a wildcard deny it falls under, an ingress
    named port and two policies giving it the same key (merged, provenance in policy
    order). The result is what a full compilation gives, and only the endpoints of the
    peering rules change."""

    def cnp(name: str, subject: str, spec: Doc) -> Doc:
        return {
            "apiVersion": "cilium.io/v2",
            "kind": "CiliumNetworkPolicy",
            "metadata": {"name": name, "namespace": "x"},
            "spec": {"endpointSelector": {"matchLabels": {"app": subject}}, **spec},
        }

    gold = {"matchLabels": {"tier": "gold"}}
    tcp = [{"ports": [{"port": "80", "protocol": "TCP"}]}]
    docs = world()
    for d in docs:
        if d["kind"] == "Pod" and d["metadata"]["labels"]["app"] == "db":
            d["spec"]["containers"][0]["ports"] = [{"name": "sql", "containerPort": 5432}]
    docs += [
        cnp("web-a", "web", {"ingress": [{"fromEndpoints": [gold], "toPorts": tcp}]}),
        cnp("web-b", "web", {"ingress": [{"fromEndpoints": [gold], "toPorts": tcp}]}),
        cnp(
            "api",
            "api",
            {
                "ingress": [{"fromEndpoints": [gold]}],
                "ingressDeny": [{"fromEndpoints": [gold], "toPorts": tcp}],
            },
        ),
        cnp(
            "db",
            "db",
            {
                "ingress": [
                    {
                        "fromEndpoints": [gold],
                        "toPorts": [{"ports": [{"port": "sql"}, {"port": "6500"}]}],
                    }
                ],
                # a wildcard deny: 6500 toward the new identity stays out
                "ingressDeny": [{"toPorts": [{"ports": [{"port": "6000", "endPort": 7000}]}]}],
            },
        ),
    ]
    c = PolicyCompiler.from_inputs(build_view(CFG, docs).inputs())
    before = state(c)
    new = pod("x/gold", "10.10.3.9", app="other", tier="gold")
    p = Pod.from_doc(new)
    changed = c.set_pod(p, identity_of(p, {"x": ns("x")}, c.identities), "10.10.3.9")
    peers = {f"x/{a}-{i}" for a in ("web", "api", "db") for i in range(3)}
    assert changed == {"x/gold"} | peers
    after = full([*docs, new])
    assert state(c) == after
    gold_id = c.pod_identity["x/gold"]
    for key in peers:
        added = {k for k in after[key][0] if k.identity == gold_id}
        assert added and set(after[key][0]) - added == set(before[key][0])
    web_keys = [e for k, e in after["x/web-0"][0].items() if k.identity == gold_id]
    assert [p.name for p in web_keys[0].provenance] == ["web-a", "web-b"]
    db_ports = {k.dport for k in after["x/db-0"][0] if k.identity == gold_id}
    assert db_ports == {5432}


def test_rule_index_follows_policy_changes_as_a_rebuild_would() -> None:
    """The compiler updates its rule index per policy change instead of rebuilding it;
    after adds, replacements and removals it must hold what indexing every rule anew
    gives (as multisets: list order is not part of the contract, rule order is)."""
    from ciliate.control.rule_index import RuleIndex, index_rules

    def cnp(name: str, spec: Doc) -> Doc:
        return {
            "apiVersion": "cilium.io/v2",
            "kind": "CiliumNetworkPolicy",
            "metadata": {"name": name, "namespace": "x"},
            "spec": {"endpointSelector": {"matchLabels": {"app": "web"}}, **spec},
        }

    def shape(d: RuleIndex) -> dict[str, Any]:
        def names(rs: list[Any]) -> list[tuple[str, int]]:
            return sorted((r.name, d.order[id(r)][1]) for r in rs)

        return {
            "peers": {k: names(v) for k, v in d.peers.items()},
            "peer_elems": {k: names([r for r, _e in v]) for k, v in d.peer_elems.items()},
            "subjects": {k: names(v) for k, v in d.subjects.items()},
            "order": sorted(d.order.values()),
            "cidrs": {k: sorted(map(str, v)) for k, v in d.cidrs.items()},
            "service_ns": {k: sorted(map(str, v)) for k, v in d.service_ns.items()},
            "named": {k: sorted(map(str, v)) for k, v in d.named.items()},
        }

    api = {"matchLabels": {"app": "api"}}
    docs = [*world(), cnp("a", {"ingress": [{"fromEndpoints": [api]}]})]
    c = PolicyCompiler.from_inputs(build_view(CFG, docs).inputs())
    c.set_pod(*_fresh(c, "x/gold-0", "10.10.3.1"))  # builds the index
    c.set_policy(
        cnp(
            "b",
            {
                "egress": [
                    {"toEndpoints": [api], "toPorts": [{"ports": [{"port": "web"}]}]},
                    {"toCIDRSet": [{"cidr": "10.10.0.0/16"}]},
                    {"toServices": [{"k8sService": {"serviceName": "s", "namespace": "y"}}]},
                ]
            },
        )
    )
    c.set_policy(
        np_(
            "np",
            "x",
            {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.10.0.0/24"}}]}]},
        )
    )
    c.set_policy(cnp("a", {"ingress": [{"fromEndpoints": [api, {}]}]}))  # replaced
    c.remove_policy("CiliumNetworkPolicy", "x", "b")
    kept = c._deps()
    fresh = index_rules((c._policy_pos[pid], rs) for pid, rs in c.rules.items())
    assert shape(kept) == shape(fresh)
    assert kept.order == {id(r): fresh.order[id(r)] for rs in c.rules.values() for r in rs}


def _fresh(c: PolicyCompiler, key: str, ip: str) -> tuple[Pod, Identity, str]:
    p = Pod.from_doc(pod(key, ip, app="other", tier="gold"))
    return p, identity_of(p, {"x": ns("x")}, c.identities), ip
