"""``hubble observe`` filters: flags → a flow predicate (cilium.md §13.12).

Role: ``add_filter_arguments(parser)`` declares hubble's filter flags on an argparse
parser; ``from_args(args)`` turns the parsed values into a ``FlowFilter`` (the predicate
itself, with ``select(flows)`` for ``--last``/``--first``, is ``observe.flowfilter``;
it is re-exported here). Also usable without
argparse: ``build_filter([Term(...), ...])``. Pure apart from one clock read: relative
``--since 5m`` needs the current time, which ``from_args`` takes from ``now_ns`` when
given (tests) and reads once otherwise. Imports only the standard library,
``ciliate.errors``, ``ciliate.model.meta``, ``ciliate.manifest.selector`` (the label
selector grammar ``get -l`` uses too) and ``ciliate.observe``.

Semantics, as Hubble's FlowFilter lists:

1. Values of one flag kind are ORed (``--verdict DROPPED --verdict AUDIT``).
2. Different kinds are ANDed (``--from-pod shop/web --protocol tcp``).
3. Either-direction flags (``--pod``, ``--ip``, ``--namespace``, ``--label``,
   ``--identity``, ``--port``, ``--service``, ``--fqdn``) build two specs like the
   hubble CLI does: one with them as source, one as destination; a flow matches if
   either spec matches (so ``--pod a --port 80`` means "a's side uses port 80").
4. ``--not`` negates the next filter flag: negated flags form a deny list built the
   same way; a flow is shown when it matches the allow list (or there is none) and
   no deny-list spec.
5. ``--since``/``--until`` bound the flow time; ``--last N``/``--first N`` select from
   what matched (``FlowFilter.select``).
"""

from __future__ import annotations

import argparse
import ipaddress
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ciliate.errors import CiliateError
from ciliate.manifest.selector import parse_selector
from ciliate.model.meta import LabelSelector
from ciliate.observe.flow import (
    IPVersion,
    TCPFlags,
    TrafficDirection,
    Verdict,
)
from ciliate.observe.flowfilter import MATCH_ALL, EventTypeMatch, FilterSpec, FlowFilter
from ciliate.observe.reasons import (
    DROP_REASON_BY_NAME,
    MESSAGE_TYPE_NAMES,
    RESERVED_IDENTITY_BY_NAME,
    TRACE_POINT_BY_NAME,
    MessageType,
)


class FilterError(CiliateError):
    """A filter flag value that cannot be understood (exit status 1)."""


# --- terms: one flag occurrence -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Term:
    """One filter flag as given: ``Term("from-pod", "shop/web")``, maybe negated."""

    flag: str
    value: str
    negated: bool = False


# flag → (source field, destination field); either-direction flags use both.
_DIRECTIONAL: Mapping[str, tuple[str, str]] = {
    "ip": ("source_ip", "destination_ip"),
    "pod": ("source_pod", "destination_pod"),
    "namespace": ("source_namespace", "destination_namespace"),
    "label": ("source_label", "destination_label"),
    "identity": ("source_identity", "destination_identity"),
    "port": ("source_port", "destination_port"),
    "service": ("source_service", "destination_service"),
    "fqdn": ("source_fqdn", "destination_fqdn"),
}
_GLOBAL: Mapping[str, str] = {
    "verdict": "verdict",
    "type": "event_type",
    "protocol": "protocol",
    "traffic-direction": "traffic_direction",
    "node-name": "node_name",
    "http-status": "http_status_code",
    "http-method": "http_method",
    "http-path": "http_path",
    "drop-reason-desc": "drop_reason_desc",
    "uuid": "uuid",
    "tcp-flags": "tcp_flags",
    "ip-version": "ip_version",
}


