"""``ciliate describe``: kubectl describe's layout for one object.

Common header (Name, Namespace, Labels, Annotations), kind-specific lines for pods,
services and workloads (as kubectl's describers print them), then the rest of the spec
and status as indented YAML, and ``Events: <none>`` (ciliate keeps no event log).
The store, when given, is read for related objects (a service's endpoints).

Imports ``store.api``, ``model.meta`` and the standard library; must not import
``datapath`` or ``agent``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from ciliate.model.meta import Doc, LabelSelector
from ciliate.store.api import Store

WIDTH = 14  # kubectl aligns values after the longest common label


def _line(label: str, value: Any, indent: int = 0) -> str:
    pad = " " * indent
    return f"{pad}{label + ':':<{WIDTH - 1}} {value}"


def _map_lines(label: str, m: Mapping[str, Any] | None, sep: str = "=") -> list[str]:
    if not m:
        return [_line(label, "<none>")]
    items = [f"{k}{sep}{v}" for k, v in sorted(m.items())]
    return [_line(label, items[0])] + [" " * WIDTH + x for x in items[1:]]


def _yaml_block(title: str, value: Any) -> list[str]:
    if not value:
        return []
    text = yaml.safe_dump(value, sort_keys=False, default_flow_style=False).rstrip("\n")
    return [f"{title}:"] + ["  " + x for x in text.splitlines()]


def _header(doc: Doc) -> list[str]:
    meta = doc.get("metadata") or {}
    out = [_line("Name", meta.get("name", ""))]
    if meta.get("namespace"):
        out.append(_line("Namespace", meta["namespace"]))
    out += _map_lines("Labels", meta.get("labels"))
    out += _map_lines("Annotations", meta.get("annotations"), ": ")
    if meta.get("creationTimestamp"):
        out.append(_line("Created", meta["creationTimestamp"]))
    owner = next((o for o in meta.get("ownerReferences") or () if o.get("controller")), None)
    if owner:
        out.append(_line("Controlled By", f"{owner.get('kind')}/{owner.get('name')}"))
    return out


def _pod(doc: Doc) -> list[str]:
    spec, st = doc.get("spec") or {}, doc.get("status") or {}
    node = spec.get("nodeName") or "<none>"
    if st.get("hostIP"):
        node = f"{node}/{st['hostIP']}"
    out = [
        _line("Node", node),
        _line("Status", st.get("reason") or st.get("phase") or "Pending"),
        _line("IP", st.get("podIP") or ""),
    ]
    ips = [str(i.get("ip")) for i in st.get("podIPs") or () if isinstance(i, Mapping)]
    if ips:
        out.append("IPs:")
        out += [f"  IP:  {ip}" for ip in ips]
    if st.get("message"):
        out.append(_line("Message", st["message"]))
    out.append("Containers:")
    for c in spec.get("containers") or ():
        out.append(f"  {c.get('name')}:")
        out.append(_line("Image", c.get("image", ""), 4))
        for p in c.get("ports") or ():
            out.append(_line("Port", f"{p.get('containerPort')}/{p.get('protocol', 'TCP')}", 4))
        if c.get("command"):
            out.append("    Command:")
            out += [f"      {x}" for x in c["command"]]
    out.append("Conditions:")
    out.append("  Type              Status")
    for c in st.get("conditions") or ():
        out.append(f"  {c.get('type', ''):<18}{c.get('status', '')}")
    out += _map_lines("Node-Selectors", spec.get("nodeSelector"))
    return out


def _service(doc: Doc, store: Store | None) -> list[str]:
    spec, st = doc.get("spec") or {}, doc.get("status") or {}
    meta = doc.get("metadata") or {}
    out = _map_lines("Selector", spec.get("selector"), "=")
    out.append(_line("Type", spec.get("type") or "ClusterIP"))
    out.append(_line("IP", spec.get("clusterIP") or "<none>"))
    lb = [i.get("ip") for i in (st.get("loadBalancer") or {}).get("ingress") or ()]
    if lb:
        out.append(_line("LoadBalancer Ingress", ", ".join(str(x) for x in lb)))
    endpoints: list[str] = []
    if store is not None:
        for s in store.list("EndpointSlice", str(meta.get("namespace", ""))):
            labels = (s.get("metadata") or {}).get("labels") or {}
            if labels.get("kubernetes.io/service-name") != meta.get("name"):
                continue
            for e in s.get("endpoints") or ():
                endpoints += [str(a) for a in e.get("addresses") or ()]
    for p in spec.get("ports") or ():
        proto = p.get("protocol") or "TCP"
        out.append(_line("Port", f"{p.get('name') or '<unset>'}  {p.get('port')}/{proto}"))
        out.append(_line("TargetPort", f"{p.get('targetPort', p.get('port'))}/{proto}"))
        if p.get("nodePort"):
            out.append(_line("NodePort", f"{p.get('name') or '<unset>'}  {p['nodePort']}/{proto}"))
        tp = p.get("targetPort", p.get("port"))
        out.append(_line("Endpoints", ",".join(f"{a}:{tp}" for a in endpoints) or "<none>"))
    out.append(_line("Session Affinity", spec.get("sessionAffinity") or "None"))
    return out


def _workload(doc: Doc) -> list[str]:
    spec, st = doc.get("spec") or {}, doc.get("status") or {}
    want = spec.get("replicas", 1)
    out = [_line("Selector", str(LabelSelector.from_doc(spec.get("selector"))) or "<none>")]
    if doc.get("kind") != "DaemonSet":
        out.append(
            _line(
                "Replicas",
                f"{want} desired | {st.get('updatedReplicas', 0)} updated | "
                f"{st.get('replicas', 0)} total | {st.get('availableReplicas', 0)} available | "
                f"{max(int(want or 0) - int(st.get('availableReplicas', 0) or 0), 0)} unavailable",
            )
        )
    tmpl = spec.get("template") or {}
    out.append("Pod Template:")
    out += ["  " + x for x in _map_lines("Labels", (tmpl.get("metadata") or {}).get("labels"))]
    out.append("  Containers:")
    for c in (tmpl.get("spec") or {}).get("containers") or ():
        out.append(f"   {c.get('name')}:")
        out.append(_line("Image", c.get("image", ""), 4))
    return out


def describe(doc: Doc, store: Store | None = None) -> str:
    kind = str(doc.get("kind", ""))
    lines = _header(doc)
    if kind == "Pod":
        lines += _pod(doc)
    elif kind == "Service":
        lines += _service(doc, store)
    elif kind in ("Deployment", "ReplicaSet", "DaemonSet", "StatefulSet"):
        lines += _workload(doc)
    else:
        rest = {k: v for k, v in doc.items() if k not in ("apiVersion", "kind", "metadata")}
        for key, value in rest.items():
            lines += _yaml_block(key[:1].upper() + key[1:], value)
    lines.append(_line("Events", "<none>"))
    return "\n".join(lines)
