"""Kernel files: where a cluster's kernel runtime keeps its files, and what they say.

Role: name the files of ``<state>/kernel/`` (``KernelPaths``) and read them: whether the
agent a pidfile names is alive (``agent_pid``), the agent processes of a state directory
when the pidfile is already gone (``agent_processes``), the status the agent wrote
(``read_status``), the end of its log (``tail``). ``optional_module`` looks up a
collaborator's module (the eBPF loader, ``bpf``, ``maps``) so its readers degrade
instead of failing when one is missing.

Inputs: a state directory, pids, ``/proc``. Outputs: paths, pids, parsed JSON; nothing
is written here. ``runtime`` re-exports these names (their historical import path).
Must not import cli, agent or runtime (runtime imports this module).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from ciliate.datapath.linux.topology import ClusterNames, cluster_tag


@dataclass(frozen=True, slots=True)
class KernelPaths:
    """Where a cluster's kernel runtime keeps its files."""

    state_dir: Path

    @property
    def dir(self) -> Path:
        return self.state_dir / "kernel"

    @property
    def pidfile(self) -> Path:
        return self.dir / "agent.pid"

    @property
    def log(self) -> Path:
        return self.dir / "agent.log"

    @property
    def ready(self) -> Path:
        return self.dir / "ready"

    @property
    def error(self) -> Path:
        return self.dir / "error"

    @property
    def status(self) -> Path:
        return self.dir / "status.json"

    @property
    def flows(self) -> Path:
        """Per-node flow logs (``datapath.flowlog``): written by the agent, read by
        ``ciliate observe``; kept after ``down`` so flows can be read afterwards."""
        return self.state_dir / "flows"

    @property
    def pods(self) -> Path:
        return self.state_dir / "pods"

    def pod_dir(self, pod: str) -> Path:
        """``pod`` is "namespace/name"."""
        return self.pods / pod.replace("/", "_")

    @property
    def names(self) -> ClusterNames:
        return ClusterNames(cluster_tag(self.state_dir))


def optional_module(name: str) -> ModuleType | None:
    """A collaborator's module when it is there (the eBPF loader, the flow log): this
    module degrades instead of failing while they are being built."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


# --- liveness ----------------------------------------------------------------------------


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is not alive
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def agent_pid(kp: KernelPaths) -> int | None:
    try:
        pid = int(kp.pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def agent_processes(state_dir: Path) -> list[int]:
    """Agent processes of this state directory, found by their command line (for when
    the pidfile is already gone)."""
    want = [b"ciliate.agent", str(state_dir).encode()]
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
                if all(w in cmd for w in want):
                    found.append(int(entry))
    return found


# --- contents ----------------------------------------------------------------------------


def read_status(kp: KernelPaths) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(kp.status.read_text())
    except (OSError, ValueError):
        data = {}
    return data


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
