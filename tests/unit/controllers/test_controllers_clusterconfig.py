"""Loading and validating cluster.yaml; kind-style clusters; the stored config."""

from __future__ import annotations

import pytest

from ciliate.controllers.clusterconfig import (
    cluster_doc,
    get_cluster_config,
    kind_cluster,
    load_cluster_file,
    parse_cluster_text,
)
from ciliate.errors import DiagnosticError, NotFoundError

GOOD = """\
cluster:
  name: lab
  nodeNetwork: 172.18.0.0/16
  podCIDR: 10.10.0.0/16
  serviceCIDR: 10.96.0.0/12
  routing: tunnel
nodes:
  - name: lab-control-plane
    role: control-plane
    internalIP: 172.18.0.3
  - name: lab-worker
    internalIP: 172.18.0.2
    podCIDR: 10.10.0.0/24
  - name: lab-worker2
    internalIP: 172.18.0.4
"""


def problems(text: str) -> list[str]:
    with pytest.raises(DiagnosticError) as e:
        parse_cluster_text(text, "c.yaml")
    return [d.render() for d in e.value.diagnostics]


def test_the_example_loads_exactly_as_written(examples_dir):
    c = load_cluster_file((examples_dir / "cluster.yaml").path)
    assert c.name == "mycluster"
    assert c.routing == "tunnel"
    assert [(n.name, n.internal_ip, n.pod_cidr, n.cilium_internal_ip, n.role) for n in c.nodes] == [
        ("mycluster-control-plane", "172.18.0.3", "10.10.0.0/24", "10.10.0.54", "control-plane"),
        ("mycluster-worker", "172.18.0.2", "10.10.2.0/24", "10.10.2.205", "worker"),
        ("mycluster-worker2", "172.18.0.4", "10.10.1.0/24", "10.10.1.55", "worker"),
    ]
    assert c.tunnel_mtu == 1450


def test_missing_pod_cidrs_are_carved_around_explicit_ones():
    c = parse_cluster_text(GOOD)
    # lab-worker took 10.10.0.0/24 explicitly; the others get the next free ones.
    assert [n.pod_cidr for n in c.nodes] == ["10.10.1.0/24", "10.10.0.0/24", "10.10.2.0/24"]
    assert [n.cilium_internal_ip for n in c.nodes] == ["10.10.1.1", "10.10.0.1", "10.10.2.1"]


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            ("routing: tunnel", "routing: overlay"),
            'c.yaml:6:12: Cluster: cluster.routing: Unsupported value: "overlay": '
            'supported values: "tunnel", "native"',
        ),
        (
            ("  routing: tunnel", "  routing: tunnel\n  policyEnforcement: strict"),
            'c.yaml:7:22: Cluster: cluster.policyEnforcement: Unsupported value: "strict": '
            'supported values: "default", "always", "never"',
        ),
        (
            ("  routing: tunnel", "  routing: tunnel\n  lbAlgorithm: roundrobin"),
            'c.yaml:7:16: Cluster: cluster.lbAlgorithm: Unsupported value: "roundrobin": '
            'supported values: "random", "maglev"',
        ),
        (
            ("  routing: tunnel", "  routing: tunnel\n  maglevTableSize: 1000"),
            "c.yaml:7:20: Cluster: cluster.maglevTableSize: Unsupported value: 1000: must be one "
            "of Cilium's primes 251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071",
        ),
        (
            ("podCIDR: 10.10.0.0/16", "podCIDR: 10.10.0.0/33"),
            'c.yaml:4:12: Cluster: cluster.podCIDR: invalid CIDR "10.10.0.0/33": '
            "'33' is not a valid netmask",
        ),
        (
            ("serviceCIDR: 10.96.0.0/12", "serviceCIDR: 10.96.0.1/12"),
            'c.yaml:5:16: Cluster: cluster.serviceCIDR: invalid CIDR "10.96.0.1/12": host bits set',
        ),
        (
            ("  routing: tunnel", "  routing: tunnel\n  colour: blue"),
            'c.yaml:7:11: Cluster: cluster.colour: unknown field "colour" (known: clusterID, '
            "lbAlgorithm, maglevTableSize, mtu, name, nodeNetwork, nodePortRange, podCIDR, "
            "podCIDRMaskSize, policyEnforcement, routing, serviceCIDR, tunnelProtocol)",
        ),
        (
            ("internalIP: 172.18.0.3", "internalIP: 192.168.0.3"),
            "c.yaml:10:17: Cluster: nodes[0].internalIP: 192.168.0.3 is outside the node network "
            "172.18.0.0/16",
        ),
        (
            ("internalIP: 172.18.0.4", "internalIP: 172.18.0.2"),
            'c.yaml:15:17: Cluster: nodes[2].internalIP: Duplicate value: "172.18.0.2" '
            "(also nodes[1].internalIP)",
        ),
        (
            ("name: lab-worker2", "name: lab-worker"),
            'c.yaml:14:11: Cluster: nodes[2].name: Duplicate value: "lab-worker" (also nodes[1].name)',
        ),
        (
            ("podCIDR: 10.10.0.0/24", "podCIDR: 10.20.0.0/24"),
            "c.yaml:13:14: Cluster: nodes[1].podCIDR: 10.20.0.0/24 is outside the pod CIDR pool "
            "10.10.0.0/16",
        ),
        (
            ("podCIDR: 10.10.0.0/24", "podCIDR: 10.10.0.0/24\n    ciliumInternalIP: 10.10.1.1"),
            "c.yaml:14:23: Cluster: nodes[1].ciliumInternalIP: 10.10.1.1 is not a usable address "
            "of the node's podCIDR 10.10.0.0/24",
        ),
        (
            ("    internalIP: 172.18.0.2\n", "    internalIP: 172.18.0.2\n    zone: a\n"),
            'c.yaml:13:11: Cluster: nodes[1].zone: unknown field "zone" (known: ciliumInternalIP, '
            "internalIP, labels, name, podCIDR, role)",
        ),
        (
            ("role: control-plane", "role: master"),
            'c.yaml:9:11: Cluster: nodes[0].role: Unsupported value: "master": '
            'supported values: "control-plane", "worker"',
        ),
        (
            ("serviceCIDR: 10.96.0.0/12", "serviceCIDR: 10.10.128.0/17"),
            "c.yaml:5:16: Cluster: cluster.serviceCIDR: 10.10.128.0/17 overlaps podCIDR 10.10.0.0/16",
        ),
    ],
)
def test_each_problem_is_located(edit, expected):
    old, new = edit
    assert old in GOOD
    assert problems(GOOD.replace(old, new, 1)) == [expected]


