"""Runtime: the kernel cluster as the CLI sees it -- up, down, status, exec, live maps.

Role: start the agent daemon and wait for it to be ready (``up``; after a crash the new
agent adopts what is left), replace it without touching the datapath (``restart``), stop
it and remove everything (``down``), report (``status``), run commands in a pod or node namespace
(``exec_in_pod``/``exec_in_node``), hand ``bpf ...`` commands a reader of the live maps
(``map_source``) and run the kernel part of the demo (``demo_kernel``).

Files of a running cluster live in ``<state>/kernel/``: ``agent.pid``, ``agent.log``,
``ready`` (written by the agent once the topology, programs, maps and workloads are in
place), ``error`` (why a start failed; the agent removed what it made) and
``status.json`` (nodes, endpoints, agent pids, timings; rewritten on every reconcile).
Pod files (resolv.conf, container logs) live in ``<state>/pods/<ns>_<pod>/``.

Its parts live beside it and are re-exported here (the import path the CLI, the agent
and the tests use): ``kernelfiles`` (those files and the agent's liveness), ``sweep``
(removing processes, namespaces, pins and files) and ``livemaps`` (the pinned maps).

The agent is spawned by module name (``python -m ciliate.agent``): the agent layer sits
above this one, so it is never imported here. Must not import cli or agent.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, Protocol, TextIO

from ciliate.datapath.linux import netns as nl
from ciliate.datapath.linux.kernelfiles import (
    KernelPaths,
    agent_pid,
    agent_processes,
    optional_module,
    pid_alive,
    read_status,
    tail,
)
from ciliate.datapath.linux.livemaps import MapSource, PinnedMaps, canonical_map_name
from ciliate.datapath.linux.sweep import (
    kill_namespace_processes,
    kill_pids,
    namespace_pids,
    remove_pins,
    sweep,
)
from ciliate.datapath.linux.topology import ClusterNames
from ciliate.datapath.linux.workloads import launch_argv
from ciliate.errors import ConflictError, DatapathError, NotFoundError, UnsupportedError

__all__ = [  # the parts re-exported from kernelfiles, livemaps and sweep, and this module's own
    "READY_TIMEOUT",
    "UNAVAILABLE",
    "Context",
    "KernelPaths",
    "MapSource",
    "PinnedMaps",
    "agent_argv",
    "agent_pid",
    "agent_processes",
    "canonical_map_name",
    "demo_kernel",
    "down",
    "exec_in_node",
    "exec_in_pod",
    "is_up",
    "kill_namespace_processes",
    "kill_pids",
    "map_source",
    "namespace_pids",
    "node_exec_argv",
    "optional_module",
    "paths",
    "read_status",
    "remove_pins",
    "require_kernel",
    "restart",
    "status",
    "sweep",
    "tail",
    "unavailable_reason",
    "up",
]


class Context(Protocol):
    """What this module needs of ``cli.context.Context`` (the CLI layer is above this
    one, so it is described here rather than imported)."""

    state_dir: Path
    stdout: TextIO
    stderr: TextIO


UNAVAILABLE = (
    "kernel datapath unavailable: {reason}; model commands (trace, reach, exec views) still work"
)
READY_TIMEOUT = 120.0


def paths(ctx: Context) -> KernelPaths:
    return KernelPaths(ctx.state_dir)


# --- support -----------------------------------------------------------------------------


def unavailable_reason() -> str | None:
    """Why the kernel datapath cannot run here, or None. Probes what it needs in a
    throwaway namespace: creating namespaces, veth and an external VXLAN device."""
    if not sys.platform.startswith("linux"):
        return f"needs Linux (this is {sys.platform})"
    if os.geteuid() != 0:
        return "needs root (network namespaces and eBPF)"
    for tool in ("nsenter", "unshare"):
        if shutil.which(tool) is None:
            return f"{tool} (util-linux) is not installed"
    probe = f"ciliate-probe-{os.getpid()}"
    try:
        nl.ensure_netns(probe)
        ipr = nl.open_rtnl(probe)
        try:
            nl.ensure_veth(ipr, nl.LinkSpec("probe0"), nl.LinkSpec("probe1"))
            nl.ensure_vxlan(ipr, nl.LinkSpec("probe_vxlan"))
        finally:
            ipr.close()
    except Exception as e:  # any failure means "not here", reported in one line
        return f"cannot create namespaces/veth/vxlan ({e})"
    finally:
        nl.delete_netns(probe)
    bpf_reason = _bpf_unavailable_reason()
    if bpf_reason:
        return bpf_reason
    return None


def _bpf_unavailable_reason() -> str | None:
    """Ask the eBPF loader, when it offers a probe (it owns clang/bpffs/BTF checks)."""
    probe = getattr(optional_module("ciliate.datapath.linux.loader"), "unavailable_reason", None)
    if probe is None:
        return None
    reason = probe()
    return str(reason) if reason else None


def require_kernel() -> None:
    reason = unavailable_reason()
    if reason:
        raise UnsupportedError(UNAVAILABLE.format(reason=reason))


# --- liveness ----------------------------------------------------------------------------


def is_up(ctx: Context) -> bool:
    """True when this state directory's cluster runs in the kernel (agent alive, ready)."""
    kp = paths(ctx)
    return kp.ready.exists() and agent_pid(kp) is not None


