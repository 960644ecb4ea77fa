"""Datapath event vocabularies as data: drop reasons, trace points, policy match types.

Role: the one table every producer (model datapath, kernel ring-buffer reader) and
every consumer (flow JSON, compact lines, filters) reads, so a code means the same
thing everywhere. Sources: ../shared/reference/cilium.md §5 (drop reasons =
bpf/lib/common.h = pkg/monitor/api/drop.go = flow.proto ``DropReason``), §3.6 (monitor
message types, trace observation points and reasons, drop file ids) and §3.3 (policy
match types). Pure data; imports only the standard library.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

# --- monitor message types (pkg/monitor/api/types.go) --------------------------------


class MessageType(enum.IntEnum):
    """The ``type`` byte of a monitor notification = Flow.event_type.type."""

    DROP = 1
    DEBUG = 2
    CAPTURE = 3
    TRACE = 4
    POLICY_VERDICT = 5
    RECORD_CAPTURE = 6
    TRACE_SOCK = 7
    ACCESS_LOG = 129  # L7 records from the proxy
    AGENT = 130


MESSAGE_TYPE_NAMES: Mapping[str, MessageType] = MappingProxyType(
    {
        "drop": MessageType.DROP,
        "debug": MessageType.DEBUG,
        "capture": MessageType.CAPTURE,
        "trace": MessageType.TRACE,
        "policy-verdict": MessageType.POLICY_VERDICT,
        "recorder": MessageType.RECORD_CAPTURE,
        "trace-sock": MessageType.TRACE_SOCK,
        "l7": MessageType.ACCESS_LOG,
        "agent": MessageType.AGENT,
    }
)
"""``hubble observe --type`` names."""


# --- drop reasons (§5) ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DropReasonInfo:
    code: int  # positive code as monitor and Hubble show it (the datapath returns -code)
    name: str  # flow.proto DropReason enum name (drop_reason_desc)
    text: str  # what ``cilium-dbg monitor`` and ``hubble observe`` print


def _table(*rows: tuple[int, str, str]) -> Mapping[int, DropReasonInfo]:
    return MappingProxyType({c: DropReasonInfo(c, n, t) for c, n, t in rows})


DROP_REASONS: Mapping[int, DropReasonInfo] = _table(
    (130, "INVALID_SOURCE_MAC", "Invalid source mac"),
    (131, "INVALID_DESTINATION_MAC", "Invalid destination mac"),
    (132, "INVALID_SOURCE_IP", "Invalid source ip"),
    (133, "POLICY_DENIED", "Policy denied"),
    (134, "INVALID_PACKET_DROPPED", "Invalid packet"),
    (135, "CT_TRUNCATED_OR_INVALID_HEADER", "CT: Truncated or invalid header"),
    # The proto name is historic; the agent text is what 136 means today.
    (136, "CT_MISSING_TCP_ACK_FLAG", "Fragmentation needed"),
    (137, "CT_UNKNOWN_L4_PROTOCOL", "CT: Unknown L4 protocol"),
    (138, "CT_CANNOT_CREATE_ENTRY_FROM_PACKET", "CT: Can't create entry from packet"),
    (139, "UNSUPPORTED_L3_PROTOCOL", "Unsupported L3 protocol"),
    (140, "MISSED_TAIL_CALL", "Missed tail call"),
    (141, "ERROR_WRITING_TO_PACKET", "Error writing to packet"),
    (142, "UNKNOWN_L4_PROTOCOL", "Unknown L4 protocol"),
    (143, "UNKNOWN_ICMPV4_CODE", "Unknown ICMPv4 code"),
    (144, "UNKNOWN_ICMPV4_TYPE", "Unknown ICMPv4 type"),
    (145, "UNKNOWN_ICMPV6_CODE", "Unknown ICMPv6 code"),
    (146, "UNKNOWN_ICMPV6_TYPE", "Unknown ICMPv6 type"),
    (147, "ERROR_RETRIEVING_TUNNEL_KEY", "Error retrieving tunnel key"),
    (148, "ERROR_RETRIEVING_TUNNEL_OPTIONS", "Error retrieving tunnel options"),
    (149, "INVALID_GENEVE_OPTION", "Invalid Geneve option"),
    (150, "UNKNOWN_L3_TARGET_ADDRESS", "Unknown L3 target address"),
    (151, "STALE_OR_UNROUTABLE_IP", "Stale or unroutable IP"),
    (152, "NO_MATCHING_LOCAL_CONTAINER_FOUND", "No matching local container found"),
    (153, "ERROR_WHILE_CORRECTING_L3_CHECKSUM", "Error while correcting L3 checksum"),
    (154, "ERROR_WHILE_CORRECTING_L4_CHECKSUM", "Error while correcting L4 checksum"),
    (155, "CT_MAP_INSERTION_FAILED", "CT: Map insertion failed"),
    (156, "INVALID_IPV6_EXTENSION_HEADER", "Invalid IPv6 extension header"),
    (157, "IP_FRAGMENTATION_NOT_SUPPORTED", "IP fragmentation not supported"),
    (158, "SERVICE_BACKEND_NOT_FOUND", "Service backend not found"),
    (
        160,
        "NO_TUNNEL_OR_ENCAPSULATION_ENDPOINT",
        "No tunnel/encapsulation endpoint (datapath BUG!)",
    ),
    (161, "FAILED_TO_INSERT_INTO_PROXYMAP", "NAT 46/64 not enabled"),
    (162, "REACHED_EDT_RATE_LIMITING_DROP_HORIZON", "Reached EDT rate-limiting drop horizon"),
    (163, "UNKNOWN_CONNECTION_TRACKING_STATE", "Unknown connection tracking state"),
    (164, "LOCAL_HOST_IS_UNREACHABLE", "Local host is unreachable"),
    (
        165,
        "NO_CONFIGURATION_AVAILABLE_TO_PERFORM_POLICY_DECISION",
        "No configuration available to perform policy decision",
    ),
    (166, "UNSUPPORTED_L2_PROTOCOL", "Unsupported L2 protocol"),
    (167, "NO_MAPPING_FOR_NAT_MASQUERADE", "No mapping for NAT masquerade"),
    (168, "UNSUPPORTED_PROTOCOL_FOR_NAT_MASQUERADE", "Unsupported protocol for NAT masquerade"),
    (169, "FIB_LOOKUP_FAILED", "FIB lookup failed"),
    (170, "ENCAPSULATION_TRAFFIC_IS_PROHIBITED", "Encapsulation traffic is prohibited"),
    (171, "INVALID_IDENTITY", "Invalid identity"),
    (172, "UNKNOWN_SENDER", "Unknown sender"),
    (173, "NAT_NOT_NEEDED", "NAT not needed"),
    (174, "IS_A_CLUSTERIP", "Is a ClusterIP"),
    (175, "FIRST_LOGICAL_DATAGRAM_FRAGMENT_NOT_FOUND", "First logical datagram fragment not found"),
    (176, "FORBIDDEN_ICMPV6_MESSAGE", "Forbidden ICMPv6 message"),
    (177, "DENIED_BY_LB_SRC_RANGE_CHECK", "Denied by LB src range check"),
    (178, "SOCKET_LOOKUP_FAILED", "Socket lookup failed"),
    (179, "SOCKET_ASSIGN_FAILED", "Socket assign failed"),
    (
        180,
        "PROXY_REDIRECTION_NOT_SUPPORTED_FOR_PROTOCOL",
        "Proxy redirection not supported for protocol",
    ),
    (181, "POLICY_DENY", "Policy denied by denylist"),
    (182, "VLAN_FILTERED", "VLAN traffic disallowed by VLAN filter"),
    (183, "INVALID_VNI", "Incorrect VNI from VTEP"),
    (184, "INVALID_TC_BUFFER", "Failed to update or lookup TC buffer"),
    (185, "NO_SID", "No SID was found for the IP address"),
    (186, "MISSING_SRV6_STATE", "SRv6 state was removed during tail call"),
    (187, "NAT46", "L3 translation from IPv4 to IPv6 failed (NAT46)"),
    (188, "NAT64", "L3 translation from IPv6 to IPv4 failed (NAT64)"),
    (189, "AUTH_REQUIRED", "Authentication required"),
    (190, "CT_NO_MAP_FOUND", "No conntrack map found"),
    (191, "SNAT_NO_MAP_FOUND", "No nat map found"),
    (192, "INVALID_CLUSTER_ID", "Invalid ClusterID"),
    (
        193,
        "UNSUPPORTED_PROTOCOL_FOR_DSR_ENCAP",
        "Unsupported packet protocol for DSR encapsulation",
    ),
    (194, "NO_EGRESS_GATEWAY", "No egress gateway found"),
    (195, "UNENCRYPTED_TRAFFIC", "Traffic is unencrypted"),
    (196, "TTL_EXCEEDED", "TTL exceeded"),
    (197, "NO_NODE_ID", "No node ID found"),
    (198, "DROP_RATE_LIMITED", "Rate limited"),
    (199, "IGMP_HANDLED", "IGMP handled"),
    (200, "IGMP_SUBSCRIBED", "IGMP subscribed"),
    (201, "MULTICAST_HANDLED", "Multicast handled"),
    (202, "DROP_HOST_NOT_READY", "Host datapath not ready"),
    (203, "DROP_EP_NOT_READY", "Endpoint policy program not available"),
    (204, "DROP_NO_EGRESS_IP", "No Egress IP configured"),
    (205, "DROP_PUNT_PROXY", "Punt to proxy"),
)

DROP_REASON_BY_NAME: Mapping[str, DropReasonInfo] = MappingProxyType(
    {i.name: i for i in DROP_REASONS.values()}
)

# Well-known codes the datapaths return, named once (sim and bpf/lib/drop.h use these).
POLICY_DENIED = 133
POLICY_DENY = 181
SERVICE_BACKEND_NOT_FOUND = 158
UNKNOWN_L3_TARGET_ADDRESS = 150
CT_MAP_INSERTION_FAILED = 155
AUTH_REQUIRED = 189
TTL_EXCEEDED = 196


def drop_reason_name(code: int) -> str:
    """flow.proto DropReason name; ``DROP_REASON_UNKNOWN`` for codes it lacks."""
    info = DROP_REASONS.get(code)
    return info.name if info else "DROP_REASON_UNKNOWN"


def drop_reason_text(code: int, ext_error: int = 0) -> str:
    """The monitor/Hubble text: ``"<text>[, <ext_error>]"``; unknown codes as numbers."""
    info = DROP_REASONS.get(code)
    if info is None:
        return f"{code}, {ext_error}"
    return f"{info.text}, {ext_error}" if ext_error else info.text


DROP_FILES: Mapping[int, str] = MappingProxyType(
    {
        1: "bpf_host.c",
        2: "bpf_lxc.c",
        3: "bpf_overlay.c",
        4: "bpf_xdp.c",
        5: "bpf_sock.c",
        6: "bpf_network.c",
        7: "bpf_wireguard.c",
        101: "drop.h",
        102: "srv6.h",
        103: "icmp6.h",
        104: "nodeport.h",
        105: "lb.h",
        106: "mcast.h",
        107: "ipv4.h",
        108: "conntrack.h",
        109: "local_delivery.h",
        110: "trace.h",
        111: "encap.h",
        112: "host_firewall.h",
        113: "nodeport_egress.h",
        114: "ipv6.h",
        115: "classifiers.h",
    }
)
"""Drop notification ``file`` ids → source file name (Flow.file.name)."""


# --- trace observation points and reasons (§3.6) --------------------------------------


class TraceObservationPoint(enum.IntEnum):
    """Hubble's ``TraceObservationPoint`` enum (the JSON value is the name)."""

    UNKNOWN_POINT = 0
    TO_PROXY = 1
    TO_HOST = 2
    TO_STACK = 3
    TO_OVERLAY = 4
    TO_ENDPOINT = 101
    FROM_ENDPOINT = 5
    FROM_PROXY = 6
    FROM_HOST = 7
    FROM_STACK = 8
    FROM_OVERLAY = 9
    FROM_NETWORK = 10
    TO_NETWORK = 11
    FROM_CRYPTO = 12
    TO_CRYPTO = 13


