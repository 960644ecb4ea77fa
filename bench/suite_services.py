"""Service benchmark: what a ClusterIP lookup adds to a TCP connection with 10, 1,000 and
10,000 services -- ciliate's eBPF load balancer against a kube-proxy-style iptables chain
of the same services (goal G5 of issue 6).

Variants, built at once and measured interleaved run by run:

- ``cil-N``: a ciliate cluster (``cluster create`` with two workers, ``apply``, ``up``)
  with three backend pods (``app: srv``, a C echo server each on ports 7000 and 7001,
  pinned to vCPU 1), a client pod on the same node, and N ClusterIP services (port 80 ->
  7000) selecting the backends.
- ``ipt-N``: kube-proxy's iptables layout, generated as kube-proxy writes it and loaded
  with ``iptables-restore`` (iptables-nft, Debian's default) inside a private node
  namespace: ``PREROUTING/OUTPUT -> KUBE-SERVICES`` (one rule per service, the last
  created last) ``-> KUBE-SVC-<hash>`` (KUBE-MARK-MASQ for off-cluster sources, then
  ``statistic --mode random`` over the endpoints) ``-> KUBE-SEP-<hash>`` (DNAT),
  KUBE-POSTROUTING masquerade for marked packets, KUBE-FORWARD in filter. Same pods: a
  routed client and three backends with the same echo server.

One run of a variant is one ``connect_loop`` process (bench/tools, C, CLOCK_MONOTONIC)
in the client's namespace, pinned to vCPU 1 with the servers, making rounds of one
connection to each of four targets in a shuffled order:

- ``vip``: the last-created service (the end of the iptables chain: the worst case);
- ``vip_mid``: a service at a seeded random position;
- ``direct``: the same three backends directly on port 7001 -- the connection without the
  service lookup (iptables: one RETURN rule lets port 7001 skip ``KUBE-SERVICES``);
- ``direct_walk``: the backends directly on port 7000. On a kube-proxy node this new
  connection still walks ``KUBE-SERVICES`` (the tax on every non-service connection); in
  ciliate it is the same path as ``direct``, so ``direct_walk − direct`` there is a null
  measurement: the noise floor of the method.

A sample is connect() + one byte echoed (close follows, untimed and abortive: no
TIME_WAIT piles up on the port ``vip`` and ``direct_walk`` share). Per run and target: p50
and p99. Per rep, paired inside the run: ``overhead = p50(vip) − p50(direct)``. Over
reps: median and IQR; the iptables/ciliate overhead ratio per ``bench.overhead.compare``
(a lower bound when ciliate's overhead is within noise of zero). Totals are kept:
iptables/ciliate on ``vip`` p50, and ciliate's lat(N)/lat(10).

Inputs: root, iproute2, iptables-restore, nsenter, taskset, a C compiler. Outputs: the
result dict and two printed tables (``analyse`` is pure and unit-tested). Must not import
ciliate except through ``bench.netlab``'s cluster helpers.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import netlab as nl
from bench import overhead as oh
from bench import tools

ECHO_PORT = 7000  # the services' targetPort; reached directly, iptables walks the chain
PLAIN_PORT = 7001  # the same servers; exempted from the iptables service chain
SVC_PORT = 80
POD_CIDR = "10.244.0.0/16"
LABELS = ("vip", "vip_mid", "direct", "direct_walk")


def mid_index(size: int) -> int:
    """The seeded random position of the ``vip_mid`` service: one of the services before
    the last (the same index for both variants of a size)."""
    return random.Random(size).randrange(max(1, size - 1))


@dataclass(frozen=True)
class Target:
    name: str
    kind: str  # "cil" | "ipt"
    size: int
    client_ns: str
    vip: str
    vip_mid: str
    backends: tuple[str, ...]

    def targets(self) -> dict[str, tuple[Sequence[str], int]]:
        return {"vip": ([self.vip], SVC_PORT), "vip_mid": ([self.vip_mid], SVC_PORT),
                "direct": (self.backends, PLAIN_PORT),
                "direct_walk": (self.backends, ECHO_PORT)}  # fmt: skip


def _hash16(text: str) -> str:
    """kube-proxy's chain-name hash: base32 of sha256, first 16 characters."""
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()[:16]


def service_ip(i: int) -> str:
    """The i-th service address in 10.96.0.0/12, from 10.96.0.10 on (the low addresses
    are the API server's and DNS's in Kubernetes)."""
    n = (10 << 24) | (96 << 16)
    n += 10 + i
    return f"{n >> 24 & 255}.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"


