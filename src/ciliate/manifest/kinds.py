"""The registry of kinds ciliate understands: group, served versions, names, scope.

Role: answer "is ``apiVersion``/``kind`` served?", "which API replaced this removed
one?" and "what does ``po`` / ``deployments.apps`` / ``cnp`` mean on the command line?"
(kubectl's discovery, offline). Outputs ``KindInfo`` records; imports nothing of ciliate
but ``ciliate.model.meta``.

Served versions follow what upstream serves today: Gateway API v1.2 (GatewayClass,
Gateway, HTTPRoute and GRPCRoute in v1; Gateway/GatewayClass/HTTPRoute still in
v1beta1; ReferenceGrant v1beta1 and v1alpha2; TLSRoute, TCPRoute, UDPRoute v1alpha2),
Cilium 1.16+ (LB-IPAM pools in v2alpha1 and v2), Kubernetes 1.30 (removed APIs below,
from the Kubernetes deprecation guide).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class NameRule(enum.Enum):
    """How ``metadata.name`` is validated (apimachinery validation names)."""

    SUBDOMAIN = "DNS-1123 subdomain"  # most kinds
    LABEL = "DNS-1123 label"  # Namespace
    DNS1035 = "DNS-1035 label"  # Service (becomes a DNS label, must start with a letter)
    PATH_SEGMENT = "path segment"  # kinds whose upstream accepts more (Calico resources)


class KindNames:
    """The names kubectl derives from a kind, its plural and its group; shared by stored
    kinds (``KindInfo``) and computed ones (``cli.virtual.VirtualKind``)."""

    __slots__ = ()
    kind: str
    plural: str
    group: str  # "" = core

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def qualified_singular(self) -> str:
        """kubectl's ``-o name`` prefix: ``pod``, ``deployment.apps``."""
        return f"{self.singular}.{self.group}" if self.group else self.singular

    @property
    def qualified_plural(self) -> str:
        """``pods``, ``deployments.apps`` (error messages, ``kubectl api-resources``)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


@dataclass(frozen=True, slots=True)
class KindInfo(KindNames):
    kind: str
    group: str  # "" = core
    versions: tuple[str, ...]  # served versions, preferred first
    plural: str
    short_names: tuple[str, ...] = ()
    namespaced: bool = True
    name_rule: NameRule = NameRule.SUBDOMAIN
    computed: bool = False  # status-like kinds ciliate computes (never applied by users)

    @property
    def api_versions(self) -> tuple[str, ...]:
        return tuple(f"{self.group}/{v}" if self.group else v for v in self.versions)

    @property
    def preferred_api_version(self) -> str:
        return self.api_versions[0]


_GW = "gateway.networking.k8s.io"

KINDS: tuple[KindInfo, ...] = (
    KindInfo("Namespace", "", ("v1",), "namespaces", ("ns",), False, NameRule.LABEL),
    KindInfo("Pod", "", ("v1",), "pods", ("po",)),
    KindInfo("Service", "", ("v1",), "services", ("svc",), name_rule=NameRule.DNS1035),
    KindInfo("ConfigMap", "", ("v1",), "configmaps", ("cm",)),
    KindInfo("Secret", "", ("v1",), "secrets"),
    KindInfo("ServiceAccount", "", ("v1",), "serviceaccounts", ("sa",)),
    KindInfo("Endpoints", "", ("v1",), "endpoints", ("ep",)),
    KindInfo("Node", "", ("v1",), "nodes", ("no",), False),
    KindInfo("EndpointSlice", "discovery.k8s.io", ("v1",), "endpointslices"),
    KindInfo("Lease", "coordination.k8s.io", ("v1",), "leases"),
    KindInfo("Deployment", "apps", ("v1",), "deployments", ("deploy",)),
    KindInfo("ReplicaSet", "apps", ("v1",), "replicasets", ("rs",)),
    KindInfo("DaemonSet", "apps", ("v1",), "daemonsets", ("ds",)),
    KindInfo("StatefulSet", "apps", ("v1",), "statefulsets", ("sts",)),
    KindInfo("NetworkPolicy", "networking.k8s.io", ("v1",), "networkpolicies", ("netpol",)),
    KindInfo("Ingress", "networking.k8s.io", ("v1",), "ingresses", ("ing",)),
    KindInfo("IngressClass", "networking.k8s.io", ("v1",), "ingressclasses", (), False),
    KindInfo("GatewayClass", _GW, ("v1", "v1beta1"), "gatewayclasses", ("gc",), False),
    KindInfo("Gateway", _GW, ("v1", "v1beta1"), "gateways", ("gtw",)),
    KindInfo("HTTPRoute", _GW, ("v1", "v1beta1"), "httproutes"),
    KindInfo("GRPCRoute", _GW, ("v1", "v1alpha2"), "grpcroutes"),
    KindInfo("TLSRoute", _GW, ("v1alpha2", "v1alpha3"), "tlsroutes"),
    KindInfo("TCPRoute", _GW, ("v1alpha2",), "tcproutes"),
    KindInfo("UDPRoute", _GW, ("v1alpha2",), "udproutes"),
    KindInfo("ReferenceGrant", _GW, ("v1beta1", "v1alpha2"), "referencegrants", ("refgrant",)),
    KindInfo("CiliumNetworkPolicy", "cilium.io", ("v2",), "ciliumnetworkpolicies",
             ("cnp", "ciliumnp")),
    KindInfo("CiliumClusterwideNetworkPolicy", "cilium.io", ("v2",),
             "ciliumclusterwidenetworkpolicies", ("ccnp",), False),
    KindInfo("CiliumLoadBalancerIPPool", "cilium.io", ("v2alpha1", "v2"),
             "ciliumloadbalancerippools", ("ippools", "ippool", "lbippool", "lbippools"), False),
    KindInfo("CiliumL2AnnouncementPolicy", "cilium.io", ("v2alpha1",),
             "ciliuml2announcementpolicies", ("l2announcement",), False),
    KindInfo("CiliumCIDRGroup", "cilium.io", ("v2alpha1", "v2"), "ciliumcidrgroups",
             ("ccg",), False),
    KindInfo("CiliumEndpoint", "cilium.io", ("v2",), "ciliumendpoints",
             ("cep", "ciliumep"), computed=True),
    KindInfo("CiliumNode", "cilium.io", ("v2",), "ciliumnodes", ("cn", "ciliumn"), False,
             computed=True),
    KindInfo("CiliumIdentity", "cilium.io", ("v2",), "ciliumidentities", ("ciliumid",), False,
             computed=True),
    KindInfo("NetworkAttachmentDefinition", "k8s.cni.cncf.io", ("v1",),
             "network-attachment-definitions", ("net-attach-def",)),
    KindInfo("IPPool", "projectcalico.org", ("v3",), "ippools", (), False,
             NameRule.PATH_SEGMENT),
    KindInfo("BGPConfiguration", "projectcalico.org", ("v3",), "bgpconfigurations", (), False,
             NameRule.PATH_SEGMENT),
)  # fmt: skip

_BY_KIND: dict[str, KindInfo] = {k.kind: k for k in KINDS}

# (apiVersion, kind) -> (Kubernetes release that removed it, what to use instead).
_APPS = "apps/v1"
REMOVED_APIS: dict[tuple[str, str], tuple[str, str]] = {
    ("extensions/v1beta1", "Ingress"): (
        "v1.22",
        "networking.k8s.io/v1 (use spec.rules[].http.paths[].pathType and "
        "backend.service.name/port)",
    ),
    ("networking.k8s.io/v1beta1", "Ingress"): (
        "v1.22",
        "networking.k8s.io/v1 (use spec.rules[].http.paths[].pathType and "
        "backend.service.name/port)",
    ),
    ("networking.k8s.io/v1beta1", "IngressClass"): ("v1.22", "networking.k8s.io/v1"),
    ("extensions/v1beta1", "NetworkPolicy"): ("v1.16", "networking.k8s.io/v1"),
    ("extensions/v1beta1", "PodSecurityPolicy"): (
        "v1.16",
        "nothing: PodSecurityPolicy was removed in v1.25 (use Pod Security admission)",
    ),
    ("policy/v1beta1", "PodSecurityPolicy"): (
        "v1.25",
        "nothing: PodSecurityPolicy was removed (use Pod Security admission)",
    ),
    ("policy/v1beta1", "PodDisruptionBudget"): ("v1.25", "policy/v1"),
    ("discovery.k8s.io/v1beta1", "EndpointSlice"): ("v1.25", "discovery.k8s.io/v1"),
    ("batch/v1beta1", "CronJob"): ("v1.25", "batch/v1"),
    **{
        (old, kind): ("v1.16", _APPS)
        for old in ("extensions/v1beta1", "apps/v1beta1", "apps/v1beta2")
        for kind in ("Deployment", "DaemonSet", "ReplicaSet", "StatefulSet")
        if not (old == "extensions/v1beta1" and kind == "StatefulSet")
    },
    ("cilium.io/v2alpha1", "CiliumNetworkPolicy"): ("Cilium 1.0", "cilium.io/v2"),
}


def kind_info(kind: str) -> KindInfo | None:
    return _BY_KIND.get(kind)


def removed_api(api_version: str, kind: str) -> tuple[str, str] | None:
    """(removed-in release, replacement) when ``api_version`` of ``kind`` was removed."""
    return REMOVED_APIS.get((api_version, kind))


def resolve_resource(word: str) -> KindInfo | None:
    """A resource name as kubectl accepts it: plural, singular, short name, Kind, or
    any of them qualified with the group (``deployments.apps``, ``ippools.projectcalico.org``).

    Where two kinds share a name (Cilium's ``ippools`` short name and Calico's
    ``ippools`` plural) the first registered kind wins, as kubectl prefers one group;
    the qualified form reaches the other one.
    """
    w = word.strip()
    if not w:
        return None
    low = w.lower()
    for k in KINDS:
        names = {k.plural, k.singular, *k.short_names}
        if low in names or w == k.kind:
            return k
    for k in KINDS:
        if not k.group:
            continue
        names = {k.plural, k.singular, *k.short_names}
        for n in names:
            if low == f"{n}.{k.group}" or any(low == f"{n}.{v}.{k.group}" for v in k.versions):
                return k
    return None
