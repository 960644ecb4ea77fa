"""Typed NetworkPolicy / CNP / CCNP views: defaulting and the shapes the compiler and the
oracle rely on."""

from __future__ import annotations

from ciliate.model.cilium import CiliumPolicy
from ciliate.model.meta import ObjectMeta
from ciliate.model.netpol import NetworkPolicy, SourceMap


def test_policy_types_default_from_sections() -> None:
    np = NetworkPolicy.from_doc(
        {
            "kind": "NetworkPolicy",
            "metadata": {"name": "a", "namespace": "x"},
            "spec": {"podSelector": {}, "egress": [{}]},
        }
    )
    assert np.policy_types == {"Ingress", "Egress"}
    only = NetworkPolicy.from_doc(
        {"kind": "NetworkPolicy", "metadata": {"name": "a"}, "spec": {"podSelector": {}}}
    )
    assert only.policy_types == {"Ingress"} and only.ingress == ()
    explicit = NetworkPolicy.from_doc(
        {
            "kind": "NetworkPolicy",
            "metadata": {"name": "a"},
            "spec": {"podSelector": {}, "policyTypes": ["Egress"], "ingress": [{}]},
        }
    )
    assert explicit.policy_types == {"Egress"}


def test_ports_and_peers() -> None:
    np = NetworkPolicy.from_doc(
        {
            "kind": "NetworkPolicy",
            "metadata": {"name": "a"},
            "spec": {
                "podSelector": {},
                "ingress": [
                    {
                        "from": [
                            {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}},
                            {"namespaceSelector": {}, "podSelector": {"matchLabels": {"a": "b"}}},
                        ],
                        "ports": [
                            {"port": "web"},
                            {"port": 80, "endPort": 90, "protocol": "udp"},
                            {},
                        ],
                    }
                ],
            },
        }
    )
    r = np.ingress[0]
    assert r.peers[0].ip_block is not None and r.peers[0].ip_block.except_ == ("10.1.0.0/16",)
    assert r.peers[1].namespace_selector is not None and r.peers[1].namespace_selector.is_empty
    assert [(p.protocol, p.port, p.end_port) for p in r.ports] == [
        ("TCP", "web", None),
        ("UDP", 80, 90),
        ("TCP", None, None),
    ]


def test_source_map_falls_back_to_ancestors() -> None:
    meta = ObjectMeta(
        name="p",
        annotations={
            "ciliate.io/source": "dir/p.yaml:4",
            "ciliate.io/source-lines": '{"spec": 8, "spec.ingress[0]": 10}',
        },
    )
    sm = SourceMap.from_meta(meta)
    assert sm.where("spec.ingress[0].from[1]") == "dir/p.yaml:10"
    assert sm.where("spec.egress[0]") == "dir/p.yaml:8"
    assert SourceMap.from_meta(ObjectMeta(name="p")).where("spec") == ""


def test_cilium_spec_and_specs_sections() -> None:
    cp = CiliumPolicy.from_doc(
        {
            "apiVersion": "cilium.io/v2",
            "kind": "CiliumNetworkPolicy",
            "metadata": {"name": "p", "namespace": "x"},
            "spec": {"endpointSelector": {}, "ingress": [{}]},
            "specs": [
                {
                    "endpointSelector": {"matchLabels": {"a": "b"}},
                    "egressDeny": [{"toEntities": ["world"]}],
                    "egress": [
                        {
                            "toPorts": [
                                {
                                    "ports": [{"port": "53"}],
                                    "rules": {"dns": [{"matchPattern": "*"}]},
                                }
                            ],
                            "icmps": [{"fields": [{"type": "EchoRequest"}]}],
                        }
                    ],
                }
            ],
        }
    )
    assert [r.path for r in cp.rules] == ["spec", "specs[0]"]
    first, second = cp.rules
    assert first.ingress is not None and first.ingress[0].is_empty and first.egress is None
    assert second.egress_deny is not None and second.egress_deny[0].entities == ("world",)
    e = second.egress[0] if second.egress else None
    assert e is not None and e.path == "specs[0].egress[0]"
    assert e.to_ports[0].ports[0].protocol == "ANY" and e.to_ports[0].dns is not None
    assert e.icmps[0].type == 8 and not e.has_peer
    assert not cp.clusterwide and cp.key == "x/p"
