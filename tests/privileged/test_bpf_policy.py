"""Policy in eBPF: the shared policy map enforces egress at the source endpoint and ingress
at the destination (identity from cilium_lxc locally, from the VNI across nodes), replies
pass by conntrack, deny beats allow, and drops carry Cilium's reasons (133 / 181) and are
joined with the rule that denied them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from ipaddress import IPv4Address

import pytest
from bpf_lab import Lab, running_lab

from ciliate.datapath.linux.events import EventReader, FlowEnricher, RawEvent, parse_event
from ciliate.datapath.linux.maps import RuntimeConfig
from ciliate.desired import MapChange, PolicyEntry, PolicyKey, Provenance, policy_map_name
from ciliate.observe.flow import TrafficDirection, Verdict

pytestmark = [pytest.mark.privileged]

ICMP, TCP = 1, 6
ALLOW_ALL_EGRESS = {PolicyKey(0, True): PolicyEntry()}
ALLOW_ALL_INGRESS = {PolicyKey(0, False): PolicyEntry()}
DENY_A1 = Provenance("CiliumNetworkPolicy", "lab", "deny-a1", "spec.ingressDeny[0]")


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with running_lab(policy=True) as lab:
        yield lab


@pytest.fixture(scope="module")
def readers(lab: Lab) -> Iterator[dict[str, EventReader]]:
    rs = {name: n.bpf.events() for name, n in lab.nodes.items() if n.bpf is not None}
    yield rs
    for r in rs.values():
        r.close()


def set_policy(lab: Lab, pod: str, entries: dict[PolicyKey, PolicyEntry]) -> None:
    """Replace the pod's policy map with entries (delete what is not in it)."""
    p = lab.pods[pod]
    node = lab.nodes[p.node].bpf
    assert node is not None
    name = policy_map_name(p.ep_id)
    changes = []
    from ciliate import codec

    for kb, _ in node.maps.dump(name):
        k = codec.parse_policy_key(kb)
        if k not in entries:
            changes.append(MapChange(p.node, name, k, None))
    changes += [MapChange(p.node, name, k, v) for k, v in entries.items()]
    node.maps.apply(changes)


def drops(reader: EventReader) -> list[RawEvent]:
    out: list[RawEvent] = []
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        batch = [parse_event(r) for r in reader.poll(50)]
        out.extend(batch)
        if not batch and out:
            break
    return [e for e in out if e.is_drop]


def test_default_deny_without_entries_drops_with_133_at_the_source(
    lab: Lab, readers: dict[str, EventReader]
) -> None:
    set_policy(lab, "a1", {})
    set_policy(lab, "a2", ALLOW_ALL_INGRESS)
    readers["na"].poll(0)
    assert not lab.ping("a1", "10.77.1.12", count=1)
    d = drops(readers["na"])
    assert d and d[0].subtype == 133 and d[0].source == 101 and d[0].file == 2
    flow = FlowEnricher(lab.desired(), "na").to_flow(d[0], time.time_ns())
    assert flow.verdict is Verdict.DROPPED and flow.drop_reason == 133
    assert flow.traffic_direction is TrafficDirection.EGRESS
    assert flow.is_reply is None and flow.file is not None and flow.file.name == "bpf_lxc.c"


def test_egress_and_ingress_allow_then_replies_pass_by_conntrack(lab: Lab) -> None:
    set_policy(lab, "a1", ALLOW_ALL_EGRESS)
    # a2 allows ICMP from a1's identity only, and may not send anything itself
    set_policy(lab, "a2", {PolicyKey(30001, False, ICMP): PolicyEntry()})
    assert lab.ping("a1", "10.77.1.12", count=2)  # echo replies pass: CT reply
    assert not lab.ping("a2", "10.77.1.11", count=1)  # a2 has no egress allow


def test_ingress_across_nodes_uses_the_identity_from_the_vni(
    lab: Lab, readers: dict[str, EventReader]
) -> None:
    set_policy(lab, "a1", ALLOW_ALL_EGRESS)
    set_policy(lab, "a2", ALLOW_ALL_EGRESS)
    set_policy(lab, "b1", {PolicyKey(30001, False): PolicyEntry()})  # only a1 may come in
    assert lab.ping("a1", "10.77.2.11", count=1)
    readers["nb"].poll(0)
    assert not lab.ping("a2", "10.77.2.11", count=1)
    d = drops(readers["nb"])
    assert d and d[0].subtype == 133 and d[0].file == 3  # bpf_overlay.c
    assert d[0].src_label == 30002 and d[0].source == 201


def test_deny_beats_allow_and_names_the_policy(lab: Lab, readers: dict[str, EventReader]) -> None:
    set_policy(lab, "a1", ALLOW_ALL_EGRESS)
    deny = {
        PolicyKey(0, False): PolicyEntry(),  # allow everything in ...
        PolicyKey(30001, False, ICMP): PolicyEntry(deny=True, provenance=(DENY_A1,)),
    }
    set_policy(lab, "a2", deny)
    readers["na"].poll(0)
    assert not lab.ping("a1", "10.77.1.12", count=1)
    d = drops(readers["na"])
    assert d and d[0].subtype == 181 and d[0].source == 102
    state = lab.desired()
    node = state.nodes["na"]
    policy = {102: deny}
    state = type(state)(
        state.cluster,
        {**state.nodes, "na": type(node)(**{**_fields(node), "policy": policy})},
        state.identities,
    )
    flow = FlowEnricher(state, "na").to_flow(d[0], time.time_ns())
    assert flow.traffic_direction is TrafficDirection.INGRESS
    assert [p.name for p in flow.ingress_denied_by] == ["deny-a1"]
    assert flow.ingress_denied_by[0].kind == "CiliumNetworkPolicy"


