"""Flow records: Hubble's JSON shape (cilium.md §14.3), summaries, and the round trip."""

from __future__ import annotations

import json

import pytest

from ciliate.observe.flow import (
    DNS,
    HTTP,
    IP,
    SCTP,
    TCP,
    UDP,
    CiliumEventType,
    Endpoint,
    Ethernet,
    FileInfo,
    Flow,
    FlowType,
    ICMPv4,
    ICMPv6,
    L7FlowType,
    Layer7,
    NetworkInterface,
    Policy,
    Service,
    TCPFlags,
    TraceObservationPoint,
    TraceReason,
    TrafficDirection,
    Verdict,
    Workload,
    from_json,
    time_ns_of,
    to_json,
)
from ciliate.observe.jsonpb import format_timestamp, parse_timestamp

# cilium.md §14.3, verbatim (joined onto one line).
EXAMPLE = """{"flow":{"time":"2026-03-04T10:21:34.002117532Z","uuid":"7d0b1c2e-5f11-4f0a-9d77-2a6c3c1f8e40",
 "emitter":{"name":"Hubble","version":"1.19.4"},"verdict":"DROPPED","drop_reason":133,
 "ethernet":{"source":"3a:1f:0c:9e:51:07","destination":"b2:44:8d:10:6a:e3"},
 "IP":{"source":"10.0.2.14","destination":"10.0.1.37","ipVersion":"IPv4"},
 "l4":{"TCP":{"source_port":38870,"destination_port":8080,"flags":{"SYN":true}}},
 "source":{"identity":41190,"cluster_name":"default","namespace":"shop","labels":["k8s:app=scanner","k8s:io.kubernetes.pod.namespace=shop"],"pod_name":"scanner-66c2d"},
 "destination":{"ID":1547,"identity":48213,"cluster_name":"default","namespace":"shop","labels":["k8s:app=web","k8s:io.kubernetes.pod.namespace=shop"],"pod_name":"web-7f4b9","workloads":[{"name":"web","kind":"Deployment"}]},
 "Type":"L3_L4","node_name":"default/kind-worker","event_type":{"type":1,"sub_type":133},
 "traffic_direction":"INGRESS","drop_reason_desc":"POLICY_DENIED","file":{"name":"bpf_lxc.c","line":2118},
 "Summary":"TCP Flags: SYN"},
 "node_name":"default/kind-worker","time":"2026-03-04T10:21:34.002117532Z"}"""

T = parse_timestamp("2026-03-04T10:21:34.002117532Z")


def example_flow() -> Flow:
    return Flow(
        time_ns=T,
        uuid="7d0b1c2e-5f11-4f0a-9d77-2a6c3c1f8e40",
        verdict=Verdict.DROPPED,
        drop_reason=133,
        ethernet=Ethernet("3a:1f:0c:9e:51:07", "b2:44:8d:10:6a:e3"),
        ip=IP("10.0.2.14", "10.0.1.37"),
        l4=TCP(38870, 8080, TCPFlags.of("SYN")),
        source=Endpoint(
            identity=41190,
            cluster_name="default",
            namespace="shop",
            labels=("k8s:app=scanner", "k8s:io.kubernetes.pod.namespace=shop"),
            pod_name="scanner-66c2d",
        ),
        destination=Endpoint(
            id=1547,
            identity=48213,
            cluster_name="default",
            namespace="shop",
            labels=("k8s:app=web", "k8s:io.kubernetes.pod.namespace=shop"),
            pod_name="web-7f4b9",
            workloads=(Workload("web", "Deployment"),),
        ),
        type=FlowType.L3_L4,
        node_name="default/kind-worker",
        event_type=CiliumEventType(1, 133),
        traffic_direction=TrafficDirection.INGRESS,
        file=FileInfo("bpf_lxc.c", 2118),
    )


def test_json_matches_the_reference_example_exactly_including_key_order() -> None:
    expected = json.loads(EXAMPLE)
    got = to_json(example_flow())
    assert got == expected
    assert list(got) == list(expected)
    assert list(got["flow"]) == list(expected["flow"])
    # The encoded line is what `hubble observe -o json` prints (no spaces).
    line = json.dumps(got, separators=(",", ":"))
    assert json.loads(line) == expected


