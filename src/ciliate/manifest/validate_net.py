"""Validation of the edge and add-on kinds: Ingress, IngressClass, Gateway API kinds,
CiliumLoadBalancerIPPool, CiliumL2AnnouncementPolicy, NetworkAttachmentDefinition and
Calico's IPPool / BGPConfiguration.

Role: field checks as the upstream CRD schemas and validations do (required fields,
enums, CIDRs, ports). References between objects (a route to a missing Gateway) are
status conditions computed later, never load errors. Imports only manifest.*.
"""

from __future__ import annotations

import json
from typing import Any

from ciliate.manifest import syntax
from ciliate.manifest.checker import Checker
from ciliate.manifest.validate_core import Validator
from ciliate.manifest.yaml import join_path

PATH_TYPES = ("Exact", "Prefix", "ImplementationSpecific")
GW_PATH_TYPES = ("Exact", "PathPrefix", "RegularExpression")
LISTENER_PROTOCOLS = ("HTTP", "HTTPS", "TLS", "TCP", "UDP")


def _ingress_backend(ck: Checker, be: dict[str, Any], p: str) -> None:
    svc = ck.get_map(be, "service", p)
    if svc is None:
        if "serviceName" in be or "servicePort" in be:
            ck.error(
                p,
                "serviceName/servicePort are extensions/v1beta1 fields: use "
                "service.name and service.port.number|name",
            )
        elif be.get("resource") is None:
            ck.error(join_path(p, "service"), "required value (or resource)")
        return
    sp = join_path(p, "service")
    name = ck.get_str(svc, "name", sp, required=True)
    if name and syntax.check_dns1035_label(name):
        ck.error(join_path(sp, "name"), syntax.check_dns1035_label(name) or "")
    port = ck.get_map(svc, "port", sp)
    if port is None:
        ck.error(join_path(sp, "port"), "required value (number or name)")
        return
    pp = join_path(sp, "port")
    num = ck.get_int(port, "number", pp)
    pname = ck.get_str(port, "name", pp)
    if num is not None and pname:
        ck.error(pp, "number and name are mutually exclusive")
    elif num is not None:
        ck.port_value(num, join_path(pp, "number"))
    elif pname:
        ck.port_value(pname, join_path(pp, "name"))
    else:
        ck.error(pp, "required value (number or name)")


def validate_ingress(doc: dict[str, Any], ck: Checker) -> None:
    spec = ck.get_map(doc, "spec", "")
    if spec is None:
        ck.error("spec", "required value")
        return
    ck.get_str(spec, "ingressClassName", "spec")
    default = ck.get_map(spec, "defaultBackend", "spec")
    if default is not None:
        _ingress_backend(ck, default, "spec.defaultBackend")
    for rp, rule in ck.maps(spec, "rules", "spec"):
        host = ck.get_str(rule, "host", rp)
        if host and syntax.check_dns1123_subdomain(host.removeprefix("*.")):
            ck.error(join_path(rp, "host"), f'"{host}" is not a valid host name')
        http = ck.get_map(rule, "http", rp)
        if http is None:
            continue
        hp = join_path(rp, "http")
        paths = ck.maps(http, "paths", hp)
        if not paths:
            ck.error(join_path(hp, "paths"), "required value")
        for pp, path in paths:
            pt = ck.get_str(path, "pathType", pp)
            if pt is None:
                ck.error(
                    join_path(pp, "pathType"),
                    "required value: Exact, Prefix or ImplementationSpecific",
                )
            elif pt not in PATH_TYPES:
                ck.error(
                    join_path(pp, "pathType"),
                    f'unsupported value "{pt}": supported values: {", ".join(PATH_TYPES)}',
                )
            value = ck.get_str(path, "path", pp)
            if value is not None and pt in ("Exact", "Prefix") and not value.startswith("/"):
                ck.error(join_path(pp, "path"), "must be an absolute path")
            be = ck.get_map(path, "backend", pp)
            if be is None:
                ck.error(join_path(pp, "backend"), "required value")
            else:
                _ingress_backend(ck, be, join_path(pp, "backend"))
    for tp, tls in ck.maps(spec, "tls", "spec"):
        ck.strs(tls, "hosts", tp)


def validate_ingress_class(doc: dict[str, Any], ck: Checker) -> None:
    spec = ck.get_map(doc, "spec", "") or {}
    ck.get_str(spec, "controller", "spec")


# -- Gateway API ------------------------------------------------------------------------


def validate_gateway_class(doc: dict[str, Any], ck: Checker) -> None:
    spec = ck.get_map(doc, "spec", "")
    if spec is None:
        ck.error("spec", "required value")
        return
    ck.get_str(spec, "controllerName", "spec", required=True)


