"""Service benchmark: TCP connect latency to a ClusterIP with 10, 1,000 and 10,000
services -- ciliate's eBPF load balancer against a kube-proxy-style iptables chain of the
same services.

Variants, built at once and measured interleaved run by run:

- ``cil-N``: a ciliate cluster (``cluster create`` with two workers, ``apply``, ``up``)
  with three backend pods (``app: srv``, a one-byte echo server each, pinned to vCPU 1),
  a client pod on the same node, and N ClusterIP services selecting the backends; the
  measured service is the last one created.
- ``ipt-N``: kube-proxy's iptables layout, generated as kube-proxy writes it and loaded
  with ``iptables-restore`` (iptables-nft, Debian's default) inside a private node
  namespace: ``PREROUTING/OUTPUT -> KUBE-SERVICES`` (one rule per service, the target
  last) ``-> KUBE-SVC-<hash>`` (KUBE-MARK-MASQ for off-cluster sources, then ``statistic
  --mode random`` over the endpoints) ``-> KUBE-SEP-<hash>`` (DNAT), KUBE-POSTROUTING
  masquerade for marked packets, KUBE-FORWARD in filter. Same pods: a routed client and
  three backends with the same echo server.

Metric: TCP connect() + one byte echoed + close, from the client namespace, client and
server pinned to vCPU 1, a bounded loop of samples; p50/p99 per run, median over runs.
Ratios: ours(N)/ours(10) and iptables(N)/ours(N), per rep.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import time
from dataclasses import dataclass
from typing import Any

from bench import netlab as nl

ECHO_PORT = 7000
SVC_PORT = 80
POD_CIDR = "10.244.0.0/16"


@dataclass(frozen=True)
class Target:
    name: str
    size: int
    client_ns: str
    vip: str


def _hash16(text: str) -> str:
    """kube-proxy's chain-name hash: base32 of sha256, first 16 characters."""
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()[:16]


def service_ip(i: int) -> str:
    """The i-th service address in 10.96.0.0/12, from 10.96.0.10 on (the low addresses
    are the API server's and DNS's in Kubernetes)."""
    n = (10 << 24) | (96 << 16)
    n += 10 + i
    return f"{n >> 24 & 255}.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"


