"""Kernel events: the cilium_events ring buffer -> raw notifications -> Hubble flows.

Role: three steps, each usable alone.

1. ``EventReader(pin)``: consumes a node's ``cilium_events`` ring buffer (libbpf
   ring_buffer through ``bpf.RingBuffer``); ``poll(timeout_ms)`` returns records as bytes.
2. ``parse_event(record)`` decodes one record: the trace_notify (v1) or drop_notify (v2)
   header of cilium.md §3.6 padded to ``HEADER_LEN`` bytes, then up to 128 bytes of the
   packet from its Ethernet header (``bpf/lib/trace.h`` writes them).
3. ``FlowEnricher(state, node).to_flow(event, time_ns)`` builds a ``ciliate.observe.flow.Flow``
   with Hubble's semantics (cilium.md §14.2): verdict, drop reason, observation point,
   trace reason / is_reply, traffic direction, L2/L3/L4 from the packet bytes, and the
   source/destination endpoints (endpoint ID on this node, identity, namespace, pod name,
   labels) from the ``DesiredState``; drops by policy are joined with the rule provenance
   kept in the compiled policy maps (``*_denied_by``). The packet layers come from
   ``eventpacket.decode_packet`` (re-exported here).

Cost: the agent's flow pump runs this for every event of a node (~6 per TCP connection),
so an enricher memoizes what it derives from its state (endpoints by address and label,
interfaces, policy matches with their provenance) and the decoders share the frozen
values they build; ``bench/suite_flows.py`` measures it.

Inputs: ring-buffer bytes, a DesiredState, the event time (the caller's clock).
Outputs: ``RawEvent``/``Flow`` values. Must not import the control plane engines or the
store; reads the DesiredState only.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import TypeVar

from ciliate.datapath.linux import bpf
from ciliate.datapath.linux.eventpacket import CACHE_MAX as _CACHE_MAX
from ciliate.datapath.linux.eventpacket import PacketSummary, decode_packet
from ciliate.desired import DesiredState, EndpointState, PolicyEntry, PolicyKey
from ciliate.observe.flow import (
    SCTP,
    TCP,
    UDP,
    CiliumEventType,
    Endpoint,
    FileInfo,
    Flow,
    NetworkInterface,
    Policy,
    TrafficDirection,
    Verdict,
)
from ciliate.observe.flowline import encode_fields
from ciliate.observe.reasons import (
    DROP_FILES,
    TraceObservationPoint,
    TraceReason,
    trace_point_of_subtype,
    trace_reason_of_datapath,
)

_T = TypeVar("_T")

MSG_DROP = 1
MSG_TRACE = 4
MSG_POLICY_VERDICT = 5
HEADER_LEN = 48  # every record's header area (trace v1 is 48 B; drop v2 is 40 B + pad)
TRACE_F_VXLAN = 0x4

TRACE_TO_LXC = 0
CT_REPLY = 2
DROP_POLICY = 133
DROP_POLICY_DENY = 181

_COMMON = struct.Struct("<BBHIIHBB")  # type, subtype, source, hash, len_orig, len_cap, ver, ext
_TRACE = struct.Struct("<IIHBBI16s")  # at 16: src_label, dst_label, dst_id, reason, flags, ifindex
_DROP = struct.Struct("<IIIHBbIB")  # at 16: labels, dst_id, line, file, ext_error, ifindex, flags
_VERDICT = struct.Struct(
    "<IiHBBB3xI"
)  # at 16: remote_label, verdict, dport, proto, flags, auth, cookie


@dataclass(frozen=True, slots=True)
class RawEvent:
    """One notification as the datapath wrote it (field names as in bpf/lib/trace.h)."""

    type: int
    subtype: int  # obs_point (trace) or drop reason (drop)
    source: int  # endpoint ID where the event happened
    hash: int
    len_orig: int
    len_cap: int
    version: int
    src_label: int
    dst_label: int
    dst_id: int
    ifindex: int
    reason: int = 0  # trace: CT state
    flags: int = 0
    line: int = 0  # drop
    file: int = 0
    ext_error: int = 0
    payload: bytes = b""
    verdict: int = 0  # policy verdict: 0 allow, -reason, >0 proxy port
    match_type: int = 0
    auth_type: int = 0
    egress: bool = False  # policy verdict direction

    @property
    def is_policy_verdict(self) -> bool:
        return self.type == MSG_POLICY_VERDICT

    @property
    def is_drop(self) -> bool:
        return self.type == MSG_DROP

    @property
    def vxlan(self) -> bool:
        return bool(self.flags & TRACE_F_VXLAN) and not self.is_drop


class EventError(ValueError):
    """A record too short or of a type this decoder does not know."""


class EventFiltered(Exception):
    """``to_flow`` of an event Hubble would not show (a policy verdict of a direction the
    endpoint does not enforce); ``to_flows`` skips these silently."""


def parse_event(record: bytes) -> RawEvent:
    if len(record) < HEADER_LEN:
        raise EventError(f"event of {len(record)} bytes is shorter than its header")
    typ, sub, source, h, len_orig, len_cap, ver, _ext = _COMMON.unpack_from(record, 0)
    payload = record[HEADER_LEN : HEADER_LEN + len_cap]
    if typ == MSG_TRACE:
        src, dst, dst_id, reason, flags, ifindex, _orig = _TRACE.unpack_from(record, 16)
        return RawEvent(
            typ, sub, source, h, len_orig, len_cap, ver, src, dst, dst_id, ifindex,
            reason=reason, flags=flags, payload=payload,
        )  # fmt: skip
    if typ == MSG_DROP:
        src, dst, dst_id, line, file, ext, ifindex, flags = _DROP.unpack_from(record, 16)
        return RawEvent(
            typ, sub, source, h, len_orig, len_cap, ver, src, dst, dst_id, ifindex,
            flags=flags, line=line, file=file, ext_error=ext, payload=payload,
        )  # fmt: skip
    if typ == MSG_POLICY_VERDICT:
        remote, verdict, _dport, _proto, flags, auth, _cookie = _VERDICT.unpack_from(record, 16)
        return RawEvent(
            typ, sub, source, h, len_orig, len_cap, ver, remote, 0, 0, 0,
            flags=flags, payload=payload, verdict=verdict, match_type=(flags >> 3) & 0x7,
            auth_type=auth, egress=(flags & 0x3) == 2,
        )  # fmt: skip
    raise EventError(f"unknown event type {typ}")


class EventReader:
    """Reader of one node's pinned ``cilium_events`` ring buffer."""

    def __init__(self, pin: str | Path) -> None:
        self._map = bpf.Map.pinned(pin)
        self._rb = bpf.RingBuffer(self._map.fd)
        lost = Path(pin).parent / "cilium_events_lost"
        self._lost = bpf.Map.pinned(lost) if lost.exists() else None

    def lost(self) -> int:
        """Notifications the programs could not write because the buffer was full (since
        the maps were created; Hubble's LostEvent count)."""
        if self._lost is None:
            return 0
        raw = self._lost.lookup(bytes(4)) or b""
        return sum(struct.unpack(f"<{len(raw) // 8}Q", raw))

    def fileno(self) -> int:
        return self._rb.fileno()

    def poll(self, timeout_ms: int = 0) -> list[bytes]:
        """Records that arrived, oldest first; waits up to timeout_ms for the first."""
        return self._rb.poll(timeout_ms)

    def events(self, timeout_ms: int = 0) -> list[RawEvent]:
        out = []
        for rec in self.poll(timeout_ms):
            try:
                out.append(parse_event(rec))
            except EventError:
                continue  # a record of a newer program version: skip, do not crash
        return out

    def close(self) -> None:
        self._rb.close()
        self._map.close()
        if self._lost is not None:
            self._lost.close()

    def __enter__(self) -> EventReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- enrichment --------------------------------------------------------------------------

