"""The L7 proxy's rules file (datapath.linux.proxy_rules) and the proxy's decisions
(servers.proxy.decide) against the model's proxy (datapath.sim): the same compiled
maps, the same lookup, the same matcher -- so the same answer for every request."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ciliate.datapath.linux.proxy_rules import (
    EndpointRules,
    RulesCache,
    load_document,
    load_rules,
    write_rules,
)
from ciliate.datapath.sim import trace
from ciliate.desired import (
    DesiredState,
    L7Rule,
    MapChange,
    PolicyEntry,
    PolicyKey,
    PolicyMap,
    Provenance,
    policy_map_name,
)
from ciliate.servers.proxy import decide
from ciliate.servers.proxy_http import Head, MessageReader

BB_A = "networking101/busybox-a"  # identity 3372, worker
NS_A = "networking101/netshoot-a"  # identity 10388, worker
NS_B = "networking101/netshoot-b"  # identity 10388, worker2
BUSYBOX, NETSHOOT = 3372, 10388
PROV = (Provenance("CiliumNetworkPolicy", "networking101", "l7", "spec.ingress[0]"),)
L7: PolicyMap = {
    PolicyKey(BUSYBOX, False, 6, 80, 16): PolicyEntry(
        proxy_port=10080,
        l7_rules=(L7Rule("http", method="GET", path="/public.*"),),
        provenance=PROV,
    ),
    # any identity on 8080 through the proxy, every request allowed (an empty rule)
    PolicyKey(0, False, 6, 8080, 16): PolicyEntry(
        proxy_port=10080, l7_rules=(L7Rule("http"),), provenance=PROV
    ),
    PolicyKey(0, True): PolicyEntry(),
}
Make = Callable[..., DesiredState]


def rules_of(state: DesiredState, node: str, tmp_path: Path) -> dict[str, EndpointRules]:
    cache = RulesCache()
    cache.load(state.nodes.values())
    path = tmp_path / f"{node}.rules.json"
    assert write_rules(path, cache.document(node))
    assert not write_rules(path, cache.document(node))  # unchanged: not rewritten
    return load_rules(path)


def head(method: str, path: str) -> Head:
    ev = MessageReader(request=True).feed(f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert isinstance(ev[0], Head)
    return ev[0]


def test_only_redirecting_endpoints_are_written_with_their_whole_map(
    make_state: Make, tmp_path: Path
) -> None:
    s = make_state({NS_B: L7})
    node = s.nodes["mycluster-worker2"]
    ep = next(e for e in node.endpoints.values() if e.pod == NS_B)
    rules = rules_of(s, "mycluster-worker2", tmp_path)
    assert list(rules) == [str(ep.ip)]
    got = rules[str(ep.ip)]
    assert got.pod == NS_B and got.id == ep.id
    assert dict(got.policy) == L7
    assert rules_of(s, "mycluster-worker", tmp_path) == {}
    # the proxied node's pods are named (for the L7 records), the other node's are not
    _, pods = load_document(tmp_path / "mycluster-worker2.rules.json")
    assert pods[str(ep.ip)] == NS_B and set(pods.values()) >= {NS_B, "networking101/busybox-b"}
    assert load_document(tmp_path / "mycluster-worker.rules.json")[1] == {}


@pytest.mark.parametrize(
    ("src", "port", "method", "path"),
    [
        (BB_A, 80, "GET", "/public"),
        (BB_A, 80, "GET", "/public/x"),
        (BB_A, 80, "GET", "/private"),
        (BB_A, 80, "POST", "/public"),
        (NS_A, 8080, "DELETE", "/anything"),
        (BB_A, 8080, "GET", "/"),
    ],
)
def test_the_proxy_decides_as_the_model(
    make_state: Make, tmp_path: Path, src: str, port: int, method: str, path: str
) -> None:
    s = make_state({NS_B: L7})
    ip = str(next(e.ip for n in s.nodes.values() for e in n.endpoints.values() if e.pod == NS_B))
    endpoint = load_rules_for(s, tmp_path)[ip]
    identity = BUSYBOX if src == BB_A else NETSHOOT
    proxied = decide(endpoint, identity, port)
    assert proxied.entry is not None and not proxied.denied
    model = trace(s, src, NS_B, port, "tcp", http=(method, path))
    assert proxied.allows(head(method, path)) is model.delivered
    assert [p.name for p in proxied.policies] == ["l7"]


def load_rules_for(s: DesiredState, tmp_path: Path) -> dict[str, EndpointRules]:
    return rules_of(s, "mycluster-worker2", tmp_path)


def test_an_identity_the_map_does_not_allow_is_refused(make_state: Make, tmp_path: Path) -> None:
    s = make_state({NS_B: L7})
    endpoint = next(iter(load_rules_for(s, tmp_path).values()))
    d = decide(endpoint, NETSHOOT, 80)
    assert d.denied and d.entry is None


def test_update_recomputes_only_changed_policy_maps(make_state: Make) -> None:
    before = make_state({})
    cache = RulesCache()
    cache.load(before.nodes.values())
    assert not cache.needs_proxy("mycluster-worker2")
    after = make_state({NS_B: L7})
    ep = next(e for e in after.nodes["mycluster-worker2"].endpoints.values() if e.pod == NS_B)
    # no policy change reported: nothing recomputed
    assert cache.update(after.nodes, []) == set()
    key = PolicyKey(BUSYBOX, False, 6, 80, 16)
    change = MapChange("mycluster-worker2", policy_map_name(ep.id), key, L7[key])
    assert cache.update(after.nodes, [change]) == {"mycluster-worker2"}
    assert cache.needs_proxy("mycluster-worker2")
    # the redirect goes away again
    change = MapChange("mycluster-worker2", policy_map_name(ep.id), key, None)
    assert cache.update(before.nodes, [change]) == {"mycluster-worker2"}
    assert not cache.needs_proxy("mycluster-worker2")


def test_a_malformed_rules_file_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "x.rules.json"
    bad.write_text("{\n  nope")
    with pytest.raises(ValueError, match=r"x\.rules\.json:2:3"):
        load_rules(bad)
    assert load_rules(tmp_path / "absent.json") == {}
