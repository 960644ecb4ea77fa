"""``flowline.encode_flow`` (the flow log's fast encoder) prints exactly what
``json.dumps(jsonpb.to_json(f), separators=(",", ":"), ensure_ascii=False)`` prints, for
any flow: every field set or unset, non-ASCII and quotes in strings, repeated fragments
served from its caches."""

from __future__ import annotations

import dataclasses
import inspect
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from ciliate.observe import flow as hf
from ciliate.observe.flowline import encode_fields, encode_flow
from ciliate.observe.jsonpb import to_json
from ciliate.observe.reasons import TraceObservationPoint, TraceReason

text = st.text(alphabet='abé-"\\/\n✓', max_size=6)
names = st.sampled_from(["", "web", "db-0", 'q"x', "ü"])
ports = st.integers(0, 65535)
ipv4 = st.sampled_from(["", "10.0.1.2", "1.1.1.1"])
endpoints = st.builds(
    hf.Endpoint,
    id=st.integers(0, 4095),
    identity=st.integers(0, 70000),
    cluster_name=st.sampled_from(["", "default"]),
    namespace=names,
    labels=st.lists(text, max_size=3).map(tuple),
    pod_name=names,
    workloads=st.lists(st.builds(hf.Workload, names, names), max_size=1).map(tuple),
)
l4s = st.one_of(
    st.none(),
    st.builds(hf.TCP, ports, ports, st.builds(hf.TCPFlags.from_bits, st.integers(0, 0x1FF))),
    st.builds(hf.UDP, ports, ports),
    st.builds(hf.SCTP, ports, ports),
    st.builds(hf.ICMPv4, st.integers(0, 20), st.integers(0, 15)),
    st.builds(hf.ICMPv6, st.integers(0, 140), st.integers(0, 3)),
)
policies = st.lists(
    st.builds(hf.Policy, names, names, names, st.lists(text, max_size=2).map(tuple),
              st.integers(0, 3)),
    max_size=2,
).map(tuple)  # fmt: skip
l7s = st.one_of(
    st.none(),
    st.builds(
        hf.Layer7,
        st.sampled_from(hf.L7FlowType),
        st.integers(0, 10**9),
        st.one_of(st.none(), st.builds(hf.HTTP, st.integers(0, 599), names, text, names)),
        st.one_of(st.none(), st.builds(hf.DNS, names, st.lists(ipv4, max_size=2).map(tuple))),
    ),
)
flows = st.builds(
    hf.Flow,
    time_ns=st.integers(0, 4_000_000_000 * 10**9),
    verdict=st.sampled_from(hf.Verdict),
    uuid=st.sampled_from(["", "u-1"]),
    emitter=st.one_of(st.none(), st.builds(hf.Emitter, names, names)),
    drop_reason=st.sampled_from([0, 133, 181, 158]),
    auth_type=st.sampled_from(hf.AuthType),
    ethernet=st.one_of(st.none(), st.builds(hf.Ethernet, names, names)),
    ip=st.one_of(
        st.none(), st.builds(hf.IP, ipv4, ipv4, st.sampled_from(hf.IPVersion), ipv4, st.booleans())
    ),
    l4=l4s,
    source=st.one_of(st.none(), endpoints),
    destination=st.one_of(st.none(), endpoints),
    type=st.sampled_from(hf.FlowType),
    node_name=st.sampled_from(["", "default/n1", "ü"]),
    node_labels=st.lists(text, max_size=2).map(tuple),
    source_names=st.lists(text, max_size=2).map(tuple),
    destination_names=st.lists(text, max_size=2).map(tuple),
    l7=l7s,
    is_reply=st.sampled_from([None, True, False]),
    event_type=st.one_of(
        st.none(), st.builds(hf.CiliumEventType, st.integers(0, 130), st.integers(0, 13))
    ),
    source_service=st.one_of(st.none(), st.builds(hf.Service, names, names)),
    destination_service=st.one_of(st.none(), st.builds(hf.Service, names, names)),
    traffic_direction=st.sampled_from(hf.TrafficDirection),
    policy_match_type=st.integers(0, 6),
    trace_observation_point=st.sampled_from(TraceObservationPoint),
    trace_reason=st.sampled_from(TraceReason),
    file=st.one_of(st.none(), st.builds(hf.FileInfo, names, st.integers(0, 9))),
    interface=st.one_of(st.none(), st.builds(hf.NetworkInterface, st.integers(0, 9), names)),
    proxy_port=st.sampled_from([0, 15001]),
    egress_allowed_by=policies,
    ingress_allowed_by=policies,
    egress_denied_by=policies,
    ingress_denied_by=policies,
    policy_log=st.lists(text, max_size=2).map(tuple),
    summary=text,
    extensions=st.lists(st.tuples(st.sampled_from(["rule", "provenance"]), text), max_size=3).map(
        tuple
    ),
)


def _reference(f: hf.Flow) -> str:
    return json.dumps(to_json(f), separators=(",", ":"), ensure_ascii=False)


@settings(max_examples=300, deadline=None)
@given(flows)
def test_encode_flow_is_the_jsonpb_line(f: hf.Flow) -> None:
    assert encode_flow(f) == _reference(f)
    assert encode_flow(f) == _reference(f)  # the second time from the caches


def test_equal_values_of_different_kinds_do_not_share_a_fragment() -> None:
    a = hf.Flow(time_ns=1, verdict=hf.Verdict.FORWARDED, l4=hf.UDP(1, 2))
    b = hf.Flow(time_ns=1, verdict=hf.Verdict.FORWARDED, l4=hf.SCTP(1, 2))
    assert '"UDP"' in encode_flow(a) and '"SCTP"' in encode_flow(b)
    assert encode_flow(b) == _reference(b)


def test_zero_ports_and_empty_flags_follow_protojson() -> None:
    none = hf.TCPFlags()
    for l4 in (hf.TCP(0, 0, none), hf.TCP(5, 0, none), hf.TCP(0, 80, hf.TCPFlags(SYN=True)),
               hf.UDP(0, 5), hf.SCTP(7, 0), hf.UDP(0, 0), hf.ICMPv4(0, 0)):  # fmt: skip
        for kind in (hf.FlowType.L3_L4, hf.FlowType.L7):
            f = hf.Flow(time_ns=0, verdict=hf.Verdict.FORWARDED, l4=l4, type=kind)
            assert encode_flow(f) == _reference(f)


def test_encode_fields_takes_flows_fields_in_order_with_its_defaults() -> None:
    params = list(inspect.signature(encode_fields).parameters.values())
    fields = dataclasses.fields(hf.Flow)
    assert [p.name for p in params] == [f.name for f in fields]
    for p, f in zip(params, fields, strict=True):
        if f.default_factory is not dataclasses.MISSING:
            assert p.default == f.default_factory()
        elif f.default is not dataclasses.MISSING:
            assert p.default == f.default
        else:
            assert p.default is inspect.Parameter.empty


@settings(max_examples=200, deadline=None)
@given(flows, st.booleans())
def test_encode_fields_is_the_line_of_the_flow_it_would_make(
    f: hf.Flow, given_summary: bool
) -> None:
    kw = {x.name: getattr(f, x.name) for x in dataclasses.fields(hf.Flow)}
    if not given_summary:
        kw["summary"] = ""  # computed, as Flow computes it
        f = hf.Flow(**kw)
    assert encode_fields(**kw) == _reference(f)
