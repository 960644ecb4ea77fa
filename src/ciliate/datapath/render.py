"""Trace results as text (reads like the networking101 blog) and as stable JSON.

Text: a header naming both ends, the path in one line (``busybox 10.10.2.117 ->
lxc… -> cilium_ipcache (tunnel 172.18.0.4) -> cilium_vxlan -> mycluster-worker2 eth0
-> cil_from_overlay -> cilium_lxc -> lxc… -> netshoot``), then every hop numbered with
node, interface and program, the decision, each map lookup with its key bytes and
result, encapsulation, service translation, the policy verdict with reason and
provenance, and the delivery or the drop; then the reply path and a verdict line.

JSON (``trace_to_json``), version 1 of a documented shape::

    {"version": 1, "src": END, "dst": END, "protocol": "tcp", "port": 80,
     "http": {"method","path"} | null, "verdict": "FORWARDED"|"DROPPED",
     "delivered": bool, "drop_reason": int, "drop_reason_desc": str, "status": int|null,
     "backend": "ip:port" | "", "path": [str], "request": [HOP], "reply": [HOP],
     "flows": [flow objects exactly as ``hubble observe -o json`` prints them]}
    END = {"kind": pod|service|node|world, "name", "ip", "node"}
    HOP = {"hop", "node", "interface", "program", "action", "detail", "packet",
           "verdict", "drop_reason", "encap", "provenance": [str],
           "lookups": [{"map", "key", "result", "hit", "value"}]}

Inputs: ``datapath.api`` records. Outputs: text and dicts. No I/O.

Imports ``datapath.api``/``datapath.flows``, ``observe`` and the standard library; pure.
Must not import ``datapath.linux``, the engines or the CLI.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address
from typing import Any

from ciliate.datapath.api import Endpoint, Kind, TraceResult, TraceStep, drop_name, drop_text
from ciliate.datapath.flows import to_flow
from ciliate.observe import flow as hf

JSON_VERSION = 1


def short_pod(pod: str) -> str:
    """``busybox`` for ``ns/busybox-76f5c8b857-h2k4g``: the blog's way of naming pods."""
    name = pod.split("/", 1)[-1]
    parts = name.split("-")
    # Deployment pods end in -<ReplicaSet hash>-<5 chars>; keep the workload name.
    if len(parts) >= 3 and len(parts[-1]) == 5 and len(parts[-2]) in (9, 10):
        return "-".join(parts[:-2])
    return name


def _short(e: Endpoint) -> str:
    """``busybox 10.10.2.117`` for a pod (the deployment-ish name), else name and IP."""
    if e.kind == Kind.POD:
        return f"{short_pod(e.name)} {e.ip}"
    if e.kind == Kind.WORLD:
        return f"world {e.ip}"
    if e.kind == Kind.SERVICE:
        return f"service {e.name}" + (f" ({e.ip}:{e.port})" if e.name != f"{e.ip}:{e.port}" else "")
    return f"{e.name} {e.ip}"


def _address(end: str) -> str:
    """The address of a step's ``src``/``dst`` ("10.0.0.2:80" or "10.0.0.2")."""
    return end.partition(":")[0]


def _handed_to_host(steps: Sequence[TraceStep], i: int) -> bool:
    """Whether the ``to-host`` step ``steps[i]`` only hands the packet to a later
    ``to-host`` of the same node (``cil_from_overlay`` to ``cil_to_host``), with nothing
    but a reverse NAT between: the later step names the host, once, after the NAT."""
    for s in steps[i + 1 :]:
        if s.action == "rev-nat":
            continue
        return s.action == "to-host" and s.node == steps[i].node
    return False


def path_tokens(
    r: TraceResult, steps: Sequence[TraceStep], start: Endpoint, end: Endpoint
) -> list[str]:
    out = [_short(start)]
    for i, s in enumerate(steps):
        if s.action == "from-endpoint":
            out.append(s.interface)
        elif s.action == "service":
            out.append(f"service DNAT to {s.dst}")
        elif s.action == "rev-nat":
            out.append("reverse NAT")
        elif s.action == "tunnel":
            out.append(f"{s.tunnel_source} (tunnel {s.tunnel_endpoint})")
        elif s.action == "encap":
            out.append("cilium_vxlan")
        elif s.action == "fabric":
            out.append(f"{s.node} eth0")
        elif s.action == "decap":
            out.append("cil_from_overlay")
        elif s.action == "redirect":
            out.append("cilium_lxc")
        elif s.action == "from-network":
            out.append(f"{s.node} eth0")
            out.append("cil_from_netdev")
        elif s.action == "from-host":
            out.append(f"{s.node} cilium_host")
            out.append("cil_from_host")
        elif s.action == "to-proxy":
            out.append("proxy" + (" (403)" if s.verdict == "DROPPED" else ""))
        elif s.action == "snat":
            out.append("SNAT")
        elif s.action == "to-endpoint":
            out.append(s.interface)
            out.append(f"{short_pod(s.pod)} {_address(s.dst)}")
        elif s.action == "to-host":
            if not _handed_to_host(steps, i):
                out.append(f"{s.node} host")
        elif s.action == "to-network":
            out.append("world")
        elif s.action == "arp-reply":
            out.append(f"{s.interface} answers ARP")
        elif s.action == "drop":
            out.append(f"DROPPED ({drop_text(s.drop_reason)})")
    # collapse repeats (two steps on one interface)
    dedup: list[str] = []
    for t in out:
        if not dedup or dedup[-1] != t:
            dedup.append(t)
    return dedup


