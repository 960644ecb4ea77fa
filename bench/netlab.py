"""Shared helpers of the datapath benchmarks: private namespaces, pinned tool runs,
ciliate clusters driven through the real CLI, and the statistics of the method.

Role: everything the ``datapath``, ``services`` and ``pod_ready`` suites share.

- ``Lab``: a context manager that creates network namespaces with unique names
  (``bench-<pid>-<suite>-<short>``), starts processes, brings ciliate clusters up in
  private state directories, and removes all of it on exit -- also after an error or
  Ctrl-C. Nothing is configured in the root namespace: links, addresses, routes and
  iptables rules are all made inside namespaces the lab created.
- ``sockperf_pp`` / ``iperf3``: one pinned measurement (``taskset``) run from inside a
  namespace with ``nsenter`` (never ``ip netns exec``: it remounts /sys, which a cluster's
  bpffs pins must not see).
- Statistics (pure functions, unit-tested): quantiles, median + IQR summaries, ratios,
  the drift guard, and a plain-text table.

Inputs: root, iproute2, iperf3, sockperf, nsenter, taskset. Outputs: numbers, never
assertions. Imports ciliate only to name a cluster's namespaces (``ClusterNames``);
bench/ sits outside the package's import layers.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

# --- statistics ------------------------------------------------------------------------


def quantile(xs: Sequence[float], q: float) -> float:
    """The q-quantile (0 <= q <= 1) with linear interpolation between order statistics
    (numpy's default 'linear' method); NaN for no samples."""
    if not xs:
        return math.nan
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile {q} outside [0, 1]")
    s = sorted(xs)
    pos = q * (len(s) - 1)
    lo = math.floor(pos)
    hi = math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def median(xs: Sequence[float]) -> float:
    return quantile(xs, 0.5)


@dataclass(frozen=True, slots=True)
class Summary:
    """Median of the per-run values with the interquartile range and the extremes."""

    n: int
    median: float
    q1: float
    q3: float
    lo: float
    hi: float

    def as_dict(self) -> dict[str, float | int]:
        return {"n": self.n, "median": self.median, "q1": self.q1, "q3": self.q3,
                "min": self.lo, "max": self.hi}  # fmt: skip

    def spread(self) -> str:
        """``median [q1–q3]``, as the tables print it."""
        return f"{fmt(self.median)} [{fmt(self.q1)}–{fmt(self.q3)}]"


def summarize(xs: Sequence[float]) -> Summary:
    vals = [x for x in xs if not math.isnan(x)]
    if not vals:
        return Summary(0, math.nan, math.nan, math.nan, math.nan, math.nan)
    return Summary(len(vals), median(vals), quantile(vals, 0.25), quantile(vals, 0.75),
                   min(vals), max(vals))  # fmt: skip


def ratio(a: float, b: float) -> float:
    """a / b; NaN when either is missing or b is zero (never a fake number)."""
    if math.isnan(a) or math.isnan(b) or b == 0:
        return math.nan
    return a / b


def paired_ratios(xs: Sequence[float], base: Sequence[float]) -> list[float]:
    """Per-rep ratios of a variant to the baseline measured in the same rep (side by side,
    so slow drift of the machine cancels); pairs with a missing value are skipped."""
    return [ratio(x, b) for x, b in zip(xs, base, strict=False) if not math.isnan(ratio(x, b))]


def drift_ok(first: float, last: float, tolerance: float = 0.10) -> bool:
    """The drift guard: the baseline measured first and last in a rep must agree within
    ``tolerance`` (relative to the smaller one), else the rep is discarded as noisy."""
    if math.isnan(first) or math.isnan(last) or min(first, last) <= 0:
        return False
    return abs(first - last) / min(first, last) <= tolerance


def fmt(x: float, digits: int = 3) -> str:
    if math.isnan(x):
        return "n/a"
    if x == 0:
        return "0"
    mag = math.floor(math.log10(abs(x)))
    decimals = max(0, digits - 1 - mag)
    return f"{x:.{decimals}f}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A left-aligned first column and right-aligned others, padded to fit."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    lines = []
    for r in [headers, *rows]:
        cells = [str(c).ljust(widths[i]) if i == 0 else str(c).rjust(widths[i])
                 for i, c in enumerate(r)]  # fmt: skip
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


# --- tool output parsing -----------------------------------------------------------------

_PCT = re.compile(r"percentile\s+(\d+\.\d+)\s*=\s*([\d.]+)")
_VALID = re.compile(
    r"\[Valid Duration\] RunTime=([\d.]+) sec; SentMessages=(\d+); ReceivedMessages=(\d+)"
)


@dataclass(frozen=True, slots=True)
class RR:
    """One sockperf ping-pong run: half round trip percentiles (µs) and round trips/s."""

    p50: float
    p99: float
    rr_per_s: float


NO_RR = RR(math.nan, math.nan, math.nan)


def parse_sockperf(text: str) -> RR:
    """Reads sockperf 3.x ping-pong output; NaN fields when a value is absent."""
    pct = {float(k): float(v) for k, v in _PCT.findall(text)}
    m = _VALID.search(text)
    rr = int(m.group(3)) / float(m.group(1)) if m and float(m.group(1)) > 0 else math.nan
    return RR(pct.get(50.0, math.nan), pct.get(99.0, math.nan), rr)


@dataclass(frozen=True, slots=True)
class Stream:
    """One iperf3 run: Gbit/s received and the sender's TCP retransmissions."""

    gbps: float
    retransmits: float


NO_STREAM = Stream(math.nan, math.nan)


def parse_iperf3(text: str) -> Stream:
    """``iperf3 -J`` output; NaN fields when the test failed."""
    try:
        end = json.loads(text)["end"]
        return Stream(float(end["sum_received"]["bits_per_second"]) / 1e9,
                      float(end["sum_sent"].get("retransmits", math.nan)))  # fmt: skip
    except (ValueError, KeyError, TypeError, AttributeError):
        return NO_STREAM


# --- namespaces, processes, clusters -----------------------------------------------------

NETNS_DIR = Path("/run/netns")


def netns_path(name: str) -> str:
    return str(NETNS_DIR / name)


def in_netns(ns: str, argv: Sequence[str], cpu: int | None = None) -> list[str]:
    """argv run inside namespace ``ns`` (a /run/netns name or a path), pinned to ``cpu``."""
    path = ns if ns.startswith("/") else netns_path(ns)
    pin = ["taskset", "-c", str(cpu)] if cpu is not None else []
    return [*pin, "nsenter", f"--net={path}", "--", *argv]


def run(argv: Sequence[str], timeout: float = 60.0, input: str | None = None,
        check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                          input=input, env=env)  # fmt: skip
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} -> {proc.returncode}: {proc.stderr.strip()[-400:]}")
    return proc


