"""Admission of Services (cluster IPs, node ports, defaults) and EndpointSlices."""

from __future__ import annotations

import random
from ipaddress import IPv4Address, IPv4Network
from typing import Any

import pytest

from ciliate.controllers.admission import admit, allocate_cluster_ip, allocate_node_port
from ciliate.controllers.endpointslices import compute_endpointslices, resolve_ports
from ciliate.controllers.reconcile import reconcile
from ciliate.controllers.snapshot import Snapshot
from ciliate.errors import DiagnosticError
from ciliate.store.api import Change, ObjectKey


def service(name: str, type_: str = "ClusterIP", selector: Any = "default", **spec: Any):
    ports = spec.pop("ports", [{"port": 80, "targetPort": 8080}])
    s: dict[str, Any] = {"type": type_, "ports": ports, **spec}
    if selector == "default":
        s["selector"] = {"app": name}
    elif selector is not None:
        s["selector"] = selector
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": s,
    }


def pod(name: str, app: str, ports: list[Any] | None = None) -> dict[str, Any]:
    c: dict[str, Any] = {"name": "c", "image": "x"}
    if ports:
        c["ports"] = ports
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": app}},
        "spec": {"containers": [c]},
    }


def svc(store, name: str) -> dict[str, Any]:
    s = store.get(ObjectKey("Service", "default", name))
    assert s is not None
    return s


def slices(store, name: str) -> list[dict[str, Any]]:
    return [
        s
        for s in store.list("EndpointSlice", "default")
        if s["metadata"]["labels"].get("kubernetes.io/service-name") == name
    ]


# --- admission --------------------------------------------------------------------


def test_cluster_ip_is_allocated_inside_the_range_and_kept(example_cluster, apply):
    apply([service("web")])
    ip = svc(example_cluster, "web")["spec"]["clusterIP"]
    net = IPv4Network("10.96.0.0/12")
    assert IPv4Address(ip) in net and ip not in ("10.96.0.0", "10.96.0.1")
    s = svc(example_cluster, "web")["spec"]
    assert s["clusterIPs"] == [ip]
    assert s["ports"][0]["protocol"] == "TCP"
    assert s["sessionAffinity"] == "None"
    assert svc(example_cluster, "web")["status"] == {"loadBalancer": {}}
    apply([service("web")])  # re-apply without clusterIP keeps it
    assert svc(example_cluster, "web")["spec"]["clusterIP"] == ip


def test_allocation_is_order_independent(example_config, new_store):
    a, b = service("a"), service("b")
    one = admit([a, b], new_store(), example_config)
    two = admit([b, a], new_store(), example_config)
    assert {d["metadata"]["name"]: d["spec"]["clusterIP"] for d in one} == {
        d["metadata"]["name"]: d["spec"]["clusterIP"] for d in two
    }


def test_cluster_ip_outside_the_range_uses_kubernetes_wording(
    example_cluster, example_config, examples_dir, read_docs
):
    docs = read_docs(examples_dir / "ebook" / "services-fixed-ip.yaml")
    for d in docs:
        d["metadata"].setdefault("namespace", "default")

    def locate(i: int, path: str) -> tuple[str, int, int]:
        return ("services-fixed-ip.yaml", 14 if path == "spec.clusterIP" else 1, 3)

    with pytest.raises(DiagnosticError) as e:
        admit(docs, example_cluster, example_config, locate)
    (d,) = e.value.diagnostics
    assert d.render() == (
        "services-fixed-ip.yaml:14:3: Service default/my-fixed-lb-service: spec.clusterIP: "
        'Invalid value: "10.0.171.239": provided IP is not in the valid range. '
        "The range of valid IPs is 10.96.0.0/12"
    )


def test_cluster_ip_taken_by_another_service(example_cluster, apply):
    apply([service("a", clusterIP="10.96.0.10")])
    with pytest.raises(DiagnosticError) as e:
        apply([service("b", clusterIP="10.96.0.10")])
    assert e.value.diagnostics[0].reason == (
        'Invalid value: "10.96.0.10": provided IP is already allocated'
    )
    # The kubernetes service's address is taken too.
    with pytest.raises(DiagnosticError):
        apply([service("c", clusterIP="10.96.0.1")])


