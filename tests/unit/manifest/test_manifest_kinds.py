"""manifest.kinds and manifest.selector: kubectl's names and the -l query language."""

from __future__ import annotations

import pytest

from ciliate.manifest.kinds import KINDS, removed_api, resolve_resource
from ciliate.manifest.selector import parse_selector


@pytest.mark.parametrize(
    ("word", "kind"),
    [
        ("po", "Pod"),
        ("pods", "Pod"),
        ("pod", "Pod"),
        ("Pod", "Pod"),
        ("svc", "Service"),
        ("no", "Node"),
        ("deploy", "Deployment"),
        ("deployments.apps", "Deployment"),
        ("rs", "ReplicaSet"),
        ("ds", "DaemonSet"),
        ("sts", "StatefulSet"),
        ("ns", "Namespace"),
        ("netpol", "NetworkPolicy"),
        ("cnp", "CiliumNetworkPolicy"),
        ("ccnp", "CiliumClusterwideNetworkPolicy"),
        ("ing", "Ingress"),
        ("gtw", "Gateway"),
        ("httproute", "HTTPRoute"),
        ("cm", "ConfigMap"),
        ("ep", "Endpoints"),
        ("endpointslices", "EndpointSlice"),
        ("cep", "CiliumEndpoint"),
        ("cn", "CiliumNode"),
        ("ippools", "CiliumLoadBalancerIPPool"),
        ("ippools.projectcalico.org", "IPPool"),
        ("l2announcement", "CiliumL2AnnouncementPolicy"),
        ("net-attach-def", "NetworkAttachmentDefinition"),
    ],
)
def test_resolve_resource(word: str, kind: str) -> None:
    info = resolve_resource(word)
    assert info is not None and info.kind == kind


def test_unknown_resource() -> None:
    assert resolve_resource("podz") is None
    assert resolve_resource("") is None


def test_names_for_output() -> None:
    deploy = resolve_resource("deploy")
    assert deploy is not None and deploy.qualified_singular == "deployment.apps"
    pod = resolve_resource("po")
    assert pod is not None and pod.qualified_singular == "pod"
    assert pod.qualified_plural == "pods"


def test_every_kind_has_unique_identity() -> None:
    assert len({k.kind for k in KINDS}) == len(KINDS)


def test_removed_apis() -> None:
    removed = removed_api("extensions/v1beta1", "Ingress")
    assert removed is not None and removed[1].startswith("networking.k8s.io/v1")
    assert removed_api("networking.k8s.io/v1", "Ingress") is None


def test_selector_language() -> None:
    sel = parse_selector("app=web,tier!=db,env in (prod, staging),!legacy,team")
    assert sel.matches({"app": "web", "env": "prod", "team": "x"})
    assert not sel.matches({"app": "web", "env": "prod", "team": "x", "tier": "db"})
    assert not sel.matches({"app": "web", "env": "dev", "team": "x"})
    assert not sel.matches({"app": "web", "env": "prod", "team": "x", "legacy": "1"})
    assert not sel.matches({"app": "web", "env": "prod"})
    assert parse_selector("a==b").matches({"a": "b"})
    assert parse_selector("").matches({})
    assert parse_selector("x notin (a)").matches({})


def test_selector_keys_with_cilium_label_sources() -> None:
    # kubectl's -l refuses a source prefix; hubble's --label (label_sources) accepts it
    # and keeps it in the key.
    with pytest.raises(ValueError):
        parse_selector("k8s:app=web")
    sel = parse_selector("k8s:app=web,!reserved:world", label_sources=True)
    assert sel.matches({"k8s:app": "web"})
    assert not sel.matches({"k8s:app": "web", "reserved:world": ""})
    with pytest.raises(ValueError):
        parse_selector("k8s:bad key=x", label_sources=True)


@pytest.mark.parametrize("bad", ["a in (", "a in ()", "=x", "a=b c", "a,,b", "k b"])
def test_selector_errors(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_selector(bad)