@dataclass(frozen=True, slots=True)
class TracePointInfo:
    subtype: int  # the datapath's obs_point byte = Flow.event_type.sub_type
    name: str  # the monitor / hubble TYPE column text
    point: TraceObservationPoint


TRACE_POINTS: Mapping[int, TracePointInfo] = MappingProxyType(
    {
        s: TracePointInfo(s, n, p)
        for s, n, p in (
            # Subtype 0 is TO_LXC in the datapath; Hubble maps it to TO_ENDPOINT=101.
            (0, "to-endpoint", TraceObservationPoint.TO_ENDPOINT),
            (1, "to-proxy", TraceObservationPoint.TO_PROXY),
            (2, "to-host", TraceObservationPoint.TO_HOST),
            (3, "to-stack", TraceObservationPoint.TO_STACK),
            (4, "to-overlay", TraceObservationPoint.TO_OVERLAY),
            (5, "from-endpoint", TraceObservationPoint.FROM_ENDPOINT),
            (6, "from-proxy", TraceObservationPoint.FROM_PROXY),
            (7, "from-host", TraceObservationPoint.FROM_HOST),
            (8, "from-stack", TraceObservationPoint.FROM_STACK),
            (9, "from-overlay", TraceObservationPoint.FROM_OVERLAY),
            (10, "from-network", TraceObservationPoint.FROM_NETWORK),
            (11, "to-network", TraceObservationPoint.TO_NETWORK),
            (12, "from-crypto", TraceObservationPoint.FROM_CRYPTO),
            (13, "to-crypto", TraceObservationPoint.TO_CRYPTO),
        )
    }
)