def sockperf_pp(ns: str, ip: str, port: int, secs: float, cpu: int = 1) -> RR:
    """TCP ping-pong from ``ns`` to ip:port, pinned to ``cpu`` (the server must be pinned
    to the same vCPU: across vCPUs this VM adds ~40 µs wake-up latency)."""
    # sockperf takes whole seconds only ("-t 0.5" is refused: every run would be n/a).
    argv = ["sockperf", "pp", "--tcp", "-i", ip, "-p", str(port), "-t", str(max(1, round(secs)))]
    try:
        proc = run(in_netns(ns, argv, cpu), timeout=secs + 15, check=False)
    except subprocess.TimeoutExpired:
        return NO_RR
    return parse_sockperf(proc.stdout + proc.stderr)


def iperf3(ns: str, ip: str, port: int, secs: float, cpu: int | None = 0) -> Stream:
    """Single-stream TCP throughput from ``ns`` (client pinned to ``cpu``)."""
    argv = ["iperf3", "-c", ip, "-p", str(port), "-t", str(secs), "-J"]
    try:
        proc = run(in_netns(ns, argv, cpu), timeout=secs + 20, check=False)
    except subprocess.TimeoutExpired:
        return NO_STREAM
    return parse_iperf3(proc.stdout)


def wait_port(ns: str, ip: str, port: int, timeout: float = 10.0) -> bool:
    """Bounded wait until a TCP server answers connect() at ip:port from ``ns``."""
    code = (
        "import socket,sys,time\n"
        f"end=time.monotonic()+{timeout}\n"
        "while time.monotonic()<end:\n"
        "  s=socket.socket(); s.settimeout(0.2)\n"
        f"  try: s.connect(('{ip}',{port})); sys.exit(0)\n"
        "  except OSError: time.sleep(0.05)\n"
        "  finally: s.close()\n"
        "sys.exit(1)\n"
    )
    try:
        return run(in_netns(ns, [sys.executable, "-c", code]), timeout=timeout + 5,
                   check=False).returncode == 0  # fmt: skip
    except subprocess.TimeoutExpired:
        return False


