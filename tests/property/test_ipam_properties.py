"""Property tests for cluster-pool IPAM: never twice, release, exhaustion, carving."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from hypothesis import given, settings
from hypothesis import strategies as st

from ciliate.control.ipam import ClusterIPAM, Exhausted, carve_pod_cidrs, plan_node
from ciliate.model.cluster import NodeConfig

# A sequence of operations: ("add", node) or ("del", index into live addresses).
ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.sampled_from(["a", "b"])),
        st.tuples(st.just("del"), st.integers(min_value=0, max_value=50)),
        st.tuples(st.just("claim"), st.integers(min_value=0, max_value=15)),
    ),
    max_size=80,
)


@settings(max_examples=200, deadline=None)
@given(ops)
def test_never_handed_out_twice_and_released_addresses_return(seq):
    plans = [plan_node("a", "10.10.1.0/28"), plan_node("b", "10.10.2.0/28", "10.10.2.9")]
    ipam = ClusterIPAM(plans)
    live: dict[str, str] = {}  # ip -> owner
    for n, (op, arg) in enumerate(seq):
        owner = f"p{n}"
        if op == "add":
            got = ipam.allocate(str(arg), owner)
            net = IPv4Network("10.10.1.0/28" if arg == "a" else "10.10.2.0/28")
            plan = plans[0] if arg == "a" else plans[1]
            used = {ip for ip in live if IPv4Address(ip) in net}
            if isinstance(got, Exhausted):
                # Exhausted only when every usable, unreserved address is in use.
                assert len(used) == plan.capacity - 2
            else:
                assert got not in live, "handed out twice"
                assert got not in plan.reserved
                assert IPv4Address(got) in net
                assert got not in (str(net.network_address), str(net.broadcast_address))
                # Lowest free: every lower usable address is used or reserved.
                for h in net.hosts():
                    if h == IPv4Address(got):
                        break
                    assert str(h) in used or str(h) in plan.reserved
                live[got] = owner
        elif op == "del" and live:
            ip = sorted(live)[int(arg) % len(live)]
            ipam.release(ip)
            del live[ip]
        elif op == "claim":
            ip = str(IPv4Address("10.10.1.0") + int(arg))
            res = ipam.claim(ip, owner)
            if isinstance(res, str):
                assert ip not in live
                live[ip] = owner
            else:
                assert ip in live or ip in plans[0].reserved or int(arg) in (0, 15)
    for node in ("a", "b"):
        assert ipam.allocated(node) == 2 + len([ip for ip in live if ipam.node_for_ip(ip) == node])


@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=20, max_value=26),
    st.lists(st.booleans(), min_size=1, max_size=12),
    st.data(),
)
def test_carved_cidrs_are_disjoint_and_inside_the_pool(mask, explicit_flags, data):
    pool = IPv4Network("10.10.0.0/16")
    subnets = list(pool.subnets(new_prefix=mask))
    chosen = data.draw(
        st.lists(st.sampled_from(subnets), unique=True, min_size=0, max_size=len(explicit_flags))
    )
    nodes = []
    it = iter(chosen)
    for i, flag in enumerate(explicit_flags):
        cidr = str(next(it, "")) if flag else ""
        nodes.append(NodeConfig(name=f"n{i}", internal_ip=f"172.18.0.{i + 2}", pod_cidr=cidr))
    got = carve_pod_cidrs(str(pool), mask, nodes)
    assert set(got) == {n.name for n in nodes}
    nets = [IPv4Network(c) for c in got.values()]
    for i, a in enumerate(nets):
        assert a.subnet_of(pool)
        for b in nets[i + 1 :]:
            assert not a.overlaps(b)
    for n in nodes:
        if n.pod_cidr:
            assert got[n.name] == n.pod_cidr


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.ip_addresses(v=4).map(str),
        st.text(alphabet="0123456789. +-x", max_size=20),
        st.lists(st.integers(min_value=-5, max_value=300), min_size=3, max_size=5).map(
            lambda xs: ".".join(str(x) for x in xs)
        ),
    )
)
def test_parse_ipv4_agrees_with_ipaddress(text):
    from ciliate.control.ipam import parse_ipv4

    try:
        expected: int | None = int(IPv4Address(text))
    except ValueError:
        expected = None
    assert parse_ipv4(text) == expected
