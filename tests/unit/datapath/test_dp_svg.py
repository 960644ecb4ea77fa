"""The trace picture: well-formed SVG naming the nodes, devices, hops and drops."""

import xml.etree.ElementTree as ET
from collections.abc import Callable

from ciliate.datapath.sim import trace
from ciliate.datapath.svg import RED, trace_to_svg
from ciliate.desired import DesiredState, PolicyEntry, PolicyKey, PolicyMap

NS = "{http://www.w3.org/2000/svg}"


def texts(svg: str) -> list[str]:
    root = ET.fromstring(svg)
    return ["".join(t.itertext()) for t in root.iter(f"{NS}text")]


def test_cross_node_picture(state: DesiredState) -> None:
    r = trace(state, "networking101/busybox-a", "networking101/netshoot-b", 0, "icmp")
    svg = trace_to_svg(state, r)
    words = texts(svg)
    for w in (
        "mycluster-worker",
        "mycluster-worker2",
        "cilium_vxlan",
        "cilium_host",
        "eth0",
        "busybox-a",
        "netshoot-b",
    ):
        assert w in words, w
    # every hop has its numbered badge
    n = len(r.steps) + len(r.reply_steps)
    assert {str(i) for i in range(1, n + 1)} <= set(words)
    assert any("VXLAN 172.18.0.2 -> 172.18.0.4" in w for w in words)
    assert f'stroke="{RED}" stroke-width="5"' not in svg  # no drop cross


def test_drop_is_red(make_state: Callable[..., DesiredState]) -> None:
    closed: PolicyMap = {PolicyKey(0, True): PolicyEntry()}
    s = make_state({"networking101/netshoot-b": closed})
    r = trace(s, "networking101/busybox-a", "networking101/netshoot-b", 80, "tcp")
    svg = trace_to_svg(s, r)
    assert "Policy denied (133)" in texts(svg)
    assert f'stroke="{RED}" stroke-width="5"' in svg  # the cross


def test_world_box(state: DesiredState) -> None:
    r = trace(state, "192.0.2.10", "networking101/netshoot-a", 80, "tcp")
    assert "world" in texts(trace_to_svg(state, r))


def test_l7_denial_is_marked(make_state: Callable[..., DesiredState]) -> None:
    from ciliate.desired import L7Rule

    l7: PolicyMap = {
        PolicyKey(3372, False, 6, 80, 16): PolicyEntry(
            proxy_port=15001, l7_rules=(L7Rule("http", method="GET", path="/public"),)
        ),
        PolicyKey(0, True): PolicyEntry(),
    }
    s = make_state({"networking101/netshoot-b": l7})
    r = trace(
        s, "networking101/busybox-a", "networking101/netshoot-b", 80, "tcp", http=("GET", "/x")
    )
    assert "L7 proxy: 403 Access denied" in texts(trace_to_svg(s, r))


def test_service_translations_are_labelled(state: DesiredState) -> None:
    r = trace(state, "networking101/busybox-a", "10.96.0.10:80", protocol="tcp")
    assert r.delivered and r.backend
    words = texts(trace_to_svg(state, r))
    assert any(f"DNAT 10.96.0.10:80→{r.backend}" in w for w in words), words
    assert any("revNAT src→10.96.0.10:80" in w for w in words), words
