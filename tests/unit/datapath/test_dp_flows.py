"""Model datapath events become Hubble flows (observe.flow.Flow) with Hubble's derivations."""

from collections.abc import Callable

from ciliate.datapath.flows import to_flow
from ciliate.datapath.sim import trace
from ciliate.desired import DesiredState, PolicyEntry, PolicyKey, Provenance
from ciliate.observe import flow as hf
from ciliate.observe.reasons import TraceObservationPoint, TraceReason


def test_trace_events_map_to_observation_points(state: DesiredState) -> None:
    r = trace(state, "networking101/busybox-a", "networking101/netshoot-b", 80, "tcp")
    flows = [to_flow(f, "mycluster") for f in r.flows]
    points = [f.trace_observation_point for f in flows if f.event_type and f.event_type.type == 4]
    assert points[0] == TraceObservationPoint.FROM_ENDPOINT
    assert TraceObservationPoint.TO_ENDPOINT in points
    last = flows[-1]
    assert last.trace_reason == TraceReason.REPLY and last.is_reply is True
    assert last.summary == "TCP Flags: SYN, ACK"
    assert flows[0].node_name == "mycluster/mycluster-worker"


def test_drop_flow_names_the_denying_policy(make_state: Callable[..., DesiredState]) -> None:
    prov = (Provenance("CiliumNetworkPolicy", "networking101", "deny-busybox"),)
    deny = {
        PolicyKey(3372, False): PolicyEntry(deny=True, provenance=prov),
        PolicyKey(0, True): PolicyEntry(),
    }
    s = make_state({"networking101/netshoot-a": deny})
    r = trace(s, "networking101/busybox-a", "networking101/netshoot-a", 80, "tcp")
    drop = next(to_flow(f) for f in r.flows if f.event_type == 1)
    assert drop.verdict == hf.Verdict.DROPPED and drop.drop_reason == 181
    assert drop.is_reply is None
    assert drop.traffic_direction == hf.TrafficDirection.INGRESS
    assert [p.name for p in drop.ingress_denied_by] == ["deny-busybox"]
    assert hf.to_json(drop)["flow"]["drop_reason_desc"] == "POLICY_DENY"


def test_l7_denials_are_access_log_records(make_state: Callable[..., DesiredState]) -> None:
    from ciliate.desired import L7Rule

    prov = (Provenance("CiliumNetworkPolicy", "networking101", "l7"),)
    l7 = {
        PolicyKey(3372, False, 6, 80, 16): PolicyEntry(
            proxy_port=15001,
            l7_rules=(L7Rule("http", method="GET", path="/public"),),
            provenance=prov,
        ),
        PolicyKey(0, True): PolicyEntry(),
    }
    s = make_state({"networking101/netshoot-b": l7})
    r = trace(
        s,
        "networking101/busybox-a",
        "networking101/netshoot-b",
        80,
        "tcp",
        http=("GET", "/private"),
    )
    records = [to_flow(f) for f in r.flows if f.event_type == 129]
    assert [f.l7.type.name for f in records if f.l7] == ["REQUEST", "RESPONSE"]
    resp = records[-1]
    assert resp.type == hf.FlowType.L7 and resp.verdict == hf.Verdict.DROPPED
    assert resp.l7 is not None and resp.l7.http is not None and resp.l7.http.code == 403
    assert resp.summary.startswith("HTTP/1.1 403")
