"""Datapath events as Hubble flows: ``FlowEvent`` -> ``observe.flow.Flow``.

The model datapath records ``FlowEvent``s while it walks (``datapath.api``); this turns
them into the one flow record of ``ciliate.observe`` so ``trace -o json``, the flow
ring and ``observe`` print the same objects for the model and the kernel. Derivations
follow cilium.md §14.2: observation point 0 is ``TO_ENDPOINT`` (101), trace reasons are
shifted by one, drops have no ``is_reply``, policies whose allow (or deny) matched go to
``*_allowed_by`` (``*_denied_by``) by direction.

Inputs: ``FlowEvent``. Outputs: ``Flow``. No I/O.

Imports ``datapath.api`` and ``observe`` only; must not import either datapath's walkers
or readers (both feed it).
"""

from __future__ import annotations

from ciliate.datapath.api import EventType, FlowEndpoint, FlowEvent, Verdict
from ciliate.observe import flow as hf
from ciliate.observe.reasons import TraceObservationPoint, TraceReason

_REASON = {
    "new": TraceReason.NEW,
    "established": TraceReason.ESTABLISHED,
    "reply": TraceReason.REPLY,
    "related": TraceReason.RELATED,
}
_VERDICT = {
    Verdict.FORWARDED: hf.Verdict.FORWARDED,
    Verdict.DROPPED: hf.Verdict.DROPPED,
    Verdict.REDIRECTED: hf.Verdict.REDIRECTED,
}


def _endpoint(e: FlowEndpoint, cluster: str) -> hf.Endpoint:
    return hf.Endpoint(
        id=e.id,
        identity=e.identity,
        cluster_name=cluster,
        namespace=e.namespace,
        labels=tuple(sorted(e.labels)),
        pod_name=e.pod_name,
    )


def _l4(ev: FlowEvent) -> hf.Layer4 | None:
    if "TCP" in ev.l4:
        t = ev.l4["TCP"]
        return hf.TCP(t["source_port"], t["destination_port"], hf.TCPFlags.of(*t["flags"]))
    if "ICMPv4" in ev.l4:
        return hf.ICMPv4(ev.l4["ICMPv4"]["type"], ev.l4["ICMPv4"]["code"])
    if "UDP" in ev.l4:
        return hf.UDP(ev.l4["UDP"]["source_port"], ev.l4["UDP"]["destination_port"])
    if "SCTP" in ev.l4:
        return hf.SCTP(ev.l4["SCTP"]["source_port"], ev.l4["SCTP"]["destination_port"])
    return None


def to_flow(ev: FlowEvent, cluster: str = "") -> hf.Flow:
    point = hf.TraceObservationPoint.UNKNOWN_POINT
    if ev.event_type == EventType.TRACE:
        point = (
            TraceObservationPoint.TO_ENDPOINT
            if ev.sub_type == 0
            else TraceObservationPoint(ev.sub_type)
        )
    direction = hf.TrafficDirection[ev.traffic_direction]
    policies = tuple(hf.Policy(name=n, namespace=ns, kind=k) for k, ns, n in ev.policy_refs)
    none: tuple[hf.Policy, ...] = ()
    allowed_in = allowed_out = denied_in = denied_out = none
    if ev.event_type in (EventType.POLICY_VERDICT, EventType.L7) and ev.verdict != Verdict.DROPPED:
        if direction == hf.TrafficDirection.EGRESS:
            allowed_out = policies
        else:
            allowed_in = policies
    if (
        ev.event_type in (EventType.DROP, EventType.L7)
        and ev.verdict == Verdict.DROPPED
        and policies
    ):
        if direction == hf.TrafficDirection.EGRESS:
            denied_out = policies
        else:
            denied_in = policies
    l7: hf.Layer7 | None = None
    if ev.http is not None:
        kind, method, url, code = ev.http
        l7 = hf.Layer7(
            type=hf.L7FlowType[kind],
            http=hf.HTTP(code=code, method=method, url=url),
        )
    return hf.Flow(
        time_ns=hf.time_ns_of(ev.time),
        type=hf.FlowType.L7 if l7 is not None else hf.FlowType.L3_L4,
        l7=l7,
        verdict=_VERDICT[ev.verdict],
        drop_reason=ev.drop_reason,
        ethernet=hf.Ethernet(*ev.ethernet) if ev.ethernet[0] else None,
        ip=hf.IP(ev.source.ip, ev.destination.ip),
        l4=_l4(ev),
        source=_endpoint(ev.source, cluster),
        destination=_endpoint(ev.destination, cluster),
        node_name=f"{cluster}/{ev.node}" if cluster else ev.node,
        is_reply=None if ev.event_type == EventType.DROP else ev.is_reply,
        event_type=hf.CiliumEventType(int(ev.event_type), ev.sub_type),
        traffic_direction=direction,
        policy_match_type=ev.match_type,
        trace_observation_point=point,
        trace_reason=_REASON.get(ev.trace_reason, TraceReason.TRACE_REASON_UNKNOWN),
        file=hf.FileInfo(ev.file) if ev.file else None,
        interface=hf.NetworkInterface(ev.ifindex, ev.interface)
        if ev.ifindex or ev.interface
        else None,
        proxy_port=ev.proxy_port,
        egress_allowed_by=allowed_out,
        ingress_allowed_by=allowed_in,
        egress_denied_by=denied_out,
        ingress_denied_by=denied_in,
        extensions=tuple(("provenance", p) for p in ev.policies),
    )
