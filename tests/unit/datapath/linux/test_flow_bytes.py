"""The flow log's bytes, pinned: representative ring-buffer records (trace to-endpoint and
to-overlay, drops 133 and 181 with the denying policy, policy verdicts allow/deny/redirect,
a verdict of an unenforced direction) and a proxy L7 record go through the pump's path
(``parse_event`` -> ``FlowEnricher.to_flows`` -> ``FlowLogWriter.write``) and must give
exactly the lines of ``golden/flow_lines.jsonl``. The encoder is optimized for speed; this
is what shows it prints the same bytes. ``--update-golden`` rewrites the file."""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from ciliate.datapath.flowlog import FlowLogWriter, decode_line, encode_line
from ciliate.datapath.linux import events
from ciliate.datapath.linux.events import FlowEnricher, parse_event
from ciliate.datapath.linux.eventsynth import (
    build_drop,
    build_icmp_echo,
    build_packet,
    build_tcp,
    build_trace,
    build_verdict,
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
from ciliate.observe import flow as hf

GOLDEN = Path(__file__).parent / "golden" / "flow_lines.jsonl"
WEB, CLIENT, API = IPv4Address("10.0.1.37"), IPv4Address("10.0.2.14"), IPv4Address("10.0.1.52")
WORLD = IPv4Address("1.1.1.1")
DENY = Provenance("CiliumNetworkPolicy", "shop", "no-scanner", "spec.ingressDeny[0]",
                  "policies/shop.yaml", 14)  # fmt: skip
ALLOW = Provenance("NetworkPolicy", "shop", "web-from-api", "spec.ingress[0]")
ALLOW2 = Provenance("CiliumClusterwideNetworkPolicy", "", "allow-dns", "spec.egress[1]")
L7 = Provenance("CiliumNetworkPolicy", "shop", "web-l7", "spec.ingress[1]")


@pytest.fixture
def uuids(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    n = iter(range(1, 1_000_000))
    monkeypatch.setattr(events, "new_uuid", lambda: f"00000000-0000-4000-8000-{next(n):012d}")
    yield


def _state() -> DesiredState:
    def ep(id_: int, pod: str, ip: IPv4Address, ident: int, app: str,
           enforced: bool = False) -> EndpointState:  # fmt: skip
        return EndpointState(
            id=id_, pod=pod, ip=ip, identity=ident, lxc_name=f"lxc{id_:012x}",
            lxc_ifindex=100 + id_ % 100, lxc_mac="", pod_ifindex=0, pod_mac="",
            labels=(f"k8s:io.kubernetes.pod.namespace={pod.split('/')[0]}", f"k8s:app={app}"),
            ingress_enforced=enforced, egress_enforced=enforced,
        )  # fmt: skip

    def node(name: str, eps: dict[int, EndpointState],
             policy: dict[int, dict[PolicyKey, PolicyEntry]]) -> NodeState:  # fmt: skip
        return NodeState(
            name=name, internal_ip=IPv4Address("172.18.0.2"), node_prefix_len=16,
            cilium_internal_ip=IPv4Address("10.0.1.1"), pod_cidr=IPv4Network("10.0.1.0/24"),
            health_ip=None, devices=(Device("cilium_vxlan", 5, "", "vxlan"),), routes=(),
            endpoints=eps, lxc={},
            ipcache={
                IPCacheKey(IPv4Network("0.0.0.0/0")): RemoteEndpointInfo(2),
                IPCacheKey(IPv4Network("10.0.0.0/8")): RemoteEndpointInfo(6),
            },
            policy=policy, lb4_services={}, lb4_backends={}, lb4_reverse_nat={}, maglev={},
        )  # fmt: skip

    web = ep(1547, "shop/web-7f4b9", WEB, 48213, "web", enforced=True)
    api = ep(2210, "shop/api-5d8c", API, 30511, "api")
    client = ep(77, "shop/scanner-66c2d", CLIENT, 41190, "scanner")
    pol = {
        1547: {
            PolicyKey(41190, False, 6, 8080, 16): PolicyEntry(deny=True, provenance=(DENY,)),
            PolicyKey(30511, False, 6, 8080, 16): PolicyEntry(provenance=(ALLOW,)),
            PolicyKey(30511, False, 6, 8081, 16): PolicyEntry(proxy_port=15001, provenance=(L7,)),
            PolicyKey(0, True, 17, 53, 16): PolicyEntry(provenance=(ALLOW2, ALLOW)),
        }
    }
    return DesiredState(
        cluster="default",
        nodes={"kind-worker": node("kind-worker", {1547: web, 2210: api}, pol),
               "kind-worker2": node("kind-worker2", {77: client}, {})},
        identities={48213: Identity(48213, ("k8s:app=web",)), 2: Identity(2, ("reserved:world",)),
                    6: Identity(6, ("reserved:remote-node",))},
    )  # fmt: skip


def _records() -> list[bytes]:
    syn = build_packet(CLIENT, WEB, 6, build_tcp(51532, 8080))
    synack = build_packet(WEB, API, 6, build_tcp(8080, 40002, 0x12))
    fin = build_packet(API, WEB, 6, build_tcp(40002, 8080, 0x11))
    pong = build_packet(WEB, CLIENT, 1, build_icmp_echo(reply=True))
    dns = build_packet(WEB, IPv4Address("10.0.9.9"), 17, build_tcp(33000, 53)[:8])
    out = [
        build_trace(0, 1547, 41190, 48213, 1547, 0, 105, syn),  # to-endpoint, new
        build_trace(4, 1547, 48213, 41190, 0, 2, 5, pong, flags=0x4),  # to-overlay, reply
        build_trace(3, 1547, 48213, 30511, 0, 2, 0, synack),  # to-stack, no interface
        build_trace(0, 2210, 30511, 48213, 2210, 1, 110, fin),  # established
        build_drop(181, 1547, 41190, 48213, syn),  # deny by policy, named
        build_drop(133, 1547, 48213, 2, build_packet(WEB, WORLD, 6, build_tcp(40110, 443))),
        build_drop(
            133,
            1547,
            0,
            0,
            build_packet(IPv4Address("10.3.3.3"), WEB, 17, build_tcp(5000, 9000)[:8]),
        ),
        build_drop(134, 2210, 30511, 0, b"\x00" * 10, file=99, line=7),  # runt capture
        build_verdict(
            1547,
            30511,
            0,
            egress=False,
            proto=6,
            dport=8080,
            match_type=3,
            payload=fin[:14] + build_packet(API, WEB, 6, build_tcp(40002, 8080))[14:],
        ),
        build_verdict(
            1547, 41190, -181, egress=False, proto=6, dport=8080, match_type=3, payload=syn
        ),
        build_verdict(
            1547,
            30511,
            15001,
            egress=False,
            proto=6,
            dport=8081,
            match_type=3,
            payload=build_packet(API, WEB, 6, build_tcp(40003, 8081)),
        ),
        build_verdict(1547, 0, 0, egress=True, proto=17, dport=53, match_type=2, payload=dns),
        build_verdict(  # from the world, labelled remote-node: the label's labels
            1547,
            6,
            0,
            egress=False,
            proto=6,
            dport=8080,
            match_type=1,
            payload=build_packet(WORLD, WEB, 6, build_tcp(41000, 8080)),
        ),
        build_verdict(  # to the world, denied; a capture too short for IP
            1547,
            2,
            -133,
            egress=True,
            proto=6,
            dport=443,
            match_type=0,
            payload=b"\x01" * 20,
        ),
        build_verdict(
            2210, 48213, 0, egress=False, proto=6, dport=80, match_type=1, payload=synack
        ),  # api enforces nothing: no flow
    ]
    return out


def _l7_flows() -> list[hf.Flow]:
    """Records as the L7 proxy (servers/proxy.py) builds them; they use the same writer."""
    pol = (hf.Policy(name="web-l7", namespace="shop", kind="CiliumNetworkPolicy"),)
    web = hf.Endpoint(id=1547, identity=48213, namespace="shop", pod_name="web-7f4b9",
                      labels=("k8s:app=web",))  # fmt: skip
    api = hf.Endpoint(identity=30511, namespace="shop", pod_name="api-5d8c")
    req = hf.Flow(
        time_ns=1_763_750_000_123_456_789, verdict=hf.Verdict.FORWARDED, type=hf.FlowType.L7,
        ip=hf.IP(str(API), str(WEB)), l4=hf.TCP(40003, 8081), source=api, destination=web,
        node_name="kind-worker",
        l7=hf.Layer7(type=hf.L7FlowType.REQUEST,
                     http=hf.HTTP(method="GET", url="http://web:8081/a?b=é", protocol="HTTP/1.1")),
        is_reply=False, event_type=hf.CiliumEventType(129, 0),
        traffic_direction=hf.TrafficDirection.INGRESS, ingress_allowed_by=pol, proxy_port=15001,
    )  # fmt: skip
    resp = hf.Flow(
        time_ns=1_763_750_000_124_000_000, verdict=hf.Verdict.DROPPED, type=hf.FlowType.L7,
        ip=hf.IP(str(WEB), str(API)), l4=hf.TCP(8081, 40003), source=web, destination=api,
        node_name="kind-worker",
        l7=hf.Layer7(type=hf.L7FlowType.RESPONSE, latency_ns=544_211,
                     http=hf.HTTP(code=403, method="POST", url="http://web:8081/x",
                                  protocol="HTTP/1.1")),
        is_reply=True, event_type=hf.CiliumEventType(129, 0),
        traffic_direction=hf.TrafficDirection.INGRESS, ingress_denied_by=pol, proxy_port=15001,
    )  # fmt: skip
    return [req, resp]


def _encoded(tmp_path: Path, *, lines: bool = False) -> bytes:
    """The log of the records: through Flows (``to_flows`` + ``write``) or, as the flow
    pump does it, straight to lines (``to_lines`` + ``write_lines``)."""
    enricher = FlowEnricher(_state(), "kind-worker")
    evs = [parse_event(r) for r in _records()]
    path = tmp_path / ("lines.jsonl" if lines else "flows.jsonl")
    with FlowLogWriter(path) as w:
        # three batches, three clocks: 0, 3 and 9 fractional digits
        for batch, now in (
            (evs[:4], 1_763_750_000_000_000_000),
            (evs[4:8], 1_763_750_000_250_000_000),
            (evs[8:], 1_763_750_001_000_000_007),
        ):
            if lines:
                w.write_lines(enricher.to_lines(batch, now))
            else:
                w.write(enricher.to_flows(batch, now))
        w.write(_l7_flows())
    return path.read_bytes()


def test_flow_log_bytes_are_the_golden_ones(
    tmp_path: Path, uuids: None, update_golden: bool
) -> None:
    data = _encoded(tmp_path)
    if update_golden:
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_bytes(data)
    assert data.decode().splitlines() == GOLDEN.read_text().splitlines()
    assert data == GOLDEN.read_bytes()


def test_the_pumps_path_writes_the_golden_bytes(tmp_path: Path, uuids: None) -> None:
    assert _encoded(tmp_path, lines=True) == GOLDEN.read_bytes()


def test_every_golden_line_round_trips(uuids: None) -> None:
    for line in GOLDEN.read_bytes().splitlines(keepends=True):
        flow = decode_line(line)
        assert flow is not None
        assert encode_line(flow) == line


def test_the_unenforced_verdict_has_no_line(tmp_path: Path, uuids: None) -> None:
    lines = _encoded(tmp_path).splitlines()
    assert len(lines) == len(_records()) - 1 + len(_l7_flows())
    assert sum(b'"event_type":{"type":5}' in x for x in lines) == 6  # of 7 verdict records