def _parse_value(field_name: str, flag: str, raw: str) -> Any:
    """Parse a flag value for a FilterSpec field; FilterError names the flag."""
    v = raw.strip()
    try:
        if field_name.endswith("_ip"):
            return ipaddress.ip_network(v, strict=False)
        if field_name.endswith("_identity"):
            name = v.removeprefix("reserved:")
            if name in RESERVED_IDENTITY_BY_NAME:
                return RESERVED_IDENTITY_BY_NAME[name]
            return int(name)
        if field_name.endswith("_port"):
            port = int(v)
            if not 0 < port < 65536:
                raise ValueError("port out of range")
            return port
        if field_name.endswith("_label"):
            return parse_label_selector(v)
        if field_name.endswith("_namespace"):
            return v.rstrip("/")
        if field_name == "verdict":
            return Verdict[v.upper()]
        if field_name == "event_type":
            return _parse_event_type(v)
        if field_name == "protocol":
            p = v.lower()
            if p not in ("tcp", "udp", "sctp", "icmp", "icmpv4", "icmpv6", "http", "dns", "kafka"):
                raise ValueError("unknown protocol")
            return p
        if field_name == "traffic_direction":
            return TrafficDirection[v.upper()]
        if field_name == "http_status_code":
            if not re.fullmatch(r"[1-5](\d{0,2}\+|\d\d)", v):
                raise ValueError("expected a status code (404) or a class (5+)")
            return v
        if field_name == "http_method":
            return v.upper()
        if field_name == "http_path":
            return re.compile(v)
        if field_name == "drop_reason_desc":
            if v.upper() not in DROP_REASON_BY_NAME:
                raise ValueError("unknown drop reason")
            return v.upper()
        if field_name == "tcp_flags":
            flags = frozenset(x.strip().upper() for x in v.split(",") if x.strip())
            if not flags or not flags <= set(TCPFlags.SUMMARY_ORDER):
                raise ValueError("expected flags like SYN,ACK")
            return flags
        if field_name == "ip_version":
            vv = v.lower().removeprefix("ip").removeprefix("v")
            return {"4": IPVersion.IPv4, "6": IPVersion.IPv6}[vv]
    except (ValueError, KeyError, re.error) as e:
        raise FilterError(f"--{flag}: invalid value {raw!r}: {e}") from None
    return v


def _parse_event_type(v: str) -> EventTypeMatch:
    name, _, sub = v.partition(":")
    mt = MESSAGE_TYPE_NAMES.get(name.lower())
    if mt is None:
        raise ValueError(f"unknown type (one of {', '.join(MESSAGE_TYPE_NAMES)})")
    if not sub:
        return EventTypeMatch(int(mt))
    if sub.isdigit():
        return EventTypeMatch(int(mt), int(sub))
    if mt is MessageType.TRACE and sub in TRACE_POINT_BY_NAME:
        return EventTypeMatch(int(mt), TRACE_POINT_BY_NAME[sub].subtype)
    if mt is MessageType.DROP and sub.upper() in DROP_REASON_BY_NAME:
        return EventTypeMatch(int(mt), DROP_REASON_BY_NAME[sub.upper()].code)
    raise ValueError(f"unknown {name} subtype {sub!r}")


def parse_label_selector(text: str) -> LabelSelector:
    """Kubernetes' label selector syntax (``app=web,tier!=db,env in (a,b),!legacy``),
    keys with or without Cilium's source (``k8s:app``): ``manifest.selector``'s grammar,
    the one ``get -l`` uses. An empty selector is an error here (a flag needs a value)."""
    if not text.strip():
        raise ValueError(f"empty selector {text!r}")
    return parse_selector(text, label_sources=True)


def _build_specs(terms: Sequence[Term]) -> tuple[FilterSpec, ...]:
    """Hubble's left/right construction (see the module docstring, rule 3)."""
    common: dict[str, list[Any]] = {}
    left: dict[str, list[Any]] = {}
    right: dict[str, list[Any]] = {}
    either = False
    for t in terms:
        flag = t.flag
        if flag in _GLOBAL:
            fname = _GLOBAL[flag]
            common.setdefault(fname, []).append(_parse_value(fname, flag, t.value))
            continue
        base = flag.removeprefix("from-").removeprefix("to-")
        if base not in _DIRECTIONAL:
            raise FilterError(f"unknown filter --{flag}")
        src, dst = _DIRECTIONAL[base]
        if flag.startswith("from-"):
            common.setdefault(src, []).append(_parse_value(src, flag, t.value))
        elif flag.startswith("to-"):
            common.setdefault(dst, []).append(_parse_value(dst, flag, t.value))
        else:
            either = True
            left.setdefault(src, []).append(_parse_value(src, flag, t.value))
            right.setdefault(dst, []).append(_parse_value(dst, flag, t.value))
    if not terms:
        return ()
    base_spec = FilterSpec(**{k: tuple(v) for k, v in common.items()})
    if not either:
        return (base_spec,)
    specs = []
    for side in (left, right):
        merged = {k: tuple(v) for k, v in common.items()}
        for k, v in side.items():
            merged[k] = merged.get(k, ()) + tuple(v)
        specs.append(FilterSpec(**merged))
    return tuple(specs)


