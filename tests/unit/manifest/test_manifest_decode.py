"""manifest.decode: every bad-input case of the validation rules, located and rendered."""

from __future__ import annotations

import io
import json
import textwrap
from pathlib import Path

import pytest

from ciliate.errors import DiagnosticError
from ciliate.manifest.decode import (
    SOURCE_ANNOTATION,
    SOURCE_LINES_ANNOTATION,
    check_namespaces,
    decode_text,
    load_paths,
    with_provenance,
)


def errors(text: str) -> list[str]:
    """Rendered diagnostics of a manifest (file name m.yaml)."""
    return [d.render() for d in decode_text(textwrap.dedent(text), "m.yaml").diagnostics]


def one_error(text: str) -> str:
    errs = errors(text)
    assert len(errs) == 1, errs
    return errs[0]


NETPOL = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: np, namespace: prod}
spec:
  podSelector: {}
  ingress:
  - from:
    - ipBlock:
        cidr: %s
        except: [%s]
    ports:
    - port: %s
      endPort: %s
      protocol: %s
"""


def netpol(cidr: str = "10.0.0.0/8", exc: str = "10.1.0.0/16", port: str = "80",
           end: str = "90", proto: str = "TCP") -> str:  # fmt: skip
    return NETPOL % (cidr, exc, port, end, proto)


def test_valid_netpol_has_no_diagnostics_and_keeps_unknown_fields() -> None:
    b = decode_text(netpol() + "extra: {kept: true}\n", "m.yaml")
    assert b.diagnostics == []
    assert b.objects[0].doc["extra"] == {"kept": True}
    assert b.objects[0].key == ("NetworkPolicy", "prod", "np")


def test_invalid_cidr() -> None:
    assert one_error(netpol(cidr="10.0.0.0/33", exc="")) == (
        "m.yaml:9:15: NetworkPolicy prod/np: spec.ingress[0].from[0].ipBlock.cidr: "
        'invalid CIDR "10.0.0.0/33"'
    )


def test_cidr_with_host_bits_names_the_network() -> None:
    assert 'did you mean "10.0.0.0/8"' in one_error(netpol(cidr="10.1.2.3/8", exc=""))


def test_except_outside_cidr() -> None:
    assert one_error(netpol(exc="192.168.0.0/24")) == (
        "m.yaml:10:18: NetworkPolicy prod/np: spec.ingress[0].from[0].ipBlock.except[0]: "
        '"192.168.0.0/24" is not inside cidr "10.0.0.0/8"'
    )


def test_port_out_of_range_and_end_port_below_port() -> None:
    assert "port 70000 is out of range (1-65535)" in one_error(netpol(port="70000", end="70001"))
    assert one_error(netpol(port="80", end="79")) == (
        "m.yaml:13:16: NetworkPolicy prod/np: spec.ingress[0].ports[0].endPort: "
        "must be greater than or equal to port (79 < 80)"
    )
    assert "numeric port" in one_error(netpol(port="http", end="90"))


def test_unknown_protocol() -> None:
    assert one_error(netpol(proto="ICMP")).endswith(
        'spec.ingress[0].ports[0].protocol: unknown protocol "ICMP": supported values: '
        "TCP, UDP, SCTP"
    )


def test_named_port_syntax() -> None:
    assert "must contain at least one letter" in one_error(netpol(port="'8080'", end="null"))
    assert "no more than 15" in one_error(netpol(port="a-very-long-port-name", end="null"))


SELECTOR = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: np}
spec:
  podSelector:
    matchLabels: {%s}
    matchExpressions:
    - {key: %s, operator: %s%s}
"""


def test_selector_operators_and_values() -> None:
    ok = SELECTOR % ("app: web", "tier", "In", ", values: [a]")
    assert errors(ok) == []
    assert 'unknown operator "Equals"' in one_error(SELECTOR % ("", "tier", "Equals", ""))
    assert "must be non-empty when operator is In" in one_error(SELECTOR % ("", "t", "In", ""))
    assert "must be non-empty when operator is NotIn" in one_error(
        SELECTOR % ("", "t", "NotIn", ", values: []")
    )
    assert "must be empty when operator is Exists" in one_error(
        SELECTOR % ("", "t", "Exists", ", values: [x]")
    )
    assert "must be empty when operator is DoesNotExist" in one_error(
        SELECTOR % ("", "t", "DoesNotExist", ", values: [x]")
    )


def test_selector_label_syntax() -> None:
    err = one_error(SELECTOR % ("'bad key!': x", "t", "Exists", ""))
    assert "spec.podSelector.matchLabels.bad key!" in err
    assert "label value" in one_error(SELECTOR % ("app: -x-", "t", "Exists", ""))


