"""Flow records: Hubble's ``flow.Flow`` as frozen dataclasses, with its Summary text.

Role: the one record type both datapaths emit for every forward, drop, policy verdict
and proxy record (../shared/reference/cilium.md §14.1). Inputs: values the producer
decoded (model datapath steps, BPF ring-buffer events). Outputs: ``Flow`` objects whose
fields are flow.proto's; ``to_json``/``from_json`` (implemented in ``observe.jsonpb``)
give exactly the JSON ``hubble observe -o json`` prints.

Python attribute names are snake_case (``Endpoint.id`` for proto ``ID``, ``Flow.ip``
for ``IP``); the JSON names are spelled out in the encoder. Enums re-exported here
(``MessageType``, ``TraceObservationPoint``…) live in ``observe.reasons``. Pure: imports
only the standard library and ``ciliate.observe.reasons``; no I/O and no clock
(producers pass the time in, ``time_ns_of(clock.now())``).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ciliate.observe.reasons import (
    MessageType,
    PolicyMatchType,
    TraceObservationPoint,
    TraceReason,
    drop_reason_name,
)

EMITTER_NAME = "Hubble"
EMITTER_VERSION = "1.19.4"

# --- enums (flow.proto) ---------------------------------------------------------------


class Verdict(enum.IntEnum):
    VERDICT_UNKNOWN = 0
    FORWARDED = 1
    DROPPED = 2
    ERROR = 3
    AUDIT = 4
    REDIRECTED = 5
    TRACED = 6
    TRANSLATED = 7


class FlowType(enum.IntEnum):
    UNKNOWN_TYPE = 0
    L3_L4 = 1
    L7 = 2
    SOCK = 3


class TrafficDirection(enum.IntEnum):
    TRAFFIC_DIRECTION_UNKNOWN = 0
    INGRESS = 1
    EGRESS = 2


class IPVersion(enum.IntEnum):
    IP_NOT_USED = 0
    IPv4 = 1
    IPv6 = 2


class AuthType(enum.IntEnum):
    DISABLED = 0
    SPIRE = 1
    TEST_ALWAYS_FAIL = 2


class L7FlowType(enum.IntEnum):
    UNKNOWN_L7_TYPE = 0
    REQUEST = 1
    RESPONSE = 2
    SAMPLE = 3


# --- layers ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ethernet:
    source: str = ""
    destination: str = ""


@dataclass(frozen=True, slots=True)
class IP:
    source: str = ""
    destination: str = ""
    ip_version: IPVersion = IPVersion.IPv4
    source_xlated: str = ""  # post-SNAT source when the datapath masqueraded
    encrypted: bool = False


@dataclass(frozen=True, slots=True)
class TCPFlags:
    FIN: bool = False
    SYN: bool = False
    RST: bool = False
    PSH: bool = False
    ACK: bool = False
    URG: bool = False
    ECE: bool = False
    CWR: bool = False
    NS: bool = False

    # Hubble's summary order (threefour parser): SYN, ACK, RST, FIN, PSH, URG, ECE, CWR, NS.
    SUMMARY_ORDER = ("SYN", "ACK", "RST", "FIN", "PSH", "URG", "ECE", "CWR", "NS")
    PROTO_ORDER = ("FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR", "NS")

    def names(self) -> tuple[str, ...]:
        return tuple(n for n in self.SUMMARY_ORDER if getattr(self, n))

    @classmethod
    def of(cls, *names: str) -> TCPFlags:
        """``TCPFlags.of("SYN", "ACK")``."""
        return cls(**{n.upper(): True for n in names})

    @classmethod
    def from_bits(cls, bits: int) -> TCPFlags:
        """From the TCP header flag byte(s): FIN=0x01 … CWR=0x80, NS=0x100."""
        return cls(*(bool(bits & (1 << i)) for i in (0, 1, 2, 3, 4, 5, 6, 7, 8)))


@dataclass(frozen=True, slots=True)
class TCP:
    source_port: int = 0
    destination_port: int = 0
    flags: TCPFlags = TCPFlags()


@dataclass(frozen=True, slots=True)
class UDP:
    source_port: int = 0
    destination_port: int = 0


@dataclass(frozen=True, slots=True)
class SCTP:
    source_port: int = 0
    destination_port: int = 0


@dataclass(frozen=True, slots=True)
class ICMPv4:
    type: int = 0
    code: int = 0


@dataclass(frozen=True, slots=True)
class ICMPv6:
    type: int = 0
    code: int = 0


Layer4 = TCP | UDP | SCTP | ICMPv4 | ICMPv6


@dataclass(frozen=True, slots=True)
class Workload:
    name: str
    kind: str


@dataclass(frozen=True, slots=True)
class Endpoint:
    id: int = 0  # endpoint ID, local to the node (proto ``ID``)
    identity: int = 0
    cluster_name: str = ""
    namespace: str = ""
    labels: tuple[str, ...] = ()  # "k8s:app=web", sorted
    pod_name: str = ""
    workloads: tuple[Workload, ...] = ()


@dataclass(frozen=True, slots=True)
class Service:
    name: str
    namespace: str = ""


@dataclass(frozen=True, slots=True)
class CiliumEventType:
    type: int  # MessageType
    sub_type: int = 0


@dataclass(frozen=True, slots=True)
class NetworkInterface:
    index: int = 0
    name: str = ""


@dataclass(frozen=True, slots=True)
class FileInfo:
    name: str
    line: int = 0


@dataclass(frozen=True, slots=True)
class Policy:
    """A policy whose rule matched (decoded from the rule labels, cilium.md §1.2)."""

    name: str
    namespace: str = ""
    kind: str = ""  # NetworkPolicy / CiliumNetworkPolicy / CiliumClusterwideNetworkPolicy
    labels: tuple[str, ...] = ()
    revision: int = 0


@dataclass(frozen=True, slots=True)
class HTTPHeader:
    key: str
    value: str


@dataclass(frozen=True, slots=True)
class HTTP:
    code: int = 0
    method: str = ""
    url: str = ""
    protocol: str = "HTTP/1.1"
    headers: tuple[HTTPHeader, ...] = ()


@dataclass(frozen=True, slots=True)
class DNS:
    query: str = ""
    ips: tuple[str, ...] = ()
    ttl: int = 0
    cnames: tuple[str, ...] = ()
    observation_source: str = ""
    rcode: int = 0
    qtypes: tuple[str, ...] = ()
    rrtypes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Layer7:
    type: L7FlowType = L7FlowType.UNKNOWN_L7_TYPE
    latency_ns: int = 0
    http: HTTP | None = None
    dns: DNS | None = None


@dataclass(frozen=True, slots=True)
class Emitter:
    name: str = EMITTER_NAME
    version: str = EMITTER_VERSION


# --- the flow -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Flow:
    """One observed event (Hubble ``flow.Flow``). ``time_ns`` is epoch nanoseconds.

    ``summary`` is computed from the L4/L7 layers when left empty (Hubble's
    ``Summary``: the last decoded layer's text).
    """

    time_ns: int
    verdict: Verdict
    uuid: str = ""
    emitter: Emitter | None = field(default_factory=Emitter)
    drop_reason: int = 0  # the drop code; drop_reason_desc is derived from it
    auth_type: AuthType = AuthType.DISABLED
    ethernet: Ethernet | None = None
    ip: IP | None = None
    l4: Layer4 | None = None
    source: Endpoint | None = None
    destination: Endpoint | None = None
    type: FlowType = FlowType.L3_L4
    node_name: str = ""
    node_labels: tuple[str, ...] = ()
    source_names: tuple[str, ...] = ()
    destination_names: tuple[str, ...] = ()
    l7: Layer7 | None = None
    is_reply: bool | None = None  # None = unknown (drops), as a BoolValue
    event_type: CiliumEventType | None = None
    source_service: Service | None = None
    destination_service: Service | None = None
    traffic_direction: TrafficDirection = TrafficDirection.TRAFFIC_DIRECTION_UNKNOWN
    policy_match_type: int = 0  # PolicyMatchType value
    trace_observation_point: TraceObservationPoint = TraceObservationPoint.UNKNOWN_POINT
    trace_reason: TraceReason = TraceReason.TRACE_REASON_UNKNOWN
    file: FileInfo | None = None
    interface: NetworkInterface | None = None
    proxy_port: int = 0
    egress_allowed_by: tuple[Policy, ...] = ()
    ingress_allowed_by: tuple[Policy, ...] = ()
    egress_denied_by: tuple[Policy, ...] = ()
    ingress_denied_by: tuple[Policy, ...] = ()
    policy_log: tuple[str, ...] = ()
    summary: str = ""
    # Our provenance (rule, file:line, …) carried in Hubble's ``extensions`` Any field.
    extensions: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not self.summary:
            object.__setattr__(self, "summary", compute_summary(self.l4, self.l7))

    @property
    def time(self) -> float:
        """Seconds since the epoch (loses sub-microsecond precision; use time_ns)."""
        return self.time_ns / 1e9

    @property
    def drop_reason_desc(self) -> str:
        return drop_reason_name(self.drop_reason) if self.drop_reason else ""

    @property
    def message_type(self) -> MessageType | None:
        """The monitor message type: from event_type, else guessed from the fields."""
        if self.event_type is not None:
            try:
                return MessageType(self.event_type.type)
            except ValueError:
                return None
        if self.type is FlowType.L7:
            return MessageType.ACCESS_LOG
        if self.verdict is Verdict.DROPPED and self.drop_reason:
            return MessageType.DROP
        if self.trace_observation_point is not TraceObservationPoint.UNKNOWN_POINT:
            return MessageType.TRACE
        return None

    @property
    def ports(self) -> tuple[int, int]:
        """(source, destination) L4 ports; (0, 0) for ICMP and unknown L4."""
        if isinstance(self.l4, TCP | UDP | SCTP):
            return self.l4.source_port, self.l4.destination_port
        return 0, 0


def time_ns_of(seconds: float) -> int:
    """Epoch nanoseconds of a float seconds value (the model datapath's clock)."""
    return round(seconds * 1_000_000_000)


# --- summaries (hubble threefour / seven parsers) ---------------------------------------

_ICMPV4_TYPES = {
    0: "EchoReply",
    3: "DestinationUnreachable",
    4: "SourceQuench",
    5: "Redirect",
    8: "EchoRequest",
    9: "RouterAdvertisement",
    10: "RouterSolicitation",
    11: "TimeExceeded",
    12: "ParameterProblem",
    13: "TimestampRequest",
    14: "TimestampReply",
    15: "InfoRequest",
    16: "InfoReply",
    17: "AddressMaskRequest",
    18: "AddressMaskReply",
}
_ICMPV4_CODES = {
    3: (
        "Net",
        "Host",
        "Protocol",
        "Port",
        "FragmentationNeeded",
        "SourceRoutingFailed",
        "NetUnknown",
        "HostUnknown",
        "SourceIsolated",
        "NetAdminProhibited",
        "HostAdminProhibited",
        "NetTOS",
        "HostTOS",
        "CommAdminProhibited",
        "HostPrecedence",
        "PrecedenceCutoff",
    ),
    5: ("Network", "Host", "TOS+Network", "TOS+Host"),
    11: ("TTLExceeded", "FragmentReassemblyTimeExceeded"),
    12: ("PointerIndicatesError", "MissingOption", "BadLength"),
}
_ICMPV6_TYPES = {
    1: "DestinationUnreachable",
    2: "PacketTooBig",
    3: "TimeExceeded",
    4: "ParameterProblem",
    128: "EchoRequest",
    129: "EchoReply",
    133: "RouterSolicitation",
    134: "RouterAdvertisement",
    135: "NeighborSolicitation",
    136: "NeighborAdvertisement",
    137: "Redirect",
}


def icmpv4_text(type_: int, code: int) -> str:
    """gopacket's ICMPv4TypeCode string: ``EchoRequest``, ``DestinationUnreachable(Port)``."""
    name = _ICMPV4_TYPES.get(type_)
    if name is None:
        return f"{type_}({code})"
    codes = _ICMPV4_CODES.get(type_)
    if codes is None:
        return name
    return f"{name}({codes[code]})" if code < len(codes) else f"{name}(Code: {code})"


def icmpv6_text(type_: int, code: int) -> str:
    name = _ICMPV6_TYPES.get(type_)
    return name if name is not None else f"{type_}({code})"


_DNS_RCODES = {
    0: "No Error",
    1: "Format Error",
    2: "Server Failure",
    3: "Non-Existent Domain",
    4: "Not Implemented",
    5: "Query Refused",
}


def compute_summary(l4: Layer4 | None, l7: Layer7 | None) -> str:
    """Hubble's ``Summary``: the text of the last decoded layer (cilium.md §13.12)."""
    if l7 is not None:
        if l7.http is not None:
            h = l7.http
            if l7.type is L7FlowType.RESPONSE:
                ms = l7.latency_ns // 1_000_000
                return f"{h.protocol} {h.code} {ms}ms ({h.method} {h.url})"
            return f"{h.protocol} {h.method} {h.url}"
        if l7.dns is not None:
            d = l7.dns
            qtypes = ",".join(d.qtypes)
            if l7.type is L7FlowType.RESPONSE:
                src = d.observation_source.capitalize() or "Proxy"
                if d.rcode:
                    rc = _DNS_RCODES.get(d.rcode, str(d.rcode))
                    return f"DNS Answer RCode: {rc} TTL: {d.ttl} ({src} {d.query} {qtypes})"
                ips = ",".join(d.ips)
                return f'DNS Answer "{ips}" TTL: {d.ttl} ({src} {d.query} {qtypes})'
            return f"DNS Query {d.query} {qtypes}"
    if isinstance(l4, TCP):
        return "TCP Flags: " + ", ".join(l4.flags.names())
    if isinstance(l4, UDP):
        return "UDP"
    if isinstance(l4, SCTP):
        return "SCTP"
    if isinstance(l4, ICMPv4):
        return "ICMPv4 " + icmpv4_text(l4.type, l4.code)
    if isinstance(l4, ICMPv6):
        return "ICMPv6 " + icmpv6_text(l4.type, l4.code)
    return ""


def to_json(f: Flow) -> dict[str, Any]:
    """The ``hubble observe -o json`` object of a flow (see ``observe.jsonpb``)."""
    from ciliate.observe import jsonpb  # jsonpb imports this module

    return jsonpb.to_json(f)


def from_json(obj: Mapping[str, Any]) -> Flow:
    """A Flow from ``to_json``'s output (see ``observe.jsonpb``)."""
    from ciliate.observe import jsonpb

    return jsonpb.from_json(obj)


__all__ = [
    "DNS",
    "HTTP",
    "IP",
    "SCTP",
    "TCP",
    "UDP",
    "AuthType",
    "CiliumEventType",
    "Emitter",
    "Endpoint",
    "Ethernet",
    "FileInfo",
    "Flow",
    "FlowType",
    "HTTPHeader",
    "ICMPv4",
    "ICMPv6",
    "IPVersion",
    "L7FlowType",
    "Layer4",
    "Layer7",
    "MessageType",
    "NetworkInterface",
    "Policy",
    "PolicyMatchType",
    "Service",
    "TCPFlags",
    "TraceObservationPoint",
    "TraceReason",
    "TrafficDirection",
    "Verdict",
    "Workload",
    "compute_summary",
    "from_json",
    "icmpv4_text",
    "icmpv6_text",
    "time_ns_of",
    "to_json",
]
