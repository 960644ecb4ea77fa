"""Trace steps carry the tunnel endpoint and the service frontend as fields, and the
text and picture renderers read those fields (never the human ``detail`` line)."""

from collections.abc import Callable
from dataclasses import replace

from ciliate.datapath.render import path_tokens
from ciliate.datapath.sim import trace
from ciliate.desired import DesiredState, PolicyEntry, PolicyKey, PolicyMap


def test_tunnel_steps_name_the_remote_node_both_ways(state: DesiredState) -> None:
    r = trace(state, "networking101/busybox-a", "networking101/netshoot-b", 80, "tcp")
    assert r.delivered
    req = [s for s in r.steps if s.action == "tunnel"]
    rep = [s for s in r.reply_steps if s.action == "tunnel"]
    assert [(s.tunnel_endpoint, s.tunnel_source) for s in req] == [("172.18.0.4", "cilium_ipcache")]
    assert [s.tunnel_endpoint for s in rep] == ["172.18.0.2"]
    assert "cilium_ipcache (tunnel 172.18.0.4)" in path_tokens(r, r.steps, r.src, r.dst)


def test_service_step_names_the_frontend(state: DesiredState) -> None:
    r = trace(state, "networking101/busybox-a", "10.96.0.10:80", protocol="tcp")
    svc = [s for s in r.steps if s.action == "service"]
    assert [s.frontend for s in svc] == ["10.96.0.10:80"]
    assert svc[0].dst == r.backend


def test_path_is_rendered_from_the_fields(state: DesiredState) -> None:
    """A reply sent back through the overlay it came by names conntrack as the source;
    the detail text plays no part (here it says something else entirely)."""
    r = trace(state, "networking101/busybox-a", "networking101/netshoot-b", 80, "tcp")
    steps = [
        replace(s, detail="(reworded)", tunnel_endpoint="172.18.0.9", tunnel_source="conntrack")
        if s.action == "tunnel"
        else s
        for s in r.steps
    ]
    assert "conntrack (tunnel 172.18.0.9)" in path_tokens(r, steps, r.src, r.dst)


def test_steps_name_the_pod_they_decide_for(make_state: Callable[..., DesiredState]) -> None:
    """The redirect to a local endpoint, the policy verdict and a policy drop name the
    endpoint's pod in ``pod``, so the picture finds a service's backend without reading
    the detail text."""
    closed: PolicyMap = {PolicyKey(0, True): PolicyEntry()}
    s = make_state({"networking101/netshoot-b": closed})
    r = trace(s, "networking101/busybox-a", "networking101/netshoot-b", 80, "tcp")
    [drop] = [x for x in r.steps if x.action == "drop"]
    assert drop.pod == "networking101/netshoot-b"
    r = trace(make_state(), "networking101/busybox-a", "networking101/netshoot-a", 80, "tcp")
    assert {x.pod for x in r.steps if x.action == "redirect"} == {"networking101/netshoot-a"}
    # a policy verdict names its subject: the client on egress, the server on ingress
    assert {x.pod for x in r.steps if x.action == "policy"} <= {
        "networking101/busybox-a",
        "networking101/netshoot-a",
    }