def test_missing_identity_fields() -> None:
    assert one_error(
        "kind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: i}]}\n"
    ) == ("m.yaml:1:1: Pod p: apiVersion: required value")
    assert (
        one_error("apiVersion: v1\nmetadata: {name: p}\n") == "m.yaml:1:1: p: kind: required value"
    )
    assert one_error("apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n") == (
        "m.yaml:3:11: ConfigMap: metadata.name: required value"
    )
    assert one_error("apiVersion: v1\nkind: ConfigMap\n") == (
        "m.yaml:1:1: ConfigMap: metadata: required value (metadata.name)"
    )


def test_helm_values_are_not_a_manifest() -> None:
    assert "apiVersion and kind are missing" in one_error("configInline:\n  a: 1\n")


def test_unknown_kind_and_version() -> None:
    assert one_error("apiVersion: v1\nkind: Pdo\nmetadata: {name: x}\n") == (
        'm.yaml:2:7: Pdo x: kind: no matches for kind "Pdo" in version "v1"'
    )
    assert one_error("apiVersion: apps/v2\nkind: Deployment\nmetadata: {name: x}\n") == (
        'm.yaml:1:13: Deployment x: apiVersion: no matches for kind "Deployment" in version '
        '"apps/v2": served: apps/v1'
    )


def test_removed_apis_name_their_replacement() -> None:
    err = one_error("apiVersion: extensions/v1beta1\nkind: Ingress\nmetadata: {name: x}\n")
    assert "use networking.k8s.io/v1" in err and "pathType" in err
    err = one_error("apiVersion: apps/v1beta2\nkind: DaemonSet\nmetadata: {name: x}\n")
    assert "use apps/v1" in err
    err = one_error("apiVersion: policy/v1beta1\nkind: PodSecurityPolicy\nmetadata: {name: x}\n")
    assert "Pod Security admission" in err


def test_gateway_api_versions_served_as_upstream() -> None:
    for version, kind, ok in [
        ("v1", "HTTPRoute", True),
        ("v1beta1", "HTTPRoute", True),
        ("v1alpha2", "TLSRoute", True),
        ("v1", "TLSRoute", False),
        ("v1beta1", "ReferenceGrant", True),
        ("v1", "GRPCRoute", True),
    ]:
        text = f"apiVersion: gateway.networking.k8s.io/{version}\nkind: {kind}\nmetadata: {{name: r}}\n"
        errs = [e for e in errors(text) if "apiVersion" in e]
        assert (errs == []) == ok, (version, kind, errs)


def test_names() -> None:
    assert "DNS-1123 subdomain" in one_error(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: My_Config}\n"
    )
    assert "DNS-1123 label" in one_error("apiVersion: v1\nkind: Namespace\nmetadata: {name: a.b}\n")
    svc = "apiVersion: v1\nkind: Service\nmetadata: {name: 1svc}\nspec: {ports: [{port: 80}]}\n"
    assert "DNS-1035 label" in one_error(svc)
    assert "DNS-1123 label" in one_error(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: Prod}\n"
    )


def test_namespace_defaults_and_cluster_scope() -> None:
    b = decode_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n")
    assert b.objects[0].namespace == "default"
    assert "cluster-scoped" in one_error(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: n, namespace: x}\n"
    )


SERVICE = """\
apiVersion: v1
kind: Service
metadata: {name: s}
spec:
  type: %s
  clusterIP: %s
  ports:
  - {name: a, port: %s, targetPort: %s, nodePort: %s, protocol: %s}
"""


def svc(type_: str = "NodePort", cip: str = "''", port: str = "80", target: str = "8080",
        node_port: str = "30080", proto: str = "TCP") -> str:  # fmt: skip
    return SERVICE % (type_, cip, port, target, node_port, proto)


def test_service_fields() -> None:
    assert errors(svc()) == []
    assert 'unsupported value "Balancer"' in one_error(svc(type_="Balancer", node_port="0"))
    assert 'invalid IP address "10.0.0.300"' in one_error(svc(cip="10.0.0.300"))
    assert errors(svc(type_="ClusterIP", cip="None", node_port="0")) == []
    assert "not in the valid range 30000-32767" in one_error(svc(node_port="80"))
    assert "may not be used when type is 'ClusterIP'" in one_error(svc(type_="ClusterIP"))
    assert "out of range" in one_error(svc(port="0"))
    assert "out of range" in one_error(svc(target="65536"))
    assert "port name" in one_error(svc(target="HTTP"))
    assert "unknown protocol" in one_error(svc(proto="tcp"))


def test_service_needs_port_names_when_several() -> None:
    text = (
        "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n"
        "spec:\n  ports:\n  - {port: 80}\n  - {port: 443}\n"
    )
    errs = errors(text)
    assert len(errs) == 2 and all(
        "required value when a service has several ports" in e for e in errs
    )


def test_workload_selector_must_match_template() -> None:
    text = """\
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: d}
    spec:
      replicas: -1
      selector: {matchLabels: {app: a}}
      template:
        metadata: {labels: {app: b}}
        spec:
          containers: [{name: c}]
    """
    errs = errors(text)
    assert any("spec.replicas: must be greater than or equal to 0" in e for e in errs)
    assert any("selector does not match template labels" in e for e in errs)
    assert any("spec.template.spec.containers[0].image: required value" in e for e in errs)


