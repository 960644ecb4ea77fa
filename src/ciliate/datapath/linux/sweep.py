"""Sweep: remove a cluster's kernel objects, processes and runtime files, whoever made them.

Role: the last step of ``down`` and of the agent's own ``stop``, and the process
bookkeeping both the agent and the CLI need: which processes run in the cluster's
namespaces (``namespace_pids``), stopping them (``kill_namespace_processes``,
``kill_pids``: SIGTERM, then SIGKILL after a grace period), removing the pinned maps
(``remove_pins``) and everything at once (``sweep``: processes, namespaces via
``topology.teardown``, pins, process records and runtime files).

Inputs: ``KernelPaths``/``ClusterNames``, ``/proc`` and ``/run/netns``. Outputs: signals,
removed namespaces, pins and files. Idempotent: what is already gone is skipped.
``runtime`` re-exports these names (their historical import path).
Must not import cli, agent or runtime (runtime imports this module).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from collections.abc import Callable, Sequence

from ciliate.datapath.linux import netns as nl
from ciliate.datapath.linux.kernelfiles import KernelPaths, optional_module, pid_alive
from ciliate.datapath.linux.topology import ClusterNames, teardown


def sweep(kp: KernelPaths, keep_pidfile: bool = False) -> None:
    """Remove every kernel object and file of the cluster, whoever made it. The agent
    keeps its pidfile until its very last step, so ``up``/``down`` can wait for it."""
    names = kp.names
    kill_namespace_processes(names)
    teardown(names)
    remove_pins(names)
    # the workloads' process records (adoption): their processes are gone now
    for rec in kp.pods.glob("*/*.proc.json"):
        with contextlib.suppress(FileNotFoundError):
            rec.unlink()
    for f in (kp.ready, kp.status) if keep_pidfile else (kp.ready, kp.pidfile, kp.status):
        with contextlib.suppress(FileNotFoundError):
            f.unlink()


def remove_pins(names: ClusterNames) -> None:
    bpf = optional_module("ciliate.datapath.linux.bpf")
    remover: Callable[[str], object] | None = getattr(bpf, "remove_cluster_pins", None)
    if remover is not None:
        with contextlib.suppress(Exception):
            remover(names.tag)
    if names.pin_root.exists():
        # Pins are files on bpffs: unlinking them drops the kernel's reference.
        shutil.rmtree(names.pin_root, ignore_errors=True)
    parent = names.pin_root.parent
    with contextlib.suppress(OSError):
        parent.rmdir()  # only when no other cluster is pinned there


def namespace_pids(names: ClusterNames, only: Sequence[str] | None = None) -> list[int]:
    """PIDs of processes whose network namespace is one of the cluster's (or of the
    namespaces named in ``only``)."""
    inodes = set()
    for ns in nl.list_netns(names.prefix) if only is None else only:
        with contextlib.suppress(OSError):
            inodes.add(f"net:[{os.stat(nl.netns_path(ns)).st_ino}]")
    if not inodes:
        return []
    pids = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{entry}/ns/net") in inodes:
                pids.append(int(entry))
    return pids


def kill_namespace_processes(
    names: ClusterNames, only: Sequence[str] | None = None, grace: float = 2.0
) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds, every process in the namespaces."""
    kill_pids(namespace_pids(names, only), grace)


def kill_pids(pids: list[int], grace: float = 2.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
            time.sleep(0.05)
        pids = [p for p in pids if pid_alive(p)]
        if not pids:
            return
