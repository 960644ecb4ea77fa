"""Workloads: each pod's containers as host processes inside the pod's network namespace.

Role: ``plan_pod`` turns a Pod (plus where it landed: netns, IP, node) into
``ProcessSpec``s, pure; ``Supervisor`` starts them, restarts them per restartPolicy and
stops them. What is isolated is the *network* only: a process sees its pod's eth0,
addresses, routes and its own /etc/resolv.conf (bind-mounted in a private mount
namespace); it shares the host's filesystem, process table, users and tools.

Image mapping (no container images are pulled):

1. the ingress-conformance ``echoserver`` -> the built-in echo server
   (``ciliate.servers.workload echo``) on its containerPort or 3000;
2. ``command:``/``args:`` -> run as given with the host's tools (``sleep infinity``);
3. nginx / httpd / hello-app ("helloworld") / http-echo / whoami images -> the built-in
   HTTP server on the container ports (defaults 80, 80, 8080, 5678, 80);
4. anything else with ports -> TCP/UDP listeners on them; without ports -> ``sleep
   infinity`` so the pod stays Running.

Launch chain: ``nsenter --net=<netns> unshare --mount sh -c 'mount --bind R
/etc/resolv.conf; exec "$@"'`` -- every step execs, so the supervised PID is the
workload itself. (A ``preexec_fn`` doing setns would be faster but is unsafe in the
multi-threaded agent.)

Surviving the agent: workloads run in their own sessions, so an agent that dies (kill -9)
or exits for a restart leaves them running. Each spawn writes a record next to the
container's log (``<pod_dir>/<container>.proc.json``: pid, the kernel's start time of that
pid, a digest of the spec); the next agent's ``start_pod`` adopts a recorded process that
is still the same process (pid alive, same start time, the marker naming the container)
and still runs the same spec, and replaces it otherwise. An adopted process is not the
new agent's child: its exit is seen by polling /proc and its exit code is unknown (-1,
which restartPolicy OnFailure counts as a failure). Must not import cli, agent or observe.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ciliate.datapath.linux.netns import netns_path
from ciliate.model.core import Container, Pod

DEFAULT_DNS_IP = "10.96.0.10"
ECHO_PORT = 3000
# image name fragment -> default port of its built-in HTTP server
HTTP_IMAGES = (
    ("nginx", 80),
    ("httpd", 80),
    ("hello-app", 8080),
    ("helloworld", 8080),
    ("hello-world", 8080),
    ("http-echo", 5678),
    ("whoami", 80),
    ("podinfo", 9898),
)
RESTART_BACKOFF_MAX = 10.0
WORKLOAD_MARKER = "CILIATE_WORKLOAD"  # env var naming the pod/container of a process


def is_workload_process(pid: int) -> bool:
    """True when ``pid`` was started by a Supervisor (it carries the marker)."""
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return any(v.startswith(WORKLOAD_MARKER.encode() + b"=") for v in env.split(b"\0"))


@dataclass(frozen=True, slots=True)
class ProcessSpec:
    """One container as one process."""

    pod: str  # namespace/name
    container: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    netns: str
    resolv_conf: Path
    log: Path
    restart_policy: str = "Always"  # Always | OnFailure | Never
    uid: str = ""  # the pod's uid: a pod re-created under the same name is a new process

    @property
    def record(self) -> Path:
        """Where the running process of this container is recorded (for adoption)."""
        return self.log.with_name(f"{self.container}.proc.json")

    def digest(self) -> str:
        """What must be equal for a running process to count as this spec's."""
        doc = {
            "pod": self.pod,
            "container": self.container,
            "argv": list(self.argv),
            "env": dict(sorted(self.env.items())),
            "netns": self.netns,
            "resolv": str(self.resolv_conf),
            "restart": self.restart_policy,
            "uid": self.uid,
        }
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


UNKNOWN_EXIT = -1  # an adopted process exited; not our child, so its status is unknown


