"""The datapath's vocabulary: trace steps, flow events, verdicts, drop reasons, results.

Both datapaths speak it: the model datapath (``datapath.sim``) produces ``TraceStep``s
and ``FlowEvent``s while it walks a packet; the kernel datapath turns ring-buffer events
into the same ``FlowEvent``s. Observation points and drop reason codes are Cilium's
(cilium.md §3.6, §5), so the numbers agree with ``cilium-dbg monitor`` and Hubble.

Public entry points (implemented in ``datapath.sim``):

* ``trace(state, src, dst, port, protocol, http=None, clock=None, rng=None) -> TraceResult``
* ``probe(state, src, dst, port, protocol, http=None) -> ProbeResult``

Inputs: nothing but the standard library, ``desired`` and ``observe.reasons`` (the drop
reason texts). Must not import the control plane's engines, the kernel datapath or any
I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Any, Protocol

from ciliate.desired import DesiredState
from ciliate.observe.reasons import DROP_REASONS


class DropReason(enum.IntEnum):
    """Drop reason codes (bpf/lib/common.h; positive as Hubble reports them)."""

    INVALID_SOURCE_IP = 132
    POLICY_DENIED = 133
    INVALID_PACKET_DROPPED = 134
    CT_UNKNOWN_L4_PROTOCOL = 137
    UNSUPPORTED_L3_PROTOCOL = 139
    UNKNOWN_L4_PROTOCOL = 142
    UNKNOWN_L3_TARGET_ADDRESS = 150
    STALE_OR_UNROUTABLE_IP = 151
    SERVICE_BACKEND_NOT_FOUND = 158
    NO_TUNNEL_OR_ENCAPSULATION_ENDPOINT = 160
    UNKNOWN_CONNECTION_TRACKING_STATE = 163
    FIB_LOOKUP_FAILED = 169
    ENCAPSULATION_TRAFFIC_IS_PROHIBITED = 170
    INVALID_IDENTITY = 171
    UNKNOWN_SENDER = 172
    IS_A_CLUSTERIP = 174
    DENIED_BY_LB_SRC_RANGE_CHECK = 177
    POLICY_DENY = 181
    TTL_EXCEEDED = 196
    AUTH_REQUIRED = 189
    DROP_EP_NOT_READY = 203

    @property
    def text(self) -> str:
        return drop_text(int(self))


def drop_text(code: int) -> str:
    """Cilium's text for a drop reason (``observe.reasons``, the one table), else the code."""
    info = DROP_REASONS.get(code)
    return info.text if info is not None else f"{code}"


def drop_name(code: int) -> str:
    try:
        return DropReason(code).name
    except ValueError:
        return f"DROP_REASON_{code}"


class ObsPoint(enum.IntEnum):
    """Trace observation points: the datapath subtype (cilium.md §3.6)."""

    TO_ENDPOINT = 0
    TO_PROXY = 1
    TO_HOST = 2
    TO_STACK = 3
    TO_OVERLAY = 4
    FROM_ENDPOINT = 5
    FROM_PROXY = 6
    FROM_HOST = 7
    FROM_STACK = 8
    FROM_OVERLAY = 9
    FROM_NETWORK = 10
    TO_NETWORK = 11

    @property
    def text(self) -> str:
        """The monitor's name: ``to-endpoint``, ``from-overlay``."""
        return self.name.lower().replace("_", "-")

    @property
    def hubble(self) -> str:
        """Hubble's TraceObservationPoint enum name (0 is reported as TO_ENDPOINT=101)."""
        return self.name


class Verdict(enum.StrEnum):
    FORWARDED = "FORWARDED"
    DROPPED = "DROPPED"
    REDIRECTED = "REDIRECTED"


class EventType(enum.IntEnum):
    """Monitor message types (cilium.md §3.6)."""

    DROP = 1
    TRACE = 4
    POLICY_VERDICT = 5
    L7 = 129


