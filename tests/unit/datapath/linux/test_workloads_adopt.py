"""Supervisor adoption: a restarted agent takes over the pod processes an earlier agent
left running (records of pid + start time + spec digest), replaces those whose spec
changed, refuses reused pids, and supervises adopted processes by polling /proc.

Real (unprivileged) ``sleep`` processes stand in for workloads; spawning a replacement
(nsenter into a pod namespace) is faked.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ciliate.datapath.linux import workloads as wl
from ciliate.datapath.linux.workloads import (
    UNKNOWN_EXIT,
    WORKLOAD_MARKER,
    ProcessSpec,
    Supervisor,
    process_start_time,
)


def _spec(tmp: Path, **over: object) -> ProcessSpec:
    base: dict[str, object] = dict(
        pod="ns/p",
        container="main",
        argv=("sleep", "30"),
        env={"A": "1"},
        netns="x-p-1",
        resolv_conf=tmp / "resolv.conf",
        log=tmp / "main.log",
        restart_policy="Always",
        uid="u1",
    )
    base.update(over)
    return ProcessSpec(**base)  # type: ignore[arg-type]


@pytest.fixture
def proc() -> Iterator[subprocess.Popen[bytes]]:
    p = subprocess.Popen(
        ["sleep", "30"], env={"PATH": os.environ["PATH"], WORKLOAD_MARKER: "ns/p/main"},
        start_new_session=True,
    )  # fmt: skip
    yield p
    if p.poll() is None:
        p.kill()
    p.wait()


@pytest.fixture
def spawned(monkeypatch: pytest.MonkeyPatch) -> list[ProcessSpec]:
    calls: list[ProcessSpec] = []

    def fake_spawn(self: Supervisor, run: wl._Running) -> None:
        calls.append(run.spec)
        run.adopted_pid = 0
        run.exit_code = None

    monkeypatch.setattr(Supervisor, "_spawn", fake_spawn)
    return calls


def _record(spec: ProcessSpec, pid: int, start: int | None, digest: str | None = None) -> None:
    spec.record.parent.mkdir(parents=True, exist_ok=True)
    spec.record.write_text(
        json.dumps({"pid": pid, "start": start, "digest": digest or spec.digest()})
    )


def _gone(p: subprocess.Popen[bytes]) -> bool:
    try:
        p.wait(timeout=5)
    except subprocess.TimeoutExpired:
        return False
    return True


def test_digest_is_stable_and_covers_what_makes_a_different_process(tmp_path: Path) -> None:
    s = _spec(tmp_path)
    assert s.digest() == _spec(tmp_path).digest()
    for change in ({"uid": "u2"}, {"env": {"A": "2"}}, {"argv": ("sleep", "31")},
                   {"netns": "x-p-2"}, {"restart_policy": "Never"}):  # fmt: skip
        assert _spec(tmp_path, **change).digest() != s.digest(), change
    assert s.record == tmp_path / "main.proc.json"


def test_process_start_time_names_a_live_process_only() -> None:
    assert isinstance(process_start_time(os.getpid()), int)
    assert process_start_time(2**22 + 12345) is None


def test_a_recorded_running_process_is_adopted_not_respawned(
    tmp_path: Path, proc: subprocess.Popen[bytes], spawned: list[ProcessSpec]
) -> None:
    spec = _spec(tmp_path)
    _record(spec, proc.pid, process_start_time(proc.pid))
    sup = Supervisor()
    sup.start_pod((spec,), "ns")
    assert spawned == []
    [st] = sup.status()
    assert st["pid"] == proc.pid and st["running"] and st["adopted"]
    assert sup.pids() == [proc.pid]
    sup.start_pod((spec,), "ns")  # again (a reconcile): still nothing spawned
    assert spawned == [] and proc.poll() is None


def test_a_process_running_an_older_spec_is_replaced(
    tmp_path: Path, proc: subprocess.Popen[bytes], spawned: list[ProcessSpec]
) -> None:
    spec = _spec(tmp_path)
    _record(spec, proc.pid, process_start_time(proc.pid), digest="0" * 16)
    Supervisor().start_pod((spec,), "ns")
    assert _gone(proc), "the outdated process still runs (it would hold the ports)"
    assert spawned == [spec]


def test_a_reused_pid_is_never_adopted_nor_signalled(
    tmp_path: Path, proc: subprocess.Popen[bytes], spawned: list[ProcessSpec]
) -> None:
    spec = _spec(tmp_path)
    start = process_start_time(proc.pid)
    assert start is not None
    _record(spec, proc.pid, start - 1)  # the recorded process was another one
    Supervisor().start_pod((spec,), "ns")
    assert spawned == [spec]
    assert proc.poll() is None


def test_a_process_without_the_containers_marker_is_not_adopted(
    tmp_path: Path, spawned: list[ProcessSpec]
) -> None:
    spec = _spec(tmp_path)
    _record(spec, os.getpid(), process_start_time(os.getpid()))  # this test runner
    Supervisor().start_pod((spec,), "ns")
    assert spawned == [spec]


def test_an_adopted_process_that_exits_is_restarted_per_policy(
    tmp_path: Path, proc: subprocess.Popen[bytes], spawned: list[ProcessSpec]
) -> None:
    now = [100.0]
    spec = _spec(tmp_path)
    _record(spec, proc.pid, process_start_time(proc.pid))
    sup = Supervisor(clock=lambda: now[0])
    sup.start_pod((spec,), "ns")
    proc.kill()
    proc.wait()  # reaped (init reaps a real orphan)
    sup.poll()
    [st] = sup.status()
    assert st["exitCode"] == UNKNOWN_EXIT and spawned == []  # backoff first
    now[0] += 1.0
    sup.poll()
    assert spawned == [spec]


def test_never_policy_adopted_exit_is_not_restarted(
    tmp_path: Path, proc: subprocess.Popen[bytes], spawned: list[ProcessSpec]
) -> None:
    spec = _spec(tmp_path, restart_policy="Never")
    _record(spec, proc.pid, process_start_time(proc.pid))
    sup = Supervisor(clock=lambda: 1000.0)
    sup.start_pod((spec,), "ns")
    proc.kill()
    proc.wait()
    sup.poll()
    sup.poll()
    assert spawned == []


def test_release_leaves_processes_running_and_stop_kills_adopted_ones(
    tmp_path: Path, proc: subprocess.Popen[bytes], spawned: list[ProcessSpec]
) -> None:
    spec = _spec(tmp_path)
    _record(spec, proc.pid, process_start_time(proc.pid))
    sup = Supervisor()
    sup.start_pod((spec,), "ns")
    sup.release_all()
    assert proc.poll() is None and spec.record.exists() and sup.status() == []

    sup2 = Supervisor()
    sup2.start_pod((spec,), "ns")  # the next agent adopts it again
    assert sup2.pids() == [proc.pid]
    sup2.stop_pod("ns/p")
    assert _gone(proc)
    assert not spec.record.exists()


def test_adopt_only_takes_over_what_runs_and_starts_nothing(
    tmp_path: Path, proc: subprocess.Popen[bytes], spawned: list[ProcessSpec]
) -> None:
    running = _spec(tmp_path)
    missing = _spec(tmp_path, container="side")
    _record(running, proc.pid, process_start_time(proc.pid))
    sup = Supervisor()
    sup.start_pod((running, missing), "ns", adopt_only=True)
    assert spawned == [] and sup.pids() == [proc.pid]
    assert [w["container"] for w in sup.status()] == ["main"]
    sup.start_pod((running, missing), "ns")  # the second pass starts the rest
    assert spawned == [missing] and proc.poll() is None
