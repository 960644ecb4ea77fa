"""Datapath benchmark: pod<->pod request/response latency, connect latency and TCP
throughput through ciliate's kernel datapath, against the physical limit of this machine
(plain routed veth, plain VXLAN) and against the classic stack (reference CNI bridge +
host-local with the same policy as iptables rules).

Variants, all built at once and measured interleaved run by run (the baseline first and
last in every rep: the drift guard):

same node                                    cross node
- ``veth``     plain routed veth (baseline)  - ``vxlan``     plain kernel VXLAN (baseline)
                                             - ``vxlan-br``  the same over a bridge in a
                                               third namespace: the underlay ciliate's
                                               nodes have (second baseline, "x br")
                                             - ``vxlan-md``  that, with VXLAN in collect-
                                               metadata mode driven by a minimal eBPF
                                               redirect (bench/tools/md_redirect.c): the
                                               floor of Cilium's tunnel design ("x md")
- ``cil-0``    ciliate, no policy            - ``cil-0-x``   ciliate, no policy
- ``cil-1``    ciliate, one policy           - ``cil-1-x``   ciliate, one policy
- ``cil-1k``   ciliate, 1,000 policies       - ``cil-1k-x``  ciliate, 1,000 policies
- ``cni``      CNI bridge, no rules
- ``ipt-1``    CNI bridge + iptables, 1 allow rule in the pod's chain
- ``ipt-1k``   CNI bridge + iptables, 999 other rules before the allow rule
- ``ipt-1k-legacy`` the same with the legacy (x_tables) backend instead of nf_tables

ciliate variants are three real clusters (``cluster create`` with two workers, ``apply``,
``up``) side by side, in private state directories; the server pod's containers run the
servers (pinned with taskset); the client runs in the client pod's namespace via nsenter.
The policies are CiliumNetworkPolicies selecting the server pod (``app: srv``) and allowing
the client's identity on the measured ports; the 1,000-policy cluster adds 997 more, each
allowing the client identity on another port, so the server endpoint's policy map holds
~1,000 entries and the verdict path is exercised on every packet.

Metrics: ``sockperf pp --tcp`` (half round trip p50/p99, round trips/s; client and server
pinned to vCPU 1), TCP connect + 1-byte echo + close (p50 over a bounded loop, same pin:
the per-connection cost, where the iptables chain is walked), iperf3 single stream
(client on vCPU 0, server on vCPU 1). Ratios are per rep to the baseline of the same rep;
throughput's to the group baseline's stream measured right before or after the variant's
(alternating by rep), since a CPU-bound stream drifts with the host over a rep's minutes.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from bench import netlab as nl
from bench import tools

# The compiled connect client and echo server (bench/tools), shared by every variant so
# the connect figures carry no interpreter noise; None -> the Python fallbacks.
_TOOLS: dict[str, Path | None] = {"connect_loop": None, "echo_server": None}


def _build_tools(lab: nl.Lab) -> None:
    for name in _TOOLS:
        try:
            _TOOLS[name] = tools.build(name, lab.tmp)
        except tools.ToolError as e:  # reported; the Python loop still measures
            print(f"   {e}; using the Python fallback", flush=True)


RR_PORT = 11111
IPERF_PORT = 5201
ECHO_PORT = 7000
CNI_BIN = Path("/usr/lib/cni")


@dataclass(frozen=True)
class Target:
    """Where one variant is measured from and to."""

    name: str
    group: str  # "same" or "cross": the baseline it is compared with
    client_ns: str
    server_ip: str
    policy_entries: int = -1  # entries in the server endpoint's live policy map (ciliate)


# --- plain topologies ----------------------------------------------------------------------


def _pod_routed(lab: nl.Lab, node: str, pod: str, ip: str, host_if: str) -> None:
    """A Cilium-like routed pod: /32 on eth0, gateway 169.254.1.1 (answered by the host
    side, which holds that address), host route to the pod on the node."""
    lab.ip(node, "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", pod)
    lab.ip(node, "addr", "add", "169.254.1.1/32", "dev", host_if)
    lab.ip(node, "link", "set", host_if, "up")
    lab.ip(node, "route", "add", f"{ip}/32", "dev", host_if)
    lab.ip(pod, "addr", "add", f"{ip}/32", "dev", "eth0")
    lab.ip(pod, "link", "set", "eth0", "up")
    lab.ip(pod, "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link")
    lab.ip(pod, "route", "add", "default", "via", "169.254.1.1", "dev", "eth0")


def _servers(lab: nl.Lab, ns: str) -> None:
    lab.spawn(ns, ["sockperf", "sr", "--tcp", "-p", str(RR_PORT)], cpu=1)
    lab.spawn(ns, ["iperf3", "-s", "-p", str(IPERF_PORT)], cpu=1)
    lab.spawn(ns, nl.echo_server_argv(ECHO_PORT, tool=_TOOLS["echo_server"]), cpu=1)


def build_plain(lab: nl.Lab) -> list[Target]:
    n1, n2 = lab.ns("n1"), lab.ns("n2")
    pa, pb, pf = lab.ns("pa"), lab.ns("pb"), lab.ns("pf")
    for n in (n1, n2):
        lab.sysctl(n, "net.ipv4.ip_forward", "1")
    _pod_routed(lab, n1, pa, "192.168.10.1", "vpa")
    _pod_routed(lab, n1, pb, "192.168.10.2", "vpb")
    _pod_routed(lab, n2, pf, "192.168.20.2", "vpf")
    # underlay + VXLAN VNI 42 on port 8472 (Cilium's), MTU 1450 on the route to the
    # remote pods as ciliate's node routes have it
    lab.ip(n1, "link", "add", "u1", "type", "veth", "peer", "name", "u2", "netns", n2)
    for n, u, a, b, vx in ((n1, "u1", "172.31.0.1", "172.31.0.2", "10.99.0.1"),
                           (n2, "u2", "172.31.0.2", "172.31.0.1", "10.99.0.2")):  # fmt: skip
        lab.ip(n, "addr", "add", f"{a}/24", "dev", u)
        lab.ip(n, "link", "set", u, "up")
        lab.ip(n, "link", "add", "vx0", "type", "vxlan", "id", "42", "dstport", "8472",
               "local", a, "remote", b, "dev", u)  # fmt: skip
        lab.ip(n, "link", "set", "vx0", "mtu", "1450", "up")
        lab.ip(n, "addr", "add", f"{vx}/32", "dev", "vx0")
    lab.ip(n1, "route", "add", "10.99.0.2", "dev", "vx0", "scope", "link")
    lab.ip(n2, "route", "add", "10.99.0.1", "dev", "vx0", "scope", "link")
    lab.ip(n1, "route", "add", "192.168.20.0/24", "via", "10.99.0.2", "dev", "vx0", "mtu", "1450")
    lab.ip(n2, "route", "add", "192.168.10.0/24", "via", "10.99.0.1", "dev", "vx0", "mtu", "1450")
    _servers(lab, pb)
    _servers(lab, pf)
    return [Target("veth", "same", pa, "192.168.10.2"),
            Target("vxlan", "cross", pa, "192.168.20.2"),
            build_vxlan_bridged(lab), *build_vxlan_md(lab)]  # fmt: skip


def _fabric_node(lab: nl.Lab, node: str, fab: str, port: str, addr: str) -> None:
    """A node whose eth0 (``addr``/24) is a veth plugged into the fabric's bridge br0."""
    lab.sysctl(node, "net.ipv4.ip_forward", "1")
    lab.ip(node, "link", "add", "eth0", "type", "veth", "peer", "name", port, "netns", fab)
    lab.ip(fab, "link", "set", port, "master", "br0", "up")
    lab.ip(node, "addr", "add", f"{addr}/24", "dev", "eth0")
    lab.ip(node, "link", "set", "eth0", "up")