def kube_proxy_rules(vips: list[str], backends: list[str], exempt_port: int | None = None) -> str:
    """iptables-restore input in kube-proxy's iptables-mode layout for one TCP port per
    service and the same endpoints behind every service.

    ``exempt_port``: one rule that is *not* kube-proxy's, first in PREROUTING: new
    connections to that destination port return before ``KUBE-SERVICES``, so the suite
    can measure the same connection without the service lookup (the ``direct`` baseline;
    on a kube-proxy node every new connection, service or not, walks ``KUBE-SERVICES``).
    It costs the other connections one non-matching rule (~10 ns)."""
    nat = ["*nat", ":KUBE-SERVICES - [0:0]", ":KUBE-NODEPORTS - [0:0]",
           ":KUBE-POSTROUTING - [0:0]", ":KUBE-MARK-MASQ - [0:0]"]  # fmt: skip
    rules = [] if exempt_port is None else [
        f'-A PREROUTING -p tcp -m tcp --dport {exempt_port} -m comment --comment '
        '"bench: direct baseline, not a kube-proxy rule" -j RETURN']  # fmt: skip
    rules += [
        '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',
        "-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000",
        "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN",
        "-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000",
        '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" '
        "-j MASQUERADE --random-fully",
    ]
    chains: list[str] = []
    svc_rules: list[str] = []
    for i, vip in enumerate(vips):
        spn = f"default/svc-{i:05d}:http"
        svc = f"KUBE-SVC-{_hash16(spn + 'tcp')}"
        chains.append(f":{svc} - [0:0]")
        rules.append(f'-A KUBE-SERVICES -d {vip}/32 -p tcp -m comment --comment "{spn} cluster IP" '
                     f"-m tcp --dport {SVC_PORT} -j {svc}")  # fmt: skip
        svc_rules.append(f'-A {svc} ! -s {POD_CIDR} -d {vip}/32 -p tcp -m comment --comment '
                         f'"{spn} cluster IP" -m tcp --dport {SVC_PORT} -j KUBE-MARK-MASQ')  # fmt: skip
        n = len(backends)
        for j, be in enumerate(backends):
            ep = f"{be}:{ECHO_PORT}"
            sep = f"KUBE-SEP-{_hash16(spn + 'tcp' + ep)}"
            chains.append(f":{sep} - [0:0]")
            prob = 1.0 / (n - j)
            stat = (f"-m statistic --mode random --probability {prob:.11f} "
                    if j < n - 1 else "")  # fmt: skip
            svc_rules.append(f'-A {svc} -m comment --comment "{spn} -> {ep}" {stat}-j {sep}')
            svc_rules.append(f'-A {sep} -s {be}/32 -m comment --comment "{spn}" -j KUBE-MARK-MASQ')
            svc_rules.append(f'-A {sep} -p tcp -m comment --comment "{spn}" -m tcp '
                             f"-j DNAT --to-destination {ep}")  # fmt: skip
    rules.append('-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: '
                 'this must be the last rule in this chain" -m addrtype --dst-type LOCAL '
                 "-j KUBE-NODEPORTS")  # fmt: skip
    filt = ["*filter", ":KUBE-FORWARD - [0:0]", ":KUBE-SERVICES - [0:0]",
            '-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD',
            "-A FORWARD -m conntrack --ctstate NEW -m comment --comment "
            '"kubernetes service portals" -j KUBE-SERVICES',
            "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP",
            '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" '
            "-m mark --mark 0x4000/0x4000 -j ACCEPT",
            '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" '
            "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT", "COMMIT"]  # fmt: skip
    return "\n".join([*nat, *chains, *rules, *svc_rules, "COMMIT", *filt, ""])


def _routed_pod(lab: nl.Lab, node: str, pod: str, ip: str, host_if: str) -> None:
    lab.ip(node, "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", pod)
    lab.ip(node, "addr", "add", "169.254.1.1/32", "dev", host_if)
    lab.ip(node, "link", "set", host_if, "up")
    lab.ip(node, "route", "add", f"{ip}/32", "dev", host_if)
    lab.ip(pod, "addr", "add", f"{ip}/32", "dev", "eth0")
    lab.ip(pod, "link", "set", "eth0", "up")
    lab.ip(pod, "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link")
    lab.ip(pod, "route", "add", "default", "via", "169.254.1.1", "dev", "eth0")


@dataclass(frozen=True)
class Tools:
    """The compiled bench/tools binaries of one run."""

    connect_loop: Path
    echo_server: Path


