"""Helpers of the kernel-cluster tests (agent restart, test_agent): running the CLI on a
state directory, the skip when the kernel datapath is unavailable, bounded waits, a
small cluster manifest with a policy and a service, probes run inside pod namespaces, a
long-lived TCP stream, a snapshot of everything a cluster puts in the kernel (for
"resumed == clean" comparisons) and of what could outlive it (``leftovers``).

Traffic only flows between namespaces the tests created; every cluster lives in its
own state directory (unique tag) and is removed with ``ciliate down``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from _cli import run_cli
from _paths import PACKAGED
from ciliate.datapath.linux import bpf, runtime
from ciliate.datapath.linux import netns as nl
from ciliate.datapath.linux.maps import POLICY_REV, KernelMaps
from ciliate.datapath.linux.workloads import WORKLOAD_MARKER, launch_argv

EXAMPLES = PACKAGED  # the examples shipped in the package (a fresh clone has them)
CLUSTER = EXAMPLES / "cluster.yaml"
WORKER, WORKER2 = "mycluster-worker", "mycluster-worker2"
PORT = 7007
SVC_IP = "10.96.77.77"


def skip_without_datapath() -> None:
    reason = runtime.unavailable_reason()
    if reason:
        pytest.skip(f"kernel datapath unavailable: {reason}")
    if not CLUSTER.exists():
        pytest.skip(f"examples not found at {EXAMPLES}")


cli = run_cli  # (exit code, stdout, stderr) of `ciliate ARGV` on a state directory


def ok(state: Path, *argv: str) -> str:
    rc, out, err = cli(state, *argv)
    assert rc == 0, f"ciliate {' '.join(argv)} -> {rc}\n{out}\n{err}"
    return out


def status(state: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(ok(state, "status", "-o", "json"))
    return data


def endpoints_by_pod(st: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The status' pod endpoints keyed by pod name (the namespace left out)."""
    return {e["pod"].split("/", 1)[1]: e for e in st["endpoints"] if e["pod"]}


def wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


# --- manifests -------------------------------------------------------------------------


def pod(name: str, node: str, app: str, listen: bool) -> str:
    container = (
        f"      image: ciliate/tcp-echo\n      ports:\n      - containerPort: {PORT}\n"
        if listen
        else '      image: busybox\n      command: ["sleep", "infinity"]\n'
    )
    return f"""apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: rs
  labels:
    app: {app}
spec:
  nodeName: {node}
  containers:
    - name: main
{container}"""


BASE = "\n---\n".join(
    [
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: rs\n",
        pod("server", WORKER, "server", True),
        pod("other", WORKER, "other", True),
        pod("client", WORKER2, "client", False),
        pod("blocked", WORKER2, "blocked", False),
        f"""apiVersion: v1
kind: Service
metadata:
  name: svc
  namespace: rs
spec:
  clusterIP: {SVC_IP}
  selector:
    app: server
  ports:
  - port: {PORT}
    targetPort: {PORT}
""",
        f"""apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: server-from-client
  namespace: rs
spec:
  podSelector:
    matchLabels:
      app: server
  policyTypes: [Ingress]
  ingress:
  - from:
    - podSelector:
        matchLabels:
          app: client
    ports:
    - port: {PORT}
""",
    ]
)
LATE_POD = pod("late", WORKER2, "late", True)
DENY_POLICY = """apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: deny-client-to-other
  namespace: rs
spec:
  endpointSelector:
    matchLabels:
      app: other
  ingressDeny:
  - fromEndpoints:
    - matchLabels:
        app: client
"""


# --- traffic ---------------------------------------------------------------------------

PROBE = (
    "import socket,sys\n"
    "try:\n"
    "    s=socket.create_connection((sys.argv[1],int(sys.argv[2])),float(sys.argv[3]))\n"
    "    s.settimeout(float(sys.argv[3])); s.sendall(b'probe'); assert s.recv(5)==b'probe'\n"
    "except OSError as e:\n"
    "    print(type(e).__name__, e); sys.exit(1)\n"
)


def in_netns(netns: str, *argv: str) -> list[str]:
    return launch_argv(netns, None, argv)


def connects(netns: str, ip: str, port: int = PORT, timeout: float = 1.5) -> bool:
    """A TCP connection from ``netns`` to ip:port is set up and echoes."""
    done = subprocess.run(
        in_netns(netns, sys.executable, "-c", PROBE, ip, str(port), str(timeout)),
        capture_output=True,
        text=True,
        timeout=timeout + 15,
    )
    return done.returncode == 0


def connects_eventually(netns: str, ip: str, tries: int = 20) -> bool:
    """For a pod just started: its server may need a moment to listen."""
    return any(connects(netns, ip) or time.sleep(0.2) for _ in range(tries))


STREAM = r"""
import select, socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), 3)
s.settimeout(5)
progress = sys.argv[3]
n = 0
while True:
    r, _, _ = select.select([sys.stdin], [], [], 0.03)
    if r and not sys.stdin.read():
        print("ok", n, flush=True)
        sys.exit(0)
    msg = n.to_bytes(8, "big")
    try:
        s.sendall(msg)
        got = b""
        while len(got) < 8:
            chunk = s.recv(8 - len(got))
            if not chunk:
                raise ConnectionError("closed by peer")
            got += chunk
    except OSError as e:
        print("fail", n, type(e).__name__, e, flush=True)
        sys.exit(1)
    if got != msg:
        print("fail", n, "garbled", flush=True)
        sys.exit(1)
    n += 1
    with open(progress, "w") as f:
        f.write(str(n))
"""