def build_vxlan_bridged(lab: nl.Lab) -> Target:
    """Plain VXLAN between two nodes whose eth0 veths meet on a Linux bridge in a third
    namespace: the underlay of a ciliate cluster (and of kind's docker bridge), so the
    ratio to it isolates what ciliate adds from what its multi-node fabric costs."""
    n3, n4, fab = lab.ns("n3"), lab.ns("n4"), lab.ns("fab")
    pg, ph = lab.ns("pg"), lab.ns("ph")
    lab.ip(fab, "link", "add", "br0", "type", "bridge")
    lab.ip(fab, "link", "set", "br0", "up")
    _pod_routed(lab, n3, pg, "192.168.30.1", "vpg")
    _pod_routed(lab, n4, ph, "192.168.40.2", "vph")
    for n, port, a, b, vx in ((n3, "f3", "172.32.0.3", "172.32.0.4", "10.98.0.3"),
                              (n4, "f4", "172.32.0.4", "172.32.0.3", "10.98.0.4")):  # fmt: skip
        _fabric_node(lab, n, fab, port, a)
        lab.ip(n, "link", "add", "vx0", "type", "vxlan", "id", "42", "dstport", "8472",
               "local", a, "remote", b, "dev", "eth0")  # fmt: skip
        lab.ip(n, "link", "set", "vx0", "mtu", "1450", "up")
        lab.ip(n, "addr", "add", f"{vx}/32", "dev", "vx0")
    lab.ip(n3, "route", "add", "10.98.0.4", "dev", "vx0", "scope", "link")
    lab.ip(n4, "route", "add", "10.98.0.3", "dev", "vx0", "scope", "link")
    lab.ip(n3, "route", "add", "192.168.40.0/24", "via", "10.98.0.4", "dev", "vx0", "mtu", "1450")
    lab.ip(n4, "route", "add", "192.168.30.0/24", "via", "10.98.0.3", "dev", "vx0", "mtu", "1450")
    _servers(lab, ph)
    return Target("vxlan-br", "cross", pg, "192.168.40.2")


