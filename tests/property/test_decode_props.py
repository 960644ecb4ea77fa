"""Property tests of the decoder: any input gives documents or diagnostics, never an
exception; selectors parsed from -l text agree with a direct evaluation."""

from __future__ import annotations

import json
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ciliate.manifest.decode import decode_text
from ciliate.manifest.selector import parse_selector
from ciliate.manifest.yaml import load_yaml

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# YAML-ish text: the characters that matter to the grammar, so inputs reach deep states.
yamlish = st.lists(
    st.sampled_from([*"abk: -[]{},&*!|>'\"#\n\t?%@`0123.\\/", "!!", "<<", "---\n", "  "]),
    max_size=80,
).map("".join)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@FAST
@given(st.text(max_size=300))
def test_any_text_never_raises(text: str) -> None:
    r = load_yaml(text, "p.yaml")
    for d in r.diagnostics:
        assert d.file == "p.yaml" and d.reason


@FAST
@given(st.binary(max_size=300))
def test_any_bytes_never_raises(data: bytes) -> None:
    load_yaml(data)
    decode_text(data)


@FAST
@given(yamlish)
def test_yamlish_text_decodes_or_diagnoses(text: str) -> None:
    b = decode_text(text, "p.yaml")
    for d in b.diagnostics:
        assert d.render().startswith("p.yaml")


@FAST
@given(
    st.sampled_from(
        [
            "v1/Pod",
            "v1/Service",
            "apps/v1/Deployment",
            "networking.k8s.io/v1/NetworkPolicy",
            "cilium.io/v2/CiliumNetworkPolicy",
            "gateway.networking.k8s.io/v1/HTTPRoute",
            "networking.k8s.io/v1/Ingress",
            "cilium.io/v2alpha1/CiliumLoadBalancerIPPool",
        ]
    ),
    json_values,
    json_values,
)
def test_any_spec_of_a_known_kind_never_raises(api_kind: str, spec: object, meta: object) -> None:
    api, _, kind = api_kind.rpartition("/")
    doc = {"apiVersion": api, "kind": kind, "metadata": meta, "spec": spec}
    decode_text(json.dumps(doc), "p.json")
    decode_text(json.dumps({**doc, "metadata": {"name": "x", "labels": meta}}), "p.json")


keys = st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=3)
vals = st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=3)


@FAST
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["=", "!=", "in", "notin", "exists", "!"]),
            keys,
            st.lists(vals, min_size=1, max_size=3),
        ),
        max_size=4,
    ),
    st.dictionaries(keys, vals, max_size=4),
)
def test_selector_text_matches_direct_evaluation(
    reqs: list[tuple[str, str, list[str]]], labels: dict[str, str]
) -> None:
    parts: list[str] = []
    expect = True
    for op, k, vs in reqs:
        if op == "=":
            parts.append(f"{k}={vs[0]}")
            expect &= labels.get(k) == vs[0]
        elif op == "!=":
            parts.append(f"{k}!={vs[0]}")
            expect &= labels.get(k) != vs[0]
        elif op == "in":
            parts.append(f"{k} in ({','.join(vs)})")
            expect &= labels.get(k) in vs
        elif op == "notin":
            parts.append(f"{k} notin ({', '.join(vs)})")
            expect &= labels.get(k) not in vs
        elif op == "exists":
            parts.append(k)
            expect &= k in labels
        else:
            parts.append(f"!{k}")
            expect &= k not in labels
    assert parse_selector(",".join(parts)).matches(labels) == expect


@FAST
@given(
    st.dictionaries(
        st.sampled_from(["apiVersion", "kind", "metadata", "spec", "x"]),
        st.none() | st.just("") | st.just("v1") | st.just("ConfigMap") | json_values,
        max_size=5,
    )
)
def test_no_document_is_dropped_silently(doc: dict[str, object]) -> None:
    b = decode_text(json.dumps(doc), "p.json")
    assert b.objects or b.diagnostics
