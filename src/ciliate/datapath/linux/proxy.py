"""The nodes' L7 proxies: started, supervised, adopted and fed their rules by the agent.

Role: Cilium runs one Envoy per node and lets the eBPF programs hand it the connections
whose policy entry carries a proxy port (TPROXY through socket assignment,
``bpf/lib/proxy.h``). Here each node gets one ``ciliate.servers.proxy`` process in the
node's network namespace, started the first time one of the node's endpoints has a
redirect entry (a cluster without L7 policy runs none), with:

1. the policy routing that makes redirected packets local in the node's netns, as
   Cilium installs it: ``ip rule add fwmark 0x200/0xf00 lookup 2004`` and
   ``ip route add local 0.0.0.0/0 dev lo table 2004`` (``ensure_policy_routing``);
2. its rules file, ``<state>/kernel/proxy/<node>.rules.json``, rewritten atomically on
   every policy change that touches a redirecting endpoint (``proxy_rules``), before the
   map changes reach the kernel, so the proxy never sees a redirect it has no rules for;
3. supervision like the workloads' (``workloads``): its own session (an agent killed
   with -9 leaves it serving), a record ``<node>.proc.json`` (pid, start time, digest
   of its command line) from which the next agent adopts it, a restart with backoff when
   it exits (a thread polls every 0.5 s; the agent rewrites its status after a restart,
   ``take_changed``). ``down`` kills it with every other process of the cluster's
   namespaces.

Inputs: ``KernelPaths``, ``NodeState``s and ``MapChange``s. Outputs: processes, files,
netns routing. Must not import cli or agent.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ciliate.control.rules import HTTP_PROXY_PORT
from ciliate.datapath.flowlog import node_log_path
from ciliate.datapath.linux.loader import pin_dir
from ciliate.datapath.linux.netns import netns_exists
from ciliate.datapath.linux.proxy_rules import RulesCache, write_rules
from ciliate.datapath.linux.runtime import KernelPaths
from ciliate.datapath.linux.workloads import launch_argv, process_start_time
from ciliate.desired import MapChange, NodeState

log = logging.getLogger("ciliate.proxy")

PROXY_MARKER = "CILIATE_PROXY"  # env var naming the cluster/node of a proxy process
PROXY_FWMARK = "0x200/0xf00"  # MARK_MAGIC_TO_PROXY under MARK_MAGIC_HOST_MASK
PROXY_TABLE = "2004"
PROXY_RULE_PREF = "9"
READY_TIMEOUT = 5.0
POLL_INTERVAL = 0.5
BACKOFF_MAX = 10.0


def ensure_policy_routing(netns: str) -> None:
    """Marked packets (the kernel handed them to the proxy) are local in ``netns``."""
    base = ["ip", "-n", netns]
    rules = subprocess.run([*base, "rule", "show"], capture_output=True, text=True, check=True)
    if f"lookup {PROXY_TABLE}" not in rules.stdout:
        subprocess.run(
            [*base, "rule", "add", "pref", PROXY_RULE_PREF, "fwmark", PROXY_FWMARK,
             "lookup", PROXY_TABLE],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
    subprocess.run(
        [*base, "route", "replace", "local", "0.0.0.0/0", "dev", "lo", "table", PROXY_TABLE],
        capture_output=True, text=True, check=True,
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class ProxyFiles:
    """Where one node's proxy keeps its files."""

    kp: KernelPaths
    node: str

    @property
    def dir(self) -> Path:
        return self.kp.dir / "proxy"

    @property
    def rules(self) -> Path:
        return self.dir / f"{self.node}.rules.json"

    @property
    def record(self) -> Path:
        return self.dir / f"{self.node}.proc.json"

    @property
    def ready(self) -> Path:
        return self.dir / f"{self.node}.ready"

    @property
    def log(self) -> Path:
        return self.dir / f"{self.node}.log"

    @property
    def flows(self) -> Path:
        """Beside the node's kernel flows: ``ciliate observe`` reads every log there."""
        return node_log_path(self.kp.flows, f"{self.node}.proxy")


