"""apply_delta(old, diff(old, new)) has exactly new's map contents, for random
clusters before and after random pod/service changes."""

from __future__ import annotations

import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "control"))
import cluster_docs as C

from ciliate.control.engine import Engine, compute_desired
from ciliate.desired import apply_delta, diff, map_contents

NODES = ["mycluster-worker", "mycluster-worker2", "mycluster-control-plane"]
CIDR = {
    "mycluster-worker": "10.10.2",
    "mycluster-worker2": "10.10.1",
    "mycluster-control-plane": "10.10.0",
}

pods = st.dictionaries(
    st.integers(1, 30),
    st.tuples(st.sampled_from(NODES), st.sampled_from(["a", "b", "c"])),
    max_size=12,
)
backends = st.lists(st.integers(1, 30), max_size=5, unique=True)


def _docs(p: dict[int, tuple[str, str]], b: list[int], np: bool) -> list[dict[str, object]]:
    cfg = C.config()
    out = [*C.node_docs(cfg), C.namespace("t")]
    for i, (node, app) in sorted(p.items()):
        out.append(C.pod("t", f"p{i}", node, f"{CIDR[node]}.{100 + i}", {"app": app}))
    port = {"name": "h", "port": 80, "protocol": "TCP", **({"nodePort": 30500} if np else {})}
    out.append(
        C.service(
            "t", "s", "10.96.1.1", [port], {"app": "a"}, type_="NodePort" if np else "ClusterIP"
        )
    )
    eps = [(f"{CIDR[p[i][0]]}.{100 + i}", p[i][0], True) for i in b if i in p]
    out.append(C.endpoint_slice("t", "s", eps, [{"name": "h", "port": 8080, "protocol": "TCP"}]))
    return out


@settings(max_examples=40, deadline=None)
@given(pods, backends, st.booleans(), pods, backends, st.booleans())
def test_apply_diff_gives_new(p1, b1, np1, p2, b2, np2):  # type: ignore[no-untyped-def]
    cfg = C.config()
    old = compute_desired(_docs(p1, b1, np1), cfg)
    new = compute_desired(_docs(p2, b2, np2), cfg, previous=old)
    assert map_contents(apply_delta(old, diff(old, new))) == map_contents(new)
    assert diff(new, new) == []


@settings(max_examples=25, deadline=None)
@given(pods, backends, pods, backends)
def test_engine_updates_equal_full_recompute(p1, b1, p2, b2):  # type: ignore[no-untyped-def]
    cfg = C.config()
    d1, d2 = _docs(p1, b1, False), _docs(p2, b2, False)
    eng = Engine(cfg)
    s1 = eng.load(d1)
    keys2 = {(d["kind"], d["metadata"]["name"]) for d in d2}  # type: ignore[index]
    deleted = [d for d in d1 if (d["kind"], d["metadata"]["name"]) not in keys2]  # type: ignore[index]
    changes = eng.update([d for d in d2 if d["kind"] in ("Pod", "EndpointSlice")], deleted)
    assert map_contents(apply_delta(s1, changes)) == map_contents(eng.state)
    full = compute_desired(d2, cfg, previous=s1)
    a, b = map_contents(eng.state), map_contents(full)
    # IDs may be allocated differently; compare the ipcache and lxc views which do not
    # depend on allocation order.
    for key in a.keys() | b.keys():
        if key[1] in ("cilium_ipcache",):
            assert a.get(key) == b.get(key), key
