"""Golden output: one corpus of flows in every output format (compact, json, table, dict).

Regenerate after an intended change with ``pytest --update-golden`` (or
CILIATE_UPDATE_GOLDEN=1) and review the diff of tests/unit/observe/golden/.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ciliate.observe.flow import (
    DNS,
    HTTP,
    IP,
    TCP,
    UDP,
    CiliumEventType,
    Endpoint,
    Ethernet,
    FileInfo,
    Flow,
    FlowType,
    ICMPv4,
    L7FlowType,
    Layer7,
    NetworkInterface,
    Policy,
    TCPFlags,
    TraceObservationPoint,
    TraceReason,
    TrafficDirection,
    Verdict,
    Workload,
)
from ciliate.observe.render import render_flows

GOLDEN = Path(__file__).parent / "golden"
T0 = 1_772_619_693_456_789_123  # 2026-03-04T10:21:33.456789123Z

BUSYBOX = Endpoint(
    id=1204,
    identity=27123,
    cluster_name="default",
    namespace="networking101",
    labels=("k8s:app=busybox", "k8s:io.kubernetes.pod.namespace=networking101"),
    pod_name="busybox-c8bbbbb84-fmhwc",
    workloads=(Workload("busybox", "Deployment"),),
)
NETSHOOT = Endpoint(
    id=377,
    identity=9012,
    cluster_name="default",
    namespace="networking101",
    labels=("k8s:app=netshoot", "k8s:io.kubernetes.pod.namespace=networking101"),
    pod_name="netshoot-7d996d7884-8kg5x",
)


def corpus() -> list[Flow]:
    ip = IP("10.10.2.15", "10.10.1.7")
    return [
        Flow(
            time_ns=T0,
            uuid="00000000-0000-4000-8000-000000000001",
            verdict=Verdict.FORWARDED,
            ethernet=Ethernet("9a:1c:2e:00:00:01", "9a:1c:2e:00:00:02"),
            ip=ip,
            l4=ICMPv4(8, 0),
            source=BUSYBOX,
            destination=NETSHOOT,
            node_name="default/mycluster-worker",
            is_reply=False,
            event_type=CiliumEventType(4, 4),
            traffic_direction=TrafficDirection.EGRESS,
            trace_observation_point=TraceObservationPoint.TO_OVERLAY,
            trace_reason=TraceReason.NEW,
            interface=NetworkInterface(4, "cilium_vxlan"),
        ),
        Flow(
            time_ns=T0 + 1_250_000,
            uuid="00000000-0000-4000-8000-000000000002",
            verdict=Verdict.FORWARDED,
            ip=IP("10.10.1.7", "10.10.2.15"),
            l4=ICMPv4(0, 0),
            source=NETSHOOT,
            destination=BUSYBOX,
            node_name="default/mycluster-worker2",
            is_reply=True,
            event_type=CiliumEventType(4, 0),
            traffic_direction=TrafficDirection.INGRESS,
            trace_observation_point=TraceObservationPoint.TO_ENDPOINT,
            trace_reason=TraceReason.REPLY,
        ),
        Flow(
            time_ns=T0 + 2_000_000_000,
            uuid="00000000-0000-4000-8000-000000000003",
            verdict=Verdict.DROPPED,
            drop_reason=133,
            ip=IP("10.10.2.15", "10.10.1.7"),
            l4=TCP(43012, 8080, TCPFlags.of("SYN")),
            source=BUSYBOX,
            destination=NETSHOOT,
            node_name="default/mycluster-worker2",
            event_type=CiliumEventType(1, 133),
            traffic_direction=TrafficDirection.INGRESS,
            file=FileInfo("bpf_lxc.c", 1422),
            ingress_denied_by=(Policy("deny-busybox", "networking101", "CiliumNetworkPolicy"),),
            extensions=(("rule", "spec.ingressDeny[0]"), ("source", "policies/deny.yaml:9")),
        ),
        Flow(
            time_ns=T0 + 3_000_000_000,
            uuid="00000000-0000-4000-8000-000000000004",
            verdict=Verdict.FORWARDED,
            ip=IP("10.10.2.15", "10.96.0.10"),
            l4=UDP(40112, 53),
            source=BUSYBOX,
            destination=Endpoint(identity=102, namespace="kube-system", pod_name="coredns-0"),
            node_name="default/mycluster-worker",
            is_reply=False,
            event_type=CiliumEventType(5, 0),
            traffic_direction=TrafficDirection.EGRESS,
            policy_match_type=3,
            egress_allowed_by=(Policy("allow-dns", "networking101", "NetworkPolicy"),),
        ),
        Flow(
            time_ns=T0 + 4_000_000_000,
            uuid="00000000-0000-4000-8000-000000000005",
            verdict=Verdict.FORWARDED,
            type=FlowType.L7,
            ip=IP("10.10.1.7", "10.10.2.15"),
            l4=TCP(8080, 43020),
            source=NETSHOOT,
            destination=BUSYBOX,
            node_name="default/mycluster-worker2",
            is_reply=True,
            event_type=CiliumEventType(129, 0),
            traffic_direction=TrafficDirection.INGRESS,
            l7=Layer7(
                L7FlowType.RESPONSE,
                2_500_000,
                http=HTTP(200, "GET", "http://netshoot:8080/healthz"),
            ),
        ),
        Flow(
            time_ns=T0 + 5_000_000_000,
            uuid="00000000-0000-4000-8000-000000000006",
            verdict=Verdict.FORWARDED,
            type=FlowType.L7,
            ip=IP("10.10.2.15", "10.96.0.10"),
            l4=UDP(40112, 53),
            source=BUSYBOX,
            destination=Endpoint(identity=102, namespace="kube-system", pod_name="coredns-0"),
            node_name="default/mycluster-worker",
            is_reply=False,
            event_type=CiliumEventType(129, 0),
            l7=Layer7(
                L7FlowType.REQUEST,
                dns=DNS(query="netshoot.networking101.svc.cluster.local.", qtypes=("A",)),
            ),
        ),
    ]


@pytest.mark.parametrize(
    ("output", "node", "policies"),
    [
        ("compact", False, False),
        ("compact", True, True),
        ("json", False, False),
        ("table", True, False),
        ("dict", False, False),
    ],
)
def test_golden_outputs(output: str, node: bool, policies: bool, update_golden: bool) -> None:
    text = render_flows(corpus(), output, node, print_policy_names=policies)
    name = f"flows.{output}{'.node' if node else ''}{'.policies' if policies else ''}.txt"
    path = GOLDEN / name
    if update_golden or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"{name} changed; run pytest --update-golden and review"
