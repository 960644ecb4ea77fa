"""A flow's ``hubble observe -o json`` line, encoded directly: the fast path of the flow log.

Role: ``encode_flow(f)`` returns exactly ``json.dumps(jsonpb.to_json(f),
separators=(",", ":"), ensure_ascii=False)`` — the same keys in the same order with the
same omissions — without building the nested dicts of every flow. The agent's flow pump
encodes every kernel event (thousands per second in a connection burst), and most of a
flow repeats: the same pods, interfaces, policies, flags and clock tick. So each
sub-message is encoded once (with ``jsonpb``'s own helpers, so the rules live in one
place) and its JSON text is kept in a bounded cache keyed by the frozen value; a flow is
then a concatenation of cached fragments, a few scalars and its UUID. Ports change
with every connection, so L4 is written around its cached flags rather than cached.
``encode_fields(**kw)`` is the line of ``Flow(**kw)`` without making the Flow (the pump
builds lines only: ``FlowEnricher.to_lines``).

``tests/unit/datapath/linux/test_flow_bytes.py`` pins the bytes and
``tests/unit/observe/test_observe_flowline.py`` checks equality with ``jsonpb.to_json``
on generated flows.

Inputs: a ``Flow`` or its fields. Outputs: ``str`` (one JSON object, no newline). Pure apart from the
caches; imports only the standard library and ``ciliate.observe``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable
from json.encoder import encode_basestring
from typing import Any, TypeVar

from ciliate.observe import jsonpb
from ciliate.observe.flow import (
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
    Layer4,
    Layer7,
    NetworkInterface,
    Policy,
    Service,
    TCPFlags,
    TrafficDirection,
    Verdict,
    compute_summary,
)
from ciliate.observe.reasons import TraceObservationPoint, TraceReason, drop_reason_name

_CACHE_MAX = 4096
_EMITTER = Emitter()  # Flow's default (a fresh equal one per flow there)
_K = TypeVar("_K", bound=Hashable)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


class _Fragments:
    """JSON text of sub-messages by value; cleared when full (the working set of a node
    is small: its pods, peers and policies)."""

    def __init__(self) -> None:
        self._d: dict[Hashable, str] = {}

    def get(self, key: _K, make: Callable[[_K], Any]) -> str:
        text = self._d.get(key)
        if text is None:
            if len(self._d) >= _CACHE_MAX:
                self._d.clear()
            text = self._d[key] = _dumps(make(key))
        return text


# one cache per message kind: keys of different kinds never meet
_emitters, _eths, _ips, _l4s, _eps = (
    _Fragments(),
    _Fragments(),
    _Fragments(),
    _Fragments(),
    _Fragments(),
)
_ets, _svcs, _files, _itfs = _Fragments(), _Fragments(), _Fragments(), _Fragments()
_pols, _exts, _flag_texts = _Fragments(), _Fragments(), _Fragments()
_times: dict[int, str] = {}
_enum_names: dict[tuple[type, int], str] = {}


def _timestamp(time_ns: int) -> str:
    """The quoted RFC 3339 text; a batch of flows shares its clock reading."""
    text = _times.get(time_ns)
    if text is None:
        if len(_times) >= 64:
            _times.clear()
        text = _times[time_ns] = '"' + jsonpb.format_timestamp(time_ns) + '"'
    return text


def _l4_key(key: tuple[Any, bool]) -> dict[str, Any]:
    return jsonpb._l4_json(key[0], key[1])


def _flags(flags: TCPFlags) -> dict[str, bool]:
    return {n: True for n in TCPFlags.PROTO_ORDER if getattr(flags, n)}


def _ports(l4: TCP | UDP | SCTP) -> str:
    """The members of jsonpb's ``_ports_json`` (zero ports omitted), without braces."""
    sp, dp = l4.source_port, l4.destination_port
    if sp and dp:
        return f'"source_port":{int(sp)},"destination_port":{int(dp)}'
    if sp:
        return f'"source_port":{int(sp)}'
    return f'"destination_port":{int(dp)}' if dp else ""


