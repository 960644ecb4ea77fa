"""The datapath lookup of cilium.md §3.3 and the insertion rules of §6.5."""

from __future__ import annotations

from ciliate.control.mapstate import (
    DROP_POLICY,
    DROP_POLICY_DENY,
    MatchType,
    build_map,
    format_key,
    lookup,
)
from ciliate.control.portrange import split_range
from ciliate.desired import PolicyEntry, PolicyKey

ALLOW = PolicyEntry()
DENY = PolicyEntry(deny=True)
TCP, UDP = 6, 17


def test_empty_map_drops_with_policy_denied() -> None:
    v = lookup({}, 300, False, TCP, 80)
    assert not v.allowed and v.drop_reason == DROP_POLICY and v.match_type == MatchType.NONE


def test_l3_only_allows_any_port() -> None:
    m = {PolicyKey(300, False): ALLOW}
    v = lookup(m, 300, False, UDP, 53)
    assert v.allowed and v.match_type == MatchType.L3_ONLY
    assert not lookup(m, 301, False, UDP, 53).allowed
    assert not lookup(m, 300, True, UDP, 53).allowed  # other direction


def test_l4_only_entry_matches_every_identity() -> None:
    m = {PolicyKey(0, False, TCP, 80, 16): ALLOW}
    v = lookup(m, 12345, False, TCP, 80)
    assert v.allowed and v.match_type == MatchType.L4_ONLY
    assert not lookup(m, 12345, False, TCP, 81).allowed
    assert not lookup(m, 12345, False, UDP, 80).allowed


def test_l3_deny_wins_over_l4_allow() -> None:
    m = {PolicyKey(0, False, TCP, 80, 16): ALLOW, PolicyKey(300, False): DENY}
    v = lookup(m, 300, False, TCP, 80)
    assert not v.allowed and v.drop_reason == DROP_POLICY_DENY


def test_l4_deny_wins_over_more_specific_l3_allow() -> None:
    m = {PolicyKey(300, False, TCP, 80, 16): ALLOW, PolicyKey(0, False, TCP, 0, 0): DENY}
    v = lookup(m, 300, False, TCP, 80)
    assert v.drop_reason == DROP_POLICY_DENY


def test_longer_l4_prefix_beats_l3_and_tie_goes_to_l3() -> None:
    redirect = PolicyEntry(proxy_port=15001)
    m = {PolicyKey(300, False): ALLOW, PolicyKey(0, False, TCP, 80, 16): redirect}
    v = lookup(m, 300, False, TCP, 80)
    assert v.redirect and v.match_type == MatchType.L4_ONLY
    m2 = {PolicyKey(300, False, TCP, 80, 16): ALLOW, PolicyKey(0, False, TCP, 80, 16): redirect}
    v2 = lookup(m2, 300, False, TCP, 80)
    assert not v2.redirect and v2.match_type == MatchType.L3_L4


def test_port_range_blocks_match_by_prefix() -> None:
    m = {PolicyKey(0, True, TCP, s, p): ALLOW for s, p in split_range(8080, 8083)}
    assert all(lookup(m, 7, True, TCP, port).allowed for port in range(8080, 8084))
    assert not lookup(m, 7, True, TCP, 8084).allowed
    assert not lookup(m, 7, True, TCP, 8079).allowed
    assert format_key(next(iter(m))) == "8080-8083/TCP"


def test_proto_only_match_type() -> None:
    m = {PolicyKey(300, False, UDP, 0, 0): ALLOW}
    v = lookup(m, 300, False, UDP, 9999)
    assert v.allowed and v.match_type == MatchType.L3_PROTO


def test_split_range_is_exact_and_minimal() -> None:
    for first, last in [(1, 65535), (80, 81), (1000, 2000), (0, 10), (65535, 65535)]:
        covered: set[int] = set()
        for start, prefix in split_range(first, last):
            size = 1 << (16 - prefix)
            assert start % size == 0
            covered.update(range(start, start + size))
        assert covered == set(range(first, last + 1))


def test_builder_drops_allow_covered_by_deny_and_deny_removes_narrower() -> None:
    m = build_map(
        [
            (PolicyKey(300, False, TCP, 0, 0), DENY),
            (PolicyKey(300, False, TCP, 80, 16), ALLOW),  # covered: not inserted
            (PolicyKey(301, False, TCP, 80, 16), ALLOW),
            (PolicyKey(0, False, TCP, 80, 16), DENY),  # removes 301's allow
        ]
    )
    assert PolicyKey(300, False, TCP, 80, 16) not in m
    assert PolicyKey(301, False, TCP, 80, 16) not in m
    assert m[PolicyKey(0, False, TCP, 80, 16)].deny


def test_builder_merges_allows_redirect_wins() -> None:
    k = PolicyKey(300, False, TCP, 80, 16)
    m = build_map([(k, ALLOW), (k, PolicyEntry(proxy_port=15001))])
    assert m[k].proxy_port == 15001


def test_map_delta_equals_diff_map_on_every_shape_the_compiler_makes() -> None:
    """``map_delta`` compares only layers (or dicts at C speed): it must give exactly
    ``diff_map``'s answer for a layer more, a compaction, a changed entry, a key gone
    and the shapes it hands to ``diff_map``."""
    from ciliate.control.mapstate import map_delta
    from ciliate.desired import LayeredMap, diff_map

    def k(i: int, port: int = 80) -> PolicyKey:
        return PolicyKey(i, False, 6, port, 16)

    e1, e2 = PolicyEntry(), PolicyEntry(deny=True)
    base = {k(1): e1, k(2): e1, k(3): e2}
    v1 = LayeredMap(base, {k(4): e1})
    cases = [
        (v1, LayeredMap(base, {k(4): e1, k(5): e1})),  # a new identity's key
        (v1, LayeredMap(base, {k(4): e2})),  # a changed entry
        (v1, LayeredMap(base, {k(5): e1})),  # k(4) gone back to the base (absent)
        (v1, LayeredMap(base, {k(2): e2, k(4): e1})),  # a base entry overridden
        (v1, {**base, k(4): e1, k(6): e1}),  # compacted, one key more
        (v1, {k(1): e1, k(4): PolicyEntry()}),  # compacted, keys gone, equal entry
        (LayeredMap(base, {k(4): e1}, [k(1)]), dict(base)),  # deletes: diff_map's way
        (dict(base), LayeredMap(base, {k(7): e1})),
    ]
    for old, new in cases:
        assert map_delta(old, new) == diff_map(old, new), (old, new)