TRACE_POINT_BY_NAME: Mapping[str, TracePointInfo] = MappingProxyType(
    {i.name: i for i in TRACE_POINTS.values()}
)
_SUBTYPE_BY_POINT = {i.point: i.subtype for i in TRACE_POINTS.values()}


def trace_point_of_subtype(subtype: int) -> TraceObservationPoint:
    info = TRACE_POINTS.get(subtype)
    return info.point if info else TraceObservationPoint.UNKNOWN_POINT


def trace_point_name(point: TraceObservationPoint) -> str:
    """``to-endpoint`` etc.; ``unknown`` for UNKNOWN_POINT."""
    sub = _SUBTYPE_BY_POINT.get(point)
    return TRACE_POINTS[sub].name if sub is not None else "unknown"


class TraceReason(enum.IntEnum):
    """Hubble's ``TraceReason`` enum (note: shifted by one from the datapath byte)."""

    TRACE_REASON_UNKNOWN = 0
    NEW = 1
    ESTABLISHED = 2
    REPLY = 3
    RELATED = 4
    REOPENED = 5
    SRV6_ENCAP = 6
    SRV6_DECAP = 7
    ENCRYPT_OVERLAY = 8


TRACE_REASON_ENCRYPT_MASK = 0x80

# Datapath CT-state byte (monitor "state <name>") → (monitor name, Hubble enum).
DATAPATH_TRACE_REASONS: Mapping[int, tuple[str, TraceReason]] = MappingProxyType(
    {
        0: ("new", TraceReason.NEW),
        1: ("established", TraceReason.ESTABLISHED),
        2: ("reply", TraceReason.REPLY),
        3: ("related", TraceReason.RELATED),
        4: ("reopened", TraceReason.REOPENED),
        5: ("unknown", TraceReason.TRACE_REASON_UNKNOWN),
        6: ("srv6-encap", TraceReason.SRV6_ENCAP),
        7: ("srv6-decap", TraceReason.SRV6_DECAP),
    }
)


