"""kubectl's table columns for ``ciliate get``, one function per kind.

Role: ``table_for(kind)(docs, wide, now) -> (headers, rows)`` with the columns kubectl
prints (its printers in pkg/printers/internalversion, and the CRDs' printer columns for
Cilium and Gateway API kinds); ``-A`` adds NAMESPACE in front, done by the caller.
Reads documents (through the typed views where they exist); never the store.

Pure functions of stored documents: imports ``cli.render``, ``model.meta`` and the
standard library; must not read the store or import ``datapath``.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from ciliate.cli.render import age
from ciliate.model.meta import Doc, LabelSelector, name_of

Table = tuple[list[str], list[list[str]]]
TableFn = Callable[[Sequence[Doc], bool, datetime | None], Table]

NONE = "<none>"


def _meta(d: Mapping[str, Any]) -> Mapping[str, Any]:
    m = d.get("metadata")
    return m if isinstance(m, Mapping) else {}


def _age(d: Mapping[str, Any], now: datetime | None) -> str:
    return age(str(_meta(d).get("creationTimestamp", "") or ""), now)


def _spec(d: Mapping[str, Any]) -> Mapping[str, Any]:
    s = d.get("spec")
    return s if isinstance(s, Mapping) else {}


def _status(d: Mapping[str, Any]) -> Mapping[str, Any]:
    s = d.get("status")
    return s if isinstance(s, Mapping) else {}


def _num(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


def _condition(d: Mapping[str, Any], ctype: str) -> Mapping[str, Any] | None:
    for c in _status(d).get("conditions") or ():
        if isinstance(c, Mapping) and c.get("type") == ctype:
            return c
    return None


def _containers(spec: Mapping[str, Any]) -> tuple[str, str]:
    cs = [c for c in spec.get("containers") or () if isinstance(c, Mapping)]
    return ",".join(str(c.get("name", "")) for c in cs), ",".join(
        str(c.get("image", "")) for c in cs
    )


def _selector_text(sel: Any) -> str:
    if not isinstance(sel, Mapping):
        return NONE
    text = str(LabelSelector.from_doc(sel))
    return text or NONE


# -- core -------------------------------------------------------------------------------


def pods(docs: Sequence[Doc], wide: bool, now: datetime | None) -> Table:
    headers = ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    if wide:
        headers += ["IP", "NODE", "NOMINATED NODE", "READINESS GATES"]
    rows: list[list[str]] = []
    for d in docs:
        spec, st = _spec(d), _status(d)
        total = len(spec.get("containers") or ())
        statuses = [c for c in st.get("containerStatuses") or () if isinstance(c, Mapping)]
        if statuses:
            ready = sum(1 for c in statuses if c.get("ready"))
            restarts = sum(_num(c.get("restartCount")) for c in statuses)
        else:
            cond = _condition(d, "Ready")
            ready = total if cond is not None and cond.get("status") == "True" else 0
            restarts = 0
        status = str(st.get("reason") or st.get("phase") or "Pending")
        for c in statuses:  # a waiting container names the pod's state (ContainerCreating)
            waiting = (c.get("state") or {}).get("waiting")
            if isinstance(waiting, Mapping) and waiting.get("reason"):
                status = str(waiting["reason"])
        if _meta(d).get("deletionTimestamp"):
            status = "Terminating"
        row = [name_of(d), f"{ready}/{total}", status, str(restarts), _age(d, now)]
        if wide:
            gates = spec.get("readinessGates") or ()
            row += [
                str(st.get("podIP") or NONE),
                str(spec.get("nodeName") or NONE),
                str(st.get("nominatedNodeName") or NONE),
                f"{len(gates)}/{len(gates)}" if gates else NONE,
            ]
        rows.append(row)
    return headers, rows


def _service_ports(spec: Mapping[str, Any]) -> str:
    parts: list[str] = []
    for p in spec.get("ports") or ():
        if not isinstance(p, Mapping):
            continue
        proto = p.get("protocol") or "TCP"
        np = p.get("nodePort")
        parts.append(f"{p.get('port')}:{np}/{proto}" if np else f"{p.get('port')}/{proto}")
    return ",".join(parts) or NONE


def _external_ip(d: Mapping[str, Any]) -> str:
    spec = _spec(d)
    stype = spec.get("type") or "ClusterIP"
    if stype == "ExternalName":
        return str(spec.get("externalName") or NONE)
    ips = [str(x) for x in spec.get("externalIPs") or ()]
    lb = (_status(d).get("loadBalancer") or {}).get("ingress") or ()
    lb_ips = [str(i.get("ip") or i.get("hostname")) for i in lb if isinstance(i, Mapping)]
    if stype == "LoadBalancer":
        return ",".join(lb_ips + ips) if lb_ips or ips else "<pending>"
    return ",".join(ips) or NONE


def services(docs: Sequence[Doc], wide: bool, now: datetime | None) -> Table:
    headers = ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    if wide:
        headers.append("SELECTOR")
    rows: list[list[str]] = []
    for d in docs:
        spec = _spec(d)
        cip = spec.get("clusterIP") or NONE
        row = [
            name_of(d),
            str(spec.get("type") or "ClusterIP"),
            str(cip),
            _external_ip(d),
            _service_ports(spec),
            _age(d, now),
        ]
        if wide:
            sel = spec.get("selector")
            row.append(
                ",".join(f"{k}={v}" for k, v in sel.items()) if isinstance(sel, Mapping) and sel
                else NONE
            )  # fmt: skip
        rows.append(row)
    return headers, rows


def nodes(docs: Sequence[Doc], wide: bool, now: datetime | None) -> Table:
    headers = ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    if wide:
        headers += ["INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME"]
    rows: list[list[str]] = []
    for d in docs:
        cond = _condition(d, "Ready")
        status = "Ready" if cond is not None and cond.get("status") == "True" else "NotReady"
        if cond is None:
            status = "Unknown"
        if _spec(d).get("unschedulable"):
            status += ",SchedulingDisabled"
        labels = _meta(d).get("labels") or {}
        roles = sorted(
            k.removeprefix("node-role.kubernetes.io/")
            for k in labels
            if k.startswith("node-role.kubernetes.io/")
        )
        info = _status(d).get("nodeInfo") or {}
        row = [
            name_of(d),
            status,
            ",".join(roles) or NONE,
            _age(d, now),
            str(info.get("kubeletVersion") or ""),
        ]
        if wide:
            addrs = {
                str(a.get("type")): str(a.get("address"))
                for a in _status(d).get("addresses") or ()
                if isinstance(a, Mapping)
            }
            row += [
                addrs.get("InternalIP", NONE),
                addrs.get("ExternalIP", NONE),
                str(info.get("osImage") or "<unknown>"),
                str(info.get("kernelVersion") or "<unknown>"),
                str(info.get("containerRuntimeVersion") or "<unknown>"),
            ]
        rows.append(row)
    return headers, rows


def namespaces(docs: Sequence[Doc], wide: bool, now: datetime | None) -> Table:
    return ["NAME", "STATUS", "AGE"], [
        [name_of(d), str(_status(d).get("phase") or "Active"), _age(d, now)] for d in docs
    ]


def configmaps(docs: Sequence[Doc], wide: bool, now: datetime | None) -> Table:
    return ["NAME", "DATA", "AGE"], [
        [name_of(d), str(len(d.get("data") or {}) + len(d.get("binaryData") or {})), _age(d, now)]
        for d in docs
    ]


def endpointslices(docs: Sequence[Doc], wide: bool, now: datetime | None) -> Table:
    rows: list[list[str]] = []
    for d in docs:
        ports = ",".join(str(p.get("port")) for p in d.get("ports") or () if isinstance(p, Mapping))
        addrs = [
            str(a)
            for e in d.get("endpoints") or ()
            if isinstance(e, Mapping)
            for a in e.get("addresses") or ()
        ]
        shown = ",".join(addrs[:3]) + (f" + {len(addrs) - 3} more..." if len(addrs) > 3 else "")
        rows.append(
            [
                name_of(d),
                str(d.get("addressType") or "IPv4"),
                ports or "<unset>",
                shown or "<unset>",
                _age(d, now),
            ]
        )
    return ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"], rows


# -- apps -------------------------------------------------------------------------------


def _tmpl_spec(d: Mapping[str, Any]) -> Mapping[str, Any]:
    t = _spec(d).get("template") or {}
    return (t.get("spec") or {}) if isinstance(t, Mapping) else {}


def _wide_workload(d: Mapping[str, Any]) -> list[str]:
    names, images = _containers(_tmpl_spec(d))
    return [names, images, _selector_text(_spec(d).get("selector"))]


def _replicas(d: Mapping[str, Any]) -> int:
    r = _spec(d).get("replicas")
    return 1 if r is None else _num(r)


def deployments(docs: Sequence[Doc], wide: bool, now: datetime | None) -> Table:
    headers = ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    if wide:
        headers += ["CONTAINERS", "IMAGES", "SELECTOR"]
    rows: list[list[str]] = []
    for d in docs:
        st = _status(d)
        row = [
            name_of(d),
            f"{_num(st.get('readyReplicas'))}/{_replicas(d)}",
            str(_num(st.get("updatedReplicas"))),
            str(_num(st.get("availableReplicas"))),
            _age(d, now),
        ]
        rows.append(row + (_wide_workload(d) if wide else []))
    return headers, rows


def replicasets(docs: Sequence[Doc], wide: bool, now: datetime | None) -> Table:
    headers = ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]
    if wide:
        headers += ["CONTAINERS", "IMAGES", "SELECTOR"]
    rows: list[list[str]] = []
    for d in docs:
        st = _status(d)
        row = [
            name_of(d),
            str(_replicas(d)),
            str(_num(st.get("replicas"))),
            str(_num(st.get("readyReplicas"))),
            _age(d, now),
        ]
        rows.append(row + (_wide_workload(d) if wide else []))
    return headers, rows


def daemonsets(docs: Sequence[Doc], wide: bool, now: datetime | None) -> Table:
    headers = ["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE"]
    headers += ["NODE SELECTOR", "AGE"]
    if wide:
        headers += ["CONTAINERS", "IMAGES", "SELECTOR"]
    rows: list[list[str]] = []
    for d in docs:
        st = _status(d)
        ns = _tmpl_spec(d).get("nodeSelector") or {}
        row = [
            name_of(d),
            str(_num(st.get("desiredNumberScheduled"))),
            str(_num(st.get("currentNumberScheduled"))),
            str(_num(st.get("numberReady"))),
            str(_num(st.get("updatedNumberScheduled"))),
            str(_num(st.get("numberAvailable"))),
            ",".join(f"{k}={v}" for k, v in ns.items()) or NONE,
            _age(d, now),
        ]
        rows.append(row + (_wide_workload(d) if wide else []))
    return headers, rows


def statefulsets(docs: Sequence[Doc], wide: bool, now: datetime | None) -> Table:
    headers = ["NAME", "READY", "AGE"]
    if wide:
        headers += ["CONTAINERS", "IMAGES"]
    rows: list[list[str]] = []
    for d in docs:
        row = [
            name_of(d),
            f"{_num(_status(d).get('readyReplicas'))}/{_replicas(d)}",
            _age(d, now),
        ]
        rows.append(row + (_wide_workload(d)[:2] if wide else []))
    return headers, rows


# -- networking -----------------------------------------------------------------------


def network_policies(docs: Sequence[Doc], wide: bool, now: datetime | None) -> Table:
    return ["NAME", "POD-SELECTOR", "AGE"], [
        [name_of(d), _selector_text(_spec(d).get("podSelector")), _age(d, now)] for d in docs
    ]


def _valid(d: Mapping[str, Any]) -> str:
    cond = _condition(d, "Valid")
    return str(cond.get("status", "")) if cond else ""


def cilium_network_policies(docs: Sequence[Doc], wide: bool, now: datetime | None) -> Table:
    return ["NAME", "AGE", "VALID"], [[name_of(d), _age(d, now), _valid(d)] for d in docs]


def cilium_clusterwide_policies(docs: Sequence[Doc], wide: bool, now: datetime | None) -> Table:
    return ["NAME", "VALID"], [[name_of(d), _valid(d)] for d in docs]


def ingresses(docs: Sequence[Doc], wide: bool, now: datetime | None) -> Table:
    rows: list[list[str]] = []
    for d in docs:
        spec = _spec(d)
        klass = spec.get("ingressClassName") or (_meta(d).get("annotations") or {}).get(
            "kubernetes.io/ingress.class"
        )
        hosts = [
            str(r.get("host") or "*") for r in spec.get("rules") or () if isinstance(r, Mapping)
        ]
        lb = (_status(d).get("loadBalancer") or {}).get("ingress") or ()
        addr = [str(i.get("ip") or i.get("hostname")) for i in lb if isinstance(i, Mapping)]
        ports = "80, 443" if spec.get("tls") else "80"
        rows.append(
            [
                name_of(d),
                str(klass or NONE),
                ",".join(hosts) or "*",
                ",".join(addr),
                ports,
                _age(d, now),
            ]
        )
    return ["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"], rows


def ingress_classes(docs: Sequence[Doc], wide: bool, now: datetime | None) -> Table:
    return ["NAME", "CONTROLLER", "PARAMETERS", "AGE"], [
        [name_of(d), str(_spec(d).get("controller") or ""), NONE, _age(d, now)] for d in docs
    ]


def gateway_classes(docs: Sequence[Doc], wide: bool, now: datetime | None) -> Table:
    rows: list[list[str]] = []
    for d in docs:
        cond = _condition(d, "Accepted")
        accepted = str(cond.get("status")) if cond else "Unknown"
        rows.append([name_of(d), str(_spec(d).get("controllerName") or ""), accepted, _age(d, now)])
    return ["NAME", "CONTROLLER", "ACCEPTED", "AGE"], rows


def gateways(docs: Sequence[Doc], wide: bool, now: datetime | None) -> Table:
    rows: list[list[str]] = []
    for d in docs:
        addrs = [
            str(a.get("value")) for a in _status(d).get("addresses") or () if isinstance(a, Mapping)
        ]
        cond = _condition(d, "Programmed")
        rows.append(
            [
                name_of(d),
                str(_spec(d).get("gatewayClassName") or ""),
                addrs[0] if addrs else "",
                str(cond.get("status")) if cond else "Unknown",
                _age(d, now),
            ]
        )
    return ["NAME", "CLASS", "ADDRESS", "PROGRAMMED", "AGE"], rows


def routes(docs: Sequence[Doc], wide: bool, now: datetime | None) -> Table:
    return ["NAME", "HOSTNAMES", "AGE"], [
        [
            name_of(d),
            json.dumps([str(h) for h in _spec(d).get("hostnames") or ()], separators=(",", ":"))
            if _spec(d).get("hostnames")
            else "",
            _age(d, now),
        ]
        for d in docs
    ]


# -- Cilium LB-IPAM and L2 ----------------------------------------------------------------


def _pool_size(spec: Mapping[str, Any]) -> int:
    total = 0
    # The default follows model.misc (and the example's EXPECTED.md): "No".
    first_last = str(spec.get("allowFirstLastIPs", "No")) == "Yes"
    for b in [*(spec.get("blocks") or ()), *(spec.get("cidrs") or ())]:
        if not isinstance(b, Mapping):
            continue
        try:
            if b.get("cidr"):
                net = ipaddress.ip_network(str(b["cidr"]), strict=False)
                n = net.num_addresses
                if not first_last and net.prefixlen < net.max_prefixlen - 1:
                    n -= 2
                total += n
            elif b.get("start"):
                lo = ipaddress.ip_address(str(b["start"]))
                hi = ipaddress.ip_address(str(b.get("stop") or b["start"]))
                total += int(hi) - int(lo) + 1
        except ValueError:
            continue
    return total


def lb_ip_pools(docs: Sequence[Doc], wide: bool, now: datetime | None) -> Table:
    rows: list[list[str]] = []
    for d in docs:
        spec = _spec(d)
        conflict = _condition(d, "cilium.io/PoolConflict")
        avail = _condition(d, "cilium.io/IPsAvailable")
        rows.append(
            [
                name_of(d),
                "true" if spec.get("disabled") else "false",
                str(conflict.get("status")) if conflict else "False",
                str(avail.get("message")) if avail else str(_pool_size(spec)),
                _age(d, now),
            ]
        )
    return ["NAME", "DISABLED", "CONFLICTING", "IPS AVAILABLE", "AGE"], rows


def generic(docs: Sequence[Doc], wide: bool, now: datetime | None) -> Table:
    return ["NAME", "AGE"], [[name_of(d), _age(d, now)] for d in docs]


TABLES: dict[str, TableFn] = {
    "Pod": pods,
    "Service": services,
    "Node": nodes,
    "Namespace": namespaces,
    "ConfigMap": configmaps,
    "EndpointSlice": endpointslices,
    "Deployment": deployments,
    "ReplicaSet": replicasets,
    "DaemonSet": daemonsets,
    "StatefulSet": statefulsets,
    "NetworkPolicy": network_policies,
    "CiliumNetworkPolicy": cilium_network_policies,
    "CiliumClusterwideNetworkPolicy": cilium_clusterwide_policies,
    "Ingress": ingresses,
    "IngressClass": ingress_classes,
    "GatewayClass": gateway_classes,
    "Gateway": gateways,
    "HTTPRoute": routes,
    "GRPCRoute": routes,
    "TLSRoute": routes,
    "CiliumLoadBalancerIPPool": lb_ip_pools,
}


def table_for(kind: str) -> TableFn:
    return TABLES.get(kind, generic)