@dataclass
class Stream:
    """One TCP connection from a pod, exchanging 8-byte messages every ~30 ms."""

    proc: subprocess.Popen[str]
    progress: Path

    @classmethod
    def open(cls, netns: str, ip: str, progress: Path) -> Stream:
        progress.write_text("0")
        proc = subprocess.Popen(
            in_netns(netns, sys.executable, "-c", STREAM, ip, str(PORT), str(progress)),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        return cls(proc, progress)

    def count(self) -> int:
        try:
            return int(self.progress.read_text() or 0)
        except (OSError, ValueError):
            return 0

    def advances(self, by: int = 5, timeout: float = 5.0) -> bool:
        start = self.count()
        return wait_for(
            lambda: self.count() >= start + by or self.proc.poll() is not None, timeout
        ) and (self.proc.poll() is None)

    def finish(self) -> str:
        """Stop it; its last line ("ok N" or "fail N <error>")."""
        if self.proc.poll() is None:
            out, _ = self.proc.communicate("", timeout=15)
        else:
            out, _ = self.proc.communicate(timeout=5)
        return out.strip()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# --- kernel snapshot -------------------------------------------------------------------

# maps whose contents depend on traffic or time, not on the desired state
VOLATILE_MAPS = re.compile(r"ct|nat|events|metrics|affinity|snat|frag", re.I)
# counters of the agent's history, not of the desired state: a resumed up may have
# written policy in more batches than a clean one, so only "set" is compared
HISTORY_MAPS = {POLICY_REV}


def _set_or_zero(value: bytes) -> str:
    return "set" if any(value) else "zero"


def map_ids(tag: str) -> dict[str, int]:
    """Pin path -> kernel map id of every pinned map of the cluster."""
    out = {}
    root = Path("/sys/fs/bpf/ciliate") / tag
    for p in sorted(root.rglob("*")) if root.exists() else []:
        if p.is_dir():
            continue
        fd = bpf.obj_get(p)
        try:
            out[str(p.relative_to(root))] = bpf.map_info(fd).id
        finally:
            os.close(fd)
    return out


def _sh(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True).stdout


def _normal(text: str) -> list[str]:
    text = re.sub(r"link-netns(id)? \S+", "", text)
    text = re.sub(r"\b(id|tag|prog_id) [0-9a-f]+", "", text)
    text = re.sub(r"\s+\\\s+", " ", text)
    return sorted(line.rstrip() for line in text.splitlines() if line.strip())


def kernel_snapshot(state: Path) -> dict[str, Any]:
    """What a cluster has in the kernel, normalised so two builds of the same desired
    state compare equal: namespaces; per namespace links, addresses, routes and tc
    programs; per node the contents of every non-volatile pinned map; and which pod
    containers run."""
    names = runtime.KernelPaths(state).names
    snap: dict[str, Any] = {"netns": {}, "maps": {}, "workloads": []}
    for ns in nl.list_netns(names.prefix):
        links = _sh("ip", "-n", ns, "-o", "link")
        shown = links
        if ns == names.fabric:
            # the bridge and its ports are the "physical" network: their MACs are the
            # kernel's random ones, not planned by the control plane
            shown = re.sub(r"link/ether \S+", "link/ether <random>", links)
        entry = {
            "links": _normal(shown),
            "addrs": _normal(_sh("ip", "-n", ns, "-o", "-4", "addr")),
            "routes": _normal(_sh("ip", "-n", ns, "route")),
        }
        tc = []
        for line in links.splitlines():
            dev = line.split(":")[1].strip().split("@")[0]
            for hook in ("ingress", "egress"):
                for f in _normal(
                    _sh("ip", "netns", "exec", ns, "tc", "filter", "show", "dev", dev, hook)
                ):
                    if "bpf" in f:
                        tc.append(f"{dev} {hook}: {f}")
        entry["tc"] = sorted(tc)
        snap["netns"][ns] = entry
    root = names.pin_root
    if root.exists():
        for node_dir in sorted(root.iterdir()):
            pins = node_dir / "tc" / "globals"
            km = KernelMaps(pins)
            try:
                for name in km.names():
                    if VOLATILE_MAPS.search(name):
                        continue
                    value = _set_or_zero if name in HISTORY_MAPS else bytes.hex
                    with_entries = sorted(k.hex() + "=" + value(v) for k, v in km.dump(name))
                    snap["maps"][f"{node_dir.name}/{name}"] = with_entries
            finally:
                km.close()
    snap["workloads"] = workload_marks(state)
    return snap


def workload_marks(state: Path) -> list[str]:
    """The container markers of the processes running in the cluster's namespaces (a
    process just spawned may still be entering its namespace: callers wait for it)."""
    marks = []
    for pid in runtime.namespace_pids(runtime.KernelPaths(state).names):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        marks += [v.decode() for v in env if v.startswith(WORKLOAD_MARKER.encode() + b"=")]
    return sorted(marks)


@dataclass
class Leftovers:
    netns: list[str] = field(default_factory=list)
    pins: list[str] = field(default_factory=list)
    procs: list[int] = field(default_factory=list)
    mounts: list[str] = field(default_factory=list)


def leftovers(state: Path) -> Leftovers:
    """Everything of the cluster that could outlive it (empty after ``down``)."""
    names = runtime.KernelPaths(state).names
    pins = names.pin_root
    procs = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if str(state) in (d / "cmdline").read_bytes().decode(errors="replace"):
                    procs.append(int(d.name))
            except OSError:
                continue
    mounts = [
        line for line in Path("/proc/self/mountinfo").read_text().splitlines() if names.tag in line
    ]
    return Leftovers(
        netns=nl.list_netns(names.prefix),
        pins=sorted(str(p) for p in pins.rglob("*")) if pins.exists() else [],
        procs=procs + runtime.namespace_pids(names),
        mounts=mounts,
    )
