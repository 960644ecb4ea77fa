"""Rendering: hubble's compact lines (cilium.md §13.12 examples), json, table and dict."""

from __future__ import annotations

import json

from ciliate.observe.flow import (
    DNS,
    IP,
    TCP,
    UDP,
    CiliumEventType,
    Endpoint,
    Flow,
    FlowType,
    ICMPv4,
    L7FlowType,
    Layer7,
    Policy,
    Service,
    TCPFlags,
    TrafficDirection,
    Verdict,
    from_json,
)
from ciliate.observe.jsonpb import parse_timestamp
from ciliate.observe.render import (
    FlowPrinter,
    format_time,
    identity_text,
    render_flow,
    render_flows,
)

FRONTEND = Endpoint(identity=30117, namespace="shop", pod_name="frontend-5d9c7")
WEB = Endpoint(id=1547, identity=48213, namespace="shop", pod_name="web-7f4b9")
SCANNER = Endpoint(identity=41190, namespace="shop", pod_name="scanner-66c2d")
COREDNS = Endpoint(identity=102, namespace="kube-system", pod_name="coredns-54f7c")
SYN = TCPFlags.of("SYN")


def at(text: str) -> int:
    return parse_timestamp(f"2026-03-04T{text}Z")


# The four example lines of cilium.md §13.12, each built from the flow hubble would see.
EXAMPLES = [
    (
        Flow(
            time_ns=at("10:21:33.456789"),
            verdict=Verdict.FORWARDED,
            ip=IP("10.0.1.90", "10.0.1.37"),
            l4=TCP(51532, 8080, SYN),
            source=FRONTEND,
            destination=WEB,
            is_reply=False,
            event_type=CiliumEventType(4, 0),
        ),
        "Mar  4 10:21:33.456: shop/frontend-5d9c7:51532 (ID:30117) -> shop/web-7f4b9:8080"
        " (ID:48213) to-endpoint FORWARDED (TCP Flags: SYN)",
    ),
    (
        Flow(
            time_ns=at("10:21:34.002117"),
            verdict=Verdict.DROPPED,
            ip=IP("10.0.2.14", "10.0.1.37"),
            l4=TCP(38870, 8080, SYN),
            source=SCANNER,
            destination=WEB,
            event_type=CiliumEventType(5, 0),
            traffic_direction=TrafficDirection.INGRESS,
            policy_match_type=0,
        ),
        "Mar  4 10:21:34.002: shop/scanner-66c2d:38870 (ID:41190) <> shop/web-7f4b9:8080"
        " (ID:48213) policy-verdict:none INGRESS DENIED (TCP Flags: SYN)",
    ),
    (
        Flow(
            time_ns=at("10:21:34.002117"),
            verdict=Verdict.DROPPED,
            drop_reason=133,
            ip=IP("10.0.2.14", "10.0.1.37"),
            l4=TCP(38870, 8080, SYN),
            source=SCANNER,
            destination=WEB,
            event_type=CiliumEventType(1, 133),
        ),
        "Mar  4 10:21:34.002: shop/scanner-66c2d:38870 (ID:41190) <> shop/web-7f4b9:8080"
        " (ID:48213) Policy denied DROPPED (TCP Flags: SYN)",
    ),
    (
        Flow(
            time_ns=at("10:21:35.120"),
            verdict=Verdict.FORWARDED,
            type=FlowType.L7,
            ip=IP("10.0.1.90", "10.0.3.2"),
            l4=UDP(47710, 53),
            source=FRONTEND,
            destination=COREDNS,
            is_reply=False,
            event_type=CiliumEventType(129, 0),
            l7=Layer7(L7FlowType.REQUEST, dns=DNS(query="api.example.com.", qtypes=("A",))),
        ),
        "Mar  4 10:21:35.120: shop/frontend-5d9c7:47710 (ID:30117) -> kube-system/coredns-54f7c:53"
        " (ID:102) dns-request proxy FORWARDED (DNS Query api.example.com. A)",
    ),
]


def test_compact_lines_match_the_reference_examples() -> None:
    for flow, line in EXAMPLES:
        assert render_flow(flow) == line


def test_reply_is_printed_swapped_with_a_left_arrow() -> None:
    reply = Flow(
        time_ns=at("10:21:33.500"),
        verdict=Verdict.FORWARDED,
        ip=IP("10.0.1.37", "10.0.1.90"),
        l4=TCP(8080, 51532, TCPFlags.of("SYN", "ACK")),
        source=WEB,
        destination=FRONTEND,
        is_reply=True,
        event_type=CiliumEventType(4, 0),
    )
    assert render_flow(reply) == (
        "Mar  4 10:21:33.500: shop/frontend-5d9c7:51532 (ID:30117) <- shop/web-7f4b9:8080"
        " (ID:48213) to-endpoint FORWARDED (TCP Flags: SYN, ACK)"
    )


def test_ips_reserved_identities_node_name_and_icmp() -> None:
    f = Flow(
        time_ns=at("09:05:01.000"),
        verdict=Verdict.FORWARDED,
        ip=IP("172.18.0.2", "1.1.1.1"),
        l4=ICMPv4(8, 0),
        source=Endpoint(identity=1),
        destination=Endpoint(identity=2, labels=("reserved:world",)),
        node_name="default/kind-worker",
        is_reply=False,
        event_type=CiliumEventType(4, 3),
    )
    assert render_flow(f, "compact", print_node_name=True) == (
        "Mar  4 09:05:01.000 [default/kind-worker]: 172.18.0.2 (host) -> 1.1.1.1 (world)"
        " to-stack FORWARDED (ICMPv4 EchoRequest)"
    )


