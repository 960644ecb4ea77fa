"""Agent restart without disruption (issue 6 part 4), for real in the kernel.

One scenario per module, observed once and asserted by the tests below:

1. ``up`` a cluster: server and other (TCP echo on 7007) on one worker, client and
   blocked on the other; a NetworkPolicy lets only client reach server; a ClusterIP
   service in front of server. A TCP stream client -> server starts.
2. ``kill -9`` the agent. While it is dead: the stream keeps exchanging data, new
   connections work, blocked -> server stays denied (fail closed).
3. While it is dead the store changes: a new pod (late), a new deny policy (client ->
   other) and the service deleted.
4. Plain ``ciliate up``: adopts -- same map ids and pins, same server process, the
   stream never breaks -- then converges: late is wired and reachable, client -> other
   is denied, the service's frontend is gone from the lb maps and connecting fails.
5. ``ciliate down`` removes everything.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
from restart_lab import (
    BASE,
    CLUSTER,
    DENY_POLICY,
    LATE_POD,
    SVC_IP,
    Leftovers,
    Stream,
    cli,
    connects,
    connects_eventually,
    endpoints_by_pod,
    leftovers,
    map_ids,
    ok,
    skip_without_datapath,
    status,
    wait_for,
)

from ciliate.datapath.linux import runtime

pytestmark = [pytest.mark.privileged, pytest.mark.slow]


@dataclass
class Observed:
    before: dict[str, Any] = field(default_factory=dict)
    during: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    up_output: str = ""
    stream_result: str = ""
    left: Leftovers | None = None


def _pids(st: dict[str, Any]) -> dict[str, int]:
    return {w["pod"].split("/", 1)[1]: w["pid"] for w in st["workloads"]}


def _frontends(state: Path, node: str) -> list[bytes]:
    src = runtime.PinnedMaps(runtime.KernelPaths(state).names)
    return [k for k, _ in src.dump(node, "cilium_lb4_services_v2")]


@pytest.fixture(scope="module")
def seen(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Observed]:
    skip_without_datapath()
    state = tmp_path_factory.mktemp("restart")
    files = tmp_path_factory.mktemp("restart-files")
    (files / "base.yaml").write_text(BASE)
    (files / "late.yaml").write_text(LATE_POD)
    (files / "deny.yaml").write_text(DENY_POLICY)
    ok(state, "cluster", "create", "-f", str(CLUSTER))
    ok(state, "apply", "-f", str(files / "base.yaml"))
    obs = Observed()
    stream: Stream | None = None
    svc_key = IPv4Address(SVC_IP).packed
    try:
        ok(state, "up")
        st = status(state)
        eps = endpoints_by_pod(st)
        client, blocked = eps["client"]["netns"], eps["blocked"]["netns"]
        server_ip, other_ip = eps["server"]["ip"], eps["other"]["ip"]
        tag = st["tag"]

        b = obs.before
        b["client->server"] = connects_eventually(client, server_ip)
        b["client->other"] = connects_eventually(client, other_ip)
        b["client->svc"] = connects(client, SVC_IP)
        b["blocked->server"] = connects(blocked, server_ip)
        b["map_ids"] = map_ids(tag)
        b["pids"] = _pids(st)
        b["frontend"] = any(k[:4] == svc_key for k in _frontends(state, "mycluster-worker2"))
        stream = Stream.open(client, server_ip, files / "progress")
        b["stream"] = stream.advances()

        # --- kill -9 ------------------------------------------------------------------
        os.kill(st["agents"][0]["pid"], 9)
        d = obs.during
        d["agent_gone"] = wait_for(lambda: runtime.agent_pid(runtime.KernelPaths(state)) is None)
        d["stream"] = stream.advances(by=20)
        d["client->server (new)"] = connects(client, server_ip)
        d["blocked->server"] = connects(blocked, server_ip)
        d["client->svc (new)"] = connects(client, SVC_IP)
        # the store changes while no agent runs
        ok(state, "apply", "-f", str(files / "late.yaml"))
        ok(state, "apply", "-f", str(files / "deny.yaml"))
        ok(state, "delete", "service", "svc", "-n", "rs")
        # an agent killed between spawning a process and recording it: no record
        (runtime.KernelPaths(state).pod_dir("rs/blocked") / "main.proc.json").unlink()
        d["blocked->server (store changed)"] = connects(blocked, server_ip)
        d["stream (store changed)"] = stream.advances()
        d["server_alive"] = os.path.exists(f"/proc/{b['pids']['server']}")

        # --- plain up: adopt, converge --------------------------------------------------
        obs.up_output = ok(state, "up")
        st = status(state)
        eps = endpoints_by_pod(st)
        a = obs.after
        a["stream"] = stream.advances(by=20)
        a["map_ids"] = map_ids(tag)
        a["pids"] = _pids(st)
        a["adopted_workloads"] = sorted(
            w["pod"].split("/", 1)[1] for w in st["workloads"] if w.get("adopted")
        )
        old_blocked = b["pids"]["blocked"]
        a["unrecorded_gone"] = wait_for(lambda: not os.path.exists(f"/proc/{old_blocked}"))
        a["blocked_procs"] = runtime.namespace_pids(
            runtime.KernelPaths(state).names, [eps["blocked"]["netns"]]
        )
        a["late_wired"] = "late" in eps and os.path.exists(f"/run/netns/{eps['late']['netns']}")
        a["client->late"] = "late" in eps and connects_eventually(client, eps["late"]["ip"])
        a["client->other"] = connects(client, other_ip)
        a["client->server (new)"] = connects(client, server_ip)
        a["blocked->server"] = connects(blocked, server_ip)
        a["frontend"] = any(k[:4] == svc_key for k in _frontends(state, "mycluster-worker2"))
        a["client->svc"] = connects(client, SVC_IP, timeout=1.0)
        obs.stream_result = stream.finish()
        # an adopted process is supervised: killed, it is restarted (restartPolicy Always)
        adopted_server = a["pids"]["server"]
        os.kill(adopted_server, 9)

        def restarted() -> bool:
            w = next(w for w in status(state)["workloads"] if w["pod"] == "rs/server")
            return bool(w["running"] and w["pid"] != adopted_server and w["restarts"] == 1)

        a["server_restarted"] = wait_for(restarted, timeout=15)
        a["client->server (restarted)"] = connects_eventually(client, server_ip)
        ok(state, "down")
        obs.left = leftovers(state)
        for phase in ("before", "during", "after"):
            seen_ = {k: v for k, v in getattr(obs, phase).items() if k != "map_ids"}
            print(f"\n{phase}: {seen_}")
        print(f"stream: {obs.stream_result}; maps: {len(obs.before['map_ids'])} pinned")
        yield obs
    finally:
        if stream is not None:
            stream.kill()
        cli(state, "down")


def test_before_the_kill_policy_and_service_work(seen: Observed) -> None:
    b = seen.before
    assert b["client->server"] and b["client->other"] and b["client->svc"], b
    assert b["blocked->server"] is False, b
    assert b["frontend"] and b["stream"], b


def test_established_and_new_connections_flow_while_the_agent_is_dead(seen: Observed) -> None:
    d = seen.during
    assert d["agent_gone"]
    assert d["stream"] and d["stream (store changed)"], "the established stream stalled"
    assert d["client->server (new)"], "a new connection failed on the pinned maps"
    assert d["client->svc (new)"], "the service stopped load-balancing"
    assert d["server_alive"], "the pod's server died with the agent"


def test_denied_traffic_stays_denied_while_the_agent_is_dead(seen: Observed) -> None:
    assert seen.before["blocked->server"] is False
    assert seen.during["blocked->server"] is False
    assert seen.during["blocked->server (store changed)"] is False
    assert seen.after["blocked->server"] is False


def test_plain_up_adopts_without_flushing(seen: Observed) -> None:
    assert "adopted the running datapath" in seen.up_output, seen.up_output
    before, after = seen.before["map_ids"], seen.after["map_ids"]
    assert before, "no pinned maps found"
    assert sorted(after) == sorted(before), "pins changed"
    assert after == before, "maps were recreated"
    assert seen.after["stream"], "the established stream stalled after the restart"
    assert seen.stream_result.startswith("ok"), seen.stream_result
    assert int(seen.stream_result.split()[1]) > 60


def test_pod_processes_are_adopted_not_restarted(seen: Observed) -> None:
    before, after = seen.before["pids"], seen.after["pids"]
    for pod in ("server", "other", "client"):
        assert after[pod] == before[pod], (pod, before, after)
    assert set(seen.after["adopted_workloads"]) == {"server", "other", "client"}
    assert "late" in after and after["late"] not in before.values()


def test_an_unrecorded_leftover_process_is_replaced_not_duplicated(seen: Observed) -> None:
    before, after = seen.before["pids"], seen.after["pids"]
    assert after["blocked"] != before["blocked"]
    assert seen.after["unrecorded_gone"], "the unowned leftover still runs"
    assert seen.after["blocked_procs"] == [after["blocked"]]


def test_new_pod_made_while_down_is_wired_and_reachable(seen: Observed) -> None:
    assert seen.after["late_wired"]
    assert seen.after["client->late"]


def test_new_deny_policy_made_while_down_is_enforced(seen: Observed) -> None:
    assert seen.before["client->other"] is True
    assert seen.after["client->other"] is False
    assert seen.after["client->server (new)"] is True  # the allow policy still holds


def test_service_deleted_while_down_is_gone_from_the_lb_maps(seen: Observed) -> None:
    assert seen.before["frontend"] is True
    assert seen.after["frontend"] is False
    assert seen.after["client->svc"] is False


def test_down_after_kill_and_adopt_removes_everything(seen: Observed) -> None:
    assert seen.left == Leftovers(), seen.left


def test_an_adopted_process_that_dies_is_restarted(seen: Observed) -> None:
    assert seen.after["server_restarted"]
    assert seen.after["client->server (restarted)"]
