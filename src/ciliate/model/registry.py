"""Kind -> typed view: ``parse(doc)`` turns a stored document into its model class.

Role: the one place that knows which ``from_doc`` reads which kind, so consumers
(controllers, control plane, CLI) need not switch on ``kind`` themselves. Policy kinds
are typed in ``model.netpol`` and ``model.cilium`` (another part of the project); they
are imported lazily, so this registry works whatever is present. Kinds without a typed
view (Secret, Lease, ...) raise ``KeyError`` from ``parse`` and return ``None`` from
``parse_or_none``. Imports only ``ciliate.model``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from ciliate.model import apps, core, gateway, misc, networking
from ciliate.model.meta import Doc

FromDoc = Callable[[Doc], Any]

_STATIC: dict[tuple[str, str], FromDoc] = {
    ("", "Namespace"): core.Namespace.from_doc,
    ("", "Pod"): core.Pod.from_doc,
    ("", "Service"): core.Service.from_doc,
    ("", "Node"): core.Node.from_doc,
    ("", "ConfigMap"): core.ConfigMap.from_doc,
    ("apps", "Deployment"): apps.Deployment.from_doc,
    ("apps", "ReplicaSet"): apps.ReplicaSet.from_doc,
    ("apps", "DaemonSet"): apps.DaemonSet.from_doc,
    ("apps", "StatefulSet"): apps.StatefulSet.from_doc,
    ("networking.k8s.io", "Ingress"): networking.Ingress.from_doc,
    ("networking.k8s.io", "IngressClass"): networking.IngressClass.from_doc,
    (gateway.GROUP, "GatewayClass"): gateway.GatewayClass.from_doc,
    (gateway.GROUP, "Gateway"): gateway.Gateway.from_doc,
    (gateway.GROUP, "HTTPRoute"): gateway.HTTPRoute.from_doc,
    (gateway.GROUP, "GRPCRoute"): gateway.GRPCRoute.from_doc,
    (gateway.GROUP, "TLSRoute"): gateway.TLSRoute.from_doc,
    (gateway.GROUP, "TCPRoute"): gateway.Route.from_doc,
    (gateway.GROUP, "UDPRoute"): gateway.Route.from_doc,
    (gateway.GROUP, "ReferenceGrant"): gateway.ReferenceGrant.from_doc,
    ("cilium.io", "CiliumLoadBalancerIPPool"): misc.CiliumLoadBalancerIPPool.from_doc,
    ("cilium.io", "CiliumL2AnnouncementPolicy"): misc.CiliumL2AnnouncementPolicy.from_doc,
    ("k8s.cni.cncf.io", "NetworkAttachmentDefinition"): misc.NetworkAttachmentDefinition.from_doc,
    ("projectcalico.org", "IPPool"): misc.CalicoIPPool.from_doc,
    ("projectcalico.org", "BGPConfiguration"): misc.BGPConfiguration.from_doc,
}

# (group, kind) -> (module, class names to try in order).
_LAZY: dict[tuple[str, str], tuple[str, tuple[str, ...]]] = {
    ("networking.k8s.io", "NetworkPolicy"): ("ciliate.model.netpol", ("NetworkPolicy",)),
    ("cilium.io", "CiliumNetworkPolicy"): (
        "ciliate.model.cilium",
        ("CiliumNetworkPolicy", "CiliumPolicy"),
    ),
    ("cilium.io", "CiliumClusterwideNetworkPolicy"): (
        "ciliate.model.cilium",
        ("CiliumClusterwideNetworkPolicy", "CiliumPolicy"),
    ),
}


def group_of(doc: Doc) -> str:
    api_version = str(doc.get("apiVersion", ""))
    return api_version.rpartition("/")[0]


def _lookup(group: str, kind: str) -> FromDoc | None:
    fn = _STATIC.get((group, kind))
    if fn is not None:
        return fn
    lazy = _LAZY.get((group, kind))
    if lazy is None:
        return None
    module_name, classes = lazy
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError:
        return None
    for name in classes:
        cls = getattr(module, name, None)
        if cls is not None and hasattr(cls, "from_doc"):
            found: FromDoc = cls.from_doc
            _STATIC[(group, kind)] = found
            return found
    return None


def parse_or_none(doc: Doc) -> Any | None:
    fn = _lookup(group_of(doc), str(doc.get("kind", "")))
    return None if fn is None else fn(doc)


def parse(doc: Doc) -> Any:
    """The typed view of ``doc`` (e.g. ``apps.Deployment``); KeyError for kinds without one."""
    fn = _lookup(group_of(doc), str(doc.get("kind", "")))
    if fn is None:
        raise KeyError(f"no typed view for {doc.get('apiVersion')} {doc.get('kind')}")
    return fn(doc)
