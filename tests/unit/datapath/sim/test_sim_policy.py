"""Policy in the model datapath: every verdict from ``mapstate.lookup`` over the compiled
maps, drops with Cilium's reasons and provenance, replies through conntrack, L7 proxy."""

from collections.abc import Callable

from ciliate.datapath.sim import probe, trace
from ciliate.desired import DesiredState, L7Rule, PolicyEntry, PolicyKey, PolicyMap, Provenance

BB_A = "networking101/busybox-a"  # identity 3372, worker
BB_B = "networking101/busybox-b"  # identity 3372, worker2
NS_A = "networking101/netshoot-a"  # identity 10388, worker
NS_B = "networking101/netshoot-b"  # identity 10388, worker2

PROV = (Provenance("CiliumNetworkPolicy", "networking101", "netshoot-in", "spec.ingress[0]"),)

# netshoot accepts TCP/80 from busybox only; egress unrestricted.
NETSHOOT_IN: PolicyMap = {
    PolicyKey(3372, False, 6, 80, 16): PolicyEntry(provenance=PROV),
    PolicyKey(0, True): PolicyEntry(),
}
# busybox may not send anything (egress enforced, empty), ingress open.
BUSYBOX_NO_EGRESS: PolicyMap = {PolicyKey(0, False): PolicyEntry()}
DENY_PROV = (
    Provenance("CiliumNetworkPolicy", "networking101", "deny-busybox", "spec.ingressDeny[0]"),
)
NETSHOOT_DENY: PolicyMap = {
    PolicyKey(3372, False): PolicyEntry(deny=True, provenance=DENY_PROV),
    PolicyKey(0, False): PolicyEntry(),
    PolicyKey(0, True): PolicyEntry(),
}
L7_PROV = (
    Provenance(
        "CiliumNetworkPolicy", "networking101", "l7", "spec.ingress[0].toPorts[0].rules.http"
    ),
)
NETSHOOT_L7: PolicyMap = {
    PolicyKey(3372, False, 6, 80, 16): PolicyEntry(
        proxy_port=15001,
        l7_rules=(L7Rule("http", method="GET", path="/public.*"),),
        provenance=L7_PROV,
    ),
    PolicyKey(0, True): PolicyEntry(),
}

Make = Callable[..., DesiredState]


def netshoot(m: PolicyMap) -> dict[str, PolicyMap]:
    return {NS_A: m, NS_B: m}


def test_ingress_allow_by_port_and_drop_133_otherwise(make_state: Make) -> None:
    s = make_state(netshoot(NETSHOOT_IN))
    assert trace(s, BB_A, NS_B, 80, "tcp").delivered
    r = trace(s, BB_A, NS_B, 8080, "tcp")
    assert not r.delivered and r.drop_reason == 133
    last = r.steps[-1]
    assert last.node == "mycluster-worker2" and last.program == "handle_policy"
    assert "Policy denied (133)" in last.detail
    r = trace(s, NS_A, NS_B, 80, "tcp")
    assert r.drop_reason == 133


def test_allow_carries_provenance(make_state: Make) -> None:
    s = make_state(netshoot(NETSHOOT_IN))
    r = trace(s, BB_A, NS_A, 80, "tcp")
    pol = [st for st in r.steps if st.action == "policy" and "ingress" in st.detail]
    assert pol[0].provenance == ("CiliumNetworkPolicy networking101/netshoot-in spec.ingress[0]",)
    verdicts = [f for f in r.flows if f.event_type == 5]
    assert verdicts and verdicts[0].match_type == 2  # L3-L4


def test_deny_entry_drops_181_with_its_rule(make_state: Make) -> None:
    s = make_state(netshoot(NETSHOOT_DENY))
    r = trace(s, BB_A, NS_A, 80, "tcp")
    assert r.drop_reason == 181
    assert r.steps[-1].provenance == (
        "CiliumNetworkPolicy networking101/deny-busybox spec.ingressDeny[0]",
    )
    assert trace(s, NS_B, NS_A, 80, "tcp").delivered


def test_egress_drop_happens_at_the_source(make_state: Make) -> None:
    s = make_state({BB_A: BUSYBOX_NO_EGRESS})
    r = trace(s, BB_A, NS_B, 0, "icmp")
    assert r.drop_reason == 133
    assert r.steps[-1].program == "cil_from_container"
    assert r.steps[-1].node == "mycluster-worker"
    assert not any(st.action == "encap" for st in r.steps)


def test_reply_passes_where_policy_would_deny_the_reverse_direction(make_state: Make) -> None:
    # netshoot may receive from busybox but may send nothing of its own...
    no_egress: PolicyMap = {PolicyKey(3372, False, 6, 80, 16): PolicyEntry()}
    s = make_state(netshoot(no_egress))
    r = trace(s, BB_A, NS_B, 80, "tcp")
    # ...yet its SYN-ACK leaves through conntrack (reply) without a policy lookup.
    assert r.delivered
    assert not any(st.action == "policy" for st in r.reply_steps)
    assert any("reply" in st.detail for st in r.reply_steps if st.action == "conntrack")
    # A connection netshoot opens itself is denied at its egress.
    assert trace(s, NS_B, BB_A, 80, "tcp").drop_reason == 133