def test_round_trip_of_the_example() -> None:
    f = example_flow()
    assert from_json(to_json(f)) == f
    assert from_json(json.loads(EXAMPLE)) == f


def test_summary_is_computed_when_not_given() -> None:
    assert example_flow().summary == "TCP Flags: SYN"


@pytest.mark.parametrize(
    ("l4", "summary"),
    [
        (TCP(1, 2, TCPFlags.of("ACK", "SYN")), "TCP Flags: SYN, ACK"),
        (TCP(1, 2, TCPFlags.of("FIN", "ACK", "PSH")), "TCP Flags: ACK, FIN, PSH"),
        (TCP(1, 2, TCPFlags.from_bits(0x14)), "TCP Flags: ACK, RST"),
        (UDP(5353, 53), "UDP"),
        (SCTP(1, 2), "SCTP"),
        (ICMPv4(8, 0), "ICMPv4 EchoRequest"),
        (ICMPv4(0, 0), "ICMPv4 EchoReply"),
        (ICMPv4(3, 3), "ICMPv4 DestinationUnreachable(Port)"),
        (ICMPv6(128, 0), "ICMPv6 EchoRequest"),
    ],
)
def test_l4_summaries(l4: TCP | UDP | SCTP | ICMPv4 | ICMPv6, summary: str) -> None:
    assert Flow(time_ns=0, verdict=Verdict.FORWARDED, l4=l4).summary == summary


def test_l7_summaries() -> None:
    req = Layer7(L7FlowType.REQUEST, http=HTTP(method="GET", url="http://web/path"))
    resp = Layer7(
        L7FlowType.RESPONSE,
        latency_ns=12_400_000,
        http=HTTP(code=200, method="GET", url="http://web/path"),
    )
    q = Layer7(L7FlowType.REQUEST, dns=DNS(query="api.example.com.", qtypes=("A",)))
    a = Layer7(
        L7FlowType.RESPONSE,
        dns=DNS(
            query="api.example.com.",
            ips=("93.184.216.34",),
            ttl=30,
            qtypes=("A",),
            observation_source="proxy",
        ),
    )
    nx = Layer7(L7FlowType.RESPONSE, dns=DNS(query="nope.", rcode=3, qtypes=("A",)))

    def s(l7: Layer7) -> str:
        return Flow(time_ns=0, verdict=Verdict.FORWARDED, type=FlowType.L7, l7=l7).summary

    assert s(req) == "HTTP/1.1 GET http://web/path"
    assert s(resp) == "HTTP/1.1 200 12ms (GET http://web/path)"
    assert s(q) == "DNS Query api.example.com. A"
    assert s(a) == 'DNS Answer "93.184.216.34" TTL: 30 (Proxy api.example.com. A)'
    assert s(nx) == "DNS Answer RCode: Non-Existent Domain TTL: 0 (Proxy nope. A)"


def test_zero_values_are_omitted_but_is_reply_false_is_printed() -> None:
    f = Flow(time_ns=T, verdict=Verdict.FORWARDED, l4=UDP(0, 53), is_reply=False, emitter=None)
    d = to_json(f)["flow"]
    assert d == {
        "time": "2026-03-04T10:21:34.002117532Z",
        "verdict": "FORWARDED",
        "l4": {"UDP": {"destination_port": 53}},
        "Type": "L3_L4",
        "is_reply": False,
        "Summary": "UDP",
    }
    assert "node_name" not in to_json(f)
    r = to_json(Flow(time_ns=T, verdict=Verdict.FORWARDED, is_reply=True))["flow"]
    assert r["reply"] is True and r["is_reply"] is True


