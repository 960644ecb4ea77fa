"""The service map: who talks to whom, aggregated from flows (Hubble UI's graph).

Role: fold flows into nodes (workloads, pods, services, reserved entities such as world
and host) and edges (source → destination on protocol/port) with counts per verdict,
for the UI and ``ciliate`` summaries. Inputs: ``Flow`` records; outputs: a ``ServiceMap``
(sorted, JSON-ready via ``to_dict``) and Graphviz DOT text. Pure.

Aggregation rules:

1. A flow is counted once per connection direction: replies (``is_reply`` true) are
   folded onto their request edge (source and destination swapped back).
2. A node is named ``ns/workload`` from the endpoint's first workload, else
   ``ns/pod`` from the pod name, else the service, else a reserved identity's name
   (``world``, ``host``, …), else the IP.
3. An edge's key is (source node, destination node, L4 protocol, destination port).

Imports ``observe.flow``/``observe.reasons`` and the standard library; no I/O. Must not
import the datapaths or the CLI.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ciliate.observe.flow import SCTP, TCP, UDP, Endpoint, Flow, ICMPv4, ICMPv6, Service
from ciliate.observe.reasons import RESERVED_IDENTITY_NAMES


def node_name(ep: Endpoint | None, svc: Service | None, ip: str) -> str:
    if ep is not None and ep.workloads:
        w = ep.workloads[0]
        return f"{ep.namespace}/{w.name}" if ep.namespace else w.name
    if ep is not None and ep.pod_name:
        return f"{ep.namespace}/{ep.pod_name}" if ep.namespace else ep.pod_name
    if svc is not None and svc.name:
        return f"{svc.namespace}/{svc.name}" if svc.namespace else svc.name
    if ep is not None and ep.identity > 0 and ep.identity in RESERVED_IDENTITY_NAMES:
        return RESERVED_IDENTITY_NAMES[ep.identity]
    return ip or "unknown"


def _proto(flow: Flow) -> str:
    l4 = flow.l4
    for cls, name in ((TCP, "TCP"), (UDP, "UDP"), (SCTP, "SCTP")):
        if isinstance(l4, cls):
            return name
    if isinstance(l4, ICMPv4 | ICMPv6):
        return "ICMP"
    return ""


@dataclass(frozen=True, slots=True, order=True)
class EdgeKey:
    source: str
    destination: str
    protocol: str
    port: int


@dataclass
class ServiceMap:
    nodes: set[str] = field(default_factory=set)
    edges: dict[EdgeKey, Counter[str]] = field(default_factory=dict)

    def add(self, flow: Flow) -> None:
        ip = flow.ip
        src = node_name(flow.source, flow.source_service, ip.source if ip else "")
        dst = node_name(flow.destination, flow.destination_service, ip.destination if ip else "")
        sport, dport = flow.ports
        if flow.is_reply:
            src, dst, dport = dst, src, sport
        key = EdgeKey(src, dst, _proto(flow), dport)
        self.nodes.update((src, dst))
        self.edges.setdefault(key, Counter())[flow.verdict.name] += 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "nodes": sorted(self.nodes),
            "edges": [
                {
                    "source": k.source,
                    "destination": k.destination,
                    "protocol": k.protocol,
                    "port": k.port,
                    "verdicts": dict(sorted(c.items())),
                }
                for k, c in sorted(self.edges.items())
            ],
        }

    def to_dot(self) -> str:
        """Graphviz: forwarded-only edges solid, edges with drops red and dashed."""
        lines = ["digraph servicemap {", "  rankdir=LR;"]
        lines += [f'  "{n}";' for n in sorted(self.nodes)]
        for k, c in sorted(self.edges.items()):
            label = f"{k.protocol}/{k.port}" if k.port else k.protocol
            style = ' color="red" style="dashed"' if c.get("DROPPED") else ""
            lines.append(f'  "{k.source}" -> "{k.destination}" [label="{label}"{style}];')
        lines.append("}")
        return "\n".join(lines) + "\n"


def build_service_map(flows: Iterable[Flow]) -> ServiceMap:
    m = ServiceMap()
    for f in flows:
        m.add(f)
    return m
