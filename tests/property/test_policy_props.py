"""Property tests of the policy engine over random pods and policies (hypothesis):

1. the compiled maps (as the datapath looks them up) and the rule-level oracle
   (``control.explain``) give the same verdict for every probe;
2. deny beats allow: a deny rule matching a flow drops it (181) whatever allows it;
3. adding an allow never removes allowed traffic (an allow rule added to a policy that
   already isolates the same pods in that direction);
4. the incremental compiler ends where a full compilation does.
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ciliate.control.mapstate import lookup
from ciliate.control.policy import PolicyCompiler, compute_policy
from ciliate.control.reach import build_view, probe_maps
from ciliate.model.cluster import ClusterConfig

Doc = dict[str, Any]
NAMESPACES = ("x", "y")
APPS = ("a", "b", "c")
EXTERNAL = ("8.8.8.8", "172.17.1.5", "172.17.0.5", "10.10.0.3")
PORTS = (80, 81, 443, 8080)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def pod(namespace: str, name: str, app: str, tier: str | None, ip: str) -> Doc:
    labels = {"app": app}
    if tier:
        labels["tier"] = tier
    # Container ports depend on the labels only, so pods of one identity agree on them.
    ports = [{"name": "web", "containerPort": 8080 if app == "a" else 80, "protocol": "TCP"}]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"containers": [{"name": "c", "ports": ports}]},
        "status": {"podIP": ip},
    }


@st.composite
def pods(draw: st.DrawFn) -> list[Doc]:
    n = draw(st.integers(min_value=2, max_value=7))
    out = []
    for i in range(n):
        out.append(
            pod(
                draw(st.sampled_from(NAMESPACES)),
                f"p{i}",
                draw(st.sampled_from(APPS)),
                draw(st.sampled_from([None, "1", "2"])),
                f"10.10.0.{10 + i}",
            )
        )
    return out


label_sel = st.one_of(
    st.just({}),
    st.builds(lambda a: {"matchLabels": {"app": a}}, st.sampled_from(APPS)),
    st.builds(
        lambda op, vs: {"matchExpressions": [{"key": "app", "operator": op, "values": vs}]},
        st.sampled_from(["In", "NotIn"]),
        st.lists(st.sampled_from(APPS), min_size=1, max_size=2, unique=True),
    ),
    st.builds(
        lambda op: {"matchExpressions": [{"key": "tier", "operator": op}]},
        st.sampled_from(["Exists", "DoesNotExist"]),
    ),
)
ns_sel = st.one_of(
    st.just({}),
    st.builds(
        lambda n: {"matchLabels": {"kubernetes.io/metadata.name": n}}, st.sampled_from(NAMESPACES)
    ),
)
cidr = st.sampled_from(["172.17.0.0/16", "10.10.0.0/24", "10.10.0.8/29", "0.0.0.0/0", "8.8.8.0/24"])


@st.composite
def k8s_peer(draw: st.DrawFn) -> Doc:
    kind = draw(st.sampled_from(["pod", "ns", "both", "ip"]))
    if kind == "pod":
        return {"podSelector": draw(label_sel)}
    if kind == "ns":
        return {"namespaceSelector": draw(ns_sel)}
    if kind == "both":
        return {"podSelector": draw(label_sel), "namespaceSelector": draw(ns_sel)}
    block: Doc = {"cidr": draw(cidr)}
    if draw(st.booleans()):
        block["except"] = [draw(st.sampled_from(["172.17.1.0/24", "10.10.0.12/30"]))]
    return {"ipBlock": block}


@st.composite
def k8s_port(draw: st.DrawFn) -> Doc:
    p: Doc = {}
    proto = draw(st.sampled_from([None, "TCP", "UDP"]))
    if proto:
        p["protocol"] = proto
    choice = draw(st.sampled_from(["num", "range", "name", "none"]))
    if choice == "num":
        p["port"] = draw(st.sampled_from(PORTS))
    elif choice == "range":
        p["port"] = 80
        p["endPort"] = draw(st.sampled_from([81, 443, 8080]))
    elif choice == "name":
        p["port"] = "web"
    return p


@st.composite
def k8s_rule(draw: st.DrawFn, field: str) -> Doc:
    r: Doc = {}
    if draw(st.booleans()):
        r[field] = draw(st.lists(k8s_peer(), min_size=1, max_size=2))
    if draw(st.booleans()):
        r["ports"] = draw(st.lists(k8s_port(), min_size=1, max_size=2))
    return r


@st.composite
def netpol(draw: st.DrawFn, i: int) -> Doc:
    spec: Doc = {"podSelector": draw(label_sel)}
    types = draw(st.sampled_from([["Ingress"], ["Egress"], ["Ingress", "Egress"], None]))
    if types is None or "Ingress" in types:
        spec["ingress"] = draw(st.lists(k8s_rule("from"), max_size=2))
    if types is not None:
        spec["policyTypes"] = types
        if "Egress" in types:
            spec["egress"] = draw(st.lists(k8s_rule("to"), max_size=2))
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": f"np{i}", "namespace": draw(st.sampled_from(NAMESPACES))},
        "spec": spec,
    }


@st.composite
def cilium_element(draw: st.DrawFn, prefix: str, deny: bool) -> Doc:
    e: Doc = {}
    peer = draw(st.sampled_from(["endpoints", "entities", "cidr", "none"]))
    if peer == "endpoints":
        sel = draw(label_sel)
        if draw(st.booleans()):
            sel = {
                **sel,
                "matchLabels": {
                    **sel.get("matchLabels", {}),
                    "k8s:io.kubernetes.pod.namespace": draw(st.sampled_from(NAMESPACES)),
                },
            }
        e[f"{prefix}Endpoints"] = [sel]
    elif peer == "entities":
        e[f"{prefix}Entities"] = draw(
            st.lists(st.sampled_from(["world", "cluster", "all", "host"]), min_size=1, max_size=2)
        )
    elif peer == "cidr":
        e[f"{prefix}CIDRSet"] = [
            {
                "cidr": draw(cidr),
                "except": draw(
                    st.lists(st.sampled_from(["172.17.1.0/24", "8.8.8.8/32"]), max_size=1)
                ),
            }
        ]
    if draw(st.booleans()) or peer == "none":
        ports = []
        for _ in range(draw(st.integers(min_value=1, max_value=2))):
            p: Doc = {
                "port": str(draw(st.sampled_from([*PORTS, 0, "web"]))),
                "protocol": draw(st.sampled_from(["TCP", "UDP", "ANY"])),
            }
            if draw(st.booleans()) and p["port"] == "80":
                p["endPort"] = 443
            ports.append(p)
        e["toPorts"] = [{"ports": ports}]
        if not deny and draw(st.integers(min_value=0, max_value=3)) == 0:
            e["toPorts"][0]["rules"] = {
                "http": draw(
                    st.sampled_from([[{"method": "GET", "path": "/a.*"}], [{}], [{"path": "/b"}]])
                )
            }
    return e


@st.composite
def cilium(draw: st.DrawFn, i: int, allow_deny: bool = True) -> Doc:
    clusterwide = draw(st.booleans())
    spec: Doc = {"endpointSelector": draw(label_sel)}
    for section, prefix, deny in (
        ("ingress", "from", False),
        ("egress", "to", False),
        ("ingressDeny", "from", True),
        ("egressDeny", "to", True),
    ):
        if deny and not allow_deny:
            continue
        if draw(st.integers(min_value=0, max_value=3)) == 0:
            spec[section] = draw(st.lists(cilium_element(prefix, deny), max_size=2))
    if draw(st.integers(min_value=0, max_value=4)) == 0:
        spec["enableDefaultDeny"] = {"ingress": draw(st.booleans()), "egress": draw(st.booleans())}
    meta: Doc = {"name": f"cnp{i}"}
    kind = "CiliumClusterwideNetworkPolicy" if clusterwide else "CiliumNetworkPolicy"
    if not clusterwide:
        meta["namespace"] = draw(st.sampled_from(NAMESPACES))
    return {"apiVersion": "cilium.io/v2", "kind": kind, "metadata": meta, "spec": spec}


@st.composite
def policies(draw: st.DrawFn) -> list[Doc]:
    n = draw(st.integers(min_value=0, max_value=4))
    return [draw(st.one_of(netpol(i), cilium(i))) for i in range(n)]


def probes(view: Any) -> list[tuple[str, str, int, str]]:
    keys = sorted(view.pod_identity)
    ends = [*keys, *EXTERNAL, "host"]
    out = []
    for a in ends:
        for b in keys:
            if a == b:
                continue
            for port in PORTS:
                out.append((a, b, port, "TCP"))
            out.append((a, b, 81, "UDP"))
        if a in keys:
            for ext in EXTERNAL[:3]:
                out.append((a, ext, 80, "TCP"))
    return out


def verdicts(docs: list[Doc], mode: str = "default") -> dict[tuple[str, str, int, str], bool]:
    view = build_view(ClusterConfig("default", policy_enforcement=mode), docs)
    result = compute_policy(view.inputs())
    ev = view.evaluator()
    out = {}
    for a, b, port, proto in probes(view):
        m = probe_maps(view, result, a, b, port, proto)
        ex = ev.explain(a, b, port, proto)
        for req in (("GET", "/ab"), ("POST", "/b")) if port == 80 and proto == "TCP" else ():
            mh = probe_maps(view, result, a, b, port, proto, req)
            eh = ev.explain(a, b, port, proto, req)
            assert mh == (eh.allowed, eh.drop_reason or eh.http_status), (
                f"{req}: maps {mh} != oracle {eh.allowed, eh.drop_reason or eh.http_status} "
                f"for {a}->{b}\n{eh.text()}\npolicies: {docs}"
            )
        assert m == (ex.allowed, ex.drop_reason), (
            f"maps {m} != oracle {(ex.allowed, ex.drop_reason)} for {a}->{b} {port}/{proto}\n"
            f"{ex.text()}\npolicies: {docs}"
        )
        out[(a, b, port, proto)] = m[0]
    return out


@SETTINGS
@given(pods(), policies(), st.sampled_from(["default", "default", "always", "never"]))
def test_compiled_maps_agree_with_the_oracle(ps: list[Doc], pols: list[Doc], mode: str) -> None:
    verdicts(ps + pols, mode)


@SETTINGS
@given(pods(), policies(), st.data())
def test_deny_beats_allow(ps: list[Doc], pols: list[Doc], data: st.DataObject) -> None:
    src = data.draw(st.sampled_from(ps))
    dst = data.draw(st.sampled_from(ps))
    port = data.draw(st.sampled_from(PORTS))
    deny = {
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumClusterwideNetworkPolicy",
        "metadata": {"name": "zz-deny"},
        "spec": {
            "endpointSelector": {
                "matchLabels": dict(dst["metadata"]["labels"])
                | {"k8s:io.kubernetes.pod.namespace": dst["metadata"]["namespace"]}
            },
            "ingressDeny": [
                {
                    "fromEndpoints": [
                        {
                            "matchLabels": dict(src["metadata"]["labels"])
                            | {"k8s:io.kubernetes.pod.namespace": src["metadata"]["namespace"]}
                        }
                    ],
                    "toPorts": [{"ports": [{"port": str(port), "protocol": "TCP"}]}],
                }
            ],
        },
    }
    a = f"{src['metadata']['namespace']}/{src['metadata']['name']}"
    b = f"{dst['metadata']['namespace']}/{dst['metadata']['name']}"
    if a == b:
        return
    view = build_view(ClusterConfig("default"), [*ps, *pols, deny])
    result = compute_policy(view.inputs())
    assert probe_maps(view, result, a, b, port, "TCP")[0] is False
    # whatever the egress side did, the ingress stage drops it with the deny reason
    ingress = lookup(result.endpoints[b].map, view.pod_identity[a], False, 6, port)
    assert (ingress.allowed, ingress.drop_reason) == (False, 181)
    assert view.evaluator().explain(a, b, port, "TCP").ingress.drop_reason == 181


@SETTINGS
@given(pods(), policies(), st.data())
def test_adding_an_allow_never_removes_traffic(
    ps: list[Doc], pols: list[Doc], data: st.DataObject
) -> None:
    if not pols:
        return
    before = verdicts(ps + pols)
    base = data.draw(st.sampled_from(pols))
    extra = copy.deepcopy(base)
    extra["metadata"]["name"] += "-more"
    spec = extra["spec"]
    # Same subject and the same directions: only allow elements are added.
    for key in ("ingressDeny", "egressDeny"):
        spec.pop(key, None)
    if extra["kind"] == "NetworkPolicy":
        for field, peer in (("ingress", "from"), ("egress", "to")):
            if field in spec:
                spec[field] = data.draw(st.lists(k8s_rule(peer), max_size=2))
    else:
        for field, prefix in (("ingress", "from"), ("egress", "to")):
            if field in spec:
                spec[field] = data.draw(st.lists(cilium_element(prefix, False), max_size=2))
        dd = spec.get("enableDefaultDeny") or {}
        spec["enableDefaultDeny"] = {k: False for k in ("ingress", "egress")} | {
            k: v for k, v in dd.items() if not v
        }
    after = verdicts([*ps, *pols, extra])
    lost = [k for k, v in before.items() if v and not after[k]]
    assert not lost, (lost, extra)


@settings(max_examples=30, deadline=None)
@given(pods(), policies(), policies())
def test_incremental_equals_full(ps: list[Doc], old: list[Doc], new: list[Doc]) -> None:
    cfg = ClusterConfig("default")
    c = PolicyCompiler.from_inputs(build_view(cfg, ps + old).inputs())
    for d in old:
        m = d["metadata"]
        c.remove_policy(d["kind"], m.get("namespace", ""), m["name"])
    for d in new:
        c.set_policy(d)
    want = compute_policy(build_view(cfg, ps + new).inputs())
    got = c.result()
    assert {k: dict(v.map) for k, v in got.endpoints.items()} == {
        k: dict(v.map) for k, v in want.endpoints.items()
    }


@settings(max_examples=40, deadline=None)
@given(pods(), policies(), st.data())
def test_incremental_pod_changes_equal_full(
    ps: list[Doc], pols: list[Doc], data: st.DataObject
) -> None:
    from ciliate.control.explain import namespace_labels
    from ciliate.control.identity import allocate_identities, pod_identity_labels
    from ciliate.desired import Identity
    from ciliate.model.core import Pod

    cfg = ClusterConfig("default")
    c = PolicyCompiler.from_inputs(build_view(cfg, ps + pols).inputs())
    current = {f"{d['metadata']['namespace']}/{d['metadata']['name']}": d for d in ps}
    for step in range(3):
        if current and data.draw(st.booleans()):
            key = data.draw(st.sampled_from(sorted(current)))
            del current[key]
            c.remove_pod(key)
        else:
            d = pod(
                data.draw(st.sampled_from(NAMESPACES)),
                data.draw(st.sampled_from([*(k.split("/")[1] for k in current), f"n{step}"])),
                data.draw(st.sampled_from(APPS)),
                data.draw(st.sampled_from([None, "1"])),
                data.draw(st.sampled_from(["10.10.0.9", "10.10.0.40", "172.17.0.9"])),
            )
            key = f"{d['metadata']['namespace']}/{d['metadata']['name']}"
            if any(
                x["status"]["podIP"] == d["status"]["podIP"] for k, x in current.items() if k != key
            ):
                continue
            current[key] = d
            p = Pod.from_doc(d)
            labels = pod_identity_labels(p, namespace_labels(None, p.meta.namespace), "default")
            pinned = {i.labels: i.id for i in c.identities.values() if i.id >= 256}
            c.set_pod(
                p,
                Identity(allocate_identities([labels], pinned)[labels], labels),
                d["status"]["podIP"],
            )
        want = compute_policy(build_view(cfg, [*current.values(), *pols]).inputs())
        got = c.result()
        assert {k: dict(v.map) for k, v in got.endpoints.items()} == {
            k: dict(v.map) for k, v in want.endpoints.items()
        }, step


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pods(), policies(), st.sampled_from([(80, "TCP"), (8080, "TCP"), (81, "UDP")]))
def test_model_datapath_agrees_with_compiled_maps(
    ps: list[Doc], pols: list[Doc], probe: tuple[int, str]
) -> None:
    """The whole path (controllers -> engine -> DesiredState -> sim walk) gives the
    matrix that the compiled maps give."""
    from ciliate.cli.cmd_policy import compute_reach, ephemeral_docs
    from ciliate.control.reach import reach_matrix

    docs, cfg = ephemeral_docs([*ps, *pols])
    port, proto = probe
    sim = compute_reach(docs, cfg, port, proto, None)
    maps = reach_matrix(build_view(cfg, docs), port, proto)
    assert len(sim.pods) == len(ps) and sim.pods == maps.pods  # nobody dropped on the way
    wrong = [(a, b) for a in sim.pods for b in sim.pods if sim.allowed[a][b] != maps.allowed[a][b]]
    assert not wrong, (wrong, pols)
