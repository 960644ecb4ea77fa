"""Identity allocation is a function of the label sets: any order, any split into
batches, gives every label set the same number."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ciliate.control.identity import allocate_identities

label_sets = st.lists(
    st.lists(st.sampled_from([f"k8s:app={c}" for c in "abcdefgh"] + ["k8s:tier=x", "k8s:tier=y"]),
             min_size=1, max_size=3, unique=True).map(lambda x: tuple(sorted(x))),
    min_size=1, max_size=20, unique=True,
)  # fmt: skip


@given(label_sets, st.randoms(use_true_random=False))
def test_order_does_not_matter(sets, rnd):  # type: ignore[no-untyped-def]
    shuffled = list(sets)
    rnd.shuffle(shuffled)
    assert allocate_identities(sets) == allocate_identities(shuffled)


@given(label_sets)
def test_ids_unique_user_range_and_kept(sets):  # type: ignore[no-untyped-def]
    ids = allocate_identities(sets)
    assert len(set(ids.values())) == len(ids)
    assert all(256 <= v <= 65535 for v in ids.values())
    more = allocate_identities([*sets, ("k8s:new=1",)], ids)
    assert all(more[k] == v for k, v in ids.items())
