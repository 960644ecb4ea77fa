"""Flow pipeline benchmark: what one kernel event costs the agent's flow pump.

The pump (``datapath/linux/nodeprograms.FlowPump``) takes ring-buffer records through
``parse_event`` -> ``FlowEnricher.to_flows`` -> ``FlowLogWriter.write`` (Hubble JSON
lines). Here the same functions run on synthetic records in ``bpf/lib/trace.h``'s layout
(``datapath/linux/eventsynth``) for a node of a cluster with many pods, in the mix a burst
of short TCP connections produces (traces to endpoint / stack / overlay, replies, policy
verdicts, some drops by policy), without a kernel and without root.

Rows (per event, CPU time of this thread):

- ``pipeline``: records -> lines written to a file, batches of 64, as the pump does it
  (``to_lines`` + ``write_lines``: no Flow objects).
- ``via_flows``: the same through Flow objects (``to_flows`` + ``write``).
- ``parse`` / ``lines``: the pump's two steps alone (records -> RawEvents -> lines).
- ``enrich`` / ``encode``: RawEvents -> Flows, Flows -> lines.
- ``naive``: the floor any JSON-lines encoding pays: ``struct.unpack`` of the header and
  ``json.dumps`` of a flat dict of its fields per event (the suite's baseline).

Also: sustained events/s of one pump thread (1 / pipeline), the ratio pipeline/naive,
the CPU a burst of 6,000 events (1,000 TCP connections) costs, and a cProfile of the
pipeline (top functions by own time). Not measured: reading the ring buffer (libbpf's
callback per record, about 1 us). Nothing asserts a time.
"""

from __future__ import annotations

import cProfile
import io
import json
import pstats
import statistics
import struct
import tempfile
import time
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from ciliate.datapath.flowlog import FlowLogWriter, encode_line
from ciliate.datapath.linux.events import FlowEnricher, RawEvent, parse_event
from ciliate.datapath.linux.eventsynth import (
    build_drop,
    build_packet,
    build_tcp,
    build_trace,
    build_verdict,
)
from ciliate.desired import (
    DesiredState,
    Device,
    EndpointState,
    Identity,
    IPCacheKey,
    NodeState,
    PolicyEntry,
    PolicyKey,
    Provenance,
    RemoteEndpointInfo,
)

NODE = "node-0"
BATCH = 64


def _state(pods_per_node: int, nodes: int = 4) -> DesiredState:
    """``nodes`` nodes of ``pods_per_node`` pods each (10.0.<node>.<i>); every pod of
    node-0 enforces ingress with a policy map of a few allow entries, one deny."""
    ns: dict[str, NodeState] = {}
    idents: dict[int, Identity] = {2: Identity(2, ("reserved:world",))}
    for n in range(nodes):
        eps: dict[int, EndpointState] = {}
        policy: dict[int, dict[PolicyKey, PolicyEntry]] = {}
        for i in range(pods_per_node):
            ident = 40000 + i % 50
            idents[ident] = Identity(ident, (f"k8s:app=a{i % 50}", "k8s:ns=bench"))
            ep_id = 1000 + n * 1000 + i
            eps[ep_id] = EndpointState(
                id=ep_id, pod=f"bench/pod-{n}-{i}", ip=IPv4Address(f"10.0.{n}.{i + 10}"),
                identity=ident, lxc_name=f"lxc{ep_id:012x}", lxc_ifindex=100 + i,
                lxc_mac="", pod_ifindex=0, pod_mac="",
                labels=(f"k8s:app=a{i % 50}", "k8s:io.kubernetes.pod.namespace=bench"),
                ingress_enforced=n == 0, egress_enforced=False,
            )  # fmt: skip
            if n == 0:
                prov = Provenance("CiliumNetworkPolicy", "bench", f"p{i % 7}", "spec.ingress[0]")
                pm = {
                    PolicyKey(40000 + j, False, 6, 8080, 16): PolicyEntry(provenance=(prov,))
                    for j in range(10)
                }
                pm[PolicyKey(40049, False, 6, 8080, 16)] = PolicyEntry(
                    deny=True,
                    provenance=(
                        Provenance("CiliumNetworkPolicy", "bench", "deny", "spec.ingressDeny[0]"),
                    ),
                )
                policy[ep_id] = pm
        ns[f"node-{n}"] = NodeState(
            name=f"node-{n}", internal_ip=IPv4Address(f"172.18.0.{n + 2}"), node_prefix_len=16,
            cilium_internal_ip=IPv4Address(f"10.0.{n}.1"), pod_cidr=IPv4Network(f"10.0.{n}.0/24"),
            health_ip=None, devices=(Device("cilium_vxlan", 5, "", "vxlan"),), routes=(),
            endpoints=eps, lxc={},
            ipcache={
                IPCacheKey(IPv4Network("0.0.0.0/0")): RemoteEndpointInfo(2),
                **{IPCacheKey(IPv4Network(f"10.0.{m}.0/24")): RemoteEndpointInfo(6)
                   for m in range(nodes)},
            },
            policy=policy, lb4_services={}, lb4_backends={}, lb4_reverse_nat={}, maglev={},
        )  # fmt: skip
    return DesiredState(cluster="default", nodes=ns, identities=idents)


