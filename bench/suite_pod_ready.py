"""Pod readiness benchmark: time from ``apply`` of a pod to a running kernel cluster until
its first packet is forwarded.

Set-up: a ciliate cluster (``cluster create`` with two workers, ``apply`` of a prober
pod on the first worker, ``up``). Then, one pod at a time, alternating between the prober's
node (``same``) and the other worker (``cross``):

1. t0; the apply transaction runs in this process (``ciliate.cli.main.main(["apply",
   ...])``: the CLI's Python start-up, ~0.4 s here, is left out, as a kubectl → API
   server write would be);
2. the pod's address is read back from the store (allocated by the apply transaction),
   through a store handle opened before the loop (a ``ciliate get`` here would delay the
   first probe by its own command run);
3. a thread that entered the prober pod's network namespace sends an ICMP echo to that
   address every 1 ms (bounded: 5 s) until the first reply: t1.

``t1 - t0`` is "apply → first packet forwarded" (the echo crossed the datapath both ways).
The agent's own per-pod numbers are read from its log: the reconcile of the round that
added the pod and the plumbing (namespace, veth, addresses, routes) inside it.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import json
import os
import queue
import re
import select
import socket
import struct
import threading
import time
from pathlib import Path
from typing import Any

from bench import netlab as nl
from ciliate.store.api import ObjectKey
from ciliate.store.sqlite import SQLiteStore

CLONE_NEWNET = 0x40000000
PROBE_INTERVAL = 0.001
PROBE_BOUND = 5.0
_RECONCILED = re.compile(
    r"reconciled rv (\d+): \+(\d+) -(\d+) pods, (\d+) map changes in ([\d.]+) ms"
    r"(?: \(pod wiring ([\d.]+) ms\))?"
    r"(?: \[(?P<laps>[^;\]]*); woke (?P<woke>[\d.]+) start (?P<start>[\d.]+)"
    r" forwarding (?P<fwd>[\d.]+) end (?P<end>[\d.]+)\])?"
)
_LAP = re.compile(r"(\w+) ([\d.]+)")


def _setns(fd: int) -> None:
    """setns(2) into a network namespace for the calling thread (os.setns is 3.12+)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(int(x) for x in struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def _echo(ident: int, seq: int) -> bytes:
    hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    payload = b"ciliate-bench"
    return struct.pack("!BBHHH", 8, 0, _checksum(hdr + payload), ident, seq) + payload


class Prober(threading.Thread):
    """Lives in the prober pod's network namespace; for each address put on ``jobs`` it
    pings every ``PROBE_INTERVAL`` until the first reply and puts the reply time (or None
    after ``PROBE_BOUND``) on ``results``."""

    def __init__(self, netns: str) -> None:
        super().__init__(daemon=True)
        self.netns = netns
        self.jobs: queue.Queue[str | None] = queue.Queue()
        self.results: queue.Queue[float | None] = queue.Queue()
        self.ready = threading.Event()
        self.error: str | None = None

    def run(self) -> None:
        try:
            fd = os.open(nl.netns_path(self.netns), os.O_RDONLY)
            try:
                _setns(fd)  # this thread only
            finally:
                os.close(fd)
            sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        except Exception as e:
            self.error = str(e)
            self.ready.set()
            return
        self.ready.set()
        ident = os.getpid() & 0xFFFF
        with sock:
            while (ip := self.jobs.get()) is not None:
                self.results.put(self._probe(sock, ip, ident))

    @staticmethod
    def _probe(sock: socket.socket, ip: str, ident: int) -> float | None:
        end = time.perf_counter() + PROBE_BOUND
        seq = 0
        while time.perf_counter() < end:
            seq = (seq + 1) & 0xFFFF
            with contextlib.suppress(OSError):  # no route yet
                sock.sendto(_echo(ident, seq), (ip, 0))
            deadline = time.perf_counter() + PROBE_INTERVAL
            while (left := deadline - time.perf_counter()) > 0:
                r, _, _ = select.select([sock], [], [], left)
                if not r:
                    break
                data, addr = sock.recvfrom(2048)
                ihl = (data[0] & 0x0F) * 4
                if (addr[0] == ip and len(data) >= ihl + 8 and data[ihl] == 0
                        and struct.unpack("!H", data[ihl + 4 : ihl + 6])[0] == ident):  # fmt: skip
                    return time.perf_counter()
        return None


def _pod(name: str, node: str) -> str:
    return json.dumps({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "ready"}},
        "spec": {"nodeName": node, "containers": [
            {"name": "c", "image": "netshoot", "command": ["sleep", "infinity"]}]},
    })  # fmt: skip


