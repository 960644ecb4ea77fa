"""apps/v1 workloads: Deployment, ReplicaSet, DaemonSet, StatefulSet (typed read-only views).

Each has replicas (DaemonSets: none, one pod per eligible node), a label selector and a
pod template; ``status`` carries the counts kubectl prints (READY, UP-TO-DATE,
AVAILABLE, DESIRED, CURRENT). Imports only ``ciliate.model.meta`` and ``model.core``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ciliate.model.core import PodSpec
from ciliate.model.meta import Doc, LabelSelector, ObjectMeta


def _int(v: Any, default: int = 0) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else default


@dataclass(frozen=True, slots=True)
class PodTemplate:
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    spec: PodSpec

    @classmethod
    def from_doc(cls, tmpl: Mapping[str, Any]) -> PodTemplate:
        meta = tmpl.get("metadata") or {}
        return cls(
            {str(k): str(v) for k, v in (meta.get("labels") or {}).items()},
            {str(k): str(v) for k, v in (meta.get("annotations") or {}).items()},
            PodSpec.from_doc(tmpl.get("spec") or {}),
        )


@dataclass(frozen=True, slots=True)
class WorkloadStatus:
    """The counters of apps/v1 status (``observedGeneration`` and friends)."""

    replicas: int = 0
    ready_replicas: int = 0
    available_replicas: int = 0
    updated_replicas: int = 0
    # DaemonSet counters
    desired_number_scheduled: int = 0
    current_number_scheduled: int = 0
    number_ready: int = 0
    number_available: int = 0
    updated_number_scheduled: int = 0

    @classmethod
    def from_doc(cls, st: Mapping[str, Any]) -> WorkloadStatus:
        return cls(
            _int(st.get("replicas")),
            _int(st.get("readyReplicas")),
            _int(st.get("availableReplicas")),
            _int(st.get("updatedReplicas")),
            _int(st.get("desiredNumberScheduled")),
            _int(st.get("currentNumberScheduled")),
            _int(st.get("numberReady")),
            _int(st.get("numberAvailable")),
            _int(st.get("updatedNumberScheduled")),
        )


@dataclass(frozen=True, slots=True)
class Workload:
    """Fields shared by the four workload kinds."""

    meta: ObjectMeta
    replicas: int  # spec.replicas (default 1); DaemonSets: 0 (one pod per node)
    selector: LabelSelector
    template: PodTemplate
    status: WorkloadStatus
    doc: Doc = field(repr=False, compare=False)

    @classmethod
    def _parts(cls, doc: Doc, default_replicas: int = 1) -> dict[str, Any]:
        spec = doc.get("spec") or {}
        return {
            "meta": ObjectMeta.from_doc(doc),
            "replicas": _int(spec.get("replicas"), default_replicas),
            "selector": LabelSelector.from_doc(spec.get("selector")),
            "template": PodTemplate.from_doc(spec.get("template") or {}),
            "status": WorkloadStatus.from_doc(doc.get("status") or {}),
            "doc": doc,
        }


@dataclass(frozen=True, slots=True)
class Deployment(Workload):
    strategy: str = "RollingUpdate"

    @classmethod
    def from_doc(cls, doc: Doc) -> Deployment:
        strategy = ((doc.get("spec") or {}).get("strategy") or {}).get("type") or "RollingUpdate"
        return cls(**cls._parts(doc), strategy=str(strategy))


@dataclass(frozen=True, slots=True)
class ReplicaSet(Workload):
    @classmethod
    def from_doc(cls, doc: Doc) -> ReplicaSet:
        return cls(**cls._parts(doc))


@dataclass(frozen=True, slots=True)
class DaemonSet(Workload):
    @classmethod
    def from_doc(cls, doc: Doc) -> DaemonSet:
        return cls(**cls._parts(doc, default_replicas=0))


@dataclass(frozen=True, slots=True)
class StatefulSet(Workload):
    service_name: str = ""

    @classmethod
    def from_doc(cls, doc: Doc) -> StatefulSet:
        service = (doc.get("spec") or {}).get("serviceName") or ""
        return cls(**cls._parts(doc), service_name=str(service))