def _records(n: int, pods: int) -> list[bytes]:
    """About six records per connection, as a CRR burst makes them: client pod on another
    node -> server pod on this node (verdict, to-endpoint SYN, replies to the overlay,
    ACK/FIN), every 20th connection denied (verdict -181 and a 181 drop)."""
    out: list[bytes] = []
    c = 0
    while len(out) < n:
        i = c % pods
        srv, cli = IPv4Address(f"10.0.0.{i + 10}"), IPv4Address(f"10.0.1.{(i * 7) % pods + 10}")
        ep, sid, cid = 1000 + i, 40000 + i % 50, 40000 + (c % 10 if c % 20 else 49)
        sport = 30000 + c % 30000
        syn = build_packet(cli, srv, 6, build_tcp(sport, 8080, 0x02))
        if c % 20 == 19:
            out += [
                build_verdict(ep, cid, -181, egress=False, proto=6, dport=8080, match_type=3,
                              payload=syn),
                build_drop(181, ep, cid, sid, syn),
            ]  # fmt: skip
        else:
            synack = build_packet(srv, cli, 6, build_tcp(8080, sport, 0x12))
            ack = build_packet(cli, srv, 6, build_tcp(sport, 8080, 0x10))
            fin = build_packet(srv, cli, 6, build_tcp(8080, sport, 0x11))
            out += [
                build_verdict(ep, cid, 0, egress=False, proto=6, dport=8080, match_type=3,
                              payload=syn),
                build_trace(0, ep, cid, sid, ep, 0, 100 + i, syn),
                build_trace(4, ep, sid, cid, 0, 2, 5, synack, flags=0x4),
                build_trace(0, ep, cid, sid, ep, 1, 100 + i, ack),
                build_trace(4, ep, sid, cid, 0, 2, 5, fin, flags=0x4),
                build_trace(0, ep, cid, sid, ep, 1, 100 + i, ack),
            ]  # fmt: skip
        c += 1
    return out[:n]


_HDR = struct.Struct("<BBHIIHBBIIHBBI")


def _naive(records: list[bytes]) -> bytes:
    keys = ("type", "sub", "source", "hash", "len_orig", "len_cap", "ver", "ext",
            "src", "dst", "dst_id", "reason", "flags", "ifindex")  # fmt: skip
    return b"".join(
        (json.dumps(dict(zip(keys, _HDR.unpack_from(r, 0), strict=True))) + "\n").encode()
        for r in records
    )