def validate_gateway(doc: dict[str, Any], ck: Checker) -> None:
    spec = ck.get_map(doc, "spec", "")
    if spec is None:
        ck.error("spec", "required value")
        return
    ck.get_str(spec, "gatewayClassName", "spec", required=True)
    for ap, addr in ck.maps(spec, "addresses", "spec"):
        typ = ck.get_str(addr, "type", ap) or "IPAddress"
        value = ck.get_str(addr, "value", ap, required=True)
        if value is not None and typ == "IPAddress":
            ck.check(join_path(ap, "value"), syntax.check_ip(value))
    listeners = ck.maps(spec, "listeners", "spec")
    if not listeners and "listeners" not in spec:
        ck.error("spec.listeners", "required value")
    names: set[str] = set()
    for lp, listener in listeners:
        name = ck.get_str(listener, "name", lp, required=True)
        if name is not None:
            if syntax.check_dns1123_subdomain(name):
                ck.error(join_path(lp, "name"), syntax.check_dns1123_subdomain(name) or "")
            elif name in names:
                ck.error(join_path(lp, "name"), f'duplicate listener name "{name}"')
            names.add(name)
        port = ck.get_int(listener, "port", lp)
        if port is None and "port" not in listener:
            ck.error(join_path(lp, "port"), "required value")
        elif port is not None:
            ck.port_value(port, join_path(lp, "port"))
        proto = ck.get_str(listener, "protocol", lp, required=True)
        if proto is not None and proto not in LISTENER_PROTOCOLS and "/" not in proto:
            ck.error(
                join_path(lp, "protocol"),
                f'unsupported value "{proto}": supported '
                f"values: {', '.join(LISTENER_PROTOCOLS)} or a domain-prefixed protocol",
            )
        host = ck.get_str(listener, "hostname", lp)
        if host and syntax.check_dns1123_subdomain(host.removeprefix("*.")):
            ck.error(join_path(lp, "hostname"), f'"{host}" is not a valid host name')
        ar = ck.get_map(listener, "allowedRoutes", lp)
        if ar:
            arp = join_path(lp, "allowedRoutes")
            ns = ck.get_map(ar, "namespaces", arp)
            if ns:
                nsp = join_path(arp, "namespaces")
                frm = ck.get_str(ns, "from", nsp)
                if frm is not None and frm not in ("All", "Same", "Selector"):
                    ck.error(
                        join_path(nsp, "from"),
                        f'unsupported value "{frm}": supported values: All, Same, Selector',
                    )
                ck.selector(ns.get("selector"), join_path(nsp, "selector"))


def _parent_refs(ck: Checker, spec: dict[str, Any]) -> None:
    for pp, ref in ck.maps(spec, "parentRefs", "spec"):
        ck.get_str(ref, "name", pp, required=True)
        port = ck.get_int(ref, "port", pp)
        if port is not None:
            ck.port_value(port, join_path(pp, "port"))


def _backend_refs(ck: Checker, rule: dict[str, Any], rp: str) -> None:
    for bp, be in ck.maps(rule, "backendRefs", rp):
        ck.get_str(be, "name", bp, required=True)
        port = ck.get_int(be, "port", bp)
        kind = be.get("kind", "Service")
        if port is None and kind == "Service" and be.get("group", "") in ("", "core"):
            if "port" not in be:
                ck.error(join_path(bp, "port"), "required value when referring to a Service")
        elif port is not None:
            ck.port_value(port, join_path(bp, "port"))
        weight = ck.get_int(be, "weight", bp)
        if weight is not None and not 0 <= weight <= 1_000_000:
            ck.error(join_path(bp, "weight"), "must be between 0 and 1000000")


def _hostnames(ck: Checker, spec: dict[str, Any]) -> None:
    for hp, host in ck.strs(spec, "hostnames", "spec"):
        if syntax.check_dns1123_subdomain(host.removeprefix("*.")):
            ck.error(hp, f'"{host}" is not a valid host name')


def validate_http_route(doc: dict[str, Any], ck: Checker) -> None:
    spec = ck.get_map(doc, "spec", "") or {}
    _parent_refs(ck, spec)
    _hostnames(ck, spec)
    for rp, rule in ck.maps(spec, "rules", "spec"):
        for mp, match in ck.maps(rule, "matches", rp):
            path = ck.get_map(match, "path", mp)
            if path:
                pp = join_path(mp, "path")
                pt = ck.get_str(path, "type", pp)
                if pt is not None and pt not in GW_PATH_TYPES:
                    ck.error(
                        join_path(pp, "type"),
                        f'unsupported value "{pt}": supported values: {", ".join(GW_PATH_TYPES)}',
                    )
                value = ck.get_str(path, "value", pp)
                if value is not None and pt != "RegularExpression" and not value.startswith("/"):
                    ck.error(join_path(pp, "value"), "must be an absolute path")
            for hp, h in ck.maps(match, "headers", mp):
                ck.get_str(h, "name", hp, required=True)
        _backend_refs(ck, rule, rp)


def validate_route(doc: dict[str, Any], ck: Checker) -> None:
    """GRPCRoute, TLSRoute, TCPRoute, UDPRoute: parents, hostnames and backends."""
    spec = ck.get_map(doc, "spec", "") or {}
    _parent_refs(ck, spec)
    _hostnames(ck, spec)
    for rp, rule in ck.maps(spec, "rules", "spec"):
        _backend_refs(ck, rule, rp)


