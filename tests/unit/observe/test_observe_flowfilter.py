"""observe.flowfilter directly: FilterSpec fields AND, values OR; the allow list, the
deny list, time bounds and --first/--last (the flags that build these are tested in
test_observe_filters.py)."""

from __future__ import annotations

import ipaddress

from ciliate.observe.flow import IP, TCP, UDP, Endpoint, Flow, TCPFlags, Verdict
from ciliate.observe.flowfilter import MATCH_ALL, FilterSpec, FlowFilter

WEB = Endpoint(identity=100, namespace="shop", pod_name="web-1")
DB = Endpoint(identity=200, namespace="data", pod_name="db-0")


def flow(
    t: int, src: Endpoint, dst: Endpoint, verdict: Verdict, port: int, udp: bool = False
) -> Flow:
    l4 = UDP(40000, port) if udp else TCP(40000, port, TCPFlags.of("SYN"))
    return Flow(
        time_ns=t,
        verdict=verdict,
        ip=IP("10.0.0.1", "10.0.0.2"),
        l4=l4,
        source=src,
        destination=dst,
    )


FLOWS = [
    flow(1, WEB, DB, Verdict.FORWARDED, 5432),
    flow(2, WEB, DB, Verdict.DROPPED, 5432),
    flow(3, DB, WEB, Verdict.FORWARDED, 80, udp=True),
    flow(4, WEB, WEB, Verdict.DROPPED, 80),
]


def times(flt: FlowFilter) -> list[int]:
    return [f.time_ns for f in flt.select(FLOWS)]


def test_match_all_and_empty_spec() -> None:
    assert times(MATCH_ALL) == [1, 2, 3, 4]
    assert FilterSpec().is_empty() and FilterSpec().matches(FLOWS[0])


def test_fields_are_anded_and_values_ored() -> None:
    dropped_to_web = FilterSpec(verdict=(Verdict.DROPPED,), destination_pod=("shop/web",))
    assert times(FlowFilter(allow=(dropped_to_web,))) == [4]
    either_verdict = FilterSpec(
        verdict=(Verdict.DROPPED, Verdict.FORWARDED), destination_port=(80,)
    )
    assert times(FlowFilter(allow=(either_verdict,))) == [3, 4]
    net = FilterSpec(source_ip=(ipaddress.ip_network("10.0.0.0/24"),), protocol=("udp",))
    assert times(FlowFilter(allow=(net,))) == [3]


def test_allow_specs_are_ored_and_deny_wins() -> None:
    from_db = FilterSpec(source_pod=("data/",))
    to_db = FilterSpec(destination_namespace=("data",))
    assert times(FlowFilter(allow=(from_db, to_db))) == [1, 2, 3]
    no_drops = FilterSpec(verdict=(Verdict.DROPPED,))
    assert times(FlowFilter(allow=(from_db, to_db), deny=(no_drops,))) == [1, 3]
    assert times(FlowFilter(deny=(no_drops,))) == [1, 3]


def test_time_bounds_and_first_last() -> None:
    assert times(FlowFilter(since_ns=2, until_ns=3)) == [2, 3]
    assert times(FlowFilter(last=2)) == [3, 4]
    assert times(FlowFilter(first=1)) == [1]
    assert times(FlowFilter(last=0)) == []
    assert FlowFilter(since_ns=5)(FLOWS[0]) is False