def test_explicit_ip_later_in_the_batch_wins_over_allocation(example_config, new_store):
    net = IPv4Network("10.96.0.0/12")
    wanted = allocate_cluster_ip(net, "default/auto", {})
    out = admit([service("auto"), service("fixed", clusterIP=wanted)], new_store(), example_config)
    ips = {d["metadata"]["name"]: d["spec"]["clusterIP"] for d in out}
    assert ips["fixed"] == wanted and ips["auto"] != wanted


def test_cluster_ip_is_immutable(example_cluster, apply):
    apply([service("a", clusterIP="10.96.0.10")])
    with pytest.raises(DiagnosticError) as e:
        apply([service("a", clusterIP="10.96.0.11")])
    assert "field is immutable" in e.value.diagnostics[0].reason


def test_headless_and_external_name(example_cluster, apply):
    apply(
        [
            service("h", clusterIP="None"),
            service("x", type_="ExternalName", selector=None, externalName="example.com", ports=[]),
        ]
    )
    h = svc(example_cluster, "h")["spec"]
    assert h["clusterIP"] == "None" and h["clusterIPs"] == ["None"]
    x = svc(example_cluster, "x")["spec"]
    assert "clusterIP" not in x and "clusterIPs" not in x
    assert slices(example_cluster, "x") == []


def test_node_ports_allocated_in_range_explicit_honored(example_cluster, apply):
    apply(
        [
            service("np", type_="NodePort", ports=[{"port": 80}, {"port": 443, "nodePort": 31814}]),
            service("lb", type_="LoadBalancer", loadBalancerIP="78.11.24.19"),
        ]
    )
    ports = svc(example_cluster, "np")["spec"]["ports"]
    assert ports[1]["nodePort"] == 31814
    assert 30000 <= ports[0]["nodePort"] <= 32767 and ports[0]["nodePort"] != 31814
    assert ports[0]["targetPort"] == 80
    lb = svc(example_cluster, "lb")
    assert 30000 <= lb["spec"]["ports"][0]["nodePort"] <= 32767
    assert lb["spec"]["loadBalancerIP"] == "78.11.24.19"
    assert lb["status"] == {"loadBalancer": {}}
    assert lb["spec"]["externalTrafficPolicy"] == "Cluster"
    before = ports[0]["nodePort"]
    apply([service("np", type_="NodePort", ports=[{"port": 80}, {"port": 443, "nodePort": 31814}])])
    assert svc(example_cluster, "np")["spec"]["ports"][0]["nodePort"] == before


def test_node_port_collision_uses_kubernetes_wording(example_cluster, apply):
    apply([service("a", type_="NodePort", ports=[{"port": 80, "nodePort": 31814}])])
    with pytest.raises(DiagnosticError) as e:
        apply([service("b", type_="NodePort", ports=[{"port": 80, "nodePort": 31814}])])
    (d,) = e.value.diagnostics
    assert f"{d.path}: {d.reason}" == (
        "spec.ports[0].nodePort: Invalid value: 31814: provided port is already allocated"
    )


def test_node_port_out_of_range_and_on_cluster_ip(example_cluster, apply):
    with pytest.raises(DiagnosticError) as e:
        apply(
            [
                service("a", type_="NodePort", ports=[{"port": 80, "nodePort": 80}]),
                service("b", ports=[{"port": 80, "nodePort": 30080}]),
            ]
        )
    reasons = [d.reason for d in e.value.diagnostics]
    assert reasons == [
        "Invalid value: 80: provided port is not in the valid range. "
        "The range of valid ports is 30000-32767",
        "Forbidden: may not be used when `type` is 'ClusterIP'",
    ]
    assert example_cluster.get(ObjectKey("Service", "default", "a")) is None


def test_allocators_skip_taken_values():
    net = IPv4Network("10.96.0.0/28")  # small: no dynamic band
    taken: dict[IPv4Address, str] = {}
    got = set()
    for i in range(13):  # 16 - network - broadcast - kubernetes
        ip = allocate_cluster_ip(net, f"ns/s{i}", taken)
        assert ip and ip not in ("10.96.0.0", "10.96.0.1", "10.96.0.15")
        taken[IPv4Address(ip)] = "x"
        got.add(ip)
    assert len(got) == 13
    assert allocate_cluster_ip(net, "ns/full", taken) == ""
    ports: dict[int, str] = {}
    for i in range(11):
        p = allocate_node_port(30000, 30010, "ns/s", i, ports)
        assert 30000 <= p <= 30010 and p not in ports
        ports[p] = "x"
    assert allocate_node_port(30000, 30010, "ns/s", 99, ports) == 0


