"""Hubble-style flow metrics: counters fed by flows, rendered in Prometheus text format.

Role: what ``hubble-metrics`` would export for the flows our datapaths emit, so a
dashboard or ``ciliate`` status can show drops by reason, flows by type and verdict,
ports and TCP flags. Inputs: ``Flow`` records (``FlowMetrics.observe``); outputs:
counter values and the Prometheus exposition text (``render_prometheus``). Pure and
thread-safe; serving the text over HTTP is a server's job. Metric names and labels
follow Hubble's metric handlers (``flow``, ``drop``, ``tcp``, ``port-distribution``,
``icmp``, ``policy``):

- ``hubble_flows_processed_total{type, subtype, verdict}``
- ``hubble_drop_total{reason, protocol}``
- ``hubble_tcp_flags_total{flag, family}``
- ``hubble_port_distribution_total{protocol, port}`` (destination ports of new requests)
- ``hubble_icmp_total{family, type}``
- ``hubble_policy_verdicts_total{direction, match, action}``

Imports ``observe.flow``/``observe.reasons`` and the standard library; no I/O (the
caller serves the text). Must not import the datapaths or the CLI.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable

from ciliate.observe.flow import (
    SCTP,
    TCP,
    UDP,
    Flow,
    ICMPv4,
    ICMPv6,
    IPVersion,
    Verdict,
    icmpv4_text,
    icmpv6_text,
)
from ciliate.observe.reasons import (
    TRACE_POINTS,
    MessageType,
    policy_match_text,
)

Labels = tuple[tuple[str, str], ...]

_HELP = {
    "hubble_flows_processed_total": "Total number of flows processed",
    "hubble_drop_total": "Number of drops",
    "hubble_tcp_flags_total": "TCP flag occurrences",
    "hubble_port_distribution_total": "Numbers of packets distributed by destination port",
    "hubble_icmp_total": "Number of ICMP messages",
    "hubble_policy_verdicts_total": "Number of policy verdicts",
}

_TYPE_NAMES = {
    MessageType.TRACE: "Trace",
    MessageType.DROP: "Drop",
    MessageType.POLICY_VERDICT: "PolicyVerdict",
    MessageType.ACCESS_LOG: "L7",
    MessageType.CAPTURE: "Capture",
    MessageType.TRACE_SOCK: "Sock",
    MessageType.DEBUG: "Debug",
    MessageType.AGENT: "Agent",
}


def _protocol(flow: Flow) -> str:
    l4 = flow.l4
    if isinstance(l4, TCP):
        return "TCP"
    if isinstance(l4, UDP):
        return "UDP"
    if isinstance(l4, SCTP):
        return "SCTP"
    if isinstance(l4, ICMPv4):
        return "ICMPv4"
    if isinstance(l4, ICMPv6):
        return "ICMPv6"
    return "Unknown"


def _family(flow: Flow) -> str:
    if flow.ip is None:
        return "Unknown"
    return "IPv6" if flow.ip.ip_version is IPVersion.IPv6 else "IPv4"


class FlowMetrics:
    """Counters of the flows seen so far. ``observe(flow)`` for every flow."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, Counter[Labels]] = {name: Counter() for name in _HELP}

    def _inc(self, name: str, **labels: str) -> None:
        self._counters[name][tuple(sorted(labels.items()))] += 1

    def observe(self, flow: Flow) -> None:
        with self._lock:
            self._observe(flow)

    def observe_all(self, flows: Iterable[Flow]) -> None:
        with self._lock:
            for f in flows:
                self._observe(f)

    def _observe(self, flow: Flow) -> None:
        mt = flow.message_type
        subtype = ""
        if mt is MessageType.TRACE and flow.event_type is not None:
            info = TRACE_POINTS.get(flow.event_type.sub_type)
            subtype = info.name if info else str(flow.event_type.sub_type)
        elif mt is MessageType.ACCESS_LOG and flow.l7 is not None:
            subtype = "HTTP" if flow.l7.http else "DNS" if flow.l7.dns else ""
        self._inc(
            "hubble_flows_processed_total",
            type=_TYPE_NAMES.get(mt, "Unknown") if mt is not None else "Unknown",
            subtype=subtype,
            verdict=flow.verdict.name,
        )
        if flow.verdict is Verdict.DROPPED and flow.drop_reason:
            self._inc("hubble_drop_total", reason=flow.drop_reason_desc, protocol=_protocol(flow))
        if isinstance(flow.l4, TCP):
            for flag in flow.l4.flags.names():
                self._inc("hubble_tcp_flags_total", flag=flag, family=_family(flow))
        if isinstance(flow.l4, TCP | UDP | SCTP) and flow.is_reply is not True and flow.ports[1]:
            self._inc(
                "hubble_port_distribution_total",
                protocol=_protocol(flow),
                port=str(flow.ports[1]),
            )
        if isinstance(flow.l4, ICMPv4):
            self._inc(
                "hubble_icmp_total", family="IPv4", type=icmpv4_text(flow.l4.type, flow.l4.code)
            )
        elif isinstance(flow.l4, ICMPv6):
            self._inc(
                "hubble_icmp_total", family="IPv6", type=icmpv6_text(flow.l4.type, flow.l4.code)
            )
        if mt is MessageType.POLICY_VERDICT:
            self._inc(
                "hubble_policy_verdicts_total",
                direction=flow.traffic_direction.name.lower(),
                match=policy_match_text(flow.policy_match_type).lower(),
                action=flow.verdict.name.lower(),
            )

    def value(self, name: str, **labels: str) -> int:
        """One counter's value (0 when never incremented)."""
        with self._lock:
            return self._counters[name][tuple(sorted(labels.items()))]

    def render_prometheus(self) -> str:
        """The Prometheus text exposition format (version 0.0.4), sorted, stable."""
        lines: list[str] = []
        with self._lock:
            for name in sorted(self._counters):
                lines.append(f"# HELP {name} {_HELP[name]}")
                lines.append(f"# TYPE {name} counter")
                for labels, n in sorted(self._counters[name].items()):
                    text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
                    lines.append(f"{name}{{{text}}} {n}")
        return "\n".join(lines) + "\n"


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