def test_l7_redirect_entries_on_other_protocols_than_tcp_drop_180(
    lab: Lab, readers: dict[str, EventReader]
) -> None:
    """The node's proxy speaks HTTP over TCP only: an ICMP entry with a proxy port drops
    with DROP_PROXY_UNSUPPORTED (TCP redirects: tests/privileged/test_proxy.py)."""
    set_policy(lab, "a1", ALLOW_ALL_EGRESS)
    set_policy(lab, "a2", {PolicyKey(0, False, ICMP): PolicyEntry(proxy_port=15001)})
    readers["na"].poll(0)
    assert not lab.ping("a1", "10.77.1.12", count=1)
    d = drops(readers["na"])
    assert d and d[0].subtype == 180


def test_policy_off_in_runtime_config_allows_all(lab: Lab) -> None:
    node = lab.nodes["na"]
    assert node.bpf is not None
    set_policy(lab, "a1", {})
    node.bpf.maps.set_runtime_config(lab.runtime_config(node, policy=False))
    try:
        assert lab.ping("a1", "10.77.1.12", count=1)
    finally:
        node.bpf.maps.set_runtime_config(lab.runtime_config(node, policy=True))
    cfg = node.bpf.maps.runtime_config()
    assert isinstance(cfg, RuntimeConfig) and cfg.policy
    assert cfg.node_ip == IPv4Address(node.ip)


def _fields(obj: object) -> dict[str, object]:
    return {f: getattr(obj, f) for f in obj.__dataclass_fields__}  # type: ignore[attr-defined]


def test_policy_verdict_events_for_new_connections(
    lab: Lab, readers: dict[str, EventReader]
) -> None:
    allow = Provenance("NetworkPolicy", "lab", "allow-a1", "spec.ingress[0]")
    set_policy(lab, "a1", ALLOW_ALL_EGRESS)
    a2_map = {PolicyKey(30001, False, ICMP): PolicyEntry(provenance=(allow,))}
    set_policy(lab, "a2", a2_map)
    readers["na"].poll(0)
    assert lab.ping("a1", "10.77.1.12", count=1)
    events = []
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline and not any(e.is_policy_verdict for e in events):
        events += [parse_event(r) for r in readers["na"].poll(50)]
    verdicts = [e for e in events if e.is_policy_verdict]
    ingress = [e for e in verdicts if e.source == 102 and not e.egress]
    assert ingress and ingress[0].verdict == 0 and ingress[0].src_label == 30001
    assert ingress[0].match_type == 5  # L3-Proto: identity + protocol, any port
    # Hubble shows verdicts only for enforced directions: a2 enforces ingress here
    state = lab.desired()
    node = state.nodes["na"]
    eps = {k: _with(v, ingress_enforced=True) for k, v in node.endpoints.items()}
    node = type(node)(**{**_fields(node), "endpoints": eps, "policy": {102: a2_map}})
    state = type(state)(state.cluster, {**state.nodes, "na": node}, state.identities)
    flows = FlowEnricher(state, "na").to_flows(verdicts, time.time_ns())
    assert len(flows) == 1  # a1's egress verdict is not enforced: filtered out
    f = flows[0]
    assert f.verdict is Verdict.FORWARDED and f.policy_match_type == 5
    assert f.traffic_direction is TrafficDirection.INGRESS
    assert f.destination is not None and f.destination.id == 102
    assert f.source is not None and f.source.identity == 30001
    assert [p.name for p in f.ingress_allowed_by] == ["allow-a1"]


def _with(obj: object, **changes: object) -> object:
    return type(obj)(**{**_fields(obj), **changes})


def test_a_reused_source_port_does_not_skip_a_new_deny(lab: Lab) -> None:
    """A connection's CT entry outlives it; a new SYN on the same tuple after a deny was
    added is a new connection, decided by policy again (not waved through by CT)."""
    import socket
    import struct

    from bpf_lab import NameServer

    from ciliate.datapath.linux import netns

    set_policy(lab, "a1", ALLOW_ALL_EGRESS)
    set_policy(lab, "a2", ALLOW_ALL_INGRESS)
    server = NameServer(lab, "a2", 8090)

    def connect_from(port: int) -> socket.socket:
        def make() -> socket.socket:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            # close with RST: no TIME_WAIT, so the same 4-tuple can be used again at once
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.settimeout(1.0)
            s.bind(("10.77.1.11", port))
            s.connect(("10.77.1.12", 8090))
            return s

        return netns.run_in_netns(lab.pods["a1"].netns, make)

    try:
        s = connect_from(45678)
        s.close()
        set_policy(lab, "a2", {PolicyKey(30001, False): PolicyEntry(deny=True)})
        with pytest.raises(OSError):
            connect_from(45678).close()
    finally:
        server.close()