def test_namespace_gets_its_name_label(example_config, new_store):
    (ns,) = admit(
        [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}}],
        new_store(),
        example_config,
    )
    assert ns["metadata"]["labels"] == {"kubernetes.io/metadata.name": "team-a"}


# --- endpointslices ---------------------------------------------------------------


def test_endpointslice_lists_ready_pods_with_named_target_port(example_cluster, apply):
    web_ports = [{"name": "http", "containerPort": 8080}]
    apply(
        [
            service("web", ports=[{"name": "web", "port": 80, "targetPort": "http"}]),
            pod("web-a", "web", web_ports),
            pod("web-b", "web", web_ports),
            pod("other", "db"),
        ]
    )
    (sl,) = slices(example_cluster, "web")
    assert sl["metadata"]["name"].startswith("web-") and len(sl["metadata"]["name"]) == 9
    assert sl["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == (
        "endpointslice-controller.k8s.io"
    )
    assert sl["addressType"] == "IPv4"
    assert sl["ports"] == [{"name": "web", "port": 8080, "protocol": "TCP"}]
    eps = sl["endpoints"]
    assert [e["targetRef"]["name"] for e in eps] == ["web-a", "web-b"]
    for e in eps:
        p = example_cluster.get(ObjectKey("Pod", "default", e["targetRef"]["name"]))
        assert e["addresses"] == [p["status"]["podIP"]]
        assert e["nodeName"] == p["spec"]["nodeName"]
        assert e["conditions"] == {"ready": True, "serving": True, "terminating": False}
        assert e["targetRef"]["uid"] == p["metadata"]["uid"]
    assert sl["metadata"]["ownerReferences"][0]["kind"] == "Service"


def test_pods_resolving_a_named_port_differently_get_separate_slices(example_cluster, apply):
    apply(
        [
            service("web", ports=[{"port": 80, "targetPort": "http"}]),
            pod("web-a", "web", [{"name": "http", "containerPort": 8080}]),
            pod("web-b", "web", [{"name": "http", "containerPort": 9090}]),
        ]
    )
    got = sorted(
        (s["ports"][0]["port"], [e["targetRef"]["name"] for e in s["endpoints"]])
        for s in slices(example_cluster, "web")
    )
    assert got == [(8080, ["web-a"]), (9090, ["web-b"])]


def test_slices_follow_pods_and_go_with_the_service(example_cluster, apply, example_config):
    apply([service("web"), pod("web-a", "web")])
    (sl,) = slices(example_cluster, "web")
    name = sl["metadata"]["name"]
    apply([pod("web-b", "web")])
    (sl,) = slices(example_cluster, "web")
    assert sl["metadata"]["name"] == name  # reused, not re-created
    assert len(sl["endpoints"]) == 2
    example_cluster.apply([Change(ObjectKey("Pod", "default", "web-a"), None)])
    reconcile(example_cluster, example_config, random.Random(0))
    (sl,) = slices(example_cluster, "web")
    assert [e["targetRef"]["name"] for e in sl["endpoints"]] == ["web-b"]
    example_cluster.apply([Change(ObjectKey("Service", "default", "web"), None)])
    reconcile(example_cluster, example_config, random.Random(0))
    assert slices(example_cluster, "web") == []


def test_service_without_pods_keeps_an_empty_slice(example_cluster, apply):
    apply([service("lonely")])
    (sl,) = slices(example_cluster, "lonely")
    assert sl["endpoints"] == [] and sl["ports"] == []


def test_not_ready_pod_is_listed_not_ready_unless_published():
    base_pod = pod("p", "web")
    base_pod["spec"]["nodeName"] = "n"
    base_pod["status"] = {
        "phase": "Running",
        "podIP": "10.10.1.5",
        "conditions": [{"type": "Ready", "status": "False"}],
    }
    s = service("web")
    s["metadata"]["uid"] = "s1"
    (ch,) = compute_endpointslices(Snapshot([s, base_pod]), random.Random(0))
    assert ch.object["endpoints"][0]["conditions"]["ready"] is False
    s["spec"]["publishNotReadyAddresses"] = True
    (ch,) = compute_endpointslices(Snapshot([s, base_pod]), random.Random(0))
    assert ch.object["endpoints"][0]["conditions"]["ready"] is True


