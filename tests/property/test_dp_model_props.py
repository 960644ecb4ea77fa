"""Properties of the model datapath's conntrack: whatever the tuple and direction, the
answer to a tracked packet is a REPLY and the packet itself ESTABLISHED."""

from ipaddress import IPv4Address

from hypothesis import given
from hypothesis import strategies as st

from ciliate.clock import FakeClock
from ciliate.datapath.conntrack import CTDir, CTStatus, CTTable
from ciliate.datapath.packet import IPProto, build_reply, build_request

ips = st.integers(min_value=0x0A000001, max_value=0x0AFFFFFE).map(IPv4Address)
ports = st.integers(min_value=1, max_value=65535)
protos = st.sampled_from([IPProto.TCP, IPProto.UDP, IPProto.SCTP, IPProto.ICMP])


@given(ips, ips, ports, ports, protos, st.sampled_from([CTDir.EGRESS, CTDir.INGRESS]))
def test_the_answer_to_a_tracked_packet_is_a_reply(
    a: IPv4Address, b: IPv4Address, sport: int, dport: int, proto: IPProto, d: CTDir
) -> None:
    ct = CTTable(FakeClock())
    p = build_request("x", "y", a, b, proto, dport, sport)
    r = ct.lookup(p, d)
    assert r.status == CTStatus.NEW
    ct.create(r.tuple, p)
    other = CTDir.INGRESS if d == CTDir.EGRESS else CTDir.EGRESS
    assert ct.lookup(build_reply(p), other).status == CTStatus.REPLY
    assert ct.lookup(p, d).status == CTStatus.ESTABLISHED