def _md_program(lab: nl.Lab, name: str, remote: str, vxlan_ifindex: int, peer_mac: str) -> Path:
    """bench/tools/md_redirect.c compiled for one node (its constants baked in)."""
    src = Path(__file__).parent / "tools" / "md_redirect.c"
    out = lab.tmp / f"{name}.o"
    arch = f"/usr/include/{os.uname().machine}-linux-gnu"
    mac = ",".join(f"0x{b}" for b in peer_mac.split(":"))
    nl.run(["clang", "-O2", "-target", "bpf", f"-I{arch}", f"-DREMOTE={int(IPv4Address(remote))}",
            f"-DVXLAN={vxlan_ifindex}", f"-DPEER_MAC={mac}", "-c", str(src), "-o", str(out)])  # fmt: skip
    return out


def build_vxlan_md(lab: nl.Lab) -> list[Target]:
    """Plain VXLAN in collect-metadata ("external") mode on the bridged underlay, driven by
    a minimal eBPF redirect on each pod's host veth (bench/tools/md_redirect.c): the
    floor of Cilium's tunnel design, which ciliate follows (the VNI carries the source
    identity, so the tunnel key is set per packet). Not built without clang."""
    if shutil.which("clang") is None:
        print("   vxlan-md: no clang; variant skipped", flush=True)
        return []
    n5, n6, fab = lab.ns("n5"), lab.ns("n6"), f"{lab.prefix}-fab"
    pj, pk = lab.ns("pj"), lab.ns("pk")
    nodes = ((n5, "f5", pj, "192.168.50.1", "vpj", "172.32.0.5"),
             (n6, "f6", pk, "192.168.60.2", "vpk", "172.32.0.6"))  # fmt: skip
    for n, port, pod, ip, host_if, addr in nodes:
        _fabric_node(lab, n, fab, port, addr)
        lab.ip(n, "link", "add", "vx0", "type", "vxlan", "external", "dstport", "8472")
        lab.ip(n, "link", "set", "vx0", "up")
        _pod_routed(lab, n, pod, ip, host_if)
        # the redirect bypasses the node's routes (and their path MTU): the pod's own
        # default route carries the tunnel MTU, as ciliate's pods have it
        lab.ip(pod, "route", "change", "default", "via", "169.254.1.1", "dev", "eth0",
               "mtu", "1450")  # fmt: skip
    info = {}
    for n, *_ in nodes:
        out = json.loads(nl.run(["ip", "-n", n, "-j", "link", "show", "vx0"]).stdout)[0]
        info[n] = (int(out["ifindex"]), str(out["address"]))
    for (n, _, _, _, host_if, _), (far, _, _, _, _, far_addr) in zip(nodes, reversed(nodes),
                                                                      strict=True):  # fmt: skip
        obj = _md_program(lab, f"md-{host_if}", far_addr, info[n][0], info[far][1])
        nl.run(nl.in_netns(n, ["tc", "qdisc", "add", "dev", host_if, "clsact"]))
        # tc's object loader sets up /sys/fs/bpf/{tc,ip,xdp}: give it a private bpffs in
        # a throw-away mount namespace, so nothing is left in the machine's (the attached
        # program stays with the device)
        load = (f"mount -t bpf bpf /sys/fs/bpf && tc filter add dev {host_if} ingress bpf da "
                f"obj {obj} sec tc")  # fmt: skip
        nl.run(nl.in_netns(n, ["unshare", "--mount", "--propagation", "private",
                               "sh", "-c", load]))  # fmt: skip
    # the far side's stack receives the decapsulated packet and routes it to its pod
    _servers(lab, pk)
    return [Target("vxlan-md", "cross", pj, "192.168.60.2")]