def test_resolve_ports_number_name_and_missing():
    s = service(
        "web",
        ports=[
            {"name": "a", "port": 80, "targetPort": 8080},
            {"name": "b", "port": 81, "targetPort": "metrics"},
            {"name": "c", "port": 82},
            {"name": "d", "port": 53, "protocol": "UDP", "targetPort": "dns"},
        ],
    )
    p = pod("p", "web", [{"name": "dns", "containerPort": 5353, "protocol": "UDP"}])
    assert resolve_ports(s, p) == (("a", 8080, "TCP"), ("c", 82, "TCP"), ("d", 5353, "UDP"))


def test_reapplied_service_keeps_its_address_against_a_new_claim(example_cluster, apply):
    apply([service("a"), service("np", type_="NodePort", ports=[{"port": 80}])])
    ip = svc(example_cluster, "a")["spec"]["clusterIP"]
    port = svc(example_cluster, "np")["spec"]["ports"][0]["nodePort"]
    # Same batch: "a" and "np" re-applied without their allocations, and newcomers asking
    # for exactly those values.
    with pytest.raises(DiagnosticError) as e:
        apply(
            [
                service("a"),
                service("np", type_="NodePort", ports=[{"port": 80}]),
                service("b", clusterIP=ip),
                service("c", type_="NodePort", ports=[{"port": 80, "nodePort": port}]),
            ]
        )
    assert [d.name for d in e.value.diagnostics] == ["b", "c"]
    assert "already allocated" in e.value.diagnostics[0].reason
    assert "already allocated" in e.value.diagnostics[1].reason


def test_readiness_flip_is_kept_and_reaches_the_slice(example_cluster, apply, example_config):
    from ciliate.controllers.podnetwork import with_readiness
    from ciliate.controllers.snapshot import put

    apply([service("web"), pod("web-a", "web")])
    p = example_cluster.get(ObjectKey("Pod", "default", "web-a"))
    down = with_readiness(p, False, "ProcessExited", "exit status 1")
    assert down is not None
    assert with_readiness(down, False, "ProcessExited", "exit status 1") is None
    example_cluster.apply([put(down)])
    reconcile(example_cluster, example_config, random.Random(0))
    p = example_cluster.get(ObjectKey("Pod", "default", "web-a"))
    ready = [c for c in p["status"]["conditions"] if c["type"] == "Ready"]
    assert ready[0]["status"] == "False" and ready[0]["reason"] == "ProcessExited"
    (sl,) = slices(example_cluster, "web")
    assert sl["endpoints"][0]["conditions"]["ready"] is False
    example_cluster.apply([put(with_readiness(p, True))])
    reconcile(example_cluster, example_config, random.Random(0))
    (sl,) = slices(example_cluster, "web")
    assert sl["endpoints"][0]["conditions"]["ready"] is True


def test_session_affinity_and_health_check_node_port(example_cluster, apply):
    apply(
        [
            service("sticky", sessionAffinity="ClientIP"),
            service("local", type_="LoadBalancer", externalTrafficPolicy="Local"),
        ]
    )
    assert svc(example_cluster, "sticky")["spec"]["sessionAffinityConfig"] == {
        "clientIP": {"timeoutSeconds": 10800}
    }
    spec = svc(example_cluster, "local")["spec"]
    hc = spec["healthCheckNodePort"]
    assert 30000 <= hc <= 32767 and hc != spec["ports"][0]["nodePort"]
    apply([service("local", type_="LoadBalancer", externalTrafficPolicy="Local")])
    assert svc(example_cluster, "local")["spec"]["healthCheckNodePort"] == hc
    with pytest.raises(DiagnosticError) as e:
        apply([service("x", type_="NodePort", ports=[{"port": 80, "nodePort": hc}])])
    assert "already allocated" in e.value.diagnostics[0].reason


def test_ipv6_families_are_refused(example_cluster, apply):
    with pytest.raises(DiagnosticError) as e:
        apply([service("v6", ipFamilies=["IPv6"], ipFamilyPolicy="RequireDualStack")])
    assert [d.path for d in e.value.diagnostics] == ["spec.ipFamilies[0]", "spec.ipFamilyPolicy"]
    apply([service("v4", ipFamilies=["IPv4"], ipFamilyPolicy="PreferDualStack")])
    assert svc(example_cluster, "v4")["spec"]["ipFamilies"] == ["IPv4"]