def ciliate_argv(state: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "ciliate", "--state", str(state), *args]


class Cluster:
    """A ciliate cluster in its own state directory, driven through the CLI."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.is_up = False

    def cli(self, *args: str, timeout: float = 300.0, input: str | None = None) -> str:
        return run(ciliate_argv(self.state, *args), timeout=timeout, input=input).stdout

    def create(self, name: str, nodes: int = 3) -> None:
        self.cli("cluster", "create", name, "--nodes", str(nodes))

    def apply(self, manifest: str, timeout: float = 600.0) -> None:
        self.cli("apply", "-f", "-", input=manifest, timeout=timeout)

    def up(self) -> None:
        self.is_up = True  # down is attempted even if up fails half way
        self.cli("up", timeout=300)

    def down(self) -> None:
        if not self.is_up:
            return
        run(ciliate_argv(self.state, "down"), timeout=120, check=False)
        self.is_up = False
        from ciliate.datapath.linux import runtime
        from ciliate.datapath.linux.topology import ClusterNames, cluster_tag, teardown

        names = ClusterNames(cluster_tag(self.state))
        left = [n for n in os.listdir(NETNS_DIR) if n.startswith(names.prefix)]
        if left or names.pin_root.exists():
            # `down` must leave nothing; if it did, say so and remove it anyway
            print(f"WARNING: ciliate down left {left or ''} {names.pin_root}; removing", flush=True)
            teardown(names)
            runtime.remove_pins(names)

    def status(self) -> dict[str, Any]:
        return dict(json.loads(self.cli("status", "-o", "json")))

    def pod_netns(self, key: str) -> str:
        from ciliate.datapath.linux.topology import ClusterNames, cluster_tag

        return ClusterNames(cluster_tag(self.state)).pod(key)

    def pod_ip(self, namespace: str, name: str) -> str:
        doc = json.loads(self.cli("get", "pod", name, "-n", namespace, "-o", "json"))
        return str(doc["status"]["podIP"])

    def wait_revision(self, timeout: float = 600.0) -> None:
        """Bounded wait until the agent has reconciled the store's latest version (the
        status revision stops moving and matches across two reads)."""
        end = time.monotonic() + timeout
        last = -1
        while time.monotonic() < end:
            rev = int(self.status().get("revision", -1))
            if rev == last:
                return
            last = rev
            time.sleep(1.0)


class Lab:
    """Namespaces, processes and clusters of one suite run, all removed on exit."""

    def __init__(self, suite: str) -> None:
        self.prefix = f"bench-{os.getpid()}-{suite}"
        self.netns: list[str] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        self.clusters: list[Cluster] = []
        self.tmp = Path(tempfile.mkdtemp(prefix=f"{self.prefix}-"))
        self._old_term: Any = None

    def __enter__(self) -> Lab:
        def on_term(signum: int, frame: FrameType | None) -> None:
            raise KeyboardInterrupt  # so the finally blocks clean up

        self._old_term = signal.signal(signal.SIGTERM, on_term)
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        self.close()
        signal.signal(signal.SIGTERM, self._old_term)

    # namespaces
    def ns(self, short: str) -> str:
        name = f"{self.prefix}-{short}"
        run(["ip", "netns", "add", name])
        self.netns.append(name)
        run(["ip", "-n", name, "link", "set", "lo", "up"])
        return name

    def ip(self, ns: str, *args: str) -> None:
        run(["ip", "-n", ns, *args])

    def sysctl(self, ns: str, key: str, value: str) -> None:
        run(in_netns(ns, ["sysctl", "-qw", f"{key}={value}"]))

    # processes
    def spawn(
        self, ns: str, argv: Sequence[str], cpu: int | None = None
    ) -> subprocess.Popen[bytes]:
        p = subprocess.Popen(in_netns(ns, argv, cpu), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        self.procs.append(p)
        return p

    # clusters
    def cluster(self, short: str) -> Cluster:
        c = Cluster(self.tmp / short)
        self.clusters.append(c)
        return c

    def close(self) -> None:
        # a second ^C (or a TERM) while cleaning up must not leave namespaces behind:
        # the signals wait until everything of the lab is gone
        old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            self._close()
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)

    def _close(self) -> None:
        for p in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=5)
        self.procs.clear()
        for c in self.clusters:
            with contextlib.suppress(Exception):
                c.down()
        self.clusters.clear()
        for name in reversed(self.netns):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
        self.netns.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)


def leftovers(prefix: str = "bench-") -> list[str]:
    """Namespaces of this process still present (the suites print them if any)."""
    mine = f"{prefix}{os.getpid()}-"
    return [n for n in os.listdir(NETNS_DIR) if n.startswith(mine)] if NETNS_DIR.exists() else []


def root_reason() -> str | None:
    """Why a kernel suite cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root"
    missing = [t for t in ("ip", "nsenter", "taskset") if shutil.which(t) is None]
    return f"missing tools: {', '.join(missing)}" if missing else None


