"""Typed views of apps, gateway, networking and add-on kinds, and the kind registry."""

from __future__ import annotations

import pytest
import yaml

from _paths import shared_examples
from ciliate.model import apps, gateway, misc, networking
from ciliate.model.registry import parse, parse_or_none


def _docs(rel: str) -> list[dict]:  # type: ignore[type-arg]
    return [d for d in yaml.safe_load_all((shared_examples() / rel).read_text()) if d]


def test_deployment_view() -> None:
    d = apps.Deployment.from_doc(_docs("networking101/workloads.yaml")[1])
    assert d.meta.name == "busybox" and d.replicas == 2
    assert d.selector.matches({"app": "busybox"})
    assert d.template.labels == {"app": "busybox"}
    assert d.template.spec.containers[0].command == ("sleep", "infinity")


def test_workload_defaults() -> None:
    base = {"apiVersion": "apps/v1", "metadata": {"name": "x"}, "spec": {}}
    assert apps.ReplicaSet.from_doc({**base, "kind": "ReplicaSet"}).replicas == 1
    assert apps.DaemonSet.from_doc({**base, "kind": "DaemonSet"}).replicas == 0
    sts = apps.StatefulSet.from_doc(
        {**base, "kind": "StatefulSet", "spec": {"serviceName": "db", "replicas": 3}}
    )
    assert sts.service_name == "db" and sts.replicas == 3


def test_gateway_and_route_views() -> None:
    gw = gateway.Gateway.from_doc(_docs("gateway-api/gateway.yaml")[0])
    assert gw.gateway_class_name == "cilium" and gw.addresses == ("172.22.14.96",)
    (listener,) = gw.listeners
    assert (listener.name, listener.port, listener.protocol) == ("web-gw", 80, "HTTP")
    assert listener.allowed_namespaces == "Same"
    assert gw.programmed == "Unknown"
    route = gateway.HTTPRoute.from_doc(_docs("gateway-api/httproute.yaml")[0])
    assert isinstance(route, gateway.HTTPRoute)
    assert route.hostnames == ("testgw.dbi-services.com",)
    (parent,) = route.parent_refs
    assert (parent.kind, parent.name, parent.namespace) == ("Gateway", "cilium-gateway", "default")
    (rule,) = route.rules
    assert rule.matches[0].path_type == "PathPrefix" and rule.matches[0].path == "/get"
    assert rule.backend_refs[0] == gateway.BackendRef("testgw-svc", "default", 8080, 1)


def test_route_rule_without_matches_matches_everything() -> None:
    r = gateway.Route.from_doc(
        {"kind": "HTTPRoute", "metadata": {"name": "r", "namespace": "a"}, "spec": {"rules": [{}]}}
    )
    assert r.rules[0].matches == (gateway.RouteMatch("PathPrefix", "/"),)


def test_reference_grant() -> None:
    g = gateway.ReferenceGrant.from_doc(
        {
            "kind": "ReferenceGrant",
            "metadata": {"name": "g", "namespace": "backend"},
            "spec": {
                "from": [{"group": gateway.GROUP, "kind": "HTTPRoute", "namespace": "front"}],
                "to": [{"group": "", "kind": "Service"}],
            },
        }
    )
    assert g.allows("front", gateway.GROUP, "HTTPRoute", "", "Service", "svc")
    assert not g.allows("other", gateway.GROUP, "HTTPRoute", "", "Service", "svc")


def test_ingress_view() -> None:
    ing = networking.Ingress.from_doc(_docs("lb-ipam-l2-ingress/ingress.yaml")[0])
    assert ing.ingress_class_name == "cilium" and ing.hosts == ("*",)
    path = ing.rules[0].paths[0]
    assert (path.path, path.path_type) == ("/", "Prefix")
    assert path.backend == networking.IngressBackend("cilium-ingress-basic-ingress", 80)


def test_addon_views() -> None:
    pool = misc.CiliumLoadBalancerIPPool.from_doc(_docs("lb-ipam-l2-ingress/pool-blue.yaml")[0])
    assert pool.blocks == (misc.PoolBlock(cidr="10.0.0.0/30"),)
    assert pool.service_selector is not None and pool.service_selector.matches({"color": "blue"})
    l2 = misc.CiliumL2AnnouncementPolicy.from_doc(_docs("lb-ipam-l2-ingress/l2-policy.yaml")[0])
    assert l2.interfaces == ("^eth[0-9]+",) and l2.load_balancer_ips and l2.node_selector is None
    nad = misc.NetworkAttachmentDefinition.from_doc(_docs("ebook/multus-macvlan.yaml")[0])
    assert nad.cni_type == "macvlan" and nad.config["ipam"]["rangeStart"] == "192.168.1.200"
    bgp, ippool = (parse(d) for d in _docs("ebook/calico.yaml"))
    assert isinstance(bgp, misc.BGPConfiguration) and bgp.as_number == 63400
    assert not bgp.node_to_node_mesh
    assert isinstance(ippool, misc.CalicoIPPool) and ippool.ipip_mode == "CrossSubnet"


def test_registry_maps_every_example_kind() -> None:
    for rel in (
        "networking101/workloads.yaml",
        "gateway-api/gatewayclass.yaml",
        "gateway-api/http-server.yaml",
        "ebook/three-tier-policies.yaml",
        "network-policy/http-aware-rule.yaml",
        "coredns/coredns-configmap.yaml",
    ):
        for doc in _docs(rel):
            view = parse(doc)
            assert view.meta.name == doc["metadata"]["name"]
    assert parse_or_none({"apiVersion": "v1", "kind": "Secret"}) is None
    with pytest.raises(KeyError):
        parse({"apiVersion": "v1", "kind": "Secret"})


def test_pool_first_and_last_addresses_are_reserved_by_default() -> None:
    # lb-ipam-l2-ingress/EXPECTED.md: a /30 is the smallest usable pool (2 addresses).
    pool = misc.CiliumLoadBalancerIPPool.from_doc(_docs("lb-ipam-l2-ingress/pool-blue.yaml")[0])
    assert not pool.allow_first_last_ips
    doc = {"kind": "CiliumLoadBalancerIPPool", "metadata": {"name": "p"},
           "spec": {"allowFirstLastIPs": "Yes"}}  # fmt: skip
    assert misc.CiliumLoadBalancerIPPool.from_doc(doc).allow_first_last_ips
