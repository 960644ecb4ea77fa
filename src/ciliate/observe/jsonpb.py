"""Hubble's JSON encoding of flows (protojson with ``UseProtoNames``) and back.

Role: ``to_json(flow)`` gives exactly the object ``hubble observe -o json`` prints per
line (../shared/reference/cilium.md §14): the ``{"flow": {...}, "node_name": ...,
"time": ...}`` envelope, proto field names (``IP``, ``l4``, ``Type``, ``Summary``,
``source_port``…), enums as names, zero/empty/unset fields omitted, uint64 as strings,
timestamps in RFC 3339 with 0, 3, 6 or 9 fractional digits (protojson's rule), keys
in flow.proto declaration order. ``from_json`` reads it back (round trip).
Pure: imports only the standard library and ``ciliate.observe.flow``/``reasons``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from ciliate.observe.flow import (
    DNS,
    HTTP,
    IP,
    SCTP,
    TCP,
    UDP,
    AuthType,
    CiliumEventType,
    Emitter,
    Endpoint,
    Ethernet,
    FileInfo,
    Flow,
    FlowType,
    HTTPHeader,
    ICMPv4,
    ICMPv6,
    IPVersion,
    L7FlowType,
    Layer4,
    Layer7,
    NetworkInterface,
    Policy,
    Service,
    TCPFlags,
    TrafficDirection,
    Verdict,
    Workload,
)
from ciliate.observe.reasons import TraceObservationPoint, TraceReason

# --- JSON (protojson with UseProtoNames) ----------------------------------------------


def format_timestamp(time_ns: int) -> str:
    """RFC 3339 in UTC with 0, 3, 6 or 9 fractional digits, as protojson writes it."""
    secs, nanos = divmod(time_ns, 1_000_000_000)
    base = datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if nanos == 0:
        return base + "Z"
    if nanos % 1_000_000 == 0:
        return f"{base}.{nanos // 1_000_000:03d}Z"
    if nanos % 1_000 == 0:
        return f"{base}.{nanos // 1_000:06d}Z"
    return f"{base}.{nanos:09d}Z"


def parse_timestamp(text: str) -> int:
    """Epoch nanoseconds of an RFC 3339 timestamp (any fraction length, Z or offset)."""
    t = text.strip()
    frac_ns = 0
    if "." in t:
        head, rest = t.split(".", 1)
        digits = ""
        while rest and rest[0].isdigit():
            digits, rest = digits + rest[0], rest[1:]
        frac_ns = int((digits + "000000000")[:9]) if digits else 0
        t = head + rest
    if t.endswith(("Z", "z")):
        t = t[:-1] + "+00:00"
    dt = datetime.fromisoformat(t)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp()) * 1_000_000_000 + frac_ns


def _put(d: dict[str, Any], key: str, value: Any) -> None:
    """Set ``key`` unless the value is proto3's zero (omitted by protojson). Only for
    scalars and repeated fields: a *set* message field is printed even when empty
    (``"ICMPv4":{}``), so those are assigned directly."""
    if value is None or value is False or value == 0 or value == "":
        return
    if isinstance(value, list | tuple | dict) and not value:
        return
    d[key] = value


def _enum(d: dict[str, Any], key: str, value: enum.IntEnum) -> None:
    if value != 0:
        d[key] = value.name


def _fields(*pairs: tuple[str, Any]) -> dict[str, Any]:
    """A message's JSON object: its fields in declaration order, zero values left out
    (``_put``)."""
    d: dict[str, Any] = {}
    for key, value in pairs:
        _put(d, key, value)
    return d


def _endpoint_json(ep: Endpoint) -> dict[str, Any]:
    return _fields(
        ("ID", ep.id),
        ("identity", ep.identity),
        ("cluster_name", ep.cluster_name),
        ("namespace", ep.namespace),
        ("labels", list(ep.labels)),
        ("pod_name", ep.pod_name),
        ("workloads", [{"name": w.name, "kind": w.kind} for w in ep.workloads]),
    )


def _ports_json(l4: TCP | UDP | SCTP) -> dict[str, Any]:
    return _fields(("source_port", l4.source_port), ("destination_port", l4.destination_port))


def _l4_json(l4: Layer4, l3l4: bool) -> dict[str, Any]:
    if isinstance(l4, TCP):
        d = _ports_json(l4)
        flags = {n: True for n in TCPFlags.PROTO_ORDER if getattr(l4.flags, n)}
        # Hubble's packet parser always sets the flags message (``"flags":{}`` for a
        # bare ACK-less segment); L7 records carry ports only.
        if flags or l3l4:
            d["flags"] = flags
        return {"TCP": d}
    if isinstance(l4, UDP):
        return {"UDP": _ports_json(l4)}
    if isinstance(l4, SCTP):
        return {"SCTP": _ports_json(l4)}
    icmp = _fields(("type", l4.type), ("code", l4.code))
    return {"ICMPv4" if isinstance(l4, ICMPv4) else "ICMPv6": icmp}


def _policy_json(p: Policy) -> dict[str, Any]:
    return _fields(
        ("name", p.name),
        ("namespace", p.namespace),
        ("labels", list(p.labels)),
        ("revision", str(p.revision) if p.revision else ""),  # uint64 → string
        ("kind", p.kind),
    )


def _l7_json(l7: Layer7) -> dict[str, Any]:
    d: dict[str, Any] = {}
    _enum(d, "type", l7.type)
    _put(d, "latency_ns", str(l7.latency_ns) if l7.latency_ns else "")
    if l7.dns is not None:
        x = l7.dns
        d["dns"] = _fields(
            ("query", x.query),
            ("ips", list(x.ips)),
            ("ttl", x.ttl),
            ("cnames", list(x.cnames)),
            ("observation_source", x.observation_source),
            ("rcode", x.rcode),
            ("qtypes", list(x.qtypes)),
            ("rrtypes", list(x.rrtypes)),
        )
    if l7.http is not None:
        h = l7.http
        d["http"] = _fields(
            ("code", h.code),
            ("method", h.method),
            ("url", h.url),
            ("protocol", h.protocol),
            ("headers", [{"key": x.key, "value": x.value} for x in h.headers]),
        )
    return d


EXTENSIONS_TYPE_URL = "type.googleapis.com/ciliate.v1.Provenance"


def _extensions_json(pairs: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    """An ``Any`` of our provenance type: one key per name; a name given several times
    (several matching rules) becomes a list, in order."""
    grouped: dict[str, list[str]] = {}
    for k, v in pairs:
        grouped.setdefault(k, []).append(v)
    out: dict[str, Any] = {"@type": EXTENSIONS_TYPE_URL}
    for k, vs in grouped.items():
        out[k] = vs[0] if len(vs) == 1 else vs
    return out


def flow_to_dict(f: Flow) -> dict[str, Any]:
    """The inner ``flow`` object, keys in flow.proto declaration order."""
    d: dict[str, Any] = {}
    d["time"] = format_timestamp(f.time_ns)
    _put(d, "uuid", f.uuid)
    if f.emitter is not None:
        d["emitter"] = _fields(("name", f.emitter.name), ("version", f.emitter.version))
    _enum(d, "verdict", f.verdict)
    _put(d, "drop_reason", f.drop_reason)
    _enum(d, "auth_type", f.auth_type)
    if f.ethernet is not None:
        eth = f.ethernet
        d["ethernet"] = _fields(("source", eth.source), ("destination", eth.destination))
    if f.ip is not None:
        ip = _fields(
            ("source", f.ip.source),
            ("source_xlated", f.ip.source_xlated),
            ("destination", f.ip.destination),
        )
        _enum(ip, "ipVersion", f.ip.ip_version)
        _put(ip, "encrypted", f.ip.encrypted)
        d["IP"] = ip
    if f.l4 is not None:
        d["l4"] = _l4_json(f.l4, f.type is FlowType.L3_L4)
    if f.source is not None:
        d["source"] = _endpoint_json(f.source)
    if f.destination is not None:
        d["destination"] = _endpoint_json(f.destination)
    _enum(d, "Type", f.type)
    _put(d, "node_name", f.node_name)
    _put(d, "node_labels", list(f.node_labels))
    _put(d, "source_names", list(f.source_names))
    _put(d, "destination_names", list(f.destination_names))
    if f.l7 is not None:
        d["l7"] = _l7_json(f.l7)
    _put(d, "reply", bool(f.is_reply))
    if f.event_type is not None:
        et = f.event_type
        d["event_type"] = _fields(("type", et.type), ("sub_type", et.sub_type))
    for key, svc in (
        ("source_service", f.source_service),
        ("destination_service", f.destination_service),
    ):
        if svc is not None:
            d[key] = _fields(("name", svc.name), ("namespace", svc.namespace))
    _enum(d, "traffic_direction", f.traffic_direction)
    _put(d, "policy_match_type", f.policy_match_type)
    _enum(d, "trace_observation_point", f.trace_observation_point)
    _enum(d, "trace_reason", f.trace_reason)
    if f.drop_reason:
        d["drop_reason_desc"] = f.drop_reason_desc
    if f.file is not None:
        d["file"] = _fields(("name", f.file.name), ("line", f.file.line))
    if f.is_reply is not None:
        d["is_reply"] = f.is_reply  # a BoolValue: printed even when false
    if f.interface is not None:
        itf = f.interface
        d["interface"] = _fields(("index", itf.index), ("name", itf.name))
    _put(d, "proxy_port", f.proxy_port)
    _put(d, "Summary", f.summary)
    for key, pols in (
        ("egress_allowed_by", f.egress_allowed_by),
        ("ingress_allowed_by", f.ingress_allowed_by),
        ("egress_denied_by", f.egress_denied_by),
        ("ingress_denied_by", f.ingress_denied_by),
    ):
        _put(d, key, [_policy_json(p) for p in pols])
    _put(d, "policy_log", list(f.policy_log))
    if f.extensions:
        d["extensions"] = _extensions_json(f.extensions)
    return d


def to_json(f: Flow) -> dict[str, Any]:
    """The GetFlowsResponse object ``hubble observe -o json`` prints per line."""
    out: dict[str, Any] = {"flow": flow_to_dict(f)}
    _put(out, "node_name", f.node_name)
    out["time"] = format_timestamp(f.time_ns)
    return out


# --- JSON → Flow ----------------------------------------------------------------------

_E = TypeVar("_E", bound=enum.IntEnum)


def _str(d: Mapping[str, Any], key: str) -> str:
    return str(d.get(key, "") or "")


def _int(d: Mapping[str, Any], key: str) -> int:
    return int(d.get(key, 0) or 0)


def _names(d: Mapping[str, Any], key: str) -> tuple[str, ...]:
    return tuple(str(x) for x in d.get(key) or ())


def _enum_of(cls: type[_E], value: Any) -> _E:
    if value is None or value == "":
        return cls(0)
    if isinstance(value, int):
        return cls(value)
    return cls[str(value)]


def _endpoint_from(d: Mapping[str, Any] | None) -> Endpoint | None:
    if d is None:
        return None
    return Endpoint(
        id=_int(d, "ID"),
        identity=_int(d, "identity"),
        cluster_name=_str(d, "cluster_name"),
        namespace=_str(d, "namespace"),
        labels=_names(d, "labels"),
        pod_name=_str(d, "pod_name"),
        workloads=tuple(
            Workload(_str(w, "name"), _str(w, "kind")) for w in d.get("workloads") or ()
        ),
    )


def _l4_from(d: Mapping[str, Any] | None) -> Layer4 | None:
    if not d:
        return None
    if "TCP" in d:
        t = d["TCP"] or {}
        flags = t.get("flags") or {}
        return TCP(
            _int(t, "source_port"),
            _int(t, "destination_port"),
            TCPFlags(**{n: bool(flags.get(n)) for n in TCPFlags.PROTO_ORDER}),
        )
    for key, ports_cls in (("UDP", UDP), ("SCTP", SCTP)):
        if key in d:
            p = d[key] or {}
            return ports_cls(_int(p, "source_port"), _int(p, "destination_port"))
    if "ICMPv4" in d:
        i = d["ICMPv4"] or {}
        return ICMPv4(_int(i, "type"), _int(i, "code"))
    if "ICMPv6" in d:
        i = d["ICMPv6"] or {}
        return ICMPv6(_int(i, "type"), _int(i, "code"))
    return None


def _policies_from(items: Sequence[Mapping[str, Any]] | None) -> tuple[Policy, ...]:
    return tuple(
        Policy(
            name=_str(p, "name"),
            namespace=_str(p, "namespace"),
            kind=_str(p, "kind"),
            labels=_names(p, "labels"),
            revision=_int(p, "revision"),
        )
        for p in items or ()
    )


def _l7_from(d: Mapping[str, Any] | None) -> Layer7 | None:
    if d is None:
        return None
    http = dns = None
    if "http" in d:
        h = d["http"] or {}
        http = HTTP(
            code=_int(h, "code"),
            method=_str(h, "method"),
            url=_str(h, "url"),
            protocol=_str(h, "protocol"),
            headers=tuple(
                HTTPHeader(_str(x, "key"), _str(x, "value")) for x in h.get("headers") or ()
            ),
        )
    if "dns" in d:
        x = d["dns"] or {}
        dns = DNS(
            query=_str(x, "query"),
            ips=_names(x, "ips"),
            ttl=_int(x, "ttl"),
            cnames=_names(x, "cnames"),
            observation_source=_str(x, "observation_source"),
            rcode=_int(x, "rcode"),
            qtypes=_names(x, "qtypes"),
            rrtypes=_names(x, "rrtypes"),
        )
    return Layer7(
        type=_enum_of(L7FlowType, d.get("type")),
        latency_ns=_int(d, "latency_ns"),
        http=http,
        dns=dns,
    )


def from_json(obj: Mapping[str, Any]) -> Flow:
    """A Flow from ``to_json``'s envelope or from the inner ``flow`` object."""
    f: Mapping[str, Any] = obj.get("flow", obj)
    ip = f.get("IP")
    eth = f.get("ethernet")
    em = f.get("emitter")
    et = f.get("event_type")
    fi = f.get("file")
    itf = f.get("interface")
    ext = dict(f.get("extensions") or {})
    ext.pop("@type", None)
    ss, ds = f.get("source_service"), f.get("destination_service")
    return Flow(
        time_ns=parse_timestamp(str(f["time"])),
        verdict=_enum_of(Verdict, f.get("verdict")),
        uuid=_str(f, "uuid"),
        emitter=Emitter(_str(em, "name"), _str(em, "version")) if em else None,
        drop_reason=_int(f, "drop_reason"),
        auth_type=_enum_of(AuthType, f.get("auth_type")),
        ethernet=Ethernet(_str(eth, "source"), _str(eth, "destination")) if eth else None,
        ip=(
            IP(
                source=_str(ip, "source"),
                destination=_str(ip, "destination"),
                ip_version=_enum_of(IPVersion, ip.get("ipVersion")),
                source_xlated=_str(ip, "source_xlated"),
                encrypted=bool(ip.get("encrypted")),
            )
            if ip
            else None
        ),
        l4=_l4_from(f.get("l4")),
        source=_endpoint_from(f.get("source")),
        destination=_endpoint_from(f.get("destination")),
        type=_enum_of(FlowType, f.get("Type")),
        node_name=_str(f, "node_name") or _str(obj, "node_name"),
        node_labels=_names(f, "node_labels"),
        source_names=_names(f, "source_names"),
        destination_names=_names(f, "destination_names"),
        l7=_l7_from(f.get("l7")),
        is_reply=bool(f["is_reply"]) if "is_reply" in f else None,
        event_type=CiliumEventType(_int(et, "type"), _int(et, "sub_type")) if et else None,
        source_service=Service(_str(ss, "name"), _str(ss, "namespace")) if ss else None,
        destination_service=Service(_str(ds, "name"), _str(ds, "namespace")) if ds else None,
        traffic_direction=_enum_of(TrafficDirection, f.get("traffic_direction")),
        policy_match_type=_int(f, "policy_match_type"),
        trace_observation_point=_enum_of(TraceObservationPoint, f.get("trace_observation_point")),
        trace_reason=_enum_of(TraceReason, f.get("trace_reason")),
        file=FileInfo(_str(fi, "name"), _int(fi, "line")) if fi else None,
        interface=NetworkInterface(_int(itf, "index"), _str(itf, "name")) if itf else None,
        proxy_port=_int(f, "proxy_port"),
        egress_allowed_by=_policies_from(f.get("egress_allowed_by")),
        ingress_allowed_by=_policies_from(f.get("ingress_allowed_by")),
        egress_denied_by=_policies_from(f.get("egress_denied_by")),
        ingress_denied_by=_policies_from(f.get("ingress_denied_by")),
        policy_log=_names(f, "policy_log"),
        summary=_str(f, "Summary"),
        extensions=tuple(
            (str(k), str(v))
            for k, vals in ext.items()
            for v in (vals if isinstance(vals, list) else [vals])
        ),
    )
