"""A crashed or partial ``up`` is resumable (issue 6 part 4).

The agent is made to die uncleanly (``os._exit``, what kill -9 leaves) at named steps of
its start through the ``CILIATE_TEST_CRASH_AT`` hook; the next plain ``ciliate up``
must complete from there, and the result must equal a clean ``up`` of the same state
directory: the same namespaces, links, addresses, routes, tc programs, map entries and
pod processes. ``ciliate down`` after any of these leaves nothing behind.

One reference snapshot per module (a clean up, then down); every case reuses the same
state directory, so names and IDs are the same as the reference's.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from restart_lab import (
    BASE,
    CLUSTER,
    Leftovers,
    cli,
    connects,
    connects_eventually,
    kernel_snapshot,
    leftovers,
    ok,
    skip_without_datapath,
    status,
    wait_for,
    workload_marks,
)

from ciliate.cli.context import Context
from ciliate.datapath.linux import netns as nl
from ciliate.datapath.linux import runtime
from ciliate.datapath.linux.crashpoints import ENV, STEPS

pytestmark = [pytest.mark.privileged, pytest.mark.slow]


@dataclass
class Reference:
    state: Path
    snapshot: dict[str, Any]


@pytest.fixture(scope="module")
def ref(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reference]:
    skip_without_datapath()
    state = tmp_path_factory.mktemp("resume")
    manifest = state / "base.yaml"
    manifest.write_text(BASE)
    ok(state, "cluster", "create", "-f", str(CLUSTER))
    ok(state, "apply", "-f", str(manifest))
    try:
        ok(state, "up")
        snap = kernel_snapshot(state)
        ok(state, "down")
        assert leftovers(state) == Leftovers()
        yield Reference(state, snap)
    finally:
        cli(state, "down")


def _diff(got: dict[str, Any], want: dict[str, Any]) -> list[str]:
    """Readable differences between two kernel snapshots."""
    out = []
    if sorted(got["netns"]) != sorted(want["netns"]):
        out.append(f"namespaces: {sorted(got['netns'])} != {sorted(want['netns'])}")
    for ns in sorted(set(got["netns"]) & set(want["netns"])):
        for what in ("links", "addrs", "routes", "tc"):
            g, w = got["netns"][ns][what], want["netns"][ns][what]
            if g != w:
                out.append(f"{ns} {what}: +{sorted(set(g) - set(w))} -{sorted(set(w) - set(g))}")
    for m in sorted(set(got["maps"]) | set(want["maps"])):
        g, w = got["maps"].get(m), want["maps"].get(m)
        if g != w:
            extra, missing = (
                sorted(set(g or []) - set(w or [])),
                sorted(set(w or []) - set(g or [])),
            )
            out.append(
                f"map {m}: +{extra[:5]} -{missing[:5]} ({len(g or [])} entries, want {len(w or [])})"
            )
    if got["workloads"] != want["workloads"]:
        out.append(f"workloads: {got['workloads']} != {want['workloads']}")
    return out


def _crash_at(state: Path, step: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as m:
        m.setenv(ENV, step)
        rc, out, err = cli(state, "up")
    assert rc != 0, f"up did not fail at {step}: {out}"
    assert "exited before it was ready" in err, err
    assert not runtime.is_up(_ctx(state))
    assert nl.list_netns(runtime.KernelPaths(state).names.prefix), "nothing was built"


def _ctx(state: Path) -> Context:
    return Context(state_dir=state, stdout=io.StringIO(), stderr=io.StringIO())


def test_every_crash_step_is_known() -> None:
    assert set(STEPS) == {
        "fabric",
        "node",
        "nodes",
        "pod-veth",
        "pod",
        "pods",
        "maps",
        "workloads",
    }


# "pod" (a pod fully wired, the next not) is what the real SIGKILL below hits
@pytest.mark.parametrize("step", ["fabric", "node", "pod-veth", "maps", "workloads"])
def test_up_resumes_after_a_crash_and_equals_a_clean_up(
    ref: Reference, step: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = ref.state
    try:
        _crash_at(state, step, monkeypatch)
        out = ok(state, "up")
        assert "adopted the running datapath" in out
        st = status(state)
        assert st["up"] and not st["errors"], st["errors"]
        wait_for(lambda: workload_marks(state) == ref.snapshot["workloads"])
        got = kernel_snapshot(state)
        assert not _diff(got, ref.snapshot), "\n".join(_diff(got, ref.snapshot))
    finally:
        ok(state, "down")
    assert leftovers(state) == Leftovers()


def test_down_after_a_crash_removes_everything(
    ref: Reference, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = ref.state
    try:
        _crash_at(state, "pod-veth", monkeypatch)
    finally:
        ok(state, "down")
    assert leftovers(state) == Leftovers()


def test_failed_up_while_adopting_leaves_the_datapath_forwarding(
    ref: Reference, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A clean failure of a fresh up rolls back (test_agent); a clean failure of an up
    that adopts a running datapath leaves that datapath forwarding (fail static)."""
    state = ref.state
    try:
        ok(state, "up")
        st = status(state)
        eps = {e["pod"]: e for e in st["endpoints"] if e["pod"]}
        client, server_ip = eps["rs/client"]["netns"], eps["rs/server"]["ip"]
        assert connects_eventually(client, server_ip)
        os.kill(st["agents"][0]["pid"], 9)
        assert wait_for(lambda: runtime.agent_pid(runtime.KernelPaths(state)) is None)
        with monkeypatch.context() as m:
            m.setenv("CILIATE_BPF_DIR", str(tmp_path / "no-such-bpf-dir"))
            rc, _, err = cli(state, "up")
        assert rc != 0 and "left in place" in err, err
        assert connects(client, server_ip), "the adopted datapath stopped forwarding"
        assert "adopted the running datapath" in ok(state, "up")
        assert connects(client, server_ip)
    finally:
        ok(state, "down")
    assert leftovers(state) == Leftovers()


