"""hubble observe filters: truth tables for each flag kind, OR/AND/--not composition,
either-direction flags, times, --last/--first, and argparse wiring."""

from __future__ import annotations

import argparse

import pytest

from ciliate.observe.filters import (
    FilterError,
    FlowFilter,
    Term,
    add_filter_arguments,
    add_output_arguments,
    build_filter,
    from_args,
    parse_label_selector,
    parse_time,
)
from ciliate.observe.flow import (
    HTTP,
    IP,
    TCP,
    UDP,
    CiliumEventType,
    Endpoint,
    Flow,
    FlowType,
    ICMPv4,
    IPVersion,
    L7FlowType,
    Layer7,
    Service,
    TCPFlags,
    TrafficDirection,
    Verdict,
)

S = 1_000_000_000
WEB = Endpoint(
    id=10,
    identity=48213,
    namespace="shop",
    pod_name="web-7f4b9",
    labels=("k8s:app=web", "k8s:tier=front", "k8s:io.kubernetes.pod.namespace=shop"),
)
DB = Endpoint(
    identity=50000,
    namespace="data",
    pod_name="db-0",
    labels=("k8s:app=db", "k8s:io.kubernetes.pod.namespace=data"),
)
WORLD = Endpoint(identity=2, labels=("reserved:world",))

# A small corpus: name → flow.
F: dict[str, Flow] = {
    "web->db syn": Flow(
        time_ns=100 * S,
        verdict=Verdict.FORWARDED,
        ip=IP("10.10.1.5", "10.10.2.7"),
        l4=TCP(40000, 5432, TCPFlags.of("SYN")),
        source=WEB,
        destination=DB,
        node_name="default/mycluster-worker",
        is_reply=False,
        event_type=CiliumEventType(4, 0),
        traffic_direction=TrafficDirection.EGRESS,
        uuid="u1",
    ),
    "db->web synack": Flow(
        time_ns=101 * S,
        verdict=Verdict.FORWARDED,
        ip=IP("10.10.2.7", "10.10.1.5"),
        l4=TCP(5432, 40000, TCPFlags.of("SYN", "ACK")),
        source=DB,
        destination=WEB,
        node_name="default/mycluster-worker2",
        is_reply=True,
        event_type=CiliumEventType(4, 4),
        traffic_direction=TrafficDirection.INGRESS,
        uuid="u2",
    ),
    "world drop": Flow(
        time_ns=102 * S,
        verdict=Verdict.DROPPED,
        drop_reason=133,
        ip=IP("1.1.1.1", "10.10.1.5"),
        l4=UDP(53, 9999),
        source=WORLD,
        destination=WEB,
        node_name="default/mycluster-worker",
        event_type=CiliumEventType(1, 133),
        traffic_direction=TrafficDirection.INGRESS,
        uuid="u3",
    ),
    "ping": Flow(
        time_ns=103 * S,
        verdict=Verdict.FORWARDED,
        ip=IP("10.10.1.5", "8.8.8.8"),
        l4=ICMPv4(8, 0),
        source=WEB,
        destination=WORLD,
        node_name="default/mycluster-worker",
        event_type=CiliumEventType(4, 3),
        uuid="u4",
    ),
    "http 503": Flow(
        time_ns=104 * S,
        verdict=Verdict.FORWARDED,
        type=FlowType.L7,
        ip=IP("10.10.1.5", "10.10.2.7"),
        l4=TCP(40001, 80),
        source=WEB,
        destination=DB,
        destination_service=Service("db", "data"),
        node_name="default/mycluster-worker",
        event_type=CiliumEventType(129, 0),
        l7=Layer7(
            L7FlowType.RESPONSE,
            3_000_000,
            http=HTTP(503, "GET", "http://db/api/v1/items?x=1"),
        ),
        uuid="u5",
    ),
    "verdict deny": Flow(
        time_ns=105 * S,
        verdict=Verdict.DROPPED,
        ip=IP("10.10.2.7", "10.10.1.5"),
        l4=TCP(41000, 8080, TCPFlags.of("SYN")),
        source=DB,
        destination=WEB,
        node_name="default/mycluster-worker",
        event_type=CiliumEventType(5, 0),
        traffic_direction=TrafficDirection.INGRESS,
        uuid="u6",
    ),
}


def shown(*terms: Term, **kw: int) -> set[str]:
    flt = build_filter(list(terms), **kw)
    return {name for name, f in F.items() if flt(f)}


def t(flag: str, value: str, negated: bool = False) -> Term:
    return Term(flag, value, negated)


ALL = set(F)


