"""Flow metrics: counters per type/verdict, drops by reason, ports, flags, ICMP, verdicts."""

from __future__ import annotations

from ciliate.observe.flow import (
    IP,
    TCP,
    UDP,
    CiliumEventType,
    Flow,
    ICMPv4,
    TCPFlags,
    TrafficDirection,
    Verdict,
)
from ciliate.observe.metrics import FlowMetrics

IPV4 = IP("10.0.0.1", "10.0.0.2")


def test_counters_and_prometheus_text() -> None:
    m = FlowMetrics()
    syn = Flow(
        time_ns=0,
        verdict=Verdict.FORWARDED,
        ip=IPV4,
        l4=TCP(40000, 80, TCPFlags.of("SYN")),
        is_reply=False,
        event_type=CiliumEventType(4, 0),
    )
    synack = Flow(
        time_ns=1,
        verdict=Verdict.FORWARDED,
        ip=IPV4,
        l4=TCP(80, 40000, TCPFlags.of("SYN", "ACK")),
        is_reply=True,
        event_type=CiliumEventType(4, 0),
    )
    drop = Flow(
        time_ns=2,
        verdict=Verdict.DROPPED,
        drop_reason=133,
        ip=IPV4,
        l4=UDP(5000, 53),
        event_type=CiliumEventType(1, 133),
    )
    ping = Flow(
        time_ns=3,
        verdict=Verdict.FORWARDED,
        ip=IPV4,
        l4=ICMPv4(8, 0),
        is_reply=False,
        event_type=CiliumEventType(4, 4),
    )
    verdict = Flow(
        time_ns=4,
        verdict=Verdict.DROPPED,
        ip=IPV4,
        l4=TCP(1, 22, TCPFlags.of("SYN")),
        event_type=CiliumEventType(5, 0),
        traffic_direction=TrafficDirection.INGRESS,
    )
    m.observe_all([syn, synack, drop, ping])
    m.observe(verdict)
    fp = "hubble_flows_processed_total"
    assert m.value(fp, type="Trace", subtype="to-endpoint", verdict="FORWARDED") == 2
    assert m.value(fp, type="Trace", subtype="to-overlay", verdict="FORWARDED") == 1
    assert m.value(fp, type="Drop", subtype="", verdict="DROPPED") == 1
    assert m.value("hubble_drop_total", reason="POLICY_DENIED", protocol="UDP") == 1
    assert m.value("hubble_tcp_flags_total", flag="SYN", family="IPv4") == 3
    assert m.value("hubble_tcp_flags_total", flag="ACK", family="IPv4") == 1
    # Replies do not count as requests to a port.
    assert m.value("hubble_port_distribution_total", protocol="TCP", port="80") == 1
    assert m.value("hubble_port_distribution_total", protocol="TCP", port="40000") == 0
    assert m.value("hubble_icmp_total", family="IPv4", type="EchoRequest") == 1
    assert (
        m.value("hubble_policy_verdicts_total", direction="ingress", match="none", action="dropped")
        == 1
    )
    text = m.render_prometheus()
    assert "# TYPE hubble_drop_total counter" in text
    assert 'hubble_drop_total{protocol="UDP",reason="POLICY_DENIED"} 1' in text
    assert text == m.render_prometheus()  # stable