def build_filter(
    terms: Sequence[Term],
    *,
    since_ns: int | None = None,
    until_ns: int | None = None,
    last: int | None = None,
    first: int | None = None,
) -> FlowFilter:
    return FlowFilter(
        allow=_build_specs([t for t in terms if not t.negated]),
        deny=_build_specs([t for t in terms if t.negated]),
        since_ns=since_ns,
        until_ns=until_ns,
        last=last,
        first=first,
    )


# --- times ------------------------------------------------------------------------------

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d)")
_DURATIONS = re.compile(r"(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h|d))+")
_UNIT_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
    "d": 86_400_000_000_000,
}


def parse_time(text: str, now_ns: int) -> int:
    """``--since``/``--until`` values: a duration ago (``30s``, ``5m``, ``1h30m``,
    ``2d``), or an RFC 3339 / ISO 8601 time (UTC when no zone is given)."""
    from ciliate.observe.jsonpb import parse_timestamp

    v = text.strip()
    if _DURATIONS.fullmatch(v):
        total = sum(float(n) * _UNIT_NS[u] for n, u in _DURATION.findall(v))
        return now_ns - int(total)
    iso = v.replace(" ", "T")
    if len(iso) == 10:  # a date alone
        iso += "T00:00:00"
    try:
        return parse_timestamp(iso)
    except ValueError:
        raise FilterError(
            f"invalid time {text!r}: use a duration (30s, 5m, 1h) or RFC 3339"
        ) from None


# --- argparse ------------------------------------------------------------------------

TERMS_DEST = "flow_filter_terms"
_NEGATE_DEST = "_flow_filter_negate_next"


class _TermAction(argparse.Action):
    """Records one filter flag occurrence as a ``Term`` (negated after ``--not``)."""

    def __init__(self, *args: Any, term_flag: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.term_flag = term_flag

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        terms = list(getattr(namespace, TERMS_DEST, None) or [])
        negate = bool(getattr(namespace, _NEGATE_DEST, False))
        vals = values if isinstance(values, list) else [values]
        for v in vals:
            terms.append(Term(self.term_flag, str(v), negate))
        setattr(namespace, TERMS_DEST, terms)
        setattr(namespace, _NEGATE_DEST, False)


class _NotAction(argparse.Action):
    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, _NEGATE_DEST, True)


# (flags, metavar, help); the first long flag names the Term.
_FILTER_FLAGS: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (("--pod",), "[NS/]POD", "flows from or to pods whose name starts with POD"),
    (("--from-pod",), "[NS/]POD", "flows from pods whose name starts with POD"),
    (("--to-pod",), "[NS/]POD", "flows to pods whose name starts with POD"),
    (("-n", "--namespace"), "NS", "flows from or to pods in namespace NS"),
    (("--from-namespace",), "NS", "flows from pods in NS"),
    (("--to-namespace",), "NS", "flows to pods in NS"),
    (("--ip",), "IP|CIDR", "flows from or to this address or range"),
    (("--from-ip",), "IP|CIDR", "flows from this address or range"),
    (("--to-ip",), "IP|CIDR", "flows to this address or range"),
    (("-l", "--label"), "SELECTOR", "flows from or to endpoints matching the label selector"),
    (("--from-label",), "SELECTOR", "flows from endpoints matching the selector"),
    (("--to-label",), "SELECTOR", "flows to endpoints matching the selector"),
    (("--identity",), "ID", "flows from or to this security identity (number or name)"),
    (("--from-identity",), "ID", "flows from this identity"),
    (("--to-identity",), "ID", "flows to this identity"),
    (("--port",), "PORT", "flows with this L4 source or destination port"),
    (("--from-port",), "PORT", "flows with this L4 source port"),
    (("--to-port",), "PORT", "flows with this L4 destination port"),
    (("--service",), "[NS/]SVC", "flows from or to this service"),
    (("--from-service",), "[NS/]SVC", "flows from this service"),
    (("--to-service",), "[NS/]SVC", "flows to this service"),
    (("--fqdn",), "PATTERN", "flows from or to this DNS name (wildcards ok)"),
    (("--from-fqdn",), "PATTERN", "flows from this DNS name"),
    (("--to-fqdn",), "PATTERN", "flows to this DNS name"),
    (
        ("--verdict",),
        "VERDICT",
        "FORWARDED, DROPPED, AUDIT, REDIRECTED, ERROR, TRACED or TRANSLATED",
    ),
    (
        ("-t", "--type"),
        "TYPE[:SUB]",
        "trace, drop, policy-verdict, l7, capture, trace-sock, debug, agent (e.g. trace:to-endpoint)",
    ),
    (("--protocol",), "PROTO", "tcp, udp, sctp, icmp, icmpv4, icmpv6, http, dns"),
    (("--traffic-direction",), "DIR", "ingress or egress"),
    (("--node-name",), "PATTERN", "flows observed on this node (cluster/node, wildcards ok)"),
    (("--http-status",), "CODE", "HTTP status code, or class such as 5+"),
    (("--http-method",), "METHOD", "HTTP request method"),
    (("--http-path",), "REGEX", "HTTP path (regular expression)"),
    (("--drop-reason-desc",), "NAME", "drop reason name, e.g. POLICY_DENIED"),
    (("--tcp-flags",), "FLAGS", "TCP flags that must all be set, e.g. SYN,ACK"),
    (("--ip-version",), "V", "4 or 6"),
    (("--uuid",), "UUID", "the flow with this UUID"),
)


