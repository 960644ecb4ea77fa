"""Flows as text, the way ``hubble observe`` prints them (cilium.md §13.12).

Role: turn ``Flow`` records into the lines of ``ciliate observe -o compact|json|table|
dict``. Inputs: flows and output options; outputs: strings (no I/O, no clock — the
caller writes them). Pure: imports only the standard library and ``ciliate.observe``.

Compact line::

    <Mon _2 15:04:05.000>[ [node]]: <src> (<srcid>) <arrow> <dst> (<dstid>) <TYPE> <VERDICT> (<summary>)

1. Arrow: ``->`` when ``is_reply`` is false, ``<-`` when true (src and dst are then
   printed swapped, so the connection's client comes first), ``<>`` when unknown
   (drops, denied verdicts).
2. Endpoint text: ``ns/pod`` when a pod is known, else ``ns/svc`` for a service, else the
   DNS names joined by ``,``, else the IP; then ``:port`` unless the port is 0. Flows
   without an IP layer (ARP) show the MAC addresses.
3. Identity: ``(host)``, ``(world)``… for reserved identities, else ``(ID:n)``.
4. TYPE: the observation point for traces, the drop reason text for drops,
   ``policy-verdict:<match> <INGRESS|EGRESS>`` for verdicts, ``http-request`` etc. for L7.
5. VERDICT: the enum name; verdict events print ALLOWED / DENIED / AUDITED.

Times are printed in UTC unless a ``tz`` is given (Hubble uses the local zone; UTC keeps
output reproducible).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo

from ciliate.observe.flow import (
    DNS,
    AuthType,
    Endpoint,
    Flow,
    L7FlowType,
    Service,
    Verdict,
)
from ciliate.observe.jsonpb import to_json
from ciliate.observe.reasons import (
    RESERVED_IDENTITY_NAMES,
    TRACE_POINTS,
    MessageType,
    drop_reason_text,
    policy_match_text,
    trace_point_name,
)


class Output(enum.StrEnum):
    COMPACT = "compact"
    JSON = "json"  # alias of jsonpb, as in hubble
    JSONPB = "jsonpb"
    TABLE = "table"
    DICT = "dict"


OUTPUT_CHOICES = tuple(o.value for o in Output)

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def format_time(time_ns: int, tz: tzinfo = UTC) -> str:
    """Go's ``StampMilli`` (``Jan _2 15:04:05.000``); milliseconds truncated, as Go does."""
    secs, nanos = divmod(time_ns, 1_000_000_000)
    dt = datetime.fromtimestamp(secs, tz)
    return f"{_MONTHS[dt.month - 1]} {dt.day:>2} {dt:%H:%M:%S}.{nanos // 1_000_000:03d}"


def identity_text(identity: int) -> str:
    name = RESERVED_IDENTITY_NAMES.get(identity)
    return f"({name})" if name is not None else f"(ID:{identity})"


def _join_host_port(host: str, port: int) -> str:
    if not port:
        return host
    if ":" in host:  # IPv6, as net.JoinHostPort brackets it
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def _host_text(
    ep: Endpoint | None, svc: Service | None, names: tuple[str, ...], ip: str, port: int
) -> str:
    if ep is not None and ep.pod_name:
        host = f"{ep.namespace}/{ep.pod_name}" if ep.namespace else ep.pod_name
    elif svc is not None and svc.name:
        host = f"{svc.namespace}/{svc.name}" if svc.namespace else svc.name
    elif names:
        host = ",".join(names)
    else:
        host = ip
    return _join_host_port(host, port)


def endpoint_texts(flow: Flow) -> tuple[str, str]:
    """(source, destination) as hubble prints them, ports included. Without an IP
    layer (ARP, other L2) the MAC addresses stand in, as in hubble."""
    if flow.ip is None and flow.ethernet is not None:
        return flow.ethernet.source, flow.ethernet.destination
    sport, dport = flow.ports
    sip = flow.ip.source if flow.ip else ""
    dip = flow.ip.destination if flow.ip else ""
    src = _host_text(flow.source, flow.source_service, flow.source_names, sip, sport)
    dst = _host_text(flow.destination, flow.destination_service, flow.destination_names, dip, dport)
    return src, dst


