"""A policy change reaches flows already in conntrack (issue 6 part 1, Cilium's semantics).

Cilium looks policy up on every packet but replies, so a deny added while a connection
runs stops it on its next packet. ciliate's programs get the same result without two
policy lookups per packet: the agent bumps a per-node policy revision after each batch
of policy map changes and a conntrack entry checked at an older revision is checked
again (bpf/lib/conntrack.h), and deleted when the policy now drops it.

One cluster: client (worker2) streams to other (worker, TCP echo) while no policy
selects other; then a CiliumNetworkPolicy denies client -> other. The stream must stop,
a new connection must fail, the drop must be observed with reason 181, a stream to
server (whose allow policy is unchanged) must keep going through the same revision bump,
and no pod is rebuilt or restarted (a policy change is map contents only).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from restart_lab import (
    BASE,
    CLUSTER,
    DENY_POLICY,
    Stream,
    cli,
    connects,
    connects_eventually,
    endpoints_by_pod,
    ok,
    skip_without_datapath,
    status,
    wait_for,
)

from ciliate.datapath.linux import runtime
from ciliate.datapath.linux.maps import KernelMaps

pytestmark = [pytest.mark.privileged, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    skip_without_datapath()
    state = tmp_path_factory.mktemp("established")
    files = tmp_path_factory.mktemp("established-files")
    (files / "base.yaml").write_text(BASE)
    (files / "deny.yaml").write_text(DENY_POLICY)
    ok(state, "cluster", "create", "-f", str(CLUSTER))
    ok(state, "apply", "-f", str(files / "base.yaml"))
    try:
        ok(state, "up")
        yield state, files
    finally:
        cli(state, "down")


def test_a_deny_stops_an_established_connection(cluster: tuple[Path, Path]) -> None:
    state, files = cluster
    eps = endpoints_by_pod(status(state))
    client, other_ip = eps["client"]["netns"], eps["other"]["ip"]
    server_ip = eps["server"]["ip"]
    assert connects_eventually(client, other_ip) and connects_eventually(client, server_ip)
    pins = runtime.KernelPaths(state).names.pin_dir("mycluster-worker") / "tc" / "globals"

    def rev() -> int:
        maps = KernelMaps(pins)
        try:
            return maps.policy_rev()
        finally:
            maps.close()

    rev_before = rev()
    denied = Stream.open(client, other_ip, files / "progress-other")
    kept = Stream.open(client, server_ip, files / "progress-server")
    try:
        assert denied.advances() and kept.advances()
        pids = {w["pod"]: w["pid"] for w in status(state)["workloads"]}
        ok(state, "apply", "-f", str(files / "deny.yaml"))
        # the agent writes the deny into the maps of other's node and bumps its revision
        assert wait_for(lambda: rev() > rev_before, 15)
        assert wait_for(lambda: denied.proc.poll() is not None, 10), "the stream kept going"
        assert denied.finish().startswith("fail"), "the denied stream should end in an error"
        assert kept.advances(by=20), "the allowed stream must survive the revision bump"
        assert not connects(client, other_ip)
        # a policy change is map contents: the pod keeps its netns and its processes
        assert {w["pod"]: w["pid"] for w in status(state)["workloads"]} == pids
        flows = ok(state, "observe", "--verdict", "DROPPED", "-o", "json", "--last", "200")
        reasons = {
            json.loads(line).get("flow", {}).get("drop_reason_desc")
            for line in flows.splitlines()
            if line.strip()
        }
        assert "POLICY_DENY" in reasons, reasons
    finally:
        denied.kill()
        kept.kill()
