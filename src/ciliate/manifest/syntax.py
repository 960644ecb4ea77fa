"""Syntax checks of Kubernetes field values: names, label keys and values, CIDRs, IPs,
ports and port names, protocols.

Role: pure predicates returning ``None`` when a value is fine, else the reason (the
wording follows apimachinery's validation messages, shortened). Used by the validators
of every kind group. Imports nothing of ciliate.
"""

from __future__ import annotations

import ipaddress
import re

_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_IANA_SVC_NAME = re.compile(r"[-a-z0-9]+")
_HAS_LETTER = re.compile(r"[a-z]")


def check_dns1123_label(v: str) -> str | None:
    if len(v) > 63:
        return f'"{v}" must be no more than 63 characters (DNS-1123 label)'
    if not _DNS1123_LABEL.fullmatch(v):
        return (
            f'"{v}" is not a valid DNS-1123 label: lower case alphanumerics and "-", '
            "starting and ending with an alphanumeric"
        )
    return None


def check_dns1123_subdomain(v: str) -> str | None:
    if len(v) > 253:
        return f'"{v}" must be no more than 253 characters (DNS-1123 subdomain)'
    if not _DNS1123_SUBDOMAIN.fullmatch(v):
        return (
            f'"{v}" is not a valid DNS-1123 subdomain: lower case alphanumerics, "-" '
            'and ".", starting and ending with an alphanumeric'
        )
    return None


def check_dns1035_label(v: str) -> str | None:
    if len(v) > 63:
        return f'"{v}" must be no more than 63 characters (DNS-1035 label)'
    if not _DNS1035_LABEL.fullmatch(v):
        return (
            f'"{v}" is not a valid DNS-1035 label: lower case alphanumerics and "-", '
            "starting with a letter and ending with an alphanumeric"
        )
    return None


def check_path_segment(v: str) -> str | None:
    if v in (".", "..") or "/" in v or "%" in v:
        return f'"{v}" may not be "." or ".." and may not contain "/" or "%"'
    return None


def strip_label_source(key: str) -> str:
    """A Cilium label key without its source prefix (``k8s:app`` -> ``app``; also
    ``any:``, ``reserved:``, ``cidr:``...). A key with "/" or "." before any ":" has none."""
    src, colon, rest = key.partition(":")
    if colon and "/" not in src and "." not in src:
        return rest
    return key


def check_label_key(k: str) -> str | None:
    """A qualified name: optional DNS subdomain prefix and "/", then a name ≤ 63."""
    prefix, slash, name = k.rpartition("/")
    if slash:
        if not prefix:
            return f'label key "{k}": prefix part must be non-empty'
        if check_dns1123_subdomain(prefix) is not None:
            return f'label key "{k}": prefix part must be a DNS-1123 subdomain'
    if not name:
        return f'label key "{k}": name part must be non-empty'
    if len(name) > 63:
        return f'label key "{k}": name part must be no more than 63 characters'
    if not _QUALIFIED_NAME.fullmatch(name):
        return (
            f'label key "{k}": name part must consist of alphanumerics, "-", "_" or ".", '
            "starting and ending with an alphanumeric"
        )
    return None


def check_label_value(v: str) -> str | None:
    if len(v) > 63:
        return f'label value "{v}" must be no more than 63 characters'
    if v and not _QUALIFIED_NAME.fullmatch(v):
        return (
            f'label value "{v}" must be empty or consist of alphanumerics, "-", "_" or ".", '
            "starting and ending with an alphanumeric"
        )
    return None


def check_ip(v: str) -> str | None:
    try:
        ipaddress.ip_address(v)
    except ValueError:
        return f'invalid IP address "{v}"'
    return None


def parse_cidr(v: str, strict: bool = True) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """Parse a prefix; raises ValueError with a user-facing reason.

    Like the Kubernetes validation of new objects, a prefix must carry a "/" and no
    host bits (``10.0.0.1/24`` is ambiguous; ``strict=False`` accepts it as Calico does).
    """
    if "/" not in v:
        raise ValueError(f'invalid CIDR "{v}": missing "/<prefix length>"')
    try:
        return ipaddress.ip_network(v, strict=strict)
    except ValueError as e:
        if "host bits" in str(e):
            net = ipaddress.ip_network(v, strict=False)
            raise ValueError(f'invalid CIDR "{v}": host bits set (did you mean "{net}"?)') from None
        raise ValueError(f'invalid CIDR "{v}"') from None


def check_cidr(v: str, strict: bool = True) -> str | None:
    try:
        parse_cidr(v, strict)
    except ValueError as e:
        return str(e)
    return None


def check_port_name(v: str) -> str | None:
    """An IANA service name (RFC 6335 §5.1), as container port names and named ports."""
    if len(v) > 15:
        return f'port name "{v}" must be no more than 15 characters'
    if not _IANA_SVC_NAME.fullmatch(v):
        return f'port name "{v}" must contain only lower case alphanumerics and "-"'
    if v.startswith("-") or v.endswith("-"):
        return f'port name "{v}" must not begin or end with "-"'
    if "--" in v:
        return f'port name "{v}" must not contain consecutive "-"'
    if not _HAS_LETTER.search(v):
        return f'port name "{v}" must contain at least one letter'
    return None


def check_port_number(v: int, allow_zero: bool = False) -> str | None:
    lo = 0 if allow_zero else 1
    if not lo <= v <= 65535:
        return f"port {v} is out of range ({lo}-65535)"
    return None


PROTOCOLS = ("TCP", "UDP", "SCTP")
CILIUM_PROTOCOLS = ("TCP", "UDP", "SCTP", "ANY", "VRRP", "IGMP")


def check_protocol(v: str, allowed: tuple[str, ...] = PROTOCOLS) -> str | None:
    if v not in allowed:
        return f'unknown protocol "{v}": supported values: {", ".join(allowed)}'
    return None