def test_l7_rules_allow_or_answer_403(make_state: Make) -> None:
    s = make_state(netshoot(NETSHOOT_L7))
    ok = trace(s, BB_A, NS_B, 80, "tcp", http=("GET", "/public/index.html"))
    assert ok.delivered and ok.status == 200
    assert any(st.action == "to-proxy" for st in ok.steps)
    no = trace(s, BB_A, NS_B, 80, "tcp", http=("GET", "/private"))
    assert not no.delivered and no.status == 403
    assert "403 Access denied" in no.steps[-1].detail
    post = trace(s, BB_A, NS_B, 80, "tcp", http=("POST", "/public"))
    assert post.status == 403


def test_l7_rules_use_the_oracles_matcher(make_state: Make) -> None:
    """The model's proxy decides as control.l7 (explain, reach) does: a rule requiring a
    header does not match a probe, which carries none; an empty rule allows all."""
    from ciliate.control.l7 import http_allowed

    header_rule = L7Rule("http", method="GET", headers=("X-Token",))
    for rules, allowed in (((header_rule,), False), ((L7Rule("http"),), True)):
        entry = PolicyEntry(proxy_port=15001, l7_rules=rules, provenance=L7_PROV)
        pmap: PolicyMap = {
            PolicyKey(3372, False, 6, 80, 16): entry,
            PolicyKey(0, True): PolicyEntry(),
        }
        s = make_state(netshoot(pmap))
        r = trace(s, BB_A, NS_B, 80, "tcp", http=("GET", "/"))
        assert (http_allowed(rules, "GET", "/") is not None) is allowed
        assert r.delivered is allowed and r.status == (200 if allowed else 403)
        p = probe(s, BB_A, NS_B, 80, "tcp", ("GET", "/"))
        assert (p.allowed, p.status) == (r.delivered, r.status)


def test_probe_agrees_with_trace_for_every_pair(make_state: Make) -> None:
    pods = (BB_A, BB_B, NS_A, NS_B)
    for pol in (NETSHOOT_IN, NETSHOOT_DENY, NETSHOOT_L7):
        s = make_state(netshoot(pol))
        for a in pods:
            for b in pods:
                for port, proto, http in (
                    (80, "tcp", None),
                    (53, "udp", None),
                    (0, "icmp", None),
                    (80, "tcp", ("GET", "/x")),
                ):
                    t = trace(s, a, b, port, proto, http)
                    for _ in range(2):  # the second call hits the cache
                        p = probe(s, a, b, port, proto, http)
                        assert (p.allowed, p.drop_reason, p.status) == (
                            t.delivered,
                            t.drop_reason,
                            t.status,
                        ), (a, b, port, proto)


def test_an_expired_ct_entry_no_longer_lets_the_reply_through(make_state: Make) -> None:
    import random
    from ipaddress import IPv4Address

    from ciliate.clock import FakeClock
    from ciliate.datapath.packet import IPProto, build_reply, build_request
    from ciliate.datapath.sim import lxc
    from ciliate.datapath.sim.network import topology, transmit
    from ciliate.datapath.sim.walk import Walk, Where

    closed_egress: PolicyMap = {PolicyKey(0, False): PolicyEntry()}  # netshoot opens nothing
    s = make_state(netshoot(closed_egress))
    clock = FakeClock()
    w = Walk(topology(s), clock, random.Random(0), transmit)
    assert trace(s, BB_A, NS_B, 53, "udp", walk=w).delivered  # the reply passes through CT
    # The same answer again, within and then past the 60 s lifetime of a UDP entry.
    request = build_request(
        "a", "b", IPv4Address("10.10.2.117"), IPv4Address("10.10.1.155"), IPProto.UDP, 53, 40000
    )
    node, ep = w.topo.pods[NS_B]
    clock.advance(30)
    assert lxc.from_container(w, node, ep, build_reply(request)).where != Where.DROPPED
    clock.advance(61)
    out = lxc.from_container(w, node, ep, build_reply(request))
    assert out.where == Where.DROPPED and out.drop_reason == 133


def test_a_deny_added_mid_flow_drops_the_flows_next_packet(make_state: Make) -> None:
    """Policy applies to every packet but replies (Cilium's bpf_lxc): a UDP flow that was
    allowed and is still in conntrack is dropped once a deny lands, on both datapaths."""
    import random

    from ciliate.clock import FakeClock
    from ciliate.datapath.sim.network import topology, transmit
    from ciliate.datapath.sim.walk import Walk

    open_state = make_state({})
    clock, rng = FakeClock(), random.Random(0)
    w = Walk(topology(open_state), clock, rng, transmit)
    assert trace(open_state, BB_A, NS_B, 53, "udp", walk=w).delivered
    denied = make_state(netshoot(NETSHOOT_DENY))
    # the same conntrack (the flow is established), the new policy maps
    w2 = Walk(topology(denied), clock, rng, transmit, ct=w.ct)
    r = trace(denied, BB_A, NS_B, 53, "udp", walk=w2)
    assert not r.delivered and r.drop_reason == 181
    assert any(s.action == "conntrack" and "established" in s.detail for s in r.steps)