_VARIANT = {d: "89ab"[int(d, 16) & 3] for d in "0123456789abcdef"}


def new_uuid() -> str:
    """A flow's random (version 4) UUID, as ``str(uuid.uuid4())`` spells it, without the
    UUID object; tests replace it to pin the encoded bytes."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


_EVENT_TYPES: dict[tuple[int, int], CiliumEventType] = {}
_FILES: dict[tuple[int, int], FileInfo] = {}
_TRACE_META: dict[tuple[int, int], tuple[TraceObservationPoint, TraceReason]] = {}


def _event_type(typ: int, sub: int) -> CiliumEventType:
    et = _EVENT_TYPES.get((typ, sub))
    if et is None:
        et = _EVENT_TYPES[(typ, sub)] = CiliumEventType(typ, sub)
    return et


def _file(file: int, line: int) -> FileInfo:
    fi = _FILES.get((file, line))
    if fi is None:
        if len(_FILES) >= _CACHE_MAX:
            _FILES.clear()
        fi = _FILES[(file, line)] = FileInfo(DROP_FILES.get(file, str(file)), line)
    return fi


def _trace_meta(subtype: int, reason: int) -> tuple[TraceObservationPoint, TraceReason]:
    meta = _TRACE_META.get((subtype, reason))
    if meta is None:
        meta = _TRACE_META[(subtype, reason)] = (
            trace_point_of_subtype(subtype),
            trace_reason_of_datapath(reason)[0],
        )
    return meta


_NO_POLICY: tuple[tuple[Policy, ...], tuple[tuple[str, str], ...]] = ((), ())


@dataclass(frozen=True, slots=True)
class _Located:
    endpoint: EndpointState
    node: str


class FlowEnricher:
    """Turns RawEvents of one node into Flows, resolving addresses with a DesiredState.
    Build a new one when the state changes: it indexes the state once, and memoizes
    what it derives from it (endpoints by address and identity, interfaces, policy
    matches), which stays true for as long as the state does."""

    def __init__(self, state: DesiredState, node: str) -> None:
        self.state = state
        self.node = node
        self.cluster = state.cluster
        self._by_ip: dict[IPv4Address, _Located] = {}
        for name, ns in state.nodes.items():
            for ep in ns.endpoints.values():
                self._by_ip[ep.ip] = _Located(ep, name)
        local = self._local = state.nodes.get(node)
        self._ifnames: dict[int, str] = {}
        self._prefixes: list[tuple[IPv4Network, int]] = []
        if local is not None:
            for d in local.devices:
                self._ifnames[d.ifindex] = d.name
            for ep in local.endpoints.values():
                self._ifnames.setdefault(ep.lxc_ifindex, ep.lxc_name)
            self._prefixes = sorted(
                ((k.prefix, v.sec_identity) for k, v in local.ipcache.items()),
                key=lambda p: -p[0].prefixlen,
            )
        self._node_name = f"{self.cluster}/{node}" if self.cluster else node
        self._endpoints: dict[tuple[str, int], Endpoint] = {}
        self._relabeled: dict[tuple[str, int, int], Endpoint] = {}
        self._local_eps: dict[int, Endpoint] = {}
        self._ifaces: dict[int, NetworkInterface] = {}
        self._matches: dict[
            tuple[int, int, bool, int, int, bool],
            tuple[tuple[Policy, ...], tuple[tuple[str, str], ...]],
        ] = {}

    @property
    def node_name(self) -> str:
        return self._node_name

    def _identity_of_ip(self, ip: IPv4Address) -> int:
        for net, ident in self._prefixes:
            if ip in net:
                return ident
        return 2

    def endpoint(self, ip_text: str, identity: int) -> Endpoint:
        """Hubble's Endpoint for an address: pod metadata when it is a pod (ID only when
        it lives on this node), else the identity and its labels."""
        key = (ip_text, identity)
        ep = self._endpoints.get(key)
        if ep is None:
            if len(self._endpoints) >= _CACHE_MAX:
                self._endpoints.clear()
            ep = self._endpoints[key] = self._resolve_endpoint(ip_text, identity)
        return ep

    def _resolve_endpoint(self, ip_text: str, identity: int) -> Endpoint:
        ip = IPv4Address(ip_text) if ip_text else None
        loc = self._by_ip.get(ip) if ip is not None else None
        if loc is not None and loc.endpoint.pod:
            ns, _, pod = loc.endpoint.pod.partition("/")
            return Endpoint(
                id=loc.endpoint.id if loc.node == self.node else 0,
                identity=identity or loc.endpoint.identity,
                cluster_name=self.cluster,
                namespace=ns,
                labels=tuple(sorted(loc.endpoint.labels)),
                pod_name=pod,
            )
        if not identity and ip is not None:
            identity = self._identity_of_ip(ip)
        ident = self.state.identities.get(identity)
        labels = tuple(sorted(ident.labels)) if ident is not None else ()
        if identity == 2 and not labels:
            labels = ("reserved:world",)
        return Endpoint(
            id=loc.endpoint.id if loc is not None and loc.node == self.node else 0,
            identity=identity,
            labels=labels,
        )

    def _interface(self, ifindex: int) -> NetworkInterface:
        itf = self._ifaces.get(ifindex)
        if itf is None:
            if len(self._ifaces) >= _CACHE_MAX:
                self._ifaces.clear()
            itf = self._ifaces[ifindex] = NetworkInterface(ifindex, self._ifnames.get(ifindex, ""))
        return itf

    def _policies(
        self, ep_id: int, remote: int, egress: bool, proto: int, dport: int, deny: bool
    ) -> tuple[tuple[Policy, ...], tuple[tuple[str, str], ...]]:
        """(policies, provenance extensions) of the entry of endpoint ep_id's policy map
        that matches (``_match_policy``); empty when none does."""
        key = (ep_id, remote, egress, proto, dport, deny)
        got = self._matches.get(key)
        if got is None:
            node = self._local
            if node is None or ep_id not in node.policy:
                got = _NO_POLICY
            else:
                entry = _match_policy(node.policy[ep_id], remote, egress, proto, dport, deny=deny)
                got = (
                    policies_of(entry),
                    tuple(("provenance", p) for p in provenance_texts(entry)),
                )
            if len(self._matches) >= _CACHE_MAX:
                self._matches.clear()
            self._matches[key] = got
        return got

    def wanted(self, ev: RawEvent) -> bool:
        """False for policy verdicts of a direction the endpoint does not enforce: the
        programs report every lookup, Cilium reports only enforced directions."""
        if ev.type != MSG_POLICY_VERDICT:
            return True
        node = self._local
        ep = node.endpoints.get(ev.source) if node is not None else None
        if ep is None:
            return False
        return ep.egress_enforced if ev.egress else ep.ingress_enforced

    def to_flows(self, events: list[RawEvent], time_ns: int) -> list[Flow]:
        """The flows of a batch of events, without the unwanted verdicts."""
        return [self._to_flow(ev, time_ns, Flow) for ev in events if self.wanted(ev)]

    def to_lines(self, events: list[RawEvent], time_ns: int) -> list[str]:
        """The flow log lines of ``to_flows`` (``flowline.encode_flow`` of each flow,
        no newline), encoded without making the Flows: the flow pump's path."""
        return [self._to_flow(ev, time_ns, encode_fields) for ev in events if self.wanted(ev)]

    def _local_endpoint(self, ep_id: int) -> Endpoint:
        """The endpoint a policy verdict was reported for, by its ID on this node."""
        out = self._local_eps.get(ep_id)
        if out is None:
            node = self._local
            ep = node.endpoints.get(ep_id) if node is not None else None
            out = (
                Endpoint(
                    id=ep.id,
                    identity=ep.identity,
                    cluster_name=self.cluster,
                    namespace=ep.pod.partition("/")[0],
                    labels=tuple(sorted(ep.labels)),
                    pod_name=ep.pod.partition("/")[2],
                )
                if ep is not None
                else Endpoint(id=ep_id)
            )
            if len(self._local_eps) >= _CACHE_MAX:
                self._local_eps.clear()
            self._local_eps[ep_id] = out
        return out

    def _remote_endpoint(self, ip_text: str, lookup: int, label: int) -> Endpoint:
        """The remote side of a verdict: ``endpoint(ip, lookup)`` with the verdict's label
        as its identity."""
        key = (ip_text, lookup, label)
        out = self._relabeled.get(key)
        if out is None:
            if len(self._relabeled) >= _CACHE_MAX:
                self._relabeled.clear()
            out = self._relabeled[key] = replace(self.endpoint(ip_text, lookup), identity=label)
        return out

    def _verdict_flow(
        self, ev: RawEvent, pkt: PacketSummary, time_ns: int, make: Callable[..., _T]
    ) -> _T:
        ip = pkt.ip
        local = self._local_endpoint(ev.source)
        # the remote label goes on the remote side, the local side is the endpoint
        # (looked up as the event's source/destination labels say: src_label, dst_label 0)
        if ev.egress:
            dst_ip = ip.destination if ip else ""
            src, dst = local, self._remote_endpoint(dst_ip, ev.dst_label, ev.src_label)
        else:
            src_ip = ip.source if ip else ""
            src, dst = self._remote_endpoint(src_ip, ev.src_label, ev.src_label), local
        pols: tuple[Policy, ...] = ()
        exts: tuple[tuple[str, str], ...] = ()
        if self._local is not None and ev.source in self._local.policy:
            l4 = pkt.l4
            dport = l4.destination_port if isinstance(l4, TCP | UDP | SCTP) else 0
            pols, exts = self._policies(
                ev.source, ev.src_label, ev.egress, pkt.proto, dport,
                ev.verdict == -DROP_POLICY_DENY,
            )  # fmt: skip
        if ev.verdict < 0:
            verdict, drop = Verdict.DROPPED, -ev.verdict
        elif ev.verdict > 0:
            verdict, drop = Verdict.REDIRECTED, 0
        else:
            verdict, drop = Verdict.FORWARDED, 0
        allowed = verdict is not Verdict.DROPPED
        if not allowed and drop != DROP_POLICY_DENY:
            pols = ()
        return make(
            time_ns=time_ns,
            uuid=new_uuid(),
            verdict=verdict,
            drop_reason=drop,
            ethernet=pkt.ethernet,
            ip=ip,
            l4=pkt.l4,
            source=src,
            destination=dst,
            node_name=self._node_name,
            is_reply=False if allowed else None,
            event_type=_event_type(ev.type, ev.subtype),
            traffic_direction=TrafficDirection.EGRESS if ev.egress else TrafficDirection.INGRESS,
            policy_match_type=ev.match_type,
            interface=self._interface(ev.ifindex) if ev.ifindex else None,
            egress_allowed_by=pols if allowed and ev.egress else (),
            ingress_allowed_by=pols if allowed and not ev.egress else (),
            egress_denied_by=pols if not allowed and ev.egress else (),
            ingress_denied_by=pols if not allowed and not ev.egress else (),
            summary=pkt.summary,
            extensions=exts,
        )

    def to_flow(self, ev: RawEvent, time_ns: int) -> Flow:
        """The flow of one event; raises ``EventFiltered`` when ``wanted(ev)`` is False."""
        if not self.wanted(ev):
            raise EventFiltered(f"policy verdict of endpoint {ev.source}: direction not enforced")
        return self._to_flow(ev, time_ns, Flow)

    def _to_flow(self, ev: RawEvent, time_ns: int, make: Callable[..., _T]) -> _T:
        """``make(**fields of the Flow)``: ``Flow`` itself, or ``encode_fields`` for its line."""
        pkt = decode_packet(ev.payload)
        if ev.type == MSG_POLICY_VERDICT:
            return self._verdict_flow(ev, pkt, time_ns, make)
        ip = pkt.ip
        src = self.endpoint(ip.source if ip else "", ev.src_label)
        dst = self.endpoint(ip.destination if ip else "", ev.dst_label)
        iface = self._interface(ev.ifindex) if ev.ifindex else None
        if ev.type == MSG_DROP:
            # Hubble: a drop is EGRESS when it happened at the source's endpoint.
            egress = src.id != 0 and ev.source == src.id
            denied: tuple[Policy, ...] = ()
            exts: tuple[tuple[str, str], ...] = ()
            if ev.subtype == DROP_POLICY_DENY:  # the provenance join of a deny entry
                l4 = pkt.l4
                dport = l4.destination_port if isinstance(l4, TCP | UDP | SCTP) else 0
                remote = dst.identity if egress else src.identity
                denied, exts = self._policies(ev.source, remote, egress, pkt.proto, dport, True)
            return make(
                time_ns=time_ns,
                uuid=new_uuid(),
                verdict=Verdict.DROPPED,
                drop_reason=ev.subtype,
                ethernet=pkt.ethernet,
                ip=ip,
                l4=pkt.l4,
                source=src,
                destination=dst,
                node_name=self._node_name,
                is_reply=None,
                event_type=_event_type(ev.type, ev.subtype),
                traffic_direction=(TrafficDirection.EGRESS if egress else TrafficDirection.INGRESS),
                file=_file(ev.file, ev.line),
                interface=iface,
                egress_denied_by=denied if egress else (),
                ingress_denied_by=() if egress else denied,
                summary=pkt.summary,
                extensions=exts,
            )
        point, reason = _trace_meta(ev.subtype, ev.reason)
        is_reply = ev.reason == CT_REPLY
        is_source_ep = src.id != 0 and ev.source == src.id
        return make(
            time_ns=time_ns,
            uuid=new_uuid(),
            verdict=Verdict.FORWARDED,
            ethernet=pkt.ethernet,
            ip=ip,
            l4=pkt.l4,
            source=src,
            destination=dst,
            node_name=self._node_name,
            is_reply=is_reply,
            event_type=_event_type(ev.type, ev.subtype),
            traffic_direction=(
                TrafficDirection.EGRESS if is_source_ep != is_reply else TrafficDirection.INGRESS
            ),
            trace_observation_point=point,
            trace_reason=reason,
            interface=iface,
            summary=pkt.summary,
        )