def build_iptables(lab: nl.Lab, size: int, tl: Tools) -> Target:
    short = f"k{size}"
    node = lab.ns(short)
    lab.sysctl(node, "net.ipv4.ip_forward", "1")
    client = lab.ns(f"{short}c")
    _routed_pod(lab, node, client, "10.244.1.10", "vcli")
    backends = []
    for j in range(3):
        pod = lab.ns(f"{short}b{j}")
        ip = f"10.244.1.{20 + j}"
        _routed_pod(lab, node, pod, ip, f"vb{j}")
        lab.spawn(pod, nl.echo_server_argv(ECHO_PORT, PLAIN_PORT, tool=tl.echo_server), cpu=1)
        backends.append(ip)
    vips = [service_ip(i) for i in range(size)]
    t = time.perf_counter()
    rules = kube_proxy_rules(vips, backends, exempt_port=PLAIN_PORT)
    nl.run(nl.in_netns(node, ["iptables-restore"]), input=rules, timeout=300)
    print(f"   ipt-{size}: iptables-restore of {size} services in "
          f"{time.perf_counter() - t:.2f} s", flush=True)  # fmt: skip
    return Target(f"ipt-{size}", "ipt", size, client, vips[-1], vips[mid_index(size)],
                  tuple(backends))  # fmt: skip


def _manifest(size: int, echo_server: Path) -> str:
    docs: list[dict[str, Any]] = []
    for j in range(3):
        argv = nl.echo_server_argv(ECHO_PORT, PLAIN_PORT, tool=echo_server)
        docs.append({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"srv-{j}", "namespace": "default", "labels": {"app": "srv"}},
            "spec": {"nodeName": "bench-worker", "containers": [
                {"name": "echo", "image": "netshoot", "command": ["taskset", "-c", "1", *argv]}]},
        })  # fmt: skip
    docs.append({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "cli", "namespace": "default", "labels": {"app": "cli"}},
        "spec": {"nodeName": "bench-worker", "containers": [
            {"name": "c", "image": "netshoot", "command": ["sleep", "infinity"]}]},
    })  # fmt: skip
    for i in range(size):
        docs.append({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": f"svc-{i:05d}", "namespace": "default"},
            "spec": {"selector": {"app": "srv"},
                     "ports": [{"name": "http", "port": SVC_PORT, "targetPort": ECHO_PORT,
                                "protocol": "TCP"}]},
        })  # fmt: skip
    return "\n---\n".join(json.dumps(d) for d in docs)


def build_ciliate(lab: nl.Lab, size: int, tl: Tools) -> Target:
    c = lab.cluster(f"s{size}")
    c.create("bench", nodes=3)
    t = time.perf_counter()
    c.apply(_manifest(size, tl.echo_server), timeout=900)
    applied = time.perf_counter() - t
    t = time.perf_counter()
    c.up()
    c.wait_revision()
    print(f"   cil-{size}: apply {applied:.1f} s, up {time.perf_counter() - t:.1f} s", flush=True)

    def cluster_ip(i: int) -> str:
        doc = json.loads(c.cli("get", "svc", f"svc-{i:05d}", "-n", "default", "-o", "json"))
        return str(doc["spec"]["clusterIP"])

    backends = tuple(c.pod_ip("default", f"srv-{j}") for j in range(3))
    return Target(f"cil-{size}", "cil", size, c.pod_netns("default/cli"), cluster_ip(size - 1),
                  cluster_ip(mid_index(size)), backends)  # fmt: skip


def _measure(t: Target, samples: int, tl: Tools, seed: int) -> nl.ConnectRun:
    return nl.connect_interleaved(t.client_ns, t.targets(), samples, tl.connect_loop, cpu=1,
                                  budget=30.0, seed=seed)  # fmt: skip


Raw = dict[str, dict[str, dict[str, list[float]]]]  # variant -> label -> p50|p99 -> per rep