def test_all_problems_are_reported_together():
    bad = GOOD.replace("routing: tunnel", "routing: bgp").replace(
        "internalIP: 172.18.0.4", "internalIP: 10.0.0.1"
    )
    assert len(problems(bad)) == 2


def test_yaml_syntax_errors_and_empty_files():
    assert problems("cluster: [")[0].startswith("c.yaml:2:1: YAML syntax error")
    assert problems("") == ["c.yaml: the cluster file is empty"]
    assert "at least one node" in problems("cluster:\n  name: x\n")[0]


def test_pool_too_small_for_the_nodes():
    text = GOOD.replace("podCIDR: 10.10.0.0/16", "podCIDR: 10.10.0.0/23").replace(
        "    podCIDR: 10.10.0.0/24\n", ""
    )
    (p,) = problems(text)
    assert "has no free /24 left for node lab-worker2" in p


def test_kind_cluster_names_and_addresses():
    c = kind_cluster("mycluster", 3)
    assert [n.name for n in c.nodes] == [
        "mycluster-control-plane",
        "mycluster-worker",
        "mycluster-worker2",
    ]
    assert [n.role for n in c.nodes] == ["control-plane", "worker", "worker"]
    assert [n.internal_ip for n in c.nodes] == ["172.18.0.2", "172.18.0.3", "172.18.0.4"]
    assert [n.pod_cidr for n in c.nodes] == ["10.10.0.0/24", "10.10.1.0/24", "10.10.2.0/24"]
    assert (c.service_cidr, c.pod_cidr, c.node_network) == (
        "10.96.0.0/12",
        "10.10.0.0/16",
        "172.18.0.0/16",
    )
    assert [n.name for n in kind_cluster("k", 1).nodes] == ["k-control-plane"]
    with pytest.raises(DiagnosticError):
        kind_cluster("Bad_Name", 2)
    with pytest.raises(DiagnosticError):
        kind_cluster("ok", 0)


def test_stored_config_round_trips(store, example_config):
    with pytest.raises(
        NotFoundError, match=r"no cluster in the state directory: run `ciliate cluster create`"
    ):
        get_cluster_config(store)
    from ciliate.controllers.snapshot import put

    store.apply([put(cluster_doc(example_config))])
    assert get_cluster_config(store) == example_config
    doc = cluster_doc(example_config)
    assert (doc["apiVersion"], doc["kind"], doc["metadata"]) == (
        "ciliate.io/v1",
        "Cluster",
        {"name": "cluster"},
    )


KIND = """\
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
name: mycluster
nodes:
- role: control-plane
- role: control-plane
- role: worker
  labels:
    zone: a
  extraPortMappings:
  - containerPort: 80
    hostPort: 8080
- role: worker
networking:
  disableDefaultCNI: true
  kubeProxyMode: none
  podSubnet: 10.10.0.0/16
"""


def test_kind_cluster_files_are_accepted():
    c = parse_cluster_text(KIND, "kind.yaml")
    assert [(n.name, n.role, n.internal_ip) for n in c.nodes] == [
        ("mycluster-control-plane", "control-plane", "172.18.0.2"),
        ("mycluster-control-plane2", "control-plane", "172.18.0.3"),
        ("mycluster-worker", "worker", "172.18.0.4"),
        ("mycluster-worker2", "worker", "172.18.0.5"),
    ]
    assert c.nodes[2].labels == {"zone": "a"}
    assert (c.pod_cidr, c.service_cidr) == ("10.10.0.0/16", "10.96.0.0/12")
    assert [n.pod_cidr for n in c.nodes][:2] == ["10.10.0.0/24", "10.10.1.0/24"]


def test_kind_defaults_to_one_node_named_kind():
    c = parse_cluster_text("kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\n")
    assert [n.name for n in c.nodes] == ["kind-control-plane"]


def test_kind_file_problems_are_located():
    bad = KIND.replace("- role: worker\n", "- role: master\n", 1).replace(
        "  podSubnet: 10.10.0.0/16", "  podSubnet: 10.10.0.0/16\n  ipFamily: ipv6\n  bogus: 1"
    )
    assert problems(bad) == [
        'c.yaml:7:9: Cluster: nodes[2].role: Unsupported value: "master": '
        'supported values: "control-plane", "worker"',
        'c.yaml:18:13: Cluster: networking.ipFamily: Unsupported value: "ipv6": '
        "only ipv4 clusters are supported",
        'c.yaml:19:10: Cluster: networking.bogus: unknown field "bogus" in a kind cluster file',
    ]