def _hop_lines(n: int, s: TraceStep, prev_packet: str) -> list[str]:
    lines = [f"{n:>3}  {s.node}  {s.interface}  {s.program}  [{s.action}]"]
    lines.append(f"       {s.detail}")
    if s.packet != prev_packet:
        lines.append(f"       packet: {s.packet}")
    if s.encap:
        lines.append(f"       encap: {s.encap}")
    for lk in s.lookups:
        lines.append(f"       lookup {lk.map}  key hex {lk.key_hex}")
        lines.append(f"         -> {lk.result}")
        if lk.value_hex:
            lines.append(f"            value hex {lk.value_hex}")
    for p in s.provenance:
        lines.append(f"       by: {p}")
    return lines


def reply_start(r: TraceResult) -> Endpoint:
    """Who sends the reply: the destination, or the backend a service picked."""
    if r.backend and r.reply_steps:
        first = r.reply_steps[0]
        ip = _address(first.src)
        if first.action == "from-endpoint":
            return Endpoint(Kind.POD, first.pod, IPv4Address(ip))
        return Endpoint(Kind.NODE, first.node, IPv4Address(ip))
    return r.dst


def _end_text(e: Endpoint) -> str:
    where = f" on {e.node}" if e.node and e.kind == Kind.POD else ""
    return f"{e.kind.value} {e.name} ({e.ip}){where}"


def flows_to_text(r: TraceResult, cluster: str = "") -> list[str]:
    """The trace's events as ``hubble observe --print-node-name`` prints them."""
    from ciliate.observe.render import render_compact

    return [render_compact(to_flow(f, cluster), True) for f in r.flows]


def trace_to_text(r: TraceResult, flows: bool = False, cluster: str = "") -> str:
    what = r.protocol.upper() + (f"/{r.port}" if r.port else "")
    if r.http:
        what += f" {r.http[0]} {r.http[1]}"
    lines = [
        f"Trace {what}",
        f"  from {_end_text(r.src)}",
        f"  to   {_end_text(r.dst)}",
        "",
        "Path:  " + " -> ".join(path_tokens(r, r.steps, r.src, r.dst)),
    ]
    if r.reply_steps:
        lines.append("Reply: " + " -> ".join(path_tokens(r, r.reply_steps, reply_start(r), r.src)))
    lines += ["", "Request:"]
    n = 0
    prev = ""
    for s in r.steps:
        n += 1
        lines += _hop_lines(n, s, prev)
        prev = s.packet
    if r.reply_steps:
        lines += ["", "Reply:"]
        prev = ""
        for s in r.reply_steps:
            n += 1
            lines += _hop_lines(n, s, prev)
            prev = s.packet
    lines.append("")
    if r.delivered:
        extra = f", HTTP {r.status}" if r.status else ""
        via = f" (backend {r.backend})" if r.backend else ""
        lines.append(f"Verdict: FORWARDED: delivered{via} and answered{extra}")
    elif r.status == 403:
        lines.append("Verdict: DROPPED by the L7 proxy: 403 Access denied")
    else:
        reason = (
            f"{drop_text(r.drop_reason)} ({r.drop_reason})" if r.drop_reason else "not delivered"
        )
        side = "reply " if r.request_verdict == "FORWARDED" else ""
        lines.append(f"Verdict: DROPPED: {side}{reason}")
    if flows:
        lines += ["", "Flows (as hubble observe prints them):", *flows_to_text(r, cluster)]
    return "\n".join(lines)


def _end_json(e: Endpoint) -> dict[str, Any]:
    return {"kind": e.kind.value, "name": e.name, "ip": str(e.ip), "node": e.node}


def _step_json(n: int, s: TraceStep) -> dict[str, Any]:
    return {
        "hop": n,
        "node": s.node,
        "interface": s.interface,
        "program": s.program,
        "action": s.action,
        "detail": s.detail,
        "packet": s.packet,
        "verdict": s.verdict,
        "drop_reason": s.drop_reason,
        "encap": s.encap,
        "provenance": list(s.provenance),
        "lookups": [
            {
                "map": lk.map,
                "key": lk.key_hex,
                "result": lk.result,
                "hit": lk.hit,
                "value": lk.value_hex,
            }
            for lk in s.lookups
        ],
    }


def trace_to_json(r: TraceResult, cluster: str = "") -> dict[str, Any]:
    n_req = len(r.steps)
    return {
        "version": JSON_VERSION,
        "src": _end_json(r.src),
        "dst": _end_json(r.dst),
        "protocol": r.protocol,
        "port": r.port,
        "http": {"method": r.http[0], "path": r.http[1]} if r.http else None,
        "verdict": "FORWARDED" if r.delivered else "DROPPED",
        "delivered": r.delivered,
        "drop_reason": r.drop_reason,
        "drop_reason_desc": drop_name(r.drop_reason) if r.drop_reason else "",
        "status": r.status,
        "backend": r.backend,
        "path": path_tokens(r, r.steps, r.src, r.dst),
        "request": [_step_json(i + 1, s) for i, s in enumerate(r.steps)],
        "reply": [_step_json(n_req + i + 1, s) for i, s in enumerate(r.reply_steps)],
        "flows": [hf.to_json(to_flow(f, cluster)) for f in r.flows],
    }