def _pipeline(enricher: FlowEnricher, records: list[bytes], writer: FlowLogWriter) -> None:
    """What ``FlowPump`` does with each batch the ring buffer hands it."""
    now = time.time_ns()
    for k in range(0, len(records), BATCH):
        evs = [parse_event(r) for r in records[k : k + BATCH]]
        writer.write_lines(enricher.to_lines(evs, now))


def _via_flows(enricher: FlowEnricher, records: list[bytes], writer: FlowLogWriter) -> None:
    """The same through Flow objects (``to_flows`` + ``write``), as other callers do."""
    now = time.time_ns()
    for k in range(0, len(records), BATCH):
        evs = [parse_event(r) for r in records[k : k + BATCH]]
        writer.write(enricher.to_flows(evs, now))


def _cpu_us_per_event(fn: Callable[[], object], n: int, reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        t = time.thread_time()
        fn()
        out.append((time.thread_time() - t) * 1e6 / n)
    return out


def _profile(fn: Callable[[], object], top: int = 15) -> list[str]:
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(top)
    lines = [x for x in buf.getvalue().splitlines() if x.strip()]
    start = next((k for k, x in enumerate(lines) if x.lstrip().startswith("ncalls")), 0)
    return lines[start : start + top + 1]


def run(reps: int, quick: bool) -> dict[str, Any]:
    n = 3000 if quick else 30_000
    pods = 50 if quick else 200
    reps = max(1, reps)
    state = _state(pods)
    records = _records(n, pods)
    enricher = FlowEnricher(state, NODE)
    events: list[RawEvent] = [parse_event(r) for r in records]
    flows = enricher.to_flows(events, time.time_ns())
    result: dict[str, Any] = {"suite": "flows", "events": n, "pods_per_node": pods,
                              "flows": len(flows), "batch": BATCH}  # fmt: skip
    with tempfile.TemporaryDirectory() as d:
        writer = FlowLogWriter(Path(d) / "n.jsonl", max_bytes=1 << 40)
        rows: dict[str, list[float]] = {
            "pipeline": _cpu_us_per_event(lambda: _pipeline(enricher, records, writer), n, reps),
            "via_flows": _cpu_us_per_event(lambda: _via_flows(enricher, records, writer), n, reps),
            "parse": _cpu_us_per_event(lambda: [parse_event(r) for r in records], n, reps),
            "lines": _cpu_us_per_event(lambda: enricher.to_lines(events, 0), n, reps),
            "enrich": _cpu_us_per_event(lambda: enricher.to_flows(events, 0), n, reps),
            "encode": _cpu_us_per_event(lambda: b"".join(map(encode_line, flows)), n, reps),
            "naive": _cpu_us_per_event(lambda: _naive(records), n, reps),
        }
        result["profile"] = _profile(lambda: _pipeline(enricher, records, writer))
        writer.close()
    med = {k: statistics.median(v) for k, v in rows.items()}
    result["us_per_event"] = {"samples": rows, "median": med}
    result["events_per_s"] = 1e6 / med["pipeline"]
    result["ratios"] = {
        "pipeline_over_naive": med["pipeline"] / max(med["naive"], 1e-9),
        "via_flows_over_pipeline": med["via_flows"] / max(med["pipeline"], 1e-9),
    }
    # the datapath benchmark's burst: 1,000 TCP connections make ~6,000 events
    result["burst_6000_events_cpu_ms"] = med["pipeline"] * 6000 / 1e3
    print(f"{n} events ({len(flows)} flows), {pods} pods/node, batches of {BATCH}")
    print(f"{'row':<10} {'us/event':>9} {'events/s':>10}")
    for k, v in med.items():
        print(f"{k:<10} {v:>9.2f} {1e6 / v:>10.0f}")
    print(f"pipeline / naive: {result['ratios']['pipeline_over_naive']:.1f}x")
    print(f"a burst of 6000 events: {result['burst_6000_events_cpu_ms']:.0f} ms of one vCPU")
    print("profile of the pipeline (own time):")
    for line in result["profile"]:
        print("  " + line)
    return result
