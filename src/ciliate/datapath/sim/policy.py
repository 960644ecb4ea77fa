"""The policy stages: egress policy of a source endpoint, and ``handle_policy``, the
program tail-called through ``cilium_call_policy[endpoint ID]`` that runs conntrack and
ingress policy for a local destination and delivers to it (cilium.md §3.3, §4).

Every verdict comes from ``control.mapstate.lookup`` over the endpoint's compiled map:
the model datapath never decides policy itself. An L7 redirect entry sends the request
through the model of the proxy: the probe's HTTP request is checked against the entry's
``l7_rules`` with ``control.l7``'s matcher (method, path and host are regular
expressions that must match fully, an empty field matches anything, required headers
must be present); no rule matches -> the proxy answers ``403 Access denied`` and the
request never reaches the endpoint.

Inputs: a ``Walk``, a node name, endpoints and packets. Outputs: ``Outcome``s plus the
recorded steps and flows. No I/O.

Imports ``control.mapstate`` (the one policy lookup both datapaths use), ``control.l7``
(the proxy's matcher, shared with explain and reach), ``codec``, ``desired``,
``datapath.api``/``packet``/``conntrack`` and sibling ``sim`` modules; no I/O. Must not
import ``datapath.linux`` (an import contract).
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address

from ciliate.codec import build_ct_tuple
from ciliate.control.l7 import http_rule_matches
from ciliate.control.mapstate import PolicyVerdict, lookup
from ciliate.datapath.api import EventType, MapLookup, ObsPoint, Verdict
from ciliate.datapath.conntrack import (
    CT_F_FROM_TUNNEL,
    CT_F_NODE_PORT,
    CTDir,
    CTResult,
    CTStatus,
    render_tuple,
)
from ciliate.datapath.packet import HTTPRequest, IPProto, Packet
from ciliate.datapath.sim import keys
from ciliate.datapath.sim.lb import rev_nat
from ciliate.datapath.sim.walk import Outcome, Walk, Where
from ciliate.desired import EndpointState, PolicyEntry, ReservedIdentity

MATCH_TEXT = {
    0: "none",
    1: "L3-Only",
    2: "L3-L4",
    3: "L4-Only",
    4: "all",
    5: "L3-Proto",
    6: "Proto-Only",
}


def policy_port(p: Packet) -> int:
    """The port of the policy key: the L4 port, or the ICMP type (enable_icmp_rule)."""
    return p.l4.icmp_type if p.proto == IPProto.ICMP else p.dport


def ct_map_name(p: Packet) -> str:
    return "cilium_ct4_global" if p.proto == IPProto.TCP else "cilium_ct_any4_global"


def ct_record(w: Walk, p: Packet, res: CTResult) -> MapLookup:
    """The MapLookup of a conntrack lookup (key = the tuple that matched or is new)."""
    if not w.record:
        return MapLookup(ct_map_name(p), "", res.status.text, hit=res.entry is not None)
    text = res.status.text
    if res.entry is not None:
        text += f" ({render_tuple(res.tuple)})"
    return MapLookup(
        ct_map_name(p), keys.hexbytes(build_ct_tuple(res.tuple)), text, hit=res.entry is not None
    )


def provenance_of(entry: PolicyEntry | None) -> tuple[str, ...]:
    if entry is None:
        return ()
    out = []
    for pv in entry.provenance:
        obj = "/".join(x for x in (pv.namespace, pv.name) if x)
        loc = f"({pv.file}:{pv.line})" if pv.file and pv.line else ""
        out.append(" ".join(x for x in (pv.kind, obj, pv.rule, loc) if x))
    return tuple(out)


def l7_decide(entry: PolicyEntry, req: HTTPRequest | None) -> tuple[bool, str]:
    """The proxy's answer: (allowed, why)."""
    if req is None:
        return True, "no HTTP request in the probe: the proxy forwards the connection"
    http_rules = [r for r in entry.l7_rules if r.kind == "http"]
    if not http_rules:
        return True, "no HTTP rules on the redirect entry"
    for i, rule in enumerate(http_rules):
        # The proxy's matcher is control.l7's, the one explain and reach use too (a
        # probe carries no headers, so a rule that requires one does not match).
        if http_rule_matches(rule, req.method, req.path, req.host):
            what = " ".join(x for x in (rule.method, rule.path, rule.host) if x) or "any"
            return True, f"{req.method} {req.path} matches L7 rule {i} ({what})"
    return False, f"{req.method} {req.path} matches none of {len(http_rules)} L7 rule(s)"