def test_service_and_dns_names_and_ipv6_ports() -> None:
    f = Flow(
        time_ns=at("00:00:00"),
        verdict=Verdict.FORWARDED,
        ip=IP("fd00::1", "fd00::2"),
        l4=TCP(1234, 80, SYN),
        destination_service=Service("web", "shop"),
        source_names=("a.example.", "b.example."),
        is_reply=False,
        event_type=CiliumEventType(4, 4),
    )
    assert render_flow(f) == (
        "Mar  4 00:00:00.000: a.example.,b.example.:1234 (unknown) -> shop/web:80 (unknown)"
        " to-overlay FORWARDED (TCP Flags: SYN)"
    )
    g = Flow(time_ns=0, verdict=Verdict.FORWARDED, ip=IP("fd00::1", "fd00::2"), l4=UDP(5, 6))
    assert "[fd00::1]:5 (unknown) <> [fd00::2]:6" in render_flow(g)


def test_policy_names_and_allowed_verdict() -> None:
    f = Flow(
        time_ns=at("00:00:00"),
        verdict=Verdict.FORWARDED,
        ip=IP("10.0.0.1", "10.0.0.2"),
        l4=TCP(1, 80, SYN),
        source=FRONTEND,
        destination=WEB,
        is_reply=False,
        event_type=CiliumEventType(5, 0),
        traffic_direction=TrafficDirection.EGRESS,
        policy_match_type=2,
        egress_allowed_by=(Policy("allow-web", "shop", "CiliumNetworkPolicy"),),
    )
    line = render_flow(f, print_policy_names=True)
    assert "policy-verdict:L3-L4 EGRESS ALLOWED BY shop/allow-web (CiliumNetworkPolicy) (" in line
    assert "ALLOWED (TCP" in render_flow(f)


def test_json_output_is_one_object_per_line_and_round_trips() -> None:
    text = render_flows([f for f, _ in EXAMPLES], "json")
    lines = text.splitlines()
    assert len(lines) == 4
    for (flow, _), line in zip(EXAMPLES, lines, strict=True):
        assert " " not in line.split('"Summary"')[0].replace("DNS Query", "")  # compact JSON
        assert from_json(json.loads(line)) == flow
    assert render_flow(EXAMPLES[0][0], "jsonpb") == lines[0]


def test_table_is_aligned_with_header() -> None:
    text = render_flows([f for f, _ in EXAMPLES[:2]], "table")
    header, row1, row2 = text.splitlines()
    assert header.split() == ["TIMESTAMP", "SOURCE", "DESTINATION", "TYPE", "VERDICT", "SUMMARY"]
    # Every column starts at the same offset in every row.
    for word in ("SOURCE", "DESTINATION", "TYPE", "VERDICT", "SUMMARY"):
        col = header.index(word)
        assert row1[col - 3 : col] == "   " and row1[col] != " "
        assert row2[col - 3 : col] == "   " and row2[col] != " "
    assert row1.startswith("Mar  4 10:21:33.456   shop/frontend-5d9c7:51532")


def test_dict_records_with_separator() -> None:
    text = render_flows([f for f, _ in EXAMPLES[:2]], "dict")
    assert text.splitlines()[:7] == [
        "  TIMESTAMP: Mar  4 10:21:33.456",
        "     SOURCE: shop/frontend-5d9c7:51532",
        "DESTINATION: shop/web-7f4b9:8080",
        "       TYPE: to-endpoint",
        "    VERDICT: FORWARDED",
        "    SUMMARY: TCP Flags: SYN",
        "------------",
    ]


def test_streaming_printer() -> None:
    p = FlowPrinter("dict")
    first = p.format(EXAMPLES[0][0])
    second = p.format(EXAMPLES[1][0])
    assert not first.startswith("---") and second.startswith("------------\n")
    t = FlowPrinter("table")
    out = t.format(EXAMPLES[0][0]) + t.format(EXAMPLES[1][0])
    assert out.splitlines()[0].startswith("TIMESTAMP")
    assert len(out.splitlines()) == 3
    c = FlowPrinter()
    assert c.format(EXAMPLES[0][0]) == EXAMPLES[0][1] + "\n"


def test_time_and_identity_text() -> None:
    assert format_time(at("10:21:33.456999")) == "Mar  4 10:21:33.456"
    assert format_time(parse_timestamp("2026-11-21T01:02:03Z")) == "Nov 21 01:02:03.000"
    assert identity_text(1) == "(host)"
    assert identity_text(6) == "(remote-node)"
    assert identity_text(256) == "(ID:256)"


def test_l2_only_flows_show_mac_addresses() -> None:
    from ciliate.observe.flow import Ethernet

    arp = Flow(
        time_ns=at("00:00:01"),
        verdict=Verdict.FORWARDED,
        ethernet=Ethernet("aa:bb:cc:00:00:01", "ff:ff:ff:ff:ff:ff"),
        event_type=CiliumEventType(4, 5),
    )
    assert render_flow(arp) == (
        "Mar  4 00:00:01.000: aa:bb:cc:00:00:01 (unknown) <> ff:ff:ff:ff:ff:ff (unknown)"
        " from-endpoint FORWARDED ()"
    )