def trace_reason_of_datapath(reason: int) -> tuple[TraceReason, bool]:
    """(Hubble reason, encrypted) of the datapath reason byte (bit 7 = encrypted)."""
    encrypted = bool(reason & TRACE_REASON_ENCRYPT_MASK)
    entry = DATAPATH_TRACE_REASONS.get(reason & ~TRACE_REASON_ENCRYPT_MASK)
    return (entry[1] if entry else TraceReason.TRACE_REASON_UNKNOWN), encrypted


# --- policy match types (§3.3 step 6) --------------------------------------------------


class PolicyMatchType(enum.IntEnum):
    NONE = 0
    L3_ONLY = 1
    L3_L4 = 2
    L4_ONLY = 3
    ALL = 4
    L3_PROTO = 5
    PROTO_ONLY = 6

    @property
    def text(self) -> str:
        """The monitor / hubble spelling (``policy-verdict:L3-L4 INGRESS``)."""
        return _MATCH_TEXT[self]


_MATCH_TEXT = {
    PolicyMatchType.NONE: "none",
    PolicyMatchType.L3_ONLY: "L3-Only",
    PolicyMatchType.L3_L4: "L3-L4",
    PolicyMatchType.L4_ONLY: "L4-Only",
    PolicyMatchType.ALL: "all",
    PolicyMatchType.L3_PROTO: "L3-Proto",
    PolicyMatchType.PROTO_ONLY: "Proto-Only",
}


def policy_match_text(value: int) -> str:
    try:
        return PolicyMatchType(value).text
    except ValueError:
        return str(value)


# --- reserved identities (§1.1): how Hubble prints them --------------------------------

RESERVED_IDENTITY_NAMES: Mapping[int, str] = MappingProxyType(
    {
        0: "unknown",
        1: "host",
        2: "world",
        3: "unmanaged",
        4: "health",
        5: "init",
        6: "remote-node",
        7: "kube-apiserver",
        8: "ingress",
        9: "world-ipv4",
        10: "world-ipv6",
        11: "encrypted-overlay",
    }
)
RESERVED_IDENTITY_BY_NAME: Mapping[str, int] = MappingProxyType(
    {n: i for i, n in RESERVED_IDENTITY_NAMES.items()}
)