def run(reps: int, quick: bool) -> dict[str, Any]:
    reason = nl.root_reason()
    if reason:
        print(f"services: skipped ({reason})")
        return {"suite": "services", "skipped": reason}
    sizes = [10, 100, 1000] if quick else [10, 1000, 10000]
    samples = 300 if quick else 2000
    reps = max(1, reps)
    started = time.time()
    errors: dict[str, str] = {}
    failed: dict[str, dict[str, int]] = {}
    with nl.Lab("svc") as lab:
        try:
            tl = Tools(tools.build("connect_loop", lab.tmp), tools.build("echo_server", lab.tmp))
        except tools.ToolError as e:
            print(f"services: skipped ({e})")
            return {"suite": "services", "skipped": str(e)}
        targets: list[Target] = []
        for size in sizes:
            for build in (build_ciliate, build_iptables):
                try:
                    targets.append(build(lab, size, tl))
                except Exception as e:  # report, never fake a number
                    errors[f"{build.__name__.removeprefix('build_')}-{size}"] = str(e)[-500:]
        ok = []
        for t in targets:
            dead = [f"{ip}:{port}" for ips, port in t.targets().values() for ip in ips
                    if not nl.wait_port(t.client_ns, ip, port, timeout=15)]  # fmt: skip
            if dead:
                errors[t.name] = f"no answer from the client to {', '.join(dead)}"
            else:
                ok.append(t)
        base = next((t for t in ok if t.name == f"cil-{sizes[0]}"), ok[0] if ok else None)
        raw: Raw = {t.name: {k: {"p50": [], "p99": []} for k in LABELS} for t in ok}
        failed = {t.name: dict.fromkeys(LABELS, 0) for t in ok}
        noisy_reps = 0
        if base is not None:
            print(f"   built {len(ok)} variants in {time.time() - started:.0f} s; "
                  f"{samples} rounds of {len(LABELS)} connects per run", flush=True)  # fmt: skip

            def one_rep(rep: int) -> dict[str, nl.ConnectRun]:
                res = {"__first": _measure(base, samples, tl, 2 * rep + 1)}
                rot = [t for t in ok if t is not base]
                k = rep % max(1, len(rot))
                for t in rot[k:] + rot[:k]:
                    res[t.name] = _measure(t, samples, tl, 2 * rep + 1)
                res["__last"] = _measure(base, samples, tl, 2 * rep + 2)
                return res

            def first_last(r: dict[str, nl.ConnectRun]) -> tuple[float, float]:
                return nl.median(r["__first"].get("vip")), nl.median(r["__last"].get("vip"))

            for rep, res, noisy in nl.rep_loop(reps, one_rep, first_last):
                noisy_reps += noisy
                for t in ok:
                    runs = [res["__first"], res["__last"]] if t is base else [res[t.name]]
                    for label in LABELS:
                        xs = [x for r in runs for x in r.get(label)]
                        raw[t.name][label]["p50"].append(nl.median(xs))
                        raw[t.name][label]["p99"].append(nl.quantile(xs, 0.99))
                        failed[t.name][label] += sum(r.errors.get(label, 0) for r in runs)
                print(f"   rep {rep + 1}/{reps} done{' (noisy)' if noisy else ''}", flush=True)
    left = nl.leftovers()
    analysis = analyse(raw, sizes)
    print(nl.table(MAIN_HEADERS, analysis["rows"]))
    print()
    print(nl.table(EXTRA_HEADERS, analysis["extra_rows"]))
    print(
        f"   noise floor (ciliate direct_walk − direct, q3 of |Δ|): {nl.fmt(analysis['noise_us'])} µs"
    )
    for k, v in errors.items():
        print(f"   {k}: NOT MEASURED: {v}")
    result = {"suite": "services", "reps": reps, "quick": quick, "sizes": sizes,
              "samples_per_run": samples, "client": "bench/tools/connect_loop.c -m echo -c rst",
              "pinning": "client+servers taskset -c 1", "noisy_reps": noisy_reps,
              "errors": errors, "failed_connects": failed, "raw": raw,
              "noise_us": analysis["noise_us"], "summary": analysis["summary"],
              "table": analysis["table"],
              "markdown": nl.markdown_table(MAIN_HEADERS, analysis["rows"]),
              "markdown_extra": nl.markdown_table(EXTRA_HEADERS, analysis["extra_rows"])}  # fmt: skip
    result["seconds"] = round(time.time() - started, 1)
    if left:
        result["leftover_namespaces"] = left
        print(f"WARNING: namespaces left behind: {left}")
    return result


# --- analysis (pure: raw per-rep p50s in, summaries and table rows out) -------------------

MAIN_HEADERS = ["services", "ciliate VIP p50 µs", "direct p50 µs", "overhead µs [IQR]",
                "iptables VIP p50 µs", "direct p50 µs", "overhead µs [IQR]",
                "overhead ratio iptables/ciliate"]  # fmt: skip
EXTRA_HEADERS = ["services", "random position: ciliate overhead µs", "iptables overhead µs",
                 "ratio", "iptables tax on a non-service connection µs",
                 "ciliate null (noise) µs", "VIP total iptables/ciliate",
                 "ciliate VIP lat(N)/lat(smallest)",
                 "the same, direct-normalised"]  # fmt: skip