@dataclass(frozen=True, slots=True)
class MapLookup:
    """One map lookup made by a program: which map, the key bytes, what it returned."""

    map: str
    key_hex: str  # "0a 0a 02 79 00 ..." as bpftool prints it
    result: str  # "hit: id 1587 ifindex 12 ..." or "miss"
    hit: bool = True
    value_hex: str = ""


@dataclass(frozen=True, slots=True)
class TraceStep:
    """One decision of one program at one place: the unit of a trace.

    ``action`` is the word a reader scans for (``from-endpoint``, ``policy``,
    ``service``, ``redirect``, ``encap``, ``deliver``, ``drop``, ``arp-reply``...);
    ``detail`` is one human line; ``lookups`` are the map lookups made for it."""

    node: str
    interface: str
    program: str
    action: str
    detail: str
    packet: str  # the packet's connection summary at this point
    lookups: tuple[MapLookup, ...] = ()
    verdict: str = ""  # FORWARDED | DROPPED | REDIRECTED | ""
    drop_reason: int = 0
    provenance: tuple[str, ...] = ()  # "CiliumNetworkPolicy ns/name spec.egress[0]"
    encap: str = ""  # "VXLAN 172.18.0.2 -> 172.18.0.4 udp/8472 vni 3372"
    ifindex: int = 0
    # The packet's ends at this point, as ``packet`` writes them ("10.96.0.10:80", or
    # the bare address for ICMP/ARP), and the pod of the endpoint a step is at or
    # names (from-endpoint, to-endpoint, a cilium_lxc redirect, a policy verdict or its
    # drop; "health" for the health endpoint): renderers read these instead of parsing
    # the texts.
    src: str = ""
    dst: str = ""
    pod: str = ""
    # What a ``tunnel`` step sends to: the remote node's address, and where the datapath
    # found it ("cilium_ipcache", or "conntrack" for a reply going back through the
    # overlay its connection came in by); what a ``service`` step translated: the
    # frontend "VIP:port" before DNAT. Renderers read these, not ``detail``.
    tunnel_endpoint: str = ""
    tunnel_source: str = ""
    frontend: str = ""