def flow_type_text(flow: Flow) -> str:
    """The TYPE column (hubble's GetFlowType)."""
    mt = flow.message_type
    if mt is MessageType.ACCESS_LOG and flow.l7 is not None:
        kind = "http" if flow.l7.http is not None else "dns" if flow.l7.dns is not None else "l7"
        rr = {L7FlowType.REQUEST: "request", L7FlowType.RESPONSE: "response"}.get(
            flow.l7.type, "sample"
        )
        text = f"{kind}-{rr}"
        if isinstance(flow.l7.dns, DNS):
            text += f" {flow.l7.dns.observation_source or 'proxy'}"
        return text
    if mt is MessageType.DROP:
        code = flow.event_type.sub_type if flow.event_type else flow.drop_reason
        return drop_reason_text(code or flow.drop_reason)
    if mt is MessageType.POLICY_VERDICT:
        # The direction enum's name, as hubble prints it (TRAFFIC_DIRECTION_UNKNOWN too).
        direction = flow.traffic_direction.name
        return f"policy-verdict:{policy_match_text(flow.policy_match_type)} {direction}"
    if mt is MessageType.TRACE:
        if flow.event_type is not None and flow.event_type.sub_type in TRACE_POINTS:
            return TRACE_POINTS[flow.event_type.sub_type].name
        return trace_point_name(flow.trace_observation_point)
    if mt is MessageType.TRACE_SOCK:
        return "trace-sock"
    if mt is MessageType.CAPTURE:
        return "capture"
    return "UNKNOWN"


def verdict_text(flow: Flow, print_policy_names: bool = False) -> str:
    if flow.message_type is not MessageType.POLICY_VERDICT:
        return flow.verdict.name
    if flow.verdict in (Verdict.FORWARDED, Verdict.REDIRECTED):
        text = "ALLOWED"
        pols = flow.ingress_allowed_by + flow.egress_allowed_by
    elif flow.verdict in (Verdict.DROPPED, Verdict.ERROR):
        text = "DENIED"
        pols = flow.ingress_denied_by + flow.egress_denied_by
    elif flow.verdict is Verdict.AUDIT:
        text = "AUDITED"
        pols = flow.ingress_denied_by + flow.egress_denied_by
    else:
        return flow.verdict.name
    if print_policy_names and pols:
        text += " BY " + ", ".join(
            f"{p.namespace + '/' if p.namespace else ''}{p.name} ({p.kind})" for p in pols
        )
    return text


def summary_text(flow: Flow) -> str:
    text = flow.summary
    if flow.auth_type and flow.auth_type != AuthType.DISABLED:
        text += f"; Auth: {AuthType(flow.auth_type).name}"
    return text


def render_compact(
    flow: Flow,
    print_node_name: bool = False,
    *,
    print_policy_names: bool = False,
    tz: tzinfo = UTC,
) -> str:
    src, dst = endpoint_texts(flow)
    sid = identity_text(flow.source.identity if flow.source else 0)
    did = identity_text(flow.destination.identity if flow.destination else 0)
    if flow.is_reply is None:
        arrow = "<>"
    elif flow.is_reply:
        arrow = "<-"
        src, dst, sid, did = dst, src, did, sid
    else:
        arrow = "->"
    node = f" [{flow.node_name}]" if print_node_name and flow.node_name else ""
    return (
        f"{format_time(flow.time_ns, tz)}{node}: {src} {sid} {arrow} {dst} {did} "
        f"{flow_type_text(flow)} {verdict_text(flow, print_policy_names)} ({summary_text(flow)})"
    )


def render_json(flow: Flow) -> str:
    """One GetFlowsResponse object on one line (``-o json``)."""
    return json.dumps(to_json(flow), separators=(",", ":"), ensure_ascii=False)


def _table_cells(
    flow: Flow, print_node_name: bool, print_policy_names: bool, tz: tzinfo
) -> list[str]:
    src, dst = endpoint_texts(flow)
    cells = [format_time(flow.time_ns, tz)]
    if print_node_name:
        cells.append(flow.node_name)
    cells += [
        src,
        dst,
        flow_type_text(flow),
        verdict_text(flow, print_policy_names),
        summary_text(flow),
    ]
    return cells