@pytest.mark.parametrize(
    ("terms", "expected"),
    [
        ([], ALL),
        ([t("from-pod", "shop/web")], {"web->db syn", "ping", "http 503"}),
        ([t("from-pod", "web")], {"web->db syn", "ping", "http 503"}),
        ([t("from-pod", "data/web")], set()),
        ([t("to-pod", "shop/")], {"db->web synack", "world drop", "verdict deny"}),
        (
            [t("pod", "data/db")],
            {"web->db syn", "db->web synack", "http 503", "verdict deny"},
        ),
        ([t("namespace", "data")], {"web->db syn", "db->web synack", "http 503", "verdict deny"}),
        ([t("from-namespace", "data")], {"db->web synack", "verdict deny"}),
        ([t("to-namespace", "data")], {"web->db syn", "http 503"}),
        ([t("from-ip", "1.1.1.1")], {"world drop"}),
        (
            [t("to-ip", "10.10.0.0/16")],
            {"web->db syn", "db->web synack", "world drop", "http 503", "verdict deny"},
        ),
        ([t("ip", "8.8.8.0/24")], {"ping"}),
        ([t("verdict", "DROPPED")], {"world drop", "verdict deny"}),
        ([t("verdict", "dropped"), t("verdict", "forwarded")], ALL),  # same kind: OR
        ([t("protocol", "tcp")], {"web->db syn", "db->web synack", "http 503", "verdict deny"}),
        ([t("protocol", "udp")], {"world drop"}),
        ([t("protocol", "icmp")], {"ping"}),
        ([t("protocol", "http")], {"http 503"}),
        ([t("protocol", "udp"), t("protocol", "icmp")], {"world drop", "ping"}),
        ([t("port", "5432")], {"web->db syn", "db->web synack"}),
        ([t("to-port", "5432")], {"web->db syn"}),
        ([t("from-port", "5432")], {"db->web synack"}),
        ([t("type", "drop")], {"world drop"}),
        ([t("type", "trace")], {"web->db syn", "db->web synack", "ping"}),
        ([t("type", "trace:to-overlay")], {"db->web synack"}),
        ([t("type", "trace:0")], {"web->db syn"}),
        ([t("type", "policy-verdict")], {"verdict deny"}),
        ([t("type", "l7")], {"http 503"}),
        ([t("type", "drop:POLICY_DENIED")], {"world drop"}),
        ([t("traffic-direction", "ingress")], {"db->web synack", "world drop", "verdict deny"}),
        ([t("label", "app=db")], {"web->db syn", "db->web synack", "http 503", "verdict deny"}),
        ([t("from-label", "k8s:app=web")], {"web->db syn", "ping", "http 503"}),
        ([t("from-label", "app in (web, db),tier")], {"web->db syn", "ping", "http 503"}),
        ([t("to-label", "reserved:world")], {"ping"}),
        ([t("to-label", "!app")], {"ping"}),
        ([t("from-label", "app!=web")], {"db->web synack", "world drop", "verdict deny"}),
        ([t("identity", "world")], {"world drop", "ping"}),
        ([t("identity", "reserved:world")], {"world drop", "ping"}),
        ([t("from-identity", "50000")], {"db->web synack", "verdict deny"}),
        ([t("node-name", "default/mycluster-worker2")], {"db->web synack"}),
        ([t("node-name", "mycluster-worker2")], {"db->web synack"}),
        ([t("node-name", "*worker2")], {"db->web synack"}),
        ([t("http-status", "5+")], {"http 503"}),
        ([t("http-status", "503")], {"http 503"}),
        ([t("http-status", "404")], set()),
        ([t("http-method", "get")], {"http 503"}),
        ([t("http-path", "^/api/v1")], {"http 503"}),
        ([t("http-path", "^/v1")], set()),
        ([t("to-service", "data/db")], {"http 503"}),
        ([t("drop-reason-desc", "policy_denied")], {"world drop"}),
        ([t("tcp-flags", "SYN")], {"web->db syn", "db->web synack", "verdict deny"}),
        ([t("tcp-flags", "SYN,ACK")], {"db->web synack"}),
        ([t("ip-version", "6")], set()),
        ([t("uuid", "u4")], {"ping"}),
    ],
)
def test_truth_table_per_flag(terms: list[Term], expected: set[str]) -> None:
    assert shown(*terms) == expected


def test_different_kinds_are_anded() -> None:
    assert shown(t("from-pod", "shop/web"), t("protocol", "tcp")) == {"web->db syn", "http 503"}
    assert shown(t("verdict", "DROPPED"), t("protocol", "tcp")) == {"verdict deny"}


def test_not_negates_the_next_filter() -> None:
    assert shown(t("verdict", "FORWARDED", negated=True)) == {"world drop", "verdict deny"}
    assert shown(t("protocol", "tcp"), t("from-pod", "shop/web", negated=True)) == {
        "db->web synack",
        "verdict deny",
    }
    # Negated either-direction flag: neither side may match.
    assert shown(t("pod", "data/db", negated=True)) == {"world drop", "ping"}