def test_cnp_fields() -> None:
    text = """\
    apiVersion: cilium.io/v2
    kind: CiliumNetworkPolicy
    metadata: {name: p}
    spec:
      endpointSelector: {matchLabels: {"k8s:app": web}}
      nodeSelector: {}
      egress:
      - toCIDR: [1.2.3.4/40]
        toCIDRSet: [{cidr: 10.0.0.0/8, except: [11.0.0.0/16]}]
        toEntities: [wrld]
        toPorts:
        - ports:
          - {port: "0", protocol: ANY}
          - {port: "443", endPort: 400, protocol: TCP}
          - {port: "80", protocol: ICMP}
    """
    errs = errors(text)
    expected = [
        "spec.nodeSelector: is only allowed in a CiliumClusterwideNetworkPolicy",
        "spec: endpointSelector and nodeSelector are mutually exclusive",
        'spec.egress[0].toCIDR[0]: invalid CIDR "1.2.3.4/40"',
        'spec.egress[0].toCIDRSet[0].except[0]: "11.0.0.0/16" is not inside cidr',
        'spec.egress[0].toEntities[0]: unknown entity "wrld"',
        "spec.egress[0].toPorts[0].ports[1].endPort: must be greater than or equal to port",
        'spec.egress[0].toPorts[0].ports[2].protocol: unknown protocol "ICMP"',
    ]
    for e in expected:
        assert any(e in x for x in errs), (e, errs)
    assert len(errs) == len(expected), errs


def test_wrong_types_are_diagnostics_not_crashes() -> None:
    text = "apiVersion: v1\nkind: Pod\nmetadata: {name: p, labels: [a]}\nspec: {containers: 3}\n"
    errs = errors(text)
    assert any("metadata.labels: must be an object, not list" in e for e in errs)
    assert any("spec.containers: must be a list, not number" in e for e in errs)


def test_duplicates_point_at_both_places(tmp_path: Path) -> None:
    cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n"
    (tmp_path / "a.yaml").write_text(cm)
    (tmp_path / "b.yaml").write_text("# x\n" + cm)
    b = load_paths([str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml")])
    (d,) = b.diagnostics
    assert d.file.endswith("b.yaml") and d.line == 5
    assert d.reason == f"duplicate object in this batch: also defined at {tmp_path / 'a.yaml'}:4"


def test_directories_recursion_and_stdin(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n")
    (tmp_path / "sub" / "b.json").write_text(
        json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"}})
    )
    (tmp_path / "notes.txt").write_text("not yaml: [")
    assert [o.name for o in load_paths([str(tmp_path)]).objects] == ["a"]
    assert [o.name for o in load_paths([str(tmp_path)], recursive=True).objects] == ["a", "b"]
    stdin = io.StringIO("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: s}\n")
    b = load_paths(["-"], stdin=stdin)
    assert b.objects[0].file == "<stdin>"
    missing = load_paths([str(tmp_path / "nope.yaml")])
    assert missing.diagnostics[0].reason == "no such file or directory"
    with pytest.raises(DiagnosticError):
        missing.raise_if_invalid()


def test_list_documents_are_expanded_with_positions() -> None:
    text = textwrap.dedent("""\
    apiVersion: v1
    kind: List
    items:
    - apiVersion: v1
      kind: ConfigMap
      metadata: {name: a}
    - apiVersion: v1
      kind: ConfigMap
      metadata: {name: B}
    """)
    b = decode_text(text, "l.yaml")
    assert [o.name for o in b.objects] == ["a", "B"]
    assert b.diagnostics[0].render().startswith("l.yaml:9:")


def test_namespace_must_exist_or_be_created() -> None:
    text = textwrap.dedent("""\
    apiVersion: v1
    kind: ConfigMap
    metadata: {name: a, namespace: new}
    ---
    apiVersion: v1
    kind: ConfigMap
    metadata: {name: b, namespace: missing}
    ---
    apiVersion: v1
    kind: Namespace
    metadata: {name: new}
    """)
    b = decode_text(text, "n.yaml")
    (d,) = check_namespaces(b.objects, {"default"})
    assert d.render() == (
        'n.yaml:7:32: ConfigMap missing/b: metadata.namespace: namespace "missing" not found '
        "(create it first or in the same batch)"
    )


def test_provenance_annotations_on_policies() -> None:
    b = decode_text(netpol(), "pol.yaml")
    doc = with_provenance(b.objects[0])
    ann = doc["metadata"]["annotations"]
    assert ann[SOURCE_ANNOTATION] == "pol.yaml:1"
    lines = json.loads(ann[SOURCE_LINES_ANNOTATION])
    assert lines["spec.ingress[0].from[0].ipBlock.cidr"] == 9
    assert all(k.startswith("spec") for k in lines)
    assert "annotations" not in b.objects[0].doc["metadata"]  # the decoded doc is untouched