# --- up / down ---------------------------------------------------------------------------


def agent_argv(state_dir: Path, daemon: bool) -> list[str]:
    argv = [sys.executable, "-m", "ciliate.agent", "--state", str(state_dir)]
    return [*argv, "--daemon"] if daemon else argv


def up(ctx: Context, timeout: float = READY_TIMEOUT) -> dict[str, Any]:
    """Start the agent daemon and wait until it is ready; its status is returned.

    The agent builds everything, adopting whatever an earlier agent left (after a
    crash or a kill -9 the datapath is taken over without a flush, and a start that
    died half-way is completed). If it *fails* (an error, not a crash) it removes what
    it made, writes the reason to ``kernel/error`` and exits, and this raises
    ``DatapathError`` with that reason: a clean failure rolls back (a fresh start) or
    leaves the adopted datapath forwarding (see the agent), a crash resumes. An agent
    that is already starting (the ``up`` that spawned it was interrupted) is waited
    for, not duplicated."""
    kp = paths(ctx)
    pid = agent_pid(kp)
    if pid is not None and not kp.ready.exists():
        # An agent is starting (an earlier `up` was interrupted, not its agent) or
        # stopping: wait for it to be ready, or gone -- then start one that adopts.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and pid_alive(pid) and not kp.ready.exists():
            time.sleep(0.05)
        if pid_alive(pid) and not kp.ready.exists():
            raise ConflictError(f"an agent (pid {pid}) is still starting or stopping here")
        pid = agent_pid(kp)
    if pid is not None and kp.ready.exists():
        return read_status(kp)
    require_kernel()
    kp.dir.mkdir(parents=True, exist_ok=True)
    # Leftovers of a crashed agent (its pid is not alive): the new one writes its own.
    for f in (kp.ready, kp.error, kp.pidfile):
        with contextlib.suppress(FileNotFoundError):
            f.unlink()
    with open(kp.log, "ab") as log:
        # The agent double-forks: this child exits once the daemon is detached.
        first = subprocess.Popen(
            agent_argv(ctx.state_dir, daemon=True),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd="/",
        )
        first.wait()
    deadline = time.monotonic() + timeout
    daemon: int | None = None  # remembered: the agent removes its pidfile as it exits
    while time.monotonic() < deadline:
        if daemon is None:
            daemon = agent_pid(kp)
        if kp.error.exists():
            # it may still be removing what it made, or exiting
            for pid in [daemon] if daemon is not None else agent_processes(kp.state_dir):
                _wait_exit(pid)
            raise DatapathError(kp.error.read_text().strip() or "agent failed")
        if kp.ready.exists():
            return read_status(kp)
        if first.returncode not in (0, None) or (kp.pidfile.exists() and agent_pid(kp) is None):
            time.sleep(0.2)  # the error file may land right after the exit
            if kp.error.exists():
                raise DatapathError(kp.error.read_text().strip())
            raise DatapathError(f"agent exited before it was ready; see {kp.log}:\n{tail(kp.log)}")
        time.sleep(0.05)
    down(ctx)
    raise DatapathError(f"agent not ready after {timeout:.0f}s; rolled back (see {kp.log})")