def validate_reference_grant(doc: dict[str, Any], ck: Checker) -> None:
    spec = ck.get_map(doc, "spec", "")
    if spec is None:
        ck.error("spec", "required value")
        return
    for key in ("from", "to"):
        items = ck.maps(spec, key, "spec")
        if not items:
            ck.error(join_path("spec", key), "required value")
        for ip, item in items:
            ck.get_str(item, "kind", ip, required=True)
            if key == "from":
                ck.get_str(item, "namespace", ip, required=True)


# -- Cilium LB-IPAM and L2 announcements --------------------------------------------------


def validate_lb_ip_pool(doc: dict[str, Any], ck: Checker) -> None:
    spec = ck.get_map(doc, "spec", "")
    if spec is None:
        ck.error("spec", "required value")
        return
    blocks = ck.maps(spec, "blocks", "spec") + ck.maps(spec, "cidrs", "spec")
    for bp, block in blocks:
        cidr = ck.get_str(block, "cidr", bp)
        start = ck.get_str(block, "start", bp)
        stop = ck.get_str(block, "stop", bp)
        if cidr is not None:
            ck.check(join_path(bp, "cidr"), syntax.check_cidr(cidr))
            if start or stop:
                ck.error(bp, "cidr and start/stop are mutually exclusive")
        elif start is None:
            ck.error(join_path(bp, "cidr"), "required value (or start/stop)")
        for f, v in (("start", start), ("stop", stop)):
            if v is not None and syntax.check_ip(v):
                ck.error(join_path(bp, f), syntax.check_ip(v) or "")
    ck.selector(spec.get("serviceSelector"), "spec.serviceSelector")
    first_last = ck.get_str(spec, "allowFirstLastIPs", "spec")
    if first_last is not None and first_last not in ("Yes", "No"):
        ck.error("spec.allowFirstLastIPs", f'unsupported value "{first_last}": use Yes or No')
    ck.get_bool(spec, "disabled", "spec")


def validate_l2_policy(doc: dict[str, Any], ck: Checker) -> None:
    spec = ck.get_map(doc, "spec", "") or {}
    ck.selector(spec.get("serviceSelector"), "spec.serviceSelector")
    ck.selector(spec.get("nodeSelector"), "spec.nodeSelector")
    ck.strs(spec, "interfaces", "spec")
    ck.get_bool(spec, "externalIPs", "spec")
    ck.get_bool(spec, "loadBalancerIPs", "spec")


# -- Multus and Calico ----------------------------------------------------------------------


def validate_net_attach_def(doc: dict[str, Any], ck: Checker) -> None:
    spec = ck.get_map(doc, "spec", "") or {}
    config = ck.get_str(spec, "config", "spec")
    if config:
        try:
            parsed = json.loads(config)
        except ValueError as e:
            ck.error("spec.config", f"must be a JSON CNI configuration: {e}")
            return
        if not isinstance(parsed, dict):
            ck.error("spec.config", "must be a JSON object (a CNI configuration)")


def validate_calico_ip_pool(doc: dict[str, Any], ck: Checker) -> None:
    spec = ck.get_map(doc, "spec", "")
    if spec is None:
        ck.error("spec", "required value")
        return
    cidr = ck.get_str(spec, "cidr", "spec", required=True)
    if cidr is not None:
        # Calico masks host bits itself (10.11.12.0/16 is 10.11.0.0/16).
        ck.check("spec.cidr", syntax.check_cidr(cidr, strict=False))
    for f in ("ipipMode", "vxlanMode"):
        mode = ck.get_str(spec, f, "spec")
        if mode is not None and mode not in ("Never", "Always", "CrossSubnet"):
            ck.error(
                join_path("spec", f),
                f'unsupported value "{mode}": supported values: Never, Always, CrossSubnet',
            )
    ck.get_bool(spec, "natOutgoing", "spec")


def validate_bgp_configuration(doc: dict[str, Any], ck: Checker) -> None:
    spec = ck.get_map(doc, "spec", "") or {}
    asn = ck.get_int(spec, "asNumber", "spec")
    if asn is not None and not 0 < asn < 2**32:
        ck.error("spec.asNumber", f"AS number {asn} is out of range (1-4294967295)")
    ck.get_bool(spec, "nodeToNodeMeshEnabled", "spec")


VALIDATORS: dict[str, Validator] = {
    "Ingress": validate_ingress,
    "IngressClass": validate_ingress_class,
    "GatewayClass": validate_gateway_class,
    "Gateway": validate_gateway,
    "HTTPRoute": validate_http_route,
    "GRPCRoute": validate_route,
    "TLSRoute": validate_route,
    "TCPRoute": validate_route,
    "UDPRoute": validate_route,
    "ReferenceGrant": validate_reference_grant,
    "CiliumLoadBalancerIPPool": validate_lb_ip_pool,
    "CiliumL2AnnouncementPolicy": validate_l2_policy,
    "NetworkAttachmentDefinition": validate_net_attach_def,
    "IPPool": validate_calico_ip_pool,
    "BGPConfiguration": validate_bgp_configuration,
}
