"""Property: the scheduler's heap choice equals the plain scan of its scoring rule."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ciliate.controllers.scheduler import _Feasible


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 8),
    st.lists(st.integers(0, 3), max_size=8),
    st.lists(st.tuples(st.integers(0, 2), st.integers(0, 7)), max_size=30),
)
def test_heap_pick_equals_scan(n_nodes, initial, steps):
    names = [f"n{i}" for i in range(n_nodes)]
    per_node = {n: (initial[i] if i < len(initial) else 0) for i, n in enumerate(names)}
    # Two constraint sets over the same nodes: one allows all, one the even ones.
    pools = [
        _Feasible(list(enumerate(names)), per_node),
        _Feasible([(i, n) for i, n in enumerate(names) if i % 2 == 0], per_node),
    ]
    owners: list[dict[str, int]] = [{}, {}, {}]
    for owner, pool_ix in steps:
        pool = pools[pool_ix % 2]
        owned = owners[owner]
        got = pool.pick(per_node, owned)
        want = min(((owned.get(n, 0), per_node[n], i), n) for i, n in pool.nodes)[1]
        assert got == want
        per_node[got] += 1
        owned[got] = owned.get(got, 0) + 1
