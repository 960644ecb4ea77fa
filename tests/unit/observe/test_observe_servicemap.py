"""Service map: workloads as nodes, replies folded onto requests, verdicts counted."""

from __future__ import annotations

from ciliate.observe.flow import IP, TCP, UDP, Endpoint, Flow, TCPFlags, Verdict, Workload
from ciliate.observe.servicemap import build_service_map

WEB = Endpoint(
    identity=300, namespace="shop", pod_name="web-1", workloads=(Workload("web", "Deployment"),)
)
DB = Endpoint(identity=301, namespace="shop", pod_name="db-0")
WORLD = Endpoint(identity=2)


def test_edges_fold_replies_and_count_verdicts() -> None:
    flows = [
        Flow(time_ns=0, verdict=Verdict.FORWARDED, ip=IP("10.0.0.1", "10.0.0.2"),
             l4=TCP(40000, 5432, TCPFlags.of("SYN")), source=WEB, destination=DB, is_reply=False),
        Flow(time_ns=1, verdict=Verdict.FORWARDED, ip=IP("10.0.0.2", "10.0.0.1"),
             l4=TCP(5432, 40000, TCPFlags.of("SYN", "ACK")), source=DB, destination=WEB, is_reply=True),
        Flow(time_ns=2, verdict=Verdict.DROPPED, drop_reason=133, ip=IP("1.1.1.1", "10.0.0.1"),
             l4=UDP(53, 9999), source=WORLD, destination=WEB),
    ]  # fmt: skip
    m = build_service_map(flows)
    d = m.to_dict()
    assert d["nodes"] == ["shop/db-0", "shop/web", "world"]
    assert d["edges"] == [
        {
            "source": "shop/web",
            "destination": "shop/db-0",
            "protocol": "TCP",
            "port": 5432,
            "verdicts": {"FORWARDED": 2},
        },
        {
            "source": "world",
            "destination": "shop/web",
            "protocol": "UDP",
            "port": 9999,
            "verdicts": {"DROPPED": 1},
        },
    ]
    dot = m.to_dot()
    assert '"shop/web" -> "shop/db-0" [label="TCP/5432"];' in dot
    assert '"world" -> "shop/web" [label="UDP/9999" color="red" style="dashed"];' in dot
