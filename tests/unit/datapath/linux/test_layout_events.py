"""Ring-buffer records -> RawEvent -> Flow, without a kernel: records are built with the
byte layout of bpf/lib/trace.h (trace_notify v1, drop_notify v2, packet at HEADER_LEN) and
decoded with Hubble's semantics (cilium.md §14.2)."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv4Network

import pytest

from ciliate.datapath.linux.events import (
    HEADER_LEN,
    EventError,
    FlowEnricher,
    decode_packet,
    parse_event,
)
from ciliate.desired import (
    DesiredState,
    Device,
    EndpointState,
    Identity,
    IPCacheKey,
    NodeState,
    PolicyEntry,
    PolicyKey,
    Provenance,
    RemoteEndpointInfo,
)
from ciliate.observe.flow import TCP, ICMPv4, TrafficDirection, Verdict
from ciliate.observe.jsonpb import to_json
from ciliate.observe.reasons import TraceObservationPoint, TraceReason

WEB, CLIENT = IPv4Address("10.0.1.37"), IPv4Address("10.0.2.14")
DENY = Provenance("CiliumNetworkPolicy", "shop", "no-scanner", "spec.ingressDeny[0]")


def packet(src: IPv4Address, dst: IPv4Address, proto: int, l4: bytes) -> bytes:
    eth = bytes.fromhex("b2448d106ae33a1f0c9e5107") + b"\x08\x00"
    ip = struct.pack(
        ">BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, 0, 64, proto, 0, src.packed, dst.packed
    )
    return eth + ip + l4


def tcp_syn(sport: int, dport: int) -> bytes:
    return struct.pack(">HHIIBBHHH", sport, dport, 1, 0, 0x50, 0x02, 1024, 0, 0)


def trace_record(obs: int, source: int, src_label: int, dst_label: int, dst_id: int,
                 reason: int, ifindex: int, payload: bytes) -> bytes:  # fmt: skip
    hdr = struct.pack("<BBHIIHBB", 4, obs, source, 0xABC, len(payload), len(payload), 1, 0)
    hdr += struct.pack("<IIHBBI16s", src_label, dst_label, dst_id, reason, 0, ifindex, bytes(16))
    return hdr + payload + bytes(128 - len(payload))


def drop_record(reason: int, source: int, src_label: int, dst_label: int, payload: bytes,
                file: int = 2, line: int = 2118) -> bytes:  # fmt: skip
    hdr = struct.pack("<BBHIIHBB", 1, reason, source, 0, len(payload), len(payload), 2, 0)
    hdr += struct.pack("<IIIHBbIB3x", src_label, dst_label, 0, line, file, 0, 0, 0)
    hdr += bytes(HEADER_LEN - len(hdr))
    return hdr + payload


@pytest.fixture
def state() -> DesiredState:
    def ep(id_: int, pod: str, ip: IPv4Address, ident: int, app: str) -> EndpointState:
        return EndpointState(
            id=id_, pod=pod, ip=ip, identity=ident, lxc_name=f"lxc{id_:012x}",
            lxc_ifindex=100 + id_ % 100, lxc_mac="", pod_ifindex=0, pod_mac="",
            labels=(f"k8s:app={app}", f"k8s:io.kubernetes.pod.namespace={pod.split('/')[0]}"),
        )  # fmt: skip

    def node(name: str, eps: dict[int, EndpointState], policy: dict[int, dict[PolicyKey, PolicyEntry]]) -> NodeState:  # fmt: skip
        return NodeState(
            name=name, internal_ip=IPv4Address("172.18.0.2"), node_prefix_len=16,
            cilium_internal_ip=IPv4Address("10.0.1.1"), pod_cidr=IPv4Network("10.0.1.0/24"),
            health_ip=None, devices=(Device("cilium_vxlan", 5, "", "vxlan"),), routes=(),
            endpoints=eps, lxc={},
            ipcache={IPCacheKey(IPv4Network("0.0.0.0/0")): RemoteEndpointInfo(2)},
            policy=policy, lb4_services={}, lb4_backends={}, lb4_reverse_nat={}, maglev={},
        )  # fmt: skip

    web = ep(1547, "shop/web-7f4b9", WEB, 48213, "web")
    client = ep(77, "shop/scanner-66c2d", CLIENT, 41190, "scanner")
    pol = {1547: {PolicyKey(41190, False, 6, 8080, 16): PolicyEntry(deny=True, provenance=(DENY,))}}
    return DesiredState(
        cluster="default",
        nodes={"kind-worker": node("kind-worker", {1547: web}, pol),
               "kind-worker2": node("kind-worker2", {77: client}, {})},
        identities={48213: Identity(48213, ("k8s:app=web",)), 2: Identity(2, ("reserved:world",))},
    )  # fmt: skip


def test_trace_to_endpoint_becomes_an_ingress_forwarded_flow(state: DesiredState) -> None:
    pkt = packet(CLIENT, WEB, 6, tcp_syn(51532, 8080))
    ev = parse_event(trace_record(0, 1547, 41190, 48213, 1547, 0, 105, pkt))
    assert (ev.type, ev.subtype, ev.source, ev.dst_id, ev.len_cap) == (4, 0, 1547, 1547, len(pkt))
    flow = FlowEnricher(state, "kind-worker").to_flow(ev, 1_000_000_000)
    assert flow.verdict is Verdict.FORWARDED
    assert flow.trace_observation_point is TraceObservationPoint.TO_ENDPOINT
    assert flow.trace_reason is TraceReason.NEW and flow.is_reply is False
    assert flow.traffic_direction is TrafficDirection.INGRESS
    assert isinstance(flow.l4, TCP) and flow.l4.flags.SYN and flow.l4.destination_port == 8080
    assert flow.destination is not None and flow.destination.id == 1547
    assert flow.destination.pod_name == "web-7f4b9" and flow.destination.namespace == "shop"
    assert flow.source is not None and flow.source.id == 0  # remote pod: no local ID
    assert flow.source.identity == 41190 and flow.source.pod_name == "scanner-66c2d"
    assert flow.interface is not None and flow.interface.index == 105
    doc = to_json(flow)
    assert doc["node_name"] == "default/kind-worker"
    assert doc["flow"]["event_type"] == {"type": 4}
    assert doc["flow"]["Summary"] == "TCP Flags: SYN"


def test_reply_trace_at_the_source_is_egress(state: DesiredState) -> None:
    pkt = packet(WEB, CLIENT, 1, struct.pack(">BBHHH", 0, 0, 0, 7, 1))
    ev = parse_event(trace_record(4, 1547, 48213, 41190, 0, 2, 5, pkt))
    flow = FlowEnricher(state, "kind-worker").to_flow(ev, 0)
    assert flow.is_reply is True and flow.trace_reason is TraceReason.REPLY
    # isSourceEP (true) != isReply (true) is false -> INGRESS, as Hubble derives it
    assert flow.traffic_direction is TrafficDirection.INGRESS
    assert flow.trace_observation_point is TraceObservationPoint.TO_OVERLAY
    assert isinstance(flow.l4, ICMPv4) and flow.l4.type == 0
    assert flow.interface is not None and flow.interface.name == "cilium_vxlan"


def test_policy_drop_names_the_denying_policy(state: DesiredState) -> None:
    pkt = packet(CLIENT, WEB, 6, tcp_syn(38870, 8080))
    ev = parse_event(drop_record(181, 1547, 41190, 48213, pkt))
    assert ev.is_drop and ev.line == 2118 and ev.file == 2
    flow = FlowEnricher(state, "kind-worker").to_flow(ev, 0)
    assert flow.verdict is Verdict.DROPPED and flow.drop_reason == 181
    assert flow.is_reply is None and flow.traffic_direction is TrafficDirection.INGRESS
    assert flow.file is not None and (flow.file.name, flow.file.line) == ("bpf_lxc.c", 2118)
    assert [p.name for p in flow.ingress_denied_by] == ["no-scanner"]
    assert flow.extensions == (
        ("provenance", "CiliumNetworkPolicy shop/no-scanner spec.ingressDeny[0]"),
    )
    assert to_json(flow)["flow"]["drop_reason_desc"] == "POLICY_DENY"


def test_world_addresses_get_the_world_identity(state: DesiredState) -> None:
    pkt = packet(WEB, IPv4Address("1.1.1.1"), 6, tcp_syn(40110, 443))
    ev = parse_event(drop_record(133, 1547, 48213, 2, pkt))
    flow = FlowEnricher(state, "kind-worker").to_flow(ev, 0)
    assert flow.traffic_direction is TrafficDirection.EGRESS  # dropped at its source
    assert flow.destination is not None and flow.destination.identity == 2
    assert flow.destination.labels == ("reserved:world",)


def test_short_or_unknown_records_are_rejected() -> None:
    with pytest.raises(EventError):
        parse_event(b"\x04" * 10)
    with pytest.raises(EventError):
        parse_event(b"\x09" + bytes(HEADER_LEN))


def test_decode_packet_stops_where_the_capture_stops() -> None:
    pkt = packet(CLIENT, WEB, 6, tcp_syn(1, 2))
    assert decode_packet(pkt[:20]).ip is None
    assert decode_packet(pkt[:40]).l4 is None
    s = decode_packet(pkt)
    assert s.ethernet is not None and s.ethernet.destination == "b2:44:8d:10:6a:e3"
    assert s.ip is not None and s.ip.source == str(CLIENT)
