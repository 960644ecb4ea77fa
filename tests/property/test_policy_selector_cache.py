"""The selector cache (inverted index + memo, updated in place) answers exactly what a
brute-force scan of the identities answers, across identity additions and removals."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ciliate.control.selectors import IdentitySelector, SelectorCache, label_map
from ciliate.desired import Identity
from ciliate.model.meta import Requirement, SelectorOp

KEYS = ("k8s:app", "k8s:tier", "reserved:host")
VALUES = ("a", "b", "")

labels = st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=3)
requirement = st.builds(
    Requirement,
    st.sampled_from(KEYS),
    st.sampled_from(list(SelectorOp)),
    st.frozensets(st.sampled_from(VALUES), min_size=1, max_size=2),
)
selector = st.builds(IdentitySelector, st.lists(requirement, max_size=3).map(tuple))


def as_identity(n: int, lm: dict[str, str]) -> Identity:
    return Identity(n, tuple(sorted(f"{k}={v}" if v else k for k, v in lm.items())))


@settings(max_examples=100, deadline=None)
@given(
    st.lists(labels, max_size=8),
    st.lists(selector, min_size=1, max_size=4),
    st.lists(st.tuples(st.booleans(), labels), max_size=5),
)
def test_cache_matches_brute_force(
    initial: list[dict[str, str]],
    sels: list[IdentitySelector],
    ops: list[tuple[bool, dict[str, str]]],
) -> None:
    ids = {256 + i: as_identity(256 + i, lm) for i, lm in enumerate(initial)}
    cache = SelectorCache(ids)
    for s in sels:
        cache.select(s)
    nxt = 1000
    for add, lm in ops:
        if add or not ids:
            ids[nxt] = as_identity(nxt, lm)
            cache.add_identity(ids[nxt])
            nxt += 1
        else:
            victim = sorted(ids)[0]
            del ids[victim]
            cache.remove_identity(victim)
    for s in sels:
        want = {i for i, ident in ids.items() if s.matches(label_map(ident.labels))}
        assert cache.select(s) == want