def _l4(l4: Any, l3l4: bool) -> str:
    """``jsonpb._l4_json`` as text. Ports differ from connection to connection, so TCP,
    UDP and SCTP are written here around the cached flags; ICMP is cached whole."""
    cls = type(l4)
    if cls is TCP:
        ports = _ports(l4)
        flags = _flag_texts.get(l4.flags, _flags)
        if flags != "{}" or l3l4:  # see jsonpb._l4_json
            ports = (ports + ',"flags":' if ports else '"flags":') + flags
        return '{"TCP":{' + ports + "}}"
    if cls is UDP:
        return '{"UDP":{' + _ports(l4) + "}}"
    if cls is SCTP:
        return '{"SCTP":{' + _ports(l4) + "}}"
    return _l4s.get((l4, l3l4), _l4_key)


def _emitter(e: Any) -> dict[str, Any]:
    return jsonpb._fields(("name", e.name), ("version", e.version))


def _ethernet(e: Any) -> dict[str, Any]:
    return jsonpb._fields(("source", e.source), ("destination", e.destination))


def _ip(ip: Any) -> dict[str, Any]:
    d = jsonpb._fields(
        ("source", ip.source), ("source_xlated", ip.source_xlated), ("destination", ip.destination)
    )
    jsonpb._enum(d, "ipVersion", ip.ip_version)
    jsonpb._put(d, "encrypted", ip.encrypted)
    return d


def _event_type(et: Any) -> dict[str, Any]:
    return jsonpb._fields(("type", et.type), ("sub_type", et.sub_type))


def _service(s: Any) -> dict[str, Any]:
    return jsonpb._fields(("name", s.name), ("namespace", s.namespace))


def _file(fi: Any) -> dict[str, Any]:
    return jsonpb._fields(("name", fi.name), ("line", fi.line))


def _interface(i: Any) -> dict[str, Any]:
    return jsonpb._fields(("index", i.index), ("name", i.name))


def _policies(pols: tuple[Policy, ...]) -> list[dict[str, Any]]:
    return [jsonpb._policy_json(p) for p in pols]


def _enum(value: Any) -> str:
    """``"NAME"`` of an IntEnum member (protojson prints enums by name)."""
    key = (type(value), int(value))
    text = _enum_names.get(key)
    if text is None:
        text = _enum_names[key] = '"' + value.name + '"'
    return text


def _str_list(items: tuple[str, ...]) -> str:
    return "[" + ",".join(map(encode_basestring, items)) + "]"


def encode_flow(f: Flow) -> str:
    """``json.dumps(to_json(f), separators=(",", ":"), ensure_ascii=False)``, faster."""
    return encode_fields(
        f.time_ns, f.verdict, f.uuid, f.emitter, f.drop_reason, f.auth_type, f.ethernet,
        f.ip, f.l4, f.source, f.destination, f.type, f.node_name, f.node_labels,
        f.source_names, f.destination_names, f.l7, f.is_reply, f.event_type,
        f.source_service, f.destination_service, f.traffic_direction, f.policy_match_type,
        f.trace_observation_point, f.trace_reason, f.file, f.interface, f.proxy_port,
        f.egress_allowed_by, f.ingress_allowed_by, f.egress_denied_by, f.ingress_denied_by,
        f.policy_log, f.summary, f.extensions,
    )  # fmt: skip


