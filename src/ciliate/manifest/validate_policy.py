"""Validation of NetworkPolicy (networking.k8s.io/v1) and CiliumNetworkPolicy /
CiliumClusterwideNetworkPolicy (cilium.io/v2).

Role: field checks before anything is stored: selectors and operators, CIDRs and
``except`` inside ``cidr``, ports (1-65535, CNP also 0 and strings), endPort >= port,
protocols (TCP/UDP/SCTP; CNP also ANY), policyTypes, entities. The semantics (what a
rule allows) belong to control/policy; the typed views to model/netpol and model/cilium.
Imports only manifest.*.
"""

from __future__ import annotations

from typing import Any

from ciliate.manifest import syntax
from ciliate.manifest.checker import Checker
from ciliate.manifest.validate_core import Validator
from ciliate.manifest.yaml import join_path

ENTITIES = (
    "all",
    "world",
    "world-ipv4",
    "world-ipv6",
    "cluster",
    "host",
    "init",
    "ingress",
    "unmanaged",
    "remote-node",
    "health",
    "none",
    "kube-apiserver",
)


def _cidr_with_except(
    ck: Checker, cidr: str | None, cidr_path: str, excepts: list[tuple[str, str]]
) -> None:
    """``except`` entries must lie inside ``cidr`` (a strict subset, as upstream)."""
    if cidr is None:
        return
    try:
        net = syntax.parse_cidr(cidr)
    except ValueError as e:
        ck.error(cidr_path, str(e))
        net = None
    for p, ex in excepts:
        try:
            sub = syntax.parse_cidr(ex)
        except ValueError as e:
            ck.error(p, str(e))
            continue
        if net is None:
            continue
        if sub.version != net.version or not sub.subnet_of(net):  # type: ignore[arg-type]
            ck.error(p, f'"{ex}" is not inside cidr "{cidr}"')
        elif sub == net:
            ck.error(p, f'"{ex}" must be a strict subset of cidr "{cidr}"')


# -- networking.k8s.io/v1 NetworkPolicy ----------------------------------------------------


def _np_peer(ck: Checker, peer: dict[str, Any], p: str) -> None:
    ipb = ck.get_map(peer, "ipBlock", p)
    if ipb is not None:
        ibp = join_path(p, "ipBlock")
        if peer.get("podSelector") is not None or peer.get("namespaceSelector") is not None:
            ck.error(ibp, "may not be combined with podSelector or namespaceSelector")
        cidr = ck.get_str(ipb, "cidr", ibp, required=True)
        _cidr_with_except(ck, cidr, join_path(ibp, "cidr"), ck.strs(ipb, "except", ibp))
    ck.selector(peer.get("podSelector"), join_path(p, "podSelector"))
    ck.selector(peer.get("namespaceSelector"), join_path(p, "namespaceSelector"))
    if not peer:
        return


def _end_port(ck: Checker, port: dict[str, Any], pp: str, num: int | str | None) -> None:
    """``endPort``, the same rule for NetworkPolicy ports and Cilium's toPorts: only
    after a numeric ``port``, itself a valid port number, and not below ``port``."""
    end = ck.get_int(port, "endPort", pp)
    if end is None:
        return
    if num is None and port.get("port") is not None:
        return  # the port itself is already reported
    ep = join_path(pp, "endPort")
    if not isinstance(num, int):
        ck.error(ep, "may only be given with a numeric port")
    elif (reason := syntax.check_port_number(end)) is not None:
        ck.error(ep, reason)
    elif end < num:
        ck.error(ep, f"must be greater than or equal to port ({end} < {num})")


def _np_ports(ck: Checker, rule: dict[str, Any], p: str) -> None:
    for pp, port in ck.maps(rule, "ports", p):
        proto = ck.get_str(port, "protocol", pp)
        if proto is not None:
            ck.check(join_path(pp, "protocol"), syntax.check_protocol(proto))
        num = ck.port_value(port.get("port"), join_path(pp, "port"))
        _end_port(ck, port, pp, num)


def validate_network_policy(doc: dict[str, Any], ck: Checker) -> None:
    spec = ck.get_map(doc, "spec", "")
    if spec is None:
        ck.error("spec", "required value")
        return
    if "podSelector" not in spec:
        ck.error("spec.podSelector", "required value (use {} to select every pod)")
    ck.selector(spec.get("podSelector"), "spec.podSelector")
    for p, t in ck.strs(spec, "policyTypes", "spec"):
        if t not in ("Ingress", "Egress"):
            ck.error(p, f'unsupported value "{t}": supported values: Ingress, Egress')
    for direction, peers in (("ingress", "from"), ("egress", "to")):
        for rp, rule in ck.maps(spec, direction, "spec"):
            for pp, peer in ck.maps(rule, peers, rp):
                _np_peer(ck, peer, pp)
            _np_ports(ck, rule, rp)