def _cli(state: Path, *args: str) -> str:
    """A CLI command in this process (no interpreter start-up in the measurement)."""
    from ciliate.cli.context import Context
    from ciliate.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    ctx = Context(state_dir=state, stdout=out, stderr=err)
    try:
        code = main(list(args), ctx)
    finally:
        ctx.close()
    if code != 0:
        raise RuntimeError(f"ciliate {' '.join(args)} -> {code}: {err.getvalue().strip()}")
    return out.getvalue()


def _agent_rounds(log: Path) -> list[dict[str, float]]:
    """The agent's reconcile rounds from its log: sizes, durations, the phases of the
    round (engine, remove, wire, maps, workloads, status, in ms) and its wall-clock
    marks (woke: the watch delivered the first event; forwarding: wired and every map
    entry written; end: status written)."""
    rounds = []
    text = log.read_text(errors="replace") if log.exists() else ""
    for m in _RECONCILED.finditer(text):
        r = {"rv": float(m.group(1)), "added": float(m.group(2)),
             "reconcile_ms": float(m.group(5)),
             "wiring_ms": float(m.group(6)) if m.group(6) else float("nan")}  # fmt: skip
        if m.group("laps") is not None:
            r.update({f"{k}_ms": float(v) for k, v in _LAP.findall(m.group("laps"))})
            r.update({k: float(m.group(k)) for k in ("woke", "start", "fwd", "end")})
        rounds.append(r)
    return rounds


SPLIT = (
    ("address", "apply start -> the agent's watch delivered the pod with its address"),
    ("queue", "watch delivery -> the agent's round started"),
    ("round", "round start -> pod wired and its map entries written"),
    ("packet", "map entries written -> first echo reply at the prober"),
)
"""The critical path of one pod, in order; the parts add up to apply → first packet.
``address`` holds the CLI's parse and admission, the pod's commit, the controllers'
address commit and the ring that wakes the agent; the apply's last fixed-point check
runs after it, in parallel with the agent's round (``apply`` reports it separately)."""


def _split(pods: list[dict[str, float]], rounds: list[dict[str, float]]) -> dict[str, list[float]]:
    """Per pod, ``apply → first packet`` cut at the agent's wall-clock marks: the round
    that wired the pod is the first round adding a pod that started after its apply
    began. Pods whose round cannot be found are left out of the split."""
    out: dict[str, list[float]] = {k: [] for k, _ in SPLIT}
    out.update({k: [] for k in ("apply", "engine_ms", "wire_ms", "maps_ms")})
    added = [r for r in rounds if r["added"] >= 1 and "fwd" in r]
    for p in pods:
        r = next((r for r in added if r["start"] >= p["t0"]), None)
        if r is None:
            continue
        added.remove(r)
        out["apply"].append((p["applied"] - p["t0"]) * 1e3)
        out["address"].append((r["woke"] - p["t0"]) * 1e3)
        out["queue"].append((r["start"] - r["woke"]) * 1e3)
        out["round"].append((r["fwd"] - r["start"]) * 1e3)
        out["packet"].append((p["t1"] - r["fwd"]) * 1e3)
        for k in ("engine_ms", "wire_ms", "maps_ms"):
            out[k].append(r.get(k, float("nan")))
    return out


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and all its threads so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _idle_cpu(pid: int, seconds: float) -> float:
    """Share of one vCPU the agent uses while nothing changes (watch, supervision, flow
    readers), in percent."""
    before, t = _cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return 100 * (_cpu_seconds(pid) - before) / (time.monotonic() - t)