def kube_proxy_rules(vips: list[str], backends: list[str]) -> str:
    """iptables-restore input in kube-proxy's iptables-mode layout for one TCP port per
    service and the same endpoints behind every service."""
    nat = ["*nat", ":KUBE-SERVICES - [0:0]", ":KUBE-NODEPORTS - [0:0]",
           ":KUBE-POSTROUTING - [0:0]", ":KUBE-MARK-MASQ - [0:0]"]  # fmt: skip
    rules = [
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


def build_iptables(lab: nl.Lab, size: int) -> Target:
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
        lab.spawn(pod, nl.echo_server_argv(ECHO_PORT), cpu=1)
        backends.append(ip)
    vips = [service_ip(i) for i in range(size)]
    t = time.perf_counter()
    nl.run(nl.in_netns(node, ["iptables-restore"]), input=kube_proxy_rules(vips, backends),
           timeout=300)  # fmt: skip
    print(f"   ipt-{size}: iptables-restore of {size} services in "
          f"{time.perf_counter() - t:.2f} s", flush=True)  # fmt: skip
    return Target(f"ipt-{size}", size, client, vips[-1])


def _manifest(size: int) -> str:
    docs: list[dict[str, Any]] = []
    for j in range(3):
        docs.append({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"srv-{j}", "namespace": "default", "labels": {"app": "srv"}},
            "spec": {"nodeName": "bench-worker", "containers": [
                {"name": "echo", "image": "netshoot",
                 "command": ["taskset", "-c", "1", *nl.echo_server_argv(ECHO_PORT)]}]},
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


def build_ciliate(lab: nl.Lab, size: int) -> Target:
    c = lab.cluster(f"s{size}")
    c.create("bench", nodes=3)
    t = time.perf_counter()
    c.apply(_manifest(size), timeout=900)
    applied = time.perf_counter() - t
    t = time.perf_counter()
    c.up()
    c.wait_revision()
    print(f"   cil-{size}: apply {applied:.1f} s, up {time.perf_counter() - t:.1f} s", flush=True)
    doc = json.loads(c.cli("get", "svc", f"svc-{size - 1:05d}", "-n", "default", "-o", "json"))
    return Target(f"cil-{size}", size, c.pod_netns("default/cli"), str(doc["spec"]["clusterIP"]))


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
    with nl.Lab("svc") as lab:
        targets: list[Target] = []
        for size in sizes:
            for build in (build_ciliate, build_iptables):
                try:
                    targets.append(build(lab, size))
                except Exception as e:  # report, never fake a number
                    errors[f"{build.__name__.removeprefix('build_')}-{size}"] = str(e)[-500:]
        ok = []
        for t in targets:
            if nl.wait_port(t.client_ns, t.vip, SVC_PORT, timeout=15):
                ok.append(t)
            else:
                errors[t.name] = f"service {t.vip}:{SVC_PORT} does not answer from the client"
        base = next((t for t in ok if t.name == f"cil-{sizes[0]}"), ok[0] if ok else None)
        raw: dict[str, dict[str, list[float]]] = {t.name: {"p50": [], "p99": []} for t in ok}
        noisy_reps = 0
        if base is not None:
            print(
                f"   built {len(ok)} variants in {time.time() - started:.0f} s; "
                f"{samples} connects per run",
                flush=True,
            )

            def one_rep(rep: int) -> dict[str, list[float]]:
                res = {"__first": nl.connect_latency(base.client_ns, base.vip, SVC_PORT, samples)}
                rot = [t for t in ok if t is not base]
                k = rep % max(1, len(rot))
                for t in rot[k:] + rot[:k]:
                    res[t.name] = nl.connect_latency(t.client_ns, t.vip, SVC_PORT, samples)
                res["__last"] = nl.connect_latency(base.client_ns, base.vip, SVC_PORT, samples)
                return res

            def first_last(r: dict[str, list[float]]) -> tuple[float, float]:
                return nl.median(r["__first"]), nl.median(r["__last"])

            for rep, res, noisy in nl.rep_loop(reps, one_rep, first_last):
                noisy_reps += noisy
                for t in ok:
                    xs = res["__first"] + res["__last"] if t is base else res[t.name]
                    raw[t.name]["p50"].append(nl.median(xs))
                    raw[t.name]["p99"].append(nl.quantile(xs, 0.99))
                print(f"   rep {rep + 1}/{reps} done{' (noisy)' if noisy else ''}", flush=True)
    left = nl.leftovers()
    result = _report(ok, raw, sizes, reps, quick, samples, errors, noisy_reps)
    result["seconds"] = round(time.time() - started, 1)
    if left:
        result["leftover_namespaces"] = left
        print(f"WARNING: namespaces left behind: {left}")
    return result


def _report(ok: list[Target], raw: dict[str, dict[str, list[float]]], sizes: list[int],
            reps: int, quick: bool, samples: int, errors: dict[str, str],
            noisy_reps: int) -> dict[str, Any]:  # fmt: skip
    small = f"cil-{sizes[0]}"
    summary: dict[str, Any] = {}
    rows = []
    for t in ok:
        p50 = nl.summarize(raw[t.name]["p50"])
        p99 = nl.summarize(raw[t.name]["p99"])
        entry: dict[str, Any] = {"size": t.size, "p50_us": p50.as_dict(), "p99_us": p99.as_dict()}
        ours = f"cil-{t.size}"
        if small in raw:
            entry["ratio_to_cil_smallest"] = nl.summarize(
                nl.paired_ratios(raw[t.name]["p50"], raw[small]["p50"])
            ).as_dict()
        if t.name.startswith("ipt") and ours in raw:
            entry["ratio_to_ours_same_size"] = nl.summarize(
                nl.paired_ratios(raw[t.name]["p50"], raw[ours]["p50"])
            ).as_dict()
        same_kind_small = f"{t.name.split('-')[0]}-{sizes[0]}"
        if same_kind_small in raw:
            # what the service lookup adds over the smallest table of the same kind (µs):
            # the part of the connect time that grows with the number of services
            entry["added_us_vs_smallest"] = nl.summarize([
                a - b for a, b in zip(raw[t.name]["p50"], raw[same_kind_small]["p50"], strict=False)
                if not (math.isnan(a) or math.isnan(b))]).as_dict()  # fmt: skip
        summary[t.name] = entry
        to_ours = entry.get("ratio_to_ours_same_size", {}).get("median", math.nan)
        rows.append([t.name, str(t.size), p50.spread(), nl.fmt(p99.median),
                     f"{nl.fmt(entry.get('ratio_to_cil_smallest', {}).get('median', math.nan))}x",
                     f"{nl.fmt(to_ours)}x" if t.name.startswith("ipt") else "",
                     nl.fmt(entry.get("added_us_vs_smallest", {}).get("median", math.nan))])  # fmt: skip
    headers = [
        "variant",
        "services",
        "connect p50 µs [IQR]",
        "p99 µs",
        f"x {small}",
        "x ours",
        f"+µs vs {sizes[0]}",
    ]
    print(nl.table(headers, rows))
    for k, v in errors.items():
        print(f"   {k}: NOT MEASURED: {v}")
    return {"suite": "services", "reps": reps, "quick": quick, "sizes": sizes,
            "samples_per_run": samples, "pinning": "client+server taskset -c 1",
            "noisy_reps": noisy_reps, "errors": errors, "summary": summary, "raw": raw,
            "markdown": nl.markdown_table(headers, rows)}  # fmt: skip