def test_full_flow_round_trips() -> None:
    f = Flow(
        time_ns=T,
        verdict=Verdict.FORWARDED,
        uuid="u",
        ip=IP("10.10.1.5", "10.96.0.10", source_xlated="172.18.0.3", encrypted=True),
        l4=TCP(40000, 80, TCPFlags.of("SYN", "ACK")),
        source=Endpoint(id=12, identity=1),
        destination=Endpoint(identity=2, labels=("reserved:world",)),
        node_name="default/n1",
        node_labels=("kubernetes.io/hostname=n1",),
        source_names=("a.example.",),
        destination_names=("b.example.",),
        is_reply=True,
        event_type=CiliumEventType(4, 0),
        source_service=Service("web", "shop"),
        destination_service=Service("db", "shop"),
        traffic_direction=TrafficDirection.EGRESS,
        policy_match_type=2,
        trace_observation_point=TraceObservationPoint.TO_ENDPOINT,
        trace_reason=TraceReason.REPLY,
        interface=NetworkInterface(7, "lxc1234"),
        proxy_port=15001,
        egress_allowed_by=(Policy("allow-web", "shop", "CiliumNetworkPolicy", revision=3),),
        ingress_denied_by=(Policy("deny", "", "CiliumClusterwideNetworkPolicy"),),
        policy_log=("audit",),
        extensions=(("rule", "spec.egress[0]"), ("source", "policies/web.yaml:14")),
    )
    d = to_json(f)
    assert d["flow"]["trace_observation_point"] == "TO_ENDPOINT"
    assert d["flow"]["trace_reason"] == "REPLY"
    assert d["flow"]["egress_allowed_by"] == [
        {"name": "allow-web", "namespace": "shop", "revision": "3", "kind": "CiliumNetworkPolicy"}
    ]
    assert d["flow"]["extensions"]["@type"].startswith("type.googleapis.com/")
    assert from_json(json.loads(json.dumps(d))) == f
    l7 = Flow(
        time_ns=T,
        verdict=Verdict.FORWARDED,
        type=FlowType.L7,
        l7=Layer7(L7FlowType.RESPONSE, 5_000_000, http=HTTP(404, "GET", "http://x/", "HTTP/1.1")),
    )
    assert to_json(l7)["flow"]["l7"]["latency_ns"] == "5000000"
    assert from_json(to_json(l7)) == l7


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (1_700_000_000 * 10**9, "2023-11-14T22:13:20Z"),
        (1_700_000_000 * 10**9 + 5_000_000, "2023-11-14T22:13:20.005Z"),
        (1_700_000_000 * 10**9 + 5_000, "2023-11-14T22:13:20.000005Z"),
        (1_700_000_000 * 10**9 + 5, "2023-11-14T22:13:20.000000005Z"),
    ],
)
def test_timestamps_use_protojson_fraction_lengths(ns: int, text: str) -> None:
    assert format_timestamp(ns) == text
    assert parse_timestamp(text) == ns


def test_time_helpers() -> None:
    assert time_ns_of(1.5) == 1_500_000_000
    assert Flow(time_ns=1_500_000_000, verdict=Verdict.FORWARDED).time == 1.5
    assert parse_timestamp("2023-11-14T23:13:20+01:00") == 1_700_000_000 * 10**9


def test_repeated_extension_keys_become_a_list_and_round_trip() -> None:
    f = Flow(
        time_ns=T,
        verdict=Verdict.DROPPED,
        extensions=(("provenance", "a.yaml:3 rule 0"), ("provenance", "b.yaml:9 rule 2")),
    )
    ext = to_json(f)["flow"]["extensions"]
    assert ext["provenance"] == ["a.yaml:3 rule 0", "b.yaml:9 rule 2"]
    assert from_json(to_json(f)) == f


def test_set_but_empty_messages_are_printed_like_protojson() -> None:
    f = Flow(
        time_ns=T,
        verdict=Verdict.FORWARDED,
        emitter=None,
        l4=TCP(1, 2),
        source=Endpoint(),
        destination=None,
    )
    d = to_json(f)["flow"]
    assert d["source"] == {}
    assert "destination" not in d
    assert d["l4"] == {"TCP": {"source_port": 1, "destination_port": 2, "flags": {}}}
    assert from_json(to_json(f)) == f
    # L7 records carry ports only.
    l7 = Flow(time_ns=T, verdict=Verdict.FORWARDED, type=FlowType.L7, l4=TCP(1, 2))
    assert to_json(l7)["flow"]["l4"] == {"TCP": {"source_port": 1, "destination_port": 2}}
