"""Ports as the explain oracle matches them: the prefix length of the policy-map entry
a port spec would make for the probed port, and the L7 rules a Cilium port rule carries.

Prefix lengths as the datapath sees them (cilium.md §3.3): 0 any protocol, 8 the
protocol with any port, 8+n an aligned block of a port range (``portrange.split_range``),
24 one port. A named port resolves in the destination pod's containers.

Input: port specs, the destination ``Endpoint``, the probe's protocol and port. Output:
prefix lengths (None: no match) and L7 rules. Sans-IO; imports the model, ``desired``
(``L7Rule``) and ``control.portrange``. Must not import ``control.rules``/``control.policy``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ciliate.control.explanation import Endpoint
from ciliate.control.portrange import split_range
from ciliate.desired import L7Rule
from ciliate.model.cilium import RuleElement
from ciliate.model.netpol import NetworkPolicyPort

L7Rules = tuple[L7Rule, ...] | None


def np_ports_lpm(
    ports: Sequence[NetworkPolicyPort], dst_pod: Endpoint, proto: str, port: int
) -> int | None:
    """The longest prefix among a NetworkPolicy rule's ports matching the probe (0 when
    the rule names no port: every port), or None."""
    if not ports:
        return 0
    best: int | None = None
    for p in ports:
        if p.protocol != proto:
            continue
        lpm = port_lpm(p.port, p.end_port or 0, proto, port, dst_pod)
        if lpm is not None and (best is None or lpm > best):
            best = lpm
    return best


def cnp_ports_lpm(
    el: RuleElement, dst_pod: Endpoint, proto: str, port: int
) -> list[tuple[int, L7Rules, bool]]:
    """(prefix length, L7 rules, named port?) of each port spec matching the packet."""
    if not el.to_ports and not el.icmps:
        return [(0, None, False)]
    out: list[tuple[int, L7Rules, bool]] = []
    for pr in el.to_ports:
        l7 = l7_of(pr)
        for pp in pr.ports:
            if pp.protocol != "ANY" and pp.protocol != proto:
                continue
            if proto not in ("TCP", "UDP", "SCTP"):
                continue
            first: int | str | None
            if pp.port.isdigit():
                first = int(pp.port)
                if first == 0:
                    first = None
            elif pp.port:
                first = pp.port
            else:
                first = None
            if pp.protocol == "ANY" and first is None:
                out.append((0, l7, False))
                continue
            lpm = port_lpm(first, pp.end_port, proto, port, dst_pod)
            if lpm is not None:
                out.append((lpm, l7, isinstance(first, str)))
    for icmp in el.icmps:
        if proto == "ICMP" and icmp.family.upper() == "IPV4" and icmp.type == port:
            out.append((24, None, False))
    return out


def l7_of(pr: Any) -> L7Rules:
    """The L7 rules of a Cilium port rule; ``http: []`` / ``dns: []`` mean one rule that
    allows everything of that kind, and no rules section means no redirect (None)."""
    if pr.http is not None:
        rules = tuple(L7Rule("http", h.method, h.path, h.host, h.headers) for h in pr.http)
        return rules or (L7Rule("http"),)
    if pr.dns is not None:
        rules = tuple(
            L7Rule("dns", match_name=d.match_name, match_pattern=d.match_pattern) for d in pr.dns
        )
        return rules or (L7Rule("dns", match_pattern="*"),)
    return None


def port_lpm(
    first: int | str | None, end: int, proto: str, port: int, dst_pod: Endpoint
) -> int | None:
    """Prefix length of the map entry a port spec makes for ``port``, or None."""
    if first is None:
        return 8
    if isinstance(first, str):
        pod = dst_pod.pod
        if pod is None:
            return None
        cp = pod.named_port(first, proto)
        return 24 if cp is not None and cp.container_port == port else None
    last = end if end >= first else first
    if not first <= port <= last:
        return None
    for start, plen in split_range(first, last):
        if start <= port < start + (1 << (16 - plen)):
            return 8 + plen
    return None
