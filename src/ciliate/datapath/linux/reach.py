"""``reach --datapath kernel``: the reachability matrix measured with real packets.

Role: bring manifests' pods up as a kernel cluster (an ephemeral state directory, a
kind-style cluster as the model's ``reach -f`` uses, ``ciliate apply`` of the files,
``runtime.up``: the normal path, so the real identities, maps and eBPF programs are
what gets tested), probe every ordered pair from inside the source pod's netns to the
destination pod IP (``probe``), tear down always, and return a matrix with the same
JSON as the model's ``control.reach.Matrix``:
``{"port": 80, "protocol": "TCP", "pods": [...], "matrix": {...}}``.
Without files, the current state directory's running cluster is probed (nothing is
brought up or down).

Entry points: ``reach_matrix(ctx, port, protocol, http, filenames=())`` (called by
``cli.cmd_policy``), ``probe_running(state_dir, ...)`` (a cluster that is up: the
agreement suite keeps one cluster and changes policies between probes),
``ephemeral_cluster(paths)`` (context manager: up ... down) and ``wait_converged``
(until the agent has reconciled the store's latest revision).

A protocol the kernel lacks (SCTP without the module) is not guessed: the matrix holds
``null`` for every pair except a pod to itself, and the JSON says why under
``"unverified"``.

Must not import cli or agent (the CLI's ``apply`` runs as a subprocess, as ``up``
spawns the agent by module name).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from ciliate.controllers.ephemeral import EPHEMERAL_CLUSTER, EPHEMERAL_NODES, ephemeral_docs
from ciliate.datapath.linux import runtime
from ciliate.datapath.linux.probe import (
    DEFAULT_TIMEOUT,
    Listeners,
    Target,
    probe_pairs,
    sctp_unavailable,
    wait_served,
)
from ciliate.errors import DatapathError, NotFoundError, UnsupportedError

CONVERGE_TIMEOUT = 30.0
FIRST_TIMEOUT = 0.5  # first pass; failures are probed again with the full timeout
CONFIRM_TIMEOUT = 5.0  # a suspected disagreement, measured once more


@dataclass(frozen=True, slots=True)
class KernelMatrix:
    """The kernel's verdicts; ``None`` where a pair could not be probed (``unverified``
    says why). ``details[a][b]`` is what the probe saw (response, timeout, ...)."""

    port: int
    protocol: str
    pods: tuple[str, ...]
    allowed: Mapping[str, Mapping[str, bool | None]]
    unverified: str | None = None
    details: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "port": self.port,
            "protocol": self.protocol,
            "pods": list(self.pods),
            "matrix": {a: dict(self.allowed[a]) for a in self.pods},
        }
        if self.unverified:
            doc["unverified"] = self.unverified
        return doc

    def table(self) -> str:
        """As ``Matrix.table`` (``.`` allowed, ``X`` denied), ``?`` not probed."""
        w = max((len(p) for p in self.pods), default=1)
        lines = [(" " * w + "  " + " ".join(p.ljust(w) for p in self.pods)).rstrip()]
        for a in self.pods:
            cells = " ".join(_cell(self.allowed[a][b]).ljust(w) for b in self.pods)
            lines.append((a.ljust(w) + "  " + cells).rstrip())
        if self.unverified:
            lines.append(f"? not probed: {self.unverified}")
        return "\n".join(lines)


def _cell(v: bool | None) -> str:
    return "?" if v is None else "." if v else "X"


@dataclass
class _Ctx:
    """What ``runtime`` needs of a CLI context, for an ephemeral state directory."""

    state_dir: Path
    stdout: TextIO = field(default_factory=lambda: sys.stderr)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)


# --- the running cluster -------------------------------------------------------------------


def targets(state_dir: Path) -> list[Target]:
    """The pods of a running cluster (from the agent's status), sorted by key."""
    st = runtime.read_status(runtime.KernelPaths(state_dir))
    out = [
        Target(e["pod"], e["ip"], e["netns"])
        for e in st.get("endpoints", [])
        if e.get("pod") and e.get("ip") and e.get("netns")
    ]
    return sorted(out, key=lambda t: t.key)


def declared_ports(state_dir: Path) -> dict[str, set[tuple[int, str]]]:
    """(containerPort, protocol) of every pod in the store."""
    from ciliate.store.sqlite import SQLiteStore

    store = SQLiteStore(state_dir / "store.db")
    try:
        docs = store.list()
    finally:
        store.close()
    out: dict[str, set[tuple[int, str]]] = {}
    for d in docs:
        if d.get("kind") != "Pod":
            continue
        meta = d.get("metadata") or {}
        key = f"{meta.get('namespace') or 'default'}/{meta.get('name')}"
        ports: set[tuple[int, str]] = set()
        for c in (d.get("spec") or {}).get("containers") or []:
            for p in c.get("ports") or []:
                if isinstance(p.get("containerPort"), int):
                    ports.add((p["containerPort"], str(p.get("protocol") or "TCP").upper()))
        out[key] = ports
    return out


def wait_converged(state_dir: Path, timeout: float = CONVERGE_TIMEOUT) -> dict[str, Any]:
    """Until the agent has reconciled the store's latest revision (its status file
    names the revision it processed); the status is returned."""
    from ciliate.store.sqlite import SQLiteStore

    store = SQLiteStore(state_dir / "store.db")
    try:
        want = store.resource_version()
    finally:
        store.close()
    kp = runtime.KernelPaths(state_dir)
    deadline = time.monotonic() + timeout
    while True:
        st = runtime.read_status(kp)
        if int(st.get("revision", -1)) >= want:
            return st
        if time.monotonic() >= deadline:
            raise DatapathError(
                f"the agent did not reconcile revision {want} within {timeout:.0f}s "
                f"(at {st.get('revision')}; see {kp.log})"
            )
        time.sleep(0.05)


def probe_running(
    state_dir: Path,
    port: int,
    protocol: str = "TCP",
    http: tuple[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    retries: int = 1,
    first_timeout: float = FIRST_TIMEOUT,
    confirm: Callable[[str, str], bool] | None = None,
) -> KernelMatrix:
    """Probe every ordered pair of the running cluster's pods for real.

    The first pass waits ``first_timeout`` (pods on one host answer in well under a
    millisecond); pairs that fail are probed again ``retries`` times with the full
    ``timeout`` (a lost first packet or a slow server must not read as a policy drop;
    a real drop fails every time). A denied pair costs ``first_timeout + timeout``.
    Pairs still failing for which ``confirm(src, dst)`` is true (say, the model allows
    them) get one last probe with ``CONFIRM_TIMEOUT``: a disagreement is measured
    patiently before it is reported, on a loaded machine too."""
    protocol = protocol.upper()
    tg = targets(state_dir)
    if not tg:
        raise NotFoundError(f"no pod endpoints are running in {state_dir}")
    keys = tuple(t.key for t in tg)
    allowed: dict[str, dict[str, bool | None]] = {k: {k: True} for k in keys}
    details: dict[str, dict[str, str]] = {k: {k: "self"} for k in keys}
    pairs = [(a, b) for a in tg for b in tg if a.key != b.key]
    reason = sctp_unavailable(tg[0].netns) if protocol == "SCTP" else None
    if reason:
        unknown = {a: {b: (True if a == b else None) for b in keys} for a in keys}
        why = {a: {b: ("self" if a == b else "unverified") for b in keys} for a in keys}
        return KernelMatrix(port, protocol, keys, unknown, f"{protocol}: {reason}", why)
    declared = declared_ports(state_dir)
    with Listeners() as listeners:
        wait_served(
            tg, port, protocol, lambda t: (port, protocol) in declared.get(t.key, set()), listeners
        )
        todo = pairs
        for attempt in range(1 + max(0, retries)):
            wait = min(first_timeout, timeout) if attempt == 0 and retries > 0 else timeout
            outcomes = probe_pairs(todo, port, protocol, wait, http)
            again = []
            for (a, b), o in zip(todo, outcomes, strict=True):
                allowed[a.key][b.key] = o.allowed
                details[a.key][b.key] = o.detail
                if not o.allowed and o.detail != "http 403":
                    again.append((a, b))
            todo = again
            if not todo:
                break
        last = [(a, b) for a, b in todo if confirm is not None and confirm(a.key, b.key)]
        confirmed = probe_pairs(last, port, protocol, CONFIRM_TIMEOUT, http)
        for (a, b), o in zip(last, confirmed, strict=True):
            allowed[a.key][b.key] = o.allowed
            details[a.key][b.key] = f"{o.detail} (after {CONFIRM_TIMEOUT:.0f}s)"
    ordered = {a: {b: allowed[a][b] for b in keys} for a in keys}
    return KernelMatrix(port, protocol, keys, ordered, None, details)


# --- an ephemeral cluster ------------------------------------------------------------------


def cli_argv(state_dir: Path, *argv: str) -> list[str]:
    return [sys.executable, "-m", "ciliate", "--state", str(state_dir), *argv]


def run_cli(state_dir: Path, *argv: str) -> str:
    """``ciliate --state DIR ARGV`` as a subprocess; DatapathError with its output on
    failure (the CLI layer sits above this one)."""
    done = subprocess.run(cli_argv(state_dir, *argv), capture_output=True, text=True)
    if done.returncode != 0:
        raise DatapathError(
            f"ciliate {' '.join(argv)} failed ({done.returncode}): "
            f"{(done.stderr or done.stdout).strip()}"
        )
    return done.stdout


def create_cluster(state_dir: Path, nodes: int = EPHEMERAL_NODES) -> None:
    """The model's ephemeral cluster (kind-style, ``reach``) in ``state_dir``'s store."""
    from ciliate.controllers.cluster import create_cluster as create
    from ciliate.controllers.clusterconfig import kind_cluster
    from ciliate.store.sqlite import SQLiteStore

    state_dir.mkdir(parents=True, exist_ok=True)
    store = SQLiteStore(state_dir / "store.db")
    try:
        create(store, kind_cluster(EPHEMERAL_CLUSTER, nodes))
    finally:
        store.close()


def seed_cluster(state_dir: Path, paths: Sequence[str]) -> None:
    """Write into ``state_dir``'s store exactly the cluster the model's ``reach -f``
    computes from ``paths``: ``controllers.ephemeral.ephemeral_docs``, the one builder
    both datapaths use (kind-style nodes, namespaces the files use without declaring
    them, the controllers run to a fixed point with a fixed seed), so generated pod
    names, nodes and addresses -- and therefore the JSON -- are the same as the
    model's."""
    from ciliate.controllers.snapshot import put
    from ciliate.manifest.decode import load_paths, with_provenance
    from ciliate.store.sqlite import SQLiteStore

    batch = load_paths(list(paths))
    batch.raise_if_invalid()
    docs, _ = ephemeral_docs([with_provenance(o) for o in batch.objects])
    state_dir.mkdir(parents=True, exist_ok=True)
    store = SQLiteStore(state_dir / "store.db")
    try:
        store.apply([put(d) for d in docs])
    finally:
        store.close()


@contextlib.contextmanager
def ephemeral_cluster(
    paths: Sequence[str],
    keep_state: bool = False,
    nodes: int = EPHEMERAL_NODES,
    seeded: bool = False,
) -> Iterator[Path]:
    """A fresh state directory with the manifests and the kernel cluster up; always torn
    down (and the directory removed unless ``keep_state``). By default the cluster is
    created and the files applied as a user would (``cluster create``, ``apply``);
    ``seeded`` writes the model's ephemeral cluster instead (``seed_cluster``)."""
    runtime.require_kernel()
    state = Path(tempfile.mkdtemp(prefix="ciliate-reach-"))
    ctx = _Ctx(state)
    try:
        if seeded:
            seed_cluster(state, paths)
        else:
            create_cluster(state, nodes)
            if paths:
                run_cli(state, "apply", *(a for p in paths for a in ("-f", p)))
        runtime.up(ctx)
        wait_converged(state)
        yield state
    finally:
        runtime.down(ctx)
        if not keep_state:
            shutil.rmtree(state, ignore_errors=True)


# --- the CLI's entry point -------------------------------------------------------------------


def reach_matrix(
    ctx: Any,
    port: int,
    protocol: str = "TCP",
    http: tuple[str, str] | None = None,
    filenames: Sequence[str] = (),
    timeout: float = DEFAULT_TIMEOUT,
) -> KernelMatrix:
    """``ciliate reach --datapath kernel``: with ``filenames``, their pods in an
    ephemeral kernel cluster (up, probe, down); without, the running cluster of
    ``ctx.state_dir`` (which must be up)."""
    if filenames:
        files = [p if p == "-" else str(Path(p).resolve()) for p in filenames]
        with tempfile.TemporaryDirectory(prefix="ciliate-reach-stdin-") as tmp:
            if "-" in files:  # the subprocess apply cannot read our stdin: a file
                stdin_file = Path(tmp) / "stdin.yaml"
                stdin_file.write_text(ctx.stdin.read())
                files = [str(stdin_file) if p == "-" else p for p in files]
            with ephemeral_cluster(files, seeded=True) as state:
                return probe_running(state, port, protocol, http, timeout)
    state_dir = Path(ctx.state_dir)
    if not runtime.is_up(_Ctx(state_dir)):
        raise UnsupportedError(
            "reach --datapath kernel without -f probes the running cluster, and none is up "
            f"in {state_dir}: run `ciliate up` first, or give the manifests with -f"
        )
    wait_converged(state_dir)
    return probe_running(state_dir, port, protocol, http, timeout)


def dumps(m: KernelMatrix) -> str:
    return json.dumps(m.to_json(), indent=2)