# -- cilium.io/v2 CiliumNetworkPolicy / CiliumClusterwideNetworkPolicy -------------------


def _cnp_ports(ck: Checker, rule: dict[str, Any], p: str) -> None:
    for tp, port_rule in ck.maps(rule, "toPorts", p):
        for pp, port in ck.maps(port_rule, "ports", tp):
            num = ck.port_value(
                port.get("port"), join_path(pp, "port"), allow_zero=True, string_numbers=True
            )
            proto = ck.get_str(port, "protocol", pp)
            if proto is not None:
                ck.check(
                    join_path(pp, "protocol"), syntax.check_protocol(proto, syntax.CILIUM_PROTOCOLS)
                )
            _end_port(ck, port, pp, num)
        rules = ck.get_map(port_rule, "rules", tp)
        if rules:
            rp = join_path(tp, "rules")
            for hp, h in ck.maps(rules, "http", rp):
                for f in ("method", "path", "host"):
                    ck.get_str(h, f, hp)
            for dp, d in ck.maps(rules, "dns", rp):
                if not d.get("matchName") and not d.get("matchPattern"):
                    ck.error(dp, "needs matchName or matchPattern")


def _cnp_rule(ck: Checker, rule: dict[str, Any], p: str, pre: str, cluster: bool) -> None:
    for key in (f"{pre}Endpoints", f"{pre}Nodes"):
        for sp, sel in ck.maps(rule, key, p):
            ck.selector(sel, sp, cilium=True)
    for cp, cidr in ck.strs(rule, f"{pre}CIDR", p):
        ck.check(cp, syntax.check_cidr(cidr))
    for sp, cs in ck.maps(rule, f"{pre}CIDRSet", p):
        set_cidr = ck.get_str(cs, "cidr", sp)
        if set_cidr is None and not cs.get("cidrGroupRef") and not cs.get("cidrGroupSelector"):
            ck.error(join_path(sp, "cidr"), "required value (or cidrGroupRef)")
        _cidr_with_except(ck, set_cidr, join_path(sp, "cidr"), ck.strs(cs, "except", sp))
    for ep, ent in ck.strs(rule, f"{pre}Entities", p):
        if ent not in ENTITIES:
            ck.error(ep, f'unknown entity "{ent}": supported values: {", ".join(ENTITIES)}')
    _cnp_ports(ck, rule, p)
    for ip, icmp in ck.maps(rule, "icmps", p):
        for fp, f in ck.maps(icmp, "fields", ip):
            fam = ck.get_str(f, "family", fp)
            if fam is not None and fam not in ("IPv4", "IPv6"):
                ck.error(join_path(fp, "family"), f'unknown family "{fam}": use IPv4 or IPv6')


def _cnp_spec(ck: Checker, spec: dict[str, Any], p: str, cluster: bool) -> None:
    has_ep = "endpointSelector" in spec
    has_node = "nodeSelector" in spec
    if has_node and not cluster:
        ck.error(
            join_path(p, "nodeSelector"), "is only allowed in a CiliumClusterwideNetworkPolicy"
        )
    if has_ep and has_node:
        ck.error(p, "endpointSelector and nodeSelector are mutually exclusive")
    elif not has_ep and not has_node:
        ck.error(join_path(p, "endpointSelector"), "required value (or nodeSelector)")
    ck.selector(spec.get("endpointSelector"), join_path(p, "endpointSelector"), cilium=True)
    ck.selector(spec.get("nodeSelector"), join_path(p, "nodeSelector"), cilium=True)
    for key, pre in (
        ("ingress", "from"),
        ("ingressDeny", "from"),
        ("egress", "to"),
        ("egressDeny", "to"),
    ):
        for rp, rule in ck.maps(spec, key, p):
            _cnp_rule(ck, rule, rp, pre, cluster)
    ck.get_str(spec, "description", p)


def _validate_cilium_policy(doc: dict[str, Any], ck: Checker, cluster: bool) -> None:
    spec = ck.get_map(doc, "spec", "")
    specs = ck.maps(doc, "specs", "")
    if spec is None and not specs:
        ck.error("spec", "required value (spec or specs)")
    if spec is not None:
        _cnp_spec(ck, spec, "spec", cluster)
    for sp, s in specs:
        _cnp_spec(ck, s, sp, cluster)


def validate_cnp(doc: dict[str, Any], ck: Checker) -> None:
    _validate_cilium_policy(doc, ck, cluster=False)


def validate_ccnp(doc: dict[str, Any], ck: Checker) -> None:
    _validate_cilium_policy(doc, ck, cluster=True)


VALIDATORS: dict[str, Validator] = {
    "NetworkPolicy": validate_network_policy,
    "CiliumNetworkPolicy": validate_cnp,
    "CiliumClusterwideNetworkPolicy": validate_ccnp,
}
