"""Core v1 kinds: Namespace, Pod, Service, Node, ConfigMap (typed read-only views).

Imports only ``model.meta`` and the standard library: the model is the bottom layer and
must not import anything above it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ciliate.model.meta import Doc, LabelSelector, ObjectMeta


@dataclass(frozen=True, slots=True)
class Namespace:
    meta: ObjectMeta
    doc: Doc = field(repr=False, compare=False)

    @classmethod
    def from_doc(cls, doc: Doc) -> Namespace:
        return cls(ObjectMeta.from_doc(doc), doc)


@dataclass(frozen=True, slots=True)
class ContainerPort:
    container_port: int
    protocol: str = "TCP"
    name: str = ""
    host_port: int = 0


@dataclass(frozen=True, slots=True)
class EnvVar:
    name: str
    value: str | None = None
    field_path: str | None = None  # valueFrom.fieldRef.fieldPath


@dataclass(frozen=True, slots=True)
class Container:
    name: str
    image: str = ""
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    ports: tuple[ContainerPort, ...] = ()
    env: tuple[EnvVar, ...] = ()

    @classmethod
    def from_doc(cls, c: Mapping[str, Any]) -> Container:
        env: list[EnvVar] = []
        for e in c.get("env") or ():
            ref = ((e.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
            env.append(
                EnvVar(
                    str(e.get("name", "")),
                    None if e.get("value") is None else str(e.get("value")),
                    ref,
                )
            )
        return cls(
            name=str(c.get("name", "")),
            image=str(c.get("image", "")),
            command=tuple(str(x) for x in c.get("command") or ()),
            args=tuple(str(x) for x in c.get("args") or ()),
            ports=tuple(
                ContainerPort(
                    int(p.get("containerPort", 0)),
                    str(p.get("protocol", "TCP") or "TCP"),
                    str(p.get("name", "") or ""),
                    int(p.get("hostPort", 0) or 0),
                )
                for p in c.get("ports") or ()
            ),
            env=tuple(env),
        )


@dataclass(frozen=True, slots=True)
class Toleration:
    key: str = ""
    operator: str = "Equal"
    value: str = ""
    effect: str = ""


@dataclass(frozen=True, slots=True)
class PodSpec:
    containers: tuple[Container, ...] = ()
    node_name: str = ""
    node_selector: Mapping[str, str] = field(default_factory=dict)
    service_account_name: str = "default"
    restart_policy: str = "Always"
    host_network: bool = False
    tolerations: tuple[Toleration, ...] = ()
    hostname: str = ""
    subdomain: str = ""

    @classmethod
    def from_doc(cls, spec: Mapping[str, Any]) -> PodSpec:
        return cls(
            containers=tuple(Container.from_doc(c) for c in spec.get("containers") or ()),
            node_name=str(spec.get("nodeName", "") or ""),
            node_selector={str(k): str(v) for k, v in (spec.get("nodeSelector") or {}).items()},
            service_account_name=str(
                spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
            ),
            restart_policy=str(spec.get("restartPolicy", "Always") or "Always"),
            host_network=bool(spec.get("hostNetwork", False)),
            tolerations=tuple(
                Toleration(
                    str(t.get("key", "") or ""),
                    str(t.get("operator", "Equal") or "Equal"),
                    str(t.get("value", "") or ""),
                    str(t.get("effect", "") or ""),
                )
                for t in spec.get("tolerations") or ()
            ),
            hostname=str(spec.get("hostname", "") or ""),
            subdomain=str(spec.get("subdomain", "") or ""),
        )


@dataclass(frozen=True, slots=True)
class PodStatus:
    phase: str = "Pending"
    pod_ip: str = ""
    host_ip: str = ""
    ready: bool = False
    message: str = ""
    reason: str = ""

    @classmethod
    def from_doc(cls, st: Mapping[str, Any]) -> PodStatus:
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in st.get("conditions") or ()
        )
        return cls(
            phase=str(st.get("phase", "Pending") or "Pending"),
            pod_ip=str(st.get("podIP", "") or ""),
            host_ip=str(st.get("hostIP", "") or ""),
            ready=ready,
            message=str(st.get("message", "") or ""),
            reason=str(st.get("reason", "") or ""),
        )


@dataclass(frozen=True, slots=True)
class Pod:
    meta: ObjectMeta
    spec: PodSpec
    status: PodStatus
    doc: Doc = field(repr=False, compare=False)

    @classmethod
    def from_doc(cls, doc: Doc) -> Pod:
        return cls(
            ObjectMeta.from_doc(doc),
            PodSpec.from_doc(doc.get("spec") or {}),
            PodStatus.from_doc(doc.get("status") or {}),
            doc,
        )

    @property
    def key(self) -> str:
        """``namespace/name``, the form used by reach, trace and Hubble."""
        return f"{self.meta.namespace}/{self.meta.name}"

    def named_port(self, name: str, protocol: str | None = None) -> ContainerPort | None:
        """The container port with this name (targetPort / policy named ports)."""
        for c in self.spec.containers:
            for p in c.ports:
                if p.name == name and (protocol is None or p.protocol == protocol):
                    return p
        return None


@dataclass(frozen=True, slots=True)
class ServicePort:
    port: int
    protocol: str = "TCP"
    name: str = ""
    target_port: int | str = 0  # a number or a container-port name; 0 = same as port
    node_port: int = 0


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    type: str = "ClusterIP"  # ClusterIP | NodePort | LoadBalancer | ExternalName
    selector: Mapping[str, str] | None = None  # None: no selector (manual endpoints)
    ports: tuple[ServicePort, ...] = ()
    cluster_ip: str = ""  # "" = allocate, "None" = headless
    cluster_ips: tuple[str, ...] = ()
    load_balancer_ip: str = ""
    load_balancer_class: str = ""
    external_ips: tuple[str, ...] = ()
    external_name: str = ""
    session_affinity: str = "None"
    session_affinity_timeout: int = 10800
    external_traffic_policy: str = "Cluster"
    internal_traffic_policy: str = "Cluster"

    @classmethod
    def from_doc(cls, spec: Mapping[str, Any]) -> ServiceSpec:
        ports: list[ServicePort] = []
        for p in spec.get("ports") or ():
            tp = p.get("targetPort", 0)
            tp_val: int | str = int(tp) if isinstance(tp, int) or str(tp).isdigit() else str(tp)
            ports.append(
                ServicePort(
                    port=int(p.get("port", 0)),
                    protocol=str(p.get("protocol", "TCP") or "TCP"),
                    name=str(p.get("name", "") or ""),
                    target_port=tp_val or int(p.get("port", 0)),
                    node_port=int(p.get("nodePort", 0) or 0),
                )
            )
        sel = spec.get("selector")
        timeout = (
            ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}).get("timeoutSeconds")
        ) or 10800
        return cls(
            type=str(spec.get("type", "ClusterIP") or "ClusterIP"),
            selector=None if sel is None else {str(k): str(v) for k, v in sel.items()},
            ports=tuple(ports),
            cluster_ip=str(spec.get("clusterIP", "") or ""),
            cluster_ips=tuple(str(x) for x in spec.get("clusterIPs") or ()),
            load_balancer_ip=str(spec.get("loadBalancerIP", "") or ""),
            load_balancer_class=str(spec.get("loadBalancerClass", "") or ""),
            external_ips=tuple(str(x) for x in spec.get("externalIPs") or ()),
            external_name=str(spec.get("externalName", "") or ""),
            session_affinity=str(spec.get("sessionAffinity", "None") or "None"),
            session_affinity_timeout=int(timeout),
            external_traffic_policy=str(spec.get("externalTrafficPolicy", "Cluster") or "Cluster"),
            internal_traffic_policy=str(spec.get("internalTrafficPolicy", "Cluster") or "Cluster"),
        )


@dataclass(frozen=True, slots=True)
class Service:
    meta: ObjectMeta
    spec: ServiceSpec
    load_balancer_ingress: tuple[str, ...]  # status.loadBalancer.ingress[].ip
    doc: Doc = field(repr=False, compare=False)

    @classmethod
    def from_doc(cls, doc: Doc) -> Service:
        ing = ((doc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or ()
        return cls(
            ObjectMeta.from_doc(doc),
            ServiceSpec.from_doc(doc.get("spec") or {}),
            tuple(str(i.get("ip")) for i in ing if i.get("ip")),
            doc,
        )

    @property
    def key(self) -> str:
        return f"{self.meta.namespace}/{self.meta.name}"

    @property
    def selector(self) -> LabelSelector | None:
        s = self.spec.selector
        return None if s is None else LabelSelector.from_labels(s)


@dataclass(frozen=True, slots=True)
class Taint:
    key: str
    value: str = ""
    effect: str = "NoSchedule"


@dataclass(frozen=True, slots=True)
class Node:
    meta: ObjectMeta
    internal_ip: str
    pod_cidr: str
    taints: tuple[Taint, ...]
    unschedulable: bool
    doc: Doc = field(repr=False, compare=False)

    @classmethod
    def from_doc(cls, doc: Doc) -> Node:
        spec = doc.get("spec") or {}
        status = doc.get("status") or {}
        ip = ""
        for a in status.get("addresses") or ():
            if a.get("type") == "InternalIP":
                ip = str(a.get("address", ""))
        return cls(
            ObjectMeta.from_doc(doc),
            ip,
            str(spec.get("podCIDR", "") or ""),
            tuple(
                Taint(
                    str(t.get("key", "")), str(t.get("value", "") or ""), str(t.get("effect", ""))
                )
                for t in spec.get("taints") or ()
            ),
            bool(spec.get("unschedulable", False)),
            doc,
        )


@dataclass(frozen=True, slots=True)
class ConfigMap:
    meta: ObjectMeta
    data: Mapping[str, str]
    doc: Doc = field(repr=False, compare=False)

    @classmethod
    def from_doc(cls, doc: Doc) -> ConfigMap:
        return cls(
            ObjectMeta.from_doc(doc),
            {str(k): str(v) for k, v in (doc.get("data") or {}).items()},
            doc,
        )