# --- the classic stack: CNI bridge + host-local, policy as iptables ------------------------


def _cni_add(lab: nl.Lab, node: str, pod: str, cid: str) -> str:
    """CNI ADD with the reference bridge plugin (run inside the node namespace, so the
    bridge lives there); host-local keeps its leases under the lab's temp dir."""
    conf = {
        "cniVersion": "1.0.0", "name": "benchnet", "type": "bridge", "bridge": "cni0",
        "isGateway": True, "ipMasq": False, "mtu": 1500,
        "ipam": {"type": "host-local", "subnet": "10.22.0.0/24",
                 "routes": [{"dst": "0.0.0.0/0"}], "dataDir": str(lab.tmp / "cni")},
    }  # fmt: skip
    env = dict(os.environ, CNI_COMMAND="ADD", CNI_CONTAINERID=cid, CNI_NETNS=nl.netns_path(pod),
               CNI_IFNAME="eth0", CNI_PATH=str(CNI_BIN))  # fmt: skip
    out = nl.run(nl.in_netns(node, [str(CNI_BIN / "bridge")]), input=json.dumps(conf), env=env)
    return str(json.loads(out.stdout)["ips"][0]["address"]).split("/")[0]


def iptables_policy(server: str, client: str, ports: list[int], n_rules: int) -> str:
    """iptables-restore input for the server pod's ingress policy as Calico/kube-router
    style CNIs write it: FORWARD -> per-pod chain, ESTABLISHED/RELATED accepted first,
    then ``n_rules`` allow rules (the measured ports last, so a new connection walks all
    the others), then drop."""
    lines = ["*filter", ":BENCH-FORWARD - [0:0]", ":BENCH-POD-SRV - [0:0]",
             "-A FORWARD -j BENCH-FORWARD",
             f"-A BENCH-FORWARD -d {server}/32 -j BENCH-POD-SRV",
             "-A BENCH-POD-SRV -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"]  # fmt: skip
    for i in range(max(0, n_rules - 1)):
        lines.append(f"-A BENCH-POD-SRV -s {client}/32 -p tcp -m tcp --dport {20000 + i} -j ACCEPT")
    for port in ports:
        lines.append(f"-A BENCH-POD-SRV -s {client}/32 -p tcp -m tcp --dport {port} -j ACCEPT")
    lines += ["-A BENCH-POD-SRV -j DROP", "COMMIT", ""]
    return "\n".join(lines)


def build_classic(lab: nl.Lab, short: str, n_rules: int, legacy: bool = False) -> Target:
    node = lab.ns(f"k{short}")
    pc, pd = lab.ns(f"c{short}"), lab.ns(f"d{short}")
    lab.sysctl(node, "net.ipv4.ip_forward", "1")
    client = _cni_add(lab, node, pc, f"bench-c{short}")
    server = _cni_add(lab, node, pd, f"bench-d{short}")
    if n_rules:
        # bridged frames pass the iptables FORWARD hook only with br_netfilter's switch on
        # (per network namespace on this kernel)
        lab.sysctl(node, "net.bridge.bridge-nf-call-iptables", "1")
        rules = iptables_policy(server, client, [RR_PORT, IPERF_PORT, ECHO_PORT], n_rules)
        restore = "iptables-legacy-restore" if legacy else "iptables-nft-restore"
        nl.run(nl.in_netns(node, [restore, "--noflush"]), input=rules)
    _servers(lab, pd)
    name = "cni" if n_rules == 0 else f"ipt-{'1k' if n_rules >= 1000 else n_rules}"
    name += "-legacy" if legacy else ""
    return Target(name, "same", pc, server)


# --- ciliate clusters ----------------------------------------------------------------------