def process_start_time(pid: int) -> int | None:
    """The kernel's start time of ``pid`` (clock ticks since boot, /proc/<pid>/stat
    field 22): with the pid it names one process even across pid reuse. None when the
    process is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def _marker_of(pid: int) -> str | None:
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    prefix = WORKLOAD_MARKER.encode() + b"="
    for v in env.split(b"\0"):
        if v.startswith(prefix):
            return v[len(prefix) :].decode(errors="replace")
    return None


def resolv_conf_text(namespace: str, dns_ip: str = DEFAULT_DNS_IP) -> str:
    """What kubelet writes for dnsPolicy ClusterFirst."""
    return (
        f"search {namespace}.svc.cluster.local svc.cluster.local cluster.local\n"
        f"nameserver {dns_ip}\n"
        "options ndots:5\n"
    )


def _field_value(pod: Pod, path: str, node: str, pod_ip: str) -> str:
    """Downward API fieldRef values (kubernetes.io/docs/.../downward-api)."""
    m = pod.meta
    simple = {
        "metadata.name": m.name,
        "metadata.namespace": m.namespace,
        "metadata.uid": m.uid,
        "spec.nodeName": node,
        "spec.serviceAccountName": pod.spec.service_account_name,
        "status.podIP": pod_ip,
        "status.podIPs": pod_ip,
        "status.hostIP": pod.status.host_ip,
    }
    if path in simple:
        return simple[path]
    for prefix, table in (("metadata.labels", m.labels), ("metadata.annotations", m.annotations)):
        if path.startswith(prefix + "['") and path.endswith("']"):
            return table.get(path[len(prefix) + 2 : -2], "")
    return ""


def container_env(pod: Pod, c: Container, node: str, pod_ip: str) -> dict[str, str]:
    env = {
        "PATH": os.environ.get(
            "PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        ),
        "HOSTNAME": pod.meta.name,
        "HOME": "/root",
    }
    for e in c.env:
        if e.value is not None:
            env[e.name] = e.value
        elif e.field_path:
            env[e.name] = _field_value(pod, e.field_path, node, pod_ip)
    return env


def _server(*args: str) -> tuple[str, ...]:
    return (sys.executable, "-m", "ciliate.servers.workload", *args)


def container_argv(c: Container) -> tuple[str, ...]:
    """The process a container becomes (see the module docstring for the order)."""
    image = c.image.lower().rsplit("@", 1)[0]
    name = image.rsplit("/", 1)[-1].split(":", 1)[0]
    tcp = [p.container_port for p in c.ports if p.protocol.upper() == "TCP"]
    udp = [p.container_port for p in c.ports if p.protocol.upper() == "UDP"]
    if name == "echoserver" or "echoserver" in image:
        return _server("echo", *(f"--port={p}" for p in (tcp or [ECHO_PORT])))
    if c.command or c.args:
        return (*c.command, *c.args) if c.command else ("sh", "-c", " ".join(c.args))
    for fragment, port in HTTP_IMAGES:
        if fragment in name:
            return _server(
                "http", f"--flavor={fragment}", *(f"--port={p}" for p in (tcp or [port]))
            )
    if tcp or udp:
        return _server("listen", *(f"--tcp={p}" for p in tcp), *(f"--udp={p}" for p in udp))
    return ("sleep", "infinity")


def plan_pod(
    pod: Pod,
    node: str,
    pod_ip: str,
    netns: str,
    pod_dir: Path,
    dns_ip: str = DEFAULT_DNS_IP,
) -> tuple[ProcessSpec, ...]:
    """Pure: the processes of one pod."""
    return tuple(
        ProcessSpec(
            pod=pod.key,
            container=c.name,
            argv=container_argv(c),
            env=container_env(pod, c, node, pod_ip),
            netns=netns,
            resolv_conf=pod_dir / "resolv.conf",
            log=pod_dir / f"{c.name}.log",
            restart_policy=pod.spec.restart_policy,
            uid=pod.meta.uid,
        )
        for c in pod.spec.containers
    )


def launch_argv(netns: str, resolv_conf: Path | None, argv: tuple[str, ...]) -> list[str]:
    """The nsenter/unshare chain that runs ``argv`` in a pod or node namespace."""
    chain = ["nsenter", f"--net={netns_path(netns)}", "--"]
    if resolv_conf is None:
        return [*chain, *argv]
    script = 'mount --bind "$0" /etc/resolv.conf && exec "$@"'
    return [*chain, "unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
            script, str(resolv_conf), *argv]  # fmt: skip


@dataclass
class _Running:
    spec: ProcessSpec
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    exit_code: int | None = None
    stopped: bool = False
    adopted_pid: int = 0  # a process of an earlier agent (not our child)
    adopted_start: int = 0

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc is not None else self.adopted_pid

    def exited(self) -> int | None:
        """The exit code once the process is gone (UNKNOWN_EXIT for an adopted one)."""
        if self.proc is not None:
            return self.proc.poll()
        if self.adopted_pid and process_start_time(self.adopted_pid) != self.adopted_start:
            return UNKNOWN_EXIT
        return None if self.adopted_pid else UNKNOWN_EXIT


@dataclass
class Supervisor:
    """Starts, restarts and stops pod processes. ``clock`` is injected for tests."""

    dns_ip: str = DEFAULT_DNS_IP
    clock: Callable[[], float] = field(default=lambda: 0.0)
    _procs: dict[tuple[str, str], _Running] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start_pod(
        self, specs: tuple[ProcessSpec, ...], namespace: str, adopt_only: bool = False
    ) -> None:
        """Run the pod's containers: a container already running its spec is left
        alone (or, after an agent restart, adopted from its record); one running an
        older spec is replaced. ``adopt_only``: take over what runs, start nothing (the
        agent first adopts, then stops unowned leftovers that could hold the ports,
        then starts the rest)."""
        for spec in specs:
            spec.resolv_conf.parent.mkdir(parents=True, exist_ok=True)
            # rewritten in place: a running process has this file bind-mounted
            text = resolv_conf_text(namespace, self.dns_ip)
            with contextlib.suppress(OSError):
                if spec.resolv_conf.read_text() == text:
                    text = ""
            if text:
                spec.resolv_conf.write_text(text)
            key = (spec.pod, spec.container)
            with self._lock:
                old = self._procs.get(key)
                if old is not None and old.spec == spec and not old.stopped:
                    continue
                if old is not None:
                    if adopt_only:
                        continue
                    self._kill(old)
                    run = _Running(spec)
                else:
                    adopted = self._adopt(spec)
                    if adopted is None and adopt_only:
                        continue
                    run = adopted or _Running(spec)
                self._procs[key] = run
                if not run.adopted_pid:
                    self._spawn(run)

    def _adopt(self, spec: ProcessSpec) -> _Running | None:
        """The recorded process of ``spec``'s container when it still runs this spec;
        a recorded process running another spec is stopped (it would hold the ports)."""
        try:
            rec = json.loads(spec.record.read_text())
            pid, started, digest = int(rec["pid"]), int(rec["start"]), str(rec["digest"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        marker = f"{spec.pod}/{spec.container}"
        if process_start_time(pid) != started or _marker_of(pid) != marker:
            return None  # gone, or the pid was reused by someone else
        run = _Running(spec, adopted_pid=pid, adopted_start=started)
        if digest == spec.digest():
            return run
        self._kill(run)
        return None

    def _spawn(self, run: _Running) -> None:
        spec = run.spec
        with open(spec.log, "ab") as log:
            run.proc = subprocess.Popen(
                launch_argv(spec.netns, spec.resolv_conf, spec.argv),
                # the marker lets a restarted agent find an earlier agent's orphans
                env={**spec.env, WORKLOAD_MARKER: f"{spec.pod}/{spec.container}"},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() kills children too
                cwd="/",
            )
        run.adopted_pid = 0
        run.exit_code = None
        started = process_start_time(run.proc.pid)
        if started is not None:
            _write_record(spec, run.proc.pid, started)

    def stop_pod(self, pod: str) -> None:
        with self._lock:
            for key in [k for k in self._procs if k[0] == pod]:
                self._kill(self._procs.pop(key))

    def stop_all(self) -> None:
        with self._lock:
            for run in self._procs.values():
                self._kill(run)
            self._procs.clear()

    def release_all(self) -> None:
        """Forget every process and leave it running (the agent exits for a restart;
        the next one adopts them from their records)."""
        with self._lock:
            self._procs.clear()

    def _kill(self, run: _Running) -> None:
        run.stopped = True
        with contextlib.suppress(FileNotFoundError):
            run.spec.record.unlink()
        if run.exited() is not None:
            return
        proc = run.proc
        if proc is None:
            _kill_adopted(run.adopted_pid, run.adopted_start)
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def poll(self) -> int:
        """Reap exited processes and restart them per restartPolicy, with backoff
        (0.5 s doubling up to 10 s, like kubelet's CrashLoopBackOff but shorter).
        Returns how many exits and restarts it saw (status to rewrite when > 0)."""
        now = self.clock()
        changed = 0
        with self._lock:
            for run in self._procs.values():
                if run.stopped or (run.proc is None and not run.adopted_pid):
                    continue
                if run.exit_code is None:
                    rc = run.exited()
                    if rc is None:
                        continue
                    run.exit_code = rc
                    run.next_start = now + min(RESTART_BACKOFF_MAX, 0.5 * 2**run.restarts)
                    changed += 1
                policy = run.spec.restart_policy
                again = policy == "Always" or (policy == "OnFailure" and run.exit_code != 0)
                if again and now >= run.next_start:
                    run.restarts += 1
                    self._spawn(run)
                    changed += 1
        return changed

    def status(self) -> list[dict[str, object]]:
        with self._lock:
            return [
                {
                    "pod": run.spec.pod,
                    "container": run.spec.container,
                    "pid": run.pid,
                    "running": bool(run.pid) and run.exited() is None,
                    "restarts": run.restarts,
                    "exitCode": run.exit_code,
                    "adopted": bool(run.adopted_pid),
                }
                for run in self._procs.values()
            ]

    def pids(self) -> list[int]:
        with self._lock:
            return [r.pid for r in self._procs.values() if r.pid and r.exited() is None]


def _write_record(spec: ProcessSpec, pid: int, started: int) -> None:
    rec = {"pid": pid, "start": started, "digest": spec.digest()}
    tmp = spec.record.with_suffix(".tmp")
    tmp.write_text(json.dumps(rec) + "\n")
    tmp.replace(spec.record)


def _kill_adopted(pid: int, started: int, grace: float = 2.0) -> None:
    """SIGTERM the process group of an adopted workload, SIGKILL after ``grace``; the
    start time guards every signal against a reused pid."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, grace)):
        if process_start_time(pid) != started:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and process_start_time(pid) == started:
            time.sleep(0.02)