def test_a_real_sigkill_while_wiring_pods_is_resumed(ref: Reference) -> None:
    """The same without the hook: the agent (in the foreground, no daemon) is SIGKILLed
    as soon as the first pod namespace exists, wherever it is then."""
    state = ref.state
    names = runtime.KernelPaths(state).names
    pod_prefix = f"{names.tag}-p-"
    agent = subprocess.Popen(
        [*runtime.agent_argv(state, daemon=False)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_for(lambda: bool(nl.list_netns(pod_prefix)), timeout=60), "no pod built"
        agent.kill()
        agent.wait(timeout=10)
        out = ok(state, "up")
        assert "adopted the running datapath" in out
        wait_for(lambda: workload_marks(state) == ref.snapshot["workloads"])
        got = kernel_snapshot(state)
        assert not _diff(got, ref.snapshot), "\n".join(_diff(got, ref.snapshot))
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
        ok(state, "down")
    assert leftovers(state) == Leftovers()


def test_up_killed_while_its_agent_starts_is_completed_by_the_next_up(ref: Reference) -> None:
    """kill -9 of the `ciliate up` command (not the agent): the agent goes on; the next
    `up` waits for it instead of failing or starting a second one."""
    state = ref.state
    kp = runtime.KernelPaths(state)
    ciliate = Path(sys.executable).with_name("ciliate")
    cmd = subprocess.Popen(
        [str(ciliate), "--state", str(state), "up"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_for(lambda: runtime.agent_pid(kp) is not None, timeout=30), "no agent"
        first = runtime.agent_pid(kp)
        cmd.kill()
        cmd.wait(timeout=10)
        ok(state, "up")
        assert status(state)["agents"][0]["pid"] == first  # the same agent, not a second
        wait_for(lambda: workload_marks(state) == ref.snapshot["workloads"])
        got = kernel_snapshot(state)
        assert not _diff(got, ref.snapshot), "\n".join(_diff(got, ref.snapshot))
    finally:
        if cmd.poll() is None:
            cmd.kill()
            cmd.wait()
        ok(state, "down")
    assert leftovers(state) == Leftovers()