def run(reps: int, quick: bool) -> dict[str, Any]:
    reason = nl.root_reason()
    if reason:
        print(f"pod_ready: skipped ({reason})")
        return {"suite": "pod_ready", "skipped": reason}
    n = 10 if quick else max(20, 10 * reps)
    started = time.time()
    samples: dict[str, list[float]] = {"same": [], "cross": []}
    apply_ms: list[float] = []
    marks: list[dict[str, float]] = []  # wall-clock t0 / applied / t1 per forwarded pod
    failures: list[str] = []
    with nl.Lab("ready") as lab:
        c = lab.cluster("r")
        c.create("bench", nodes=3)
        c.apply(_pod("prober", "bench-worker"))
        c.up()
        c.wait_revision()
        agent_pid = int(c.status()["agents"][0]["pid"])
        idle_cpu = _idle_cpu(agent_pid, 3.0 if quick else 10.0)
        rounds_before = len(_agent_rounds(c.state / "kernel" / "agent.log"))
        prober = Prober(c.pod_netns("default/prober"))
        prober.start()
        prober.ready.wait(10)
        if prober.error:
            raise RuntimeError(f"prober: {prober.error}")
        _cli(c.state, "get", "pods")  # imports the CLI once, outside the measurement
        store = SQLiteStore(c.state / "store.db")
        try:
            for i in range(n):
                group, node = ("same", "bench-worker") if i % 2 == 0 else ("cross", "bench-worker2")
                name = f"ready-{i:03d}"
                path = lab.tmp / f"{name}.json"
                path.write_text(_pod(name, node))
                wall0 = time.time()
                t0 = time.perf_counter()
                _cli(c.state, "apply", "-f", str(path))
                t_applied = time.perf_counter()
                doc = store.get(ObjectKey("Pod", "default", name)) or {}
                prober.jobs.put(str(doc["status"]["podIP"]))
                t1 = prober.results.get(timeout=PROBE_BOUND + 5)
                apply_ms.append((t_applied - t0) * 1e3)
                if t1 is None:
                    failures.append(f"{name} ({group}): no reply within {PROBE_BOUND} s")
                else:
                    samples[group].append((t1 - t0) * 1e3)
                    marks.append({"t0": wall0, "applied": wall0 + t_applied - t0,
                                  "t1": wall0 + t1 - t0})  # fmt: skip
                time.sleep(0.2)  # let the agent settle before the next pod
        finally:
            prober.jobs.put(None)
            store.close()
        rounds = _agent_rounds(c.state / "kernel" / "agent.log")[rounds_before:]
    added = [r for r in rounds if r["added"] >= 1]
    everything = samples["same"] + samples["cross"]
    stats = {k: {"n": len(v), "p50_ms": nl.median(v), "p99_ms": nl.quantile(v, 0.99),
                 "max_ms": max(v) if v else float("nan")}
             for k, v in (*samples.items(), ("all", everything))}  # fmt: skip
    reconcile = nl.summarize([r["reconcile_ms"] for r in added])
    wiring = nl.summarize([r["wiring_ms"] for r in added])
    agent = {"reconcile_ms": reconcile.as_dict(), "wiring_ms": wiring.as_dict(),
             "rounds": len(added)}  # fmt: skip
    rows = [[k, str(s["n"]), nl.fmt(s["p50_ms"]), nl.fmt(s["p99_ms"]), nl.fmt(s["max_ms"])]
            for k, s in stats.items()]  # fmt: skip
    headers = ["new pod vs prober", "pods", "apply→first packet p50 ms", "p99 ms", "max ms"]
    print(nl.table(headers, rows))
    print(
        f"   apply transaction alone: p50 {nl.fmt(nl.median(apply_ms))} ms; agent per pod: "
        f"reconcile p50 {nl.fmt(reconcile.median)} ms (max {nl.fmt(reconcile.hi)}), "
        f"plumbing p50 {nl.fmt(wiring.median)} ms (max {nl.fmt(wiring.hi)})"
    )
    split = _split(marks, rounds)
    print(f"   critical path of apply→first packet over {len(split['apply'])} pods (p50 / max ms):")
    for k, what in SPLIT:
        xs = split[k]
        print(f"     {k:<7} {nl.fmt(nl.median(xs)):>6} / {nl.fmt(max(xs) if xs else float('nan')):>6}"
              f"  {what}")  # fmt: skip
    print("     inside the round (p50 ms): "
          + ", ".join(f"{k.removesuffix('_ms')} {nl.fmt(nl.median(split[k]))}"
                      for k in ("engine_ms", "wire_ms", "maps_ms"))
          + f"; the apply command returned after p50 {nl.fmt(nl.median(split['apply']))} ms")  # fmt: skip
    print(f"   idle agent: {nl.fmt(idle_cpu)} % of a vCPU")
    for f in failures:
        print(f"   NOT FORWARDED: {f}")
    return {"suite": "pod_ready", "pods": n, "quick": quick, "probe_interval_ms": 1,
            "stats": stats, "apply_ms": nl.summarize(apply_ms).as_dict(), "agent": agent,
            "failures": failures, "samples_ms": samples, "agent_rounds": added,
            "split_ms": {k: nl.summarize(v).as_dict() for k, v in split.items()},
            "idle_agent_cpu_percent": idle_cpu,
            "seconds": round(time.time() - started, 1),
            "markdown": nl.markdown_table(headers, rows)}  # fmt: skip