def test_either_direction_flags_stay_on_one_side() -> None:
    # "--pod X --port P" means X's own side uses P (hubble's left/right specs):
    # web never uses 5432 itself, db does in both directions.
    assert shown(t("pod", "shop/web"), t("port", "5432")) == set()
    assert shown(t("pod", "data/db"), t("port", "5432")) == {"web->db syn", "db->web synack"}
    # A directional flag plus an either flag: both must hold.
    assert shown(t("pod", "shop/web"), t("to-ip", "8.8.8.8")) == {"ping"}


def test_time_bounds_and_last_first() -> None:
    assert shown(since_ns=103 * S) == {"ping", "http 503", "verdict deny"}
    assert shown(since_ns=101 * S, until_ns=102 * S) == {"db->web synack", "world drop"}
    flt = build_filter([t("verdict", "FORWARDED")], last=2)
    assert [f.uuid for f in flt.select(F.values())] == ["u4", "u5"]
    flt = build_filter([], first=2)
    assert [f.uuid for f in flt.select(F.values())] == ["u1", "u2"]
    assert build_filter([], last=0).select(F.values()) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", 1000 * S - 30 * S),
        ("5m", 1000 * S - 300 * S),
        ("1h30m", 1000 * S - 5400 * S),
        ("1.5s", 1000 * S - 1_500_000_000),
        ("1970-01-01T00:10:00Z", 600 * S),
        ("1970-01-01T00:10:00", 600 * S),
        ("1970-01-01 00:10:00+00:00", 600 * S),
        ("1970-01-02", 86400 * S),
    ],
)
def test_parse_time(text: str, expected: int) -> None:
    assert parse_time(text, now_ns=1000 * S) == expected


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("verdict", "MAYBE"),
        ("from-ip", "10.0.0.0/33"),
        ("port", "70000"),
        ("protocol", "carrier-pigeon"),
        ("type", "nonsense"),
        ("type", "trace:sideways"),
        ("http-status", "99"),
        ("http-path", "(unclosed"),
        ("label", "a=b,,c"),
        ("label", "a in (b"),
        ("drop-reason-desc", "BECAUSE"),
        ("tcp-flags", "SYN,WAT"),
        ("identity", "nobody"),
        ("ip-version", "5"),
        ("traffic-direction", "sideways"),
    ],
)
def test_bad_values_raise_filter_error_naming_the_flag(flag: str, value: str) -> None:
    with pytest.raises(FilterError) as exc:
        build_filter([t(flag, value)])
    assert f"--{flag}" in str(exc.value)
    assert exc.value.exit_code == 1


def test_bad_time_raises() -> None:
    with pytest.raises(FilterError):
        parse_time("yesterday-ish", 0)


def test_label_selector_parser() -> None:
    sel = parse_label_selector("app=web, tier in (a,b),!legacy,env!=prod,k8s:team")
    labels = {"app": "web", "tier": "a", "env": "dev", "k8s:team": "x"}
    assert sel.matches(labels)
    assert not sel.matches({**labels, "legacy": "1"})
    assert not sel.matches({**labels, "env": "prod"})
    assert parse_label_selector("a==b").matches({"a": "b"})


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="observe")
    add_filter_arguments(p)
    add_output_arguments(p)
    return p


def test_argparse_round_trip_with_not_and_repeats() -> None:
    args = parser().parse_args(
        [
            "--from-pod",
            "shop/web",
            "--not",
            "--protocol",
            "icmp",
            "--verdict",
            "FORWARDED",
            "--verdict",
            "DROPPED",
            "-n",
            "data",
            "-o",
            "json",
            "--print-node-name",
            "--last",
            "5",
        ]
    )
    assert args.output == "json" and args.print_node_name and args.last == 5
    flt = from_args(args)
    assert isinstance(flt, FlowFilter)
    assert flt.last == 5
    got = {name for name, f in F.items() if flt(f)}
    assert got == {"web->db syn", "http 503"}


def test_argparse_since_uses_injected_now() -> None:
    args = parser().parse_args(["--since", "2s", "--until", "1s"])
    flt = from_args(args, now_ns=104 * S)
    assert {n for n, f in F.items() if flt(f)} == {"world drop", "ping"}


def test_dangling_not_is_an_error() -> None:
    args = parser().parse_args(["--not"])
    with pytest.raises(FilterError):
        from_args(args)


def test_no_flags_match_everything() -> None:
    flt = from_args(parser().parse_args([]))
    assert all(flt(f) for f in F.values())
    assert flt.select(F.values()) == list(F.values())


def test_ip_version_and_bare_ipv6() -> None:
    f6 = Flow(
        time_ns=0,
        verdict=Verdict.FORWARDED,
        ip=IP("fd00::1", "fd00::2", IPVersion.IPv6),
        l4=UDP(1, 2),
    )
    assert build_filter([t("ip-version", "v6")])(f6)
    assert build_filter([t("ip", "fd00::/64")])(f6)
    assert not build_filter([t("ip", "10.0.0.0/8")])(f6)