def _pods_manifest() -> str:
    echo = nl.echo_server_argv(ECHO_PORT, tool=_TOOLS["echo_server"])
    srv = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "srv", "namespace": "default", "labels": {"app": "srv"}},
        "spec": {"nodeName": "bench-worker", "containers": [
            {"name": "rr", "image": "netshoot",
             "command": ["taskset", "-c", "1", "sockperf", "sr", "--tcp", "-p", str(RR_PORT)]},
            {"name": "stream", "image": "netshoot",
             "command": ["taskset", "-c", "1", "iperf3", "-s", "-p", str(IPERF_PORT)]},
            {"name": "echo", "image": "netshoot", "command": ["taskset", "-c", "1", *echo]},
        ]},
    }  # fmt: skip
    docs = [srv]
    for name, node in (("cli", "bench-worker"), ("cli-x", "bench-worker2")):
        docs.append({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": {"app": "cli"}},
            "spec": {"nodeName": node, "containers": [
                {"name": "c", "image": "netshoot", "command": ["sleep", "infinity"]}]},
        })  # fmt: skip
    return "\n---\n".join(json.dumps(d) for d in docs)


def policies_manifest(n: int) -> str:
    """``n`` CiliumNetworkPolicies selecting the server pod: one allows the client on the
    measured ports, the others allow the client on one other port each."""
    docs = []
    for i in range(n):
        ports = [RR_PORT, IPERF_PORT, ECHO_PORT] if i == n - 1 else [20000 + i]
        docs.append({
            "apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy",
            "metadata": {"name": f"bench-{i:05d}", "namespace": "default"},
            "spec": {"endpointSelector": {"matchLabels": {"app": "srv"}},
                     "ingress": [{"fromEndpoints": [{"matchLabels": {"app": "cli"}}],
                                  "toPorts": [{"ports": [{"port": str(p), "protocol": "TCP"}
                                                         for p in ports]}]}]},
        })  # fmt: skip
    return "\n---\n".join(json.dumps(d) for d in docs)


def build_ciliate(lab: nl.Lab, short: str, n_policies: int) -> list[Target]:
    c = lab.cluster(short)
    c.create("bench", nodes=3)
    c.apply(_pods_manifest())
    if n_policies:
        c.apply(policies_manifest(n_policies))
    c.up()
    c.wait_revision()
    server = c.pod_ip("default", "srv")
    # proof that the verdict path is exercised: the live kernel map of the server endpoint
    text = c.cli("bpf", "policy", "get", "default/srv", "--node", "bench-worker", "-n")
    entries = sum(1 for line in text.splitlines() if line.startswith(("Allow", "Deny")))
    label = {0: "0", 1: "1"}.get(n_policies, "1k" if n_policies == 1000 else str(n_policies))
    same = Target(f"cil-{label}", "same", c.pod_netns("default/cli"), server, entries)
    cross = Target(f"cil-{label}-x", "cross", c.pod_netns("default/cli-x"), server, entries)
    return [same, cross]


# --- measurement ---------------------------------------------------------------------------


# Pause before each measurement: every one starts from a settled machine, not while
# the previous one's aftermath still runs (an agent turning the connect loop's ~6,000
# flow events into Hubble flows used to overlap the next iperf3 run of ciliate variants
# only). The agent's own cost is real; it is not the datapath's throughput.
SETTLE_S = 1.0


def measure(t: Target, rr_secs: float, stream_secs: float, conns: int,
            base: Target | None = None, base_first: bool = False) -> dict[str, float]:  # fmt: skip
    """One run of every metric for ``t``; with ``base`` (its group's baseline) that
    baseline's stream is measured next to ``t``'s as well (``gbps_pair``)."""
    rr = nl.sockperf_pp(t.client_ns, t.server_ip, RR_PORT, rr_secs, cpu=1)
    time.sleep(SETTLE_S)
    conn = nl.connect_latency(t.client_ns, t.server_ip, ECHO_PORT, conns, cpu=1,
                              tool=_TOOLS["connect_loop"])  # fmt: skip
    time.sleep(SETTLE_S)
    pair = math.nan
    if base is not None and base_first:
        pair = stream_pair(base, stream_secs, base_first=True)
    stream = nl.iperf3(t.client_ns, t.server_ip, IPERF_PORT, stream_secs, cpu=0)
    if base is not None and not base_first:
        pair = stream_pair(base, stream_secs, base_first=False)
    if base is None:  # a group baseline: its own neighbour
        pair = stream.gbps
    return {"rr_p50": rr.p50, "rr_p99": rr.p99, "rr_per_s": rr.rr_per_s,
            "conn_p50": nl.median(conn), "conn_p99": nl.quantile(conn, 0.99),
            "gbps": stream.gbps, "retransmits": stream.retransmits,
            "gbps_pair": pair}  # fmt: skip