def proxy_argv(files: ProxyFiles) -> tuple[str, ...]:
    return (
        sys.executable, "-m", "ciliate.servers.proxy",
        "--node", files.node,
        "--rules", str(files.rules),
        "--pin-dir", str(pin_dir(files.kp.names.tag, files.node)),
        "--flows", str(files.flows),
        "--port", str(HTTP_PROXY_PORT),
        "--ready", str(files.ready),
    )  # fmt: skip


def _digest(argv: tuple[str, ...], netns: str) -> str:
    return hashlib.sha256(json.dumps([netns, *argv]).encode()).hexdigest()[:16]


def _marker_of(pid: int) -> str | None:
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    prefix = PROXY_MARKER.encode() + b"="
    for v in env.split(b"\0"):
        if v.startswith(prefix):
            return v[len(prefix) :].decode(errors="replace")
    return None


@dataclass
class _Proc:
    files: ProxyFiles
    netns: str
    pid: int = 0
    start: int = 0
    popen: subprocess.Popen[bytes] | None = None
    adopted: bool = False
    restarts: int = 0
    next_start: float = 0.0

    def alive(self) -> bool:
        if self.popen is not None and self.popen.poll() is not None:
            return False
        return bool(self.pid) and process_start_time(self.pid) == self.start


@dataclass
class ProxyManager:
    """The agent's side: ``start`` (full), ``reconcile`` (deltas), ``stop``/``detach``."""

    kp: KernelPaths
    cache: RulesCache = field(default_factory=RulesCache)
    procs: dict[str, _Proc] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    # Set by the supervisor thread when it restarted (or failed to restart) a proxy: the
    # agent's loop, the one writer of status.json, rewrites it (``take_changed``).
    _changed: threading.Event = field(default_factory=threading.Event)

    def files(self, node: str) -> ProxyFiles:
        return ProxyFiles(self.kp, node)

    def marker(self, node: str) -> str:
        return f"{self.kp.names.tag}/{node}"

    # --- agent hooks ---------------------------------------------------------------------

    def start(self, nodes: Mapping[str, NodeState]) -> None:
        """Rules of every node; proxies where a redirect exists or one already runs
        (adopted from its record)."""
        self.cache.load(nodes.values())
        for name in nodes:  # spawned side by side, then waited for together
            self._converge(name, adopt=True, wait=False)
        self._wait_ready(list(self.procs.items()))
        self._ensure_thread()

    def reconcile(self, nodes: Mapping[str, NodeState], changes: Iterable[MapChange]) -> None:
        """Before the map changes go to the kernel: rules (and a proxy) first."""
        gone = [n for n in self.procs if n not in nodes]
        for name in sorted(self.cache.update(nodes, changes)):
            self._converge(name, adopt=False)
        for name in gone:  # the node's namespace, with its processes, goes with the node
            with self._lock:
                proc = self.procs.pop(name, None)
            if proc is not None:
                self._kill(proc)

    def stop(self) -> None:
        """Stop every proxy (``down`` also kills what is left in the namespaces)."""
        self.detach()
        with self._lock:
            procs = list(self.procs.values())
            self.procs.clear()
        for p in procs:
            self._kill(p)

    def detach(self) -> None:
        """The agent exits for a restart: proxies keep serving, the next agent adopts."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None

    def status(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {
                    "node": n,
                    "pid": p.pid,
                    "running": p.alive(),
                    "adopted": p.adopted,
                    "restarts": p.restarts,
                    "endpoints": len(self.cache.nodes.get(n, {})),
                }
                for n, p in sorted(self.procs.items())
            ]

    def take_changed(self) -> bool:
        """Whether a proxy was restarted (new pid, restart count, error) since the last
        call; the agent polls it to rewrite its status."""
        changed = self._changed.is_set()
        self._changed.clear()
        return changed

    # --- one node ------------------------------------------------------------------------

    def _converge(self, node: str, *, adopt: bool, wait: bool = True) -> None:
        files = self.files(node)
        try:
            write_rules(files.rules, self.cache.document(node))
            if node not in self.procs:
                self._run(node, files, adopt=adopt)
                if wait and node in self.procs:
                    self._wait_ready([(node, self.procs[node])])
        except (OSError, subprocess.CalledProcessError) as e:  # status, not a crash
            self.errors.append(f"proxy of {node}: {e}")
            log.warning("proxy of %s: %s", node, e)

    def _run(self, node: str, files: ProxyFiles, *, adopt: bool) -> None:
        """Adopt the proxy an earlier agent left running (it keeps serving the
        connections it has, even when no redirect is left); else start one when the
        node needs it. A record of a process that is gone is dropped."""
        netns = self.kp.names.node(node)
        if not netns_exists(netns):
            return
        proc = self._adopt(node, files, netns) if adopt else None
        if proc is None:
            with contextlib.suppress(FileNotFoundError):
                files.record.unlink()
            if not self.cache.needs_proxy(node):
                return
            ensure_policy_routing(netns)
            proc = self._spawn(_Proc(files, netns), node)
        else:
            ensure_policy_routing(netns)
        with self._lock:
            self.procs[node] = proc

    def _adopt(self, node: str, files: ProxyFiles, netns: str) -> _Proc | None:
        try:
            rec = json.loads(files.record.read_text())
            pid, start, digest = int(rec["pid"]), int(rec["start"]), str(rec["digest"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if process_start_time(pid) != start or _marker_of(pid) != self.marker(node):
            return None
        proc = _Proc(files, netns, pid=pid, start=start, adopted=True)
        if digest == _digest(proxy_argv(files), netns):
            log.info("adopted the proxy of %s (pid %d)", node, pid)
            return proc
        self._kill(proc)  # another command line: replaced
        return None

    def _spawn(self, proc: _Proc, node: str) -> _Proc:
        files = proc.files
        files.dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            files.ready.unlink()
        argv = proxy_argv(files)
        with open(files.log, "ab") as out:
            proc.popen = subprocess.Popen(
                launch_argv(proc.netns, None, argv),
                env={**os.environ, PROXY_MARKER: self.marker(node)},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # outlives the agent (kill -9, restart)
                cwd="/",
            )
        proc.pid = proc.popen.pid
        proc.start = process_start_time(proc.pid) or 0
        proc.adopted = False
        rec = {"pid": proc.pid, "start": proc.start, "digest": _digest(argv, proc.netns)}
        tmp = files.record.with_suffix(".tmp")
        tmp.write_text(json.dumps(rec) + "\n")
        tmp.replace(files.record)
        return proc

    def _wait_ready(self, procs: list[tuple[str, _Proc]]) -> None:
        """The first redirected connection must find the listener: wait for the proxies
        just spawned to listen (adopted ones already do)."""
        deadline = time.monotonic() + READY_TIMEOUT
        waiting = [(n, p) for n, p in procs if not p.adopted]
        while waiting and time.monotonic() < deadline:
            waiting = [
                (n, p)
                for n, p in waiting
                if not p.files.ready.exists() and (p.popen is None or p.popen.poll() is None)
            ]
            if waiting:
                time.sleep(0.02)
        for n, p in procs:
            if not p.adopted and not p.files.ready.exists():
                self.errors.append(f"proxy of {n} not ready (see {p.files.log})")

    def _kill(self, proc: _Proc) -> None:
        with contextlib.suppress(FileNotFoundError):
            proc.files.record.unlink()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if not proc.alive():
                break
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline and proc.alive():
                time.sleep(0.02)
        if proc.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout=0.5)

    # --- supervision ---------------------------------------------------------------------

    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._supervise, name="ciliate-proxy-supervisor", daemon=True
            )
            self._thread.start()

    def _supervise(self) -> None:
        while not self._stop.wait(POLL_INTERVAL):
            self.poll()

    def poll(self) -> int:
        """Restart proxies that exited (0.5 s doubling to 10 s between attempts)."""
        now = time.monotonic()
        restarted = 0
        with self._lock:
            dead = [(n, p) for n, p in self.procs.items() if not p.alive()]
        for node, p in dead:
            if now < p.next_start:
                continue
            if p.popen is not None:
                p.popen.poll()  # reap
            log.warning("proxy of %s exited; restarting", node)
            p.restarts += 1
            p.next_start = now + min(BACKOFF_MAX, 0.5 * 2**p.restarts)
            try:
                self._spawn(p, node)
                self._wait_ready([(node, p)])
                restarted += 1
            except OSError as e:
                self.errors.append(f"proxy of {node}: {e}")
            self._changed.set()
        return restarted