def rep_loop(
    reps: int, body: Any, baseline_of: Any, retries: int = 3
) -> Iterator[tuple[int, Any, bool]]:
    """Runs ``body(rep)`` ``reps`` times; a rep whose baseline drifted (``baseline_of(result)``
    gives (first, last)) is repeated up to ``retries`` times, then kept and flagged noisy.
    Yields (rep, result, noisy)."""
    for rep in range(reps):
        for attempt in range(retries + 1):
            result = body(rep)
            first, last = baseline_of(result)
            ok = drift_ok(first, last)
            if ok or attempt == retries:
                yield rep, result, not ok
                break
            print(f"   rep {rep}: baseline drifted ({fmt(first)} -> {fmt(last)}); retrying",
                  flush=True)  # fmt: skip


# --- connect latency ---------------------------------------------------------------------
#
# Two implementations of the same pair: the C tools of bench/tools/ (``connect_loop``,
# ``echo_server``: the services suite, where the overhead to resolve is about a µs) and
# the Python scripts below (kept for the datapath suite's existing figures; a Python loop
# adds ~10 µs of interpreter time per sample on the shared vCPU, with µs of jitter).
# ``tool=`` selects the C binary; the default stays Python.

_ECHO = """\
import selectors, socket, sys
socks = []
for p in sys.argv[1:]:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", int(p)))
    s.listen(1024)
    socks.append(s)
def serve(s):
    c, _ = s.accept()
    try:
        d = c.recv(64)
        if d:
            c.sendall(d)
    except OSError:
        pass
    c.close()
if len(socks) == 1:  # one port: no select() per connection (the datapath suite's figures)
    while True:
        serve(socks[0])
sel = selectors.DefaultSelector()
for s in socks:
    sel.register(s, selectors.EVENT_READ)
while True:
    for key, _ in sel.select():
        serve(key.fileobj)
"""

_CONNECT = """\
import json, socket, sys, time
ip, port, n, budget = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
out, end = [], time.monotonic() + budget
for i in range(n + 10):
    if time.monotonic() > end:
        break
    s = socket.socket()
    s.settimeout(1.0)
    t = time.perf_counter_ns()
    try:
        s.connect((ip, port))
        s.sendall(b"x")
        if s.recv(1) == b"x" and i >= 10:  # the first 10 warm caches up
            out.append((time.perf_counter_ns() - t) / 1000)
    except OSError:
        pass
    finally:
        s.close()
print(json.dumps(out))
"""