def _table_header(print_node_name: bool) -> list[str]:
    cols = ["TIMESTAMP"]
    if print_node_name:
        cols.append("NODE")
    return [*cols, "SOURCE", "DESTINATION", "TYPE", "VERDICT", "SUMMARY"]


def _align(rows: list[list[str]]) -> list[str]:
    # Go's tabwriter(minwidth 2, padding 3): each column as wide as its widest cell + 3.
    widths = [max(len(r[i]) for r in rows) + 3 for i in range(len(rows[0]) - 1)]
    return ["".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + r[-1] for r in rows]


def render_dict(
    flow: Flow,
    print_node_name: bool = False,
    *,
    print_policy_names: bool = False,
    tz: tzinfo = UTC,
) -> str:
    cells = _table_cells(flow, print_node_name, print_policy_names, tz)
    keys = _table_header(print_node_name)
    return "\n".join(f"{k:>11}: {v}" for k, v in zip(keys, cells, strict=True))


DICT_SEPARATOR = "------------"


def render_flow(
    flow: Flow,
    output: str = "compact",
    print_node_name: bool = False,
    *,
    print_policy_names: bool = False,
    tz: tzinfo = UTC,
) -> str:
    """One flow in the given output (no trailing newline).

    ``table`` gives one row with three spaces between cells (use ``render_flows`` for
    an aligned table with its header); ``dict`` gives one record without separator.
    """
    out = Output(output)
    if out in (Output.JSON, Output.JSONPB):
        return render_json(flow)
    if out is Output.TABLE:
        return "   ".join(_table_cells(flow, print_node_name, print_policy_names, tz))
    if out is Output.DICT:
        return render_dict(flow, print_node_name, print_policy_names=print_policy_names, tz=tz)
    return render_compact(flow, print_node_name, print_policy_names=print_policy_names, tz=tz)


def render_flows(
    flows: Iterable[Flow],
    output: str = "compact",
    print_node_name: bool = False,
    *,
    print_policy_names: bool = False,
    tz: tzinfo = UTC,
) -> str:
    """Many flows as a whole text (newline-terminated): aligned table with header,
    dict records separated by ``------------``, one line per flow otherwise."""
    out = Output(output)
    flows = list(flows)
    if out is Output.TABLE:
        rows = [_table_header(print_node_name)] + [
            _table_cells(f, print_node_name, print_policy_names, tz) for f in flows
        ]
        return "\n".join(_align(rows)) + "\n"
    if not flows:
        return ""
    sep = f"\n{DICT_SEPARATOR}\n" if out is Output.DICT else "\n"
    return (
        sep.join(
            render_flow(f, output, print_node_name, print_policy_names=print_policy_names, tz=tz)
            for f in flows
        )
        + "\n"
    )


@dataclass
class FlowPrinter:
    """Streaming output for ``--follow``: ``format(flow)`` returns the text to write
    for one more flow (newline-terminated), with the table header before the first row
    and the dict separator between records."""

    output: str = "compact"
    print_node_name: bool = False
    print_policy_names: bool = False
    tz: tzinfo = UTC
    _count: int = field(default=0, init=False)

    # Fixed table widths while streaming (rows cannot be aligned in advance).
    _WIDTHS = (22, 28, 40, 40, 24, 12)

    def format(self, flow: Flow) -> str:
        out = Output(self.output)
        first = self._count == 0
        self._count += 1
        if out is Output.TABLE:
            cells = _table_cells(flow, self.print_node_name, self.print_policy_names, self.tz)
            text = self._row(cells)
            if first:
                text = self._row(_table_header(self.print_node_name)) + text
            return text
        body = render_flow(
            flow,
            self.output,
            self.print_node_name,
            print_policy_names=self.print_policy_names,
            tz=self.tz,
        )
        if out is Output.DICT and not first:
            return f"{DICT_SEPARATOR}\n{body}\n"
        return body + "\n"

    def _row(self, cells: list[str]) -> str:
        widths = list(self._WIDTHS) if self.print_node_name else [22, *self._WIDTHS[2:]]
        padded = (c.ljust(max(w, len(c) + 3)) for c, w in zip(cells[:-1], widths, strict=False))
        return "".join(padded) + cells[-1] + "\n"
