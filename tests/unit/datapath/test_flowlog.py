"""The on-disk flow log: JSON lines, rotation, followers across rotation, torn lines."""

from __future__ import annotations

import json
from pathlib import Path

from ciliate.datapath.flowlog import (
    FlowLogDir,
    FlowLogFollower,
    FlowLogWriter,
    node_log_path,
    read_log,
)
from ciliate.observe.flow import IP, UDP, Flow, Verdict


def fl(i: int, node: str = "default/n1") -> Flow:
    return Flow(
        time_ns=i * 1_000_000_000,
        verdict=Verdict.FORWARDED,
        uuid=f"{i}",
        ip=IP("10.0.0.1", "10.0.0.2"),
        l4=UDP(1000 + i, 53),
        node_name=node,
    )


def uuids(flows: list[Flow]) -> list[int]:
    return [int(f.uuid) for f in flows]


def test_lines_are_hubble_json_and_read_back(tmp_path: Path) -> None:
    p = tmp_path / "n1.jsonl"
    with FlowLogWriter(p) as w:
        w.write([fl(1), fl(2)])
        w.append(fl(3))
    lines = p.read_text().splitlines()
    assert len(lines) == 3
    obj = json.loads(lines[0])
    assert set(obj) == {"flow", "node_name", "time"}
    assert read_log(p) == [fl(1), fl(2), fl(3)]


def test_rotation_bounds_the_size_and_keeps_order(tmp_path: Path) -> None:
    p = tmp_path / "n1.jsonl"
    with FlowLogWriter(p, max_bytes=2000, backups=2) as w:
        for i in range(1, 61):
            w.append(fl(i))
    assert p.stat().st_size <= 2000
    assert (tmp_path / "n1.jsonl.1").exists() and (tmp_path / "n1.jsonl.2").exists()
    assert not (tmp_path / "n1.jsonl.3").exists()
    got = uuids(read_log(p))
    assert got == list(range(got[0], 61))  # contiguous tail, oldest first
    assert got[0] > 1  # the oldest were rotated away


def test_follower_sees_new_lines_only_and_survives_rotation(tmp_path: Path) -> None:
    p = tmp_path / "n1.jsonl"
    w = FlowLogWriter(p, max_bytes=1500, backups=1)
    w.write([fl(1), fl(2)])
    fol = FlowLogFollower(p)  # starts at the end, like hubble observe --follow
    assert fol.poll() == []
    seen: list[int] = []
    for i in range(3, 40):
        w.append(fl(i))
        if i % 3 == 0:
            seen += uuids(fol.poll())
    seen += uuids(fol.poll())
    assert seen == list(range(3, 40))
    w.close()
    fol.close()


def test_partial_line_waits_for_its_end_and_torn_line_is_skipped(tmp_path: Path) -> None:
    p = tmp_path / "n1.jsonl"
    p.write_bytes(b"")
    fol = FlowLogFollower(p, from_start=True)
    with open(p, "ab") as f:
        full = json.dumps({"flow": {"time": "1970-01-01T00:00:01Z", "verdict": "FORWARDED"}})
        f.write(full[:20].encode())
        f.flush()
        assert fol.poll() == []
        f.write((full[20:] + "\n").encode())
    assert len(fol.poll()) == 1
    # A writer killed mid-line leaves a torn tail; the next writer ends it first.
    with open(p, "ab") as f:
        f.write(b'{"flow": {"time": "19')
    with FlowLogWriter(p) as w:
        w.append(fl(7))
    assert uuids(fol.poll()) == [7]
    assert [f.uuid for f in read_log(p)] == ["", "7"]
    fol.close()


def test_follower_of_a_missing_file_waits_for_it(tmp_path: Path) -> None:
    p = tmp_path / "later.jsonl"
    fol = FlowLogFollower(p)
    assert fol.poll() == []
    with FlowLogWriter(p) as w:
        w.append(fl(1))
    assert uuids(fol.poll()) == [1]
    fol.close()


def test_directory_of_node_logs_merges_by_time(tmp_path: Path) -> None:
    d = FlowLogDir(tmp_path / "flows")
    a = d.writer("default/mycluster-worker")
    b = d.writer("default/mycluster-worker2")
    assert node_log_path(tmp_path / "flows", "default/mycluster-worker").name == (
        "default_mycluster-worker.jsonl"
    )
    a.write([fl(1), fl(4)])
    b.write([fl(2), fl(3)])
    assert uuids(d.read_all()) == [1, 2, 3, 4]
    assert d.poll() == []  # follow starts at the end
    b.append(fl(6))
    a.append(fl(5))
    c = d.writer("default/new-node")
    c.append(fl(7))
    assert uuids(d.poll()) == [5, 6, 7]
    for w in (a, b, c):
        w.close()
    d.close()


def test_read_and_follow_loses_nothing_between_history_and_live(tmp_path: Path) -> None:
    d = FlowLogDir(tmp_path / "flows")
    w = d.writer("default/n1", max_bytes=1500, backups=3)
    for i in range(1, 12):
        w.append(fl(i))
    history = uuids(d.read_and_follow())
    assert history == list(range(history[0], 12))
    for i in range(12, 20):
        w.append(fl(i))
    assert uuids(d.poll()) == list(range(12, 20))
    w.close()
    d.close()


def test_read_flows_of_a_state_directory(tmp_path: Path) -> None:
    from ciliate.datapath.flowlog import read_flows

    d = FlowLogDir(tmp_path / "flows")
    with d.writer("n2") as w:
        w.write([fl(2), fl(3)])
    with d.writer("n1") as w:
        w.append(fl(1))
    assert uuids(read_flows(tmp_path)) == [1, 2, 3]
    assert uuids(read_flows(tmp_path / "flows")) == [1, 2, 3]
    assert read_flows(tmp_path / "nothing") == []
