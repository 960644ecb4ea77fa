"""Properties: any flow survives JSON (and the JSON line is plain JSON); ``--not F``
selects exactly the complement of ``F``; the ring keeps the newest ``capacity`` flows."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from ciliate.observe.filters import Term, build_filter
from ciliate.observe.flow import (
    IP,
    SCTP,
    TCP,
    UDP,
    AuthType,
    CiliumEventType,
    Endpoint,
    Flow,
    ICMPv4,
    ICMPv6,
    Policy,
    TCPFlags,
    TraceObservationPoint,
    TraceReason,
    TrafficDirection,
    Verdict,
    Workload,
    from_json,
    to_json,
)
from ciliate.observe.render import render_flow
from ciliate.observe.ring import FlowRing

names = st.text(alphabet="abcdefgh-", min_size=1, max_size=8)
ports = st.integers(0, 65535)
ipv4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
endpoints = st.builds(
    Endpoint,
    id=st.integers(0, 4095),
    identity=st.integers(0, 70000),
    cluster_name=st.sampled_from(["", "default"]),
    namespace=st.sampled_from(["", "shop", "data"]),
    labels=st.lists(names.map(lambda n: f"k8s:app={n}"), max_size=3).map(tuple),
    pod_name=st.sampled_from(["", "web-1", "db-0"]),
    workloads=st.lists(st.builds(Workload, names, st.just("Deployment")), max_size=1).map(tuple),
)
l4s = st.one_of(
    st.none(),
    st.builds(TCP, ports, ports, st.builds(TCPFlags.from_bits, st.integers(0, 0x1FF))),
    st.builds(UDP, ports, ports),
    st.builds(SCTP, ports, ports),
    st.builds(ICMPv4, st.integers(0, 20), st.integers(0, 15)),
    st.builds(ICMPv6, st.integers(0, 140), st.integers(0, 3)),
)
flows = st.builds(
    Flow,
    time_ns=st.integers(0, 4_000_000_000 * 10**9),
    verdict=st.sampled_from(Verdict),
    uuid=st.sampled_from(["", "u-1"]),
    drop_reason=st.sampled_from([0, 133, 181, 158]),
    auth_type=st.sampled_from(AuthType),
    ip=st.one_of(st.none(), st.builds(IP, ipv4, ipv4)),
    l4=l4s,
    source=st.one_of(st.none(), endpoints),
    destination=st.one_of(st.none(), endpoints),
    node_name=st.sampled_from(["", "default/n1"]),
    is_reply=st.sampled_from([None, True, False]),
    event_type=st.one_of(
        st.none(), st.builds(CiliumEventType, st.sampled_from([1, 4, 5, 129]), st.integers(0, 13))
    ),
    traffic_direction=st.sampled_from(TrafficDirection),
    policy_match_type=st.integers(0, 6),
    trace_observation_point=st.sampled_from(TraceObservationPoint),
    trace_reason=st.sampled_from(TraceReason),
    egress_allowed_by=st.lists(
        st.builds(Policy, names, names, st.just("NetworkPolicy")), max_size=2
    ).map(tuple),
    extensions=st.lists(st.tuples(st.just("rule"), names), max_size=3).map(tuple),
)


@settings(max_examples=200, deadline=None)
@given(flows)
def test_json_round_trip(f: Flow) -> None:
    line = json.dumps(to_json(f), separators=(",", ":"))
    assert from_json(json.loads(line)) == f
    for out in ("compact", "table", "dict"):
        assert render_flow(f, out)  # never crashes, never empty


TERMS = st.sampled_from(
    [
        Term("verdict", "DROPPED"),
        Term("protocol", "tcp"),
        Term("pod", "shop/"),
        Term("from-identity", "2"),
        Term("port", "80"),
        Term("type", "trace"),
        Term("traffic-direction", "egress"),
        Term("from-ip", "10.0.0.0/8"),
    ]
)


@settings(max_examples=200, deadline=None)
@given(flows, TERMS)
def test_not_is_the_complement(f: Flow, term: Term) -> None:
    pos = build_filter([term])
    neg = build_filter([Term(term.flag, term.value, negated=True)])
    assert pos(f) != neg(f)


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 20), st.integers(0, 60))
def test_ring_keeps_newest(capacity: int, n: int) -> None:
    r = FlowRing(capacity)
    for i in range(n):
        r.append(Flow(time_ns=i, verdict=Verdict.FORWARDED))
    kept = [f.time_ns for f in r.snapshot()]
    assert kept == list(range(max(0, n - capacity), n))
    got, cur = r.read_after(0)
    assert cur == n and [f.time_ns for f in got] == kept
    assert r.lost_after(0) == max(0, n - capacity)
