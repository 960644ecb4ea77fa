"""Report: what the agent tells the world -- ``status.json`` and its rounds' timings.

Role: ``build_status`` renders an agent's state as the status document ``ciliate
status`` and the tests read (nodes, endpoints, agent pids, workloads, L7 proxies, flow
counts, wiring timings, the last errors); ``write_status`` replaces ``status.json``
atomically (readers never see half a file); ``Laps`` times the phases of one reconcile
round for its log line (``bench/suite_pod_ready.py`` parses that line).

Inputs: an ``Agent`` (read only). Outputs: a JSON-ready dict, one file, a phase string.
Must not import cli; the agent class is imported for type checking only (it imports
this module).
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Callable
from ipaddress import IPv4Network
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ciliate.agent.reconciler import Agent


def build_status(agent: Agent) -> dict[str, Any]:
    pid = os.getpid()
    st = agent.state
    names = agent.names
    wire = agent.wire_ms
    return {
        "datapath": "kernel",
        "cluster": st.cluster,
        "tag": names.tag,
        "revision": agent.rev,
        "programs": all(p.loaded for p in agent.programs.values()) and bool(agent.programs),
        "nodes": [
            {
                "name": n.name,
                "internalIP": str(n.internal_ip),
                "ciliumInternalIP": str(n.cilium_internal_ip),
                "podCIDR": str(n.pod_cidr) if n.pod_cidr != IPv4Network("0.0.0.0/32") else "",
                "netns": names.node(n.name),
                "endpoints": len(n.endpoints),
            }
            for n in st.nodes.values()
        ],
        "endpoints": [
            {
                "id": ep.id,
                "pod": ep.pod,
                "node": n.name,
                "ip": str(ep.ip),
                "identity": ep.identity,
                "lxc": ep.lxc_name,
                "netns": names.pod(ep.pod) if ep.pod else names.health(n.name),
                "state": ep.state,
            }
            for n in st.nodes.values()
            for ep in sorted(n.endpoints.values(), key=lambda e: e.id)
        ],
        "agents": [{"node": n, "pid": pid} for n in st.nodes],
        "workloads": agent.sup.status(),
        "proxies": agent.proxies.status(),  # L7 proxy
        "flows": {n: p.count for n, p in agent.pumps.items()},
        "timings": {
            "up_ms": round(agent.up_ms, 1),
            "pods_wired": len(wire),
            "pod_wire_ms_last": round(wire[-1], 2) if wire else None,
            "pod_wire_ms_avg": round(sum(wire) / len(wire), 2) if wire else None,
            "pod_wire_ms_max": round(max(wire), 2) if wire else None,
            **stats("live_pod_wire_ms", agent.live_wire_ms),
        },
        "errors": agent.errors[-20:],
        "adopted": len(agent.adopted),
    }


def write_status(path: Path, status: dict[str, Any]) -> None:
    """Through a temporary file and a rename: ``up`` and ``status`` read it any time."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(status, indent=2, default=str))
    tmp.replace(path)


class Laps:
    """Milliseconds spent in the named phases of one reconcile round, for its log line."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.last = clock()
        self.ms: dict[str, float] = {}

    def __call__(self, phase: str) -> None:
        now = self.clock()
        self.ms[phase] = self.ms.get(phase, 0.0) + (now - self.last) * 1000
        self.last = now

    def render(self) -> str:
        return ", ".join(f"{k} {v:.1f}" for k, v in self.ms.items())


def stats(prefix: str, xs: list[float]) -> dict[str, float | int | None]:
    """count/median/max of a list of milliseconds, as status fields."""
    if not xs:
        return {f"{prefix}_count": 0, f"{prefix}_median": None, f"{prefix}_max": None}
    return {
        f"{prefix}_count": len(xs),
        f"{prefix}_median": round(statistics.median(xs), 2),
        f"{prefix}_max": round(max(xs), 2),
    }