METRICS = ("rr_p50", "rr_p99", "rr_per_s", "conn_p50", "conn_p99", "gbps", "retransmits",
           "gbps_pair")  # fmt: skip
# the group baselines: the throughput ratio's denominator is measured next to each variant
BASELINES = {"same": "veth", "cross": "vxlan"}


def stream_pair(base: Target, stream_secs: float, base_first: bool) -> float:
    """The group baseline's throughput measured right next to a variant's stream (before it
    or after it, alternating by rep): single-stream throughput is CPU-bound on one vCPU
    and drifts with the host's load over the minutes a rep takes, so its ratio is taken
    between neighbours in time rather than against the rep's first and last baseline."""
    if not base_first:
        time.sleep(SETTLE_S)
    gbps = nl.iperf3(base.client_ns, base.server_ip, IPERF_PORT, stream_secs, cpu=0).gbps
    if base_first:
        time.sleep(SETTLE_S)
    return gbps


def run(reps: int, quick: bool) -> dict[str, Any]:
    reason = nl.root_reason()
    if reason:
        print(f"datapath: skipped ({reason})")
        return {"suite": "datapath", "skipped": reason}
    n_pol = 1000
    rr_secs, stream_secs, conns = (1.0, 1.0, 100) if quick else (3.0, 3.0, 1000)
    reps = max(1, reps)
    errors: dict[str, str] = {}
    started = time.time()
    with nl.Lab("dp") as lab:
        _build_tools(lab)
        targets = build_plain(lab)
        for short, n, legacy in (("c0", 0, False), ("c1", 1, False), ("c1k", 1000, False),
                                 ("l1k", 1000, True)):  # fmt: skip
            try:
                targets.append(build_classic(lab, short, n, legacy))
            except Exception as e:  # report, never fake a number
                errors[f"classic-{n}{'-legacy' if legacy else ''}"] = str(e)
        # the three clusters are built in parallel (CLI processes; the agent waits are I/O)
        with ThreadPoolExecutor(max_workers=3) as pool:
            futures = {n: pool.submit(build_ciliate, lab, short, n)
                       for short, n in (("z0", 0), ("z1", 1), ("z1k", n_pol))}  # fmt: skip
            for n, fut in futures.items():
                try:
                    targets += fut.result()
                except Exception as e:  # report, never fake a number
                    errors[f"ciliate-{n}"] = str(e)[-500:]
        for t in targets:
            if not nl.wait_port(t.client_ns, t.server_ip, ECHO_PORT, timeout=15):
                errors[t.name] = f"server {t.server_ip}:{ECHO_PORT} not reachable from the client"
        order = [t for t in targets if t.name not in errors]
        base = order[0]  # veth: first and last in every rep (the drift guard)
        by_name = {t.name: t for t in order}
        print(
            f"   built {len(order)} variants in {time.time() - started:.0f} s; "
            f"rr {rr_secs}s, stream {stream_secs}s, {conns} connects per run",
            flush=True,
        )

        def one_rep(rep: int) -> dict[str, dict[str, float]]:
            res = {"__first": measure(base, rr_secs, stream_secs, conns)}
            rot = order[1:]
            k = rep % max(1, len(rot))
            for t in rot[k:] + rot[:k]:  # rotate so no variant always runs right after another
                pair = by_name.get(BASELINES[t.group])
                res[t.name] = measure(t, rr_secs, stream_secs, conns,
                                      base=None if pair is t else pair,
                                      base_first=rep % 2 == 1)  # fmt: skip
            res["__last"] = measure(base, rr_secs, stream_secs, conns)
            return res

        def first_last(r: dict[str, dict[str, float]]) -> tuple[float, float]:
            return r["__first"]["rr_p50"], r["__last"]["rr_p50"]

        raw: dict[str, dict[str, list[float]]] = {t.name: {m: [] for m in METRICS} for t in order}
        noisy_reps = 0
        for rep, res, noisy in nl.rep_loop(reps, one_rep, first_last):
            noisy_reps += noisy
            for t in order:
                if t is base:
                    # the baseline's value of the rep: the mean of its first and last run
                    vals = {m: (res["__first"][m] + res["__last"][m]) / 2 for m in METRICS}
                else:
                    vals = res[t.name]
                for m in METRICS:
                    raw[t.name][m].append(vals[m])
            print(f"   rep {rep + 1}/{reps} done{' (noisy)' if noisy else ''}", flush=True)
    left = nl.leftovers()
    result = summarize_results(order, raw, reps, quick, n_pol, errors, noisy_reps)
    result["seconds"] = round(time.time() - started, 1)
    if left:
        result["leftover_namespaces"] = left
        print(f"WARNING: namespaces left behind: {left}")
    return result


