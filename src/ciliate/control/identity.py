"""Security identities: one numeric identity per distinct set of security-relevant labels.

Inputs: pods, their namespace's labels, the cluster name. Outputs: label sets
(sorted ``source:key=value`` strings, as Cilium prints them) and numeric identities.
Reserved identities are numbered as Cilium numbers them (cilium.md §1.1); user
identities start at 256. A label set's identity is a function of the labels alone
(a stable hash with linear probing on collision), so it is the same across restarts
and across ephemeral clusters built from the same manifests; ``existing`` pins
identities already handed out (persisted in the store) so that they never move.

Sans-IO: imports only the model and ``desired``.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping

from ciliate.desired import MIN_USER_IDENTITY, Identity, ReservedIdentity
from ciliate.model.core import Pod

MAX_IDENTITY = 65535
_SPAN = MAX_IDENTITY - MIN_USER_IDENTITY + 1

LabelSet = tuple[str, ...]

RESERVED_LABELS: Mapping[int, LabelSet] = {
    ReservedIdentity.HOST: ("reserved:host",),
    ReservedIdentity.WORLD: ("reserved:world",),
    ReservedIdentity.UNMANAGED: ("reserved:unmanaged",),
    ReservedIdentity.HEALTH: ("reserved:health",),
    ReservedIdentity.INIT: ("reserved:init",),
    ReservedIdentity.REMOTE_NODE: ("reserved:remote-node",),
    ReservedIdentity.KUBE_APISERVER: ("reserved:kube-apiserver", "reserved:remote-node"),
    ReservedIdentity.INGRESS: ("reserved:ingress",),
}

NAMESPACE_LABEL = "io.kubernetes.pod.namespace"
SERVICE_ACCOUNT_LABEL = "io.cilium.k8s.policy.serviceaccount"
CLUSTER_LABEL = "io.cilium.k8s.policy.cluster"
NAMESPACE_LABELS_PREFIX = "io.cilium.k8s.namespace.labels."


# Pod label keys that Cilium's default label filter leaves out of the security identity
# (pkg/labelsfilter defaults): rollout bookkeeping and Kubernetes-owned keys, so that
# a rollout does not mint a new identity per ReplicaSet.
IGNORED_POD_LABEL_KEYS = frozenset(
    {"pod-template-hash", "controller-revision-hash", "pod-template-generation"}
)


def is_security_label(key: str) -> bool:
    """Whether a pod label key counts for the identity (``!.*kubernetes.io`` etc.)."""
    if key in IGNORED_POD_LABEL_KEYS:
        return False
    prefix, slash, _ = key.rpartition("/")
    return not (slash and (prefix == "kubernetes.io" or prefix.endswith(".kubernetes.io")))


def pod_identity_labels(
    pod: Pod, namespace_labels: Mapping[str, str], cluster_name: str = "default"
) -> LabelSet:
    """The security-relevant labels of a pod (cilium.md §1.2), sorted, with ``k8s:``."""
    labels = {f"k8s:{k}={v}" for k, v in pod.meta.labels.items() if is_security_label(k)}
    labels.add(f"k8s:{NAMESPACE_LABEL}={pod.meta.namespace}")
    labels.add(f"k8s:{SERVICE_ACCOUNT_LABEL}={pod.spec.service_account_name}")
    labels.add(f"k8s:{CLUSTER_LABEL}={cluster_name or 'default'}")
    for k, v in namespace_labels.items():
        labels.add(f"k8s:{NAMESPACE_LABELS_PREFIX}{k}={v}")
    return tuple(sorted(labels))


def labels_to_map(labels: Iterable[str]) -> dict[str, str]:
    """``k8s:app=web`` strings back to a {key: value} map without the source prefix."""
    out: dict[str, str] = {}
    for lab in labels:
        src_key, _, value = lab.partition("=")
        _, _, key = src_key.partition(":")
        out[key or src_key] = value
    return out


def _preferred(labels: LabelSet) -> int:
    return MIN_USER_IDENTITY + zlib.crc32("\n".join(labels).encode()) % _SPAN


def allocate_identities(
    label_sets: Iterable[LabelSet], existing: Mapping[LabelSet, int] | None = None
) -> dict[LabelSet, int]:
    """Numeric identities for label sets: existing ones kept, new ones at their
    preferred number (probing upward on collision). Sets are placed in sorted order so
    the result does not depend on iteration order."""
    result: dict[LabelSet, int] = dict(existing or {})
    used = set(result.values())
    for labels in sorted(set(label_sets) - result.keys()):
        n = _preferred(labels)
        while n in used:
            n = MIN_USER_IDENTITY + (n - MIN_USER_IDENTITY + 1) % _SPAN
        result[labels] = n
        used.add(n)
    return result


def reserved_identities() -> dict[int, Identity]:
    return {int(i): Identity(int(i), labels) for i, labels in RESERVED_LABELS.items()}
