"""A flow predicate as Hubble's FlowFilter lists: allow list, deny list, time bounds.

Role: ``FilterSpec`` is one hubble ``FlowFilter`` (every non-empty field must match, the
values of one field ORed); ``FlowFilter`` combines an allow list (any spec), a deny list
(no spec), ``--since``/``--until`` bounds and ``--first``/``--last`` selection, and is
called as ``flt(flow) -> bool``. Input: ``observe.flow.Flow`` records; output: booleans
and selected lists. How flags become specs (either-direction flags, ``--not``) lives in
``observe.filters``. Pure: imports only the standard library, ``ciliate.model.meta`` and
``ciliate.observe``; must not import the datapaths, the store or the CLI.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ciliate.model.meta import LabelSelector
from ciliate.observe.flow import (
    SCTP,
    TCP,
    UDP,
    Endpoint,
    Flow,
    ICMPv4,
    ICMPv6,
    IPVersion,
    TrafficDirection,
    Verdict,
)

IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class EventTypeMatch:
    type: int
    sub_type: int | None = None  # None = any subtype


@dataclass(frozen=True, slots=True)
class FilterSpec:
    """One hubble ``FlowFilter``: every non-empty field must match (values ORed)."""

    source_ip: tuple[IPNet, ...] = ()
    destination_ip: tuple[IPNet, ...] = ()
    source_pod: tuple[str, ...] = ()  # "ns/prefix", "prefix" (any namespace)
    destination_pod: tuple[str, ...] = ()
    source_namespace: tuple[str, ...] = ()
    destination_namespace: tuple[str, ...] = ()
    source_label: tuple[LabelSelector, ...] = ()
    destination_label: tuple[LabelSelector, ...] = ()
    source_identity: tuple[int, ...] = ()
    destination_identity: tuple[int, ...] = ()
    source_port: tuple[int, ...] = ()
    destination_port: tuple[int, ...] = ()
    source_service: tuple[str, ...] = ()
    destination_service: tuple[str, ...] = ()
    source_fqdn: tuple[str, ...] = ()
    destination_fqdn: tuple[str, ...] = ()
    verdict: tuple[Verdict, ...] = ()
    event_type: tuple[EventTypeMatch, ...] = ()
    protocol: tuple[str, ...] = ()
    traffic_direction: tuple[TrafficDirection, ...] = ()
    node_name: tuple[str, ...] = ()
    http_status_code: tuple[str, ...] = ()
    http_method: tuple[str, ...] = ()
    http_path: tuple[re.Pattern[str], ...] = ()
    drop_reason_desc: tuple[str, ...] = ()
    uuid: tuple[str, ...] = ()
    tcp_flags: tuple[frozenset[str], ...] = ()
    ip_version: tuple[IPVersion, ...] = ()

    def is_empty(self) -> bool:
        return not any(getattr(self, f) for f in self.__dataclass_fields__)

    def matches(self, flow: Flow) -> bool:
        for name, check in _CHECKS:
            values = getattr(self, name)
            if values and not any(check(flow, v) for v in values):
                return False
        return True


# --- per-field checks -----------------------------------------------------------------


def _ip_in(addr: str, net: IPNet) -> bool:
    if not addr:
        return False
    try:
        return ipaddress.ip_address(addr) in net
    except ValueError:
        return False


def _pod_match(ep: Endpoint | None, pattern: str) -> bool:
    if ep is None or (not ep.pod_name and not pattern.endswith("/")):
        return False
    if "/" in pattern:
        ns, prefix = pattern.split("/", 1)
        if ns and ep.namespace != ns:
            return False
        return ep.pod_name.startswith(prefix) if prefix else True
    return ep.pod_name.startswith(pattern)


def _label_map(ep: Endpoint | None) -> dict[str, str]:
    """Labels keyed with their source (``k8s:app``), bare (``app``) and ``any:app``."""
    out: dict[str, str] = {}
    if ep is None:
        return out
    for lab in ep.labels:
        key, _, value = lab.partition("=")
        out[key] = value
        source, sep, bare = key.partition(":")
        if sep and source and bare:
            out.setdefault(bare, value)
            out.setdefault(f"any:{bare}", value)
    return out


def _service_match(svc_ns: str, svc_name: str, pattern: str) -> bool:
    if not svc_name:
        return False
    if "/" in pattern:
        ns, prefix = pattern.split("/", 1)
        if ns and svc_ns != ns:
            return False
        return svc_name.startswith(prefix)
    return svc_name.startswith(pattern)


def _protocol_match(flow: Flow, proto: str) -> bool:
    l4 = flow.l4
    if proto == "tcp":
        return isinstance(l4, TCP)
    if proto == "udp":
        return isinstance(l4, UDP)
    if proto == "sctp":
        return isinstance(l4, SCTP)
    if proto == "icmp":
        return isinstance(l4, ICMPv4 | ICMPv6)
    if proto == "icmpv4":
        return isinstance(l4, ICMPv4)
    if proto == "icmpv6":
        return isinstance(l4, ICMPv6)
    l7 = flow.l7
    if proto == "http":
        return l7 is not None and l7.http is not None
    if proto == "dns":
        return l7 is not None and l7.dns is not None
    return False


def _event_type_match(flow: Flow, m: EventTypeMatch) -> bool:
    mt = flow.message_type
    if mt is None or int(mt) != m.type:
        return False
    if m.sub_type is None:
        return True
    sub = flow.event_type.sub_type if flow.event_type is not None else None
    return sub == m.sub_type


def _node_match(flow: Flow, pattern: str) -> bool:
    name = flow.node_name
    if fnmatch.fnmatchcase(name, pattern):
        return True
    # A pattern without a cluster part matches the node in any cluster.
    return "/" not in pattern and fnmatch.fnmatchcase(name.rpartition("/")[2], pattern)


def _http_status_match(flow: Flow, spec: str) -> bool:
    if flow.l7 is None or flow.l7.http is None or not flow.l7.http.code:
        return False
    code = str(flow.l7.http.code)
    if spec.endswith("+"):
        return code.startswith(spec[:-1])
    return code == spec


def _http_path_match(flow: Flow, pattern: re.Pattern[str]) -> bool:
    if flow.l7 is None or flow.l7.http is None:
        return False
    return pattern.search(urlsplit(flow.l7.http.url).path or "/") is not None


def _tcp_flags_match(flow: Flow, flags: frozenset[str]) -> bool:
    return isinstance(flow.l4, TCP) and all(getattr(flow.l4.flags, f) for f in flags)


Check = Callable[[Flow, Any], bool]

_CHECKS: tuple[tuple[str, Check], ...] = (
    ("source_ip", lambda f, n: _ip_in(f.ip.source if f.ip else "", n)),
    ("destination_ip", lambda f, n: _ip_in(f.ip.destination if f.ip else "", n)),
    ("source_pod", lambda f, p: _pod_match(f.source, p)),
    ("destination_pod", lambda f, p: _pod_match(f.destination, p)),
    ("source_namespace", lambda f, ns: f.source is not None and f.source.namespace == ns),
    (
        "destination_namespace",
        lambda f, ns: f.destination is not None and f.destination.namespace == ns,
    ),
    ("source_label", lambda f, s: s.matches(_label_map(f.source))),
    ("destination_label", lambda f, s: s.matches(_label_map(f.destination))),
    ("source_identity", lambda f, i: (f.source.identity if f.source else 0) == i),
    ("destination_identity", lambda f, i: (f.destination.identity if f.destination else 0) == i),
    ("source_port", lambda f, p: f.ports[0] == p and p != 0),
    ("destination_port", lambda f, p: f.ports[1] == p and p != 0),
    (
        "source_service",
        lambda f, p: (
            f.source_service is not None
            and _service_match(f.source_service.namespace, f.source_service.name, p)
        ),
    ),
    (
        "destination_service",
        lambda f, p: (
            f.destination_service is not None
            and _service_match(f.destination_service.namespace, f.destination_service.name, p)
        ),
    ),
    ("source_fqdn", lambda f, p: any(fnmatch.fnmatch(n, p) for n in f.source_names)),
    ("destination_fqdn", lambda f, p: any(fnmatch.fnmatch(n, p) for n in f.destination_names)),
    ("verdict", lambda f, v: f.verdict is v),
    ("event_type", _event_type_match),
    ("protocol", _protocol_match),
    ("traffic_direction", lambda f, d: f.traffic_direction is d),
    ("node_name", _node_match),
    ("http_status_code", _http_status_match),
    (
        "http_method",
        lambda f, m: f.l7 is not None and f.l7.http is not None and f.l7.http.method.upper() == m,
    ),
    ("http_path", _http_path_match),
    ("drop_reason_desc", lambda f, n: bool(f.drop_reason) and f.drop_reason_desc == n),
    ("uuid", lambda f, u: f.uuid == u),
    ("tcp_flags", _tcp_flags_match),
    ("ip_version", lambda f, v: f.ip is not None and f.ip.ip_version is v),
)


# --- the whole filter -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FlowFilter:
    """Allow list, deny list, time bounds and scope: ``flt(flow) -> bool``."""

    allow: tuple[FilterSpec, ...] = ()
    deny: tuple[FilterSpec, ...] = ()
    since_ns: int | None = None
    until_ns: int | None = None
    last: int | None = None  # --last N: the newest N matching flows
    first: int | None = None  # --first N: the oldest N matching flows

    def __call__(self, flow: Flow) -> bool:
        return self.matches(flow)

    def matches(self, flow: Flow) -> bool:
        if self.since_ns is not None and flow.time_ns < self.since_ns:
            return False
        if self.until_ns is not None and flow.time_ns > self.until_ns:
            return False
        if self.allow and not any(s.matches(flow) for s in self.allow):
            return False
        return not any(s.matches(flow) for s in self.deny)

    def select(self, flows: Iterable[Flow]) -> list[Flow]:
        """The matching flows, cut to ``--first``/``--last`` (oldest first)."""
        out = [f for f in flows if self.matches(f)]
        if self.first is not None:
            out = out[: self.first]
        if self.last is not None:
            out = out[-self.last :] if self.last > 0 else []
        return out


MATCH_ALL = FlowFilter()
