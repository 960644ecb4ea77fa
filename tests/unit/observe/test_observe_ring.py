"""FlowRing: bounds, sequence cursors across wrap-around, last/first/since, follow."""

from __future__ import annotations

import threading

import pytest

from ciliate.observe.flow import Flow, Verdict
from ciliate.observe.ring import DEFAULT_CAPACITY, FlowRing


def fl(i: int) -> Flow:
    return Flow(time_ns=i * 1_000_000_000, verdict=Verdict.FORWARDED, uuid=str(i))


def ids(flows: list[Flow]) -> list[int]:
    return [int(f.uuid) for f in flows]


def test_default_capacity_is_hubbles() -> None:
    assert DEFAULT_CAPACITY == 4095
    assert FlowRing().capacity == 4095


def test_bounded_keeps_newest() -> None:
    r = FlowRing(5)
    for i in range(1, 13):
        assert r.append(fl(i)) == i
    assert len(r) == 5
    assert ids(r.snapshot()) == [8, 9, 10, 11, 12]
    assert (r.first_seq, r.last_seq) == (8, 12)


def test_last_first_since() -> None:
    r = FlowRing(10)
    r.extend(fl(i) for i in range(1, 8))
    assert ids(r.last(3)) == [5, 6, 7]
    assert ids(r.last(100)) == [1, 2, 3, 4, 5, 6, 7]
    assert r.last(0) == []
    assert ids(r.first(2)) == [1, 2]
    assert ids(r.since(5 * 10**9)) == [5, 6, 7]
    assert ids(r.since(2 * 10**9, until_ns=4 * 10**9)) == [2, 3]


def test_read_after_cursor_and_wraparound_loss() -> None:
    r = FlowRing(4)
    r.extend(fl(i) for i in range(1, 4))
    got, cur = r.read_after(0)
    assert ids(got) == [1, 2, 3] and cur == 3
    assert r.read_after(cur) == ([], 3)
    r.extend(fl(i) for i in range(4, 11))  # 7 more: the reader falls behind
    assert r.lost_after(cur) == 3  # 4, 5, 6 were overwritten
    got, cur = r.read_after(cur)
    assert ids(got) == [7, 8, 9, 10] and cur == 10
    assert r.lost_after(cur) == 0
    # A cursor from the future (ring restarted) resumes at the newest.
    assert r.read_after(99) == ([], 10)


def test_wait_after_wakes_on_append_and_times_out() -> None:
    r = FlowRing(8)
    assert r.wait_after(0, timeout=0.01) == ([], 0)
    out: list[list[Flow]] = []

    def follower() -> None:
        got, _ = r.wait_after(0, timeout=5)
        out.append(got)

    t = threading.Thread(target=follower)
    t.start()
    r.append(fl(1))
    t.join(5)
    assert not t.is_alive()
    assert ids(out[0]) == [1]


def test_concurrent_appends_get_unique_sequences() -> None:
    r = FlowRing(10_000)
    seqs: list[int] = []
    lock = threading.Lock()

    def writer(base: int) -> None:
        mine = [r.append(fl(base + i)) for i in range(500)]
        with lock:
            seqs.extend(mine)

    threads = [threading.Thread(target=writer, args=(k * 1000,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seqs) == list(range(1, 2001))
    assert len(r) == 2000


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError):
        FlowRing(0)