def _side(r: dict[str, dict[str, list[float]]] | None) -> dict[str, Any]:
    """One variant's per-rep values: p50s and the paired differences to ``direct``."""
    if r is None:
        return {}
    p50 = {k: r[k]["p50"] for k in LABELS}
    return {
        "p50_us": p50,
        "p99_us": {k: r[k]["p99"] for k in LABELS},
        "overhead_us": oh.paired_differences(p50["vip"], p50["direct"]),
        "overhead_mid_us": oh.paired_differences(p50["vip_mid"], p50["direct"]),
        "walk_us": oh.paired_differences(p50["direct_walk"], p50["direct"]),
    }


def _med(side: dict[str, Any], key: str, label: str | None = None) -> str:
    if not side:
        return "n/a"
    xs = side[key][label] if label else side[key]
    return nl.fmt(nl.summarize(xs).median)


def _spread(side: dict[str, Any], key: str) -> str:
    return nl.summarize(side[key]).spread() if side else "n/a"


def analyse(raw: Raw, sizes: Sequence[int]) -> dict[str, Any]:
    """Summaries per size, the overhead ratios (``bench.overhead.compare``, the noise
    pooled over every ciliate variant's null pair) and the rows of both tables."""
    sides = {name: _side(r) for name, r in raw.items()}
    noise = oh.noise_floor([x for name, s in sides.items() if name.startswith("cil-")
                            for x in s["walk_us"]])  # fmt: skip
    small = raw.get(f"cil-{sizes[0]}") if sizes else None
    summary: dict[str, Any] = {}
    rows: list[list[str]] = []
    extra: list[list[str]] = []
    table: list[dict[str, Any]] = []
    for n in sizes:
        cil, ipt = sides.get(f"cil-{n}", {}), sides.get(f"ipt-{n}", {})
        ratio = oh.compare(ipt.get("overhead_us", []), cil.get("overhead_us", []), noise)
        ratio_mid = oh.compare(ipt.get("overhead_mid_us", []), cil.get("overhead_mid_us", []),
                               noise)  # fmt: skip
        total = nl.summarize(nl.paired_ratios(ipt["p50_us"]["vip"], cil["p50_us"]["vip"])
                             if cil and ipt else [])  # fmt: skip
        scale = nl.summarize(nl.paired_ratios(cil["p50_us"]["vip"], small["vip"]["p50"])
                             if cil and small else [])  # fmt: skip
        # the same ratio with the cluster-to-cluster difference of the plain path taken
        # out: this cluster's direct p50 plus the smallest table's overhead, per rep
        small_ovh = ([v - d for v, d in zip(small["vip"]["p50"], small["direct"]["p50"],
                                            strict=False)] if small else [])  # fmt: skip
        scale_direct = nl.summarize(nl.paired_ratios(
            cil["p50_us"]["vip"],
            [d + o for d, o in zip(cil["p50_us"]["direct"], small_ovh, strict=False)])
            if cil and small_ovh else [])  # fmt: skip
        entry: dict[str, Any] = {"overhead_ratio": ratio.as_dict(),
                                 "overhead_ratio_mid": ratio_mid.as_dict(),
                                 "vip_total_ratio": total.as_dict(),
                                 "cil_vs_smallest": scale.as_dict(),
                                 "cil_vs_smallest_direct_normalised": scale_direct.as_dict()}  # fmt: skip
        for kind, s in (("ciliate", cil), ("iptables", ipt)):
            if s:
                entry[kind] = {
                    **{f"{k}_p50_us": nl.summarize(v).as_dict() for k, v in s["p50_us"].items()},
                    "vip_p99_us": nl.summarize(s["p99_us"]["vip"]).as_dict(),
                    **{k: nl.summarize(s[k]).as_dict()
                       for k in ("overhead_us", "overhead_mid_us", "walk_us")},
                }  # fmt: skip
        summary[str(n)] = entry
        rows.append([f"{n:,}", _med(cil, "p50_us", "vip"), _med(cil, "p50_us", "direct"),
                     _spread(cil, "overhead_us"), _med(ipt, "p50_us", "vip"),
                     _med(ipt, "p50_us", "direct"), _spread(ipt, "overhead_us"),
                     ratio.text()])  # fmt: skip
        extra.append([f"{n:,}", _spread(cil, "overhead_mid_us"), _spread(ipt, "overhead_mid_us"),
                      ratio_mid.text(), _spread(ipt, "walk_us"), _spread(cil, "walk_us"),
                      f"{nl.fmt(total.median)}×", f"{scale.spread()}×",
                      f"{scale_direct.spread()}×"])  # fmt: skip
        table.append(dict(zip(MAIN_HEADERS, rows[-1], strict=True)))
    return {"noise_us": noise, "summary": summary, "rows": rows, "extra_rows": extra,
            "table": table}  # fmt: skip