@dataclass(frozen=True, slots=True)
class PolicyOutcome:
    allowed: bool
    verdict: PolicyVerdict | None
    dropped: Outcome | None = None  # the drop / proxy answer when not allowed


def enforce(
    w: Walk,
    node: str,
    ep: EndpointState,
    p: Packet,
    remote_id: int,
    *,
    egress: bool,
    program: str,
    interface: str,
) -> PolicyOutcome:
    """Look the connection up in ``ep``'s policy map and act on the verdict."""
    pmap = w.topo.nodes[node].state.policy.get(ep.id)
    dirname = "egress" if egress else "ingress"
    if pmap is None:
        w.step(
            node,
            interface,
            program,
            "policy",
            f"{dirname} policy: endpoint {ep.id} has no policy map (not enforced)",
            p,
        )
        return PolicyOutcome(True, None)
    port = policy_port(p)
    v = lookup(pmap, remote_id, egress, int(p.proto), port)
    key_hex = (
        keys.hexbytes(keys.build_policy_key(remote_id, egress, int(p.proto), port))
        if w.record
        else ""
    )
    mapname = f"cilium_policy_v2_{ep.id:05d}"
    mt = MATCH_TEXT.get(v.match_type, str(v.match_type))
    prov = provenance_of(v.entry)
    refs = tuple((pv.kind, pv.namespace, pv.name) for pv in v.entry.provenance) if v.entry else ()
    if v.key is not None:
        kd = f"identity {v.key.identity} {'egress' if v.key.egress else 'ingress'} proto {v.key.protocol} port {v.key.dport}/{v.key.port_prefix_len}"
        res = f"hit ({kd}): {'deny' if v.entry and v.entry.deny else 'allow'}"
        if v.redirect and v.entry is not None:
            res += f" redirect proxy port {v.entry.proxy_port}"
    else:
        res = "miss"
    lk = (MapLookup(mapname, key_hex, res, hit=v.key is not None),)
    enforced = ep.egress_enforced if egress else ep.ingress_enforced
    if enforced:
        pv_verdict = (
            Verdict.FORWARDED
            if v.allowed and not v.redirect
            else (Verdict.REDIRECTED if v.allowed else Verdict.DROPPED)
        )
        w.event(
            node,
            EventType.POLICY_VERDICT,
            0,
            p,
            ep.identity if egress else remote_id,
            remote_id if egress else ep.identity,
            verdict=pv_verdict,
            interface=interface,
            ifindex=ep.lxc_ifindex,
            direction="EGRESS" if egress else "INGRESS",
            match_type=v.match_type,
            proxy_port=v.proxy_port,
            policies=prov,
            policy_refs=refs,
        )
    who = f"endpoint {ep.id} ({ep.pod or 'health'})"
    if not v.allowed:
        return PolicyOutcome(
            False,
            v,
            w.drop(
                node,
                interface,
                program,
                p,
                v.drop_reason,
                f"by {dirname} policy of {who}, remote identity {remote_id}, match {mt}",
                ep.identity if egress else remote_id,
                remote_id if egress else ep.identity,
                file="bpf_lxc.c",
                egress=egress,
                lookups=lk,
                provenance=prov,
                ifindex=ep.lxc_ifindex,
                policy_refs=refs,
                pod=ep.pod or "health",
            ),
        )
    text = f"{dirname} policy of {who} allows remote identity {remote_id} (match {mt})"
    if not enforced:
        text += "; policy not enforced for this direction"
    w.step(
        node,
        interface,
        program,
        "policy",
        text,
        p,
        lk,
        verdict=Verdict.FORWARDED,
        provenance=prov,
        pod=ep.pod or "health",
    )
    if v.redirect and v.entry is not None:
        ok, why = l7_decide(v.entry, p.http)
        w.step(
            node,
            interface,
            program,
            "to-proxy",
            f"L7 redirect to the proxy on port {v.entry.proxy_port}: {why}"
            + ("" if ok else " -> 403 Access denied"),
            p,
            verdict=Verdict.REDIRECTED if ok else Verdict.DROPPED,
            provenance=prov,
        )
        w.trace_event(
            node,
            ObsPoint.TO_PROXY,
            p,
            ep.identity if egress else remote_id,
            remote_id if egress else ep.identity,
            interface,
            ep.lxc_ifindex,
            CTStatus.NEW,
            egress,
        )
        if p.http is not None:
            # The proxy's access log (Hubble L7 records): the request, and for a denied
            # one the 403 the proxy answers itself.
            url = f"http://{p.http.host or p.dst}{p.http.path}"
            src_id = ep.identity if egress else remote_id
            dst_id = remote_id if egress else ep.identity
            direction = "EGRESS" if egress else "INGRESS"
            w.event(
                node, EventType.L7, 0, p, src_id, dst_id,
                verdict=Verdict.FORWARDED if ok else Verdict.DROPPED,
                direction=direction, policy_refs=refs,
                http=("REQUEST", p.http.method, url, 0),
            )  # fmt: skip
            if not ok:
                w.event(
                    node, EventType.L7, 0, p, src_id, dst_id,
                    verdict=Verdict.DROPPED, direction=direction, policy_refs=refs,
                    http=("RESPONSE", p.http.method, url, 403),
                )  # fmt: skip
        if not ok:
            return PolicyOutcome(False, v, Outcome(Where.PROXY, node, p, ep, status=403))
    return PolicyOutcome(True, v)