def add_filter_arguments(parser: argparse.ArgumentParser) -> None:
    """Hubble's filter flags plus ``--not``, ``--since``, ``--until``, ``--last``, ``--first``."""
    g = parser.add_argument_group("flow filters (same flag ORed, different flags ANDed)")
    g.add_argument(
        "--not",
        action=_NotAction,
        nargs=0,
        dest=_NEGATE_DEST,
        default=False,
        help="negate the next filter flag (e.g. --not --verdict FORWARDED)",
    )
    for flags, metavar, help_ in _FILTER_FLAGS:
        name = next(f for f in flags if f.startswith("--"))[2:]
        g.add_argument(
            *flags,
            action=_TermAction,
            term_flag=name,
            dest=TERMS_DEST,
            default=None,
            metavar=metavar,
            help=help_,
        )
    s = parser.add_argument_group("flow scope")
    s.add_argument("--since", metavar="TIME", help="flows since TIME (5m, 1h, RFC 3339)")
    s.add_argument("--until", metavar="TIME", help="flows until TIME (5m, 1h, RFC 3339)")
    s.add_argument("--last", type=int, metavar="N", help="the newest N matching flows")
    s.add_argument("--first", type=int, metavar="N", help="the oldest N matching flows")


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """``-o compact|json|jsonpb|table|dict``, ``--print-node-name``, ``--print-policy-names``."""
    from ciliate.observe.render import OUTPUT_CHOICES

    parser.add_argument("-o", "--output", choices=OUTPUT_CHOICES, default="compact")
    parser.add_argument("--print-node-name", action="store_true", help="show the node name")
    parser.add_argument(
        "--print-policy-names",
        action="store_true",
        help="show the policies that allowed or denied a policy verdict",
    )


def from_args(args: argparse.Namespace, now_ns: int | None = None) -> FlowFilter:
    """The FlowFilter of parsed ``add_filter_arguments`` flags.

    ``now_ns`` anchors relative ``--since``/``--until`` (read from the clock once when
    not given). Raises FilterError for values it cannot understand.
    """
    terms: list[Term] = list(getattr(args, TERMS_DEST, None) or [])
    if getattr(args, _NEGATE_DEST, False):
        raise FilterError("--not must be followed by a filter flag")
    since = getattr(args, "since", None)
    until = getattr(args, "until", None)
    if (since or until) and now_ns is None:
        now_ns = time.time_ns()
    last = getattr(args, "last", None)
    first = getattr(args, "first", None)
    for name, n in (("last", last), ("first", first)):
        if n is not None and n < 0:
            raise FilterError(f"--{name}: must not be negative")
    assert now_ns is not None or not (since or until)
    flt = build_filter(
        terms,
        since_ns=parse_time(since, now_ns) if since and now_ns is not None else None,
        until_ns=parse_time(until, now_ns) if until and now_ns is not None else None,
        last=last,
        first=first,
    )
    return flt


def with_scope(flt: FlowFilter, **changes: Any) -> FlowFilter:
    """A copy with other time bounds / first / last (e.g. ``--follow`` drops ``last``)."""
    return replace(flt, **changes)


__all__ = [
    "MATCH_ALL",
    "EventTypeMatch",
    "FilterError",
    "FilterSpec",
    "FlowFilter",
    "Term",
    "add_filter_arguments",
    "add_output_arguments",
    "build_filter",
    "from_args",
    "parse_label_selector",
    "parse_time",
    "with_scope",
]