def summarize_results(order: list[Target], raw: dict[str, dict[str, list[float]]], reps: int,
                      quick: bool, n_pol: int, errors: dict[str, str],
                      noisy_reps: int) -> dict[str, Any]:  # fmt: skip
    baselines = BASELINES
    bridged = raw.get("vxlan-br", {})  # the second cross-node baseline (same underlay)
    md = raw.get("vxlan-md", {})  # the third: the same in collect-metadata mode
    summary: dict[str, Any] = {}
    for t in order:
        b = raw.get(baselines[t.group], {})
        entry: dict[str, Any] = {"group": t.group}
        if t.policy_entries >= 0:
            entry["server_policy_map_entries"] = t.policy_entries
        for m in METRICS:
            entry[m] = nl.summarize(raw[t.name][m]).as_dict()
            if m == "gbps":  # against the baseline stream next to it (stream_pair)
                entry[f"ratio_{m}"] = nl.summarize(
                    nl.paired_ratios(raw[t.name][m], raw[t.name]["gbps_pair"])
                ).as_dict()
            elif b and m != "gbps_pair":
                entry[f"ratio_{m}"] = nl.summarize(nl.paired_ratios(raw[t.name][m], b[m])).as_dict()
            for kind, other in (("br", bridged), ("md", md)):
                if t.group == "cross" and other:
                    entry[f"ratio_{kind}_{m}"] = nl.summarize(
                        nl.paired_ratios(raw[t.name][m], other[m])
                    ).as_dict()
        summary[t.name] = entry
    rows = []
    for t in order:
        e = summary[t.name]

        def cell(m: str, e: dict[str, Any] = e) -> str:
            s = e[m]
            return f"{nl.fmt(s['median'])} [{nl.fmt(s['q1'])}–{nl.fmt(s['q3'])}]"

        def rat(m: str, e: dict[str, Any] = e, kind: str = "ratio") -> str:
            r = e.get(f"{kind}_{m}", {}).get("median", math.nan)
            return f"{nl.fmt(r)}x" if not math.isnan(r) else ""

        rows.append([t.name, t.group, cell("rr_p50"), nl.fmt(e["rr_p99"]["median"]), rat("rr_p50"),
                     rat("rr_p50", kind="ratio_br"), rat("rr_p50", kind="ratio_md"),
                     cell("conn_p50"), rat("conn_p50"), cell("gbps"), rat("gbps"),
                     rat("gbps", kind="ratio_br"), rat("gbps", kind="ratio_md"),
                     nl.fmt(e["retransmits"]["median"])])  # fmt: skip
    headers = ["variant", "node", "RR p50 µs [IQR]", "RR p99", "xbase", "x br", "x md",
               "connect p50 µs [IQR]", "xbase", "Gbit/s [IQR]", "xbase", "x br", "x md",
               "retr"]  # fmt: skip
    print(nl.table(headers, rows))
    for t in order:
        if t.policy_entries >= 0 and t.group == "same":
            print(f"   {t.name}: {t.policy_entries} entries in the server endpoint's policy map")
    for k, v in errors.items():
        print(f"   {k}: NOT MEASURED: {v}")
    return {
        "suite": "datapath", "reps": reps, "quick": quick, "policies": n_pol,
        "pinning": {"rr": "client+server taskset -c 1", "connect": "client+server taskset -c 1",
                    "stream": "client taskset -c 0, server taskset -c 1"},
        "noisy_reps": noisy_reps, "errors": errors, "summary": summary, "raw": raw,
        "markdown": nl.markdown_table(headers, rows),
    }  # fmt: skip