def deliver_local(
    w: Walk,
    node: str,
    ep: EndpointState,
    p: Packet,
    src_identity: int,
    *,
    interface: str,
    program: str,
    rev_nat_index: int = 0,
    ct_flags: int = 0,
    tunnel_peer: IPv4Address | None = None,
) -> Outcome:
    """``handle_policy`` of ``ep``: CT_INGRESS, ingress policy on all but replies, reverse NAT on a
    service reply, then to-endpoint (redirect to the endpoint's lxc)."""
    ct = w.ct_of(node)
    res = ct.lookup(p, CTDir.INGRESS)
    ct_lk = ct_record(w, p, res)
    prog = "handle_policy"
    w.step(
        node,
        interface,
        prog,
        "conntrack",
        f"CT_INGRESS lookup for endpoint {ep.id}: {res.status.text}",
        p,
        (ct_lk,),
    )
    if (
        res.status == CTStatus.REPLY
        and res.entry is not None
        and res.entry.rev_nat_index
        and not (res.entry.flags & CT_F_NODE_PORT)
    ):
        fe, lk = rev_nat(w.topo.nodes[node].state, res.entry.rev_nat_index)
        if fe is not None:
            before = p
            p = p.with_src(fe[0], fe[1])
            w.step(
                node,
                interface,
                prog,
                "rev-nat",
                f"reverse NAT: source {before.src}:{before.sport} -> {fe[0]}:{fe[1]} (rev_nat_index {res.entry.rev_nat_index})",
                p,
                (lk,),
            )
    if res.status in (CTStatus.NEW, CTStatus.ESTABLISHED):
        # every packet but replies, as in Cilium (a deny added mid-flow applies)
        if src_identity == ReservedIdentity.HOST:
            w.step(
                node,
                interface,
                prog,
                "policy",
                "from the local host: allowed (allow-localhost)",
                p,
                verdict=Verdict.FORWARDED,
            )
        else:
            po = enforce(
                w, node, ep, p, src_identity, egress=False, program=prog, interface=ep.lxc_name
            )
            if not po.allowed:
                assert po.dropped is not None
                return po.dropped
    if res.status == CTStatus.NEW:
        ct.create(
            res.tuple,
            p,
            rev_nat_index=rev_nat_index,
            src_sec_id=src_identity,
            flags=ct_flags | (CT_F_FROM_TUNNEL if tunnel_peer is not None else 0),
            ifindex=ep.lxc_ifindex,
            tunnel_peer=tunnel_peer,
        )
    q = p.with_macs(ep.lxc_mac, ep.pod_mac)
    w.step(
        node,
        ep.lxc_name,
        prog,
        "to-endpoint",
        f"to-endpoint {ep.id} ({ep.pod or 'health'}): redirect to {ep.lxc_name} (ifindex {ep.lxc_ifindex}) -> eth0 of the pod, mac {ep.pod_mac}",
        q,
        verdict=Verdict.FORWARDED,
        ifindex=ep.lxc_ifindex,
        pod=ep.pod or "health",
    )
    w.trace_event(
        node,
        ObsPoint.TO_ENDPOINT,
        q,
        src_identity,
        ep.identity,
        ep.lxc_name,
        ep.lxc_ifindex,
        res.status,
        False,
    )
    return Outcome(Where.ENDPOINT, node, q, ep)