def policies_of(entry: PolicyEntry | None) -> tuple[Policy, ...]:
    if entry is None:
        return ()
    return tuple(Policy(name=p.name, namespace=p.namespace, kind=p.kind) for p in entry.provenance)


def provenance_texts(entry: PolicyEntry | None) -> tuple[str, ...]:
    """``<kind> <ns>/<name> <rule> (<file>:<line>)`` per rule, as the model datapath's flows
    carry them in ``extensions``, so both datapaths name a rule the same way."""
    if entry is None:
        return ()
    out = []
    for pv in entry.provenance:
        obj = "/".join(x for x in (pv.namespace, pv.name) if x)
        loc = f"({pv.file}:{pv.line})" if pv.file and pv.line else ""
        out.append(" ".join(x for x in (pv.kind, obj, pv.rule, loc) if x))
    return tuple(out)


def _match_policy(
    pmap: Mapping[PolicyKey, PolicyEntry],
    remote: int,
    egress: bool,
    proto: int,
    dport: int,
    *,
    deny: bool,
) -> PolicyEntry | None:
    """The most specific entry of pmap matching the packet (identity exact or 0, proto
    exact or 0, port within the entry's prefix), restricted to deny or allow entries."""
    best: tuple[int, PolicyEntry] | None = None
    for k, e in pmap.items():
        if e.deny != deny or k.egress != egress or k.identity not in (0, remote):
            continue
        if k.protocol and k.protocol != proto:
            continue
        if k.port_prefix_len:
            shift = 16 - k.port_prefix_len
            if (dport >> shift) != (k.dport >> shift):
                continue
        score = (1 if k.identity else 0) * 100 + k.lpm_prefix_len
        if best is None or score > best[0]:
            best = (score, e)
    return best[1] if best else None
