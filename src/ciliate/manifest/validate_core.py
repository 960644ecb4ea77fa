"""Validation of core/v1 and apps/v1 kinds: Pod (and pod templates), Service,
Namespace, ConfigMap, Node, Deployment, ReplicaSet, DaemonSet, StatefulSet.

Role: ``VALIDATORS[kind](doc, checker)`` reports field problems of one document, as the
API server's validation would (pkg/apis/core/validation, pkg/apis/apps/validation),
restricted to what ciliate reads. Store-dependent checks (clusterIP inside the service
CIDR, nodePort collisions) belong to admission, not here. Imports only manifest.*.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ciliate.manifest import syntax
from ciliate.manifest.checker import Checker
from ciliate.manifest.yaml import join_path

Validator = Callable[[dict[str, Any], Checker], None]

SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")
NODE_PORT_RANGE = (30000, 32767)


def validate_pod_spec(spec: dict[str, Any], path: str, ck: Checker) -> None:
    containers = ck.maps(spec, "containers", path)
    if not containers and "containers" not in spec:
        ck.error(join_path(path, "containers"), "required value")
    # Container names are unique across init and regular containers.
    names: dict[str, str] = {}
    for items in (ck.maps(spec, "initContainers", path), containers):
        for p, c in items:
            name = ck.get_str(c, "name", p, required=True)
            if name is not None:
                reason = syntax.check_dns1123_label(name)
                if reason:
                    ck.error(join_path(p, "name"), reason)
                elif name in names:
                    ck.error(join_path(p, "name"), f'duplicate container name "{name}"')
                names[name] = p
            ck.get_str(c, "image", p, required=True)
            ck.strs(c, "command", p)
            ck.strs(c, "args", p)
            port_names: set[str] = set()
            for pp, port in ck.maps(c, "ports", p):
                cp = ck.get_int(port, "containerPort", pp)
                if cp is None and "containerPort" not in port:
                    ck.error(join_path(pp, "containerPort"), "required value")
                elif cp is not None:
                    ck.check(join_path(pp, "containerPort"), syntax.check_port_number(cp))
                hp = ck.get_int(port, "hostPort", pp)
                if hp:
                    ck.check(join_path(pp, "hostPort"), syntax.check_port_number(hp))
                proto = ck.get_str(port, "protocol", pp)
                if proto is not None:
                    ck.check(join_path(pp, "protocol"), syntax.check_protocol(proto))
                pname = ck.get_str(port, "name", pp)
                if pname:
                    reason = syntax.check_port_name(pname)
                    if reason:
                        ck.error(join_path(pp, "name"), reason)
                    elif pname in port_names:
                        ck.error(join_path(pp, "name"), f'duplicate port name "{pname}"')
                    port_names.add(pname)
            for ep, env in ck.maps(c, "env", p):
                ck.get_str(env, "name", ep, required=True)
    node_name = ck.get_str(spec, "nodeName", path)
    if node_name:
        ck.check(join_path(path, "nodeName"), syntax.check_dns1123_subdomain(node_name))
    ck.label_map(spec.get("nodeSelector"), join_path(path, "nodeSelector"))
    ck.get_bool(spec, "hostNetwork", path)
    for tp, t in ck.maps(spec, "tolerations", path):
        op = ck.get_str(t, "operator", tp)
        if op is not None and op not in ("Exists", "Equal"):
            ck.error(join_path(tp, "operator"), f'unknown operator "{op}": use Exists or Equal')
    policy = ck.get_str(spec, "restartPolicy", path)
    if policy is not None and policy not in ("Always", "OnFailure", "Never"):
        ck.error(
            join_path(path, "restartPolicy"),
            f'unsupported value "{policy}": supported values: Always, OnFailure, Never',
        )


def validate_pod(doc: dict[str, Any], ck: Checker) -> None:
    spec = ck.get_map(doc, "spec", "")
    if spec is None:
        ck.error("spec", "required value")
        return
    validate_pod_spec(spec, "spec", ck)
    status = ck.get_map(doc, "status", "")
    if status:
        ip = ck.get_str(status, "podIP", "status")
        if ip:
            ck.check("status.podIP", syntax.check_ip(ip))


def validate_workload(doc: dict[str, Any], ck: Checker) -> None:
    """Deployment, ReplicaSet, DaemonSet, StatefulSet: selector, template, replicas."""
    spec = ck.get_map(doc, "spec", "")
    if spec is None:
        ck.error("spec", "required value")
        return
    replicas = ck.get_int(spec, "replicas", "spec")
    if replicas is not None and replicas < 0:
        ck.error("spec.replicas", f"must be greater than or equal to 0, not {replicas}")
    sel = ck.get_map(spec, "selector", "spec")
    if sel is None:
        if "selector" not in spec:
            ck.error("spec.selector", "required value")
    else:
        before = len(ck.diagnostics)
        ck.selector(sel, "spec.selector")
        if not sel.get("matchLabels") and not sel.get("matchExpressions"):
            ck.error("spec.selector", "empty selector is invalid for a workload")
        elif len(ck.diagnostics) == before:
            _check_selector_matches_template(sel, spec, ck)
    tmpl = ck.get_map(spec, "template", "spec")
    if tmpl is None:
        ck.error("spec.template", "required value")
        return
    tmeta = ck.get_map(tmpl, "metadata", "spec.template") or {}
    ck.label_map(tmeta.get("labels"), "spec.template.metadata.labels")
    tspec = ck.get_map(tmpl, "spec", "spec.template")
    if tspec is None:
        ck.error("spec.template.spec", "required value")
        return
    validate_pod_spec(tspec, "spec.template.spec", ck)
    if doc.get("kind") == "StatefulSet":
        ck.get_str(spec, "serviceName", "spec")


def _check_selector_matches_template(
    sel: dict[str, Any], spec: dict[str, Any], ck: Checker
) -> None:
    # apps/v1 validation: "selector does not match template labels".
    tmpl = spec.get("template")
    labels = ((tmpl or {}).get("metadata") or {}).get("labels") if isinstance(tmpl, dict) else {}
    if not isinstance(labels, dict):
        return
    labels = {str(k): str(v) for k, v in labels.items()}
    ok = all(labels.get(str(k)) == str(v) for k, v in (sel.get("matchLabels") or {}).items())
    for e in sel.get("matchExpressions") or ():
        key, op, vals = e.get("key"), e.get("operator"), set(e.get("values") or ())
        if op == "In":
            ok = ok and labels.get(key) in vals
        elif op == "NotIn":
            ok = ok and labels.get(key) not in vals
        elif op == "Exists":
            ok = ok and key in labels
        elif op == "DoesNotExist":
            ok = ok and key not in labels
    if not ok:
        ck.error("spec.template.metadata.labels", "selector does not match template labels")


def validate_service(doc: dict[str, Any], ck: Checker) -> None:
    spec = ck.get_map(doc, "spec", "")
    if spec is None:
        ck.error("spec", "required value")
        return
    stype = ck.get_str(spec, "type", "spec") or "ClusterIP"
    if stype not in SERVICE_TYPES:
        ck.error(
            "spec.type",
            f'unsupported value "{stype}": supported values: {", ".join(SERVICE_TYPES)}',
        )
    cip = ck.get_str(spec, "clusterIP", "spec")
    if cip and cip != "None":
        reason = syntax.check_ip(cip)
        if reason:
            ck.error("spec.clusterIP", reason + ' (or "None" for a headless service)')
    for p, ip in ck.strs(spec, "clusterIPs", "spec"):
        if ip != "None" and syntax.check_ip(ip):
            ck.error(p, f'invalid IP address "{ip}"')
    for p, ip in ck.strs(spec, "externalIPs", "spec"):
        ck.check(p, syntax.check_ip(ip))
    lbip = ck.get_str(spec, "loadBalancerIP", "spec")
    if lbip:
        ck.check("spec.loadBalancerIP", syntax.check_ip(lbip))
    sel = ck.get_map(spec, "selector", "spec")
    ck.label_map(sel, "spec.selector")
    if stype == "ExternalName":
        name = ck.get_str(spec, "externalName", "spec", required=True)
        if name is not None and syntax.check_dns1123_subdomain(name.rstrip(".").lower()):
            ck.error("spec.externalName", f'"{name}" is not a valid DNS name')
    ports = ck.maps(spec, "ports", "spec")
    if not ports and stype != "ExternalName" and cip != "None":
        ck.error("spec.ports", "required value")
    seen_names: set[str] = set()
    seen_ports: set[tuple[int, str]] = set()
    for p, port in ports:
        name = ck.get_str(port, "name", p)
        if len(ports) > 1 and not name:
            ck.error(join_path(p, "name"), "required value when a service has several ports")
        if name:
            reason = syntax.check_dns1123_label(name)
            if reason:
                ck.error(join_path(p, "name"), reason)
            elif name in seen_names:
                ck.error(join_path(p, "name"), f'duplicate port name "{name}"')
            seen_names.add(name)
        num = ck.get_int(port, "port", p)
        if num is None and "port" not in port:
            ck.error(join_path(p, "port"), "required value")
        elif num is not None:
            ck.check(join_path(p, "port"), syntax.check_port_number(num))
        proto = ck.get_str(port, "protocol", p) or "TCP"
        ck.check(join_path(p, "protocol"), syntax.check_protocol(proto))
        if num is not None:
            if (num, proto) in seen_ports:
                ck.error(join_path(p, "port"), f"duplicate port {num}/{proto}")
            seen_ports.add((num, proto))
        ck.port_value(port.get("targetPort"), join_path(p, "targetPort"))
        np = ck.get_int(port, "nodePort", p)
        if np:
            lo, hi = NODE_PORT_RANGE
            if stype not in ("NodePort", "LoadBalancer"):
                ck.error(
                    join_path(p, "nodePort"),
                    f"may not be used when type is '{stype}'",
                )
            elif not lo <= np <= hi:
                ck.error(
                    join_path(p, "nodePort"),
                    f"provided port {np} is not in the valid range {lo}-{hi}",
                )
    aff = ck.get_str(spec, "sessionAffinity", "spec")
    if aff is not None and aff not in ("None", "ClientIP"):
        ck.error("spec.sessionAffinity", f'unsupported value "{aff}": use None or ClientIP')
    for field in ("externalTrafficPolicy", "internalTrafficPolicy"):
        v = ck.get_str(spec, field, "spec")
        if v is not None and v not in ("Cluster", "Local"):
            ck.error(join_path("spec", field), f'unsupported value "{v}": use Cluster or Local')


def validate_configmap(doc: dict[str, Any], ck: Checker) -> None:
    data = ck.get_map(doc, "data", "")
    for k, v in (data or {}).items():
        if not isinstance(v, str):
            ck.error(join_path("data", k), "must be a string")


def validate_node(doc: dict[str, Any], ck: Checker) -> None:
    spec = ck.get_map(doc, "spec", "") or {}
    cidr = ck.get_str(spec, "podCIDR", "spec")
    if cidr:
        ck.check("spec.podCIDR", syntax.check_cidr(cidr))


def validate_nothing(doc: dict[str, Any], ck: Checker) -> None:
    """Kinds whose fields ciliate stores but does not read yet."""


VALIDATORS: dict[str, Validator] = {
    "Pod": validate_pod,
    "Service": validate_service,
    "ConfigMap": validate_configmap,
    "Node": validate_node,
    "Namespace": validate_nothing,
    "Deployment": validate_workload,
    "ReplicaSet": validate_workload,
    "DaemonSet": validate_workload,
    "StatefulSet": validate_workload,
}