@dataclass(frozen=True, slots=True)
class FlowEndpoint:
    identity: int
    ip: str = ""
    id: int = 0  # endpoint ID (local endpoints only)
    namespace: str = ""
    pod_name: str = ""
    labels: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FlowEvent:
    """A datapath event as Hubble records it (flow.proto field names, cilium.md §14).

    ``to_hubble()`` gives the JSON object of ``hubble observe -o json``'s ``flow``."""

    node: str
    event_type: EventType
    sub_type: int  # obs point for traces, drop reason for drops, 0 for verdicts
    verdict: Verdict
    source: FlowEndpoint
    destination: FlowEndpoint
    summary: str
    l4: dict[str, Any] = field(default_factory=dict)
    ethernet: tuple[str, str] = ("", "")
    ifindex: int = 0
    interface: str = ""
    is_reply: bool | None = None
    traffic_direction: str = "TRAFFIC_DIRECTION_UNKNOWN"
    trace_reason: str = ""
    drop_reason: int = 0
    match_type: int = 0
    proxy_port: int = 0
    file: str = ""
    tunnel: dict[str, Any] = field(default_factory=dict)
    policies: tuple[str, ...] = ()  # rendered provenance
    policy_refs: tuple[tuple[str, str, str], ...] = ()  # (kind, namespace, name)
    time: float = 0.0  # seconds since the epoch (the walk's injected clock)
    # L7 access-log records (event_type L7): (REQUEST|RESPONSE, method, url, status code)
    http: tuple[str, str, str, int] | None = None

    def to_hubble(self, cluster: str = "") -> dict[str, Any]:
        def ep(e: FlowEndpoint) -> dict[str, Any]:
            d: dict[str, Any] = {}
            if e.id:
                d["ID"] = e.id
            d["identity"] = e.identity
            if cluster:
                d["cluster_name"] = cluster
            if e.namespace:
                d["namespace"] = e.namespace
            if e.labels:
                d["labels"] = list(e.labels)
            if e.pod_name:
                d["pod_name"] = e.pod_name
            return d

        out: dict[str, Any] = {"verdict": self.verdict.value}
        if self.drop_reason:
            out["drop_reason"] = self.drop_reason
        if self.ethernet[0]:
            out["ethernet"] = {"source": self.ethernet[0], "destination": self.ethernet[1]}
        out["IP"] = {
            "source": self.source.ip,
            "destination": self.destination.ip,
            "ipVersion": "IPv4",
        }
        if self.l4:
            out["l4"] = self.l4
        if self.tunnel:
            out["tunnel"] = self.tunnel
        out["source"] = ep(self.source)
        out["destination"] = ep(self.destination)
        out["Type"] = "L3_L4"
        out["node_name"] = f"{cluster}/{self.node}" if cluster else self.node
        if self.is_reply is not None:
            out["is_reply"] = self.is_reply
        out["event_type"] = {"type": int(self.event_type), "sub_type": self.sub_type}
        out["traffic_direction"] = self.traffic_direction
        if self.event_type == EventType.POLICY_VERDICT:
            out["policy_match_type"] = self.match_type
        if self.event_type == EventType.TRACE:
            obs = ObsPoint(self.sub_type)
            out["trace_observation_point"] = obs.hubble
            if self.trace_reason:
                out["trace_reason"] = self.trace_reason.upper()
        if self.drop_reason:
            out["drop_reason_desc"] = drop_name(self.drop_reason)
        if self.file:
            out["file"] = {"name": self.file}
        if self.ifindex:
            out["interface"] = {"index": self.ifindex, "name": self.interface}
        if self.proxy_port:
            out["proxy_port"] = self.proxy_port
        out["Summary"] = self.summary
        return out


class Kind(enum.StrEnum):
    POD = "pod"
    SERVICE = "service"
    NODE = "node"
    WORLD = "world"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A resolved trace end: what SRC/DST named, and where it is."""

    kind: Kind
    name: str  # ns/pod, ns/svc, node name, or the IP for world
    ip: IPv4Address
    node: str = ""  # the node hosting a pod / the node itself
    port: int = 0  # a service port given as ClusterIP:port

    def label(self) -> str:
        if self.kind == Kind.WORLD:
            return f"world {self.ip}"
        return f"{self.kind.value} {self.name} ({self.ip})"


Endpointish = str | Endpoint


@dataclass(frozen=True, slots=True)
class TraceResult:
    src: Endpoint
    dst: Endpoint
    protocol: str
    port: int
    steps: tuple[TraceStep, ...]  # the request path
    request_verdict: Verdict
    reply_steps: tuple[TraceStep, ...]
    flows: tuple[FlowEvent, ...]
    drop_reason: int
    delivered: bool  # the request reached the destination (and it answered)
    status: int | None = None  # HTTP status for L7 probes (200 / 403)
    backend: str = ""  # "10.10.1.7:80" when a service translated the request
    http: tuple[str, str] | None = None
    time: float = 0.0  # the clock's now() when the probe was sent

    @property
    def allowed(self) -> bool:
        return self.delivered


@dataclass(frozen=True, slots=True)
class ProbeResult:
    allowed: bool
    drop_reason: int
    status: int | None = None


class Prober(Protocol):
    """What ``reach`` needs from a datapath: one verdict per (src, dst, port, protocol).

    ``datapath.sim.probe`` is one; a kernel prober sending real packets can be another."""

    def __call__(
        self,
        state: DesiredState,
        src: str,
        dst: str,
        port: int = 80,
        protocol: str = "tcp",
        http: tuple[str, str] | None = None,
    ) -> ProbeResult: ...
