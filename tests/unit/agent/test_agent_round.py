"""One reconcile round for a new pod, without a kernel: what happens in which order, and
the round's log line that ``bench/suite_pod_ready.py`` splits "apply → first packet" by.

A pod may be reported (status, workloads) only once it is wired and its map entries
(lxc, ipcache, policy) are written: the fakes record one shared journal of the calls.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import pytest
from test_agent_reconcile import (  # the same directory: pytest puts it on sys.path
    DEPLOY,
    FakeFabric,
    FakePrograms,
    FakeSupervisor,
    FakeTopo,
    events_since,
    run,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repo root holds bench/
from bench.suite_pod_ready import _agent_rounds

from ciliate.agent import Agent, pod_places
from ciliate.agent import reconciler as agent_mod  # the module whose NodePrograms Agent uses
from ciliate.cli.context import Context
from ciliate.desired import EndpointState, MapChange, NodeState

Journal = list[tuple[str, Any]]
JOURNAL: Journal = []  # every fake's calls, in order (cleared by the fixture)


class JournalTopo(FakeTopo):
    def ensure_pod(self, node: NodeState, ep: EndpointState, podnet: Any) -> None:
        super().ensure_pod(node, ep, podnet)
        JOURNAL.append(("wire", ep.pod))


class JournalPrograms(FakePrograms):
    def attach_all(self, devices: Any) -> None:
        JOURNAL.append(("attach", [d for d, _ in devices]))

    def apply(self, changes: list[MapChange]) -> None:
        super().apply(changes)
        JOURNAL.append(("maps", changes))


class JournalSupervisor(FakeSupervisor):
    def start_pod(self, specs: Any, namespace: str) -> None:
        super().start_pod(specs, namespace)
        JOURNAL.extend(("workloads", s.pod) for s in specs)


@pytest.fixture
def agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Agent:
    JOURNAL.clear()
    run(tmp_path, "cluster", "create", "lab", "--nodes", "3")
    (tmp_path / "web.yaml").write_text(DEPLOY.format(n=1))
    run(tmp_path, "apply", "-f", str(tmp_path / "web.yaml"))
    monkeypatch.setattr(agent_mod, "NodePrograms", JournalPrograms)
    monkeypatch.setattr(agent_mod.netns, "list_netns", lambda prefix="": [])
    monkeypatch.setattr(Agent, "_start_pump", lambda self, node: None)
    a = Agent(tmp_path, Context(state_dir=tmp_path).store())
    a.topo = JournalTopo()  # type: ignore[assignment]
    a.fabric = FakeFabric()  # type: ignore[assignment]
    a.sup = JournalSupervisor()  # type: ignore[assignment]
    a.kp.dir.mkdir(parents=True, exist_ok=True)
    real_write_status = a.write_status

    def write_status() -> None:
        real_write_status()
        JOURNAL.append(("status", {e["pod"] for e in a.status()["endpoints"] if e["pod"]}))

    a.write_status = write_status  # type: ignore[method-assign]
    a.start()
    JOURNAL.clear()
    return a


def _scale_to(a: Agent, state: Path, n: int) -> str:
    before = set(pod_places(a.state))
    (state / "web.yaml").write_text(DEPLOY.format(n=n))
    run(state, "apply", "-f", str(state / "web.yaml"))
    a.reconcile(events_since(a))
    (new,) = set(pod_places(a.state)) - before
    return new


def test_a_new_pod_is_wired_and_in_the_maps_before_it_is_reported(
    agent: Agent, tmp_path: Path
) -> None:
    pod = _scale_to(agent, tmp_path, 2)
    ip = next(p.endpoint.ip for k, p in pod_places(agent.state).items() if k == pod)
    journal = JOURNAL
    kinds = [k for k, _ in journal]
    wired = journal.index(("wire", pod))
    attached = kinds.index("attach", wired)
    mapped = next(
        i
        for i, (k, v) in enumerate(journal)
        if k == "maps" and any(c.map == "cilium_lxc" and str(ip) in str(c.key) for c in v)
    )
    started = journal.index(("workloads", pod))
    reported = next(i for i, (k, v) in enumerate(journal) if k == "status" and pod in v)
    assert wired < attached < mapped < started
    assert mapped < reported
    # nothing reported the pod before its entries were written
    assert not any(k == "status" and pod in v for k, v in journal[:mapped])


def test_the_round_log_line_splits_into_phases_and_marks(
    agent: Agent, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ciliate.agent")
    agent.woke_at = 0.0  # a round run directly (not from the watch): woke = start
    _scale_to(agent, tmp_path, 2)
    log = tmp_path / "agent.log"
    log.write_text("\n".join(r.getMessage() for r in caplog.records) + "\n")
    (round_,) = [r for r in _agent_rounds(log) if r["added"] == 1]
    assert {"engine_ms", "wire_ms", "maps_ms", "workloads_ms", "status_ms"} <= set(round_)
    assert round_["woke"] <= round_["start"] <= round_["fwd"] <= round_["end"]
    assert round_["wiring_ms"] >= 0