def _wait_exit(pid: int, timeout: float = 20.0) -> None:
    """Until the agent process is gone (not just its pidfile)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pid_alive(pid):
        time.sleep(0.05)


def down(ctx: Context, timeout: float = 20.0) -> list[str]:
    """Stop the agent (it tears down on SIGTERM), then remove whatever is left: processes
    in the cluster's namespaces, the namespaces, pins and runtime files. Idempotent;
    returns the namespaces that were removed by the final sweep or the agent."""
    kp = paths(ctx)
    names = kp.names
    before = nl.list_netns(names.prefix)
    pid = agent_pid(kp)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and pid_alive(pid):
            time.sleep(0.05)
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    sweep(kp)
    return before


def restart(ctx: Context, timeout: float = READY_TIMEOUT) -> dict[str, Any]:
    """Replace the agent without touching the datapath: the running agent is told to
    exit leaving namespaces, links, programs and pinned maps in place (SIGUSR1); the
    new one adopts them (maps synced in place, programs replaced atomically), so pod
    traffic keeps flowing. Workload processes keep running and are adopted too."""
    kp = paths(ctx)
    pid = agent_pid(kp)
    if pid is not None:
        os.kill(pid, signal.SIGUSR1)
        _wait_exit(pid)
    return up(ctx, timeout)


# --- status ------------------------------------------------------------------------------


def status(ctx: Context) -> dict[str, Any]:
    """``{"datapath": "kernel"|"model", "up": bool, "cluster", "tag", "nodes",
    "endpoints", "agents": [{"node", "pid"}], "workloads", "timings"}``."""
    kp = paths(ctx)
    if is_up(ctx):
        data = read_status(kp)
        data["datapath"] = "kernel"
        data["up"] = True
        return data
    data = {
        "datapath": "model",
        "up": False,
        "tag": kp.names.tag,
        "nodes": [],
        "endpoints": [],
        "agents": [],
    }
    reason = None if os.geteuid() == 0 else "needs root"
    if reason:
        data["kernel"] = reason
    leftover = nl.list_netns(kp.names.prefix)
    if leftover:
        data["leftover_namespaces"] = leftover  # a crashed agent: `ciliate down` clears
    return data


# --- exec --------------------------------------------------------------------------------


def _run(ctx: Context, argv: Sequence[str]) -> int:
    """Run with the context's streams: inherited when they are real files (interactive
    use), captured and copied when a test injected string buffers."""
    stdout, stderr = _fileno(ctx.stdout), _fileno(ctx.stderr)
    if stdout is not None and stderr is not None:
        return subprocess.run(list(argv), stdout=stdout, stderr=stderr).returncode
    done = subprocess.run(list(argv), capture_output=True, text=True)
    ctx.stdout.write(done.stdout)
    ctx.stderr.write(done.stderr)
    return done.returncode


def _fileno(stream: TextIO | IO[str]) -> int | None:
    try:
        stream.flush()
        return stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def exec_in_pod(ctx: Context, namespace: str, pod: str, argv: Sequence[str]) -> int:
    """Run ``argv`` in the pod's network namespace with its resolv.conf; the exit code."""
    kp = paths(ctx)
    key = f"{namespace}/{pod}"
    ns = kp.names.pod(key)
    if not nl.netns_exists(ns):
        raise NotFoundError(f"pod {key} is not running in the kernel datapath")
    resolv = kp.pod_dir(key) / "resolv.conf"
    return _run(ctx, launch_argv(ns, resolv if resolv.exists() else None, tuple(argv)))