def encode_fields(
    time_ns: int,
    verdict: Verdict,
    uuid: str = "",
    emitter: Emitter | None = _EMITTER,
    drop_reason: int = 0,
    auth_type: AuthType = AuthType.DISABLED,
    ethernet: Ethernet | None = None,
    ip: IP | None = None,
    l4: Layer4 | None = None,
    source: Endpoint | None = None,
    destination: Endpoint | None = None,
    type: FlowType = FlowType.L3_L4,  # Flow's field name (shadows the builtin here)
    node_name: str = "",
    node_labels: tuple[str, ...] = (),
    source_names: tuple[str, ...] = (),
    destination_names: tuple[str, ...] = (),
    l7: Layer7 | None = None,
    is_reply: bool | None = None,
    event_type: CiliumEventType | None = None,
    source_service: Service | None = None,
    destination_service: Service | None = None,
    traffic_direction: TrafficDirection = TrafficDirection.TRAFFIC_DIRECTION_UNKNOWN,
    policy_match_type: int = 0,
    trace_observation_point: TraceObservationPoint = TraceObservationPoint.UNKNOWN_POINT,
    trace_reason: TraceReason = TraceReason.TRACE_REASON_UNKNOWN,
    file: FileInfo | None = None,
    interface: NetworkInterface | None = None,
    proxy_port: int = 0,
    egress_allowed_by: tuple[Policy, ...] = (),
    ingress_allowed_by: tuple[Policy, ...] = (),
    egress_denied_by: tuple[Policy, ...] = (),
    ingress_denied_by: tuple[Policy, ...] = (),
    policy_log: tuple[str, ...] = (),
    summary: str = "",
    extensions: tuple[tuple[str, str], ...] = (),
) -> str:
    """The line of the Flow these arguments would make (``Flow``'s fields, in its order,
    with its defaults, its computed Summary), without making the Flow: for producers
    that only write flows (the agent's flow pump). ``encode_flow(Flow(**kw)) ==
    encode_fields(**kw)``."""
    ts = _timestamp(time_ns)
    p = ['{"flow":{"time":', ts]
    a = p.append
    if uuid:
        a(',"uuid":' + encode_basestring(uuid))
    if emitter is not None:
        a(',"emitter":' + _emitters.get(emitter, _emitter))
    if verdict:
        a(',"verdict":' + _enum(verdict))
    if drop_reason:
        a(',"drop_reason":' + str(int(drop_reason)))
    if auth_type:
        a(',"auth_type":' + _enum(auth_type))
    if ethernet is not None:
        a(',"ethernet":' + _eths.get(ethernet, _ethernet))
    if ip is not None:
        a(',"IP":' + _ips.get(ip, _ip))
    if l4 is not None:
        a(',"l4":' + _l4(l4, type is FlowType.L3_L4))
    if source is not None:
        a(',"source":' + _eps.get(source, jsonpb._endpoint_json))
    if destination is not None:
        a(',"destination":' + _eps.get(destination, jsonpb._endpoint_json))
    if type:
        a(',"Type":' + _enum(type))
    if node_name:
        a(',"node_name":' + encode_basestring(node_name))
    for key, names in (
        ("node_labels", node_labels),
        ("source_names", source_names),
        ("destination_names", destination_names),
    ):
        if names:
            a(f',"{key}":' + _str_list(names))
    if l7 is not None:
        a(',"l7":' + _dumps(jsonpb._l7_json(l7)))
    if is_reply:
        a(',"reply":true')
    if event_type is not None:
        a(',"event_type":' + _ets.get(event_type, _event_type))
    if source_service is not None:
        a(',"source_service":' + _svcs.get(source_service, _service))
    if destination_service is not None:
        a(',"destination_service":' + _svcs.get(destination_service, _service))
    if traffic_direction:
        a(',"traffic_direction":' + _enum(traffic_direction))
    if policy_match_type:
        a(',"policy_match_type":' + str(int(policy_match_type)))
    if trace_observation_point:
        a(',"trace_observation_point":' + _enum(trace_observation_point))
    if trace_reason:
        a(',"trace_reason":' + _enum(trace_reason))
    if drop_reason:
        a(',"drop_reason_desc":' + encode_basestring(drop_reason_name(drop_reason)))
    if file is not None:
        a(',"file":' + _files.get(file, _file))
    if is_reply is not None:
        a(',"is_reply":true' if is_reply else ',"is_reply":false')
    if interface is not None:
        a(',"interface":' + _itfs.get(interface, _interface))
    if proxy_port:
        a(',"proxy_port":' + str(int(proxy_port)))
    if not summary:
        summary = compute_summary(l4, l7)
    if summary:
        a(',"Summary":' + encode_basestring(summary))
    for key, pols in (
        ("egress_allowed_by", egress_allowed_by),
        ("ingress_allowed_by", ingress_allowed_by),
        ("egress_denied_by", egress_denied_by),
        ("ingress_denied_by", ingress_denied_by),
    ):
        if pols:
            a(f',"{key}":' + _pols.get(pols, _policies))
    if policy_log:
        a(',"policy_log":' + _str_list(policy_log))
    if extensions:
        a(',"extensions":' + _exts.get(extensions, jsonpb._extensions_json))
    a("}")
    if node_name:
        a(',"node_name":' + encode_basestring(node_name))
    a(',"time":' + ts + "}")
    return "".join(p)