def echo_server_argv(port: int, *more_ports: int, tool: Path | None = None) -> list[str]:
    """A one-byte echo server (accept, echo, close) on ``port`` and ``more_ports``: the far
    end of ``connect_latency`` / ``connect_interleaved``. ``tool``: the compiled
    ``echo_server`` (bench/tools), else the Python script."""
    ports = [str(p) for p in (port, *more_ports)]
    if tool is not None:
        return [str(tool), *ports]
    return [sys.executable, "-c", _ECHO, *ports]


@dataclass(frozen=True, slots=True)
class ConnectRun:
    """One ``connect_loop`` run: per-target samples (µs) and failed attempts, by label."""

    mode: str
    samples: dict[str, list[float]]
    errors: dict[str, int]

    def get(self, label: str) -> list[float]:
        return self.samples.get(label, [])


NO_CONNECT_RUN = ConnectRun("", {}, {})


def parse_connect_loop(text: str) -> ConnectRun:
    """``connect_loop``'s JSON (bench/tools/connect_loop.c); an empty run when the output
    is missing or malformed (a failed run is no samples, never a number)."""
    try:
        doc = json.loads(text)
        samples = {str(t["label"]): [float(x) for x in t["samples_us"]] for t in doc["targets"]}
        errors = {str(t["label"]): int(t["errors"]) for t in doc["targets"]}
        return ConnectRun(str(doc["mode"]), samples, errors)
    except (ValueError, KeyError, TypeError):
        return NO_CONNECT_RUN


def connect_target_arg(label: str, ips: Sequence[str], port: int) -> str:
    """One ``LABEL=IP[,IP...]:PORT`` argument of connect_loop."""
    if not re.fullmatch(r"[A-Za-z0-9_-]+", label) or not ips:
        raise ValueError(f"connect target {label!r}: label must be [A-Za-z0-9_-]+, ips non-empty")
    return f"{label}={','.join(ips)}:{port}"


def connect_interleaved(ns: str, targets: dict[str, tuple[Sequence[str], int]], n: int,
                        tool: Path, cpu: int = 1, budget: float = 20.0, mode: str = "echo",
                        warmup: int = 10, seed: int = 1, close: str = "rst") -> ConnectRun:  # fmt: skip
    """``n`` rounds from ``ns``, each one connection to every target (label -> (ips,
    port); one of several ips at random), in an order shuffled each round (``seed``);
    pinned to ``cpu``; bounded by ``budget`` seconds; ``close`` "rst" (abortive: no
    TIME_WAIT builds up) or "fin". Per-target medians of one run are paired."""
    args = [connect_target_arg(label, ips, port) for label, (ips, port) in targets.items()]
    argv = [str(tool), "-m", mode, "-c", close, "-n", str(n), "-w", str(warmup),
            "-t", str(budget), "-s", str(seed), *args]  # fmt: skip
    try:
        proc = run(in_netns(ns, argv, cpu), timeout=budget + 15, check=False)
    except subprocess.TimeoutExpired:
        return NO_CONNECT_RUN
    return parse_connect_loop(proc.stdout)


def connect_latency(ns: str, ip: str, port: int, n: int, cpu: int = 1,
                    budget: float = 20.0, tool: Path | None = None) -> list[float]:  # fmt: skip
    """µs per TCP connect() + 1-byte echo from ``ns`` (close follows, untimed), ``n``
    samples at most and ``budget`` seconds at most (a bounded loop); failed attempts are not
    samples. ``tool``: the compiled ``connect_loop`` (bench/tools), else a Python loop."""
    if tool is not None:
        return connect_interleaved(ns, {"t": ([ip], port)}, n, tool, cpu, budget).get("t")
    argv = [sys.executable, "-c", _CONNECT, ip, str(port), str(n), str(budget)]
    try:
        proc = run(in_netns(ns, argv, cpu), timeout=budget + 15, check=False)
        return [float(x) for x in json.loads(proc.stdout or "[]")]
    except (subprocess.TimeoutExpired, ValueError):
        return []