def node_exec_argv(names: ClusterNames, node: str, argv: Sequence[str]) -> list[str]:
    """nsenter the node's netns, in a private mount namespace whose /sys/fs/bpf is the
    node's pin directory: ``bpftool map lookup pinned /sys/fs/bpf/tc/globals/cilium_lxc``
    then reads this node's map, verbatim as in the blog."""
    ns = names.node(node)
    pin = names.pin_dir(node)
    if not pin.exists():
        return launch_argv(ns, None, tuple(argv))
    script = 'mount --bind "$0" /sys/fs/bpf && exec "$@"'
    return ["nsenter", f"--net={nl.netns_path(ns)}", "--", "unshare", "--mount",
            "--propagation", "private", "--", "sh", "-c", script, str(pin), *argv]  # fmt: skip


def exec_in_node(ctx: Context, node: str, argv: Sequence[str]) -> int:
    names = paths(ctx).names
    if not nl.netns_exists(names.node(node)):
        raise NotFoundError(f"node {node} is not running in the kernel datapath")
    return _run(ctx, node_exec_argv(names, node, argv))


# --- live maps ---------------------------------------------------------------------------


def map_source(ctx: Context) -> MapSource | None:
    """A reader of the live kernel maps, or None when the cluster is not up."""
    if not is_up(ctx):
        return None
    return PinnedMaps(paths(ctx).names)


# --- demo --------------------------------------------------------------------------------


def demo_kernel(ctx: Context, out: TextIO) -> bool:
    """The kernel half of ``ciliate demo``: expects ``ctx``'s store to hold the
    networking101 cluster and workloads; brings it up for real, pings across nodes,
    shows a few observed flows, tears down. False (reason printed) when unavailable."""
    reason = unavailable_reason()
    if reason:
        out.write(UNAVAILABLE.format(reason=reason) + "\n")
        return False
    try:
        st = up(ctx)
    except Exception as e:
        out.write(f"kernel datapath: up failed: {e}\n")
        down(ctx)
        return False
    try:
        out.write(
            f"kernel datapath up: {len(st.get('nodes', []))} nodes, "
            f"{len(st.get('endpoints', []))} endpoints, pod wired in "
            f"{st.get('timings', {}).get('pod_wire_ms_max', '?')} ms (max)\n"
        )
        eps = [e for e in st.get("endpoints", []) if e.get("pod")]
        pairs: list[tuple[dict[str, Any], dict[str, Any]]] = []
        for a in eps:  # cross-node pairs, each destination once
            for b in eps:
                if a["node"] != b["node"] and all(b is not d for _, d in pairs):
                    pairs.append((a, b))
                    break
            if len(pairs) == 2:
                break
        for a, b in pairs:
            ns, name = a["pod"].split("/", 1)
            out.write(
                f"$ ciliate exec -n {ns} {name} -- ping -c1 -W2 {b['ip']}"
                f"   # {a['node']} -> {b['node']} ({b['pod']})\n"
            )
            argv = launch_argv(
                paths(ctx).names.pod(a["pod"]), None, ("ping", "-c1", "-W2", b["ip"])
            )
            done = subprocess.run(argv, capture_output=True, text=True)
            out.write(done.stdout)
        time.sleep(0.5)  # the agent's flow pumps poll every 200 ms
        flows = _recent_flows(ctx, 6)
        if flows:
            out.write("$ ciliate observe --last 6 --print-node-name\n")
            for line in flows:
                out.write(line + "\n")
        return True
    finally:
        down(ctx)
        out.write("kernel datapath down: namespaces, links, pins and processes removed\n")


def _recent_flows(ctx: Context, n: int) -> list[str]:
    """The last flows of the agent's flow logs as hubble compact lines."""
    from ciliate.datapath.flowlog import FlowLogDir
    from ciliate.observe.render import render_flow

    flows = FlowLogDir(paths(ctx).flows).read_all()[-n:]
    return [render_flow(f, "compact", True) for f in flows]
